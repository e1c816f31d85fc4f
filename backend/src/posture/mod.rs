//! Posture: the check catalog evaluated on one normalized workload spec.
//!
//! Pure: nothing here does I/O except [`scan`], the offline scanner behind `harbormaster scan`,
//! which reads the files it is given.
//!
//! # The API the collectors and the persistence layer call
//!
//! 1. Adapt a source object into a [`WorkloadSpec`]:
//!    - [`docker::adapt`]`(&inspect_json)` for one `GET /containers/{id}/json` document;
//!    - [`kubernetes::adapt`]`(&object_json)` for a Pod, Deployment, ReplicaSet, StatefulSet,
//!      DaemonSet, Job, CronJob or ReplicationController (hand it
//!      `serde_json::to_value(&k8s_object)`).
//!
//!    Both return [`AdaptError`] naming the JSON pointer of a field of the wrong type, or
//!    [`AdaptError::NotAWorkload`] for kinds without a pod template.
//! 2. Build a [`Context`] with what else is known (all optional; a check that needs a missing
//!    fact says UNKNOWN): [`DaemonFacts::from_info`] for `docker info`, the namespace's
//!    [`NetworkPolicy`]s ([`NetworkPolicy::from_object`]), [`ServiceAccountFacts`],
//!    [`RuntimeClassFacts`], [`ImageFacts`], [`VolumeFacts`], [`KubeletFacts`],
//!    verified digests, exec sessions, the process list and the operator's [`Settings`].
//! 3. [`evaluate`]`(&spec, &ctx) -> Report`: one [`CheckResult`] per check and per container
//!    for container-scoped checks (per workload for pod-scoped ones), in catalog order. Every
//!    check of [`catalog::CATALOG`] yields at least one result. [`evaluate_into`] reuses a
//!    report's buffers.
//! 4. Read the report: [`Report::iter`] gives each result with its [`Evidence`] (the JSON
//!    pointer read, the raw value — omitted when the field is absent — and the normalized
//!    value). Secret values never appear: only environment variable names. A result's
//!    `severity` is the effective one (modifiers applied); `outcome` is PASS / FAIL / UNKNOWN /
//!    N/A. [`Report::counts`] counts FAILs by severity for [`score::grade`].
//! 5. [`pss::assess`]`(&spec)` gives the Pod Security Standards level the workload meets and the
//!    controls that keep it from the next level, evaluated the way Pod Security Admission does
//!    (exact strings, policy version [`pss::POLICY_VERSION`]).
//!
//! Results borrow from the spec and the context (`Report<'a>`); serialize them (the report
//! implements `Serialize`) or copy what you store.

pub mod catalog;
pub mod checks;
pub mod context;
pub mod docker;
pub mod kubernetes;
pub mod pss;
pub mod scan;
pub mod score;
pub mod spec;

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub use catalog::{CheckId, CheckMeta, Layer, Severity, Stage, Threat, CATALOG};
pub use context::{
    Context, DaemonFacts, ExecFacts, ImageFacts, KubeletFacts, NetworkPolicy, RuntimeClassFacts,
    RuntimeFamily, ServiceAccountFacts, Settings, VolumeFacts,
};
pub use score::{grade, Grade, SeverityCounts};
pub use spec::{ContainerSpec, Platform, Pointer, Val, WorkloadSpec};

/// Why a source object could not be adapted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptError {
    /// A field has the wrong type or a required part is missing.
    #[error("{pointer}: {message}")]
    Invalid { pointer: String, message: String },
    /// The kind has no pod template (Service, ConfigMap, …).
    #[error("kind {0} is not a workload")]
    NotAWorkload(String),
}

impl AdaptError {
    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let pointer = pointer.into();
        Self::Invalid {
            pointer: if pointer.is_empty() {
                "/".to_string()
            } else {
                pointer
            },
            message: message.into(),
        }
    }
}

/// The outcome of one check on one container (or on the workload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pass,
    Fail,
    /// The check needs data that is not available (image config, daemon or node config,
    /// another object).
    Unknown,
    /// The check does not apply (a Linux-only control on Windows, a Docker-only setting…).
    NotApplicable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Unknown => "UNKNOWN",
            Outcome::NotApplicable => "N/A",
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One thing a check read: where, what was written, and how it was understood.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence<'a> {
    pub pointer: Pointer<'a>,
    /// The value as written; [`Val::Absent`] when the field is not in the document.
    pub raw: Val<'a>,
    pub normalized: Val<'a>,
}

impl Serialize for Evidence<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("pointer", &self.pointer)?;
        if !self.raw.is_absent() {
            map.serialize_entry("raw", &self.raw)?;
        }
        map.serialize_entry("normalized", &self.normalized)?;
        map.end()
    }
}

/// The result of one check on one container, or on the workload for pod-scoped checks.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult<'a> {
    pub check: CheckId,
    /// The container, or `None` for a pod-level (workload-level) result.
    pub container: Option<&'a str>,
    pub outcome: Outcome,
    /// The effective severity (the catalog's, or the one a modifier chose).
    pub severity: Severity,
    pub message: Cow<'static, str>,
    evidence: Range<u32>,
}

impl CheckResult<'_> {
    pub fn meta(&self) -> &'static CheckMeta {
        self.check.meta()
    }
    pub fn is_failure(&self) -> bool {
        self.outcome == Outcome::Fail
    }
}

/// Every result of one evaluation, with their evidence.
#[derive(Clone, Debug, Default)]
pub struct Report<'a> {
    results: Vec<CheckResult<'a>>,
    evidence: Vec<Evidence<'a>>,
}

impl<'a> Report<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.results.clear();
        self.evidence.clear();
    }

    pub fn results(&self) -> &[CheckResult<'a>] {
        &self.results
    }

    pub fn evidence(&self, result: &CheckResult<'a>) -> &[Evidence<'a>] {
        &self.evidence[result.evidence.start as usize..result.evidence.end as usize]
    }

    /// Each result with its evidence.
    pub fn iter(&self) -> impl Iterator<Item = (&CheckResult<'a>, &[Evidence<'a>])> {
        self.results.iter().map(|r| (r, self.evidence(r)))
    }

    /// The results of one check.
    pub fn of(&self, check: CheckId) -> impl Iterator<Item = &CheckResult<'a>> {
        self.results.iter().filter(move |r| r.check == check)
    }

    /// The FAIL results.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult<'a>> {
        self.results.iter().filter(|r| r.outcome == Outcome::Fail)
    }

    /// FAILs counted by effective severity.
    pub fn counts(&self) -> SeverityCounts {
        SeverityCounts::from_severities(self.failures().map(|r| r.severity))
    }

    pub(crate) fn mark(&self) -> u32 {
        self.evidence.len() as u32
    }

    pub(crate) fn ev(&mut self, pointer: Pointer<'a>, raw: Val<'a>, normalized: Val<'a>) {
        self.evidence.push(Evidence {
            pointer,
            raw,
            normalized,
        });
    }

    pub(crate) fn push(
        &mut self,
        check: CheckId,
        container: Option<&'a ContainerSpec>,
        outcome: Outcome,
        severity: Severity,
        message: impl Into<Cow<'static, str>>,
        start: u32,
    ) {
        self.results.push(CheckResult {
            check,
            container: container.map(|c| &*c.name),
            outcome,
            severity,
            message: message.into(),
            evidence: start..self.evidence.len() as u32,
        });
    }
}

impl Serialize for Report<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.results.len()))?;
        for (result, evidence) in self.iter() {
            seq.serialize_element(&ResultView { result, evidence })?;
        }
        seq.end()
    }
}

/// One result with its evidence, as serialized.
pub struct ResultView<'r, 'a> {
    pub result: &'r CheckResult<'a>,
    pub evidence: &'r [Evidence<'a>],
}

impl Serialize for ResultView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("check", &self.result.check)?;
        map.serialize_entry("container", &self.result.container)?;
        map.serialize_entry("outcome", &self.result.outcome)?;
        map.serialize_entry("severity", &self.result.severity)?;
        map.serialize_entry("message", &self.result.message)?;
        map.serialize_entry("evidence", self.evidence)?;
        map.end()
    }
}

/// Evaluates every check of the catalog on `spec`.
pub fn evaluate<'a>(spec: &'a WorkloadSpec, ctx: &Context<'a>) -> Report<'a> {
    let mut report = Report {
        results: Vec::with_capacity(CATALOG.len() + 16 * spec.containers.len()),
        evidence: Vec::with_capacity(CATALOG.len() * 2),
    };
    checks::run_all(spec, ctx, &mut report);
    report
}

/// Like [`evaluate`], reusing `report`'s buffers (it is cleared first).
pub fn evaluate_into<'a>(spec: &'a WorkloadSpec, ctx: &Context<'a>, report: &mut Report<'a>) {
    report.clear();
    checks::run_all(spec, ctx, report);
}
