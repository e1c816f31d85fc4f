//! Authentication and authorisation for every request: the route table, the middleware that
//! resolves the principal and enforces roles and cross-site protection, and the extractors
//! handlers use. The rules are explained for handler authors in [`crate::auth`].

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{
    ConnectInfo, FromRequestParts, MatchedPath, OptionalFromRequestParts, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::{AppState, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{
    self, sessions, tokens, AccessDenied, AuthError, Principal, PrincipalKind, Role,
};

/// Who may call one route: everyone (`Public`) or principals whose role satisfies a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    AtLeast(Role),
}

/// One row of the route table: a method, the route exactly as given to `Router::route`
/// (`/admin/users/{id}/role`), and who may call it.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

impl RoutePolicy {
    /// A route anyone may call, signed in or not (health, static files, the sign-in page).
    pub const fn public(method: Method, path: &'static str) -> Self {
        Self {
            method,
            path,
            access: Access::Public,
        }
    }

    /// A route for principals whose role satisfies `role` (see [`Role::satisfies`]).
    pub const fn role(method: Method, path: &'static str, role: Role) -> Self {
        Self {
            method,
            path,
            access: Access::AtLeast(role),
        }
    }

    /// Whether the route changes something (and so needs CSRF protection and an audit row).
    pub fn is_mutation(&self) -> bool {
        is_mutation(&self.method)
    }
}

/// The route table, indexed.
pub struct RouteTable {
    by_route: HashMap<(Method, &'static str), Access>,
    paths: HashSet<&'static str>,
}

impl RouteTable {
    pub fn new(policies: Vec<RoutePolicy>) -> Self {
        Self {
            paths: policies.iter().map(|policy| policy.path).collect(),
            by_route: policies
                .into_iter()
                .map(|policy| ((policy.method, policy.path), policy.access))
                .collect(),
        }
    }

    fn decide(&self, method: &Method, route: Option<&str>) -> Decision {
        let Some(route) = route else {
            // The fallback (no route matched): a 404 for any signed-in person.
            return Decision::Require(Role::Viewer);
        };
        let lookup = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        match self.by_route.get(&(lookup, route)) {
            Some(Access::Public) => Decision::Public,
            Some(Access::AtLeast(role)) => Decision::Require(*role),
            None if !is_mutation(method) => Decision::Require(Role::Viewer),
            None if self.paths.contains(route) => Decision::MethodNotAllowed,
            None => Decision::NoPolicy,
        }
    }
}

/// What the authentication middleware needs: the application state and the route table.
#[derive(Clone)]
pub struct AccessState {
    pub app: AppState,
    pub table: Arc<RouteTable>,
}

/// What the route table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Public,
    Require(Role),
    /// A mutating route with no entry: refused (fail closed).
    NoPolicy,
    /// The path is in the table, but not with this method.
    MethodNotAllowed,
}

/// Whether a method changes state; these need a role from the table, a CSRF token (cookies)
/// and an audit row.
pub fn is_mutation(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Paths answered with `401` rather than a redirect to the sign-in page: the API and the
/// machine-read metrics.
fn is_machine_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

/// The client's address, as handlers see it (see [`client_addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or_else(|| {
                ClientAddr(
                    parts
                        .extensions
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|info| info.0.ip()),
                )
            }))
    }
}

/// The client's address: the TCP peer, or — only when the peer is a trusted proxy — the
/// right-most `X-Forwarded-For` address that is not itself a trusted proxy.
pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for item in forwarded.iter().rev() {
        let item = item.trim();
        let parsed = item
            .parse::<IpAddr>()
            .ok()
            .or_else(|| item.parse::<SocketAddr>().ok().map(|addr| addr.ip()));
        match parsed {
            Some(addr) => {
                client = addr;
                if !is_trusted(&addr) {
                    break;
                }
            }
            // Garbage: believe nothing further left than the last trusted hop.
            None => break,
        }
    }
    Some(client)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(WebError::Unauthorized)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// A role a handler can demand with [`RequireRole`].
pub trait RequiredRole: Send + Sync + 'static {
    const ROLE: Role;
}

/// `RequireRole<Viewer>`: any signed-in person.
pub struct Viewer;
/// `RequireRole<Responder>`: responders and admins.
pub struct Responder;
/// `RequireRole<Admin>`: admins only.
pub struct Admin;
/// `RequireRole<Ci>`: CI tokens (and admins).
pub struct Ci;

impl RequiredRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl RequiredRole for Responder {
    const ROLE: Role = Role::Responder;
}
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl RequiredRole for Ci {
    const ROLE: Role = Role::Ci;
}

/// An extractor that yields the principal when its role satisfies `R`, and answers `403` with
/// a message naming the role otherwise (`401` when nobody is signed in).
///
/// ```ignore
/// async fn create_team(RequireRole { principal, .. }: RequireRole<Admin>) { }
/// ```
pub struct RequireRole<R: RequiredRole> {
    pub principal: Principal,
    role: PhantomData<R>,
}

impl<R: RequiredRole> Deref for RequireRole<R> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R: RequiredRole> RequireRole<R> {
    pub fn into_inner(self) -> Principal {
        self.principal
    }
}

impl<S: Send + Sync, R: RequiredRole> FromRequestParts<S> for RequireRole<R> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal =
            <Principal as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        principal.require(R::ROLE)?;
        Ok(Self {
            principal,
            role: PhantomData,
        })
    }
}

impl From<AccessDenied> for WebError {
    fn from(denied: AccessDenied) -> Self {
        WebError::Forbidden(denied.message)
    }
}

impl From<AuthError> for WebError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Invalid(message) => WebError::Unprocessable(message),
            err @ (AuthError::UserExists(_) | AuthError::TokenExists(_)) => {
                WebError::Conflict(err.to_string())
            }
            AuthError::Conflict(message) => WebError::Conflict(message),
            AuthError::NotFound(message) => WebError::NotFound(message),
            AuthError::Hashing(message) => WebError::Internal(anyhow::anyhow!(message)),
            AuthError::Db(err) => err.into(),
        }
    }
}

/// The `Set-Cookie` value that starts a session in the browser.
pub fn session_cookie(token: &str, lifetime: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        sessions::COOKIE,
        lifetime.as_secs()
    );
    HeaderValue::from_str(&value).expect("a session token is a valid header value")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        sessions::COOKIE
    ))
    .expect("a valid header value")
}

/// The value of the first cookie called `name`.
pub fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Where to go after signing in: `next` when it is a path on this site, else the overview.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(|c| c.is_control() || c == '\\')
                && !next.starts_with("/login")
                && !next.starts_with("/logout")
                && !next.starts_with("/setup/")
                && next.len() <= 2048 =>
        {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The sign-in page's address with `next` set to `target`.
pub fn login_url(target: &str) -> String {
    let target = safe_next(Some(target));
    if target == "/" {
        return "/login".to_string();
    }
    let encoded = percent_encoding::utf8_percent_encode(&target, QUERY_VALUE);
    format!("/login?next={encoded}")
}

/// What must be escaped in a query-string value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a request is treated as cross-site, if it is: `Sec-Fetch-Site` other than
/// `same-origin` / `none`, or an `Origin` that is neither the request's host nor the configured
/// public URL's origin.
pub fn cross_site_reason(headers: &HeaderMap, public_url: &str) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("a {site} request (Sec-Fetch-Site)"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?").trim_end_matches('/');
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let public_origin = origin_of(public_url);
    let same = (authority.is_some() && authority == host) || Some(origin) == public_origin;
    if same {
        None
    } else {
        Some(format!("a request from another site (Origin: {origin})"))
    }
}

fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest
        .find(['/', '?', '#'])
        .map_or(url.len(), |index| scheme.len() + 3 + index);
    Some(&url[..end])
}

/// The CSRF token a mutating request carries: the `x-csrf-token` header, or the `csrf` field of
/// a urlencoded or multipart form (the body is read and put back).
async fn presented_csrf(
    request: Request,
    limit: usize,
) -> Result<(Request, Option<String>), Response> {
    if let Some(value) = request.headers().get("x-csrf-token") {
        let token = value.to_str().ok().map(str::to_string);
        return Ok((request, token));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let boundary = content_type
        .starts_with("multipart/form-data")
        .then(|| multipart_boundary(request.headers()))
        .flatten();
    if !is_form && boundary.is_none() {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(StatusCode::PAYLOAD_TOO_LARGE.into_response()),
    };
    let token = match boundary {
        Some(boundary) => multipart_field(&bytes, &boundary, "csrf"),
        None => urlencoded_field(&bytes, "csrf"),
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

fn urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|byte| *byte == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|byte| *byte == b'=') {
            Some(index) => (&pair[..index], &pair[index + 1..]),
            None => (pair, &[][..]),
        };
        (key == name.as_bytes()).then(|| {
            let value = String::from_utf8_lossy(value).replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
    })
}

fn multipart_field(body: &[u8], boundary: &str, name: &str) -> Option<String> {
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let wanted = format!("name=\"{name}\"");
    text.split(delimiter.as_str()).find_map(|part| {
        let (head, value) = part.split_once("\r\n\r\n")?;
        let disposition = head.lines().find(|line| {
            line.to_ascii_lowercase()
                .starts_with("content-disposition:")
        })?;
        disposition
            .split(';')
            .any(|param| param.trim() == wanted)
            .then(|| value.strip_suffix("\r\n").unwrap_or(value).to_string())
    })
}

/// The outcome of looking for credentials.
enum Resolved {
    Principal(Principal),
    /// No credentials; `stale_cookie` when a session cookie was sent but is no longer valid.
    Anonymous {
        stale_cookie: bool,
    },
    /// An `Authorization` header that is not a live token.
    BadToken,
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    client_addr: Option<IpAddr>,
) -> Result<Resolved, sqlx::Error> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value.to_str().ok().and_then(|value| {
            let (scheme, secret) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        });
        let Some(secret) = secret else {
            return Ok(Resolved::BadToken);
        };
        return Ok(match tokens::authenticate(&state.pool, secret).await? {
            Some(token) => Resolved::Principal(Principal {
                id: token.id,
                name: token.name,
                role: token.role,
                kind: PrincipalKind::Token,
                csrf: None,
                client_addr,
            }),
            None => Resolved::BadToken,
        });
    }
    let Some(cookie) = read_cookie(headers, sessions::COOKIE) else {
        return Ok(Resolved::Anonymous {
            stale_cookie: false,
        });
    };
    Ok(
        match sessions::resolve(&state.pool, cookie, state.config.auth.session_idle).await? {
            Some(session) => Resolved::Principal(Principal {
                id: session.user_id,
                name: session.name,
                role: session.role,
                kind: PrincipalKind::Session,
                csrf: Some(session.csrf),
                client_addr,
            }),
            None => Resolved::Anonymous { stale_cookie: true },
        },
    )
}

/// Records a refusal in the audit log; a failure to record is logged, not shown.
async fn audit_denial(
    state: &AppState,
    principal: &Principal,
    method: &Method,
    path: &str,
    reason: &str,
    required: Option<Role>,
) {
    let result = audit::record(
        &state.pool,
        principal,
        "access.denied",
        &format!("{method} {path}"),
        Outcome::Denied,
        principal.client_addr,
        json!({ "reason": reason, "required_role": required.map(Role::as_str) }),
    )
    .await;
    if let Err(err) = result {
        tracing::error!(%err, "cannot record a refusal in the audit log");
    }
}

/// The middleware in front of every route (see [`crate::auth`] for the rules it applies).
pub async fn authenticate(
    State(access): State<AccessState>,
    mut request: Request,
    next: Next,
) -> Response {
    let state = &access.app;
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_string());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let addr = client_addr(peer, request.headers(), &state.config.auth.trusted_proxies);
    request.extensions_mut().insert(ClientAddr(addr));
    let secure = state.config.serves_tls();

    let decision = access.table.decide(&method, route.as_deref());
    if decision == Decision::Public {
        if is_mutation(&method) {
            if let Some(reason) = cross_site_reason(request.headers(), &state.config.public_url) {
                return WebError::Forbidden(format!(
                    "refused {reason}: submit the form from this console"
                ))
                .into_response();
            }
        }
        return next.run(request).await;
    }

    let principal = match resolve(state, request.headers(), addr).await {
        Ok(Resolved::Principal(principal)) => principal,
        Ok(Resolved::BadToken) => {
            let mut response = WebError::Unauthorized.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"harbormaster\", error=\"invalid_token\""),
            );
            return response;
        }
        Ok(Resolved::Anonymous { stale_cookie }) => {
            let mut response = if is_machine_path(&path) {
                let mut response = WebError::Unauthorized.into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"harbormaster\""),
                );
                response
            } else if is_mutation(&method) {
                Redirect::to("/login").into_response()
            } else {
                let target = match request.uri().query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.clone(),
                };
                Redirect::to(&login_url(&target)).into_response()
            };
            if stale_cookie {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, clear_session_cookie(secure));
            }
            return response;
        }
        Err(err) => return WebError::from(err).into_response(),
    };

    let required = match decision {
        Decision::Public => unreachable!("handled above"),
        Decision::Require(role) => role,
        Decision::MethodNotAllowed => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Decision::NoPolicy => {
            let route = route.unwrap_or_default();
            tracing::error!(
                %method, route,
                "a mutating route has no entry in web::route_policies(); refusing it"
            );
            audit_denial(state, &principal, &method, &path, "no access policy", None).await;
            return WebError::Forbidden(format!(
                "{method} {route} has no access policy: add a RoutePolicy for it to its area's POLICIES (see web::route_policies)"
            ))
            .into_response();
        }
    };

    let ci_allowed = method == Method::POST && path.starts_with("/api/v1/events/");
    let denied = if principal.role == Role::Ci && !ci_allowed {
        Some(AccessDenied::new(&principal, Role::Ci))
    } else {
        principal.require(required).err()
    };
    if let Some(denied) = denied {
        audit_denial(
            state,
            &principal,
            &method,
            &path,
            "role too low",
            Some(required),
        )
        .await;
        return WebError::from(denied).into_response();
    }

    let mutation = is_mutation(&method);
    if mutation && principal.kind == PrincipalKind::Session {
        if let Some(reason) = cross_site_reason(request.headers(), &state.config.public_url) {
            audit_denial(state, &principal, &method, &path, &reason, None).await;
            return WebError::Forbidden(format!(
                "refused {reason}: submit the form from this console"
            ))
            .into_response();
        }
        let expected = principal.csrf.clone().unwrap_or_default();
        let (checked, presented) = match presented_csrf(request, state.config.body_limit).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        request = checked;
        let valid = presented.is_some_and(|presented| {
            !expected.is_empty()
                && auth::constant_time_eq(presented.as_bytes(), expected.as_bytes())
        });
        if !valid {
            audit_denial(
                state,
                &principal,
                &method,
                &path,
                "missing or wrong CSRF token",
                None,
            )
            .await;
            return WebError::Forbidden(
                "this form has expired or did not come from this console (missing or wrong CSRF token); reload the page and try again".into(),
            )
            .into_response();
        }
    }

    request.extensions_mut().insert(principal.clone());
    let (mut response, written) = audit::counted(next.run(request)).await;
    let status = response.status();
    if mutation && written == 0 && (status.is_success() || status.is_redirection()) {
        tracing::warn!(
            %method, path,
            "a mutation recorded nothing in the audit log; recording a generic row"
        );
        let result = audit::record(
            &state.pool,
            &principal,
            "http.mutation",
            &format!("{method} {path}"),
            Outcome::Success,
            principal.client_addr,
            json!({ "route": route, "status": status.as_u16() }),
        )
        .await;
        if let Err(err) = result {
            tracing::error!(%err, "cannot record a mutation in the audit log");
        }
    }
    // Error pages are rendered further out; they read the principal from here to show the
    // user and the sign-out form.
    response.extensions_mut().insert(principal);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn next_must_be_a_path_on_this_site() {
        assert_eq!(safe_next(Some("/workloads?team=a")), "/workloads?team=a");
        for evil in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/login?next=/x",
            "/ok\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            login_url("/admin/users?x=a b&y"),
            "/login?next=/admin/users%3Fx%3Da%20b%26y"
        );
        assert_eq!(login_url("/"), "/login");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.1.1.1")]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_addr(Some(proxy), &h, &trusted),
            Some("198.51.100.4".parse().unwrap()),
            "the right-most untrusted hop, not the spoofable left-most"
        );
        assert_eq!(client_addr(Some(stranger), &h, &trusted), Some(stranger));
        assert_eq!(client_addr(Some(proxy), &h, &[]), Some(proxy));
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, nonsense")]);
        assert_eq!(client_addr(Some(proxy), &garbage, &trusted), Some(proxy));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let public = "http://127.0.0.1:8080";
        let same = headers(&[
            ("origin", "http://hm.local:9000"),
            ("host", "hm.local:9000"),
        ]);
        assert_eq!(cross_site_reason(&same, public), None);
        let configured = headers(&[("origin", "http://127.0.0.1:8080"), ("host", "10.0.0.1")]);
        assert_eq!(cross_site_reason(&configured, public), None);
        let evil = headers(&[
            ("origin", "https://evil.example"),
            ("host", "hm.local:9000"),
        ]);
        assert!(cross_site_reason(&evil, public).is_some());
        let null = headers(&[("origin", "null"), ("host", "hm.local")]);
        assert!(cross_site_reason(&null, public).is_some());
        let fetch = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(cross_site_reason(&fetch, public).is_some());
        let sibling = headers(&[("sec-fetch-site", "same-site")]);
        assert!(cross_site_reason(&sibling, public).is_some());
        assert_eq!(
            cross_site_reason(&headers(&[("sec-fetch-site", "same-origin")]), public),
            None
        );
        assert_eq!(cross_site_reason(&HeaderMap::new(), public), None);
    }

    #[test]
    fn the_csrf_field_is_found_in_forms() {
        assert_eq!(
            urlencoded_field(b"name=a%20b&csrf=abc-_12&x=", "csrf").as_deref(),
            Some("abc-_12")
        );
        assert_eq!(urlencoded_field(b"csrfx=1", "csrf"), None);
        let body = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.json\"\r\n\r\n{\"csrf\":1}\r\n--XYZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok123\r\n--XYZ--\r\n";
        assert_eq!(
            multipart_field(body, "XYZ", "csrf").as_deref(),
            Some("tok123")
        );
        let h = headers(&[("content-type", "multipart/form-data; boundary=\"XYZ\"")]);
        assert_eq!(multipart_boundary(&h).as_deref(), Some("XYZ"));
    }

    #[test]
    fn cookies_are_read_by_name_and_set_with_the_safe_attributes() {
        let h = headers(&[("cookie", "a=1; hm_session=tok; b=2")]);
        assert_eq!(read_cookie(&h, "hm_session"), Some("tok"));
        assert_eq!(read_cookie(&h, "c"), None);
        let set = session_cookie("tok", Duration::from_secs(60), true);
        assert_eq!(
            set.to_str().unwrap(),
            "hm_session=tok; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert!(!session_cookie("t", Duration::from_secs(1), false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
