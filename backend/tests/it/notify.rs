//! Notifications end to end: a local HTTP receiver (axum on 127.0.0.1:0) that checks the HMAC
//! signature, a receiver that fails, a burst digested into one message, re-assigned owners, dead
//! letters in the console, and a tiny SMTP listener. Planning and delivery run with an injected
//! clock (`plan_once(now)`, `deliver_due(now)`); one test runs the server's own loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use harbormaster::auth::Role;
use harbormaster::collect::docker::Collector;
use harbormaster::config::{parse_docker_endpoint, Secret};
use harbormaster::findings::{self, store as findings_store};
use harbormaster::inventory::sources;
use harbormaster::notify::plan::{self, PlanReport};
use harbormaster::notify::send::{self, Sender};
use harbormaster::notify::{self as notify, store, ChannelInput, RouteInput, Settings};
use harbormaster::posture::Context;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::{html, live_docker_socket, test_config, texts, TestApp};
use crate::findings::{Containers, LOCAL};

const KEY: &str = "a-signing-key-for-tests";
const PUBLIC: &str = "http://hm.test";

// ---------------------------------------------------------------------------------------------
// A local webhook receiver

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    /// How many of the next requests are answered 500.
    failures: Arc<AtomicUsize>,
}

struct Receiver {
    base: String,
    inbox: Inbox,
}

impl Receiver {
    async fn start() -> Self {
        let inbox = Inbox::default();
        let app = axum::Router::new()
            .route("/hook/{*rest}", axum::routing::post(receive))
            .with_state(inbox.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            inbox,
        }
    }

    /// A hook URL whose path carries a token, as real ones do.
    fn url(&self, name: &str) -> String {
        format!("{}/hook/{name}/token-XYZZY-{name}", self.base)
    }

    fn fail_next(&self, count: usize) {
        self.inbox.failures.store(count, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }
}

async fn receive(
    State(inbox): State<Inbox>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    inbox.got.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
    });
    let failing = inbox
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Checks the signature the way a receiver should; panics when it does not verify.
fn assert_signed(request: &Received) {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let timestamp = header(send::TIMESTAMP_HEADER);
    let signature = header(send::SIGNATURE_HEADER);
    assert!(
        send::verify(
            KEY.as_bytes(),
            &timestamp,
            &signature,
            &request.body,
            Utc::now().timestamp(),
            300
        ),
        "the signature does not verify"
    );
    assert!(!send::verify(
        b"another-key-entirely",
        &timestamp,
        &signature,
        &request.body,
        Utc::now().timestamp(),
        300
    ));
}

// ---------------------------------------------------------------------------------------------
// A tiny SMTP listener

struct SmtpListener {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<String>>>,
}

impl SmtpListener {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(smtp_session(socket, store.clone()));
            }
        });
        Self { addr, mails }
    }

    /// The mails received (not the AUTH lines).
    fn mails(&self) -> Vec<String> {
        self.mails
            .lock()
            .unwrap()
            .iter()
            .filter(|mail| !mail.starts_with("AUTH "))
            .cloned()
            .collect()
    }

    /// The decoded `AUTH PLAIN` credentials sent.
    fn credentials(&self) -> Vec<String> {
        use base64::Engine as _;
        self.mails
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.strip_prefix("AUTH PLAIN "))
            .filter_map(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .collect()
    }
}

async fn smtp_session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 test ESMTP\r\n").await;
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(buffer) = data.as_mut() {
            if line == "." {
                mails.lock().unwrap().push(std::mem::take(buffer));
                data = None;
                let _ = write.write_all(b"250 queued\r\n").await;
            } else {
                buffer.push_str(line.strip_prefix('.').unwrap_or(&line));
                buffer.push('\n');
            }
            continue;
        }
        let command = line.to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250-test\r\n250 AUTH PLAIN LOGIN\r\n"
        } else if command.starts_with("AUTH") {
            // Kept so a test can see which credentials were used.
            mails
                .lock()
                .unwrap()
                .push(format!("AUTH {}", line[4..].trim()));
            b"235 accepted\r\n"
        } else if command.starts_with("DATA") {
            data = Some(String::new());
            b"354 end with a dot\r\n"
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            break;
        } else {
            b"250 OK\r\n"
        };
        let _ = write.write_all(reply).await;
    }
}

/// A mail with its body decoded (base64, or quoted-printable soft breaks undone).
fn unfold(mail: &str) -> String {
    use base64::Engine as _;
    let (headers, body) = mail.split_once("\n\n").unwrap_or((mail, ""));
    let lower = headers.to_ascii_lowercase();
    let body = if lower.contains("content-transfer-encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a base64 body"),
        )
        .expect("a UTF-8 body")
    } else if lower.contains("content-transfer-encoding: quoted-printable") {
        body.replace("=\n", "").replace("=3D", "=")
    } else {
        body.to_string()
    };
    format!("{headers}\n\n{body}")
}

// ---------------------------------------------------------------------------------------------
// Data helpers

fn settings() -> Settings {
    Settings {
        public_url: PUBLIC.into(),
        digest: Duration::from_secs(600),
        max_attempts: 5,
        retry_base: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        batch: 1000,
        interval: Duration::from_secs(3600),
    }
}

fn sender() -> Sender {
    Sender::with_channels(Vec::new(), Duration::from_secs(5)).unwrap()
}

async fn team(pool: &PgPool, name: &str, kind: &str) -> i64 {
    sqlx::query_scalar("insert into teams (name, kind) values ($1, $2) returning id")
        .bind(name)
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn webhook(name: &str, url: &str, team: Option<&str>) -> ChannelInput {
    ChannelInput {
        name: name.into(),
        kind: "webhook".into(),
        team: team.map(String::from),
        url: Some(Secret::new(url.into())),
        signing_key: Some(Secret::new(KEY.into())),
        ..ChannelInput::default()
    }
}

fn route(name: &str, event: &str, min: &str, audience: &str, channel: Option<&str>) -> RouteInput {
    RouteInput {
        name: name.into(),
        event: event.into(),
        min_severity: Some(min.into()),
        audience: audience.into(),
        channel: channel.map(String::from),
    }
}

async fn add_channel(pool: &PgPool, input: ChannelInput) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    store::create_channel(&mut conn, &input, "console", "tests")
        .await
        .unwrap()
        .id
}

async fn add_route(pool: &PgPool, input: RouteInput) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    store::create_route(&mut conn, &input, "console", "tests")
        .await
        .unwrap()
        .id
}

/// One planning round at `now`, again while another planner (the server's loop) holds the lock.
async fn plan_at(pool: &PgPool, now: DateTime<Utc>) -> PlanReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let report = plan::plan_once(pool, &settings(), now).await.unwrap();
        if !report.skipped || std::time::Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliver_at(pool: &PgPool, now: DateTime<Utc>) -> usize {
    notify::deliver_due(pool, &sender(), &settings(), now)
        .await
        .unwrap()
}

async fn workload(pool: &PgPool, name: &str) -> i64 {
    let source = sources::ensure(pool, "docker", LOCAL, LOCAL).await.unwrap();
    sqlx::query_scalar(
        "insert into workloads (source_id, namespace, kind, name, stage)
         values ($1, 'shop', 'Container', $2, 'run') returning id",
    )
    .bind(source)
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn own(pool: &PgPool, workload: i64, layer: &str, team: i64) {
    sqlx::query(
        "insert into workload_owners (workload_id, layer, team_id, via, provenance)
         values ($1, $2, $3, 'assignment', 'test')
         on conflict (workload_id, layer) do update set team_id = excluded.team_id",
    )
    .bind(workload)
    .bind(layer)
    .bind(team)
    .execute(pool)
    .await
    .unwrap();
}

/// `count` open findings of one check on `workload` (one per container), as a collector's
/// first sync writes them.
async fn burst(pool: &PgPool, workload: i64, check: &str, severity: &str, count: i32) {
    sqlx::query(
        "insert into findings (workload_id, container, check_id, severity, layer, message)
         select $1, 'c-' || g, $2, $3, 'orchestration', 'the container runs privileged'
         from generate_series(1, $4) g",
    )
    .bind(workload)
    .bind(check)
    .bind(severity)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

async fn status_of(pool: &PgPool, delivery: i64) -> (String, i32, Option<String>) {
    sqlx::query_as("select status, attempts, last_error from notification_deliveries where id = $1")
        .bind(delivery)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits (at most 20 s) until the server's loop has applied the configuration and started the
/// cursors: rows written before that would never be told.
async fn wait_for_the_loop(pool: &PgPool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cursors: i64 = sqlx::query_scalar("select count(*) from notification_cursors")
            .fetch_one(pool)
            .await
            .unwrap();
        if cursors == 3 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the notification loop never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_privileged_container_reaches_its_owning_team_as_a_signed_webhook(pool: PgPool) {
    if live_docker_socket().is_none() {
        return;
    }
    let receiver = Receiver::start().await;
    let mut config = test_config();
    config.public_url = PUBLIC.into();
    config.notifications.interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    let payments = team(&pool, "payments", "development").await;

    // The admin sets up the channel and the route through the API.
    let admin = app.login_as(Role::Admin).await;
    let response = admin
        .post_json(
            "/api/v1/notification-channels",
            &json!({"name": "payments-hook", "kind": "webhook", "team": "payments",
                    "url": receiver.url("payments"), "signing_key": KEY}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    let shown = view.to_string();
    assert!(!shown.contains("XYZZY") && !shown.contains(KEY), "{shown}");
    let response = admin
        .post_json(
            "/api/v1/notification-routes",
            &json!({"name": "critical to owners", "event": "finding",
                    "min_severity": "critical", "audience": "owner"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    // A viewer may read, not change.
    let viewer = app.login_as(Role::Viewer).await;
    let listed: Value = viewer
        .get("/api/v1/notification-channels")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["channels"][0]["name"], "payments-hook");
    assert!(!listed.to_string().contains("XYZZY"));
    let refused = viewer
        .post_json(
            "/api/v1/notification-routes",
            &json!({"name": "x", "event": "finding", "audience": "security"}),
        )
        .await;
    assert_eq!(refused.status(), 403);

    wait_for_the_loop(&pool).await;

    // A privileged container appears on the real engine and is collected.
    let containers = Containers::new();
    containers.create("notify-priv", &["--privileged"]);
    let name = containers.name("notify-priv");
    let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
        .await
        .unwrap();
    let collector = Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        Duration::from_secs(3600),
    )
    .await
    .expect("the local engine answers");
    collector.resync_once().await.unwrap();
    let (workload_id, finding_id, layer): (i64, i64, String) = sqlx::query_as(
        "select w.id, f.id, f.layer from findings f join workloads w on w.id = f.workload_id
         where w.name = $1 and f.check_id = 'priv.privileged' and f.status = 'open'",
    )
    .bind(&name)
    .fetch_one(&pool)
    .await
    .expect("the privileged finding is open");
    // The payments team owns the layer of the fix.
    own(&pool, workload_id, &layer, payments).await;

    let now = Utc::now();
    let report = plan_at(&pool, now).await;
    assert!(report.deliveries >= 1, "{report:?}");
    deliver_at(&pool, now).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one message: {received:?}");
    let request = &received[0];
    assert!(request.path.starts_with("/hook/payments/"));
    assert_signed(request);
    assert_eq!(request.headers.get(send::EVENT_HEADER).unwrap(), "finding");
    let body = request.json();
    assert_eq!(body["event"], "finding");
    assert_eq!(body["route"], "critical to owners");
    let item = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["subject"] == format!("finding:{finding_id}"))
        .unwrap_or_else(|| panic!("the privileged finding is in {body}"))
        .clone();
    assert_eq!(item["severity"], "critical");
    assert!(item["title"].as_str().unwrap().contains(&name), "{item}");
    assert_eq!(
        item["link"],
        format!("{PUBLIC}/workloads/{workload_id}#posture")
    );

    // Re-evaluating the same container tells nothing new: one message per finding.
    collector.resync_once().await.unwrap();
    plan_at(&pool, now + chrono::Duration::hours(1)).await;
    deliver_at(&pool, now + chrono::Duration::hours(1)).await;
    assert_eq!(receiver.received().len(), 1);

    app.assert_mutations_audited().await;
    let rows = app.audit_rows().await;
    for action in ["notification.channel.create", "notification.route.create"] {
        assert!(
            rows.iter().any(|(a, _, o)| a == action && o == "success"),
            "no {action} in {rows:?}"
        );
    }
    drop(containers);
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_receiver_that_fails_twice_gets_the_message_on_the_third_try(pool: PgPool) {
    let receiver = Receiver::start().await;
    plan::init_cursors(&pool).await.unwrap();
    add_channel(&pool, webhook("ops", &receiver.url("ops"), None)).await;
    add_route(
        &pool,
        route("all to ops", "finding", "info", "channel", Some("ops")),
    )
    .await;
    let id = workload(&pool, "web").await;
    burst(&pool, id, "priv.privileged", "critical", 1).await;

    receiver.fail_next(2);
    let t0 = Utc::now();
    assert_eq!(plan_at(&pool, t0).await.deliveries, 1);
    let delivery: i64 = sqlx::query_scalar("select id from notification_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();

    assert_eq!(deliver_at(&pool, t0).await, 1);
    let (status, attempts, error) = status_of(&pool, delivery).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    let error = error.unwrap();
    assert!(error.contains("500"), "{error}");
    assert!(
        !error.contains("XYZZY"),
        "the URL's token is never in an error"
    );
    // Not due yet: the backoff holds it.
    assert_eq!(deliver_at(&pool, t0).await, 0);

    let t1 = t0 + chrono::Duration::minutes(5);
    assert_eq!(deliver_at(&pool, t1).await, 1);
    assert_eq!(status_of(&pool, delivery).await.0, "failed");
    let t2 = t1 + chrono::Duration::minutes(5);
    assert_eq!(deliver_at(&pool, t2).await, 1);
    let (status, attempts, error) = status_of(&pool, delivery).await;
    assert_eq!((status.as_str(), attempts, error), ("sent", 3, None));

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let ids: Vec<_> = received
        .iter()
        .map(|r| r.headers.get(send::DELIVERY_HEADER).unwrap().clone())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same message each time"
    );
    for request in &received {
        assert_signed(request);
    }
    assert_eq!(received[2].json()["total"], 1);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_burst_of_100_findings_produces_one_digest(pool: PgPool) {
    let receiver = Receiver::start().await;
    plan::init_cursors(&pool).await.unwrap();
    add_channel(&pool, webhook("ops", &receiver.url("ops"), None)).await;
    add_route(
        &pool,
        route("critical", "finding", "critical", "channel", Some("ops")),
    )
    .await;
    let id = workload(&pool, "web").await;
    // Below the route's severity: never told.
    burst(&pool, id, "caps.add_critical", "high", 5).await;
    burst(&pool, id, "priv.privileged", "critical", 100).await;

    let t0 = Utc::now();
    let report = plan_at(&pool, t0).await;
    assert_eq!((report.items, report.deliveries), (100, 1));
    deliver_at(&pool, t0).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one digest for the burst");
    let body = received[0].json();
    assert_eq!(body["total"], 100);
    assert_eq!(body["items"].as_array().unwrap().len(), 10);
    assert_eq!(body["more"], 90);
    assert_eq!(body["title"], "100 new findings");
    assert_eq!(body["link"], format!("{PUBLIC}/workloads"));

    // Inside the window: new findings wait for the next message; re-evaluations add nothing.
    sqlx::query("update findings set last_seen = now()")
        .execute(&pool)
        .await
        .unwrap();
    let other = workload(&pool, "api").await;
    burst(&pool, other, "priv.privileged", "critical", 3).await;
    let t1 = t0 + chrono::Duration::minutes(3);
    let report = plan_at(&pool, t1).await;
    assert_eq!((report.items, report.deliveries), (3, 0));
    deliver_at(&pool, t1).await;
    assert_eq!(receiver.received().len(), 1);

    // After the window: one message summarising what came in.
    let t2 = t0 + chrono::Duration::minutes(11);
    assert_eq!(plan_at(&pool, t2).await.deliveries, 1);
    deliver_at(&pool, t2).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].json()["total"], 3);
    assert_eq!(received[1].json()["more"], 0);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_large_first_sync_is_planned_in_batches_and_an_existing_backlog_is_not_told(
    pool: PgPool,
) {
    let receiver = Receiver::start().await;
    let id = workload(&pool, "web").await;
    // Before notifications ever ran: a backlog that is never announced.
    burst(&pool, id, "priv.privileged", "critical", 50).await;
    plan::init_cursors(&pool).await.unwrap();
    add_channel(&pool, webhook("ops", &receiver.url("ops"), None)).await;
    add_route(
        &pool,
        route("critical", "finding", "critical", "channel", Some("ops")),
    )
    .await;
    let t0 = Utc::now();
    assert_eq!(plan_at(&pool, t0).await, PlanReport::default());

    // A big sync: read in batches of `batch`, all in one digest.
    let other = workload(&pool, "api").await;
    sqlx::query(
        "insert into findings (workload_id, container, check_id, severity, layer, message)
         select $1, 'c-' || g, 'priv.privileged', 'critical', 'orchestration', 'privileged'
         from generate_series(1, 2500) g",
    )
    .bind(other)
    .execute(&pool)
    .await
    .unwrap();
    let first = plan_at(&pool, t0).await;
    assert!(first.more, "{first:?}");
    assert_eq!((first.items, first.deliveries), (1000, 1));
    let mut rounds = 1;
    loop {
        rounds += 1;
        if !plan_at(&pool, t0).await.more {
            break;
        }
    }
    assert_eq!(rounds, 3, "batches of 1,000");
    let t1 = t0 + chrono::Duration::minutes(11);
    plan_at(&pool, t1).await;
    deliver_at(&pool, t1).await;
    let totals: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| r.json()["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, vec![1000, 1500], "two messages for 2,500 findings");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_reassigned_workload_notifies_its_new_owner_and_security_hears_too(pool: PgPool) {
    let receiver = Receiver::start().await;
    plan::init_cursors(&pool).await.unwrap();
    let payments = team(&pool, "payments", "development").await;
    let platform = team(&pool, "platform", "platform").await;
    team(&pool, "secops", "security").await;
    add_channel(
        &pool,
        webhook("payments", &receiver.url("payments"), Some("payments")),
    )
    .await;
    add_channel(
        &pool,
        webhook("platform", &receiver.url("platform"), Some("platform")),
    )
    .await;
    add_channel(
        &pool,
        webhook("secops", &receiver.url("secops"), Some("secops")),
    )
    .await;
    add_channel(&pool, webhook("unowned", &receiver.url("unowned"), None)).await;
    add_route(
        &pool,
        route("owners", "finding", "high", "owner", Some("unowned")),
    )
    .await;
    add_route(
        &pool,
        route("security", "finding", "critical", "security", None),
    )
    .await;

    let id = workload(&pool, "web").await;
    own(&pool, id, "orchestration", payments).await;
    burst(&pool, id, "priv.privileged", "critical", 1).await;
    let t0 = Utc::now();
    plan_at(&pool, t0).await;
    deliver_at(&pool, t0).await;

    // Re-assigned: the next finding goes to the new owner.
    own(&pool, id, "orchestration", platform).await;
    burst(&pool, id, "ns.host_pid", "high", 1).await;
    // Nobody owns this one: the route's fallback channel hears it.
    let stray = workload(&pool, "stray").await;
    burst(&pool, stray, "ns.host_pid", "high", 1).await;
    plan_at(&pool, t0).await;
    deliver_at(&pool, t0).await;

    let mut paths: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.path.split('/').nth(2).unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["payments", "platform", "secops", "unowned"]);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn dead_letters_show_in_the_console_and_an_admin_retries_them(pool: PgPool) {
    let receiver = Receiver::start().await;
    let mut config = test_config();
    config.notifications.interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    plan::init_cursors(&pool).await.unwrap();
    let admin = app.login_as(Role::Admin).await;
    // Through the console's forms.
    let response = admin
        .post_form(
            "/admin/notifications/channels",
            &[
                ("name", "flaky"),
                ("kind", "webhook"),
                ("url", &receiver.url("flaky")),
                ("signing_key", KEY),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let bad = admin
        .post_form(
            "/admin/notifications/channels",
            &[
                ("name", "broken"),
                ("kind", "webhook"),
                ("url", "ftp://nope/XYZZY"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    assert!(!bad.text().await.unwrap().contains("XYZZY"));
    let response = admin
        .post_form(
            "/admin/notifications/routes",
            &[
                ("name", "everything"),
                ("event", "finding"),
                ("min_severity", "info"),
                ("audience", "channel"),
                ("channel", "flaky"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);

    let id = workload(&pool, "web").await;
    burst(&pool, id, "priv.privileged", "critical", 1).await;
    receiver.fail_next(100);
    let mut now = Utc::now();
    plan_at(&pool, now).await;
    for _ in 0..5 {
        deliver_at(&pool, now).await;
        now += chrono::Duration::hours(2);
    }
    let delivery: i64 = sqlx::query_scalar("select id from notification_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status_of(&pool, delivery).await.0, "dead");
    assert_eq!(receiver.received().len(), 5);

    let page = admin.get("/admin/notifications").await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(
        !text.contains("XYZZY") && !text.contains(KEY),
        "secrets never shown"
    );
    let document = html(&text);
    let dead = texts(&document, "table.notification-dead tbody tr");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("HTTP 500"), "{dead:?}");
    assert_eq!(
        texts(&document, "td.channel-target"),
        vec![format!("{}/…", receiver.base)]
    );
    let api: Value = admin
        .get("/api/v1/notification-deliveries?status=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["deliveries"][0]["id"], delivery);

    receiver.fail_next(0);
    let response = admin
        .post_form(
            &format!("/admin/notifications/deliveries/{delivery}/retry"),
            &[],
        )
        .await;
    assert_eq!(response.status(), 303);
    deliver_at(&pool, Utc::now() + chrono::Duration::seconds(1)).await;
    assert_eq!(status_of(&pool, delivery).await.0, "sent");
    assert_eq!(receiver.received().len(), 6);

    app.assert_mutations_audited().await;
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|(a, _, o)| a == "notification.delivery.retry" && o == "success"));
    assert!(rows
        .iter()
        .any(|(a, t, o)| a == "notification.channel.create"
            && t == "channel broken"
            && o == "failure"));
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_configured_email_channel_gets_the_mail_with_the_link_and_no_secret_value(pool: PgPool) {
    let smtp = SmtpListener::start().await;
    let mut config = test_config();
    config.public_url = PUBLIC.into();
    config.notifications.interval = Duration::from_millis(100);
    config.notifications.channels = vec![ChannelInput {
        name: "security-mail".into(),
        kind: "email".into(),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(smtp.addr.port()),
        smtp_security: Some("none".into()),
        smtp_username: Some("harbormaster".into()),
        smtp_password: Some(Secret::new("smtp-password-XYZZY".into())),
        mail_from: Some("harbormaster@example.com".into()),
        mail_to: vec!["security@example.com".into()],
        ..ChannelInput::default()
    }];
    config.notifications.routes = vec![route(
        "high to security mail",
        "finding",
        "high",
        "channel",
        Some("security-mail"),
    )];
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    wait_for_the_loop(&pool).await;
    let (origin, password): (String, Option<String>) = sqlx::query_as(
        "select origin, smtp_password from notification_channels where name = 'security-mail'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((origin.as_str(), password), ("config", None));

    // A container with a literal secret in its environment, through the collectors' ingest path.
    let id = workload(&pool, "billing").await;
    let doc = json!({
        "Id": "id-billing",
        "Name": "/billing",
        "Config": {"Image": "busybox:1", "Env": ["API_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"]},
        "HostConfig": {},
    });
    let evaluated = findings::evaluate_docker(&doc, &Context::default()).unwrap();
    let mut tx = pool.begin().await.unwrap();
    findings_store::sync_findings(&mut tx, &[evaluated.for_workload(id)])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while smtp.mails().is_empty() {
        let state: Vec<(String, Option<String>)> =
            sqlx::query_as("select status, last_error from notification_deliveries")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "no mail; deliveries: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = smtp.mails()[0].clone();
    let mail = unfold(&mail);
    assert!(mail.contains("security@example.com"), "{mail}");
    assert!(mail.contains("Subject: [Harbormaster]"), "{mail}");
    assert!(
        mail.contains(&format!("{PUBLIC}/workloads/{id}#posture")),
        "{mail}"
    );
    assert!(mail.contains("API_TOKEN"), "the variable is named: {mail}");
    assert!(!mail.contains("ghp_"), "never the value: {mail}");
    assert!(!mail.contains("XYZZY"));
    assert_eq!(
        smtp.mails().len(),
        1,
        "one digest for the container's findings"
    );
    // The password came from the configuration, not the database.
    assert_eq!(
        smtp.credentials(),
        vec!["harbormaster smtp-password-XYZZY".to_string()]
    );
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn slack_and_teams_channels_get_their_formats_and_redirects_to_other_hosts_are_not_followed(
    pool: PgPool,
) {
    let receiver = Receiver::start().await;
    // A hook that redirects elsewhere (another host name for the same receiver).
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let elsewhere = format!("http://localhost:{port}/hook/elsewhere/x");
    let redirector = axum::Router::new().route(
        "/{*rest}",
        axum::routing::post(move || {
            let to = elsewhere.clone();
            async move { axum::response::Redirect::temporary(&to) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });

    plan::init_cursors(&pool).await.unwrap();
    for (name, kind, url) in [
        ("chat", "slack", receiver.url("slack")),
        ("teams", "teams", receiver.url("teams")),
        ("moved", "slack", redirect_url),
    ] {
        add_channel(
            &pool,
            ChannelInput {
                name: name.into(),
                kind: kind.into(),
                url: Some(Secret::new(url)),
                ..ChannelInput::default()
            },
        )
        .await;
        add_route(
            &pool,
            route(
                &format!("to {name}"),
                "finding",
                "high",
                "channel",
                Some(name),
            ),
        )
        .await;
    }
    let id = workload(&pool, "web").await;
    burst(&pool, id, "priv.privileged", "critical", 12).await;
    let now = Utc::now();
    assert_eq!(plan_at(&pool, now).await.deliveries, 3);
    deliver_at(&pool, now).await;

    let received = receiver.received();
    let slack = received
        .iter()
        .find(|r| r.path.starts_with("/hook/slack/"))
        .expect("the Slack hook was called")
        .json();
    assert!(
        slack["text"].as_str().unwrap().contains("and 2 more"),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert!(slack
        .to_string()
        .contains(&format!("{PUBLIC}/workloads/{id}#posture")));
    let teams = received
        .iter()
        .find(|r| r.path.starts_with("/hook/teams/"))
        .expect("the Teams hook was called")
        .json();
    assert_eq!(teams["@type"], "MessageCard");
    assert_eq!(teams["sections"].as_array().unwrap().len(), 10);
    assert_eq!(teams["text"], "and 2 more");
    assert!(
        !received
            .iter()
            .any(|r| r.path.starts_with("/hook/elsewhere/")),
        "a redirect to another host is not followed"
    );
    let moved: (String, Option<String>) = sqlx::query_as(
        "select d.status, d.last_error from notification_deliveries d
         join notification_channels c on c.id = d.channel_id where c.name = 'moved'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(moved.0, "failed");
    assert!(moved.1.unwrap().contains("307"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn runtime_events_incident_steps_and_expiring_waivers_are_told_once(pool: PgPool) {
    let receiver = Receiver::start().await;
    plan::init_cursors(&pool).await.unwrap();
    add_channel(&pool, webhook("ops", &receiver.url("ops"), None)).await;
    for event in ["runtime_event", "incident", "waiver_expiring"] {
        add_route(&pool, route(event, event, "info", "channel", Some("ops"))).await;
    }
    let id = workload(&pool, "web").await;
    let source: i64 = sqlx::query_scalar("select source_id from workloads where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into runtime_events (source_id, workload_id, kind, severity, summary)
         values ($1, $2, 'exec', 'high', 'exec session: sh')",
    )
    .bind(source)
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let incident: i64 = sqlx::query_scalar(
        "insert into incidents (title, severity, opened_by) values ('crypto miner', 'critical', 'alice')
         returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into incident_actions (incident_id, kind, status, actor) values ($1, 'open', 'succeeded', 'alice')",
    )
    .bind(incident)
    .execute(&pool)
    .await
    .unwrap();
    let now = Utc::now();
    sqlx::query(
        "insert into waivers (check_id, workload_id, reason, requested_by, approved_by, approved_at, status, expires_at)
         values ('priv.privileged', $1, 'vendor image', 'bob', 'carol', now(), 'approved', $2),
                ('ns.host_pid', $1, 'later', 'bob', 'carol', now(), 'approved', $3)",
    )
    .bind(id)
    .bind(now + chrono::Duration::days(3))
    .bind(now + chrono::Duration::days(30))
    .execute(&pool)
    .await
    .unwrap();

    let report = plan_at(&pool, now).await;
    assert_eq!((report.items, report.deliveries), (3, 3));
    deliver_at(&pool, now).await;
    let mut links: Vec<(String, String)> = receiver
        .received()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["event"].as_str().unwrap().to_string(),
                body["items"][0]["link"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    links.sort();
    assert_eq!(
        links,
        vec![
            ("incident".into(), format!("{PUBLIC}/incidents/{incident}")),
            (
                "runtime_event".into(),
                format!("{PUBLIC}/workloads/{id}#timeline")
            ),
            (
                "waiver_expiring".into(),
                format!("{PUBLIC}/workloads/{id}#posture")
            ),
        ]
    );

    // A day later the same waiver is not told again.
    let later = now + chrono::Duration::days(1);
    assert_eq!(plan_at(&pool, later).await.items, 0);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_finding_committed_after_a_newer_one_is_still_told(pool: PgPool) {
    plan::init_cursors(&pool).await.unwrap();
    add_channel(&pool, webhook("ops", "http://127.0.0.1:9/hook", None)).await;
    add_route(
        &pool,
        route("all", "finding", "info", "channel", Some("ops")),
    )
    .await;
    let slow = workload(&pool, "slow").await;
    let fast = workload(&pool, "fast").await;

    // A long collector write takes its finding's id first and commits last.
    let mut long_write = pool.begin().await.unwrap();
    let early: i64 = sqlx::query_scalar(
        "insert into findings (workload_id, check_id, severity, layer, message)
         values ($1, 'priv.privileged', 'critical', 'orchestration', 'privileged')
         returning id",
    )
    .bind(slow)
    .fetch_one(&mut *long_write)
    .await
    .unwrap();
    burst(&pool, fast, "ns.host_pid", "high", 1).await;
    let late: i64 = sqlx::query_scalar("select id from findings where workload_id = $1")
        .bind(fast)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(late > early);

    // While the long write is open, nothing after it is planned: the cursor cannot pass it.
    let now = Utc::now();
    assert_eq!(plan_at(&pool, now).await.items, 0);
    long_write.commit().await.unwrap();
    assert_eq!(plan_at(&pool, now).await.items, 2);
    let mut subjects: Vec<String> =
        sqlx::query_scalar("select subject from notification_items order by subject")
            .fetch_all(&pool)
            .await
            .unwrap();
    subjects.sort();
    let mut expected = vec![format!("finding:{early}"), format!("finding:{late}")];
    expected.sort();
    assert_eq!(subjects, expected);
    assert_eq!(plan_at(&pool, now).await.items, 0, "each is told once");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_generated_team_review_is_told_to_that_team_once(pool: PgPool) {
    use harbormaster::review::{self, store::NewReview};

    let receiver = Receiver::start().await;
    plan::init_cursors(&pool).await.unwrap();
    team(&pool, "payments", "development").await;
    team(&pool, "search", "development").await;
    add_channel(
        &pool,
        webhook("pay", &receiver.url("pay"), Some("payments")),
    )
    .await;
    add_channel(
        &pool,
        webhook("find", &receiver.url("find"), Some("search")),
    )
    .await;
    add_route(
        &pool,
        route("reviews", "review_ready", "info", "owner", None),
    )
    .await;

    let data = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.data_dir = data.path().to_path_buf();
    let mut conn = pool.acquire().await.unwrap();
    let (asked, _) = review::store::request(
        &mut conn,
        NewReview {
            team: Some("payments".into()),
            formats: vec![review::Format::Html],
            trigger: "manual",
            schedule_key: None,
            requested_by: "alice".into(),
            idempotency_key: None,
        },
    )
    .await
    .unwrap();
    drop(conn);
    // Queued: nothing to tell yet.
    assert_eq!(plan_at(&pool, Utc::now()).await.items, 0);
    let done = review::worker::run_next(&pool, &config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.id, done.status.as_str()), (asked.id, "succeeded"));

    let now = Utc::now();
    let report = plan_at(&pool, now).await;
    assert_eq!((report.items, report.deliveries), (1, 1));
    deliver_at(&pool, now).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "only the review's team hears of it");
    assert!(
        received[0].path.starts_with("/hook/pay/"),
        "{}",
        received[0].path
    );
    let body = received[0].json();
    assert_eq!(body["event"], "review_ready");
    assert_eq!(
        body["items"][0]["link"],
        format!("{PUBLIC}/reviews/{}", asked.id)
    );
    assert!(
        body["items"][0]["title"]
            .as_str()
            .unwrap()
            .contains("team payments"),
        "{body}"
    );
    // Told once.
    assert_eq!(
        plan_at(&pool, now + chrono::Duration::minutes(30))
            .await
            .items,
        0
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_admin_sets_up_a_channel_and_a_route_in_the_browser(pool: PgPool) {
    use fantoccini::Locator;

    let mut config = test_config();
    config.notifications.interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    team(&pool, "payments", "development").await;
    app.create_user("ada", Role::Admin, "correct horse battery staple")
        .await;
    let Some(browser) = crate::common::browser::Browser::start().await else {
        return;
    };
    let client = &browser.client;
    browser
        .sign_in(&app.url, "ada", "correct horse battery staple")
        .await;
    client.goto(&app.url("/admin/notifications")).await.unwrap();
    assert_eq!(
        client.title().await.unwrap(),
        "Notifications · Harbormaster"
    );

    let form = client
        .form(Locator::Css("form[action='/admin/notifications/channels']"))
        .await
        .unwrap();
    form.set_by_name("name", "payments-slack").await.unwrap();
    form.set_by_name("kind", "slack").await.unwrap();
    form.set_by_name("team", "payments").await.unwrap();
    form.set_by_name("url", "https://hooks.example.com/services/T0/B0/XYZZY")
        .await
        .unwrap();
    form.submit().await.unwrap();
    let notice = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(notice.text().await.unwrap().contains("not shown again"));
    let source = client.source().await.unwrap();
    assert!(!source.contains("XYZZY"), "the URL's token is never shown");
    assert!(source.contains("https://hooks.example.com/…"));

    let form = client
        .form(Locator::Css("form[action='/admin/notifications/routes']"))
        .await
        .unwrap();
    form.set_by_name("name", "high findings to owners")
        .await
        .unwrap();
    form.set_by_name("event", "finding").await.unwrap();
    form.set_by_name("min_severity", "high").await.unwrap();
    form.set_by_name("audience", "owner").await.unwrap();
    form.submit().await.unwrap();
    // The page after the submit: wait for it rather than race its load.
    let routes = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table.notification-routes"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(routes.contains("high findings to owners"), "{routes}");
    assert!(routes.contains("the owning team"), "{routes}");
    browser.screenshot("admin-notifications").await;
    browser.close().await;
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}
