//! Quarantining Kubernetes pods: label the pod `harbormaster.io/quarantine=<incident>` and make
//! sure the namespace has the deny-all NetworkPolicy `harbormaster-quarantine` (pods with that
//! label; policy types Ingress and Egress; no rules: nothing in, nothing out). The pod keeps
//! running. Other NetworkPolicies that select the pod are recorded with a warning: policies add
//! up, and an allow rule of another policy still lets traffic through.
//!
//! The pre-state is whether the pod had the label, and with which value. Restore puts exactly
//! that back (only while the label is still this incident's), then deletes the policy once no
//! pod of the namespace carries the label any more, and verifies both by reading them back.
//!
//! Clients are built as the collector builds them (the kubeconfig context, or the in-cluster
//! account), one per source, on first use.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{DriverError, Evidence, IsolationDriver, Saved, Target};
use crate::collect::kubernetes::watch::{connect, Target as ClusterTarget};
use crate::inventory::redact;
use crate::posture;

/// The label that marks a quarantined pod; its value is the incident id.
pub const QUARANTINE_LABEL: &str = "harbormaster.io/quarantine";
/// The deny-all NetworkPolicy selecting the quarantined pods of a namespace.
pub const POLICY_NAME: &str = "harbormaster-quarantine";
/// The driver's method word, as saved with the pre-state.
pub const METHOD: &str = "quarantine";
/// Log lines kept as evidence, per container.
const LOG_LINES: i64 = 500;

/// A pod's state before the quarantine: what restore puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreState {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    /// The quarantine label's value before, `None` when the pod did not have it.
    pub label: Option<String>,
}

/// The policy the quarantine needs in `namespace`.
pub fn quarantine_policy(namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(POLICY_NAME.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "harbormaster".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "harbormaster.io/purpose".to_string(),
                format!("denies all traffic to and from pods labelled {QUARANTINE_LABEL}"),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: QUARANTINE_LABEL.to_string(),
                    operator: "Exists".to_string(),
                    values: None,
                }]),
                match_labels: None,
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: None,
            egress: None,
        }),
    }
}

/// Whether a policy is the quarantine policy as it must be: selecting the label, both policy
/// types, no rule.
fn policy_denies_all(policy: &NetworkPolicy) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    let selects_label = spec.pod_selector.as_ref().is_some_and(|selector| {
        selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && selector.match_expressions.as_deref().is_some_and(|e| {
                e.len() == 1 && e[0].key == QUARANTINE_LABEL && e[0].operator == "Exists"
            })
    });
    let types = spec.policy_types.clone().unwrap_or_default();
    selects_label
        && types.iter().any(|t| t == "Ingress")
        && types.iter().any(|t| t == "Egress")
        && spec.ingress.as_ref().is_none_or(Vec::is_empty)
        && spec.egress.as_ref().is_none_or(Vec::is_empty)
}

fn engine(err: kube::Error) -> DriverError {
    DriverError::Engine(err.to_string())
}

fn label_of(pod: &Pod) -> Option<String> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(QUARANTINE_LABEL))
        .cloned()
}

/// The other NetworkPolicies of the namespace that select a pod with these labels:
/// (name, "Ingress"/"Egress" types, whether it has allow rules).
fn other_policies(policies: &[NetworkPolicy], labels: &BTreeMap<String, String>) -> Vec<Value> {
    let pairs: Vec<(Box<str>, Box<str>)> = labels
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect();
    policies
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some(POLICY_NAME))
        .filter_map(|policy| {
            let value = serde_json::to_value(policy).ok()?;
            let reduced = posture::NetworkPolicy::from_object(&value)?;
            if !reduced.selects(&pairs) {
                return None;
            }
            let spec = policy.spec.as_ref();
            let allows_in = spec
                .and_then(|s| s.ingress.as_ref())
                .is_some_and(|rules| !rules.is_empty());
            let allows_out = spec
                .and_then(|s| s.egress.as_ref())
                .is_some_and(|rules| !rules.is_empty());
            Some(json!({
                "name": reduced.name,
                "ingress": reduced.ingress,
                "egress": reduced.egress,
                "allows_ingress": allows_in,
                "allows_egress": allows_out,
            }))
        })
        .collect()
}

/// Kubernetes actions, one client per source.
pub struct KubernetesDriver {
    targets: Vec<ClusterTarget>,
    clients: Mutex<HashMap<String, Client>>,
}

impl KubernetesDriver {
    /// A driver for the configured clusters (the collector's targets); clients are built on
    /// first use.
    pub fn new(targets: Vec<ClusterTarget>) -> Self {
        Self {
            targets,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A driver with a ready client for one source.
    pub fn with_client(source_name: &str, client: Client) -> Self {
        Self {
            targets: Vec::new(),
            clients: Mutex::new(HashMap::from([(source_name.to_string(), client)])),
        }
    }

    async fn client(&self, source: &str) -> Result<Client, DriverError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(source) {
            return Ok(client.clone());
        }
        let target = self
            .targets
            .iter()
            .find(|t| t.name() == source)
            .ok_or_else(|| {
                DriverError::Engine(format!(
                    "the cluster {source} is not configured (HARBORMASTER_KUBECONFIG / HARBORMASTER_KUBE_CONTEXTS)"
                ))
            })?;
        let (client, _) = connect(target)
            .await
            .map_err(|err| DriverError::Engine(err.to_string()))?;
        clients.insert(source.to_string(), client.clone());
        Ok(client)
    }

    async fn apis(&self, target: &Target) -> Result<(Api<Pod>, Api<NetworkPolicy>), DriverError> {
        let client = self.client(&target.source_name).await?;
        let namespace = if target.namespace.is_empty() {
            "default"
        } else {
            &target.namespace
        };
        Ok((
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client, namespace),
        ))
    }

    async fn do_snapshot(&self, target: &Target) -> Result<Saved, DriverError> {
        let (pods, _) = self.apis(target).await?;
        let pod = pods
            .get_opt(&target.name)
            .await
            .map_err(engine)?
            .ok_or_else(|| DriverError::Engine(format!("pod {} is gone", target.name)))?;
        let pre = PreState {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod: target.name.clone(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            label: label_of(&pod),
        };
        let mut document = serde_json::to_value(&pod).unwrap_or(Value::Null);
        redact::kubernetes_object(&mut document);
        Ok(Saved {
            method: METHOD.to_string(),
            pre_state: serde_json::to_value(&pre).unwrap_or(Value::Null),
            document,
        })
    }

    /// Creates the quarantine policy unless it is there; returns whether it was created.
    async fn ensure_policy(
        &self,
        policies: &Api<NetworkPolicy>,
        namespace: &str,
    ) -> Result<bool, DriverError> {
        if policies
            .get_opt(POLICY_NAME)
            .await
            .map_err(engine)?
            .is_some()
        {
            return Ok(false);
        }
        match policies
            .create(&PostParams::default(), &quarantine_policy(namespace))
            .await
        {
            Ok(_) => Ok(true),
            // Another action created it meanwhile.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(engine(err)),
        }
    }

    async fn do_isolate(&self, target: &Target) -> Result<Value, DriverError> {
        let (pods, policies) = self.apis(target).await?;
        let namespace = pods_namespace(target);
        let value = target.incident_id.to_string();
        // The policy first: a labelled pod is never without it.
        let created = self.ensure_policy(&policies, &namespace).await?;
        let patch = json!({"metadata": {"labels": {QUARANTINE_LABEL: value}}});
        pods.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(engine)?;

        // Verify by reading both back.
        let pod = pods
            .get_opt(&target.name)
            .await
            .map_err(engine)?
            .ok_or_else(|| DriverError::Verify(format!("pod {} is gone", target.name)))?;
        if label_of(&pod).as_deref() != Some(value.as_str()) {
            return Err(DriverError::Verify(format!(
                "pod {} does not carry {QUARANTINE_LABEL}={value}",
                target.name
            )));
        }
        let policy = policies.get_opt(POLICY_NAME).await.map_err(engine)?;
        match &policy {
            None => {
                return Err(DriverError::Verify(format!(
                    "the NetworkPolicy {POLICY_NAME} is missing in {namespace}"
                )))
            }
            Some(policy) if !policy_denies_all(policy) => {
                return Err(DriverError::Verify(format!(
                    "the NetworkPolicy {POLICY_NAME} in {namespace} was changed: it no longer denies all traffic of the quarantined pods"
                )))
            }
            Some(_) => {}
        }
        let all = policies
            .list(&ListParams::default())
            .await
            .map_err(engine)?
            .items;
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let others = other_policies(&all, &labels);
        let warning = (!others.is_empty()).then(|| {
            let names: Vec<&str> = others.iter().filter_map(|o| o["name"].as_str()).collect();
            format!(
                "pod {}: other NetworkPolicies still select it ({}); policies add up, so any traffic they allow still reaches it",
                target.name,
                names.join(", ")
            )
        });
        Ok(json!({
            "pod": target.name,
            "namespace": namespace,
            "label": {QUARANTINE_LABEL: value},
            "policy": {"name": POLICY_NAME, "created": created, "present": true},
            "other_policies": others,
            "warning": warning,
        }))
    }

    async fn do_restore(&self, target: &Target, saved: &Saved) -> Result<Value, DriverError> {
        let pre: PreState = serde_json::from_value(saved.pre_state.clone()).map_err(|err| {
            DriverError::Engine(format!("the saved pre-state is unreadable: {err}"))
        })?;
        let (pods, policies) = self.apis(target).await?;
        let namespace = pods_namespace(target);
        let ours = target.incident_id.to_string();
        let current = pods.get_opt(&target.name).await.map_err(engine)?;
        let mut label = json!("absent");
        match &current {
            // The pod is gone: nothing to put back on it.
            None => label = json!("pod gone"),
            Some(pod) => {
                let now = label_of(pod);
                if now.as_deref() == Some(ours.as_str()) {
                    let value = pre.label.clone().map_or(Value::Null, Value::String);
                    let patch = json!({"metadata": {"labels": {QUARANTINE_LABEL: value}}});
                    pods.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(engine)?;
                }
                // Verify: the label as it was (or, if another incident took the pod over since,
                // left to it).
                let after = pods
                    .get_opt(&target.name)
                    .await
                    .map_err(engine)?
                    .and_then(|pod| label_of(&pod));
                if now.as_deref() == Some(ours.as_str()) && after != pre.label {
                    return Err(DriverError::Verify(format!(
                        "pod {} has {QUARANTINE_LABEL}={after:?}, expected {:?}",
                        target.name, pre.label
                    )));
                }
                if let Some(value) = after {
                    label = json!(value);
                }
            }
        }

        // The policy goes once no pod of the namespace needs it.
        let still = pods
            .list(&ListParams::default().labels(QUARANTINE_LABEL))
            .await
            .map_err(engine)?
            .items;
        let needed: Vec<String> = still
            .iter()
            .filter_map(|pod| pod.metadata.name.clone())
            .collect();
        let mut deleted = false;
        if needed.is_empty() {
            match policies.delete(POLICY_NAME, &DeleteParams::default()).await {
                Ok(_) => deleted = true,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(engine(err)),
            }
        }
        let present = policies
            .get_opt(POLICY_NAME)
            .await
            .map_err(engine)?
            .is_some();
        if needed.is_empty() == present {
            return Err(DriverError::Verify(if present {
                format!("the NetworkPolicy {POLICY_NAME} is still in {namespace}")
            } else {
                format!(
                    "the NetworkPolicy {POLICY_NAME} is missing in {namespace} while {} are quarantined",
                    needed.join(", ")
                )
            }));
        }
        Ok(json!({
            "pod": target.name,
            "namespace": namespace,
            "label": label,
            "policy": {"name": POLICY_NAME, "deleted": deleted, "present": present,
                       "kept_for": needed},
        }))
    }

    async fn do_evidence(&self, target: &Target) -> Vec<Evidence> {
        let (pods, _) = match self.apis(target).await {
            Ok(apis) => apis,
            Err(err) => {
                return vec![Evidence {
                    kind: "logs",
                    content: json!({"error": err.to_string()}),
                }]
            }
        };
        let containers: Vec<String> = match pods.get_opt(&target.name).await {
            Ok(Some(pod)) => pod
                .spec
                .map(|spec| spec.containers.into_iter().map(|c| c.name).collect())
                .unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(err) => {
                return vec![Evidence {
                    kind: "logs",
                    content: json!({"error": err.to_string()}),
                }]
            }
        };
        let mut logs = serde_json::Map::new();
        for container in containers {
            let params = LogParams {
                container: Some(container.clone()),
                tail_lines: Some(LOG_LINES),
                timestamps: true,
                ..LogParams::default()
            };
            let value = match pods.logs(&target.name, &params).await {
                Ok(text) => json!({"lines": text.lines().collect::<Vec<_>>()}),
                Err(err) => json!({"error": err.to_string()}),
            };
            logs.insert(container, value);
        }
        vec![Evidence {
            kind: "logs",
            content: json!({"containers": logs}),
        }]
    }
}

fn pods_namespace(target: &Target) -> String {
    if target.namespace.is_empty() {
        "default".to_string()
    } else {
        target.namespace.clone()
    }
}

impl IsolationDriver for KubernetesDriver {
    fn snapshot<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Saved, DriverError>> {
        Box::pin(self.do_snapshot(target))
    }

    fn isolate<'a>(
        &'a self,
        target: &'a Target,
        saved: &'a Saved,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        let _ = saved;
        Box::pin(self.do_isolate(target))
    }

    fn evidence<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Vec<Evidence>> {
        Box::pin(self.do_evidence(target))
    }

    fn restore<'a>(
        &'a self,
        target: &'a Target,
        saved: &'a Saved,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        Box::pin(self.do_restore(target, saved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_policy_denies_everything_for_the_label() {
        let policy = quarantine_policy("shop");
        assert!(policy_denies_all(&policy));
        let value = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            value["spec"]["podSelector"]["matchExpressions"][0],
            json!({"key": QUARANTINE_LABEL, "operator": "Exists"})
        );
        assert_eq!(value["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let mut opened = policy.clone();
        opened.spec.as_mut().unwrap().ingress = Some(vec![Default::default()]);
        assert!(!policy_denies_all(&opened));
    }

    #[test]
    fn other_policies_selecting_the_pod_are_named_with_their_rules() {
        let allow: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-web", "namespace": "shop"},
            "spec": {"podSelector": {"matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["web", "api"]}]},
                     "ingress": [{}]}
        }))
        .unwrap();
        let db: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db-only", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}}
        }))
        .unwrap();
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let others = other_policies(&[allow, db, quarantine_policy("shop")], &labels);
        assert_eq!(others.len(), 1, "{others:?}");
        assert_eq!(others[0]["name"], "allow-web");
        assert_eq!(others[0]["allows_ingress"], true);
    }
}
