//! 1.I Resources. Kubernetes: regular containers and sidecars need limits; classic init
//! containers are informational; ephemeral containers cannot set resources. Pod-level
//! `spec.resources` bounds containers that set none (E15).

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{Amount, ContainerSpec, Fld, Pointer, Role, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    limit(e, CheckId::ResMemoryLimitMissing);
    limit(e, CheckId::ResCpuLimitMissing);
    pids_limit(e);
    requests(e);
    ephemeral_storage(e);
    ulimits(e);
    cgroup_parent(e);
}

fn set(field: &Fld<Option<Amount>>) -> bool {
    field.value.as_ref().is_some_and(|a| !a.is_zero())
}

fn amount_val(field: &Fld<Option<Amount>>) -> Val<'_> {
    match &field.value {
        None => Val::Str("unset"),
        Some(Amount::Int(value)) => Val::Int(*value),
        Some(Amount::Quantity(text)) => s(text),
    }
}

fn limit(e: &mut Eval<'_, '_, '_>, check: CheckId) {
    let memory = check == CheckId::ResMemoryLimitMissing;
    if !memory && !e.ctx.settings().require_cpu_limits {
        e.not_applicable(check, "CPU limits are not required by configuration");
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            let ok = if memory {
                let ok = set(&c.resources.limits_memory);
                e.fld(
                    Some(c),
                    &c.resources.limits_memory,
                    if ok {
                        amount_val(&c.resources.limits_memory)
                    } else {
                        Val::Str("unlimited")
                    },
                );
                ok
            } else {
                let ok = d.nano_cpus.value > 0
                    || d.cpu_quota.value > 0
                    || !d.cpuset_cpus.value.is_empty();
                e.fld(Some(c), &d.nano_cpus, Val::Int(d.nano_cpus.value));
                e.fld(Some(c), &d.cpu_quota, Val::Int(d.cpu_quota.value));
                e.fld(Some(c), &d.cpuset_cpus, s(&d.cpuset_cpus.value));
                ok
            };
            if ok {
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    if memory {
                        "memory limit set"
                    } else {
                        "CPU limit set"
                    },
                    start,
                );
            } else {
                e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    if memory {
                        "no memory limit"
                    } else {
                        "no CPU limit, quota or cpuset"
                    },
                    start,
                );
            }
            return;
        }
        kubernetes_limit(e, check, c, memory);
    });
}

fn kubernetes_limit<'a>(
    e: &mut Eval<'a, '_, '_>,
    check: CheckId,
    c: &'a ContainerSpec,
    memory: bool,
) {
    let spec = e.spec;
    let start = e.out.mark();
    if c.role == Role::Ephemeral {
        e.outcome(
            check,
            Some(c),
            Outcome::NotApplicable,
            "ephemeral containers cannot set resources",
            start,
        );
        return;
    }
    let own = if memory {
        &c.resources.limits_memory
    } else {
        &c.resources.limits_cpu
    };
    let pod = if memory {
        &spec.pod.resources.limits_memory
    } else {
        &spec.pod.resources.limits_cpu
    };
    if set(own) {
        e.fld(Some(c), own, amount_val(own));
        e.outcome(check, Some(c), Outcome::Pass, "limit set", start);
    } else if set(pod) {
        e.fld(None, pod, amount_val(pod));
        e.outcome(
            check,
            Some(c),
            Outcome::Pass,
            "bounded by the pod-level limit",
            start,
        );
    } else if c.role == Role::Init {
        e.fld(Some(c), own, amount_val(own));
        e.result(
            check,
            Some(c),
            Outcome::Fail,
            Severity::Info,
            "no limit on an init container (runs to completion; informational)",
            start,
        );
    } else {
        e.fld(Some(c), own, amount_val(own));
        e.outcome(
            check,
            Some(c),
            Outcome::Fail,
            if memory {
                "no memory limit"
            } else {
                "no CPU limit"
            },
            start,
        );
    }
}

fn pids_limit(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ResPidsLimitMissing;
    let spec = e.spec;
    let start = e.out.mark();
    if let Some(d) = spec.docker.as_deref() {
        match d.pids_limit.value {
            Some(limit) if limit > 0 => {
                e.fld(None, &d.pids_limit, Val::Int(limit));
                e.outcome(check, None, Outcome::Pass, "PID limit set", start);
            }
            _ => {
                e.fld(None, &d.pids_limit, Val::Str("unlimited"));
                e.outcome(
                    check,
                    None,
                    Outcome::Fail,
                    "no PID limit (null, 0 and -1 all mean unlimited)",
                    start,
                );
            }
        }
        return;
    }
    e.out.ev(
        Pointer::item(&spec.pod_ptr),
        Val::Absent,
        Val::Str("kubelet podPidsLimit (node scope)"),
    );
    match e.ctx.kubelet.pod_pids_limit {
        Some(limit) if limit > 0 => e.outcome(
            check,
            None,
            Outcome::Pass,
            "the kubelet limits PIDs per pod",
            start,
        ),
        Some(_) => e.outcome(
            check,
            None,
            Outcome::Fail,
            "the kubelet sets no podPidsLimit",
            start,
        ),
        None => e.outcome(
            check,
            None,
            Outcome::Unknown,
            "the PID limit is a kubelet setting (podPidsLimit), which is not known",
            start,
        ),
    }
}

fn requests(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ResRequestsMissing;
    if !e.applies(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if !c.role.long_running() {
            e.outcome(
                check,
                Some(c),
                Outcome::NotApplicable,
                "only regular containers and sidecars",
                start,
            );
            return;
        }
        let r = &c.resources;
        // The API server copies a limit into a missing request.
        let cpu = set(&r.requests_cpu) || set(&r.limits_cpu);
        let memory = set(&r.requests_memory) || set(&r.limits_memory);
        e.fld(Some(c), &r.requests_cpu, amount_val(&r.requests_cpu));
        e.fld(Some(c), &r.requests_memory, amount_val(&r.requests_memory));
        if cpu && memory {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "CPU and memory requests set (or defaulted from limits)",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "CPU or memory request missing",
                start,
            );
        }
    });
}

fn ephemeral_storage(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ResEphemeralStorageMissing;
    if !e.applies(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if !c.role.long_running() {
            e.outcome(
                check,
                Some(c),
                Outcome::NotApplicable,
                "only regular containers and sidecars",
                start,
            );
            return;
        }
        let field = &c.resources.limits_ephemeral;
        e.fld(Some(c), field, amount_val(field));
        if set(field) {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "ephemeral-storage limit set",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "no ephemeral-storage limit",
                start,
            );
        }
    });
}

fn ulimits(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ResUlimitsDefault;
    if !e.applies(check) {
        return;
    }
    let d = e.spec.docker.as_deref().expect("docker facts");
    let start = e.out.mark();
    e.fld(None, &d.ulimits, Val::Int(d.ulimits.value as i64));
    if d.ulimits.value == 0 {
        e.result(
            check,
            None,
            Outcome::Fail,
            Severity::Info,
            "default ulimits (informational)",
            start,
        );
    } else {
        e.outcome(check, None, Outcome::Pass, "ulimits set", start);
    }
}

fn cgroup_parent(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ResCgroupParentCustom;
    if !e.applies(check) {
        return;
    }
    let d = e.spec.docker.as_deref().expect("docker facts");
    let approved = &e.ctx.settings().approved_cgroup_parents;
    let start = e.out.mark();
    let parent = &*d.cgroup_parent.value;
    e.fld(
        None,
        &d.cgroup_parent,
        if parent.is_empty() {
            Val::Str("default")
        } else {
            s(parent)
        },
    );
    if parent.is_empty() || approved.iter().any(|a| a == parent) {
        e.outcome(
            check,
            None,
            Outcome::Pass,
            "default or approved cgroup parent",
            start,
        );
    } else {
        e.outcome(check, None, Outcome::Fail, "custom cgroup parent", start);
    }
}
