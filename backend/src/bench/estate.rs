//! A synthetic estate written through the collector's own code: Kubernetes objects of several
//! clusters (Deployments with their ReplicaSets, StatefulSets, DaemonSets, CronJobs and bare
//! Pods, each with a running pod where it has one), mapped by `collect::kubernetes::mapping` and
//! written by `collect::kubernetes::persist` — the batched upserts, the lifecycle, the posture
//! evaluation and the findings of a real first sync. Then a rollout of a tenth of the
//! Deployments (new image, new ReplicaSet, new pod) gives the lifecycle some history.
//!
//! The mix: 500 namespaces, each owned by one of 40 teams (label `team`); 70 % Deployments,
//! 10 % StatefulSets, 5 % DaemonSets, 10 % CronJobs (no pod), 5 % bare Pods; one workload in ten
//! risky (privileged, root, the Docker socket mounted, host network), the rest hardened.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::collect::kubernetes::mapping::{self, Objects};
use crate::collect::kubernetes::persist::{self, Persisted, Written};
use crate::inventory::sources;

/// Workloads per synthetic cluster (one source each).
pub const CLUSTER_SIZE: usize = 10_000;
const NAMESPACES: usize = 500;
const TEAMS: usize = 40;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    /// Workloads in all (spread over clusters of [`CLUSTER_SIZE`]).
    pub workloads: usize,
    /// Clusters written at the same time.
    pub parallel: usize,
}

/// What the seed wrote and how long it took.
#[derive(Debug, Default, Clone)]
pub struct SeedReport {
    pub clusters: usize,
    pub workloads: usize,
    pub instances: usize,
    pub transitions: usize,
    pub findings: i64,
    /// Building the objects (not part of the ingest).
    pub generate: Duration,
    /// The first complete write of every cluster: mapping, upserts, lifecycle, posture.
    pub ingest: Duration,
    /// The rollout of a tenth of the Deployments (incremental writes).
    pub rollout: Duration,
}

/// The kind of workload `n` is.
fn kind_of(n: usize) -> &'static str {
    match n % 20 {
        0..=13 => "Deployment",
        14 | 15 => "StatefulSet",
        16 => "DaemonSet",
        17 | 18 => "CronJob",
        _ => "Pod",
    }
}

/// Whether workload `n` is one of the risky tenth (blocks of 20, so every kind has some).
pub fn is_risky(n: usize) -> bool {
    (n / 20) % 10 == 3
}

fn namespace_of(n: usize) -> (String, String) {
    let namespace = n % NAMESPACES;
    (
        format!("ns-{namespace:03}"),
        format!("team-{:02}", namespace % TEAMS),
    )
}

/// The pod spec of workload `n` at image `version`.
fn pod_spec(n: usize, version: u32) -> Value {
    let (_, team) = namespace_of(n);
    let image = format!("registry.example/{team}/app-{}:{version}", n % 200);
    if is_risky(n) {
        json!({
            "hostNetwork": n % 20 == 3,
            "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
            "containers": [{
                "name": "app",
                "image": image,
                "securityContext": {"privileged": true, "runAsUser": 0},
                "volumeMounts": [{"name": "docker", "mountPath": "/var/run/docker.sock"}],
                "env": [{"name": "API_TOKEN", "value": "[redacted]"}]
            }]
        })
    } else {
        json!({
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": image,
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "env": [{"name": "MODE", "value": "production"}]
            }]
        })
    }
}

fn metadata(namespace: &str, name: &str, team: &str, generation: u32) -> Value {
    json!({"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
           "generation": generation, "labels": {"app": name, "team": team}})
}

fn owner(kind: &str, namespace: &str, name: &str) -> Value {
    let api = match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
        _ => "batch/v1",
    };
    json!([{"apiVersion": api, "kind": kind, "name": name,
            "uid": format!("uid-{namespace}-{name}"), "controller": true}])
}

fn pod(n: usize, namespace: &str, name: &str, owner_ref: Option<Value>, version: u32) -> Value {
    let (_, team) = namespace_of(n);
    let mut spec = pod_spec(n, version);
    spec["nodeName"] = json!(format!("node-{:02}", n % 50));
    let image = spec["containers"][0]["image"].clone();
    let digest = format!("sha256:{:064x}", (n % 200) * 10 + version as usize);
    let mut metadata = metadata(namespace, name, &team, 1);
    if let Some(owner_ref) = owner_ref {
        metadata["ownerReferences"] = owner_ref;
    }
    json!({
        "kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec,
        "status": {"phase": "Running", "startTime": "2026-11-28T10:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "image": image, "ready": true,
                       "restartCount": n % 7,
                       "imageID": format!("{}@{digest}", image.as_str().unwrap_or_default())}]}
    })
}

/// Adds workload `n` (named `app-NNNNNN`) with its pods to `objects`; Deployments at image
/// `version` (1 at first, 2 after the rollout).
fn add_workload(objects: &mut Objects, n: usize, version: u32) {
    let (namespace, team) = namespace_of(n);
    let name = format!("app-{n:06}");
    let template = json!({"metadata": {"labels": {"app": name, "team": team}},
                          "spec": pod_spec(n, version)});
    let status = json!({"observedGeneration": version, "replicas": 1, "updatedReplicas": 1,
                        "readyReplicas": 1, "availableReplicas": 1, "currentReplicas": 1,
                        "numberReady": 1, "desiredNumberScheduled": 1,
                        "currentNumberScheduled": 1, "updatedNumberScheduled": 1});
    let objects_of: Vec<Value> = match kind_of(n) {
        "Deployment" => {
            let rs = format!("{name}-v{version}");
            vec![
                json!({"kind": "Deployment", "apiVersion": "apps/v1",
                       "metadata": metadata(&namespace, &name, &team, version),
                       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                "template": template},
                       "status": status}),
                json!({"kind": "ReplicaSet", "apiVersion": "apps/v1",
                       "metadata": {"name": rs, "namespace": namespace,
                                    "uid": format!("uid-{namespace}-{rs}"),
                                    "annotations": {"deployment.kubernetes.io/revision": version.to_string()},
                                    "ownerReferences": owner("Deployment", &namespace, &name)},
                       "spec": {"replicas": 1, "template": template}}),
                pod(
                    n,
                    &namespace,
                    &format!("{rs}-x{n}"),
                    Some(owner("ReplicaSet", &namespace, &rs)),
                    version,
                ),
            ]
        }
        kind @ ("StatefulSet" | "DaemonSet") => vec![
            json!({"kind": kind, "apiVersion": "apps/v1",
                   "metadata": metadata(&namespace, &name, &team, 1),
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": template},
                   "status": status}),
            pod(
                n,
                &namespace,
                &format!("{name}-0"),
                Some(owner(kind, &namespace, &name)),
                1,
            ),
        ],
        "CronJob" => vec![json!({"kind": "CronJob", "apiVersion": "batch/v1",
               "metadata": metadata(&namespace, &name, &team, 1),
               "spec": {"schedule": "*/15 * * * *",
                        "jobTemplate": {"spec": {"template": template}}}})],
        _ => vec![pod(n, &namespace, &name, None, 1)],
    };
    for object in objects_of {
        // Every object above names a collected kind.
        let _ = objects.insert(object);
    }
}

/// The objects of cluster `cluster`: workloads `range` and the namespaces.
fn cluster_objects(range: std::ops::Range<usize>, version_of: impl Fn(usize) -> u32) -> Objects {
    let mut objects = Objects::default();
    for namespace in 0..NAMESPACES {
        let team = format!("team-{:02}", namespace % TEAMS);
        let _ = objects.insert(json!({"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": format!("ns-{namespace:03}"), "labels": {"team": team}}}));
    }
    for n in range {
        add_workload(&mut objects, n, version_of(n));
    }
    objects
}

/// Whether workload `n` is rolled out to a new image by the history pass.
fn rolled_out(n: usize) -> bool {
    kind_of(n) == "Deployment" && n % 10 == 0
}

async fn write(
    pool: &PgPool,
    source: i64,
    objects: &Objects,
    written: &mut Option<Written>,
) -> Result<Persisted, sqlx::Error> {
    let snapshot = mapping::snapshot(objects, true);
    let mut counts = objects.counts();
    counts.insert("workloads".into(), json!(snapshot.workloads.len()));
    counts.insert("instances".into(), json!(snapshot.instance_count()));
    persist::persist(
        pool,
        source,
        &snapshot,
        written,
        &Value::Object(counts),
        true,
    )
    .await
}

/// Writes the estate into `pool` (sources `bench-cluster-N`), cluster by cluster, through the
/// collector's mapping and persistence, then rolls out a tenth of the Deployments.
pub async fn seed(pool: &PgPool, options: SeedOptions) -> Result<SeedReport, sqlx::Error> {
    let clusters = options.workloads.div_ceil(CLUSTER_SIZE).max(1);
    let ranges: Vec<(usize, std::ops::Range<usize>)> = (0..clusters)
        .map(|c| {
            let start = c * CLUSTER_SIZE;
            (c, start..((c + 1) * CLUSTER_SIZE).min(options.workloads))
        })
        .collect();
    let mut report = SeedReport {
        clusters,
        ..SeedReport::default()
    };

    let started = Instant::now();
    let generated: Vec<(usize, std::ops::Range<usize>, Objects)> = ranges
        .into_iter()
        .map(|(c, range)| {
            let objects = cluster_objects(range.clone(), |_| 1);
            (c, range, objects)
        })
        .collect();
    report.generate = started.elapsed();

    let started = Instant::now();
    let written: Vec<(i64, std::ops::Range<usize>, Option<Written>, Persisted)> =
        stream::iter(generated)
            .map(|(c, range, objects)| async move {
                let name = format!("bench-cluster-{c}");
                let endpoint = format!("https://{name}.bench.example:6443");
                let source = sources::ensure(pool, "kubernetes", &name, &endpoint).await?;
                let mut written = None;
                let persisted = write(pool, source, &objects, &mut written).await?;
                Ok::<_, sqlx::Error>((source, range, written, persisted))
            })
            .buffer_unordered(options.parallel.max(1))
            .try_collect()
            .await?;
    report.ingest = started.elapsed();
    for (_, _, _, persisted) in &written {
        report.workloads += persisted.workloads;
        report.instances += persisted.instances;
        report.transitions += persisted.transitions;
    }

    let started = Instant::now();
    for (source, range, mut previous, _) in written {
        let objects = cluster_objects(range, |n| if rolled_out(n) { 2 } else { 1 });
        let persisted = write(pool, source, &objects, &mut previous).await?;
        report.transitions += persisted.transitions;
    }
    report.rollout = started.elapsed();

    // What autovacuum does a little later: statistics, and the visibility map that index-only
    // scans need (the first write inserts and then updates every workload).
    sqlx::query("vacuum (analyze) workloads, instances, findings, lifecycle_events")
        .execute(pool)
        .await?;
    sqlx::query("analyze").execute(pool).await?;
    report.findings = sqlx::query_scalar("select count(*) from findings where status = 'open'")
        .fetch_one(pool)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind_and_a_risky_tenth() {
        let kinds: std::collections::BTreeSet<&str> = (0..20).map(kind_of).collect();
        assert_eq!(kinds.len(), 5);
        assert_eq!((0..1000).filter(|&n| is_risky(n)).count(), 100);
    }

    #[test]
    fn every_generated_workload_maps_to_one_workload() {
        let objects = cluster_objects(0..200, |_| 1);
        let snapshot = mapping::snapshot(&objects, true);
        assert_eq!(snapshot.workloads.len(), 200);
        // CronJobs have no pod; every other workload has one.
        assert_eq!(snapshot.instance_count(), 180);
        assert!(snapshot.held.is_empty());
    }
}
