//! Incident response against this machine's real engine: containers and networks this test
//! creates (names `hm-test-incident-<random>…`, removed by a guard, also on failure) are isolated
//! and restored through the API and the action worker.

use std::time::{Duration, Instant};

use harbormaster::collect::docker::Collector;
use harbormaster::config::parse_docker_endpoint;
use harbormaster::incident::docker::DockerDriver;
use harbormaster::incident::store::{self, StepRequest};
use harbormaster::incident::workflow::Step;
use harbormaster::incident::{self, Drivers, IsolationDriver};
use harbormaster::inventory::sources;
use serde_json::{json, Value};
use sqlx::PgPool;

use harbormaster::auth::Role;

use crate::common::{html, live_docker_socket, texts, Browser, TestApp};

const IMAGE: &str = "harbormaster-test/busybox:1";
const LOCAL: &str = "unix:///var/run/docker.sock";

fn docker_try(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn docker(args: &[&str]) -> String {
    docker_try(args).unwrap_or_else(|err| panic!("docker {args:?} failed: {err}"))
}

/// Containers and a network under a unique prefix, removed on drop.
struct Lab {
    prefix: String,
    network: Option<String>,
    /// The static address's first three octets.
    subnet: String,
}

impl Lab {
    fn new() -> Self {
        let present = !docker(&["images", "-q", IMAGE]).is_empty();
        if !present {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-images.sh");
            let status = std::process::Command::new(script)
                .arg("build")
                .status()
                .expect("scripts/test-images.sh runs");
            assert!(status.success(), "scripts/test-images.sh build failed");
        }
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("hm-test-incident-{}", &random[..10]),
            network: None,
            subnet: String::new(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// A user-defined network with a subnet of its own (another free /24 when one overlaps).
    fn create_network(&mut self) -> String {
        let name = self.name("net");
        let mut last = String::new();
        for attempt in 0..20u32 {
            let octet = (uuid::Uuid::new_v4().as_u128() % 200) as u32 + 20 + attempt;
            let subnet = format!("10.231.{}", octet % 250);
            let cidr = format!("{subnet}.0/24");
            match docker_try(&["network", "create", "--subnet", &cidr, &name]) {
                Ok(_) => {
                    self.network = Some(name.clone());
                    self.subnet = subnet;
                    return name;
                }
                Err(err) => last = err,
            }
        }
        panic!("cannot create a test network: {last}");
    }

    fn run(&self, suffix: &str, args: &[&str], command: &[&str]) -> String {
        let name = self.name(suffix);
        let mut all = vec!["run", "-d", "--name", name.as_str()];
        all.extend_from_slice(args);
        all.push(IMAGE);
        all.extend_from_slice(command);
        docker(&all);
        name
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let filter = format!("name=^/{}", self.prefix);
        if let Ok(ids) = docker_try(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker_try(&["rm", "-f", id]);
            }
        }
        if let Some(network) = &self.network {
            let _ = docker_try(&["network", "rm", network]);
        }
    }
}

fn inspect(name: &str) -> Value {
    let text = docker(&["inspect", name]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

/// Whether `client` reaches `host` over HTTP (busybox nc with a 2 s timeout: this static
/// busybox's wget crashes).
fn reaches(client: &str, host: &str) -> bool {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80");
    docker_try(&["exec", client, "sh", "-c", &script])
        .map(|body| body.ends_with("\nok"))
        .unwrap_or(false)
}

/// Collects the local engine once so the test containers are workloads.
async fn collect(pool: &PgPool) {
    let source = sources::ensure(pool, "docker", LOCAL, LOCAL).await.unwrap();
    let collector = Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        Duration::from_secs(60),
    )
    .await
    .expect("the local engine answers");
    collector.resync_once().await.unwrap();
}

async fn workload_id(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("select id from workloads where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("workload {name} is collected: {err}"))
}

pub(crate) async fn post(
    app: &Browser,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = app.request(reqwest::Method::POST, path).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get(app: &Browser, path: &str) -> Value {
    app.get(path).await.json().await.unwrap()
}

/// Opens an incident for the workload (as alice) and queues its isolation, without a server.
pub(crate) async fn open_and_queue_isolation(
    pool: &PgPool,
    workload: i64,
) -> (store::Incident, store::Action) {
    let (opened, _) = store::open(
        pool,
        store::NewIncident {
            title: "crash test".into(),
            severity: "critical".into(),
            assignee: None,
            opened_by: "alice".into(),
            workload_ids: vec![workload],
            finding_ids: vec![],
            note: String::new(),
            idempotency_key: None,
        },
    )
    .await
    .unwrap();
    let (queued, _) = store::request_step(
        pool,
        opened.id,
        Step::Isolate,
        StepRequest {
            actor: "alice".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (opened, queued)
}

/// Waits until the worker finished the action; returns it.
pub(crate) async fn finished(app: &Browser, incident: i64, action: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let action = get(
            app,
            &format!("/api/v1/incidents/{incident}/actions/{action}"),
        )
        .await;
        let status = action["status"].as_str().unwrap_or_default().to_string();
        if status == "succeeded" || status == "failed" {
            return action;
        }
        assert!(
            Instant::now() < deadline,
            "the action did not finish: {action}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn open_incident(app: &Browser, workload: i64) -> i64 {
    let (status, incident) = post(
        app,
        "/api/v1/incidents",
        None,
        json!({"title": "beaconing to an unknown host", "severity": "high",
               "workload_ids": [workload]}),
    )
    .await;
    assert_eq!(status, 201, "{incident}");
    incident["id"].as_i64().unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn responder_isolates_a_container_and_restores_its_aliases_and_static_ip_across_a_restart(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let network = lab.create_network();
    let ip = format!("{}.10", lab.subnet);
    let target = lab.run(
        "target",
        &["--network", &network, "--ip", &ip, "--network-alias", "a1", "--network-alias", "a2"],
        &["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && echo server started && exec httpd -f -p 80 -h /www"],
    );
    let client = lab.run("client", &["--network", &network], &["sleep", "3600"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reaches(&client, "a1") {
        assert!(
            Instant::now() < deadline,
            "the target never answered by alias"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let aliases_before =
        inspect(&target)["NetworkSettings"]["Networks"][&network]["Aliases"].clone();
    collect(&pool).await;
    let workload = workload_id(&pool, &target).await;

    let server = TestApp::spawn(pool.clone()).await;
    let app = server.login_as(Role::Responder).await;
    let incident = open_incident(&app, workload).await;

    // A double click isolates once: the same key returns the same action.
    let (first_status, first) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/isolate"),
        Some("click-1"),
        json!({"note": "contain"}),
    )
    .await;
    let (second_status, second) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/isolate"),
        Some("click-1"),
        json!({}),
    )
    .await;
    assert_eq!(first_status, 202, "{first}");
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(first["id"], second["id"]);
    let action = finished(&app, incident, first["id"].as_i64().unwrap()).await;
    assert_eq!(action["status"], "succeeded", "{action}");

    assert!(
        !reaches(&client, "a1"),
        "the isolated container is unreachable"
    );
    assert!(
        !reaches(&client, &ip),
        "the isolated container is unreachable by address"
    );
    let isolated = inspect(&target);
    assert_eq!(
        isolated["State"]["Running"], true,
        "its processes keep running"
    );
    assert_eq!(isolated["NetworkSettings"]["Networks"], json!({}));

    let view = get(&app, &format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(view["state"], "isolated");
    let isolations = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "isolate")
        .count();
    assert_eq!(isolations, 1, "isolated once");
    let kinds: Vec<&str> = view["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["inspect", "processes", "diff", "logs"] {
        assert!(kinds.contains(&kind), "{kind} evidence in {kinds:?}");
    }
    let logs_id = view["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "logs")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let logs = get(
        &app,
        &format!("/api/v1/incidents/{incident}/evidence/{logs_id}"),
    )
    .await;
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line.as_str().unwrap().contains("server started")),
        "{logs}"
    );
    let saved = &view["targets"][0]["pre_state"]["networks"][0];
    assert_eq!(saved["network"], network.as_str());
    assert_eq!(saved["ipv4"], ip.as_str());
    assert_eq!(saved["aliases"], json!(["a1", "a2"]));

    // The server restarts between isolate and restore.
    server.stop().await.unwrap();
    let server = TestApp::spawn(pool.clone()).await;
    let app = server.login_as(Role::Responder).await;

    let (status, _) = post(&app, &format!("/api/v1/incidents/{incident}/analysis"), None, json!({"analysis_notes": "a reverse shell in /tmp", "attack_path": "exposed admin port → RCE"})).await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/fix"),
        None,
        json!({"fixed_digest": "sha256:0123"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, restore) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/restore"),
        Some("restore-1"),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{restore}");
    let action = finished(&app, incident, restore["id"].as_i64().unwrap()).await;
    assert_eq!(action["status"], "succeeded", "{action}");

    assert!(reaches(&client, "a1"), "reachable again by the first alias");
    assert!(
        reaches(&client, "a2"),
        "reachable again by the second alias"
    );
    assert!(reaches(&client, &ip), "reachable again at the same address");
    let restored = inspect(&target);
    let endpoint = &restored["NetworkSettings"]["Networks"][&network];
    assert_eq!(endpoint["IPAMConfig"]["IPv4Address"], ip.as_str());
    assert_eq!(endpoint["IPAddress"], ip.as_str());
    assert_eq!(endpoint["Aliases"], aliases_before, "the same aliases");

    let (status, _) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/close"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 201);
    let view = get(&app, &format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(view["state"], "closed");
    let timeline: Vec<&str> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        ["open", "isolate", "analysis", "fix", "restore", "close"]
    );
    assert_eq!(view["actions"][2]["actor"], app.name.as_str());
    let audited: Vec<String> = server
        .audit_rows()
        .await
        .into_iter()
        .map(|(action, _, _)| action)
        .collect();
    for action in [
        "incident.analysis",
        "incident.fix",
        "incident.restore",
        "incident.restore.finished",
        "incident.close",
    ] {
        assert!(
            audited.contains(&action.to_string()),
            "{action} audited in {audited:?}"
        );
    }
    server.assert_mutations_audited().await;
    server.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_host_network_container_is_paused_and_restoring_before_a_fix_needs_an_override(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let lab = Lab::new();
    let target = lab.run("host", &["--network", "host"], &["sleep", "3600"]);
    collect(&pool).await;
    let workload = workload_id(&pool, &target).await;
    let server = TestApp::spawn(pool.clone()).await;
    let app = server.login_as(Role::Responder).await;
    let incident = open_incident(&app, workload).await;

    // The console's isolate button says exactly what will happen before it acts.
    let page = app
        .get(&format!("/incidents/{incident}"))
        .await
        .text()
        .await
        .unwrap();
    let document = html(&page);
    let selector = scraper::Selector::parse("form[action$='/isolate']").unwrap();
    let form = document
        .select(&selector)
        .next()
        .expect("an isolate button");
    let confirm = form.value().attr("data-confirm").unwrap();
    assert!(
        confirm.contains(&target) && confirm.contains("PAUSED"),
        "{confirm}"
    );
    let key = format!("{}-page", uuid::Uuid::new_v4());
    for _ in 0..2 {
        let response = app
            .post_form(
                &format!("/incidents/{incident}/isolate"),
                &[("idempotency_key", &key)],
            )
            .await;
        assert_eq!(response.status().as_u16(), 303);
    }
    let view = get(&app, &format!("/api/v1/incidents/{incident}")).await;
    let isolate = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "isolate")
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(isolate.len(), 1, "a double submit isolates once");
    let action = finished(&app, incident, isolate[0]["id"].as_i64().unwrap()).await;
    assert_eq!(action["status"], "succeeded", "{action}");
    let page = app
        .get(&format!("/incidents/{incident}"))
        .await
        .text()
        .await
        .unwrap();
    let document = html(&page);
    assert_eq!(
        texts(&document, ".timeline .action-kind"),
        ["open", "isolate"]
    );
    assert_eq!(
        texts(&document, ".timeline .action-status"),
        ["succeeded", "succeeded"]
    );
    assert!(texts(&document, ".evidence-kind").contains(&"logs".to_string()));
    assert!(
        texts(&document, "form.step-form button")
            .iter()
            .all(|label| !label.contains("override")),
        "a responder is not offered the override"
    );
    assert_eq!(inspect(&target)["State"]["Paused"], true);
    let view = get(&app, &format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(view["targets"][0]["method"], "pause");

    let (status, refused) = post(
        &app,
        &format!("/api/v1/incidents/{incident}/restore"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("override"));

    let reason = json!({"override_reason": "false positive: a scheduled scan"});
    let path = format!("/api/v1/incidents/{incident}/restore");
    let (status, refused) = post(&app, &path, None, reason.clone()).await;
    assert_eq!(status, 403, "only an admin overrides the guard: {refused}");
    let admin = server.login_as(Role::Admin).await;
    let (status, restore) = post(&admin, &path, None, reason).await;
    assert_eq!(status, 202, "{restore}");
    let action = finished(&app, incident, restore["id"].as_i64().unwrap()).await;
    assert_eq!(action["status"], "succeeded", "{action}");
    assert_eq!(
        action["request"]["override_reason"],
        "false positive: a scheduled scan"
    );
    let state = &inspect(&target)["State"];
    assert_eq!(state["Paused"], false);
    assert_eq!(state["Running"], true);
    server.assert_mutations_audited().await;
    server.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_isolation_a_dead_server_left_half_done_is_resumed_and_still_restores_exactly(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let network = lab.create_network();
    let ip = format!("{}.20", lab.subnet);
    let target = lab.run(
        "target",
        &["--network", &network, "--ip", &ip, "--network-alias", "db"],
        &["sleep", "3600"],
    );
    collect(&pool).await;
    let workload = workload_id(&pool, &target).await;
    let (opened, queued) = open_and_queue_isolation(&pool, workload).await;

    // The dead server had claimed the action, saved the pre-state and disconnected, then died.
    let claimed = store::claim_next(&pool, "replica-that-died")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, queued.id);
    let driver = DockerDriver::new(None);
    let targets = store::live_targets(&pool, opened.id).await.unwrap();
    let saved = driver.snapshot(&targets[0]).await.unwrap();
    store::save_target(&pool, opened.id, &targets[0], &saved)
        .await
        .unwrap();
    driver.isolate(&targets[0], &saved).await.unwrap();

    // Another server sees its heartbeat stop (no grace here): the action is resumed, not
    // forgotten, and the saved pre-state (with the network) is kept rather than re-read from
    // the isolated container.
    assert_eq!(
        store::recover_interrupted(&pool, Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let drivers = Drivers::from_config(&crate::common::test_config());
    let started = Instant::now();
    let ran = incident::try_execute_next_action(&pool, &drivers)
        .await
        .unwrap();
    assert_eq!(ran, Some(queued.id));
    assert!(started.elapsed() < Duration::from_secs(10));
    let action = store::action(&pool, queued.id).await.unwrap().unwrap();
    assert_eq!(action.status, "succeeded", "{:?}", action.error);
    assert_eq!(action.attempts, 2);
    assert_eq!(
        store::get(&pool, opened.id).await.unwrap().state,
        "isolated"
    );

    store::request_step(
        &pool,
        opened.id,
        Step::Restore,
        StepRequest {
            actor: "root".into(),
            override_reason: Some("drill".into()),
            by_admin: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    incident::try_execute_next_action(&pool, &drivers)
        .await
        .unwrap()
        .unwrap();
    let endpoint = &inspect(&target)["NetworkSettings"]["Networks"][&network];
    assert_eq!(endpoint["IPAddress"], ip.as_str());
    assert!(endpoint["Aliases"]
        .as_array()
        .unwrap()
        .contains(&json!("db")));
    assert_eq!(
        store::get(&pool, opened.id).await.unwrap().state,
        "restored"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_action_a_dead_server_left_running_too_often_is_marked_failed_with_the_reason(
    pool: PgPool,
) {
    let (opened, _) = store::open(
        &pool,
        store::NewIncident {
            title: "no instances".into(),
            severity: "low".into(),
            assignee: None,
            opened_by: "alice".into(),
            workload_ids: vec![],
            finding_ids: vec![],
            note: String::new(),
            idempotency_key: Some("open-1".into()),
        },
    )
    .await
    .unwrap();
    let (again, created) = store::open(
        &pool,
        store::NewIncident {
            title: "no instances".into(),
            severity: "low".into(),
            assignee: None,
            opened_by: "alice".into(),
            workload_ids: vec![],
            finding_ids: vec![],
            note: String::new(),
            idempotency_key: Some("open-1".into()),
        },
    )
    .await
    .unwrap();
    assert!(!created);
    assert_eq!(again.id, opened.id);
    let (queued, _) = store::request_step(
        &pool,
        opened.id,
        Step::Isolate,
        StepRequest {
            actor: "alice".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let busy = store::request_step(
        &pool,
        opened.id,
        Step::Isolate,
        StepRequest {
            actor: "alice".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(busy, Err(incident::IncidentError::Busy)),
        "{busy:?}"
    );
    sqlx::query("update incident_actions set status = 'running', attempts = $2 where id = $1")
        .bind(queued.id)
        .bind(store::MAX_ATTEMPTS)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        store::recover_interrupted(&pool, Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let action = store::action(&pool, queued.id).await.unwrap().unwrap();
    assert_eq!(action.status, "failed");
    assert!(action
        .error
        .unwrap()
        .contains("the server stopped while this action ran"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_incident_opened_from_findings_is_about_their_workloads(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
        .await
        .unwrap();
    let mut workloads = Vec::new();
    for name in ["miner", "web"] {
        let id: i64 = sqlx::query_scalar(
            "insert into workloads (source_id, namespace, kind, name, stage)
             values ($1, '', 'Container', $2, 'run') returning id",
        )
        .bind(source)
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
        workloads.push(id);
    }
    let finding: i64 = sqlx::query_scalar(
        "insert into findings (workload_id, check_id, severity, layer, message)
         values ($1, 'mount.runtime_socket', 'critical', 'runtime', 'the Docker socket is mounted')
         returning id",
    )
    .bind(workloads[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool.clone()).await;
    let responder = app.login_as(Role::Responder).await;

    let (status, incident) = post(
        &responder,
        "/api/v1/incidents",
        None,
        json!({"title": "socket abuse", "severity": "critical", "finding_ids": [finding],
               "workload_ids": [workloads[1]]}),
    )
    .await;
    assert_eq!(status, 201, "{incident}");
    let view = get(&responder, &format!("/api/v1/incidents/{}", incident["id"])).await;
    let mut affected: Vec<i64> = view["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    affected.sort_unstable();
    assert_eq!(
        affected, workloads,
        "the finding's workload joins the named one: {view}"
    );
    assert_eq!(view["origin"], "finding");

    let (status, refused) = post(
        &responder,
        "/api/v1/incidents",
        None,
        json!({"title": "ghost", "severity": "low", "finding_ids": [finding + 1000]}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused
            .to_string()
            .contains(&format!("finding {} does not exist", finding + 1000)),
        "{refused}"
    );
}
