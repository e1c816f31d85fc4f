//! Persisted posture findings, waivers and workload scores (the stored half of posture; the
//! pure engine is [`crate::posture`]).
//!
//! # Lifecycle
//!
//! A collector evaluates what it just wrote ([`evaluate_docker`], [`evaluate_kubernetes`]) and
//! hands the FAILs to [`store::sync_findings`] in the same transaction as its inventory batch,
//! for many workloads at once (a few UNNEST statements per batch, never row by row):
//!
//! - a FAIL with no open finding for its (workload, check, container) opens one (`first_seen`);
//! - a FAIL with an open finding bumps its `last_seen` (and refreshes severity, message,
//!   evidence);
//! - an open finding in an evaluated scope that did not FAIL this time is resolved with reason
//!   `fixed` (`resolved_at`). A later FAIL opens a new finding; the old row stays.
//!
//! The scope of an evaluation is the whole workload (Kubernetes: the declared object, with its
//! pod template, is evaluated as a whole; findings are keyed by container name, `''` for
//! pod-level results; a live Pod changed after its creation adds its own FAILs keyed
//! `pod/<pod>/<container>`, see [`crate::collect::kubernetes::posture`]) or one container (Docker: each container inspect document is evaluated on
//! its own and every result of it is keyed by the container's name, so a batch carrying one
//! replica of a Compose service leaves the other replicas' findings alone).
//!
//! Findings about the image digests a workload runs (the build, store and update controls of
//! [`crate::supply`]) have their own scope, the container key [`crate::supply::IMAGE_SCOPE`]:
//! the collectors' evaluations neither open nor resolve them.
//!
//! A retired workload's open findings close with reason `retired` ([`store::close_retired`]); a
//! Docker container removed from a workload that lives on (a scaled-down Compose service) has
//! its findings closed with reason `removed` ([`store::close_removed_containers`]).
//! Findings are never deleted (a trigger refuses it).
//!
//! # Waivers and scores
//!
//! An approved, unexpired waiver (check + workload, namespace (+source) or source) marks the open
//! findings it covers (`waiver_id`): they stay visible (`waived: true`) but leave the grade and
//! risk. [`waivers::expire_waivers`] turns due waivers to `expired` and the findings count again.
//! Each workload keeps its open non-waived counts by severity, `worst_severity`, `grade`
//! ([`crate::posture::score::grade`]), `risk_score` ([`risk_score`]) and `pss_level`.

pub mod store;
pub mod summary;
pub mod trend;
pub mod waivers;

use std::collections::HashMap;

use serde_json::Value;

use crate::posture::{self, pss, score::SeverityCounts, CheckId, Context, Layer, Severity};

/// One FAIL to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedCheck {
    pub check: CheckId,
    /// The container name, `''` for a pod-level result.
    pub container: String,
    pub severity: Severity,
    pub message: String,
    /// The evidence as the engine serializes it (pointers, names, normalized values).
    pub evidence: Value,
}

/// What an evaluation found for one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub workload_id: i64,
    /// `None`: the whole workload was evaluated; `Some(name)`: only that container was.
    pub container_scope: Option<String>,
    pub failures: Vec<FailedCheck>,
    /// The Pod Security Standards level met, when assessed.
    pub pss_level: Option<pss::PssLevel>,
}

/// A workload's evaluation before its id is known (collectors evaluate before writing).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub container_scope: Option<String>,
    pub failures: Vec<FailedCheck>,
    pub pss_level: Option<pss::PssLevel>,
}

impl Evaluated {
    pub fn for_workload(self, workload_id: i64) -> Evaluation {
        Evaluation {
            workload_id,
            container_scope: self.container_scope,
            failures: self.failures,
            pss_level: self.pss_level,
        }
    }
}

/// Runs `step` at start-up and every `interval` until `cancel` fires; a failed step is logged
/// (as "cannot {what}") and retried on the next tick.
pub(crate) fn every<F, Fut>(
    pool: sqlx::PgPool,
    tasks: &tokio_util::task::TaskTracker,
    cancel: &tokio_util::sync::CancellationToken,
    interval: std::time::Duration,
    what: &'static str,
    step: F,
) where
    F: Fn(sqlx::PgPool) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>> + Send,
{
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(err) = step(pool.clone()).await {
                tracing::warn!(%err, "cannot {what}");
            }
        }
    });
}

/// The layer's word, as stored and filtered on.
pub fn layer_str(layer: Layer) -> &'static str {
    match layer {
        Layer::Application => "application",
        Layer::Image => "image",
        Layer::Runtime => "runtime",
        Layer::Orchestration => "orchestration",
        Layer::Host => "host",
    }
}

pub const LAYERS: &[&str] = &["application", "image", "runtime", "orchestration", "host"];

/// A number to sort workloads by risk: open non-waived findings weighted by severity
/// (critical 1000, high 100, medium 10, low 1; info 0), capped at `i32::MAX`.
pub fn risk_score(counts: &SeverityCounts) -> i32 {
    let score = u64::from(counts.critical) * 1000
        + u64::from(counts.high) * 100
        + u64::from(counts.medium) * 10
        + u64::from(counts.low);
    i32::try_from(score).unwrap_or(i32::MAX)
}

/// The FAILs of a report, one per (check, container); `container_override` keys every result
/// by that name (Docker). Evidence is the engine's own serialization: never a secret value.
fn failures_of(report: &posture::Report<'_>, container_override: Option<&str>) -> Vec<FailedCheck> {
    let mut by_key: HashMap<(CheckId, String), FailedCheck> = HashMap::new();
    let mut order = Vec::new();
    for (result, evidence) in report.iter() {
        if !result.is_failure() {
            continue;
        }
        let container = container_override
            .or(result.container)
            .unwrap_or("")
            .to_string();
        let key = (result.check, container.clone());
        let evidence = serde_json::to_value(evidence).unwrap_or(Value::Null);
        match by_key.get_mut(&key) {
            Some(existing) => {
                if result.severity > existing.severity {
                    existing.severity = result.severity;
                    existing.message = result.message.to_string();
                }
                if let (Value::Array(into), Value::Array(more)) = (&mut existing.evidence, evidence)
                {
                    into.extend(more);
                }
            }
            None => {
                order.push(key.clone());
                by_key.insert(
                    key,
                    FailedCheck {
                        check: result.check,
                        container,
                        severity: result.severity,
                        message: result.message.to_string(),
                        evidence,
                    },
                );
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| by_key.remove(&key))
        .collect()
}

/// Evaluates one Docker container inspect document (un-redacted: the secret checks need the
/// values; nothing of them is kept). Every result is keyed by the container's name.
pub fn evaluate_docker(inspect: &Value, ctx: &Context<'_>) -> Option<Evaluated> {
    let spec = posture::docker::adapt(inspect).ok()?;
    // The container's name as the inventory stores it (the id's first 12 characters without one).
    let name = inspect
        .get("Name")
        .and_then(Value::as_str)
        .map(|name| name.trim_start_matches('/').to_string())
        .or_else(|| {
            inspect
                .get("Id")
                .and_then(Value::as_str)
                .map(|id| id.chars().take(12).collect())
        })
        .unwrap_or_default();
    let report = posture::evaluate(&spec, ctx);
    let failures = failures_of(&report, Some(&name));
    let pss_level = Some(pss::assess(&spec).level);
    Some(Evaluated {
        container_scope: Some(name),
        failures,
        pss_level,
    })
}

/// Evaluates a declared Kubernetes object (un-redacted) as a whole; `None` for a kind without a
/// pod template or a malformed object.
pub fn evaluate_kubernetes(object: &Value, ctx: &Context<'_>) -> Option<Evaluated> {
    let spec = posture::kubernetes::adapt(object).ok()?;
    let report = posture::evaluate(&spec, ctx);
    let failures = failures_of(&report, None);
    let pss_level = Some(pss::assess(&spec).level);
    Some(Evaluated {
        container_scope: None,
        failures,
        pss_level,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn risk_weighs_severities_and_ignores_info() {
        let counts = SeverityCounts {
            critical: 1,
            high: 2,
            medium: 3,
            low: 4,
            info: 50,
        };
        assert_eq!(risk_score(&counts), 1234);
        assert_eq!(risk_score(&SeverityCounts::default()), 0);
    }

    #[test]
    fn a_privileged_container_fails_with_its_name_and_no_secret_value() {
        let inspect = json!({
            "Id": "abc", "Name": "/web-1",
            "Config": {"Image": "busybox:1", "Env": ["DB_PASSWORD=hunter2hunter2hunter2"], "User": ""},
            "HostConfig": {"Privileged": true}
        });
        let evaluated = evaluate_docker(&inspect, &Context::default()).unwrap();
        assert_eq!(evaluated.container_scope.as_deref(), Some("web-1"));
        let privileged = evaluated
            .failures
            .iter()
            .find(|f| f.check == CheckId::PrivPrivileged)
            .expect("privileged fails");
        assert_eq!(privileged.container, "web-1");
        assert_eq!(privileged.severity, Severity::Critical);
        let all = serde_json::to_string(
            &evaluated
                .failures
                .iter()
                .map(|f| &f.evidence)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(!all.contains("hunter2"), "{all}");
    }
}
