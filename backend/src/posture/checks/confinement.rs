//! 1.E Kernel confinement: seccomp, AppArmor, SELinux, /proc masks and sysctls. Privileged
//! containers run without seccomp, AppArmor and masks whatever else says (E5); legacy
//! annotations and fields are both read and either being unconfined fails (E22).

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{
    Annotation, ContainerSpec, DockerSeccomp, Fld, NsMode, Platform, Pointer, ProfileType, SeLinux,
    Val,
};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    seccomp_unconfined(e);
    seccomp_not_explicit(e);
    apparmor_unconfined(e);
    selinux(e);
    proc_unmasked(e);
    sysctl_unsafe(e);
}

fn profile_name(profile: &ProfileType) -> &str {
    match profile {
        ProfileType::RuntimeDefault => "RuntimeDefault",
        ProfileType::Localhost => "Localhost",
        ProfileType::Unconfined => "Unconfined",
        ProfileType::Other(other) => other,
    }
}

fn annotation_evidence<'a>(
    e: &mut Eval<'a, '_, '_>,
    annotation: &'a Annotation,
    normalized: &'static str,
) {
    e.out.ev(
        Pointer::item(&annotation.ptr),
        s(&annotation.value),
        Val::Str(normalized),
    );
}

fn seccomp_unconfined(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SeccompUnconfined;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    let daemon = e.ctx.daemon;
    let kubelet_default = e.ctx.kubelet.seccomp_default;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            let explicit = d.seccomp.as_ref();
            if let Some((index, profile)) = explicit {
                let pointer = Pointer::item("").path("/HostConfig/SecurityOpt").index(*index);
                let raw = d
                    .security_opt
                    .iter()
                    .find(|o| o.index == *index)
                    .map_or(Val::Absent, |o| s(&o.raw));
                match profile {
                    DockerSeccomp::Unconfined => {
                        e.out.ev(pointer, raw, Val::Str("unconfined"));
                        e.outcome(check, Some(c), Outcome::Fail, "runs with seccomp=unconfined", start);
                    }
                    DockerSeccomp::InlinePermissive(action) => {
                        e.out.ev(pointer, raw, s(action));
                        e.outcome(
                            check,
                            Some(c),
                            Outcome::Fail,
                            "the inline seccomp profile allows every syscall by default",
                            start,
                        );
                    }
                    _ => {
                        e.out.ev(pointer, raw, Val::Str("explicit profile"));
                        e.outcome(check, Some(c), Outcome::Pass, "runs under an explicit seccomp profile", start);
                    }
                }
                return;
            }
            if c.privileged.is_true() {
                e.fld(Some(c), &c.privileged, Val::Str("privileged: no seccomp"));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "privileged containers run without seccomp unless a profile is given explicitly",
                    start,
                );
                return;
            }
            e.out.ev(
                Pointer::item("").path("/HostConfig/SecurityOpt"),
                Val::Absent,
                Val::Str("daemon default profile"),
            );
            match daemon {
                None => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "uses the daemon's default seccomp profile, which is not known (docker info is not in the input)",
                    start,
                ),
                Some(daemon) => match daemon.seccomp_profile.as_deref() {
                    None => e.outcome(
                        check,
                        Some(c),
                        Outcome::Fail,
                        "the daemon lists no seccomp support: containers run unconfined",
                        start,
                    ),
                    Some("unconfined") => e.outcome(
                        check,
                        Some(c),
                        Outcome::Fail,
                        "the daemon's default seccomp profile is unconfined",
                        start,
                    ),
                    Some(_) => e.outcome(
                        check,
                        Some(c),
                        Outcome::Pass,
                        "runs under the daemon's default seccomp profile",
                        start,
                    ),
                },
            }
            return;
        }
        // Kubernetes.
        if c.privileged.is_true() {
            e.fld(Some(c), &c.privileged, Val::Str("privileged: no seccomp"));
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "privileged: the runtime does not apply seccomp",
                start,
            );
            return;
        }
        let field = spec.eff(c, |sc| &sc.seccomp);
        let mut unconfined = false;
        if let Some(profile) = &field.value {
            let bad = *profile == ProfileType::Unconfined;
            unconfined |= bad;
            e.fld(Some(c), field, s(profile_name(profile)));
        }
        for annotation in [&spec.pod.seccomp_annotation, &c.seccomp_annotation].into_iter().flatten() {
            if annotation.value.eq_ignore_ascii_case("unconfined") {
                unconfined = true;
                annotation_evidence(e, annotation, "Unconfined");
            }
        }
        if unconfined {
            e.outcome(check, Some(c), Outcome::Fail, "seccomp profile is Unconfined", start);
        } else if field.value.is_some() {
            e.outcome(check, Some(c), Outcome::Pass, "runs under a seccomp profile", start);
        } else {
            e.fld(Some(c), field, Val::Str("unset"));
            match kubelet_default {
                Some(true) => e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "no profile set; the kubelet applies RuntimeDefault (seccompDefault)",
                    start,
                ),
                Some(false) => e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "no profile set and the kubelet has no seccompDefault: runs Unconfined",
                    start,
                ),
                None => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "no profile set: Unconfined unless the kubelet runs with seccompDefault, which is not known",
                    start,
                ),
            }
        }
    });
}

fn seccomp_not_explicit(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SeccompNotExplicit;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    let kubelet_default = e.ctx.kubelet.seccomp_default;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if spec.platform == Platform::Docker {
            e.out.ev(
                Pointer::item("").path("/HostConfig/SecurityOpt"),
                Val::Absent,
                Val::Str("Docker applies its default profile"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "Docker applies its default seccomp profile unless told otherwise (see seccomp.unconfined)",
                start,
            );
            return;
        }
        let own = &c.sc.seccomp;
        let pod = &spec.pod.sc.seccomp;
        let good = |p: &Option<ProfileType>| {
            matches!(p, Some(ProfileType::RuntimeDefault) | Some(ProfileType::Localhost))
        };
        let (field, ok) = match &own.value {
            Some(_) => (own, good(&own.value)),
            None => (pod, good(&pod.value)),
        };
        e.fld(
            Some(c),
            field,
            field.value.as_ref().map_or(Val::Str("unset"), |p| s(profile_name(p))),
        );
        if ok {
            e.outcome(check, Some(c), Outcome::Pass, "seccomp profile set explicitly", start);
        } else if field.value.is_none() && kubelet_default == Some(true) {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no profile set, but the kubelet applies RuntimeDefault (seccompDefault)",
                start,
            );
        } else if field.value.is_none() {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "neither the container nor the pod sets RuntimeDefault or Localhost",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "the seccomp profile in effect is neither RuntimeDefault nor Localhost",
                start,
            );
        }
    });
}

/// Whether the container is known to run as root (for severity modifiers).
fn runs_as_root(e: &Eval<'_, '_, '_>, c: &ContainerSpec) -> bool {
    match e.spec.docker.as_deref() {
        Some(d) => d.user.value.user.is_root(),
        None => e.spec.eff(c, |sc| &sc.run_as_user).value == Some(0),
    }
}

fn apparmor_unconfined(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ApparmorUnconfined;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    let daemon = e.ctx.daemon;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let severity = if c.cap_add.contains_norm("SYS_ADMIN") || runs_as_root(e, c) {
            Severity::High
        } else {
            Severity::Medium
        };
        if let Some(d) = spec.docker.as_deref() {
            let profile = d.apparmor_profile.as_deref().unwrap_or("");
            let opt = d.security_opt.iter().find(|o| &*o.key == "apparmor");
            if profile == "unconfined" || opt.is_some_and(|o| &*o.value == "unconfined") {
                e.fld(Some(c), &d.apparmor_profile, Val::Str("unconfined"));
                if let Some(opt) = opt {
                    e.out.ev(Pointer::item("").path("/HostConfig/SecurityOpt").index(opt.index), s(&opt.raw), s(&opt.value));
                }
                let message = if c.privileged.is_true() && opt.is_none() {
                    "runs without AppArmor (privileged)"
                } else {
                    "runs with AppArmor unconfined"
                };
                e.result(check, Some(c), Outcome::Fail, severity, message, start);
                return;
            }
            if !profile.is_empty() {
                e.fld(Some(c), &d.apparmor_profile, s(profile));
                e.outcome(check, Some(c), Outcome::Pass, "runs under an AppArmor profile", start);
                return;
            }
            e.fld(Some(c), &d.apparmor_profile, Val::Str("no profile recorded"));
            match daemon.map(|d| d.apparmor) {
                Some(true) if c.privileged.is_true() => e.result(
                    check,
                    Some(c),
                    Outcome::Fail,
                    severity,
                    "privileged containers run without AppArmor",
                    start,
                ),
                Some(true) => e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "the daemon applies docker-default when the container starts",
                    start,
                ),
                Some(false) => e.outcome(
                    check,
                    Some(c),
                    Outcome::NotApplicable,
                    "the host has no AppArmor (see selinux.disabled_or_custom)",
                    start,
                ),
                None if d.running => e.outcome(
                    check,
                    Some(c),
                    Outcome::NotApplicable,
                    "a running container with no AppArmor profile: the host has no AppArmor",
                    start,
                ),
                None => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "the profile is assigned at start; whether the host has AppArmor is not known (docker info is not in the input)",
                    start,
                ),
            }
            return;
        }
        // Kubernetes.
        let field = spec.eff(c, |sc| &sc.apparmor);
        let mut unconfined = false;
        if let Some(profile) = &field.value {
            unconfined |= *profile == ProfileType::Unconfined;
            e.fld(Some(c), field, s(profile_name(profile)));
        }
        if let Some(annotation) = &c.apparmor_annotation {
            let value = &*annotation.value;
            let ok = value.is_empty() || value == "runtime/default" || value.starts_with("localhost/");
            if !ok {
                unconfined = true;
                annotation_evidence(e, annotation, "unconfined");
            } else {
                annotation_evidence(e, annotation, "confined");
            }
        }
        let localhost = field.value == Some(ProfileType::Localhost)
            || c.apparmor_annotation.as_ref().is_some_and(|a| a.value.starts_with("localhost/"));
        if unconfined {
            e.result(check, Some(c), Outcome::Fail, severity, "AppArmor profile is unconfined", start);
        } else if c.privileged.is_true() && !localhost {
            e.fld(Some(c), &c.privileged, Val::Str("privileged: no default AppArmor profile"));
            e.result(
                check,
                Some(c),
                Outcome::Fail,
                severity,
                "privileged: the runtime does not apply its default AppArmor profile",
                start,
            );
        } else {
            if field.value.is_none() && c.apparmor_annotation.is_none() {
                e.fld(Some(c), field, Val::Str("runtime default"));
            }
            e.outcome(check, Some(c), Outcome::Pass, "AppArmor confined (runtime default or custom)", start);
        }
    });
}

const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Judges one `seLinuxOptions`; returns the severity of the worst problem.
fn selinux_problem(options: &SeLinux) -> Option<Severity> {
    let mut worst = None;
    if let Some(kind) = options.type_.as_deref() {
        if !SELINUX_TYPES.contains(&kind) {
            worst = worst.max(Some(if kind == "spc_t" || kind == "unconfined_t" {
                Severity::High
            } else {
                Severity::Medium
            }));
        }
    }
    if options.user.is_some() || options.role.is_some() {
        worst = worst.max(Some(Severity::High));
    }
    worst
}

fn selinux(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SelinuxDisabledOrCustom;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    if e.ctx.daemon.is_some_and(|d| !d.selinux) && spec.platform == Platform::Docker {
        e.not_applicable(check, "the host has no SELinux");
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut worst: Option<Severity> = None;
        if let Some(d) = spec.docker.as_deref() {
            for opt in d.security_opt.iter().filter(|o| &*o.key == "label") {
                let (kind, value) = opt.value.split_once(':').unwrap_or((&opt.value, ""));
                let severity = match kind {
                    "disable" => Some(Severity::High),
                    "type" if !SELINUX_TYPES.contains(&value) => Some(if value == "spc_t" {
                        Severity::High
                    } else {
                        Severity::Medium
                    }),
                    "user" | "role" => Some(Severity::High),
                    _ => None,
                };
                if let Some(severity) = severity {
                    let pointer = Pointer::item("").path("/HostConfig/SecurityOpt").index(opt.index);
                    e.out.ev(pointer, s(&opt.raw), s(kind));
                    worst = worst.max(Some(severity));
                }
            }
            match worst {
                Some(severity) => {
                    let automatic = c.privileged.is_true()
                        || spec.pod.host_pid.value == NsMode::Host
                        || spec.pod.host_ipc.value == NsMode::Host;
                    let message = if automatic {
                        "SELinux labelling is disabled or overridden (the engine adds label=disable for privileged and host PID/IPC containers)"
                    } else {
                        "SELinux labelling is disabled or overridden"
                    };
                    e.result(check, Some(c), Outcome::Fail, severity, message, start);
                }
                None => {
                    e.out.ev(Pointer::item("").path("/HostConfig/SecurityOpt"), Val::Absent, Val::Str("default label"));
                    e.outcome(check, Some(c), Outcome::Pass, "default SELinux label", start);
                }
            }
            return;
        }
        for field in [&c.sc.se_linux, &spec.pod.sc.se_linux] {
            let Some(options) = &field.value else { continue };
            if let Some(severity) = selinux_problem(options) {
                selinux_evidence(e, c, field, options);
                worst = worst.max(Some(severity));
            }
        }
        match worst {
            Some(severity) => e.result(
                check,
                Some(c),
                Outcome::Fail,
                severity,
                "seLinuxOptions set a type outside the container_t family, or a user or role",
                start,
            ),
            None => {
                let field = spec.eff(c, |sc| &sc.se_linux);
                e.fld(Some(c), field, Val::Str("allowed"));
                e.outcome(check, Some(c), Outcome::Pass, "default or allowed SELinux options", start);
            }
        }
    });
}

fn selinux_evidence<'a>(
    e: &mut Eval<'a, '_, '_>,
    c: &'a ContainerSpec,
    field: &'a Fld<Option<SeLinux>>,
    options: &'a SeLinux,
) {
    let base = e.spec.pointer(Some(c), field.src);
    for (tail, value) in [
        ("/type", &options.type_),
        ("/user", &options.user),
        ("/role", &options.role),
    ] {
        if let Some(value) = value {
            e.out.ev(base.tail(tail), s(value), s(value));
        }
    }
}

fn proc_unmasked(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ProcUnmasked;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if c.privileged.is_true() {
            e.fld(Some(c), &c.privileged, Val::Str("privileged: no masked paths"));
            e.outcome(check, Some(c), Outcome::Fail, "privileged: /proc and /sys are not masked", start);
            return;
        }
        if let Some(d) = spec.docker.as_deref() {
            let masked_empty = d.masked_paths.value == Some(0);
            let readonly_empty = d.readonly_paths.value == Some(0);
            if masked_empty || readonly_empty {
                if masked_empty {
                    e.fld(Some(c), &d.masked_paths, Val::Str("no masked paths"));
                }
                if readonly_empty {
                    e.fld(Some(c), &d.readonly_paths, Val::Str("no read-only paths"));
                }
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "the masked / read-only system paths are removed (systempaths=unconfined)",
                    start,
                );
            } else {
                e.fld(Some(c), &d.masked_paths, Val::Str("engine defaults"));
                e.outcome(check, Some(c), Outcome::Pass, "/proc and /sys masks in place", start);
            }
            return;
        }
        let field = &c.proc_mount;
        if field.as_deref() == Some("Unmasked") {
            e.fld(Some(c), field, Val::Str("Unmasked"));
            if spec.pod.host_users.value == Some(false) {
                e.fld(None, &spec.pod.host_users, Val::Str("user namespace"));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "procMount Unmasked inside a user namespace (baseline allows it; restricted does not)",
                    start,
                );
            } else {
                e.outcome(check, Some(c), Outcome::Fail, "procMount is Unmasked", start);
            }
        } else {
            e.fld(Some(c), field, Val::Str("Default"));
            e.outcome(check, Some(c), Outcome::Pass, "default /proc masks", start);
        }
    });
}

/// The sysctls Pod Security Standards baseline allows (cumulative up to policy v1.37).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

/// Whether a sysctl name is in the safe set (either separator).
pub fn is_safe_sysctl(name: &str) -> bool {
    if name.contains('/') {
        SAFE_SYSCTLS.contains(&name.replace('/', ".").as_str())
    } else {
        SAFE_SYSCTLS.contains(&name)
    }
}

fn sysctl_unsafe(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SysctlUnsafe;
    let spec = e.spec;
    let start = e.out.mark();
    let mut bad = false;
    for sysctl in &spec.pod.sysctls {
        if !is_safe_sysctl(&sysctl.name) {
            bad = true;
            e.out.ev(
                Pointer::item(&sysctl.ptr),
                s(&sysctl.name),
                Val::Str("unsafe"),
            );
        }
    }
    if bad {
        let severity = if spec.platform == Platform::Docker {
            Severity::Low
        } else {
            Severity::Medium
        };
        e.result(
            check,
            None,
            Outcome::Fail,
            severity,
            "sets a sysctl outside the safe set",
            start,
        );
    } else {
        e.out.ev(
            Pointer::item(&spec.pod_ptr).path(if spec.platform == Platform::Docker {
                "/HostConfig/Sysctls"
            } else {
                "/securityContext/sysctls"
            }),
            if spec.pod.sysctls.is_empty() {
                Val::Absent
            } else {
                Val::Int(spec.pod.sysctls.len() as i64)
            },
            Val::Str("safe"),
        );
        e.outcome(check, None, Outcome::Pass, "no unsafe sysctl", start);
    }
}
