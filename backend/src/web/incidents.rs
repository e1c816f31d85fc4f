//! The incident API: open, list, show (state, timeline, evidence, saved pre-state) and the steps
//! `isolate | analysis | fix | restore | close`. Isolate and restore are queued (202 with the
//! action); the others apply at once. An `Idempotency-Key` header (or `idempotency_key` field)
//! makes a repeated request return the first one's action instead of acting twice.
//!
//! Reading needs a viewer; opening an incident and every step need a responder; restoring before
//! a fix is recorded needs an admin (the override, with a reason). Every step is audited
//! (`incident.open`, `incident.isolate`, …, success or failure).

use askama::Template;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access::{RequireRole, Responder, RoutePolicy};
use super::json::ApiJson;
use super::page::PageContext;
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

/// Opens an incident and writes its audit row (`incident.open`), whatever the outcome.
async fn open_audited(
    state: &AppState,
    principal: &Principal,
    new: NewIncident,
    details: Value,
) -> Result<Result<(Incident, bool), IncidentError>, WebError> {
    let result = store::open(&state.pool, new).await;
    let target = match &result {
        Ok((incident, _)) => format!("incident {}", incident.id),
        Err(_) => "incident (new)".to_string(),
    };
    audit_step(state, principal, "incident.open", &target, &result, details).await?;
    Ok(result)
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
    let result = open_audited(
        &state,
        &principal,
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

// ---------------------------------------------------------------------------------------------
// Console pages: the list, the incident with its timeline, and plain forms for every step.

pub const PAGE_POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/incidents", Role::Viewer),
    RoutePolicy::role(Method::POST, "/incidents", Role::Responder),
    RoutePolicy::role(Method::GET, "/incidents/{id}", Role::Viewer),
    RoutePolicy::role(Method::POST, "/incidents/{id}/{step}", Role::Responder),
    RoutePolicy::role(Method::GET, "/workloads/{id}/isolate", Role::Responder),
    RoutePolicy::role(Method::POST, "/workloads/{id}/isolate", Role::Responder),
];

pub fn page_router() -> Router<AppState> {
    Router::new()
        .route("/incidents", get(incidents_page).post(open_incident_form))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/{step}", post(step_incident_form))
        .route(
            "/workloads/{id}/isolate",
            get(isolate_workload_page).post(isolate_workload_form),
        )
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    ctx: PageContext,
    incidents: Vec<Incident>,
    can_respond: bool,
}

async fn incidents_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    render(&IncidentsPage {
        can_respond: ctx.can(Role::Responder),
        ctx: ctx.titled("Incidents").active("/incidents"),
        incidents: store::list(&state.pool).await?,
    })
}

#[derive(Debug, Deserialize)]
struct OpenForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    /// Workload ids, separated by commas or spaces.
    #[serde(default)]
    workloads: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn ids(text: &str) -> Result<Vec<i64>, WebError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse()
                .map_err(|_| WebError::Unprocessable(format!("{part} is not an id")))
        })
        .collect()
}

async fn open_incident_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Form(form): Form<OpenForm>,
) -> Result<Redirect, WebError> {
    let workload_ids = ids(&form.workloads)?;
    let details = serde_json::json!({"severity": form.severity, "workloads": workload_ids});
    let result = open_audited(
        &state,
        &principal,
        NewIncident {
            title: form.title,
            severity: form.severity,
            assignee: None,
            opened_by: principal.name.clone(),
            workload_ids,
            finding_ids: Vec::new(),
            note: form.notes,
            idempotency_key: form.idempotency_key.filter(|key| !key.is_empty()),
        },
        details,
    )
    .await?;
    let (incident, _) = result?;
    Ok(Redirect::to(&format!("/incidents/{}", incident.id)))
}

struct ActionRow {
    id: i64,
    kind: String,
    status: String,
    actor: String,
    note: String,
    at: String,
    finished: String,
    transition: String,
    error: String,
    details: String,
}

struct TargetRow {
    name: String,
    method: String,
    networks: String,
    isolated: String,
    restored: String,
}

struct EvidenceRow {
    id: i64,
    kind: String,
    instance: String,
    sha256: String,
    bytes: i32,
    at: String,
}

/// A step button: the form's step, its label and the confirmation saying what will happen.
struct StepButton {
    step: &'static str,
    label: &'static str,
    confirm: String,
    danger: bool,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    ctx: PageContext,
    incident: Incident,
    workloads: Vec<AffectedWorkload>,
    actions: Vec<ActionRow>,
    targets: Vec<TargetRow>,
    evidence: Vec<EvidenceRow>,
    buttons: Vec<StepButton>,
    /// Warnings of the engine actions (other NetworkPolicies still selecting a pod).
    warnings: Vec<String>,
    /// The findings the incident was opened from, with their workload and check.
    findings: Vec<store::LinkedFinding>,
    can_respond: bool,
    can_override: bool,
    /// Who owned the affected workloads when the incident was opened.
    owners_at_open: Vec<crate::ownership::store::OwnerAtOpen>,
    in_progress: bool,
    /// A fresh key per rendering: a double submit of the same form acts once.
    idempotency_key: String,
}

/// Exactly what isolation will do to each instance. `incident` is the label value Kubernetes
/// pods get (`None` before the incident exists).
pub fn isolate_confirmation(plan: &[store::PlannedTarget], incident: Option<i64>) -> String {
    use crate::incident::kubernetes::{POLICY_NAME, QUARANTINE_LABEL};
    if plan.is_empty() {
        return "The affected workloads have no live instance: isolation will fail and change nothing.".into();
    }
    let value = incident.map_or_else(
        || "<the new incident's id>".to_string(),
        |id| id.to_string(),
    );
    let mut lines = vec![format!("Isolate {} instance(s):", plan.len())];
    let mut namespaces: Vec<&str> = Vec::new();
    for target in plan {
        let mode = target.network_mode.as_deref().unwrap_or("default");
        let line = if target.source_kind == "kubernetes" {
            let namespace = if target.namespace.is_empty() {
                "default"
            } else {
                &target.namespace
            };
            if !namespaces.contains(&namespace) {
                namespaces.push(namespace);
            }
            format!(
                "- pod {} in namespace {namespace}: labelled {QUARANTINE_LABEL}={value} (a label it had is saved and put back on restore); its containers keep running.",
                target.name
            )
        } else if target.source_kind != "docker" {
            format!(
                "- {}: {} instances cannot be isolated (no driver).",
                target.name, target.source_kind
            )
        } else if mode == "host" || mode == "none" || mode.starts_with("container:") {
            format!("- {}: uses {mode} networking, which cannot be disconnected: it will be PAUSED (all its processes frozen).", target.name)
        } else {
            format!(
                "- {}: its attachments (aliases, static addresses, links) are saved, then it is disconnected from {}; its processes keep running.",
                target.name,
                if target.networks.is_empty() { "every network".to_string() } else { target.networks.join(", ") }
            )
        };
        lines.push(line);
    }
    for namespace in &namespaces {
        lines.push(format!(
            "- namespace {namespace}: the NetworkPolicy {POLICY_NAME} (pods with {QUARANTINE_LABEL}; policy types Ingress and Egress; no rule, so no traffic in or out) is created unless it exists. It is deleted on restore once no pod of the namespace is quarantined."
        ));
    }
    if !namespaces.is_empty() {
        lines.push("Other NetworkPolicies selecting these pods still apply (policies add up: their allow rules still let traffic through); they are recorded as warnings on the incident.".into());
    }
    if plan.iter().any(|t| t.source_kind == "docker") {
        lines.push(
            "Evidence is captured: inspect JSON, process list, filesystem diff, last 500 log lines."
                .into(),
        );
    }
    if !namespaces.is_empty() {
        lines.push(
            "Evidence is captured for each pod: its JSON (secret values removed), the last 500 log lines of each container."
                .into(),
        );
    }
    lines.join("\n")
}

/// Exactly what restore will put back.
fn restore_confirmation(targets: &[TargetSummary], overridden: bool) -> String {
    let mut lines = vec![if overridden {
        "Restore BEFORE a fix is recorded (admin override; the reason is kept in the timeline):"
            .to_string()
    } else {
        "Restore the saved pre-state:".to_string()
    }];
    for target in targets.iter().filter(|t| t.restored_at.is_none()) {
        if target.method == "pause" {
            lines.push(format!("- {}: unpaused.", target.name));
        } else if target.method == crate::incident::kubernetes::METHOD {
            let label = match target.pre_state["label"].as_str() {
                Some(value) => format!("set back to {value}"),
                None => "removed".to_string(),
            };
            lines.push(format!(
                "- pod {}: the label {} {label}; the NetworkPolicy {} is deleted once no pod of {} is quarantined.",
                target.name,
                crate::incident::kubernetes::QUARANTINE_LABEL,
                crate::incident::kubernetes::POLICY_NAME,
                target.pre_state["namespace"].as_str().unwrap_or("the namespace"),
            ));
        } else {
            lines.push(format!(
                "- {}: reconnected to {} with the same aliases and addresses.",
                target.name,
                networks_of(target)
            ));
        }
    }
    lines.join("\n")
}

fn networks_of(target: &TargetSummary) -> String {
    let names: Vec<String> = target.pre_state["networks"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|n| {
                    let aliases = n["aliases"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    let ip = n["ipv4"]
                        .as_str()
                        .map(|ip| format!(" {ip}"))
                        .unwrap_or_default();
                    format!(
                        "{}{ip}{}",
                        n["network"].as_str().unwrap_or("?"),
                        if aliases.is_empty() {
                            String::new()
                        } else {
                            format!(" (aliases {aliases})")
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "no network".into()
    } else {
        names.join(", ")
    }
}

async fn incident_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let incident = store::get(&state.pool, id).await?;
    let targets = store::targets(&state.pool, id).await?;
    let actions = store::actions(&state.pool, id).await?;
    let current = IncidentState::parse(&incident.state).unwrap_or(IncidentState::Closed);
    let mut buttons = Vec::new();
    for step in workflow::available(current) {
        let (label, confirm, danger) = match step {
            Step::Isolate => (
                "Isolate",
                isolate_confirmation(&store::isolation_plan(&state.pool, id).await?, Some(id)),
                true,
            ),
            Step::Restore => ("Restore", restore_confirmation(&targets, false), true),
            Step::Close => (
                "Close",
                "Close this incident; no further step is possible.".to_string(),
                false,
            ),
            Step::Analysis => ("Record analysis", String::new(), false),
            Step::Fix => ("Record fix", String::new(), false),
        };
        buttons.push(StepButton {
            step: step.as_str(),
            label,
            confirm,
            danger,
        });
    }
    let can_override = ctx.can(Role::Admin)
        && matches!(current, IncidentState::Isolated | IncidentState::Analysing);
    if can_override {
        buttons.push(StepButton {
            step: "restore",
            label: "Restore before fix (admin override)",
            confirm: restore_confirmation(&targets, true),
            danger: true,
        });
    }
    let in_progress = actions
        .iter()
        .any(|a| a.status == "queued" || a.status == "running");
    let mut warnings: Vec<String> = Vec::new();
    for action in &actions {
        for warning in action.result["warnings"].as_array().into_iter().flatten() {
            if let Some(text) = warning.as_str() {
                if !warnings.iter().any(|w| w == text) {
                    warnings.push(text.to_string());
                }
            }
        }
    }
    let findings = store::linked_findings(&state.pool, &incident.finding_ids).await?;
    render(&IncidentPage {
        can_respond: ctx.can(Role::Responder),
        ctx: ctx.titled(format!("Incident {id}")).active("/incidents"),
        workloads: store::workloads(&state.pool, id).await?,
        owners_at_open: crate::ownership::store::owners_at_open(&state.pool, id).await?,
        actions: actions
            .into_iter()
            .map(|a| ActionRow {
                id: a.id,
                transition: match (&a.from_state, &a.to_state) {
                    (Some(from), Some(to)) => format!("{from} → {to}"),
                    (None, Some(to)) => to.clone(),
                    (Some(from), None) => format!("{from} → …"),
                    (None, None) => String::new(),
                },
                details: if a.result.as_object().is_some_and(|o| !o.is_empty()) {
                    a.result.to_string()
                } else {
                    String::new()
                },
                kind: a.kind,
                status: a.status,
                actor: a.actor,
                note: a.note,
                at: time(&a.created_at),
                finished: a.finished_at.as_ref().map(time).unwrap_or_default(),
                error: a.error.unwrap_or_default(),
            })
            .collect(),
        targets: targets
            .iter()
            .map(|t| TargetRow {
                name: t.name.clone(),
                method: t.method.clone(),
                networks: if t.method == crate::incident::kubernetes::METHOD {
                    match t.pre_state["label"].as_str() {
                        Some(value) => format!("label was {value}"),
                        None => "no quarantine label before".to_string(),
                    }
                } else {
                    networks_of(t)
                },
                isolated: t.isolated_at.as_ref().map(time).unwrap_or_default(),
                restored: t.restored_at.as_ref().map(time).unwrap_or_default(),
            })
            .collect(),
        evidence: store::evidence(&state.pool, id)
            .await?
            .into_iter()
            .map(|e| EvidenceRow {
                id: e.id,
                kind: e.kind,
                instance: e.instance.unwrap_or_default(),
                sha256: e.sha256,
                bytes: e.bytes,
                at: time(&e.captured_at),
            })
            .collect(),
        buttons,
        warnings,
        findings,
        can_override,
        in_progress,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        incident,
    })
}

#[derive(Debug, Default, Deserialize)]
struct StepForm {
    #[serde(default)]
    note: String,
    idempotency_key: Option<String>,
    override_reason: Option<String>,
    analysis_notes: Option<String>,
    attack_path: Option<String>,
    #[serde(default)]
    fixed_findings: String,
    fixed_digest: Option<String>,
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.trim().is_empty())
}

async fn step_incident_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path((id, step)): Path<(i64, String)>,
    Form(form): Form<StepForm>,
) -> Result<Redirect, WebError> {
    let step = Step::parse(&step).ok_or_else(|| WebError::NotFound(format!("no step {step}")))?;
    let fixed_findings = ids(&form.fixed_findings)?;
    let details = serde_json::json!({"note": form.note, "override_reason": form.override_reason});
    let result = store::request_step(
        &state.pool,
        id,
        step,
        StepRequest {
            actor: principal.name.clone(),
            note: form.note,
            idempotency_key: non_blank(form.idempotency_key),
            override_reason: non_blank(form.override_reason),
            by_admin: principal.can(Role::Admin),
            analysis_notes: non_blank(form.analysis_notes),
            attack_path: non_blank(form.attack_path),
            fixed_findings,
            fixed_digest: non_blank(form.fixed_digest),
        },
    )
    .await;
    audit_step(
        &state,
        &principal,
        &format!("incident.{}", step.as_str()),
        &format!("incident {id}"),
        &result,
        details,
    )
    .await?;
    result?;
    Ok(Redirect::to(&format!("/incidents/{id}")))
}

/// The workload's `Isolate…` confirmation: exactly what will happen, and the form that opens an
/// incident and queues its isolation.
#[derive(Template)]
#[template(path = "workload_isolate.html")]
struct IsolateWorkloadPage {
    ctx: PageContext,
    workload: store::AffectedWorkload,
    confirmation: String,
    instances: usize,
    title: String,
    idempotency_key: String,
}

impl IsolateWorkloadPage {
    fn display_name(&self) -> String {
        let w = &self.workload;
        if w.namespace.is_empty() {
            w.name.clone()
        } else {
            format!("{}/{}", w.namespace, w.name)
        }
    }
}

async fn affected_workload(state: &AppState, id: i64) -> Result<store::AffectedWorkload, WebError> {
    sqlx::query_as!(
        store::AffectedWorkload,
        "select id, kind, namespace, name from workloads where id = $1",
        id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| WebError::NotFound(format!("there is no workload {id}")))
}

async fn isolate_workload_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let workload = affected_workload(&state, id).await?;
    let plan = store::workloads_isolation_plan(&state.pool, &[id]).await?;
    let page = IsolateWorkloadPage {
        ctx: ctx
            .titled(format!("Isolate {}", workload.name))
            .active("/workloads"),
        confirmation: isolate_confirmation(&plan, None),
        instances: plan.len(),
        title: format!("Isolation of {} {}", workload.kind, workload.name),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        workload,
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
struct IsolateWorkloadForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Opens an incident for the workload and queues its isolation; a repeated submit (same key)
/// opens and isolates once.
async fn isolate_workload_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<i64>,
    Form(form): Form<IsolateWorkloadForm>,
) -> Result<Redirect, WebError> {
    let key = non_blank(form.idempotency_key);
    let details =
        serde_json::json!({"severity": form.severity, "workloads": [id], "from": "workload page"});
    let result = open_audited(
        &state,
        &principal,
        NewIncident {
            title: form.title,
            severity: form.severity,
            assignee: None,
            opened_by: principal.name.clone(),
            workload_ids: vec![id],
            finding_ids: Vec::new(),
            note: form.note.clone(),
            idempotency_key: key.clone(),
        },
        details,
    )
    .await?;
    let (incident, _) = result?;
    let result = store::request_step(
        &state.pool,
        incident.id,
        Step::Isolate,
        StepRequest {
            actor: principal.name.clone(),
            note: form.note,
            idempotency_key: key.map(|k| format!("{k}-isolate")),
            by_admin: principal.can(Role::Admin),
            ..StepRequest::default()
        },
    )
    .await;
    audit_step(
        &state,
        &principal,
        "incident.isolate",
        &format!("incident {}", incident.id),
        &result,
        serde_json::json!({"from": "workload page", "workload": id}),
    )
    .await?;
    result?;
    Ok(Redirect::to(&format!("/incidents/{}", incident.id)))
}

fn render(template: &impl Template) -> Result<Html<String>, WebError> {
    Ok(Html(template.render().map_err(anyhow::Error::from)?))
}
