//! Review generation at scale (figures in BENCHMARKS.md, section "Reviews"): 100,000 workloads
//! and 1,000,000 open findings owned by 40 teams, seeded set-based; then a review of the whole
//! estate in every format (snapshot + CSV zip + JSON + XLSX + HTML), then a second review after
//! 1 % of the findings were resolved and 1 % opened (the differences). Prints the time of each
//! and the peak resident memory of this process (the generator; PostgreSQL is apart).
//! Target: a review under 60 s with bounded memory.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench review`. The benchmark works in a database
//! of its own (`harbormaster_bench_review`). Under `cargo test` it runs a small smoke estate.

mod common;

use std::time::Instant;

use harbormaster::config::Config;
use harbormaster::review::store::{self, NewReview};
use harbormaster::review::worker;
use sqlx::PgPool;

/// `cargo bench` passes `--bench`: the full estate.
fn full() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn workloads() -> i64 {
    if full() {
        100_000
    } else {
        1_000
    }
}

/// Open findings per workload.
const FINDINGS_PER_WORKLOAD: i64 = 10;

async fn seed(pool: &PgPool) {
    let n = workloads();
    for statement in [
        "insert into sources (kind, name, endpoint) values ('kubernetes', 'bench', 'https://bench:6443')",
        "insert into teams (name, kind) select 'team-' || i, 'development' from generate_series(1, 40) i",
        "insert into images (digest, created_at)
         select 'sha256:' || lpad(i::text, 64, '0'), now() - make_interval(days => i)
         from generate_series(1, 200) i",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
    sqlx::query(
        "insert into workloads (source_id, namespace, kind, name, stage, image_digests,
                                instances_total, instances_running)
         select (select id from sources), 'ns-' || (i % 500), 'Deployment', 'app-' || i,
                case when i % 50 = 0 then 'retire' else 'run' end,
                array['sha256:' || lpad((1 + i % 200)::text, 64, '0')], 2, 2
         from generate_series(1, $1) i",
    )
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    // Most workloads have every layer owned; every seventh misses the host and runtime layers.
    sqlx::query(
        "insert into workload_owners (workload_id, layer, team_id, via, provenance)
         select w.id, l, (select min(id) from teams) + w.id % 40,
                'namespace_label', 'namespace label team'
         from workloads w
         cross join unnest(array['application', 'image', 'runtime', 'orchestration', 'host']) l
         where w.id % 7 <> 0 or l not in ('host', 'runtime')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into findings (workload_id, check_id, severity, layer, message, evidence, first_seen)
         select w.id, 'check.' || c,
                (array['critical', 'high', 'medium', 'low', 'info'])[1 + (w.id + c) % 5],
                (array['application', 'image', 'runtime', 'orchestration', 'host'])[1 + c % 5],
                'the container of app-' || w.id || ' fails check ' || c,
                '[{\"pointer\": \"/spec/containers/0/securityContext\", \"value\": null}]'::jsonb,
                now() - make_interval(days => (w.id + c)::int % 400)
         from workloads w cross join generate_series(1, $1) c",
    )
    .bind(FINDINGS_PER_WORKLOAD)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("analyze").execute(pool).await.unwrap();
}

/// The peak resident set of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn review(pool: &PgPool, config: &Config) -> (std::time::Duration, store::Review) {
    let mut conn = pool.acquire().await.unwrap();
    let (review, _) = store::request(
        &mut conn,
        NewReview {
            team: None,
            formats: Vec::new(),
            trigger: "manual",
            schedule_key: None,
            requested_by: "bench".into(),
            idempotency_key: None,
        },
    )
    .await
    .unwrap();
    drop(conn);
    let started = Instant::now();
    let done = worker::run_next(pool, config)
        .await
        .unwrap()
        .expect("the review is queued");
    let elapsed = started.elapsed();
    assert_eq!(done.id, review.id);
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    (elapsed, done)
}

#[tokio::main]
async fn main() {
    // The worker logs how long the snapshot and each format took.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "harbormaster::review=info".into()),
        )
        .try_init();
    let pool = common::fresh_database("harbormaster_bench_review", 10).await;
    let started = Instant::now();
    seed(&pool).await;
    let open: i64 = sqlx::query_scalar("select count(*) from findings where status = 'open'")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "seeded {} workloads, {open} open findings in {:.1} s",
        workloads(),
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests("postgres://unused@127.0.0.1/unused");
    config.data_dir = dir.path().to_path_buf();
    let before = peak_rss_mib();

    let (elapsed, first) = review(&pool, &config).await;
    assert_eq!(first.summary["totals"]["open_findings"], open);
    let exports = store::exports(&pool, first.id).await.unwrap();
    println!(
        "review of every team (snapshot + csv, json, xlsx, html): {:.1} s; peak RSS {:.0} MiB (before {:.0} MiB)",
        elapsed.as_secs_f64(),
        peak_rss_mib(),
        before
    );
    for export in &exports {
        println!(
            "  {:>4}: {:>8.1} MiB  sha256 {}",
            export.format,
            export.bytes as f64 / 1_048_576.0,
            export.sha256
        );
    }

    // 1 % resolved, 1 % new.
    sqlx::query(
        "update findings set status = 'resolved', resolved_at = now(), resolved_reason = 'fixed'
         where id % 100 = 0 and status = 'open'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into findings (workload_id, check_id, severity, layer, message)
         select id, 'check.new', 'high', 'image', 'new' from workloads where id % 10 = 0",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (elapsed, second) = review(&pool, &config).await;
    println!(
        "second review with differences: {:.1} s ({} new, {} resolved); peak RSS {:.0} MiB",
        elapsed.as_secs_f64(),
        second.summary["totals"]["new_findings"],
        second.summary["totals"]["resolved_findings"],
        peak_rss_mib()
    );
    assert_eq!(second.previous_review_id, Some(first.id));
    assert!(second.summary["totals"]["new_findings"].as_i64().unwrap() > 0);
    assert!(
        second.summary["totals"]["resolved_findings"]
            .as_i64()
            .unwrap()
            > 0
    );
    pool.close().await;
}
