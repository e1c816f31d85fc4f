//! Incident benchmark (figures in BENCHMARKS.md, section "Incidents"): isolating one container
//! on the local engine, target < 2 s.
//!
//! For each of ten containers (busybox on a user-defined network with two aliases and a static
//! address) an incident is opened and an isolate action queued; the time is measured from the
//! worker picking the action up ([`harbormaster::incident::try_execute_next_action`]) to the
//! container being disconnected and verified (`incident_targets.isolated_at`), and to the whole
//! action ending (evidence captured).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench --bench isolate`. It works in a database of its own
//! (`harbormaster_bench_incident`) and removes the containers and network it creates.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use harbormaster::collect::docker::Collector;
use harbormaster::config::parse_docker_endpoint;
use harbormaster::incident::store::{self, NewIncident, StepRequest};
use harbormaster::incident::workflow::Step;
use harbormaster::incident::{self, Drivers};
use harbormaster::inventory::sources;
use sqlx::PgPool;

const LOCAL: &str = "unix:///var/run/docker.sock";
const IMAGE: &str = "harbormaster-test/busybox:1";
/// `cargo bench` passes `--bench`: ten runs. `cargo test` runs this binary without it: one run
/// that proves the bench still works.
fn runs() -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        10
    } else {
        1
    }
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
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        let _ = docker(&["network", "rm", &format!("{}-net", self.0)]);
    }
}

async fn bench_pool() -> PgPool {
    common::fresh_database("harbormaster_bench_incident", 4).await
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let pool = bench_pool().await;
    let random = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("hm-bench-incident-{}", &random[..8]);
    let _cleanup = Cleanup(prefix.clone());
    let network = format!("{prefix}-net");
    let mut subnet = None;
    for octet in 30..250 {
        let cidr = format!("10.232.{octet}.0/24");
        if docker(&["network", "create", "--subnet", &cidr, &network]).is_ok() {
            subnet = Some(format!("10.232.{octet}"));
            break;
        }
    }
    let subnet = subnet.expect("a free /24 for the benchmark network");
    let mut names = Vec::new();
    for n in 0..runs() {
        let name = format!("{prefix}-{n}");
        let ip = format!("{subnet}.{}", n + 10);
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &network,
            "--ip",
            &ip,
            "--network-alias",
            &format!("a{n}"),
            "--network-alias",
            &format!("b{n}"),
            IMAGE,
            "sleep",
            "3600",
        ])
        .expect("a benchmark container starts (scripts/test-images.sh build)");
        names.push(name);
    }
    let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
        .await
        .unwrap();
    Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        Duration::from_secs(600),
    )
    .await
    .expect("the local engine answers")
    .resync_once()
    .await
    .unwrap();
    let drivers = Drivers::from_config(&harbormaster::config::Config::for_tests(
        "postgres://unused@127.0.0.1/unused",
    ));

    let mut contained = Vec::new();
    let mut whole = Vec::new();
    for name in &names {
        let workload: i64 = sqlx::query_scalar("select id from workloads where name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        let (opened, _) = store::open(
            &pool,
            NewIncident {
                title: format!("bench {name}"),
                severity: "high".into(),
                assignee: None,
                opened_by: "bench".into(),
                workload_ids: vec![workload],
                finding_ids: vec![],
                note: String::new(),
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
        let (action, _) = store::request_step(
            &pool,
            opened.id,
            Step::Isolate,
            StepRequest {
                actor: "bench".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let started = Instant::now();
        incident::try_execute_next_action(&pool, &drivers)
            .await
            .unwrap()
            .unwrap();
        whole.push(started.elapsed());
        let action = store::action(&pool, action.id).await.unwrap().unwrap();
        assert_eq!(action.status, "succeeded", "{:?}", action.error);
        let isolated_ms: f64 = sqlx::query_scalar(
            r#"select (extract(epoch from (t.isolated_at - a.started_at)) * 1000)::float8
               from incident_targets t join incident_actions a on a.incident_id = t.incident_id
               where a.id = $1"#,
        )
        .bind(action.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        contained.push(Duration::from_secs_f64(isolated_ms / 1000.0));
    }
    report(
        "isolate_one_container (picked up → disconnected and verified)",
        &mut contained,
    );
    report(
        "isolate_action_total (incl. evidence: top, diff, 500 log lines)",
        &mut whole,
    );
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "{label}: median {:.0} ms, min {:.0} ms, max {:.0} ms ({} runs)",
        median.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
        samples.len()
    );
}
