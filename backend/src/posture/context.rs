//! What a check may know beyond the workload itself: daemon facts (`docker info`), image
//! configs, Docker volumes, the namespace's NetworkPolicies, ServiceAccounts, RuntimeClasses,
//! kubelet facts and the operator's settings. Everything is optional: a check that needs a
//! missing fact says UNKNOWN.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::spec::WorkloadSpec;

/// The inputs of one evaluation besides the spec. `Context::default()` knows nothing.
#[derive(Clone, Copy, Default)]
pub struct Context<'a> {
    /// The Docker daemon's `/info` facts, for Docker workloads.
    pub daemon: Option<&'a DaemonFacts>,
    /// Image configs by image id (`sha256:…`), from `docker image inspect` or a registry.
    pub images: Option<&'a HashMap<String, ImageFacts>>,
    /// Docker volumes by name, from `docker volume inspect` (to see binds disguised as volumes).
    pub docker_volumes: Option<&'a HashMap<String, VolumeFacts>>,
    /// Other Docker containers of the same engine, to resolve `container:<id>` namespace modes.
    pub docker_peers: &'a [WorkloadSpec],
    /// The exec sessions of this container (`GET /exec/{id}/json` of its `ExecIDs`).
    pub exec_sessions: Option<&'a [ExecFacts]>,
    /// The command names of the container's processes (`GET /containers/{id}/top`).
    pub processes: Option<&'a [String]>,
    /// The NetworkPolicies of the workload's namespace (or all of them: they are filtered by
    /// namespace). `None` = not known; `Some(&[])` = known to be none.
    pub network_policies: Option<&'a [NetworkPolicy]>,
    /// ServiceAccounts (filtered by namespace and name). `None` = not readable.
    pub service_accounts: Option<&'a [ServiceAccountFacts]>,
    /// RuntimeClasses by name, to map `runtimeClassName` to a handler.
    pub runtime_classes: Option<&'a [RuntimeClassFacts]>,
    /// Facts about the nodes' kubelet and container runtime.
    pub kubelet: KubeletFacts,
    /// Image digests whose signature or attestation was verified. `None` = no verifier data.
    pub verified_digests: Option<&'a HashSet<String>>,
    /// The operator's settings; `None` = [`Settings::DEFAULT`].
    pub settings: Option<&'a Settings>,
}

impl<'a> Context<'a> {
    pub fn settings(&self) -> &'a Settings {
        self.settings.unwrap_or(&DEFAULT_SETTINGS)
    }
}

static DEFAULT_SETTINGS: Settings = Settings::DEFAULT;

/// The operator's choices that change check results.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Registries images may come from; `None` = no allow-list configured.
    pub allowed_registries: Option<Vec<String>>,
    /// Registries images must not come from (besides the deprecated ones).
    pub blocked_registries: Vec<String>,
    /// Tags treated as floating, in addition to [`FLOATING_TAGS`].
    pub floating_tags: Vec<String>,
    /// Approved Docker cgroup parents.
    pub approved_cgroup_parents: Vec<String>,
    /// Whether a missing CPU limit fails (`res.cpu_limit_missing`); many teams skip them.
    pub require_cpu_limits: bool,
    /// Opt-in checks (`user.low_uid_gid`).
    pub opt_in_low_uid_gid: bool,
    /// Host paths allowed read-only despite being sensitive (node exporters reading `/proc`).
    pub read_only_path_exceptions: Vec<String>,
}

impl Settings {
    pub const DEFAULT: Settings = Settings {
        allowed_registries: None,
        blocked_registries: Vec::new(),
        floating_tags: Vec::new(),
        approved_cgroup_parents: Vec::new(),
        require_cpu_limits: true,
        opt_in_low_uid_gid: false,
        read_only_path_exceptions: Vec::new(),
    };

    pub fn is_floating(&self, tag: &str) -> bool {
        FLOATING_TAGS.contains(&tag) || self.floating_tags.iter().any(|t| t == tag)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Tags that move: a reference with one of them (and no digest) is mutable.
pub const FLOATING_TAGS: &[&str] = &[
    "latest", "stable", "main", "master", "edge", "dev", "develop", "nightly", "canary", "lts",
    "current", "rolling", "release", "beta", "alpha", "unstable", "testing", "mainline",
];

/// Registries that are deprecated and must not be used.
pub const DEPRECATED_REGISTRIES: &[&str] = &["k8s.gcr.io"];

/// `docker info` facts that matter to checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonFacts {
    /// The seccomp profile named in `SecurityOptions` (`default`, `builtin`, `unconfined`, a
    /// path); `None` when the daemon lists no seccomp (kernel without seccomp).
    pub seccomp_profile: Option<String>,
    pub apparmor: bool,
    pub selinux: bool,
    pub userns: bool,
    pub rootless: bool,
    pub os_type: Option<String>,
    pub default_runtime: Option<String>,
    /// Whether the daemon enforces `no-new-privileges` by default (daemon.json). Not part of
    /// `/info`; set it when the daemon configuration is known.
    pub no_new_privileges: Option<bool>,
}

impl DaemonFacts {
    /// Reads the `GET /info` (`docker info --format '{{json .}}'`) document.
    pub fn from_info(info: &Value) -> Self {
        let mut facts = DaemonFacts {
            os_type: info.get("OSType").and_then(Value::as_str).map(String::from),
            default_runtime: info
                .get("DefaultRuntime")
                .and_then(Value::as_str)
                .map(String::from),
            ..DaemonFacts::default()
        };
        let options = info
            .get("SecurityOptions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for option in options.iter().filter_map(Value::as_str) {
            let mut name = None;
            let mut profile = None;
            for part in option.split(',') {
                match part.split_once('=') {
                    Some(("name", value)) => name = Some(value),
                    Some(("profile", value)) => profile = Some(value),
                    Some(_) => {}
                    None => name = name.or(Some(part)),
                }
            }
            match name.unwrap_or_default() {
                "seccomp" => {
                    facts.seccomp_profile = Some(profile.unwrap_or("default").to_string());
                }
                "apparmor" => facts.apparmor = true,
                "selinux" => facts.selinux = true,
                "userns" => facts.userns = true,
                "rootless" => facts.rootless = true,
                _ => {}
            }
        }
        facts
    }

    /// Whether `document` looks like a `docker info` document.
    pub fn looks_like_info(document: &Value) -> bool {
        document.get("SecurityOptions").is_some() && document.get("ServerVersion").is_some()
    }
}

/// What an image's own config says (`docker image inspect`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFacts {
    pub id: String,
    pub repo_digests: Vec<String>,
    /// `Config.User` of the image.
    pub user: Option<String>,
    /// Names of the image's `Config.Env` (values are not kept).
    pub env_names: Vec<String>,
}

impl ImageFacts {
    /// Reads one `docker image inspect` entry.
    pub fn from_inspect(image: &Value) -> Option<Self> {
        let id = image.get("Id")?.as_str()?.to_string();
        let config = image.get("Config");
        let strings = |value: Option<&Value>| -> Vec<String> {
            value
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Self {
            id,
            repo_digests: strings(image.get("RepoDigests")),
            user: config
                .and_then(|c| c.get("User"))
                .and_then(Value::as_str)
                .map(String::from),
            env_names: strings(config.and_then(|c| c.get("Env")))
                .into_iter()
                .map(|entry| entry.split('=').next().unwrap_or_default().to_string())
                .collect(),
        })
    }

    pub fn looks_like_image(document: &Value) -> bool {
        document.get("RepoTags").is_some()
            && document.get("RootFS").is_some()
            && document.get("HostConfig").is_none()
    }
}

/// A Docker volume's driver options (`docker volume inspect`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeFacts {
    pub name: String,
    pub driver: String,
    /// The host path a local-driver volume binds (`o=bind`, `device=/…`), if it is one,
    /// normalized (`pathnorm`).
    pub bind_device: Option<String>,
}

impl VolumeFacts {
    pub fn from_inspect(volume: &Value) -> Option<Self> {
        let name = volume.get("Name")?.as_str()?.to_string();
        let driver = volume
            .get("Driver")
            .and_then(Value::as_str)
            .unwrap_or("local")
            .to_string();
        let options = volume.get("Options").and_then(Value::as_object);
        let option = |key: &str| {
            options
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let is_bind = option("o").split(',').any(|o| o.trim() == "bind");
        let device = option("device");
        Some(Self {
            name,
            driver,
            bind_device: (is_bind && !device.is_empty()).then(|| super::spec::pathnorm(device)),
        })
    }

    pub fn looks_like_volume(document: &Value) -> bool {
        document.get("Mountpoint").is_some()
            && document.get("Driver").is_some()
            && document.get("Name").is_some()
    }
}

/// One exec session of a container (`GET /exec/{id}/json`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecFacts {
    pub id: String,
    pub privileged: bool,
    /// `ProcessConfig.user` (`""` = the container's user).
    pub user: String,
}

/// A NetworkPolicy, reduced to what selection needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub match_labels: Vec<(String, String)>,
    pub match_expressions: Vec<LabelExpression>,
    pub ingress: bool,
    pub egress: bool,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelExpression {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl NetworkPolicy {
    /// Reads a `networking.k8s.io/v1` NetworkPolicy object.
    pub fn from_object(object: &Value) -> Option<Self> {
        if object.get("kind")?.as_str()? != "NetworkPolicy" {
            return None;
        }
        let metadata = object.get("metadata");
        fn text(value: Option<&Value>) -> &str {
            value.and_then(Value::as_str).unwrap_or_default()
        }
        let spec = object.get("spec");
        let selector = spec.and_then(|s| s.get("podSelector"));
        let match_labels = selector
            .and_then(|s| s.get("matchLabels"))
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let match_expressions = selector
            .and_then(|s| s.get("matchExpressions"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|item| LabelExpression {
                        key: text(item.get("key")).to_string(),
                        operator: text(item.get("operator")).to_string(),
                        values: item
                            .get("values")
                            .and_then(Value::as_array)
                            .map(|values| {
                                values
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .map(String::from)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let types: Vec<&str> = spec
            .and_then(|s| s.get("policyTypes"))
            .and_then(Value::as_array)
            .map(|types| types.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let (ingress, egress) = if types.is_empty() {
            // Without policyTypes: Ingress always, Egress when egress rules are present.
            (true, spec.and_then(|s| s.get("egress")).is_some())
        } else {
            (types.contains(&"Ingress"), types.contains(&"Egress"))
        };
        Some(Self {
            namespace: metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
            name: text(metadata.and_then(|m| m.get("name"))).to_string(),
            match_labels,
            match_expressions,
            ingress,
            egress,
        })
    }

    /// Whether the policy's pod selector selects pods with `labels`.
    pub fn selects(&self, labels: &[(Box<str>, Box<str>)]) -> bool {
        let get = |key: &str| labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v);
        self.match_labels
            .iter()
            .all(|(key, value)| get(key) == Some(value.as_str()))
            && self.match_expressions.iter().all(|expression| {
                let value = get(&expression.key);
                match expression.operator.as_str() {
                    "In" => value.is_some_and(|v| expression.values.iter().any(|x| x == v)),
                    "NotIn" => value.is_none_or(|v| expression.values.iter().all(|x| x != v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// A ServiceAccount's automount setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAccountFacts {
    pub namespace: String,
    pub name: String,
    pub automount_token: Option<bool>,
}

impl ServiceAccountFacts {
    pub fn from_object(object: &Value) -> Option<Self> {
        if object.get("kind")?.as_str()? != "ServiceAccount" {
            return None;
        }
        let metadata = object.get("metadata")?;
        Some(Self {
            namespace: metadata
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
            name: metadata.get("name")?.as_str()?.to_string(),
            automount_token: object
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool),
        })
    }
}

/// A RuntimeClass and its handler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeClassFacts {
    pub name: String,
    pub handler: String,
}

impl RuntimeClassFacts {
    pub fn from_object(object: &Value) -> Option<Self> {
        if object.get("kind")?.as_str()? != "RuntimeClass" {
            return None;
        }
        Some(Self {
            name: object.get("metadata")?.get("name")?.as_str()?.to_string(),
            handler: object.get("handler")?.as_str()?.to_string(),
        })
    }
}

/// The container runtime family of the nodes, for the runtime's default capability set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeFamily {
    /// containerd, Docker (cri-dockerd): the default set includes NET_RAW.
    Containerd,
    /// CRI-O: the default set omits NET_RAW.
    CriO,
}

/// Facts about the kubelet and container runtime of the nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeletFacts {
    /// Whether the kubelet runs with `seccompDefault: true`.
    pub seccomp_default: Option<bool>,
    /// The kubelet's `podPidsLimit` (`-1` or `0` = unlimited).
    pub pod_pids_limit: Option<i64>,
    pub runtime: Option<RuntimeFamily>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daemon_security_options_are_parsed_in_both_spellings() {
        let facts = DaemonFacts::from_info(&json!({
            "ServerVersion": "20.10.24",
            "OSType": "linux",
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=apparmor", "name=userns"]
        }));
        assert_eq!(facts.seccomp_profile.as_deref(), Some("builtin"));
        assert!(facts.apparmor && facts.userns && !facts.selinux);
        let legacy = DaemonFacts::from_info(&json!({"SecurityOptions": ["seccomp", "selinux"]}));
        assert_eq!(legacy.seccomp_profile.as_deref(), Some("default"));
        assert!(legacy.selinux);
        let none = DaemonFacts::from_info(&json!({"SecurityOptions": []}));
        assert_eq!(none.seccomp_profile, None);
    }

    #[test]
    fn network_policy_selection_follows_match_labels_and_expressions() {
        let policy = NetworkPolicy::from_object(&json!({
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {
                "podSelector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
                }
            }
        }))
        .unwrap();
        assert!(policy.ingress && !policy.egress);
        let labels = |pairs: &[(&str, &str)]| -> Vec<(Box<str>, Box<str>)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        assert!(policy.selects(&labels(&[("app", "web")])));
        assert!(!policy.selects(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!policy.selects(&labels(&[("app", "api")])));
        let all = NetworkPolicy::from_object(&json!({
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }))
        .unwrap();
        assert!(all.selects(&[]) && all.egress && all.namespace == "default");
    }

    #[test]
    fn a_local_volume_with_bind_options_reveals_its_host_path() {
        let volume = VolumeFacts::from_inspect(&json!({
            "Name": "etc", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/etc/_data",
            "Options": {"type": "none", "o": "bind", "device": "/etc"}
        }))
        .unwrap();
        assert_eq!(volume.bind_device.as_deref(), Some("/etc"));
    }
}
