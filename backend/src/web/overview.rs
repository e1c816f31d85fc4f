//! The overview page. Until the inventory lands it says what is configured.

use askama::Template;
use axum::extract::State;
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

use super::page::PageContext;
use super::{AppState, RoutePolicy, WebError};
use crate::auth::Role;
use crate::db;

pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::role(Method::GET, "/", Role::Viewer)];

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(get_overview))
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    ctx: PageContext,
    database: String,
    database_ready: Result<(), String>,
    public_url: String,
    config_file: Option<String>,
    docker_endpoints: Vec<String>,
    kubeconfig: Option<String>,
    kube_contexts: Vec<String>,
}

async fn get_overview(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    let config = &state.config;
    let page = OverviewPage {
        ctx: ctx.titled("Overview").active("/"),
        database: config.database_display(),
        database_ready: db::readiness(&state.pool).await,
        public_url: config.public_url.clone(),
        config_file: config
            .config_file
            .as_ref()
            .map(|path| path.display().to_string()),
        docker_endpoints: config
            .docker_endpoints
            .iter()
            .map(|endpoint| crate::config::redact_url(endpoint))
            .collect(),
        kubeconfig: config
            .kubeconfig
            .as_ref()
            .map(|path| path.display().to_string()),
        kube_contexts: config.kube_contexts.clone(),
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}
