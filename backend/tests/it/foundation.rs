//! The server itself: health, readiness, errors, headers, shutdown, the embedded database and the
//! binary's start-up errors.

use std::process::Stdio;
use std::time::Duration;

use axum::routing::get;
use harbormaster::auth::Role as UserRole;
use harbormaster::db::{self, EmbeddedPostgres, Role};
use harbormaster::web::CONTENT_SECURITY_POLICY;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::common::{html, test_config, texts, TestApp};

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn health_and_readiness_answer_when_the_database_is_migrated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_api_is_described_by_an_openapi_document_anyone_may_read(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let document: serde_json::Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/workloads", "get"),
        ("/api/v1/incidents/{id}/{step}", "post"),
        ("/api/v1/reviews/{id}/export", "get"),
        ("/api/v1/events/build", "post"),
    ] {
        assert!(
            paths[path][method]["summary"].is_string(),
            "{method} {path}"
        );
    }
    assert_eq!(
        paths["/api/v1/events/build"]["post"]["x-harbormaster-role"],
        "ci"
    );
}

#[sqlx::test(migrations = false)]
async fn readiness_says_which_migrations_are_missing(pool: PgPool) {
    sqlx::query(
        "create table _sqlx_migrations (version bigint primary key, success boolean not null)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("migrations not applied"),
        "{body}"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn every_response_carries_the_security_headers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let browser = app.login_as(UserRole::Viewer).await;
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/static/css/app.css",
        "/no/such/page",
        "/api/v1/no-such-thing",
    ] {
        let response = browser.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap()),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert_eq!(
            headers.get("x-content-type-options").unwrap(),
            "nosniff",
            "{path}"
        );
        assert_eq!(headers.get("x-frame-options").unwrap(), "DENY", "{path}");
        assert!(headers.get("referrer-policy").is_some(), "{path}");
    }
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn errors_are_json_under_the_api_and_pages_elsewhere(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let browser = app.login_as(UserRole::Viewer).await;

    let api = browser.get("/api/v1/no-such-thing").await;
    assert_eq!(api.status(), 404);
    assert!(api.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));

    let page = browser.get("/no/such/page").await;
    assert_eq!(page.status(), 404);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let document = html(&page.text().await.unwrap());
    assert_eq!(texts(&document, "h1"), vec!["404 · Not Found"]);
    assert!(
        !texts(&document, "nav.mainnav a").is_empty(),
        "the error page keeps the navigation"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_oversized_body_is_refused_with_413(pool: PgPool) {
    let mut config = test_config();
    config.body_limit = 1024;
    let app = TestApp::spawn_with(pool, config, None).await;
    let response = app
        .client
        .post(app.url("/api/v1/events/registry"))
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn static_files_are_cached_by_content_hash(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let browser = app.login_as(UserRole::Viewer).await;
    let page = html(&browser.get("/").await.text().await.unwrap());
    let selector = scraper::Selector::parse("link[rel=stylesheet]").unwrap();
    let href = page
        .select(&selector)
        .next()
        .and_then(|link| link.value().attr("href"))
        .expect("the page links its stylesheet")
        .to_string();
    assert!(href.starts_with("/static/css/app.css?v="), "{href}");
    let versioned = app.get(&href).await;
    assert_eq!(versioned.status(), 200);
    assert!(versioned.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(versioned.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let unversioned = app.get("/static/css/app.css").await;
    assert_eq!(unversioned.headers()["cache-control"], "no-cache");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn metrics_count_requests_by_matched_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.get("/healthz").await;
    app.get("/static/js/app.js").await;
    let browser = app.login_as(UserRole::Viewer).await;
    let text = browser.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"harbormaster_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/static/{*path}""#),
        "the route template, not the raw path: {text}"
    );
    assert!(text.contains("harbormaster_db_pool_max_connections"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_request_in_flight_at_shutdown_finishes(pool: PgPool) {
    let slow = axum::Router::new().route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            "finished"
        }),
    );
    let mut app = TestApp::spawn_with(pool, test_config(), Some(slow)).await;
    let browser = app.login_as(UserRole::Viewer).await;
    let request = tokio::spawn(browser.client.get(browser.url("/test/slow")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.begin_stop();
    let response = request
        .await
        .unwrap()
        .expect("the slow request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(10), app.join())
        .await
        .expect("the server stops after the request")
        .expect("a clean stop");
}

/// A private cluster directory that the `postgres` user can reach when the tests run as root.
fn cluster_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hm-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test]
async fn readiness_follows_the_embedded_database_going_away_and_coming_back() {
    let dir = cluster_dir();
    let root = dir.path().join("postgres");
    let cluster = EmbeddedPostgres::start(&root, None, Role::Server)
        .await
        .expect("the cluster starts");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(cluster.connect_options())
        .await
        .unwrap();
    db::MIGRATOR.run(&pool).await.unwrap();
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    cluster.stop().await;
    let down = app.get("/readyz").await;
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["status"], "not ready");

    // The same data directory again: the data is still there and readiness returns.
    let cluster = EmbeddedPostgres::start(&root, None, Role::Server)
        .await
        .expect("it starts again");
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readiness returns once the database is back");
    app.stop().await.unwrap();
    pool.close().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_command_shares_the_cluster_a_server_owns() {
    let dir = cluster_dir();
    let root = dir.path().join("postgres");
    let server = EmbeddedPostgres::start(&root, None, Role::Server)
        .await
        .unwrap();
    assert!(server.is_owner());
    let command = EmbeddedPostgres::start(&root, None, Role::Command)
        .await
        .unwrap();
    assert!(!command.is_owner(), "a command joins the server's cluster");
    command.stop().await;
    // The server's cluster still answers after the command is done.
    let pool = PgPoolOptions::new()
        .connect_with(server.connect_options())
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;
    server.stop().await;
}

fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_harbormaster"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("HARBORMASTER_BIND")
        .env("HARBORMASTER_DOCKER", "unix:///nonexistent/docker.sock")
        .stdin(Stdio::null());
    command
}

#[test]
fn an_unreachable_database_stops_the_start_with_its_host() {
    let output = binary()
        .args(["serve"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
}

#[test]
fn a_bad_bind_address_names_the_setting() {
    let output = binary()
        .args(["serve"])
        .env("HARBORMASTER_BIND", "nonsense")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HARBORMASTER_BIND"), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(url: &str) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = client.get(url).send().await {
            if response.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn postmaster_pid(data_dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("postgres/data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn the_binary_serves_on_the_embedded_database_stops_on_sigterm_and_survives_a_crash() {
    let dir = cluster_dir();
    let data = dir.path().join("data");
    let port = free_port();
    let start = || {
        binary()
            .arg("serve")
            .env("HARBORMASTER_DATA_DIR", &data)
            .env("HARBORMASTER_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let ready_url = format!("http://127.0.0.1:{port}/readyz");

    // First start: initdb, serve.
    let mut server = start();
    assert!(wait_ready(&ready_url).await, "the server becomes ready");
    let pid = postmaster_pid(&data).expect("the embedded postmaster runs");

    // SIGTERM: a clean exit, and no postgres left behind.
    unsafe { libc::kill(server.id() as i32, 15) };
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !alive(pid),
        "the embedded PostgreSQL stopped with the server"
    );

    // A crash (SIGKILL) leaves the postmaster running; the next start handles it.
    let mut server = start();
    assert!(
        wait_ready(&ready_url).await,
        "the second start reuses the data"
    );
    let orphan = postmaster_pid(&data).unwrap();
    unsafe { libc::kill(server.id() as i32, 9) };
    server.wait().unwrap();
    assert!(alive(orphan), "SIGKILL leaves the postmaster behind");
    let mut server = start();
    assert!(wait_ready(&ready_url).await, "a start after a crash works");
    unsafe { libc::kill(server.id() as i32, 15) };
    assert!(server.wait().unwrap().success());
    let last = postmaster_pid(&data);
    assert!(last.is_none_or(|pid| !alive(pid)), "nothing left running");
    assert!(!alive(orphan));
}
