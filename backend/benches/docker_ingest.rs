//! Docker inventory benchmarks (figures in BENCHMARKS.md, section "Docker inventory"):
//! - mapping + upsert + lifecycle of 10,000 realistic container inspect documents through
//!   `collect::docker::ingest::ingest`, the code the collector's resync uses (target < 10 s);
//! - event → database latency against the local engine (target < 1 s).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench docker_ingest`. The benchmark works in a
//! database of its own (`<database>_bench_docker`), created and migrated here.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use harbormaster::collect::docker::{ingest, Collector};
use harbormaster::config::parse_docker_endpoint;
use harbormaster::inventory::sources;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const CONTAINERS: usize = 10_000;
const IMAGES: usize = 200;
const GRACE: Duration = Duration::from_secs(600);

fn template() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/docker/container-compose-running.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the captured inspect document"))
        .expect("valid JSON")
}

fn image_id(n: usize) -> String {
    format!("sha256:{n:064x}")
}

/// 10,000 containers of 2,000 Compose services (5 replicas each, half of them plain containers),
/// on 200 images, some stopped, with env, labels, mounts and ports like the captured document.
fn containers() -> Vec<Value> {
    let template = template();
    (0..CONTAINERS)
        .map(|n| {
            let mut doc = template.clone();
            doc["Id"] = json!(format!("{:064x}", n + 1));
            doc["Name"] = json!(format!("/bench-{n}"));
            doc["Created"] = json!(format!(
                "2026-11-28T10:{:02}:{:02}.{n:09}Z",
                n / 3600 % 60,
                n / 60 % 60
            ));
            doc["Image"] = json!(image_id(n % IMAGES));
            doc["Config"]["Image"] = json!(format!(
                "registry.example/team-{}/app:{}",
                n % 40,
                n % IMAGES
            ));
            let labels = doc["Config"]["Labels"].as_object_mut().unwrap();
            if n % 2 == 0 {
                labels.insert(
                    "com.docker.compose.project".into(),
                    json!(format!("project-{}", n / 50)),
                );
                labels.insert(
                    "com.docker.compose.service".into(),
                    json!(format!("svc-{}", n % 10)),
                );
            } else {
                labels.remove("com.docker.compose.project");
                labels.remove("com.docker.compose.service");
            }
            labels.insert("team".into(), json!(format!("team-{}", n % 40)));
            doc["Config"]["Env"] = json!([
                format!("DATABASE_URL=postgres://app:secret-{n}@db/app"),
                "MODE=production",
                "PATH=/usr/local/bin:/usr/bin:/bin"
            ]);
            let running = n % 7 != 0;
            doc["State"]["Running"] = json!(running);
            doc["State"]["Status"] = json!(if running { "running" } else { "exited" });
            if n % 11 == 0 {
                doc["HostConfig"]["Privileged"] = json!(true);
            }
            doc
        })
        .collect()
}

fn images() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/docker/image-local.json"
    );
    let template: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (0..IMAGES)
        .map(|n| {
            let mut doc = template.clone();
            doc["Id"] = json!(image_id(n));
            doc["RepoTags"] = json!([format!("registry.example/team-{}/app:{n}", n % 40)]);
            doc["RepoDigests"] = json!([format!(
                "registry.example/team-{}/app@sha256:{:064x}",
                n % 40,
                n + 1_000_000
            )]);
            doc
        })
        .collect()
}

/// A fresh, migrated database next to the one DATABASE_URL names.
async fn bench_pool() -> PgPool {
    common::fresh_database("harbormaster_bench_docker", 4).await
}

async fn truncate(pool: &PgPool) {
    sqlx::query(
        "truncate runtime_events, lifecycle_events, instances, workloads, image_references, images cascade",
    )
    .execute(pool)
    .await
    .unwrap();
}

fn batch(containers: &[Value], images: &[Value]) -> ingest::Batch {
    ingest::Batch {
        containers: containers.to_vec(),
        images: images.to_vec(),
        full: true,
        reason: "resync".into(),
        ..Default::default()
    }
}

fn ingest_bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let pool = rt.block_on(bench_pool());
    let source = rt
        .block_on(sources::ensure(
            &pool,
            "docker",
            "bench",
            "unix:///bench.sock",
        ))
        .unwrap();
    let (containers, images) = (containers(), images());

    let mut group = c.benchmark_group("docker_ingest");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("10k_containers_first_seen", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(truncate(&pool));
                let batch = batch(&containers, &images);
                let start = Instant::now();
                let report = rt
                    .block_on(ingest::ingest(&pool, source, batch, GRACE))
                    .unwrap();
                total += start.elapsed();
                assert_eq!(report.containers, CONTAINERS);
            }
            total
        })
    });
    group.bench_function("10k_containers_resync_unchanged", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = batch(&containers, &images);
                let start = Instant::now();
                rt.block_on(ingest::ingest(&pool, source, batch, GRACE))
                    .unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// Event → database: a container started on the local engine until its row says running, as
/// seen by a poll every 2 ms. Printed as min / median / max of 10 starts.
fn event_latency() {
    const LOCAL: &str = "unix:///var/run/docker.sock";
    const IMAGE: &str = "hm-test-docker/busybox:1";
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        println!("docker_event_latency: skipped, no engine at /var/run/docker.sock");
        return;
    }
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if docker(&["images", "-q", IMAGE]).is_empty() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-images.sh");
        let status = std::process::Command::new(script)
            .arg("build")
            .env("HARBORMASTER_TEST_IMAGE", "hm-test-docker/busybox")
            .status()
            .unwrap();
        assert!(status.success());
    }
    let rt = Runtime::new().unwrap();
    let pool = rt.block_on(bench_pool());
    let mut latencies = Vec::new();
    let prefix = format!("hm-test-docker-bench-{}", std::process::id());
    rt.block_on(async {
        let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
            .await
            .unwrap();
        let collector = Collector::connect(
            pool.clone(),
            &parse_docker_endpoint(LOCAL, None),
            source,
            GRACE,
        )
        .await
        .unwrap();
        collector.resync_once().await.unwrap();
        let cancel = CancellationToken::new();
        let since = chrono::Utc::now().timestamp() - 1;
        let follower = {
            let (collector, cancel) = (collector.clone(), cancel.clone());
            tokio::spawn(async move {
                collector
                    .follow(Some(since), Duration::from_secs(3600), &cancel)
                    .await
            })
        };
        for n in 0..10 {
            let name = format!("{prefix}-{n}");
            let id = docker(&["run", "-d", "--name", &name, IMAGE, "sleep", "3600"]);
            let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
            let started = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
            loop {
                let running: Option<bool> =
                    sqlx::query_scalar("select running from instances where external_id = $1")
                        .bind(&id)
                        .fetch_optional(&pool)
                        .await
                        .unwrap();
                if running == Some(true) {
                    let latency = chrono::Utc::now().signed_duration_since(started);
                    latencies.push(latency.to_std().unwrap_or_default());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        cancel.cancel();
        follower.await.unwrap().unwrap();
    });
    let ids = docker(&["ps", "-aq", "--filter", &format!("name=^/{prefix}")]);
    for id in ids.split_whitespace() {
        docker(&["rm", "-f", id]);
    }
    latencies.sort();
    println!(
        "docker_event_latency (container start → row running, 10 starts): min {:?}, median {:?}, max {:?}",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

criterion_group!(benches, ingest_bench);

fn main() {
    benches();
    // `cargo test --all-targets` runs this binary without `--bench`: criterion then runs each
    // benchmark once as a smoke test, and the live latency measurement is left out.
    if std::env::args().any(|arg| arg == "--bench") {
        event_latency();
    }
    Criterion::default().configure_from_args().final_summary();
}
