//! The Docker collector: every container and image of every configured engine, kept current by
//! the engine's event stream, a periodic reconcile and a full resync after every reconnect (the
//! engine buffers only 256 events per subscriber and drops slow ones, so events alone lose data).
//!
//! One supervised task per endpoint ([`spawn`]); its status is in `sources`. Tests drive the
//! one-step functions instead of sleeping: [`Collector::connect`], [`Collector::resync_once`],
//! [`Collector::handle_events`] and [`ingest::retire_expired`].

pub mod ingest;
pub mod map;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListImagesOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{supervise, Backoff, Outcome};
use crate::config::{Config, DockerEndpoint};
use crate::db::lease;
use crate::inventory::sources;
use crate::runtime::rules::{judge_exec, ExecFacts};
use ingest::{Batch, Report, RuntimeEvent};

/// Seconds a request to an engine may take before it counts as failed.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// Inspect requests in flight per engine during a resync.
const INSPECT_CONCURRENCY: usize = 8;
/// Events written per batch at most.
const EVENT_BATCH: usize = 256;

/// Why talking to an engine failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot reach the Docker engine at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: bollard::errors::Error,
    },
    #[error("the Docker engine failed: {0}")]
    Engine(#[from] bollard::errors::Error),
    #[error("cannot store the inventory: {0}")]
    Store(#[from] sqlx::Error),
    #[error("the event stream ended")]
    StreamEnded,
}

/// Opens a client for an endpoint and negotiates the API version with the engine (old engines
/// speak an older API than the client's default).
pub async fn connect(endpoint: &DockerEndpoint) -> Result<Docker, CollectError> {
    let error = |source| CollectError::Connect {
        endpoint: endpoint.address.clone(),
        source,
    };
    let docker = if let Some(path) = endpoint.address.strip_prefix("unix://") {
        Docker::connect_with_socket(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if let Some(tls) = &endpoint.tls {
        Docker::connect_with_ssl(
            &endpoint.address,
            &tls.key,
            &tls.cert,
            &tls.ca,
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
    } else {
        Docker::connect_with_http(&endpoint.address, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    }
    .map_err(error)?;
    docker.negotiate_version().await.map_err(error)
}

fn not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// One engine, connected, writing into one source.
#[derive(Clone)]
pub struct Collector {
    pub pool: PgPool,
    pub docker: Docker,
    pub source_id: i64,
    /// How long a workload without instances waits before it retires.
    pub grace: Duration,
    /// How runtime events are judged (restart loops).
    pub monitoring: crate::runtime::Settings,
}

impl Collector {
    /// Connects to `endpoint` for the source `source_id`.
    pub async fn connect(
        pool: PgPool,
        endpoint: &DockerEndpoint,
        source_id: i64,
        grace: Duration,
    ) -> Result<Self, CollectError> {
        Ok(Self {
            pool,
            docker: connect(endpoint).await?,
            source_id,
            grace,
            monitoring: crate::runtime::Settings::default(),
        })
    }

    /// Lists and inspects every container (running and stopped) and every image, writes them in
    /// one transaction, marks the containers not seen as removed and runs the lifecycle.
    pub async fn resync_once(&self) -> Result<Report, CollectError> {
        let listed = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let ids: Vec<String> = listed.into_iter().filter_map(|c| c.id).collect();
        let containers = self.inspect_containers(&ids).await?;
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await?;
        let image_ids: Vec<String> = images.into_iter().map(|i| i.id).collect();
        let images = self.inspect_images(&image_ids).await?;
        let batch = Batch {
            containers: containers.into_iter().map(|(_, doc)| doc).collect(),
            images,
            full: true,
            reason: "resync".into(),
            monitoring: self.monitoring.clone(),
            ..Batch::default()
        };
        Ok(ingest::ingest(&self.pool, self.source_id, batch, self.grace).await?)
    }

    /// Inspects containers; one that is gone meanwhile is left out.
    async fn inspect_containers(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Value)>, CollectError> {
        let found: Vec<Option<(String, Value)>> = stream::iter(ids.iter().cloned())
            .map(|id| async move {
                match self.docker.inspect_container(&id, None).await {
                    Ok(doc) => Ok(Some((id, to_value(&doc)))),
                    Err(err) if not_found(&err) => Ok(None),
                    Err(err) => Err(CollectError::Engine(err)),
                }
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn inspect_images(&self, ids: &[String]) -> Result<Vec<Value>, CollectError> {
        let found: Vec<Option<Value>> = stream::iter(ids.iter().cloned())
            .map(|id| async move {
                match self.docker.inspect_image(&id).await {
                    Ok(doc) => Ok(Some(to_value(&doc))),
                    Err(err) if not_found(&err) => Ok(None),
                    Err(err) => Err(CollectError::Engine(err)),
                }
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Applies a burst of engine events in one write: the containers and images they name are
    /// inspected again (the event says what changed, the inspect says what is), destroyed
    /// containers are marked removed, exec sessions become runtime events.
    pub async fn handle_events(&self, events: &[EventMessage]) -> Result<Report, CollectError> {
        let mut containers: BTreeSet<String> = BTreeSet::new();
        let mut destroyed: BTreeSet<String> = BTreeSet::new();
        let mut images: BTreeSet<String> = BTreeSet::new();
        let mut reasons: HashMap<String, String> = HashMap::new();
        let mut execs = Vec::new();
        // Container id → what the engine said besides "it changed": started, OOM, unhealthy.
        let mut started: BTreeSet<String> = BTreeSet::new();
        let mut signals: Vec<RuntimeEvent> = Vec::new();
        for event in events {
            let action = event.action.as_deref().unwrap_or_default();
            // Older engines append details: "exec_start: sh -c id", "health_status: healthy".
            let verb = action.split(':').next().unwrap_or_default().trim();
            let actor = event.actor.as_ref();
            let id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
            let attributes = actor.and_then(|a| a.attributes.clone()).unwrap_or_default();
            match event.typ {
                Some(EventMessageTypeEnum::CONTAINER) if !id.is_empty() => {
                    let name = attributes.get("name").cloned().unwrap_or_default();
                    reasons.insert(id.clone(), format!("container {name}: {verb}"));
                    match verb {
                        "destroy" => {
                            destroyed.insert(id.clone());
                            containers.remove(&id);
                        }
                        "exec_create" | "exec_start" => {
                            execs.push((
                                id.clone(),
                                verb.to_string(),
                                action.to_string(),
                                attributes,
                            ));
                        }
                        // Exec sessions end, top and export change nothing we store.
                        "exec_die" | "exec_detach" | "top" | "export" | "attach"
                        | "archive-path" | "extract-to-dir" | "resize" => {}
                        "oom" => {
                            signals.push(RuntimeEvent {
                                container_id: id.clone(),
                                kind: "oom_kill".into(),
                                severity: "medium".into(),
                                summary: format!("{name} was killed: out of memory"),
                                details: json!({"container_name": name}),
                            });
                            containers.insert(id.clone());
                        }
                        "health_status" => {
                            let status = action.split_once(':').map(|(_, s)| s.trim());
                            if status == Some("unhealthy") {
                                signals.push(RuntimeEvent {
                                    container_id: id.clone(),
                                    kind: "health_unhealthy".into(),
                                    severity: "medium".into(),
                                    summary: format!("{name} turned unhealthy"),
                                    details: json!({"container_name": name, "status": "unhealthy"}),
                                });
                            }
                            containers.insert(id.clone());
                        }
                        _ => {
                            if verb == "start" {
                                started.insert(id.clone());
                            }
                            containers.insert(id.clone());
                        }
                    }
                }
                // A deleted image's history stays: nothing to refresh.
                Some(EventMessageTypeEnum::IMAGE)
                    if !id.is_empty() && verb != "delete" && verb != "untag" =>
                {
                    images.insert(id);
                }
                Some(EventMessageTypeEnum::NETWORK) => {
                    if let Some(container) = attributes.get("container") {
                        if !destroyed.contains(container) {
                            containers.insert(container.clone());
                            reasons.insert(container.clone(), format!("network {verb}"));
                        }
                    }
                }
                _ => {}
            }
        }
        let ids: Vec<String> = containers.into_iter().collect();
        let inspected = self.inspect_containers(&ids).await?;
        let seen: BTreeSet<&String> = inspected.iter().map(|(id, _)| id).collect();
        // Inspected ids missing from the answer are gone too.
        let mut removed: Vec<String> = destroyed.into_iter().collect();
        removed.extend(ids.iter().filter(|id| !seen.contains(id)).cloned());
        // The images of the inspected containers, so that a new image is known by its digest.
        for (_, doc) in &inspected {
            if let Some(image) = doc.get("Image").and_then(Value::as_str) {
                images.insert(image.to_string());
            }
        }
        let image_ids: Vec<String> = images.into_iter().collect();
        let images = self.inspect_images(&image_ids).await?;
        let mut runtime_events = Vec::new();
        for (container, verb, action, attributes) in execs {
            runtime_events.push(self.exec_event(container, verb, &action, &attributes).await);
        }
        for (id, doc) in &inspected {
            if started.contains(id) {
                runtime_events.extend(start_events(id, doc));
            }
        }
        runtime_events.extend(signals);
        let batch = Batch {
            containers: inspected.into_iter().map(|(_, doc)| doc).collect(),
            images,
            removed,
            full: false,
            runtime_events,
            reason: "event".into(),
            reasons,
            monitoring: self.monitoring.clone(),
        };
        Ok(ingest::ingest(&self.pool, self.source_id, batch, self.grace).await?)
    }

    /// An exec session as a runtime event: the command, user, privileged and tty from the exec
    /// inspect when the session still exists, else the command from the event; judged
    /// ([`crate::runtime::rules::judge_exec`]) against the container's own user. Env values are
    /// never part of either.
    async fn exec_event(
        &self,
        container: String,
        verb: String,
        action: &str,
        attributes: &HashMap<String, String>,
    ) -> RuntimeEvent {
        let exec_id = attributes.get("execID").cloned();
        let name = attributes.get("name").cloned().unwrap_or_default();
        let mut facts = ExecFacts {
            command: action
                .split_once(':')
                .map(|(_, rest)| rest.trim().to_string())
                .unwrap_or_default(),
            ..ExecFacts::default()
        };
        let mut inspected = false;
        if let Some(exec_id) = &exec_id {
            if let Ok(exec) = self.docker.inspect_exec(exec_id).await {
                facts.open_stdin = exec.open_stdin.unwrap_or(false);
                if let Some(process) = exec.process_config {
                    let mut words = vec![process.entrypoint.unwrap_or_default()];
                    words.extend(process.arguments.unwrap_or_default());
                    facts.command = words.join(" ").trim().to_string();
                    facts.user = process.user.unwrap_or_default();
                    facts.privileged = process.privileged.unwrap_or(false);
                    facts.tty = process.tty.unwrap_or(false);
                    inspected = true;
                }
            }
        }
        if let Ok(doc) = self.docker.inspect_container(&container, None).await {
            facts.container_user = doc.config.and_then(|c| c.user).unwrap_or_default();
        }
        let judged = judge_exec(&facts);
        let effective_user = if facts.user.trim().is_empty() {
            if facts.container_user.trim().is_empty() {
                "root".to_string()
            } else {
                facts.container_user.clone()
            }
        } else {
            facts.user.clone()
        };
        let details = json!({
            "container_id": container,
            "container_name": name,
            "exec_id": exec_id,
            "command": facts.command,
            "user": facts.user,
            "effective_user": effective_user,
            "container_user": facts.container_user,
            "privileged": facts.privileged,
            "tty": facts.tty,
            "open_stdin": facts.open_stdin,
            "inspected": inspected,
            "shell": judged.shell,
            "interactive_shell": judged.interactive_shell,
            "root": judged.root,
            "elevated": judged.elevated,
        });
        let what = if verb == "exec_create" {
            "exec session created"
        } else {
            "exec session started"
        };
        RuntimeEvent {
            container_id: container,
            kind: verb,
            severity: judged.severity.as_str().into(),
            summary: format!(
                "{what} in {name} as {effective_user}{}: {}",
                if facts.privileged {
                    " (privileged)"
                } else {
                    ""
                },
                facts.command
            ),
            details,
        }
    }

    /// The engine's event stream of container, image and network events since `since` (unix
    /// seconds), in bursts of at most [`EVENT_BATCH`].
    pub fn events(
        &self,
        since: Option<i64>,
    ) -> impl futures::Stream<Item = Vec<Result<EventMessage, bollard::errors::Error>>> + use<>
    {
        let filters = HashMap::from([(
            "type".to_string(),
            vec![
                "container".to_string(),
                "image".to_string(),
                "network".to_string(),
            ],
        )]);
        self.docker
            .events(Some(EventsOptions {
                since: since.map(|s| s.to_string()),
                filters: Some(filters),
                ..Default::default()
            }))
            .ready_chunks(EVENT_BATCH)
    }

    /// Follows the event stream until it fails or `cancel` fires, with a reconcile every
    /// `reconcile` and a retire check every few seconds. Call after a [`Self::resync_once`];
    /// `since` replays the events of the resync itself.
    pub async fn follow(
        &self,
        since: Option<i64>,
        reconcile: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), CollectError> {
        let events = self.events(since);
        tokio::pin!(events);
        let mut reconcile_tick = tokio::time::interval(reconcile);
        reconcile_tick.tick().await;
        let retire_every = (self.grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut retire_tick = tokio::time::interval(retire_every);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                burst = events.next() => {
                    let Some(burst) = burst else { return Err(CollectError::StreamEnded) };
                    let mut ok = Vec::with_capacity(burst.len());
                    let mut failure = None;
                    for item in burst {
                        match item {
                            Ok(event) => ok.push(event),
                            Err(err) => failure = Some(err),
                        }
                    }
                    if !ok.is_empty() {
                        self.handle_events(&ok).await?;
                    }
                    if let Some(err) = failure {
                        return Err(CollectError::Engine(err));
                    }
                }
                _ = reconcile_tick.tick() => {
                    self.resync_once().await?;
                }
                _ = retire_tick.tick() => {
                    let mut conn = self.pool.acquire().await?;
                    ingest::retire_expired(&mut conn, self.source_id, self.grace).await?;
                }
            }
        }
    }
}

/// What a container's start says besides "it runs": a restart by its restart policy (the
/// restart count rose), a privileged start, sensitive host paths mounted.
fn start_events(id: &str, doc: &Value) -> Vec<RuntimeEvent> {
    let name = doc
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let mut out = Vec::new();
    let restarts = doc.get("RestartCount").and_then(Value::as_i64).unwrap_or(0);
    if restarts > 0 {
        let exit = doc.pointer("/State/ExitCode").and_then(Value::as_i64);
        out.push(RuntimeEvent {
            container_id: id.to_string(),
            kind: "restart".into(),
            severity: "low".into(),
            summary: format!("{name} restarted by its restart policy (restart {restarts})"),
            details: json!({
                "container_name": name,
                "restart_count": restarts,
                "delta": 1,
                "restart_policy": doc.pointer("/HostConfig/RestartPolicy/Name"),
                "last_exit_code": exit,
                "oom_killed": doc.pointer("/State/OOMKilled"),
            }),
        });
    }
    if doc
        .pointer("/HostConfig/Privileged")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.push(RuntimeEvent {
            container_id: id.to_string(),
            kind: "privileged_start".into(),
            severity: "high".into(),
            summary: format!("{name} started privileged"),
            details: json!({"container_name": name, "privileged": true}),
        });
    }
    let sensitive: Vec<&str> = doc
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("Type").and_then(Value::as_str) == Some("bind"))
        .filter_map(|m| m.get("Source").and_then(Value::as_str))
        .filter(|source| sensitive_host_path(source))
        .collect();
    if !sensitive.is_empty() {
        out.push(RuntimeEvent {
            container_id: id.to_string(),
            kind: "sensitive_mount_start".into(),
            severity: "high".into(),
            summary: format!("{name} started with host paths {}", sensitive.join(", ")),
            details: json!({"container_name": name, "host_paths": sensitive}),
        });
    }
    out
}

/// Host paths whose mount into a container gives the host away: the root, the runtime sockets,
/// system configuration, kernel interfaces, credentials.
fn sensitive_host_path(source: &str) -> bool {
    const EXACT: &[&str] = &[
        "/", "/etc", "/root", "/var/run", "/run", "/var", "/boot", "/home",
    ];
    const UNDER: &[&str] = &[
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/containerd",
        "/var/run/crio",
        "/etc/",
        "/root/",
        "/proc",
        "/sys",
        "/dev",
        "/boot/",
        "/var/lib/kubelet",
        "/var/lib/docker",
    ];
    let path = source.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    EXACT.contains(&path) || UNDER.iter().any(|p| path.starts_with(p))
}

/// One connection's life: connect, resync, follow events; any failure marks the source down.
async fn session(
    pool: &PgPool,
    endpoint: &DockerEndpoint,
    source_id: i64,
    config: &Config,
    cancel: &CancellationToken,
) -> Outcome {
    let fail = |error: CollectError, progressed: bool| async move {
        let message = error.to_string();
        if let Err(err) = sources::mark_down(pool, source_id, &message).await {
            tracing::warn!(%err, "cannot record a source as down");
        }
        Outcome::Failed {
            error: message,
            progressed,
        }
    };
    let mut collector =
        match Collector::connect(pool.clone(), endpoint, source_id, config.retire_grace).await {
            Ok(collector) => collector,
            Err(err) => return fail(err, false).await,
        };
    collector.monitoring = config.runtime.clone();
    // Events from a little before the resync are replayed: re-inspecting is idempotent.
    let since = chrono::Utc::now().timestamp() - 2;
    match collector.resync_once().await {
        Ok(report) => {
            tracing::info!(endpoint = %endpoint.address, counts = %report.counts, "docker resync")
        }
        Err(err) => return fail(err, false).await,
    }
    match collector
        .follow(Some(since), config.docker_reconcile_interval, cancel)
        .await
    {
        Ok(()) => Outcome::Stopped,
        Err(err) => fail(err, true).await,
    }
}

/// Registers every configured endpoint as a source and starts one supervised collector task per
/// endpoint on `tasks`, running while this replica holds the source's lease; each stops when
/// `cancel` fires.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    for endpoint in config.docker_endpoints() {
        let pool = pool.clone();
        let config = config.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let source_id = loop {
                match sources::ensure(&pool, "docker", &endpoint.address, &endpoint.address).await
                {
                    Ok(id) => break id,
                    Err(err) => {
                        tracing::warn!(%err, endpoint = %endpoint.address, "cannot register the source");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        }
                    }
                }
            };
            let name = endpoint.address.clone();
            // Several replicas may share the database: only the holder of the source's lease
            // collects it.
            let lease = lease::source_lease("docker", &endpoint.address);
            let holder = lease::replica_id().to_string();
            let ttl = config.lease_ttl;
            lease::run_while_held(pool.clone(), lease, holder, ttl, cancel, |held| {
                let (pool, endpoint, config, name) =
                    (pool.clone(), endpoint.clone(), config.clone(), name.clone());
                async move {
                    supervise(&name, held.clone(), Backoff::default(), || {
                        session(&pool, &endpoint, source_id, &config, &held)
                    })
                    .await;
                }
            })
            .await;
        });
    }
}
