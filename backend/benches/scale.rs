//! Scale benchmarks (figures in BENCHMARKS.md, section "Scale"), on the estate of
//! `harbormaster bench seed` (`bench::estate`):
//! - 100,000 workloads ingested and evaluated from scratch through the collector's mapping and
//!   persistence (target < 60 s), then the full resync of the same estate;
//! - event → finding latency under background load: a container mounting the Docker socket
//!   started on the local engine while the real server collects it and concurrent clients
//!   request every page (`bench::load`); from the engine's `State.StartedAt` to the open
//!   `mount.runtime_socket` finding being visible (target p99 < 1 s);
//! - every page and list under that load (p50 / p95 / p99).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench scale` (needs the local Docker engine and
//! the test image from `scripts/test-images.sh build`). The benchmark works in a database of its
//! own (`harbormaster_bench_scale`), created and migrated here.

mod common;

use std::time::{Duration, Instant};

use harbormaster::auth::{tokens, Role};
use harbormaster::bench::{estate, load};
use harbormaster::config::Config;
use harbormaster::startup::Application;
use sqlx::PgPool;

const IMAGE: &str = "harbormaster-test/busybox:1";

fn full() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Removes the bench's containers, also when it fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("name=^/{}", self.0)]);
        for id in ids.split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
    }
}

/// When the runtime-socket finding of workload `name` became visible, polled every 5 ms.
async fn finding_visible(pool: &PgPool, name: &str) -> chrono::DateTime<chrono::Utc> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Option<i64> = sqlx::query_scalar(
            "select f.id from findings f join workloads w on w.id = f.workload_id
             where w.name = $1 and f.check_id = 'mount.runtime_socket' and f.status = 'open'",
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap();
        if found.is_some() {
            return chrono::Utc::now();
        }
        assert!(Instant::now() < deadline, "no finding for {name} in 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let workloads = if full() { 100_000 } else { 1_000 };
    let starts = if full() { 40 } else { 2 };
    let pool = common::fresh_database("harbormaster_bench_scale", 20).await;
    let options = estate::SeedOptions {
        workloads,
        parallel: 2,
    };

    let first = estate::seed(&pool, options).await.unwrap();
    assert_eq!(first.workloads, workloads);
    println!(
        "from scratch: {} workloads, {} pods, {} open findings ingested and evaluated in {:.1} s; rollout of a tenth {:.1} s",
        first.workloads,
        first.instances,
        first.findings,
        first.ingest.as_secs_f64(),
        first.rollout.as_secs_f64()
    );
    let again = estate::seed(&pool, options).await.unwrap();
    println!(
        "full resync of the same estate (everything upserted again): {:.1} s",
        again.ingest.as_secs_f64()
    );

    // The real server collecting the local engine, under concurrent page load.
    let secret = tokens::create(&pool, "bench", Role::Viewer, "bench")
        .await
        .unwrap()
        .secret;
    let mut config = Config::for_tests("postgres://unused@127.0.0.1/unused");
    config.docker_endpoints = vec!["unix:///var/run/docker.sock".into()];
    let app = Application::with_pool(config, pool.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let load_options = load::LoadOptions {
        url: base,
        token: secret,
        concurrency: 4,
        duration: Duration::from_secs(if full() { 60 } else { 5 }),
        server_pid: None,
    };
    let background = tokio::spawn(async move { load::run(&load_options).await.unwrap() });

    let prefix = format!("hm-bench-scale-{}", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    // The collector's first resync of the engine is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resynced: Option<bool> = sqlx::query_scalar(
            "select last_resync_at is not null from sources where kind = 'docker'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if resynced == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the engine was never collected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(starts);
    for i in 0..starts {
        let name = format!("{prefix}-{i}");
        docker(&[
            "run",
            "-d",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "--name",
            &name,
            IMAGE,
            "sleep",
            "3600",
        ]);
        let started_at = docker(&["inspect", "-f", "{{.State.StartedAt}}", &name]);
        let started_at: chrono::DateTime<chrono::Utc> = started_at.parse().unwrap();
        let visible = finding_visible(&pool, &name).await;
        latencies.push((visible - started_at).to_std().unwrap_or_default());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "event → finding under load ({starts} containers mounting the Docker socket): p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(load::percentile(&latencies, 0.50)),
        ms(load::percentile(&latencies, 0.95)),
        ms(load::percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
    );

    let report = background.await.unwrap();
    print!("{}", load::render(&report, 4));
    let _ = stop.send(());
    let _ = server.await;
}
