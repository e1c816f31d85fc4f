//! Persisted findings: their lifecycle (open → resolved, retired, never deleted), waivers and
//! scores, the API, and the live engine end to end through the real Docker collector
//! (containers named `hm-test-findings-<random>-…`, removed by a guard, also on failure).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use harbormaster::collect::docker::Collector;
use harbormaster::config::parse_docker_endpoint;
use harbormaster::findings::{self, store, waivers};
use harbormaster::inventory::sources;
use harbormaster::posture::Context;
use serde_json::{json, Value};
use sqlx::PgPool;

use harbormaster::auth::Role;

use crate::common::{live_docker_socket, TestApp};

pub(crate) const LOCAL: &str = "unix:///var/run/docker.sock";
/// This suite's own image repository (another suite rebuilding its images changes nothing here).
const IMAGE_REPO: &str = "hm-test-findings/busybox";
const IMAGE: &str = "hm-test-findings/busybox:1";

/// A workload row to attach findings to.
async fn workload(pool: &PgPool, source: i64, namespace: &str, name: &str) -> i64 {
    sqlx::query_scalar(
        "insert into workloads (source_id, namespace, kind, name, stage)
         values ($1, $2, 'Container', $3, 'run') returning id",
    )
    .bind(source)
    .bind(namespace)
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn inspect(name: &str, host_config: Value) -> Value {
    json!({
        "Id": format!("id-{name}"),
        "Name": format!("/{name}"),
        "Config": {"Image": "busybox:1", "Env": ["API_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"]},
        "HostConfig": host_config,
    })
}

/// Evaluates `doc` as the given workload's container and syncs it, in its own transaction.
async fn sync(pool: &PgPool, workload_id: i64, doc: &Value) {
    let evaluated = findings::evaluate_docker(doc, &Context::default()).unwrap();
    let mut tx = pool.begin().await.unwrap();
    store::sync_findings(&mut tx, &[evaluated.for_workload(workload_id)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    status: String,
    first_seen: chrono::DateTime<Utc>,
    last_seen: chrono::DateTime<Utc>,
    resolved_at: Option<chrono::DateTime<Utc>>,
    resolved_reason: Option<String>,
    evidence: Value,
}

async fn rows(pool: &PgPool, workload_id: i64, check: &str) -> Vec<Row> {
    sqlx::query_as(
        "select id, status, first_seen, last_seen, resolved_at, resolved_reason, evidence
         from findings where workload_id = $1 and check_id = $2 order by id",
    )
    .bind(workload_id)
    .bind(check)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn grade(pool: &PgPool, workload_id: i64) -> (Option<String>, i32, i32) {
    sqlx::query_as("select grade, risk_score, findings_critical from workloads where id = $1")
        .bind(workload_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_finding_opens_stays_open_while_failing_and_resolves_when_fixed(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", LOCAL)
        .await
        .unwrap();
    let id = workload(&pool, source, "", "web").await;
    let privileged = inspect("web", json!({"Privileged": true}));

    sync(&pool, id, &privileged).await;
    let first = rows(&pool, id, "priv.privileged").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, "open");
    assert_eq!(grade(&pool, id).await.0.as_deref(), Some("F"));
    // The secret check fired, but no value is kept.
    let secret = rows(&pool, id, "secrets.env_literal").await;
    assert_eq!(secret.len(), 1);
    assert!(!secret[0].evidence.to_string().contains("ghp_"));

    sync(&pool, id, &privileged).await;
    let second = rows(&pool, id, "priv.privileged").await;
    assert_eq!(second.len(), 1, "still failing: the same finding");
    assert_eq!(second[0].first_seen, first[0].first_seen);
    assert!(second[0].last_seen > first[0].last_seen);

    sync(&pool, id, &inspect("web", json!({"Privileged": false}))).await;
    let fixed = rows(&pool, id, "priv.privileged").await;
    assert_eq!(fixed[0].status, "resolved");
    assert_eq!(fixed[0].resolved_reason.as_deref(), Some("fixed"));
    assert!(fixed[0].resolved_at.is_some());
    assert_ne!(grade(&pool, id).await.0.as_deref(), Some("F"));

    // Failing again opens a new finding; the resolved one stays.
    sync(&pool, id, &privileged).await;
    let again = rows(&pool, id, "priv.privileged").await;
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].status, "resolved");
    assert_eq!(again[1].status, "open");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_container_scoped_sync_leaves_the_other_replicas_findings_open(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", LOCAL)
        .await
        .unwrap();
    let id = workload(&pool, source, "shop", "web").await;
    sync(
        &pool,
        id,
        &inspect("shop-web-1", json!({"Privileged": true})),
    )
    .await;
    sync(
        &pool,
        id,
        &inspect("shop-web-2", json!({"Privileged": true})),
    )
    .await;
    sync(&pool, id, &inspect("shop-web-2", json!({}))).await;
    let statuses: Vec<(String, String)> = sqlx::query_as(
        "select container, status from findings where workload_id = $1
         and check_id = 'priv.privileged' order by container",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("shop-web-1".to_string(), "open".to_string()),
            ("shop-web-2".to_string(), "resolved".to_string())
        ]
    );

    // Scaled down to replica 3 alone: the findings of the replicas that are gone close as
    // `removed`, the live one's stay open.
    sync(
        &pool,
        id,
        &inspect("shop-web-3", json!({"Privileged": true})),
    )
    .await;
    sqlx::query(
        "insert into instances (workload_id, source_id, external_id, name, state, raw)
         values ($1, $2, 'id-shop-web-3', 'shop-web-3', 'running', '{}')",
    )
    .bind(id)
    .bind(source)
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        store::close_removed_containers(&mut conn, &[id])
            .await
            .unwrap()
            > 0
    );
    drop(conn);
    let statuses: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select container, status, resolved_reason from findings where workload_id = $1
         and check_id = 'priv.privileged' order by container",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        statuses,
        vec![
            (
                "shop-web-1".into(),
                "resolved".into(),
                Some("removed".into())
            ),
            ("shop-web-2".into(), "resolved".into(), Some("fixed".into())),
            ("shop-web-3".into(), "open".into(), None),
        ]
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_retired_workloads_findings_close_as_retired_and_findings_are_never_deleted(
    pool: PgPool,
) {
    let source = sources::ensure(&pool, "docker", "local", LOCAL)
        .await
        .unwrap();
    let id = workload(&pool, source, "", "old").await;
    sync(&pool, id, &inspect("old", json!({"Privileged": true}))).await;
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::close_retired(&mut conn, &[id]).await.unwrap() > 0);
    drop(conn);
    let closed = rows(&pool, id, "priv.privileged").await;
    assert_eq!(closed[0].status, "resolved");
    assert_eq!(closed[0].resolved_reason.as_deref(), Some("retired"));
    let open: i64 = sqlx::query_scalar(
        "select count(*) from findings where workload_id = $1 and status = 'open'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 0);
    assert_eq!(grade(&pool, id).await, (Some("A".into()), 0, 0));

    let deleted = sqlx::query("delete from findings where id = $1")
        .bind(closed[0].id)
        .execute(&pool)
        .await;
    assert!(deleted.is_err(), "a finding was deleted");
    assert_eq!(rows(&pool, id, "priv.privileged").await.len(), 1);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_waived_finding_leaves_the_grade_stays_visible_and_counts_again_on_expiry(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", LOCAL)
        .await
        .unwrap();
    let id = workload(&pool, source, "ops", "agent").await;
    let doc = inspect("agent", json!({"Privileged": true}));
    sync(&pool, id, &doc).await;
    let (before, risk_before, _) = grade(&pool, id).await;
    assert_eq!(before.as_deref(), Some("F"));

    let now = Utc::now();
    let mut conn = pool.acquire().await.unwrap();
    let waiver = waivers::create(
        &mut conn,
        &waivers::NewWaiver {
            check: "priv.privileged".into(),
            workload_id: None,
            namespace: Some("ops".into()),
            source_id: Some(source),
            reason: "the node agent needs it".into(),
            requested_by: "dev@example.com".into(),
            expires_at: now + ChronoDuration::days(3),
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(waiver.status, "requested");
    // A request waives nothing.
    assert_eq!(grade(&pool, id).await.0.as_deref(), Some("F"));

    let approved = waivers::decide(&mut conn, waiver.id, true, "admin@example.com", now)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(approved.status, "approved");
    assert!(
        approved.expiring_soon,
        "3 days left is within the 7-day warning"
    );
    assert_eq!(approved.findings_waived, 1);
    let (after, risk_after, critical) = grade(&pool, id).await;
    assert_ne!(after.as_deref(), Some("F"));
    assert_eq!(critical, 0);
    assert!(risk_after < risk_before);
    // Still visible, marked waived; a new sync keeps it waived.
    sync(&pool, id, &doc).await;
    let waived: (String, Option<i64>) = sqlx::query_as(
        "select status, waiver_id from findings where workload_id = $1 and check_id = 'priv.privileged'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(waived, ("open".to_string(), Some(waiver.id)));
    let soon = waivers::list(
        &pool,
        &waivers::WaiverFilter {
            expiring_within_days: Some(7),
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        soon.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![waiver.id]
    );

    // Nothing is due yet; four days later it is.
    assert!(waivers::expire_waivers(&pool, now)
        .await
        .unwrap()
        .is_empty());
    let expired = waivers::expire_waivers(&pool, now + ChronoDuration::days(4))
        .await
        .unwrap();
    assert_eq!(expired, vec![waiver.id]);
    assert_eq!(grade(&pool, id).await.0.as_deref(), Some("F"));
    let waiver_id: Option<i64> = sqlx::query_scalar(
        "select waiver_id from findings where workload_id = $1 and check_id = 'priv.privileged'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(waiver_id, None);
}

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.viewer_get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_api_filters_pages_summarizes_and_takes_waiver_requests(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", LOCAL)
        .await
        .unwrap();
    let a = workload(&pool, source, "team-a", "a").await;
    let b = workload(&pool, source, "team-b", "b").await;
    sync(&pool, a, &inspect("a", json!({"Privileged": true}))).await;
    sync(&pool, b, &inspect("b", json!({"PidMode": "host"}))).await;
    let app = TestApp::spawn(pool.clone()).await;

    let (status, page) = get_json(&app, "/api/v1/findings?check=priv.privileged&status=open").await;
    assert_eq!(status, 200);
    let found = page["findings"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["workload_id"], a);
    assert_eq!(found[0]["severity"], "critical");
    assert_eq!(found[0]["waived"], false);
    let (_, detail) = get_json(&app, &format!("/api/v1/workloads/{a}")).await;
    assert_eq!(detail["workload"]["grade"], "F");
    assert_eq!(detail["workload"]["findings_critical"], 1);

    let (_, page) = get_json(
        &app,
        &format!("/api/v1/findings?namespace=team-b&workload={b}"),
    )
    .await;
    let found = page["findings"].as_array().unwrap();
    assert!(found.iter().any(|f| f["check"] == "ns.host_pid"));
    assert!(found.iter().all(|f| f["workload_id"] == b));

    let (_, page) = get_json(&app, "/api/v1/findings?severity=critical&layer=runtime").await;
    assert!(page["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["severity"] == "critical" && f["layer"] == "runtime"));

    // Keyset pagination walks every finding once.
    let total: i64 = sqlx::query_scalar("select count(*) from findings")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut path = "/api/v1/findings?limit=3".to_string();
    loop {
        let (_, page) = get_json(&app, &path).await;
        seen.extend(
            page["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/findings?limit=3&after={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len() as i64, total);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    for bad in [
        "team=x",
        "severity=urgent",
        "status=closed",
        "colour=red",
        "limit=0",
    ] {
        let (status, body) = get_json(&app, &format!("/api/v1/findings?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (status, summary) = get_json(&app, "/api/v1/posture/summary?by=namespace").await;
    assert_eq!(status, 200);
    let computed_at: DateTime<Utc> = summary["computed_at"].as_str().unwrap().parse().unwrap();
    assert!(
        Utc::now() - computed_at < ChronoDuration::seconds(5),
        "{summary}"
    );
    let groups = summary["groups"].as_array().unwrap();
    let team_a = groups.iter().find(|g| g["key"] == "team-a").unwrap();
    assert_eq!(team_a["critical"], 1);
    assert_eq!(team_a["worst_grade"], "F");
    assert_eq!(team_a["workloads_affected"], 1);
    let (_, by_check) = get_json(&app, "/api/v1/posture/summary?by=check").await;
    let privileged = by_check["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "priv.privileged")
        .unwrap();
    assert_eq!(privileged["critical"], 1);
    // By team: the findings routed to the team owning their layer, its workloads' grades.
    let team: i64 = sqlx::query_scalar(
        "insert into teams (name, kind) values ('alpha', 'development') returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into workload_owners (workload_id, layer, team_id, via, provenance) \
         select $1, layer, $2, 'assignment', 'assigned' \
         from unnest(array['application','image','runtime','orchestration','host']) as layer",
    )
    .bind(a)
    .bind(team)
    .execute(&pool)
    .await
    .unwrap();
    let (status, by_team) = get_json(&app, "/api/v1/posture/summary?by=team").await;
    assert_eq!(status, 200, "{by_team}");
    let alpha = by_team["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "alpha")
        .unwrap();
    assert_eq!(alpha["critical"], 1, "{alpha}");
    assert_eq!(alpha["workloads_affected"], 1);
    assert_eq!(alpha["workloads"], 1);
    assert_eq!(alpha["worst_grade"], "F");
    assert_eq!(
        get_json(&app, "/api/v1/posture/summary?by=colour").await.0,
        400
    );

    let request = json!({
        "check": "priv.privileged", "workload_id": a, "reason": "legacy agent",
        "expires_at": (Utc::now() + ChronoDuration::days(30)).to_rfc3339(),
    });
    // A viewer may not request; a responder may, and is recorded as the requester.
    let viewer = app.login_as(Role::Viewer).await;
    assert_eq!(
        viewer
            .post_json("/api/v1/waivers", &request)
            .await
            .status()
            .as_u16(),
        403
    );
    let responder = app.login_as(Role::Responder).await;
    let response = responder.post_json("/api/v1/waivers", &request).await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "requested");
    assert_eq!(created["requested_by"], responder.name.as_str());
    let approve = format!("/api/v1/waivers/{}/approve", created["id"]);
    // Only an admin approves.
    assert_eq!(
        responder
            .post_json(&approve, &json!({}))
            .await
            .status()
            .as_u16(),
        403
    );
    let admin = app.login_as(Role::Admin).await;
    let response = admin.post_json(&approve, &json!({})).await;
    assert_eq!(response.status().as_u16(), 200);
    let approved: Value = response.json().await.unwrap();
    assert_eq!(approved["approved_by"], admin.name.as_str());
    let (_, page) = get_json(&app, "/api/v1/findings?check=priv.privileged&waived=true").await;
    assert_eq!(page["findings"].as_array().unwrap().len(), 1);
    let (_, list) = get_json(&app, "/api/v1/waivers?status=approved").await;
    assert_eq!(list["waivers"][0]["findings_waived"], 1);
    // Approving twice conflicts; a waiver without a scope is refused.
    assert_eq!(
        admin
            .post_json(&approve, &json!({}))
            .await
            .status()
            .as_u16(),
        409
    );
    let mut unscoped = request.clone();
    unscoped.as_object_mut().unwrap().remove("workload_id");
    let refused = responder.post_json("/api/v1/waivers", &unscoped).await;
    assert_eq!(refused.status().as_u16(), 422);
    let target = format!("waiver {}", created["id"]);
    let rows = app.audit_rows().await;
    for action in ["waiver.request", "waiver.approve"] {
        assert!(
            rows.iter()
                .any(|(a, t, o)| a == action && *t == target && o == "success"),
            "no {action} row in {rows:?}"
        );
    }
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

/// Containers whose names start with a unique prefix, removed on drop.
pub(crate) struct Containers {
    prefix: String,
}

impl Containers {
    pub(crate) fn new() -> Self {
        static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if !*built {
            let present = std::process::Command::new("docker")
                .args(["images", "-q", IMAGE])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if !present {
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
        }
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("hm-test-findings-{}", &random[..10]),
        }
    }

    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// `docker create` (the privileged ones cannot start here; created ones are collected).
    pub(crate) fn create(&self, suffix: &str, extra: &[&str]) {
        let name = self.name(suffix);
        let mut args = vec!["create", "--name", &name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "3600"]);
        let output = std::process::Command::new("docker")
            .args(&args)
            .output()
            .expect("the docker CLI runs");
        assert!(
            output.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("name=^/{}", self.prefix);
        if let Ok(output) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

/// (check, severity) of the open findings of the workload named `name`.
async fn open_findings(pool: &PgPool, name: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "select f.check_id, f.severity from findings f join workloads w on w.id = f.workload_id
         where w.name = $1 and f.status = 'open' order by f.check_id",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn dangerous_containers_on_the_real_engine_produce_their_findings_and_a_hardened_one_none_high(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let cases: [(&str, &[&str], &str); 6] = [
        ("privileged", &["--privileged"], "priv.privileged"),
        (
            "socket",
            &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
            "mount.runtime_socket",
        ),
        ("sysadmin", &["--cap-add", "SYS_ADMIN"], "caps.add_critical"),
        ("pidhost", &["--pid", "host"], "ns.host_pid"),
        ("nethost", &["--network", "host"], "ns.host_network"),
        (
            "seccomp",
            &["--security-opt", "seccomp=unconfined"],
            "seccomp.unconfined",
        ),
    ];
    for (suffix, flags, _) in &cases {
        containers.create(suffix, flags);
    }
    containers.create(
        "hardened",
        &[
            "--read-only",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            "64m",
            "--pids-limit",
            "64",
        ],
    );

    let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
        .await
        .unwrap();
    let collector = Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("the local engine answers");
    collector.resync_once().await.unwrap();

    for (suffix, _, check) in &cases {
        let name = containers.name(suffix);
        let open = open_findings(&pool, &name).await;
        assert!(
            open.iter().any(|(c, _)| c == check),
            "{name}: no open {check} among {open:?}"
        );
    }
    let hardened = containers.name("hardened");
    let open = open_findings(&pool, &hardened).await;
    let serious: Vec<_> = open
        .iter()
        .filter(|(_, severity)| severity == "critical" || severity == "high")
        .collect();
    assert!(serious.is_empty(), "the hardened container has {serious:?}");
    let (grade, pss): (Option<String>, Option<String>) =
        sqlx::query_as("select grade, pss_level from workloads where name = $1")
            .bind(&hardened)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        matches!(grade.as_deref(), Some("A" | "B" | "C")),
        "{grade:?}"
    );
    assert!(pss.is_some());

    // A second resync only bumps last_seen.
    collector.resync_once().await.unwrap();
    let privileged = containers.name("privileged");
    let count: i64 = sqlx::query_scalar(
        "select count(*) from findings f join workloads w on w.id = f.workload_id
         where w.name = $1 and f.check_id = 'priv.privileged'",
    )
    .bind(&privileged)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(count, 1, "a resync does not duplicate findings");
    drop(containers);
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/findings")
        .join(name)
}

/// (container, status, resolved_reason) of the workload's findings of `check`.
async fn k8s_findings(
    pool: &PgPool,
    name: &str,
    check: &str,
) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "select f.container, f.status, f.resolved_reason from findings f
         join workloads w on w.id = f.workload_id
         where w.name = $1 and f.check_id = $2 order by f.id",
    )
    .bind(name)
    .bind(check)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_kubernetes_workload_is_judged_from_its_declared_template_through_the_collectors_write(
    pool: PgPool,
) {
    use harbormaster::collect::import;
    use harbormaster::collect::kubernetes::mapping::Snapshot;
    use harbormaster::collect::kubernetes::persist;

    // The Kubernetes write path (the import goes through the collector's persist).
    let report = import::import(&pool, &[data("privileged.yaml")])
        .await
        .unwrap();
    assert!(!report.is_failure());
    assert_eq!(
        k8s_findings(&pool, "agent", "priv.privileged").await,
        vec![("app".to_string(), "open".to_string(), None)]
    );
    assert_eq!(
        k8s_findings(&pool, "agent", "ns.host_network").await,
        vec![(String::new(), "open".to_string(), None)],
        "a pod-level finding has no container"
    );
    let evidence: Vec<Value> = sqlx::query_scalar("select evidence from findings")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!serde_json::to_string(&evidence).unwrap().contains("ghp_"));
    let (grade, pss): (Option<String>, Option<String>) =
        sqlx::query_as("select grade, pss_level from workloads where name = 'agent'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(grade.as_deref(), Some("F"));
    assert_eq!(pss.as_deref(), Some("privileged"));

    import::import(&pool, &[data("fixed.yaml")]).await.unwrap();
    assert_eq!(
        k8s_findings(&pool, "agent", "priv.privileged").await,
        vec![(
            "app".to_string(),
            "resolved".to_string(),
            Some("fixed".to_string())
        )]
    );
    assert_eq!(
        k8s_findings(&pool, "agent", "ns.host_network").await[0]
            .2
            .as_deref(),
        Some("fixed")
    );
    let open: i64 = sqlx::query_scalar(
        "select count(*) from findings f join workloads w on w.id = f.workload_id
         where w.name = 'agent' and f.status = 'open'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(open > 0, "the fixed template still fails other checks");

    // The Deployment is gone from the next complete write (the import itself is additive: a
    // complete write of an empty cluster stands in for the watch seeing it deleted).
    let source: i64 = sqlx::query_scalar("select source_id from workloads where name = 'agent'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let persisted = persist::persist(
        &pool,
        source,
        &Snapshot::default(),
        &mut None,
        &json!({}),
        true,
    )
    .await
    .unwrap();
    assert!(persisted.retired >= 1);
    let stage: String = sqlx::query_scalar("select stage from workloads where name = 'agent'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stage, "retire");
    let open: Vec<(String, String, Option<String>)> =
        k8s_findings(&pool, "agent", "secrets.env_literal").await;
    assert_eq!(
        open.last().map(|f| (f.1.as_str(), f.2.as_deref())),
        Some(("resolved", Some("retired")))
    );
    let still_open: i64 = sqlx::query_scalar(
        "select count(*) from findings f join workloads w on w.id = f.workload_id
         where w.name = 'agent' and f.status = 'open'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(still_open, 0);
}
