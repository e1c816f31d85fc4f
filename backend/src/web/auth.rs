//! Signing in and out, the first-admin setup page, and the admin pages for users, API tokens
//! and the audit log (with its CSV export).

use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::access::{
    clear_session_cookie, read_cookie, safe_next, session_cookie, Admin, ClientAddr, RequireRole,
    RoutePolicy,
};
use super::page::PageContext;
use super::{AppState, WebError};
use crate::auth::audit::{self, AuditEntry, AuditFilter, Outcome};
use crate::auth::login::{self, LoginError};
use crate::auth::setup::{self, SetupError};
use crate::auth::tokens::{self, ApiToken};
use crate::auth::users::{self, User};
use crate::auth::{sessions, AuthError, Principal, Role};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(get_login).post(post_login))
        .route("/logout", post(post_logout))
        .route("/setup/{token}", get(get_setup).post(post_setup))
        .route("/api/v1/me", get(get_me))
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/users/{id}/role", post(set_user_role))
        .route("/admin/users/{id}/password", post(reset_user_password))
        .route("/admin/users/{id}/disable", post(disable_user))
        .route("/admin/users/{id}/enable", post(enable_user))
        .route("/admin/tokens", get(list_tokens).post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/audit", get(list_audit))
        .route("/admin/audit.csv", get(export_audit))
        .route("/api/v1/audit", get(list_audit_json))
}

/// Who may call each route of this module.
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::public(Method::GET, "/login"),
    RoutePolicy::public(Method::POST, "/login"),
    RoutePolicy::public(Method::GET, "/setup/{token}"),
    RoutePolicy::public(Method::POST, "/setup/{token}"),
    RoutePolicy::role(Method::POST, "/logout", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/me", Role::Viewer),
    RoutePolicy::role(Method::GET, "/admin/users", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/users", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/users/{id}/role", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/users/{id}/password", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/users/{id}/disable", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/users/{id}/enable", Role::Admin),
    RoutePolicy::role(Method::GET, "/admin/tokens", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/tokens", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/tokens/{id}/revoke", Role::Admin),
    RoutePolicy::role(Method::GET, "/admin/audit", Role::Admin),
    RoutePolicy::role(Method::GET, "/admin/audit.csv", Role::Admin),
    RoutePolicy::role(Method::GET, "/api/v1/audit", Role::Admin),
];

/// How many audit rows one page shows.
const AUDIT_PAGE: i64 = 100;
/// The most rows one export or API call returns.
const AUDIT_EXPORT_MAX: i64 = 100_000;
const AUDIT_API_MAX: i64 = 1000;

fn render(template: &impl Template) -> Result<Html<String>, WebError> {
    Ok(Html(template.render().map_err(anyhow::Error::from)?))
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn maybe_time(at: &Option<DateTime<Utc>>) -> String {
    at.as_ref().map_or_else(|| "never".to_string(), time)
}

/// Records a refused change (bad input, a conflict) as a failure; a failure to record is logged.
async fn record_failure(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    err: &AuthError,
) {
    if let Err(record_err) = audit::record(
        &state.pool,
        principal,
        action,
        target,
        Outcome::Failure,
        principal.client_addr,
        json!({ "error": err.to_string() }),
    )
    .await
    {
        tracing::error!(%record_err, "cannot record a failed change in the audit log");
    }
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: PageContext,
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn get_login(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref());
    if let Some(cookie) = read_cookie(&headers, sessions::COOKIE) {
        if sessions::resolve(&state.pool, cookie, state.config.auth.session_idle)
            .await?
            .is_some()
        {
            return Ok(Redirect::to(&next).into_response());
        }
    }
    Ok(render(&LoginPage {
        ctx: ctx.titled("Sign in"),
        next,
        name: String::new(),
        error: None,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// Starts a session for `user`, ending the one the browser had (the session id changes at
/// every sign-in), and answers with a redirect that sets the cookie.
async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    client_addr: Option<std::net::IpAddr>,
    to: &str,
) -> Result<Response, WebError> {
    if let Some(previous) = read_cookie(headers, sessions::COOKIE) {
        sessions::delete(&state.pool, previous).await?;
    }
    sessions::prune(&state.pool, state.config.auth.session_idle).await?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let session = sessions::create(
        &state.pool,
        user.id,
        state.config.auth.session_absolute,
        client_addr,
        user_agent,
    )
    .await?;
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(
            &session.token,
            state.config.auth.session_absolute,
            state.config.serves_tls(),
        ),
    );
    Ok(response)
}

async fn post_login(
    State(state): State<AppState>,
    ctx: PageContext,
    ClientAddr(client_addr): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let next = safe_next(form.next.as_deref());
    match login::authenticate(&state.pool, &form.name, &form.password, client_addr).await {
        Ok(user) => start_session(&state, &headers, &user, client_addr, &next).await,
        Err(LoginError::Db(err)) => Err(err.into()),
        Err(err) => {
            let (status, retry_after) = match &err {
                LoginError::Throttled(throttled) => {
                    (StatusCode::TOO_MANY_REQUESTS, Some(throttled.seconds()))
                }
                _ => (StatusCode::UNAUTHORIZED, None),
            };
            let page = render(&LoginPage {
                ctx: ctx.titled("Sign in"),
                next,
                name: form.name.trim().chars().take(64).collect(),
                error: Some(err.to_string()),
            })?;
            let mut response = (status, page).into_response();
            if let Some(secs) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs.to_string()).expect("digits"),
                );
            }
            Ok(response)
        }
    }
}

async fn post_logout(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if let Some(cookie) = read_cookie(&headers, sessions::COOKIE) {
        sessions::delete(&state.pool, cookie).await?;
    }
    audit::record(
        &state.pool,
        &principal,
        "auth.logout",
        &format!("user {}", principal.name),
        Outcome::Success,
        principal.client_addr,
        json!({}),
    )
    .await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        clear_session_cookie(state.config.serves_tls()),
    );
    Ok(response)
}

/// Who the caller is: `{"name", "role", "kind"}`.
async fn get_me(principal: Principal) -> Json<serde_json::Value> {
    Json(json!({
        "name": principal.name,
        "role": principal.role,
        "kind": principal.kind,
    }))
}

// ---------------------------------------------------------------------------------------------
// The first admin

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    ctx: PageContext,
    token: String,
    name: String,
    error: Option<String>,
    min_length: usize,
}

async fn get_setup(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(token): Path<String>,
) -> Result<Html<String>, WebError> {
    if !setup::is_valid(&state.pool, &token).await? {
        return Err(WebError::NotFound(SetupError::InvalidLink.to_string()));
    }
    render(&SetupPage {
        ctx: ctx.titled("Create the first admin"),
        token,
        name: String::new(),
        error: None,
        min_length: crate::auth::password::MIN_LENGTH,
    })
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn post_setup(
    State(state): State<AppState>,
    ctx: PageContext,
    ClientAddr(client_addr): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<SetupForm>,
) -> Result<Response, WebError> {
    let again = |ctx: PageContext, error: String| -> Result<Response, WebError> {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&SetupPage {
                ctx: ctx.titled("Create the first admin"),
                token: token.clone(),
                name: form.name.trim().chars().take(64).collect(),
                error: Some(error),
                min_length: crate::auth::password::MIN_LENGTH,
            })?,
        )
            .into_response())
    };
    if form.password != form.confirm {
        return again(ctx, "the two passwords differ".into());
    }
    match setup::complete(&state.pool, &token, &form.name, &form.password, client_addr).await {
        Ok(user) => start_session(&state, &headers, &user, client_addr, "/").await,
        Err(SetupError::Auth(AuthError::Invalid(message))) => again(ctx, message),
        Err(SetupError::InvalidLink) => {
            Err(WebError::NotFound(SetupError::InvalidLink.to_string()))
        }
        Err(SetupError::AlreadyDone) => {
            Err(WebError::Conflict(SetupError::AlreadyDone.to_string()))
        }
        Err(SetupError::Auth(err)) => Err(err.into()),
        Err(SetupError::Db(err)) => Err(err.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Users

struct UserRow {
    id: i64,
    name: String,
    role: Role,
    disabled: bool,
    created_at: String,
    last_login_at: String,
    is_self: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    ctx: PageContext,
    users: Vec<UserRow>,
    roles: [Role; 3],
    notice: Option<&'static str>,
    error: Option<String>,
    form_name: String,
    form_role: Role,
    min_length: usize,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

fn user_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "The user was created.",
        "role" => "The role was changed.",
        "password" => "The password was reset and the user's sessions were ended.",
        "disabled" => "The user was disabled and signed out everywhere.",
        "enabled" => "The user was enabled.",
        _ => return None,
    })
}

async fn users_page(
    state: &AppState,
    principal: &Principal,
    ctx: PageContext,
    notice: Option<&'static str>,
    error: Option<String>,
    form: Option<(&str, Role)>,
) -> Result<Html<String>, WebError> {
    let users = users::list(&state.pool)
        .await?
        .into_iter()
        .map(|user| UserRow {
            is_self: user.id == principal.id
                && principal.kind == crate::auth::PrincipalKind::Session,
            created_at: time(&user.created_at),
            last_login_at: maybe_time(&user.last_login_at),
            id: user.id,
            name: user.name,
            role: user.role,
            disabled: user.disabled,
        })
        .collect();
    let (form_name, form_role) = form.unwrap_or(("", Role::Viewer));
    render(&UsersPage {
        ctx: ctx.titled("Users").active("/admin/users"),
        users,
        roles: Role::HUMAN,
        notice,
        error,
        form_name: form_name.chars().take(64).collect(),
        form_role,
        min_length: crate::auth::password::MIN_LENGTH,
    })
}

async fn list_users(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Query(query): Query<NoticeQuery>,
) -> Result<Html<String>, WebError> {
    users_page(
        &state,
        &principal,
        ctx,
        user_notice(query.done.as_deref()),
        None,
        None,
    )
    .await
}

#[derive(Deserialize)]
struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

fn parse_role(text: &str) -> Result<Role, AuthError> {
    text.parse::<Role>()
        .map_err(|err| AuthError::Invalid(err.to_string()))
}

async fn create_user(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Form(form): Form<NewUserForm>,
) -> Result<Response, WebError> {
    let name = form.name.trim();
    let target = format!("user {}", name.chars().take(64).collect::<String>());
    let result = async {
        let role = parse_role(&form.role)?;
        let mut tx = state.pool.begin().await?;
        let user = users::create(&mut *tx, name, role, &form.password).await?;
        audit::record(
            &mut *tx,
            &principal,
            "user.create",
            &format!("user {}", user.name),
            Outcome::Success,
            principal.client_addr,
            json!({ "role": user.role }),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AuthError>(user)
    }
    .await;
    match result {
        Ok(_) => Ok(Redirect::to("/admin/users?done=created").into_response()),
        Err(err @ (AuthError::Invalid(_) | AuthError::UserExists(_))) => {
            record_failure(&state, &principal, "user.create", &target, &err).await;
            let status = match err {
                AuthError::UserExists(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let role = form.role.parse().unwrap_or(Role::Viewer);
            let page = users_page(
                &state,
                &principal,
                ctx,
                None,
                Some(err.to_string()),
                Some((name, role)),
            )
            .await?;
            Ok((status, page).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn set_user_role(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
    Form(form): Form<RoleForm>,
) -> Result<Redirect, WebError> {
    let result = async {
        let role = parse_role(&form.role)?;
        let mut tx = state.pool.begin().await?;
        let before = users::get(&mut *tx, id).await?;
        let user = users::set_role(&mut tx, id, role).await?;
        audit::record(
            &mut *tx,
            &principal,
            "user.role",
            &format!("user {}", user.name),
            Outcome::Success,
            principal.client_addr,
            json!({ "from": before.role, "to": user.role }),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AuthError>(())
    }
    .await;
    finish_user_change(&state, &principal, "user.role", id, result, "role").await
}

/// Redirects back to the users page after a change, or records the failure and shows it.
async fn finish_user_change(
    state: &AppState,
    principal: &Principal,
    action: &str,
    id: i64,
    result: Result<(), AuthError>,
    done: &str,
) -> Result<Redirect, WebError> {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/admin/users?done={done}"))),
        Err(err) => {
            let target = match users::get(&state.pool, id).await {
                Ok(user) => format!("user {}", user.name),
                Err(_) => format!("user id {id}"),
            };
            if !matches!(err, AuthError::Db(_) | AuthError::Hashing(_)) {
                record_failure(state, principal, action, &target, &err).await;
            }
            Err(err.into())
        }
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn reset_user_password(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
    Form(form): Form<PasswordForm>,
) -> Result<Redirect, WebError> {
    let result = async {
        let mut tx = state.pool.begin().await?;
        let user = users::set_password(&mut tx, id, &form.password).await?;
        audit::record(
            &mut *tx,
            &principal,
            "user.password",
            &format!("user {}", user.name),
            Outcome::Success,
            principal.client_addr,
            json!({ "sessions_ended": true }),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AuthError>(())
    }
    .await;
    finish_user_change(&state, &principal, "user.password", id, result, "password").await
}

async fn change_disabled(
    state: &AppState,
    principal: &Principal,
    id: i64,
    disabled: bool,
) -> Result<Redirect, WebError> {
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let result = async {
        if disabled && id == principal.id && principal.kind == crate::auth::PrincipalKind::Session {
            return Err(AuthError::Conflict(
                "you cannot disable your own account; ask another admin".into(),
            ));
        }
        let mut tx = state.pool.begin().await?;
        let user = users::set_disabled(&mut tx, id, disabled).await?;
        audit::record(
            &mut *tx,
            principal,
            action,
            &format!("user {}", user.name),
            Outcome::Success,
            principal.client_addr,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AuthError>(())
    }
    .await;
    let done = if disabled { "disabled" } else { "enabled" };
    finish_user_change(state, principal, action, id, result, done).await
}

async fn disable_user(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Redirect, WebError> {
    change_disabled(&state, &principal, id, true).await
}

async fn enable_user(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Redirect, WebError> {
    change_disabled(&state, &principal, id, false).await
}

// ---------------------------------------------------------------------------------------------
// API tokens

struct TokenRow {
    id: i64,
    name: String,
    role: Role,
    created_by: String,
    created_at: String,
    last_used_at: String,
    revoked: Option<String>,
}

impl From<ApiToken> for TokenRow {
    fn from(token: ApiToken) -> Self {
        Self {
            id: token.id,
            created_at: time(&token.created_at),
            last_used_at: maybe_time(&token.last_used_at),
            revoked: token.revoked_at.as_ref().map(|at| {
                format!(
                    "{} by {}",
                    time(at),
                    token.revoked_by.as_deref().unwrap_or("?")
                )
            }),
            name: token.name,
            role: token.role,
            created_by: token.created_by,
        }
    }
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    ctx: PageContext,
    tokens: Vec<TokenRow>,
    roles: [Role; 4],
    notice: Option<&'static str>,
    error: Option<String>,
    form_name: String,
    form_role: Role,
}

#[derive(Template)]
#[template(path = "token_created.html")]
struct TokenCreatedPage {
    ctx: PageContext,
    name: String,
    role: Role,
    secret: String,
    example_url: String,
}

async fn tokens_page(
    state: &AppState,
    ctx: PageContext,
    notice: Option<&'static str>,
    error: Option<String>,
    form: Option<(&str, Role)>,
) -> Result<Html<String>, WebError> {
    let tokens = tokens::list(&state.pool)
        .await?
        .into_iter()
        .map(TokenRow::from)
        .collect();
    let (form_name, form_role) = form.unwrap_or(("", Role::Viewer));
    render(&TokensPage {
        ctx: ctx.titled("API tokens").active("/admin/tokens"),
        tokens,
        roles: Role::ALL,
        notice,
        error,
        form_name: form_name.chars().take(64).collect(),
        form_role,
    })
}

async fn list_tokens(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    ctx: PageContext,
    Query(query): Query<NoticeQuery>,
) -> Result<Html<String>, WebError> {
    let notice = match query.done.as_deref() {
        Some("revoked") => Some("The token was revoked; it no longer works."),
        _ => None,
    };
    tokens_page(&state, ctx, notice, None, None).await
}

#[derive(Deserialize)]
struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

async fn create_token(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Form(form): Form<NewTokenForm>,
) -> Result<Response, WebError> {
    let name = form.name.trim();
    let result = async {
        let role = parse_role(&form.role)?;
        let mut tx = state.pool.begin().await?;
        let created = tokens::create(&mut *tx, name, role, &principal.name).await?;
        audit::record(
            &mut *tx,
            &principal,
            "token.create",
            &format!("token {}", created.token.name),
            Outcome::Success,
            principal.client_addr,
            json!({ "role": created.token.role }),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, AuthError>(created)
    }
    .await;
    match result {
        Ok(created) => {
            let page = render(&TokenCreatedPage {
                ctx: ctx.titled("Token created").active("/admin/tokens"),
                name: created.token.name,
                role: created.token.role,
                secret: created.secret,
                example_url: format!("{}/api/v1/me", state.config.public_url),
            })?;
            // The secret is on this page only: keep it out of every cache.
            Ok((
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                page,
            )
                .into_response())
        }
        Err(err @ (AuthError::Invalid(_) | AuthError::TokenExists(_))) => {
            let target = format!("token {}", name.chars().take(64).collect::<String>());
            record_failure(&state, &principal, "token.create", &target, &err).await;
            let status = match err {
                AuthError::TokenExists(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let role = form.role.parse().unwrap_or(Role::Viewer);
            let page =
                tokens_page(&state, ctx, None, Some(err.to_string()), Some((name, role))).await?;
            Ok((status, page).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Redirect, WebError> {
    let mut tx = state.pool.begin().await?;
    let token = tokens::revoke(&mut *tx, id, &principal.name).await?;
    audit::record(
        &mut *tx,
        &principal,
        "token.revoke",
        &format!("token {}", token.name),
        Outcome::Success,
        principal.client_addr,
        json!({ "role": token.role }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/tokens?done=revoked"))
}

// ---------------------------------------------------------------------------------------------
// The audit log

struct AuditRow {
    at: String,
    actor: String,
    actor_kind: String,
    action: String,
    target: String,
    outcome: String,
    client_addr: String,
    details: String,
}

impl From<AuditEntry> for AuditRow {
    fn from(entry: AuditEntry) -> Self {
        Self {
            at: time(&entry.at),
            actor: entry.actor,
            actor_kind: entry.actor_kind,
            action: entry.action,
            target: entry.target,
            outcome: entry.outcome,
            client_addr: entry.client_addr.unwrap_or_default(),
            details: details_text(&entry.details),
        }
    }
}

fn details_text(details: &serde_json::Value) -> String {
    match details {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    ctx: PageContext,
    rows: Vec<AuditRow>,
    actor: String,
    action: String,
    outcome: String,
    outcomes: [Outcome; 3],
    older: Option<String>,
    export: String,
}

/// A query string for the audit filters, with `before` for the next page.
fn audit_query(filter: &AuditFilter, before: Option<i64>) -> String {
    let encode = |value: &str| {
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut query = String::new();
    for (key, value) in [
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("outcome", &filter.outcome),
    ] {
        if let Some(value) = value {
            let _ = write!(query, "&{key}={}", encode(value));
        }
    }
    if let Some(before) = before {
        let _ = write!(query, "&before={before}");
    }
    query.trim_start_matches('&').to_string()
}

fn check_outcome(filter: &AuditFilter) -> Result<(), WebError> {
    match filter.outcome.as_deref() {
        Some(outcome) if Outcome::parse(outcome.trim()).is_none() => Err(WebError::BadRequest(
            format!("'{outcome}' is not an outcome; expected success, failure or denied"),
        )),
        _ => Ok(()),
    }
}

async fn list_audit(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    ctx: PageContext,
    Query(filter): Query<AuditFilter>,
) -> Result<Html<String>, WebError> {
    let filter = AuditFilter {
        limit: Some(AUDIT_PAGE + 1),
        ..filter.normalized()
    };
    check_outcome(&filter)?;
    let mut entries = audit::list(&state.pool, &filter, AUDIT_PAGE + 1).await?;
    let older = if entries.len() as i64 > AUDIT_PAGE {
        entries.truncate(AUDIT_PAGE as usize);
        entries
            .last()
            .map(|last| format!("/admin/audit?{}", audit_query(&filter, Some(last.id))))
    } else {
        None
    };
    let export_query = audit_query(&filter, None);
    render(&AuditPage {
        ctx: ctx.titled("Audit log").active("/admin/audit"),
        rows: entries.into_iter().map(AuditRow::from).collect(),
        actor: filter.actor.clone().unwrap_or_default(),
        action: filter.action.clone().unwrap_or_default(),
        outcome: filter.outcome.clone().unwrap_or_default(),
        outcomes: Outcome::ALL,
        older,
        export: if export_query.is_empty() {
            "/admin/audit.csv".to_string()
        } else {
            format!("/admin/audit.csv?{export_query}")
        },
    })
}

/// One CSV field: quoted when needed, and a leading `=`, `+`, `-`, `@` (or tab / CR) defused
/// so that a spreadsheet never evaluates attacker-chosen text as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

async fn export_audit(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, WebError> {
    let filter = AuditFilter {
        limit: None,
        before: None,
        ..filter.normalized()
    };
    check_outcome(&filter)?;
    let entries = audit::list(&state.pool, &filter, AUDIT_EXPORT_MAX).await?;
    let mut out =
        String::from("id,at,actor,actor_kind,action,target,outcome,client_addr,details\r\n");
    for entry in &entries {
        let fields = [
            entry.id.to_string(),
            entry.at.to_rfc3339(),
            entry.actor.clone(),
            entry.actor_kind.clone(),
            entry.action.clone(),
            entry.target.clone(),
            entry.outcome.clone(),
            entry.client_addr.clone().unwrap_or_default(),
            details_text(&entry.details),
        ];
        let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    audit::record(
        &state.pool,
        &principal,
        "audit.export",
        "audit log",
        Outcome::Success,
        principal.client_addr,
        json!({ "rows": entries.len(), "filter": audit_query(&filter, None) }),
    )
    .await?;
    let filename = format!(
        "attachment; filename=\"harbormaster-audit-{}.csv\"",
        Utc::now().format("%Y%m%d-%H%M%S")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&filename).expect("ascii"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        out,
    )
        .into_response())
}

/// `GET /api/v1/audit?actor=&action=&outcome=&since=&before=&limit=`: newest first;
/// `next_before` pages on.
async fn list_audit_json(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<serde_json::Value>, WebError> {
    let filter = filter.normalized();
    check_outcome(&filter)?;
    let limit = filter.limit.unwrap_or(100).clamp(1, AUDIT_API_MAX);
    let entries = audit::list(
        &state.pool,
        &AuditFilter {
            limit: Some(limit),
            ..filter
        },
        AUDIT_API_MAX,
    )
    .await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|entry| entry.id))
        .flatten();
    Ok(Json(
        json!({ "items": entries, "next_before": next_before }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn audit_filters_survive_into_the_next_page_link() {
        let filter = AuditFilter {
            actor: Some("a b&c".into()),
            action: Some("user.".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            audit_query(&filter, Some(42)),
            "actor=a%20b%26c&action=user%2E&before=42"
        );
    }
}
