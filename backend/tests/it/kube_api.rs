//! A small Kubernetes API server for tests and the benchmark: real Kubernetes JSON for LIST
//! (`limit` / `continue`, `resourceVersion`) and chunked WATCH (ADDED, MODIFIED, DELETED,
//! BOOKMARK, and an in-stream `410 Gone`), so the real `kube` client and watchers run unchanged.
//! The objects are changed from the test; each change gets the next resource version and is
//! sent to the open watches. One object can be read (GET), patched (PATCH with a JSON merge
//! patch), created (POST: 201, or 409 `AlreadyExists`) and deleted (DELETE; 404 `NotFound`),
//! and a namespace's objects listed with a `labelSelector`, as the incident driver does; these
//! requests are recorded ([`FakeCluster::calls`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// A resource the server serves: its plural, kind and apiVersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    pub plural: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
}

pub const RESOURCES: [Resource; 10] = [
    Resource {
        plural: "pods",
        kind: "Pod",
        api_version: "v1",
    },
    Resource {
        plural: "namespaces",
        kind: "Namespace",
        api_version: "v1",
    },
    Resource {
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        api_version: "v1",
    },
    Resource {
        plural: "replicasets",
        kind: "ReplicaSet",
        api_version: "apps/v1",
    },
    Resource {
        plural: "deployments",
        kind: "Deployment",
        api_version: "apps/v1",
    },
    Resource {
        plural: "statefulsets",
        kind: "StatefulSet",
        api_version: "apps/v1",
    },
    Resource {
        plural: "daemonsets",
        kind: "DaemonSet",
        api_version: "apps/v1",
    },
    Resource {
        plural: "jobs",
        kind: "Job",
        api_version: "batch/v1",
    },
    Resource {
        plural: "cronjobs",
        kind: "CronJob",
        api_version: "batch/v1",
    },
    Resource {
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
    },
];

fn resource_of_kind(kind: &str) -> Resource {
    *RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {kind}"))
}

type Key = (String, String);

#[derive(Debug, Clone)]
struct LoggedEvent {
    rv: u64,
    kind: &'static str,
    kind_type: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: HashMap<&'static str, BTreeMap<Key, Value>>,
    log: Vec<LoggedEvent>,
    /// Watches from an older resource version get `410 Gone`.
    compacted: u64,
    /// Most objects per LIST page, whatever the client asks.
    page_cap: usize,
    /// Requests served, by "LIST kind" / "WATCH kind".
    requests: BTreeMap<String, usize>,
    /// Kinds answered with `403 Forbidden`, as for an account without the rights.
    forbidden: Vec<&'static str>,
    /// Whether the watches asked for bookmarks.
    bookmarks_asked: bool,
    /// Every write request (PATCH, POST, DELETE) and every namespaced GET, in order.
    calls: Vec<Call>,
}

/// One request the server received besides LIST and WATCH of whole kinds.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    pub kind: &'static str,
    pub namespace: String,
    /// The object's name (`""` for a create or a namespaced LIST).
    pub name: String,
    /// The `Content-Type` of a PATCH (`application/merge-patch+json`, …).
    pub content_type: String,
    pub body: Value,
    /// The status code answered.
    pub status: u16,
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Changed,
    Expire,
}

/// The fake cluster: its objects and the server serving them.
#[derive(Clone)]
pub struct FakeCluster {
    store: Arc<Mutex<Store>>,
    signals: broadcast::Sender<Signal>,
    pub addr: std::net::SocketAddr,
}

fn key_of(object: &Value) -> Key {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl FakeCluster {
    /// Starts the server on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        Self::start_with_page_cap(2).await
    }

    pub async fn start_with_page_cap(page_cap: usize) -> Self {
        let (signals, _) = broadcast::channel(1024);
        let store = Arc::new(Mutex::new(Store {
            rv: 100,
            page_cap,
            ..Store::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cluster = Self {
            store,
            signals,
            addr,
        };
        let app = Router::new().fallback(serve).with_state(cluster.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        cluster
    }

    /// Writes a kubeconfig whose only context (`name`) points at this server.
    pub fn kubeconfig(&self, dir: &Path, name: &str) -> PathBuf {
        write_kubeconfig(dir, name, &format!("http://{}", self.addr))
    }

    fn stamp(store: &mut Store, object: &mut Value) -> (&'static str, bool) {
        let kind = object["kind"].as_str().expect("objects name their kind");
        let resource = resource_of_kind(kind);
        store.rv += 1;
        let rv = store.rv;
        let key = key_of(object);
        let existing = store
            .objects
            .get(resource.kind)
            .and_then(|m| m.get(&key))
            .cloned();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if !meta.contains_key("uid") {
            let uid = existing
                .as_ref()
                .and_then(|e| e["metadata"]["uid"].as_str().map(String::from))
                .unwrap_or_else(|| {
                    store.uid += 1;
                    format!("00000000-0000-0000-0000-{:012}", store.uid)
                });
            meta.insert("uid".into(), json!(uid));
        }
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-11-28T10:00:00Z"));
        object["apiVersion"] = json!(resource.api_version);
        store
            .objects
            .entry(resource.kind)
            .or_default()
            .insert(key, object.clone());
        (resource.kind, existing.is_none())
    }

    /// Creates or replaces objects; watches see ADDED / MODIFIED.
    pub fn apply_all(&self, objects: impl IntoIterator<Item = Value>) {
        {
            let mut store = self.store.lock().unwrap();
            for mut object in objects {
                let (kind, added) = Self::stamp(&mut store, &mut object);
                let rv = store.rv;
                store.log.push(LoggedEvent {
                    rv,
                    kind,
                    kind_type: if added { "ADDED" } else { "MODIFIED" },
                    object,
                });
            }
        }
        let _ = self.signals.send(Signal::Changed);
    }

    pub fn apply(&self, object: Value) {
        self.apply_all([object]);
    }

    /// Deletes an object; watches see DELETED.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        {
            let mut store = self.store.lock().unwrap();
            let resource = resource_of_kind(kind);
            let removed = store
                .objects
                .get_mut(resource.kind)
                .and_then(|m| m.remove(&(namespace.to_string(), name.to_string())));
            let Some(mut object) = removed else { return };
            store.rv += 1;
            let rv = store.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            store.log.push(LoggedEvent {
                rv,
                kind: resource.kind,
                kind_type: "DELETED",
                object,
            });
        }
        let _ = self.signals.send(Signal::Changed);
    }

    /// Changes objects *without* telling the watches, as if their events were compacted away,
    /// then ends every open watch with an in-stream `410 Gone`: only a relist sees the changes.
    pub fn change_behind_watches(&self, apply: Vec<Value>, delete: &[(&str, &str, &str)]) {
        {
            let mut store = self.store.lock().unwrap();
            for mut object in apply {
                Self::stamp(&mut store, &mut object);
            }
            for (kind, namespace, name) in delete {
                let resource = resource_of_kind(kind);
                if let Some(m) = store.objects.get_mut(resource.kind) {
                    m.remove(&(namespace.to_string(), name.to_string()));
                }
                store.rv += 1;
            }
            store.compacted = store.rv;
            store.log.clear();
        }
        let _ = self.signals.send(Signal::Expire);
    }

    /// Answers `403 Forbidden` for a kind from now on.
    pub fn forbid(&self, kind: &str) {
        let resource = resource_of_kind(kind);
        self.store.lock().unwrap().forbidden.push(resource.kind);
    }

    /// Whether the watches asked for bookmarks (`allowWatchBookmarks=true`).
    pub fn bookmarks_asked(&self) -> bool {
        self.store.lock().unwrap().bookmarks_asked
    }

    /// The object as stored now.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_of_kind(kind);
        self.store
            .lock()
            .unwrap()
            .objects
            .get(resource.kind)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// The write requests (and namespaced GETs) received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.store.lock().unwrap().calls.clone()
    }

    /// How many requests of a kind were served ("LIST Pod", "WATCH Deployment").
    pub fn requests(&self, what: &str) -> usize {
        self.store
            .lock()
            .unwrap()
            .requests
            .get(what)
            .copied()
            .unwrap_or(0)
    }
}

/// A kubeconfig with one context pointing at `server`.
pub fn write_kubeconfig(dir: &Path, name: &str, server: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{name}"));
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {name}\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\nusers:\n- name: {name}\n  user:\n    token: test-token\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What a path addresses: a resource, in one namespace or all, one object or the collection.
#[derive(Debug, Clone)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", namespace, plural] => (Some(namespace.to_string()), *plural, None),
        ["namespaces", namespace, plural, name] => {
            (Some(namespace.to_string()), *plural, Some(name.to_string()))
        }
        _ => return None,
    };
    let resource = RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.api_version == api_version)
        .copied()?;
    Some(Target {
        resource,
        namespace,
        name,
    })
}

/// Whether `labels` match a label selector of `key`, `!key`, `key=value` or `key!=value`
/// terms separated by commas.
fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .all(|term| {
            if let Some((key, value)) = term.split_once("!=") {
                labels[key.trim()].as_str() != Some(value.trim())
            } else if let Some((key, value)) = term.split_once('=') {
                let key = key.trim().trim_end_matches('=');
                labels[key].as_str() == Some(value.trim())
            } else if let Some(key) = term.strip_prefix('!') {
                labels.get(key.trim()).is_none()
            } else {
                labels.get(term).is_some()
            }
        })
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn answer(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn serve(
    State(cluster): State<FakeCluster>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(target) = parse_path(uri.path()) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        )
            .into_response();
    };
    let resource = target.resource;
    if cluster
        .store
        .lock()
        .unwrap()
        .forbidden
        .contains(&resource.kind)
    {
        let message = format!(
            "{} is forbidden: User \"system:serviceaccount:harbormaster:harbormaster\" cannot list resource \"{}\"",
            resource.plural, resource.plural
        );
        return (
            StatusCode::FORBIDDEN,
            axum::Json(status(403, "Forbidden", &message)),
        )
            .into_response();
    }
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if method == Method::GET && target.name.is_none() && target.namespace.is_none() {
        return if watching {
            watch(cluster, resource, &query)
        } else {
            list(&cluster, resource, &query)
        };
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let response = write(&cluster, &method, &target, &content_type, &body, &query);
    cluster.store.lock().unwrap().calls.push(Call {
        method: method.to_string(),
        kind: resource.kind,
        namespace,
        name,
        content_type,
        body,
        status: response.0.as_u16(),
    });
    answer(response.0, response.1)
}

fn not_found(resource: Resource, name: &str) -> (StatusCode, Value) {
    let message = format!(
        "{}.{} \"{name}\" not found",
        resource.plural,
        group_of(resource)
    );
    let mut body = status(404, "NotFound", &message);
    body["details"] = json!({"name": name, "kind": resource.plural});
    (StatusCode::NOT_FOUND, body)
}

fn group_of(resource: Resource) -> &'static str {
    resource
        .api_version
        .split_once('/')
        .map_or("", |(group, _)| group)
}

/// GET of one object or of a namespace's objects, PATCH, POST and DELETE, as the API server
/// answers them (the created, patched or deleted object; `Status` objects for errors). Changes
/// reach the open watches.
fn write(
    cluster: &FakeCluster,
    method: &Method,
    target: &Target,
    content_type: &str,
    body: &Value,
    query: &HashMap<String, String>,
) -> (StatusCode, Value) {
    let resource = target.resource;
    let namespace = target.namespace.clone().unwrap_or_default();
    let stored = |name: &str| {
        cluster
            .store
            .lock()
            .unwrap()
            .objects
            .get(resource.kind)
            .and_then(|m| m.get(&(namespace.clone(), name.to_string())))
            .cloned()
    };
    match (method.as_str(), &target.name) {
        ("GET", None) => {
            let selector = query.get("labelSelector").cloned().unwrap_or_default();
            let store = cluster.store.lock().unwrap();
            let items: Vec<Value> = store
                .objects
                .get(resource.kind)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|o| o["metadata"]["namespace"].as_str() == Some(namespace.as_str()))
                .filter(|o| selector_matches(&selector, &o["metadata"]["labels"]))
                .cloned()
                .collect();
            let list = json!({"kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": store.rv.to_string()}, "items": items});
            (StatusCode::OK, list)
        }
        ("GET", Some(name)) => match stored(name) {
            Some(object) => (StatusCode::OK, object),
            None => not_found(resource, name),
        },
        ("PATCH", Some(name)) => {
            let Some(mut object) = stored(name) else {
                return not_found(resource, name);
            };
            if !content_type.starts_with("application/merge-patch+json")
                && !content_type.starts_with("application/strategic-merge-patch+json")
            {
                let message = format!("the patch type {content_type} is not served here");
                return (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    status(415, "UnsupportedMediaType", &message),
                );
            }
            merge_patch(&mut object, body);
            cluster.apply(object);
            (StatusCode::OK, stored(name).expect("just written"))
        }
        ("POST", None) => {
            let mut object = body.clone();
            let Some(name) = object["metadata"]["name"].as_str().map(String::from) else {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    status(422, "Invalid", "metadata.name: Required value"),
                );
            };
            if stored(&name).is_some() {
                let message = format!(
                    "{}.{} \"{name}\" already exists",
                    resource.plural,
                    group_of(resource)
                );
                let mut body = status(409, "AlreadyExists", &message);
                body["details"] = json!({"name": name, "kind": resource.plural});
                return (StatusCode::CONFLICT, body);
            }
            object["kind"] = json!(resource.kind);
            object["metadata"]["namespace"] = json!(namespace);
            cluster.apply(object);
            (StatusCode::CREATED, stored(&name).expect("just written"))
        }
        ("DELETE", Some(name)) => match stored(name) {
            Some(object) => {
                cluster.delete(resource.kind, &namespace, name);
                (StatusCode::OK, object)
            }
            None => not_found(resource, name),
        },
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            status(405, "MethodNotAllowed", "the method is not served here"),
        ),
    }
}

fn list(cluster: &FakeCluster, resource: Resource, query: &HashMap<String, String>) -> Response {
    let mut store = cluster.store.lock().unwrap();
    *store
        .requests
        .entry(format!("LIST {}", resource.kind))
        .or_default() += 1;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX)
        .min(store.page_cap);
    let offset = query
        .get("continue")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    let empty = BTreeMap::new();
    let objects = store.objects.get(resource.kind).unwrap_or(&empty);
    let items: Vec<&Value> = objects.values().skip(offset).take(limit).collect();
    let next = offset + items.len();
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if next < objects.len() {
        metadata["continue"] = json!(next.to_string());
        metadata["remainingItemCount"] = json!(objects.len() - next);
    }
    let body = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version,
        "metadata": metadata,
        "items": items,
    });
    axum::Json(body).into_response()
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn watch(cluster: FakeCluster, resource: Resource, query: &HashMap<String, String>) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let mut signals = cluster.signals.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    {
        let mut store = cluster.store.lock().unwrap();
        *store
            .requests
            .entry(format!("WATCH {}", resource.kind))
            .or_default() += 1;
        store.bookmarks_asked |= bookmarks;
    }
    tokio::spawn(async move {
        let mut sent = from;
        let mut expired = false;
        loop {
            let (lines, rv) = {
                let store = cluster.store.lock().unwrap();
                if expired || sent < store.compacted {
                    let message = format!("too old resource version: {sent} ({})", store.compacted);
                    (
                        vec![line(
                            &json!({"type": "ERROR", "object": status(410, "Expired", &message)}),
                        )],
                        None,
                    )
                } else {
                    let lines: Vec<Bytes> = store
                        .log
                        .iter()
                        .filter(|e| e.rv > sent && e.kind == resource.kind)
                        .map(|e| line(&json!({"type": e.kind_type, "object": e.object})))
                        .collect();
                    (lines, Some(store.rv))
                }
            };
            for text in lines {
                if tx.send(text).await.is_err() {
                    return;
                }
            }
            let Some(rv) = rv else { return };
            sent = rv;
            if bookmarks {
                let bookmark = json!({"type": "BOOKMARK", "object": {"kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": rv.to_string()}}});
                if tx.send(line(&bookmark)).await.is_err() {
                    return;
                }
            }
            match signals.recv().await {
                Ok(Signal::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(Signal::Expire) => expired = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Builders for the objects tests and the benchmark serve.
pub mod objects {
    use serde_json::{json, Value};

    pub fn namespace(name: &str) -> Value {
        json!({"kind": "Namespace", "metadata": {"name": name}})
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app", "image": image,
                   "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}})
    }

    /// How far a Deployment's controller got: desired replicas, the spec's generation, the
    /// generation it observed, and its updated / total replica counts.
    #[derive(Debug, Clone, Copy)]
    pub struct Rollout {
        pub replicas: i64,
        pub generation: i64,
        pub observed: i64,
        pub updated: i64,
        pub total: i64,
    }

    impl Rollout {
        /// The controller caught up: every desired replica runs the newest template.
        pub fn settled(replicas: i64, generation: i64) -> Self {
            Self {
                replicas,
                generation,
                observed: generation,
                updated: replicas,
                total: replicas,
            }
        }
    }

    /// A Deployment in the given rollout state.
    pub fn deployment(namespace: &str, name: &str, image: &str, rollout: Rollout) -> Value {
        let Rollout {
            replicas,
            generation,
            observed,
            updated,
            total,
        } = rollout;
        json!({"kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace, "generation": generation,
                            "labels": {"app": name}},
               "spec": {"replicas": replicas, "template": template(image)},
               "status": {"observedGeneration": observed, "replicas": total,
                          "updatedReplicas": updated, "readyReplicas": total}})
    }

    pub fn replica_set(
        namespace: &str,
        name: &str,
        deployment: &str,
        revision: u32,
        image: &str,
    ) -> Value {
        json!({"kind": "ReplicaSet",
               "metadata": {"name": name, "namespace": namespace,
                            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment, "uid": format!("uid-{deployment}"),
                                                 "controller": true}]},
               "spec": {"template": template(image)}})
    }

    /// A ready, running Pod owned by `owner_kind/owner`, labelled like the templates.
    pub fn pod(
        namespace: &str,
        name: &str,
        owner_kind: &str,
        owner: &str,
        image: &str,
        digest: &str,
    ) -> Value {
        json!({"kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"},
                            "ownerReferences": [{"apiVersion": "v1", "kind": owner_kind,
                                                 "name": owner, "uid": format!("uid-{owner}"),
                                                 "controller": true}]},
               "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": image,
                   "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]},
               "status": {"phase": "Running", "startTime": "2026-11-28T10:00:00Z",
                          "conditions": [{"type": "Ready", "status": "True"}],
                          "containerStatuses": [{"name": "app", "image": image, "ready": true,
                              "restartCount": 0, "imageID": format!("docker.io/{image}@{digest}")}]}})
    }

    pub fn cron_job(namespace: &str, name: &str, image: &str) -> Value {
        json!({"kind": "CronJob", "metadata": {"name": name, "namespace": namespace},
               "spec": {"schedule": "*/5 * * * *",
                        "jobTemplate": {"spec": {"template": template(image)}}}})
    }

    pub fn job(namespace: &str, name: &str, cron_job: Option<&str>, image: &str) -> Value {
        let mut job = json!({"kind": "Job", "metadata": {"name": name, "namespace": namespace},
                             "spec": {"template": template(image)}});
        if let Some(owner) = cron_job {
            job["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1",
                "kind": "CronJob", "name": owner, "uid": format!("uid-{owner}"), "controller": true}]);
        }
        job
    }
}
