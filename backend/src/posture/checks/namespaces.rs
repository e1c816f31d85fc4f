//! 1.C Namespaces and isolation: host PID / network / IPC / UTS / user / cgroup namespaces,
//! namespaces joined from other containers (resolved transitively, E23), and the isolation
//! tier of the runtime.

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::context::Context;
use crate::posture::spec::{Fld, NsMode, Platform, PodSpec, Val, WorkloadSpec};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    host_namespace(e, CheckId::NsHostPid, |p| &p.host_pid, "PID");
    host_namespace(e, CheckId::NsHostNetwork, |p| &p.host_network, "network");
    host_namespace(e, CheckId::NsHostIpc, |p| &p.host_ipc, "IPC");
    host_uts(e);
    host_userns(e);
    host_cgroupns(e);
    shared_with_container(e);
    isolation_tier(e);
}

/// Finds a Docker container by id, id prefix or name among the context's peers.
pub(crate) fn find_peer<'a>(ctx: &Context<'a>, target: &str) -> Option<&'a WorkloadSpec> {
    let target = target.trim_start_matches('/');
    ctx.docker_peers.iter().find(|peer| {
        peer.docker.as_ref().is_some_and(|d| {
            &*d.container_name == target || (target.len() >= 12 && d.id.starts_with(target))
        })
    })
}

/// Follows `container:<id>` modes to the namespace actually used.
enum Resolved<'a> {
    Mode(&'a NsMode),
    Missing(&'a str),
}

fn resolve<'a>(
    ctx: &Context<'a>,
    mut field: &'a Fld<NsMode>,
    pick: fn(&PodSpec) -> &Fld<NsMode>,
) -> (Resolved<'a>, Vec<&'a WorkloadSpec>) {
    let mut chain = Vec::new();
    for _ in 0..8 {
        match &field.value {
            NsMode::Container(target) => match find_peer(ctx, target) {
                Some(peer) => {
                    chain.push(peer);
                    field = pick(&peer.pod);
                }
                None => return (Resolved::Missing(target), chain),
            },
            other => return (Resolved::Mode(other), chain),
        }
    }
    (Resolved::Mode(&field.value), chain)
}

fn host_namespace(
    e: &mut Eval<'_, '_, '_>,
    check: CheckId,
    pick: fn(&PodSpec) -> &Fld<NsMode>,
    what: &'static str,
) {
    let spec = e.spec;
    let field = pick(&spec.pod);
    let start = e.out.mark();
    let (resolved, chain) = resolve(e.ctx, field, pick);
    let normalized = match &field.value {
        NsMode::Host => "host",
        NsMode::Container(_) => "joined from another container",
        NsMode::None => "none",
        NsMode::Private => "private",
    };
    e.fld(None, field, Val::Str(normalized));
    for peer in &chain {
        if let Some(d) = &peer.docker {
            let peer_field = pick(&peer.pod);
            let pointer = crate::posture::spec::Pointer::item("").path(peer_field.src.path);
            e.out
                .ev(pointer, peer_field.raw.val(), s(&d.container_name));
        }
    }
    match resolved {
        Resolved::Mode(NsMode::Host) => {
            let mut severity = check.meta().severity;
            let mut message = match (check, chain.is_empty()) {
                (CheckId::NsHostNetwork, true) if spec.platform == Platform::Kubernetes => {
                    "shares the host network namespace (and with it the host UTS namespace)"
                }
                (_, true) => match what {
                    "PID" => "shares the host PID namespace",
                    "network" => "shares the host network namespace",
                    _ => "shares the host IPC namespace",
                },
                (_, false) => "joins a container that shares the host namespace",
            };
            if check == CheckId::NsHostPid {
                let privileged = spec.containers.iter().any(|c| c.privileged.is_true());
                let ptrace = spec.containers.iter().any(|c| {
                    c.cap_add.contains_norm("SYS_PTRACE") || c.cap_add.contains_norm("ALL")
                });
                if privileged || ptrace {
                    severity = Severity::Critical;
                    message = "shares the host PID namespace while privileged or with SYS_PTRACE: host processes can be attached to";
                }
            }
            e.result(check, None, Outcome::Fail, severity, message, start);
        }
        Resolved::Missing(target) => {
            e.outcome(
                check,
                None,
                Outcome::Unknown,
                format!("joins the namespace of container {target}, which is not in the input"),
                start,
            );
        }
        Resolved::Mode(_) => {
            let message = if chain.is_empty() {
                "own namespace"
            } else {
                "joins a container with its own namespace"
            };
            e.outcome(check, None, Outcome::Pass, message, start);
        }
    }
}

fn host_uts(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NsHostUts;
    let spec = e.spec;
    if spec.platform == Platform::Kubernetes {
        let start = e.out.mark();
        e.fld(
            None,
            &spec.pod.host_network,
            Val::Str(if spec.pod.host_network.value == NsMode::Host {
                "host"
            } else {
                "private"
            }),
        );
        e.outcome(
            check,
            None,
            Outcome::NotApplicable,
            "Kubernetes has no UTS field; the host UTS namespace comes with hostNetwork and is reported under ns.host_network",
            start,
        );
        return;
    }
    let field = &spec.pod.host_uts;
    let start = e.out.mark();
    if field.value == NsMode::Host {
        e.fld(None, field, Val::Str("host"));
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "shares the host UTS namespace",
            start,
        );
    } else {
        e.fld(None, field, Val::Str("private"));
        e.outcome(check, None, Outcome::Pass, "own UTS namespace", start);
    }
}

fn host_userns(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NsHostUserns;
    let spec = e.spec;
    let field = &spec.pod.host_userns;
    let start = e.out.mark();
    if spec.platform == Platform::Kubernetes {
        if spec.pod.host_users.value == Some(false) {
            e.fld(None, &spec.pod.host_users, Val::Str("user namespace"));
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "runs in a user namespace (hostUsers: false)",
                start,
            );
        } else {
            e.fld(None, &spec.pod.host_users, Val::Str("host user namespace"));
            e.outcome(
                check,
                None,
                Outcome::Fail,
                "runs in the host user namespace: container UID 0 is host UID 0",
                start,
            );
        }
        return;
    }
    let host = field.value == NsMode::Host;
    e.fld(
        None,
        field,
        Val::Str(if host { "host" } else { "daemon default" }),
    );
    match e.ctx.daemon {
        Some(daemon) if daemon.rootless => {
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "the daemon runs rootless: container root is not host root",
                start,
            );
        }
        Some(daemon) if daemon.userns => {
            if host {
                e.result(
                    check,
                    None,
                    Outcome::Fail,
                    Severity::Medium,
                    "opts out of the daemon's user-namespace remapping (--userns host)",
                    start,
                );
            } else {
                e.outcome(
                    check,
                    None,
                    Outcome::Pass,
                    "remapped by the daemon's userns-remap",
                    start,
                );
            }
        }
        Some(_) => {
            e.result(
                check,
                None,
                Outcome::Fail,
                Severity::Low,
                "the daemon does not remap user namespaces: container UID 0 is host UID 0",
                start,
            );
        }
        None if host => {
            e.result(
                check,
                None,
                Outcome::Fail,
                Severity::Low,
                "runs in the host user namespace (--userns host)",
                start,
            );
        }
        None => {
            e.outcome(
                check,
                None,
                Outcome::Unknown,
                "whether the daemon remaps user namespaces is not known (docker info is not in the input)",
                start,
            );
        }
    }
}

fn host_cgroupns(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NsHostCgroupns;
    if !e.applies(check) {
        return;
    }
    let field = &e.spec.pod.host_cgroupns;
    let start = e.out.mark();
    if field.value == NsMode::Host {
        e.fld(None, field, Val::Str("host"));
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "shares the host cgroup namespace",
            start,
        );
    } else {
        e.fld(None, field, Val::Str("private"));
        e.outcome(check, None, Outcome::Pass, "own cgroup namespace", start);
    }
}

fn shared_with_container(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NsSharedWithContainer;
    let spec = e.spec;
    let start = e.out.mark();
    if spec.platform == Platform::Kubernetes {
        let field = &spec.pod.share_process_namespace;
        if field.is_true() {
            e.fld(None, field, Val::Bool(true));
            e.outcome(
                check,
                None,
                Outcome::Fail,
                "containers of the pod share one PID namespace",
                start,
            );
        } else {
            e.fld(None, field, Val::Bool(false));
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "process namespace not shared",
                start,
            );
        }
        return;
    }
    let mut joined = false;
    for field in [
        &spec.pod.host_pid,
        &spec.pod.host_ipc,
        &spec.pod.host_network,
    ] {
        if let NsMode::Container(target) = &field.value {
            joined = true;
            e.fld(None, field, s(target));
        }
    }
    if joined {
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "joins another container's namespace and inherits its exposure",
            start,
        );
    } else {
        e.fld(None, &spec.pod.host_pid, Val::Str("not joined"));
        e.outcome(
            check,
            None,
            Outcome::Pass,
            "no namespace joined from another container",
            start,
        );
    }
}

/// The isolation tier of a runtime handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Vm,
    UserKernel,
    UsernsHardened,
    SharedKernel,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Vm => "vm",
            Tier::UserKernel => "user-kernel",
            Tier::UsernsHardened => "userns-hardened",
            Tier::SharedKernel => "shared-kernel",
        }
    }
}

/// Classifies a runtime handler name; `None` when the name says nothing known.
pub fn classify_handler(handler: &str) -> Option<Tier> {
    let h = handler.to_ascii_lowercase();
    if h.contains("kata") || h.contains("firecracker") || h == "hyperv" {
        Some(Tier::Vm)
    } else if h.contains("runsc") || h.contains("gvisor") {
        Some(Tier::UserKernel)
    } else if h.contains("sysbox") {
        Some(Tier::UsernsHardened)
    } else if h.is_empty()
        || h == "runc"
        || h == "crun"
        || h == "youki"
        || h.contains("io.containerd.runc")
        || h == "process"
        || h == "default"
    {
        Some(Tier::SharedKernel)
    } else {
        None
    }
}

/// The isolation tier a workload runs at, when the runtime handler is known.
pub(crate) fn tier_of(spec: &WorkloadSpec, ctx: &Context<'_>) -> Option<Tier> {
    match spec.docker.as_deref() {
        Some(d) => {
            if d.isolation
                .as_deref()
                .is_some_and(|i| i.eq_ignore_ascii_case("hyperv"))
            {
                return Some(Tier::Vm);
            }
            let runtime = d
                .runtime
                .as_deref()
                .or(ctx.daemon.and_then(|d| d.default_runtime.as_deref()))
                .unwrap_or("");
            match (classify_handler(runtime), ctx.daemon) {
                (Some(Tier::SharedKernel), Some(daemon)) if daemon.userns || daemon.rootless => {
                    Some(Tier::UsernsHardened)
                }
                (tier, _) => tier,
            }
        }
        None => {
            let tier = match spec.pod.runtime_class.as_deref() {
                None => Some(Tier::SharedKernel),
                Some(name) => {
                    let handler = ctx
                        .runtime_classes
                        .and_then(|classes| classes.iter().find(|rc| rc.name == name))
                        .map(|rc| rc.handler.as_str());
                    match handler {
                        Some(handler) => classify_handler(handler),
                        None => classify_handler(name).filter(|t| *t != Tier::SharedKernel),
                    }
                }
            };
            match tier {
                Some(Tier::SharedKernel) if spec.pod.host_users.value == Some(false) => {
                    Some(Tier::UsernsHardened)
                }
                other => other,
            }
        }
    }
}

fn isolation_tier(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::RuntimeIsolationTier;
    let spec = e.spec;
    let start = e.out.mark();
    let untrusted = spec
        .trust
        .as_deref()
        .is_some_and(|t| matches!(t, "untrusted" | "multi-tenant"));
    let tier = tier_of(spec, e.ctx);
    let normalized = Val::Str(tier.map_or("unknown", Tier::as_str));
    match spec.docker.as_deref() {
        Some(d)
            if d.isolation
                .as_deref()
                .is_some_and(|i| i.eq_ignore_ascii_case("hyperv")) =>
        {
            e.fld(None, &d.isolation, normalized)
        }
        Some(d) => e.fld(None, &d.runtime, normalized),
        None => e.fld(None, &spec.pod.runtime_class, normalized),
    }
    match tier {
        Some(Tier::SharedKernel) if untrusted => e.outcome(
            check,
            None,
            Outcome::Fail,
            "marked untrusted / multi-tenant but runs on a shared-kernel runtime",
            start,
        ),
        Some(tier) => {
            let message = match tier {
                Tier::Vm => "isolation tier: vm",
                Tier::UserKernel => "isolation tier: user-kernel",
                Tier::UsernsHardened => "isolation tier: userns-hardened",
                Tier::SharedKernel => "isolation tier: shared-kernel (not marked untrusted)",
            };
            e.outcome(check, None, Outcome::Pass, message, start);
        }
        None if untrusted => e.outcome(
            check,
            None,
            Outcome::Unknown,
            "marked untrusted / multi-tenant; the runtime handler is not known",
            start,
        ),
        None => e.outcome(
            check,
            None,
            Outcome::Pass,
            "isolation tier not known (the workload is not marked untrusted)",
            start,
        ),
    }
}
