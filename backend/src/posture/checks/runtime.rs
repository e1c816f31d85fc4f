//! 1.L Runtime behaviour and state: exec sessions, sshd, restart loops, sudo.

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{Pointer, Role, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    exec_privileged_or_root(e);
    sshd(e);
    restart_policy(e);
    sudo_in_entrypoint(e);
    observed_only(e);
}

/// The checks evaluated from runtime events (exec sessions, drift samples, restarts, the live
/// pod against its template): a spec alone, offline or collected, says nothing about them.
fn observed_only(e: &mut Eval<'_, '_, '_>) {
    for check in crate::posture::catalog::EVENT_CHECKS {
        if check.only_from_events() {
            e.not_applicable(
                *check,
                "run stage: evaluated from runtime events (exec sessions, drift samples, restarts), not from the spec",
            );
        }
    }
}

fn exec_privileged_or_root(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::RunExecPrivilegedOrRoot;
    let spec = e.spec;
    let start = e.out.mark();
    if let Some(d) = spec.docker.as_deref() {
        if d.exec_ids.is_empty() {
            e.out.ev(
                Pointer::item("").path("/ExecIDs"),
                Val::Absent,
                Val::Str("no exec session"),
            );
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "no exec session recorded on the container",
                start,
            );
            return;
        }
        for (index, id) in d.exec_ids.iter().enumerate() {
            e.out.ev(
                Pointer::item("").path("/ExecIDs").index(index as u32),
                s(id),
                Val::Str("exec session"),
            );
        }
        let Some(sessions) = e.ctx.exec_sessions else {
            e.outcome(
                check,
                None,
                Outcome::Unknown,
                "exec sessions exist; their details (GET /exec/{id}/json) are not in the input",
                start,
            );
            return;
        };
        let container_root = d.user.value.user.is_root();
        let bad = sessions.iter().any(|session| {
            session.privileged
                || (!container_root
                    && matches!(session.user.split(':').next().unwrap_or(""), "0" | "root"))
        });
        if bad {
            e.outcome(
                check,
                None,
                Outcome::Fail,
                "a privileged or root exec session ran in the container",
                start,
            );
        } else {
            e.outcome(
                check,
                None,
                Outcome::Pass,
                "exec sessions ran unprivileged as the container user",
                start,
            );
        }
        return;
    }
    if !spec.live {
        e.outcome(
            check,
            None,
            Outcome::NotApplicable,
            "run stage: evaluated on live Pods, not on templates",
            start,
        );
        return;
    }
    let mut bad = false;
    for c in spec.containers.iter().filter(|c| c.role == Role::Ephemeral) {
        if c.privileged.is_true() {
            bad = true;
            e.fld(
                Some(c),
                &c.privileged,
                Val::Str("privileged debug container"),
            );
        }
        for (index, cap) in c.cap_add.items.iter().enumerate() {
            bad = true;
            e.out.ev(
                spec.pointer(Some(c), c.cap_add.src).index(index as u32),
                s(&cap.raw),
                s(&cap.norm),
            );
        }
        if c.sc.run_as_user.value == Some(0) {
            bad = true;
            e.fld(Some(c), &c.sc.run_as_user, Val::Str("root debug container"));
        }
    }
    if bad {
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "an ephemeral (debug) container runs privileged, as root or with added capabilities",
            start,
        );
    } else {
        e.out.ev(
            Pointer::item(&spec.pod_ptr).path("/ephemeralContainers"),
            Val::Absent,
            Val::Str("no elevated debug container"),
        );
        e.outcome(
            check,
            None,
            Outcome::Unknown,
            "no elevated debug container; exec sessions (pods/exec) are only visible in the API audit log",
            start,
        );
    }
}

fn sshd(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::RunSshd;
    let spec = e.spec;
    let start = e.out.mark();
    if let Some(d) = spec.docker.as_deref() {
        if !d.running {
            e.out.ev(
                Pointer::item("").path("/State/Running"),
                Val::Bool(false),
                Val::Str("not running"),
            );
            e.outcome(
                check,
                None,
                Outcome::NotApplicable,
                "not running: no process to look at",
                start,
            );
            return;
        }
        match e.ctx.processes {
            Some(processes) => {
                let found = processes.iter().find(|p| {
                    let name = p.split_whitespace().next().unwrap_or("");
                    name.rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with("sshd"))
                });
                match found {
                    Some(process) => {
                        e.out.ev(
                            Pointer::item("").path("/Processes"),
                            s(process),
                            Val::Str("sshd"),
                        );
                        e.outcome(
                            check,
                            None,
                            Outcome::Fail,
                            "an SSH daemon runs in the container",
                            start,
                        );
                    }
                    None => e.outcome(
                        check,
                        None,
                        Outcome::Pass,
                        "no SSH daemon among the processes",
                        start,
                    ),
                }
            }
            None => e.outcome(
                check,
                None,
                Outcome::Unknown,
                "the process list (GET /containers/{id}/top) is not in the input",
                start,
            ),
        }
        return;
    }
    let mut found = false;
    for c in &spec.containers {
        for port in &c.ports {
            if matches!(port.container_port, Some(22) | Some(2222)) {
                found = true;
                let pointer = Pointer::item(&c.ptr)
                    .path("/ports")
                    .index(port.index)
                    .tail("/containerPort");
                e.out.ev(
                    pointer,
                    port.container_port.map_or(Val::Absent, Val::Int),
                    Val::Str("SSH port"),
                );
            }
        }
    }
    if found {
        e.outcome(
            check,
            None,
            Outcome::Fail,
            "exposes an SSH port (22/2222): likely an SSH daemon",
            start,
        );
    } else {
        e.outcome(
            check,
            None,
            Outcome::Unknown,
            "no SSH port declared; the processes of the pods are not visible",
            start,
        );
    }
}

fn restart_policy(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::RunRestartPolicy;
    if !e.applies(check) {
        return;
    }
    let d = e.spec.docker.as_deref().expect("docker facts");
    let start = e.out.mark();
    let name = &*d.restart_policy.value;
    e.fld(
        None,
        &d.restart_policy,
        s(if name.is_empty() { "no" } else { name }),
    );
    match name {
        "on-failure" if d.restart_max_retries.value > 5 => {
            e.fld(
                None,
                &d.restart_max_retries,
                Val::Int(d.restart_max_retries.value),
            );
            e.outcome(
                check,
                None,
                Outcome::Fail,
                "restarts on failure more than 5 times",
                start,
            );
        }
        "on-failure" if d.restart_max_retries.value <= 0 => {
            e.fld(None, &d.restart_max_retries, Val::Str("unbounded"));
            e.outcome(
                check,
                None,
                Outcome::Fail,
                "restarts on failure without a retry bound",
                start,
            );
        }
        "always" | "unless-stopped" => e.result(
            check,
            None,
            Outcome::Fail,
            Severity::Info,
            "restarts forever (informational)",
            start,
        ),
        _ => e.outcome(check, None, Outcome::Pass, "bounded restarts", start),
    }
}

fn sudo_in_entrypoint(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::RunSudoInEntrypoint;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        for hit in &c.sudo {
            e.out.ev(
                spec.pointer(Some(c), hit.src),
                Val::Str("sudo"),
                Val::Str("sudo"),
            );
        }
        if c.sudo.is_empty() {
            e.out.ev(
                Pointer::item(&c.ptr).path(if spec.docker.is_some() {
                    "/Config/Cmd"
                } else {
                    "/command"
                }),
                Val::Absent,
                Val::Str("no sudo"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no sudo in the entrypoint or command",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "runs sudo in the entrypoint or command",
                start,
            );
        }
    });
}
