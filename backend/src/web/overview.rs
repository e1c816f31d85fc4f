//! The overview page: workloads by lifecycle stage (an SVG bar chart drawn here), collector
//! status per source, totals, and a compact panel of what is configured. Findings, incidents
//! and ownership join this page when those parts exist.

use askama::Template;
use axum::extract::State;
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

use super::page::PageContext;
use super::sources::{source_views, SourceView};
use super::{AppState, RoutePolicy, WebError};
use crate::auth::Role;
use crate::db;
use crate::inventory::query;
use crate::lifecycle::Stage;

pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::role(Method::GET, "/", Role::Viewer)];

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(get_overview))
}

/// One bar of the stage chart; geometry in SVG user units, decided here.
pub struct StageBar {
    pub stage: &'static str,
    pub count: i64,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub label_x: u32,
}

/// The stage chart's size.
pub const CHART_WIDTH: u32 = 600;
pub const CHART_HEIGHT: u32 = 220;
const CHART_TOP: u32 = 24;
const CHART_BASE: u32 = 190;

/// Bars for the stage counts, in lifecycle order, scaled to the largest.
pub fn stage_bars(counts: &[(Stage, i64)]) -> Vec<StageBar> {
    let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = CHART_WIDTH / counts.len().max(1) as u32;
    let width = slot * 3 / 5;
    counts
        .iter()
        .enumerate()
        .map(|(i, (stage, count))| {
            let full = CHART_BASE - CHART_TOP;
            let mut height = ((*count as f64 / max as f64) * full as f64).round() as u32;
            if *count > 0 {
                height = height.max(2);
            }
            let x = slot * i as u32 + (slot - width) / 2;
            StageBar {
                stage: stage.as_str(),
                count: *count,
                x,
                y: CHART_BASE - height,
                width,
                height,
                label_x: x + width / 2,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    ctx: PageContext,
    total_workloads: i64,
    running_instances: i64,
    bars: Vec<StageBar>,
    chart_width: u32,
    chart_height: u32,
    chart_base: u32,
    sources: Vec<SourceView>,
    docker_configured: bool,
    kube_configured: bool,
    database: String,
    database_ready: Result<(), String>,
    public_url: String,
    config_file: Option<String>,
    docker_endpoints: Vec<String>,
    kubeconfig: Option<String>,
    kube_contexts: Vec<String>,
    unowned: super::ownership::UnownedPanel,
}

async fn get_overview(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    let config = &state.config;
    let stages = query::stage_counts(&state.pool).await?;
    let running_instances = stages.iter().map(|(_, _, running)| running).sum();
    let counts: Vec<(Stage, i64)> = stages.iter().map(|(s, n, _)| (*s, *n)).collect();
    let page = OverviewPage {
        ctx: ctx.titled("Overview").active("/"),
        total_workloads: counts.iter().map(|(_, n)| n).sum(),
        running_instances,
        bars: stage_bars(&counts),
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        chart_base: CHART_BASE,
        sources: source_views(&state).await?,
        docker_configured: !config.docker_endpoints.is_empty(),
        kube_configured: config.kubeconfig.is_some(),
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
        unowned: super::ownership::UnownedPanel::load(&state).await?,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_stage_fills_the_chart_and_an_empty_one_has_no_bar() {
        let bars = stage_bars(&[(Stage::Deploy, 0), (Stage::Run, 10), (Stage::Retire, 1)]);
        assert_eq!(bars[0].height, 0);
        assert_eq!(bars[1].height, CHART_BASE - CHART_TOP);
        assert_eq!(bars[1].y, CHART_TOP);
        assert!(bars[2].height >= 2, "a non-zero count stays visible");
        assert!(bars[0].x < bars[1].x && bars[1].x < bars[2].x);
    }
}
