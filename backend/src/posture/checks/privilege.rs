//! 1.A Privilege: `priv.privileged`, `priv.allow_privilege_escalation`,
//! `priv.windows_host_process`.

use super::{s, Eval};
use crate::posture::catalog::CheckId;
use crate::posture::spec::{Platform, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    privileged(e);
    allow_privilege_escalation(e);
    windows_host_process(e);
}

fn privileged(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::PrivPrivileged;
    if !e.linux_only(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if c.privileged.is_true() {
            e.fld(Some(c), &c.privileged, Val::Bool(true));
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "runs privileged: every capability and host device, no seccomp, AppArmor or SELinux separation",
                start,
            );
        } else {
            e.fld(Some(c), &c.privileged, Val::Bool(false));
            e.outcome(check, Some(c), Outcome::Pass, "not privileged", start);
        }
    });
}

fn allow_privilege_escalation(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::PrivAllowPrivilegeEscalation;
    if !e.linux_only(check) {
        return;
    }
    let docker = e.is_docker();
    let daemon_default = e.ctx.daemon.and_then(|d| d.no_new_privileges);
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if !docker {
            // Privileged or SYS_ADMIN imply escalation whatever the field says (E12).
            if c.privileged.is_true() {
                e.fld(Some(c), &c.privileged, Val::Bool(true));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "privileged containers can always escalate",
                    start,
                );
                return;
            }
            if let Some(index) = c.cap_add.items.iter().position(|cap| cap.norm == "SYS_ADMIN") {
                let cap = &c.cap_add.items[index];
                let pointer = e.spec.pointer(Some(c), c.cap_add.src).index(index as u32);
                e.out.ev(pointer, s(&cap.raw), Val::Str("SYS_ADMIN"));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "SYS_ADMIN implies privilege escalation",
                    start,
                );
                return;
            }
            match c.escalation.value {
                Some(false) => {
                    e.fld(Some(c), &c.escalation, Val::Str("escalation blocked"));
                    e.outcome(check, Some(c), Outcome::Pass, "allowPrivilegeEscalation is false", start);
                }
                Some(true) => {
                    e.fld(Some(c), &c.escalation, Val::Str("escalation allowed"));
                    e.outcome(check, Some(c), Outcome::Fail, "allowPrivilegeEscalation is true", start);
                }
                None => {
                    e.fld(Some(c), &c.escalation, Val::Str("unset: escalation allowed"));
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Fail,
                        "allowPrivilegeEscalation is not set; the kubelet sets no_new_privs only on an explicit false",
                        start,
                    );
                }
            }
            return;
        }
        match c.escalation.value {
            Some(false) => {
                e.fld(Some(c), &c.escalation, Val::Str("no-new-privileges"));
                e.outcome(check, Some(c), Outcome::Pass, "no-new-privileges is set", start);
            }
            Some(true) => {
                e.fld(Some(c), &c.escalation, Val::Str("no-new-privileges disabled"));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "no-new-privileges is explicitly false, which overrides any daemon default",
                    start,
                );
            }
            None if daemon_default == Some(true) => {
                e.fld(Some(c), &c.escalation, Val::Str("daemon default: no-new-privileges"));
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "the daemon sets no-new-privileges by default",
                    start,
                );
            }
            None => {
                e.fld(Some(c), &c.escalation, Val::Str("unset"));
                let message = if daemon_default == Some(false) {
                    "no-new-privileges is not set, and the daemon does not set it by default"
                } else {
                    "no-new-privileges is not set on the container (a daemon-wide default is not visible in the container JSON)"
                };
                e.outcome(check, Some(c), Outcome::Fail, message, start);
            }
        }
    });
}

fn windows_host_process(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::PrivWindowsHostProcess;
    if !e.applies(check) {
        return;
    }
    debug_assert_eq!(e.spec.platform, Platform::Kubernetes);
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let own = &c.sc.host_process;
        let pod = &spec.pod.sc.host_process;
        if own.is_true() || pod.is_true() {
            if own.is_true() {
                e.fld(Some(c), own, Val::Bool(true));
            }
            if pod.is_true() {
                e.fld(Some(c), pod, Val::Bool(true));
            }
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "runs as a HostProcess container directly on the Windows node",
                start,
            );
        } else {
            e.fld(Some(c), own, Val::Bool(false));
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "not a HostProcess container",
                start,
            );
        }
    });
}
