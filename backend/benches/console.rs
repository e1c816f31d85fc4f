//! Console page latency with 100,000 workloads (figures in BENCHMARKS.md, section "Console"),
//! seeded by the generator of `harbormaster bench seed` (`bench::estate`):
//! the overview, the workload list (first page, a later page, a filtered page) and a workload
//! page, each requested N times from the real server over loopback HTTP; p50 / p95 / max.
//! Targets: overview and list p95 < 100 ms, workload page p95 < 50 ms.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench console`. The benchmark works in a
//! database of its own (`harbormaster_bench_console`), created and migrated here.

mod common;

use std::time::Instant;

use harbormaster::auth::{tokens, Role};
use harbormaster::bench::{estate, load};
use harbormaster::config::Config;
use harbormaster::startup::Application;
use sqlx::PgPool;

/// `cargo bench` passes `--bench`: the full estate. `cargo test` runs this binary without it: a
/// small smoke run that only proves the bench still works.
fn full() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn workloads() -> usize {
    if full() {
        100_000
    } else {
        1_000
    }
}

fn requests() -> usize {
    if full() {
        200
    } else {
        5
    }
}
async fn bench_pool() -> PgPool {
    common::fresh_database("harbormaster_bench_console", 10).await
}

/// The estate of `harbormaster bench seed`: Kubernetes workloads of every kind over 500
/// namespaces, written through the collector's mapping and persistence.
async fn seed(pool: &PgPool) {
    let report = estate::seed(
        pool,
        estate::SeedOptions {
            workloads: workloads(),
            parallel: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.workloads, workloads());
}

async fn measure(client: &reqwest::Client, base: &str, label: &str, path: &str) {
    // Warm up: caches, prepared statements, connections.
    for _ in 0..10 {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
    }
    let count = requests();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "{label:<34} p50 {:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms  ({count} requests, {path})",
        load::percentile(&times, 0.50).as_secs_f64() * 1000.0,
        load::percentile(&times, 0.95).as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() {
    let pool = bench_pool().await;
    let started = Instant::now();
    seed(&pool).await;
    println!(
        "seeded {} workloads in {:.1} s",
        workloads(),
        started.elapsed().as_secs_f64()
    );
    let secret = tokens::create(&pool, "bench", Role::Viewer, "bench")
        .await
        .unwrap()
        .secret;
    let mut config = Config::for_tests("postgres://unused@127.0.0.1/unused");
    config.docker_endpoints = vec![];
    let app = Application::with_pool(config, pool.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {secret}").parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let middle: i64 = sqlx::query_scalar("select id from workloads order by id offset $1 limit 1")
        .bind((workloads() / 2) as i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    measure(&client, &base, "overview", "/").await;
    measure(&client, &base, "workload list, first page", "/workloads").await;
    measure(
        &client,
        &base,
        "workload list, page from the middle",
        &format!("/workloads?after={middle}"),
    )
    .await;
    measure(
        &client,
        &base,
        "workload list, namespace + stage",
        "/workloads?namespace=ns-123&stage=run",
    )
    .await;
    measure(
        &client,
        &base,
        "workload list, name search",
        "/workloads?q=app-0999",
    )
    .await;
    measure(
        &client,
        &base,
        "workload page",
        &format!("/workloads/{middle}"),
    )
    .await;
    let _ = stop.send(());
    let _ = server.await;
}
