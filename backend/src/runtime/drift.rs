//! The drift sampler: every running container of an engine, a few at a time, asked for its
//! processes (`docker top`) and its filesystem changes (`docker diff`).
//!
//! - Processes are compared with the workload's baseline: the names seen while it is learned
//!   (its first `baseline_window` of running), plus what a responder approved. A name outside it
//!   is a `process_drift` event (once per new name) and keeps `run.process_drift` open until no
//!   such process runs.
//! - Changes outside the declared volumes, binds and tmpfs are a `fs_drift` event (once per new
//!   path); executables, libraries and account files among them keep `run.fs_drift_binaries`
//!   open.
//!
//! [`sample_once`] is one round (tests call it directly); [`spawn`] runs it every
//! `drift_interval` per engine.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::TopOptions;
use bollard::Docker;
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rules::{self, Change};
use super::{open_findings, record_events, resolve_findings, OpenFinding, RuntimeEvent, Settings};
use crate::config::Config;
use crate::inventory::sources;
use crate::posture::{CheckId, Severity};

/// Paths listed in one event at most (the count says how many there were).
const MAX_PATHS: usize = 100;
/// How long one container's top or diff may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("cannot read the running containers: {0}")]
    Store(#[from] sqlx::Error),
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleReport {
    /// Running containers of the source.
    pub containers: usize,
    /// Containers whose processes and diff were read.
    pub sampled: usize,
    /// Containers the engine could not answer for (gone meanwhile, timed out).
    pub failed: usize,
    /// The most engine requests that were in flight at once.
    pub max_in_flight: usize,
    pub events: usize,
    pub elapsed_ms: u64,
}

/// A running container as stored.
struct Running {
    instance_id: i64,
    workload_id: i64,
    external_id: String,
    name: String,
    mounts: Vec<String>,
}

/// What the engine said about one container.
struct Observed {
    processes: Option<BTreeSet<String>>,
    changes: Option<Vec<Change>>,
}

/// Counts requests in flight and remembers the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self)
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn top(docker: &Docker, id: &str) -> Option<BTreeSet<String>> {
    // `comm` is the executable's name, whatever argv[0] says; engines whose `ps` does not take
    // the options fall back to the default listing.
    let custom = docker.top_processes(
        id,
        Some(TopOptions {
            ps_args: "-eo pid,comm".into(),
        }),
    );
    let answer = match tokio::time::timeout(CALL_TIMEOUT, custom).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => tokio::time::timeout(CALL_TIMEOUT, docker.top_processes(id, None))
            .await
            .ok()?
            .ok()?,
        Err(_) => return None,
    };
    Some(rules::process_names(
        &answer.titles.unwrap_or_default(),
        &answer.processes.unwrap_or_default(),
    ))
}

async fn diff(docker: &Docker, id: &str) -> Option<Vec<Change>> {
    let changes = tokio::time::timeout(CALL_TIMEOUT, docker.container_changes(id))
        .await
        .ok()?
        .ok()?;
    Some(
        changes
            .unwrap_or_default()
            .into_iter()
            .map(|c| Change::from_docker(c.path, c.kind as u8))
            .collect(),
    )
}

/// One sampling round over the source's running containers, at most `settings.drift_concurrency`
/// engine requests at once.
pub async fn sample_once(
    pool: &PgPool,
    docker: &Docker,
    source_id: i64,
    settings: &Settings,
) -> Result<SampleReport, DriftError> {
    let started = Instant::now();
    let running: Vec<Running> = sqlx::query!(
        r#"select id, workload_id, external_id, name, raw from instances
           where source_id = $1 and removed_at is null and running
           order by id"#,
        source_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| Running {
        instance_id: row.id,
        workload_id: row.workload_id,
        external_id: row.external_id,
        name: row.name,
        mounts: rules::mount_points(&row.raw),
    })
    .collect();

    // Each container costs two requests; a slot of the concurrency is one request.
    let in_flight = Arc::new(InFlight::default());
    let concurrency = settings.drift_concurrency.max(1);
    let ids: Vec<String> = running.iter().map(|c| c.external_id.clone()).collect();
    let observed: Vec<Observed> = stream::iter(ids)
        .map(|id| {
            let in_flight = in_flight.clone();
            let docker = docker.clone();
            async move {
                let processes = {
                    let _slot = in_flight.enter();
                    top(&docker, &id).await
                };
                let changes = {
                    let _slot = in_flight.enter();
                    diff(&docker, &id).await
                };
                Observed { processes, changes }
            }
        })
        .buffered(concurrency)
        .collect()
        .await;

    let mut tx = pool.begin().await?;
    let events = apply(&mut tx, source_id, &running, &observed, settings).await?;
    super::resolve_quiet_restart_loops(&mut tx, source_id, settings.restart_window).await?;
    tx.commit().await?;

    let sampled = observed
        .iter()
        .filter(|o| o.processes.is_some() && o.changes.is_some())
        .count();
    Ok(SampleReport {
        containers: running.len(),
        sampled,
        failed: running.len() - sampled,
        max_in_flight: in_flight.max.load(Ordering::SeqCst),
        events,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn strings(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// Compares what was observed with the baselines and the last observations, and writes events,
/// findings, baselines and observations.
async fn apply(
    conn: &mut PgConnection,
    source_id: i64,
    running: &[Running],
    observed: &[Observed],
    settings: &Settings,
) -> Result<usize, sqlx::Error> {
    let workload_ids: Vec<i64> = running
        .iter()
        .map(|r| r.workload_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let instance_ids: Vec<i64> = running.iter().map(|r| r.instance_id).collect();

    // Baselines: a workload seen running for the first time starts learning now.
    let window = settings.baseline_window.as_secs_f64();
    sqlx::query!(
        r#"insert into process_baselines (workload_id, learning_until)
           select id, now() + make_interval(secs => $2) from unnest($1::int8[]) as t(id)
           on conflict (workload_id) do nothing"#,
        &workload_ids,
        window
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"update process_baselines set status = 'active', updated_at = now()
           where workload_id = any($1) and status = 'learning' and learning_until <= now()"#,
        &workload_ids
    )
    .execute(&mut *conn)
    .await?;
    let baselines: HashMap<i64, (String, BTreeSet<String>)> = sqlx::query!(
        "select workload_id, status, processes from process_baselines where workload_id = any($1)",
        &workload_ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| {
        (
            row.workload_id,
            (row.status, row.processes.into_iter().collect()),
        )
    })
    .collect();
    let previous: HashMap<i64, Value> = sqlx::query!(
        "select instance_id, state from runtime_observations where instance_id = any($1)",
        &instance_ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| (row.instance_id, row.state))
    .collect();

    let mut learned: HashMap<i64, BTreeSet<String>> = HashMap::new();
    let mut events = Vec::new();
    let mut findings = Vec::new();
    let mut resolve_processes = Vec::new();
    let mut resolve_files = Vec::new();
    let mut states: Vec<(i64, Value)> = Vec::new();
    for (c, seen) in running.iter().zip(observed) {
        let before = previous.get(&c.instance_id).cloned().unwrap_or(json!({}));
        let mut state = before.clone();
        if let Some(processes) = &seen.processes {
            match baselines.get(&c.workload_id) {
                Some((status, _)) if status == "learning" => {
                    learned
                        .entry(c.workload_id)
                        .or_default()
                        .extend(processes.iter().cloned());
                }
                Some((_, baseline)) => {
                    let drifted: BTreeSet<String> =
                        processes.difference(baseline).cloned().collect();
                    let reported = strings(before.get("drift_processes"));
                    let new: BTreeSet<String> = drifted.difference(&reported).cloned().collect();
                    let severity = rules::process_drift_severity(&drifted);
                    if !new.is_empty() {
                        let list = new.iter().cloned().collect::<Vec<_>>().join(", ");
                        events.push(RuntimeEvent {
                            container_id: c.external_id.clone(),
                            kind: "process_drift".into(),
                            severity: rules::process_drift_severity(&new).as_str().into(),
                            summary: format!("new process in {}: {list}", c.name),
                            details: json!({
                                "new_processes": new,
                                "processes": processes,
                                "baseline": baseline,
                            }),
                        });
                    }
                    if drifted.is_empty() {
                        resolve_processes.push((c.workload_id, c.name.clone()));
                    } else {
                        findings.push(OpenFinding {
                            workload_id: c.workload_id,
                            container: c.name.clone(),
                            check: CheckId::RunProcessDrift,
                            severity,
                            message: format!(
                                "processes outside the baseline: {}",
                                drifted.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            evidence: json!([{
                                "pointer": format!("/containers/{}/top", c.external_id),
                                "raw": drifted,
                                "normalized": "not in the process baseline",
                            }]),
                        });
                    }
                    state["drift_processes"] = json!(drifted);
                }
                None => {}
            }
        }
        if let Some(changes) = &seen.changes {
            let drift = rules::fs_drift(changes, &c.mounts);
            let paths: BTreeSet<String> = drift.iter().map(|d| d.path.clone()).collect();
            let reported = strings(before.get("drift_paths"));
            let new: Vec<&Change> = drift
                .iter()
                .filter(|d| !reported.contains(&d.path))
                .collect();
            let sensitive: Vec<&Change> = drift
                .iter()
                .filter(|d| d.kind != "deleted" && rules::sensitive_path(&d.path))
                .collect();
            if !new.is_empty() {
                let new_sensitive = new.iter().any(|d| rules::sensitive_path(&d.path));
                let shown: Vec<&&Change> = new.iter().take(MAX_PATHS).collect();
                let first: Vec<&str> = new.iter().take(3).map(|d| d.path.as_str()).collect();
                events.push(RuntimeEvent {
                    container_id: c.external_id.clone(),
                    kind: "fs_drift".into(),
                    severity: if new_sensitive { "high" } else { "low" }.into(),
                    summary: format!(
                        "{} file change(s) in {} outside its volumes: {}{}",
                        new.len(),
                        c.name,
                        first.join(", "),
                        if new.len() > 3 { ", …" } else { "" }
                    ),
                    details: json!({
                        "changes": shown,
                        "count": new.len(),
                        "sensitive": new.iter().filter(|d| rules::sensitive_path(&d.path))
                            .map(|d| &d.path).collect::<Vec<_>>(),
                        "excluded_mounts": c.mounts,
                    }),
                });
            }
            if sensitive.is_empty() {
                resolve_files.push((c.workload_id, c.name.clone()));
            } else {
                let list: Vec<&str> = sensitive.iter().map(|d| d.path.as_str()).collect();
                findings.push(OpenFinding {
                    workload_id: c.workload_id,
                    container: c.name.clone(),
                    check: CheckId::RunFsDriftBinaries,
                    severity: Severity::High,
                    message: format!(
                        "executables or system files changed since start: {}",
                        list.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                    ),
                    evidence: json!([{
                        "pointer": format!("/containers/{}/changes", c.external_id),
                        "raw": sensitive.iter().take(MAX_PATHS).collect::<Vec<_>>(),
                        "normalized": "changed outside the declared volumes",
                    }]),
                });
            }
            // Only what was reported is remembered: a path that goes away and comes back is
            // new again.
            state["drift_paths"] =
                json!(paths.into_iter().take(10 * MAX_PATHS).collect::<Vec<_>>());
        }
        if state != before || !previous.contains_key(&c.instance_id) {
            states.push((c.instance_id, state));
        }
    }

    if !learned.is_empty() {
        let ids: Vec<i64> = learned.keys().copied().collect();
        let names: Vec<Value> = learned.values().map(|set| json!(set)).collect();
        sqlx::query!(
            r#"update process_baselines b
               set processes = (select array_agg(distinct p order by p)
                                from unnest(b.processes || array(
                                    select jsonb_array_elements_text(t.names))) as p),
                   updated_at = now()
               from unnest($1::int8[], $2::jsonb[]) as t(id, names)
               where b.workload_id = t.id and b.status = 'learning'"#,
            &ids,
            &names
        )
        .execute(&mut *conn)
        .await?;
    }
    if !states.is_empty() {
        let ids: Vec<i64> = states.iter().map(|(id, _)| *id).collect();
        let values: Vec<Value> = states.into_iter().map(|(_, s)| s).collect();
        sqlx::query!(
            r#"insert into runtime_observations (instance_id, state, sampled_at)
               select * , now() from unnest($1::int8[], $2::jsonb[])
               on conflict (instance_id) do update
               set state = excluded.state, sampled_at = now(), updated_at = now()"#,
            &ids,
            &values
        )
        .execute(&mut *conn)
        .await?;
    }
    let stored = record_events(conn, source_id, &events, settings).await?;
    // Each drift finding points at the event that reported it, when there is one this round.
    let by_instance: HashMap<(&str, &str), i64> = events
        .iter()
        .zip(&stored)
        .map(|(e, s)| ((e.container_id.as_str(), e.kind.as_str()), s.id))
        .collect();
    for finding in &mut findings {
        let kind = if finding.check == CheckId::RunProcessDrift {
            "process_drift"
        } else {
            "fs_drift"
        };
        if let Some(c) = running
            .iter()
            .find(|r| r.workload_id == finding.workload_id && r.name == finding.container)
        {
            if let Some(id) = by_instance.get(&(c.external_id.as_str(), kind)) {
                if let Value::Array(items) = &mut finding.evidence {
                    items.push(
                        json!({"pointer": format!("/runtime_events/{id}"), "raw": kind,
                                      "normalized": "the event that reported it"}),
                    );
                }
            }
        }
    }
    open_findings(conn, &findings).await?;
    resolve_findings(conn, CheckId::RunProcessDrift, &resolve_processes).await?;
    resolve_findings(conn, CheckId::RunFsDriftBinaries, &resolve_files).await?;
    Ok(stored.len())
}

/// Approves processes into a workload's baseline (all it runs now that are outside it, when
/// `processes` is empty) and ends its learning; the drift findings they caused resolve at the
/// next sample. Returns the baseline.
pub async fn approve_baseline(
    conn: &mut PgConnection,
    workload_id: i64,
    processes: &[String],
    approved_by: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut names: BTreeSet<String> = processes
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if names.is_empty() {
        let rows = sqlx::query_scalar!(
            r#"select o.state->'drift_processes' as "drift" from runtime_observations o
               join instances i on i.id = o.instance_id
               where i.workload_id = $1 and i.removed_at is null"#,
            workload_id
        )
        .fetch_all(&mut *conn)
        .await?;
        for drift in rows {
            names.extend(strings(drift.as_ref()));
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let baseline = sqlx::query_scalar!(
        r#"insert into process_baselines (workload_id, status, learning_until, processes,
                                          approved_by, approved_at)
           values ($1, 'active', now(), $2, $3, now())
           on conflict (workload_id) do update
           set status = 'active', learning_until = least(process_baselines.learning_until, now()),
               processes = (select array_agg(distinct p order by p)
                            from unnest(process_baselines.processes || $2) as p),
               approved_by = $3, approved_at = now(), updated_at = now()
           returning processes"#,
        workload_id,
        &names,
        approved_by
    )
    .fetch_one(&mut *conn)
    .await?;
    // What is approved is no longer drift: forget it so that it is not reported again.
    sqlx::query!(
        r#"update runtime_observations o
           set state = jsonb_set(o.state, '{drift_processes}', '[]'::jsonb), updated_at = now()
           from instances i where i.id = o.instance_id and i.workload_id = $1"#,
        workload_id
    )
    .execute(&mut *conn)
    .await?;
    let containers = sqlx::query_scalar!(
        r#"select distinct f.container from findings f
           where f.workload_id = $1 and f.check_id = 'run.process_drift' and f.status = 'open'"#,
        workload_id
    )
    .fetch_all(&mut *conn)
    .await?;
    // Resolve what the approval covers now; a process still outside reopens at the next sample.
    let scopes: Vec<(i64, String)> = containers.into_iter().map(|c| (workload_id, c)).collect();
    resolve_findings(conn, CheckId::RunProcessDrift, &scopes).await?;
    Ok(baseline)
}

/// One baseline, for the API and the console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Baseline {
    pub workload_id: i64,
    pub status: String,
    pub learning_until: chrono::DateTime<chrono::Utc>,
    pub processes: Vec<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn baseline(pool: &PgPool, workload_id: i64) -> Result<Option<Baseline>, sqlx::Error> {
    sqlx::query_as!(
        Baseline,
        r#"select workload_id, status, learning_until, processes, approved_by, approved_at
           from process_baselines where workload_id = $1"#,
        workload_id
    )
    .fetch_optional(pool)
    .await
}

/// Starts one sampler per configured Docker engine: a round every `drift_interval`, a failed
/// round logged and retried at the next tick.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    let settings = config.runtime.clone();
    for endpoint in config.docker_endpoints() {
        // With several replicas, one samples each engine: the one holding its drift lease.
        let lease = format!("job:drift:{}", endpoint.address);
        let work_pool = pool.clone();
        let settings = settings.clone();
        let work = move |cancel: CancellationToken| {
            let pool = work_pool.clone();
            let settings = settings.clone();
            let endpoint = endpoint.clone();
            async move { sample_loop(pool, endpoint, settings, cancel).await }
        };
        tasks.spawn(crate::db::lease::run_while_held(
            pool.clone(),
            lease,
            crate::db::lease::replica_id().into(),
            config.lease_ttl,
            cancel.clone(),
            work,
        ));
    }
}

/// Samples one engine every interval until `cancel` fires.
async fn sample_loop(
    pool: PgPool,
    endpoint: crate::config::DockerEndpoint,
    settings: Settings,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.drift_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first round waits one interval: the collector's first resync comes first.
    tick.tick().await;
    let mut docker = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let source_id =
            match sources::ensure(&pool, "docker", &endpoint.address, &endpoint.address).await {
                Ok(id) => id,
                Err(err) => {
                    tracing::warn!(%err, "drift sampler: cannot find the source");
                    continue;
                }
            };
        if docker.is_none() {
            match crate::collect::docker::connect(&endpoint).await {
                Ok(client) => docker = Some(client),
                Err(err) => {
                    tracing::warn!(%err, "drift sampler: cannot reach the engine");
                    continue;
                }
            }
        }
        let client = docker.as_ref().expect("connected above");
        match sample_once(&pool, client, source_id, &settings).await {
            Ok(report) => tracing::info!(
                endpoint = %endpoint.address,
                containers = report.containers,
                failed = report.failed,
                events = report.events,
                elapsed_ms = report.elapsed_ms,
                "drift sample"
            ),
            Err(err) => {
                tracing::warn!(%err, endpoint = %endpoint.address, "drift sample failed");
                docker = None;
            }
        }
    }
}
