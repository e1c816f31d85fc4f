//! The image inventory at scale (figures in BENCHMARKS.md, section "Image inventory"): 30,000
//! image digests, 100,000 workloads each running one of them, references, build reports and
//! registry records. Times the list (first page, a later page, each filter), an image's detail,
//! a workload's timeline and judging one sweep batch of 2,000 workloads; prints the plan of the
//! first-page list query. Targets: list and detail p95 < 50 ms; a sweep batch < 2 s.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench images`. The benchmark works in a
//! database of its own (`harbormaster_bench_images`), created and migrated here.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use harbormaster::inventory::sources;
use harbormaster::lifecycle::store::history;
use harbormaster::supply::controls::ControlSettings;
use harbormaster::supply::query::{
    image_detail, query_images, timeline, ImageFilter, LIST_COLUMNS,
};
use harbormaster::supply::store::evaluate_workloads;
use sqlx::PgPool;

/// `cargo bench` passes `--bench`: the full estate. `cargo test` runs a small smoke run.
fn full() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn sizes() -> (i64, i64, usize) {
    if full() {
        (30_000, 100_000, 100)
    } else {
        (300, 1_000, 3)
    }
}

async fn seed(pool: &PgPool, images: i64, workloads: i64) {
    let source = sources::ensure(pool, "kubernetes", "bench", "https://bench.example:6443")
        .await
        .unwrap();
    let statements = [
        "insert into images (digest, created_at)
         select 'sha256:' || lpad(to_hex(n), 64, '0'), now() - (n % 200) * interval '1 day'
         from generate_series(1, $1) n",
        "insert into image_references (digest, reference)
         select 'sha256:' || lpad(to_hex(n), 64, '0'),
                'registry-' || (n % 5) || '.example/team-' || (n % 40) || '/app-' || (n % 3000)
                || ':' || (n / 3000)
         from generate_series(1, $1) n",
        "insert into build_reports (digest, image_reference, pipeline_run, built_at, scanned,
                                    scanner, vulns_critical, vulns_high, vulns_medium, vulns_low,
                                    vulns_unknown, reported_by)
         select 'sha256:' || lpad(to_hex(n), 64, '0'), 'app:' || n, 'run-' || n,
                now() - (n % 120) * interval '1 day', true, 'Trivy', n % 7 / 6, n % 5, 3, 4, 0,
                'bench'
         from generate_series(1, $1) n where n % 3 <> 0",
        "update images i set build_report_id = b.id, vulns_critical = b.vulns_critical,
                             vulns_high = b.vulns_high
         from build_reports b where b.digest = i.digest",
        "insert into registry_images (registry, repository, digest, tags, first_pushed,
                                      last_pushed)
         select 'registry-' || (n % 5) || '.example', 'team-' || (n % 40) || '/app-' || (n % 3000),
                'sha256:' || lpad(to_hex(n), 64, '0'), array[(n / 3000)::text], now(), now()
         from generate_series(1, $1) n where n % 2 = 0",
        "update images i set registries = array[r.registry]
         from registry_images r where r.digest = i.digest",
    ];
    for statement in statements {
        sqlx::query(statement)
            .bind(images)
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "insert into workloads (source_id, namespace, kind, name, stage, image_digests,
                                instances_total, instances_running)
         select $1, 'ns-' || (n % 500), 'Deployment', 'app-' || n, 'run',
                array['sha256:' || lpad(to_hex(1 + n % $3), 64, '0')], 1, 1
         from generate_series(1, $2) n",
    )
    .bind(source)
    .bind(workloads)
    .bind(images)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into instances (workload_id, source_id, external_id, name, state, running,
                                image_ref, image_digest, raw)
         select w.id, w.source_id, 'pod-' || w.id, w.name || '-x', 'Running', w.id % 17 <> 0,
                'registry-0.example/app:1', w.image_digests[1], '{}'::jsonb
         from workloads w",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("analyze").execute(pool).await.unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn time<F, Fut>(label: &str, runs: usize, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..runs.min(5) {
        f().await;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f().await;
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "{label:<40} p50 {:>8.2?}  p95 {:>8.2?}  max {:>8.2?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (images, workloads, runs) = sizes();
        let pool = common::fresh_database("harbormaster_bench_images", 5).await;
        let start = Instant::now();
        seed(&pool, images, workloads).await;
        println!(
            "seeded {images} images and {workloads} workloads in {:.1?}",
            start.elapsed()
        );

        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "explain (analyze, buffers off) {LIST_COLUMNS} where true order by i.digest limit 51"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        println!("plan of the first list page:\n  {}", plan.join("\n  "));

        let middle = format!("sha256:{:064x}", images / 2);
        let filters = [
            ("list: first page", ImageFilter::default()),
            (
                "list: a later page",
                ImageFilter {
                    after: Some(middle.clone()),
                    ..ImageFilter::default()
                },
            ),
            (
                "list: registry filter",
                ImageFilter {
                    registry: Some("registry-2.example".into()),
                    ..ImageFilter::default()
                },
            ),
            (
                "list: reference text",
                ImageFilter {
                    q: Some("team-7/app-1".into()),
                    ..ImageFilter::default()
                },
            ),
            (
                "list: has critical",
                ImageFilter {
                    critical: Some(true),
                    ..ImageFilter::default()
                },
            ),
            (
                "list: not running",
                ImageFilter {
                    running: Some(false),
                    ..ImageFilter::default()
                },
            ),
        ];
        for (label, mut filter) in filters {
            filter.limit = 50;
            time(label, runs, || async {
                query_images(&pool, &filter).await.unwrap();
            })
            .await;
        }
        let settings = ControlSettings::default();
        time("image detail", runs, || async {
            image_detail(&pool, &middle, &settings)
                .await
                .unwrap()
                .unwrap();
        })
        .await;
        let workload: i64 = sqlx::query_scalar("select min(id) from workloads")
            .fetch_one(&pool)
            .await
            .unwrap();
        time("workload timeline", runs, || async {
            let entries = history(&pool, workload).await.unwrap();
            timeline(&pool, std::slice::from_ref(&middle), &entries)
                .await
                .unwrap();
        })
        .await;
        let batch: Vec<i64> = sqlx::query_scalar("select id from workloads order by id limit 2000")
            .fetch_all(&pool)
            .await
            .unwrap();
        time(
            "judge a sweep batch (2,000 workloads)",
            runs.min(10),
            || async {
                let mut tx = pool.begin().await.unwrap();
                evaluate_workloads(&mut tx, &batch, &settings, Utc::now())
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            },
        )
        .await;
    });
}
