//! What every console page shares: its title, the navigation and asset URLs.

use chrono::{DateTime, Utc};

use super::assets;

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
        label: "Checks",
        href: "/checks",
    },
    NavItem {
        label: "Sources",
        href: "/sources",
    },
];

/// The part of every page struct that `base.html` reads.
pub struct PageContext {
    pub title: String,
    /// The `href` of the navigation entry to mark as current.
    pub active: &'static str,
    pub nav: &'static [NavItem],
    pub version: &'static str,
}

impl PageContext {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            active: "",
            nav: NAV,
            version: env!("CARGO_PKG_VERSION"),
        }
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
