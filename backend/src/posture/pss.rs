//! Pod Security Standards conformance: the level a workload meets (privileged / baseline /
//! restricted) and the controls that keep it from the next level.
//!
//! Kubernetes workloads are judged the way Pod Security Admission does at policy version
//! [`POLICY_VERSION`]: exact strings (`sys_chroot` and `CAP_CHOWN` fail the capability
//! controls, `drop: [all]` fails restricted, E1), pod- and container-level values both checked,
//! init, regular and ephemeral containers visited, Windows pods exempt from the Linux-only
//! restricted controls, `hostUsers: false` relaxing runAsNonRoot, runAsUser and the baseline
//! procMount control. Docker containers have no PSA; they get the *equivalent* level from the
//! same controls mapped onto Docker's settings (basis `docker-equivalent`; published ports are
//! not counted as host ports, since publishing is Docker's only way to expose a service).

use std::borrow::Cow;

use serde::Serialize;

use crate::posture::catalog::CheckId;
use crate::posture::checks::confinement::is_safe_sysctl;
use crate::posture::spec::{
    ContainerSpec, DockerSeccomp, NsMode, Platform, ProfileType, SeLinux, UserPart, VolumeSource,
    WorkloadSpec, PSS_BASELINE_CAPS,
};

/// The PSA policy version the assessment encodes.
pub const POLICY_VERSION: &str = "v1.37";

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PssLevel {
    Privileged,
    Baseline,
    Restricted,
}

impl PssLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PssLevel::Privileged => "privileged",
            PssLevel::Baseline => "baseline",
            PssLevel::Restricted => "restricted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "privileged" => Some(PssLevel::Privileged),
            "baseline" => Some(PssLevel::Baseline),
            "restricted" => Some(PssLevel::Restricted),
            _ => None,
        }
    }
}

/// One control a workload violates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PssViolation<'a> {
    /// The level the control belongs to.
    pub level: PssLevel,
    /// The PSS control name (`Privileged Containers`).
    pub control: &'static str,
    /// The PSA check id (`privileged`).
    pub psa_check: &'static str,
    /// The catalog check covering the same ground.
    pub check: CheckId,
    /// The container, or `None` for a pod-level field.
    pub container: Option<&'a str>,
    pub detail: Cow<'static, str>,
}

/// The level a workload meets and why it does not meet the next one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PssAssessment<'a> {
    pub level: PssLevel,
    pub policy_version: &'static str,
    /// `pod-security-admission` or `docker-equivalent`.
    pub basis: &'static str,
    /// The controls that keep the workload from the next level (empty at restricted).
    pub blocking: Vec<PssViolation<'a>>,
    /// Every violated control, both levels.
    pub violations: Vec<PssViolation<'a>>,
}

struct Collector<'a> {
    violations: Vec<PssViolation<'a>>,
}

impl<'a> Collector<'a> {
    fn add(
        &mut self,
        level: PssLevel,
        control: &'static str,
        psa_check: &'static str,
        check: CheckId,
        container: Option<&'a ContainerSpec>,
        detail: impl Into<Cow<'static, str>>,
    ) {
        self.violations.push(PssViolation {
            level,
            control,
            psa_check,
            check,
            container: container.map(|c| &*c.name),
            detail: detail.into(),
        });
    }
}

use PssLevel::{Baseline as B, Restricted as R};

/// Assesses the Pod Security Standards level of a workload.
pub fn assess(spec: &WorkloadSpec) -> PssAssessment<'_> {
    let mut v = Collector {
        violations: Vec::new(),
    };
    let basis = match spec.platform {
        Platform::Kubernetes => {
            kubernetes(spec, &mut v);
            "pod-security-admission"
        }
        Platform::Docker => {
            docker(spec, &mut v);
            "docker-equivalent"
        }
    };
    let violations = v.violations;
    let level = if violations.iter().any(|x| x.level == B) {
        PssLevel::Privileged
    } else if violations.iter().any(|x| x.level == R) {
        PssLevel::Baseline
    } else {
        PssLevel::Restricted
    };
    let next = match level {
        PssLevel::Privileged => Some(B),
        PssLevel::Baseline => Some(R),
        PssLevel::Restricted => None,
    };
    let blocking = violations
        .iter()
        .filter(|x| Some(x.level) == next)
        .cloned()
        .collect();
    PssAssessment {
        level,
        policy_version: POLICY_VERSION,
        basis,
        blocking,
        violations,
    }
}

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn selinux_bad(options: &SeLinux) -> bool {
    !SELINUX_TYPES.contains(&options.type_.as_deref().unwrap_or(""))
        || options.user.is_some()
        || options.role.is_some()
}

fn profile_ok(profile: &Option<ProfileType>) -> bool {
    matches!(
        profile,
        None | Some(ProfileType::RuntimeDefault) | Some(ProfileType::Localhost)
    )
}

fn kubernetes<'a>(spec: &'a WorkloadSpec, v: &mut Collector<'a>) {
    let pod = &spec.pod;
    let windows = pod.os_name.as_deref() == Some("windows");
    let userns = pod.host_users.value == Some(false);

    // Baseline.
    if pod.sc.host_process.is_true() {
        v.add(
            B,
            "HostProcess",
            "windowsHostProcess",
            CheckId::PrivWindowsHostProcess,
            None,
            "pod hostProcess: true",
        );
    }
    for (field, name, check) in [
        (
            &pod.host_network,
            "hostNetwork: true",
            CheckId::NsHostNetwork,
        ),
        (&pod.host_pid, "hostPID: true", CheckId::NsHostPid),
        (&pod.host_ipc, "hostIPC: true", CheckId::NsHostIpc),
    ] {
        if field.value == NsMode::Host {
            v.add(B, "Host Namespaces", "hostNamespaces", check, None, name);
        }
    }
    for volume in &spec.volumes {
        if let VolumeSource::HostPath { path, .. } = &volume.source {
            v.add(
                B,
                "HostPath Volumes",
                "hostPathVolumes",
                CheckId::MountHostPathAny,
                None,
                format!("volume {} is hostPath {path}", volume.name),
            );
        }
    }
    if !profile_ok(&pod.sc.apparmor.value) {
        v.add(
            B,
            "AppArmor",
            "appArmorProfile",
            CheckId::ApparmorUnconfined,
            None,
            "pod appArmorProfile is not RuntimeDefault or Localhost",
        );
    }
    if pod.sc.se_linux.value.as_ref().is_some_and(selinux_bad) {
        v.add(
            B,
            "SELinux",
            "seLinuxOptions",
            CheckId::SelinuxDisabledOrCustom,
            None,
            "pod seLinuxOptions type, user or role not allowed",
        );
    }
    if !profile_ok(&pod.sc.seccomp.value) {
        v.add(
            B,
            "Seccomp",
            "seccompProfile_baseline",
            CheckId::SeccompUnconfined,
            None,
            "pod seccompProfile is Unconfined",
        );
    }
    for sysctl in &pod.sysctls {
        if !is_safe_sysctl(&sysctl.name) {
            v.add(
                B,
                "Sysctls",
                "sysctls",
                CheckId::SysctlUnsafe,
                None,
                format!("sysctl {} is not in the safe set", sysctl.name),
            );
        }
    }
    for c in &spec.containers {
        let cs = Some(c);
        if c.sc.host_process.is_true() {
            v.add(
                B,
                "HostProcess",
                "windowsHostProcess",
                CheckId::PrivWindowsHostProcess,
                cs,
                "hostProcess: true",
            );
        }
        if c.privileged.is_true() {
            v.add(
                B,
                "Privileged Containers",
                "privileged",
                CheckId::PrivPrivileged,
                cs,
                "privileged: true",
            );
        }
        for cap in &c.cap_add.items {
            if !PSS_BASELINE_CAPS.contains(&&*cap.raw) {
                v.add(
                    B,
                    "Capabilities",
                    "capabilities_baseline",
                    CheckId::CapsAddOutsideBaseline,
                    cs,
                    format!("adds {}", cap.raw),
                );
            }
        }
        for port in &c.ports {
            if port.host_port.is_some_and(|p| p != 0) {
                v.add(
                    B,
                    "Host Ports",
                    "hostPorts",
                    CheckId::NetHostPort,
                    cs,
                    format!("hostPort {}", port.host_port.unwrap_or(0)),
                );
            }
        }
        if !c.probes.hosts.is_empty() {
            v.add(
                B,
                "Host Probes / Lifecycle Hooks",
                "hostProbesAndHostLifecycle",
                CheckId::NetProbeHostField,
                cs,
                "a probe or hook sets host",
            );
        }
        if !profile_ok(&c.sc.apparmor.value) {
            v.add(
                B,
                "AppArmor",
                "appArmorProfile",
                CheckId::ApparmorUnconfined,
                cs,
                "appArmorProfile is not RuntimeDefault or Localhost",
            );
        }
        if let Some(annotation) = &c.apparmor_annotation {
            let value = &*annotation.value;
            if !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/"))
            {
                v.add(
                    B,
                    "AppArmor",
                    "appArmorProfile",
                    CheckId::ApparmorUnconfined,
                    cs,
                    format!("AppArmor annotation {value}"),
                );
            }
        }
        if c.sc.se_linux.value.as_ref().is_some_and(selinux_bad) {
            v.add(
                B,
                "SELinux",
                "seLinuxOptions",
                CheckId::SelinuxDisabledOrCustom,
                cs,
                "seLinuxOptions type, user or role not allowed",
            );
        }
        let proc_mount = c.proc_mount.as_deref();
        let unmasked = proc_mount.is_some_and(|p| p != "Default");
        if unmasked && !userns {
            v.add(
                B,
                "/proc Mount Type",
                "procMount",
                CheckId::ProcUnmasked,
                cs,
                format!("procMount {}", proc_mount.unwrap_or("")),
            );
        }
        if !profile_ok(&c.sc.seccomp.value) {
            v.add(
                B,
                "Seccomp",
                "seccompProfile_baseline",
                CheckId::SeccompUnconfined,
                cs,
                "seccompProfile is Unconfined",
            );
        }

        // Restricted.
        if !windows && c.escalation.value != Some(false) {
            v.add(
                R,
                "Privilege Escalation",
                "allowPrivilegeEscalation",
                CheckId::PrivAllowPrivilegeEscalation,
                cs,
                "allowPrivilegeEscalation is not false",
            );
        }
        if !userns {
            let own = c.sc.run_as_non_root.value;
            let pod_value = pod.sc.run_as_non_root.value;
            if own == Some(false) || (own.is_none() && pod_value != Some(true)) {
                v.add(
                    R,
                    "Running as Non-root",
                    "runAsNonRoot",
                    CheckId::UserRunAsNonRootUnset,
                    cs,
                    "runAsNonRoot is not true",
                );
            }
            if c.sc.run_as_user.value == Some(0) {
                v.add(
                    R,
                    "Running as Non-root user",
                    "runAsUser",
                    CheckId::UserRunAsUserZero,
                    cs,
                    "runAsUser: 0",
                );
            }
        }
        if !windows {
            let seccomp = match &c.sc.seccomp.value {
                Some(profile) => Some(profile),
                None => pod.sc.seccomp.value.as_ref(),
            };
            if !matches!(
                seccomp,
                Some(ProfileType::RuntimeDefault) | Some(ProfileType::Localhost)
            ) {
                v.add(
                    R,
                    "Seccomp",
                    "seccompProfile_restricted",
                    CheckId::SeccompNotExplicit,
                    cs,
                    "seccompProfile is not RuntimeDefault or Localhost",
                );
            }
            if !c.cap_drop.items.iter().any(|cap| &*cap.raw == "ALL") {
                v.add(
                    R,
                    "Capabilities",
                    "capabilities_restricted",
                    CheckId::CapsDropAllMissing,
                    cs,
                    "capabilities.drop does not contain ALL",
                );
            }
            for cap in &c.cap_add.items {
                if &*cap.raw != "NET_BIND_SERVICE" {
                    v.add(
                        R,
                        "Capabilities",
                        "capabilities_restricted",
                        CheckId::CapsAddOutsideRestricted,
                        cs,
                        format!("adds {}", cap.raw),
                    );
                }
            }
        }
        if unmasked {
            v.add(
                R,
                "/proc Mount Type",
                "procMount_restricted",
                CheckId::ProcUnmasked,
                cs,
                format!("procMount {}", proc_mount.unwrap_or("")),
            );
        }
    }
    // Restricted, pod level.
    for volume in &spec.volumes {
        let kind: &str = match &volume.source {
            VolumeSource::HostPath { .. } => "hostPath",
            VolumeSource::Projected { .. } => continue,
            VolumeSource::Other(kind) => kind,
            _ => continue,
        };
        if !matches!(
            kind,
            "configMap"
                | "csi"
                | "downwardAPI"
                | "emptyDir"
                | "ephemeral"
                | "image"
                | "persistentVolumeClaim"
                | "secret"
        ) {
            v.add(
                R,
                "Volume Types",
                "restrictedVolumes",
                CheckId::MountRestrictedVolumeTypes,
                None,
                format!("volume {} is {kind}", volume.name),
            );
        }
    }
    if !userns {
        if pod.sc.run_as_non_root.value == Some(false) {
            v.add(
                R,
                "Running as Non-root",
                "runAsNonRoot",
                CheckId::UserRunAsNonRootUnset,
                None,
                "pod runAsNonRoot: false",
            );
        }
        if pod.sc.run_as_user.value == Some(0) {
            v.add(
                R,
                "Running as Non-root user",
                "runAsUser",
                CheckId::UserRunAsUserZero,
                None,
                "pod runAsUser: 0",
            );
        }
    }
    if !windows
        && pod
            .sc
            .seccomp
            .value
            .as_ref()
            .is_some_and(|p| !matches!(p, ProfileType::RuntimeDefault | ProfileType::Localhost))
    {
        v.add(
            R,
            "Seccomp",
            "seccompProfile_restricted",
            CheckId::SeccompNotExplicit,
            None,
            "pod seccompProfile is not RuntimeDefault or Localhost",
        );
    }
}

fn docker<'a>(spec: &'a WorkloadSpec, v: &mut Collector<'a>) {
    let Some(d) = spec.docker.as_deref() else {
        return;
    };
    let pod = &spec.pod;
    for (field, name, check) in [
        (
            &pod.host_network,
            "network mode host",
            CheckId::NsHostNetwork,
        ),
        (&pod.host_pid, "PID mode host", CheckId::NsHostPid),
        (&pod.host_ipc, "IPC mode host", CheckId::NsHostIpc),
    ] {
        if field.value == NsMode::Host {
            v.add(B, "Host Namespaces", "hostNamespaces", check, None, name);
        }
    }
    for volume in &spec.volumes {
        if let VolumeSource::HostPath { path, .. } | VolumeSource::Npipe { path } = &volume.source {
            v.add(
                B,
                "HostPath Volumes",
                "hostPathVolumes",
                CheckId::MountHostPathAny,
                None,
                format!("bind mount of {path}"),
            );
        }
    }
    // Published ports are not mapped to "Host Ports": Docker has no Service abstraction, so
    // publishing is the normal way to expose a container; net.bind_all_interfaces judges it.
    for sysctl in &pod.sysctls {
        if !is_safe_sysctl(&sysctl.name) {
            v.add(
                B,
                "Sysctls",
                "sysctls",
                CheckId::SysctlUnsafe,
                None,
                format!("sysctl {} is not in the safe set", sysctl.name),
            );
        }
    }
    let windows = spec.is_windows();
    for c in &spec.containers {
        let cs = Some(c);
        if c.privileged.is_true() {
            v.add(
                B,
                "Privileged Containers",
                "privileged",
                CheckId::PrivPrivileged,
                cs,
                "privileged",
            );
        }
        for cap in &c.cap_add.items {
            if !PSS_BASELINE_CAPS.contains(&&*cap.norm) {
                v.add(
                    B,
                    "Capabilities",
                    "capabilities_baseline",
                    CheckId::CapsAddOutsideBaseline,
                    cs,
                    format!("adds {}", cap.norm),
                );
            }
        }
        if d.apparmor_profile.as_deref() == Some("unconfined")
            || d.security_opt
                .iter()
                .any(|o| &*o.key == "apparmor" && &*o.value == "unconfined")
        {
            v.add(
                B,
                "AppArmor",
                "appArmorProfile",
                CheckId::ApparmorUnconfined,
                cs,
                "AppArmor unconfined",
            );
        }
        for opt in d.security_opt.iter().filter(|o| &*o.key == "label") {
            let (kind, value) = opt.value.split_once(':').unwrap_or((&opt.value, ""));
            let bad = match kind {
                "disable" | "user" | "role" => true,
                "type" => !SELINUX_TYPES.contains(&value),
                _ => false,
            };
            if bad {
                v.add(
                    B,
                    "SELinux",
                    "seLinuxOptions",
                    CheckId::SelinuxDisabledOrCustom,
                    cs,
                    format!("label={}", opt.value),
                );
            }
        }
        if d.masked_paths.value == Some(0) || d.readonly_paths.value == Some(0) {
            v.add(
                B,
                "/proc Mount Type",
                "procMount",
                CheckId::ProcUnmasked,
                cs,
                "system paths unmasked",
            );
        }
        let seccomp_off = match &d.seccomp {
            Some((_, DockerSeccomp::Unconfined | DockerSeccomp::InlinePermissive(_))) => true,
            Some(_) => false,
            None => c.privileged.is_true(),
        };
        if seccomp_off {
            v.add(
                B,
                "Seccomp",
                "seccompProfile_baseline",
                CheckId::SeccompUnconfined,
                cs,
                "seccomp unconfined",
            );
        }
        if windows {
            continue;
        }
        if c.escalation.value != Some(false) {
            v.add(
                R,
                "Privilege Escalation",
                "allowPrivilegeEscalation",
                CheckId::PrivAllowPrivilegeEscalation,
                cs,
                "no-new-privileges is not set",
            );
        }
        match &d.user.value.user {
            UserPart::Id(id) if *id != 0 => {}
            user if user.is_root() => {
                v.add(
                    R,
                    "Running as Non-root",
                    "runAsNonRoot",
                    CheckId::UserRunsAsRoot,
                    cs,
                    "runs as root",
                );
            }
            _ => {
                v.add(
                    R,
                    "Running as Non-root",
                    "runAsNonRoot",
                    CheckId::UserRunsAsRoot,
                    cs,
                    "runs as a named user that cannot be verified as non-root",
                );
            }
        }
        if !c.cap_drop.items.iter().any(|cap| cap.norm == "ALL") {
            v.add(
                R,
                "Capabilities",
                "capabilities_restricted",
                CheckId::CapsDropAllMissing,
                cs,
                "does not drop ALL",
            );
        }
        for cap in &c.cap_add.items {
            if cap.norm != "NET_BIND_SERVICE" {
                v.add(
                    R,
                    "Capabilities",
                    "capabilities_restricted",
                    CheckId::CapsAddOutsideRestricted,
                    cs,
                    format!("adds {}", cap.norm),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::posture::checks::tests::read;
    use crate::posture::{docker, kubernetes};

    fn k8s(name: &str) -> WorkloadSpec {
        kubernetes::adapt(&read(name)).unwrap()
    }

    fn controls(a: &PssAssessment<'_>) -> Vec<&'static str> {
        let mut ids: Vec<&str> = a.blocking.iter().map(|v| v.psa_check).collect();
        ids.dedup();
        ids
    }

    fn restricted_with(mutate: impl FnOnce(&mut serde_json::Value)) -> WorkloadSpec {
        let mut value = read("kubernetes/deployment-restricted.yaml");
        mutate(&mut value["spec"]["template"]["spec"]);
        kubernetes::adapt(&value).unwrap()
    }

    #[test]
    fn the_hardened_deployment_meets_restricted() {
        let spec = k8s("kubernetes/deployment-restricted.yaml");
        let a = assess(&spec);
        assert_eq!(a.level, PssLevel::Restricted);
        assert!(a.blocking.is_empty() && a.violations.is_empty());
        assert_eq!(a.basis, "pod-security-admission");
    }

    #[test]
    fn lower_case_all_meets_baseline_but_not_restricted() {
        let spec = restricted_with(|pod| {
            pod["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["all"]);
        });
        let a = assess(&spec);
        assert_eq!(a.level, PssLevel::Baseline);
        assert_eq!(controls(&a), vec!["capabilities_restricted"]);
        assert_eq!(
            a.blocking[0].detail,
            "capabilities.drop does not contain ALL"
        );
    }

    #[test]
    fn capability_spellings_are_compared_exactly_like_pod_security_admission() {
        let add = |cap: &'static str| {
            restricted_with(move |pod| {
                pod["containers"][0]["securityContext"]["capabilities"]["add"] = json!([cap]);
            })
        };
        let chown = add("CAP_CHOWN");
        let a = assess(&chown);
        assert_eq!(a.level, PssLevel::Privileged);
        assert_eq!(controls(&a), vec!["capabilities_baseline"]);
        assert_eq!(assess(&add("sys_chroot")).level, PssLevel::Privileged);
        let chown = add("CHOWN");
        let a = assess(&chown);
        assert_eq!(
            a.level,
            PssLevel::Baseline,
            "CHOWN is baseline, not restricted"
        );
        assert_eq!(controls(&a), vec!["capabilities_restricted"]);
        assert_eq!(assess(&add("NET_BIND_SERVICE")).level, PssLevel::Restricted);
    }

    #[test]
    fn a_container_value_overrides_the_pod_value_but_both_are_checked() {
        let unconfined = restricted_with(|pod| {
            pod["containers"][0]["securityContext"]["seccompProfile"] =
                json!({"type": "Unconfined"});
        });
        assert_eq!(assess(&unconfined).level, PssLevel::Privileged);
        let container_false = restricted_with(|pod| {
            pod["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        });
        let a = assess(&container_false);
        assert_eq!(a.level, PssLevel::Baseline);
        assert_eq!(controls(&a), vec!["runAsNonRoot"]);
        let container_sets_profile = restricted_with(|pod| {
            pod["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("seccompProfile");
            pod["containers"][0]["securityContext"]["seccompProfile"] =
                json!({"type": "Localhost", "localhostProfile": "p.json"});
        });
        assert_eq!(assess(&container_sets_profile).level, PssLevel::Restricted);
    }

    #[test]
    fn the_node_agent_is_privileged_and_lists_every_baseline_control() {
        let spec = k8s("kubernetes/daemonset-node-agent.yaml");
        let a = assess(&spec);
        assert_eq!(a.level, PssLevel::Privileged);
        let blocking = controls(&a);
        for control in [
            "hostNamespaces",
            "privileged",
            "capabilities_baseline",
            "hostPathVolumes",
            "hostPorts",
            "hostProbesAndHostLifecycle",
            "appArmorProfile",
            "seLinuxOptions",
            "procMount",
        ] {
            assert!(
                blocking.contains(&control),
                "{control} missing from {blocking:?}"
            );
        }
        assert!(a.blocking.iter().all(|v| v.level == PssLevel::Baseline));
        assert!(a.violations.iter().any(|v| v.level == PssLevel::Restricted));
    }

    #[test]
    fn windows_pods_are_exempt_from_the_linux_only_restricted_controls() {
        let value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "win"},
            "spec": {
                "os": {"name": "windows"},
                "securityContext": {"runAsNonRoot": true, "windowsOptions": {"runAsUserName": "ContainerUser"}},
                "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}]
            }
        });
        let spec = kubernetes::adapt(&value).unwrap();
        let a = assess(&spec);
        assert_eq!(a.level, PssLevel::Restricted, "{:?}", a.violations);
        let host_process = k8s("kubernetes/windows-hostprocess.yaml");
        let a = assess(&host_process);
        assert_eq!(a.level, PssLevel::Privileged);
        assert!(controls(&a).contains(&"windowsHostProcess"));
    }

    #[test]
    fn host_users_false_relaxes_the_user_controls() {
        let userns = restricted_with(|pod| {
            pod["hostUsers"] = json!(false);
            pod["securityContext"]["runAsNonRoot"] = json!(false);
            pod["securityContext"]["runAsUser"] = json!(0);
        });
        assert_eq!(assess(&userns).level, PssLevel::Restricted);
        let host_users = restricted_with(|pod| {
            pod["securityContext"]["runAsUser"] = json!(0);
        });
        let a = assess(&host_users);
        assert_eq!(a.level, PssLevel::Baseline);
        assert_eq!(controls(&a), vec!["runAsUser"]);
    }

    #[test]
    fn docker_containers_get_the_equivalent_level() {
        let hardened = docker::adapt(&read("docker/hardened-compose-service.json")[0]).unwrap();
        let a = assess(&hardened);
        assert_eq!(
            (a.level, a.basis),
            (PssLevel::Restricted, "docker-equivalent")
        );
        let created = docker::adapt(&read("docker/captured-hardened.json")[0]).unwrap();
        assert_eq!(
            assess(&created).level,
            PssLevel::Restricted,
            "1000:1000, drop ALL, no-new-privileges"
        );
        let privileged = docker::adapt(&read("docker/captured-privileged.json")[0]).unwrap();
        let a = assess(&privileged);
        assert_eq!(a.level, PssLevel::Privileged);
        assert!(controls(&a).contains(&"privileged"));
        let socket = docker::adapt(&read("docker/captured-socket-runner.json")[0]).unwrap();
        let blocking = controls(&assess(&socket));
        for control in [
            "hostNamespaces",
            "hostPathVolumes",
            "capabilities_baseline",
            "seLinuxOptions",
            "seccompProfile_baseline",
        ] {
            assert!(
                blocking.contains(&control),
                "{control} missing from {blocking:?}"
            );
        }
    }
}
