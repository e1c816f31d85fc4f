//! Who may do what in the console, and the record of what they did: local users with argon2id
//! password hashes, sign-in sessions kept in PostgreSQL, API tokens, sign-in throttling, the
//! one-time setup link and the append-only audit log.
//!
//! # Roles
//!
//! `viewer < responder < admin` for people and tokens, plus `ci`, a token-only role that may only
//! `POST /api/v1/events/*` (build and registry events):
//!
//! | role        | may                                                                  |
//! |-------------|----------------------------------------------------------------------|
//! | `viewer`    | read everything (every `GET`), and self-service actions the table allows them |
//! | `responder` | incidents (isolate / restore), waiver requests                       |
//! | `admin`     | users, tokens, teams, rules, sources, waiver approval, the audit log |
//! | `ci`        | `POST /api/v1/events/*` and nothing else (an admin may call those too) |
//!
//! # How a request is authorised (for handler authors)
//!
//! A global middleware ([`crate::web::access::authenticate`]) runs before every handler:
//!
//! 1. It resolves the `hm_session` cookie or an `Authorization: Bearer hm_…` header into a
//!    [`Principal`] (id, name, role, kind `Session | Token`, client address) and puts it in the
//!    request extensions. Without one: `401` (JSON under `/api/`) for `/api/*` and `/metrics`, a
//!    `303` redirect to `/login?next=<path>` for pages. A bad bearer token is a `401`, never a
//!    fall-back to the cookie. Public routes (`Access::Public`) skip this step.
//! 2. It looks the matched route up in **the route table**, `crate::web::route_policies()`: each
//!    area module declares `pub const POLICIES: &[RoutePolicy]` next to its `router()`, and
//!    `web::route_policies` concatenates them. A `GET`/`HEAD` route missing from the table is
//!    open to every signed-in human (viewer and up); **a mutating route missing from the table
//!    is refused** (fail closed, `403 … has no access policy`), so a forgotten entry shows up in
//!    the first test that calls it; a path in the table called with an unlisted method is a
//!    `405`. The integration test `auth::every_route_answers_…` walks the whole table as a
//!    stranger, as every role's session and as every role's token, and checks the CSP header on
//!    each answer: adding a route to the table is all it takes to have it tested.
//!    A `ci` principal is refused everywhere except `POST /api/v1/events/*`, whatever the table
//!    says. A refusal (403) is written to the audit log as `access.denied`.
//! 3. For cookie-authenticated `POST`/`PUT`/`PATCH`/`DELETE` it checks the per-session CSRF token
//!    (form field `csrf` — urlencoded or multipart — or header `x-csrf-token`) and refuses a
//!    cross-site request (`Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` that
//!    is neither the request's `Host` nor `HARBORMASTER_PUBLIC_URL`). Bearer-token requests are
//!    exempt. Public mutating routes (the sign-in form) get the cross-site check only.
//! 4. It counts the audit rows the handler writes (see below); a successful mutation that wrote
//!    none still gets a generic `http.mutation` row, with a warning in the log.
//!
//! Declaring a route (in `web/<area>.rs`):
//!
//! ```ignore
//! use axum::http::Method;
//! use crate::auth::Role;
//! use crate::web::access::{Admin, RequireRole, Responder, RoutePolicy};
//!
//! pub const POLICIES: &[RoutePolicy] = &[
//!     RoutePolicy::role(Method::GET, "/incidents", Role::Viewer),
//!     RoutePolicy::role(Method::POST, "/api/v1/incidents/{id}/isolate", Role::Responder),
//!     RoutePolicy::role(Method::POST, "/api/v1/events/build", Role::Ci),
//! ];
//! // and in web::route_policies(): `incidents::POLICIES,`
//! ```
//!
//! In the handler, say the role again with an extractor (the table and the extractor are both
//! checked; the extractor documents the handler and guards it if it is mounted elsewhere):
//!
//! ```ignore
//! async fn isolate_incident(
//!     State(state): State<AppState>,
//!     RequireRole { principal, .. }: RequireRole<Responder>, // or Admin, Viewer, Ci
//!     Path(id): Path<i64>,
//! ) -> Result<impl IntoResponse, WebError> {
//!     // … do it, then:
//!     audit::record(&state.pool, &principal, "incident.isolate", &format!("incident {id}"),
//!         Outcome::Success, principal.client_addr, json!({"containers": 3})).await?;
//! }
//! ```
//!
//! Or take `principal: Principal` (any signed-in principal) and check inside:
//! `principal.require(Role::Responder)?` (the error converts into `WebError::Forbidden` with a
//! message naming the role needed; `principal.can(role)` is the boolean form). On public routes
//! no principal is resolved. `ClientAddr(Option<IpAddr>)` is an extractor for the client address
//! alone. `AuthError` and `AccessDenied` convert into `WebError` with `?`.
//!
//! # The audit log
//!
//! [`audit::record`]`(executor, actor, action, target, outcome, client_addr, details)` appends
//! one row: `actor` is `&Principal` (or an [`audit::Actor`] such as `Actor::system("cli")`),
//! `action` a dotted verb (`incident.isolate`, `waiver.approve`, `user.create`), `target` what
//! it acted on (`workload 42`, `user alice`), [`audit::Outcome`] `Success | Failure | Denied`,
//! `details` a JSON object — never a secret value. Pass the transaction the change runs in so
//! the row commits with it. The table refuses `UPDATE`, `DELETE` and `TRUNCATE` by trigger.
//! Sign-in success and failure, sign-out, user and token changes are recorded here already.
//!
//! # Client address
//!
//! The TCP peer's address (`ConnectInfo<SocketAddr>`). `X-Forwarded-For` is believed only when
//! the peer is one of `HARBORMASTER_TRUSTED_PROXIES` (addresses or networks); the client is then
//! the right-most address in the header that is not itself a trusted proxy.
//!
//! # Pages
//!
//! `crate::web::page::PageContext` is an extractor: `ctx: PageContext` in a handler gives the
//! signed-in user, the CSRF token and the role-aware navigation; set the title with
//! `ctx.titled("Workloads").active("/workloads")`. `PageContext::new(title)` stays for pages
//! without a request (anonymous). Every form that mutates carries
//! `<input type="hidden" name="csrf" value="{{ ctx.csrf }}">`; scripts send the same value in an
//! `x-csrf-token` header. `ctx.user` (`Option<PageUser { name, role }>`) and `ctx.can(role)`
//! let a template hide what the viewer may not do (the server checks again on submit).
//! `page::NAV` is for everyone, `page::ADMIN_NAV` is shown to admins only.
//!
//! # Tests (backend/tests/it/common)
//!
//! `app.login_as(Role::Responder).await` creates a user and signs in through the real form,
//! returning a `Browser` (`client`, `name`, `password`, `role`, `csrf`) whose `get`,
//! `post_form(path, &[(k, v)])` (adds the `csrf` field), `post_json(path, &json)` and
//! `request(method, path)` (add the `x-csrf-token` header) behave like the console.
//! `app.bearer_token(Role::Ci).await` returns a token's secret and `app.token_client(&secret)` a
//! client that sends it. `app.audit_rows().await` lists `(action, target, outcome)`, and
//! `app.assert_mutations_audited().await` fails if any mutation fell back to the generic
//! `http.mutation` row. `TestApp::spawn_with_policies(pool, config, Some(routes), policies)` adds
//! instrumented routes together with their route-table entries.

pub mod audit;
pub mod login;
pub mod password;
pub mod sessions;
pub mod setup;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a principal may do. People have `viewer`, `responder` or `admin`; `ci` is for API
/// tokens that report builds and registry pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
    Ci,
}

impl Role {
    /// The roles a person (a user account) can have, lowest first.
    pub const HUMAN: [Role; 3] = [Role::Viewer, Role::Responder, Role::Admin];
    /// Every role, as offered for API tokens.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Responder, Role::Admin, Role::Ci];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
            Role::Ci => "ci",
        }
    }

    /// Whether a principal with this role may do what `required` allows.
    ///
    /// `viewer < responder < admin`; `ci` satisfies only `ci`, and what needs `ci` (posting
    /// events) an admin may do as well.
    pub fn satisfies(self, required: Role) -> bool {
        match (self, required) {
            (Role::Ci, required) => required == Role::Ci,
            (actual, Role::Ci) => actual == Role::Admin,
            (actual, required) => actual.rank() >= required.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 1,
            Role::Responder => 2,
            Role::Admin => 3,
            Role::Ci => 0,
        }
    }

    pub fn is_human(self) -> bool {
        self != Role::Ci
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<10}` lines up the CLI's tables.
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a role; expected viewer, responder, admin or ci")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "responder" => Ok(Role::Responder),
            "admin" => Ok(Role::Admin),
            "ci" => Ok(Role::Ci),
            _ => Err(UnknownRole(text.to_string())),
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person signed in to the console (the `hm_session` cookie).
    Session,
    /// An API token (`Authorization: Bearer hm_…`).
    Token,
}

/// Who is making the request: resolved once per request by the authentication middleware.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user's id (sessions) or the token's id (tokens).
    pub id: i64,
    /// The user name, or the token's name.
    pub name: String,
    pub role: Role,
    pub kind: PrincipalKind,
    /// The session's CSRF token; `None` for API tokens, which need none.
    pub csrf: Option<String>,
    /// The client's address (see the module documentation for proxies).
    pub client_addr: Option<IpAddr>,
}

impl Principal {
    /// Refuses with a message naming the role needed when this principal's role is too low.
    pub fn require(&self, required: Role) -> Result<(), AccessDenied> {
        if self.role.satisfies(required) {
            Ok(())
        } else {
            Err(AccessDenied::new(self, required))
        }
    }

    /// Whether this principal's role allows what `required` allows.
    pub fn can(&self, required: Role) -> bool {
        self.role.satisfies(required)
    }

    /// How the principal shows in the audit log and on pages: `alice`, or `ci (token)`.
    pub fn display_name(&self) -> String {
        match self.kind {
            PrincipalKind::Session => self.name.clone(),
            PrincipalKind::Token => format!("{} (token)", self.name),
        }
    }
}

/// A principal's role is too low for what it asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AccessDenied {
    pub required: Role,
    pub actual: Role,
    pub message: String,
}

impl AccessDenied {
    pub fn new(principal: &Principal, required: Role) -> Self {
        let who = principal.display_name();
        let message = match (principal.role, required) {
            (Role::Ci, _) => format!(
                "{who} has the ci role, which may only post build and registry events to /api/v1/events/"
            ),
            (_, Role::Ci) => format!(
                "this is for CI tokens (the ci role) or admins; {who} has the {} role",
                principal.role
            ),
            (actual, required) => format!(
                "this needs the {required} role or higher; {who} has the {actual} role"
            ),
        };
        Self {
            required,
            actual: principal.role,
            message,
        }
    }
}

/// Why a user or token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input: a name or password that does not meet the rules.
    #[error("{0}")]
    Invalid(String),
    #[error("a user named {0} already exists")]
    UserExists(String),
    #[error("a token named {0} already exists; revoke it first or choose another name")]
    TokenExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A fresh random secret: 32 bytes from the operating system, base64url without padding.
pub fn new_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The sha256 of a secret, which is all the database keeps of it.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The rule for user and token names: 1 to 64 letters, digits, `.`, `_`, `@` or `-`, starting
/// with a letter or digit (the same rule the database enforces).
pub fn validate_name(name: &str, what: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "a {what} name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_ci_stands_apart() {
        assert!(Role::Admin.satisfies(Role::Responder));
        assert!(Role::Responder.satisfies(Role::Viewer));
        assert!(!Role::Viewer.satisfies(Role::Responder));
        assert!(!Role::Responder.satisfies(Role::Admin));
        assert!(!Role::Ci.satisfies(Role::Viewer), "ci cannot read");
        assert!(Role::Ci.satisfies(Role::Ci));
        assert!(Role::Admin.satisfies(Role::Ci));
        assert!(!Role::Responder.satisfies(Role::Ci));
    }

    #[test]
    fn roles_display_padded_for_tables() {
        assert_eq!(format!("[{:<6}]", Role::Ci), "[ci    ]");
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .to_string()
            .contains("'root'"));
    }

    #[test]
    fn a_refusal_names_the_role_needed() {
        let viewer = Principal {
            id: 1,
            name: "vera".into(),
            role: Role::Viewer,
            kind: PrincipalKind::Session,
            csrf: None,
            client_addr: None,
        };
        let err = viewer.require(Role::Responder).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this needs the responder role or higher; vera has the viewer role"
        );
        assert!(viewer.require(Role::Viewer).is_ok());
    }

    #[test]
    fn secrets_are_long_random_and_url_safe() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(digest(&a).len(), 32);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn names_follow_the_database_rule() {
        assert!(validate_name("alice.o-brien@corp", "user").is_ok());
        for bad in ["", ".hidden", "a b", "<script>", &"x".repeat(65)] {
            assert!(validate_name(bad, "user").is_err(), "{bad}");
        }
    }
}
