//! Notification channels, routes and the delivery queue: the API
//! (`/api/v1/notification-channels`, `/api/v1/notification-routes`,
//! `/api/v1/notification-deliveries`) and the admin page `/admin/notifications` with its dead
//! letters and their retry button.
//!
//! Reading channels and routes needs a viewer (secrets are masked); every change, and the queue,
//! needs an admin. Every change is audited (`notification.channel.create`, …), success or
//! failure; an audit row never holds a secret.

use askama::Template;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{Admin, RequireRole, RoutePolicy};
use super::json::ApiJson;
use super::page::PageContext;
use super::{AppState, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, Role};
use crate::config::Secret;
use crate::notify::store::{self, ChannelView, DeliveryView, Route};
use crate::notify::{
    ChannelInput, NotifyError, RouteInput, AUDIENCES, EVENTS, KINDS, SEVERITIES, SMTP_SECURITY,
};

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/notification-channels", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/notification-channels", Role::Admin),
    RoutePolicy::role(
        Method::DELETE,
        "/api/v1/notification-channels/{id}",
        Role::Admin,
    ),
    RoutePolicy::role(Method::GET, "/api/v1/notification-routes", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/notification-routes", Role::Admin),
    RoutePolicy::role(
        Method::DELETE,
        "/api/v1/notification-routes/{id}",
        Role::Admin,
    ),
    RoutePolicy::role(Method::GET, "/api/v1/notification-deliveries", Role::Admin),
    RoutePolicy::role(
        Method::POST,
        "/api/v1/notification-deliveries/{id}/retry",
        Role::Admin,
    ),
    RoutePolicy::role(Method::GET, "/admin/notifications", Role::Admin),
    RoutePolicy::role(Method::POST, "/admin/notifications/channels", Role::Admin),
    RoutePolicy::role(
        Method::POST,
        "/admin/notifications/channels/{id}/delete",
        Role::Admin,
    ),
    RoutePolicy::role(Method::POST, "/admin/notifications/routes", Role::Admin),
    RoutePolicy::role(
        Method::POST,
        "/admin/notifications/routes/{id}/delete",
        Role::Admin,
    ),
    RoutePolicy::role(
        Method::POST,
        "/admin/notifications/deliveries/{id}/retry",
        Role::Admin,
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/notification-channels",
            get(list_channels_json).post(create_channel_json),
        )
        .route(
            "/api/v1/notification-channels/{id}",
            axum::routing::delete(delete_channel_json),
        )
        .route(
            "/api/v1/notification-routes",
            get(list_routes_json).post(create_route_json),
        )
        .route(
            "/api/v1/notification-routes/{id}",
            axum::routing::delete(delete_route_json),
        )
        .route("/api/v1/notification-deliveries", get(list_deliveries_json))
        .route(
            "/api/v1/notification-deliveries/{id}/retry",
            post(retry_json),
        )
        .route("/admin/notifications", get(page))
        .route("/admin/notifications/channels", post(create_channel_form))
        .route(
            "/admin/notifications/channels/{id}/delete",
            post(delete_channel_form),
        )
        .route("/admin/notifications/routes", post(create_route_form))
        .route(
            "/admin/notifications/routes/{id}/delete",
            post(delete_route_form),
        )
        .route(
            "/admin/notifications/deliveries/{id}/retry",
            post(retry_form),
        )
}

impl From<NotifyError> for WebError {
    fn from(err: NotifyError) -> Self {
        match err {
            NotifyError::Invalid(message) => Self::Unprocessable(message),
            NotifyError::NotFound(what) => Self::NotFound(format!("no such {what}")),
            NotifyError::Conflict(message) => Self::Conflict(message),
            NotifyError::Database(err) => err.into(),
        }
    }
}

/// Runs one change in a transaction and audits it: on success with the change, on a refusal
/// (bad input, conflict, not found) as a failure of its own.
async fn audited<T, F>(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    details: Value,
    change: F,
) -> Result<T, WebError>
where
    F: for<'c> FnOnce(
        &'c mut sqlx::PgConnection,
    ) -> futures::future::BoxFuture<'c, Result<(T, String), NotifyError>>,
{
    let mut tx = state.pool.begin().await?;
    match change(&mut tx).await {
        Ok((value, target)) => {
            audit::record(
                &mut *tx,
                principal,
                action,
                &target,
                Outcome::Success,
                principal.client_addr,
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(err @ NotifyError::Database(_)) => Err(err.into()),
        Err(err) => {
            drop(tx);
            audit::record(
                &state.pool,
                principal,
                action,
                target,
                Outcome::Failure,
                principal.client_addr,
                json!({"request": details, "error": err.to_string()}),
            )
            .await?;
            Err(err.into())
        }
    }
}

/// The audit details of a channel: never its URL, key or password.
fn channel_details(input: &ChannelInput) -> Value {
    json!({
        "kind": input.kind,
        "team": input.team,
        "smtp_host": input.smtp_host,
        "mail_to": input.mail_to,
    })
}

fn route_details(input: &RouteInput) -> Value {
    json!({
        "event": input.event,
        "min_severity": input.min_severity,
        "audience": input.audience,
        "channel": input.channel,
    })
}

async fn create_channel(
    state: &AppState,
    principal: &Principal,
    input: ChannelInput,
) -> Result<ChannelView, WebError> {
    let name = input.name.trim().chars().take(64).collect::<String>();
    let creator = principal.name.clone();
    audited(
        state,
        principal,
        "notification.channel.create",
        &format!("channel {name}"),
        channel_details(&input),
        move |conn| {
            Box::pin(async move {
                let channel = store::create_channel(conn, &input, "console", &creator).await?;
                let target = format!("channel {}", channel.name);
                Ok((channel.view(), target))
            })
        },
    )
    .await
}

async fn delete_channel(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<ChannelView, WebError> {
    audited(
        state,
        principal,
        "notification.channel.delete",
        &format!("channel {id}"),
        json!({"id": id}),
        move |conn| {
            Box::pin(async move {
                let channel = store::delete_channel(conn, id).await?;
                let target = format!("channel {}", channel.name);
                Ok((channel.view(), target))
            })
        },
    )
    .await
}

async fn create_route(
    state: &AppState,
    principal: &Principal,
    input: RouteInput,
) -> Result<Route, WebError> {
    let name = input.name.trim().chars().take(64).collect::<String>();
    let creator = principal.name.clone();
    audited(
        state,
        principal,
        "notification.route.create",
        &format!("route {name}"),
        route_details(&input),
        move |conn| {
            Box::pin(async move {
                let route = store::create_route(conn, &input, "console", &creator).await?;
                let target = format!("route {}", route.name);
                Ok((route, target))
            })
        },
    )
    .await
}

async fn delete_route(state: &AppState, principal: &Principal, id: i64) -> Result<Route, WebError> {
    audited(
        state,
        principal,
        "notification.route.delete",
        &format!("route {id}"),
        json!({"id": id}),
        move |conn| {
            Box::pin(async move {
                let route = store::delete_route(conn, id).await?;
                let target = format!("route {}", route.name);
                Ok((route, target))
            })
        },
    )
    .await
}

async fn retry(state: &AppState, principal: &Principal, id: i64) -> Result<(), WebError> {
    audited(
        state,
        principal,
        "notification.delivery.retry",
        &format!("delivery {id}"),
        json!({}),
        move |conn| {
            Box::pin(async move {
                store::retry(conn, id).await?;
                Ok(((), format!("delivery {id}")))
            })
        },
    )
    .await
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, WebError> {
    payload
        .map(|Json(value)| value)
        .map_err(|err| WebError::BadRequest(err.body_text()))
}

// ---------------------------------------------------------------------------------------------
// API

async fn list_channels_json(State(state): State<AppState>) -> Result<Response, WebError> {
    let mut conn = state.pool.acquire().await?;
    let channels: Vec<ChannelView> = store::list_channels(&mut conn)
        .await?
        .iter()
        .map(store::Channel::view)
        .collect();
    Ok(ApiJson(json!({ "channels": channels })).into_response())
}

async fn create_channel_json(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    payload: Result<Json<ChannelInput>, JsonRejection>,
) -> Result<Response, WebError> {
    let input = body(payload)?;
    let view = create_channel(&state, &principal, input).await?;
    Ok((StatusCode::CREATED, ApiJson(view)).into_response())
}

async fn delete_channel_json(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let view = delete_channel(&state, &principal, id).await?;
    Ok(ApiJson(view).into_response())
}

async fn list_routes_json(State(state): State<AppState>) -> Result<Response, WebError> {
    let mut conn = state.pool.acquire().await?;
    let routes = store::list_routes(&mut conn).await?;
    Ok(ApiJson(json!({ "routes": routes })).into_response())
}

async fn create_route_json(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    payload: Result<Json<RouteInput>, JsonRejection>,
) -> Result<Response, WebError> {
    let input = body(payload)?;
    let route = create_route(&state, &principal, input).await?;
    Ok((StatusCode::CREATED, ApiJson(route)).into_response())
}

async fn delete_route_json(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let route = delete_route(&state, &principal, id).await?;
    Ok(ApiJson(route).into_response())
}

#[derive(Debug, Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list_deliveries_json(
    State(state): State<AppState>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Response, WebError> {
    let dead_only = match query.status.as_deref() {
        None | Some("") => false,
        Some("dead") => true,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "status: '{other}' is not supported; use status=dead or nothing"
            )))
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut conn = state.pool.acquire().await?;
    let deliveries = store::deliveries(&mut conn, dead_only, limit).await?;
    Ok(ApiJson(json!({ "deliveries": deliveries })).into_response())
}

async fn retry_json(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    retry(&state, &principal, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(json!({"id": id, "status": "queued"})),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// The admin page

struct DeliveryRow {
    id: i64,
    channel: String,
    route: String,
    title: String,
    item_count: i32,
    status: String,
    attempts: i32,
    last_error: String,
    created_at: String,
    next_attempt_at: String,
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

impl From<DeliveryView> for DeliveryRow {
    fn from(view: DeliveryView) -> Self {
        Self {
            id: view.id,
            channel: view.channel,
            route: view.route.unwrap_or_else(|| "(deleted)".into()),
            title: view.title,
            item_count: view.item_count,
            status: view.status,
            attempts: view.attempts,
            last_error: view.last_error.unwrap_or_default(),
            created_at: time(&view.created_at),
            next_attempt_at: time(&view.next_attempt_at),
        }
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    ctx: PageContext,
    notice: Option<&'static str>,
    error: Option<String>,
    channels: Vec<ChannelView>,
    routes: Vec<Route>,
    teams: Vec<String>,
    dead: Vec<DeliveryRow>,
    recent: Vec<DeliveryRow>,
    kinds: &'static [&'static str],
    events: &'static [&'static str],
    audiences: &'static [&'static str],
    severities: &'static [&'static str],
    securities: &'static [&'static str],
    digest_minutes: u64,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

async fn render_page(
    state: &AppState,
    ctx: PageContext,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<Html<String>, WebError> {
    let mut conn = state.pool.acquire().await?;
    let channels = store::list_channels(&mut conn)
        .await?
        .iter()
        .map(store::Channel::view)
        .collect();
    let routes = store::list_routes(&mut conn).await?;
    let teams = sqlx::query_scalar!("select name from teams order by lower(name)")
        .fetch_all(&mut *conn)
        .await?;
    let dead = store::deliveries(&mut conn, true, 100)
        .await?
        .into_iter()
        .map(DeliveryRow::from)
        .collect();
    let recent = store::deliveries(&mut conn, false, 20)
        .await?
        .into_iter()
        .map(DeliveryRow::from)
        .collect();
    let page = NotificationsPage {
        ctx: ctx.titled("Notifications").active("/admin/notifications"),
        notice,
        error,
        channels,
        routes,
        teams,
        dead,
        recent,
        kinds: &KINDS,
        events: &EVENTS,
        audiences: &AUDIENCES,
        severities: &SEVERITIES,
        securities: &SMTP_SECURITY,
        digest_minutes: state.config.notifications.digest.as_secs() / 60,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

async fn page(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    ctx: PageContext,
    Query(query): Query<NoticeQuery>,
) -> Result<Html<String>, WebError> {
    let notice = match query.done.as_deref() {
        Some("channel") => Some("The channel was saved. Its secrets are not shown again."),
        Some("channel-deleted") => Some("The channel was deleted."),
        Some("route") => Some("The route was saved."),
        Some("route-deleted") => Some("The route was deleted."),
        Some("retried") => Some("The message is queued again."),
        _ => None,
    };
    render_page(&state, ctx, notice, None).await
}

/// A refused form: the page again with the reason, and the status of the refusal.
async fn refused(state: &AppState, ctx: PageContext, err: WebError) -> Result<Response, WebError> {
    let status = err.info().status;
    match err {
        WebError::Unprocessable(message) | WebError::Conflict(message) => {
            let page = render_page(state, ctx, None, Some(message)).await?;
            Ok((status, page).into_response())
        }
        other => Err(other),
    }
}

#[derive(Deserialize)]
struct ChannelForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    signing_key: String,
    #[serde(default)]
    smtp_host: String,
    #[serde(default)]
    smtp_port: String,
    #[serde(default)]
    smtp_security: String,
    #[serde(default)]
    smtp_username: String,
    #[serde(default)]
    smtp_password: String,
    #[serde(default)]
    mail_from: String,
    #[serde(default)]
    mail_to: String,
}

fn some(text: String) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl ChannelForm {
    fn into_input(self) -> Result<ChannelInput, WebError> {
        let smtp_port = match some(self.smtp_port) {
            Some(port) => Some(port.parse::<u16>().map_err(|_| {
                WebError::Unprocessable(format!("smtp_port: '{port}' is not a port number"))
            })?),
            None => None,
        };
        Ok(ChannelInput {
            name: self.name,
            kind: self.kind,
            team: some(self.team),
            url: some(self.url).map(Secret::new),
            signing_key: some(self.signing_key).map(Secret::new),
            smtp_host: some(self.smtp_host),
            smtp_port,
            smtp_security: some(self.smtp_security),
            smtp_username: some(self.smtp_username),
            smtp_password: some(self.smtp_password).map(Secret::new),
            mail_from: some(self.mail_from),
            mail_to: self
                .mail_to
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|to| !to.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

async fn create_channel_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Form(form): Form<ChannelForm>,
) -> Result<Response, WebError> {
    let result = match form.into_input() {
        Ok(input) => create_channel(&state, &principal, input).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/admin/notifications?done=channel").into_response()),
        Err(err) => refused(&state, ctx, err).await,
    }
}

async fn delete_channel_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    match delete_channel(&state, &principal, id).await {
        Ok(_) => Ok(Redirect::to("/admin/notifications?done=channel-deleted").into_response()),
        Err(err) => refused(&state, ctx, err).await,
    }
}

#[derive(Deserialize)]
struct RouteForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    min_severity: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    channel: String,
}

async fn create_route_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Form(form): Form<RouteForm>,
) -> Result<Response, WebError> {
    let input = RouteInput {
        name: form.name,
        event: form.event,
        min_severity: some(form.min_severity),
        audience: form.audience,
        channel: some(form.channel),
    };
    match create_route(&state, &principal, input).await {
        Ok(_) => Ok(Redirect::to("/admin/notifications?done=route").into_response()),
        Err(err) => refused(&state, ctx, err).await,
    }
}

async fn delete_route_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    match delete_route(&state, &principal, id).await {
        Ok(_) => Ok(Redirect::to("/admin/notifications?done=route-deleted").into_response()),
        Err(err) => refused(&state, ctx, err).await,
    }
}

async fn retry_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<i64>,
) -> Result<Redirect, WebError> {
    retry(&state, &principal, id).await?;
    Ok(Redirect::to(
        "/admin/notifications?done=retried#dead-letters",
    ))
}
