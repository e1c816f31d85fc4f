//! Runtime events: `GET /api/v1/events` (filters `source` (an id, or `docker` / `kubernetes`),
//! `workload`, `kind` (comma-separated), `severity` (at least), `since` (RFC 3339, or an age such
//! as `15m`, `2h`, `7d`); newest first, keyset pagination `?limit=&after=` with a `next` cursor),
//! `GET /api/v1/events/{id}`, `POST /api/v1/events/{id}/incident` (open an incident with the
//! event as its first evidence), a workload's process baseline
//! (`GET|POST /api/v1/workloads/{id}/process-baseline`), and the console page /events with the
//! same filters.
//!
//! Reading needs a viewer; opening an incident and approving processes into a baseline need a
//! responder. Both are audited (`incident.open`, `baseline.approve`).

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::access::{RequireRole, Responder, RoutePolicy};
use super::json::ApiJson;
use super::page::{query_string, PageContext};
use super::params::parse_id;
use super::{AppState, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, Role};
use crate::incident::IncidentError;
use crate::posture::Severity;
use crate::runtime::drift::{self, Baseline};
use crate::runtime::events::{self, EventFilter, EventPage, EventView, SourceFilter};

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/events", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/events/{id}", Role::Viewer),
    RoutePolicy::role(
        Method::POST,
        "/api/v1/events/{id}/incident",
        Role::Responder,
    ),
    RoutePolicy::role(
        Method::GET,
        "/api/v1/workloads/{id}/process-baseline",
        Role::Viewer,
    ),
    RoutePolicy::role(
        Method::POST,
        "/api/v1/workloads/{id}/process-baseline",
        Role::Responder,
    ),
    RoutePolicy::role(Method::GET, "/events", Role::Viewer),
    RoutePolicy::role(Method::POST, "/events/{id}/incident", Role::Responder),
    RoutePolicy::role(Method::POST, "/events/{id}/approve", Role::Responder),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(get_event))
        .route("/api/v1/events/{id}/incident", post(open_incident))
        .route(
            "/api/v1/workloads/{id}/process-baseline",
            get(get_baseline).post(approve_baseline),
        )
        .route("/events", get(events_page))
        .route("/events/{id}/incident", post(open_incident_form))
        .route("/events/{id}/approve", post(approve_form))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;
/// The event kinds, for the filter's choices and its validation.
pub const KINDS: &[&str] = &[
    "exec_create",
    "exec_start",
    "privileged_start",
    "sensitive_mount_start",
    "oom_kill",
    "health_unhealthy",
    "restart",
    "restart_loop",
    "process_drift",
    "fs_drift",
    "ephemeral_container",
    "image_drift",
    "spec_drift",
];

/// `2026-11-28T10:00:00Z`, or an age: `90s`, `15m`, `2h`, `7d`.
fn parse_since(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, WebError> {
    let value = value.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let bad = || {
        WebError::BadRequest(format!(
            "since '{value}' is neither an RFC 3339 time nor an age such as 15m, 2h or 7d"
        ))
    };
    let (number, unit) = value.split_at(value.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(now - chrono::Duration::seconds(seconds))
}

/// Parses the filters of an event list (API and page); empty values count as absent.
pub fn parse_filter(params: &HashMap<String, String>) -> Result<EventFilter, WebError> {
    let mut filter = EventFilter {
        limit: DEFAULT_LIMIT,
        ..EventFilter::default()
    };
    for (name, value) in params {
        if value.trim().is_empty() {
            continue;
        }
        match name.as_str() {
            "source" => {
                filter.source = Some(match value.trim() {
                    kind @ ("docker" | "kubernetes" | "file") => SourceFilter::Kind(kind.into()),
                    other => SourceFilter::Id(parse_id("source", other).map_err(|_| {
                        WebError::BadRequest(format!(
                            "source '{other}' is neither a source id nor docker, kubernetes or file"
                        ))
                    })?),
                })
            }
            "workload" => filter.workload = Some(parse_id("workload", value)?),
            "kind" => {
                for kind in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    if !KINDS.contains(&kind) {
                        return Err(WebError::BadRequest(format!(
                            "kind '{kind}' is not one of {}",
                            KINDS.join(", ")
                        )));
                    }
                    filter.kinds.push(kind.to_string());
                }
            }
            "severity" => {
                filter.min_severity = Some(Severity::parse(value).ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "severity '{value}' is not one of info, low, medium, high, critical"
                    ))
                })?)
            }
            "since" => filter.since = Some(parse_since(value, Utc::now())?),
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
            other => {
                return Err(WebError::BadRequest(format!(
                    "unknown parameter '{other}'; expected source, workload, kind, severity, \
                     since, limit or after"
                )))
            }
        }
    }
    Ok(filter)
}

async fn list_events(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<EventPage>, WebError> {
    let filter = parse_filter(&params)?;
    Ok(ApiJson(events::query(&state.pool, &filter).await?))
}

async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<EventView>, WebError> {
    let id = parse_id("the event id", &id)?;
    events::get(&state.pool, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| WebError::NotFound(format!("there is no runtime event {id}")))
}

/// A JSON body, or the defaults when there is none.
fn json_or_default<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WebError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|err| WebError::BadRequest(format!("the body is not the expected JSON: {err}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenFromEvent {
    pub title: Option<String>,
    pub severity: Option<String>,
    pub idempotency_key: Option<String>,
}

fn incident_error(err: IncidentError, event_id: i64) -> WebError {
    match err {
        IncidentError::Invalid(message) if message.starts_with("there is no runtime event") => {
            WebError::NotFound(message)
        }
        IncidentError::Invalid(message) => WebError::Unprocessable(message),
        IncidentError::NotFound => WebError::NotFound(format!("no incident for event {event_id}")),
        IncidentError::Database(err) => err.into(),
        other => WebError::Conflict(other.to_string()),
    }
}

/// Opens the incident and writes its audit row, whatever the outcome.
async fn open_and_audit(
    state: &AppState,
    principal: &Principal,
    event_id: i64,
    request: OpenFromEvent,
) -> Result<(crate::incident::store::Incident, bool), WebError> {
    let result = events::open_incident(
        &state.pool,
        event_id,
        &principal.name,
        request.title,
        request.severity,
        request.idempotency_key,
    )
    .await;
    let (outcome, target, details) = match &result {
        Ok((incident, _)) => (
            Outcome::Success,
            format!("incident {}", incident.id),
            json!({"event": event_id}),
        ),
        Err(err) => (
            Outcome::Failure,
            "incident (new)".to_string(),
            json!({"event": event_id, "error": err.to_string()}),
        ),
    };
    audit::record(
        &state.pool,
        principal,
        "incident.open",
        &target,
        outcome,
        principal.client_addr,
        details,
    )
    .await?;
    result.map_err(|err| incident_error(err, event_id))
}

async fn open_incident(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let id = parse_id("the event id", &id)?;
    let mut request: OpenFromEvent = json_or_default(&body)?;
    if let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty())
    {
        request.idempotency_key = Some(key.to_string());
    }
    let (incident, created) = open_and_audit(&state, &principal, id, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(incident)).into_response())
}

async fn get_baseline(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Baseline>, WebError> {
    let id = parse_id("the workload id", &id)?;
    drift::baseline(&state.pool, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "workload {id} has no process baseline yet (it is learned once it runs)"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The process names to approve; empty: every process now outside the baseline.
    #[serde(default)]
    pub processes: Vec<String>,
}

async fn approve_and_audit(
    state: &AppState,
    principal: &Principal,
    workload_id: i64,
    processes: &[String],
) -> Result<Vec<String>, WebError> {
    let exists = sqlx::query_scalar!(
        r#"select exists(select 1 from workloads where id = $1) as "exists!""#,
        workload_id
    )
    .fetch_one(&state.pool)
    .await?;
    if !exists {
        return Err(WebError::NotFound(format!(
            "there is no workload {workload_id}"
        )));
    }
    let mut tx = state.pool.begin().await?;
    let baseline =
        drift::approve_baseline(&mut tx, workload_id, processes, &principal.name).await?;
    tx.commit().await?;
    audit::record(
        &state.pool,
        principal,
        "baseline.approve",
        &format!("workload {workload_id}"),
        Outcome::Success,
        principal.client_addr,
        json!({"processes": processes, "baseline": baseline}),
    )
    .await?;
    Ok(baseline)
}

async fn approve_baseline(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<ApiJson<Baseline>, WebError> {
    let id = parse_id("the workload id", &id)?;
    let request: ApproveRequest = json_or_default(&body)?;
    approve_and_audit(&state, &principal, id, &request.processes).await?;
    Ok(ApiJson(
        drift::baseline(&state.pool, id)
            .await?
            .ok_or_else(|| WebError::NotFound(format!("workload {id} has no process baseline")))?,
    ))
}

/// One event as the console shows it.
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub workload_id: Option<i64>,
    pub workload: String,
    pub instance: String,
    pub source: String,
    /// The evidence, as indented JSON.
    pub details: String,
    /// A process-drift event a responder can approve into the baseline.
    pub approvable: bool,
}

impl From<EventView> for EventRow {
    fn from(e: EventView) -> Self {
        let workload = match (&e.namespace, &e.workload_name) {
            (Some(ns), Some(name)) if !ns.is_empty() => format!("{ns}/{name}"),
            (_, Some(name)) => name.clone(),
            _ => String::new(),
        };
        Self {
            approvable: e.kind == "process_drift" && e.workload_id.is_some(),
            id: e.id,
            at: e.at,
            severity: e.severity,
            summary: e.summary,
            workload_id: e.workload_id,
            workload,
            instance: e.instance_name.unwrap_or_default(),
            source: format!("{} #{}", e.source_kind, e.source_id),
            details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
            kind: e.kind,
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    ctx: PageContext,
    events: Vec<EventRow>,
    kinds: &'static [&'static str],
    severities: [&'static str; 5],
    /// The filters as given, to fill the form.
    source: String,
    workload: String,
    kind: String,
    severity: String,
    since: String,
    next: Option<String>,
    can_respond: bool,
    /// A fresh key per rendering: a double submit of the same button opens one incident.
    render_key: String,
}

async fn events_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let filter = parse_filter(&params)?;
    let page = events::query(&state.pool, &filter).await?;
    let given = |name: &str| params.get(name).cloned().unwrap_or_default();
    let next = page.next.map(|after| {
        let mut pairs: Vec<(&str, String)> = ["source", "workload", "kind", "severity", "since"]
            .into_iter()
            .filter_map(|name| {
                params
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .map(|v| (name, v.clone()))
            })
            .collect();
        pairs.push(("after", after));
        format!("/events{}", query_string(&pairs))
    });
    let html = EventsPage {
        can_respond: ctx.can(Role::Responder),
        ctx: ctx.titled("Runtime events").active("/events"),
        events: page.events.into_iter().map(EventRow::from).collect(),
        kinds: KINDS,
        severities: ["info", "low", "medium", "high", "critical"],
        source: given("source"),
        workload: given("workload"),
        kind: given("kind"),
        severity: given("severity"),
        since: given("since"),
        next,
        render_key: uuid::Uuid::new_v4().simple().to_string(),
    }
    .render()
    .map_err(anyhow::Error::from)?;
    Ok(Html(html))
}

#[derive(Debug, Deserialize)]
struct IncidentForm {
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn open_incident_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<String>,
    Form(form): Form<IncidentForm>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the event id", &id)?;
    let request = OpenFromEvent {
        idempotency_key: form.idempotency_key.filter(|k| !k.is_empty()),
        ..OpenFromEvent::default()
    };
    let (incident, _) = open_and_audit(&state, &principal, id, request).await?;
    Ok(Redirect::to(&format!("/incidents/{}", incident.id)))
}

async fn approve_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Path(id): Path<String>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the event id", &id)?;
    let event = events::get(&state.pool, id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("there is no runtime event {id}")))?;
    let Some(workload_id) = event.workload_id.filter(|_| event.kind == "process_drift") else {
        return Err(WebError::Unprocessable(
            "only a process-drift event of a known workload can be approved".into(),
        ));
    };
    let processes: Vec<String> = event
        .details
        .get("new_processes")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    approve_and_audit(&state, &principal, workload_id, &processes).await?;
    Ok(Redirect::to(&format!("/events?workload={workload_id}")))
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
        let filter = parse_filter(&params(&[
            ("source", "docker"),
            ("kind", "exec_start,fs_drift"),
            ("severity", "medium"),
            ("since", "2h"),
            ("limit", "5"),
            ("after", "10"),
            ("workload", ""),
        ]))
        .unwrap();
        assert_eq!(filter.source, Some(SourceFilter::Kind("docker".into())));
        assert_eq!(filter.kinds, ["exec_start", "fs_drift"]);
        assert_eq!(filter.min_severity, Some(Severity::Medium));
        assert!(filter.since.unwrap() < Utc::now() - chrono::Duration::minutes(119));
        assert_eq!(
            (filter.limit, filter.after, filter.workload),
            (5, Some(10), None)
        );
        assert_eq!(
            parse_filter(&params(&[("source", "3")])).unwrap().source,
            Some(SourceFilter::Id(3))
        );
        for bad in [
            ("kind", "shell"),
            ("severity", "urgent"),
            ("since", "yesterday"),
            ("limit", "0"),
            ("source", "-2"),
            ("colour", "red"),
        ] {
            assert!(
                matches!(parse_filter(&params(&[bad])), Err(WebError::BadRequest(_))),
                "{bad:?} was accepted"
            );
        }
    }
}
