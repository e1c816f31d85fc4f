//! The Docker adapter: one container's inspect JSON (`GET /containers/{id}/json`, one element
//! of `docker inspect`) → [`WorkloadSpec`].
//!
//! `.Mounts` is the primary mount list (`HostConfig.Binds` and `HostConfig.Mounts` are read only
//! when it is missing); `HostConfig.SecurityOpt` is parsed per §0.2 (split at the first `=`,
//! else at the first `:`; a bare `no-new-privileges` means true). Daemon facts (`docker info`)
//! are not part of the container JSON: checks read them from the
//! [`Context`](super::Context).

use serde_json::{Map, Value};

use super::checks::secrets;
use super::spec::{
    escape_token, pathnorm, Amount, ArgHit, Binding, Cap, CapList, ContainerSpec, Device,
    DockerFacts, DockerSeccomp, DockerUser, EnvKind, EnvVar, Fld, Health, MountRef, NsMode, Os,
    Platform, PodSpec, Raw, Role, SecurityOpt, Src, Sysctl, Volume, VolumeSource, WorkloadSpec,
};
use super::AdaptError;

/// Whether `document` looks like a container inspect document.
pub fn looks_like_container(document: &Value) -> bool {
    document.get("HostConfig").is_some_and(Value::is_object)
        && document.get("Config").is_some()
        && document.get("Id").is_some()
}

/// Adapts one container inspect document.
pub fn adapt(container: &Value) -> Result<WorkloadSpec, AdaptError> {
    let root = container
        .as_object()
        .ok_or_else(|| AdaptError::invalid("", "expected a container object"))?;
    let hc = obj(root.get("HostConfig"), "/HostConfig")?;
    let config = obj(root.get("Config"), "/Config")?;

    let id = text(root, "Id", "/Id")?.unwrap_or("");
    let container_name = text(root, "Name", "/Name")?
        .unwrap_or("")
        .trim_start_matches('/');
    let labels = config.get("Labels").and_then(Value::as_object);
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let compose = match (
        label("com.docker.compose.project"),
        label("com.docker.compose.service"),
    ) {
        (Some(project), Some(service)) => Some((Box::from(project), Box::from(service))),
        _ => None,
    };
    let workload_name = match &compose {
        Some((project, service)) => format!("{project}/{service}"),
        None => container_name.to_string(),
    };

    let platform_text = text(root, "Platform", "/Platform")?;
    let os = Fld::new(
        if platform_text.is_some_and(|p| p.eq_ignore_ascii_case("windows")) {
            Os::Windows
        } else {
            Os::Linux
        },
        platform_text.map_or(Raw::Absent, Raw::str),
        Src::root("/Platform"),
    );

    let mut c = ContainerSpec::empty(container_name, Role::Container, String::new());
    c.image = Fld::opt_str(
        text(config, "Image", "/Config/Image")?,
        Src::root("/Config/Image"),
    );
    c.image_id = text(root, "Image", "/Image")?.map(Into::into);
    c.privileged = Fld::opt_bool(
        boolean(hc, "Privileged", "/HostConfig/Privileged")?,
        Src::root("/HostConfig/Privileged"),
    );
    c.read_only_rootfs = Fld::opt_bool(
        boolean(hc, "ReadonlyRootfs", "/HostConfig/ReadonlyRootfs")?,
        Src::root("/HostConfig/ReadonlyRootfs"),
    );
    c.cap_add = caps(hc.get("CapAdd"), "/HostConfig/CapAdd")?;
    c.cap_drop = caps(hc.get("CapDrop"), "/HostConfig/CapDrop")?;

    // SecurityOpt.
    let mut security_opt = Vec::new();
    let mut seccomp = None;
    c.escalation = Fld::absent(Src::root("/HostConfig/SecurityOpt"));
    for (index, entry) in strings(hc.get("SecurityOpt"), "/HostConfig/SecurityOpt")?
        .into_iter()
        .enumerate()
    {
        let index = index as u32;
        let (key, value) = split_security_opt(entry);
        let src = Src::root("/HostConfig/SecurityOpt").at(index);
        match key {
            "no-new-privileges" => {
                let enabled = if value.is_empty() {
                    Some(true)
                } else {
                    parse_go_bool(value)
                };
                let Some(enabled) = enabled else {
                    return Err(AdaptError::invalid(
                        format!("/HostConfig/SecurityOpt/{index}"),
                        "no-new-privileges takes a boolean",
                    ));
                };
                c.escalation = Fld::new(Some(!enabled), Raw::str(entry), src);
            }
            "seccomp" => {
                let parsed = parse_seccomp(value);
                let shown = if value.trim_start().starts_with('{') {
                    "<inline profile>"
                } else {
                    value
                };
                security_opt.push(SecurityOpt {
                    index,
                    raw: if shown == value {
                        entry.into()
                    } else {
                        format!("{key}=<inline profile>").into()
                    },
                    key: key.into(),
                    value: shown.into(),
                });
                seccomp = Some((index, parsed));
                continue;
            }
            _ => {}
        }
        security_opt.push(SecurityOpt {
            index,
            raw: entry.into(),
            key: key.into(),
            value: value.into(),
        });
    }

    // Environment: names kept, values classified then dropped.
    c.env_src = Src::root("/Config/Env");
    c.env_name_tail = "";
    for (index, entry) in strings(config.get("Env"), "/Config/Env")?
        .into_iter()
        .enumerate()
    {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        c.env.push(EnvVar {
            name: name.into(),
            index: index as u32,
            kind: EnvKind::Literal {
                secret: secrets::classify_env(name, value),
            },
        });
    }

    // Entrypoint and command (the configured ones; `.Path`/`.Args` when they are absent).
    let mut command_sources = vec![
        (config.get("Entrypoint"), "/Config/Entrypoint"),
        (config.get("Cmd"), "/Config/Cmd"),
    ];
    if command_sources
        .iter()
        .all(|(value, _)| value.is_none_or(Value::is_null))
    {
        command_sources = vec![(root.get("Args"), "/Args")];
        if let Some(path) = text(root, "Path", "/Path")? {
            scan_arg(&mut c, path, Src::root("/Path"));
        }
    }
    for (value, path) in command_sources {
        let items: Vec<&str> = match value {
            Some(Value::String(line)) => vec![line.as_str()],
            other => strings(other, path)?,
        };
        for (index, item) in items.into_iter().enumerate() {
            scan_arg(&mut c, item, Src::root(path).at(index as u32));
        }
    }

    // Resources.
    let memory = int(hc, "Memory", "/HostConfig/Memory")?;
    c.resources.limits_memory = Fld::new(
        memory.map(Amount::Int),
        memory.into(),
        Src::root("/HostConfig/Memory"),
    );

    // Mounts.
    let mut volumes = Vec::new();
    match root.get("Mounts") {
        Some(Value::Array(mounts)) => {
            for (index, mount) in mounts.iter().enumerate() {
                let at = format!("/Mounts/{index}");
                let mount = obj(Some(mount), &at)?;
                let kind = text(mount, "Type", &format!("{at}/Type"))?.unwrap_or("bind");
                let source = text(mount, "Source", &format!("{at}/Source"))?.unwrap_or("");
                let rw = boolean(mount, "RW", &format!("{at}/RW"))?;
                let volume_source = match kind {
                    "bind" => host_path(source),
                    "npipe" => VolumeSource::Npipe {
                        path: source.into(),
                    },
                    "volume" => VolumeSource::DockerVolume {
                        name: text(mount, "Name", &format!("{at}/Name"))?
                            .unwrap_or("")
                            .into(),
                        driver: text(mount, "Driver", &format!("{at}/Driver"))?
                            .unwrap_or("local")
                            .into(),
                    },
                    "tmpfs" => VolumeSource::Tmpfs,
                    other => VolumeSource::Other(other.into()),
                };
                let name = match &volume_source {
                    VolumeSource::DockerVolume { name, .. } => name.clone(),
                    _ => source.into(),
                };
                volumes.push(Volume {
                    name,
                    ptr: at.clone().into(),
                    path_tail: "/Source",
                    source: volume_source,
                });
                c.mounts.push(MountRef {
                    volume: Some(index as u32),
                    destination: text(mount, "Destination", &format!("{at}/Destination"))?
                        .unwrap_or("")
                        .into(),
                    read_only: rw == Some(false),
                    read_only_raw: rw.into(),
                    read_only_tail: "/RW",
                    recursive_read_only: None,
                    sub_path: None,
                    sub_host_path: None,
                    propagation: text(mount, "Propagation", &format!("{at}/Propagation"))?
                        .filter(|p| !p.is_empty())
                        .map(Into::into),
                    propagation_tail: "/Propagation",
                    ptr: at.into(),
                });
            }
        }
        None | Some(Value::Null) => declared_mounts(hc, &mut volumes, &mut c)?,
        Some(_) => return Err(AdaptError::invalid("/Mounts", "expected a list")),
    }

    // Pod-level (container-wide) settings.
    let mut pod = PodSpec::absent();
    pod.host_pid = ns_mode(hc, "PidMode")?;
    pod.host_network = ns_mode(hc, "NetworkMode")?;
    pod.host_ipc = ns_mode(hc, "IpcMode")?;
    pod.host_uts = ns_mode(hc, "UTSMode")?;
    pod.host_userns = ns_mode(hc, "UsernsMode")?;
    pod.host_cgroupns = ns_mode(hc, "CgroupnsMode")?;
    if let Some(sysctls) = hc.get("Sysctls").and_then(Value::as_object) {
        for key in sysctls.keys() {
            pod.sysctls.push(Sysctl {
                name: key.as_str().into(),
                ptr: format!("/HostConfig/Sysctls/{}", escape_token(key)).into(),
            });
        }
    }

    let network_mode = text(hc, "NetworkMode", "/HostConfig/NetworkMode")?.unwrap_or("");
    let networks = root
        .get("NetworkSettings")
        .and_then(|n| n.get("Networks"))
        .and_then(Value::as_object)
        .map(|n| n.keys().map(|k| k.as_str().into()).collect())
        .unwrap_or_default();

    let healthcheck = match config.get("Healthcheck") {
        None | Some(Value::Null) => {
            Fld::new(Health::None, Raw::Absent, Src::root("/Config/Healthcheck"))
        }
        Some(check) => {
            let test = check.get("Test").and_then(Value::as_array);
            let first = test.and_then(|t| t.first()).and_then(Value::as_str);
            match first {
                Some("NONE") => Fld::new(
                    Health::Disabled,
                    Raw::str("NONE"),
                    Src::root("/Config/Healthcheck/Test/0"),
                ),
                Some(kind) => Fld::new(
                    Health::Set,
                    Raw::str(kind),
                    Src::root("/Config/Healthcheck/Test/0"),
                ),
                None => Fld::new(
                    Health::None,
                    Raw::Absent,
                    Src::root("/Config/Healthcheck/Test"),
                ),
            }
        }
    };

    let restart = hc.get("RestartPolicy").and_then(Value::as_object);
    let restart_name = restart
        .and_then(|r| r.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let restart_retries = restart
        .and_then(|r| r.get("MaximumRetryCount"))
        .and_then(Value::as_i64)
        .unwrap_or(0);

    let user_text = text(config, "User", "/Config/User")?;
    let facts = DockerFacts {
        id: id.into(),
        container_name: container_name.into(),
        running: root
            .get("State")
            .and_then(|s| s.get("Running"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        platform: Fld::opt_str(platform_text, Src::root("/Platform")),
        user: Fld::new(
            DockerUser::parse(user_text.unwrap_or("")),
            user_text.map_or(Raw::Absent, Raw::str),
            Src::root("/Config/User"),
        ),
        group_add: strings(hc.get("GroupAdd"), "/HostConfig/GroupAdd")?
            .into_iter()
            .map(Into::into)
            .collect(),
        security_opt,
        seccomp,
        apparmor_profile: Fld::opt_str(
            text(root, "AppArmorProfile", "/AppArmorProfile")?,
            Src::root("/AppArmorProfile"),
        ),
        masked_paths: list_len(hc, "MaskedPaths", "/HostConfig/MaskedPaths")?,
        readonly_paths: list_len(hc, "ReadonlyPaths", "/HostConfig/ReadonlyPaths")?,
        devices: array(hc.get("Devices"), "/HostConfig/Devices")?
            .iter()
            .enumerate()
            .map(|(index, device)| Device {
                index: index as u32,
                path_on_host: device
                    .get("PathOnHost")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
            })
            .collect(),
        device_cgroup_rules: strings(hc.get("DeviceCgroupRules"), "/HostConfig/DeviceCgroupRules")?
            .into_iter()
            .map(Into::into)
            .collect(),
        device_requests: array(hc.get("DeviceRequests"), "/HostConfig/DeviceRequests")?.len(),
        bindings: bindings(hc.get("PortBindings"), "/HostConfig/PortBindings")?,
        runtime_bindings: bindings(
            root.get("NetworkSettings").and_then(|n| n.get("Ports")),
            "/NetworkSettings/Ports",
        )?,
        publish_all_ports: {
            let value = boolean(hc, "PublishAllPorts", "/HostConfig/PublishAllPorts")?;
            Fld::new(
                value == Some(true),
                value.into(),
                Src::root("/HostConfig/PublishAllPorts"),
            )
        },
        network_mode: Fld::new(
            network_mode.into(),
            Raw::str(network_mode),
            Src::root("/HostConfig/NetworkMode"),
        ),
        networks,
        nano_cpus: int_fld(hc, "NanoCpus")?,
        cpu_quota: int_fld(hc, "CpuQuota")?,
        cpu_shares: int_fld(hc, "CpuShares")?,
        cpuset_cpus: {
            let value = text(hc, "CpusetCpus", "/HostConfig/CpusetCpus")?;
            Fld::new(
                value.unwrap_or("").into(),
                value.map_or(Raw::Absent, Raw::str),
                Src::root("/HostConfig/CpusetCpus"),
            )
        },
        pids_limit: Fld::opt_int(
            int(hc, "PidsLimit", "/HostConfig/PidsLimit")?,
            Src::root("/HostConfig/PidsLimit"),
        ),
        ulimits: {
            let count = array(hc.get("Ulimits"), "/HostConfig/Ulimits")?.len();
            Fld::new(
                count,
                Raw::Int(count as i64),
                Src::root("/HostConfig/Ulimits"),
            )
        },
        cgroup_parent: {
            let value = text(hc, "CgroupParent", "/HostConfig/CgroupParent")?;
            Fld::new(
                value.unwrap_or("").into(),
                value.map_or(Raw::Absent, Raw::str),
                Src::root("/HostConfig/CgroupParent"),
            )
        },
        restart_policy: Fld::new(
            restart_name.into(),
            Raw::str(restart_name),
            Src::root("/HostConfig/RestartPolicy/Name"),
        ),
        restart_max_retries: Fld::new(
            restart_retries,
            Raw::Int(restart_retries),
            Src::root("/HostConfig/RestartPolicy/MaximumRetryCount"),
        ),
        runtime: Fld::opt_str(
            text(hc, "Runtime", "/HostConfig/Runtime")?.filter(|r| !r.is_empty()),
            Src::root("/HostConfig/Runtime"),
        ),
        isolation: Fld::opt_str(
            text(hc, "Isolation", "/HostConfig/Isolation")?.filter(|r| !r.is_empty()),
            Src::root("/HostConfig/Isolation"),
        ),
        healthcheck,
        exec_ids: strings(root.get("ExecIDs"), "/ExecIDs")?
            .into_iter()
            .map(Into::into)
            .collect(),
        labels_compose: compose,
    };

    Ok(WorkloadSpec {
        platform: Platform::Docker,
        kind: "Container".into(),
        name: workload_name.into(),
        namespace: None,
        live: true,
        os,
        pod_ptr: "".into(),
        meta_ptr: "".into(),
        labels: Vec::new(),
        trust: label(super::kubernetes::TRUST_KEY).map(Into::into),
        mirror: false,
        run_to_completion: false,
        pod,
        containers: vec![c],
        volumes,
        docker: Some(Box::new(facts)),
    })
}

/// Splits a `SecurityOpt` entry: at the first `=`, else at the first `:` (legacy).
pub fn split_security_opt(entry: &str) -> (&str, &str) {
    if let Some((key, value)) = entry.split_once('=') {
        (key, value)
    } else if let Some((key, value)) = entry.split_once(':') {
        (key, value)
    } else {
        (entry, "")
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_seccomp(value: &str) -> DockerSeccomp {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("unconfined") {
        return DockerSeccomp::Unconfined;
    }
    if trimmed.starts_with('{') {
        let action = serde_json::from_str::<Value>(trimmed)
            .ok()
            .and_then(|profile| {
                profile
                    .get("defaultAction")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default();
        return if matches!(action.as_str(), "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG") {
            DockerSeccomp::InlinePermissive(action.into())
        } else {
            DockerSeccomp::InlineConfined
        };
    }
    match trimmed {
        "builtin" | "default" | "" => DockerSeccomp::Default,
        other => DockerSeccomp::Other(other.into()),
    }
}

fn host_path(source: &str) -> VolumeSource {
    VolumeSource::HostPath {
        path: source.into(),
        norm: pathnorm(source).into(),
        type_: None,
    }
}

fn scan_arg(c: &mut ContainerSpec, arg: &str, src: Src) {
    if secrets::mentions_sudo(arg) {
        c.sudo.push(ArgHit { src, what: "sudo" });
    }
    if let Some(what) = secrets::token_in(arg) {
        c.arg_secrets.push(ArgHit { src, what });
    }
}

/// `HostConfig.Binds` and `HostConfig.Mounts`, for documents without `.Mounts`.
fn declared_mounts(
    hc: &Map<String, Value>,
    volumes: &mut Vec<Volume>,
    c: &mut ContainerSpec,
) -> Result<(), AdaptError> {
    for (index, bind) in strings(hc.get("Binds"), "/HostConfig/Binds")?
        .into_iter()
        .enumerate()
    {
        let parts = split_bind(bind);
        let source = parts.first().copied().unwrap_or("");
        let destination = parts.get(1).copied().unwrap_or("");
        let options = parts.get(2).copied().unwrap_or("");
        let is_path = source.starts_with('/')
            || source.starts_with('\\')
            || source.as_bytes().get(1) == Some(&b':');
        let ptr: Box<str> = format!("/HostConfig/Binds/{index}").into();
        let read_only = options.split(',').any(|o| o == "ro");
        volumes.push(Volume {
            name: source.into(),
            ptr: ptr.clone(),
            path_tail: "",
            source: if is_path {
                host_path(source)
            } else {
                VolumeSource::DockerVolume {
                    name: source.into(),
                    driver: "local".into(),
                }
            },
        });
        c.mounts.push(MountRef {
            volume: Some(volumes.len() as u32 - 1),
            ptr,
            destination: destination.into(),
            read_only,
            read_only_raw: Raw::str(options),
            read_only_tail: "",
            recursive_read_only: None,
            sub_path: None,
            sub_host_path: None,
            propagation: options
                .split(',')
                .find(|o| {
                    matches!(
                        *o,
                        "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                    )
                })
                .map(Into::into),
            propagation_tail: "",
        });
    }
    for (index, mount) in array(hc.get("Mounts"), "/HostConfig/Mounts")?
        .iter()
        .enumerate()
    {
        let at = format!("/HostConfig/Mounts/{index}");
        let mount = obj(Some(mount), &at)?;
        let kind = text(mount, "Type", &format!("{at}/Type"))?.unwrap_or("volume");
        let source = text(mount, "Source", &format!("{at}/Source"))?.unwrap_or("");
        let read_only = boolean(mount, "ReadOnly", &format!("{at}/ReadOnly"))?;
        volumes.push(Volume {
            name: source.into(),
            ptr: at.clone().into(),
            path_tail: "/Source",
            source: match kind {
                "bind" => host_path(source),
                "npipe" => VolumeSource::Npipe {
                    path: source.into(),
                },
                "tmpfs" => VolumeSource::Tmpfs,
                _ => VolumeSource::DockerVolume {
                    name: source.into(),
                    driver: mount
                        .get("VolumeOptions")
                        .and_then(|o| o.get("DriverConfig"))
                        .and_then(|d| d.get("Name"))
                        .and_then(Value::as_str)
                        .unwrap_or("local")
                        .into(),
                },
            },
        });
        c.mounts.push(MountRef {
            volume: Some(volumes.len() as u32 - 1),
            destination: text(mount, "Target", &format!("{at}/Target"))?
                .unwrap_or("")
                .into(),
            read_only: read_only == Some(true),
            read_only_raw: read_only.into(),
            read_only_tail: "/ReadOnly",
            recursive_read_only: None,
            sub_path: None,
            sub_host_path: None,
            propagation: mount
                .get("BindOptions")
                .and_then(|b| b.get("Propagation"))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(Into::into),
            propagation_tail: "/BindOptions/Propagation",
            ptr: at.into(),
        });
    }
    Ok(())
}

/// Splits `src:dst[:opts]`, keeping Windows drive letters (`C:\x:C:\y`) whole.
fn split_bind(bind: &str) -> Vec<&str> {
    let mut parts = Vec::with_capacity(3);
    let bytes = bind.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            let is_drive = i == start + 1
                && bytes[start].is_ascii_alphabetic()
                && matches!(bytes.get(i + 1), Some(b'\\') | Some(b'/'));
            if !is_drive {
                parts.push(&bind[start..i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    parts.push(&bind[start..]);
    parts
}

fn ns_mode(hc: &Map<String, Value>, key: &'static str) -> Result<Fld<NsMode>, AdaptError> {
    let path: &'static str = match key {
        "PidMode" => "/HostConfig/PidMode",
        "NetworkMode" => "/HostConfig/NetworkMode",
        "IpcMode" => "/HostConfig/IpcMode",
        "UTSMode" => "/HostConfig/UTSMode",
        "UsernsMode" => "/HostConfig/UsernsMode",
        _ => "/HostConfig/CgroupnsMode",
    };
    let value = text(hc, key, path)?;
    let mode = match value.unwrap_or("") {
        "host" => NsMode::Host,
        "none" if key == "NetworkMode" => NsMode::None,
        other => match other.strip_prefix("container:") {
            Some(target) => NsMode::Container(target.into()),
            None => NsMode::Private,
        },
    };
    Ok(Fld::new(
        mode,
        value.map_or(Raw::Absent, Raw::str),
        Src::root(path),
    ))
}

fn caps(value: Option<&Value>, path: &'static str) -> Result<CapList, AdaptError> {
    let mut list = CapList::absent(Src::root(path));
    list.present = value.is_some_and(|v| !v.is_null());
    for item in strings(value, path)? {
        list.items.push(Cap::new(item));
    }
    Ok(list)
}

fn bindings(value: Option<&Value>, at: &str) -> Result<Vec<Binding>, AdaptError> {
    let mut out = Vec::new();
    let Some(map) = value.and_then(Value::as_object) else {
        return Ok(out);
    };
    for (port, entries) in map {
        let Some(entries) = entries.as_array() else {
            continue; // null: exposed but not published
        };
        for (index, entry) in entries.iter().enumerate() {
            let field = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            out.push(Binding {
                ptr: format!("{at}/{}/{index}", escape_token(port)).into(),
                container_port: port.as_str().into(),
                host_ip: field("HostIp").into(),
                host_port: field("HostPort").into(),
            });
        }
    }
    Ok(out)
}

fn int_fld(hc: &Map<String, Value>, key: &'static str) -> Result<Fld<i64>, AdaptError> {
    let path: &'static str = match key {
        "NanoCpus" => "/HostConfig/NanoCpus",
        "CpuQuota" => "/HostConfig/CpuQuota",
        _ => "/HostConfig/CpuShares",
    };
    let value = int(hc, key, path)?;
    Ok(Fld::new(value.unwrap_or(0), value.into(), Src::root(path)))
}

fn list_len(
    map: &Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<Fld<Option<usize>>, AdaptError> {
    Ok(match map.get(key) {
        None => Fld::new(None, Raw::Absent, Src::root(path)),
        Some(Value::Null) => Fld::new(None, Raw::Null, Src::root(path)),
        Some(Value::Array(items)) => Fld::new(
            Some(items.len()),
            Raw::Int(items.len() as i64),
            Src::root(path),
        ),
        Some(_) => return Err(AdaptError::invalid(path, "expected a list")),
    })
}

fn obj<'v>(value: Option<&'v Value>, at: &str) -> Result<&'v Map<String, Value>, AdaptError> {
    value
        .and_then(Value::as_object)
        .ok_or_else(|| AdaptError::invalid(at, "expected an object"))
}

fn array<'v>(value: Option<&'v Value>, at: &str) -> Result<&'v [Value], AdaptError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(AdaptError::invalid(at, "expected a list")),
    }
}

fn strings<'v>(value: Option<&'v Value>, at: &str) -> Result<Vec<&'v str>, AdaptError> {
    array(value, at)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_str()
                .ok_or_else(|| AdaptError::invalid(format!("{at}/{index}"), "expected a string"))
        })
        .collect()
}

fn text<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'v str>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(AdaptError::invalid(at, "expected a string")),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(AdaptError::invalid(at, "expected a boolean")),
    }
}

fn int(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, AdaptError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| AdaptError::invalid(at, "expected an integer")),
        Some(_) => Err(AdaptError::invalid(at, "expected an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opt_entries_split_at_equals_then_colon() {
        assert_eq!(
            split_security_opt("seccomp=unconfined"),
            ("seccomp", "unconfined")
        );
        assert_eq!(
            split_security_opt("seccomp:unconfined"),
            ("seccomp", "unconfined")
        );
        assert_eq!(
            split_security_opt("label=type:spc_t"),
            ("label", "type:spc_t")
        );
        assert_eq!(split_security_opt("label:disable"), ("label", "disable"));
        assert_eq!(
            split_security_opt("no-new-privileges"),
            ("no-new-privileges", "")
        );
    }

    #[test]
    fn binds_keep_windows_drive_letters_whole() {
        assert_eq!(
            split_bind("/etc:/host/etc:ro"),
            vec!["/etc", "/host/etc", "ro"]
        );
        assert_eq!(split_bind(r"C:\data:C:\app"), vec![r"C:\data", r"C:\app"]);
        assert_eq!(split_bind("vol:/data"), vec!["vol", "/data"]);
    }

    #[test]
    fn inline_seccomp_profiles_are_judged_by_their_default_action() {
        assert_eq!(
            parse_seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#),
            DockerSeccomp::InlinePermissive("SCMP_ACT_ALLOW".into())
        );
        assert_eq!(
            parse_seccomp(r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#),
            DockerSeccomp::InlineConfined
        );
        assert_eq!(parse_seccomp("unconfined"), DockerSeccomp::Unconfined);
    }
}
