//! The Kubernetes adapter: a workload object (Pod, Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job, CronJob, ReplicationController) as `serde_json::Value` → [`WorkloadSpec`].
//!
//! It resolves the kind-specific pod spec root (`P.`) and metadata root (`M.`), visits init
//! containers (sidecars when `restartPolicy: Always`), regular containers and, on Pods,
//! ephemeral containers, and keeps pod-level and container-level values apart so checks can
//! apply the container-then-pod precedence (E3). A field of the wrong type is an error naming
//! its pointer: the API server would refuse the object too.

use serde_json::{Map, Value};

use super::checks::secrets;
use super::spec::{
    escape_token, pathnorm, Amount, Annotation, ArgHit, Base, Cap, CapList, ContainerSpec, EnvKind,
    EnvVar, Fld, MountRef, NsMode, Os, Platform, PodSpec, Port, ProbeHost, ProfileType, Raw,
    Resources, Role, SeLinux, SharedSc, Src, Sysctl, Volume, VolumeSource, WorkloadSpec,
};
use super::AdaptError;

/// The pod spec and pod metadata pointers of a workload kind, or `None` when the kind has no
/// pod template.
pub fn pod_paths(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "Pod" => Some(("/spec", "/metadata")),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some(("/spec/template/spec", "/spec/template/metadata")),
        "CronJob" => Some((
            "/spec/jobTemplate/spec/template/spec",
            "/spec/jobTemplate/spec/template/metadata",
        )),
        _ => None,
    }
}

/// Annotation keys read for legacy profiles and bookkeeping.
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
const APPARMOR_CONTAINER_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Label or annotation that marks a workload as untrusted / multi-tenant.
pub const TRUST_KEY: &str = "harbormaster.io/trust";

/// Adapts one workload object.
pub fn adapt(object: &Value) -> Result<WorkloadSpec, AdaptError> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| AdaptError::invalid("/kind", "missing kind"))?;
    let (pod_ptr, meta_ptr) =
        pod_paths(kind).ok_or_else(|| AdaptError::NotAWorkload(kind.to_string()))?;
    let pod = pointer(object, pod_ptr)
        .ok_or_else(|| AdaptError::invalid(pod_ptr, "the pod spec is missing"))?;
    let pod = obj(pod, pod_ptr)?;
    let meta = pointer(object, meta_ptr)
        .map(|m| obj(m, meta_ptr))
        .transpose()?;
    let top_meta = object
        .get("metadata")
        .map(|m| obj(m, "/metadata"))
        .transpose()?;

    let name = top_meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = top_meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(Into::into);

    let labels = string_map(meta.and_then(|m| m.get("labels")), meta_ptr, "/labels")?;
    let annotations = string_map(
        meta.and_then(|m| m.get("annotations")),
        meta_ptr,
        "/annotations",
    )?;
    let top_labels = string_map(
        top_meta.and_then(|m| m.get("labels")),
        "/metadata",
        "/labels",
    )?;
    let top_annotations = string_map(
        top_meta.and_then(|m| m.get("annotations")),
        "/metadata",
        "/annotations",
    )?;
    let find = |pairs: &[(String, String)], key: &str| {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let trust = find(&labels, TRUST_KEY)
        .or_else(|| find(&annotations, TRUST_KEY))
        .or_else(|| find(&top_labels, TRUST_KEY))
        .or_else(|| find(&top_annotations, TRUST_KEY));
    let mirror = find(&annotations, MIRROR_ANNOTATION).is_some();
    let annotation = |key: &str| {
        find(&annotations, key).map(|value| Annotation {
            ptr: format!("{meta_ptr}/annotations/{}", escape_token(key)).into(),
            value: value.into(),
        })
    };

    let mut pod_spec = PodSpec::absent();
    let bool_field =
        |key: &'static str, path: &'static str| -> Result<Fld<Option<bool>>, AdaptError> {
            Ok(Fld::opt_bool(
                get_bool(pod, key, pod_ptr, path)?,
                Src::pod(path),
            ))
        };
    let host_ns = |field: Fld<Option<bool>>| Fld {
        value: if field.is_true() {
            NsMode::Host
        } else {
            NsMode::Private
        },
        raw: field.raw,
        src: field.src,
    };
    pod_spec.host_pid = host_ns(bool_field("hostPID", "/hostPID")?);
    pod_spec.host_network = host_ns(bool_field("hostNetwork", "/hostNetwork")?);
    pod_spec.host_uts = pod_spec.host_network.clone();
    pod_spec.host_ipc = host_ns(bool_field("hostIPC", "/hostIPC")?);
    pod_spec.host_users = bool_field("hostUsers", "/hostUsers")?;
    pod_spec.host_userns = Fld {
        value: if pod_spec.host_users.value == Some(false) {
            NsMode::Private
        } else {
            NsMode::Host
        },
        raw: pod_spec.host_users.raw.clone(),
        src: pod_spec.host_users.src,
    };
    pod_spec.share_process_namespace =
        bool_field("shareProcessNamespace", "/shareProcessNamespace")?;
    pod_spec.automount_sa_token = bool_field(
        "automountServiceAccountToken",
        "/automountServiceAccountToken",
    )?;
    pod_spec.service_account =
        match get_str(pod, "serviceAccountName", pod_ptr, "/serviceAccountName")? {
            Some(name) => Fld::opt_str(Some(name), Src::pod("/serviceAccountName")),
            None => Fld::opt_str(
                get_str(pod, "serviceAccount", pod_ptr, "/serviceAccount")?,
                Src::pod("/serviceAccount"),
            ),
        };
    pod_spec.runtime_class = Fld::opt_str(
        get_str(pod, "runtimeClassName", pod_ptr, "/runtimeClassName")?,
        Src::pod("/runtimeClassName"),
    );
    pod_spec.restart_policy = Fld::opt_str(
        get_str(pod, "restartPolicy", pod_ptr, "/restartPolicy")?,
        Src::pod("/restartPolicy"),
    );
    let os_name = match pod.get("os") {
        Some(os) if !os.is_null() => get_str(
            obj(os, &format!("{pod_ptr}/os"))?,
            "name",
            pod_ptr,
            "/os/name",
        )?,
        _ => None,
    };
    pod_spec.os_name = Fld::opt_str(os_name, Src::pod("/os/name"));
    pod_spec.seccomp_annotation = annotation(SECCOMP_POD_ANNOTATION);

    if let Some(sc) = pod.get("securityContext").filter(|v| !v.is_null()) {
        let at = format!("{pod_ptr}/securityContext");
        let sc = obj(sc, &at)?;
        pod_spec.sc = shared_sc(sc, Base::Pod, &at)?;
        pod_spec.fs_group = Fld::opt_int(
            get_int(sc, "fsGroup", &at, "/fsGroup")?,
            Src::pod("/securityContext/fsGroup"),
        );
        for (index, group) in array(sc.get("supplementalGroups"), &at, "/supplementalGroups")?
            .iter()
            .enumerate()
        {
            let group = group.as_i64().ok_or_else(|| {
                AdaptError::invalid(
                    format!("{at}/supplementalGroups/{index}"),
                    "expected an integer",
                )
            })?;
            pod_spec.supplemental_groups.push(group);
        }
        for (index, sysctl) in array(sc.get("sysctls"), &at, "/sysctls")?
            .iter()
            .enumerate()
        {
            let item_at = format!("{at}/sysctls/{index}");
            let name = get_str(obj(sysctl, &item_at)?, "name", &item_at, "/name")?.unwrap_or("");
            pod_spec.sysctls.push(Sysctl {
                name: name.into(),
                ptr: format!("{item_at}/name").into(),
            });
        }
    }
    pod_spec.resources = resources(pod.get("resources"), Base::Pod, pod_ptr)?;

    let node_os = pod
        .get("nodeSelector")
        .and_then(|s| s.get("kubernetes.io/os"))
        .and_then(Value::as_str);
    let os = match (pod_spec.os_name.as_deref(), node_os) {
        (Some(name), _) => Fld::new(
            if name.eq_ignore_ascii_case("windows") {
                Os::Windows
            } else {
                Os::Linux
            },
            Raw::str(name),
            Src::pod("/os/name"),
        ),
        (None, Some(name)) => Fld::new(
            if name.eq_ignore_ascii_case("windows") {
                Os::Windows
            } else {
                Os::Linux
            },
            Raw::str(name),
            Src::pod("/nodeSelector/kubernetes.io~1os"),
        ),
        (None, None) => Fld::new(Os::Linux, Raw::Absent, Src::pod("/os/name")),
    };

    // Volumes.
    let mut volumes = Vec::new();
    for (index, volume) in array(pod.get("volumes"), pod_ptr, "/volumes")?
        .iter()
        .enumerate()
    {
        let at = format!("{pod_ptr}/volumes/{index}");
        let volume_obj = obj(volume, &at)?;
        volumes.push(volume_from(volume_obj, at)?);
    }

    // Status: live Pods carry image ids and show ephemeral containers.
    let status = object.get("status").and_then(Value::as_object);
    let live = kind == "Pod"
        && status.is_some_and(|s| s.contains_key("phase") || s.contains_key("containerStatuses"));

    let mut containers = Vec::new();
    let container_annotation = |prefix: &str, name: &str| annotation(&format!("{prefix}{name}"));
    let lists: [(&str, Role); 3] = [
        ("initContainers", Role::Init),
        ("containers", Role::Container),
        ("ephemeralContainers", Role::Ephemeral),
    ];
    for (list, role) in lists {
        if role == Role::Ephemeral && kind != "Pod" {
            continue;
        }
        let list_at = format!("/{list}");
        for (index, container) in array(pod.get(list), pod_ptr, &list_at)?.iter().enumerate() {
            let at = format!("{pod_ptr}/{list}/{index}");
            let container = obj(container, &at)?;
            let mut spec = container_from(container, role, at, &volumes)?;
            spec.seccomp_annotation = container_annotation(SECCOMP_CONTAINER_PREFIX, &spec.name);
            spec.apparmor_annotation = container_annotation(APPARMOR_CONTAINER_PREFIX, &spec.name);
            if let Some(status) = status {
                spec.image_id = status_image_id(status, role, &spec.name);
            }
            containers.push(spec);
        }
    }

    let run_to_completion = matches!(kind, "Job" | "CronJob")
        || matches!(
            pod_spec.restart_policy.as_deref(),
            Some("Never") | Some("OnFailure")
        );

    Ok(WorkloadSpec {
        platform: Platform::Kubernetes,
        kind: kind.into(),
        name: name.into(),
        namespace,
        live,
        os,
        pod_ptr: pod_ptr.into(),
        meta_ptr: meta_ptr.into(),
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        trust: trust.map(Into::into),
        mirror,
        run_to_completion,
        pod: pod_spec,
        containers,
        volumes,
        docker: None,
    })
}

fn status_image_id(status: &Map<String, Value>, role: Role, name: &str) -> Option<Box<str>> {
    let key = match role {
        Role::Init | Role::Sidecar => "initContainerStatuses",
        Role::Container => "containerStatuses",
        Role::Ephemeral => "ephemeralContainerStatuses",
    };
    status
        .get(key)?
        .as_array()?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name))?
        .get("imageID")?
        .as_str()
        .filter(|id| !id.is_empty())
        .map(Into::into)
}

fn volume_from(volume: &Map<String, Value>, at: String) -> Result<Volume, AdaptError> {
    let name = get_str(volume, "name", &at, "/name")?.unwrap_or("");
    // A volume without a source is defaulted to emptyDir by the API server.
    let mut source = VolumeSource::Other("emptyDir".into());
    for (key, value) in volume {
        if key == "name" || value.is_null() {
            continue;
        }
        source = match key.as_str() {
            "hostPath" => {
                let host = obj(value, &format!("{at}/hostPath"))?;
                let path = get_str(host, "path", &at, "/hostPath/path")?.unwrap_or("");
                VolumeSource::HostPath {
                    path: path.into(),
                    norm: pathnorm(path).into(),
                    type_: get_str(host, "type", &at, "/hostPath/type")?
                        .filter(|t| !t.is_empty())
                        .map(Into::into),
                }
            }
            "projected" => {
                let sources = value.get("sources").and_then(Value::as_array);
                VolumeSource::Projected {
                    service_account_token: sources.is_some_and(|sources| {
                        sources
                            .iter()
                            .any(|s| s.get("serviceAccountToken").is_some_and(|t| !t.is_null()))
                    }),
                }
            }
            other => VolumeSource::Other(other.into()),
        };
        break;
    }
    Ok(Volume {
        name: name.into(),
        ptr: at.into(),
        path_tail: "/hostPath/path",
        source,
    })
}

fn container_from(
    c: &Map<String, Value>,
    role: Role,
    at: String,
    volumes: &[Volume],
) -> Result<ContainerSpec, AdaptError> {
    let name = get_str(c, "name", &at, "/name")?.unwrap_or("");
    let role = if role == Role::Init
        && get_str(c, "restartPolicy", &at, "/restartPolicy")? == Some("Always")
    {
        Role::Sidecar
    } else {
        role
    };
    let mut spec = ContainerSpec::empty(name, role, at.clone());
    spec.image = Fld::opt_str(
        get_str(c, "image", &at, "/image")?,
        Src::container("/image"),
    );
    spec.pull_policy = Fld::opt_str(
        get_str(c, "imagePullPolicy", &at, "/imagePullPolicy")?,
        Src::container("/imagePullPolicy"),
    );

    if let Some(sc) = c.get("securityContext").filter(|v| !v.is_null()) {
        let sc_at = format!("{at}/securityContext");
        let sc = obj(sc, &sc_at)?;
        spec.privileged = Fld::opt_bool(
            get_bool(sc, "privileged", &sc_at, "/privileged")?,
            Src::container("/securityContext/privileged"),
        );
        spec.escalation = Fld::opt_bool(
            get_bool(
                sc,
                "allowPrivilegeEscalation",
                &sc_at,
                "/allowPrivilegeEscalation",
            )?,
            Src::container("/securityContext/allowPrivilegeEscalation"),
        );
        spec.read_only_rootfs = Fld::opt_bool(
            get_bool(
                sc,
                "readOnlyRootFilesystem",
                &sc_at,
                "/readOnlyRootFilesystem",
            )?,
            Src::container("/securityContext/readOnlyRootFilesystem"),
        );
        spec.proc_mount = Fld::opt_str(
            get_str(sc, "procMount", &sc_at, "/procMount")?,
            Src::container("/securityContext/procMount"),
        );
        if let Some(caps) = sc.get("capabilities").filter(|v| !v.is_null()) {
            let caps_at = format!("{sc_at}/capabilities");
            let caps = obj(caps, &caps_at)?;
            spec.cap_add = cap_list(
                caps.get("add"),
                &caps_at,
                "/add",
                Src::container("/securityContext/capabilities/add"),
            )?;
            spec.cap_drop = cap_list(
                caps.get("drop"),
                &caps_at,
                "/drop",
                Src::container("/securityContext/capabilities/drop"),
            )?;
        }
        spec.sc = shared_sc(sc, Base::Container, &sc_at)?;
    }

    for (index, port) in array(c.get("ports"), &at, "/ports")?.iter().enumerate() {
        let port_at = format!("{at}/ports/{index}");
        let port = obj(port, &port_at)?;
        spec.ports.push(Port {
            index: index as u32,
            container_port: get_int(port, "containerPort", &port_at, "/containerPort")?,
            host_port: get_int(port, "hostPort", &port_at, "/hostPort")?,
            host_ip: get_str(port, "hostIP", &port_at, "/hostIP")?.map(Into::into),
        });
    }

    const PROBES: [(&str, [&str; 2]); 3] = [
        (
            "livenessProbe",
            [
                "/livenessProbe/httpGet/host",
                "/livenessProbe/tcpSocket/host",
            ],
        ),
        (
            "readinessProbe",
            [
                "/readinessProbe/httpGet/host",
                "/readinessProbe/tcpSocket/host",
            ],
        ),
        (
            "startupProbe",
            ["/startupProbe/httpGet/host", "/startupProbe/tcpSocket/host"],
        ),
    ];
    for (key, paths) in PROBES {
        let Some(probe) = c.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        match key {
            "livenessProbe" => spec.probes.liveness = true,
            "readinessProbe" => spec.probes.readiness = true,
            _ => spec.probes.startup = true,
        }
        probe_hosts(probe, paths, &mut spec.probes.hosts);
    }
    if let Some(lifecycle) = c.get("lifecycle").filter(|v| !v.is_null()) {
        for (key, paths) in [
            (
                "postStart",
                [
                    "/lifecycle/postStart/httpGet/host",
                    "/lifecycle/postStart/tcpSocket/host",
                ],
            ),
            (
                "preStop",
                [
                    "/lifecycle/preStop/httpGet/host",
                    "/lifecycle/preStop/tcpSocket/host",
                ],
            ),
        ] {
            if let Some(handler) = lifecycle.get(key) {
                probe_hosts(handler, paths, &mut spec.probes.hosts);
            }
        }
    }

    spec.resources = resources(c.get("resources"), Base::Container, &at)?;

    for (index, var) in array(c.get("env"), &at, "/env")?.iter().enumerate() {
        let var_at = format!("{at}/env/{index}");
        let var = obj(var, &var_at)?;
        let name = get_str(var, "name", &var_at, "/name")?.unwrap_or("");
        let kind = match var.get("valueFrom").filter(|v| !v.is_null()) {
            Some(from) if from.get("secretKeyRef").is_some_and(|r| !r.is_null()) => {
                EnvKind::SecretRef
            }
            Some(_) => EnvKind::OtherRef,
            None => {
                let value = match var.get("value") {
                    None | Some(Value::Null) => "",
                    Some(Value::String(text)) => text,
                    Some(_) => {
                        return Err(AdaptError::invalid(
                            format!("{var_at}/value"),
                            "expected a string",
                        ))
                    }
                };
                EnvKind::Literal {
                    secret: secrets::classify_env(name, value),
                }
            }
        };
        spec.env.push(EnvVar {
            name: name.into(),
            index: index as u32,
            kind,
        });
    }
    for (index, from) in array(c.get("envFrom"), &at, "/envFrom")?.iter().enumerate() {
        if from.get("secretRef").is_some_and(|r| !r.is_null()) {
            spec.env_from_secrets.push(index as u32);
        }
    }

    for (key, path) in [("command", "/command"), ("args", "/args")] {
        for (index, arg) in array(c.get(key), &at, path)?.iter().enumerate() {
            let Some(arg) = arg.as_str() else {
                return Err(AdaptError::invalid(
                    format!("{at}{path}/{index}"),
                    "expected a string",
                ));
            };
            let src = Src::container(path).at(index as u32);
            if secrets::mentions_sudo(arg) {
                spec.sudo.push(ArgHit { src, what: "sudo" });
            }
            if let Some(what) = secrets::token_in(arg) {
                spec.arg_secrets.push(ArgHit { src, what });
            }
        }
    }

    for (index, mount) in array(c.get("volumeMounts"), &at, "/volumeMounts")?
        .iter()
        .enumerate()
    {
        let mount_at = format!("{at}/volumeMounts/{index}");
        let mount = obj(mount, &mount_at)?;
        let volume_name = get_str(mount, "name", &mount_at, "/name")?.unwrap_or("");
        let read_only = get_bool(mount, "readOnly", &mount_at, "/readOnly")?;
        let volume = volumes.iter().position(|v| &*v.name == volume_name);
        let sub_path = get_str(mount, "subPath", &mount_at, "/subPath")?
            .or(get_str(mount, "subPathExpr", &mount_at, "/subPathExpr")?)
            .filter(|p| !p.is_empty());
        let sub_host_path = match (volume.map(|i| &volumes[i].source), sub_path) {
            (Some(VolumeSource::HostPath { norm, .. }), Some(sub)) => {
                Some(pathnorm(&format!("{norm}/{sub}")).into())
            }
            _ => None,
        };
        spec.mounts.push(MountRef {
            volume: volume.map(|i| i as u32),
            sub_host_path,
            destination: get_str(mount, "mountPath", &mount_at, "/mountPath")?
                .unwrap_or("")
                .into(),
            read_only: read_only == Some(true),
            read_only_raw: read_only.into(),
            read_only_tail: "/readOnly",
            recursive_read_only: get_str(
                mount,
                "recursiveReadOnly",
                &mount_at,
                "/recursiveReadOnly",
            )?
            .map(Into::into),
            sub_path: sub_path.map(Into::into),
            propagation: get_str(mount, "mountPropagation", &mount_at, "/mountPropagation")?
                .map(Into::into),
            propagation_tail: "/mountPropagation",
            ptr: mount_at.into(),
        });
    }
    Ok(spec)
}

fn probe_hosts(handler: &Value, paths: [&'static str; 2], out: &mut Vec<ProbeHost>) {
    for (kind, path) in [("httpGet", paths[0]), ("tcpSocket", paths[1])] {
        if let Some(host) = handler
            .get(kind)
            .and_then(|h| h.get("host"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
        {
            out.push(ProbeHost {
                path,
                host: host.into(),
            });
        }
    }
}

fn resources(value: Option<&Value>, base: Base, at: &str) -> Result<Resources, AdaptError> {
    let mut out = Resources::absent(base, &super::spec::K8S_RESOURCE_PATHS);
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let res_at = format!("{at}/resources");
    let value = obj(value, &res_at)?;
    let amount = |map: Option<&Value>, key: &str| -> Result<Option<(Amount, Raw)>, AdaptError> {
        match map.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some((
                Amount::Quantity(text.as_str().into()),
                Raw::str(text),
            ))),
            Some(Value::Number(number)) => {
                let text = number.to_string();
                Ok(Some((
                    Amount::Quantity(text.as_str().into()),
                    Raw::Str(text.into()),
                )))
            }
            Some(_) => Err(AdaptError::invalid(
                format!("{res_at}/{key}"),
                "expected a quantity",
            )),
        }
    };
    let limits = value.get("limits");
    let requests = value.get("requests");
    let set = |field: &mut Fld<Option<Amount>>, found: Option<(Amount, Raw)>| {
        if let Some((amount, raw)) = found {
            field.value = Some(amount);
            field.raw = raw;
        }
    };
    set(&mut out.limits_memory, amount(limits, "memory")?);
    set(&mut out.limits_cpu, amount(limits, "cpu")?);
    set(
        &mut out.limits_ephemeral,
        amount(limits, "ephemeral-storage")?,
    );
    set(&mut out.requests_memory, amount(requests, "memory")?);
    set(&mut out.requests_cpu, amount(requests, "cpu")?);
    if let Some(limits) = limits.and_then(Value::as_object) {
        for key in limits.keys() {
            if key.contains('/') && !key.starts_with("kubernetes.io/") {
                out.extended.push(key.as_str().into());
            }
        }
    }
    Ok(out)
}

fn shared_sc(sc: &Map<String, Value>, base: Base, at: &str) -> Result<SharedSc, AdaptError> {
    let src = |path| Src {
        base,
        path,
        index: None,
    };
    let mut out = SharedSc::absent(base);
    out.run_as_user = Fld::opt_int(
        get_int(sc, "runAsUser", at, "/runAsUser")?,
        src("/securityContext/runAsUser"),
    );
    out.run_as_group = Fld::opt_int(
        get_int(sc, "runAsGroup", at, "/runAsGroup")?,
        src("/securityContext/runAsGroup"),
    );
    out.run_as_non_root = Fld::opt_bool(
        get_bool(sc, "runAsNonRoot", at, "/runAsNonRoot")?,
        src("/securityContext/runAsNonRoot"),
    );
    if let Some(options) = sc.get("seLinuxOptions").filter(|v| !v.is_null()) {
        let opt_at = format!("{at}/seLinuxOptions");
        let options = obj(options, &opt_at)?;
        let text =
            |key: &'static str, path: &'static str| -> Result<Option<Box<str>>, AdaptError> {
                Ok(get_str(options, key, &opt_at, path)?
                    .filter(|v| !v.is_empty())
                    .map(Into::into))
            };
        let value = SeLinux {
            type_: text("type", "/type")?,
            user: text("user", "/user")?,
            role: text("role", "/role")?,
            level: text("level", "/level")?,
        };
        out.se_linux = Fld::new(
            Some(value),
            Raw::Summary("seLinuxOptions"),
            src("/securityContext/seLinuxOptions"),
        );
    }
    for (key, field, path) in [
        (
            "seccompProfile",
            &mut out.seccomp,
            "/securityContext/seccompProfile/type",
        ),
        (
            "appArmorProfile",
            &mut out.apparmor,
            "/securityContext/appArmorProfile/type",
        ),
    ] {
        if let Some(profile) = sc.get(key).filter(|v| !v.is_null()) {
            let profile_at = format!("{at}/{key}");
            let profile = obj(profile, &profile_at)?;
            if let Some(kind) = get_str(profile, "type", &profile_at, "/type")? {
                *field = Fld::new(Some(profile_type(kind)), Raw::str(kind), src(path));
            }
        }
    }
    if let Some(windows) = sc.get("windowsOptions").filter(|v| !v.is_null()) {
        let win_at = format!("{at}/windowsOptions");
        let windows = obj(windows, &win_at)?;
        out.host_process = Fld::opt_bool(
            get_bool(windows, "hostProcess", &win_at, "/hostProcess")?,
            src("/securityContext/windowsOptions/hostProcess"),
        );
        out.windows_user = Fld::opt_str(
            get_str(windows, "runAsUserName", &win_at, "/runAsUserName")?,
            src("/securityContext/windowsOptions/runAsUserName"),
        );
    }
    Ok(out)
}

/// The field spelling of a seccomp / AppArmor profile type.
pub fn profile_type(kind: &str) -> ProfileType {
    match kind {
        "RuntimeDefault" => ProfileType::RuntimeDefault,
        "Localhost" => ProfileType::Localhost,
        "Unconfined" => ProfileType::Unconfined,
        other => ProfileType::Other(other.into()),
    }
}

fn cap_list(value: Option<&Value>, at: &str, path: &str, src: Src) -> Result<CapList, AdaptError> {
    let items = array(value, at, path)?;
    let mut list = CapList::absent(src);
    list.present = value.is_some_and(|v| !v.is_null());
    for (index, item) in items.iter().enumerate() {
        let text = item.as_str().ok_or_else(|| {
            AdaptError::invalid(format!("{at}{path}/{index}"), "expected a string")
        })?;
        list.items.push(Cap::new(text));
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------------
// Typed access that names the pointer of a value of the wrong type.
// ---------------------------------------------------------------------------------------------

/// Follows a JSON pointer of plain keys.
fn pointer<'v>(value: &'v Value, ptr: &str) -> Option<&'v Value> {
    value.pointer(ptr).filter(|v| !v.is_null())
}

fn obj<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, AdaptError> {
    value
        .as_object()
        .ok_or_else(|| AdaptError::invalid(at, "expected an object"))
}

fn array<'v>(value: Option<&'v Value>, at: &str, path: &str) -> Result<&'v [Value], AdaptError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(AdaptError::invalid(
            format!("{at}{path}"),
            "expected a list",
        )),
    }
}

fn get_bool(
    map: &Map<String, Value>,
    key: &str,
    at: &str,
    path: &str,
) -> Result<Option<bool>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(AdaptError::invalid(
            format!("{at}{path}"),
            "expected a boolean",
        )),
    }
}

fn get_int(
    map: &Map<String, Value>,
    key: &str,
    at: &str,
    path: &str,
) -> Result<Option<i64>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| AdaptError::invalid(format!("{at}{path}"), "expected an integer")),
        Some(_) => Err(AdaptError::invalid(
            format!("{at}{path}"),
            "expected an integer",
        )),
    }
}

fn get_str<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    at: &str,
    path: &str,
) -> Result<Option<&'v str>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(AdaptError::invalid(
            format!("{at}{path}"),
            "expected a string",
        )),
    }
}

fn string_map(
    value: Option<&Value>,
    at: &str,
    path: &str,
) -> Result<Vec<(String, String)>, AdaptError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect()),
        Some(_) => Err(AdaptError::invalid(format!("{at}{path}"), "expected a map")),
    }
}
