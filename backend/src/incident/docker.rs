//! Isolating Docker containers: save every network attachment (network, aliases without the
//! short id the engine adds, static IPv4 / IPv6, links), then disconnect the container from every
//! network, its processes still running. A container on `host`, `none` or `container:`
//! networking cannot be disconnected: it is paused instead. Restore reconnects with exactly the
//! saved endpoint settings and unpauses, then verifies.

use std::collections::HashMap;

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{DriverError, Evidence, IsolationDriver, Saved, Target};
use crate::config::{parse_docker_endpoint, DockerTls};
use crate::inventory::redact;

/// Log lines kept as evidence.
pub const LOG_LINES: usize = 500;

/// One saved network attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub link_local_ips: Vec<String>,
    pub links: Vec<String>,
}

/// A container's state before isolation: what restore puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreState {
    pub container_id: String,
    pub network_mode: String,
    pub running: bool,
    pub paused: bool,
    pub networks: Vec<Attachment>,
}

impl PreState {
    /// `pause` when the networking cannot be disconnected (host, none, another container's).
    pub fn method(&self) -> &'static str {
        let mode = self.network_mode.as_str();
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            "pause"
        } else {
            "disconnect"
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// The pre-state read from an inspect document. Aliases the engine added itself (the short and
/// full container id) are left out: the engine adds them again on connect.
pub fn pre_state(inspect: &Value) -> PreState {
    let id = inspect["Id"].as_str().unwrap_or_default().to_string();
    let short = id.get(..12).unwrap_or(&id).to_string();
    let mut networks: Vec<Attachment> = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, endpoint)| {
                    let ipam = &endpoint["IPAMConfig"];
                    Attachment {
                        network: name.clone(),
                        aliases: strings(endpoint.get("Aliases"))
                            .into_iter()
                            .filter(|alias| *alias != short && *alias != id)
                            .collect(),
                        ipv4: non_empty(ipam.get("IPv4Address")),
                        ipv6: non_empty(ipam.get("IPv6Address")),
                        link_local_ips: strings(ipam.get("LinkLocalIPs")),
                        links: strings(endpoint.get("Links")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    PreState {
        container_id: id,
        network_mode: inspect["HostConfig"]["NetworkMode"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        running: inspect["State"]["Running"].as_bool().unwrap_or(false),
        paused: inspect["State"]["Paused"].as_bool().unwrap_or(false),
        networks,
    }
}

fn engine(err: bollard::errors::Error) -> DriverError {
    DriverError::Engine(err.to_string())
}

/// Docker actions, one client per engine (opened on first use, version negotiated).
pub struct DockerDriver {
    tls: Option<DockerTls>,
    clients: Mutex<HashMap<String, Docker>>,
}

impl DockerDriver {
    pub fn new(tls: Option<DockerTls>) -> Self {
        Self {
            tls,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, endpoint: &str) -> Result<Docker, DriverError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let parsed = parse_docker_endpoint(endpoint, self.tls.as_ref());
        let client = crate::collect::docker::connect(&parsed)
            .await
            .map_err(|err| DriverError::Engine(err.to_string()))?;
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    async fn inspect(&self, docker: &Docker, id: &str) -> Result<Value, DriverError> {
        let doc = docker.inspect_container(id, None).await.map_err(engine)?;
        serde_json::to_value(doc).map_err(|err| DriverError::Engine(err.to_string()))
    }

    async fn do_snapshot(&self, target: &Target) -> Result<Saved, DriverError> {
        let docker = self.client(&target.source_endpoint).await?;
        let mut doc = self.inspect(&docker, &target.external_id).await?;
        let pre = pre_state(&doc);
        redact::docker_inspect(&mut doc);
        Ok(Saved {
            method: pre.method().to_string(),
            pre_state: serde_json::to_value(&pre).expect("a pre-state serializes"),
            document: doc,
        })
    }

    async fn do_isolate(&self, target: &Target, saved: &Saved) -> Result<Value, DriverError> {
        let pre: PreState = serde_json::from_value(saved.pre_state.clone())
            .map_err(|err| DriverError::Engine(format!("unreadable pre-state: {err}")))?;
        let docker = self.client(&target.source_endpoint).await?;
        let id = pre.container_id.as_str();
        let now = self.inspect(&docker, id).await?;
        if pre.method() == "pause" {
            let state = &now["State"];
            if state["Running"].as_bool() == Some(true) && state["Paused"].as_bool() != Some(true) {
                docker.pause_container(id).await.map_err(engine)?;
            }
            let after = self.inspect(&docker, id).await?;
            let running = after["State"]["Running"].as_bool() == Some(true);
            let paused = after["State"]["Paused"].as_bool() == Some(true);
            if running && !paused {
                return Err(DriverError::Verify(format!(
                    "{} is still running unpaused",
                    target.name
                )));
            }
            return Ok(json!({"paused": paused, "running": running}));
        }
        // Every network attached now, not only the saved ones: isolation means none.
        let attached: Vec<String> = now["NetworkSettings"]["Networks"]
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        for network in &attached {
            let request = NetworkDisconnectRequest {
                container: id.to_string(),
                force: Some(true),
            };
            if let Err(err) = docker.disconnect_network(network, request).await {
                // Already gone (a resumed action) is fine; verification decides.
                tracing::debug!(%err, network, "disconnect failed");
            }
        }
        let after = self.inspect(&docker, id).await?;
        let left: Vec<String> = after["NetworkSettings"]["Networks"]
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        if !left.is_empty() {
            return Err(DriverError::Verify(format!(
                "{} is still attached to {}",
                target.name,
                left.join(", ")
            )));
        }
        Ok(json!({
            "networks_attached": left,
            "disconnected": attached,
            "running": after["State"]["Running"].as_bool().unwrap_or(false),
        }))
    }

    async fn do_restore(&self, target: &Target, saved: &Saved) -> Result<Value, DriverError> {
        let pre: PreState = serde_json::from_value(saved.pre_state.clone())
            .map_err(|err| DriverError::Engine(format!("unreadable pre-state: {err}")))?;
        let docker = self.client(&target.source_endpoint).await?;
        let id = pre.container_id.as_str();
        let now = self.inspect(&docker, id).await?;
        if pre.method() == "disconnect" {
            for attachment in &pre.networks {
                if !now["NetworkSettings"]["Networks"][&attachment.network].is_null() {
                    continue;
                }
                let ipam = (attachment.ipv4.is_some()
                    || attachment.ipv6.is_some()
                    || !attachment.link_local_ips.is_empty())
                .then(|| EndpointIpamConfig {
                    ipv4_address: attachment.ipv4.clone(),
                    ipv6_address: attachment.ipv6.clone(),
                    link_local_ips: (!attachment.link_local_ips.is_empty())
                        .then(|| attachment.link_local_ips.clone()),
                });
                let request = NetworkConnectRequest {
                    container: id.to_string(),
                    endpoint_config: Some(EndpointSettings {
                        ipam_config: ipam,
                        aliases: (!attachment.aliases.is_empty())
                            .then(|| attachment.aliases.clone()),
                        links: (!attachment.links.is_empty()).then(|| attachment.links.clone()),
                        ..Default::default()
                    }),
                };
                docker
                    .connect_network(&attachment.network, request)
                    .await
                    .map_err(|err| {
                        DriverError::Engine(format!(
                            "cannot reconnect to {}: {err}",
                            attachment.network
                        ))
                    })?;
            }
        }
        let state = &now["State"];
        if !pre.paused && state["Paused"].as_bool() == Some(true) {
            docker.unpause_container(id).await.map_err(engine)?;
        }
        let after = pre_state(&self.inspect(&docker, id).await?);
        let mut problems = Vec::new();
        if after.paused != pre.paused {
            problems.push(format!("paused is {} (was {})", after.paused, pre.paused));
        }
        for attachment in &pre.networks {
            match after
                .networks
                .iter()
                .find(|a| a.network == attachment.network)
            {
                None => problems.push(format!("not attached to {}", attachment.network)),
                Some(now) => {
                    let missing: Vec<&String> = attachment
                        .aliases
                        .iter()
                        .filter(|alias| !now.aliases.contains(alias))
                        .collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "aliases {missing:?} missing on {}",
                            attachment.network
                        ));
                    }
                    if now.ipv4 != attachment.ipv4 || now.ipv6 != attachment.ipv6 {
                        problems.push(format!("addresses differ on {}", attachment.network));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(DriverError::Verify(problems.join("; ")));
        }
        Ok(json!({"networks": after.networks, "paused": after.paused}))
    }

    async fn do_evidence(&self, target: &Target) -> Vec<Evidence> {
        let docker = match self.client(&target.source_endpoint).await {
            Ok(docker) => docker,
            Err(err) => {
                return vec![Evidence {
                    kind: "error",
                    content: json!({"error": err.to_string()}),
                }]
            }
        };
        let id = target.external_id.as_str();
        let failed = |err: bollard::errors::Error| json!({"error": err.to_string()});
        let processes = match docker.top_processes(id, None).await {
            Ok(top) => json!({"titles": top.titles, "processes": top.processes}),
            Err(err) => failed(err),
        };
        let diff = match docker.container_changes(id).await {
            Ok(changes) => json!(changes
                .unwrap_or_default()
                .into_iter()
                .map(|change| json!({"path": change.path, "kind": change.kind as u8}))
                .collect::<Vec<_>>()),
            Err(err) => failed(err),
        };
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&LOG_LINES.to_string())
            .build();
        let mut lines = Vec::new();
        let mut logs = docker.logs(id, Some(options));
        let mut log_error = None;
        while let Some(item) = logs.next().await {
            match item {
                Ok(output) => {
                    let text = String::from_utf8_lossy(&output.into_bytes()).into_owned();
                    lines.extend(text.lines().map(str::to_string));
                }
                Err(err) => {
                    log_error = Some(err.to_string());
                    break;
                }
            }
        }
        let skip = lines.len().saturating_sub(LOG_LINES);
        let lines: Vec<String> = lines.into_iter().skip(skip).collect();
        vec![
            Evidence {
                kind: "processes",
                content: processes,
            },
            Evidence {
                kind: "diff",
                content: diff,
            },
            Evidence {
                kind: "logs",
                content: json!({"lines": lines, "error": log_error}),
            },
        ]
    }
}

impl IsolationDriver for DockerDriver {
    fn snapshot<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Saved, DriverError>> {
        Box::pin(self.do_snapshot(target))
    }

    fn isolate<'a>(
        &'a self,
        target: &'a Target,
        saved: &'a Saved,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        Box::pin(self.do_isolate(target, saved))
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

    fn inspect(mode: &str) -> Value {
        json!({
            "Id": "0123456789abcdef0123456789abcdef",
            "HostConfig": {"NetworkMode": mode},
            "State": {"Running": true, "Paused": false},
            "NetworkSettings": {"Networks": {
                "app": {
                    "Aliases": ["db", "0123456789ab", "primary"],
                    "IPAMConfig": {"IPv4Address": "172.30.0.10", "IPv6Address": ""},
                    "Links": null
                },
                "bridge": {"Aliases": null, "IPAMConfig": null, "Links": ["web:web"]}
            }}
        })
    }

    #[test]
    fn the_pre_state_keeps_user_aliases_and_static_addresses_but_not_the_engines_short_id() {
        let pre = pre_state(&inspect("app"));
        assert_eq!(pre.method(), "disconnect");
        assert_eq!(pre.networks.len(), 2);
        let app = &pre.networks[0];
        assert_eq!(app.network, "app");
        assert_eq!(app.aliases, vec!["db", "primary"]);
        assert_eq!(app.ipv4.as_deref(), Some("172.30.0.10"));
        assert_eq!(app.ipv6, None);
        assert_eq!(pre.networks[1].links, vec!["web:web"]);
    }

    #[test]
    fn host_none_and_shared_networking_are_paused_instead_of_disconnected() {
        for mode in ["host", "none", "container:abc"] {
            assert_eq!(pre_state(&inspect(mode)).method(), "pause", "{mode}");
        }
        assert_eq!(pre_state(&inspect("default")).method(), "disconnect");
    }
}
