//! The Docker collector against this machine's real engine: containers this test creates (names
//! `hm-test-docker-<random>-…`, removed by a guard, also on failure) move through the lifecycle,
//! and the API shows them.

use std::time::{Duration, Instant};

use harbormaster::collect::docker::{ingest, Collector};
use harbormaster::config::{parse_docker_endpoint, Config};
use harbormaster::inventory::sources;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::common::{live_docker_socket, test_config, TestApp};

/// Built by scripts/test-images.sh under a repository of this suite's own, so that another suite
/// rebuilding `harbormaster-test/busybox` meanwhile changes nothing here.
const IMAGE_REPO: &str = "hm-test-docker/busybox";
pub(crate) const IMAGE_1: &str = "hm-test-docker/busybox:1";
const IMAGE_2: &str = "hm-test-docker/busybox:2";
const LOCAL: &str = "unix:///var/run/docker.sock";

/// Runs the docker CLI; panics with its output when it fails.
fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A unique name prefix; every container whose name starts with it is removed on drop.
pub(crate) struct Containers {
    prefix: String,
}

impl Containers {
    pub(crate) fn new() -> Self {
        static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        let present = |image: &str| !docker(&["images", "-q", image]).is_empty();
        let missing = !(present(IMAGE_1) && present(IMAGE_2));
        if !*built && missing {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-images.sh");
            let output = std::process::Command::new(script)
                .arg("build")
                .env("HARBORMASTER_TEST_IMAGE", IMAGE_REPO)
                .output()
                .expect("scripts/test-images.sh runs");
            assert!(
                output.status.success(),
                "scripts/test-images.sh build failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        *built = true;
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("hm-test-docker-{}", &random[..10]),
        }
    }

    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// `docker run -d` of busybox sleeping, with extra arguments before the image.
    pub(crate) fn run(&self, suffix: &str, image: &str, extra: &[&str]) -> String {
        let name = self.name(suffix);
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[image, "sleep", "3600"]);
        docker(&args)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("name=^/{}", self.prefix);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
    }
}

fn config_with(endpoints: &[&str], grace: Duration) -> Config {
    let mut config = test_config();
    config.docker_endpoints = endpoints.iter().map(|e| e.to_string()).collect();
    config.retire_grace = grace;
    config
}

async fn local_collector(pool: &PgPool, grace: Duration) -> Collector {
    let source = sources::ensure(pool, "docker", LOCAL, LOCAL).await.unwrap();
    Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        grace,
    )
    .await
    .expect("the local engine answers")
}

/// (id, stage) of the workload named `name`, if stored.
async fn workload(pool: &PgPool, name: &str) -> Option<(i64, String)> {
    sqlx::query_as("select id, stage from workloads where name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Waits until the workload `name` is in `stage`, for at most `limit`.
pub(crate) async fn wait_for_stage(pool: &PgPool, name: &str, stage: &str, limit: Duration) -> i64 {
    let start = Instant::now();
    loop {
        if let Some((id, now)) = workload(pool, name).await {
            if now == stage {
                return id;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{name} did not reach stage {stage} within {limit:?} (now {:?})",
            workload(pool, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn history(pool: &PgPool, id: i64) -> Vec<(String, Vec<String>, Vec<String>)> {
    sqlx::query_as(
        "select to_stage, digests_before, digests_after from lifecycle_events
         where workload_id = $1 order by at, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_container_runs_within_five_seconds_deploys_when_stopped_and_retires_after_the_grace_period(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let app = TestApp::spawn_with(
        pool.clone(),
        config_with(&[LOCAL], Duration::from_secs(2)),
        None,
    )
    .await;
    // The collector has done its first resync.
    let start = Instant::now();
    while sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
        "select last_resync_at from sources where endpoint = $1",
    )
    .bind(LOCAL)
    .fetch_optional(&pool)
    .await
    .unwrap()
    .flatten()
    .is_none()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no first resync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let name = containers.name("web");
    containers.run("web", IMAGE_1, &[]);
    let id = wait_for_stage(&pool, &name, "run", Duration::from_secs(5)).await;

    // An exec session is a runtime event of the workload, with its command.
    docker(&["exec", &name, "echo", "hello"]);
    let start = Instant::now();
    loop {
        let summaries: Vec<(String, String)> = sqlx::query_as(
            "select kind, summary from runtime_events where workload_id = $1 order by id",
        )
        .bind(id)
        .fetch_all(&pool)
        .await
        .unwrap();
        if summaries.iter().any(|(kind, _)| kind == "exec_start") {
            assert!(summaries.iter().any(|(kind, _)| kind == "exec_create"));
            assert!(
                summaries.iter().all(|(_, s)| s.contains("echo hello")),
                "{summaries:?}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no exec event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    docker(&["stop", "-t", "0", &name]);
    wait_for_stage(&pool, &name, "deploy", Duration::from_secs(5)).await;

    docker(&["rm", "-f", &name]);
    let removed = Instant::now();
    wait_for_stage(&pool, &name, "retire", Duration::from_secs(15)).await;
    assert!(
        removed.elapsed() >= Duration::from_secs(2),
        "retired before the grace period ended"
    );
    let stages: Vec<String> = history(&pool, id).await.into_iter().map(|h| h.0).collect();
    assert_eq!(stages, vec!["store", "run", "deploy", "retire"]);
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_container_recreated_with_another_image_is_an_update_then_runs_with_both_digests_recorded(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    let name = containers.name("api");
    let old = containers.run("api", IMAGE_1, &[]);
    collector.resync_once().await.unwrap();
    let id = wait_for_stage(&pool, &name, "run", Duration::ZERO).await;

    let image_of = |id: &str| docker(&["inspect", "-f", "{{.Image}}", id]);
    let first = image_of(&old);
    docker(&["rm", "-f", &name]);
    let new = containers.run("api", IMAGE_2, &[]);
    collector.resync_once().await.unwrap();
    wait_for_stage(&pool, &name, "run", Duration::ZERO).await;

    let second = image_of(&new);
    let history = history(&pool, id).await;
    let stages: Vec<&str> = history.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(stages, vec!["store", "run", "update", "run"]);
    assert_eq!(
        history[2].1,
        vec![first.clone()],
        "digest before the update"
    );
    assert_eq!(
        history[2].2,
        vec![second.clone()],
        "digest after the update"
    );

    // Re-created again with the same image and configuration: not an update.
    docker(&["rm", "-f", &name]);
    containers.run("api", IMAGE_2, &[]);
    collector.resync_once().await.unwrap();
    assert_eq!(self::history(&pool, id).await.len(), 4);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn two_containers_of_one_compose_service_are_one_workload_with_two_instances(pool: PgPool) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let project = containers.name("shop");
    let labels = [
        "-l",
        &format!("com.docker.compose.project={project}"),
        "-l",
        "com.docker.compose.service=web",
    ];
    containers.run("web-1", IMAGE_1, &labels);
    containers.run("web-2", IMAGE_1, &labels);
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    collector.resync_once().await.unwrap();

    let app = TestApp::spawn(pool.clone()).await;
    let page: Value = app
        .viewer_get(&format!("/api/v1/workloads?namespace={project}"))
        .await
        .json()
        .await
        .unwrap();
    let workloads = page["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 1, "{page}");
    assert_eq!(workloads[0]["kind"], "ComposeService");
    assert_eq!(workloads[0]["name"], "web");
    assert_eq!(workloads[0]["stage"], "run");
    assert_eq!(workloads[0]["instances_total"], 2);
    assert_eq!(workloads[0]["instances_running"], 2);

    let detail: Value = app
        .viewer_get(&format!("/api/v1/workloads/{}", workloads[0]["id"]))
        .await
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = detail["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![containers.name("web-1"), containers.name("web-2")]
    );
    assert_eq!(detail["images"][0]["references"][0], IMAGE_1);
    assert_eq!(detail["history"][0]["to_stage"], "store");
    assert_eq!(detail["history"][1]["to_stage"], "run");
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn after_the_event_connection_is_cut_and_restored_the_resync_finds_what_changed(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    collector.resync_once().await.unwrap();
    let cancel = CancellationToken::new();
    let follower = {
        let collector = collector.clone();
        let cancel = cancel.clone();
        // As the collector does: replay from a little before, the subscription starts lazily.
        let since = chrono::Utc::now().timestamp() - 1;
        tokio::spawn(async move {
            collector
                .follow(Some(since), Duration::from_secs(3600), &cancel)
                .await
        })
    };
    let kept = containers.name("kept");
    containers.run("kept", IMAGE_1, &[]);
    wait_for_stage(&pool, &kept, "run", Duration::from_secs(5)).await;

    // The connection is cut; meanwhile one container stops and another starts.
    cancel.cancel();
    follower.await.unwrap().unwrap();
    docker(&["stop", "-t", "0", &kept]);
    let added = containers.name("added");
    containers.run("added", IMAGE_1, &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(workload(&pool, &kept).await.unwrap().1, "run");
    assert!(workload(&pool, &added).await.is_none());

    // Restored: the resync after the reconnect sees both changes, then events flow again.
    collector.resync_once().await.unwrap();
    assert_eq!(workload(&pool, &kept).await.unwrap().1, "deploy");
    assert_eq!(workload(&pool, &added).await.unwrap().1, "run");
    let cancel = CancellationToken::new();
    let follower = {
        let collector = collector.clone();
        let cancel = cancel.clone();
        // As the collector does: replay from a little before, the subscription starts lazily.
        let since = chrono::Utc::now().timestamp() - 1;
        tokio::spawn(async move {
            collector
                .follow(Some(since), Duration::from_secs(3600), &cancel)
                .await
        })
    };
    docker(&["start", &kept]);
    wait_for_stage(&pool, &kept, "run", Duration::from_secs(5)).await;
    cancel.cancel();
    follower.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_label_with_markup_is_stored_verbatim_and_escaped_in_json(pool: PgPool) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let markup = "<script>alert(1)</script>";
    containers.run(
        "markup",
        IMAGE_1,
        &[
            "-l",
            &format!("note={markup}"),
            "-e",
            "API_TOKEN=s3cr3t-value",
        ],
    );
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    collector.resync_once().await.unwrap();
    let name = containers.name("markup");
    let (id, _) = workload(&pool, &name).await.unwrap();
    let stored: String =
        sqlx::query_scalar("select labels->>'note' from instances where workload_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, markup);

    let app = TestApp::spawn(pool.clone()).await;
    let response = app.viewer_get(&format!("/api/v1/workloads/{id}")).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "served as JSON"
    );
    let body = response.text().await.unwrap();
    assert!(!body.contains("<script>"), "markup served unescaped");
    assert!(body.contains("\\u003cscript\\u003e"));
    assert!(!body.contains("s3cr3t-value"), "an env value was served");
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["workload"]["labels"]["note"], markup);
    assert_eq!(detail["instances"][0]["labels"]["note"], markup);
    let env = detail["instances"][0]["raw"]["Config"]["Env"].to_string();
    assert!(env.contains("API_TOKEN=[redacted]"), "{env}");
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_unreachable_engine_shows_down_with_its_error_while_the_local_one_keeps_working(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let app = TestApp::spawn_with(
        pool.clone(),
        config_with(
            &[
                LOCAL,
                "tcp://127.0.0.1:1",
                "unix:///nonexistent/docker.sock",
            ],
            Duration::from_secs(600),
        ),
        None,
    )
    .await;
    let start = Instant::now();
    let sources = loop {
        let body: Value = app
            .viewer_get("/api/v1/sources")
            .await
            .json()
            .await
            .unwrap();
        let sources = body["sources"].as_array().unwrap().clone();
        let health = |name: &str| {
            sources
                .iter()
                .find(|s| s["name"] == name)
                .map(|s| s["health"].clone())
        };
        let down = |name: &str| {
            sources
                .iter()
                .any(|s| s["name"] == name && s["health"] == "down" && s["last_error"].is_string())
        };
        if health(LOCAL) == Some("fresh".into())
            && down("tcp://127.0.0.1:1")
            && down("unix:///nonexistent/docker.sock")
        {
            break sources;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sources never settled: {sources:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tcp = sources
        .iter()
        .find(|s| s["name"] == "tcp://127.0.0.1:1")
        .unwrap();
    assert!(
        tcp["last_error"]
            .as_str()
            .unwrap()
            .contains("tcp://127.0.0.1:1"),
        "{tcp}"
    );
    let local = sources.iter().find(|s| s["name"] == LOCAL).unwrap();
    assert_eq!(local["connected"], true);
    assert!(local["counts"]["containers"].is_number());

    let name = containers.name("alive");
    containers.run("alive", IMAGE_1, &[]);
    wait_for_stage(&pool, &name, "run", Duration::from_secs(5)).await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn workloads_are_listed_by_page_with_a_cursor_and_bad_filters_are_refused(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "test", "unix:///test.sock")
        .await
        .unwrap();
    let docs: Vec<Value> = (0..5)
        .map(|n| synthetic(n, &format!("page-{n}"), true))
        .collect();
    let batch = ingest::Batch {
        containers: docs,
        full: true,
        reason: "test".into(),
        ..Default::default()
    };
    ingest::ingest(&pool, source, batch, Duration::from_secs(600))
        .await
        .unwrap();
    let app = TestApp::spawn(pool.clone()).await;

    let mut names = Vec::new();
    let mut path = "/api/v1/workloads?limit=2&q=PAGE&kind=Container&stage=run".to_string();
    loop {
        let page: Value = app.viewer_get(&path).await.json().await.unwrap();
        names.extend(
            page["workloads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["name"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => {
                path = format!(
                    "/api/v1/workloads?limit=2&q=PAGE&kind=Container&stage=run&after={next}"
                )
            }
            None => break,
        }
    }
    assert_eq!(
        names,
        vec!["page-0", "page-1", "page-2", "page-3", "page-4"]
    );

    for bad in [
        "stage=running",
        "kind=Box",
        "team=payments",
        "limit=0",
        "colour=red",
    ] {
        let response = app.viewer_get(&format!("/api/v1/workloads?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    assert_eq!(
        app.viewer_get("/api/v1/workloads/999999").await.status(),
        404
    );
    assert_eq!(app.viewer_get("/api/v1/workloads/abc").await.status(), 400);
    app.stop().await.unwrap();
}

fn synthetic(id: u32, name: &str, running: bool) -> Value {
    serde_json::json!({
        "Id": format!("{id:064}"),
        "Name": format!("/{name}"),
        "Created": "2026-11-28T12:00:00Z",
        "Image": "sha256:aaa",
        "State": {"Status": if running { "running" } else { "exited" }, "Running": running},
        "Config": {"Image": "busybox:1", "Labels": {}},
        "HostConfig": {},
    })
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_renamed_container_moves_to_its_new_workload_and_the_old_one_retires(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "test", "unix:///test.sock")
        .await
        .unwrap();
    let write = |doc: Value| ingest::Batch {
        containers: vec![doc],
        reason: "event".into(),
        ..Default::default()
    };
    ingest::ingest(
        &pool,
        source,
        write(synthetic(1, "before", true)),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(workload(&pool, "before").await.unwrap().1, "run");
    ingest::ingest(
        &pool,
        source,
        write(synthetic(1, "after", true)),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(workload(&pool, "after").await.unwrap().1, "run");
    assert_eq!(workload(&pool, "before").await.unwrap().1, "retire");
}

#[tokio::test]
async fn a_tls_endpoint_whose_certificate_files_are_not_pem_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(name), "not a certificate").unwrap();
    }
    let endpoint = parse_docker_endpoint(
        &format!("tcp://127.0.0.1:1?tls={}", dir.path().display()),
        None,
    );
    assert!(endpoint.tls.is_some());
    let err = harbormaster::collect::docker::connect(&endpoint)
        .await
        .expect_err("garbage certificates cannot connect");
    let message = err.to_string();
    assert!(message.contains("tcp://127.0.0.1:1"), "{message}");
}
