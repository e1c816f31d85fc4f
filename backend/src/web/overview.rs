//! The overview page: the posture score with its trend over the last 30 or 90 days
//! (`?trend=30|90`; an SVG line drawn here from `posture_snapshots`), open findings by severity,
//! workloads by lifecycle stage (an SVG bar chart drawn here), the ten riskiest workloads, open
//! incidents, collector status per source, totals, and a compact panel of what is configured.
//! Ownership joins this page when it exists.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use chrono::{Days, NaiveDate, Utc};

use super::page::PageContext;
use super::params::{one_of, unknown};
use super::sources::{source_views, SourceView};
use super::{AppState, RoutePolicy, WebError};
use crate::auth::Role;
use crate::db;
use crate::findings::trend::{self, DayPosture, EstatePosture, SEVERITIES};
use crate::inventory::query::{self, WorkloadFilter, WorkloadSort, WorkloadSummary};
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

/// The trend chart's size; the score axis runs from F (0) at the bottom to A (4) at the top.
pub const TREND_WIDTH: u32 = 600;
pub const TREND_HEIGHT: u32 = 200;
const TREND_LEFT: f64 = 36.0;
const TREND_RIGHT: f64 = 570.0;
const TREND_TOP: f64 = 12.0;
const TREND_BASE: f64 = 170.0;

/// One day of the trend with its place in the chart.
pub struct TrendPoint {
    pub day: String,
    /// `None`: no snapshot that day (a gap in the line).
    pub score: Option<f64>,
    pub x: f64,
    pub y: f64,
}

/// The trend chart: one polyline per run of days with a score, the grade lines and a few dates.
pub struct TrendChart {
    pub days: u64,
    pub points: Vec<TrendPoint>,
    /// `points` attributes of each `<polyline>`.
    pub lines: Vec<String>,
    /// `(y, letter)` of the grade grid lines.
    pub grid: Vec<(f64, &'static str)>,
    /// `(x, date)` of the labelled days.
    pub labels: Vec<(f64, String)>,
    pub left: f64,
    pub right: f64,
    pub base: f64,
    pub first: Option<f64>,
    pub last: Option<f64>,
}

impl TrendChart {
    /// The chart of `days` days ending `today`, from the snapshots found (others are gaps).
    pub fn new(history: &[DayPosture], today: NaiveDate, days: u64) -> Self {
        let start = today - Days::new(days - 1);
        let step = (TREND_RIGHT - TREND_LEFT) / (days.max(2) - 1) as f64;
        let y_of = |score: f64| TREND_BASE - (score / 4.0) * (TREND_BASE - TREND_TOP);
        let points: Vec<TrendPoint> = start
            .iter_days()
            .take(days as usize)
            .enumerate()
            .map(|(i, day)| {
                let score = history
                    .iter()
                    .find(|h| h.day == day)
                    .and_then(|h| h.posture.score());
                TrendPoint {
                    day: day.to_string(),
                    score,
                    x: round(TREND_LEFT + step * i as f64),
                    y: round(y_of(score.unwrap_or(0.0))),
                }
            })
            .collect();
        let mut lines = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for point in &points {
            if point.score.is_some() {
                current.push(format!("{},{}", point.x, point.y));
            } else if !current.is_empty() {
                lines.push(current.join(" "));
                current.clear();
            }
        }
        if !current.is_empty() {
            lines.push(current.join(" "));
        }
        let grid = trend::GRADES
            .iter()
            .map(|(grade, value)| (round(y_of(*value)), grade.as_str()))
            .collect();
        let every = (days / 5).max(1) as usize;
        let labels = points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || *i == points.len() - 1)
            .map(|(_, p)| (p.x, p.day[5..].to_string()))
            .collect();
        let scored = || points.iter().filter_map(|p| p.score);
        Self {
            days,
            first: scored().next(),
            last: scored().next_back(),
            points,
            lines,
            grid,
            labels,
            left: TREND_LEFT,
            right: TREND_RIGHT,
            base: TREND_BASE,
        }
    }

    /// The points with a score (the dots and the data table).
    pub fn scored(&self) -> Vec<&TrendPoint> {
        self.points.iter().filter(|p| p.score.is_some()).collect()
    }
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

impl OverviewPage {
    /// A score as shown: `2.7`.
    fn score_text(&self, score: &f64) -> String {
        format!("{score:.1}")
    }

    /// The letter nearest a score.
    fn letter(&self, score: &f64) -> &'static str {
        trend::letter(*score)
    }
}

/// One severity's open findings, for the tiles.
pub struct OpenCount {
    pub severity: &'static str,
    pub count: i64,
}

/// An open incident as the overview lists it.
pub struct OpenIncident {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub created_at: chrono::DateTime<Utc>,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    ctx: PageContext,
    posture: EstatePosture,
    score: Option<f64>,
    trend: TrendChart,
    open: Vec<OpenCount>,
    riskiest: Vec<WorkloadSummary>,
    incidents: Vec<OpenIncident>,
    incidents_open: i64,
    more_incidents: bool,
    grade_counts: Vec<(&'static str, i64)>,
    periods: [u64; 2],
    total_workloads: i64,
    running_instances: i64,
    bars: Vec<StageBar>,
    trend_width: u32,
    trend_height: u32,
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

/// How many open incidents the overview lists (the total is shown too).
const INCIDENTS_SHOWN: i64 = 10;

async fn get_overview(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let mut days = 30;
    for (name, value) in &params {
        match name.as_str() {
            "trend" => days = one_of("trend", value, &["30", "90"])?.parse().unwrap_or(30),
            other => return Err(unknown(other, &["trend"])),
        }
    }
    let today = Utc::now().date_naive();
    let (_, stages) = state
        .stage_counts
        .get(|| query::stage_counts(&state.pool))
        .await?;
    let posture = EstatePosture::of_live(&stages);
    let mut history = trend::history(
        &state.pool,
        today - Days::new(days - 1),
        today - Days::new(1),
    )
    .await?;
    // Today is drawn from now, not from the last refresh.
    history.push(DayPosture {
        day: today,
        posture,
    });
    let riskiest = query::query_workloads(
        &state.pool,
        &WorkloadFilter {
            sort: WorkloadSort::Risk,
            limit: 10,
            ..WorkloadFilter::default()
        },
    )
    .await?
    .workloads
    .into_iter()
    .filter(|w| w.risk_score > 0)
    .collect();
    let incidents = sqlx::query_as!(
        OpenIncident,
        r#"select id, title, severity, state, created_at from incidents where state <> 'closed'
           order by array_position(array['critical','high','medium','low'], severity), id desc
           limit $1"#,
        INCIDENTS_SHOWN
    )
    .fetch_all(&state.pool)
    .await?;
    let incidents_open =
        sqlx::query_scalar!(r#"select count(*) as "n!" from incidents where state <> 'closed'"#)
            .fetch_one(&state.pool)
            .await?;
    let config = &state.config;
    let running_instances = stages.iter().map(|c| c.running).sum();
    let counts: Vec<(Stage, i64)> = stages.iter().map(|c| (c.stage, c.workloads)).collect();
    let page = OverviewPage {
        ctx: ctx.titled("Overview").active("/"),
        score: posture.score(),
        trend: TrendChart::new(&history, today, days),
        open: SEVERITIES
            .iter()
            .map(|s| OpenCount {
                severity: s.as_str(),
                count: posture.open_at(*s),
            })
            .collect(),
        posture,
        riskiest,
        more_incidents: incidents_open > incidents.len() as i64,
        incidents,
        incidents_open,
        grade_counts: trend::GRADES
            .iter()
            .zip(posture.grades)
            .map(|((grade, _), n)| (grade.as_str(), n))
            .collect(),
        periods: [30, 90],
        total_workloads: counts.iter().map(|(_, n)| n).sum(),
        running_instances,
        bars: stage_bars(&counts),
        trend_width: TREND_WIDTH,
        trend_height: TREND_HEIGHT,
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

    #[test]
    fn the_trend_breaks_its_line_where_a_day_has_no_snapshot() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let all_a = EstatePosture {
            grades: [3, 0, 0, 0, 0],
            open: [0; 5],
        };
        let all_f = EstatePosture {
            grades: [0, 0, 0, 0, 2],
            open: [2, 0, 0, 0, 0],
        };
        let history = vec![
            DayPosture {
                day: today - Days::new(29),
                posture: all_f,
            },
            DayPosture {
                day: today - Days::new(28),
                posture: all_f,
            },
            DayPosture {
                day: today,
                posture: all_a,
            },
        ];
        let chart = TrendChart::new(&history, today, 30);
        assert_eq!(chart.points.len(), 30);
        assert_eq!(chart.lines.len(), 2, "{:?}", chart.lines);
        assert_eq!(chart.scored().len(), 3);
        assert_eq!(chart.points[0].y, TREND_BASE);
        assert_eq!(chart.points[29].y, TREND_TOP);
        assert_eq!(chart.points[29].x, TREND_RIGHT);
        assert_eq!((chart.first, chart.last), (Some(0.0), Some(4.0)));
        assert_eq!(chart.grid[0].1, "A");
    }
}
