//! Reading runtime events (the list behind `GET /api/v1/events` and the console's /events) and
//! opening an incident from one, with the event as its first evidence.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::incident::store::{self as incidents, Incident, IncidentError, NewIncident};

/// The filters of an event list; `after` is the id of the last event of the previous page
/// (newest first).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventFilter {
    /// A source id, or a source kind (`docker`, `kubernetes`).
    pub source: Option<SourceFilter>,
    pub workload: Option<i64>,
    pub kinds: Vec<String>,
    /// At least this severity.
    pub min_severity: Option<crate::posture::Severity>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
    pub after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceFilter {
    Id(i64),
    Kind(String),
}

/// An event as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub source_id: i64,
    pub source_kind: String,
    pub workload_id: Option<i64>,
    pub workload_name: Option<String>,
    pub namespace: Option<String>,
    pub instance_id: Option<i64>,
    pub instance_name: Option<String>,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    /// The evidence: command, user, privileged, tty; processes; paths; restart counts.
    pub details: Value,
}

#[derive(Debug, Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<String>,
}

const SELECT: &str = "select e.id, e.at, e.source_id, s.kind as source_kind, e.workload_id, \
     w.name as workload_name, w.namespace, e.instance_id, i.name as instance_name, e.kind, \
     e.severity, e.summary, e.details \
     from runtime_events e join sources s on s.id = e.source_id \
     left join workloads w on w.id = e.workload_id \
     left join instances i on i.id = e.instance_id where true";

/// One page of events, newest first.
pub async fn query(pool: &PgPool, filter: &EventFilter) -> Result<EventPage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SELECT);
    match &filter.source {
        Some(SourceFilter::Id(id)) => {
            query.push(" and e.source_id = ").push_bind(*id);
        }
        Some(SourceFilter::Kind(kind)) => {
            query.push(" and s.kind = ").push_bind(kind.clone());
        }
        None => {}
    }
    if let Some(workload) = filter.workload {
        query.push(" and e.workload_id = ").push_bind(workload);
    }
    if !filter.kinds.is_empty() {
        query
            .push(" and e.kind = any(")
            .push_bind(filter.kinds.clone())
            .push(")");
    }
    if let Some(min) = filter.min_severity {
        let wanted: Vec<String> = crate::posture::Severity::ALL
            .into_iter()
            .filter(|s| *s >= min)
            .map(|s| s.as_str().to_string())
            .collect();
        query
            .push(" and e.severity = any(")
            .push_bind(wanted)
            .push(")");
    }
    if let Some(since) = filter.since {
        query.push(" and e.at >= ").push_bind(since);
    }
    if let Some(after) = filter.after {
        query.push(" and e.id < ").push_bind(after);
    }
    query
        .push(" order by e.id desc limit ")
        .push_bind(filter.limit + 1);
    let mut events: Vec<EventView> = query.build_query_as().fetch_all(pool).await?;
    let next = if events.len() as i64 > filter.limit {
        events.truncate(filter.limit as usize);
        events.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(EventPage { events, next })
}

/// One event.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<EventView>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SELECT);
    query.push(" and e.id = ").push_bind(id);
    query.build_query_as().fetch_optional(pool).await
}

/// The newest events of a workload, for its page.
pub async fn of_workload(
    pool: &PgPool,
    workload_id: i64,
    limit: i64,
) -> Result<Vec<EventView>, sqlx::Error> {
    Ok(query(
        pool,
        &EventFilter {
            workload: Some(workload_id),
            limit,
            ..EventFilter::default()
        },
    )
    .await?
    .events)
}

/// The incident severity an event suggests (incidents have no `info`).
pub fn incident_severity(event_severity: &str) -> &'static str {
    match event_severity {
        "critical" => "critical",
        "high" => "high",
        "medium" => "medium",
        _ => "low",
    }
}

/// Opens an incident from an event: its workload affected, the event attached as the first
/// evidence (kind `runtime_event`), origin `event`. Once per idempotency key.
pub async fn open_incident(
    pool: &PgPool,
    event_id: i64,
    opened_by: &str,
    title: Option<String>,
    severity: Option<String>,
    idempotency_key: Option<String>,
) -> Result<(Incident, bool), IncidentError> {
    let event = get(pool, event_id)
        .await?
        .ok_or_else(|| IncidentError::Invalid(format!("there is no runtime event {event_id}")))?;
    let title = title
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| truncate(&event.summary, 200));
    let severity = severity
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| incident_severity(&event.severity).to_string());
    let (incident, created) = incidents::open(
        pool,
        NewIncident {
            title,
            severity,
            assignee: None,
            opened_by: opened_by.to_string(),
            workload_ids: event.workload_id.into_iter().collect(),
            finding_ids: Vec::new(),
            note: format!("opened from runtime event {event_id}"),
            idempotency_key,
        },
    )
    .await?;
    if created {
        attach(pool, incident.id, &event).await?;
    }
    Ok((incidents::get(pool, incident.id).await?, created))
}

async fn attach(pool: &PgPool, incident_id: i64, event: &EventView) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    set_origin(&mut *tx, incident_id, event.id).await?;
    tx.commit().await?;
    let content = json!({ "event": event });
    incidents::add_evidence(pool, incident_id, None, "runtime_event", &content).await
}

async fn set_origin(
    db: impl PgExecutor<'_>,
    incident_id: i64,
    event_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update incidents set origin = 'event', event_id = $2 where id = $1",
        incident_id,
        event_id
    )
    .execute(db)
    .await?;
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
