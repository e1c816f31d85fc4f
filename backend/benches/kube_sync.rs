//! Initial sync of a large cluster: 20,000 Pods under 3,000 Deployments (each with its
//! ReplicaSet), served by the in-test Kubernetes API server in pages of 500, collected by the
//! real watchers into a fresh PostgreSQL database. Target: under 15 s.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench kube_sync` (the database server must
//! accept `create database`; a scratch database is created and dropped).

#[allow(dead_code)]
#[path = "../tests/it/kube_api.rs"]
mod kube_api;

use std::time::{Duration, Instant};

use harbormaster::collect::kubernetes::{self, ClusterWatch, Step, Target};
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

fn main() -> std::process::ExitCode {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
