//! Every check with at least one failing and one passing case for each source it applies to,
//! fed from the captured documents under `backend/tests/data/posture/`, plus the edge cases of
//! CHECKS.md §3. Each case starts from a hardened fixture and changes one thing.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::posture::catalog::{CheckId, Severity, CATALOG};
use crate::posture::context::{
    Context, DaemonFacts, ExecFacts, ImageFacts, KubeletFacts, NetworkPolicy, RuntimeClassFacts,
    RuntimeFamily, ServiceAccountFacts, Settings, VolumeFacts,
};
use crate::posture::spec::WorkloadSpec;
use crate::posture::{docker, evaluate, kubernetes, Outcome};

use Outcome::{Fail, NotApplicable as NA, Pass, Unknown};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/posture");

pub(crate) fn read(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{DATA}/{name}")).expect("fixture exists");
    if name.ends_with(".json") {
        serde_json::from_str(&text).expect("fixture is JSON")
    } else {
        serde_yaml_ng::from_str(&text).expect("fixture is YAML")
    }
}

fn docker_base() -> Value {
    read("docker/hardened-compose-service.json")[0].clone()
}

fn k8s_base() -> Value {
    read("kubernetes/deployment-restricted.yaml")
}

fn docker_spec(mutate: impl FnOnce(&mut Value)) -> WorkloadSpec {
    let mut value = docker_base();
    mutate(&mut value);
    docker::adapt(&value).expect("adapts")
}

fn k8s_spec(mutate: impl FnOnce(&mut Value)) -> WorkloadSpec {
    let mut value = k8s_base();
    mutate(&mut value);
    kubernetes::adapt(&value).expect("adapts")
}

fn hc(v: &mut Value) -> &mut Value {
    &mut v["HostConfig"]
}

fn pod(v: &mut Value) -> &mut Value {
    &mut v["spec"]["template"]["spec"]
}

fn c0(v: &mut Value) -> &mut Value {
    &mut pod(v)["containers"][0]
}

fn sc(v: &mut Value) -> &mut Value {
    &mut c0(v)["securityContext"]
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().expect("an object").remove(key);
}

/// Everything a context can hold, owned.
struct Facts {
    daemon: Option<DaemonFacts>,
    images: Option<HashMap<String, ImageFacts>>,
    volumes: Option<HashMap<String, VolumeFacts>>,
    peers: Vec<WorkloadSpec>,
    exec: Option<Vec<ExecFacts>>,
    processes: Option<Vec<String>>,
    policies: Option<Vec<NetworkPolicy>>,
    accounts: Option<Vec<ServiceAccountFacts>>,
    classes: Option<Vec<RuntimeClassFacts>>,
    kubelet: KubeletFacts,
    verified: Option<HashSet<String>>,
    settings: Settings,
}

impl Facts {
    fn none() -> Self {
        Self {
            daemon: None,
            images: None,
            volumes: None,
            peers: Vec::new(),
            exec: None,
            processes: None,
            policies: None,
            accounts: None,
            classes: None,
            kubelet: KubeletFacts::default(),
            verified: None,
            settings: Settings::default(),
        }
    }

    /// A daemon with AppArmor, the builtin seccomp profile and userns-remap, and the compose
    /// service's named volume known to be a plain volume.
    fn docker() -> Self {
        let mut volumes = HashMap::new();
        volumes.insert(
            "shop_api-data".to_string(),
            VolumeFacts {
                name: "shop_api-data".into(),
                driver: "local".into(),
                bind_device: None,
            },
        );
        Self {
            daemon: Some(DaemonFacts::from_info(&read(
                "docker/info-apparmor-userns.json",
            ))),
            volumes: Some(volumes),
            ..Self::none()
        }
    }

    /// The namespace's default-deny policy, the ServiceAccount, a containerd node with a PID
    /// limit.
    fn k8s() -> Self {
        let deny = NetworkPolicy::from_object(&json!({
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }))
        .unwrap();
        Self {
            policies: Some(vec![deny]),
            accounts: Some(vec![ServiceAccountFacts {
                namespace: "shop".into(),
                name: "checkout".into(),
                automount_token: Some(false),
            }]),
            kubelet: KubeletFacts {
                seccomp_default: None,
                pod_pids_limit: Some(1024),
                runtime: Some(RuntimeFamily::Containerd),
            },
            ..Self::none()
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            daemon: self.daemon.as_ref(),
            images: self.images.as_ref(),
            docker_volumes: self.volumes.as_ref(),
            docker_peers: &self.peers,
            exec_sessions: self.exec.as_deref(),
            processes: self.processes.as_deref(),
            network_policies: self.policies.as_deref(),
            service_accounts: self.accounts.as_deref(),
            runtime_classes: self.classes.as_deref(),
            kubelet: self.kubelet,
            verified_digests: self.verified.as_ref(),
            settings: Some(&self.settings),
        }
    }

    /// The outcomes and severities of one check.
    fn run(&self, spec: &WorkloadSpec, check: CheckId) -> Vec<(Outcome, Severity)> {
        let report = evaluate(spec, &self.ctx());
        report.of(check).map(|r| (r.outcome, r.severity)).collect()
    }

    /// The single result of a check (one container or pod-level).
    fn one(&self, spec: &WorkloadSpec, check: CheckId) -> (Outcome, Severity) {
        let results = self.run(spec, check);
        assert_eq!(results.len(), 1, "{} gave {results:?}", check.as_str());
        results[0]
    }

    fn outcome(&self, spec: &WorkloadSpec, check: CheckId) -> Outcome {
        self.one(spec, check).0
    }

    /// The result of a check for one container.
    fn of(&self, spec: &WorkloadSpec, check: CheckId, container: &str) -> (Outcome, Severity) {
        let report = evaluate(spec, &self.ctx());
        let found: Vec<_> = report
            .of(check)
            .filter(|r| r.container == Some(container))
            .map(|r| (r.outcome, r.severity))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{} for {container}: {found:?}",
            check.as_str()
        );
        found[0]
    }
}

fn d() -> Facts {
    Facts::docker()
}

fn k() -> Facts {
    Facts::k8s()
}

fn base_d() -> WorkloadSpec {
    docker_spec(|_| {})
}

fn base_k() -> WorkloadSpec {
    k8s_spec(|_| {})
}

// ---------------------------------------------------------------------------------------------
// Fixtures as a whole
// ---------------------------------------------------------------------------------------------

#[test]
fn every_check_yields_a_result_for_every_fixture() {
    let mut specs = Vec::new();
    for name in [
        "docker/captured-privileged.json",
        "docker/captured-socket-runner.json",
        "docker/captured-hardened.json",
        "docker/hardened-compose-service.json",
        "docker/windows-hyperv.json",
    ] {
        specs.push(docker::adapt(&read(name)[0]).unwrap());
    }
    for name in [
        "kubernetes/deployment-restricted.yaml",
        "kubernetes/daemonset-node-agent.yaml",
        "kubernetes/cronjob.yaml",
        "kubernetes/statefulset.yaml",
        "kubernetes/job.yaml",
        "kubernetes/replicaset-orphan.yaml",
        "kubernetes/windows-hostprocess.yaml",
        "kubernetes/pod-live-ingress.json",
    ] {
        specs.push(kubernetes::adapt(&read(name)).unwrap());
    }
    for facts in [Facts::none(), d(), k()] {
        for spec in &specs {
            let report = evaluate(spec, &facts.ctx());
            for meta in CATALOG.iter() {
                assert!(
                    report.of(meta.check).next().is_some(),
                    "{} has no result for {}",
                    meta.id,
                    spec.name
                );
            }
            // Results come in catalog order.
            let order: Vec<CheckId> = report.results().iter().map(|r| r.check).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted);
        }
    }
}

#[test]
fn the_hardened_docker_service_fails_no_check_when_the_daemon_is_known() {
    let spec = base_d();
    let facts = d();
    let report = evaluate(&spec, &facts.ctx());
    let failures: Vec<_> = report
        .failures()
        .filter(|r| r.severity > Severity::Info)
        .map(|r| r.check.as_str())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn the_restricted_deployment_fails_only_the_user_namespace_opt_in() {
    let spec = base_k();
    let facts = k();
    let report = evaluate(&spec, &facts.ctx());
    let failures: Vec<_> = report.failures().map(|r| r.check.as_str()).collect();
    assert_eq!(failures, vec!["ns.host_userns"]);
}

#[test]
fn secret_values_never_appear_in_evidence() {
    let spec = docker::adapt(&read("docker/captured-socket-runner.json")[0]).unwrap();
    let facts = Facts::none();
    let report = evaluate(&spec, &facts.ctx());
    let text = serde_json::to_string(&report).unwrap();
    assert!(text.contains("DB_PASSWORD"));
    assert!(!text.contains("hunter2"));
    let agent = kubernetes::adapt(&read("kubernetes/daemonset-node-agent.yaml")).unwrap();
    let text = serde_json::to_string(&evaluate(&agent, &facts.ctx())).unwrap();
    assert!(text.contains("API_TOKEN"));
    assert!(!text.contains("c2VjcmV0LXRva2VuLWZvci1ub2RlLWFnZW50"));
    let job = kubernetes::adapt(&read("kubernetes/job.yaml")).unwrap();
    let text = serde_json::to_string(&evaluate(&job, &facts.ctx())).unwrap();
    assert!(!text.contains("ghp_aB3dE5"));
    assert!(text.contains("[redacted]"));
}

#[test]
fn evidence_cites_the_pointer_the_raw_value_and_the_normalized_value() {
    let spec = docker::adapt(&read("docker/captured-socket-runner.json")[0]).unwrap();
    let facts = Facts::none();
    let report = evaluate(&spec, &facts.ctx());
    let (_, evidence) = report
        .iter()
        .find(|(r, _)| r.check == CheckId::MountRuntimeSocket)
        .unwrap();
    let value = serde_json::to_value(evidence).unwrap();
    assert_eq!(value[0]["pointer"], "/Mounts/0/Source");
    assert_eq!(value[0]["raw"], "/var/run/docker.sock");
    assert_eq!(value[0]["normalized"], "/run/docker.sock");

    let cron = kubernetes::adapt(&read("kubernetes/cronjob.yaml")).unwrap();
    let report = evaluate(&cron, &facts.ctx());
    let (_, evidence) = report
        .iter()
        .find(|(r, _)| r.check == CheckId::FsRootfsWritable)
        .unwrap();
    let value = serde_json::to_value(evidence).unwrap();
    assert_eq!(
        value[0]["pointer"],
        "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem"
    );
    assert!(
        value[0].get("raw").is_none(),
        "absent fields have no raw value"
    );
}

// ---------------------------------------------------------------------------------------------
// 1.A Privilege
// ---------------------------------------------------------------------------------------------

#[test]
fn privileged_containers_fail_on_both_sources() {
    let check = CheckId::PrivPrivileged;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let spec = docker_spec(|v| hc(v)["Privileged"] = json!(true));
    assert_eq!(d().one(&spec, check), (Fail, Severity::Critical));
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let spec = k8s_spec(|v| sc(v)["privileged"] = json!(true));
    assert_eq!(k().outcome(&spec, check), Fail);
    let windows = docker::adapt(&read("docker/windows-hyperv.json")[0]).unwrap();
    assert_eq!(d().outcome(&windows, check), NA);
}

#[test]
fn privilege_escalation_needs_an_explicit_block() {
    let check = CheckId::PrivAllowPrivilegeEscalation;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let none = docker_spec(|v| hc(v)["SecurityOpt"] = json!(null));
    assert_eq!(d().outcome(&none, check), Fail);
    let explicit_false = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["no-new-privileges=false"]));
    assert_eq!(d().outcome(&explicit_false, check), Fail);
    let legacy = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["no-new-privileges:true"]));
    assert_eq!(d().outcome(&legacy, check), Pass);
    let mut daemon_default = d();
    daemon_default.daemon.as_mut().unwrap().no_new_privileges = Some(true);
    assert_eq!(daemon_default.outcome(&none, check), Pass);
    // An explicit false overrides a daemon-wide true.
    assert_eq!(daemon_default.outcome(&explicit_false, check), Fail);

    assert_eq!(k().outcome(&base_k(), check), Pass);
    let unset = k8s_spec(|v| remove(sc(v), "allowPrivilegeEscalation"));
    assert_eq!(k().outcome(&unset, check), Fail);
    let sys_admin = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["SYS_ADMIN"]));
    assert_eq!(k().outcome(&sys_admin, check), Fail);
    let windows = k8s_spec(|v| {
        pod(v)["os"] = json!({"name": "windows"});
        remove(sc(v), "allowPrivilegeEscalation");
    });
    assert_eq!(k().outcome(&windows, check), NA);
}

#[test]
fn windows_host_process_fails_at_pod_or_container_level() {
    let check = CheckId::PrivWindowsHostProcess;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let pod_level = kubernetes::adapt(&read("kubernetes/windows-hostprocess.yaml")).unwrap();
    assert_eq!(k().one(&pod_level, check), (Fail, Severity::Critical));
    let container_level = k8s_spec(|v| {
        sc(v)["windowsOptions"] = json!({"hostProcess": true});
    });
    assert_eq!(k().outcome(&container_level, check), Fail);
    assert_eq!(d().outcome(&base_d(), check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.B Capabilities
// ---------------------------------------------------------------------------------------------

#[test]
fn critical_capabilities_are_found_in_any_spelling() {
    let check = CheckId::CapsAddCritical;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    for spelling in ["sys_admin", "CAP_SYS_ADMIN", " Cap_Sys_Module ", "all"] {
        let spec = docker_spec(|v| hc(v)["CapAdd"] = json!([spelling]));
        assert_eq!(
            d().one(&spec, check),
            (Fail, Severity::Critical),
            "{spelling}"
        );
        let spec = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!([spelling]));
        assert_eq!(k().outcome(&spec, check), Fail, "{spelling}");
    }
    let bind = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]));
    assert_eq!(k().outcome(&bind, check), Pass);
}

#[test]
fn high_risk_capabilities_become_critical_with_the_host_pid_namespace() {
    let check = CheckId::CapsAddHighRisk;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let spec = docker_spec(|v| hc(v)["CapAdd"] = json!(["CAP_NET_ADMIN"]));
    assert_eq!(d().one(&spec, check), (Fail, Severity::High));
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let ptrace = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["SYS_PTRACE"]));
    assert_eq!(k().one(&ptrace, check), (Fail, Severity::High));
    let ptrace_host_pid = k8s_spec(|v| {
        sc(v)["capabilities"]["add"] = json!(["SYS_PTRACE"]);
        pod(v)["hostPID"] = json!(true);
    });
    assert_eq!(k().one(&ptrace_host_pid, check), (Fail, Severity::Critical));
}

#[test]
fn capabilities_outside_the_baseline_differ_for_docker_and_kubernetes() {
    let check = CheckId::CapsAddOutsideBaseline;
    // NET_RAW is in Docker's default set but not in the PSS baseline set.
    let docker_net_raw = docker_spec(|v| hc(v)["CapAdd"] = json!(["NET_RAW"]));
    assert_eq!(d().outcome(&docker_net_raw, check), Pass);
    let docker_time = docker_spec(|v| hc(v)["CapAdd"] = json!(["SYS_TIME"]));
    assert_eq!(d().outcome(&docker_time, check), Fail);
    let k8s_net_raw = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["NET_RAW"]));
    assert_eq!(k().one(&k8s_net_raw, check), (Fail, Severity::Medium));
    // Risk is judged on capnorm: CAP_CHOWN is CHOWN (PSS conformance is judged separately).
    let k8s_chown = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["CAP_CHOWN"]));
    assert_eq!(k().outcome(&k8s_chown, check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
}

#[test]
fn only_net_bind_service_may_be_added_under_restricted() {
    let check = CheckId::CapsAddOutsideRestricted;
    let chown = docker_spec(|v| hc(v)["CapAdd"] = json!(["CHOWN"]));
    assert_eq!(d().one(&chown, check), (Fail, Severity::Low));
    let bind = docker_spec(|v| hc(v)["CapAdd"] = json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(d().outcome(&bind, check), Pass);
    let chown = k8s_spec(|v| sc(v)["capabilities"]["add"] = json!(["CHOWN"]));
    assert_eq!(k().outcome(&chown, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
}

#[test]
fn dropping_all_is_required_and_the_cap_prefix_is_inert_on_containerd() {
    let check = CheckId::CapsDropAllMissing;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let none = docker_spec(|v| hc(v)["CapDrop"] = json!(null));
    assert_eq!(d().outcome(&none, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let net_raw_only = k8s_spec(|v| sc(v)["capabilities"]["drop"] = json!(["NET_RAW"]));
    assert_eq!(k().outcome(&net_raw_only, check), Fail);
    // Lower-case `all` works at runtime (PSS conformance fails, see pss tests).
    let lower = k8s_spec(|v| sc(v)["capabilities"]["drop"] = json!(["all"]));
    assert_eq!(k().outcome(&lower, check), Pass);
    // containerd prepends CAP_ unconditionally: CAP_ALL becomes CAP_CAP_ALL.
    let prefixed = k8s_spec(|v| sc(v)["capabilities"]["drop"] = json!(["CAP_ALL"]));
    assert_eq!(k().outcome(&prefixed, check), Fail);
}

#[test]
fn net_raw_is_retained_unless_dropped_and_depends_on_the_runtime() {
    let check = CheckId::CapsNetRawRetained;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let no_drop = docker_spec(|v| hc(v)["CapDrop"] = json!(null));
    assert_eq!(d().outcome(&no_drop, check), Fail);
    let added_back = docker_spec(|v| hc(v)["CapAdd"] = json!(["NET_RAW"]));
    assert_eq!(
        d().outcome(&added_back, check),
        Fail,
        "add wins over drop ALL"
    );
    let privileged = docker_spec(|v| hc(v)["Privileged"] = json!(true));
    assert_eq!(d().outcome(&privileged, check), Fail);

    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_no_drop = k8s_spec(|v| remove(sc(v), "capabilities"));
    assert_eq!(k().outcome(&k8s_no_drop, check), Fail);
    let mut crio = k();
    crio.kubelet.runtime = Some(RuntimeFamily::CriO);
    assert_eq!(crio.outcome(&k8s_no_drop, check), Pass);
    assert_eq!(Facts::none().outcome(&k8s_no_drop, check), Unknown);
    let prefixed = k8s_spec(|v| sc(v)["capabilities"]["drop"] = json!(["CAP_NET_RAW"]));
    assert_eq!(k().outcome(&prefixed, check), Fail);
}

// ---------------------------------------------------------------------------------------------
// 1.C Namespaces
// ---------------------------------------------------------------------------------------------

#[test]
fn host_pid_network_and_ipc_fail_on_both_sources() {
    for (check, docker_key, k8s_key, severity) in [
        (CheckId::NsHostPid, "PidMode", "hostPID", Severity::High),
        (
            CheckId::NsHostNetwork,
            "NetworkMode",
            "hostNetwork",
            Severity::High,
        ),
        (CheckId::NsHostIpc, "IpcMode", "hostIPC", Severity::Medium),
    ] {
        assert_eq!(d().outcome(&base_d(), check), Pass);
        let spec = docker_spec(|v| hc(v)[docker_key] = json!("host"));
        assert_eq!(d().one(&spec, check), (Fail, severity), "{docker_key}");
        assert_eq!(k().outcome(&base_k(), check), Pass);
        let spec = k8s_spec(|v| pod(v)[k8s_key] = json!(true));
        assert_eq!(k().one(&spec, check), (Fail, severity), "{k8s_key}");
    }
    let privileged_host_pid = docker_spec(|v| {
        hc(v)["PidMode"] = json!("host");
        hc(v)["Privileged"] = json!(true);
    });
    assert_eq!(
        d().one(&privileged_host_pid, CheckId::NsHostPid).1,
        Severity::Critical
    );
}

#[test]
fn joined_namespaces_are_resolved_through_the_peer_container() {
    let host_peer = docker_spec(|v| {
        v["Name"] = json!("/debug-sidecar");
        v["Id"] = json!("b".repeat(64));
        hc(v)["PidMode"] = json!("host");
    });
    let joiner = docker_spec(|v| hc(v)["PidMode"] = json!(format!("container:{}", "b".repeat(12))));
    let mut facts = d();
    assert_eq!(facts.outcome(&joiner, CheckId::NsHostPid), Unknown);
    facts.peers.push(host_peer);
    assert_eq!(facts.outcome(&joiner, CheckId::NsHostPid), Fail);
    let by_name = docker_spec(|v| hc(v)["PidMode"] = json!("container:debug-sidecar"));
    assert_eq!(facts.outcome(&by_name, CheckId::NsHostPid), Fail);
    assert_eq!(facts.outcome(&joiner, CheckId::NsSharedWithContainer), Fail);
}

#[test]
fn host_uts_is_a_docker_setting_and_implied_by_host_network_in_kubernetes() {
    let check = CheckId::NsHostUts;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let spec = docker_spec(|v| hc(v)["UTSMode"] = json!("host"));
    assert_eq!(d().one(&spec, check), (Fail, Severity::Low));
    let host_network = k8s_spec(|v| pod(v)["hostNetwork"] = json!(true));
    assert_eq!(k().outcome(&host_network, check), NA);
}

#[test]
fn user_namespaces_depend_on_the_daemon_and_on_host_users() {
    let check = CheckId::NsHostUserns;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let opt_out = docker_spec(|v| hc(v)["UsernsMode"] = json!("host"));
    assert_eq!(d().one(&opt_out, check), (Fail, Severity::Medium));
    let no_remap = Facts {
        daemon: Some(DaemonFacts::from_info(&read(
            "docker/info-seccomp-only.json",
        ))),
        ..Facts::none()
    };
    assert_eq!(no_remap.one(&base_d(), check), (Fail, Severity::Low));
    assert_eq!(Facts::none().outcome(&base_d(), check), Unknown);
    assert_eq!(k().one(&base_k(), check), (Fail, Severity::Low));
    let user_ns = k8s_spec(|v| pod(v)["hostUsers"] = json!(false));
    assert_eq!(k().outcome(&user_ns, check), Pass);
}

#[test]
fn host_cgroup_namespace_is_docker_only() {
    let check = CheckId::NsHostCgroupns;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let captured = docker::adapt(&read("docker/captured-hardened.json")[0]).unwrap();
    assert_eq!(
        d().outcome(&captured, check),
        Fail,
        "cgroup v1 hosts default to host"
    );
    assert_eq!(k().outcome(&base_k(), check), NA);
}

#[test]
fn shared_namespaces_fail_for_container_modes_and_share_process_namespace() {
    let check = CheckId::NsSharedWithContainer;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let spec = docker_spec(|v| hc(v)["NetworkMode"] = json!("container:shop-db-1"));
    assert_eq!(d().outcome(&spec, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let spec = k8s_spec(|v| pod(v)["shareProcessNamespace"] = json!(true));
    assert_eq!(k().outcome(&spec, check), Fail);
}

#[test]
fn untrusted_workloads_need_a_sandboxed_runtime() {
    let check = CheckId::RuntimeIsolationTier;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let untrusted = |runtime: &str| {
        let runtime = runtime.to_string();
        docker_spec(move |v| {
            v["Config"]["Labels"]["harbormaster.io/trust"] = json!("untrusted");
            hc(v)["Runtime"] = json!(runtime);
        })
    };
    let no_remap = Facts {
        daemon: Some(DaemonFacts::from_info(&read(
            "docker/info-seccomp-only.json",
        ))),
        ..Facts::none()
    };
    assert_eq!(no_remap.outcome(&untrusted("runc"), check), Fail);
    assert_eq!(no_remap.outcome(&untrusted("runsc"), check), Pass);
    assert_eq!(
        d().outcome(&untrusted("runc"), check),
        Pass,
        "userns-remap hardens the tier"
    );

    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_untrusted = |class: Option<&str>| {
        let class = class.map(String::from);
        k8s_spec(move |v| {
            v["spec"]["template"]["metadata"]["labels"]["harbormaster.io/trust"] =
                json!("multi-tenant");
            if let Some(class) = class {
                pod(v)["runtimeClassName"] = json!(class);
            }
        })
    };
    assert_eq!(k().outcome(&k8s_untrusted(None), check), Fail);
    let mut classes = k();
    classes.classes = Some(vec![RuntimeClassFacts {
        name: "sandboxed".into(),
        handler: "runsc".into(),
    }]);
    assert_eq!(
        classes.outcome(&k8s_untrusted(Some("sandboxed")), check),
        Pass
    );
    assert_eq!(
        k().outcome(&k8s_untrusted(Some("sandboxed")), check),
        Unknown
    );
    assert_eq!(k().outcome(&k8s_untrusted(Some("kata-qemu")), check), Pass);
}

// ---------------------------------------------------------------------------------------------
// 1.D Mounts and devices
// ---------------------------------------------------------------------------------------------

fn docker_bind(source: &str, rw: bool) -> WorkloadSpec {
    let source = source.to_string();
    docker_spec(move |v| {
        v["Mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Type": "bind", "Source": source, "Destination": "/host", "Mode": "", "RW": rw, "Propagation": "rprivate"}));
    })
}

fn k8s_host_path(path: &str, read_only: bool, sub_path: Option<&str>) -> WorkloadSpec {
    let path = path.to_string();
    let sub_path = sub_path.map(String::from);
    k8s_spec(move |v| {
        pod(v)["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "host", "hostPath": {"path": path}}));
        let mut mount = json!({"name": "host", "mountPath": "/host", "readOnly": read_only});
        if let Some(sub) = sub_path {
            mount["subPath"] = json!(sub);
        }
        c0(v)["volumeMounts"].as_array_mut().unwrap().push(mount);
    })
}

#[test]
fn runtime_sockets_are_found_through_parents_var_run_and_pipes() {
    let check = CheckId::MountRuntimeSocket;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let captured = docker::adapt(&read("docker/captured-socket-runner.json")[0]).unwrap();
    assert_eq!(d().one(&captured, check), (Fail, Severity::Critical));
    for source in [
        "/run/docker.sock",
        "/var/run",
        "/run",
        "/var",
        "/",
        "/run/user/1000/docker.sock",
        "/run/containerd",
        "//var/run/./crio/crio.sock",
    ] {
        assert_eq!(
            d().outcome(&docker_bind(source, false), check),
            Fail,
            "{source}"
        );
    }
    assert_eq!(d().outcome(&docker_bind("/srv/data", true), check), Pass);
    let windows = docker::adapt(&read("docker/windows-hyperv.json")[0]).unwrap();
    assert_eq!(
        d().outcome(&windows, check),
        Fail,
        "the docker_engine named pipe"
    );

    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(
        k().outcome(&k8s_host_path("/var/run/docker.sock", true, None), check),
        Fail
    );
    assert_eq!(
        k().outcome(&k8s_host_path("/var", true, Some("run/docker.sock")), check),
        Fail
    );
    assert_eq!(
        k().outcome(&k8s_host_path("/var", true, Some("lib/app-cache")), check),
        Pass,
        "subPath narrows the exposure"
    );
    let socket_type = k8s_spec(|v| {
        pod(v)["volumes"].as_array_mut().unwrap().push(
            json!({"name": "s", "hostPath": {"path": "/opt/agent/agent.sock", "type": "Socket"}}),
        );
    });
    assert_eq!(k().one(&socket_type, check), (Fail, Severity::High));
}

#[test]
fn named_volumes_are_unknown_until_their_options_are_known() {
    let check = CheckId::MountRuntimeSocket;
    let base = base_d();
    assert_eq!(Facts::none().outcome(&base, check), Unknown);
    assert_eq!(
        Facts::none().outcome(&base, CheckId::MountHostPathAny),
        Unknown
    );
    let mut disguised = d();
    disguised.volumes.as_mut().unwrap().insert(
        "shop_api-data".into(),
        VolumeFacts::from_inspect(&json!({
            "Name": "shop_api-data", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/shop_api-data/_data",
            "Options": {"type": "none", "o": "bind", "device": "/var/run"}
        }))
        .unwrap(),
    );
    assert_eq!(disguised.outcome(&base, check), Fail);
    assert_eq!(disguised.outcome(&base, CheckId::MountHostPathAny), Fail);
}

#[test]
fn sensitive_host_paths_fail_by_equality_ancestry_and_descent_with_severity_by_write_access() {
    let check = CheckId::MountSensitiveHostPath;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_bind("/etc", false), check),
        (Fail, Severity::High)
    );
    assert_eq!(
        d().one(&docker_bind("/etc/", true), check),
        (Fail, Severity::Critical)
    );
    assert_eq!(
        d().one(&docker_bind("/", false), check),
        (Fail, Severity::High)
    );
    assert_eq!(
        d().one(&docker_bind("/var/lib/kubelet/pods", true), check),
        (Fail, Severity::Critical)
    );
    assert_eq!(d().outcome(&docker_bind("/srv/www", true), check), Pass);

    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(
        k().one(&k8s_host_path("/var", false, None), check),
        (Fail, Severity::Critical),
        "/var holds /var/lib/kubelet"
    );
    assert_eq!(
        k().one(&k8s_host_path("/var/log", true, None), check),
        (Fail, Severity::Medium)
    );
    assert_eq!(
        k().one(&k8s_host_path("/home/ci/.aws", true, None), check),
        (Fail, Severity::Medium)
    );
    let mut exporter = k();
    exporter.settings.read_only_path_exceptions = vec!["/proc".into()];
    assert_eq!(
        exporter.outcome(&k8s_host_path("/proc", true, None), check),
        Pass
    );
    assert_eq!(
        exporter.outcome(&k8s_host_path("/proc", false, None), check),
        Fail
    );
}

#[test]
fn any_host_path_fails_even_when_no_container_mounts_it() {
    let check = CheckId::MountHostPathAny;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_bind("/srv/www", false), check),
        (Fail, Severity::Medium)
    );
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let unmounted = k8s_spec(|v| {
        pod(v)["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "x", "hostPath": {"path": "/srv"}}));
    });
    assert_eq!(k().outcome(&unmounted, check), Fail);
}

#[test]
fn writable_host_paths_fail_per_container() {
    let check = CheckId::MountHostPathWritable;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_bind("/srv/www", true), check),
        (Fail, Severity::High)
    );
    assert_eq!(d().outcome(&docker_bind("/srv/www", false), check), Pass);
    assert_eq!(
        k().outcome(&k8s_host_path("/srv", false, None), check),
        Fail
    );
    assert_eq!(k().outcome(&k8s_host_path("/srv", true, None), check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
}

#[test]
fn shared_propagation_fails_and_host_to_container_is_informational() {
    let check = CheckId::MountPropagationShared;
    let shared = docker_spec(|v| {
        v["Mounts"].as_array_mut().unwrap().push(json!({"Type": "bind", "Source": "/mnt", "Destination": "/mnt", "RW": false, "Propagation": "rshared"}));
    });
    assert_eq!(d().one(&shared, check), (Fail, Severity::Medium));
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let bidirectional =
        k8s_spec(|v| c0(v)["volumeMounts"][0]["mountPropagation"] = json!("Bidirectional"));
    assert_eq!(k().one(&bidirectional, check), (Fail, Severity::Medium));
    let host_to_container =
        k8s_spec(|v| c0(v)["volumeMounts"][0]["mountPropagation"] = json!("HostToContainer"));
    assert_eq!(k().one(&host_to_container, check), (Fail, Severity::Info));
    assert_eq!(k().outcome(&base_k(), check), Pass);
}

#[test]
fn restricted_volume_types_allow_only_the_listed_sources() {
    let check = CheckId::MountRestrictedVolumeTypes;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let nfs = k8s_spec(|v| {
        pod(v)["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "n", "nfs": {"server": "nfs", "path": "/x"}}));
    });
    assert_eq!(k().one(&nfs, check), (Fail, Severity::Low));
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn host_devices_fail_by_kind_and_device_requests_are_informational() {
    let check = CheckId::DevHostDevices;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let disk = docker_spec(
        |v| hc(v)["Devices"] = json!([{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]),
    );
    assert_eq!(d().one(&disk, check), (Fail, Severity::High));
    let fuse = docker_spec(
        |v| hc(v)["Devices"] = json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]),
    );
    assert_eq!(d().one(&fuse, check), (Fail, Severity::Medium));
    let wildcard = docker_spec(|v| hc(v)["DeviceCgroupRules"] = json!(["c *:* rwm"]));
    assert_eq!(d().one(&wildcard, check), (Fail, Severity::High));
    let gpu = docker_spec(|v| {
        hc(v)["DeviceRequests"] =
            json!([{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}])
    });
    assert_eq!(d().one(&gpu, check), (Fail, Severity::Info));
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_gpu = k8s_spec(|v| c0(v)["resources"]["limits"]["nvidia.com/gpu"] = json!(1));
    assert_eq!(k().one(&k8s_gpu, check), (Fail, Severity::Info));
}

// ---------------------------------------------------------------------------------------------
// 1.E Kernel confinement
// ---------------------------------------------------------------------------------------------

#[test]
fn seccomp_unconfined_in_every_docker_form() {
    let check = CheckId::SeccompUnconfined;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    for opt in [
        "seccomp=unconfined",
        "seccomp:unconfined",
        r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#,
        r#"seccomp={"defaultAction":"SCMP_ACT_LOG"}"#,
    ] {
        let spec = docker_spec(|v| hc(v)["SecurityOpt"] = json!([opt]));
        assert_eq!(d().one(&spec, check), (Fail, Severity::High), "{opt}");
    }
    let confined = docker_spec(|v| {
        hc(v)["SecurityOpt"] = json!([r#"seccomp={"defaultAction":"SCMP_ACT_ERRNO"}"#])
    });
    assert_eq!(d().outcome(&confined, check), Pass);
    let privileged = docker_spec(|v| hc(v)["Privileged"] = json!(true));
    assert_eq!(
        d().outcome(&privileged, check),
        Fail,
        "privileged implies unconfined"
    );
    let privileged_with_profile = docker_spec(|v| {
        hc(v)["Privileged"] = json!(true);
        hc(v)["SecurityOpt"] = json!(["seccomp=/etc/docker/seccomp/strict.json"]);
    });
    assert_eq!(d().outcome(&privileged_with_profile, check), Pass);
    assert_eq!(
        Facts::none().outcome(&base_d(), check),
        Unknown,
        "the daemon default is unknown"
    );
    let no_seccomp = Facts {
        daemon: Some(DaemonFacts::from_info(
            &json!({"ServerVersion": "20.10", "SecurityOptions": ["name=apparmor"]}),
        )),
        ..Facts::none()
    };
    assert_eq!(no_seccomp.outcome(&base_d(), check), Fail);
}

#[test]
fn seccomp_unconfined_in_every_kubernetes_form() {
    let check = CheckId::SeccompUnconfined;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    // The container value wins over the pod's RuntimeDefault (E3).
    let container = k8s_spec(|v| sc(v)["seccompProfile"] = json!({"type": "Unconfined"}));
    assert_eq!(k().outcome(&container, check), Fail);
    let pod_annotation = k8s_spec(|v| {
        v["spec"]["template"]["metadata"]["annotations"] =
            json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"});
    });
    assert_eq!(
        k().outcome(&pod_annotation, check),
        Fail,
        "the legacy annotation fails even with a RuntimeDefault field"
    );
    let container_annotation = k8s_spec(|v| {
        v["spec"]["template"]["metadata"]["annotations"] =
            json!({"container.seccomp.security.alpha.kubernetes.io/checkout": "unconfined"});
    });
    assert_eq!(k().outcome(&container_annotation, check), Fail);
    let privileged = k8s_spec(|v| sc(v)["privileged"] = json!(true));
    assert_eq!(k().outcome(&privileged, check), Fail);
    let unset = k8s_spec(|v| remove(&mut pod(v)["securityContext"], "seccompProfile"));
    assert_eq!(k().outcome(&unset, check), Unknown);
    let mut seccomp_default = k();
    seccomp_default.kubelet.seccomp_default = Some(true);
    assert_eq!(seccomp_default.outcome(&unset, check), Pass);
    seccomp_default.kubelet.seccomp_default = Some(false);
    assert_eq!(seccomp_default.outcome(&unset, check), Fail);
}

#[test]
fn seccomp_must_be_explicit_in_kubernetes_only() {
    let check = CheckId::SeccompNotExplicit;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let unset = k8s_spec(|v| remove(&mut pod(v)["securityContext"], "seccompProfile"));
    assert_eq!(k().one(&unset, check), (Fail, Severity::Medium));
    let container_localhost = k8s_spec(|v| {
        remove(&mut pod(v)["securityContext"], "seccompProfile");
        sc(v)["seccompProfile"] =
            json!({"type": "Localhost", "localhostProfile": "profiles/app.json"});
    });
    assert_eq!(k().outcome(&container_localhost, check), Pass);
    let container_unconfined =
        k8s_spec(|v| sc(v)["seccompProfile"] = json!({"type": "Unconfined"}));
    assert_eq!(k().outcome(&container_unconfined, check), Fail);
    let windows = kubernetes::adapt(&read("kubernetes/windows-hostprocess.yaml")).unwrap();
    assert_eq!(k().outcome(&windows, check), NA);
}

#[test]
fn apparmor_unconfined_in_docker_and_privileged_implies_it() {
    let check = CheckId::ApparmorUnconfined;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let unconfined = docker_spec(|v| {
        v["AppArmorProfile"] = json!("unconfined");
        hc(v)["SecurityOpt"] = json!(["no-new-privileges", "apparmor=unconfined"]);
    });
    assert_eq!(d().one(&unconfined, check), (Fail, Severity::Medium));
    let unconfined_root = docker_spec(|v| {
        v["AppArmorProfile"] = json!("unconfined");
        v["Config"]["User"] = json!("");
    });
    assert_eq!(d().one(&unconfined_root, check), (Fail, Severity::High));
    let privileged_created = docker_spec(|v| {
        v["AppArmorProfile"] = json!("");
        hc(v)["Privileged"] = json!(true);
    });
    assert_eq!(
        d().outcome(&privileged_created, check),
        Fail,
        "privileged implies unconfined"
    );
    let captured = docker::adapt(&read("docker/captured-privileged.json")[0]).unwrap();
    let no_apparmor = Facts {
        daemon: Some(DaemonFacts::from_info(&read(
            "docker/info-seccomp-only.json",
        ))),
        ..Facts::none()
    };
    assert_eq!(
        no_apparmor.outcome(&captured, check),
        NA,
        "the host has no AppArmor"
    );
    assert_eq!(Facts::none().outcome(&captured, check), Unknown);
}

#[test]
fn apparmor_unconfined_in_kubernetes_fields_annotations_and_privileged() {
    let check = CheckId::ApparmorUnconfined;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let field =
        k8s_spec(|v| pod(v)["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"}));
    assert_eq!(k().outcome(&field, check), Fail);
    let annotation = k8s_spec(|v| {
        v["spec"]["template"]["metadata"]["annotations"] =
            json!({"container.apparmor.security.beta.kubernetes.io/checkout": "unconfined"});
    });
    assert_eq!(k().outcome(&annotation, check), Fail);
    let localhost = k8s_spec(|v| {
        v["spec"]["template"]["metadata"]["annotations"] = json!({"container.apparmor.security.beta.kubernetes.io/checkout": "localhost/k8s-apparmor-example"});
    });
    assert_eq!(k().outcome(&localhost, check), Pass);
    let privileged = k8s_spec(|v| sc(v)["privileged"] = json!(true));
    assert_eq!(k().outcome(&privileged, check), Fail);
}

#[test]
fn selinux_label_disable_and_custom_types_fail() {
    let check = CheckId::SelinuxDisabledOrCustom;
    let selinux_host = Facts {
        daemon: Some(DaemonFacts::from_info(
            &json!({"ServerVersion": "24.0", "SecurityOptions": ["name=seccomp,profile=builtin", "name=selinux"]}),
        )),
        ..Facts::none()
    };
    assert_eq!(selinux_host.outcome(&base_d(), check), Pass);
    let disable = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["label=disable"]));
    assert_eq!(selinux_host.one(&disable, check), (Fail, Severity::High));
    let spc = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["label:type:spc_t"]));
    assert_eq!(selinux_host.one(&spc, check), (Fail, Severity::High));
    let custom = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["label=type:svirt_apache_t"]));
    assert_eq!(selinux_host.one(&custom, check), (Fail, Severity::Medium));
    let level = docker_spec(|v| hc(v)["SecurityOpt"] = json!(["label=level:s0:c100,c200"]));
    assert_eq!(selinux_host.outcome(&level, check), Pass);
    // The engine adds label=disable itself for host PID containers (E13).
    let captured = docker::adapt(&read("docker/captured-socket-runner.json")[0]).unwrap();
    assert_eq!(selinux_host.outcome(&captured, check), Fail);
    assert_eq!(d().outcome(&disable, check), NA, "the host has no SELinux");

    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_spc = k8s_spec(|v| sc(v)["seLinuxOptions"] = json!({"type": "spc_t"}));
    assert_eq!(k().one(&k8s_spc, check), (Fail, Severity::High));
    let k8s_user =
        k8s_spec(|v| pod(v)["securityContext"]["seLinuxOptions"] = json!({"user": "system_u"}));
    assert_eq!(k().outcome(&k8s_user, check), Fail);
    let k8s_level = k8s_spec(|v| {
        sc(v)["seLinuxOptions"] = json!({"level": "s0:c123,c456", "type": "container_t"})
    });
    assert_eq!(k().outcome(&k8s_level, check), Pass);
}

#[test]
fn unmasked_proc_fails_unless_in_a_user_namespace() {
    let check = CheckId::ProcUnmasked;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let unmasked = docker_spec(|v| {
        hc(v)["MaskedPaths"] = json!([]);
        hc(v)["ReadonlyPaths"] = json!([]);
    });
    assert_eq!(d().one(&unmasked, check), (Fail, Severity::High));
    let defaults = docker_spec(|v| hc(v)["MaskedPaths"] = json!(null));
    assert_eq!(
        d().outcome(&defaults, check),
        Pass,
        "null means engine defaults"
    );
    let privileged = docker_spec(|v| hc(v)["Privileged"] = json!(true));
    assert_eq!(d().outcome(&privileged, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_unmasked = k8s_spec(|v| sc(v)["procMount"] = json!("Unmasked"));
    assert_eq!(k().outcome(&k8s_unmasked, check), Fail);
    let userns = k8s_spec(|v| {
        sc(v)["procMount"] = json!("Unmasked");
        pod(v)["hostUsers"] = json!(false);
    });
    assert_eq!(k().outcome(&userns, check), Pass);
}

#[test]
fn unsafe_sysctls_fail_with_severity_by_source() {
    let check = CheckId::SysctlUnsafe;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let unsafe_docker = docker_spec(|v| hc(v)["Sysctls"] = json!({"kernel.msgmax": "65536"}));
    assert_eq!(d().one(&unsafe_docker, check), (Fail, Severity::Low));
    let safe_docker =
        docker_spec(|v| hc(v)["Sysctls"] = json!({"net.ipv4.ip_unprivileged_port_start": "0"}));
    assert_eq!(d().outcome(&safe_docker, check), Pass);
    let unsafe_k8s = k8s_spec(|v| {
        pod(v)["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "65536"}])
    });
    assert_eq!(k().one(&unsafe_k8s, check), (Fail, Severity::Medium));
    let safe_k8s = k8s_spec(|v| {
        pod(v)["securityContext"]["sysctls"] =
            json!([{"name": "net/ipv4/tcp_keepalive_time", "value": "600"}])
    });
    assert_eq!(k().outcome(&safe_k8s, check), Pass);
}

// ---------------------------------------------------------------------------------------------
// 1.F Identity
// ---------------------------------------------------------------------------------------------

fn docker_user(user: &str) -> WorkloadSpec {
    let user = user.to_string();
    docker_spec(move |v| v["Config"]["User"] = json!(user))
}

#[test]
fn docker_root_users_in_every_spelling_fail() {
    let check = CheckId::UserRunsAsRoot;
    let plain = Facts::none();
    for user in ["", "0", "0:0", "root", "root:root", "0:1000"] {
        assert_eq!(
            plain.one(&docker_user(user), check),
            (Fail, Severity::High),
            "{user:?}"
        );
    }
    assert_eq!(plain.outcome(&docker_user("10001:10001"), check), Pass);
    assert_eq!(
        plain.outcome(&docker_user("app"), check),
        Unknown,
        "needs the image's /etc/passwd"
    );
    // userns-remap: downgraded, not passed (E14).
    assert_eq!(d().one(&docker_user("0"), check), (Fail, Severity::Medium));
    let windows = docker::adapt(&read("docker/windows-hyperv.json")[0]).unwrap();
    assert_eq!(
        plain.outcome(&windows, check),
        Fail,
        "ContainerAdministrator"
    );
}

#[test]
fn kubernetes_root_is_decided_container_then_pod() {
    let check = CheckId::UserRunsAsRoot;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let container_root = k8s_spec(|v| sc(v)["runAsUser"] = json!(0));
    assert_eq!(
        k().outcome(&container_root, check),
        Fail,
        "the container value wins"
    );
    let unknown = k8s_spec(|v| {
        remove(&mut pod(v)["securityContext"], "runAsUser");
        remove(&mut pod(v)["securityContext"], "runAsNonRoot");
    });
    assert_eq!(k().outcome(&unknown, check), Unknown);
    let non_root_only = k8s_spec(|v| remove(&mut pod(v)["securityContext"], "runAsUser"));
    assert_eq!(k().outcome(&non_root_only, check), Pass);
    let userns = k8s_spec(|v| {
        sc(v)["runAsUser"] = json!(0);
        pod(v)["hostUsers"] = json!(false);
    });
    assert_eq!(k().one(&userns, check), (Fail, Severity::Medium));
    let windows = kubernetes::adapt(&read("kubernetes/windows-hostprocess.yaml")).unwrap();
    assert_eq!(k().outcome(&windows, check), Fail, "NT AUTHORITY\\SYSTEM");
}

#[test]
fn run_as_non_root_follows_pss_precedence() {
    let check = CheckId::UserRunAsNonRootUnset;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let container_false = k8s_spec(|v| sc(v)["runAsNonRoot"] = json!(false));
    assert_eq!(
        k().outcome(&container_false, check),
        Fail,
        "explicit false fails under a pod-level true"
    );
    let unset = k8s_spec(|v| remove(&mut pod(v)["securityContext"], "runAsNonRoot"));
    assert_eq!(k().outcome(&unset, check), Fail);
    let container_true = k8s_spec(|v| {
        remove(&mut pod(v)["securityContext"], "runAsNonRoot");
        sc(v)["runAsNonRoot"] = json!(true);
    });
    assert_eq!(k().outcome(&container_true, check), Pass);
    let userns = k8s_spec(|v| {
        remove(&mut pod(v)["securityContext"], "runAsNonRoot");
        pod(v)["hostUsers"] = json!(false);
    });
    assert_eq!(k().outcome(&userns, check), Pass);
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn run_as_user_zero_is_a_contradiction_with_run_as_non_root() {
    let check = CheckId::UserRunAsUserZero;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    // runAsNonRoot: true with runAsUser: 0 is admitted but cannot start (E4).
    let contradiction = k8s_spec(|v| pod(v)["securityContext"]["runAsUser"] = json!(0));
    assert_eq!(k().one(&contradiction, check), (Fail, Severity::High));
    assert_eq!(
        k().outcome(&contradiction, CheckId::UserRunAsNonRootUnset),
        Pass
    );
    // The pod's 0 fails even when the container overrides it (PSA).
    let overridden = k8s_spec(|v| {
        pod(v)["securityContext"]["runAsUser"] = json!(0);
        sc(v)["runAsUser"] = json!(10001);
    });
    assert_eq!(k().outcome(&overridden, check), Fail);

    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().outcome(&docker_user(""), check),
        Pass,
        "not set explicitly"
    );
    assert_eq!(
        d().outcome(&docker_user("0"), check),
        Unknown,
        "needs the image config"
    );
    let image_id = base_d().containers[0].image_id.clone().unwrap().to_string();
    let mut images = d();
    images.images = Some(HashMap::from([(
        image_id.clone(),
        ImageFacts {
            id: image_id,
            user: Some("app".into()),
            ..ImageFacts::default()
        },
    )]));
    assert_eq!(images.outcome(&docker_user("0"), check), Fail);
}

#[test]
fn root_groups_fail_in_user_strings_group_add_and_pod_groups() {
    let check = CheckId::UserRootGroup;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_user("1000:0"), check),
        (Fail, Severity::Low)
    );
    assert_eq!(d().outcome(&docker_user("1000:root"), check), Fail);
    let group_add = docker_spec(|v| hc(v)["GroupAdd"] = json!(["0"]));
    assert_eq!(d().outcome(&group_add, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let statefulset = kubernetes::adapt(&read("kubernetes/statefulset.yaml")).unwrap();
    assert_eq!(
        k().outcome(&statefulset, check),
        Fail,
        "fsGroup 0 and supplementalGroups [0]"
    );
    let group = k8s_spec(|v| sc(v)["runAsGroup"] = json!(0));
    assert_eq!(k().outcome(&group, check), Fail);
}

#[test]
fn low_ids_are_an_opt_in_check() {
    let check = CheckId::UserLowUidGid;
    assert_eq!(d().outcome(&docker_user("1000:1000"), check), NA);
    let mut opted = d();
    opted.settings.opt_in_low_uid_gid = true;
    assert_eq!(
        opted.one(&docker_user("1000:1000"), check),
        (Fail, Severity::Low)
    );
    assert_eq!(opted.outcome(&docker_user("10001:10001"), check), Pass);
    let mut opted_k = k();
    opted_k.settings.opt_in_low_uid_gid = true;
    assert_eq!(opted_k.outcome(&base_k(), check), Pass);
    let low = k8s_spec(|v| sc(v)["runAsUser"] = json!(1000));
    assert_eq!(opted_k.outcome(&low, check), Fail);
}

// ---------------------------------------------------------------------------------------------
// 1.G Filesystem
// ---------------------------------------------------------------------------------------------

#[test]
fn writable_root_filesystems_fail_except_on_windows() {
    let check = CheckId::FsRootfsWritable;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let writable = docker_spec(|v| hc(v)["ReadonlyRootfs"] = json!(false));
    assert_eq!(d().one(&writable, check), (Fail, Severity::Low));
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let unset = k8s_spec(|v| remove(sc(v), "readOnlyRootFilesystem"));
    assert_eq!(k().outcome(&unset, check), Fail);
    let windows = docker::adapt(&read("docker/windows-hyperv.json")[0]).unwrap();
    assert_eq!(d().outcome(&windows, check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.H Network
// ---------------------------------------------------------------------------------------------

fn docker_binding(host_ip: &str, host_port: &str) -> WorkloadSpec {
    let binding = json!([{"HostIp": host_ip, "HostPort": host_port}]);
    docker_spec(move |v| {
        hc(v)["PortBindings"] = json!({"8080/tcp": binding.clone()});
        v["NetworkSettings"]["Ports"] = json!({"8080/tcp": binding});
    })
}

fn k8s_host_port(host_port: i64, host_ip: Option<&str>) -> WorkloadSpec {
    let host_ip = host_ip.map(String::from);
    k8s_spec(move |v| {
        c0(v)["ports"][0]["hostPort"] = json!(host_port);
        if let Some(ip) = host_ip {
            c0(v)["ports"][0]["hostIP"] = json!(ip);
        }
    })
}

#[test]
fn host_ports_fail_in_kubernetes_and_are_listed_for_docker() {
    let check = CheckId::NetHostPort;
    assert_eq!(d().one(&base_d(), check), (Fail, Severity::Info));
    let none = docker_spec(|v| {
        hc(v)["PortBindings"] = json!({});
        v["NetworkSettings"]["Ports"] = json!({"8080/tcp": null});
    });
    assert_eq!(d().outcome(&none, check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(
        k().one(&k8s_host_port(8080, None), check),
        (Fail, Severity::Medium)
    );
    assert_eq!(
        k().one(&k8s_host_port(8080, Some("127.0.0.1")), check),
        (Fail, Severity::Low)
    );
    // Live hostNetwork Pods get hostPort = containerPort by defaulting: not counted twice (E10).
    let live = kubernetes::adapt(&read("kubernetes/pod-live-ingress.json")).unwrap();
    assert_eq!(k().of(&live, check, "controller").0, Pass);
}

#[test]
fn ports_bound_to_all_interfaces_fail_in_every_spelling() {
    let check = CheckId::NetBindAllInterfaces;
    assert_eq!(d().outcome(&base_d(), check), Pass, "127.0.0.1");
    for ip in ["", "0.0.0.0", "::"] {
        assert_eq!(
            d().one(&docker_binding(ip, "8080"), check),
            (Fail, Severity::Medium),
            "{ip:?}"
        );
    }
    let publish_all = docker_spec(|v| hc(v)["PublishAllPorts"] = json!(true));
    assert_eq!(d().outcome(&publish_all, check), Fail);
    assert_eq!(k().outcome(&k8s_host_port(8080, None), check), Fail);
    assert_eq!(
        k().outcome(&k8s_host_port(8080, Some("10.0.0.5")), check),
        Pass
    );
    assert_eq!(k().outcome(&base_k(), check), Pass);
}

#[test]
fn host_ports_below_1024_fail() {
    let check = CheckId::NetPrivilegedHostPort;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_binding("127.0.0.1", "80"), check),
        (Fail, Severity::Low)
    );
    assert_eq!(
        d().outcome(&docker_binding("127.0.0.1", "1024"), check),
        Pass
    );
    assert_eq!(k().outcome(&k8s_host_port(443, None), check), Fail);
    assert_eq!(k().outcome(&k8s_host_port(8443, None), check), Pass);
}

#[test]
fn probes_that_target_another_host_fail() {
    let check = CheckId::NetProbeHostField;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let probe = k8s_spec(|v| c0(v)["livenessProbe"]["httpGet"]["host"] = json!("169.254.169.254"));
    assert_eq!(k().one(&probe, check), (Fail, Severity::Medium));
    let hook = k8s_spec(|v| {
        c0(v)["lifecycle"] = json!({"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}})
    });
    assert_eq!(k().outcome(&hook, check), Fail);
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn the_default_bridge_fails_for_docker() {
    let check = CheckId::NetDefaultBridge;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let captured = docker::adapt(&read("docker/captured-hardened.json")[0]).unwrap();
    assert_eq!(d().one(&captured, check), (Fail, Severity::Low));
    let bridge = docker_spec(|v| hc(v)["NetworkMode"] = json!("bridge"));
    assert_eq!(d().outcome(&bridge, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), NA);
}

#[test]
fn network_policies_must_select_the_pods_for_ingress_and_egress() {
    let check = CheckId::NetNoNetworkPolicy;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(Facts::none().outcome(&base_k(), check), Unknown);
    let mut ingress_only = k();
    ingress_only.policies = Some(vec![NetworkPolicy::from_object(&json!({
        "kind": "NetworkPolicy",
        "metadata": {"name": "checkout-in", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}}, "ingress": [{}]}
    })).unwrap()]);
    assert_eq!(ingress_only.one(&base_k(), check), (Fail, Severity::Medium));
    let mut elsewhere = k();
    elsewhere.policies.as_mut().unwrap()[0].namespace = "other".into();
    assert_eq!(
        elsewhere.outcome(&base_k(), check),
        Fail,
        "policies of other namespaces do not count"
    );
    let mut empty = k();
    empty.policies = Some(Vec::new());
    assert_eq!(empty.outcome(&base_k(), check), Fail);
    assert_eq!(d().outcome(&base_d(), check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.I Resources
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_limits_are_required_for_long_running_containers() {
    let check = CheckId::ResMemoryLimitMissing;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let unlimited = docker_spec(|v| hc(v)["Memory"] = json!(0));
    assert_eq!(d().one(&unlimited, check), (Fail, Severity::Medium));
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let none = k8s_spec(|v| remove(&mut c0(v)["resources"], "limits"));
    assert_eq!(k().outcome(&none, check), Fail);
    let zero = k8s_spec(|v| c0(v)["resources"]["limits"]["memory"] = json!("0"));
    assert_eq!(k().outcome(&zero, check), Fail);
    let pod_level = k8s_spec(|v| {
        remove(&mut c0(v)["resources"], "limits");
        pod(v)["resources"] = json!({"limits": {"memory": "1Gi", "cpu": "2"}});
    });
    assert_eq!(k().outcome(&pod_level, check), Pass);
    let agent = kubernetes::adapt(&read("kubernetes/daemonset-node-agent.yaml")).unwrap();
    assert_eq!(
        k().of(&agent, check, "setup"),
        (Fail, Severity::Info),
        "classic init container"
    );
    assert_eq!(
        k().of(&agent, check, "log-shipper"),
        (Fail, Severity::Medium),
        "a sidecar is long-running"
    );
    let live = kubernetes::adapt(&read("kubernetes/pod-live-ingress.json")).unwrap();
    assert_eq!(k().of(&live, check, "debugger-4xk2q").0, NA);
}

#[test]
fn cpu_limits_accept_any_docker_knob_and_can_be_disabled() {
    let check = CheckId::ResCpuLimitMissing;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let none = docker_spec(|v| hc(v)["NanoCpus"] = json!(0));
    assert_eq!(d().one(&none, check), (Fail, Severity::Low));
    let quota = docker_spec(|v| {
        hc(v)["NanoCpus"] = json!(0);
        hc(v)["CpuQuota"] = json!(50000);
    });
    assert_eq!(
        d().outcome(&quota, check),
        Pass,
        "docker-bench falsely flags --cpu-quota"
    );
    let cpuset = docker_spec(|v| {
        hc(v)["NanoCpus"] = json!(0);
        hc(v)["CpusetCpus"] = json!("0-1");
    });
    assert_eq!(d().outcome(&cpuset, check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let k8s_none = k8s_spec(|v| remove(&mut c0(v)["resources"]["limits"], "cpu"));
    assert_eq!(k().outcome(&k8s_none, check), Fail);
    let mut relaxed = k();
    relaxed.settings.require_cpu_limits = false;
    assert_eq!(relaxed.outcome(&k8s_none, check), NA);
}

#[test]
fn pid_limits_treat_null_zero_and_minus_one_as_unlimited() {
    let check = CheckId::ResPidsLimitMissing;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    for value in [json!(null), json!(0), json!(-1)] {
        let spec = docker_spec(|v| hc(v)["PidsLimit"] = value.clone());
        assert_eq!(d().one(&spec, check), (Fail, Severity::Medium), "{value}");
    }
    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(Facts::none().outcome(&base_k(), check), Unknown);
    let mut unlimited = k();
    unlimited.kubelet.pod_pids_limit = Some(-1);
    assert_eq!(unlimited.outcome(&base_k(), check), Fail);
}

#[test]
fn requests_are_required_but_defaulted_from_limits() {
    let check = CheckId::ResRequestsMissing;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let limits_only = k8s_spec(|v| remove(&mut c0(v)["resources"], "requests"));
    assert_eq!(k().outcome(&limits_only, check), Pass);
    let none = k8s_spec(|v| remove(c0(v), "resources"));
    assert_eq!(k().one(&none, check), (Fail, Severity::Low));
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn ephemeral_storage_limits_are_required_in_kubernetes() {
    let check = CheckId::ResEphemeralStorageMissing;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let none = k8s_spec(|v| remove(&mut c0(v)["resources"]["limits"], "ephemeral-storage"));
    assert_eq!(k().one(&none, check), (Fail, Severity::Low));
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn default_ulimits_are_reported_for_docker() {
    let check = CheckId::ResUlimitsDefault;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let none = docker_spec(|v| hc(v)["Ulimits"] = json!([]));
    assert_eq!(d().one(&none, check), (Fail, Severity::Info));
    assert_eq!(k().outcome(&base_k(), check), NA);
}

#[test]
fn custom_cgroup_parents_fail_unless_approved() {
    let check = CheckId::ResCgroupParentCustom;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let custom = docker_spec(|v| hc(v)["CgroupParent"] = json!("/batch.slice"));
    assert_eq!(d().one(&custom, check), (Fail, Severity::Low));
    let mut approved = d();
    approved.settings.approved_cgroup_parents = vec!["/batch.slice".into()];
    assert_eq!(approved.outcome(&custom, check), Pass);
    assert_eq!(k().outcome(&base_k(), check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.J Image
// ---------------------------------------------------------------------------------------------

fn docker_image(reference: &str) -> WorkloadSpec {
    let reference = reference.to_string();
    docker_spec(move |v| v["Config"]["Image"] = json!(reference))
}

fn k8s_image(reference: &str, policy: Option<&str>) -> WorkloadSpec {
    let reference = reference.to_string();
    let policy = policy.map(String::from);
    k8s_spec(move |v| {
        c0(v)["image"] = json!(reference);
        match policy {
            Some(policy) => c0(v)["imagePullPolicy"] = json!(policy),
            None => remove(c0(v), "imagePullPolicy"),
        }
    })
}

#[test]
fn mutable_tags_include_implicit_latest_and_registry_ports() {
    let check = CheckId::ImageTagMutable;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    for reference in [
        "nginx",
        "nginx:latest",
        "registry:5000/app",
        "localhost:5000/team/app",
        "app:stable",
    ] {
        assert_eq!(
            d().one(&docker_image(reference), check),
            (Fail, Severity::Medium),
            "{reference}"
        );
    }
    assert_eq!(
        d().outcome(&docker_image("registry:5000/app:1.2.3"), check),
        Pass
    );
    assert_eq!(
        d().outcome(&docker_image("55a8cf3a8159"), check),
        Pass,
        "started by image id"
    );
    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(
        k().outcome(&k8s_image("registry.example.com/app:edge", None), check),
        Fail
    );
}

#[test]
fn digests_must_be_well_formed_to_pin() {
    let check = CheckId::ImageDigestUnpinned;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    assert_eq!(
        d().one(&docker_image("nginx:1.27"), check),
        (Fail, Severity::Low)
    );
    assert_eq!(d().outcome(&docker_image("nginx@sha256:abc"), check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    assert_eq!(k().outcome(&k8s_image("nginx:1.27", None), check), Fail);
}

#[test]
fn pull_policies_follow_the_api_default() {
    let check = CheckId::ImagePullPolicy;
    assert_eq!(k().outcome(&base_k(), check), Pass, "pinned by digest");
    assert_eq!(
        k().one(&k8s_image("nginx:latest", Some("IfNotPresent")), check),
        (Fail, Severity::Low)
    );
    assert_eq!(
        k().outcome(&k8s_image("nginx:latest", Some("Always")), check),
        Pass
    );
    assert_eq!(
        k().outcome(&k8s_image("nginx", None), check),
        Pass,
        "defaulted to Always"
    );
    assert_eq!(
        k().outcome(&k8s_image("nginx:stable", None), check),
        Fail,
        "defaulted to IfNotPresent"
    );
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn registries_are_judged_against_the_allow_list() {
    let check = CheckId::StoreRegistryNotAllowed;
    assert_eq!(d().outcome(&base_d(), check), Unknown, "no allow-list");
    let mut allowed = d();
    allowed.settings.allowed_registries = Some(vec!["registry.example.com/shop".into()]);
    assert_eq!(allowed.outcome(&base_d(), check), Pass);
    assert_eq!(
        allowed.one(&docker_image("docker.io/library/nginx:1.27"), check),
        (Fail, Severity::Medium)
    );
    assert_eq!(
        allowed.outcome(&docker_image("nginx:1.27"), check),
        Fail,
        "implicit docker.io"
    );
    let orphan = kubernetes::adapt(&read("kubernetes/replicaset-orphan.yaml")).unwrap();
    assert_eq!(
        k().outcome(&orphan, check),
        Fail,
        "k8s.gcr.io is deprecated"
    );
    let mut k_allowed = k();
    k_allowed.settings.allowed_registries = Some(vec!["registry.example.com".into()]);
    assert_eq!(k_allowed.outcome(&base_k(), check), Pass);
}

#[test]
fn signatures_need_verifier_data() {
    let check = CheckId::StoreSignatureUnverified;
    assert_eq!(d().outcome(&base_d(), check), Unknown);
    let digest = "sha256:9b2a1d7c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
    let mut verified = d();
    verified.verified = Some(HashSet::from([digest.to_string()]));
    assert_eq!(verified.outcome(&base_d(), check), Pass);
    assert_eq!(
        verified.one(
            &docker_image(&format!("other@sha256:{}", "1".repeat(64))),
            check
        ),
        (Fail, Severity::Medium)
    );
    let mut k_verified = k();
    k_verified.verified = Some(HashSet::new());
    assert_eq!(k_verified.outcome(&base_k(), check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Unknown);
}

#[test]
fn health_checks_and_probes_are_required_for_long_running_workloads() {
    let check = CheckId::ImageHealthcheckMissing;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let none = docker_spec(|v| remove(&mut v["Config"], "Healthcheck"));
    assert_eq!(d().one(&none, check), (Fail, Severity::Low));
    let disabled = docker_spec(|v| v["Config"]["Healthcheck"] = json!({"Test": ["NONE"]}));
    assert_eq!(d().outcome(&disabled, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let no_probes = k8s_spec(|v| {
        remove(c0(v), "livenessProbe");
        remove(c0(v), "readinessProbe");
    });
    assert_eq!(k().outcome(&no_probes, check), Fail);
    let job = kubernetes::adapt(&read("kubernetes/job.yaml")).unwrap();
    assert_eq!(k().outcome(&job, check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.K Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn literal_secrets_fail_by_name_or_by_value() {
    let check = CheckId::SecretsEnvLiteral;
    assert_eq!(
        d().outcome(&base_d(), check),
        Pass,
        "DB_PASSWORD_FILE is a path"
    );
    let by_name =
        docker_spec(|v| v["Config"]["Env"] = json!(["POSTGRES_PASSWORD=s3cr3t", "PATH=/bin"]));
    assert_eq!(d().one(&by_name, check), (Fail, Severity::High));
    let by_value = docker_spec(|v| v["Config"]["Env"] = json!(["CONFIG=AKIAIOSFODNN7EXAMPLE"]));
    assert_eq!(d().outcome(&by_value, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let literal = k8s_spec(|v| {
        c0(v)["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "STRIPE_API_KEY", "value": "sk_live_0123"}))
    });
    assert_eq!(k().outcome(&literal, check), Fail);
    let job = kubernetes::adapt(&read("kubernetes/job.yaml")).unwrap();
    assert_eq!(k().outcome(&job, check), Fail, "a token in the arguments");
}

#[test]
fn secrets_injected_as_environment_fail_in_kubernetes() {
    let check = CheckId::SecretsEnvSecretRef;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let key_ref = k8s_spec(|v| {
        c0(v)["env"].as_array_mut().unwrap().push(json!({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}));
    });
    assert_eq!(k().one(&key_ref, check), (Fail, Severity::Low));
    assert_eq!(k().outcome(&key_ref, CheckId::SecretsEnvLiteral), Pass);
    let env_from = k8s_spec(|v| c0(v)["envFrom"] = json!([{"secretRef": {"name": "app-env"}}]));
    assert_eq!(k().outcome(&env_from, check), Fail);
    assert_eq!(d().outcome(&base_d(), check), NA);
}

#[test]
fn service_account_tokens_resolve_pod_then_service_account_then_true() {
    let check = CheckId::SaTokenAutomount;
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let pod_true = k8s_spec(|v| pod(v)["automountServiceAccountToken"] = json!(true));
    assert_eq!(k().one(&pod_true, check), (Fail, Severity::Medium));
    let from_account = k8s_spec(|v| remove(pod(v), "automountServiceAccountToken"));
    assert_eq!(
        k().outcome(&from_account, check),
        Pass,
        "the ServiceAccount says false"
    );
    assert_eq!(Facts::none().outcome(&from_account, check), Unknown);
    let mut account_default = k();
    account_default.accounts.as_mut().unwrap()[0].automount_token = None;
    assert_eq!(
        account_default.outcome(&from_account, check),
        Fail,
        "nil on both means true"
    );
    let projected = k8s_spec(|v| {
        pod(v)["volumes"].as_array_mut().unwrap().push(json!({"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}));
    });
    assert_eq!(k().one(&projected, check), (Fail, Severity::Info));
    assert_eq!(d().outcome(&base_d(), check), NA);
}

// ---------------------------------------------------------------------------------------------
// 1.L Runtime
// ---------------------------------------------------------------------------------------------

#[test]
fn exec_sessions_are_judged_from_exec_facts_and_ephemeral_containers() {
    let check = CheckId::RunExecPrivilegedOrRoot;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let with_exec = docker_spec(|v| v["ExecIDs"] = json!(["e1f2"]));
    assert_eq!(d().outcome(&with_exec, check), Unknown);
    let mut privileged = d();
    privileged.exec = Some(vec![ExecFacts {
        id: "e1f2".into(),
        privileged: true,
        user: String::new(),
    }]);
    assert_eq!(privileged.one(&with_exec, check), (Fail, Severity::High));
    let mut root = d();
    root.exec = Some(vec![ExecFacts {
        id: "e1f2".into(),
        privileged: false,
        user: "root".into(),
    }]);
    assert_eq!(root.outcome(&with_exec, check), Fail);
    let mut plain = d();
    plain.exec = Some(vec![ExecFacts {
        id: "e1f2".into(),
        privileged: false,
        user: String::new(),
    }]);
    assert_eq!(plain.outcome(&with_exec, check), Pass);

    assert_eq!(
        k().outcome(&base_k(), check),
        NA,
        "templates have no exec sessions"
    );
    let live = kubernetes::adapt(&read("kubernetes/pod-live-ingress.json")).unwrap();
    assert_eq!(
        k().outcome(&live, check),
        Fail,
        "a privileged debug container"
    );
    let mut calm = read("kubernetes/pod-live-ingress.json");
    calm["spec"]["ephemeralContainers"][0]["securityContext"] = json!({});
    let calm = kubernetes::adapt(&calm).unwrap();
    assert_eq!(k().outcome(&calm, check), Unknown);
}

#[test]
fn sshd_is_found_in_processes_or_by_the_port_heuristic() {
    let check = CheckId::RunSshd;
    assert_eq!(d().outcome(&base_d(), check), Unknown, "no process list");
    let mut processes = d();
    processes.processes = Some(vec!["/app/api --listen :8080".into()]);
    assert_eq!(processes.outcome(&base_d(), check), Pass);
    processes.processes = Some(vec!["/usr/sbin/sshd -D".into()]);
    assert_eq!(processes.one(&base_d(), check), (Fail, Severity::Low));
    let created = docker::adapt(&read("docker/captured-hardened.json")[0]).unwrap();
    assert_eq!(d().outcome(&created, check), NA, "not running");
    let ssh_port = k8s_spec(|v| c0(v)["ports"][0]["containerPort"] = json!(22));
    assert_eq!(k().outcome(&ssh_port, check), Fail);
    assert_eq!(k().outcome(&base_k(), check), Unknown);
}

#[test]
fn restart_loops_fail_above_five_retries() {
    let check = CheckId::RunRestartPolicy;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let many = docker_spec(|v| {
        hc(v)["RestartPolicy"] = json!({"Name": "on-failure", "MaximumRetryCount": 10})
    });
    assert_eq!(d().one(&many, check), (Fail, Severity::Low));
    let always =
        docker_spec(|v| hc(v)["RestartPolicy"] = json!({"Name": "always", "MaximumRetryCount": 0}));
    assert_eq!(d().one(&always, check), (Fail, Severity::Info));
    assert_eq!(k().outcome(&base_k(), check), NA);
}

#[test]
fn sudo_in_the_entrypoint_fails_as_a_word() {
    let check = CheckId::RunSudoInEntrypoint;
    assert_eq!(d().outcome(&base_d(), check), Pass);
    let sudo =
        docker_spec(|v| v["Config"]["Entrypoint"] = json!(["sudo", "-u", "app", "/app/api"]));
    assert_eq!(d().one(&sudo, check), (Fail, Severity::Low));
    let pseudo = docker_spec(|v| v["Config"]["Cmd"] = json!(["--mode=pseudo"]));
    assert_eq!(d().outcome(&pseudo, check), Pass);
    assert_eq!(k().outcome(&base_k(), check), Pass);
    let shell = k8s_spec(|v| c0(v)["command"] = json!(["sh", "-c", "sudo /app/run"]));
    assert_eq!(k().outcome(&shell, check), Fail);
}

// ---------------------------------------------------------------------------------------------
// Adapters
// ---------------------------------------------------------------------------------------------

#[test]
fn the_kubernetes_adapter_visits_init_sidecar_and_ephemeral_containers() {
    use crate::posture::spec::Role;
    let agent = kubernetes::adapt(&read("kubernetes/daemonset-node-agent.yaml")).unwrap();
    let roles: Vec<_> = agent
        .containers
        .iter()
        .map(|c| (&*c.name, c.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("setup", Role::Init),
            ("log-shipper", Role::Sidecar),
            ("agent", Role::Container)
        ]
    );
    assert_eq!(
        &*agent.containers[0].ptr,
        "/spec/template/spec/initContainers/0"
    );
    let live = kubernetes::adapt(&read("kubernetes/pod-live-ingress.json")).unwrap();
    assert!(live.live);
    assert_eq!(live.containers[1].role, Role::Ephemeral);
    assert_eq!(&*live.containers[1].ptr, "/spec/ephemeralContainers/0");
    assert!(live.containers[0]
        .image_id
        .as_deref()
        .is_some_and(|id| id.contains("sha256:d5f8")));
    // Ephemeral containers exist only on Pods.
    let mut template = read("kubernetes/deployment-restricted.yaml");
    pod(&mut template)["ephemeralContainers"] =
        json!([{"name": "x", "image": "busybox", "securityContext": {"privileged": true}}]);
    assert_eq!(kubernetes::adapt(&template).unwrap().containers.len(), 1);
}

#[test]
fn adapters_name_the_pointer_of_a_field_of_the_wrong_type() {
    let mut value = k8s_base();
    sc(&mut value)["privileged"] = json!("yes");
    let err = kubernetes::adapt(&value).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/spec/template/spec/containers/0/securityContext/privileged: expected a boolean"
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}});
    assert!(matches!(
        kubernetes::adapt(&service),
        Err(crate::posture::AdaptError::NotAWorkload(_))
    ));
    let mut container = docker_base();
    hc(&mut container)["CapAdd"] = json!("SYS_ADMIN");
    assert_eq!(
        docker::adapt(&container).unwrap_err().to_string(),
        "/HostConfig/CapAdd: expected a list"
    );
    let mut container = docker_base();
    hc(&mut container)["SecurityOpt"] = json!(["no-new-privileges=maybe"]);
    assert!(docker::adapt(&container).is_err());
}

#[test]
fn docker_binds_are_read_when_mounts_are_missing() {
    let spec = docker_spec(|v| {
        remove(v, "Mounts");
        hc(v)["Binds"] = json!([
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "cache:/cache"
        ]);
        hc(v)["Mounts"] =
            json!([{"Type": "bind", "Source": "/etc", "Target": "/host/etc", "ReadOnly": true}]);
    });
    let facts = Facts::none();
    assert_eq!(facts.outcome(&spec, CheckId::MountRuntimeSocket), Fail);
    assert_eq!(
        facts.one(&spec, CheckId::MountSensitiveHostPath),
        (Fail, Severity::High)
    );
    assert_eq!(
        facts.outcome(&spec, CheckId::MountHostPathWritable),
        Unknown,
        "the named volume `cache`"
    );
}

#[test]
fn a_live_pod_shows_the_injected_service_account_token() {
    let check = CheckId::SaTokenAutomount;
    let live = kubernetes::adapt(&read("kubernetes/pod-live-ingress.json")).unwrap();
    assert_eq!(
        Facts::none().outcome(&live, check),
        Fail,
        "kube-api-access volume injected"
    );
    let mut value = read("kubernetes/pod-live-ingress.json");
    value["spec"]["volumes"] = json!([]);
    value["spec"]["containers"][0]["volumeMounts"] = json!([]);
    let without = kubernetes::adapt(&value).unwrap();
    assert_eq!(Facts::none().outcome(&without, check), Pass);
}

#[test]
fn a_sandboxed_runtime_softens_kernel_surface_findings_but_not_host_exposure() {
    let sandboxed = |mutate: fn(&mut Value)| {
        docker_spec(move |v| {
            hc(v)["Runtime"] = json!("runsc");
            mutate(v);
        })
    };
    let facts = Facts::none();
    let unconfined = sandboxed(|v| hc(v)["SecurityOpt"] = json!(["seccomp=unconfined"]));
    assert_eq!(
        facts.one(&unconfined, CheckId::SeccompUnconfined),
        (Fail, Severity::Medium)
    );
    let sys_admin = sandboxed(|v| hc(v)["CapAdd"] = json!(["SYS_ADMIN"]));
    assert_eq!(
        facts.one(&sys_admin, CheckId::CapsAddCritical),
        (Fail, Severity::High)
    );
    let socket = sandboxed(|v| {
        v["Mounts"].as_array_mut().unwrap().push(json!({"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock", "RW": true}));
    });
    assert_eq!(
        facts.one(&socket, CheckId::MountRuntimeSocket),
        (Fail, Severity::Critical)
    );
    let kata = k8s_spec(|v| {
        pod(v)["runtimeClassName"] = json!("kata-fc");
        sc(v)["capabilities"]["add"] = json!(["SYS_PTRACE"]);
    });
    assert_eq!(
        k().one(&kata, CheckId::CapsAddHighRisk),
        (Fail, Severity::Medium)
    );
}
