//! Console page latency with 100,000 workloads and 1,000,000 findings (figures in
//! BENCHMARKS.md, section "Console"): the overview (score, trend, riskiest), the workload list
//! (first page, a later page, filtered, searched, riskiest first), the findings grouped by check
//! and one check's workloads, and a workload page, each requested N times from the real server
//! over loopback HTTP; p50 / p95 / max. Also the one-off rebuild of 90 days of posture history.
//! Targets: overview and list p95 < 300 ms, workload page p95 < 200 ms.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench console`. The benchmark works in a
//! database of its own (`harbormaster_bench_console`), created and migrated here.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use harbormaster::auth::{tokens, Role};
use harbormaster::config::Config;
use harbormaster::findings::{store as findings_store, trend};
use harbormaster::inventory::store::{self, Upserted};
use harbormaster::inventory::{sources, InstanceRecord, WorkloadKey, WorkloadRecord};
use harbormaster::lifecycle::store::{apply, Pending};
use harbormaster::lifecycle::Observation;
use harbormaster::posture::CATALOG;
use harbormaster::startup::Application;
use serde_json::{json, Value};
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
const BATCH: usize = 2_000;
/// Findings per workload, spread over as many checks; a third of them resolved.
const FINDINGS_PER_WORKLOAD: usize = 10;

async fn bench_pool() -> PgPool {
    common::fresh_database("harbormaster_bench_console", 10).await
}

fn deployment(namespace: &str, name: &str, n: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "team": format!("team-{}", n % 40)}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": format!("registry.example/team-{}/app:{}", n % 40, n % 200),
                    "securityContext": {"privileged": n % 10 == 0, "runAsNonRoot": n % 3 == 0},
                    "resources": {"limits": {"memory": "256Mi"}},
                    "env": [{"name": "MODE", "value": "[redacted]"}]
                }]}
            }
        }
    })
}

/// 100,000 Deployments over 500 namespaces, each with one running pod, in batches the way a
/// collector writes them.
async fn seed(pool: &PgPool) {
    let source = sources::ensure(pool, "kubernetes", "bench", "https://bench.example:6443")
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let total = workloads();
    for start in (0..total).step_by(BATCH) {
        let records: Vec<WorkloadRecord> = (start..(start + BATCH).min(total))
            .map(|n| {
                let namespace = format!("ns-{}", n % 500);
                let name = format!("app-{n:06}");
                WorkloadRecord {
                    key: WorkloadKey::new(&namespace, "Deployment", &name),
                    uid: Some(format!("uid-{n}")),
                    labels: json!({"app": name, "team": format!("team-{}", n % 40)}),
                    annotations: json!({}),
                    declared: Some(deployment(&namespace, &name, n)),
                    images: vec![format!("registry.example/team-{}/app:{}", n % 40, n % 200)],
                }
            })
            .collect();
        let upserted: HashMap<WorkloadKey, Upserted> =
            store::upsert_workloads(&mut conn, source, &records)
                .await
                .unwrap();
        let digest = |n: usize| format!("sha256:{n:064x}");
        let instances: Vec<InstanceRecord> = records
            .iter()
            .enumerate()
            .map(|(i, record)| InstanceRecord {
                workload: record.key.clone(),
                external_id: format!("pod-uid-{}", record.key.name),
                name: format!("{}-5d8f7-x{i}", record.key.name),
                state: "Running".into(),
                running: true,
                image_ref: record.images.first().cloned(),
                image_digest: Some(digest((start + i) % 200)),
                node: Some(format!("node-{}", i % 20)),
                labels: json!({"app": record.key.name}),
                restart_count: 0,
                spec: None,
                raw: json!({}),
                started_at: None,
            })
            .collect();
        store::upsert_instances(&mut conn, source, &instances, &upserted)
            .await
            .unwrap();
        let ids: Vec<i64> = upserted.values().map(|u| u.id).collect();
        store::refresh_counts(&mut conn, &ids).await.unwrap();
        let pending: Vec<Pending> = records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let row = upserted[&record.key];
                Pending {
                    workload_id: row.id,
                    is_new: row.inserted,
                    observation: Observation {
                        present: true,
                        running: u32::from((start + i) % 17 != 0),
                        digests: vec![digest((start + i) % 200)],
                        spec_hash: Some("h".into()),
                        rolled_out: true,
                        reason: Some("bench seed".into()),
                    },
                }
            })
            .collect();
        apply(&mut conn, &pending).await.unwrap();
    }
    sqlx::query("analyze").execute(pool).await.unwrap();
}

/// Ten findings per workload (one per check, ten checks across the catalog) with first_seen
/// spread over the last 120 days; a third resolved some days later. Then each workload's scores
/// from its open findings, through the collectors' own `refresh_scores`.
async fn seed_findings(pool: &PgPool) {
    let step = CATALOG.len() / FINDINGS_PER_WORKLOAD;
    let checks: Vec<_> = CATALOG
        .iter()
        .step_by(step)
        .take(FINDINGS_PER_WORKLOAD)
        .collect();
    let ids: Vec<String> = checks.iter().map(|c| c.id.to_string()).collect();
    let severities: Vec<String> = checks
        .iter()
        .map(|c| c.severity.as_str().to_string())
        .collect();
    let layers: Vec<String> = checks
        .iter()
        .map(|c| harbormaster::findings::layer_str(c.layer()).to_string())
        .collect();
    sqlx::query(
        "insert into findings (workload_id, container, check_id, severity, layer, status, message,
                               first_seen, last_seen, resolved_at, resolved_reason)
         select w.id, 'app', c.check_id, c.severity, c.layer,
                case when (w.id + c.n) % 3 = 0 then 'resolved' else 'open' end, 'seeded',
                now() - ((w.id * 7 + c.n * 13) % 120 + 1) * interval '1 day', now(),
                case when (w.id + c.n) % 3 = 0
                     then now() - ((w.id * 7 + c.n * 13) % 120 + 1) * interval '1 day'
                              + ((w.id + c.n) % 30) * interval '1 day' end,
                case when (w.id + c.n) % 3 = 0 then 'fixed' end
         from workloads w
         cross join unnest($1::text[], $2::text[], $3::text[]) with ordinality
              as c(check_id, severity, layer, n)
         ",
    )
    .bind(&ids)
    .bind(&severities)
    .bind(&layers)
    .execute(pool)
    .await
    .unwrap();
    let workload_ids: Vec<i64> = sqlx::query_scalar("select id from workloads order by id")
        .fetch_all(pool)
        .await
        .unwrap();
    for chunk in workload_ids.chunks(BATCH) {
        let mut tx = pool.begin().await.unwrap();
        findings_store::refresh_scores(&mut tx, chunk)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    sqlx::query("analyze").execute(pool).await.unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
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
        percentile(&times, 0.50).as_secs_f64() * 1000.0,
        percentile(&times, 0.95).as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() {
    let pool = bench_pool().await;
    let started = Instant::now();
    seed(&pool).await;
    println!(
        "seeded {} workloads with one pod each in {:.1} s",
        workloads(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    seed_findings(&pool).await;
    let (findings, open): (i64, i64) =
        sqlx::query_as("select count(*), count(*) filter (where status = 'open') from findings")
            .fetch_one(&pool)
            .await
            .unwrap();
    println!(
        "seeded {findings} findings ({open} open) and the workloads' scores in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let today = chrono::Utc::now().date_naive();
    let days = trend::backfill(&pool, today).await.unwrap();
    trend::snapshot_today(&pool, chrono::Utc::now())
        .await
        .unwrap();
    println!(
        "rebuilt {days} days of posture history from the findings in {:.1} s",
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
    measure(&client, &base, "overview, 90-day trend", "/?trend=90").await;
    let (risk, risk_id): (i32, i64) = sqlx::query_as(
        "select risk_score, id from workloads order by -risk_score, id offset $1 limit 1",
    )
    .bind((workloads() / 2) as i64)
    .fetch_one(&pool)
    .await
    .unwrap();
    measure(
        &client,
        &base,
        "workload list, riskiest first",
        "/workloads?sort=risk",
    )
    .await;
    measure(
        &client,
        &base,
        "workload list, risk order, middle page",
        &format!("/workloads?sort=risk&after={risk}.{risk_id}"),
    )
    .await;
    measure(
        &client,
        &base,
        "workload list, worst severity + risk",
        "/workloads?severity=medium&sort=risk",
    )
    .await;
    measure(
        &client,
        &base,
        "API workloads, riskiest 100",
        "/api/v1/workloads?sort=risk",
    )
    .await;
    measure(&client, &base, "findings by check", "/findings").await;
    measure(
        &client,
        &base,
        "findings by check, filtered",
        "/findings?severity=high&stage=run",
    )
    .await;
    let check: String = sqlx::query_scalar(
        "select check_id from findings where status = 'open' group by 1 order by count(*) desc limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    measure(
        &client,
        &base,
        "one check's workloads",
        &format!("/findings/{check}"),
    )
    .await;
    measure(
        &client,
        &base,
        "one check's workloads, middle page",
        &format!("/findings/{check}?after={middle}"),
    )
    .await;
    let _ = stop.send(());
    let _ = server.await;
}
