//! The check catalog: one static entry per check id of `CHECKS.md` §1 (plus
//! `net.no_network_policy`). Ids are stable contracts: they appear in exports, waivers and the
//! API. Severity follows the rubric of §0.4; a result may carry a different severity when the
//! catalog row names a modifier (a read-only sensitive mount is high, a writable one critical).

use serde::Serialize;

/// How bad a failed check is (§0.4). `Info` is for results the catalog calls informational:
/// they are reported but never counted in grades or gates below `--fail-on info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|severity| severity.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// One step down, for modifiers such as user namespaces (E14).
    pub fn downgraded(self) -> Self {
        match self {
            Severity::Critical => Severity::High,
            Severity::High => Severity::Medium,
            Severity::Medium => Severity::Low,
            Severity::Low | Severity::Info => Severity::Info,
        }
    }
}

/// The seed's threat categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Threat {
    ContainerEscape,
    MaliciousImage,
    PrivilegeAbuse,
    Misconfiguration,
}

impl Threat {
    pub fn label(self) -> &'static str {
        match self {
            Threat::ContainerEscape => "container escape",
            Threat::MaliciousImage => "malicious image",
            Threat::PrivilegeAbuse => "privilege abuse",
            Threat::Misconfiguration => "misconfiguration",
        }
    }
}

/// Lifecycle stage a check belongs to (§0.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Build,
    Store,
    Deploy,
    Run,
    Update,
}

/// Responsibility layer that owns the fix (DESIGN.md shared-responsibility model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Application,
    Image,
    Runtime,
    Orchestration,
    Host,
}

/// Whether a check yields one result per workload or one per container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Pod,
    Container,
}

/// Which sources a check has a rule for; on the other source it says N/A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sources {
    Both,
    Docker,
    Kubernetes,
}

impl Sources {
    pub fn docker(self) -> bool {
        matches!(self, Sources::Both | Sources::Docker)
    }
    pub fn kubernetes(self) -> bool {
        matches!(self, Sources::Both | Sources::Kubernetes)
    }
}

/// How to fix a failure, per source.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Remediation {
    pub summary: &'static str,
    /// The `docker run` flag and the Compose key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<&'static str>,
    /// The Kubernetes manifest fragment (`securityContext` YAML and friends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<&'static str>,
}

/// Where the check comes from in public standards.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct References {
    /// Pod Security Standards control (level and PSA check id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pss: Option<&'static str>,
    /// CIS Docker Benchmark v1.6.0 id (docker-bench-security numbering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cis_docker: Option<&'static str>,
    /// Other tools' ids (kubescape, Polaris, kube-score).
    pub other: &'static [&'static str],
}

/// The stable identifier of a check; the discriminant indexes [`CATALOG`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CheckId {
    PrivPrivileged,
    PrivAllowPrivilegeEscalation,
    PrivWindowsHostProcess,
    CapsAddCritical,
    CapsAddHighRisk,
    CapsAddOutsideBaseline,
    CapsAddOutsideRestricted,
    CapsDropAllMissing,
    CapsNetRawRetained,
    NsHostPid,
    NsHostNetwork,
    NsHostIpc,
    NsHostUts,
    NsHostUserns,
    NsHostCgroupns,
    NsSharedWithContainer,
    RuntimeIsolationTier,
    MountRuntimeSocket,
    MountSensitiveHostPath,
    MountHostPathAny,
    MountHostPathWritable,
    MountPropagationShared,
    MountRestrictedVolumeTypes,
    DevHostDevices,
    SeccompUnconfined,
    SeccompNotExplicit,
    ApparmorUnconfined,
    SelinuxDisabledOrCustom,
    ProcUnmasked,
    SysctlUnsafe,
    UserRunsAsRoot,
    UserRunAsNonRootUnset,
    UserRunAsUserZero,
    UserRootGroup,
    UserLowUidGid,
    FsRootfsWritable,
    NetHostPort,
    NetBindAllInterfaces,
    NetPrivilegedHostPort,
    NetProbeHostField,
    NetDefaultBridge,
    NetNoNetworkPolicy,
    ResMemoryLimitMissing,
    ResCpuLimitMissing,
    ResPidsLimitMissing,
    ResRequestsMissing,
    ResEphemeralStorageMissing,
    ResUlimitsDefault,
    ResCgroupParentCustom,
    ImageTagMutable,
    ImageDigestUnpinned,
    ImagePullPolicy,
    StoreRegistryNotAllowed,
    StoreSignatureUnverified,
    ImageHealthcheckMissing,
    SecretsEnvLiteral,
    SecretsEnvSecretRef,
    SaTokenAutomount,
    RunExecPrivilegedOrRoot,
    RunSshd,
    RunRestartPolicy,
    RunSudoInEntrypoint,
    RunExecInteractiveShell,
    RunProcessDrift,
    RunFsDriftBinaries,
    RunRestartLoop,
    RunImageDrift,
    RunSpecDrift,
    BuildNotReported,
    BuildScanMissing,
    BuildCriticalVulnerability,
    StoreNotReported,
    UpdateImageStale,
    UpdateNewerDigest,
}

impl CheckId {
    pub fn meta(self) -> &'static CheckMeta {
        &CATALOG[self as usize]
    }
    pub fn as_str(self) -> &'static str {
        self.meta().id
    }
}

impl Serialize for CheckId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Everything the catalog says about one check.
#[derive(Debug, Serialize)]
pub struct CheckMeta {
    #[serde(skip)]
    pub check: CheckId,
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// Why the severity: the one-line rationale of the catalog row.
    pub rationale: &'static str,
    pub threat: Threat,
    /// The stages the check belongs to; the first is the primary one.
    pub stages: &'static [Stage],
    /// The layers that own the fix; the first is the default owner.
    pub layers: &'static [Layer],
    pub scope: Scope,
    pub sources: Sources,
    pub remediation: Remediation,
    pub references: References,
}

impl CheckMeta {
    pub fn stage(&self) -> Stage {
        self.stages[0]
    }
    pub fn layer(&self) -> Layer {
        self.layers[0]
    }
}

/// Checks whose findings come from runtime events (exec sessions, drift samples, restarts)
/// rather than from a spec: a spec evaluation says N/A for them and never resolves their
/// findings; the run-stage monitor opens and resolves them.
pub const EVENT_CHECKS: &[CheckId] = &[
    CheckId::RunExecPrivilegedOrRoot,
    CheckId::RunExecInteractiveShell,
    CheckId::RunProcessDrift,
    CheckId::RunFsDriftBinaries,
    CheckId::RunRestartLoop,
    CheckId::RunImageDrift,
    CheckId::RunSpecDrift,
];

impl CheckId {
    /// Whether the check's findings come from runtime events ([`EVENT_CHECKS`]).
    pub fn from_events(self) -> bool {
        EVENT_CHECKS.contains(&self)
    }

    /// Whether the check is evaluated only from runtime events: no spec can say anything.
    pub fn only_from_events(self) -> bool {
        self.from_events() && self != CheckId::RunExecPrivilegedOrRoot
    }
}

/// The ids of [`EVENT_CHECKS`].
pub fn event_check_ids() -> Vec<String> {
    EVENT_CHECKS
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}

/// Looks a check up by its id.
pub fn find(id: &str) -> Option<&'static CheckMeta> {
    CATALOG.iter().find(|meta| meta.id == id)
}

use Layer::{Application as App, Host, Image as Img, Orchestration as Orch, Runtime as Rt};
use Scope::{Container as C, Pod as P};
use Severity::{Critical, High, Low, Medium};
use Sources::{Both, Docker, Kubernetes as K8s};
use Stage::{Build, Deploy, Run, Store, Update};
use Threat::{
    ContainerEscape as Escape, MaliciousImage as Malicious, Misconfiguration as Misconf,
    PrivilegeAbuse as Abuse,
};

#[allow(clippy::too_many_arguments)]
const fn entry(
    check: CheckId,
    id: &'static str,
    title: &'static str,
    severity: Severity,
    rationale: &'static str,
    threat: Threat,
    stages: &'static [Stage],
    layers: &'static [Layer],
    scope: Scope,
    sources: Sources,
    remediation: Remediation,
    references: References,
) -> CheckMeta {
    CheckMeta {
        check,
        id,
        title,
        severity,
        rationale,
        threat,
        stages,
        layers,
        scope,
        sources,
        remediation,
        references,
    }
}

const fn fix(
    summary: &'static str,
    docker: Option<&'static str>,
    kubernetes: Option<&'static str>,
) -> Remediation {
    Remediation {
        summary,
        docker,
        kubernetes,
    }
}

const fn refs(
    pss: Option<&'static str>,
    cis_docker: Option<&'static str>,
    other: &'static [&'static str],
) -> References {
    References {
        pss,
        cis_docker,
        other,
    }
}

/// The catalog, in [`CheckId`] order.
pub static CATALOG: [CheckMeta; 74] = [
    // 1.A Privilege
    entry(
        CheckId::PrivPrivileged,
        "priv.privileged",
        "Privileged container",
        Critical,
        "every capability, every host device, seccomp and AppArmor off, SELinux label disabled; host root is one mount away",
        Escape,
        &[Deploy, Run],
        &[Orch],
        C,
        Both,
        fix(
            "Run without privileged mode; grant only the specific capabilities or devices the process needs.",
            Some("Drop `--privileged`; Compose: remove `privileged: true` (add `cap_add: [NET_ADMIN]` or `devices:` for the one thing needed)."),
            Some("securityContext:\n  privileged: false"),
        ),
        refs(
            Some("Baseline: Privileged Containers [privileged]"),
            Some("5.5"),
            &["Polaris runAsPrivileged", "kube-score container-security-context-privileged", "kubescape C-0057"],
        ),
    ),
    entry(
        CheckId::PrivAllowPrivilegeEscalation,
        "priv.allow_privilege_escalation",
        "Privilege escalation not blocked (no_new_privs unset)",
        Medium,
        "setuid/setcap binaries can regain privileges; matters most for non-root processes",
        Abuse,
        &[Deploy],
        &[Orch, Rt],
        C,
        Both,
        fix(
            "Set no_new_privs so setuid binaries cannot raise privileges (or enable it daemon-wide).",
            Some("`--security-opt no-new-privileges`; Compose: `security_opt: [\"no-new-privileges:true\"]`; daemon-wide: `\"no-new-privileges\": true` in daemon.json."),
            Some("securityContext:\n  allowPrivilegeEscalation: false"),
        ),
        refs(
            Some("Restricted: Privilege Escalation [allowPrivilegeEscalation]"),
            Some("5.26"),
            &["Polaris privilegeEscalationAllowed", "kubescape C-0016"],
        ),
    ),
    entry(
        CheckId::PrivWindowsHostProcess,
        "priv.windows_host_process",
        "Windows HostProcess container",
        Critical,
        "runs as a process directly on the Windows node with host network and filesystem",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Run as a regular Windows container; move node-management work to a controlled node agent.",
            None,
            Some("securityContext:\n  windowsOptions:\n    hostProcess: false"),
        ),
        refs(
            Some("Baseline: HostProcess [windowsHostProcess]"),
            None,
            &["Polaris hostProcess", "kubescape C-0202"],
        ),
    ),
    // 1.B Capabilities
    entry(
        CheckId::CapsAddCritical,
        "caps.add_critical",
        "Host-takeover capability added (ALL, SYS_ADMIN, SYS_MODULE)",
        Critical,
        "ALL grants everything; SYS_ADMIN enables mount/namespace/cgroup escapes; SYS_MODULE loads kernel code",
        Escape,
        &[Deploy],
        &[Orch, App],
        C,
        Both,
        fix(
            "Remove ALL, SYS_ADMIN and SYS_MODULE from the added capabilities.",
            Some("Remove `--cap-add ALL|SYS_ADMIN|SYS_MODULE`; Compose: remove them from `cap_add:`."),
            Some("securityContext:\n  capabilities:\n    drop: [\"ALL\"]\n    add: []   # no ALL, SYS_ADMIN, SYS_MODULE"),
        ),
        refs(
            Some("Baseline: Capabilities [capabilities_baseline]"),
            Some("5.4"),
            &["Polaris dangerousCapabilities", "kubescape C-0046", "kubescape C-0057"],
        ),
    ),
    entry(
        CheckId::CapsAddHighRisk,
        "caps.add_high_risk",
        "High-risk capability added",
        High,
        "each is a known escape or lateral primitive (ptrace, open_by_handle_at, raw I/O, eBPF, network stack control, LSM override, reboot, kernel log/time); critical with SYS_PTRACE in the host PID namespace",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Remove SYS_PTRACE, DAC_READ_SEARCH, SYS_RAWIO, BPF, PERFMON, NET_ADMIN, MAC_ADMIN, MAC_OVERRIDE, SYS_BOOT, SYSLOG, SYS_TIME and CHECKPOINT_RESTORE unless the workload is a vetted node agent.",
            Some("Remove the `--cap-add` flag; Compose: remove the entry from `cap_add:`."),
            Some("securityContext:\n  capabilities:\n    add: []   # none of the high-risk capabilities"),
        ),
        refs(
            Some("Baseline: Capabilities [capabilities_baseline]"),
            Some("5.4"),
            &["Polaris dangerousCapabilities", "kubescape C-0046"],
        ),
    ),
    entry(
        CheckId::CapsAddOutsideBaseline,
        "caps.add_outside_baseline",
        "Capability added beyond the PSS baseline set",
        Medium,
        "anything outside the runtime default (this includes NET_RAW) widens the kernel attack surface",
        Abuse,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Add only capabilities from the runtime's default set (spelled in upper case without CAP_), or none.",
            Some("Remove the `--cap-add` flags outside Docker's 14 defaults; Compose: trim `cap_add:`."),
            Some("securityContext:\n  capabilities:\n    add: [\"NET_BIND_SERVICE\"]   # only baseline capabilities, exact spelling"),
        ),
        refs(
            Some("Baseline: Capabilities [capabilities_baseline]"),
            Some("5.4"),
            &[],
        ),
    ),
    entry(
        CheckId::CapsAddOutsideRestricted,
        "caps.add_outside_restricted",
        "Capability added other than NET_BIND_SERVICE",
        Low,
        "conformance; the real risk is scored by caps.add_critical and caps.add_high_risk",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Add no capability except NET_BIND_SERVICE.",
            Some("Keep `--cap-add` to `NET_BIND_SERVICE` at most; Compose: `cap_add: [NET_BIND_SERVICE]`."),
            Some("securityContext:\n  capabilities:\n    drop: [\"ALL\"]\n    add: [\"NET_BIND_SERVICE\"]"),
        ),
        refs(
            Some("Restricted: Capabilities [capabilities_restricted]"),
            None,
            &["kubescape C-0200"],
        ),
    ),
    entry(
        CheckId::CapsDropAllMissing,
        "caps.drop_all_missing",
        "ALL capabilities not dropped",
        Low,
        "defence in depth; the default set still gives root CHOWN, DAC_OVERRIDE, SETUID and friends",
        Abuse,
        &[Deploy],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Drop ALL capabilities and add back only what the process needs.",
            Some("`--cap-drop ALL`; Compose: `cap_drop: [ALL]`."),
            Some("securityContext:\n  capabilities:\n    drop: [\"ALL\"]"),
        ),
        refs(
            Some("Restricted: Capabilities [capabilities_restricted]"),
            Some("5.4"),
            &["Polaris insecureCapabilities", "Polaris linuxHardening"],
        ),
    ),
    entry(
        CheckId::CapsNetRawRetained,
        "caps.net_raw_retained",
        "NET_RAW in the effective set",
        Low,
        "ARP/DNS spoofing and raw packet crafting on the pod network",
        Abuse,
        &[Deploy],
        &[Orch, Rt],
        C,
        Both,
        fix(
            "Drop NET_RAW (or ALL).",
            Some("`--cap-drop NET_RAW` (or `--cap-drop ALL`); Compose: `cap_drop: [NET_RAW]`."),
            Some("securityContext:\n  capabilities:\n    drop: [\"ALL\"]   # or at least NET_RAW"),
        ),
        refs(None, Some("5.4"), &["kubescape C-0199", "kubescape C-0046"]),
    ),
    // 1.C Namespaces and isolation
    entry(
        CheckId::NsHostPid,
        "ns.host_pid",
        "Host PID namespace",
        High,
        "sees and signals host processes, reads /proc/<pid>/environ, reaches /proc/<pid>/root",
        Escape,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Use the container's own PID namespace.",
            Some("Drop `--pid host`; Compose: remove `pid: host`."),
            Some("spec:\n  hostPID: false"),
        ),
        refs(
            Some("Baseline: Host Namespaces [hostNamespaces]"),
            Some("5.16"),
            &["Polaris hostPIDSet", "kubescape C-0038"],
        ),
    ),
    entry(
        CheckId::NsHostNetwork,
        "ns.host_network",
        "Host network namespace",
        High,
        "binds host interfaces, reaches node-local services (kubelet, metadata endpoint), can sniff with NET_RAW; implies the host UTS namespace",
        Escape,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Use the container network and publish only the ports needed.",
            Some("Drop `--network host`; Compose: remove `network_mode: host` and use `ports:`."),
            Some("spec:\n  hostNetwork: false"),
        ),
        refs(
            Some("Baseline: Host Namespaces [hostNamespaces]"),
            Some("5.10"),
            &["Polaris hostNetworkSet", "kubescape C-0041"],
        ),
    ),
    entry(
        CheckId::NsHostIpc,
        "ns.host_ipc",
        "Host IPC namespace",
        Medium,
        "read and write host SysV/POSIX shared memory and semaphores",
        Escape,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Use the container's own IPC namespace.",
            Some("Drop `--ipc host`; Compose: remove `ipc: host`."),
            Some("spec:\n  hostIPC: false"),
        ),
        refs(
            Some("Baseline: Host Namespaces [hostNamespaces]"),
            Some("5.17"),
            &["Polaris hostIPCSet", "kubescape C-0038"],
        ),
    ),
    entry(
        CheckId::NsHostUts,
        "ns.host_uts",
        "Host UTS namespace",
        Low,
        "hostname and domain are shared; changing them still needs SYS_ADMIN",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Use the container's own UTS namespace.",
            Some("Drop `--uts host`; Compose: remove `uts: host`."),
            Some("spec:\n  hostNetwork: false   # hostNetwork implies the host UTS namespace"),
        ),
        refs(None, Some("5.21"), &[]),
    ),
    entry(
        CheckId::NsHostUserns,
        "ns.host_userns",
        "No user-namespace isolation",
        Low,
        "hardening opt-in; medium when a Docker container opts out of a remapping daemon",
        Escape,
        &[Deploy],
        &[Rt, Orch],
        P,
        Both,
        fix(
            "Run in a user namespace so container root is not host root.",
            Some("Drop `--userns host`; enable `userns-remap` (or rootless mode) on the daemon."),
            Some("spec:\n  hostUsers: false"),
        ),
        refs(None, Some("5.31"), &[]),
    ),
    entry(
        CheckId::NsHostCgroupns,
        "ns.host_cgroupns",
        "Host cgroup namespace",
        Low,
        "exposes the host cgroup hierarchy paths",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        Docker,
        fix(
            "Use a private cgroup namespace.",
            Some("`--cgroupns private` (the default on cgroup v2 hosts); Compose: `cgroup: private`."),
            None,
        ),
        refs(None, None, &[]),
    ),
    entry(
        CheckId::NsSharedWithContainer,
        "ns.shared_with_container",
        "Namespace joined from another container / shared PID in pod",
        Low,
        "peers' processes, /proc/<pid>/root and env become visible; inherits the peer's exposure",
        Abuse,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Give the container its own namespaces unless joining is required (debug sidecars).",
            Some("Drop `--pid|--ipc|--network container:<id>`; Compose: remove `pid: service:…`, `network_mode: service:…`."),
            Some("spec:\n  shareProcessNamespace: false"),
        ),
        refs(None, None, &[]),
    ),
    entry(
        CheckId::RuntimeIsolationTier,
        "runtime.isolation_tier",
        "Isolation tier of the runtime (runc vs gVisor vs Kata / Hyper-V)",
        Low,
        "informational modifier: VM or user-space kernels shrink kernel attack surface but do not neutralise host mounts, sockets or host network",
        Escape,
        &[Deploy],
        &[Rt, Host],
        P,
        Both,
        fix(
            "Run untrusted or multi-tenant workloads under a sandboxed runtime (gVisor, Kata, Hyper-V isolation).",
            Some("`--runtime runsc` (or a Kata runtime); Windows: `--isolation hyperv`; Compose: `runtime: runsc`."),
            Some("spec:\n  runtimeClassName: gvisor   # a RuntimeClass whose handler is runsc or kata"),
        ),
        refs(None, None, &["kubescape C-0297"]),
    ),
    // 1.D Mounts, volumes and devices
    entry(
        CheckId::MountRuntimeSocket,
        "mount.runtime_socket",
        "Container-runtime socket mounted",
        Critical,
        "API access to dockerd/containerd/CRI-O is root on the node",
        Escape,
        &[Deploy, Run],
        &[Orch],
        P,
        Both,
        fix(
            "Do not mount the runtime socket or a directory containing it; use a narrowly scoped API proxy if the workload must talk to the engine.",
            Some("Remove `-v /var/run/docker.sock:…` (and mounts of `/run`, `/var`, `/`); Compose: remove the entry from `volumes:`."),
            Some("volumes:\n  # remove hostPath volumes of /var/run/docker.sock, /run/containerd, /run, /var, /"),
        ),
        refs(
            Some("Baseline: HostPath Volumes [hostPathVolumes]"),
            Some("5.32"),
            &["kubescape C-0074"],
        ),
    ),
    entry(
        CheckId::MountSensitiveHostPath,
        "mount.sensitive_host_path",
        "Sensitive host directory mounted",
        Critical,
        "host credentials, kubelet pod secrets, kernel interfaces; critical if writable, high if read-only",
        Escape,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Do not mount host system directories; use a volume, a ConfigMap/Secret, or a narrowly scoped read-only path.",
            Some("Remove `-v /etc:…` style binds (or add `:ro` as a stopgap); Compose: remove the entry from `volumes:`."),
            Some("volumes:\n  - name: data\n    emptyDir: {}   # instead of hostPath /etc, /var/lib/kubelet, …"),
        ),
        refs(
            Some("Baseline: HostPath Volumes [hostPathVolumes]"),
            Some("5.6"),
            &["kubescape C-0045", "kubescape C-0048", "kubescape C-0020"],
        ),
    ),
    entry(
        CheckId::MountHostPathAny,
        "mount.host_path_any",
        "Any host bind mount / hostPath volume",
        Medium,
        "breaks filesystem isolation; the basis for most hostPath escapes",
        Escape,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Replace host paths with volumes (named volumes, PVCs, emptyDir).",
            Some("Use `--mount type=volume,…` instead of `-v /host/path:…`; Compose: named volumes under `volumes:`."),
            Some("volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: data"),
        ),
        refs(
            Some("Baseline: HostPath Volumes [hostPathVolumes]"),
            None,
            &["Polaris hostPathSet", "kubescape C-0048"],
        ),
    ),
    entry(
        CheckId::MountHostPathWritable,
        "mount.host_path_writable",
        "Writable host bind mount",
        High,
        "lets the container plant files on the node (cron, systemd units, kubelet manifests, binaries)",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Mount host paths read-only.",
            Some("`-v /src:/dst:ro` or `--mount type=bind,…,readonly`; Compose: `read_only: true` on the volume entry."),
            Some("volumeMounts:\n  - name: host\n    mountPath: /host\n    readOnly: true\n    recursiveReadOnly: Enabled"),
        ),
        refs(None, None, &["kubescape C-0045"]),
    ),
    entry(
        CheckId::MountPropagationShared,
        "mount.propagation_shared",
        "Shared / bidirectional mount propagation",
        Medium,
        "container mounts propagate back to the host namespace",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Use private propagation (the default).",
            Some("Drop `bind-propagation=shared|rshared`; Compose: remove `bind: {propagation: rshared}`."),
            Some("volumeMounts:\n  - name: host\n    mountPath: /host\n    mountPropagation: None"),
        ),
        refs(None, Some("5.20"), &[]),
    ),
    entry(
        CheckId::MountRestrictedVolumeTypes,
        "mount.restricted_volume_types",
        "Volume type outside the restricted allow-list",
        Low,
        "conformance; network and in-tree volumes bypass PVC-level controls",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        K8s,
        fix(
            "Use configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected or secret volumes.",
            None,
            Some("volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: data   # instead of nfs, hostPath, …"),
        ),
        refs(Some("Restricted: Volume Types [restrictedVolumes]"), None, &[]),
    ),
    entry(
        CheckId::DevHostDevices,
        "dev.host_devices",
        "Host devices exposed",
        High,
        "raw block or char devices (disks, /dev/mem, /dev/kmsg) bypass the filesystem and kernel isolation",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Expose no host device; if one is needed (GPU, FUSE), expose exactly that device node.",
            Some("Remove `--device` and `--device-cgroup-rule`; Compose: remove `devices:` and `device_cgroup_rules:`."),
            Some("resources:\n  limits: {}   # remove device-plugin resources unless the workload needs the device"),
        ),
        refs(None, Some("5.18"), &[]),
    ),
    // 1.E Kernel confinement
    entry(
        CheckId::SeccompUnconfined,
        "seccomp.unconfined",
        "Seccomp disabled",
        High,
        "the full syscall surface (unshare, keyctl, bpf, io_uring, …) becomes reachable for kernel exploits",
        Escape,
        &[Deploy],
        &[Orch, Rt],
        C,
        Both,
        fix(
            "Run under the runtime's default seccomp profile (or a stricter custom one).",
            Some("Drop `--security-opt seccomp=unconfined` (and `--privileged`); Compose: remove `seccomp:unconfined` from `security_opt:`."),
            Some("securityContext:\n  seccompProfile:\n    type: RuntimeDefault"),
        ),
        refs(
            Some("Baseline: Seccomp [seccompProfile_baseline]"),
            Some("5.22"),
            &["Polaris linuxHardening", "kubescape C-0055", "kubescape C-0210"],
        ),
    ),
    entry(
        CheckId::SeccompNotExplicit,
        "seccomp.not_explicit",
        "Seccomp profile not explicitly set (K8s)",
        Medium,
        "an absent profile is Unconfined unless the kubelet runs with seccompDefault",
        Escape,
        &[Deploy],
        &[Orch, Rt],
        C,
        Both,
        fix(
            "Set RuntimeDefault (or Localhost) at pod level or on every container.",
            Some("Nothing to do: Docker applies its default profile unless told otherwise."),
            Some("spec:\n  securityContext:\n    seccompProfile:\n      type: RuntimeDefault"),
        ),
        refs(
            Some("Restricted: Seccomp [seccompProfile_restricted]"),
            None,
            &["kube-score container-seccomp-profile", "kubescape C-0210"],
        ),
    ),
    entry(
        CheckId::ApparmorUnconfined,
        "apparmor.unconfined",
        "AppArmor disabled",
        Medium,
        "the default profile blocks mount, writes to /proc/sys and similar; high with SYS_ADMIN or root",
        Escape,
        &[Deploy],
        &[Orch, Host],
        C,
        Both,
        fix(
            "Run under the runtime's default AppArmor profile (or a custom one).",
            Some("Drop `--security-opt apparmor=unconfined` (and `--privileged`); Compose: remove it from `security_opt:`."),
            Some("securityContext:\n  appArmorProfile:\n    type: RuntimeDefault"),
        ),
        refs(
            Some("Baseline: AppArmor [appArmorProfile]"),
            Some("5.2"),
            &["Polaris linuxHardening"],
        ),
    ),
    entry(
        CheckId::SelinuxDisabledOrCustom,
        "selinux.disabled_or_custom",
        "SELinux disabled or custom type/user/role",
        Medium,
        "removes or weakens the label separation between containers and the host; high for label=disable, spc_t or a custom user/role",
        Escape,
        &[Deploy],
        &[Orch, Host],
        C,
        Both,
        fix(
            "Keep the default container_t label; set only the MCS level if needed.",
            Some("Drop `--security-opt label=disable|type:…|user:…|role:…` (and `--privileged`, `--pid host`, `--ipc host`, which disable labels); Compose: trim `security_opt:`."),
            Some("securityContext:\n  seLinuxOptions:\n    level: \"s0:c123,c456\"   # no type, user or role"),
        ),
        refs(
            Some("Baseline: SELinux [seLinuxOptions]"),
            Some("5.3"),
            &["Polaris linuxHardening", "kubescape C-0211"],
        ),
    ),
    entry(
        CheckId::ProcUnmasked,
        "proc.unmasked",
        "/proc (and /sys) masks removed",
        High,
        "exposes kernel interfaces such as /proc/sysrq-trigger, /proc/kcore and /sys/firmware",
        Escape,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Keep the runtime's masked and read-only paths.",
            Some("Drop `--security-opt systempaths=unconfined` (and `--privileged`); Compose: remove it from `security_opt:`."),
            Some("securityContext:\n  procMount: Default"),
        ),
        refs(
            Some("Baseline: /proc Mount Type [procMount]; Restricted [procMount_restricted]"),
            None,
            &["Polaris procMount", "kubescape C-0211"],
        ),
    ),
    entry(
        CheckId::SysctlUnsafe,
        "sysctl.unsafe",
        "Non-safe sysctl set",
        Medium,
        "unsafe sysctls can affect the node or other pods (low for Docker, which only accepts namespaced keys)",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        Both,
        fix(
            "Set only the namespaced, safe sysctls of the Pod Security Standards.",
            Some("Remove `--sysctl` keys outside the safe set; Compose: trim `sysctls:`."),
            Some("spec:\n  securityContext:\n    sysctls:\n      - name: net.ipv4.ip_unprivileged_port_start\n        value: \"0\""),
        ),
        refs(Some("Baseline: Sysctls [sysctls]"), None, &["kubescape C-0211"]),
    ),
    // 1.F Identity
    entry(
        CheckId::UserRunsAsRoot,
        "user.runs_as_root",
        "Process runs as UID 0 (effective)",
        High,
        "root in the container holds the default caps, owns writable mounts and is one kernel bug from host root; medium when user namespaces map it away",
        Abuse,
        &[Build, Deploy, Run],
        &[Img, Orch],
        C,
        Both,
        fix(
            "Run as a non-root numeric UID: set USER in the image, or override it at deploy.",
            Some("Dockerfile `USER 10001`, or `--user 10001:10001`; Compose: `user: \"10001:10001\"`."),
            Some("securityContext:\n  runAsNonRoot: true\n  runAsUser: 10001"),
        ),
        refs(
            Some("Restricted: Running as Non-root [runAsNonRoot]"),
            Some("4.1"),
            &["Polaris runAsRootAllowed", "kubescape C-0013", "kube-score container-security-context-user-group-id"],
        ),
    ),
    entry(
        CheckId::UserRunAsNonRootUnset,
        "user.run_as_non_root_unset",
        "runAsNonRoot not enforced (PSS)",
        Medium,
        "without it the kubelet will start an image whose USER is root",
        Abuse,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Set runAsNonRoot: true at pod level (and never false on a container).",
            None,
            Some("spec:\n  securityContext:\n    runAsNonRoot: true"),
        ),
        refs(Some("Restricted: Running as Non-root [runAsNonRoot]"), None, &[]),
    ),
    entry(
        CheckId::UserRunAsUserZero,
        "user.run_as_user_zero",
        "runAsUser explicitly 0",
        High,
        "explicit root",
        Abuse,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Do not set the user to 0; use a non-root UID.",
            Some("Replace `--user 0`/`--user root` with `--user 10001`; Compose: `user: \"10001\"`."),
            Some("securityContext:\n  runAsUser: 10001"),
        ),
        refs(Some("Restricted: Running as Non-root user [runAsUser]"), None, &[]),
    ),
    entry(
        CheckId::UserRootGroup,
        "user.root_group",
        "Root primary or supplementary group",
        Low,
        "group-0-owned files (often writable in images) become accessible",
        Abuse,
        &[Deploy],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Use a non-zero primary group and no group 0 in supplementary groups.",
            Some("`--user 10001:10001` and no `--group-add 0`; Compose: `user: \"10001:10001\"`, trim `group_add:`."),
            Some("spec:\n  securityContext:\n    runAsGroup: 10001\n    fsGroup: 10001\n    supplementalGroups: []"),
        ),
        refs(None, None, &["kubescape C-0013"]),
    ),
    entry(
        CheckId::UserLowUidGid,
        "user.low_uid_gid",
        "UID/GID below 10000",
        Low,
        "a UID that overlaps host accounts matters if the container escapes or shares host mounts (opt-in)",
        Misconf,
        &[Deploy],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Use UIDs and GIDs of 10000 or more.",
            Some("`--user 10001:10001`; Compose: `user: \"10001:10001\"`."),
            Some("securityContext:\n  runAsUser: 10001\n  runAsGroup: 10001"),
        ),
        refs(None, None, &["kube-score container-security-context-user-group-id"]),
    ),
    // 1.G Filesystem
    entry(
        CheckId::FsRootfsWritable,
        "fs.rootfs_writable",
        "Root filesystem writable",
        Low,
        "lets an attacker drop tools, persist, or tamper with binaries and config inside the container",
        Misconf,
        &[Deploy],
        &[Img, App, Orch],
        C,
        Both,
        fix(
            "Mount the root filesystem read-only; give write paths their own volumes (tmpfs / emptyDir).",
            Some("`--read-only --tmpfs /tmp`; Compose: `read_only: true`, `tmpfs: [/tmp]`."),
            Some("securityContext:\n  readOnlyRootFilesystem: true"),
        ),
        refs(
            None,
            Some("5.13"),
            &["Polaris notReadOnlyRootFilesystem", "kube-score container-security-context-readonlyrootfilesystem", "kubescape C-0017"],
        ),
    ),
    // 1.H Network exposure
    entry(
        CheckId::NetHostPort,
        "net.host_port",
        "Host port used",
        Medium,
        "binds directly on the node and bypasses Service/NetworkPolicy assumptions (informational for Docker published ports)",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Expose the workload through a Service (or a published port bound to one interface) instead of a host port.",
            Some("Publish only the ports needed (`-p 127.0.0.1:8080:80`); Compose: `ports: [\"127.0.0.1:8080:80\"]`."),
            Some("ports:\n  - containerPort: 8080   # no hostPort; expose through a Service"),
        ),
        refs(
            Some("Baseline: Host Ports [hostPorts]"),
            Some("5.9"),
            &["Polaris hostPortSet", "kubescape C-0044"],
        ),
    ),
    entry(
        CheckId::NetBindAllInterfaces,
        "net.bind_all_interfaces",
        "Published port bound to all interfaces",
        Medium,
        "the service is reachable from every network the host is on (Docker also bypasses host firewall chains)",
        Misconf,
        &[Deploy, Run],
        &[Orch],
        C,
        Both,
        fix(
            "Bind published ports to a specific interface (loopback or an internal address).",
            Some("`-p 127.0.0.1:8080:80` instead of `-p 8080:80`, no `-P`; Compose: `ports: [\"127.0.0.1:8080:80\"]`."),
            Some("ports:\n  - containerPort: 8080\n    hostPort: 8080\n    hostIP: 127.0.0.1"),
        ),
        refs(None, Some("5.14"), &[]),
    ),
    entry(
        CheckId::NetPrivilegedHostPort,
        "net.privileged_host_port",
        "Host port below 1024",
        Low,
        "hygiene; conflicts with host services",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Publish on a host port of 1024 or above (or front it with a load balancer).",
            Some("`-p 8080:80` instead of `-p 80:80`; Compose: `ports: [\"8080:80\"]`."),
            Some("ports:\n  - containerPort: 80   # no hostPort below 1024"),
        ),
        refs(None, Some("5.8"), &[]),
    ),
    entry(
        CheckId::NetProbeHostField,
        "net.probe_host_field",
        "Probe/lifecycle handler targets another host",
        Medium,
        "the kubelet makes requests to arbitrary hosts on the pod's behalf (node-local SSRF)",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Remove the host field: probes target the pod's own IP.",
            None,
            Some("livenessProbe:\n  httpGet:\n    path: /healthz\n    port: 8080   # no host"),
        ),
        refs(
            Some("Baseline: Host Probes / Lifecycle Hooks [hostProbesAndHostLifecycle]"),
            None,
            &[],
        ),
    ),
    entry(
        CheckId::NetDefaultBridge,
        "net.default_bridge",
        "Attached to the default docker0 bridge",
        Low,
        "inter-container traffic is unrestricted by default (icc)",
        Misconf,
        &[Deploy],
        &[Orch, Rt],
        P,
        Docker,
        fix(
            "Attach the container to a user-defined network.",
            Some("`docker network create app && docker run --network app …`; Compose puts services on a project network by default."),
            None,
        ),
        refs(None, Some("5.30"), &[]),
    ),
    entry(
        CheckId::NetNoNetworkPolicy,
        "net.no_network_policy",
        "No NetworkPolicy selects the workload",
        Medium,
        "a pod no NetworkPolicy selects for ingress can be reached by any pod, and one none selects for egress can reach any pod",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        K8s,
        fix(
            "Select the workload's pods with NetworkPolicies for ingress and egress (a namespace default-deny plus allow rules).",
            None,
            Some("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]"),
        ),
        refs(None, None, &["kubescape C-0260"]),
    ),
    // 1.I Resources
    entry(
        CheckId::ResMemoryLimitMissing,
        "res.memory_limit_missing",
        "No memory limit",
        Medium,
        "memory-exhaustion DoS of the node and neighbours",
        Misconf,
        &[Deploy],
        &[Orch, App],
        C,
        Both,
        fix(
            "Set a memory limit sized to the workload.",
            Some("`--memory 256m`; Compose: `mem_limit: 256m` (or `deploy.resources.limits.memory`)."),
            Some("resources:\n  limits:\n    memory: 256Mi"),
        ),
        refs(
            None,
            Some("5.11"),
            &["Polaris memoryLimitsMissing", "kube-score container-resources", "kubescape C-0004"],
        ),
    ),
    entry(
        CheckId::ResCpuLimitMissing,
        "res.cpu_limit_missing",
        "No CPU limit / priority",
        Low,
        "CPU starvation of neighbours",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        Both,
        fix(
            "Set a CPU limit (or, for Docker, a quota or cpuset).",
            Some("`--cpus 1.5` (or `--cpu-quota`, `--cpuset-cpus`); Compose: `cpus: 1.5`."),
            Some("resources:\n  limits:\n    cpu: 500m"),
        ),
        refs(
            None,
            Some("5.12"),
            &["Polaris cpuLimitsMissing", "kube-score container-resources", "kubescape C-0050"],
        ),
    ),
    entry(
        CheckId::ResPidsLimitMissing,
        "res.pids_limit_missing",
        "No PID limit",
        Medium,
        "fork-bomb DoS of the node",
        Misconf,
        &[Deploy],
        &[Orch, Rt, Host],
        P,
        Both,
        fix(
            "Limit the number of processes.",
            Some("`--pids-limit 256`; Compose: `pids_limit: 256`."),
            Some("# kubelet configuration (node scope):\npodPidsLimit: 1024"),
        ),
        refs(None, Some("5.29"), &["kubescape C-0284"]),
    ),
    entry(
        CheckId::ResRequestsMissing,
        "res.requests_missing",
        "No CPU/memory requests",
        Low,
        "BestEffort QoS, evicted first, noisy scheduling",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Set CPU and memory requests.",
            None,
            Some("resources:\n  requests:\n    cpu: 100m\n    memory: 128Mi"),
        ),
        refs(
            None,
            None,
            &["Polaris cpuRequestsMissing", "Polaris memoryRequestsMissing", "kubescape C-0268", "kubescape C-0269"],
        ),
    ),
    entry(
        CheckId::ResEphemeralStorageMissing,
        "res.ephemeral_storage_missing",
        "No ephemeral-storage limit",
        Low,
        "node disk exhaustion via logs or a writable layer",
        Misconf,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Set an ephemeral-storage limit.",
            None,
            Some("resources:\n  limits:\n    ephemeral-storage: 1Gi"),
        ),
        refs(
            None,
            None,
            &["kube-score container-ephemeral-storage-request-and-limit"],
        ),
    ),
    entry(
        CheckId::ResUlimitsDefault,
        "res.ulimits_default",
        "Default ulimits not overridden",
        Low,
        "informational (manual CIS item)",
        Misconf,
        &[Deploy],
        &[Orch],
        P,
        Docker,
        fix(
            "Set the ulimits the workload needs (open files, processes).",
            Some("`--ulimit nofile=1024:2048`; Compose: `ulimits: {nofile: {soft: 1024, hard: 2048}}`."),
            None,
        ),
        refs(None, Some("5.19"), &[]),
    ),
    entry(
        CheckId::ResCgroupParentCustom,
        "res.cgroup_parent_custom",
        "Custom cgroup parent",
        Low,
        "the container may escape the intended resource hierarchy",
        Misconf,
        &[Deploy],
        &[Orch, Rt],
        P,
        Docker,
        fix(
            "Use the default cgroup parent (or an approved one).",
            Some("Drop `--cgroup-parent`; Compose: remove `cgroup_parent:`."),
            None,
        ),
        refs(None, Some("5.25"), &[]),
    ),
    // 1.J Image and supply chain
    entry(
        CheckId::ImageTagMutable,
        "image.tag_mutable",
        "Mutable or implicit latest tag",
        Medium,
        "what runs can change without a config change, and rollback and audit break",
        Malicious,
        &[Deploy, Store],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Reference a release tag and, better, a digest.",
            Some("`docker run registry/app:1.4.2@sha256:…`; Compose: `image: registry/app:1.4.2@sha256:…`."),
            Some("image: registry.example.com/app:1.4.2@sha256:…"),
        ),
        refs(
            None,
            Some("5.28"),
            &["Polaris tagNotSpecified", "kube-score container-image-tag", "kubescape C-0075"],
        ),
    ),
    entry(
        CheckId::ImageDigestUnpinned,
        "image.digest_unpinned",
        "Image not pinned by digest",
        Low,
        "the tag can be re-pointed in the registry (supply-chain swap)",
        Malicious,
        &[Store, Deploy, Run],
        &[Orch],
        C,
        Both,
        fix(
            "Pin the image by digest.",
            Some("`docker run registry/app@sha256:…`; Compose: `image: registry/app@sha256:…`."),
            Some("image: registry.example.com/app@sha256:…"),
        ),
        refs(None, None, &["kubescape C-0306"]),
    ),
    entry(
        CheckId::ImagePullPolicy,
        "image.pull_policy",
        "Pull policy lets a stale or foreign cached image run",
        Low,
        "a cached mutable tag may not be re-validated against registry credentials",
        Malicious,
        &[Deploy],
        &[Orch],
        C,
        K8s,
        fix(
            "Pin by digest, or pull mutable tags with Always.",
            None,
            Some("imagePullPolicy: Always"),
        ),
        refs(
            None,
            None,
            &["Polaris pullPolicyNotAlways", "kube-score container-image-pull-policy", "kubescape C-0075"],
        ),
    ),
    entry(
        CheckId::StoreRegistryNotAllowed,
        "store.registry_not_allowed",
        "Image from a registry outside the allow-list",
        Medium,
        "an untrusted source",
        Malicious,
        &[Store],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Pull from an allowed registry (mirror the image there).",
            Some("Retag and push to the allowed registry; `image:` in Compose names it."),
            Some("image: registry.example.com/mirror/app:1.4.2"),
        ),
        refs(
            None,
            Some("4.2"),
            &["kubescape C-0078", "kubescape C-0001", "kubescape C-0253"],
        ),
    ),
    entry(
        CheckId::StoreSignatureUnverified,
        "store.signature_unverified",
        "Image signature / provenance not verified",
        Medium,
        "no proof the artefact came from your pipeline",
        Malicious,
        &[Store],
        &[Img, Orch],
        C,
        Both,
        fix(
            "Sign images in CI and verify the signature at admission / before run.",
            Some("Sign with cosign/notation in CI; enable content trust (`DOCKER_CONTENT_TRUST=1`)."),
            Some("# admission policy (e.g. a verify-images rule) that requires a valid signature"),
        ),
        refs(None, Some("4.5"), &["kubescape C-0236", "kubescape C-0237"]),
    ),
    entry(
        CheckId::ImageHealthcheckMissing,
        "image.healthcheck_missing",
        "No health check / probes",
        Low,
        "failures go undetected (availability, not confidentiality)",
        Misconf,
        &[Build, Deploy, Run],
        &[Img, Orch],
        C,
        Both,
        fix(
            "Declare a health check (Dockerfile HEALTHCHECK) or liveness/readiness probes.",
            Some("Dockerfile `HEALTHCHECK CMD …`, or `--health-cmd …`; Compose: `healthcheck: {test: [\"CMD\", …]}`."),
            Some("livenessProbe:\n  httpGet:\n    path: /healthz\n    port: 8080\nreadinessProbe:\n  httpGet:\n    path: /ready\n    port: 8080"),
        ),
        refs(
            None,
            Some("4.6, 5.27"),
            &["Polaris livenessProbeMissing", "Polaris readinessProbeMissing", "kube-score pod-probes", "kubescape C-0018", "kubescape C-0056"],
        ),
    ),
    // 1.K Secrets and credentials
    entry(
        CheckId::SecretsEnvLiteral,
        "secrets.env_literal",
        "Secret value in a plain environment variable",
        High,
        "readable by anyone with inspect, get-pod, or /proc/<pid>/environ; leaks into crash dumps and child processes",
        Abuse,
        &[Build, Deploy],
        &[App, Img, Orch],
        C,
        Both,
        fix(
            "Move the secret out of the spec: mount it as a file from a secret store and rotate the exposed value.",
            Some("Use `--secret`/Compose `secrets:` (files under /run/secrets) instead of `-e NAME=value`; remove ENV secrets from the Dockerfile."),
            Some("volumes:\n  - name: creds\n    secret:\n      secretName: app-creds\n# and a volumeMount; or env.valueFrom.secretKeyRef at least"),
        ),
        refs(
            None,
            Some("4.10"),
            &["Polaris sensitiveContainerEnvVar", "kubescape C-0012"],
        ),
    ),
    entry(
        CheckId::SecretsEnvSecretRef,
        "secrets.env_secret_ref",
        "Secret injected as env (not as a file)",
        Low,
        "the value still lands in the process env",
        Misconf,
        &[Deploy],
        &[App, Orch],
        C,
        K8s,
        fix(
            "Mount the Secret as a file instead of an environment variable.",
            None,
            Some("volumes:\n  - name: creds\n    secret:\n      secretName: app-creds\nvolumeMounts:\n  - name: creds\n    mountPath: /run/secrets/app\n    readOnly: true"),
        ),
        refs(None, None, &["kubescape C-0207"]),
    ),
    entry(
        CheckId::SaTokenAutomount,
        "sa.token_automount",
        "ServiceAccount token auto-mounted",
        Medium,
        "a stolen token gives API access with the ServiceAccount's RBAC",
        Abuse,
        &[Deploy, Run],
        &[Orch],
        P,
        K8s,
        fix(
            "Do not mount the token unless the workload calls the API.",
            None,
            Some("spec:\n  automountServiceAccountToken: false"),
        ),
        refs(
            None,
            None,
            &["Polaris automountServiceAccountToken", "kubescape C-0034", "kubescape C-0261", "kubescape C-0190"],
        ),
    ),
    // 1.L Runtime behaviour and state
    entry(
        CheckId::RunExecPrivilegedOrRoot,
        "run.exec_privileged_or_root",
        "Privileged or root exec / debug session into a container",
        High,
        "an interactive path to elevated rights",
        Abuse,
        &[Run],
        &[Orch],
        P,
        Both,
        fix(
            "Restrict exec and debug rights (RBAC on pods/exec and pods/ephemeralcontainers; Docker socket access) and audit them.",
            Some("Avoid `docker exec --privileged` and `docker exec -u root`; restrict who can reach the engine."),
            Some("# RBAC: remove create on pods/exec, pods/attach, pods/ephemeralcontainers from non-admin roles"),
        ),
        refs(None, Some("5.23, 5.24"), &[]),
    ),
    entry(
        CheckId::RunSshd,
        "run.sshd",
        "SSH daemon running in the container",
        Low,
        "an extra remote-access surface that bypasses the platform's access controls",
        Malicious,
        &[Run],
        &[Img],
        P,
        Both,
        fix(
            "Remove the SSH server from the image; use exec through the platform instead.",
            Some("Remove openssh-server from the Dockerfile; do not publish port 22."),
            Some("# remove sshd from the image; do not expose port 22"),
        ),
        refs(None, Some("5.7"), &["kubescape C-0042"]),
    ),
    entry(
        CheckId::RunRestartPolicy,
        "run.restart_policy",
        "Unbounded restart loop",
        Low,
        "a crash-looping compromised or DoS'd container keeps restarting",
        Misconf,
        &[Deploy, Run],
        &[Orch],
        P,
        Docker,
        fix(
            "Bound restarts.",
            Some("`--restart on-failure:5`; Compose: `restart: on-failure:5`."),
            None,
        ),
        refs(None, Some("5.15"), &[]),
    ),
    entry(
        CheckId::RunSudoInEntrypoint,
        "run.sudo_in_entrypoint",
        "sudo in the entrypoint/command",
        Low,
        "implies a root-capable setuid path inside the image",
        Abuse,
        &[Build, Deploy],
        &[Img],
        C,
        Both,
        fix(
            "Run the process as the right user from the start; remove sudo from the image.",
            Some("Dockerfile: `USER app` and an ENTRYPOINT without sudo; `--entrypoint` without sudo."),
            Some("command: [\"/app/server\"]   # no sudo"),
        ),
        refs(None, None, &["kubescape C-0062"]),
    ),
    // 1.L (run stage, observed): evaluated from runtime events, never from a spec.
    entry(
        CheckId::RunExecInteractiveShell,
        "run.exec_interactive_shell",
        "Interactive shell or debug session in a running container",
        Medium,
        "someone works inside a running container by hand: a change outside the delivery pipeline, or an intruder",
        Abuse,
        &[Run],
        &[Orch],
        C,
        Both,
        fix(
            "Find out who opened the session and why; rebuild and redeploy the workload instead of changing it in place, and restrict exec rights.",
            Some("Restrict who can reach the engine (the Docker socket is root); replace the container: `docker compose up -d --force-recreate`."),
            Some("# RBAC: remove create on pods/exec, pods/attach, pods/ephemeralcontainers from non-admin roles\nkubectl rollout restart deployment/<name>"),
        ),
        refs(None, Some("5.23, 5.24"), &["MITRE ATT&CK T1609 Container Administration Command"]),
    ),
    entry(
        CheckId::RunProcessDrift,
        "run.process_drift",
        "Process outside the workload's baseline",
        Medium,
        "a process the workload did not run while its baseline was learned: a shell, an SSH daemon or a package manager in production stands out",
        Malicious,
        &[Run],
        &[App, Img],
        C,
        Docker,
        fix(
            "Find out what started the process; if it is legitimate, approve it into the baseline, else isolate the workload and replace the container.",
            Some("`docker top <container>`; approve on the event, or replace the container with `docker compose up -d --force-recreate`."),
            None,
        ),
        refs(None, None, &["MITRE ATT&CK T1059 Command and Scripting Interpreter"]),
    ),
    entry(
        CheckId::RunFsDriftBinaries,
        "run.fs_drift_binaries",
        "Executables or system files changed in a running container",
        High,
        "a binary, library or account file added or changed after start is how implants, backdoors and persistence arrive",
        Malicious,
        &[Run],
        &[Img, Orch],
        C,
        Docker,
        fix(
            "Treat the container as compromised until shown otherwise: capture the diff, replace the container from its image and make the root filesystem read-only.",
            Some("`docker diff <container>`; `--read-only` with `--tmpfs /tmp`; Compose: `read_only: true`."),
            None,
        ),
        refs(None, Some("5.13"), &["MITRE ATT&CK T1543, T1554"]),
    ),
    entry(
        CheckId::RunRestartLoop,
        "run.restart_loop",
        "Container restarting in a loop",
        Medium,
        "a crash loop is a denial of service, a failing exploit attempt or a broken rollout; each restart re-runs the entrypoint",
        Misconf,
        &[Run],
        &[App, Orch],
        C,
        Both,
        fix(
            "Read the logs of the failing runs and fix the cause; bound the restarts.",
            Some("`docker logs <container>`; `--restart on-failure:5`."),
            Some("kubectl logs <pod> -c <container> --previous"),
        ),
        refs(None, Some("5.15"), &[]),
    ),
    entry(
        CheckId::RunImageDrift,
        "run.image_drift",
        "Running image digest differs from the declared one",
        High,
        "the code that runs is not the code that was reviewed and pinned: a re-pointed tag or a node with another image",
        Malicious,
        &[Run],
        &[Orch],
        C,
        K8s,
        fix(
            "Pin the image by digest and pull it again; find out where the other digest came from.",
            None,
            Some("image: registry.example/app@sha256:<digest>\nimagePullPolicy: Always"),
        ),
        refs(None, None, &["kubescape C-0306"]),
    ),
    entry(
        CheckId::RunSpecDrift,
        "run.spec_drift",
        "Pod spec drifted from its controller's template",
        Medium,
        "a pod that does not match its template was changed behind the controller's back (images or security context edited in place)",
        Abuse,
        &[Run],
        &[Orch],
        C,
        K8s,
        fix(
            "Delete the drifted pod so that the controller recreates it from the template, and find out who changed it.",
            None,
            Some("kubectl delete pod <pod>   # the controller recreates it from the template"),
        ),
        refs(None, None, &[]),
    ),
    // Build, store and update stages: judged per image digest from CI build reports, registry
    // notifications and the image inventory (see `crate::supply`), not from the workload spec.
    entry(
        CheckId::BuildNotReported,
        "build.not_reported",
        "Build not reported by CI",
        Low,
        "nobody vouches for how the image was built: no pipeline, commit or scan is on record",
        Malicious,
        &[Build],
        &[Img],
        C,
        Both,
        fix(
            "Report every image build from CI (POST /api/v1/events/build with the digest, pipeline and scan).",
            Some("Add the build-report step to the pipeline that builds the image the container runs."),
            Some("Add the build-report step to the pipeline that builds the image the pod template runs."),
        ),
        refs(None, None, &[]),
    ),
    entry(
        CheckId::BuildScanMissing,
        "build.scan_missing",
        "Image built without a vulnerability scan",
        Medium,
        "known vulnerabilities ship unnoticed",
        Malicious,
        &[Build],
        &[Img],
        C,
        Both,
        fix(
            "Scan the image in CI (trivy image -f json) and send the report with the build.",
            Some("`trivy image -f json -o scan.json IMAGE` in the pipeline; post it as `scan`."),
            Some("`trivy image -f json -o scan.json IMAGE` in the pipeline; post it as `scan`."),
        ),
        refs(None, Some("4.4"), &["kubescape C-0083"]),
    ),
    entry(
        CheckId::BuildCriticalVulnerability,
        "build.critical_vulnerability",
        "Critical vulnerability in the image",
        Critical,
        "a critical CVE in a package of the image is often remotely exploitable",
        Malicious,
        &[Build],
        &[Img, App],
        C,
        Both,
        fix(
            "Rebuild on a patched base image or upgrade the vulnerable packages, then redeploy.",
            Some("Bump the base image / package versions in the Dockerfile, rebuild, `docker compose up -d`."),
            Some("Rebuild with patched packages and roll out the new digest (image: …@sha256:…)."),
        ),
        refs(None, Some("4.4"), &["kubescape C-0083"]),
    ),
    entry(
        CheckId::StoreNotReported,
        "store.not_reported",
        "Image not reported by a registry",
        Low,
        "the digest came from nowhere on record: side-loaded, or from a registry that reports nothing",
        Malicious,
        &[Store],
        &[Img],
        C,
        Both,
        fix(
            "Push images through a registry that sends notifications to Harbormaster (POST /api/v1/events/registry).",
            Some("Run images pulled from the notifying registry, not `docker load` / locally built ones."),
            Some("Pull images from the notifying registry."),
        ),
        refs(None, None, &[]),
    ),
    entry(
        CheckId::UpdateImageStale,
        "update.image_stale",
        "Image older than the maximum age",
        Low,
        "an old image misses every fix published since it was built",
        Malicious,
        &[Update],
        &[Img],
        C,
        Both,
        fix(
            "Rebuild the image regularly on a current base and redeploy.",
            Some("Rebuild and `docker compose pull && docker compose up -d`."),
            Some("Rebuild and roll out the new digest."),
        ),
        refs(None, None, &[]),
    ),
    entry(
        CheckId::UpdateNewerDigest,
        "update.newer_digest",
        "A newer digest exists for the image's reference",
        Low,
        "the workload runs an outdated build of its own tag",
        Misconf,
        &[Update],
        &[Orch, Img],
        C,
        Both,
        fix(
            "Roll out the newer digest of the reference.",
            Some("`docker compose pull && docker compose up -d` (or pin the new digest)."),
            Some("Update the pod template to the new digest and let the rollout finish."),
        ),
        refs(None, None, &[]),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_entries_are_in_check_id_order_with_unique_ids() {
        for (index, meta) in CATALOG.iter().enumerate() {
            assert_eq!(meta.check as usize, index, "{} out of order", meta.id);
            assert!(
                !meta.stages.is_empty() && !meta.layers.is_empty(),
                "{}",
                meta.id
            );
            assert!(
                meta.remediation.docker.is_some() || !meta.sources.docker(),
                "{} applies to Docker but has no Docker fix",
                meta.id
            );
            assert!(
                meta.remediation.kubernetes.is_some() || !meta.sources.kubernetes(),
                "{} applies to Kubernetes but has no Kubernetes fix",
                meta.id
            );
        }
        let mut ids: Vec<_> = CATALOG.iter().map(|meta| meta.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
    }

    #[test]
    fn every_id_of_the_checks_document_is_in_the_catalog() {
        let doc = include_str!("../../tests/data/posture/check-ids.txt");
        for id in doc.lines().map(str::trim).filter(|line| !line.is_empty()) {
            assert!(find(id).is_some(), "{id} is missing from the catalog");
        }
        assert_eq!(
            doc.lines().filter(|l| !l.trim().is_empty()).count(),
            CATALOG.len()
        );
    }
}
