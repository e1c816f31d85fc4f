//! What every console page shares: its title, the navigation, the signed-in user with the CSRF
//! token its forms carry, and asset URLs.
//!
//! In a handler, take `ctx: PageContext` as an extractor and set the title:
//! `ctx.titled("Workloads").active("/workloads")`. `PageContext::new(title)` is for pages built
//! without a request (anonymous), such as the error pages.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use chrono::{DateTime, Utc};

use super::assets;
use super::WebError;
use crate::auth::{Principal, Role};

/// One entry of the main navigation.
pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
}

/// The areas of the console, in navigation order. An area is listed once its pages exist.
pub const NAV: &[NavItem] = &[
    NavItem {
        label: "Overview",
        href: "/",
    },
    NavItem {
        label: "Workloads",
        href: "/workloads",
    },
    NavItem {
        label: "Findings",
        href: "/findings",
    },
    NavItem {
        label: "Events",
        href: "/events",
    },
    NavItem {
        label: "Teams",
        href: "/teams",
    },
    NavItem {
        label: "Images",
        href: "/images",
    },
    NavItem {
        label: "Incidents",
        href: "/incidents",
    },
    NavItem {
        label: "Reviews",
        href: "/reviews",
    },
    NavItem {
        label: "Checks",
        href: "/checks",
    },
    NavItem {
        label: "Sources",
        href: "/sources",
    },
];

/// Entries shown only to admins, after [`NAV`].
pub const ADMIN_NAV: &[NavItem] = &[
    NavItem {
        label: "Users",
        href: "/admin/users",
    },
    NavItem {
        label: "Tokens",
        href: "/admin/tokens",
    },
    NavItem {
        label: "Notifications",
        href: "/admin/notifications",
    },
    NavItem {
        label: "Audit",
        href: "/admin/audit",
    },
];

/// The signed-in person a page is shown to.
pub struct PageUser {
    pub name: String,
    pub role: Role,
}

/// The part of every page struct that `base.html` reads.
pub struct PageContext {
    pub title: String,
    /// The `href` of the navigation entry to mark as current.
    pub active: &'static str,
    pub nav: &'static [NavItem],
    /// [`ADMIN_NAV`] for admins, empty for everyone else.
    pub admin_nav: &'static [NavItem],
    pub version: &'static str,
    /// `None` on pages shown to someone not signed in.
    pub user: Option<PageUser>,
    /// The session's CSRF token, for `<input type="hidden" name="csrf" value="{{ ctx.csrf }}">`
    /// in every form that changes something; empty when nobody is signed in.
    pub csrf: String,
}

impl PageContext {
    /// A page for someone not signed in (or built without a request).
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            active: "",
            nav: NAV,
            admin_nav: &[],
            version: env!("CARGO_PKG_VERSION"),
            user: None,
            csrf: String::new(),
        }
    }

    /// A page for `principal`: their name, role, CSRF token and navigation.
    pub fn for_principal(principal: &Principal, title: impl Into<String>) -> Self {
        Self {
            admin_nav: if principal.role == Role::Admin {
                ADMIN_NAV
            } else {
                &[]
            },
            user: Some(PageUser {
                name: principal.display_name(),
                role: principal.role,
            }),
            csrf: principal.csrf.clone().unwrap_or_default(),
            ..Self::new(title)
        }
    }

    /// Sets the title (after extracting the context from the request).
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Marks a navigation entry as the current area.
    pub fn active(mut self, href: &'static str) -> Self {
        self.active = href;
        self
    }

    /// A time as the console shows it: `2026-11-28 13:55:02 UTC`.
    pub fn time(&self, at: &DateTime<Utc>) -> String {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }

    /// A time as `<time datetime>` wants it (RFC 3339).
    pub fn iso(&self, at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// How long ago a time was, roughly: `42 s ago`, `5 min ago`, `3 h ago`, `12 d ago`.
    pub fn ago(&self, at: &DateTime<Utc>) -> String {
        ago(Utc::now(), *at)
    }

    /// Whether the viewer of this page may do what `role` allows (to show or hide actions;
    /// the server checks again on submit).
    pub fn can(&self, role: Role) -> bool {
        self.user
            .as_ref()
            .is_some_and(|user| user.role.satisfies(role))
    }

    /// The cache-busting URL of a file under `static/`.
    pub fn asset(&self, path: &str) -> String {
        assets::url(path)
    }
}

/// `then` relative to `now`, roughly.
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds();
    match seconds {
        s if s < 0 => "just now".to_string(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The page size a list API was asked for: a whole number from 1 to `max`, else a 400.
pub fn parse_limit(value: &str, max: i64) -> Result<i64, WebError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            WebError::BadRequest(format!("limit must be a whole number from 1 to {max}"))
        })
}

/// The query of a console list page: empty fields (a form's "any") are no filter, and the page
/// size is fixed (`api` names the API path for other sizes).
pub fn console_filters(
    mut params: HashMap<String, String>,
    api: &str,
) -> Result<HashMap<String, String>, WebError> {
    params.retain(|_, value| !value.trim().is_empty());
    if params.contains_key("limit") {
        return Err(WebError::BadRequest(format!(
            "the console shows fixed pages; use {api} for other page sizes"
        )));
    }
    Ok(params)
}

/// Query parameters from pairs, for the filter parsers' tests.
#[cfg(test)]
pub(crate) fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `?a=1&b=x%20y` from pairs (empty when there are none).
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let joined: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode_query_value(value)))
        .collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

/// `ctx: PageContext` in a handler: the context for whoever is signed in (anonymous on public
/// pages), untitled until [`PageContext::titled`].
impl<S: Send + Sync> FromRequestParts<S> for PageContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Principal>() {
            Some(principal) => Self::for_principal(principal, ""),
            None => Self::new(""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[("q", "a b&c=<d>".into()), ("after", "5".into())]),
            "?q=a%20b%26c%3D%3Cd%3E&after=5"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn ages_are_rounded_to_a_readable_unit() {
        let now = Utc::now();
        assert_eq!(ago(now, now - chrono::Duration::seconds(42)), "42 s ago");
        assert_eq!(ago(now, now - chrono::Duration::minutes(5)), "5 min ago");
        assert_eq!(ago(now, now - chrono::Duration::days(3)), "3 d ago");
    }
}
