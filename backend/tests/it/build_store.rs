//! The build and store stages: CI build reports and registry notifications through the real
//! HTTP API, the controls they feed as findings, the image inventory, and — against this
//! machine's Docker engine — one workload's timeline from build to run.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use harbormaster::auth::Role;
use harbormaster::collect::docker::ingest;
use harbormaster::inventory::sources;
use harbormaster::supply::controls::ControlSettings;
use harbormaster::supply::store::sweep_once;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{html, live_docker_socket, test_config, texts, TestApp};
use crate::docker::{docker, local_collector, Containers, IMAGE_1};

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn trivy_critical() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/build_store/trivy-critical.json"
    ))
    .expect("the Trivy fixture is readable");
    serde_json::from_str(&text).expect("the Trivy fixture is JSON")
}

fn build_report(digest: &str, run: &str, scan: Value) -> Value {
    json!({
        "image": "registry.example:5000/team/app:1.4.2",
        "digest": digest,
        "repository": "https://git.example/team/app",
        "commit": "3f2a9c1",
        "pipeline_url": format!("https://ci.example/team/app/-/pipelines/{run}"),
        "pipeline_run": run,
        "builder": "buildkit 0.17",
        "built_at": (Utc::now() - Span::minutes(5)).to_rfc3339(),
        "scan": scan,
        "provenance": {"ignored": true}
    })
}

/// A running Docker container of `digest`, written through the collector's ingest path.
fn container(id: u32, name: &str, digest: &str) -> Value {
    json!({
        "Id": format!("{id:064}"),
        "Name": format!("/{name}"),
        "Created": "2026-11-28T12:00:00Z",
        "Image": digest,
        "State": {"Status": "running", "Running": true},
        "Config": {"Image": "registry.example:5000/team/app:1.4.2", "Labels": {}, "User": "10001"},
        "HostConfig": {},
    })
}

async fn seed_containers(pool: &PgPool, docs: Vec<Value>) {
    let source = sources::ensure(pool, "docker", "test", "unix:///test.sock")
        .await
        .unwrap();
    ingest::ingest(
        pool,
        source,
        ingest::Batch {
            // The engine's image store holds each digest the containers run.
            images: docs
                .iter()
                .map(|doc| {
                    json!({"Id": doc["Image"], "RepoTags": [], "RepoDigests": [],
                                  "Created": "2026-11-01T00:00:00Z", "Config": {"User": "10001"}})
                })
                .collect(),
            containers: docs,
            reason: "test".into(),
            ..Default::default()
        },
        Duration::from_secs(600),
    )
    .await
    .unwrap();
}

async fn workload_id(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("select id from workloads where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The open findings of a workload as (check, container, evidence).
async fn open_findings(pool: &PgPool, workload: i64) -> Vec<(String, String, String, Value)> {
    sqlx::query_as(
        "select check_id, container, layer, evidence from findings
         where workload_id = $1 and status = 'open' order by check_id",
    )
    .bind(workload)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    client.post(app.url(path)).json(body).send().await.unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_critical_vulnerability_fails_the_build_control_and_the_same_run_reported_again_is_one_record(
    pool: PgPool,
) {
    seed_containers(&pool, vec![container(1, "api", DIGEST_A)]).await;
    let api = workload_id(&pool, "api").await;
    let app = TestApp::spawn(pool.clone()).await;
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);

    let response = post(
        &ci,
        &app,
        "/api/v1/events/build",
        &build_report(DIGEST_A, "812", trivy_critical()),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["created"], true);
    assert_eq!(body["workloads_judged"], 1);
    assert_eq!(body["scan"]["counts"]["critical"], 1);
    assert_eq!(body["scan"]["top"][0]["id"], "CVE-2024-6387");
    assert!(!body.to_string().contains("sk_live"), "{body}");

    let findings = open_findings(&pool, api).await;
    let critical = findings
        .iter()
        .find(|f| f.0 == "build.critical_vulnerability")
        .unwrap_or_else(|| panic!("no build.critical_vulnerability finding: {findings:?}"));
    assert_eq!(critical.1, "@image");
    assert_eq!(critical.2, "image");
    let evidence = critical.3.to_string();
    assert!(
        evidence.contains(DIGEST_A) && evidence.contains("CVE-2024-6387"),
        "{evidence}"
    );
    let env = findings
        .iter()
        .find(|f| f.0 == "secrets.env_literal" && f.1 == "@image")
        .expect("the API key in the image ENV fails secrets.env_literal");
    assert!(env.3.to_string().contains("APP_API_KEY"));
    assert!(!env.3.to_string().contains("sk_live"));
    // Built and scanned: those gaps are closed; no registry has reported it.
    let checks: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
    assert!(!checks.contains(&"build.not_reported"), "{checks:?}");
    assert!(checks.contains(&"store.not_reported"), "{checks:?}");

    // The collector judging the container again leaves the image findings alone.
    seed_containers(&pool, vec![container(1, "api", DIGEST_A)]).await;
    assert_eq!(open_findings(&pool, api).await.len(), findings.len());

    // The same digest and pipeline run again, now clean: one record, the finding resolved.
    let clean = json!({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": []}]});
    let again = post(
        &ci,
        &app,
        "/api/v1/events/build",
        &build_report(DIGEST_A, "812", clean),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["created"], false);
    assert_eq!(count(&pool, "build_reports").await, 1);
    let checks: Vec<String> = open_findings(&pool, api)
        .await
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(
        !checks.contains(&"build.critical_vulnerability".to_string()),
        "{checks:?}"
    );
    let resolved: String = sqlx::query_scalar(
        "select resolved_reason from findings where check_id = 'build.critical_vulnerability'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(resolved, "fixed");

    // The image page shows the build record and the controls.
    let viewer = app.login_as(Role::Viewer).await;
    let page = viewer.get(&format!("/images/{DIGEST_A}")).await;
    assert_eq!(page.status(), 200);
    let document = html(&page.text().await.unwrap());
    let builds = texts(&document, "article.build");
    assert!(
        builds[0].contains("812") && builds[0].contains("3f2a9c1"),
        "{builds:?}"
    );
    let controls = texts(&document, "table.controls tbody tr");
    assert!(
        controls
            .iter()
            .any(|c| c.contains("build.critical_vulnerability") && c.contains("PASS")),
        "{controls:?}"
    );
    app.assert_mutations_audited().await;
    assert!(app
        .audit_rows()
        .await
        .iter()
        .any(|(action, target, _)| action == "build.report" && target.contains(DIGEST_A)));
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn bad_build_reports_are_refused_with_the_reason_and_nothing_is_stored(pool: PgPool) {
    let mut config = test_config();
    config.images.build_report_limit = 4096;
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);
    let url = app.url("/api/v1/events/build");

    let send = |body: String| {
        let ci = ci.clone();
        let url = url.clone();
        async move {
            let response = ci
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error"]["message"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let (status, message) = send("{\"image\": \"a\", ".into()).await;
    assert_eq!(status, 400);
    assert!(message.contains("not valid JSON"), "{message}");
    let (status, message) = send(json!({"image": "a", "pipeline_run": "1"}).to_string()).await;
    assert_eq!(
        (status, message.contains("digest is required")),
        (400, true),
        "{message}"
    );
    let bad_scan = build_report(
        DIGEST_A,
        "1",
        json!({"Results": [{"Vulnerabilities": [{"Severity": 3}]}]}),
    );
    let (status, message) = send(bad_scan.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("Results[0].Vulnerabilities[0].Severity"),
        "{message}"
    );
    let mut huge = build_report(DIGEST_A, "1", Value::Null);
    huge["padding"] = json!("x".repeat(8192));
    let (status, message) = send(huge.to_string()).await;
    assert_eq!(status, 413);
    assert!(
        message.contains("HARBORMASTER_BUILD_REPORT_LIMIT_BYTES"),
        "{message}"
    );
    assert_eq!(count(&pool, "build_reports").await, 0);
    assert_eq!(count(&pool, "images").await, 0);

    // Unknown fields are ignored.
    let (status, _) = send(build_report(DIGEST_A, "1", Value::Null).to_string()).await;
    assert_eq!(status, 201);
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_ci_token_may_post_events_but_a_viewer_may_not_and_ci_reads_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let viewer = app.token_client(&app.bearer_token(Role::Viewer).await);
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);
    let report = build_report(DIGEST_A, "9", Value::Null);
    assert_eq!(
        post(&viewer, &app, "/api/v1/events/build", &report)
            .await
            .status(),
        403
    );
    let envelope = json!({"events": []});
    assert_eq!(
        post(&viewer, &app, "/api/v1/events/registry", &envelope)
            .await
            .status(),
        403
    );
    assert_eq!(count(&pool, "build_reports").await, 0);
    assert_eq!(
        post(&ci, &app, "/api/v1/events/build", &report)
            .await
            .status(),
        201
    );
    assert_eq!(
        post(&ci, &app, "/api/v1/events/registry", &envelope)
            .await
            .status(),
        200
    );
    let anonymous = app
        .client
        .post(app.url("/api/v1/events/build"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        ci.get(app.url("/api/v1/images"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    app.stop().await.unwrap();
}

fn push(id: &str, digest: &str, tag: &str, at: &str) -> Value {
    json!({
        "id": id, "timestamp": at, "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "digest": digest, "repository": "team/app", "tag": tag,
                   "url": format!("https://registry.example:5000/v2/team/app/manifests/{digest}")},
        "request": {"id": "r", "addr": "10.0.0.9:41234", "host": "registry.example:5000",
                    "method": "PUT", "useragent": "docker/27"},
        "actor": {"name": "ci-bot"},
        "source": {"addr": "registry-0:5000", "instanceID": "3f1c"}
    })
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_registry_envelope_records_pushes_pulls_and_deletes_and_a_moved_tag_is_a_newer_digest(
    pool: PgPool,
) {
    seed_containers(&pool, vec![container(2, "web", DIGEST_A)]).await;
    let web = workload_id(&pool, "web").await;
    let mut config = test_config();
    config.images.allowed_registries = Some(vec!["registry.example:5000".into()]);
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);

    let envelope = json!({"events": [
        push("e1", DIGEST_A, "1.4", "2026-11-28T10:00:00Z"),
        {"id": "e2", "timestamp": "2026-11-28T10:00:01Z", "action": "push",
         "target": {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": DIGEST_B, "repository": "team/app"},
         "request": {"host": "registry.example:5000"}},
        {"id": "e3", "timestamp": "2026-11-28T10:05:00Z", "action": "pull",
         "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": DIGEST_A, "repository": "team/app"},
         "request": {"host": "registry.example:5000"}}
    ]});
    let response = post(&ci, &app, "/api/v1/events/registry", &envelope).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["stored"].as_i64(), body["skipped"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["workloads_judged"], 1);
    // A retried delivery is stored once.
    let body: Value = post(&ci, &app, "/api/v1/events/registry", &envelope)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["duplicates"], 2);
    assert_eq!(count(&pool, "registry_events").await, 2);

    let image: Value = app
        .viewer_get(&format!("/api/v1/images/{DIGEST_A}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        image["image"]["registries"],
        json!(["registry.example:5000"])
    );
    assert_eq!(image["stored_in"][0]["tags"], json!(["1.4"]));
    assert_eq!(image["stored_in"][0]["pulls"], 1);
    let checks: Vec<String> = open_findings(&pool, web)
        .await
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(
        !checks.contains(&"store.not_reported".to_string()),
        "{checks:?}"
    );
    assert!(
        !checks.contains(&"store.registry_not_allowed".to_string()),
        "{checks:?}"
    );

    // The tag moves to a newer digest: the workload still on the old one is behind.
    let moved = json!({"events": [push("e4", DIGEST_B, "1.4", "2026-11-28T11:00:00Z")]});
    assert_eq!(
        post(&ci, &app, "/api/v1/events/registry", &moved)
            .await
            .status(),
        200
    );
    let findings = open_findings(&pool, web).await;
    let newer = findings
        .iter()
        .find(|f| f.0 == "update.newer_digest")
        .unwrap_or_else(|| panic!("no update.newer_digest: {findings:?}"));
    assert!(newer.3.to_string().contains(DIGEST_B), "{:?}", newer.3);
    let image: Value = app
        .viewer_get(&format!("/api/v1/images/{DIGEST_A}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(image["stored_in"][0]["tags"], json!([]));

    // Deleting the manifest marks it removed from the registry.
    let delete = json!({"events": [{"id": "e5", "timestamp": "2026-11-28T12:00:00Z", "action": "delete",
        "target": {"digest": DIGEST_A, "repository": "team/app"},
        "request": {"host": "registry.example:5000"}}]});
    assert_eq!(
        post(&ci, &app, "/api/v1/events/registry", &delete)
            .await
            .status(),
        200
    );
    let image: Value = app
        .viewer_get(&format!("/api/v1/images/{DIGEST_A}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(image["stored_in"][0]["removed_at"].is_string(), "{image}");
    assert_eq!(image["image"]["registries"], json!([]));

    // A malformed envelope stores nothing of itself.
    let bad = json!({"events": [push("e6", DIGEST_B, "2.0", "2026-11-28T13:00:00Z"),
                                {"id": "e7", "action": "push", "target": {"repository": "x"}}]});
    let response = post(&ci, &app, "/api/v1/events/registry", &bad).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("events[1].target.digest"));
    assert_eq!(count(&pool, "registry_events").await, 4);
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_workload_nobody_reported_shows_not_reported_stages_and_findings_in_the_image_layer(
    pool: PgPool,
) {
    seed_containers(&pool, vec![container(3, "quiet", DIGEST_B)]).await;
    let quiet = workload_id(&pool, "quiet").await;
    assert_eq!(
        sweep_once(&pool, &ControlSettings::default(), false)
            .await
            .unwrap(),
        1
    );
    // Judged once: the next sweep has nothing new.
    assert_eq!(
        sweep_once(&pool, &ControlSettings::default(), false)
            .await
            .unwrap(),
        0
    );
    let findings = open_findings(&pool, quiet).await;
    for check in ["build.not_reported", "store.not_reported"] {
        let finding = findings
            .iter()
            .find(|f| f.0 == check)
            .unwrap_or_else(|| panic!("no {check}: {findings:?}"));
        assert_eq!(
            (finding.1.as_str(), finding.2.as_str()),
            ("@image", "image")
        );
    }
    let app = TestApp::spawn(pool.clone()).await;
    let detail: Value = app
        .viewer_get(&format!("/api/v1/workloads/{quiet}"))
        .await
        .json()
        .await
        .unwrap();
    let gaps: Vec<(&str, bool)> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stage"].as_str().unwrap(),
                e["reported"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &gaps[..2],
        &[("build", false), ("store", false)],
        "{gaps:?}"
    );

    // The inventory: filters, keyset pages and a browser-free look at the page.
    let viewer = app.login_as(Role::Viewer).await;
    let page = viewer.get("/images?running=true").await;
    assert_eq!(page.status(), 200);
    let rows = texts(&html(&page.text().await.unwrap()), "table.images tbody tr");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("not reported"), "{rows:?}");
    let list: Value = app
        .viewer_get("/api/v1/images?running=false")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["images"], json!([]));
    let list: Value = app
        .viewer_get("/api/v1/images?limit=1&critical=false")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["images"][0]["digest"], DIGEST_B);
    assert_eq!(list["images"][0]["workloads"], 1);
    for bad in ["critical=maybe", "after=abc", "colour=red", "limit=0"] {
        assert_eq!(
            app.viewer_get(&format!("/api/v1/images?{bad}"))
                .await
                .status(),
            400,
            "{bad}"
        );
    }
    assert_eq!(
        app.viewer_get(&format!("/api/v1/images/{DIGEST_A}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.viewer_get("/api/v1/images/sha256:zz").await.status(),
        400
    );
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_build_report_then_a_registry_push_then_a_running_container_are_one_timeline(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    // A locally built image has no repository digest: the collector knows it by its id.
    let digest = docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE_1]);
    let app = TestApp::spawn(pool.clone()).await;
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);

    let mut report = build_report(&digest, "4711", trivy_critical());
    report["built_at"] = json!((Utc::now() - Span::minutes(2)).to_rfc3339());
    assert_eq!(
        post(&ci, &app, "/api/v1/events/build", &report)
            .await
            .status(),
        201
    );
    let pushed_at = (Utc::now() - Span::minutes(1)).to_rfc3339();
    let envelope = json!({"events": [push("live-1", &digest, "1", &pushed_at)]});
    assert_eq!(
        post(&ci, &app, "/api/v1/events/registry", &envelope)
            .await
            .status(),
        200
    );

    // Created, collected (deploy), then started and collected again (run).
    let name = containers.name("timeline");
    docker(&["create", "--name", &name, IMAGE_1, "sleep", "3600"]);
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    collector.resync_once().await.unwrap();
    docker(&["start", &name]);
    collector.resync_once().await.unwrap();
    let id = workload_id(&pool, &name).await;

    let detail: Value = app
        .viewer_get(&format!("/api/v1/workloads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let timeline = detail["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().all(|e| e["reported"] == true),
        "{timeline:?}"
    );
    let mut stages: Vec<&str> = timeline
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    stages.dedup();
    assert_eq!(stages, ["build", "store", "deploy", "run"], "{timeline:?}");
    assert_eq!(timeline[0]["reported_by"], "ci");
    assert_eq!(timeline[1]["reported_by"], "registry");

    // The workload runs the digest CI reported with a critical vulnerability.
    sweep_once(&pool, &ControlSettings::default(), false)
        .await
        .unwrap();
    let findings = open_findings(&pool, id).await;
    let critical = findings
        .iter()
        .find(|f| f.0 == "build.critical_vulnerability")
        .unwrap_or_else(|| panic!("no critical finding: {findings:?}"));
    assert!(critical.3.to_string().contains("CVE-2024-6387"));

    // The console shows the same timeline.
    let viewer = app.login_as(Role::Viewer).await;
    let document = html(
        &viewer
            .get(&format!("/workloads/{id}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    let rows = texts(&document, ".timeline li");
    assert!(
        rows[0].contains("built") && rows[0].contains("4711"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("pushed to registry.example:5000/team/app:1"),
        "{rows:?}"
    );
    assert!(texts(&document, ".timeline li.not-reported").is_empty());
    drop(containers);
    app.stop().await.unwrap();
}
