//! Pure mapping from Docker Engine documents (`docker inspect` of containers and images) to the
//! inventory records, and from a workload's live instances to the lifecycle observation.
//!
//! No I/O here: the engine client and the live tests feed these functions real documents, the
//! unit tests captured ones from `backend/tests/data/docker/`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::inventory::{redact, ImageRecord, InstanceRecord, WorkloadKey, WorkloadRecord};
use crate::lifecycle::Observation;

/// The workload kind of a Compose service (project + service labels).
pub const KIND_COMPOSE_SERVICE: &str = "ComposeService";
/// The workload kind of a container outside Compose.
pub const KIND_CONTAINER: &str = "Container";
/// Compose's labels.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";

/// The `HostConfig` fields the posture checks read (CHECKS.md, `HC.X`).
const HOST_CONFIG_FIELDS: &[&str] = &[
    "Privileged",
    "CapAdd",
    "CapDrop",
    "SecurityOpt",
    "ReadonlyRootfs",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "CgroupParent",
    "Binds",
    "Mounts",
    "PortBindings",
    "PublishAllPorts",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "MaskedPaths",
    "ReadonlyPaths",
    "Sysctls",
    "RestartPolicy",
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "PidsLimit",
    "Ulimits",
    "GroupAdd",
    "Runtime",
    "Isolation",
    "StorageOpt",
];

fn text<'a>(doc: &'a Value, pointer: &str) -> Option<&'a str> {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn object_or_empty(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => json!({}),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
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
}

/// Drops `null` members (the engine writes them, bollard omits them), so both spellings of a
/// document map to the same spec and hash. Empty arrays stay: `[]` and `null` differ for checks.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A time from the engine, `None` for its zero time (`0001-01-01T00:00:00Z`).
pub fn engine_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
}

/// The digest an image is known by: its first repository digest (`repo@sha256:…` →
/// `sha256:…`) when it has one, else its local id.
pub fn image_digest(repo_digests: &[String], image_id: &str) -> String {
    repo_digests
        .iter()
        .find_map(|reference| reference.split_once('@').map(|(_, digest)| digest))
        .filter(|digest| !digest.is_empty())
        .unwrap_or(image_id)
        .to_string()
}

/// Which workload a container belongs to: its Compose service, else its own name.
pub fn workload_key(inspect: &Value) -> WorkloadKey {
    let project = text(
        inspect,
        &format!("/Config/Labels/{}", pointer_escape(LABEL_PROJECT)),
    );
    let service = text(
        inspect,
        &format!("/Config/Labels/{}", pointer_escape(LABEL_SERVICE)),
    );
    match (project, service) {
        (Some(project), Some(service)) => WorkloadKey::new(project, KIND_COMPOSE_SERVICE, service),
        _ => WorkloadKey::new("", KIND_CONTAINER, container_name(inspect)),
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The container's name without the leading '/'.
pub fn container_name(inspect: &Value) -> String {
    text(inspect, "/Name")
        .map(|name| name.trim_start_matches('/').to_string())
        .or_else(|| text(inspect, "/Id").map(|id| id.chars().take(12).collect()))
        .unwrap_or_default()
}

/// The normalized spec the posture checks read: the inspect fields of CHECKS.md under their
/// engine names (`HostConfig.X`, `.Mounts`, `.Config.User`, …), env *names* only, plus
/// `SpecHash` (see [`spec_hash`]) and the creation time. [`map_container`] adds `RawHash`
/// ([`raw_hash`]).
pub fn normalized_spec(inspect: &Value) -> Value {
    let host = inspect.get("HostConfig");
    let mut host_config = Map::new();
    for field in HOST_CONFIG_FIELDS {
        if let Some(value) = host.and_then(|h| h.get(*field)).filter(|v| !v.is_null()) {
            host_config.insert((*field).to_string(), without_nulls(value));
        }
    }
    let env_names: Vec<String> = strings(inspect.pointer("/Config/Env"))
        .into_iter()
        .map(|entry| {
            entry
                .split_once('=')
                .map_or(entry.as_str(), |(name, _)| name)
                .to_string()
        })
        .collect();
    let mut config = Map::new();
    config.insert(
        "User".into(),
        Value::String(text(inspect, "/Config/User").unwrap_or("").into()),
    );
    config.insert("EnvNames".into(), json!(env_names));
    for field in ["Healthcheck", "ExposedPorts", "Image"] {
        if let Some(value) = inspect
            .pointer(&format!("/Config/{field}"))
            .filter(|v| !v.is_null())
        {
            config.insert(field.into(), without_nulls(value));
        }
    }
    let mounts: Vec<Value> = inspect
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|mounts| mounts.iter().map(without_nulls).collect())
        .unwrap_or_default();
    let networks: Vec<String> = inspect
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|networks| networks.keys().cloned().collect())
        .unwrap_or_default();
    let mut spec = json!({
        "Config": Value::Object(config),
        "HostConfig": Value::Object(host_config),
        "AppArmorProfile": text(inspect, "/AppArmorProfile").unwrap_or(""),
        "ProcessLabel": text(inspect, "/ProcessLabel").unwrap_or(""),
        "MountLabel": text(inspect, "/MountLabel").unwrap_or(""),
        "Mounts": mounts,
        "NetworkSettings": {
            "Ports": without_nulls(&object_or_empty(inspect.pointer("/NetworkSettings/Ports"))),
            "Networks": networks,
        },
        "RestartCount": inspect.get("RestartCount").cloned().unwrap_or(json!(0)),
        "Image": text(inspect, "/Image"),
    });
    if let Some(health) = text(inspect, "/State/Health/Status") {
        spec["State"] = json!({"Health": {"Status": health}});
    }
    if let Some(created) = text(inspect, "/Created").and_then(engine_time) {
        spec["Created"] = Value::String(created.to_rfc3339_opts(SecondsFormat::Nanos, true));
    }
    spec["SpecHash"] = Value::String(spec_hash(&spec));
    spec
}

/// A stable hash of the declared, security-relevant configuration in a normalized spec: the
/// user, env names, health check, exposed ports, every `HostConfig` field and the mounts as
/// declared (type, destination, mode, and the source of bind mounts — not the generated names of
/// anonymous volumes). The image, names, runtime state and published addresses are left out, so
/// a container re-created with the same configuration keeps its hash.
pub fn spec_hash(spec: &Value) -> String {
    let config = spec.get("Config").cloned().unwrap_or(json!({}));
    let mut config = config.as_object().cloned().unwrap_or_default();
    config.remove("Image");
    let mounts: Vec<Value> = spec
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|mounts| {
            mounts
                .iter()
                .map(|mount| {
                    let kind = mount.get("Type").and_then(Value::as_str).unwrap_or("");
                    json!({
                        "Type": kind,
                        "Destination": mount.get("Destination"),
                        "RW": mount.get("RW"),
                        "Propagation": mount.get("Propagation"),
                        "Source": if kind == "bind" { mount.get("Source").cloned() } else { None },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut mounts = mounts;
    mounts.sort_by_key(|m| m.to_string());
    let declared = json!({
        "Config": Value::Object(config),
        "HostConfig": spec.get("HostConfig"),
        "AppArmorProfile": spec.get("AppArmorProfile"),
        "Mounts": mounts,
    });
    // serde_json maps keep their keys sorted, so the text is canonical.
    let digest = Sha256::digest(declared.to_string().as_bytes());
    format!("sha256:{}", hex::encode(digest))
}

/// A hash of the stored (redacted) document: an instance whose document did not change since
/// it was stored is not written again.
pub fn raw_hash(raw: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(raw.to_string().as_bytes()))
    )
}

/// One container mapped: its workload and itself.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedContainer {
    pub workload: WorkloadRecord,
    pub instance: InstanceRecord,
}

/// Maps a container inspect document. `digests` maps image ids to the digest their image is
/// known by ([`image_digest`]); an image not in it is known by its id. The document itself
/// becomes the stored evidence, with every env value redacted.
pub fn map_container(inspect: Value, digests: &HashMap<String, String>) -> MappedContainer {
    let key = workload_key(&inspect);
    let labels = object_or_empty(inspect.pointer("/Config/Labels"));
    let image_id = text(&inspect, "/Image").map(String::from);
    let image_ref = text(&inspect, "/Config/Image").map(String::from);
    let image_digest = image_id
        .as_ref()
        .map(|id| digests.get(id).cloned().unwrap_or_else(|| id.clone()));
    let spec = normalized_spec(&inspect);
    let running = inspect
        .pointer("/State/Running")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let state = text(&inspect, "/State/Status")
        .unwrap_or(if running { "running" } else { "unknown" })
        .to_string();
    let started_at = if running {
        text(&inspect, "/State/StartedAt").and_then(engine_time)
    } else {
        None
    };
    let external_id = text(&inspect, "/Id").unwrap_or_default().to_string();
    let name = container_name(&inspect);
    let restart_count = inspect
        .get("RestartCount")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0);
    let mut raw = inspect;
    redact::docker_inspect(&mut raw);
    let mut spec = spec;
    spec["RawHash"] = Value::String(raw_hash(&raw));
    let workload = WorkloadRecord {
        key: key.clone(),
        uid: None,
        labels: labels.clone(),
        annotations: json!({}),
        declared: Some(spec.clone()),
        images: image_ref.iter().cloned().collect(),
    };
    let instance = InstanceRecord {
        workload: key,
        external_id,
        name,
        state,
        running,
        image_ref,
        image_digest,
        node: None,
        labels,
        restart_count,
        spec: Some(spec),
        raw,
        started_at,
    };
    MappedContainer { workload, instance }
}

/// Documents mapped per thread at least; smaller batches are mapped on the calling thread.
const PARALLEL_CHUNK: usize = 512;

/// Maps containers (on several threads for a large batch), ordered so that for each workload the
/// newest container's record comes last (the store keeps the last record of a key). Documents
/// without an id are skipped.
pub fn map_containers(
    inspects: Vec<Value>,
    digests: &HashMap<String, String>,
) -> Vec<MappedContainer> {
    let map_one = |doc: Value| {
        let created = text(&doc, "/Created")
            .and_then(engine_time)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
            .unwrap_or_default();
        (created, map_container(doc, digests))
    };
    let inspects: Vec<Value> = inspects
        .into_iter()
        .filter(|doc| text(doc, "/Id").is_some())
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut mapped: Vec<(String, MappedContainer)> =
        if threads < 2 || inspects.len() < 2 * PARALLEL_CHUNK {
            inspects.into_iter().map(map_one).collect()
        } else {
            let per_thread = inspects.len().div_ceil(threads).max(PARALLEL_CHUNK);
            let mut chunks: Vec<Vec<Value>> = Vec::new();
            let mut rest = inspects.into_iter().peekable();
            while rest.peek().is_some() {
                chunks.push(rest.by_ref().take(per_thread).collect());
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| {
                        scope.spawn(move || chunk.into_iter().map(map_one).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|handle| handle.join().expect("mapping does not panic"))
                    .collect()
            })
        };
    mapped.sort_by(|a, b| a.0.cmp(&b.0));
    mapped.into_iter().map(|(_, m)| m).collect()
}

/// Maps an image inspect document: digest by [`image_digest`], references = tags + repository
/// digests, and of its config only the user, exposed ports, labels and env names.
pub fn map_image(inspect: &Value) -> Option<ImageRecord> {
    let id = text(inspect, "/Id")?.to_string();
    let repo_digests: Vec<String> = strings(inspect.get("RepoDigests"))
        .into_iter()
        .filter(|r| !r.starts_with("<none>"))
        .collect();
    let tags: Vec<String> = strings(inspect.get("RepoTags"))
        .into_iter()
        .filter(|r| !r.starts_with("<none>"))
        .collect();
    let digest = image_digest(&repo_digests, &id);
    let env_names: Vec<String> = strings(inspect.pointer("/Config/Env"))
        .into_iter()
        .map(|entry| {
            entry
                .split_once('=')
                .map_or(entry.as_str(), |(name, _)| name)
                .to_string()
        })
        .collect();
    let config = json!({
        "User": text(inspect, "/Config/User").unwrap_or(""),
        "ExposedPorts": object_or_empty(inspect.pointer("/Config/ExposedPorts")),
        "Labels": object_or_empty(inspect.pointer("/Config/Labels")),
        "EnvNames": env_names,
    });
    Some(ImageRecord {
        digest,
        image_id: Some(id),
        created_at: text(inspect, "/Created").and_then(engine_time),
        size_bytes: inspect.get("Size").and_then(Value::as_i64),
        os: text(inspect, "/Os").map(String::from),
        architecture: text(inspect, "/Architecture").map(String::from),
        config,
        references: tags.into_iter().chain(repo_digests).collect(),
    })
}

/// What the store knows of one live instance, for [`observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInstance {
    pub running: bool,
    pub digest: Option<String>,
    pub spec_hash: Option<String>,
    /// RFC 3339 with nanoseconds, so that text order is time order.
    pub created: Option<String>,
}

/// A workload's observation from its live instances: the newest container defines the current
/// version (its digest and spec hash); the version is rolled out when every live instance runs
/// that version and one of them is running — so an update lasts until the new version runs.
/// `None` when no instance is left: the workload waits for the retire grace period instead.
pub fn observe(instances: &[LiveInstance], reason: Option<String>) -> Option<Observation> {
    let newest = instances.iter().max_by(|a, b| a.created.cmp(&b.created))?;
    let same_version =
        |i: &LiveInstance| i.digest == newest.digest && i.spec_hash == newest.spec_hash;
    let running = instances.iter().filter(|i| i.running).count() as u32;
    Some(Observation {
        present: true,
        running,
        digests: newest.digest.clone().into_iter().collect(),
        spec_hash: newest.spec_hash.clone(),
        rolled_out: instances.iter().all(same_version) && instances.iter().any(|i| i.running),
        reason,
    })
}

/// Counts by kind for the source status.
pub fn counts(instances: &[InstanceRecord], images: usize) -> Value {
    let workloads: BTreeSet<&WorkloadKey> = instances.iter().map(|i| &i.workload).collect();
    json!({
        "containers": instances.len(),
        "running": instances.iter().filter(|i| i.running).count(),
        "workloads": workloads.len(),
        "images": images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Value {
        let path = format!("{}/tests/data/docker/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_compose_container_belongs_to_its_service_and_a_plain_one_to_its_name() {
        let compose = load("container-compose-running.json");
        assert_eq!(
            workload_key(&compose),
            WorkloadKey::new("shop", KIND_COMPOSE_SERVICE, "web")
        );
        let plain = load("container-privileged-created.json");
        assert_eq!(
            workload_key(&plain),
            WorkloadKey::new("", KIND_CONTAINER, "hm-test-docker-capture2")
        );
    }

    #[test]
    fn a_mapped_container_keeps_env_names_but_never_env_values() {
        let doc = load("container-compose-running.json");
        let image_id = doc["Image"].as_str().unwrap().to_string();
        let digests = HashMap::from([(image_id, "sha256:repo".to_string())]);
        let mapped = map_container(doc.clone(), &digests);
        let instance = &mapped.instance;
        assert!(instance.running);
        assert_eq!(instance.state, "running");
        assert_eq!(instance.name, "hm-test-docker-capture");
        assert_eq!(instance.image_digest.as_deref(), Some("sha256:repo"));
        assert_eq!(
            instance.image_ref.as_deref(),
            Some("harbormaster-test/busybox:1")
        );
        assert!(instance.started_at.is_some());
        let everything = format!("{:?}", mapped);
        assert!(!everything.contains("hunter2"), "an env value leaked");
        let spec = instance.spec.as_ref().unwrap();
        assert_eq!(
            spec["Config"]["EnvNames"],
            json!(["DB_PASSWORD", "MODE", "PATH"])
        );
        assert_eq!(spec["HostConfig"]["CapAdd"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(spec["HostConfig"]["ReadonlyRootfs"], json!(true));
        assert_eq!(
            spec["HostConfig"]["SecurityOpt"],
            json!(["no-new-privileges"])
        );
        assert_eq!(spec["Mounts"][0]["Source"], json!("/tmp"));
        assert_eq!(
            spec["NetworkSettings"]["Ports"]["80/tcp"][0]["HostIp"],
            json!("127.0.0.1")
        );
        assert_eq!(
            instance.labels["note"],
            json!("<script>alert(1)</script>"),
            "labels are stored verbatim"
        );
    }

    #[test]
    fn a_created_privileged_container_is_not_running_and_says_so() {
        let doc = load("container-privileged-created.json");
        let mapped = map_container(doc.clone(), &HashMap::new());
        assert!(!mapped.instance.running);
        assert_eq!(mapped.instance.state, "created");
        assert_eq!(mapped.instance.started_at, None);
        assert_eq!(
            mapped.instance.image_digest.as_deref(),
            doc["Image"].as_str(),
            "an image without a repository digest is known by its id"
        );
        let spec = mapped.instance.spec.unwrap();
        assert_eq!(spec["HostConfig"]["Privileged"], json!(true));
    }

    #[test]
    fn the_spec_hash_ignores_identity_and_state_but_not_configuration() {
        let doc = load("container-compose-running.json");
        let hash = |doc: &Value| {
            normalized_spec(doc)["SpecHash"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let mut recreated = doc.clone();
        recreated["Id"] = json!("f".repeat(64));
        recreated["Name"] = json!("/other");
        recreated["Created"] = json!("2030-01-01T00:00:00Z");
        recreated["State"]["Running"] = json!(false);
        recreated["Config"]["Image"] = json!("harbormaster-test/busybox:2");
        recreated["Config"]["Env"] = json!(["DB_PASSWORD=other", "MODE=dev", "PATH=/bin"]);
        recreated["NetworkSettings"]["Ports"] = Value::Null;
        assert_eq!(hash(&doc), hash(&recreated));

        let mut privileged = doc.clone();
        privileged["HostConfig"]["Privileged"] = json!(true);
        assert_ne!(hash(&doc), hash(&privileged));
        let mut root = doc.clone();
        root["Config"]["User"] = json!("1000");
        assert_ne!(hash(&doc), hash(&root));
    }

    #[test]
    fn null_and_absent_fields_map_to_the_same_spec() {
        let doc = load("container-privileged-created.json");
        let stripped = without_nulls(&doc);
        assert_eq!(normalized_spec(&doc), normalized_spec(&stripped));
    }

    #[test]
    fn an_image_is_known_by_its_repository_digest_else_its_id() {
        let local = load("image-local.json");
        let record = map_image(&local).unwrap();
        assert_eq!(record.digest, local["Id"].as_str().unwrap());
        assert_eq!(record.references, vec!["harbormaster-test/busybox:1"]);
        assert_eq!(record.os.as_deref(), Some("linux"));
        assert!(record.size_bytes.unwrap() > 1_000_000);

        let mut pulled = local.clone();
        pulled["RepoDigests"] = json!(["registry.example/busybox@sha256:abc"]);
        let record = map_image(&pulled).unwrap();
        assert_eq!(record.digest, "sha256:abc");
        assert_eq!(
            record.references,
            vec![
                "harbormaster-test/busybox:1",
                "registry.example/busybox@sha256:abc"
            ]
        );
        assert_eq!(image_digest(&[], "sha256:id"), "sha256:id");
    }

    fn live(running: bool, digest: &str, created: &str) -> LiveInstance {
        LiveInstance {
            running,
            digest: Some(digest.into()),
            spec_hash: Some("h".into()),
            created: Some(created.into()),
        }
    }

    #[test]
    fn the_newest_instance_is_the_current_version_and_an_update_lasts_until_it_runs() {
        let old = live(true, "sha256:a", "2026-01-01T00:00:00.000000000Z");
        let new_created = live(false, "sha256:b", "2026-01-02T00:00:00.000000000Z");
        let observation = observe(&[old.clone(), new_created.clone()], None).unwrap();
        assert_eq!(observation.digests, vec!["sha256:b"]);
        assert_eq!(observation.running, 1);
        assert!(!observation.rolled_out, "the old version still runs");

        let observation = observe(std::slice::from_ref(&new_created), None).unwrap();
        assert!(!observation.rolled_out, "the new version does not run yet");
        let new_running = LiveInstance {
            running: true,
            ..new_created
        };
        assert!(observe(&[new_running], None).unwrap().rolled_out);
        assert!(observe(&[], None).is_none());
    }
}
