//! Posture benchmarks (issue 5 targets):
//! - every check on 100,000 workload specs in under 2 s on one core;
//! - `harbormaster scan` of 10,000 manifests in under 5 s.
//!
//! Run: `cargo bench --bench posture` (release profile). The specs are built in memory from the
//! realistic fixtures under `backend/tests/data/posture/`, about 10 % of them risky; the scan
//! reads 10,000 generated manifest files from a temporary directory through the same code path
//! as the CLI (`posture::scan::run`), writing JSON to a sink.

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

use harbormaster::posture::catalog::Severity;
use harbormaster::posture::scan::{self, Format, ScanOptions};
use harbormaster::posture::{
    docker, evaluate_into, grade, kubernetes, pss, Context, DaemonFacts, KubeletFacts,
    NetworkPolicy, Report, RuntimeFamily, ServiceAccountFacts, Settings, WorkloadSpec,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/posture");
const WORKLOADS: usize = 100_000;
const MANIFESTS: usize = 10_000;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs each benchmark once as a
/// smoke test, on a hundredth of the data so the test suite stays fast.
fn scaled(count: usize) -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        count
    } else {
        count / 100
    }
}

fn read(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(DATA).join(name)).expect("fixture");
    if name.ends_with(".json") {
        serde_json::from_str(&text).expect("JSON fixture")
    } else {
        serde_yaml_ng::from_str(&text).expect("YAML fixture")
    }
}

/// Benign templates (90 %) and risky ones (10 %).
fn templates() -> (Vec<WorkloadSpec>, Vec<WorkloadSpec>) {
    let docker_fixture = |name: &str| docker::adapt(&read(name)[0]).expect("adapts");
    let k8s_fixture = |name: &str| kubernetes::adapt(&read(name)).expect("adapts");
    let benign = vec![
        k8s_fixture("kubernetes/deployment-restricted.yaml"),
        k8s_fixture("kubernetes/statefulset.yaml"),
        k8s_fixture("kubernetes/cronjob.yaml"),
        k8s_fixture("kubernetes/job.yaml"),
        docker_fixture("docker/hardened-compose-service.json"),
        docker_fixture("docker/captured-hardened.json"),
    ];
    let risky = vec![
        k8s_fixture("kubernetes/daemonset-node-agent.yaml"),
        k8s_fixture("kubernetes/pod-live-ingress.json"),
        docker_fixture("docker/captured-privileged.json"),
        docker_fixture("docker/captured-socket-runner.json"),
    ];
    (benign, risky)
}

fn workloads() -> Vec<WorkloadSpec> {
    let (benign, risky) = templates();
    (0..scaled(WORKLOADS))
        .map(|i| {
            let template = if i % 10 == 0 {
                &risky[(i / 10) % risky.len()]
            } else {
                &benign[i % benign.len()]
            };
            let mut spec = template.clone();
            spec.name = format!("{}-{i}", spec.name).into();
            spec
        })
        .collect()
}

struct Facts {
    daemon: DaemonFacts,
    policies: Vec<NetworkPolicy>,
    accounts: Vec<ServiceAccountFacts>,
    settings: Settings,
}

impl Facts {
    fn new() -> Self {
        let policy = |namespace: &str| {
            NetworkPolicy::from_object(&json!({
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": namespace},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
            }))
            .unwrap()
        };
        Self {
            daemon: DaemonFacts::from_info(&read("docker/info-apparmor-userns.json")),
            policies: vec![policy("shop"), policy("finance")],
            accounts: vec![ServiceAccountFacts {
                namespace: "shop".into(),
                name: "checkout".into(),
                automount_token: Some(false),
            }],
            settings: Settings {
                allowed_registries: Some(vec!["registry.example.com".into()]),
                ..Settings::default()
            },
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            daemon: Some(&self.daemon),
            network_policies: Some(&self.policies),
            service_accounts: Some(&self.accounts),
            kubelet: KubeletFacts {
                seccomp_default: Some(false),
                pod_pids_limit: Some(4096),
                runtime: Some(RuntimeFamily::Containerd),
            },
            settings: Some(&self.settings),
            ..Context::default()
        }
    }
}

fn evaluate_workloads(c: &mut Criterion) {
    let specs = workloads();
    let facts = Facts::new();
    let ctx = facts.ctx();
    let mut group = c.benchmark_group("posture");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(scaled(WORKLOADS) as u64));
    group.bench_function("evaluate_all_checks_100k_workloads", |b| {
        b.iter(|| {
            let mut report = Report::new();
            let mut failures = 0usize;
            for spec in &specs {
                evaluate_into(spec, &ctx, &mut report);
                failures += report.failures().count();
            }
            black_box(failures)
        })
    });
    group.bench_function("evaluate_pss_and_grade_100k_workloads", |b| {
        b.iter(|| {
            let mut report = Report::new();
            let mut restricted = 0usize;
            let mut failing = 0usize;
            for spec in &specs {
                evaluate_into(spec, &ctx, &mut report);
                let counts = report.counts();
                failing += usize::from(grade(&counts) > harbormaster::posture::Grade::B);
                restricted += usize::from(pss::assess(spec).level == pss::PssLevel::Restricted);
            }
            black_box((restricted, failing))
        })
    });
    group.finish();
}

/// Writes `MANIFESTS` manifest files: every template renamed, ~10 % risky.
fn write_manifests(dir: &Path) -> Vec<PathBuf> {
    let benign = [
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/deployment-restricted.yaml"))
            .unwrap(),
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/statefulset.yaml")).unwrap(),
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/cronjob.yaml")).unwrap(),
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/helm-rendered.yaml")).unwrap(),
    ];
    let risky = [
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/daemonset-node-agent.yaml"))
            .unwrap(),
        std::fs::read_to_string(Path::new(DATA).join("kubernetes/replicaset-orphan.yaml")).unwrap(),
    ];
    let mut paths = Vec::with_capacity(MANIFESTS);
    for i in 0..scaled(MANIFESTS) {
        let template = if i % 10 == 0 {
            &risky[(i / 10) % risky.len()]
        } else {
            &benign[i % benign.len()]
        };
        // Rename the workload so every manifest is distinct.
        let text = template.replacen("  name: ", &format!("  name: w{i}-"), 1);
        let path = dir.join(format!("manifest-{i:05}.yaml"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths
}

fn scan_manifests(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path());
    let options = |format| ScanOptions {
        paths: vec![dir.path().to_path_buf()],
        format,
        fail_on: Severity::High,
        profile: None,
        settings: Settings::default(),
    };
    let json_options = options(Format::Json);
    let table_options = options(Format::Table);
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(scaled(MANIFESTS) as u64));
    group.bench_function("scan_10k_manifests_json", |b| {
        b.iter(|| {
            let status = scan::run(&json_options, &mut io::sink(), &mut io::sink()).unwrap();
            black_box(status)
        })
    });
    group.bench_function("scan_10k_manifests_table", |b| {
        b.iter(|| {
            let status = scan::run(&table_options, &mut io::sink(), &mut io::sink()).unwrap();
            black_box(status)
        })
    });
    group.finish();
}

criterion_group!(benches, evaluate_workloads, scan_manifests);
criterion_main!(benches);
