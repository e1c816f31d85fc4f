//! 1.B Linux capabilities. Risk checks compare `capnorm` spellings (fail closed, E1); the
//! exact-string Pod Security Standards comparison lives in `pss.rs`.

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::context::RuntimeFamily;
use crate::posture::spec::{
    Cap, CapList, ContainerSpec, NsMode, Platform, Val, DOCKER_DEFAULT_CAPS, PSS_BASELINE_CAPS,
};
use crate::posture::Outcome;

const CRITICAL_CAPS: &[&str] = &["ALL", "SYS_ADMIN", "SYS_MODULE"];
const HIGH_RISK_CAPS: &[&str] = &[
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "SYS_RAWIO",
    "BPF",
    "PERFMON",
    "NET_ADMIN",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "SYS_BOOT",
    "SYSLOG",
    "SYS_TIME",
    "CHECKPOINT_RESTORE",
];

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    added(e, CheckId::CapsAddCritical, |_, cap| {
        CRITICAL_CAPS.contains(&&*cap.norm)
    });
    added(e, CheckId::CapsAddHighRisk, |_, cap| {
        HIGH_RISK_CAPS.contains(&&*cap.norm)
    });
    added(
        e,
        CheckId::CapsAddOutsideBaseline,
        |platform, cap| match platform {
            Platform::Docker => !DOCKER_DEFAULT_CAPS.contains(&&*cap.norm),
            Platform::Kubernetes => !PSS_BASELINE_CAPS.contains(&&*cap.norm),
        },
    );
    added(e, CheckId::CapsAddOutsideRestricted, |_, cap| {
        cap.norm != "NET_BIND_SERVICE"
    });
    drop_all_missing(e);
    net_raw_retained(e);
}

/// Whether a dropped capability takes effect. containerd's CRI plugin prepends `CAP_`
/// unconditionally, so a Kubernetes `CAP_NET_RAW` in `drop` becomes the inert
/// `CAP_CAP_NET_RAW` (E1); Docker normalises both spellings.
fn effective_drop(platform: Platform, cap: &Cap, name: &str) -> bool {
    cap.norm == name
        && (platform == Platform::Docker
            || !(cap.raw.len() >= 4 && cap.raw[..4].eq_ignore_ascii_case("CAP_")))
}

fn list_evidence<'a>(e: &mut Eval<'a, '_, '_>, c: &'a ContainerSpec, list: &'a CapList) {
    if list.items.is_empty() {
        let pointer = e.spec.pointer(Some(c), list.src);
        let raw = if list.present { Val::Null } else { Val::Absent };
        e.out.ev(pointer, raw, Val::Str("none"));
    }
}

fn added(e: &mut Eval<'_, '_, '_>, check: CheckId, bad: impl Fn(Platform, &Cap) -> bool) {
    if !e.linux_only(check) {
        return;
    }
    let platform = e.spec.platform;
    let host_pid = e.spec.pod.host_pid.value == NsMode::Host;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut hits = 0;
        let mut ptrace = false;
        for (index, cap) in c.cap_add.items.iter().enumerate() {
            if bad(platform, cap) {
                hits += 1;
                ptrace |= cap.norm == "SYS_PTRACE";
                let pointer = e.spec.pointer(Some(c), c.cap_add.src).index(index as u32);
                e.out.ev(pointer, s(&cap.raw), s(&cap.norm));
            }
        }
        if hits == 0 {
            list_evidence(e, c, &c.cap_add);
            let message = if c.cap_add.items.is_empty() {
                "no capability added"
            } else {
                "no such capability added"
            };
            e.outcome(check, Some(c), Outcome::Pass, message, start);
            return;
        }
        let mut severity = check.meta().severity;
        let message = match check {
            CheckId::CapsAddCritical => {
                "adds a host-takeover capability (ALL, SYS_ADMIN or SYS_MODULE)"
            }
            CheckId::CapsAddHighRisk if ptrace && host_pid => {
                severity = Severity::Critical;
                "adds SYS_PTRACE in the host PID namespace: it can attach to host processes"
            }
            CheckId::CapsAddHighRisk => {
                "adds a capability that is a known escape or lateral-movement primitive"
            }
            CheckId::CapsAddOutsideBaseline if platform == Platform::Docker => {
                "adds a capability outside Docker's default set"
            }
            CheckId::CapsAddOutsideBaseline => {
                "adds a capability outside the Pod Security Standards baseline set"
            }
            _ => "adds a capability other than NET_BIND_SERVICE",
        };
        e.result(check, Some(c), Outcome::Fail, severity, message, start);
    });
}

fn drop_all_missing(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::CapsDropAllMissing;
    if !e.linux_only(check) {
        return;
    }
    let platform = e.spec.platform;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let found = c
            .cap_drop
            .items
            .iter()
            .enumerate()
            .find(|(_, cap)| effective_drop(platform, cap, "ALL"));
        match found {
            Some((index, cap)) => {
                let pointer = e.spec.pointer(Some(c), c.cap_drop.src).index(index as u32);
                e.out.ev(pointer, s(&cap.raw), Val::Str("ALL"));
                let message = if &*cap.raw == "ALL" {
                    "drops ALL capabilities"
                } else {
                    "drops ALL capabilities (spelled other than `ALL`: effective, but Pod Security Admission requires the exact string)"
                };
                e.outcome(check, Some(c), Outcome::Pass, message, start);
            }
            None => {
                for (index, cap) in c.cap_drop.items.iter().enumerate() {
                    let pointer = e.spec.pointer(Some(c), c.cap_drop.src).index(index as u32);
                    e.out.ev(pointer, s(&cap.raw), s(&cap.norm));
                }
                list_evidence(e, c, &c.cap_drop);
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "does not drop ALL capabilities",
                    start,
                );
            }
        }
    });
}

fn net_raw_retained(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::CapsNetRawRetained;
    if !e.linux_only(check) {
        return;
    }
    let platform = e.spec.platform;
    let runtime = e.ctx.kubelet.runtime;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if c.privileged.is_true() {
            e.fld(Some(c), &c.privileged, Val::Bool(true));
            e.outcome(check, Some(c), Outcome::Fail, "privileged: every capability, NET_RAW included", start);
            return;
        }
        // Added wins over dropped.
        if let Some(index) = c
            .cap_add
            .items
            .iter()
            .position(|cap| cap.norm == "NET_RAW" || cap.norm == "ALL")
        {
            let cap = &c.cap_add.items[index];
            let pointer = e.spec.pointer(Some(c), c.cap_add.src).index(index as u32);
            e.out.ev(pointer, s(&cap.raw), s(&cap.norm));
            e.outcome(check, Some(c), Outcome::Fail, "adds NET_RAW", start);
            return;
        }
        if let Some(index) = c.cap_drop.items.iter().position(|cap| {
            effective_drop(platform, cap, "NET_RAW") || effective_drop(platform, cap, "ALL")
        }) {
            let cap = &c.cap_drop.items[index];
            let pointer = e.spec.pointer(Some(c), c.cap_drop.src).index(index as u32);
            e.out.ev(pointer, s(&cap.raw), s(&cap.norm));
            e.outcome(check, Some(c), Outcome::Pass, "NET_RAW is dropped", start);
            return;
        }
        list_evidence(e, c, &c.cap_drop);
        match (platform, runtime) {
            (Platform::Docker, _) | (Platform::Kubernetes, Some(RuntimeFamily::Containerd)) => {
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "NET_RAW is in the runtime's default set and is not dropped",
                    start,
                );
            }
            (Platform::Kubernetes, Some(RuntimeFamily::CriO)) => {
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "not dropped, but CRI-O's default set omits NET_RAW",
                    start,
                );
            }
            (Platform::Kubernetes, None) => {
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "NET_RAW is not dropped; whether the runtime grants it by default (containerd yes, CRI-O no) is not known",
                    start,
                );
            }
        }
    });
}
