//! The cluster side: one client per source, one kube-runtime watcher per kind, merged into one
//! stream and folded into [`Objects`]; each batch of events is mapped and written.
//!
//! The watchers list (in pages), then watch with bookmarks; a `410 Gone` makes them list again
//! (`Init` … `InitDone`), and the relisted objects replace the kind's objects at once, so
//! nothing is lost or counted twice. Errors are retried with kube-runtime's default backoff and
//! shown on the source; a kind the account may not read (403) or the server does not serve
//! (404) is skipped and named in the source's counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::mapping::{self, Kind, Objects};
use super::persist::{self, Persisted, Written};
use crate::config::Config;
use crate::db::lease;
use crate::inventory::sources;

/// The source kind in the `sources` table.
pub const SOURCE_KIND: &str = "kubernetes";
/// The source name of the in-cluster configuration.
pub const IN_CLUSTER: &str = "in-cluster";
/// Objects per LIST page.
const PAGE_SIZE: u32 = 500;
/// Events folded into one write at most.
const MAX_BATCH: usize = 50_000;

/// Why a cluster could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read the kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("context {context}: {message}")]
    Context { context: String, message: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("cannot build a client: {0}")]
    Client(String),
    #[error("listing {kind}: {message}")]
    List { kind: &'static str, message: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where a cluster's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A context of a kubeconfig file.
    Context {
        kubeconfig: PathBuf,
        context: String,
    },
    /// The pod's service account.
    InCluster,
}

impl Target {
    /// The source name: the context, or `in-cluster`.
    pub fn name(&self) -> &str {
        match self {
            Target::Context { context, .. } => context,
            Target::InCluster => IN_CLUSTER,
        }
    }
}

/// The clusters to collect: each selected context of the kubeconfig (the current one when none
/// is selected), or the in-cluster configuration.
pub fn targets(config: &Config) -> Result<Vec<Target>, KubeError> {
    if let Some(path) = &config.kubeconfig {
        return targets_from_kubeconfig(path, &config.kube_contexts);
    }
    if config.kube_in_cluster {
        return Ok(vec![Target::InCluster]);
    }
    Ok(Vec::new())
}

/// The selected contexts of one kubeconfig file.
pub fn targets_from_kubeconfig(path: &Path, contexts: &[String]) -> Result<Vec<Target>, KubeError> {
    let file = Kubeconfig::read_from(path).map_err(|err| KubeError::Kubeconfig {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let selected: Vec<String> = if contexts.is_empty() {
        let current = file
            .current_context
            .clone()
            .ok_or_else(|| KubeError::Kubeconfig {
                path: path.to_path_buf(),
                message: "no current-context; set HARBORMASTER_KUBE_CONTEXTS".into(),
            })?;
        vec![current]
    } else {
        contexts.to_vec()
    };
    for context in &selected {
        if !file.contexts.iter().any(|c| &c.name == context) {
            return Err(KubeError::Context {
                context: context.clone(),
                message: format!("not found in {}", path.display()),
            });
        }
    }
    Ok(selected
        .into_iter()
        .map(|context| Target::Context {
            kubeconfig: path.to_path_buf(),
            context,
        })
        .collect())
}

/// A client for the target and the API server's URL.
pub async fn connect(target: &Target) -> Result<(Client, String), KubeError> {
    let config = match target {
        Target::Context {
            kubeconfig,
            context,
        } => {
            let file = Kubeconfig::read_from(kubeconfig).map_err(|err| KubeError::Kubeconfig {
                path: kubeconfig.clone(),
                message: err.to_string(),
            })?;
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|err| KubeError::Context {
                    context: context.clone(),
                    message: err.to_string(),
                })?
        }
        Target::InCluster => {
            kube::Config::incluster().map_err(|err| KubeError::InCluster(err.to_string()))?
        }
    };
    let endpoint = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|err| KubeError::Client(err.to_string()))?;
    Ok((client, endpoint))
}

/// The API resource of a kind, for a dynamic `Api`.
pub fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Pod => ApiResource::erase::<Pod>(&()),
        Kind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
        Kind::Deployment => ApiResource::erase::<Deployment>(&()),
        Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        Kind::Job => ApiResource::erase::<Job>(&()),
        Kind::CronJob => ApiResource::erase::<CronJob>(&()),
        Kind::Namespace => ApiResource::erase::<Namespace>(&()),
        Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
        Kind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
    }
}

fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Whether a Kubernetes error means "this kind is not for us" rather than "the cluster is down".
fn forbidden_or_missing(err: &watcher::Error) -> bool {
    let status = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    };
    matches!(status, Some(403 | 404))
}

/// A 410 Gone during a watch: the watcher lists again; nothing is wrong with the cluster.
fn expired(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchError(status) if status.code == 410)
}

/// The objects of a cluster as the watchers report them, with what is needed to know when a
/// complete picture is there.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub objects: Objects,
    /// Objects received since `Init`, per kind, until `InitDone` replaces the kind's objects.
    buffers: BTreeMap<Kind, Vec<Value>>,
    /// Kinds listed completely at least once.
    listed: BTreeSet<Kind>,
    /// Kinds the account may not read or the server does not serve.
    unavailable: BTreeSet<Kind>,
    dirty: bool,
    resynced: bool,
}

impl ClusterState {
    /// Folds one watcher event in.
    pub fn apply_event(&mut self, kind: Kind, event: Event<Value>) {
        match event {
            Event::Init => {
                self.buffers.insert(kind, Vec::new());
            }
            Event::InitApply(object) => self.buffers.entry(kind).or_default().push(object),
            Event::InitDone => {
                let objects = self.buffers.remove(&kind).unwrap_or_default();
                self.objects.replace_kind(kind, objects);
                self.listed.insert(kind);
                self.unavailable.remove(&kind);
                self.dirty = true;
                self.resynced = true;
            }
            Event::Apply(object) => {
                self.objects.insert_as(kind, object);
                self.dirty = true;
            }
            Event::Delete(object) => {
                self.objects.remove(kind, &object);
                self.dirty = true;
            }
        }
    }

    /// The kind cannot be read: treat it as empty so the rest is collected.
    pub fn mark_unavailable(&mut self, kind: Kind) {
        self.objects.mark_unlisted(kind);
        if self.unavailable.insert(kind) && !self.listed.contains(&kind) {
            self.dirty = true;
            self.resynced = true;
        }
    }

    /// Every kind has been listed (or is unavailable): owners can be resolved.
    pub fn complete(&self) -> bool {
        Kind::ALL
            .iter()
            .all(|k| self.listed.contains(k) || self.unavailable.contains(k))
    }

    /// The counts shown on the source.
    pub fn counts(&self, snapshot: &mapping::Snapshot) -> Value {
        let mut counts = self.objects.counts();
        counts.insert("workloads".into(), json!(snapshot.workloads.len()));
        counts.insert("instances".into(), json!(snapshot.instance_count()));
        if !self.unavailable.is_empty() {
            counts.insert(
                "unavailable".into(),
                json!(self
                    .unavailable
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()),
            );
        }
        Value::Object(counts)
    }

    /// Maps and writes what changed, if the picture is complete and something changed.
    pub async fn persist(
        &mut self,
        pool: &PgPool,
        source_id: i64,
        written: &mut Option<Written>,
    ) -> Result<Option<Persisted>, sqlx::Error> {
        if !self.dirty || !self.complete() {
            return Ok(None);
        }
        let snapshot = mapping::snapshot(&self.objects, true);
        let counts = self.counts(&snapshot);
        let persisted =
            persist::persist(pool, source_id, &snapshot, written, &counts, self.resynced).await?;
        self.dirty = false;
        self.resynced = false;
        Ok(Some(persisted))
    }
}

type KindEvent = (Kind, Result<Event<DynamicObject>, watcher::Error>);

/// What one [`ClusterWatch::step`] did.
#[derive(Debug)]
pub enum Step {
    /// A batch was written.
    Written(Persisted),
    /// Events were folded in; nothing to write yet (the first list is not complete).
    Pending,
    /// The cluster could not be reached or answered an error; retried with backoff.
    Down(String),
    /// The watch streams ended.
    Ended,
}

/// The watchers of one cluster, folded into the inventory one batch at a time.
pub struct ClusterWatch {
    pool: PgPool,
    source_id: i64,
    stream: BoxStream<'static, KindEvent>,
    state: ClusterState,
    written: Option<Written>,
    down: bool,
}

impl ClusterWatch {
    /// Starts a watcher per kind (nothing happens until [`ClusterWatch::step`] polls them).
    pub fn new(pool: PgPool, source_id: i64, client: Client) -> Self {
        let streams = Kind::ALL.into_iter().map(|kind| {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
            let config = watcher::Config::default().page_size(PAGE_SIZE);
            watcher::watcher(api, config)
                .default_backoff()
                .map(move |event| (kind, event))
                .boxed()
        });
        Self {
            pool,
            source_id,
            stream: stream::select_all(streams).boxed(),
            state: ClusterState::default(),
            written: None,
            down: false,
        }
    }

    fn fold(&mut self, (kind, item): KindEvent) -> Option<String> {
        match item {
            Ok(event) => {
                let event = match event {
                    Event::Apply(o) => Event::Apply(to_value(o)),
                    Event::Delete(o) => Event::Delete(to_value(o)),
                    Event::InitApply(o) => Event::InitApply(to_value(o)),
                    Event::Init => Event::Init,
                    Event::InitDone => Event::InitDone,
                };
                self.state.apply_event(kind, event);
                None
            }
            Err(err) if expired(&err) => {
                tracing::debug!(kind = kind.as_str(), "watch expired (410); listing again");
                None
            }
            Err(err) if forbidden_or_missing(&err) => {
                tracing::warn!(kind = kind.as_str(), %err, "kind not readable; skipped");
                self.state.mark_unavailable(kind);
                None
            }
            Err(err) => Some(format!("{}: {err}", kind.as_str())),
        }
    }

    /// Waits for the next event, folds in every event already waiting, and writes once.
    pub async fn step(&mut self) -> Result<Step, sqlx::Error> {
        let Some(first) = self.stream.next().await else {
            return Ok(Step::Ended);
        };
        let mut error = self.fold(first);
        for _ in 0..MAX_BATCH {
            match self.stream.next().now_or_never() {
                Some(Some(item)) => {
                    if let Some(err) = self.fold(item) {
                        error = Some(err);
                    }
                }
                _ => break,
            }
        }
        if let Some(error) = error {
            self.down = true;
            sources::mark_down(&self.pool, self.source_id, &error).await?;
            return Ok(Step::Down(error));
        }
        match self
            .state
            .persist(&self.pool, self.source_id, &mut self.written)
            .await?
        {
            Some(persisted) => {
                self.down = false;
                Ok(Step::Written(persisted))
            }
            None => {
                if self.down {
                    self.down = false;
                    sources::mark_connected(&self.pool, self.source_id).await?;
                }
                Ok(Step::Pending)
            }
        }
    }

    /// Steps until cancelled; a database error is logged and the batch retried with the next
    /// event.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let step = tokio::select! {
                () = cancel.cancelled() => return,
                step = self.step() => step,
            };
            match step {
                Ok(Step::Ended) => return,
                Ok(Step::Down(error)) => {
                    tracing::warn!(source_id = self.source_id, %error, "cluster unreachable")
                }
                Ok(Step::Written(p)) => tracing::debug!(source_id = self.source_id, ?p, "written"),
                Ok(Step::Pending) => {}
                Err(err) => {
                    tracing::error!(source_id = self.source_id, %err, "writing the inventory failed");
                    self.state.dirty = true;
                    self.written = None;
                }
            }
        }
    }
}

/// Lists every kind once (in pages) and writes the complete picture: the one-shot sync.
pub async fn sync_once(
    pool: &PgPool,
    source_id: i64,
    client: &Client,
) -> Result<Persisted, KubeError> {
    let mut state = ClusterState::default();
    for kind in Kind::ALL {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        let mut params = ListParams::default().limit(PAGE_SIZE);
        state.apply_event(kind, Event::Init);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
                    state.mark_unavailable(kind);
                    break;
                }
                Err(err) => {
                    let err = KubeError::List {
                        kind: kind.as_str(),
                        message: err.to_string(),
                    };
                    sources::mark_down(pool, source_id, &err.to_string()).await?;
                    return Err(err);
                }
            };
            for object in page.items {
                state.apply_event(kind, Event::InitApply(to_value(object)));
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        if !state.unavailable.contains(&kind) {
            state.apply_event(kind, Event::InitDone);
        }
    }
    let mut written = None;
    Ok(state
        .persist(pool, source_id, &mut written)
        .await?
        .unwrap_or_default())
}

/// Collects one cluster until cancelled: connects (retrying with backoff while the
/// configuration cannot be used), then runs its watchers.
pub async fn supervise(pool: PgPool, target: Target, cancel: CancellationToken) {
    let name = target.name().to_string();
    let mut delay = Duration::from_secs(1);
    loop {
        let outcome = match connect(&target).await {
            Ok((client, endpoint)) => {
                match sources::ensure(&pool, SOURCE_KIND, &name, &endpoint).await {
                    Ok(source_id) => {
                        ClusterWatch::new(pool.clone(), source_id, client)
                            .run(cancel.clone())
                            .await;
                        return;
                    }
                    Err(err) => err.to_string(),
                }
            }
            Err(err) => {
                if let Ok(id) = sources::ensure(&pool, SOURCE_KIND, &name, "").await {
                    let _ = sources::mark_down(&pool, id, &err.to_string()).await;
                }
                err.to_string()
            }
        };
        tracing::warn!(source = %name, error = %outcome, ?delay, "cannot collect the cluster");
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// Starts one supervised collector per configured cluster, running while this replica holds the
/// cluster's lease.
pub fn spawn(config: &Config, pool: &PgPool, tasks: &TaskTracker, cancel: &CancellationToken) {
    let targets = match targets(config) {
        Ok(targets) => targets,
        Err(err) => {
            tracing::error!(%err, "Kubernetes collection is off");
            return;
        }
    };
    for target in targets {
        tracing::info!(source = target.name(), "collecting Kubernetes cluster");
        // Only the replica holding the cluster's lease collects it.
        let lease = lease::source_lease(SOURCE_KIND, target.name());
        let holder = lease::replica_id().to_string();
        let pool = pool.clone();
        tasks.spawn(lease::run_while_held(
            pool.clone(),
            lease,
            holder,
            config.lease_ttl,
            cancel.clone(),
            move |held| supervise(pool.clone(), target.clone(), held),
        ));
    }
}
