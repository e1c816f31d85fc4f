//! Incident response: a case with a workflow ([`workflow`]), its timeline and action queue in
//! PostgreSQL ([`store`]), and the actions on the engines behind [`IsolationDriver`]
//! ([`docker`]: disconnect or pause containers; [`kubernetes`]: label pods into a deny-all
//! NetworkPolicy).
//!
//! Isolate and restore are queued rows of `incident_actions`; the worker ([`spawn`]) executes
//! them one at a time with [`try_execute_next_action`]. Every engine action is idempotent: the
//! pre-state of each instance is saved before anything changes and re-read when an action is
//! resumed, so an action that was running when its server died is safely run again. Several
//! replicas share the queue: the one running an action heart-beats it every third of the lease
//! time to live, and every worker re-queues the actions whose heartbeat is older than that
//! ([`store::recover_interrupted`]) — the actions of a dead replica only.

pub mod docker;
pub mod kubernetes;
pub mod store;
pub mod workflow;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
pub use store::IncidentError;

/// How often the worker looks for queued actions when idle.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One instance an action acts on.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Target {
    /// The incident acting (the Kubernetes quarantine label's value).
    pub incident_id: i64,
    pub instance_id: i64,
    pub source_kind: String,
    /// The source's name (the kubeconfig context, `in-cluster`, the Docker endpoint).
    pub source_name: String,
    pub source_endpoint: String,
    /// Docker container id or Kubernetes pod uid.
    pub external_id: String,
    pub name: String,
    pub namespace: String,
}

/// What a driver saved before isolating an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    /// `disconnect` or `pause` (Docker), `quarantine` (Kubernetes).
    pub method: String,
    pub pre_state: Value,
    /// The engine's document at that moment (secret values removed), kept as evidence.
    pub document: Value,
}

/// One piece of evidence: `processes`, `diff`, `logs` (the inspect document comes from
/// [`Saved::document`]).
#[derive(Debug, Clone)]
pub struct Evidence {
    pub kind: &'static str,
    pub content: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the engine failed: {0}")]
    Engine(String),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("no driver for {0} sources")]
    Unsupported(String),
}

/// The actions on one kind of engine. Every method is idempotent.
pub trait IsolationDriver: Send + Sync {
    /// Reads the instance's current state: what restore must put back.
    fn snapshot<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Saved, DriverError>>;
    /// Cuts the instance off, keeping it alive, then verifies; returns the verification.
    fn isolate<'a>(
        &'a self,
        target: &'a Target,
        saved: &'a Saved,
    ) -> BoxFuture<'a, Result<Value, DriverError>>;
    /// Captures forensic evidence; failures are recorded as evidence of the failure.
    fn evidence<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Vec<Evidence>>;
    /// Puts back exactly the saved pre-state, then verifies; returns the verification.
    fn restore<'a>(
        &'a self,
        target: &'a Target,
        saved: &'a Saved,
    ) -> BoxFuture<'a, Result<Value, DriverError>>;
}

/// The drivers by source kind (`docker`, `kubernetes`).
#[derive(Clone, Default)]
pub struct Drivers {
    by_kind: HashMap<String, Arc<dyn IsolationDriver>>,
    /// The lease time to live: a running action is heart-beaten every third of it (default
    /// 15 s).
    lease_ttl: Option<Duration>,
}

impl Drivers {
    /// The drivers the configuration allows: Docker always, Kubernetes for the clusters the
    /// collector is configured for (clients are opened per endpoint or context on first use).
    pub fn from_config(config: &Config) -> Self {
        let mut drivers = Self {
            lease_ttl: Some(config.lease_ttl),
            ..Self::default()
        };
        drivers.insert(
            "docker",
            Arc::new(docker::DockerDriver::new(config.docker_tls.clone())),
        );
        let clusters = crate::collect::kubernetes::watch::targets(config).unwrap_or_else(|err| {
            tracing::error!(%err, "Kubernetes isolation is off");
            Vec::new()
        });
        drivers.insert(
            crate::collect::kubernetes::watch::SOURCE_KIND,
            Arc::new(kubernetes::KubernetesDriver::new(clusters)),
        );
        drivers
    }

    pub fn insert(&mut self, kind: &str, driver: Arc<dyn IsolationDriver>) {
        self.by_kind.insert(kind.to_string(), driver);
    }

    /// How long an action may go without a heartbeat before another worker takes it over.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl.unwrap_or(Duration::from_secs(15))
    }

    fn get(&self, kind: &str) -> Result<&Arc<dyn IsolationDriver>, DriverError> {
        self.by_kind
            .get(kind)
            .ok_or_else(|| DriverError::Unsupported(kind.to_string()))
    }
}

/// Executes the oldest queued action, if any. Returns its id.
pub async fn try_execute_next_action(
    pool: &PgPool,
    drivers: &Drivers,
) -> Result<Option<i64>, IncidentError> {
    let holder = crate::db::lease::replica_id();
    let Some(action) = store::claim_next(pool, holder).await? else {
        return Ok(None);
    };
    tracing::info!(id = action.id, incident = action.incident_id, kind = %action.kind, "executing an incident action");
    let run = async {
        Ok::<_, IncidentError>(match action.kind.as_str() {
            "isolate" => isolate(pool, drivers, action.incident_id).await?,
            "restore" => restore(pool, drivers, action.incident_id).await?,
            other => Outcome {
                failures: vec![format!("{other} is not an engine action")],
                ..Outcome::default()
            },
        })
    };
    let outcome = tokio::select! {
        outcome = run => outcome?,
        never = heartbeat(pool, action.id, holder, drivers.lease_ttl() / 3) => match never {},
    };
    store::finish(pool, &action, &outcome).await?;
    Ok(Some(action.id))
}

/// What an engine action did, per instance.
#[derive(Debug, Default)]
pub struct Outcome {
    pub results: Vec<Value>,
    pub failures: Vec<String>,
    /// What succeeded but needs attention (another NetworkPolicy still selecting a pod).
    pub warnings: Vec<String>,
    /// Some instance was (or had been) changed: the incident is isolated even when the action
    /// failed part-way, so restore can undo what was done.
    pub touched: bool,
}

async fn isolate(
    pool: &PgPool,
    drivers: &Drivers,
    incident_id: i64,
) -> Result<Outcome, IncidentError> {
    let mut outcome = Outcome::default();
    let targets = store::live_targets(pool, incident_id).await?;
    if targets.is_empty() {
        outcome
            .failures
            .push("the affected workloads have no live instance".into());
    }
    for target in targets {
        let driver = match drivers.get(&target.source_kind) {
            Ok(driver) => driver,
            Err(err) => {
                outcome.failures.push(format!("{}: {err}", target.name));
                continue;
            }
        };
        // Re-read the saved pre-state when a previous attempt got that far: never overwrite it
        // with the already isolated state.
        let (target_id, saved, isolated) =
            match store::saved_target(pool, incident_id, target.instance_id).await? {
                Some(existing) => existing,
                None => match driver.snapshot(&target).await {
                    Ok(saved) => {
                        let id = store::save_target(pool, incident_id, &target, &saved).await?;
                        store::add_evidence(
                            pool,
                            incident_id,
                            Some(id),
                            "inspect",
                            &saved.document,
                        )
                        .await?;
                        (id, saved, false)
                    }
                    Err(err) => {
                        outcome.failures.push(format!("{}: {err}", target.name));
                        continue;
                    }
                },
            };
        outcome.touched = true;
        match driver.isolate(&target, &saved).await {
            Ok(verification) => {
                if !isolated {
                    store::mark_isolated(pool, target_id, &verification).await?;
                }
                if let Some(warning) = verification.get("warning").and_then(Value::as_str) {
                    outcome.warnings.push(warning.to_string());
                }
                outcome.results.push(json!({
                    "instance": target.name,
                    "method": saved.method,
                    "verified": verification,
                }));
            }
            Err(err) => {
                outcome.failures.push(format!("{}: {err}", target.name));
                continue;
            }
        }
        if !store::has_evidence(pool, target_id, "logs").await? {
            for item in driver.evidence(&target).await {
                store::add_evidence(pool, incident_id, Some(target_id), item.kind, &item.content)
                    .await?;
            }
        }
    }
    Ok(outcome)
}

async fn restore(
    pool: &PgPool,
    drivers: &Drivers,
    incident_id: i64,
) -> Result<Outcome, IncidentError> {
    let mut outcome = Outcome::default();
    for (target_id, target, saved) in store::unrestored_targets(pool, incident_id).await? {
        outcome.touched = true;
        let result = match drivers.get(&target.source_kind) {
            Ok(driver) => driver.restore(&target, &saved).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(verification) => {
                store::mark_restored(pool, target_id, &verification).await?;
                outcome.results.push(json!({
                    "instance": target.name,
                    "method": saved.method,
                    "verified": verification,
                }));
            }
            Err(err) => outcome.failures.push(format!("{}: {err}", target.name)),
        }
    }
    Ok(outcome)
}

/// Heart-beats the running action `id` every `period`, forever (the caller drops it when the
/// action ends).
async fn heartbeat(
    pool: &PgPool,
    id: i64,
    holder: &str,
    period: Duration,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(period).await;
        match store::heartbeat(pool, id, holder).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id,
                "another replica took this incident action over after missed heartbeats"
            ),
            Err(err) => tracing::warn!(id, %err, "cannot heart-beat an incident action"),
        }
    }
}

/// Starts the action worker: resumes what a dead replica left running (on start and then every
/// third of the lease time to live), and executes queued actions until cancelled.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let drivers = Drivers::from_config(&config);
        let ttl = drivers.lease_ttl();
        let sweep_every = crate::db::lease::retry_interval(ttl);
        let mut swept: Option<std::time::Instant> = None;
        loop {
            if swept.is_none_or(|at| at.elapsed() >= sweep_every) {
                swept = Some(std::time::Instant::now());
                match store::recover_interrupted(&pool, ttl).await {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(
                        count,
                        "resumed incident actions a stopped replica left running"
                    ),
                    Err(err) => {
                        tracing::error!(%err, "cannot recover interrupted incident actions")
                    }
                }
            }
            let wait = tokio::select! {
                () = cancel.cancelled() => return,
                result = try_execute_next_action(&pool, &drivers) => match result {
                    Ok(Some(_)) => Duration::ZERO,
                    Ok(None) => POLL_INTERVAL,
                    Err(err) => {
                        tracing::error!(%err, "an incident action failed to run");
                        Duration::from_secs(2)
                    }
                },
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
}
