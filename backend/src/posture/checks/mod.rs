//! The checks, one file per group of the catalog. Each group's `run` evaluates its checks in
//! catalog order; [`run_all`] calls the groups in catalog order, so a report lists results in
//! the order of [`CATALOG`](super::CATALOG).

pub mod capabilities;
pub mod confinement;
pub mod filesystem;
pub mod identity;
pub mod image;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod privilege;
pub mod resources;
pub mod runtime;
pub mod secrets;
pub mod supply;

use std::borrow::Cow;

use super::catalog::{CheckId, Severity};
use super::context::Context;
use super::spec::{ContainerSpec, Fld, Platform, Val, WorkloadSpec};
use super::{Outcome, Report};

/// Runs every check on `spec`.
pub(crate) fn run_all<'a>(spec: &'a WorkloadSpec, ctx: &Context<'a>, out: &mut Report<'a>) {
    // A VM or user-space kernel shrinks the kernel attack surface: kernel-surface findings
    // are one step less severe there, host exposure is not (E24).
    let sandboxed = matches!(
        namespaces::tier_of(spec, ctx),
        Some(namespaces::Tier::Vm | namespaces::Tier::UserKernel)
    );
    let e = &mut Eval {
        spec,
        ctx,
        out,
        sandboxed,
    };
    privilege::run(e);
    capabilities::run(e);
    namespaces::run(e);
    mounts::run(e);
    confinement::run(e);
    identity::run(e);
    filesystem::run(e);
    network::run(e);
    resources::run(e);
    image::run(e);
    secrets::run(e);
    runtime::run(e);
    supply::run(e);
}

/// What a check sees: the spec, the context and the report it writes to.
pub(crate) struct Eval<'a, 'c, 'r> {
    pub spec: &'a WorkloadSpec,
    pub ctx: &'c Context<'a>,
    pub out: &'r mut Report<'a>,
    /// The workload runs under a VM or user-space kernel (gVisor, Kata, Hyper-V).
    pub sandboxed: bool,
}

/// Checks whose risk is the kernel's attack surface, softened by a sandboxed runtime (E24).
const KERNEL_SURFACE: &[CheckId] = &[
    CheckId::CapsAddCritical,
    CheckId::CapsAddHighRisk,
    CheckId::CapsAddOutsideBaseline,
    CheckId::CapsAddOutsideRestricted,
    CheckId::CapsDropAllMissing,
    CheckId::CapsNetRawRetained,
    CheckId::SeccompUnconfined,
    CheckId::SeccompNotExplicit,
    CheckId::ProcUnmasked,
    CheckId::SysctlUnsafe,
];

impl<'a> Eval<'a, '_, '_> {
    pub fn is_docker(&self) -> bool {
        self.spec.platform == Platform::Docker
    }

    /// Records evidence for a field of the spec.
    pub fn fld<T>(&mut self, c: Option<&'a ContainerSpec>, field: &'a Fld<T>, normalized: Val<'a>) {
        let pointer = self.spec.pointer(c, field.src);
        self.out.ev(pointer, field.raw.val(), normalized);
    }

    /// Records a result whose evidence starts at `start`.
    pub fn result(
        &mut self,
        check: CheckId,
        c: Option<&'a ContainerSpec>,
        outcome: Outcome,
        severity: Severity,
        message: impl Into<Cow<'static, str>>,
        start: u32,
    ) {
        let severity =
            if self.sandboxed && outcome == Outcome::Fail && KERNEL_SURFACE.contains(&check) {
                severity.downgraded()
            } else {
                severity
            };
        self.out.push(check, c, outcome, severity, message, start);
    }

    /// A result with the catalog severity.
    pub fn outcome(
        &mut self,
        check: CheckId,
        c: Option<&'a ContainerSpec>,
        outcome: Outcome,
        message: impl Into<Cow<'static, str>>,
        start: u32,
    ) {
        self.result(check, c, outcome, check.meta().severity, message, start);
    }

    /// A pod-level N/A result without evidence.
    pub fn not_applicable(&mut self, check: CheckId, message: impl Into<Cow<'static, str>>) {
        let start = self.out.mark();
        self.outcome(check, None, Outcome::NotApplicable, message, start);
    }

    /// Emits N/A and returns false when the check has no rule for this source.
    pub fn applies(&mut self, check: CheckId) -> bool {
        let sources = check.meta().sources;
        let (applies, message) = match self.spec.platform {
            Platform::Docker => (
                sources.docker(),
                "Kubernetes-only setting; Docker has no such field",
            ),
            Platform::Kubernetes => (
                sources.kubernetes(),
                "Docker-only setting; Kubernetes has no such field",
            ),
        };
        if !applies {
            self.not_applicable(check, message);
        }
        applies
    }

    /// Emits N/A and returns false for Windows workloads (Linux-only controls, E9).
    pub fn linux_only(&mut self, check: CheckId) -> bool {
        if self.spec.is_windows() {
            let start = self.out.mark();
            let spec = self.spec;
            self.fld(None, &spec.os, Val::Str("windows"));
            self.outcome(
                check,
                None,
                Outcome::NotApplicable,
                "Linux-only control; the workload runs Windows containers",
                start,
            );
            false
        } else {
            true
        }
    }

    /// Runs `f` for every container, or emits N/A when the workload has none.
    pub fn each_container(
        &mut self,
        check: CheckId,
        mut f: impl FnMut(&mut Self, &'a ContainerSpec),
    ) {
        let spec = self.spec;
        if spec.containers.is_empty() {
            self.not_applicable(check, "the workload has no container");
            return;
        }
        for c in &spec.containers {
            f(self, c);
        }
    }
}

/// `Val::Str` of a boxed string.
pub(crate) fn s(text: &str) -> Val<'_> {
    Val::Str(text)
}

#[cfg(test)]
pub(crate) mod tests;
