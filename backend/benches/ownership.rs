//! Owner resolution at scale (figures in BENCHMARKS.md, section "Ownership"): 100,000 workloads
//! over 500 namespaces, 40 development teams named by workload or namespace labels, image prefix
//! and source default rules. Measures, each in its own transaction:
//!
//! - resolving every workload the first time (every owner row and history row written);
//! - resolving every workload again with nothing changed (the reads and the diff only);
//! - a namespace label change re-routing that namespace's 200 workloads;
//! - a new every-layer source default rule (a rule change that touches every workload).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench ownership`. The benchmark works in a
//! database of its own (`harbormaster_bench_ownership`), created and migrated here. Under
//! `cargo test` it is a small smoke run.

mod common;

use std::time::{Duration, Instant};

use harbormaster::inventory::sources;
use harbormaster::ownership::store::{self, NewRule};
use sqlx::PgPool;

fn full() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn workloads() -> i64 {
    if full() {
        100_000
    } else {
        2_000
    }
}

async fn seed(pool: &PgPool) -> i64 {
    let source = sources::ensure(pool, "kubernetes", "bench", "https://bench.example:6443")
        .await
        .unwrap();
    sqlx::query(
        "insert into teams (name, kind)
         select 'team-' || n, 'development' from generate_series(0, 39) n
         union all values ('platform', 'platform'), ('infra', 'infrastructure'),
                          ('ops', 'operations')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into namespaces (source_id, name, labels)
         select $1, 'ns-' || n,
                case when n % 2 = 0 then jsonb_build_object('team', 'team-' || (n % 40))
                     else jsonb_build_object('cost-center', (n % 7)::text) end
         from generate_series(0, 499) n",
    )
    .bind(source)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into workloads (source_id, namespace, kind, name, stage, labels, images, risk_score)
         select $1, 'ns-' || (n % 500), 'Deployment', 'app-' || n, 'run',
                case when n % 3 = 0 then jsonb_build_object('app', 'app-' || n,
                                                            'team', 'team-' || (n % 40))
                     else jsonb_build_object('app', 'app-' || n) end,
                array['registry.example/team-' || (n % 40) || '/app:' || (n % 200)],
                n % 100
         from generate_series(1, $2) n",
    )
    .bind(source)
    .bind(workloads())
    .execute(pool)
    .await
    .unwrap();
    let ops: i64 = sqlx::query_scalar("select id from teams where name = 'ops'")
        .fetch_one(pool)
        .await
        .unwrap();
    let platform: i64 = sqlx::query_scalar("select id from teams where name = 'platform'")
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into ownership_rules (kind, key, value, layer, team_id, created_by) values
         ('image_prefix', '', 'registry.example/team-1', 'runtime', $1, 'bench'),
         ('namespace_label', 'cost-center', '', 'orchestration', $2, 'bench')",
    )
    .bind(ops)
    .bind(platform)
    .execute(pool)
    .await
    .unwrap();
    source
}

async fn timed<F, Fut, T>(what: &str, f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = Instant::now();
    let value = f().await;
    let took: Duration = started.elapsed();
    println!("{what}: {:.3} s", took.as_secs_f64());
    value
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = common::fresh_database("harbormaster_bench_ownership", 4).await;
        let source = seed(&pool).await;
        let ids: Vec<i64> = sqlx::query_scalar("select id from workloads order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
        println!("ownership: {} workloads", ids.len());

        let first = timed("resolve every workload, first time", || async {
            let mut tx = pool.begin().await.unwrap();
            let r = store::resolve(&mut tx, &ids, "bench").await.unwrap();
            tx.commit().await.unwrap();
            r
        })
        .await;
        println!("  {first:?}");
        assert!(first.reassigned > ids.len());

        let again = timed("resolve every workload, nothing changed", || async {
            let mut tx = pool.begin().await.unwrap();
            let r = store::resolve(&mut tx, &ids, "bench").await.unwrap();
            tx.commit().await.unwrap();
            r
        })
        .await;
        assert_eq!(again.changed, 0);

        let rerouted = timed(
            "namespace label change, its workloads re-routed",
            || async {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "update namespaces set labels = '{\"team\": \"team-7\"}' where name = 'ns-2'",
                )
                .execute(&mut *tx)
                .await
                .unwrap();
                let affected =
                    store::workloads_in_namespaces(&mut tx, source, &["ns-2".to_string()])
                        .await
                        .unwrap();
                let r = store::resolve(&mut tx, &affected, "bench").await.unwrap();
                tx.commit().await.unwrap();
                r
            },
        )
        .await;
        println!("  {rerouted:?}");
        assert!(rerouted.changed > 0);

        let infra: i64 = sqlx::query_scalar("select id from teams where name = 'infra'")
            .fetch_one(&pool)
            .await
            .unwrap();
        let (_, rule) = timed("new every-layer source default rule", || async {
            let mut tx = pool.begin().await.unwrap();
            let new = NewRule {
                kind: "source_default".into(),
                key: String::new(),
                value: String::new(),
                source_id: Some(source),
                layer: None,
                team_id: infra,
            };
            let r = store::create_rule(&mut tx, &new, "bench").await.unwrap();
            tx.commit().await.unwrap();
            r
        })
        .await;
        println!("  {rule:?}");
        let unowned: i64 = sqlx::query_scalar(
            "select count(*) from workloads where owned_layers < 5 and stage <> 'retire'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(unowned, 0, "the source default covers every layer left");

        let started = Instant::now();
        let page = harbormaster::ownership::views::unowned(&pool, 100, None)
            .await
            .unwrap();
        println!(
            "unowned queue first page: {:.1} ms ({} total)",
            started.elapsed().as_secs_f64() * 1000.0,
            page.total
        );
    });
}
