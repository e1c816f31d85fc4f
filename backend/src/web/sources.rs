//! `GET /api/v1/sources`: every collector source with its health (fresh / stale / down), its
//! last error, event and resync times and object counts. Source-agnostic (Docker, Kubernetes).

use crate::auth::Role;
use crate::web::RoutePolicy;
use askama::Template;
use axum::extract::State;
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::json::ApiJson;
use super::page::PageContext;
use super::{AppState, WebError};
use crate::inventory::sources::{self, Health};

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/sources", Role::Viewer),
    RoutePolicy::role(Method::GET, "/sources", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources", get(list_sources))
        .route("/sources", get(get_sources_page))
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
    /// The replica collecting the source now (several servers may share the database).
    pub collected_by: Option<String>,
    /// `containers 3 · images 2`, for the console.
    #[serde(skip)]
    pub counts_text: String,
}

#[derive(Debug, Serialize)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}

/// `{"containers": 3, "images": 2}` → `containers 3 · images 2`.
fn counts_text(counts: &Value) -> String {
    counts
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, value)| format!("{} {value}", name.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default()
}

/// Every source with its health. A source is stale when its last full resync is older than two
/// reconcile intervals.
pub async fn source_views(state: &AppState) -> Result<Vec<SourceView>, WebError> {
    let stale_after = chrono::Duration::from_std(state.config.docker_reconcile_interval * 2)
        .unwrap_or(chrono::Duration::minutes(10));
    let now = Utc::now();
    Ok(sources::list(&state.pool)
        .await?
        .into_iter()
        .map(|source| SourceView {
            health: source.health(now, stale_after),
            counts_text: counts_text(&source.counts),
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
            collected_by: source.collected_by,
        })
        .collect())
}

impl SourceView {
    /// `fresh`, `stale` or `down`.
    pub fn health_name(&self) -> &'static str {
        match self.health {
            Health::Fresh => "fresh",
            Health::Stale => "stale",
            Health::Down => "down",
        }
    }

    /// The CSS class of the health badge.
    pub fn health_class(&self) -> &'static str {
        match self.health {
            Health::Fresh => "status-ok",
            Health::Stale => "status-stale",
            Health::Down => "status-down",
        }
    }
}

async fn list_sources(State(state): State<AppState>) -> Result<ApiJson<SourceList>, WebError> {
    Ok(ApiJson(SourceList {
        sources: source_views(&state).await?,
    }))
}

/// The sources page: every collector source with its status, last event, last resync and
/// last error; what to configure when there is none.
#[derive(Template)]
#[template(path = "sources.html")]
pub struct SourcesPage {
    ctx: PageContext,
    sources: Vec<SourceView>,
    docker_configured: bool,
    kube_configured: bool,
}

async fn get_sources_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    let page = SourcesPage {
        ctx: ctx.titled("Sources").active("/sources"),
        sources: source_views(&state).await?,
        docker_configured: !state.config.docker_endpoints.is_empty(),
        kube_configured: state.config.kubeconfig.is_some(),
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}
