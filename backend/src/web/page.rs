//! What every console page shares: its title, the navigation and asset URLs.

use super::assets;

/// One entry of the main navigation.
pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
}

/// The areas of the console, in navigation order. An area is listed once its pages exist.
pub const NAV: &[NavItem] = &[NavItem {
    label: "Overview",
    href: "/",
}];

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

    /// The cache-busting URL of a file under `static/`.
    pub fn asset(&self, path: &str) -> String {
        assets::url(path)
    }
}
