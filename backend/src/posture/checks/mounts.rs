//! 1.D Mounts, volumes and devices. Host paths are compared after `pathnorm` both ways: a
//! mount fails when its source is a sensitive path, an ancestor of one (`/var` holds
//! `/var/lib/kubelet` and `/var/run/docker.sock`) or inside one (E7).

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{
    pathnorm, runtime_socket_exposure, sensitive_exposure, ContainerSpec, MountRef, Platform,
    Pointer, Val, Volume, VolumeSource, DOCKER_PIPE,
};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    let exposures = Exposures::collect(e);
    runtime_socket(e, &exposures);
    sensitive_host_path(e, &exposures);
    host_path_any(e, &exposures);
    host_path_writable(e, &exposures);
    propagation_shared(e);
    restricted_volume_types(e);
    host_devices(e);
}

/// A host path exposed to the workload: by a container's mount, or by a volume no container
/// mounts (Kubernetes; reported with lower confidence).
struct Exposure<'a> {
    volume: &'a Volume,
    mount: Option<&'a MountRef>,
    container: Option<&'a ContainerSpec>,
    /// The normalized host path the container sees (volume path + subPath).
    path: &'a str,
    read_only: bool,
    /// A named pipe (Windows).
    pipe: bool,
    /// A Kubernetes `hostPath.type: Socket`.
    socket_type: bool,
}

struct Exposures<'a> {
    items: Vec<Exposure<'a>>,
    /// Docker local volumes whose options are not known (they could be binds, E7).
    unknown_volumes: Vec<&'a Volume>,
}

impl<'a> Exposures<'a> {
    fn collect(e: &Eval<'a, '_, '_>) -> Self {
        let spec = e.spec;
        let mut items = Vec::new();
        let mut unknown_volumes = Vec::new();
        let mut mounted = vec![false; spec.volumes.len()];
        for c in &spec.containers {
            for mount in &c.mounts {
                let Some(index) = mount.volume else { continue };
                mounted[index as usize] = true;
                let volume = &spec.volumes[index as usize];
                if let Some(exposure) =
                    exposure_of(e, volume, Some(mount), Some(c), &mut unknown_volumes)
                {
                    items.push(exposure);
                }
            }
        }
        for (index, volume) in spec.volumes.iter().enumerate() {
            if !mounted[index] {
                if let Some(exposure) = exposure_of(e, volume, None, None, &mut unknown_volumes) {
                    items.push(exposure);
                }
            }
        }
        unknown_volumes.dedup_by(|a, b| std::ptr::eq(*a, *b));
        Self {
            items,
            unknown_volumes,
        }
    }
}

fn exposure_of<'a>(
    e: &Eval<'a, '_, '_>,
    volume: &'a Volume,
    mount: Option<&'a MountRef>,
    container: Option<&'a ContainerSpec>,
    unknown: &mut Vec<&'a Volume>,
) -> Option<Exposure<'a>> {
    let read_only = mount.is_some_and(|m| m.read_only);
    let (path, pipe, socket_type): (&'a str, bool, bool) = match &volume.source {
        VolumeSource::HostPath { norm, type_, .. } => {
            let path = match mount.and_then(|m| m.sub_host_path.as_deref()) {
                Some(narrowed) => narrowed,
                None => norm,
            };
            (path, false, type_.as_deref() == Some("Socket"))
        }
        VolumeSource::Npipe { path } => (path, true, false),
        VolumeSource::DockerVolume { name, driver } => {
            match e.ctx.docker_volumes.map(|volumes| volumes.get(&**name)) {
                Some(Some(facts)) => match &facts.bind_device {
                    Some(device) => (device.as_str(), false, false),
                    None => return None,
                },
                _ if &**driver == "local" => {
                    unknown.push(volume);
                    return None;
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Exposure {
        volume,
        mount,
        container,
        path,
        read_only,
        pipe,
        socket_type,
    })
}

fn exposure_evidence<'a>(e: &mut Eval<'a, '_, '_>, x: &Exposure<'a>, normalized: Val<'a>) {
    let pointer = Pointer::item(&x.volume.ptr).tail(x.volume.path_tail);
    let raw = match &x.volume.source {
        VolumeSource::HostPath { path, .. } | VolumeSource::Npipe { path } => s(path),
        VolumeSource::DockerVolume { name, .. } => s(name),
        _ => Val::Absent,
    };
    e.out.ev(pointer, raw, normalized);
    if let Some(mount) = x.mount {
        let pointer = Pointer::item(&mount.ptr).tail(mount.read_only_tail);
        e.out.ev(
            pointer,
            mount.read_only_raw.val(),
            Val::Str(if mount.read_only {
                "read-only"
            } else {
                "writable"
            }),
        );
    }
}

fn unknown_evidence<'a>(e: &mut Eval<'a, '_, '_>, volumes: &[&'a Volume]) {
    for volume in volumes {
        e.out.ev(
            Pointer::item(&volume.ptr).tail("/Name"),
            s(&volume.name),
            Val::Str("named volume, options unknown"),
        );
    }
}

fn no_host_paths<'a>(e: &mut Eval<'a, '_, '_>) {
    e.out.ev(
        Pointer::item(&e.spec.pod_ptr).path(if e.is_docker() { "/Mounts" } else { "/volumes" }),
        Val::Absent,
        Val::Str("no host path"),
    );
}

fn runtime_socket<'a>(e: &mut Eval<'a, '_, '_>, exposures: &Exposures<'a>) {
    let check = CheckId::MountRuntimeSocket;
    let start = e.out.mark();
    let mut worst: Option<Severity> = None;
    let mut only_unmounted = true;
    for x in &exposures.items {
        let hit = if x.pipe {
            x.path
                .eq_ignore_ascii_case(DOCKER_PIPE)
                .then_some((DOCKER_PIPE, Severity::Critical))
        } else {
            runtime_socket_exposure(x.path)
                .map(|socket| (socket, Severity::Critical))
                .or_else(|| x.socket_type.then_some(("a socket", Severity::High)))
        };
        if let Some((socket, severity)) = hit {
            exposure_evidence(e, x, Val::Str(socket));
            worst = worst.max(Some(severity));
            only_unmounted &= x.mount.is_none();
        }
    }
    match worst {
        Some(severity) => {
            let message = if only_unmounted {
                "declares a host-path volume exposing the container runtime socket (no container mounts it yet)"
            } else {
                "mounts the container runtime socket (or a directory holding it): root on the node"
            };
            e.result(check, None, Outcome::Fail, severity, message, start);
        }
        None if !exposures.unknown_volumes.is_empty() => {
            unknown_evidence(e, &exposures.unknown_volumes);
            e.outcome(
                check,
                None,
                Outcome::Unknown,
                "named volumes whose driver options are unknown could be binds of host paths (docker volume inspect is not in the input)",
                start,
            );
        }
        None => {
            for x in &exposures.items {
                exposure_evidence(e, x, Val::Str("no runtime socket"));
            }
            if exposures.items.is_empty() {
                no_host_paths(e);
            }
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "no runtime socket mounted",
                start,
            );
        }
    }
}

fn sensitive_host_path<'a>(e: &mut Eval<'a, '_, '_>, exposures: &Exposures<'a>) {
    let check = CheckId::MountSensitiveHostPath;
    let start = e.out.mark();
    let exceptions = &e.ctx.settings().read_only_path_exceptions;
    let mut worst: Option<Severity> = None;
    for x in &exposures.items {
        if x.pipe {
            continue;
        }
        let Some((entry, critical_set)) = sensitive_exposure(x.path) else {
            continue;
        };
        if x.read_only && exceptions.iter().any(|allowed| pathnorm(allowed) == x.path) {
            continue;
        }
        let writable = x.mount.is_some() && !x.read_only;
        let severity = match (critical_set, writable) {
            (true, true) => Severity::Critical,
            (true, false) | (false, true) => Severity::High,
            (false, false) => Severity::Medium,
        };
        exposure_evidence(e, x, Val::Str(entry));
        worst = worst.max(Some(severity));
    }
    match worst {
        Some(severity) => e.result(
            check,
            None,
            Outcome::Fail,
            severity,
            if severity == Severity::Critical {
                "mounts a sensitive host directory writable"
            } else {
                "mounts a sensitive host directory"
            },
            start,
        ),
        None if !exposures.unknown_volumes.is_empty() => {
            unknown_evidence(e, &exposures.unknown_volumes);
            e.outcome(
                check,
                None,
                Outcome::Unknown,
                "named volumes whose driver options are unknown could be binds of host paths",
                start,
            );
        }
        None => {
            for x in &exposures.items {
                exposure_evidence(e, x, Val::Str("not sensitive"));
            }
            if exposures.items.is_empty() {
                no_host_paths(e);
            }
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "no sensitive host path mounted",
                start,
            );
        }
    }
}

fn host_path_any<'a>(e: &mut Eval<'a, '_, '_>, exposures: &Exposures<'a>) {
    let check = CheckId::MountHostPathAny;
    let start = e.out.mark();
    let mut seen: Vec<*const Volume> = Vec::new();
    for x in &exposures.items {
        if seen.contains(&(x.volume as *const Volume)) {
            continue;
        }
        seen.push(x.volume);
        exposure_evidence(e, x, s(x.path));
    }
    if !seen.is_empty() {
        e.outcome(
            check,
            None,
            Outcome::Fail,
            if e.is_docker() {
                "bind-mounts host paths"
            } else {
                "declares hostPath volumes"
            },
            start,
        );
    } else if !exposures.unknown_volumes.is_empty() {
        unknown_evidence(e, &exposures.unknown_volumes);
        e.outcome(
            check,
            None,
            Outcome::Unknown,
            "named volumes whose driver options are unknown could be binds of host paths",
            start,
        );
    } else {
        no_host_paths(e);
        e.outcome(check, None, Outcome::Pass, "no host path", start);
    }
}

fn host_path_writable<'a>(e: &mut Eval<'a, '_, '_>, exposures: &Exposures<'a>) {
    let check = CheckId::MountHostPathWritable;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut writable = false;
        let mut nested = false;
        for x in exposures
            .items
            .iter()
            .filter(|x| x.container.is_some_and(|xc| std::ptr::eq(xc, c)))
        {
            exposure_evidence(e, x, s(x.path));
            if !x.read_only {
                writable = true;
            } else if e.spec.platform == Platform::Kubernetes
                && x.mount.and_then(|m| m.recursive_read_only.as_deref()) != Some("Enabled")
            {
                nested = true;
            }
        }
        let unknown: Vec<&Volume> = exposures
            .unknown_volumes
            .iter()
            .copied()
            .filter(|v| {
                c.mounts
                    .iter()
                    .any(|m| m.volume.is_some_and(|i| std::ptr::eq(&e.spec.volumes[i as usize], *v)))
            })
            .collect();
        if writable {
            e.outcome(check, Some(c), Outcome::Fail, "mounts a host path writable", start);
        } else if !unknown.is_empty() {
            unknown_evidence(e, &unknown);
            e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "mounts named volumes whose driver options are unknown",
                start,
            );
        } else if nested {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "host paths are read-only (without recursiveReadOnly: Enabled, sub-mounts stay writable)",
                start,
            );
        } else {
            e.outcome(check, Some(c), Outcome::Pass, "no writable host path", start);
        }
    });
}

fn propagation_shared(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::MountPropagationShared;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut severity = None;
        for mount in &c.mounts {
            let Some(propagation) = mount.propagation.as_deref() else {
                continue;
            };
            let found = match propagation {
                "shared" | "rshared" | "Bidirectional" => Some(Severity::Medium),
                "HostToContainer" | "rslave" | "slave" => Some(Severity::Info),
                _ => None,
            };
            if let Some(found) = found {
                let pointer = Pointer::item(&mount.ptr).tail(mount.propagation_tail);
                e.out.ev(pointer, s(propagation), s(propagation));
                severity = severity.max(Some(found));
            }
        }
        match severity {
            Some(Severity::Info) => e.result(
                check,
                Some(c),
                Outcome::Fail,
                Severity::Info,
                "host mounts propagate into the container (HostToContainer / slave)",
                start,
            ),
            Some(severity) => e.result(
                check,
                Some(c),
                Outcome::Fail,
                severity,
                "mounts made in the container propagate back to the host",
                start,
            ),
            None => e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "private mount propagation",
                start,
            ),
        }
    });
}

const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volume_types(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::MountRestrictedVolumeTypes;
    if !e.applies(check) {
        return;
    }
    let spec = e.spec;
    let start = e.out.mark();
    let mut bad = false;
    for volume in &spec.volumes {
        let kind: &str = match &volume.source {
            VolumeSource::HostPath { .. } => "hostPath",
            VolumeSource::Projected { .. } => "projected",
            VolumeSource::Other(kind) => kind,
            _ => continue,
        };
        if !RESTRICTED_VOLUME_TYPES.contains(&kind) {
            bad = true;
            e.out
                .ev(Pointer::item(&volume.ptr), s(&volume.name), s(kind));
        }
    }
    if bad {
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "uses a volume type outside the restricted allow-list",
            start,
        );
    } else {
        e.out.ev(
            Pointer::item(&spec.pod_ptr).path("/volumes"),
            if spec.volumes.is_empty() {
                Val::Absent
            } else {
                Val::Int(spec.volumes.len() as i64)
            },
            Val::Str("allowed types only"),
        );
        e.outcome(
            check,
            None,
            Outcome::Pass,
            "only allowed volume types",
            start,
        );
    }
}

/// Device nodes that give raw access to disks or kernel memory.
fn device_severity(path: &str) -> Severity {
    let name = path.trim_start_matches("/dev/");
    if matches!(name, "fuse" | "net/tun") {
        Severity::Medium
    } else {
        Severity::High
    }
}

fn host_devices(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::DevHostDevices;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            let mut worst: Option<Severity> = None;
            for device in &d.devices {
                let pointer = Pointer::item("")
                    .path("/HostConfig/Devices")
                    .index(device.index)
                    .tail("/PathOnHost");
                e.out
                    .ev(pointer, s(&device.path_on_host), s(&device.path_on_host));
                worst = worst.max(Some(device_severity(&device.path_on_host)));
            }
            for (index, rule) in d.device_cgroup_rules.iter().enumerate() {
                let pointer = Pointer::item("")
                    .path("/HostConfig/DeviceCgroupRules")
                    .index(index as u32);
                let wildcard = rule.contains('*') || rule.starts_with('a');
                e.out.ev(
                    pointer,
                    s(rule),
                    Val::Str(if wildcard {
                        "wildcard rule"
                    } else {
                        "device rule"
                    }),
                );
                worst = worst.max(Some(if wildcard {
                    Severity::High
                } else {
                    Severity::Medium
                }));
            }
            if let Some(severity) = worst {
                e.result(
                    check,
                    Some(c),
                    Outcome::Fail,
                    severity,
                    "exposes host devices",
                    start,
                );
            } else if d.device_requests > 0 {
                e.out.ev(
                    Pointer::item("").path("/HostConfig/DeviceRequests"),
                    Val::Int(d.device_requests as i64),
                    Val::Str("device requests (GPUs)"),
                );
                e.result(
                    check,
                    Some(c),
                    Outcome::Fail,
                    Severity::Info,
                    "requests devices through a device driver (GPUs)",
                    start,
                );
            } else {
                e.out.ev(
                    Pointer::item("").path("/HostConfig/Devices"),
                    Val::Absent,
                    Val::Str("none"),
                );
                e.outcome(check, Some(c), Outcome::Pass, "no host device", start);
            }
            return;
        }
        if c.resources.extended.is_empty() {
            e.out.ev(
                Pointer::item(&c.ptr).path("/resources/limits"),
                Val::Absent,
                Val::Str("no device-plugin resource"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no device-plugin resource",
                start,
            );
        } else {
            for name in &c.resources.extended {
                e.out.ev(
                    Pointer::item(&c.ptr).path("/resources/limits"),
                    s(name),
                    s(name),
                );
            }
            e.result(
                check,
                Some(c),
                Outcome::Fail,
                Severity::Info,
                "requests device-plugin resources (informational)",
                start,
            );
        }
    });
}
