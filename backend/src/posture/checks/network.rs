//! 1.H Network exposure, and `net.no_network_policy`.

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{Binding, ContainerSpec, NsMode, Pointer, Port, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    host_port(e);
    bind_all_interfaces(e);
    privileged_host_port(e);
    probe_host_field(e);
    default_bridge(e);
    no_network_policy(e);
}

fn all_interfaces(ip: &str) -> bool {
    matches!(ip.trim(), "" | "0.0.0.0" | "::" | "[::]")
}

fn loopback(ip: &str) -> bool {
    let ip = ip.trim();
    ip == "::1" || ip == "[::1]" || ip.starts_with("127.") || ip == "localhost"
}

/// The Kubernetes host ports of a container, skipping the ones API defaulting adds to live
/// hostNetwork Pods (hostPort = containerPort, E10).
fn host_ports<'a>(e: &Eval<'a, '_, '_>, c: &'a ContainerSpec) -> impl Iterator<Item = &'a Port> {
    let defaulted = e.spec.live && e.spec.pod.host_network.value == NsMode::Host;
    c.ports.iter().filter(move |port| {
        port.host_port.is_some_and(|p| p != 0)
            && !(defaulted && port.host_port == port.container_port)
    })
}

fn port_evidence<'a>(
    e: &mut Eval<'a, '_, '_>,
    c: &'a ContainerSpec,
    port: &'a Port,
    tail: &'static str,
) {
    let pointer = Pointer::item(&c.ptr)
        .path("/ports")
        .index(port.index)
        .tail(tail);
    match tail {
        "/hostIP" => e.out.ev(
            pointer,
            port.host_ip.as_deref().map_or(Val::Absent, s),
            Val::Str(if port.host_ip.as_deref().is_none_or(all_interfaces) {
                "all interfaces"
            } else if port.host_ip.as_deref().is_some_and(loopback) {
                "loopback"
            } else {
                "one interface"
            }),
        ),
        _ => e.out.ev(
            pointer,
            port.host_port.map_or(Val::Absent, Val::Int),
            port.host_port.map_or(Val::Absent, Val::Int),
        ),
    }
}

fn binding_evidence<'a>(e: &mut Eval<'a, '_, '_>, binding: &'a Binding, tail: &'static str) {
    let pointer = Pointer::item(&binding.ptr).tail(tail);
    if tail == "/HostPort" {
        e.out
            .ev(pointer, s(&binding.host_port), s(&binding.container_port));
    } else {
        let normalized = if all_interfaces(&binding.host_ip) {
            "all interfaces"
        } else if loopback(&binding.host_ip) {
            "loopback"
        } else {
            "one interface"
        };
        e.out.ev(pointer, s(&binding.host_ip), Val::Str(normalized));
    }
}

fn no_ports<'a>(e: &mut Eval<'a, '_, '_>, c: &'a ContainerSpec) {
    let pointer = if e.is_docker() {
        Pointer::item("").path("/HostConfig/PortBindings")
    } else {
        Pointer::item(&c.ptr).path("/ports")
    };
    e.out.ev(pointer, Val::Absent, Val::Str("no host port"));
}

fn host_port(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetHostPort;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            for binding in &d.bindings {
                binding_evidence(e, binding, "/HostPort");
            }
            if d.publish_all_ports.value {
                e.fld(
                    Some(c),
                    &d.publish_all_ports,
                    Val::Str("every exposed port published"),
                );
            }
            if d.bindings.is_empty() && !d.publish_all_ports.value {
                no_ports(e, c);
                e.outcome(check, Some(c), Outcome::Pass, "no published port", start);
            } else {
                e.result(
                    check,
                    Some(c),
                    Outcome::Fail,
                    Severity::Info,
                    "publishes ports on the host (informational; see net.bind_all_interfaces)",
                    start,
                );
            }
            return;
        }
        let mut found = false;
        let mut all_loopback = true;
        for port in host_ports(e, c) {
            found = true;
            all_loopback &= port.host_ip.as_deref().is_some_and(loopback);
            port_evidence(e, c, port, "/hostPort");
        }
        if !found {
            no_ports(e, c);
            e.outcome(check, Some(c), Outcome::Pass, "no host port", start);
        } else if all_loopback {
            e.result(
                check,
                Some(c),
                Outcome::Fail,
                Severity::Low,
                "binds host ports on loopback only",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "binds ports directly on the node",
                start,
            );
        }
    });
}

fn bind_all_interfaces(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetBindAllInterfaces;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut bad = false;
        if let Some(d) = spec.docker.as_deref() {
            for binding in d.bindings.iter().chain(&d.runtime_bindings) {
                if all_interfaces(&binding.host_ip) {
                    bad = true;
                    binding_evidence(e, binding, "/HostIp");
                }
            }
            if d.publish_all_ports.value {
                bad = true;
                e.fld(Some(c), &d.publish_all_ports, Val::Str("all interfaces"));
            }
            if !bad {
                for binding in &d.bindings {
                    binding_evidence(e, binding, "/HostIp");
                }
            }
        } else {
            for port in host_ports(e, c) {
                if port.host_ip.as_deref().is_none_or(all_interfaces) {
                    bad = true;
                    port_evidence(e, c, port, "/hostIP");
                }
            }
        }
        if bad {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "a published port listens on every host interface",
                start,
            );
        } else {
            if e.out.mark() == start {
                no_ports(e, c);
            }
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no port published on all interfaces",
                start,
            );
        }
    });
}

/// The first port of a Docker `HostPort` (`8080`, `8000-8010`, or empty for a random one).
fn docker_host_port(text: &str) -> Option<i64> {
    text.split('-').next()?.trim().parse().ok()
}

fn privileged_host_port(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetPrivilegedHostPort;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut bad = false;
        if let Some(d) = spec.docker.as_deref() {
            for binding in d.bindings.iter().chain(&d.runtime_bindings) {
                if docker_host_port(&binding.host_port).is_some_and(|p| (1..1024).contains(&p)) {
                    bad = true;
                    binding_evidence(e, binding, "/HostPort");
                }
            }
        } else {
            for port in host_ports(e, c) {
                if port.host_port.is_some_and(|p| (1..1024).contains(&p)) {
                    bad = true;
                    port_evidence(e, c, port, "/hostPort");
                }
            }
        }
        if bad {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "uses a host port below 1024",
                start,
            );
        } else {
            no_ports(e, c);
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no host port below 1024",
                start,
            );
        }
    });
}

fn probe_host_field(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetProbeHostField;
    if !e.applies(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        for probe in &c.probes.hosts {
            e.out.ev(
                Pointer::item(&c.ptr).path(probe.path),
                s(&probe.host),
                s(&probe.host),
            );
        }
        if c.probes.hosts.is_empty() {
            e.out.ev(
                Pointer::item(&c.ptr).path("/livenessProbe"),
                Val::Absent,
                Val::Str("no host field"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "probes and hooks target the pod itself",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "a probe or lifecycle hook sends the kubelet to another host",
                start,
            );
        }
    });
}

fn default_bridge(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetDefaultBridge;
    if !e.applies(check) {
        return;
    }
    let d = e.spec.docker.as_deref().expect("docker facts");
    let start = e.out.mark();
    let mode = &*d.network_mode.value;
    let on_bridge = matches!(mode, "default" | "bridge")
        || (!matches!(mode, "host" | "none")
            && !mode.starts_with("container:")
            && d.networks.iter().any(|n| &**n == "bridge"));
    if on_bridge {
        e.fld(None, &d.network_mode, Val::Str("default bridge"));
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "attached to the default bridge network",
            start,
        );
    } else {
        e.fld(None, &d.network_mode, s(mode));
        e.outcome(
            check,
            None,
            Outcome::Pass,
            "not on the default bridge",
            start,
        );
    }
}

fn no_network_policy(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::NetNoNetworkPolicy;
    if !e.applies(check) {
        return;
    }
    let spec = e.spec;
    let start = e.out.mark();
    let labels_pointer = Pointer::item(&spec.meta_ptr).path("/labels");
    let Some(policies) = e.ctx.network_policies else {
        e.out.ev(
            labels_pointer,
            Val::Absent,
            Val::Str("NetworkPolicies not known"),
        );
        e.outcome(
            check,
            None,
            Outcome::Unknown,
            "the namespace's NetworkPolicies are not known",
            start,
        );
        return;
    };
    let namespace = spec.namespace_or_default();
    let mut ingress = false;
    let mut egress = false;
    // Cite the first policy that covers each direction; stop once both are covered.
    for policy in policies
        .iter()
        .filter(|p| p.namespace == namespace && (p.ingress || p.egress))
    {
        let adds_ingress = policy.ingress && !ingress;
        let adds_egress = policy.egress && !egress;
        if !(adds_ingress || adds_egress) || !policy.selects(&spec.labels) {
            continue;
        }
        ingress |= policy.ingress;
        egress |= policy.egress;
        e.out.ev(
            labels_pointer,
            Val::Str(&policy.name),
            Val::Str(match (adds_ingress, adds_egress) {
                (true, true) => "selected for ingress and egress",
                (true, false) => "selected for ingress",
                _ => "selected for egress",
            }),
        );
        if ingress && egress {
            break;
        }
    }
    if spec.pod.host_network.value == NsMode::Host {
        e.fld(None, &spec.pod.host_network, Val::Str("host network"));
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "uses the host network, which NetworkPolicies do not reliably cover",
            start,
        );
        return;
    }
    let message = match (ingress, egress) {
        (true, true) => {
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "NetworkPolicies select the pods for ingress and egress",
                start,
            );
            return;
        }
        (false, false) => {
            "no NetworkPolicy selects the pods: any pod can reach them and they can reach any pod"
        }
        (true, false) => "no NetworkPolicy selects the pods for egress: they can reach any pod",
        (false, true) => "no NetworkPolicy selects the pods for ingress: any pod can reach them",
    };
    if !ingress && !egress {
        e.out
            .ev(labels_pointer, Val::Absent, Val::Str("not selected"));
    }
    e.outcome(check, None, Outcome::Fail, message, start);
}
