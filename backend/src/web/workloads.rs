//! `GET /api/v1/workloads` (filters `source`, `namespace`, `kind`, `stage`, `severity` (the
//! worst open severity), `q`; `sort=id|risk`; keyset pagination `?limit=&after=` with a `next`
//! cursor, `?before=` with a `previous` one) and `GET /api/v1/workloads/{id}` (the workload with
//! its instances, images and lifecycle history). Source-agnostic: Docker and Kubernetes
//! workloads share the shapes. The console pages: the list, one workload (with its recorded
//! findings and a waiver request form per finding).
//!
//! Unknown parameters and bad values are refused with 400, never ignored. `team` (a team's id
//! or name, or `none` for workloads with a layer unowned) keeps the workloads the team owns some
//! layer of.

use crate::auth::{audit, Role};
use crate::web::RoutePolicy;
use std::collections::HashMap;

use std::str::FromStr;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Days, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::access::{RequireRole, Responder};
use super::findings::{audited, query_findings, FindingFilter, FindingView};
use super::json::ApiJson;
use super::page::{query_string, PageContext};
use super::params::{one_of, parse_id, parse_limit, parse_severity, unknown, DEFAULT_LIMIT};
use super::sources::{source_views, SourceView};
use super::{AppState, WebError};
use crate::findings::waivers::{self, CoveringWaiver, NewWaiver};
pub use crate::inventory::query::{
    query_workloads, workload_detail, Cursor, ImageView, InstanceView, WorkloadDetail,
    WorkloadFilter, WorkloadPage, WorkloadSort, WorkloadSummary, KINDS,
};
use crate::inventory::{query, redact};
use crate::lifecycle::Stage;
use crate::posture::{self, pss, CheckId, Outcome, Severity};

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/workloads", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/workloads/{id}", Role::Viewer),
    RoutePolicy::role(Method::GET, "/workloads", Role::Viewer),
    RoutePolicy::role(Method::GET, "/workloads/{id}", Role::Viewer),
    RoutePolicy::role(Method::POST, "/workloads/{id}/waivers", Role::Responder),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workloads", get(list_workloads))
        .route("/api/v1/workloads/{id}", get(get_workload))
        .route("/workloads", get(get_workloads_page))
        .route("/workloads/{id}", get(get_workload_page))
        .route("/workloads/{id}/waivers", post(request_waiver_form))
}

/// The parameters of a workload list: the filters and order first.
pub(super) const PARAMETERS: &[&str] = &[
    "source",
    "namespace",
    "kind",
    "stage",
    "severity",
    "q",
    "team",
    "sort",
    "limit",
    "after",
    "before",
];

/// The severities a workload's worst open finding can have (`info` never counts).
const WORST_SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

impl WorkloadFilter {
    /// Validates query parameters; anything unknown or malformed is a 400 naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = WorkloadFilter {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        if let Some(sort) = params.get("sort") {
            filter.sort = match one_of("sort", sort, &["id", "risk"])?.as_str() {
                "risk" => WorkloadSort::Risk,
                _ => WorkloadSort::Id,
            };
        }
        let cursor = |name: &str, value: &str| {
            Cursor::decode(value, filter.sort).ok_or_else(|| {
                WebError::BadRequest(match filter.sort {
                    WorkloadSort::Id => format!("{name} must be a non-negative whole number"),
                    WorkloadSort::Risk => {
                        format!("{name} must be a cursor RISK.ID of the risk order")
                    }
                })
            })
        };
        for (name, value) in params {
            let given = || Some(value.clone()).filter(|v| !v.is_empty());
            match name.as_str() {
                "source" => filter.source = Some(parse_id("source", value)?),
                "namespace" => filter.namespace = Some(value.clone()),
                "kind" => filter.kind = Some(one_of("kind", value, KINDS)?),
                "stage" => {
                    filter.stage = Some(
                        Stage::from_str(value)
                            .map_err(|err| WebError::BadRequest(err.to_string()))?,
                    )
                }
                "severity" => filter.severity = Some(parse_severity(value, &WORST_SEVERITIES)?),
                "q" => filter.q = given(),
                "team" => filter.team = given(),
                "sort" => {}
                "limit" => filter.limit = parse_limit(value)?,
                "after" => filter.after = Some(cursor("after", value)?),
                "before" => filter.before = Some(cursor("before", value)?),
                other => return Err(unknown(other, PARAMETERS)),
            }
        }
        Ok(filter)
    }
}

async fn list_workloads(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<WorkloadPage>, WebError> {
    let filter = WorkloadFilter::parse(&params)?;
    super::ownership::check_team_filter(&state, filter.team.as_deref()).await?;
    Ok(ApiJson(query_workloads(&state.pool, &filter).await?))
}

async fn get_workload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<WorkloadDetail>, WebError> {
    let id = parse_id("the workload id", &id)?;
    workload_detail(&state.pool, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| WebError::NotFound(format!("there is no workload {id}")))
}

/// How many workloads one page of the console list shows.
const PAGE_SIZE: i64 = 50;

/// The workload list: filters (a GET form) and one page, with next / previous links that keep
/// the filters.
#[derive(Template)]
#[template(path = "workloads.html")]
pub struct WorkloadsPage {
    ctx: PageContext,
    page: WorkloadPage,
    sources: Vec<SourceView>,
    kinds: &'static [&'static str],
    stages: Vec<&'static str>,
    severities: Vec<&'static str>,
    /// The filters as given (empty = any).
    source: String,
    namespace: String,
    kind: String,
    stage: String,
    severity: String,
    q: String,
    team: String,
    teams: Vec<crate::ownership::Team>,
    /// How many workloads match the filters (for the bulk owner assignment).
    matching: i64,
    layers: &'static [&'static str],
    /// `id` or `risk`.
    sort: &'static str,
    filtered: bool,
    next_href: Option<String>,
    previous_href: Option<String>,
}

impl WorkloadsPage {
    /// The filters as hidden form fields (for the bulk assignment).
    fn filter_fields(&self) -> Vec<(&'static str, &str)> {
        [
            ("source", self.source.as_str()),
            ("namespace", self.namespace.as_str()),
            ("kind", self.kind.as_str()),
            ("stage", self.stage.as_str()),
            ("severity", self.severity.as_str()),
            ("team", self.team.as_str()),
            ("q", self.q.as_str()),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
    }
}

/// The filters and order a console list keeps in its links.
const PAGE_FILTERS: &[&str] = PARAMETERS.split_at(8).0;

async fn get_workloads_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    // A form submits empty fields for "any": they are no filter.
    let mut params = super::params::given(params);
    if params.get("sort").map(String::as_str) == Some("id") {
        params.remove("sort");
    }
    if params.contains_key("limit") {
        return Err(WebError::BadRequest(
            "the console shows fixed pages; use /api/v1/workloads for other page sizes".into(),
        ));
    }
    let mut filter = WorkloadFilter::parse(&params)?;
    filter.limit = PAGE_SIZE;
    let page = query_workloads(&state.pool, &filter).await?;
    let given = |name: &str| params.get(name).cloned().unwrap_or_default();
    let filters: Vec<(&str, String)> = PAGE_FILTERS
        .iter()
        .filter_map(|name| params.get(*name).map(|value| (*name, value.clone())))
        .collect();
    let filtered = filters.iter().any(|(name, _)| *name != "sort");
    let link = |cursor: &str, at: &String| {
        let mut pairs = filters.clone();
        pairs.push((cursor, at.clone()));
        format!("/workloads{}", query_string(&pairs))
    };
    let view = WorkloadsPage {
        ctx: ctx.titled("Workloads").active("/workloads"),
        next_href: page.next.as_ref().map(|at| link("after", at)),
        previous_href: page.previous.as_ref().map(|at| link("before", at)),
        page,
        sources: source_views(&state).await?,
        kinds: KINDS,
        stages: Stage::ALL.iter().map(|s| s.as_str()).collect(),
        severities: WORST_SEVERITIES.iter().rev().map(|s| s.as_str()).collect(),
        source: given("source"),
        namespace: given("namespace"),
        kind: given("kind"),
        stage: given("stage"),
        severity: given("severity"),
        q: given("q"),
        team: given("team"),
        teams: crate::ownership::store::teams(&state.pool).await?,
        matching: if filtered {
            query::count_workloads(&state.pool, &filter).await?
        } else {
            0
        },
        layers: &crate::ownership::LAYERS,
        sort: filter.sort.as_str(),
        filtered,
    };
    Ok(Html(view.render().map_err(anyhow::Error::from)?))
}

/// One key / value of a label or annotation map, as text.
pub struct Pair {
    pub key: String,
    pub value: String,
}

fn pairs(map: &Value) -> Vec<Pair> {
    map.as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| Pair {
                    key: key.clone(),
                    value: value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A failed check with its evidence and the fix for the workload's source.
pub struct FailView {
    pub check_id: &'static str,
    pub title: &'static str,
    pub severity: &'static str,
    pub container: Option<String>,
    pub message: String,
    /// `(JSON pointer, value as written)`; the value is empty when the field is absent.
    pub evidence: Vec<(String, String)>,
    pub fix_summary: &'static str,
    pub fix: Option<&'static str>,
}

/// The posture of a workload, computed now from its stored documents.
pub struct PostureView {
    /// Which document was judged (`the declared Deployment`, `container web-1`).
    pub basis: String,
    pub fails: Vec<FailView>,
    pub passed: usize,
    pub unknown: usize,
    pub not_applicable: usize,
    pub pss_level: &'static str,
    pub pss_basis: &'static str,
    pub pss_policy_version: &'static str,
    /// The controls that keep the workload from the next PSS level.
    pub pss_blocking: Vec<String>,
    /// Whether `secrets.env_literal` was left out (stored env values are redacted).
    pub env_literal_skipped: bool,
}

/// What the posture section shows: a result, or why there is none.
pub enum Posture {
    Judged(PostureView),
    Unavailable(String),
}

/// Evaluates the catalog on the newest stored document of the workload: the declared
/// controller for Kubernetes when known, else the newest instance (a pod or a container's
/// inspect document). Environment values are redacted in storage, so `secrets.env_literal`
/// cannot be judged here and is left out.
fn posture_of(detail: &WorkloadDetail, declared: Option<&Value>) -> Posture {
    let docker = detail.workload.source_kind == "docker";
    let newest = detail
        .instances
        .iter()
        .find(|i| i.removed_at.is_none())
        .or(detail.instances.first());
    let (document, basis) = match (docker, declared, newest) {
        (false, Some(declared), _) => (declared, format!("the declared {}", detail.workload.kind)),
        (_, _, Some(instance)) => (
            &instance.raw,
            format!(
                "{} {}",
                if docker { "container" } else { "pod" },
                instance.name
            ),
        ),
        _ => {
            return Posture::Unavailable(
                "nothing stored to judge: no declared object and no instance".into(),
            )
        }
    };
    let adapted = if docker {
        posture::docker::adapt(document)
    } else {
        posture::kubernetes::adapt(document)
    };
    let spec = match adapted {
        Ok(spec) => spec,
        Err(err) => {
            return Posture::Unavailable(format!("the stored document cannot be read: {err}"))
        }
    };
    let report = posture::evaluate(&spec, &posture::Context::default());
    let (mut passed, mut unknown, mut not_applicable) = (0, 0, 0);
    let mut fails = Vec::new();
    let mut env_literal_skipped = false;
    for (result, evidence) in report.iter() {
        if result.check == CheckId::SecretsEnvLiteral {
            env_literal_skipped = true;
            continue;
        }
        match result.outcome {
            Outcome::Pass => passed += 1,
            Outcome::Unknown => unknown += 1,
            Outcome::NotApplicable => not_applicable += 1,
            Outcome::Fail => {
                let meta = result.meta();
                fails.push((
                    result.severity,
                    FailView {
                        check_id: meta.id,
                        title: meta.title,
                        severity: result.severity.as_str(),
                        container: result.container.map(str::to_string),
                        message: result.message.to_string(),
                        evidence: evidence
                            .iter()
                            .map(|e| {
                                let raw = if e.raw.is_absent() {
                                    String::new()
                                } else {
                                    e.raw.to_string()
                                };
                                (e.pointer.to_string(), raw)
                            })
                            .collect(),
                        fix_summary: meta.remediation.summary,
                        fix: if docker {
                            meta.remediation.docker
                        } else {
                            meta.remediation.kubernetes
                        },
                    },
                ))
            }
        }
    }
    fails.sort_by_key(|(severity, _)| std::cmp::Reverse(*severity));
    let assessment = pss::assess(&spec);
    Posture::Judged(PostureView {
        basis,
        fails: fails.into_iter().map(|(_, view)| view).collect(),
        passed,
        unknown,
        not_applicable,
        pss_level: assessment.level.as_str(),
        pss_basis: assessment.basis,
        pss_policy_version: assessment.policy_version,
        pss_blocking: assessment
            .blocking
            .iter()
            .map(|v| match v.container {
                Some(container) => format!("{} ({container}): {}", v.control, v.detail),
                None => format!("{}: {}", v.control, v.detail),
            })
            .collect(),
        env_literal_skipped,
    })
}

/// An open finding as recorded, with the waivers of its check that take in the workload.
pub struct RecordedFinding {
    pub finding: FindingView,
    pub title: &'static str,
    pub waivers: Vec<CoveringWaiver>,
}

impl RecordedFinding {
    /// Whether a new request makes sense: no waiver of the check is requested or approved yet.
    pub fn can_request(&self) -> bool {
        self.waivers.is_empty()
    }
}

/// How many open findings the workload page lists.
const FINDINGS_SHOWN: i64 = 500;
/// The expiry a waiver request proposes, in days.
const DEFAULT_WAIVER_DAYS: u64 = 30;

/// One workload: identity, labels, instances, images, lifecycle timeline and posture.
#[derive(Template)]
#[template(path = "workload.html")]
pub struct WorkloadDetailPage {
    ctx: PageContext,
    detail: WorkloadDetail,
    findings: Vec<RecordedFinding>,
    /// More open findings than listed.
    findings_truncated: bool,
    can_request: bool,
    /// `min`, default and `max` of the expiry date field.
    expiry_min: String,
    expiry_default: String,
    expiry_max: String,
    uid: Option<String>,
    labels: Vec<Pair>,
    annotations: Vec<Pair>,
    posture: Posture,
    redacted: &'static str,
    /// The newest runtime events (exec sessions, drift, restarts).
    events: Vec<super::events::EventRow>,
    owner_history: Vec<crate::ownership::store::HistoryEntry>,
    teams: Vec<crate::ownership::Team>,
    /// A responder may isolate a workload with running instances (`Isolate…`).
    can_isolate: bool,
}

impl WorkloadDetailPage {
    /// The breadcrumb label of the workload: `namespace/name` or `name`.
    fn display_name(&self) -> String {
        let w = &self.detail.workload;
        if w.namespace.is_empty() {
            w.name.clone()
        } else {
            format!("{}/{}", w.namespace, w.name)
        }
    }
}

async fn get_workload_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let id = parse_id("the workload id", &id)?;
    let not_found = || WebError::NotFound(format!("there is no workload {id}"));
    let detail = workload_detail(&state.pool, id)
        .await?
        .ok_or_else(not_found)?;
    let extras = query::extras(&state.pool, id)
        .await?
        .ok_or_else(not_found)?;
    let posture = posture_of(&detail, extras.declared.as_ref());
    let events = crate::runtime::events::of_workload(&state.pool, id, 20)
        .await?
        .into_iter()
        .map(super::events::EventRow::from)
        .collect();
    let now = Utc::now();
    let recorded = query_findings(
        &state.pool,
        &FindingFilter {
            workload: Some(id),
            status: Some("open".into()),
            limit: FINDINGS_SHOWN,
            ..FindingFilter::default()
        },
    )
    .await?;
    let covering = waivers::covering(&state.pool, id, now).await?;
    let mut findings: Vec<RecordedFinding> = recorded
        .findings
        .into_iter()
        .map(|finding| RecordedFinding {
            title: posture::catalog::find(&finding.check).map_or("", |meta| meta.title),
            waivers: covering
                .iter()
                .filter(|w| w.check_id == finding.check)
                .cloned()
                .collect(),
            finding,
        })
        .collect();
    findings.sort_by(|a, b| {
        Severity::parse(&b.finding.severity)
            .cmp(&Severity::parse(&a.finding.severity))
            .then(a.finding.check.cmp(&b.finding.check))
            .then(a.finding.container.cmp(&b.finding.container))
    });
    let today = now.date_naive();
    let can_isolate = ctx.can(Role::Responder) && detail.workload.instances_running > 0;
    let page = WorkloadDetailPage {
        can_isolate,
        findings,
        findings_truncated: recorded.next.is_some(),
        can_request: ctx.can(Role::Responder),
        expiry_min: (today + Days::new(1)).to_string(),
        expiry_default: (today + Days::new(DEFAULT_WAIVER_DAYS)).to_string(),
        expiry_max: (today + Days::new(waivers::MAX_DAYS as u64 - 1)).to_string(),
        ctx: ctx
            .titled(format!("{} · Workloads", detail.workload.name))
            .active("/workloads"),
        labels: pairs(&detail.workload.labels),
        annotations: pairs(&extras.annotations),
        uid: extras.uid,
        detail,
        posture,
        redacted: redact::REDACTED,
        events,
        owner_history: crate::ownership::store::history(&state.pool, id).await?,
        teams: crate::ownership::store::teams(&state.pool).await?,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

/// The waiver request form of a finding on the workload page.
#[derive(Debug, Deserialize)]
struct WaiverForm {
    #[serde(default)]
    check: String,
    #[serde(default)]
    reason: String,
    /// The last day the waiver holds (`YYYY-MM-DD`); it ends at that day's midnight UTC.
    #[serde(default)]
    expires: String,
}

/// `POST /workloads/{id}/waivers`: requests a waiver of one check for this workload (a
/// responder; the requester is the signed-in person), audited as `waiver.request`; back to the
/// workload's findings.
async fn request_waiver_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<String>,
    Form(form): Form<WaiverForm>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the workload id", &id)?;
    let Ok(last_day) = NaiveDate::parse_from_str(form.expires.trim(), "%Y-%m-%d") else {
        let message = format!("the expiry '{}' is not a date (YYYY-MM-DD)", form.expires);
        audit::record(
            &state.pool,
            &principal,
            "waiver.request",
            &format!("workload {id}"),
            audit::Outcome::Failure,
            principal.client_addr,
            serde_json::json!({"error": message}),
        )
        .await?;
        return Err(WebError::Unprocessable(message));
    };
    let expires_at = (last_day + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let new = NewWaiver {
        check: form.check,
        workload_id: Some(id),
        namespace: None,
        source_id: None,
        reason: form.reason,
        requested_by: principal.name.clone(),
        expires_at,
    };
    let now = Utc::now();
    audited(&state, &principal, "waiver.request", None, |conn| {
        Box::pin(async move { waivers::create(conn, &new, now).await })
    })
    .await?;
    Ok(Redirect::to(&format!("/workloads/{id}#findings")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::page::params;

    #[test]
    fn filters_are_parsed_and_bad_values_refused() {
        let filter = WorkloadFilter::parse(&params(&[
            ("stage", "run"),
            ("kind", "ComposeService"),
            ("limit", "5"),
            ("after", "10"),
            ("q", "Web"),
        ]))
        .unwrap();
        assert_eq!(filter.stage, Some(Stage::Run));
        assert_eq!(filter.limit, 5);
        assert_eq!(filter.after, Some(Cursor { risk: 0, id: 10 }));
        for bad in [
            ("stage", "running"),
            ("kind", "Box"),
            ("limit", "0"),
            ("limit", "9999"),
            ("after", "x"),
            ("source", "-1"),
            ("severity", "info"),
            ("severity", "urgent"),
            ("sort", "name"),
            ("colour", "red"),
        ] {
            assert!(
                matches!(
                    WorkloadFilter::parse(&params(&[bad])),
                    Err(WebError::BadRequest(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_risk_order_pages_with_risk_and_id_cursors() {
        let filter = WorkloadFilter::parse(&params(&[
            ("sort", "risk"),
            ("severity", "high"),
            ("after", "1200.77"),
        ]))
        .unwrap();
        assert_eq!(filter.sort, WorkloadSort::Risk);
        assert_eq!(filter.severity, Some(Severity::High));
        assert_eq!(filter.after, Some(Cursor { risk: 1200, id: 77 }));
        assert_eq!(Cursor { risk: 3, id: 9 }.encode(WorkloadSort::Risk), "3.9");
        for bad in ["77", "x.1", "1.-2"] {
            assert!(
                WorkloadFilter::parse(&params(&[("sort", "risk"), ("after", bad)])).is_err(),
                "{bad} was accepted"
            );
        }
        // In the id order a risk cursor is refused.
        assert!(WorkloadFilter::parse(&params(&[("after", "1200.77")])).is_err());
    }
}
