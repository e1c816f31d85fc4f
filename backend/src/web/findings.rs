//! The posture API: `GET /api/v1/findings` (filters `check`, `severity`, `status`, `layer`,
//! `workload`, `source`, `namespace`, `waived`; keyset pagination `?limit=&after=` with a `next`
//! cursor, by ascending id), `GET /api/v1/posture/summary?by=source|namespace|check`, and the
//! waivers: `GET /api/v1/waivers` (`status`, `check`, `workload`, `expiring_within_days`),
//! `POST /api/v1/waivers` (a request), `POST /api/v1/waivers/{id}/approve|reject|revoke`.
//!
//! `team` (a team's id or name, or `none`) keeps the findings routed to that team: the team
//! owns the finding's layer of its workload. Unknown parameters and bad values are refused with
//! 400. Reading is for every signed-in person; a waiver request needs a responder or a member of
//! the team owning the finding's layer, for that workload (see
//! `web::ownership::may_request_waiver`; the requester is the signed-in principal), approving, rejecting and revoking an admin (the
//! approver is the principal). Each waiver change writes an audit row in its transaction.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Html;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::access::{Admin, RequireRole};
use super::checks;
use super::json::ApiJson;
use super::page::{query_string, PageContext};
use super::params::{
    one_of, parse_bool, parse_id, parse_limit, parse_severity, unknown, DEFAULT_LIMIT,
};
use super::recent::Recent;
use super::{AppState, RoutePolicy, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, Role};
use crate::findings::waivers::{self, NewWaiver, Waiver, WaiverError, WaiverFilter};
use crate::findings::{summary, LAYERS};
use crate::inventory::query::{self, WorkloadSummary};
use crate::posture::{catalog, Severity};

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/findings", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/posture/summary", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/waivers", Role::Viewer),
    // Responders, and members of the team owning the finding's layer: the handler decides
    // (`ownership::may_request_waiver`).
    RoutePolicy::role(Method::POST, "/api/v1/waivers", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/waivers/{id}/approve", Role::Admin),
    RoutePolicy::role(Method::POST, "/api/v1/waivers/{id}/reject", Role::Admin),
    RoutePolicy::role(Method::POST, "/api/v1/waivers/{id}/revoke", Role::Admin),
    RoutePolicy::role(Method::GET, "/findings", Role::Viewer),
    RoutePolicy::role(Method::GET, "/findings/{check}", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/posture/summary", get(summary))
        .route("/api/v1/waivers", get(list_waivers).post(create_waiver))
        .route("/api/v1/waivers/{id}/approve", post(approve_waiver))
        .route("/api/v1/waivers/{id}/reject", post(reject_waiver))
        .route("/api/v1/waivers/{id}/revoke", post(revoke_waiver))
        .route("/findings", get(get_findings_page))
        .route("/findings/{check}", get(get_check_findings_page))
}

/// The validated filters of a finding list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FindingFilter {
    pub check: Option<String>,
    pub severity: Option<Severity>,
    /// `open` or `resolved`.
    pub status: Option<String>,
    pub layer: Option<String>,
    pub workload: Option<i64>,
    pub source: Option<i64>,
    pub namespace: Option<String>,
    pub waived: Option<bool>,
    /// Routed to this team (id or name): it owns the finding's layer of the workload; `none`:
    /// nobody owns that layer.
    pub team: Option<String>,
    pub limit: i64,
    pub after: Option<i64>,
}

/// The parameters of a finding list.
pub(super) const PARAMETERS: &[&str] = &[
    "check",
    "severity",
    "status",
    "layer",
    "team",
    "workload",
    "source",
    "namespace",
    "waived",
    "limit",
    "after",
];

/// A check id of the catalog.
pub(super) fn parse_check(value: &str) -> Result<String, WebError> {
    catalog::find(value)
        .map(|meta| meta.id.to_string())
        .ok_or_else(|| WebError::BadRequest(format!("check '{value}' is not in the catalog")))
}

impl FindingFilter {
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = FindingFilter {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (name, value) in params {
            match name.as_str() {
                "check" => filter.check = Some(parse_check(value)?),
                "severity" => filter.severity = Some(parse_severity(value, &Severity::ALL)?),
                "status" => filter.status = Some(one_of("status", value, &["open", "resolved"])?),
                "layer" => filter.layer = Some(one_of("layer", value, LAYERS)?),
                "workload" => filter.workload = Some(parse_id("workload", value)?),
                "source" => filter.source = Some(parse_id("source", value)?),
                "namespace" => filter.namespace = Some(value.clone()),
                "waived" => filter.waived = Some(parse_bool("waived", value)?),
                "limit" => filter.limit = parse_limit(value)?,
                "after" => filter.after = Some(parse_id("after", value)?),
                "team" => filter.team = Some(value.trim().to_string()),
                other => return Err(unknown(other, PARAMETERS)),
            }
        }
        Ok(filter)
    }
}

/// A finding as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FindingView {
    pub id: i64,
    pub workload_id: i64,
    pub source_id: i64,
    pub namespace: String,
    pub workload_kind: String,
    pub workload_name: String,
    /// `''` for a pod-level result.
    pub container: String,
    pub check: String,
    pub severity: String,
    pub layer: String,
    pub status: String,
    pub waived: bool,
    pub waiver_id: Option<i64>,
    pub message: String,
    pub evidence: Value,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FindingPage {
    pub findings: Vec<FindingView>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<String>,
}

/// One page of findings by ascending id.
pub async fn query_findings(
    pool: &PgPool,
    filter: &FindingFilter,
) -> Result<FindingPage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "select f.id, f.workload_id, w.source_id, w.namespace, w.kind as workload_kind, \
         w.name as workload_name, f.container, f.check_id as check, f.severity, f.layer, \
         f.status, (f.status = 'open' and f.waiver_id is not null) as waived, f.waiver_id, \
         f.message, f.evidence, f.first_seen, f.last_seen, f.resolved_at, f.resolved_reason \
         from findings f join workloads w on w.id = f.workload_id where true",
    );
    if let Some(check) = &filter.check {
        query.push(" and f.check_id = ").push_bind(check.clone());
    }
    if let Some(severity) = filter.severity {
        query
            .push(" and f.severity = ")
            .push_bind(severity.as_str());
    }
    if let Some(status) = &filter.status {
        query.push(" and f.status = ").push_bind(status.clone());
    }
    if let Some(layer) = &filter.layer {
        query.push(" and f.layer = ").push_bind(layer.clone());
    }
    if let Some(workload) = filter.workload {
        query.push(" and f.workload_id = ").push_bind(workload);
    }
    if let Some(source) = filter.source {
        query.push(" and w.source_id = ").push_bind(source);
    }
    if let Some(namespace) = &filter.namespace {
        query
            .push(" and w.namespace = ")
            .push_bind(namespace.clone());
    }
    match filter.waived {
        Some(true) => {
            query.push(" and f.status = 'open' and f.waiver_id is not null");
        }
        Some(false) => {
            query.push(" and not (f.status = 'open' and f.waiver_id is not null)");
        }
        None => {}
    }
    match filter.team.as_deref() {
        None => {}
        Some("none") => {
            query.push(
                " and not exists (select 1 from workload_owners o \
                 where o.workload_id = f.workload_id and o.layer = f.layer)",
            );
        }
        Some(team) => {
            query
                .push(
                    " and exists (select 1 from workload_owners o join teams t on t.id = o.team_id \
                     where o.workload_id = f.workload_id and o.layer = f.layer and (t.id::text = ",
                )
                .push_bind(team.to_string())
                .push(" or lower(t.name) = lower(")
                .push_bind(team.to_string())
                .push(")))");
        }
    }
    if let Some(after) = filter.after {
        query.push(" and f.id > ").push_bind(after);
    }
    query
        .push(" order by f.id limit ")
        .push_bind(filter.limit + 1);
    let mut findings: Vec<FindingView> = query.build_query_as().fetch_all(pool).await?;
    let next = if findings.len() as i64 > filter.limit {
        findings.truncate(filter.limit as usize);
        findings.last().map(|f| f.id.to_string())
    } else {
        None
    };
    Ok(FindingPage { findings, next })
}

async fn list_findings(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<FindingPage>, WebError> {
    let filter = FindingFilter::parse(&params)?;
    super::ownership::check_team_filter(&state, filter.team.as_deref()).await?;
    Ok(ApiJson(query_findings(&state.pool, &filter).await?))
}

/// One group of the posture summary: open, non-waived findings counted by severity.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SummaryRow {
    /// The source id, the namespace or the check id.
    pub key: String,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub info: i64,
    /// Live workloads with at least one such finding.
    pub workloads_affected: i64,
    /// Live graded workloads of the group (not for `by=check`).
    pub workloads: Option<i64>,
    /// The mean grade (A=4 … F=0) and the worst grade (not for `by=check`).
    pub average_grade: Option<f64>,
    pub worst_grade: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub by: String,
    /// When the groups were counted: at most [`super::recent::MAX_AGE`] ago.
    pub computed_at: DateTime<Utc>,
    pub groups: Vec<SummaryRow>,
}

/// The groupings of the posture summary.
pub const SUMMARY_GROUPINGS: [&str; 4] = ["source", "namespace", "team", "check"];

/// The posture summaries are aggregates over every open finding or every workload: each
/// grouping is counted at most once per [`super::recent::MAX_AGE`] by this server.
#[derive(Default)]
pub struct SummaryCache {
    groupings: [Recent<Vec<SummaryRow>>; 4],
}

impl SummaryCache {
    /// The summary `by` one of [`SUMMARY_GROUPINGS`], counted now or a moment ago.
    pub async fn get(
        &self,
        pool: &PgPool,
        by: &str,
    ) -> Result<(DateTime<Utc>, Vec<SummaryRow>), WebError> {
        let Some(index) = SUMMARY_GROUPINGS.iter().position(|g| *g == by) else {
            // An unknown grouping gets the same error as a count would.
            return Ok((Utc::now(), posture_summary(pool, by).await?));
        };
        self.groupings[index]
            .get(|| posture_summary(pool, by))
            .await
    }
}

const GRADE_VALUE: &str = "case w.grade when 'A' then 4 when 'B' then 3 when 'C' then 2 \
                           when 'D' then 1 when 'F' then 0 end";

/// The summary of open findings grouped by source, namespace, team or check.
pub async fn posture_summary(pool: &PgPool, by: &str) -> Result<Vec<SummaryRow>, WebError> {
    let sql = match by {
        "source" | "namespace" => {
            let key = if by == "source" {
                "w.source_id::text"
            } else {
                "w.namespace"
            };
            format!(
                "select {key} as key, sum(w.findings_critical)::int8 as critical, \
                 sum(w.findings_high)::int8 as high, sum(w.findings_medium)::int8 as medium, \
                 sum(w.findings_low)::int8 as low, sum(w.findings_info)::int8 as info, \
                 count(*) filter (where w.findings_critical + w.findings_high + w.findings_medium \
                     + w.findings_low + w.findings_info > 0) as workloads_affected, \
                 count(w.grade) as workloads, avg({GRADE_VALUE})::float8 as average_grade, \
                 (array['F','D','C','B','A'])[min({GRADE_VALUE}) + 1] as worst_grade \
                 from workloads w where w.stage <> 'retire' group by 1 order by 1"
            )
        }
        "check" => "select f.check_id as key, \
                 count(*) filter (where f.severity = 'critical') as critical, \
                 count(*) filter (where f.severity = 'high') as high, \
                 count(*) filter (where f.severity = 'medium') as medium, \
                 count(*) filter (where f.severity = 'low') as low, \
                 count(*) filter (where f.severity = 'info') as info, \
                 count(distinct f.workload_id) as workloads_affected, \
                 null::int8 as workloads, null::float8 as average_grade, null::text as worst_grade \
                 from findings f where f.status = 'open' and f.waiver_id is null \
                 group by 1 order by 1"
            .to_string(),
        // A team's findings are those routed to it (it owns the finding's layer of the
        // workload); its workloads those it owns any layer of.
        "team" => format!(
            "with routed as ( \
                 select o.team_id, \
                 count(*) filter (where f.severity = 'critical') as critical, \
                 count(*) filter (where f.severity = 'high') as high, \
                 count(*) filter (where f.severity = 'medium') as medium, \
                 count(*) filter (where f.severity = 'low') as low, \
                 count(*) filter (where f.severity = 'info') as info, \
                 count(distinct f.workload_id) as workloads_affected \
                 from findings f join workload_owners o \
                   on o.workload_id = f.workload_id and o.layer = f.layer \
                 where f.status = 'open' and f.waiver_id is null group by o.team_id), \
             owned as ( \
                 select o.team_id, count(w.grade) as workloads, \
                 avg({GRADE_VALUE})::float8 as average_grade, \
                 (array['F','D','C','B','A'])[min({GRADE_VALUE}) + 1] as worst_grade \
                 from (select distinct team_id, workload_id from workload_owners) o \
                 join workloads w on w.id = o.workload_id \
                 where w.stage <> 'retire' group by o.team_id) \
             select t.name as key, coalesce(r.critical, 0) as critical, \
                 coalesce(r.high, 0) as high, coalesce(r.medium, 0) as medium, \
                 coalesce(r.low, 0) as low, coalesce(r.info, 0) as info, \
                 coalesce(r.workloads_affected, 0) as workloads_affected, \
                 coalesce(ow.workloads, 0) as workloads, ow.average_grade, ow.worst_grade \
             from teams t left join routed r on r.team_id = t.id \
             left join owned ow on ow.team_id = t.id order by 1"
        ),
        other => {
            return Err(WebError::BadRequest(format!(
                "by '{other}' is not one of source, namespace, team, check"
            )))
        }
    };
    // The SQL is one of four fixed texts chosen above: no input is formatted into it.
    Ok(sqlx::query_as::<_, SummaryRow>(&sql)
        .fetch_all(pool)
        .await?)
}

async fn summary(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<Summary>, WebError> {
    let mut by = None;
    for (name, value) in &params {
        match name.as_str() {
            "by" => by = Some(value.clone()),
            other => return Err(unknown(other, &["by"])),
        }
    }
    let by = by.ok_or_else(|| {
        WebError::BadRequest("by is required: source, namespace, team or check".into())
    })?;
    let (computed_at, groups) = state.summaries.get(&state.pool, &by).await?;
    Ok(ApiJson(Summary {
        by,
        computed_at,
        groups,
    }))
}

impl From<WaiverError> for WebError {
    fn from(err: WaiverError) -> Self {
        match err {
            WaiverError::Invalid(message) => WebError::Unprocessable(message),
            WaiverError::NotFound(_) => WebError::NotFound(err.to_string()),
            WaiverError::WrongStatus { .. } => WebError::Conflict(err.to_string()),
            WaiverError::Db(err) => err.into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WaiverList {
    pub waivers: Vec<Waiver>,
}

async fn list_waivers(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<WaiverList>, WebError> {
    let mut filter = WaiverFilter::default();
    for (name, value) in &params {
        match name.as_str() {
            "status" => {
                filter.status = Some(one_of(
                    "status",
                    value,
                    &["requested", "approved", "rejected", "revoked", "expired"],
                )?)
            }
            "check" => filter.check = Some(value.clone()),
            "workload" => filter.workload_id = Some(parse_id("workload", value)?),
            "expiring_within_days" => {
                filter.expiring_within_days = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (0..=waivers::MAX_DAYS).contains(n))
                        .ok_or_else(|| {
                            WebError::BadRequest(format!(
                                "expiring_within_days must be a whole number from 0 to {}",
                                waivers::MAX_DAYS
                            ))
                        })?,
                )
            }
            other => {
                return Err(unknown(
                    other,
                    &["status", "check", "workload", "expiring_within_days"],
                ))
            }
        }
    }
    let waivers = waivers::list(&state.pool, &filter, Utc::now()).await?;
    Ok(ApiJson(WaiverList { waivers }))
}

/// A JSON body, or a 400 saying what is wrong with it.
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, WebError> {
    serde_json::from_slice(body)
        .map_err(|err| WebError::BadRequest(format!("the body is not valid: {err}")))
}

/// The body of `POST /api/v1/waivers`; the requester is the signed-in principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverRequest {
    check: String,
    workload_id: Option<i64>,
    namespace: Option<String>,
    source_id: Option<i64>,
    reason: String,
    expires_at: DateTime<Utc>,
}

/// Runs one waiver change in a transaction with its audit row (a failure is audited too).
pub(super) async fn audited(
    state: &AppState,
    principal: &Principal,
    action: &str,
    id: Option<i64>,
    change: impl for<'c> FnOnce(
        &'c mut sqlx::PgConnection,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Waiver, WaiverError>> + Send + 'c>,
    >,
) -> Result<Waiver, WebError> {
    let mut tx = state.pool.begin().await?;
    match change(&mut tx).await {
        Ok(waiver) => {
            audit::record(
                &mut *tx,
                principal,
                action,
                &format!("waiver {}", waiver.id),
                Outcome::Success,
                principal.client_addr,
                serde_json::json!({
                    "check": waiver.check_id, "workload_id": waiver.workload_id,
                    "namespace": waiver.namespace, "source_id": waiver.source_id,
                    "expires_at": waiver.expires_at, "status": waiver.status,
                }),
            )
            .await?;
            tx.commit().await?;
            Ok(waiver)
        }
        Err(err) => {
            drop(tx);
            let target = id.map_or_else(|| "waiver".to_string(), |id| format!("waiver {id}"));
            audit::record(
                &state.pool,
                principal,
                action,
                &target,
                Outcome::Failure,
                principal.client_addr,
                serde_json::json!({"error": err.to_string()}),
            )
            .await?;
            Err(err.into())
        }
    }
}

async fn create_waiver(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<Waiver>), WebError> {
    let request: WaiverRequest = parse_body(&body)?;
    let new = NewWaiver {
        check: request.check,
        workload_id: request.workload_id,
        namespace: request.namespace,
        source_id: request.source_id,
        reason: request.reason,
        requested_by: principal.name.clone(),
        expires_at: request.expires_at,
    };
    let waiver = super::ownership::request_waiver(&state, &principal, new, Utc::now()).await?;
    Ok((StatusCode::CREATED, ApiJson(waiver)))
}

async fn approve_waiver(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<ApiJson<Waiver>, WebError> {
    let id = parse_id("the waiver id", &id)?;
    let by = principal.name.clone();
    let now = Utc::now();
    let waiver = audited(&state, &principal, "waiver.approve", Some(id), |conn| {
        Box::pin(async move { waivers::decide(conn, id, true, &by, now).await })
    })
    .await?;
    Ok(ApiJson(waiver))
}

async fn reject_waiver(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<ApiJson<Waiver>, WebError> {
    let id = parse_id("the waiver id", &id)?;
    let by = principal.name.clone();
    let now = Utc::now();
    let waiver = audited(&state, &principal, "waiver.reject", Some(id), |conn| {
        Box::pin(async move { waivers::decide(conn, id, false, &by, now).await })
    })
    .await?;
    Ok(ApiJson(waiver))
}

async fn revoke_waiver(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<ApiJson<Waiver>, WebError> {
    let id = parse_id("the waiver id", &id)?;
    let now = Utc::now();
    let waiver = audited(&state, &principal, "waiver.revoke", Some(id), |conn| {
        Box::pin(async move { waivers::revoke(conn, id, now).await })
    })
    .await?;
    Ok(ApiJson(waiver))
}

// ---------------------------------------------------------------------------------------------
// Console pages: open findings grouped by check, and the workloads of one check.

/// The filters of the findings pages: on the finding (`severity`, `layer`) and on its check in
/// the catalog (`stage`, `threat`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GroupFilter {
    pub severity: Option<Severity>,
    pub layer: Option<String>,
    pub stage: Option<String>,
    pub threat: Option<String>,
    /// Routed to this team (by id): it owns the finding's layer of the workload.
    pub team: Option<i64>,
    /// The drill-down's cursor: workloads with a larger id.
    pub after: Option<i64>,
}

const STAGES: &[&str] = &["build", "store", "deploy", "run"];
const THREATS: &[&str] = &[
    "container_escape",
    "malicious_image",
    "privilege_abuse",
    "misconfiguration",
];
/// The filters the findings pages keep in their links.
const GROUP_FILTERS: &[&str] = &["severity", "layer", "stage", "threat", "team"];

impl GroupFilter {
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = Self::default();
        for (name, value) in params {
            match name.as_str() {
                "severity" => filter.severity = Some(parse_severity(value, &Severity::ALL)?),
                "layer" => filter.layer = Some(one_of("layer", value, LAYERS)?),
                "stage" => filter.stage = Some(one_of("stage", value, STAGES)?),
                "threat" => filter.threat = Some(one_of("threat", value, THREATS)?),
                "after" => filter.after = Some(parse_id("after", value)?),
                "team" => filter.team = Some(parse_id("team", value)?),
                other => {
                    return Err(unknown(
                        other,
                        &["severity", "layer", "stage", "threat", "team", "after"],
                    ))
                }
            }
        }
        Ok(filter)
    }

    /// The catalog checks the stage and threat filters leave (all of them without those).
    fn checks(&self) -> Vec<&'static str> {
        catalog::CATALOG
            .iter()
            .filter(|meta| {
                self.stage
                    .as_deref()
                    .is_none_or(|s| meta.stages.iter().any(|stage| checks::name(stage) == s))
                    && self
                        .threat
                        .as_deref()
                        .is_none_or(|t| checks::name(meta.threat) == t)
            })
            .map(|meta| meta.id)
            .collect()
    }

    /// ` and …` on open findings `f`.
    fn push(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if self.stage.is_some() || self.threat.is_some() {
            let ids: Vec<String> = self.checks().into_iter().map(str::to_string).collect();
            query
                .push(" and f.check_id = any(")
                .push_bind(ids)
                .push(")");
        }
        if let Some(severity) = self.severity {
            query
                .push(" and f.severity = ")
                .push_bind(severity.as_str());
        }
        if let Some(layer) = &self.layer {
            query.push(" and f.layer = ").push_bind(layer.clone());
        }
        if let Some(team) = self.team {
            query
                .push(
                    " and exists (select 1 from workload_owners o where o.workload_id = \
                     f.workload_id and o.layer = f.layer and o.team_id = ",
                )
                .push_bind(team)
                .push(")");
        }
    }
}

/// The rank of a stored severity, for `max()` (info 1 … critical 5).
const SEVERITY_RANK: &str =
    "array_position(array['info','low','medium','high','critical'], f.severity::text)";

fn severity_of_rank(rank: i32) -> &'static str {
    Severity::ALL
        .get((rank - 1).max(0) as usize)
        .map_or("info", |s| s.as_str())
}

/// One check with open findings (counts as of the last recount, at most a few minutes old).
pub struct CheckGroup {
    pub check_id: String,
    pub title: &'static str,
    /// The worst severity among its open findings.
    pub severity: &'static str,
    /// Workloads with an open, non-waived finding of the check.
    pub workloads: i64,
    /// Open findings a waiver takes out of the score.
    pub waived: i64,
    pub findings: i64,
}

/// The open findings grouped by check, worst first, then by workload count, from the counts
/// [`summary`] keeps; with the time they were counted.
pub async fn groups_by_check(
    pool: &PgPool,
    filter: &GroupFilter,
) -> Result<(Vec<CheckGroup>, DateTime<Utc>), sqlx::Error> {
    let checks: Option<Vec<String>> = (filter.stage.is_some() || filter.threat.is_some())
        .then(|| filter.checks().into_iter().map(str::to_string).collect());
    let (rows, at) = if filter.team.is_some() {
        // One team's findings: counted live (the maintained counts are for everyone).
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "select f.check_id, \
             (array['info','low','medium','high','critical'])[max({SEVERITY_RANK})] as worst, \
             (count(distinct f.workload_id) filter (where f.waiver_id is null))::int4 as workloads, \
             (count(*) filter (where f.waiver_id is not null))::int4 as waived, \
             count(*)::int4 as findings \
             from findings f where f.status = 'open'"
        ));
        filter.push(&mut query);
        query.push(" group by f.check_id");
        let rows: Vec<summary::CheckCount> = query.build_query_as().fetch_all(pool).await?;
        (rows, Utc::now())
    } else {
        summary::counts(
            pool,
            filter.severity,
            filter.layer.as_deref(),
            checks.as_deref(),
            Utc::now(),
        )
        .await?
    };
    let mut groups: Vec<CheckGroup> = rows
        .into_iter()
        .map(|row| CheckGroup {
            title: catalog::find(&row.check_id).map_or("", |meta| meta.title),
            severity: Severity::parse(&row.worst).map_or("info", Severity::as_str),
            check_id: row.check_id,
            workloads: i64::from(row.workloads),
            waived: i64::from(row.waived),
            findings: i64::from(row.findings),
        })
        .collect();
    groups.sort_by(|a, b| {
        Severity::parse(b.severity)
            .cmp(&Severity::parse(a.severity))
            .then(b.workloads.cmp(&a.workloads))
            .then(a.check_id.cmp(&b.check_id))
    });
    Ok((groups, at))
}

/// The filter form's state and the links that keep it.
pub struct GroupFilterView {
    pub severity: String,
    pub team: String,
    /// Every team (id, name) for the team filter.
    pub teams: Vec<(i64, String)>,
    pub layer: String,
    pub stage: String,
    pub threat: String,
    pub severities: Vec<&'static str>,
    pub layers: &'static [&'static str],
    pub stages: &'static [&'static str],
    pub threats: &'static [&'static str],
    /// `?severity=…&…` of the given filters (empty without any).
    pub query: String,
    pub filtered: bool,
}

impl GroupFilterView {
    fn new(params: &HashMap<String, String>) -> Self {
        let given = |name: &str| params.get(name).cloned().unwrap_or_default();
        let pairs: Vec<(&str, String)> = GROUP_FILTERS
            .iter()
            .filter_map(|name| params.get(*name).map(|value| (*name, value.clone())))
            .collect();
        Self {
            severity: given("severity"),
            team: given("team"),
            teams: Vec::new(),
            layer: given("layer"),
            stage: given("stage"),
            threat: given("threat"),
            severities: Severity::ALL.iter().rev().map(|s| s.as_str()).collect(),
            layers: LAYERS,
            stages: STAGES,
            threats: THREATS,
            filtered: !pairs.is_empty(),
            query: query_string(&pairs),
        }
    }

    /// This query string with `name=value` added.
    pub fn with(&self, name: &str, value: &str) -> String {
        let extra = format!("{name}={}", super::page::encode_query_value(value));
        if self.query.is_empty() {
            format!("?{extra}")
        } else {
            format!("{}&{extra}", self.query)
        }
    }

    /// The teams for the team filter.
    async fn with_teams(mut self, pool: &PgPool) -> Result<Self, sqlx::Error> {
        self.teams = sqlx::query_as("select id, name from teams order by lower(name)")
            .fetch_all(pool)
            .await?;
        Ok(self)
    }

    /// A threat's words as people read them.
    pub fn threat_label(&self, threat: &str) -> String {
        threat.replace('_', " ")
    }
}

#[derive(Template)]
#[template(path = "findings.html")]
pub struct FindingsPage {
    ctx: PageContext,
    groups: Vec<CheckGroup>,
    /// When the counts were taken.
    counted_at: DateTime<Utc>,
    filters: GroupFilterView,
    /// Where the filter form goes.
    action: String,
    /// Whether any finding was ever recorded (to tell "all clean" from "nothing judged yet").
    any_workload: bool,
}

async fn get_findings_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let params = super::params::given(params);
    let filter = GroupFilter::parse(&params)?;
    if filter.after.is_some() {
        return Err(WebError::BadRequest(
            "after belongs to the workloads of one check (/findings/{check})".into(),
        ));
    }
    let (groups, counted_at) = groups_by_check(&state.pool, &filter).await?;
    let any_workload = !groups.is_empty()
        || sqlx::query_scalar!(r#"select exists(select 1 from workloads) as "any!""#)
            .fetch_one(&state.pool)
            .await?;
    let page = FindingsPage {
        ctx: ctx.titled("Findings").active("/findings"),
        groups,
        counted_at,
        filters: GroupFilterView::new(&params)
            .with_teams(&state.pool)
            .await?,
        action: "/findings".into(),
        any_workload,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

/// A workload with an open finding of the check.
pub struct AffectedWorkload {
    pub workload: WorkloadSummary,
    pub severity: &'static str,
    /// The containers the findings are about (`''`: the workload itself).
    pub containers: Vec<String>,
    /// Every open finding of the check on it is waived.
    pub waived: bool,
}

#[derive(sqlx::FromRow)]
struct AffectedRow {
    workload_id: i64,
    worst: i32,
    containers: Vec<String>,
    waived: bool,
}

/// How many workloads one page of a check's drill-down shows.
const AFFECTED_PAGE: i64 = 50;

/// One page of the workloads with an open finding of `check`, by ascending workload id; the
/// `after` of the next page.
pub async fn affected_workloads(
    pool: &PgPool,
    check: &str,
    filter: &GroupFilter,
    limit: i64,
) -> Result<(Vec<AffectedWorkload>, Option<i64>), sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "select f.workload_id, max({SEVERITY_RANK}) as worst, \
         array_agg(f.container order by f.container) as containers, \
         bool_and(f.waiver_id is not null) as waived \
         from findings f where f.status = 'open' and f.check_id = "
    ));
    query.push_bind(check.to_string());
    filter.push(&mut query);
    if let Some(after) = filter.after {
        query.push(" and f.workload_id > ").push_bind(after);
    }
    query
        .push(" group by f.workload_id order by f.workload_id limit ")
        .push_bind(limit + 1);
    let mut rows: Vec<AffectedRow> = query.build_query_as().fetch_all(pool).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.workload_id)
    } else {
        None
    };
    let ids: Vec<i64> = rows.iter().map(|row| row.workload_id).collect();
    let mut summaries: HashMap<i64, WorkloadSummary> = query::workloads_by_ids(pool, &ids)
        .await?
        .into_iter()
        .map(|w| (w.id, w))
        .collect();
    let affected = rows
        .into_iter()
        .filter_map(|row| {
            Some(AffectedWorkload {
                workload: summaries.remove(&row.workload_id)?,
                severity: severity_of_rank(row.worst),
                containers: row.containers,
                waived: row.waived,
            })
        })
        .collect();
    Ok((affected, next))
}

#[derive(Template)]
#[template(path = "findings_check.html")]
pub struct CheckFindingsPage {
    ctx: PageContext,
    check: &'static catalog::CheckMeta,
    workloads: Vec<AffectedWorkload>,
    filters: GroupFilterView,
    action: String,
    next_href: Option<String>,
    /// The first page's link, on later pages.
    first_href: Option<String>,
}

async fn get_check_findings_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(check): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let meta = catalog::find(&check)
        .ok_or_else(|| WebError::NotFound(format!("there is no check {check:?}")))?;
    let params = super::params::given(params);
    let filter = GroupFilter::parse(&params)?;
    let (workloads, next) =
        affected_workloads(&state.pool, meta.id, &filter, AFFECTED_PAGE).await?;
    let filters = GroupFilterView::new(&params)
        .with_teams(&state.pool)
        .await?;
    let base = format!("/findings/{}", meta.id);
    let page = CheckFindingsPage {
        ctx: ctx
            .titled(format!("{} · Findings", meta.id))
            .active("/findings"),
        check: meta,
        workloads,
        next_href: next.map(|id| format!("{base}{}", filters.with("after", &id.to_string()))),
        first_href: filter.after.map(|_| format!("{base}{}", filters.query)),
        filters,
        action: base,
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
    fn finding_filters_are_parsed_and_bad_values_refused() {
        let filter = FindingFilter::parse(&params(&[
            ("check", "priv.privileged"),
            ("severity", "critical"),
            ("status", "open"),
            ("layer", "runtime"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(filter.severity, Some(Severity::Critical));
        assert_eq!(filter.limit, 5);
        for bad in [
            ("check", "no.such"),
            ("severity", "urgent"),
            ("status", "closed"),
            ("layer", "kernel"),
            ("limit", "0"),
            ("after", "x"),
            ("waived", "maybe"),
            ("colour", "red"),
        ] {
            assert!(
                matches!(
                    FindingFilter::parse(&params(&[bad])),
                    Err(WebError::BadRequest(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
