//! The posture of mapped workloads: the declared object (with its pod template) evaluated with
//! the cluster's NetworkPolicies and ServiceAccounts, plus the live Pods that were changed after
//! their creation (CHECKS.md E21: an ephemeral container, a patched pod).
//!
//! A live Pod's FAILs that the template does not already have are findings of their own,
//! attributed to the pod: keyed `pod/<pod>/<container>` (`pod/<pod>` for pod-level results),
//! the message naming the pod. They resolve when the pod is fixed or gone.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::mapping::{posture_projection, spec_hash, ClusterFacts, MappedWorkload};
use crate::findings::{self, Evaluated, FailedCheck};
use crate::posture::CheckId;

/// Evaluates one workload; `None` when it has no object the checks can read.
pub fn evaluate(
    namespace: &str,
    mapped: &MappedWorkload,
    facts: &ClusterFacts,
) -> Option<Evaluated> {
    let object = mapped.posture_object.as_ref()?;
    let ctx = facts.context(namespace);
    let mut evaluated = findings::evaluate_kubernetes(object, &ctx)?;
    if mapped.live_pods.is_empty() {
        return Some(evaluated);
    }
    let declared: HashSet<(CheckId, String)> = evaluated
        .failures
        .iter()
        .map(|f| (f.check, f.container.clone()))
        .collect();
    // Pods changed the same way are evaluated once.
    let mut by_projection: HashMap<String, Option<Evaluated>> = HashMap::new();
    for pod in &mapped.live_pods {
        let projection = spec_hash(&posture_projection(pod));
        let live = by_projection
            .entry(projection)
            .or_insert_with(|| findings::evaluate_kubernetes(pod, &ctx));
        let Some(live) = live else { continue };
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for failure in &live.failures {
            if declared.contains(&(failure.check, failure.container.clone())) {
                continue;
            }
            let container = if failure.container.is_empty() {
                format!("pod/{name}")
            } else {
                format!("pod/{name}/{}", failure.container)
            };
            let mut evidence = vec![json!({
                "pointer": "/metadata/name",
                "raw": name,
                "normalized": "live pod changed after its creation",
            })];
            if let Value::Array(items) = &failure.evidence {
                evidence.extend(items.iter().cloned());
            }
            evaluated.failures.push(FailedCheck {
                check: failure.check,
                container,
                severity: failure.severity,
                message: format!("live pod {name}: {}", failure.message),
                evidence: Value::Array(evidence),
            });
        }
        if let (Some(level), Some(live_level)) = (evaluated.pss_level, live.pss_level) {
            evaluated.pss_level = Some(level.min(live_level));
        }
    }
    Some(evaluated)
}
