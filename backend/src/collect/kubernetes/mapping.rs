//! Pure mapping from Kubernetes objects to inventory records: no I/O, fed by the watchers, the
//! one-shot sync and the file import alike.
//!
//! A workload is the top-level controller found by walking `ownerReferences`: Pod → ReplicaSet
//! → Deployment, Pod → Job → CronJob, Pod → StatefulSet / DaemonSet. An orphan ReplicaSet, a Job
//! without a CronJob and a bare Pod are workloads of their own; a mirror Pod (annotation
//! `kubernetes.io/config.mirror`) is a `StaticPod` workload, owned by the node's configuration
//! and not fixable through the API. Both the declared object (with its pod template) and the live
//! Pods (with ephemeral containers and the fields injected at admission) are kept, each redacted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::inventory::redact;
use crate::inventory::{InstanceRecord, WorkloadKey, WorkloadRecord};
use crate::lifecycle::Observation;
use crate::posture::{Context, NetworkPolicy, ServiceAccountFacts};

/// The annotation the kubelet puts on the API copy of a static Pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The kubelet's hash of a static Pod's manifest: its version.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The kinds the collector watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Namespace,
    ServiceAccount,
    NetworkPolicy,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::NetworkPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }

    /// The `apiVersion` objects of this kind are served under.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Namespace | Kind::ServiceAccount => "v1",
            Kind::ReplicaSet | Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
        }
    }

    pub fn parse(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Controllers whose pods make up a workload.
    fn is_controller(self) -> bool {
        matches!(
            self,
            Kind::ReplicaSet
                | Kind::Deployment
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::Job
                | Kind::CronJob
        )
    }
}

/// A document that cannot be taken into the inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("not an object")]
    NotAnObject,
    #[error("no `kind`")]
    NoKind,
    #[error("kind {0} is not collected")]
    UnsupportedKind(String),
}

type ObjectKey = (String, String);

/// The objects of one cluster (or one import) as last seen, by kind, namespace and name.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    by_kind: BTreeMap<Kind, HashMap<ObjectKey, Value>>,
    /// Kinds whose complete list was read (a relist): that none of them exists is known.
    listed: BTreeSet<Kind>,
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn key_of(object: &Value) -> ObjectKey {
    (
        meta_str(object, "namespace").to_string(),
        meta_str(object, "name").to_string(),
    )
}

impl Objects {
    /// Stores an object under the kind it names.
    pub fn insert(&mut self, object: Value) -> Result<Kind, MapError> {
        if !object.is_object() {
            return Err(MapError::NotAnObject);
        }
        let kind_name = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(MapError::NoKind)?;
        let kind =
            Kind::parse(kind_name).ok_or_else(|| MapError::UnsupportedKind(kind_name.into()))?;
        self.insert_as(kind, object);
        Ok(kind)
    }

    /// Stores an object of a known kind (list items often omit `kind` and `apiVersion`; they are
    /// filled in so the stored document is self-describing).
    pub fn insert_as(&mut self, kind: Kind, mut object: Value) {
        if let Some(map) = object.as_object_mut() {
            map.entry("kind")
                .or_insert_with(|| Value::String(kind.as_str().into()));
            map.entry("apiVersion")
                .or_insert_with(|| Value::String(kind.api_version().into()));
        }
        let key = key_of(&object);
        self.by_kind.entry(kind).or_default().insert(key, object);
    }

    /// Forgets an object (it was deleted).
    pub fn remove(&mut self, kind: Kind, object: &Value) {
        if let Some(objects) = self.by_kind.get_mut(&kind) {
            objects.remove(&key_of(object));
        }
    }

    /// Replaces every object of a kind (a complete relist).
    pub fn replace_kind(&mut self, kind: Kind, objects: Vec<Value>) {
        self.listed.insert(kind);
        self.by_kind.remove(&kind);
        let entry = self.by_kind.entry(kind).or_default();
        for object in objects {
            entry.insert(key_of(&object), object);
        }
        // insert_as fills kind/apiVersion; do the same for relisted items.
        for object in entry.values_mut() {
            if let Some(map) = object.as_object_mut() {
                map.entry("kind")
                    .or_insert_with(|| Value::String(kind.as_str().into()));
                map.entry("apiVersion")
                    .or_insert_with(|| Value::String(kind.api_version().into()));
            }
        }
    }

    /// The kind cannot be read (any more): what is known of it is not complete.
    pub fn mark_unlisted(&mut self, kind: Kind) {
        self.listed.remove(&kind);
    }

    /// Whether every object of the kind is known: it was listed completely, or (a set of files)
    /// some object of it was given.
    pub fn known(&self, kind: Kind) -> bool {
        self.listed.contains(&kind) || self.count(kind) > 0
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.by_kind
            .get(&kind)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.by_kind.get(&kind).map_or(0, HashMap::len)
    }

    pub fn iter(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.by_kind.get(&kind).into_iter().flat_map(|m| m.values())
    }

    /// Object counts by kind, for the source status.
    pub fn counts(&self) -> Map<String, Value> {
        Kind::ALL
            .into_iter()
            .map(|kind| (kind.as_str().to_string(), json!(self.count(kind))))
            .collect()
    }
}

/// One workload as mapped: its record, its pods, and what the lifecycle should observe.
#[derive(Debug, Clone)]
pub struct MappedWorkload {
    pub record: WorkloadRecord,
    pub instances: Vec<InstanceRecord>,
    pub observation: Observation,
    /// Changes whenever the controller, one of its ReplicaSets / Jobs or one of its Pods does.
    pub fingerprint: u64,
    /// The object the posture checks evaluate: the declared controller (or the bare Pod; the
    /// first pod when no controller is known), NOT redacted (the secret checks read values).
    /// Never stored: only what the checks report (names, pointers) is.
    pub posture_object: Option<Value>,
    /// Live Pods of a controller whose spec differs from the controller's template (an
    /// ephemeral container, a patched pod): evaluated on their own (CHECKS.md E21). Not
    /// redacted, never stored.
    pub live_pods: Vec<Value>,
    /// The ServiceAccount the pods run as.
    pub service_account: String,
}

/// What the posture checks know of a cluster besides each workload: its NetworkPolicies and
/// ServiceAccounts by namespace, `None` when the kind is not known (not listed yet, not
/// readable, not among the files).
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub network_policies: Option<HashMap<String, Vec<NetworkPolicy>>>,
    pub service_accounts: Option<HashMap<String, Vec<ServiceAccountFacts>>>,
}

const NO_POLICIES: &[NetworkPolicy] = &[];
const NO_ACCOUNTS: &[ServiceAccountFacts] = &[];

impl ClusterFacts {
    /// Reads the NetworkPolicies and ServiceAccounts among the objects.
    pub fn of(objects: &Objects) -> Self {
        let network_policies = objects.known(Kind::NetworkPolicy).then(|| {
            let mut by_namespace: HashMap<String, Vec<NetworkPolicy>> = HashMap::new();
            for policy in objects
                .iter(Kind::NetworkPolicy)
                .filter_map(NetworkPolicy::from_object)
            {
                by_namespace
                    .entry(policy.namespace.clone())
                    .or_default()
                    .push(policy);
            }
            for policies in by_namespace.values_mut() {
                policies.sort_by(|a, b| a.name.cmp(&b.name));
            }
            by_namespace
        });
        let service_accounts = objects.known(Kind::ServiceAccount).then(|| {
            let mut by_namespace: HashMap<String, Vec<ServiceAccountFacts>> = HashMap::new();
            for account in objects
                .iter(Kind::ServiceAccount)
                .filter_map(ServiceAccountFacts::from_object)
            {
                by_namespace
                    .entry(account.namespace.clone())
                    .or_default()
                    .push(account);
            }
            by_namespace
        });
        Self {
            network_policies,
            service_accounts,
        }
    }

    /// The context the checks of a workload in `namespace` get.
    pub fn context(&self, namespace: &str) -> Context<'_> {
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        Context {
            network_policies: self
                .network_policies
                .as_ref()
                .map(|m| m.get(namespace).map_or(NO_POLICIES, Vec::as_slice)),
            service_accounts: self
                .service_accounts
                .as_ref()
                .map(|m| m.get(namespace).map_or(NO_ACCOUNTS, Vec::as_slice)),
            ..Context::default()
        }
    }
}

/// Every workload of a cluster, by identity.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub workloads: BTreeMap<WorkloadKey, MappedWorkload>,
    /// The cluster's NetworkPolicies and ServiceAccounts, for the posture checks.
    pub facts: ClusterFacts,
    /// Pods whose ReplicaSet or Job is not known (yet): their workload cannot be told, so they
    /// are neither written nor removed until it is.
    pub held: Vec<String>,
    /// The namespaces, whose labels and annotations route ownership.
    pub namespaces: Vec<NamespaceRecord>,
}

/// A namespace as stored: what ownership reads of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRecord {
    pub name: String,
    pub labels: Value,
    pub annotations: Value,
}

impl NamespaceRecord {
    fn of(object: &Value) -> Self {
        let meta = |field: &str| {
            object
                .pointer(&format!("/metadata/{field}"))
                .filter(|v| v.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}))
        };
        Self {
            name: meta_str(object, "name").to_string(),
            labels: meta("labels"),
            annotations: meta("annotations"),
        }
    }
}

impl Snapshot {
    pub fn instance_count(&self) -> usize {
        self.workloads.values().map(|w| w.instances.len()).sum()
    }
}

/// The controller reference of an object: the one marked `controller: true`, else the first.
fn owner(object: &Value) -> Option<(&str, &str)> {
    let refs = object.pointer("/metadata/ownerReferences")?.as_array()?;
    let chosen = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| refs.first())?;
    Some((chosen.get("kind")?.as_str()?, chosen.get("name")?.as_str()?))
}

/// Whether a Pod is the API mirror of a static Pod.
pub fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
}

/// The workload an object belongs to, walking owners through the objects known.
pub fn workload_key(objects: &Objects, kind: Kind, object: &Value) -> WorkloadKey {
    let namespace = meta_str(object, "namespace");
    if kind == Kind::Pod && is_mirror_pod(object) {
        return WorkloadKey::new(namespace, "StaticPod", meta_str(object, "name"));
    }
    let mut current_kind = kind.as_str().to_string();
    let mut current_name = meta_str(object, "name").to_string();
    let mut current = Some(object);
    // Owner chains are short (Pod → ReplicaSet → Deployment); the bound guards against cycles.
    for _ in 0..4 {
        let Some(object) = current else { break };
        let Some((owner_kind, owner_name)) = owner(object) else {
            break;
        };
        if owner_kind == "Node" {
            break;
        }
        current_kind = owner_kind.to_string();
        current_name = owner_name.to_string();
        current = Kind::parse(owner_kind)
            .filter(|k| k.is_controller())
            .and_then(|k| objects.get(k, namespace, owner_name));
    }
    WorkloadKey::new(namespace, current_kind, current_name)
}

fn object_map(object: &Value, field: &str) -> Value {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// Where a kind keeps its pod template.
fn template<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            object.pointer("/spec/template")
        }
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn pod_spec<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" | "StaticPod" => object.get("spec"),
        _ => template(kind, object).and_then(|t| t.get("spec")),
    }
}

fn images_of(spec: Option<&Value>) -> Vec<String> {
    let mut images = Vec::new();
    for field in ["initContainers", "containers"] {
        for container in spec
            .and_then(|s| s.get(field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(image) = container.get("image").and_then(Value::as_str) {
                if !images.iter().any(|i| i == image) {
                    images.push(image.to_string());
                }
            }
        }
    }
    images
}

/// Feeds a JSON value to a hasher with object keys in sorted order, whatever the map type.
fn hash_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                hash_canonical(&map[key], hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                hash_canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

/// A short stable hash of a JSON value.
pub fn spec_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    hash_canonical(value, &mut hasher);
    hex::encode(&hasher.finalize()[..8])
}

/// `docker-pullable://nginx@sha256:…`, `nginx@sha256:…`, `sha256:…` → `sha256:…`.
pub fn normalize_image_id(image_id: &str) -> Option<String> {
    if image_id.is_empty() {
        return None;
    }
    let tail = image_id.rsplit_once('@').map_or(image_id, |(_, d)| d);
    let tail = tail.rsplit_once("://").map_or(tail, |(_, d)| d);
    Some(tail.to_string())
}

fn container_statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .flat_map(move |field| {
            pod.pointer(&format!("/status/{field}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
}

fn pod_digests(pod: &Value) -> Vec<String> {
    container_statuses(pod)
        .filter_map(|s| s.get("imageID").and_then(Value::as_str))
        .filter_map(normalize_image_id)
        .collect()
}

/// Running and ready: the pod serves.
pub fn pod_ready(pod: &Value) -> bool {
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
    running && ready
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn timestamp(object: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A Pod's instance id: its uid, else `namespace/name` (imported documents may lack the uid).
pub fn pod_external_id(pod: &Value) -> String {
    let uid = meta_str(pod, "uid");
    if uid.is_empty() {
        format!("{}/{}", meta_str(pod, "namespace"), meta_str(pod, "name"))
    } else {
        uid.to_string()
    }
}

/// Whether the Pod's controller is a ReplicaSet or Job that is not among the objects: watches of
/// different kinds deliver in any order, so the owner may simply not have arrived yet.
fn owner_missing(objects: &Objects, pod: &Value) -> bool {
    match owner(pod) {
        Some((kind @ ("ReplicaSet" | "Job"), name)) => Kind::parse(kind)
            .is_some_and(|k| objects.get(k, meta_str(pod, "namespace"), name).is_none()),
        _ => false,
    }
}

/// Maps a live Pod to an instance of `workload`.
pub fn instance(workload: &WorkloadKey, pod: &Value) -> InstanceRecord {
    let name = meta_str(pod, "name").to_string();
    let external_id = pod_external_id(pod);
    let terminating = pod.pointer("/metadata/deletionTimestamp").is_some();
    let state = if terminating {
        "Terminating".to_string()
    } else {
        pod.pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string()
    };
    let first_container = pod.pointer("/spec/containers/0");
    let first_status = pod.pointer("/status/containerStatuses/0");
    let restart_count = container_statuses(pod)
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum::<i64>();
    let mut raw = pod.clone();
    redact::kubernetes_object(&mut raw);
    InstanceRecord {
        workload: workload.clone(),
        external_id,
        name,
        state,
        running: pod_ready(pod),
        image_ref: first_container
            .and_then(|c| c.get("image"))
            .and_then(Value::as_str)
            .map(String::from),
        image_digest: first_status
            .and_then(|s| s.get("imageID"))
            .and_then(Value::as_str)
            .and_then(normalize_image_id),
        node: pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(String::from),
        labels: object_map(pod, "labels"),
        restart_count: i32::try_from(restart_count).unwrap_or(i32::MAX),
        spec: None,
        raw,
        started_at: timestamp(pod, "/status/startTime"),
    }
}

/// Whether the controller's rollout is complete: it saw its newest generation and every desired
/// replica runs the newest template.
pub fn rolled_out(kind: &str, object: &Value) -> bool {
    let generation = int(object, "/metadata/generation").unwrap_or(0);
    let observed = int(object, "/status/observedGeneration").unwrap_or(generation);
    if observed < generation {
        return false;
    }
    match kind {
        "Deployment" => {
            let desired = int(object, "/spec/replicas").unwrap_or(1);
            let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
            let total = int(object, "/status/replicas").unwrap_or(0);
            updated >= desired && total <= updated
        }
        "StatefulSet" => {
            let desired = int(object, "/spec/replicas").unwrap_or(1);
            let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
            updated >= desired
        }
        "DaemonSet" => {
            let desired = int(object, "/status/desiredNumberScheduled").unwrap_or(0);
            let updated = int(object, "/status/updatedNumberScheduled").unwrap_or(0);
            updated >= desired
        }
        _ => true,
    }
}

/// What belongs to one workload while the snapshot is built.
#[derive(Default)]
struct Members<'a> {
    controller: Option<&'a Value>,
    replica_sets: Vec<&'a Value>,
    jobs: Vec<&'a Value>,
    pods: Vec<&'a Value>,
}

fn fingerprint_of(object: &Value, hasher: &mut DefaultHasher) {
    let version = meta_str(object, "resourceVersion");
    if version.is_empty() {
        object.to_string().hash(hasher);
    } else {
        meta_str(object, "uid").hash(hasher);
        version.hash(hasher);
    }
}

/// The versions of what the posture of a workload depends on besides its own objects: a change
/// of a namespace's NetworkPolicies or of a ServiceAccount changes the fingerprint of the
/// workloads concerned, so they are evaluated again.
struct FactVersions<'a> {
    policies_known: bool,
    accounts_known: bool,
    policies: HashMap<&'a str, u64>,
    accounts: HashMap<(&'a str, &'a str), u64>,
}

impl<'a> FactVersions<'a> {
    fn of(objects: &'a Objects) -> Self {
        let mut by_namespace: HashMap<&str, Vec<&Value>> = HashMap::new();
        for policy in objects.iter(Kind::NetworkPolicy) {
            by_namespace
                .entry(namespace_of(policy))
                .or_default()
                .push(policy);
        }
        let policies = by_namespace
            .into_iter()
            .map(|(namespace, mut policies)| {
                policies.sort_by_key(|p| meta_str(p, "name"));
                let mut hasher = DefaultHasher::new();
                for policy in policies {
                    meta_str(policy, "name").hash(&mut hasher);
                    fingerprint_of(policy, &mut hasher);
                }
                (namespace, hasher.finish())
            })
            .collect();
        let accounts = objects
            .iter(Kind::ServiceAccount)
            .map(|account| {
                let mut hasher = DefaultHasher::new();
                fingerprint_of(account, &mut hasher);
                (
                    (namespace_of(account), meta_str(account, "name")),
                    hasher.finish(),
                )
            })
            .collect();
        Self {
            policies_known: objects.known(Kind::NetworkPolicy),
            accounts_known: objects.known(Kind::ServiceAccount),
            policies,
            accounts,
        }
    }

    fn hash(&self, namespace: &str, account: &str, hasher: &mut DefaultHasher) {
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        self.policies_known.hash(hasher);
        self.accounts_known.hash(hasher);
        self.policies.get(namespace).hash(hasher);
        self.accounts.get(&(namespace, account)).hash(hasher);
    }
}

fn namespace_of(object: &Value) -> &str {
    let namespace = meta_str(object, "namespace");
    if namespace.is_empty() {
        "default"
    } else {
        namespace
    }
}

/// The ServiceAccount a pod spec runs as.
fn service_account_of(spec: Option<&Value>) -> String {
    spec.and_then(|s| {
        s.get("serviceAccountName")
            .or_else(|| s.get("serviceAccount"))
    })
    .and_then(Value::as_str)
    .filter(|name| !name.is_empty())
    .unwrap_or("default")
    .to_string()
}

/// Labels a controller puts on each of its pods, which differ from its template by design.
const POD_IDENTITY_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
    "pod-template-generation",
    "batch.kubernetes.io/job-completion-index",
];

fn is_token_volume(volume: &Value) -> bool {
    volume
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| name.starts_with("kube-api-access-"))
}

/// What of a pod (or a pod template) the posture checks read, without what differs between a
/// template and its pods by design (the node, the injected token volume, the per-pod labels):
/// a live Pod whose projection differs from its template's was changed after its creation (an
/// ephemeral container, a patch) and is evaluated on its own.
pub fn posture_projection(template: &Value) -> Value {
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut spec = match spec {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for field in [
        "nodeName",
        "hostname",
        "subdomain",
        "schedulerName",
        "priority",
        "enableServiceLinks",
        "preemptionPolicy",
        "terminationGracePeriodSeconds",
        "dnsPolicy",
        "restartPolicy",
        "tolerations",
        "serviceAccount",
    ] {
        spec.remove(field);
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| !is_token_volume(v));
        if volumes.is_empty() {
            spec.remove("volumes");
        }
    }
    for field in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(field) {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                for key in [
                    "terminationMessagePath",
                    "terminationMessagePolicy",
                    "imagePullPolicy",
                    "resources",
                ] {
                    container.remove(key);
                }
                if let Some(Value::Array(mounts)) = container.get_mut("volumeMounts") {
                    mounts.retain(|m| {
                        m.get("mountPath").and_then(Value::as_str)
                            != Some("/var/run/secrets/kubernetes.io/serviceaccount")
                    });
                    if mounts.is_empty() {
                        container.remove("volumeMounts");
                    }
                }
            }
        }
    }
    let mut labels = object_map(template, "labels");
    if let Some(map) = labels.as_object_mut() {
        for key in POD_IDENTITY_LABELS {
            map.remove(*key);
        }
    }
    if spec.get("serviceAccountName").and_then(Value::as_str) == Some("default") {
        spec.remove("serviceAccountName");
    }
    // Admission writes an empty pod security context where the template has none.
    if spec
        .get("securityContext")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        spec.remove("securityContext");
    }
    json!({"labels": labels, "spec": spec})
}

/// Whether the pod is running or about to: a finished or terminating pod is not evaluated.
fn pod_alive(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && !matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// Maps every object to its workload. With `hold_unresolved` (a live cluster), Pods whose
/// ReplicaSet or Job is missing are held back (see [`Snapshot::held`]); otherwise (a set of
/// files) the owner reference itself names their workload.
pub fn snapshot(objects: &Objects, hold_unresolved: bool) -> Snapshot {
    let mut held = Vec::new();
    let mut members: BTreeMap<WorkloadKey, Members<'_>> = BTreeMap::new();
    for kind in [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::CronJob,
        Kind::Job,
        Kind::ReplicaSet,
    ] {
        for object in objects.iter(kind) {
            let key = workload_key(objects, kind, object);
            let entry = members.entry(key.clone()).or_default();
            let is_top = key.kind == kind.as_str() && key.name == meta_str(object, "name");
            if is_top {
                entry.controller = Some(object);
            }
            match kind {
                Kind::ReplicaSet if !is_top => entry.replica_sets.push(object),
                Kind::Job if !is_top => entry.jobs.push(object),
                _ => {}
            }
        }
    }
    for pod in objects.iter(Kind::Pod) {
        if hold_unresolved && !is_mirror_pod(pod) && owner_missing(objects, pod) {
            held.push(pod_external_id(pod));
            continue;
        }
        let key = workload_key(objects, Kind::Pod, pod);
        let entry = members.entry(key.clone()).or_default();
        if matches!(key.kind.as_str(), "Pod" | "StaticPod") {
            entry.controller = Some(pod);
        }
        entry.pods.push(pod);
    }

    let versions = FactVersions::of(objects);
    let workloads = members
        .into_iter()
        .map(|(key, members)| {
            let mapped = map_workload(&key, members, &versions);
            (key, mapped)
        })
        .collect();
    let mut namespaces: Vec<NamespaceRecord> = objects
        .iter(Kind::Namespace)
        .map(NamespaceRecord::of)
        .filter(|ns| !ns.name.is_empty())
        .collect();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    Snapshot {
        workloads,
        held,
        namespaces,
        facts: ClusterFacts::of(objects),
    }
}

fn map_workload(
    key: &WorkloadKey,
    mut members: Members<'_>,
    versions: &FactVersions<'_>,
) -> MappedWorkload {
    members.pods.sort_by_key(|p| meta_str(p, "name"));
    let kind = key.kind.as_str();
    let mut hasher = DefaultHasher::new();
    for object in members
        .controller
        .iter()
        .chain(&members.replica_sets)
        .chain(&members.jobs)
        .chain(&members.pods)
    {
        fingerprint_of(object, &mut hasher);
    }

    let service_account = service_account_of(
        members
            .controller
            .and_then(|object| pod_spec(kind, object))
            .or_else(|| members.pods.first().and_then(|pod| pod.get("spec"))),
    );
    versions.hash(&key.namespace, &service_account, &mut hasher);

    // The live pods that differ from the controller's template (E21).
    let live_pods: Vec<Value> = match members.controller.and_then(|c| template(kind, c)) {
        Some(template) => {
            let expected = posture_projection(template);
            members
                .pods
                .iter()
                .filter(|pod| pod_alive(pod) && posture_projection(pod) != expected)
                .map(|pod| (*pod).clone())
                .collect()
        }
        None => Vec::new(),
    };

    let declared = members.controller.map(|object| {
        let mut declared = object.clone();
        redact::kubernetes_object(&mut declared);
        declared
    });
    let (labels, annotations) = match &declared {
        Some(object) => (
            object_map(object, "labels"),
            object_map(object, "annotations"),
        ),
        None => (json!({}), json!({})),
    };
    let images = members
        .controller
        .map(|object| images_of(pod_spec(kind, object)))
        .unwrap_or_else(|| {
            let mut images = Vec::new();
            for pod in &members.pods {
                for image in images_of(pod.get("spec")) {
                    if !images.contains(&image) {
                        images.push(image);
                    }
                }
            }
            images
        });

    let instances: Vec<InstanceRecord> =
        members.pods.iter().map(|pod| instance(key, pod)).collect();
    let running = instances.iter().filter(|i| i.running).count();

    // The pods of the newest version: a Deployment's newest ReplicaSet, a StatefulSet's update
    // revision; every pod otherwise.
    let newest_rs = members
        .replica_sets
        .iter()
        .max_by_key(|rs| {
            rs.pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .and_then(Value::as_str)
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .map(|rs| meta_str(rs, "name"));
    let update_revision = members
        .controller
        .and_then(|c| c.pointer("/status/updateRevision"))
        .and_then(Value::as_str)
        .filter(|_| kind == "StatefulSet");
    let current = |pod: &Value| -> bool {
        if let (Some(newest), "Deployment") = (newest_rs, kind) {
            return owner(pod).map(|(_, name)| name) == Some(newest);
        }
        if let Some(revision) = update_revision {
            return pod
                .pointer("/metadata/labels/controller-revision-hash")
                .and_then(Value::as_str)
                == Some(revision);
        }
        pod.pointer("/metadata/deletionTimestamp").is_none()
    };
    let digests: BTreeSet<String> = members
        .pods
        .iter()
        .filter(|pod| current(pod))
        .flat_map(|pod| pod_digests(pod))
        .collect();

    let spec_hash = match (kind, members.controller) {
        ("StaticPod", Some(pod)) => pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| Some(spec_hash(&json!(images)))),
        ("Pod", Some(_)) => Some(spec_hash(&json!(images))),
        (_, Some(object)) => template(kind, object).map(spec_hash),
        (_, None) => None,
    };
    let rolled_out = members
        .controller
        .is_none_or(|object| rolled_out(kind, object));
    let reason = if members.controller.is_none() && kind != "Pod" {
        Some(format!(
            "{running}/{} pods ready; {kind} {} not visible",
            instances.len(),
            key.name
        ))
    } else {
        Some(format!("{running}/{} pods ready", instances.len()))
    };

    let record = WorkloadRecord {
        key: key.clone(),
        uid: members
            .controller
            .map(|o| meta_str(o, "uid"))
            .filter(|uid| !uid.is_empty())
            .map(String::from),
        labels,
        annotations,
        declared,
        images,
    };
    MappedWorkload {
        record,
        observation: Observation {
            present: true,
            running: u32::try_from(running).unwrap_or(u32::MAX),
            digests: digests.into_iter().collect(),
            spec_hash,
            rolled_out,
            reason,
        },
        instances,
        fingerprint: hasher.finish(),
        posture_object: members
            .controller
            .or_else(|| members.pods.first().copied())
            .cloned(),
        live_pods,
        service_account,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Objects {
        let path = format!(
            "{}/tests/data/kubernetes/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let mut objects = Objects::default();
        let list: Value = serde_json::from_str(&text).unwrap();
        for item in list["items"].as_array().unwrap() {
            objects.insert(item.clone()).unwrap();
        }
        objects
    }

    fn keys(snapshot: &Snapshot) -> Vec<String> {
        snapshot
            .workloads
            .keys()
            .map(|k| format!("{}/{}/{}", k.namespace, k.kind, k.name))
            .collect()
    }

    #[test]
    fn pods_are_grouped_under_their_top_level_controller() {
        let snapshot = snapshot(&load("cluster.json"), true);
        assert_eq!(
            keys(&snapshot),
            vec![
                "batch/CronJob/nightly",
                "batch/Job/migrate",
                "kube-system/StaticPod/etcd-node1",
                "shop/Deployment/web",
                "shop/Pod/debug",
                "shop/ReplicaSet/legacy",
            ]
        );
        let web = &snapshot.workloads[&WorkloadKey::new("shop", "Deployment", "web")];
        assert_eq!(web.instances.len(), 3, "old and new ReplicaSet pods");
        let nightly = &snapshot.workloads[&WorkloadKey::new("batch", "CronJob", "nightly")];
        assert_eq!(nightly.instances.len(), 2, "pods of two Jobs");
    }

    #[test]
    fn a_rollout_in_progress_is_not_rolled_out_and_digests_follow_the_newest_replicaset() {
        let snapshot = snapshot(&load("cluster.json"), true);
        let web = &snapshot.workloads[&WorkloadKey::new("shop", "Deployment", "web")];
        assert!(!web.observation.rolled_out);
        assert_eq!(web.observation.digests, vec!["sha256:bbbb"]);
        assert_eq!(web.observation.running, 2);
        assert_eq!(web.record.images, vec!["shop/web:2"]);
        assert!(web.observation.spec_hash.is_some());
    }

    #[test]
    fn declared_and_live_documents_are_redacted_and_keep_ephemeral_containers() {
        let snapshot = snapshot(&load("cluster.json"), true);
        let web = &snapshot.workloads[&WorkloadKey::new("shop", "Deployment", "web")];
        let declared = web.record.declared.as_ref().unwrap().to_string();
        assert!(!declared.contains("hunter2"), "{declared}");
        assert!(declared.contains("DB_PASSWORD"));
        let debug = &snapshot.workloads[&WorkloadKey::new("shop", "Pod", "debug")];
        let raw = &debug.instances[0].raw;
        assert_eq!(raw["spec"]["ephemeralContainers"][0]["name"], "debugger");
        assert!(!raw.to_string().contains("hunter2"));
    }

    #[test]
    fn mirror_pods_are_static_pods_versioned_by_their_config_hash() {
        let snapshot = snapshot(&load("cluster.json"), true);
        let etcd = &snapshot.workloads[&WorkloadKey::new("kube-system", "StaticPod", "etcd-node1")];
        assert_eq!(etcd.observation.spec_hash.as_deref(), Some("abc123"));
        assert_eq!(etcd.instances[0].node.as_deref(), Some("node1"));
    }

    #[test]
    fn an_unknown_owner_becomes_the_workload_without_a_declared_object() {
        let mut objects = Objects::default();
        objects
            .insert(
                json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "x",
                "ownerReferences": [{"kind": "Rollout", "name": "canary", "controller": true}]}}),
            )
            .unwrap();
        let snapshot = snapshot(&objects, true);
        let key = WorkloadKey::new("x", "Rollout", "canary");
        assert!(snapshot.workloads[&key].record.declared.is_none());
    }

    #[test]
    fn a_pod_whose_replicaset_has_not_arrived_is_held_in_a_cluster_and_mapped_in_files() {
        let mut objects = Objects::default();
        objects
            .insert(
                json!({"kind": "Pod", "metadata": {"name": "web-1-x", "namespace": "x",
                "uid": "p1", "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}]}}),
            )
            .unwrap();
        let live = snapshot(&objects, true);
        assert!(live.workloads.is_empty());
        assert_eq!(live.held, vec!["p1"]);
        let files = snapshot(&objects, false);
        assert!(files
            .workloads
            .contains_key(&WorkloadKey::new("x", "ReplicaSet", "web-1")));
    }

    #[test]
    fn a_pod_as_admission_left_it_projects_like_its_template_and_a_debugged_one_does_not() {
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web:1"}]}});
        let pod = json!({"metadata": {"name": "web-1-x", "labels": {"app": "web",
                "pod-template-hash": "1"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default",
                "serviceAccount": "default", "securityContext": {}, "dnsPolicy": "ClusterFirst",
                "volumes": [{"name": "kube-api-access-x1y2z", "projected": {"sources": []}}],
                "containers": [{"name": "app", "image": "web:1", "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log",
                    "volumeMounts": [{"name": "kube-api-access-x1y2z",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}});
        assert_eq!(posture_projection(&pod), posture_projection(&template));
        let mut debugged = pod.clone();
        debugged["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
        assert_ne!(posture_projection(&debugged), posture_projection(&template));
        let mut patched = pod;
        patched["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        assert_ne!(posture_projection(&patched), posture_projection(&template));
    }

    #[test]
    fn the_spec_hash_ignores_key_order() {
        assert_eq!(
            spec_hash(&json!({"a": 1, "b": [1, {"c": 2, "d": 3}]})),
            spec_hash(&serde_json::from_str(r#"{"b":[1,{"d":3,"c":2}],"a":1}"#).unwrap())
        );
    }

    #[test]
    fn image_ids_are_normalized_to_digests() {
        assert_eq!(
            normalize_image_id("docker-pullable://nginx@sha256:ab").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(
            normalize_image_id("sha256:ab").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(normalize_image_id(""), None);
    }

    #[test]
    fn a_statefulset_follows_its_update_revision_and_a_daemonset_its_updated_count() {
        let mut objects = Objects::default();
        objects
            .insert(json!({"kind": "StatefulSet",
                "metadata": {"name": "db", "namespace": "x", "generation": 2},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "pg:17"}]}}},
                "status": {"observedGeneration": 2, "updatedReplicas": 1, "updateRevision": "db-2"}}))
            .unwrap();
        for (name, revision, digest) in [
            ("db-0", "db-1", "sha256:old"),
            ("db-1", "db-2", "sha256:new"),
        ] {
            objects
                .insert(json!({"kind": "Pod", "metadata": {"name": name, "namespace": "x", "uid": name,
                    "labels": {"controller-revision-hash": revision},
                    "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"imageID": digest}]}}))
                .unwrap();
        }
        let snapshot = snapshot(&objects, true);
        let db = &snapshot.workloads[&WorkloadKey::new("x", "StatefulSet", "db")];
        assert_eq!(db.observation.digests, vec!["sha256:new"]);
        assert!(!db.observation.rolled_out, "one of two replicas updated");
        assert_eq!(db.observation.running, 2);

        let daemon = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 3, "updatedNumberScheduled": 3}});
        assert!(rolled_out("DaemonSet", &daemon));
    }

    #[test]
    fn scaled_to_zero_is_rolled_out_with_nothing_running() {
        let deployment = json!({"metadata": {"generation": 3}, "spec": {"replicas": 0},
            "status": {"observedGeneration": 3}});
        assert!(rolled_out("Deployment", &deployment));
        let behind = json!({"metadata": {"generation": 4}, "spec": {"replicas": 0},
            "status": {"observedGeneration": 3}});
        assert!(!rolled_out("Deployment", &behind));
    }
}
