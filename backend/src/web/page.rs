//! What every console page shares: its title, the navigation, the signed-in user with the CSRF
//! token its forms carry, and asset URLs.
//!
//! In a handler, take `ctx: PageContext` as an extractor and set the title:
//! `ctx.titled("Workloads").active("/workloads")`. `PageContext::new(title)` is for pages built
//! without a request (anonymous), such as the error pages.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::assets;
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
        label: "Incidents",
        href: "/incidents",
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
