//! The normalized inventory every collector writes: sources, workloads, instances, images.
//!
//! Collectors map their raw API objects to the records here with pure functions, then write a
//! batch with [`store`] (one statement per table, never row by row) and feed the lifecycle stage
//! machine ([`crate::lifecycle`]). Raw documents are kept as evidence after [`redact`] removed
//! every secret value.

pub mod query;
pub mod redact;
pub mod sources;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What identifies a workload within its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadKey {
    /// Kubernetes namespace, Compose project, or '' for a plain container.
    pub namespace: String,
    /// Deployment, StatefulSet, DaemonSet, CronJob, Job, Pod, ReplicaSet, ComposeService,
    /// Container.
    pub kind: String,
    pub name: String,
}

impl WorkloadKey {
    pub fn new(
        namespace: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }
}

/// A workload as a collector sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRecord {
    pub key: WorkloadKey,
    pub uid: Option<String>,
    pub labels: Value,
    pub annotations: Value,
    /// The declared object, secret values removed.
    pub declared: Option<Value>,
    /// Image references of the declared / newest version.
    pub images: Vec<String>,
}

/// One instance (container or pod) as a collector sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub workload: WorkloadKey,
    pub external_id: String,
    pub name: String,
    pub state: String,
    pub running: bool,
    pub image_ref: Option<String>,
    pub image_digest: Option<String>,
    pub node: Option<String>,
    pub labels: Value,
    pub restart_count: i32,
    /// The normalized posture spec, when computed.
    pub spec: Option<Value>,
    /// The raw document, secret values removed.
    pub raw: Value,
    pub started_at: Option<DateTime<Utc>>,
}

/// An image by digest with the references it was seen under.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub digest: String,
    pub image_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub size_bytes: Option<i64>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    /// User, exposed ports, labels, env names — never env values.
    pub config: Value,
    pub references: Vec<String>,
}
