//! `harbormaster scan`, run as the real binary on manifests and on `docker inspect` output of
//! containers created on this machine's engine; and `GET /api/v1/checks`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sqlx::PgPool;

use crate::common::{live_docker_socket, TestApp};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/posture");

fn data(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

fn scan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harbormaster"))
        .arg("scan")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the binary runs")
}

fn scan_paths<P: AsRef<Path>>(paths: &[P], args: &[&str]) -> Output {
    let mut all: Vec<String> = paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect();
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    scan(&refs)
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the output is JSON ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The outcome and severity of `check` for the workload named `name`.
fn result<'a>(report: &'a Value, name: &str, check: &str) -> Vec<&'a Value> {
    let workload = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no workload {name} in {report}"));
    workload["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == check)
        .collect()
}

fn failed(report: &Value, name: &str, check: &str) -> bool {
    result(report, name, check)
        .iter()
        .any(|r| r["outcome"] == "FAIL")
}

#[test]
fn a_restricted_deployment_passes_the_gate_and_lists_every_check_with_its_pss_level() {
    let output = scan_paths(
        &[data("kubernetes/deployment-restricted.yaml")],
        &["--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    let workload = &report["workloads"][0];
    assert_eq!(workload["kind"], "Deployment");
    assert_eq!(workload["namespace"], "shop");
    assert_eq!(workload["pss"]["level"], "restricted");
    let ids: std::collections::BTreeSet<&str> = workload["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    let catalog = std::fs::read_to_string(data("check-ids.txt")).unwrap();
    for id in catalog.lines().filter(|l| !l.is_empty()) {
        assert!(ids.contains(id), "{id} missing from the JSON output");
    }
    assert!(workload["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["outcome"] == "PASS"));
    assert_eq!(report["summary"]["gate"], "passed");
}

#[test]
fn findings_at_or_above_the_threshold_exit_one() {
    let agent = data("kubernetes/daemonset-node-agent.yaml");
    let output = scan_paths(&[&agent], &["--fail-on", "critical"]);
    assert_eq!(output.status.code(), Some(1));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("DaemonSet monitoring/node-agent"), "{table}");
    assert!(table.contains("mount.runtime_socket"));
    assert!(table.contains("gate (--fail-on critical): failed"));

    // The hardened deployment has only a low finding: it passes a low threshold… but not info.
    let hardened = data("kubernetes/deployment-restricted.yaml");
    assert_eq!(
        scan_paths(&[&hardened], &["--fail-on", "medium"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        scan_paths(&[hardened], &["--fail-on", "low"]).status.code(),
        Some(1)
    );
}

#[test]
fn a_profile_fails_workloads_below_the_pod_security_level() {
    // The Helm chart's Deployment has no high finding but is only baseline.
    let chart = data("kubernetes/helm-rendered.yaml");
    let output = scan_paths(&[&chart], &["--fail-on", "critical", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(
        report["workloads"].as_array().unwrap().len(),
        1,
        "the owned ReplicaSet is skipped"
    );
    assert_eq!(report["workloads"][0]["pss"]["level"], "baseline");
    let with_profile = scan_paths(
        &[&chart],
        &["--fail-on", "critical", "--profile", "restricted"],
    );
    assert_eq!(with_profile.status.code(), Some(1));
    let baseline = scan_paths(
        &[chart],
        &["--fail-on", "critical", "--profile", "baseline"],
    );
    assert_eq!(baseline.status.code(), Some(0));
}

#[test]
fn helm_output_uses_its_service_accounts_and_network_policies_as_context() {
    let output = scan_paths(
        &[data("kubernetes/helm-rendered.yaml")],
        &["--format", "json"],
    );
    let report = json(&output);
    let automount = result(&report, "cart", "sa.token_automount");
    assert_eq!(
        automount[0]["outcome"], "PASS",
        "the ServiceAccount says automount false"
    );
    let policy = result(&report, "cart", "net.no_network_policy");
    assert_eq!(policy[0]["outcome"], "FAIL");
    assert!(policy[0]["message"].as_str().unwrap().contains("egress"));
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(
        skipped.contains(&"Service") && skipped.contains(&"ConfigMap"),
        "{skipped:?}"
    );
}

#[test]
fn a_malformed_document_is_reported_with_file_and_index_and_the_rest_is_scanned() {
    let output = scan_paths(&[data("kubernetes/malformed.yaml")], &["--format", "json"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert!(stderr.contains("malformed.yaml: document 1"), "{stderr}");
    assert!(
        stderr.contains("malformed.yaml: document 2, line 16: Pod: /spec/containers/0/securityContext/privileged: expected a boolean"),
        "{stderr}"
    );
    let report = json(&output);
    let names: Vec<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["fine-before", "fine-after"]);
    assert_eq!(report["errors"].as_array().unwrap().len(), 2);
    assert_eq!(report["errors"][0]["document"], 1);
    assert!(failed(&report, "fine-after", "priv.privileged"));
}

#[test]
fn unreadable_paths_exit_two_and_usage_errors_too() {
    let output = scan(&["/no/such/manifests.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/manifests.yaml"));
    assert_eq!(scan(&[]).status.code(), Some(2), "a path is required");
    assert_eq!(
        scan(&["x.yaml", "--fail-on", "severe"]).status.code(),
        Some(2)
    );
    let help = scan(&["--help"]);
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Exit status:") && text.contains("--fail-on") && text.contains("--profile")
    );
}

#[test]
fn directories_lists_and_standard_input_are_scanned() {
    let output = scan_paths(
        &[data("kubernetes")],
        &["--format", "json", "--fail-on", "critical"],
    );
    let report = json(&output);
    let kinds: std::collections::BTreeSet<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "CronJob",
        "DaemonSet",
        "Deployment",
        "Job",
        "Pod",
        "ReplicaSet",
        "StatefulSet",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let list_item = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["source"]["file"].as_str().unwrap().ends_with("list.json"))
        .unwrap();
    assert_eq!(list_item["source"]["item"], 0);
    assert!(failed(&report, "web", "priv.privileged"));
    // The List's default-deny policy selects `web`.
    assert_eq!(
        result(&report, "web", "net.no_network_policy")[0]["outcome"],
        "PASS"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_harbormaster"))
        .args(["scan", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let manifest = std::fs::read(data("kubernetes/job.yaml")).unwrap();
        child.stdin.take().unwrap().write_all(&manifest).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "a token in the arguments is high"
    );
    let report = json(&output);
    assert_eq!(report["workloads"][0]["source"]["file"], "-");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("ghp_aB3dE5"));
}

#[test]
fn sarif_output_names_rules_results_and_locations() {
    let output = scan_paths(
        &[data("kubernetes/daemonset-node-agent.yaml")],
        &["--format", "sarif"],
    );
    assert_eq!(output.status.code(), Some(1));
    let sarif = json(&output);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "harbormaster");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), harbormaster::posture::CATALOG.len());
    let results = run["results"].as_array().unwrap();
    let socket = results
        .iter()
        .find(|r| r["ruleId"] == "mount.runtime_socket")
        .expect("a runtime socket result");
    assert_eq!(socket["level"], "error");
    assert_eq!(
        rules[socket["ruleIndex"].as_u64().unwrap() as usize]["id"],
        "mount.runtime_socket"
    );
    let location = &socket["locations"][0]["physicalLocation"];
    assert!(location["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("daemonset-node-agent.yaml"));
    assert_eq!(location["region"]["startLine"], 3);
    assert!(results
        .iter()
        .all(|r| r["partialFingerprints"]["harbormaster/v1"].is_string()));
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
}

/// Containers created for one test, removed on drop (also when the test fails).
struct Containers {
    names: Vec<String>,
}

impl Containers {
    fn create(&mut self, name: &str, args: &[&str]) {
        let output = Command::new("docker")
            .args(["create", "--name", name])
            .args(args)
            .arg("harbormaster-test/busybox:1")
            .output()
            .expect("the docker CLI runs");
        assert!(
            output.status.success(),
            "docker create {name} failed: {} (run scripts/test-images.sh build first)",
            String::from_utf8_lossy(&output.stderr)
        );
        self.names.push(name.to_string());
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.names)
                .output();
        }
    }
}

#[test]
fn scanning_real_docker_inspect_output_finds_each_risk_and_clears_the_hardened_container() {
    if live_docker_socket().is_none() {
        return;
    }
    let prefix = format!(
        "hm-test-posture-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut containers = Containers { names: Vec::new() };
    let cases: [(&str, &[&str]); 7] = [
        ("privileged", &["--privileged"]),
        (
            "socket",
            &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
        ),
        ("sysadmin", &["--cap-add", "SYS_ADMIN"]),
        ("hostpid", &["--pid", "host"]),
        ("hostnet", &["--network", "host"]),
        ("unconfined", &["--security-opt", "seccomp=unconfined"]),
        (
            "hardened",
            &[
                "--read-only",
                "--user",
                "1000:1000",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--memory",
                "64m",
                "--pids-limit",
                "64",
            ],
        ),
    ];
    for (suffix, args) in cases {
        containers.create(&format!("{prefix}-{suffix}"), args);
    }
    let dir = tempfile::tempdir().unwrap();
    let inspect = Command::new("docker")
        .arg("inspect")
        .args(&containers.names)
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let inspect_path = dir.path().join("containers.json");
    std::fs::write(&inspect_path, &inspect.stdout).unwrap();
    let info = Command::new("docker")
        .args(["info", "--format", "{{json .}}"])
        .output()
        .unwrap();
    assert!(info.status.success());
    let info_path = dir.path().join("docker-info.json");
    std::fs::write(&info_path, &info.stdout).unwrap();

    let output = scan_paths(&[&inspect_path, &info_path], &["--format", "json"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    let name = |suffix: &str| format!("{prefix}-{suffix}");
    let expect = |suffix: &str, check: &str, severity: &str| {
        let results = result(&report, &name(suffix), check);
        assert!(
            results
                .iter()
                .any(|r| r["outcome"] == "FAIL" && r["severity"] == severity),
            "{suffix}: expected {check} to fail {severity}, got {results:?}"
        );
    };
    expect("privileged", "priv.privileged", "critical");
    expect("privileged", "seccomp.unconfined", "high");
    expect("privileged", "proc.unmasked", "high");
    expect("socket", "mount.runtime_socket", "critical");
    expect("sysadmin", "caps.add_critical", "critical");
    expect("hostpid", "ns.host_pid", "high");
    expect("hostnet", "ns.host_network", "high");
    expect("unconfined", "seccomp.unconfined", "high");
    let socket_evidence =
        &result(&report, &name("socket"), "mount.runtime_socket")[0]["evidence"][0];
    assert_eq!(socket_evidence["raw"], "/var/run/docker.sock");
    assert_eq!(socket_evidence["normalized"], "/run/docker.sock");

    let hardened = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name("hardened"))
        .unwrap();
    let serious: Vec<&Value> = hardened["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["outcome"] == "FAIL" && (r["severity"] == "critical" || r["severity"] == "high")
        })
        .collect();
    assert!(serious.is_empty(), "the hardened container has {serious:?}");
    assert_eq!(hardened["pss"]["level"], "restricted");

    // Alone, the hardened container passes the default gate.
    let hardened_only = Command::new("docker")
        .args(["inspect", &name("hardened")])
        .output()
        .unwrap();
    let hardened_path = dir.path().join("hardened.json");
    std::fs::write(&hardened_path, &hardened_only.stdout).unwrap();
    let output = scan_paths(&[hardened_path, info_path], &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_api_lists_the_check_catalog_with_every_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app.viewer_get("/api/v1/checks").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let checks = body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), harbormaster::posture::CATALOG.len());
    let privileged = checks
        .iter()
        .find(|c| c["id"] == "priv.privileged")
        .unwrap();
    assert_eq!(privileged["severity"], "critical");
    assert_eq!(privileged["threat"], "container_escape");
    assert_eq!(privileged["stage"], "deploy");
    assert_eq!(privileged["layer"], "orchestration");
    assert_eq!(privileged["references"]["cis_docker"], "5.5");
    assert!(privileged["references"]["pss"]
        .as_str()
        .unwrap()
        .contains("Privileged Containers"));
    assert!(privileged["remediation"]["docker"]
        .as_str()
        .unwrap()
        .contains("--privileged"));
    assert!(privileged["remediation"]["kubernetes"]
        .as_str()
        .unwrap()
        .contains("securityContext"));
    assert_eq!(body["pss_policy_version"], "v1.37");

    let one = app.viewer_get("/api/v1/checks/mount.runtime_socket").await;
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["title"], "Container-runtime socket mounted");
    let critical: Value = app
        .viewer_get("/api/v1/checks?severity=critical&source=docker")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = critical["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"priv.privileged") && ids.contains(&"mount.runtime_socket"));
    assert!(
        !ids.contains(&"priv.windows_host_process"),
        "Kubernetes-only"
    );
    let page: Value = app
        .viewer_get("/api/v1/checks?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["checks"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], "priv.allow_privilege_escalation");
    let second: Value = app
        .viewer_get("/api/v1/checks?limit=2&after=priv.allow_privilege_escalation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["checks"][0]["id"], "priv.windows_host_process");
    let bad = app.viewer_get("/api/v1/checks?layer=kernel").await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("layer must be one of"));

    let missing = app.viewer_get("/api/v1/checks/no.such_check").await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found");
}
