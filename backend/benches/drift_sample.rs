//! Drift sampler benchmark (figures in BENCHMARKS.md, section "Run-stage monitoring"): one
//! sampling round (`docker top` + `docker diff` of every running container) over N real
//! containers on the local engine, with the configured concurrency; target: 500 containers in
//! under 30 s without exceeding the concurrency, the engine staying responsive.
//!
//! It starts N busybox containers, resyncs them into the inventory, then runs three rounds
//! ([`harbormaster::runtime::drift::sample_once`]): the first starts the baselines, the next two
//! are steady state. Meanwhile the engine is pinged every 100 ms; the slowest answer is reported.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench drift_sample` (N = 100, or
//! `HARBORMASTER_BENCH_DRIFT_CONTAINERS`; concurrency `HARBORMASTER_DRIFT_CONCURRENCY`, default
//! 8). Under `cargo test` it runs with 5 containers unless the variable says otherwise. It works in a database of its own
//! (`harbormaster_bench_drift`) and removes the containers it creates.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::collect::docker::Collector;
use harbormaster::config::parse_docker_endpoint;
use harbormaster::inventory::sources;
use harbormaster::runtime::drift::sample_once;
use harbormaster::runtime::Settings;

const LOCAL: &str = "unix:///var/run/docker.sock";
const IMAGE: &str = "harbormaster-test/busybox:1";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("name=^/{}", self.0);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            for chunk in ids.chunks(50) {
                let mut args = vec!["rm", "-f"];
                args.extend_from_slice(chunk);
                let _ = docker(&args);
            }
        }
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let count = env_number(
        "HARBORMASTER_BENCH_DRIFT_CONTAINERS",
        if full { 100 } else { 5 },
    );
    let concurrency = env_number("HARBORMASTER_DRIFT_CONCURRENCY", 8);
    if docker(&["image", "inspect", IMAGE]).is_err() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-images.sh");
        let status = Command::new(script).arg("build").status().expect("runs");
        assert!(status.success(), "scripts/test-images.sh build failed");
    }
    let prefix = format!(
        "hm-bench-drift-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _cleanup = Cleanup(prefix.clone());
    let created = Instant::now();
    for n in 0..count {
        let name = format!("{prefix}-{n}");
        docker(&[
            "run", "-d", "--name", &name, "--memory", "16m", IMAGE, "sleep", "3600",
        ])
        .expect("a benchmark container starts");
    }
    println!(
        "drift_sample: {count} containers started in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = common::fresh_database("harbormaster_bench_drift", 8).await;
        let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
            .await
            .unwrap();
        let collector = Collector::connect(
            pool.clone(),
            &parse_docker_endpoint(LOCAL, None),
            source,
            Duration::from_secs(600),
        )
        .await
        .expect("the local engine answers");
        collector.resync_once().await.unwrap();
        let settings = Settings {
            drift_concurrency: concurrency,
            ..Settings::default()
        };

        for round in 1..=3 {
            // The engine's responsiveness meanwhile: a ping every 100 ms.
            let done = Arc::new(AtomicBool::new(false));
            let pinger = {
                let docker = collector.docker.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    let mut pings = 0;
                    while !done.load(Ordering::SeqCst) {
                        let start = Instant::now();
                        docker.ping().await.expect("the engine answers a ping");
                        slowest = slowest.max(start.elapsed());
                        pings += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    (pings, slowest)
                })
            };
            let report = sample_once(&pool, &collector.docker, source, &settings)
                .await
                .unwrap();
            done.store(true, Ordering::SeqCst);
            let (pings, slowest) = pinger.await.unwrap();
            assert!(
                report.max_in_flight <= concurrency,
                "{} requests in flight, the bound is {concurrency}",
                report.max_in_flight
            );
            println!(
                "drift_sample: round {round}: {} running containers ({} sampled, {} failed) in \
                 {} ms = {:.1} ms per container; at most {} of {concurrency} requests in flight; \
                 {} events; engine ping slowest {} ms over {pings} pings",
                report.containers,
                report.sampled,
                report.failed,
                report.elapsed_ms,
                report.elapsed_ms as f64 / report.containers.max(1) as f64,
                report.max_in_flight,
                report.events,
                slowest.as_millis(),
            );
        }
        pool.close().await;
    });
}
