//! The incident API: open, list, show (state, timeline, evidence, saved pre-state) and the steps
//! `isolate | analysis | fix | restore | close`. Isolate and restore are queued (202 with the
//! action); the others apply at once. An `Idempotency-Key` header (or `idempotency_key` field)
//! makes a repeated request return the first one's action instead of acting twice.
//!
//! Reading needs a viewer; opening an incident and every step need a responder; restoring before
//! a fix is recorded needs an admin (the override, with a reason). Every step is audited
//! (`incident.open`, `incident.isolate`, …, success or failure).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access::{RequireRole, Responder, RoutePolicy};
use super::json::ApiJson;
use super::{AppState, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, Role};
use crate::incident::store::{
    self, Action, AffectedWorkload, EvidenceSummary, Incident, NewIncident, StepRequest,
    TargetSummary,
};
use crate::incident::workflow::{self, GuardError, State as IncidentState, Step};
use crate::incident::IncidentError;

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/incidents", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/incidents", Role::Responder),
    RoutePolicy::role(Method::GET, "/api/v1/incidents/{id}", Role::Viewer),
    RoutePolicy::role(
        Method::GET,
        "/api/v1/incidents/{id}/evidence/{evidence}",
        Role::Viewer,
    ),
    RoutePolicy::role(
        Method::GET,
        "/api/v1/incidents/{id}/actions/{action}",
        Role::Viewer,
    ),
    RoutePolicy::role(
        Method::POST,
        "/api/v1/incidents/{id}/{step}",
        Role::Responder,
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents", get(list_incidents).post(open_incident))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route(
            "/api/v1/incidents/{id}/evidence/{evidence}",
            get(get_evidence),
        )
        .route("/api/v1/incidents/{id}/actions/{action}", get(get_action))
        .route("/api/v1/incidents/{id}/{step}", post(step_incident))
}

impl From<IncidentError> for WebError {
    fn from(err: IncidentError) -> Self {
        match err {
            IncidentError::NotFound => Self::NotFound("no such incident".into()),
            IncidentError::Guard(GuardError::OverrideNotAdmin) => Self::Forbidden(err.to_string()),
            IncidentError::Guard(_) | IncidentError::Busy => Self::Conflict(err.to_string()),
            IncidentError::Invalid(message) => Self::Unprocessable(message),
            IncidentError::Database(err) => err.into(),
        }
    }
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, WebError> {
    payload
        .map(|Json(value)| value)
        .map_err(|err| WebError::BadRequest(err.body_text()))
}

fn idempotency_key(headers: &HeaderMap, field: Option<String>) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or(field)
        .filter(|key| !key.trim().is_empty())
}

#[derive(Debug, Deserialize)]
pub struct OpenIncident {
    pub title: String,
    pub severity: String,
    #[serde(default)]
    pub workload_ids: Vec<i64>,
    #[serde(default)]
    pub finding_ids: Vec<i64>,
    pub assignee: Option<String>,
    #[serde(default)]
    pub notes: String,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    pub available_steps: Vec<Step>,
    pub workloads: Vec<AffectedWorkload>,
    pub actions: Vec<Action>,
    pub evidence: Vec<EvidenceSummary>,
    /// The saved pre-state of every instance an isolation touched.
    pub targets: Vec<TargetSummary>,
}

/// Writes the audit row of a step, whatever its outcome.
async fn audit_step<T>(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    result: &Result<T, IncidentError>,
    details: Value,
) -> Result<(), WebError> {
    let (outcome, details) = match result {
        Ok(_) => (Outcome::Success, details),
        Err(err) => (
            Outcome::Failure,
            serde_json::json!({"request": details, "error": err.to_string()}),
        ),
    };
    audit::record(
        &state.pool,
        principal,
        action,
        target,
        outcome,
        principal.client_addr,
        details,
    )
    .await?;
    Ok(())
}

async fn open_incident(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    headers: HeaderMap,
    payload: Result<Json<OpenIncident>, JsonRejection>,
) -> Result<Response, WebError> {
    let request = body(payload)?;
    let key = idempotency_key(&headers, request.idempotency_key);
    let details = serde_json::json!({
        "severity": request.severity,
        "workloads": request.workload_ids,
        "findings": request.finding_ids,
    });
    let result = store::open(
        &state.pool,
        NewIncident {
            title: request.title,
            severity: request.severity,
            assignee: request.assignee,
            opened_by: principal.name.clone(),
            workload_ids: request.workload_ids,
            finding_ids: request.finding_ids,
            note: request.notes,
            idempotency_key: key,
        },
    )
    .await;
    let target = match &result {
        Ok((incident, _)) => format!("incident {}", incident.id),
        Err(_) => "incident (new)".to_string(),
    };
    audit_step(
        &state,
        &principal,
        "incident.open",
        &target,
        &result,
        details,
    )
    .await?;
    let (incident, created) = result?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(incident)).into_response())
}

async fn list_incidents(State(state): State<AppState>) -> Result<ApiJson<IncidentList>, WebError> {
    Ok(ApiJson(IncidentList {
        incidents: store::list(&state.pool).await?,
    }))
}

async fn get_incident(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<ApiJson<IncidentView>, WebError> {
    let incident = store::get(&state.pool, id).await?;
    let available_steps = IncidentState::parse(&incident.state)
        .map(workflow::available)
        .unwrap_or_default();
    Ok(ApiJson(IncidentView {
        available_steps,
        workloads: store::workloads(&state.pool, id).await?,
        actions: store::actions(&state.pool, id).await?,
        evidence: store::evidence(&state.pool, id).await?,
        targets: store::targets(&state.pool, id).await?,
        incident,
    }))
}

async fn get_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(i64, i64)>,
) -> Result<ApiJson<Action>, WebError> {
    store::action(&state.pool, action)
        .await?
        .filter(|found| found.incident_id == id)
        .map(ApiJson)
        .ok_or_else(|| WebError::NotFound("no such action".into()))
}

async fn get_evidence(
    State(state): State<AppState>,
    Path((id, evidence)): Path<(i64, i64)>,
) -> Result<ApiJson<Value>, WebError> {
    store::evidence_content(&state.pool, id, evidence)
        .await?
        .map(ApiJson)
        .ok_or_else(|| WebError::NotFound("no such evidence".into()))
}

#[derive(Debug, Default, Deserialize)]
pub struct StepBody {
    #[serde(default)]
    pub note: String,
    pub idempotency_key: Option<String>,
    /// Restore before a fix: the reason for the override.
    pub override_reason: Option<String>,
    pub analysis_notes: Option<String>,
    pub attack_path: Option<String>,
    #[serde(default)]
    pub fixed_findings: Vec<i64>,
    pub fixed_digest: Option<String>,
}

async fn step_incident(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path((id, step)): Path<(i64, String)>,
    headers: HeaderMap,
    payload: Result<Json<StepBody>, JsonRejection>,
) -> Result<Response, WebError> {
    let step = Step::parse(&step).ok_or_else(|| WebError::NotFound(format!("no step {step}")))?;
    let request = body(payload)?;
    let key = idempotency_key(&headers, request.idempotency_key);
    let details = serde_json::json!({
        "note": request.note,
        "override_reason": request.override_reason,
        "fixed_findings": request.fixed_findings,
        "fixed_digest": request.fixed_digest,
    });
    let result = store::request_step(
        &state.pool,
        id,
        step,
        StepRequest {
            actor: principal.name.clone(),
            note: request.note,
            idempotency_key: key,
            override_reason: request.override_reason,
            // The override of the restore-before-fix guard is an admin's.
            by_admin: principal.can(Role::Admin),
            analysis_notes: request.analysis_notes,
            attack_path: request.attack_path,
            fixed_findings: request.fixed_findings,
            fixed_digest: request.fixed_digest,
        },
    )
    .await;
    let details = match &result {
        Ok((action, created)) => {
            serde_json::json!({"action": action.id, "repeated": !created, "request": details})
        }
        Err(_) => details,
    };
    audit_step(
        &state,
        &principal,
        &format!("incident.{}", step.as_str()),
        &format!("incident {id}"),
        &result,
        details,
    )
    .await?;
    let (action, created) = result?;
    let status = if step.is_engine_action() && created {
        StatusCode::ACCEPTED
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(action)).into_response())
}
