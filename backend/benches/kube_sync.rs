//! Initial sync of a large cluster: 20,000 Pods under 3,000 Deployments (each with its
//! ReplicaSet), served by the in-test Kubernetes API server in pages of 500, collected by the
//! real watchers into a fresh PostgreSQL database. Target: under 15 s.
//!
//! Then the stored posture path at 100,000 workloads: the complete write of a cluster of
//! 100,000 Deployments in 100 namespaces (with NetworkPolicies and ServiceAccounts), whose
//! evaluation opens every finding, and the re-evaluation of all of them when every namespace's
//! policies change (evaluate, then sync the findings: bump, resolve, open).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench kube_sync` (the database server must
//! accept `create database`; the sync part's scratch database is dropped at the end, the
//! posture part's `harbormaster_bench_kube_posture` is recreated on each run). Under `cargo test`
//! (no `--bench`) only the posture part runs, on 500 workloads, when DATABASE_URL is set.
//! `POSTURE_WORKLOADS=N` sets the posture part's size in both cases.

mod common;

#[allow(dead_code)]
#[path = "../tests/it/kube_api.rs"]
mod kube_api;

use std::time::{Duration, Instant};

use harbormaster::collect::kubernetes::mapping::{self, Objects};
use harbormaster::collect::kubernetes::{self, persist, posture, ClusterWatch, Step, Target};
use harbormaster::findings::{self, Evaluation};
use harbormaster::inventory::sources;
use kube_api::objects::{deployment, namespace, pod, replica_set, Rollout};
use kube_api::FakeCluster;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

const DEPLOYMENTS: usize = 3_000;
const PODS: usize = 20_000;
const NAMESPACES: usize = 30;

fn cluster_objects() -> Vec<serde_json::Value> {
    let mut objects: Vec<serde_json::Value> = (0..NAMESPACES)
        .map(|n| namespace(&format!("team-{n}")))
        .collect();
    for d in 0..DEPLOYMENTS {
        let ns = format!("team-{}", d % NAMESPACES);
        let name = format!("svc-{d}");
        // 20,000 pods over 3,000 Deployments: the first 2,000 get 7, the rest 6.
        let replicas = PODS / DEPLOYMENTS + usize::from(d < PODS % DEPLOYMENTS);
        let image = format!("registry.example/{name}:1");
        let r = replicas as i64;
        objects.push(deployment(&ns, &name, &image, Rollout::settled(r, 1)));
        let rs = format!("{name}-7c9d");
        objects.push(replica_set(&ns, &rs, &name, 1, &image));
        for p in 0..replicas {
            objects.push(pod(
                &ns,
                &format!("{rs}-{p}"),
                "ReplicaSet",
                &rs,
                &image,
                &format!("sha256:{d:064x}"),
            ));
        }
    }
    objects
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set DATABASE_URL to a PostgreSQL server"))?;
    let admin: PgConnectOptions = url.parse()?;
    let scratch = format!("kube_bench_{}", std::process::id());
    let mut conn = admin.connect().await?;
    conn.execute(format!("create database {scratch}").as_str())
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(admin.clone().database(&scratch))
        .await?;
    harbormaster::db::MIGRATOR.run(&pool).await?;

    let cluster = FakeCluster::start_with_page_cap(500).await;
    let started = Instant::now();
    cluster.apply_all(cluster_objects());
    println!(
        "serving {PODS} pods under {DEPLOYMENTS} Deployments (built in {:.2?})",
        started.elapsed()
    );

    let dir = tempfile::tempdir()?;
    let path = cluster.kubeconfig(dir.path(), "bench");
    let target = Target::Context {
        kubeconfig: path,
        context: "bench".into(),
    };
    let (client, endpoint) = kubernetes::connect(&target).await?;
    let source = sources::ensure(&pool, "kubernetes", "bench", &endpoint).await?;

    // The watchers: list every kind in pages, then the first (complete) write.
    let started = Instant::now();
    let mut watch = ClusterWatch::new(pool.clone(), source, client.clone());
    let persisted = loop {
        match tokio::time::timeout(Duration::from_secs(120), watch.step()).await?? {
            Step::Written(persisted) => break persisted,
            Step::Pending => {}
            other => anyhow::bail!("unexpected step {other:?}"),
        }
    };
    let watch_time = started.elapsed();
    println!(
        "initial sync (watchers): {watch_time:.2?} — {} workloads, {} pods, {} transitions",
        persisted.workloads, persisted.instances, persisted.transitions
    );

    // A one-shot full resync of the same cluster (everything upserted again, no transitions).
    let started = Instant::now();
    let again = kubernetes::sync_once(&pool, source, &client).await?;
    println!(
        "full resync (sync_once): {:.2?} — {} workloads, {} pods, {} transitions",
        started.elapsed(),
        again.workloads,
        again.instances,
        again.transitions
    );

    let (workloads, pods): (i64, i64) = sqlx::query_as(
        "select (select count(*) from workloads), (select count(*) from instances where removed_at is null)",
    )
    .fetch_one(&pool)
    .await?;
    drop(watch);
    pool.close().await;
    conn.execute(format!("drop database {scratch} with (force)").as_str())
        .await?;
    anyhow::ensure!(
        workloads == DEPLOYMENTS as i64 && pods == PODS as i64,
        "stored {workloads} workloads and {pods} pods"
    );
    anyhow::ensure!(
        watch_time < Duration::from_secs(15),
        "the initial sync took {watch_time:.2?}, over the 15 s target"
    );
    Ok(())
}

/// Workloads of the stored posture benchmark.
const POSTURE_WORKLOADS: usize = 100_000;
const POSTURE_NAMESPACES: usize = 100;

/// `workloads` Deployments over [`POSTURE_NAMESPACES`] namespaces, each namespace with its
/// default ServiceAccount; half of the namespaces with a deny-all NetworkPolicy: the even ones
/// in version 1, the odd ones in version 2.
fn posture_objects(workloads: usize, version: u32) -> Objects {
    let mut objects = Objects::default();
    let mut uid = 0u64;
    let mut insert = |objects: &mut Objects, mut object: serde_json::Value| {
        uid += 1;
        object["metadata"]["uid"] = serde_json::json!(format!("uid-{uid}"));
        object["metadata"]["resourceVersion"] = serde_json::json!(format!("{version}-{uid}"));
        objects.insert(object).expect("a known kind");
    };
    for n in 0..POSTURE_NAMESPACES {
        let ns = format!("team-{n}");
        insert(&mut objects, namespace(&ns));
        insert(
            &mut objects,
            serde_json::json!({"kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": ns}}),
        );
        if n % 2 == (version as usize + 1) % 2 {
            insert(
                &mut objects,
                serde_json::json!({"kind": "NetworkPolicy",
                    "metadata": {"name": "deny-all", "namespace": ns,
                                 "annotations": {"version": version.to_string()}},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
            );
        }
    }
    for d in 0..workloads {
        let ns = format!("team-{}", d % POSTURE_NAMESPACES);
        let name = format!("svc-{d}");
        let image = format!("registry.example/{name}:1");
        insert(
            &mut objects,
            deployment(&ns, &name, &image, Rollout::settled(0, 1)),
        );
    }
    objects
}

/// The stored posture path: a complete write of `workloads` Deployments (evaluation included),
/// then every workload evaluated again and its findings synced.
async fn posture_stored(workloads: usize) -> anyhow::Result<()> {
    let pool = common::fresh_database("harbormaster_bench_kube_posture", 4).await;
    let source = sources::ensure(&pool, "kubernetes", "bench", "https://bench").await?;

    let started = Instant::now();
    let objects = posture_objects(workloads, 1);
    let built = started.elapsed();
    let started = Instant::now();
    let snapshot = mapping::snapshot(&objects, true);
    let mapped = started.elapsed();
    let mut written = None;
    let started = Instant::now();
    let persisted = persist::persist(
        &pool,
        source,
        &snapshot,
        &mut written,
        &serde_json::json!({}),
        true,
    )
    .await?;
    let complete = started.elapsed();
    let (open,): (i64,) = sqlx::query_as("select count(*) from findings where status = 'open'")
        .fetch_one(&pool)
        .await?;
    println!(
        "posture, {workloads} workloads: objects built in {built:.2?}, mapped in {mapped:.2?}; \
         complete write (workloads, lifecycle, evaluation, {open} findings opened) {complete:.2?}"
    );
    anyhow::ensure!(persisted.workloads == workloads, "wrote {persisted:?}");

    // Every namespace's policies change: each workload is evaluated again and its findings are
    // synced (net.no_network_policy flips in every namespace: resolved in half, opened in the
    // other half; the rest is bumped).
    let objects = posture_objects(workloads, 2);
    let snapshot = mapping::snapshot(&objects, true);
    let ids: std::collections::HashMap<(String, String), i64> =
        sqlx::query_as::<_, (String, String, i64)>(
            "select namespace, name, id from workloads where source_id = $1",
        )
        .bind(source)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .map(|(ns, name, id)| ((ns, name), id))
        .collect();
    let started = Instant::now();
    let evaluations: Vec<Evaluation> = snapshot
        .workloads
        .iter()
        .filter_map(|(key, mapped)| {
            let id = ids[&(key.namespace.clone(), key.name.clone())];
            Some(posture::evaluate(&key.namespace, mapped, &snapshot.facts)?.for_workload(id))
        })
        .collect();
    let evaluated = started.elapsed();
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    findings::store::sync_findings(&mut tx, &evaluations).await?;
    tx.commit().await?;
    let synced = started.elapsed();
    let (open, resolved): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'open'), count(*) filter (where status = 'resolved')
         from findings",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "posture, {workloads} workloads re-evaluated: evaluation {evaluated:.2?}, findings synced \
         in {synced:.2?} ({open} open, {resolved} resolved)"
    );
    anyhow::ensure!(resolved > 0 && open > 0, "the policies changed findings");
    pool.close().await;
    Ok(())
}

/// The posture part's size: `POSTURE_WORKLOADS` from the environment, else `default`.
fn posture_workloads(default: usize) -> usize {
    std::env::var("POSTURE_WORKLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::process::ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // `cargo test --all-targets` runs bench binaries without `--bench`: a quick smoke run of the
    // posture part when a database is there.
    if !full {
        if std::env::var("DATABASE_URL").is_err() {
            return std::process::ExitCode::SUCCESS;
        }
        return match runtime.block_on(posture_stored(posture_workloads(500))) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let run = async {
        run().await?;
        posture_stored(posture_workloads(POSTURE_WORKLOADS)).await
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
