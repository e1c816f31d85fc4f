//! Run-stage monitoring without an agent: what the engines' own APIs say about running
//! workloads, as runtime events on the workload's timeline and as findings of the `run.*` checks.
//!
//! - Events come from the Docker collector (exec sessions with their inspect, privileged or
//!   sensitive-mount starts, OOM kills, restarts, health turning unhealthy), from the Kubernetes
//!   collector (debug containers, restarts, image and spec drift; `collect::kubernetes::runtime`)
//!   and from the drift sampler ([`drift::sample_once`]: processes against a learned baseline,
//!   the filesystem diff outside declared mounts). All go through [`record_events`], which
//!   stores them and applies the rules ([`rules::finding_for`], restart loops).
//! - Findings of these checks ([`crate::posture::catalog::EVENT_CHECKS`]) are opened and resolved
//!   here, never by a spec evaluation; they are waived like any other.

pub mod drift;
pub mod events;
pub mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::findings::store as findings_store;
use crate::posture::{CheckId, Severity};

/// A runtime event to append: `container_id` is the instance's external id (a Docker container
/// id, a pod's external id).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub details: Value,
}

/// The settings of run-stage monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often the drift sampler runs.
    pub drift_interval: Duration,
    /// Containers sampled at once per engine.
    pub drift_concurrency: usize,
    /// How long a workload's process baseline is learned after it is first seen running.
    pub baseline_window: Duration,
    /// Restarts within `restart_window` that make a restart loop.
    pub restart_threshold: u32,
    pub restart_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            drift_interval: Duration::from_secs(300),
            drift_concurrency: 8,
            baseline_window: Duration::from_secs(3600),
            restart_threshold: 3,
            restart_window: Duration::from_secs(600),
        }
    }
}

/// An event as stored, with what the rules need.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub workload_id: Option<i64>,
    pub instance_id: Option<i64>,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub details: Value,
    /// The container the event is about: `details.container`, else the instance's name.
    pub container: String,
}

/// A finding of an event check to open or keep open.
#[derive(Debug, Clone)]
pub struct OpenFinding {
    pub workload_id: i64,
    pub container: String,
    pub check: CheckId,
    pub severity: Severity,
    pub message: String,
    pub evidence: Value,
}

/// The evidence of a finding opened by an event: the event, where to find it.
pub fn event_evidence(event_id: i64, kind: &str, summary: &str) -> Value {
    json!([{
        "pointer": format!("/runtime_events/{event_id}"),
        "raw": kind,
        "normalized": summary,
    }])
}

/// Appends events (the instance found by the source and external id; an unknown one is stored
/// without), then applies the rules: findings for exec sessions and debug containers, restart
/// loops. Returns the stored events in order.
pub async fn record_events(
    conn: &mut PgConnection,
    source_id: i64,
    events: &[RuntimeEvent],
    settings: &Settings,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let container_ids: Vec<String> = events.iter().map(|e| e.container_id.clone()).collect();
    let kinds: Vec<String> = events.iter().map(|e| e.kind.clone()).collect();
    let severities: Vec<String> = events.iter().map(|e| e.severity.clone()).collect();
    let summaries: Vec<String> = events.iter().map(|e| e.summary.clone()).collect();
    let details: Vec<Value> = events
        .iter()
        .map(|e| {
            if e.details.is_object() {
                e.details.clone()
            } else {
                json!({})
            }
        })
        .collect();
    // A restart is counted once per (instance, restart count): a replayed engine event adds
    // nothing.
    let rows = sqlx::query!(
        r#"with inserted as (
               insert into runtime_events (source_id, workload_id, instance_id, kind, severity,
                                           summary, details)
               select $1, i.workload_id, i.id, t.kind, t.severity, t.summary, t.details
               from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                    with ordinality as t(container_id, kind, severity, summary, details, n)
               left join instances i on i.source_id = $1 and i.external_id = t.container_id
               where t.kind <> 'restart' or i.id is null or not exists (
                   select 1 from runtime_events r
                   where r.instance_id = i.id and r.kind = 'restart'
                     and r.details->'container' is not distinct from t.details->'container'
                     and r.details->'restart_count' = t.details->'restart_count')
               order by t.n
               returning id, workload_id, instance_id, kind, severity, summary, details
           )
           select e.id as "id!", e.workload_id, e.instance_id, e.kind as "kind!",
                  e.severity as "severity!", e.summary as "summary!", e.details as "details!",
                  coalesce(e.details->>'container', i.name, '') as "container!"
           from inserted e left join instances i on i.id = e.instance_id
           order by e.id"#,
        source_id,
        &container_ids,
        &kinds,
        &severities,
        &summaries,
        &details,
    )
    .fetch_all(&mut *conn)
    .await?;
    let stored: Vec<StoredEvent> = rows
        .into_iter()
        .map(|row| StoredEvent {
            id: row.id,
            workload_id: row.workload_id,
            instance_id: row.instance_id,
            kind: row.kind,
            severity: row.severity,
            summary: row.summary,
            details: row.details,
            container: row.container,
        })
        .collect();

    let mut findings = Vec::new();
    for event in &stored {
        let Some(workload_id) = event.workload_id else {
            continue;
        };
        if let Some(rule) = rules::finding_for(&event.kind, &event.details) {
            findings.push(OpenFinding {
                workload_id,
                container: event.container.clone(),
                check: rule.check,
                severity: rule.severity,
                message: rule.message,
                evidence: event_evidence(event.id, &event.kind, &event.summary),
            });
        }
    }
    open_findings(conn, &findings).await?;
    let restarts: Vec<&StoredEvent> = stored.iter().filter(|e| e.kind == "restart").collect();
    let mut all = stored.clone();
    all.extend(restart_loops(conn, source_id, &restarts, settings).await?);
    Ok(all)
}

/// After restarts: an instance container that restarted `restart_threshold` times within the
/// window (or that the platform reports as crash-looping) opens `run.restart_loop`, with a
/// `restart_loop` event when the finding is new.
async fn restart_loops(
    conn: &mut PgConnection,
    source_id: i64,
    restarts: &[&StoredEvent],
    settings: &Settings,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut seen: BTreeMap<(i64, String), (i64, &StoredEvent)> = BTreeMap::new();
    for event in restarts {
        if let (Some(instance), Some(_)) = (event.instance_id, event.workload_id) {
            seen.insert((instance, event.container.clone()), (instance, event));
        }
    }
    let window = settings.restart_window.as_secs_f64();
    let mut loops = Vec::new();
    for ((instance, container), (_, event)) in &seen {
        let count = sqlx::query_scalar!(
            r#"select coalesce(sum(coalesce((details->>'delta')::int, 1)), 0)::int8 as "n!"
               from runtime_events
               where instance_id = $1 and kind = 'restart'
                 and coalesce(details->>'container', '') = $2
                 and at > now() - make_interval(secs => $3)"#,
            instance,
            event
                .details
                .get("container")
                .and_then(Value::as_str)
                .unwrap_or(""),
            window
        )
        .fetch_one(&mut *conn)
        .await?;
        let crash_loop = event
            .details
            .get("crash_loop")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if count < i64::from(settings.restart_threshold) && !crash_loop {
            continue;
        }
        let workload_id = event.workload_id.expect("checked above");
        let already = sqlx::query_scalar!(
            r#"select exists(select 1 from findings where workload_id = $1 and container = $2
                             and check_id = 'run.restart_loop' and status = 'open') as "open!""#,
            workload_id,
            container
        )
        .fetch_one(&mut *conn)
        .await?;
        let summary = format!(
            "{container} restarted {count} times within {}s",
            settings.restart_window.as_secs()
        );
        let mut evidence = event_evidence(event.id, &event.kind, &event.summary);
        if !already {
            let external =
                sqlx::query_scalar!("select external_id from instances where id = $1", instance)
                    .fetch_one(&mut *conn)
                    .await?;
            let mut details = json!({
                "container": container,
                "restarts": count,
                "window_secs": settings.restart_window.as_secs(),
            });
            if crash_loop {
                details["crash_loop"] = json!(true);
            }
            let recorded = Box::pin(record_events(
                conn,
                source_id,
                &[RuntimeEvent {
                    container_id: external,
                    kind: "restart_loop".into(),
                    severity: "medium".into(),
                    summary: summary.clone(),
                    details,
                }],
                settings,
            ))
            .await?;
            if let Some(stored) = recorded.first() {
                evidence = event_evidence(stored.id, &stored.kind, &stored.summary);
            }
            loops.extend(recorded);
        }
        open_findings(
            conn,
            &[OpenFinding {
                workload_id,
                container: container.clone(),
                check: CheckId::RunRestartLoop,
                severity: Severity::Medium,
                message: summary,
                evidence,
            }],
        )
        .await?;
    }
    Ok(loops)
}

/// Opens (or bumps) findings of event checks, then re-applies waivers and rescores.
pub async fn open_findings(
    conn: &mut PgConnection,
    findings: &[OpenFinding],
) -> Result<(), sqlx::Error> {
    if findings.is_empty() {
        return Ok(());
    }
    // One row per (workload, check, container): the most severe wins.
    let mut rows: BTreeMap<(i64, &str, &str), &OpenFinding> = BTreeMap::new();
    for finding in findings {
        let key = (
            finding.workload_id,
            finding.check.as_str(),
            finding.container.as_str(),
        );
        match rows.get(&key) {
            Some(existing) if existing.severity >= finding.severity => {}
            _ => {
                rows.insert(key, finding);
            }
        }
    }
    let rows: Vec<findings_store::OpenRow<'_>> = rows
        .into_values()
        .map(|f| findings_store::OpenRow {
            workload_id: f.workload_id,
            check: f.check.as_str(),
            container: &f.container,
            severity: f.severity.as_str(),
            message: &f.message,
            evidence: &f.evidence,
        })
        .collect();
    let workload_ids: Vec<i64> = rows.iter().map(|r| r.workload_id).collect();
    findings_store::upsert_open(conn, &rows).await?;
    let mut ids = workload_ids;
    ids.sort_unstable();
    ids.dedup();
    findings_store::apply_waivers(conn, &ids, Utc::now()).await?;
    findings_store::refresh_scores(conn, &ids).await
}

/// Resolves (reason `fixed`) the open findings of `check` on these (workload, container) pairs.
pub async fn resolve_findings(
    conn: &mut PgConnection,
    check: CheckId,
    scopes: &[(i64, String)],
) -> Result<u64, sqlx::Error> {
    if scopes.is_empty() {
        return Ok(0);
    }
    let workload_ids: Vec<i64> = scopes.iter().map(|(w, _)| *w).collect();
    let containers: Vec<String> = scopes.iter().map(|(_, c)| c.clone()).collect();
    let resolved = sqlx::query_scalar!(
        r#"update findings f set status = 'resolved', resolved_at = now(),
                                 resolved_reason = 'fixed'
           from unnest($1::int8[], $2::text[]) as s(workload_id, container)
           where f.workload_id = s.workload_id and f.container = s.container
             and f.check_id = $3 and f.status = 'open'
           returning f.workload_id"#,
        &workload_ids,
        &containers,
        check.as_str()
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = resolved.clone();
    ids.sort_unstable();
    ids.dedup();
    findings_store::refresh_scores(conn, &ids).await?;
    Ok(resolved.len() as u64)
}

/// Resolves the open restart-loop findings of the source's workloads whose container has not
/// restarted within the window.
pub async fn resolve_quiet_restart_loops(
    conn: &mut PgConnection,
    source_id: i64,
    window: Duration,
) -> Result<u64, sqlx::Error> {
    let quiet = sqlx::query!(
        r#"select f.workload_id, f.container from findings f
           join workloads w on w.id = f.workload_id
           where w.source_id = $1 and f.check_id = 'run.restart_loop' and f.status = 'open'
             and not exists (
                 select 1 from runtime_events e
                 where e.workload_id = f.workload_id and e.kind = 'restart'
                   and coalesce(e.details->>'container', (select i.name from instances i
                                                          where i.id = e.instance_id)) = f.container
                   and e.at > now() - make_interval(secs => $2))"#,
        source_id,
        window.as_secs_f64()
    )
    .fetch_all(&mut *conn)
    .await?;
    let scopes: Vec<(i64, String)> = quiet
        .into_iter()
        .map(|row| (row.workload_id, row.container))
        .collect();
    resolve_findings(conn, CheckId::RunRestartLoop, &scopes).await
}
