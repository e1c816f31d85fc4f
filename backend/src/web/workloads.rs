//! `GET /api/v1/workloads` (filters `source`, `namespace`, `kind`, `stage`, `q`; keyset
//! pagination `?limit=&after=` with a `next` cursor, `?before=` with a `previous` one) and `GET /api/v1/workloads/{id}` (the
//! workload with its instances, images and lifecycle history). Source-agnostic: Docker and
//! Kubernetes workloads share the shapes.
//!
//! Unknown parameters and bad values are refused with 400, never ignored. `team` and `severity`
//! are refused until ownership and posture exist.

use crate::auth::Role;
use crate::web::RoutePolicy;
use std::collections::HashMap;

use std::str::FromStr;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::json::ApiJson;
use super::page::{query_string, PageContext};
use super::sources::{source_views, SourceView};
use super::{AppState, WebError};
pub use crate::inventory::query::{
    query_workloads, workload_detail, ImageView, InstanceView, WorkloadDetail, WorkloadFilter,
    WorkloadPage, WorkloadSummary, KINDS,
};
use crate::inventory::{query, redact};
use crate::lifecycle::Stage;
use crate::posture::{self, pss, CheckId, Outcome};

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/workloads", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/workloads/{id}", Role::Viewer),
    RoutePolicy::role(Method::GET, "/workloads", Role::Viewer),
    RoutePolicy::role(Method::GET, "/workloads/{id}", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workloads", get(list_workloads))
        .route("/api/v1/workloads/{id}", get(get_workload))
        .route("/workloads", get(get_workloads_page))
        .route("/workloads/{id}", get(get_workload_page))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

fn parse_id(name: &str, value: &str) -> Result<i64, WebError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| WebError::BadRequest(format!("{name} must be a non-negative whole number")))
}

impl WorkloadFilter {
    /// Validates query parameters; anything unknown or malformed is a 400 naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = WorkloadFilter {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (name, value) in params {
            let given = || Some(value.clone()).filter(|v| !v.is_empty());
            match name.as_str() {
                "source" => filter.source = Some(parse_id("source", value)?),
                "namespace" => filter.namespace = Some(value.clone()),
                "kind" => {
                    if !KINDS.contains(&value.as_str()) {
                        return Err(WebError::BadRequest(format!(
                            "kind '{value}' is not one of {}",
                            KINDS.join(", ")
                        )));
                    }
                    filter.kind = Some(value.clone());
                }
                "stage" => {
                    filter.stage = Some(
                        Stage::from_str(value).map_err(|err| WebError::BadRequest(err.to_string()))?,
                    )
                }
                "q" => filter.q = given(),
                "limit" => {
                    filter.limit = value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            WebError::BadRequest(format!(
                                "limit must be a whole number from 1 to {MAX_LIMIT}"
                            ))
                        })?
                }
                "after" => filter.after = Some(parse_id("after", value)?),
                "before" => filter.before = Some(parse_id("before", value)?),
                "team" | "severity" => {
                    return Err(WebError::BadRequest(format!(
                        "the {name} filter is not available yet (it arrives with ownership and posture)"
                    )))
                }
                other => {
                    return Err(WebError::BadRequest(format!(
                        "unknown parameter '{other}'; expected source, namespace, kind, stage, q, limit, after or before"
                    )))
                }
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
    /// The filters as given (empty = any).
    source: String,
    namespace: String,
    kind: String,
    stage: String,
    q: String,
    filtered: bool,
    next_href: Option<String>,
    previous_href: Option<String>,
}

async fn get_workloads_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    // A form submits empty fields for "any": they are no filter.
    params.retain(|_, value| !value.trim().is_empty());
    if params.contains_key("limit") {
        return Err(WebError::BadRequest(
            "the console shows fixed pages; use /api/v1/workloads for other page sizes".into(),
        ));
    }
    let mut filter = WorkloadFilter::parse(&params)?;
    filter.limit = PAGE_SIZE;
    let page = query_workloads(&state.pool, &filter).await?;
    let given = |name: &str| params.get(name).cloned().unwrap_or_default();
    let filters: Vec<(&str, String)> = ["source", "namespace", "kind", "stage", "q"]
        .into_iter()
        .filter_map(|name| params.get(name).map(|value| (name, value.clone())))
        .collect();
    let link = |cursor: &str, id: &String| {
        let mut pairs = filters.clone();
        pairs.push((cursor, id.clone()));
        format!("/workloads{}", query_string(&pairs))
    };
    let view = WorkloadsPage {
        ctx: ctx.titled("Workloads").active("/workloads"),
        next_href: page.next.as_ref().map(|id| link("after", id)),
        previous_href: page.previous.as_ref().map(|id| link("before", id)),
        page,
        sources: source_views(&state).await?,
        kinds: KINDS,
        stages: Stage::ALL.iter().map(|s| s.as_str()).collect(),
        source: given("source"),
        namespace: given("namespace"),
        kind: given("kind"),
        stage: given("stage"),
        q: given("q"),
        filtered: !filters.is_empty(),
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

/// One workload: identity, labels, instances, images, lifecycle timeline and posture.
#[derive(Template)]
#[template(path = "workload.html")]
pub struct WorkloadDetailPage {
    ctx: PageContext,
    detail: WorkloadDetail,
    uid: Option<String>,
    labels: Vec<Pair>,
    annotations: Vec<Pair>,
    posture: Posture,
    redacted: &'static str,
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
    let can_isolate = ctx.can(Role::Responder) && detail.workload.instances_running > 0;
    let page = WorkloadDetailPage {
        can_isolate,
        ctx: ctx
            .titled(format!("{} · Workloads", detail.workload.name))
            .active("/workloads"),
        labels: pairs(&detail.workload.labels),
        annotations: pairs(&extras.annotations),
        uid: extras.uid,
        detail,
        posture,
        redacted: redact::REDACTED,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
        assert_eq!(filter.after, Some(10));
        for bad in [
            ("stage", "running"),
            ("kind", "Box"),
            ("limit", "0"),
            ("limit", "9999"),
            ("after", "x"),
            ("source", "-1"),
            ("team", "payments"),
            ("severity", "high"),
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
}
