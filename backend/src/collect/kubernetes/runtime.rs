//! Run-stage monitoring of live Pods, from what the API server already says: debug (ephemeral)
//! containers added, containers restarting, a running image digest that differs from the
//! declared one, and a Pod whose images drifted from its rolled-out controller's template.
//!
//! [`observe_pod`] is pure: it compares a Pod with what was observed of it last time. [`observe`]
//! runs it for the Pods of the workloads a write carries (called from [`super::persist`]) and
//! records the events and findings ([`crate::runtime`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};
use sqlx::PgConnection;

use super::mapping::{self, MappedWorkload};
use crate::inventory::WorkloadKey;
use crate::posture::CheckId;
use crate::runtime::{self, OpenFinding, RuntimeEvent, Settings};

/// What one Pod's observation found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodObservation {
    pub events: Vec<RuntimeEvent>,
    /// What to remember of the Pod for next time.
    pub state: Value,
    /// Containers whose running digest differs from the declared one: (container, message).
    pub image_drift: Vec<(String, String)>,
    /// Containers whose image differs from the controller's template.
    pub spec_drift: Vec<(String, String)>,
    /// Every container of the Pod (regular and init), for resolving.
    pub containers: Vec<String>,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(value: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The digest of an image reference pinned by digest (`repo@sha256:…`).
fn pinned_digest(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, digest)| digest)
}

/// The pod template's spec of a controller object.
fn template_spec(object: &Value) -> Option<&Value> {
    match object.get("kind").and_then(Value::as_str)? {
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => None,
        _ => object.pointer("/spec/template/spec"),
    }
}

fn elevated(container: &Value) -> bool {
    container
        .pointer("/securityContext/privileged")
        .and_then(Value::as_bool)
        == Some(true)
        || container
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
        || items(container, "/securityContext/capabilities/add")
            .next()
            .is_some()
}

/// Compares a live Pod with its last observation (`None`: first seen) and, when the controller
/// is rolled out, with its template.
pub fn observe_pod(
    pod: &Value,
    template: Option<&Value>,
    rolled_out: bool,
    previous: Option<&Value>,
) -> PodObservation {
    let external_id = mapping::pod_external_id(pod);
    let pod_name = text(pod, "/metadata/name").to_string();
    let empty = json!({});
    let before = previous.unwrap_or(&empty);
    let mut out = PodObservation::default();

    // Debug containers: reported once each, also on first sight (they never go away).
    let known: BTreeSet<&str> = items(before, "/ephemeral")
        .filter_map(Value::as_str)
        .collect();
    let mut ephemeral = Vec::new();
    for c in items(pod, "/spec/ephemeralContainers") {
        let name = text(c, "/name").to_string();
        if !known.contains(name.as_str()) {
            let command: Vec<&str> = items(c, "/command")
                .chain(items(c, "/args"))
                .filter_map(Value::as_str)
                .collect();
            let elevated = elevated(c);
            out.events.push(RuntimeEvent {
                container_id: external_id.clone(),
                kind: "ephemeral_container".into(),
                severity: if elevated { "high" } else { "medium" }.into(),
                summary: format!(
                    "debug container {name} added to {pod_name}{}",
                    if elevated { " (elevated)" } else { "" }
                ),
                details: json!({
                    "container": name,
                    "image": text(c, "/image"),
                    "command": command.join(" "),
                    "target": c.get("targetContainerName"),
                    "elevated": elevated,
                    "privileged": c.pointer("/securityContext/privileged"),
                    "tty": c.get("tty"),
                    "stdin": c.get("stdin"),
                }),
            });
        }
        ephemeral.push(name);
    }

    // Restarts: the count rising since last time; a crash loop the kubelet reports.
    let mut restarts = BTreeMap::new();
    for status in
        items(pod, "/status/initContainerStatuses").chain(items(pod, "/status/containerStatuses"))
    {
        let name = text(status, "/name").to_string();
        let count = status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let crash_loop = text(status, "/state/waiting/reason") == "CrashLoopBackOff";
        let last = before
            .pointer(&format!(
                "/restarts/{}",
                name.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_i64);
        let delta = last.map_or(0, |last| (count - last).max(0));
        if delta > 0 || (last.is_none() && crash_loop && count > 0) {
            out.events.push(RuntimeEvent {
                container_id: external_id.clone(),
                kind: "restart".into(),
                severity: "low".into(),
                summary: format!(
                    "{name} in {pod_name} restarted (restart {count}{})",
                    if crash_loop { ", CrashLoopBackOff" } else { "" }
                ),
                details: json!({
                    "container": name,
                    "restart_count": count,
                    "delta": delta,
                    "crash_loop": crash_loop,
                    "last_reason": status.pointer("/lastState/terminated/reason"),
                    "last_exit_code": status.pointer("/lastState/terminated/exitCode"),
                }),
            });
        }
        restarts.insert(name.clone(), count);
        out.containers.push(name);
    }

    // Image drift: the running digest against a reference pinned by digest (in the Pod, or in
    // the template when the Pod's reference is a tag).
    let declared: HashMap<&str, &str> = items(pod, "/spec/containers")
        .chain(items(pod, "/spec/initContainers"))
        .map(|c| (text(c, "/name"), text(c, "/image")))
        .collect();
    let templated: HashMap<&str, &str> = template
        .map(|spec| {
            items(spec, "/containers")
                .chain(items(spec, "/initContainers"))
                .map(|c| (text(c, "/name"), text(c, "/image")))
                .collect()
        })
        .unwrap_or_default();
    let reported: BTreeSet<&str> = items(before, "/image_drift")
        .filter_map(Value::as_str)
        .collect();
    for status in
        items(pod, "/status/initContainerStatuses").chain(items(pod, "/status/containerStatuses"))
    {
        let name = text(status, "/name");
        let Some(running) = mapping::normalize_image_id(text(status, "/imageID")) else {
            continue;
        };
        let image = declared.get(name).copied().unwrap_or("");
        let pinned =
            pinned_digest(image).or_else(|| templated.get(name).and_then(|i| pinned_digest(i)));
        if let Some(pinned) = pinned {
            if pinned != running {
                let message = format!("{name} runs {running}, declared {pinned}");
                if !reported.contains(name) {
                    out.events.push(RuntimeEvent {
                        container_id: external_id.clone(),
                        kind: "image_drift".into(),
                        severity: "high".into(),
                        summary: format!("{pod_name}: {message}"),
                        details: json!({
                            "container": name,
                            "declared": image,
                            "declared_digest": pinned,
                            "running_digest": running,
                        }),
                    });
                }
                out.image_drift.push((name.to_string(), message));
            }
        }
    }

    // Spec drift: once the controller is rolled out every Pod should run its template's images.
    let reported: BTreeSet<&str> = items(before, "/spec_drift")
        .filter_map(Value::as_str)
        .collect();
    if rolled_out && !templated.is_empty() {
        for (name, image) in &declared {
            let Some(expected) = templated.get(name) else {
                continue;
            };
            if expected != image {
                let message = format!("{name} runs image {image}, the template says {expected}");
                if !reported.contains(name) {
                    out.events.push(RuntimeEvent {
                        container_id: external_id.clone(),
                        kind: "spec_drift".into(),
                        severity: "medium".into(),
                        summary: format!("{pod_name} drifted from its template: {message}"),
                        details: json!({
                            "container": name,
                            "pod_image": image,
                            "template_image": expected,
                        }),
                    });
                }
                out.spec_drift.push((name.to_string(), message));
            }
        }
    }
    for name in declared.keys() {
        if !out.containers.iter().any(|c| c == name) {
            out.containers.push(name.to_string());
        }
    }
    out.image_drift.sort();
    out.spec_drift.sort();

    out.state = json!({
        "ephemeral": ephemeral,
        "restarts": restarts,
        "image_drift": out.image_drift.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "spec_drift": out.spec_drift.iter().map(|(c, _)| c).collect::<Vec<_>>(),
    });
    out
}

/// Observes the Pods of these workloads (their instances were just written) and records what
/// changed: events, findings opened and resolved, the new observations.
pub async fn observe(
    conn: &mut PgConnection,
    source_id: i64,
    workloads: &[(&WorkloadKey, &MappedWorkload)],
    settings: &Settings,
) -> Result<(), sqlx::Error> {
    let pods: Vec<(&MappedWorkload, &crate::inventory::InstanceRecord)> = workloads
        .iter()
        .flat_map(|(_, m)| m.instances.iter().map(move |i| (*m, i)))
        .collect();
    if pods.is_empty() {
        return Ok(());
    }
    let external_ids: Vec<String> = pods.iter().map(|(_, i)| i.external_id.clone()).collect();
    let rows = sqlx::query!(
        r#"select i.id, i.workload_id, i.external_id, o.state as "state?"
           from instances i left join runtime_observations o on o.instance_id = i.id
           where i.source_id = $1 and i.external_id = any($2) and i.removed_at is null"#,
        source_id,
        &external_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let stored: HashMap<&str, (i64, i64, Option<Value>)> = rows
        .iter()
        .map(|r| {
            (
                r.external_id.as_str(),
                (r.id, r.workload_id, r.state.clone()),
            )
        })
        .collect();

    let mut events = Vec::new();
    let mut findings = Vec::new();
    let mut resolve_image = Vec::new();
    let mut resolve_spec = Vec::new();
    let mut states: Vec<(i64, Value)> = Vec::new();
    for (mapped, instance) in pods {
        let Some((instance_id, workload_id, previous)) = stored.get(instance.external_id.as_str())
        else {
            continue;
        };
        let object = mapped.posture_object.as_ref();
        let template = object.and_then(template_spec);
        let rolled_out = object.is_some_and(|o| {
            mapping::rolled_out(o.get("kind").and_then(Value::as_str).unwrap_or(""), o)
        });
        let seen = observe_pod(&instance.raw, template, rolled_out, previous.as_ref());
        if previous.as_ref() != Some(&seen.state) {
            states.push((*instance_id, seen.state.clone()));
        }
        for (check, drift, resolve) in [
            (
                CheckId::RunImageDrift,
                &seen.image_drift,
                &mut resolve_image,
            ),
            (CheckId::RunSpecDrift, &seen.spec_drift, &mut resolve_spec),
        ] {
            for container in &seen.containers {
                match drift.iter().find(|(c, _)| c == container) {
                    Some((_, message)) => findings.push(OpenFinding {
                        workload_id: *workload_id,
                        container: container.clone(),
                        check,
                        severity: check.meta().severity,
                        message: message.clone(),
                        evidence: json!([{
                            "pointer": format!("/pods/{}/{}/status", instance.workload.namespace,
                                               instance.name),
                            "raw": container,
                            "normalized": message,
                        }]),
                    }),
                    None => resolve.push((*workload_id, container.clone())),
                }
            }
        }
        events.extend(seen.events);
    }
    if !states.is_empty() {
        let ids: Vec<i64> = states.iter().map(|(id, _)| *id).collect();
        let values: Vec<Value> = states.into_iter().map(|(_, s)| s).collect();
        sqlx::query!(
            r#"insert into runtime_observations (instance_id, state)
               select * from unnest($1::int8[], $2::jsonb[])
               on conflict (instance_id) do update set state = excluded.state, updated_at = now()"#,
            &ids,
            &values
        )
        .execute(&mut *conn)
        .await?;
    }
    runtime::record_events(conn, source_id, &events, settings).await?;
    runtime::open_findings(conn, &findings).await?;
    runtime::resolve_findings(conn, CheckId::RunImageDrift, &resolve_image).await?;
    runtime::resolve_findings(conn, CheckId::RunSpecDrift, &resolve_spec).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(restarts: i64, waiting: Option<&str>, image_id: &str) -> Value {
        json!({
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "containers": [{"name": "web", "image": "registry.example/web@sha256:aaa"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox",
                                         "command": ["sh"], "targetContainerName": "web",
                                         "securityContext": {"privileged": true}}]
            },
            "status": {"containerStatuses": [{
                "name": "web", "restartCount": restarts, "imageID": image_id,
                "state": waiting.map(|r| json!({"waiting": {"reason": r}})).unwrap_or(json!({"running": {}}))
            }]}
        })
    }

    #[test]
    fn a_debug_container_is_reported_once_and_restarts_when_the_count_rises() {
        let first = observe_pod(&pod(0, None, "sha256:aaa"), None, false, None);
        let kinds: Vec<&str> = first.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["ephemeral_container"]);
        assert_eq!(first.events[0].severity, "high");
        let again = observe_pod(&pod(2, None, "sha256:aaa"), None, false, Some(&first.state));
        let kinds: Vec<&str> = again.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["restart"]);
        assert_eq!(again.events[0].details["delta"], 2);
        let quiet = observe_pod(&pod(2, None, "sha256:aaa"), None, false, Some(&again.state));
        assert!(quiet.events.is_empty());
    }

    #[test]
    fn a_crash_loop_on_first_sight_is_a_restart_and_a_wrong_digest_is_image_drift() {
        let seen = observe_pod(
            &pod(
                7,
                Some("CrashLoopBackOff"),
                "docker-pullable://registry.example/web@sha256:bbb",
            ),
            None,
            false,
            None,
        );
        let restart = seen.events.iter().find(|e| e.kind == "restart").unwrap();
        assert_eq!(restart.details["crash_loop"], true);
        assert_eq!(seen.image_drift.len(), 1);
        assert!(seen.events.iter().any(|e| e.kind == "image_drift"));
        // Reported once.
        let again = observe_pod(
            &pod(7, Some("CrashLoopBackOff"), "sha256:bbb"),
            None,
            false,
            Some(&seen.state),
        );
        assert!(again.events.iter().all(|e| e.kind != "image_drift"));
        assert_eq!(again.image_drift.len(), 1);
    }

    #[test]
    fn a_pod_whose_image_differs_from_a_rolled_out_template_drifted() {
        let template = json!({"containers": [{"name": "web", "image": "registry.example/web:2"}]});
        let seen = observe_pod(&pod(0, None, "sha256:aaa"), Some(&template), true, None);
        assert_eq!(seen.spec_drift.len(), 1);
        let rolling = observe_pod(&pod(0, None, "sha256:aaa"), Some(&template), false, None);
        assert!(
            rolling.spec_drift.is_empty(),
            "a rollout in progress is not drift"
        );
    }
}
