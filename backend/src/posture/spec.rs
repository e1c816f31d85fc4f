//! The normalized workload spec both adapters produce and every check reads.
//!
//! A [`WorkloadSpec`] mirrors the levels of the source: pod-level fields ([`PodSpec`]), one
//! [`ContainerSpec`] per container (init, sidecar, regular and ephemeral containers of a
//! Kubernetes pod; the one container of a Docker workload), the volumes, and the Docker-only
//! facts ([`DockerFacts`]). Every field remembers where it was read ([`Src`]) and the value as
//! written ([`Raw`]), so a check can cite the JSON pointer, the raw value and its normalized
//! reading as evidence. Pointers are stored as a base (the pod spec, the pod metadata, the
//! container, or an item of a list that has its own pointer string) plus a static path, so
//! evidence is built without allocating.
//!
//! Secret values never enter the spec: environment values are classified while adapting (see
//! [`EnvKind`]) and dropped; only the variable names stay.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{Serialize, Serializer};

/// Which adapter produced the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Docker,
    Kubernetes,
}

/// The operating system the workload's containers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

/// The kind of a container within its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A regular container (`containers[]`), or the one container of a Docker workload.
    Container,
    /// A classic init container: runs to completion before the regular containers start.
    Init,
    /// An init container with `restartPolicy: Always`: runs for the life of the pod.
    Sidecar,
    /// An ephemeral (debug) container, added to a live Pod.
    Ephemeral,
}

impl Role {
    /// Whether the container runs for the life of the workload (regular containers and
    /// sidecars), which is what resource and probe checks care about.
    pub fn long_running(self) -> bool {
        matches!(self, Role::Container | Role::Sidecar)
    }
}

/// Which stored pointer string a [`Src`] is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The document root (`""`).
    Root,
    /// The pod spec (`/spec`, `/spec/template/spec`, …); the root for Docker.
    Pod,
    /// The pod metadata (`/metadata`, `/spec/template/metadata`, …).
    Meta,
    /// The container being evaluated (`/spec/containers/0`, …).
    Container,
}

/// Where a value was read: a base plus a static path and an optional list index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Src {
    pub base: Base,
    pub path: &'static str,
    pub index: Option<u32>,
}

impl Src {
    pub const fn root(path: &'static str) -> Self {
        Self {
            base: Base::Root,
            path,
            index: None,
        }
    }
    pub const fn pod(path: &'static str) -> Self {
        Self {
            base: Base::Pod,
            path,
            index: None,
        }
    }
    pub const fn meta(path: &'static str) -> Self {
        Self {
            base: Base::Meta,
            path,
            index: None,
        }
    }
    pub const fn container(path: &'static str) -> Self {
        Self {
            base: Base::Container,
            path,
            index: None,
        }
    }
    pub const fn at(mut self, index: u32) -> Self {
        self.index = Some(index);
        self
    }
}

/// A JSON pointer (RFC 6901) into the source document, rendered on demand:
/// `base + path + "/" + index + tail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer<'a> {
    pub base: &'a str,
    pub path: &'static str,
    pub index: Option<u32>,
    pub tail: &'static str,
}

impl<'a> Pointer<'a> {
    /// A pointer to an item that carries its own pointer string.
    pub const fn item(base: &'a str) -> Self {
        Self {
            base,
            path: "",
            index: None,
            tail: "",
        }
    }
    pub const fn index(mut self, index: u32) -> Self {
        self.index = Some(index);
        self
    }
    pub const fn tail(mut self, tail: &'static str) -> Self {
        self.tail = tail;
        self
    }
    pub const fn path(mut self, path: &'static str) -> Self {
        self.path = path;
        self
    }
}

impl fmt::Display for Pointer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base)?;
        f.write_str(self.path)?;
        if let Some(index) = self.index {
            write!(f, "/{index}")?;
        }
        f.write_str(self.tail)
    }
}

impl Serialize for Pointer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Escapes one reference token of a JSON pointer (`~` → `~0`, `/` → `~1`).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// A value as written in the source document (owned by the spec).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Raw {
    /// The field is not in the document.
    #[default]
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    Str(Box<str>),
    /// A stand-in for a value too large or too sensitive to repeat (an inline seccomp profile).
    Summary(&'static str),
}

impl Raw {
    pub fn val(&self) -> Val<'_> {
        match self {
            Raw::Absent => Val::Absent,
            Raw::Null => Val::Null,
            Raw::Bool(value) => Val::Bool(*value),
            Raw::Int(value) => Val::Int(*value),
            Raw::Str(value) => Val::Str(value),
            Raw::Summary(value) => Val::Str(value),
        }
    }

    pub fn str(value: &str) -> Self {
        Raw::Str(value.into())
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Raw::Absent)
    }
}

impl From<Option<bool>> for Raw {
    fn from(value: Option<bool>) -> Self {
        value.map_or(Raw::Absent, Raw::Bool)
    }
}

impl From<Option<i64>> for Raw {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Raw::Absent, Raw::Int)
    }
}

/// A borrowed value in evidence: the raw value read, or its normalized reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    /// Not present in the source (serialized by omitting the key).
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

impl Val<'_> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Val::Absent)
    }
}

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Absent | Val::Null => serializer.serialize_none(),
            Val::Bool(value) => serializer.serialize_bool(*value),
            Val::Int(value) => serializer.serialize_i64(*value),
            Val::Str(value) => serializer.serialize_str(value),
        }
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Absent => f.write_str("(unset)"),
            Val::Null => f.write_str("null"),
            Val::Bool(value) => write!(f, "{value}"),
            Val::Int(value) => write!(f, "{value}"),
            Val::Str(value) => write!(f, "{value:?}"),
        }
    }
}

/// A normalized value with the raw value it came from and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Fld<T> {
    pub value: T,
    pub raw: Raw,
    pub src: Src,
}

impl<T: Default> Fld<T> {
    /// An absent field that would live at `src`.
    pub fn absent(src: Src) -> Self {
        Self {
            value: T::default(),
            raw: Raw::Absent,
            src,
        }
    }
}

impl<T> Fld<T> {
    pub fn new(value: T, raw: Raw, src: Src) -> Self {
        Self { value, raw, src }
    }
}

impl Fld<Option<bool>> {
    pub fn opt_bool(value: Option<bool>, src: Src) -> Self {
        Self {
            value,
            raw: value.into(),
            src,
        }
    }
    pub fn is_true(&self) -> bool {
        self.value == Some(true)
    }
}

impl Fld<Option<i64>> {
    pub fn opt_int(value: Option<i64>, src: Src) -> Self {
        Self {
            value,
            raw: value.into(),
            src,
        }
    }
}

impl Fld<Option<Box<str>>> {
    pub fn opt_str(value: Option<&str>, src: Src) -> Self {
        Self {
            value: value.map(Into::into),
            raw: value.map_or(Raw::Absent, Raw::str),
            src,
        }
    }
    pub fn as_deref(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

/// A namespace mode (Docker `PidMode`, `NetworkMode`, …; Kubernetes `hostPID`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NsMode {
    /// The container has its own namespace (Docker `""`, `private`, `bridge`, a network name…).
    #[default]
    Private,
    /// The host's namespace.
    Host,
    /// Joined from another container (`container:<id>`).
    Container(Box<str>),
    /// No network at all (`none`).
    None,
}

/// A seccomp or AppArmor profile type, normalized across the field and annotation spellings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileType {
    RuntimeDefault,
    Localhost,
    Unconfined,
    /// Anything else, as written.
    Other(Box<str>),
}

/// SELinux options (Kubernetes `seLinuxOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeLinux {
    pub type_: Option<Box<str>>,
    pub user: Option<Box<str>>,
    pub role: Option<Box<str>>,
    pub level: Option<Box<str>>,
}

/// The security-context fields that exist at both pod and container level (Kubernetes), where
/// the container value wins and the pod value fills nil (E3).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedSc {
    pub run_as_user: Fld<Option<i64>>,
    pub run_as_group: Fld<Option<i64>>,
    pub run_as_non_root: Fld<Option<bool>>,
    pub se_linux: Fld<Option<SeLinux>>,
    pub seccomp: Fld<Option<ProfileType>>,
    pub apparmor: Fld<Option<ProfileType>>,
    pub windows_user: Fld<Option<Box<str>>>,
    pub host_process: Fld<Option<bool>>,
}

impl SharedSc {
    /// All fields absent, at the paths they would have under `base`.
    pub fn absent(base: Base) -> Self {
        let src = |path| Src {
            base,
            path,
            index: None,
        };
        Self {
            run_as_user: Fld::absent(src("/securityContext/runAsUser")),
            run_as_group: Fld::absent(src("/securityContext/runAsGroup")),
            run_as_non_root: Fld::absent(src("/securityContext/runAsNonRoot")),
            se_linux: Fld::absent(src("/securityContext/seLinuxOptions")),
            seccomp: Fld::absent(src("/securityContext/seccompProfile/type")),
            apparmor: Fld::absent(src("/securityContext/appArmorProfile/type")),
            windows_user: Fld::absent(src("/securityContext/windowsOptions/runAsUserName")),
            host_process: Fld::absent(src("/securityContext/windowsOptions/hostProcess")),
        }
    }
}

/// A legacy seccomp / AppArmor annotation (E6, E22), with its own pointer.
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    pub ptr: Box<str>,
    pub value: Box<str>,
}

/// A capability as written and its `capnorm` spelling (E1).
#[derive(Clone, Debug, PartialEq)]
pub struct Cap {
    pub raw: Box<str>,
    pub norm: Cow<'static, str>,
}

impl Cap {
    pub fn new(raw: &str) -> Self {
        Self {
            raw: raw.into(),
            norm: capnorm(raw),
        }
    }
}

/// A list of capabilities and where the list lives.
#[derive(Clone, Debug, PartialEq)]
pub struct CapList {
    pub items: Vec<Cap>,
    /// Whether the list is present in the source (an empty list and a missing one differ for
    /// evidence only).
    pub present: bool,
    pub src: Src,
}

impl CapList {
    pub fn absent(src: Src) -> Self {
        Self {
            items: Vec::new(),
            present: false,
            src,
        }
    }
    pub fn contains_norm(&self, name: &str) -> bool {
        self.items.iter().any(|cap| cap.norm == name)
    }
}

/// A resource amount: a Docker byte / CPU count or a Kubernetes quantity string.
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    Int(i64),
    Quantity(Box<str>),
}

impl Amount {
    /// Whether the amount is zero (which means "no limit" for Docker and is useless for
    /// Kubernetes).
    pub fn is_zero(&self) -> bool {
        match self {
            Amount::Int(value) => *value == 0,
            Amount::Quantity(text) => {
                let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                !digits.is_empty() && digits.parse::<f64>().is_ok_and(|value| value == 0.0)
            }
        }
    }
}

/// Resource limits and requests of one container (or of the pod, for pod-level resources).
#[derive(Clone, Debug, PartialEq)]
pub struct Resources {
    pub limits_memory: Fld<Option<Amount>>,
    pub limits_cpu: Fld<Option<Amount>>,
    pub limits_ephemeral: Fld<Option<Amount>>,
    pub requests_memory: Fld<Option<Amount>>,
    pub requests_cpu: Fld<Option<Amount>>,
    /// Extended resources in limits (device plugins: `nvidia.com/gpu`, …), with their index in
    /// insertion order; the names are kept for evidence.
    pub extended: Vec<Box<str>>,
}

impl Resources {
    pub fn absent(base: Base, prefix_limits: &'static [&'static str; 5]) -> Self {
        let src = |path| Src {
            base,
            path,
            index: None,
        };
        Self {
            limits_memory: Fld::absent(src(prefix_limits[0])),
            limits_cpu: Fld::absent(src(prefix_limits[1])),
            limits_ephemeral: Fld::absent(src(prefix_limits[2])),
            requests_memory: Fld::absent(src(prefix_limits[3])),
            requests_cpu: Fld::absent(src(prefix_limits[4])),
            extended: Vec::new(),
        }
    }
}

/// Where a Kubernetes container's resource fields live.
pub const K8S_RESOURCE_PATHS: [&str; 5] = [
    "/resources/limits/memory",
    "/resources/limits/cpu",
    "/resources/limits/ephemeral-storage",
    "/resources/requests/memory",
    "/resources/requests/cpu",
];

/// A Kubernetes container port (`ports[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub index: u32,
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    pub host_ip: Option<Box<str>>,
}

/// A probe or lifecycle handler that sets `host` (PSS Host Probes).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeHost {
    /// Path from the container, e.g. `/livenessProbe/httpGet/host`.
    pub path: &'static str,
    pub host: Box<str>,
}

/// What the probes of a container declare.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Probes {
    pub liveness: bool,
    pub readiness: bool,
    pub startup: bool,
    pub hosts: Vec<ProbeHost>,
}

/// Why an environment variable looks like a literal secret (never the value itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretHit {
    /// The pattern that matched, e.g. `name contains "password"` or `AWS access key id`.
    pub rule: &'static str,
    /// Whether the value (not only the name) matched a high-confidence token pattern.
    pub by_value: bool,
}

/// How an environment variable gets its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvKind {
    /// A literal value in the spec; `secret` says whether it looks like a credential.
    Literal { secret: Option<SecretHit> },
    /// `valueFrom.secretKeyRef`.
    SecretRef,
    /// Any other `valueFrom` (configMapKeyRef, fieldRef, resourceFieldRef).
    OtherRef,
}

/// An environment variable: its name and how its value is set. The value is not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: Box<str>,
    pub index: u32,
    pub kind: EnvKind,
}

/// A command or argument element that matters to a check (sudo, a token in an argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgHit {
    pub src: Src,
    /// What matched: `sudo`, or the name of a token pattern.
    pub what: &'static str,
}

/// What backs a volume.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumeSource {
    /// A host directory or file: Kubernetes `hostPath`, Docker bind mount.
    HostPath {
        path: Box<str>,
        /// `pathnorm(path)`.
        norm: Box<str>,
        /// Kubernetes `hostPath.type` (`Socket`, `Directory`, …).
        type_: Option<Box<str>>,
    },
    /// A Windows named pipe (Docker `Type: npipe`).
    Npipe { path: Box<str> },
    /// A Docker named volume; `device` is the host path when the volume is a disguised bind
    /// (local driver, `o=bind`), if known.
    DockerVolume { name: Box<str>, driver: Box<str> },
    /// A tmpfs (Docker) mount.
    Tmpfs,
    /// A projected volume holding a ServiceAccount token source.
    Projected { service_account_token: bool },
    /// Any other Kubernetes volume type, by its field name (`configMap`, `nfs`, …).
    Other(Box<str>),
}

/// A pod volume (Kubernetes `volumes[]`) or a Docker mount (`.Mounts[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub name: Box<str>,
    /// The pointer of the volume entry (`/spec/volumes/3`, `/Mounts/0`).
    pub ptr: Box<str>,
    /// Path of the host path within the entry (`/hostPath/path`, `/Source`).
    pub path_tail: &'static str,
    pub source: VolumeSource,
}

/// A container's use of a volume.
#[derive(Clone, Debug, PartialEq)]
pub struct MountRef {
    /// Index into [`WorkloadSpec::volumes`]; `None` when the named volume does not exist.
    pub volume: Option<u32>,
    /// The pointer of the mount entry (`/spec/containers/0/volumeMounts/1`, `/Mounts/0`).
    pub ptr: Box<str>,
    pub destination: Box<str>,
    pub read_only: bool,
    /// The read-only flag as written, and its path within the entry (`/readOnly`, `/RW`).
    pub read_only_raw: Raw,
    pub read_only_tail: &'static str,
    pub recursive_read_only: Option<Box<str>>,
    pub sub_path: Option<Box<str>>,
    /// The normalized host path the container sees when the volume is a host path and a
    /// `subPath` narrows it (`pathnorm(volume path + "/" + subPath)`).
    pub sub_host_path: Option<Box<str>>,
    pub propagation: Option<Box<str>>,
    pub propagation_tail: &'static str,
}

/// One container: its own fields, already resolved where the source allows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    pub name: Box<str>,
    pub role: Role,
    /// The container's pointer (`/spec/template/spec/containers/0`; `""` for Docker).
    pub ptr: Box<str>,
    /// The image reference as written.
    pub image: Fld<Option<Box<str>>>,
    pub pull_policy: Fld<Option<Box<str>>>,
    /// The resolved image id of a running container (Docker `.Image`, Kubernetes status
    /// `imageID`).
    pub image_id: Option<Box<str>>,
    pub privileged: Fld<Option<bool>>,
    /// Whether privilege escalation is allowed: Kubernetes `allowPrivilegeEscalation`; Docker
    /// `no-new-privileges` inverted (`Some(false)` when it is set). `None` = not set.
    pub escalation: Fld<Option<bool>>,
    pub cap_add: CapList,
    pub cap_drop: CapList,
    /// Container-level values of the fields shared with the pod (Kubernetes).
    pub sc: SharedSc,
    pub read_only_rootfs: Fld<Option<bool>>,
    pub proc_mount: Fld<Option<Box<str>>>,
    pub seccomp_annotation: Option<Annotation>,
    pub apparmor_annotation: Option<Annotation>,
    pub ports: Vec<Port>,
    pub probes: Probes,
    pub resources: Resources,
    pub env: Vec<EnvVar>,
    /// Where the env list lives and where each entry's name is (`/env` + `/name`,
    /// `/Config/Env` + ``).
    pub env_src: Src,
    pub env_name_tail: &'static str,
    /// `envFrom[]` entries that reference a Secret, by index.
    pub env_from_secrets: Vec<u32>,
    /// Tokens found in command or arguments, and `sudo` in the entrypoint.
    pub arg_secrets: Vec<ArgHit>,
    pub sudo: Vec<ArgHit>,
    pub mounts: Vec<MountRef>,
}

impl ContainerSpec {
    /// A container with every field absent, pointing at `ptr`.
    pub fn empty(name: &str, role: Role, ptr: String) -> Self {
        Self {
            name: name.into(),
            role,
            ptr: ptr.into(),
            image: Fld::absent(Src::container("/image")),
            pull_policy: Fld::absent(Src::container("/imagePullPolicy")),
            image_id: None,
            privileged: Fld::absent(Src::container("/securityContext/privileged")),
            escalation: Fld::absent(Src::container("/securityContext/allowPrivilegeEscalation")),
            cap_add: CapList::absent(Src::container("/securityContext/capabilities/add")),
            cap_drop: CapList::absent(Src::container("/securityContext/capabilities/drop")),
            sc: SharedSc::absent(Base::Container),
            read_only_rootfs: Fld::absent(Src::container(
                "/securityContext/readOnlyRootFilesystem",
            )),
            proc_mount: Fld::absent(Src::container("/securityContext/procMount")),
            seccomp_annotation: None,
            apparmor_annotation: None,
            ports: Vec::new(),
            probes: Probes::default(),
            resources: Resources::absent(Base::Container, &K8S_RESOURCE_PATHS),
            env: Vec::new(),
            env_src: Src::container("/env"),
            env_name_tail: "/name",
            env_from_secrets: Vec::new(),
            arg_secrets: Vec::new(),
            sudo: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// A pod sysctl (or a Docker `HostConfig.Sysctls` key), with its own pointer.
#[derive(Clone, Debug, PartialEq)]
pub struct Sysctl {
    pub name: Box<str>,
    pub ptr: Box<str>,
}

/// Pod-level fields (Kubernetes `P.`; for Docker the container-wide settings of the same
/// meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct PodSpec {
    pub host_pid: Fld<NsMode>,
    pub host_network: Fld<NsMode>,
    pub host_ipc: Fld<NsMode>,
    pub host_uts: Fld<NsMode>,
    pub host_userns: Fld<NsMode>,
    pub host_cgroupns: Fld<NsMode>,
    pub share_process_namespace: Fld<Option<bool>>,
    /// Kubernetes `hostUsers` (`false` = user namespace).
    pub host_users: Fld<Option<bool>>,
    pub sc: SharedSc,
    pub supplemental_groups: Vec<i64>,
    pub supplemental_groups_src: Src,
    pub fs_group: Fld<Option<i64>>,
    pub sysctls: Vec<Sysctl>,
    pub seccomp_annotation: Option<Annotation>,
    pub automount_sa_token: Fld<Option<bool>>,
    pub service_account: Fld<Option<Box<str>>>,
    pub runtime_class: Fld<Option<Box<str>>>,
    /// Pod-level `spec.resources` (limits that bound every container).
    pub resources: Resources,
    /// `os.name` as written.
    pub os_name: Fld<Option<Box<str>>>,
    /// `restartPolicy` of the pod (`Never`/`OnFailure` for run-to-completion workloads).
    pub restart_policy: Fld<Option<Box<str>>>,
}

impl PodSpec {
    pub fn absent() -> Self {
        Self {
            host_pid: Fld::absent(Src::pod("/hostPID")),
            host_network: Fld::absent(Src::pod("/hostNetwork")),
            host_ipc: Fld::absent(Src::pod("/hostIPC")),
            host_uts: Fld::absent(Src::pod("/hostNetwork")),
            host_userns: Fld::absent(Src::pod("/hostUsers")),
            host_cgroupns: Fld::absent(Src::pod("/hostCgroupns")),
            share_process_namespace: Fld::absent(Src::pod("/shareProcessNamespace")),
            host_users: Fld::absent(Src::pod("/hostUsers")),
            sc: SharedSc::absent(Base::Pod),
            supplemental_groups: Vec::new(),
            supplemental_groups_src: Src::pod("/securityContext/supplementalGroups"),
            fs_group: Fld::absent(Src::pod("/securityContext/fsGroup")),
            sysctls: Vec::new(),
            seccomp_annotation: None,
            automount_sa_token: Fld::absent(Src::pod("/automountServiceAccountToken")),
            service_account: Fld::absent(Src::pod("/serviceAccountName")),
            runtime_class: Fld::absent(Src::pod("/runtimeClassName")),
            resources: Resources::absent(Base::Pod, &K8S_RESOURCE_PATHS),
            os_name: Fld::absent(Src::pod("/os/name")),
            restart_policy: Fld::absent(Src::pod("/restartPolicy")),
        }
    }
}

/// The user of a Docker container (`.Config.User`, `user[:group]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UserPart {
    /// Empty: the image default, root unless the image says otherwise… but `.Config.User` in
    /// the container JSON is already the effective value, so empty means root.
    #[default]
    Empty,
    Id(i64),
    Name(Box<str>),
}

impl UserPart {
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if text.is_empty() {
            UserPart::Empty
        } else if let Ok(id) = text.parse::<i64>() {
            UserPart::Id(id)
        } else {
            UserPart::Name(text.into())
        }
    }

    /// Whether this names root (`""`, `0`, `root`).
    pub fn is_root(&self) -> bool {
        match self {
            UserPart::Empty => true,
            UserPart::Id(id) => *id == 0,
            UserPart::Name(name) => &**name == "root",
        }
    }
}

/// `user[:group]` parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerUser {
    pub user: UserPart,
    pub group: Option<UserPart>,
}

impl DockerUser {
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((user, group)) => Self {
                user: UserPart::parse(user),
                group: Some(UserPart::parse(group)),
            },
            None => Self {
                user: UserPart::parse(text),
                group: None,
            },
        }
    }
}

/// The seccomp setting of a Docker container (`SecurityOpt` key `seccomp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerSeccomp {
    Unconfined,
    /// An inline JSON profile whose `defaultAction` allows or only logs.
    InlinePermissive(Box<str>),
    /// An inline JSON profile that denies by default.
    InlineConfined,
    /// `builtin` / `default`.
    Default,
    /// Anything else as written (a profile path the daemon could not read…).
    Other(Box<str>),
}

/// One parsed `SecurityOpt` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityOpt {
    pub index: u32,
    /// The entry as written (an inline seccomp profile is shortened to `seccomp=<inline profile>`).
    pub raw: Box<str>,
    pub key: Box<str>,
    /// The value (for `seccomp` with an inline profile: `<inline profile>`).
    pub value: Box<str>,
}

/// A published port binding of a Docker container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The pointer of the binding (`/HostConfig/PortBindings/80~1tcp/0`).
    pub ptr: Box<str>,
    /// `80/tcp`.
    pub container_port: Box<str>,
    pub host_ip: Box<str>,
    pub host_port: Box<str>,
}

/// A Docker device mapping (`HostConfig.Devices[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub index: u32,
    pub path_on_host: Box<str>,
}

/// The health check configured for a Docker container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    None,
    Disabled,
    Set,
}

/// Docker-only facts: fields without a Kubernetes counterpart, or whose Docker semantics differ
/// enough that the checks read them directly.
#[derive(Clone, Debug, PartialEq)]
pub struct DockerFacts {
    pub id: Box<str>,
    pub container_name: Box<str>,
    pub running: bool,
    pub platform: Fld<Option<Box<str>>>,
    pub user: Fld<DockerUser>,
    pub group_add: Vec<Box<str>>,
    pub security_opt: Vec<SecurityOpt>,
    /// The seccomp entry of `SecurityOpt` and its index.
    pub seccomp: Option<(u32, DockerSeccomp)>,
    pub apparmor_profile: Fld<Option<Box<str>>>,
    pub masked_paths: Fld<Option<usize>>,
    pub readonly_paths: Fld<Option<usize>>,
    pub devices: Vec<Device>,
    pub device_cgroup_rules: Vec<Box<str>>,
    pub device_requests: usize,
    pub bindings: Vec<Binding>,
    /// Effective bindings from `.NetworkSettings.Ports` (a running container).
    pub runtime_bindings: Vec<Binding>,
    pub publish_all_ports: Fld<bool>,
    pub network_mode: Fld<Box<str>>,
    pub networks: Vec<Box<str>>,
    pub nano_cpus: Fld<i64>,
    pub cpu_quota: Fld<i64>,
    pub cpuset_cpus: Fld<Box<str>>,
    pub cpu_shares: Fld<i64>,
    pub pids_limit: Fld<Option<i64>>,
    pub ulimits: Fld<usize>,
    pub cgroup_parent: Fld<Box<str>>,
    pub restart_policy: Fld<Box<str>>,
    pub restart_max_retries: Fld<i64>,
    pub runtime: Fld<Option<Box<str>>>,
    pub isolation: Fld<Option<Box<str>>>,
    pub healthcheck: Fld<Health>,
    pub exec_ids: Vec<Box<str>>,
    pub labels_compose: Option<(Box<str>, Box<str>)>,
}

/// A workload in the normalized form every check reads.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    pub platform: Platform,
    /// `Deployment`, `Pod`, …; `Container` for Docker.
    pub kind: Box<str>,
    pub name: Box<str>,
    pub namespace: Option<Box<str>>,
    /// An observed object (a Pod from the API with status, a Docker container) rather than a
    /// template; run-stage checks apply only to these.
    pub live: bool,
    pub os: Fld<Os>,
    /// The pointer of the pod spec (`/spec/template/spec`; `""` for Docker).
    pub pod_ptr: Box<str>,
    /// The pointer of the pod metadata (`/spec/template/metadata`; `""` for Docker).
    pub meta_ptr: Box<str>,
    /// Pod (template) labels, for NetworkPolicy selection.
    pub labels: Vec<(Box<str>, Box<str>)>,
    /// `harbormaster.io/trust` label or annotation (`untrusted`, `multi-tenant`).
    pub trust: Option<Box<str>>,
    /// A mirror (static) Pod, fixable only on the node.
    pub mirror: bool,
    /// The workload runs to completion (Job, CronJob, or a Pod with `restartPolicy` ≠ Always).
    pub run_to_completion: bool,
    pub pod: PodSpec,
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<Volume>,
    pub docker: Option<Box<DockerFacts>>,
}

impl WorkloadSpec {
    /// Renders the pointer of a source location, relative to `container` where needed.
    pub fn pointer<'a>(&'a self, container: Option<&'a ContainerSpec>, src: Src) -> Pointer<'a> {
        let base: &'a str = match src.base {
            Base::Root => "",
            Base::Pod => &self.pod_ptr,
            Base::Meta => &self.meta_ptr,
            Base::Container => container.map_or("", |c| &c.ptr),
        };
        Pointer {
            base,
            path: src.path,
            index: src.index,
            tail: "",
        }
    }

    pub fn is_windows(&self) -> bool {
        self.os.value == Os::Windows
    }

    /// The namespace, `default` when unset (Kubernetes).
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The volume a mount refers to.
    pub fn volume(&self, mount: &MountRef) -> Option<&Volume> {
        mount
            .volume
            .and_then(|index| self.volumes.get(index as usize))
    }

    /// A container-then-pod resolution of a shared field (E3): the container value when set,
    /// else the pod value. Returns the field that decided and the container it belongs to.
    pub fn eff<'a, T>(
        &'a self,
        container: &'a ContainerSpec,
        pick: impl Fn(&'a SharedSc) -> &'a Fld<Option<T>>,
    ) -> &'a Fld<Option<T>> {
        let own = pick(&container.sc);
        if own.value.is_some() {
            own
        } else {
            let pod = pick(&self.pod.sc);
            if pod.value.is_some() {
                pod
            } else {
                own
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canonicalisation helpers (CHECKS.md §0.6)
// ---------------------------------------------------------------------------------------------

/// Every Linux capability name, for mapping `capnorm` results to static strings.
const KNOWN_CAPS: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// The 14 capabilities Docker (and containerd's CRI) grant by default.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The 13 capabilities PSS baseline allows to be added (Docker's defaults minus NET_RAW).
pub const PSS_BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `capnorm(x)`: upper-case, trimmed, without a leading `CAP_`.
pub fn capnorm(raw: &str) -> Cow<'static, str> {
    let trimmed = raw.trim();
    let stripped = if trimmed.len() >= 4 && trimmed[..4].eq_ignore_ascii_case("CAP_") {
        &trimmed[4..]
    } else {
        trimmed
    };
    KNOWN_CAPS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(stripped))
        .map_or_else(
            || Cow::Owned(stripped.to_ascii_uppercase()),
            |known| Cow::Borrowed(*known),
        )
}

/// `pathnorm(p)`: collapse `//`, resolve `.` and `..`, drop the trailing `/`, map `/var/run`
/// to `/run`. Paths that do not start with `/` (Windows paths, named pipes) are returned as
/// written.
pub fn pathnorm(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.len() >= 2 && parts[0] == "var" && parts[1] == "run" {
        parts.remove(0);
    }
    if parts.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len());
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Whether `ancestor` is `path` or one of its parent directories (both normalized). `*`
/// in `path` matches any one segment.
pub fn is_ancestor_or_self(ancestor: &str, path: &str) -> bool {
    if ancestor == "/" {
        return path.starts_with('/');
    }
    let mut a = ancestor.split('/');
    let mut p = path.split('/');
    loop {
        match (a.next(), p.next()) {
            (None, _) => return true,
            (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if x != y && y != "*" && x != "*" {
                    return false;
                }
            }
        }
    }
}

/// The runtime sockets and socket directories whose exposure is root on the node.
pub const RUNTIME_SOCKETS: &[&str] = &[
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/podman/podman.sock",
    "/run/user/*/docker.sock",
    "/run/user/*/podman/podman.sock",
    "/run/cri-dockerd.sock",
    "/run/dockershim.sock",
    "/run/buildkit/buildkitd.sock",
];

/// Directories that contain runtime sockets: mounting them or anything below them exposes the
/// runtime.
pub const RUNTIME_SOCKET_DIRS: &[&str] = &["/run/docker", "/run/containerd", "/run/crio"];

/// The Docker engine's Windows named pipe.
pub const DOCKER_PIPE: &str = r"\\.\pipe\docker_engine";

/// How a normalized host path exposes a runtime socket, if it does.
pub fn runtime_socket_exposure(norm: &str) -> Option<&'static str> {
    if norm.eq_ignore_ascii_case(DOCKER_PIPE) || norm.eq_ignore_ascii_case("//./pipe/docker_engine")
    {
        return Some(DOCKER_PIPE);
    }
    for socket in RUNTIME_SOCKETS {
        if is_ancestor_or_self(norm, socket) {
            return Some(socket);
        }
    }
    // `/var/run` is a symlink to `/run`: mounting `/var` exposes the sockets too.
    if is_ancestor_or_self(norm, "/var/run") {
        return Some(RUNTIME_SOCKETS[0]);
    }
    RUNTIME_SOCKET_DIRS
        .iter()
        .find(|dir| is_ancestor_or_self(norm, dir) || is_ancestor_or_self(dir, norm))
        .copied()
}

/// Host paths whose exposure is critical (host root, kernel interfaces, node credentials).
pub const SENSITIVE_CRITICAL: &[&str] = &[
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/lib",
    "/lib64",
    "/usr",
    "/bin",
    "/sbin",
    "/var/lib/kubelet",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/etc/kubernetes",
    "/var/lib/etcd",
];

/// Host paths whose exposure is high (logs, home directories).
pub const SENSITIVE_HIGH: &[&str] = &["/var/log", "/home"];

/// Path segments that hold cloud or cluster credentials wherever they appear (kubescape C-0020
/// and friends): `/.aws/`, `/.config/gcloud/`, …
pub const CREDENTIAL_SEGMENTS: &[&str] = &[
    "/.aws",
    "/.azure",
    "/.config/gcloud",
    "/.kube",
    "/.docker",
    "/.ssh",
];

/// The sensitive entry a normalized host path matches: equal to it, an ancestor of it, or
/// inside it. Returns the entry and whether it belongs to the critical set.
pub fn sensitive_exposure(norm: &str) -> Option<(&'static str, bool)> {
    if !norm.starts_with('/') {
        return None;
    }
    // Exact or inside: the most specific entry wins, so `/etc/kubernetes` beats `/etc`.
    for entry in SENSITIVE_CRITICAL.iter().rev() {
        if *entry != "/" && is_ancestor_or_self(entry, norm) {
            return Some((entry, true));
        }
    }
    for entry in SENSITIVE_HIGH {
        if is_ancestor_or_self(entry, norm) {
            return Some((entry, false));
        }
    }
    for segment in CREDENTIAL_SEGMENTS {
        if let Some(at) = norm.find(segment) {
            let end = at + segment.len();
            if end == norm.len() || norm.as_bytes()[end] == b'/' {
                return Some((segment, false));
            }
        }
    }
    // An ancestor of a sensitive path: `/` itself, `/var` (holds /var/lib/kubelet), …
    if norm == "/" {
        return Some(("/", true));
    }
    for entry in SENSITIVE_CRITICAL {
        if is_ancestor_or_self(norm, entry) {
            return Some((entry, true));
        }
    }
    for entry in SENSITIVE_HIGH {
        if is_ancestor_or_self(norm, entry) {
            return Some((entry, false));
        }
    }
    None
}

/// An image reference split per §0.6 / E17, as byte ranges of the original text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub text: &'a str,
    /// The registry host (`docker.io` when implicit).
    pub registry: &'a str,
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
    /// A bare image id (`sha256:<64 hex>`, or a hex id prefix Docker accepts).
    pub is_id: bool,
}

impl<'a> ImageRef<'a> {
    pub fn parse(text: &'a str) -> Self {
        let text_trimmed = text.trim();
        if is_image_id(text_trimmed) {
            return Self {
                text,
                registry: "",
                repository: "",
                tag: None,
                digest: Some(text_trimmed),
                is_id: true,
            };
        }
        let (name, digest) = match text_trimmed.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (text_trimmed, None),
        };
        let last_slash = name.rfind('/');
        let (name, tag) = match name.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&name[..colon], Some(&name[colon + 1..]))
            }
            _ => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, rest)
            }
            _ => ("docker.io", name),
        };
        Self {
            text,
            registry,
            repository,
            tag,
            digest,
            is_id: false,
        }
    }

    /// Whether the digest is a well-formed `alg:hex` (sha256 = 64 hex, sha512 = 128 hex).
    pub fn has_valid_digest(&self) -> bool {
        let Some(digest) = self.digest else {
            return false;
        };
        if self.is_id {
            return true;
        }
        let Some((alg, hex)) = digest.split_once(':') else {
            return false;
        };
        let want = match alg {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        };
        hex.len() == want && hex.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The tag in effect: the written tag, or `latest` when there is neither tag nor digest.
    pub fn effective_tag(&self) -> Option<&'a str> {
        match (self.tag, self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }
}

fn is_image_id(text: &str) -> bool {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capnorm_folds_case_and_the_cap_prefix() {
        assert_eq!(capnorm("cap_sys_admin"), "SYS_ADMIN");
        assert_eq!(capnorm(" CAP_SYS_ADMIN "), "SYS_ADMIN");
        assert_eq!(capnorm("sys_chroot"), "SYS_CHROOT");
        assert_eq!(capnorm("all"), "ALL");
        assert_eq!(capnorm("Cap_Frobnicate"), "FROBNICATE");
    }

    #[test]
    fn pathnorm_resolves_dots_slashes_and_var_run() {
        assert_eq!(pathnorm("/var/run/docker.sock"), "/run/docker.sock");
        assert_eq!(pathnorm("//var//run/./docker.sock/"), "/run/docker.sock");
        assert_eq!(pathnorm("/var/lib/../run/docker.sock"), "/run/docker.sock");
        assert_eq!(pathnorm("/srv/../etc"), "/etc");
        assert_eq!(pathnorm("/var/"), "/var");
        assert_eq!(pathnorm("/.."), "/");
        assert_eq!(
            pathnorm(r"\\.\pipe\docker_engine"),
            r"\\.\pipe\docker_engine"
        );
    }

    #[test]
    fn socket_exposure_covers_parents_rootless_and_socket_directories() {
        for path in [
            "/run/docker.sock",
            "/run",
            "/var",
            "/",
            "/run/user/1000/docker.sock",
            "/run/user",
            "/run/containerd",
            "/run/containerd/io.containerd.runtime.v2.task",
            "/run/k3s/containerd/containerd.sock",
        ] {
            assert!(runtime_socket_exposure(path).is_some(), "{path}");
        }
        for path in [
            "/run/secrets",
            "/var/lib/app",
            "/run/user/1000/app.sock",
            "/srv",
        ] {
            assert!(runtime_socket_exposure(path).is_none(), "{path}");
        }
        assert!(runtime_socket_exposure(r"\\.\pipe\docker_engine").is_some());
    }

    #[test]
    fn sensitive_paths_match_equal_ancestor_and_descendant() {
        assert_eq!(sensitive_exposure("/etc"), Some(("/etc", true)));
        assert_eq!(sensitive_exposure("/etc/ssl/certs"), Some(("/etc", true)));
        assert_eq!(
            sensitive_exposure("/etc/kubernetes/pki"),
            Some(("/etc/kubernetes", true))
        );
        assert_eq!(sensitive_exposure("/var"), Some(("/var/lib/kubelet", true)));
        assert_eq!(sensitive_exposure("/"), Some(("/", true)));
        assert_eq!(
            sensitive_exposure("/var/log/pods"),
            Some(("/var/log", false))
        );
        assert_eq!(sensitive_exposure("/home/ci/.aws"), Some(("/home", false)));
        assert_eq!(
            sensitive_exposure("/srv/.aws/credentials"),
            Some(("/.aws", false))
        );
        assert_eq!(sensitive_exposure("/srv/data"), None);
        assert_eq!(sensitive_exposure("/opt/app"), None);
    }

    #[test]
    fn image_references_with_a_registry_port_have_no_tag() {
        let r = ImageRef::parse("registry:5000/app");
        assert_eq!(r.registry, "registry:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
        assert_eq!(r.effective_tag(), Some("latest"));

        let r = ImageRef::parse("registry:5000/team/app:1.2");
        assert_eq!(r.tag, Some("1.2"));
        let r = ImageRef::parse("nginx");
        assert_eq!(
            (r.registry, r.repository, r.tag),
            ("docker.io", "nginx", None)
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let text = format!("ghcr.io/acme/app:1.2@{digest}");
        let r = ImageRef::parse(&text);
        assert_eq!(r.tag, Some("1.2"));
        assert!(r.has_valid_digest());
        let short = "app@sha256:abc".to_string();
        assert!(!ImageRef::parse(&short).has_valid_digest());
        let id = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(ImageRef::parse(&id).is_id);
    }

    #[test]
    fn docker_user_strings_parse_user_and_group() {
        assert!(DockerUser::parse("").user.is_root());
        assert!(DockerUser::parse("0:0").user.is_root());
        assert!(DockerUser::parse("root:root").user.is_root());
        let u = DockerUser::parse("1000:0");
        assert!(!u.user.is_root());
        assert!(u.group.as_ref().is_some_and(UserPart::is_root));
        assert_eq!(DockerUser::parse("app").user, UserPart::Name("app".into()));
    }

    #[test]
    fn pointers_render_base_path_index_and_tail() {
        let p = Pointer {
            base: "/spec/containers/0",
            path: "/volumeMounts",
            index: Some(2),
            tail: "/readOnly",
        };
        assert_eq!(p.to_string(), "/spec/containers/0/volumeMounts/2/readOnly");
        assert_eq!(
            escape_token("container.apparmor.security.beta.kubernetes.io/app"),
            "container.apparmor.security.beta.kubernetes.io~1app"
        );
    }
}
