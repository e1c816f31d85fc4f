//! `GET /api/v1/sources`: every collector source with its health (fresh / stale / down), its
//! last error, event and resync times and object counts. Source-agnostic (Docker, Kubernetes).

use crate::auth::Role;
use crate::web::RoutePolicy;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::json::ApiJson;
use super::{AppState, WebError};
use crate::inventory::sources::{self, Health};

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::role(
    Method::GET,
    "/api/v1/sources",
    Role::Viewer,
)];

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/sources", get(list_sources))
}

/// One source as the API shows it.
#[derive(Debug, Serialize)]
pub struct SourceView {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub endpoint: String,
    pub health: Health,
    pub connected: bool,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_resync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub counts: Value,
}

#[derive(Debug, Serialize)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}

/// A source is stale when its last full resync is older than two reconcile intervals.
async fn list_sources(State(state): State<AppState>) -> Result<ApiJson<SourceList>, WebError> {
    let stale_after = chrono::Duration::from_std(state.config.docker_reconcile_interval * 2)
        .unwrap_or(chrono::Duration::minutes(10));
    let now = Utc::now();
    let sources = sources::list(&state.pool)
        .await?
        .into_iter()
        .map(|source| SourceView {
            health: source.health(now, stale_after),
            id: source.id,
            kind: source.kind,
            name: source.name,
            endpoint: source.endpoint,
            connected: source.connected,
            last_event_at: source.last_event_at,
            last_resync_at: source.last_resync_at,
            last_error: source.last_error,
            last_error_at: source.last_error_at,
            counts: source.counts,
        })
        .collect();
    Ok(ApiJson(SourceList { sources }))
}
