//! Reviews: generated through the API, the console and the CLI; the numbers agree across the
//! four formats and with the database; the difference from the previous review; schedules with
//! an injected clock; sign-off by team members and admins only, audited.

use std::io::{Cursor, Read};
use std::sync::Mutex;
use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, TimeZone, Utc};
use harbormaster::auth::Role;
use harbormaster::config::Config;
use harbormaster::inventory::sources;
use harbormaster::review::schedule::{Schedule, Scheduler};
use harbormaster::review::store::{self, NewReview, Review};
use harbormaster::review::{worker, Clock, Format, TABLES};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::{binary, database_url};
use crate::common::{html, test_config, texts, TestApp};

/// The seeded estate: two teams, four workloads (one retired), six open findings (one waived,
/// one of a retired workload), one resolved finding, one incident isolated and restored.
struct Estate {
    payments: i64,
    workloads: [i64; 4],
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn seed(pool: &PgPool) -> Estate {
    let source = sources::ensure(pool, "docker", "review-engine", "unix:///review.sock")
        .await
        .unwrap();
    let team = |name: &'static str, kind: &'static str| async move {
        sqlx::query_scalar::<_, i64>("insert into teams (name, kind) values ($1, $2) returning id")
            .bind(name)
            .bind(kind)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let payments = team("payments", "development").await;
    let platform = team("platform", "platform").await;
    sqlx::query(
        "insert into images (digest, created_at) values ('sha256:old', now() - interval '200 days'),
                                                      ('sha256:new', now() - interval '2 days')",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut workloads = [0i64; 4];
    for (slot, (namespace, name, stage, digest)) in [
        ("shop", "api", "run", "sha256:old"),
        ("shop", "worker", "run", "sha256:new"),
        ("data", "db", "run", "sha256:new"),
        ("shop", "legacy", "retire", "sha256:new"),
    ]
    .into_iter()
    .enumerate()
    {
        workloads[slot] = sqlx::query_scalar(
            "insert into workloads (source_id, namespace, kind, name, stage, image_digests)
             values ($1, $2, 'ComposeService', $3, $4, array[$5]) returning id",
        )
        .bind(source)
        .bind(namespace)
        .bind(name)
        .bind(stage)
        .bind(digest)
        .fetch_one(pool)
        .await
        .unwrap();
    }
    let [api, worker, db, legacy] = workloads;
    for (workload, layer, team) in [
        (api, "application", payments),
        (api, "image", payments),
        (api, "runtime", platform),
        (api, "orchestration", platform),
        (api, "host", platform),
        (worker, "application", payments),
        (worker, "image", payments),
    ] {
        sqlx::query(
            "insert into workload_owners (workload_id, layer, team_id, via, provenance)
             values ($1, $2, $3, 'assignment', 'assigned in a test')",
        )
        .bind(workload)
        .bind(layer)
        .bind(team)
        .execute(pool)
        .await
        .unwrap();
    }
    for (workload, check, severity, layer, message) in [
        (
            api,
            "priv.privileged",
            "critical",
            "runtime",
            "runs privileged",
        ),
        (api, "image.user_root", "high", "image", "runs as root"),
        (
            worker,
            "secrets.env_literal",
            "high",
            "image",
            "=HYPERLINK(\"http://evil\") <script>alert(1)</script>, with a comma",
        ),
        (
            worker,
            "res.memory_limit",
            "medium",
            "orchestration",
            "no memory limit",
        ),
        (db, "net.host_network", "low", "application", "host network"),
        (
            legacy,
            "priv.privileged",
            "critical",
            "runtime",
            "left behind",
        ),
    ] {
        add_finding(pool, workload, check, severity, layer, message).await;
    }
    sqlx::query(
        "insert into findings (workload_id, check_id, severity, layer, message, status,
                               resolved_at, resolved_reason)
         values ($1, 'caps.added', 'high', 'runtime', 'fixed long ago', 'resolved', now(), 'fixed')",
    )
    .bind(api)
    .execute(pool)
    .await
    .unwrap();
    let waiver: i64 = sqlx::query_scalar(
        "insert into waivers (check_id, workload_id, reason, requested_by, approved_by, approved_at,
                              status, expires_at)
         values ('res.memory_limit', $1, 'batch job, bounded by the node', 'dev', 'admin', now(),
                 'approved', now() + interval '10 days') returning id",
    )
    .bind(worker)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("update findings set waiver_id = $1 where check_id = 'res.memory_limit'")
        .bind(waiver)
        .execute(pool)
        .await
        .unwrap();
    let incident: i64 = sqlx::query_scalar(
        "insert into incidents (title, severity, opened_by, state, created_at)
         values ('crypto miner', 'high', 'alice', 'restored', now() - interval '2 hours')
         returning id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("insert into incident_workloads (incident_id, workload_id) values ($1, $2)")
        .bind(incident)
        .bind(api)
        .execute(pool)
        .await
        .unwrap();
    for (kind, minutes) in [("isolate", 5), ("restore", 65)] {
        sqlx::query(
            "insert into incident_actions (incident_id, kind, status, actor, finished_at)
             values ($1, $2, 'succeeded', 'alice',
                     now() - interval '2 hours' + make_interval(mins => $3))",
        )
        .bind(incident)
        .bind(kind)
        .bind(minutes)
        .execute(pool)
        .await
        .unwrap();
    }
    Estate {
        payments,
        workloads,
    }
}

async fn add_finding(
    pool: &PgPool,
    workload: i64,
    check: &str,
    severity: &str,
    layer: &str,
    message: &str,
) -> i64 {
    sqlx::query_scalar(
        "insert into findings (workload_id, check_id, severity, layer, message)
         values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(workload)
    .bind(check)
    .bind(severity)
    .bind(layer)
    .bind(message)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A configuration whose data directory is the test's own.
fn config_in(dir: &std::path::Path) -> Config {
    let mut config = test_config();
    config.data_dir = dir.to_path_buf();
    config
}

/// Asks for a review and generates it in this task (marked running first, so that a server's
/// worker leaves it alone).
async fn generate_now(pool: &PgPool, config: &Config, team: Option<&str>) -> Review {
    let mut conn = pool.acquire().await.unwrap();
    let (review, _) = store::request(
        &mut conn,
        NewReview {
            team: team.map(str::to_string),
            formats: vec![Format::Json],
            trigger: "manual",
            schedule_key: None,
            requested_by: "tests".into(),
            idempotency_key: None,
        },
    )
    .await
    .unwrap();
    store::start(&mut *conn, review.id).await.unwrap();
    let review = worker::generate(pool, config, review.id).await.unwrap();
    assert_eq!(review.status, "succeeded", "{:?}", review.error);
    review
}

/// Waits (polling, with a deadline) until the server's worker has generated review `id`.
async fn wait_generated(app: &TestApp, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let review: Value = app
            .viewer_get(&format!("/api/v1/reviews/{id}"))
            .await
            .json()
            .await
            .unwrap();
        match review["status"].as_str() {
            Some("succeeded") => return review,
            Some("failed") => panic!("the review failed: {review}"),
            _ if std::time::Instant::now() > deadline => {
                panic!("the review was not generated in time: {review}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Records of a CSV text (quoted fields may hold commas, quotes and newlines).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, other) => field.push(other),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, other) => field.push(other),
        }
    }
    records
}

fn zip_entry(bytes: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    archive
        .by_name(name)
        .unwrap_or_else(|_| panic!("{name} is in the zip"))
        .read_to_string(&mut text)
        .unwrap();
    text
}

async fn download(app: &TestApp, id: i64, format: &str) -> Vec<u8> {
    let response = app
        .viewer_get(&format!("/api/v1/reviews/{id}/export?format={format}"))
        .await;
    assert_eq!(response.status(), 200, "{format}");
    let sha = response.headers()["x-content-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"harbormaster-review-"));
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha, "{format} sha256");
    bytes
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_review_asked_through_the_api_agrees_across_every_format_and_with_the_database(
    pool: PgPool,
) {
    let dir = tempfile::tempdir().unwrap();
    seed(&pool).await;
    let app = TestApp::spawn_with(pool.clone(), config_in(dir.path()), None).await;
    let responder = app.login_as(Role::Responder).await;
    let response = responder
        .post_json("/api/v1/reviews", &serde_json::json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let review = wait_generated(&app, id).await;
    let exports = review["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 4, "every format is rendered: {review}");

    let open = scalar(&pool, "select count(*) from findings where status = 'open'").await;
    let unowned = scalar(
        &pool,
        "select count(*) from findings f where status = 'open' and not exists (
             select 1 from workload_owners o where o.workload_id = f.workload_id and o.layer = f.layer)",
    )
    .await;
    assert_eq!((open, unowned), (6, 3));

    // JSON: the documented schema, every table, the numbers of the database.
    let json: Value = serde_json::from_slice(&download(&app, id, "json").await).unwrap();
    assert_eq!(json["schema"], "harbormaster.review.v1");
    assert_eq!(json["review"]["id"], id);
    for spec in TABLES {
        assert!(json["tables"][spec.name].is_array(), "{}", spec.name);
        assert_eq!(
            json["tables"][spec.name].as_array().unwrap().len() as i64,
            json["table_info"][spec.name]["rows"].as_i64().unwrap(),
            "{}",
            spec.name
        );
    }
    assert_eq!(json["summary"]["open_findings"], open);
    assert_eq!(json["summary"]["unowned_findings"], unowned);
    assert_eq!(json["summary"]["waived_findings"], 1);
    assert_eq!(json["summary"]["workloads"], 3);
    assert_eq!(
        json["tables"]["open_findings"].as_array().unwrap().len() as i64,
        open
    );
    let teams: Vec<(String, i64)> = json["tables"]["posture_by_team"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["team"].as_str().unwrap().to_string(),
                row["open"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        teams,
        [
            ("payments".into(), 2),
            ("platform".into(), 1),
            ("(unowned)".into(), 3)
        ]
    );
    // Every posture table accounts for every open finding, and per layer and per check as
    // the database counts them.
    for table in ["posture_by_team", "posture_by_layer", "posture_by_check"] {
        let total: i64 = json["tables"][table]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["open"].as_i64().unwrap())
            .sum();
        assert_eq!(total, open, "{table}");
    }
    for (column, table) in [
        ("layer", "posture_by_layer"),
        ("check_id", "posture_by_check"),
    ] {
        let counted: Vec<(String, i64)> = sqlx::query_as(&format!(
            "select {column}, count(*) from findings where status = 'open' group by 1 order by 1"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut stored: std::collections::BTreeMap<String, i64> = Default::default();
        for row in json["tables"][table].as_array().unwrap() {
            *stored
                .entry(row[column].as_str().unwrap().to_string())
                .or_default() += row["open"].as_i64().unwrap();
        }
        stored.retain(|_, open| *open > 0);
        assert_eq!(stored.into_iter().collect::<Vec<_>>(), counted, "{table}");
    }
    let waivers = json["tables"]["waivers"].as_array().unwrap();
    assert_eq!(waivers.len(), 1);
    assert_eq!(waivers[0]["expiring_within_30_days"], true);
    assert_eq!(waivers[0]["findings_waived"], 1);
    let incidents = json["tables"]["incidents"].as_array().unwrap();
    assert_eq!(incidents[0]["minutes_to_isolate"], 5.0);
    assert_eq!(incidents[0]["minutes_to_restore"], 60.0);
    let gaps: Vec<(&str, &str)> = json["tables"]["ownership_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["workload"].as_str().unwrap(),
                row["missing_layers"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        gaps,
        [
            ("worker", "runtime, orchestration, host"),
            ("db", "application, image, runtime, orchestration, host")
        ]
    );
    let anomalies: Vec<(&str, &str)> = json["tables"]["lifecycle_anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["anomaly"].as_str().unwrap(),
                row["workload"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        anomalies,
        [
            ("image_older_than_policy", "api"),
            ("retired_with_leftovers", "legacy")
        ]
    );

    // CSV: a zip with one file per table, the same rows; formulas defused.
    let zip = download(&app, id, "csv").await;
    for spec in TABLES {
        let records = csv_records(&zip_entry(&zip, &format!("{}.csv", spec.name)));
        assert_eq!(records[0], spec.columns, "{} header", spec.name);
        assert_eq!(
            records.len() as i64 - 1,
            json["table_info"][spec.name]["rows"].as_i64().unwrap(),
            "{} rows",
            spec.name
        );
    }
    let findings = csv_records(&zip_entry(&zip, "open_findings.csv"));
    assert!(findings.iter().any(
        |record| record[14].starts_with("'=HYPERLINK") && record[14].contains(", with a comma")
    ));
    let summary = csv_records(&zip_entry(&zip, "summary.csv"));
    assert!(summary.contains(&vec!["open_findings".to_string(), open.to_string()]));

    // XLSX: opens with a real reader; a sheet per table, the header row, the same counts;
    // the header row frozen and filters on.
    let xlsx = download(&app, id, "xlsx").await;
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx.clone())).unwrap();
    let mut expected: Vec<String> = vec!["summary".into()];
    expected.extend(TABLES.iter().map(|t| t.name.to_string()));
    assert_eq!(book.sheet_names(), expected);
    for spec in TABLES {
        let range = book.worksheet_range(spec.name).unwrap();
        let header: Vec<String> = range
            .rows()
            .next()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(header, spec.columns, "{} header", spec.name);
        assert_eq!(
            range.height().max(1) as i64 - 1,
            json["table_info"][spec.name]["rows"].as_i64().unwrap(),
            "{} rows",
            spec.name
        );
    }
    let summary = book.worksheet_range("summary").unwrap();
    assert!(summary
        .rows()
        .any(|row| row[0] == Data::String("open_findings".into())
            && row[1] == Data::Float(open as f64)));
    for sheet in 1..=TABLES.len() + 1 {
        let xml = zip_entry(&xlsx, &format!("xl/worksheets/sheet{sheet}.xml"));
        assert!(xml.contains("<autoFilter"), "sheet {sheet} has filters");
        assert!(
            xml.contains("ySplit=\"1\""),
            "sheet {sheet} freezes its header"
        );
    }

    // HTML: printable, charts as SVG, the same numbers, attacker text escaped.
    let page = String::from_utf8(download(&app, id, "html").await).unwrap();
    assert!(!page.contains("<script>alert(1)"));
    let document = html(&page);
    assert_eq!(
        texts(&document, "#open_findings tbody tr").len() as i64,
        open
    );
    assert_eq!(texts(&document, "#posture_by_team svg").len(), 1);
    assert!(page.contains("@media print"));
    let totals = texts(&document, "dl.totals dt, dl.totals dd");
    let at = totals.iter().position(|t| t == "open findings").unwrap();
    assert_eq!(totals[at + 1], open.to_string());

    // Rendering is deterministic: a lost file is rendered again with the same sha256.
    let stored_sha = exports.iter().find(|e| e["format"] == "json").unwrap()["sha256"].clone();
    std::fs::remove_dir_all(dir.path().join("reviews")).unwrap();
    let again = download(&app, id, "json").await;
    assert_eq!(Value::from(hex::encode(Sha256::digest(&again))), stored_sha);

    app.assert_mutations_audited().await;
    assert!(app.audit_rows().await.contains(&(
        "review.generate".into(),
        format!("review {id}"),
        "success".into()
    )));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_difference_from_the_previous_review_shows_new_and_resolved_findings(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let estate = seed(&pool).await;
    let first = generate_now(&pool, &config, None).await;
    assert_eq!(first.previous_review_id, None);
    assert_eq!(first.summary["totals"]["new_findings"], 0);

    let opened = add_finding(
        &pool,
        estate.workloads[1],
        "caps.sys_admin",
        "high",
        "runtime",
        "new",
    )
    .await;
    let resolved: i64 = sqlx::query_scalar(
        "update findings set status = 'resolved', resolved_at = now(), resolved_reason = 'fixed'
         where check_id = 'image.user_root' and status = 'open' returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let second = generate_now(&pool, &config, None).await;
    assert_eq!(second.previous_review_id, Some(first.id));
    assert_eq!(second.summary["totals"]["new_findings"], 1);
    assert_eq!(second.summary["totals"]["resolved_findings"], 1);
    let new_rows = store::rows(&pool, second.id, "new_findings", 10)
        .await
        .unwrap();
    assert_eq!(new_rows[0][0], opened);
    let resolved_rows = store::rows(&pool, second.id, "resolved_findings", 10)
        .await
        .unwrap();
    assert_eq!(resolved_rows[0][0], resolved);
    assert_eq!(resolved_rows[0][13], "fixed");
    // The first snapshot is unchanged by what happened after it.
    assert_eq!(
        store::rows(&pool, first.id, "open_findings", 100)
            .await
            .unwrap()
            .len(),
        6
    );

    // A team's review compares with the team's previous review only.
    let team = generate_now(&pool, &config, Some("payments")).await;
    assert_eq!(team.previous_review_id, None);
    assert_eq!(team.team_id, Some(estate.payments));
    assert_eq!(team.summary["totals"]["open_findings"], 1);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_cli_writes_a_review_of_one_team(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    seed(&pool).await;
    let out = dir.path().join("payments.xlsx");
    let output = binary(&database_url(&pool))
        .env("HARBORMASTER_DATA_DIR", dir.path().join("data"))
        .args([
            "review", "generate", "--team", "payments", "--format", "xlsx", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let bytes = std::fs::read(&out).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    assert!(stdout.contains(&sha), "{stdout}");
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    // The two open findings the payments team owns.
    assert_eq!(book.worksheet_range("open_findings").unwrap().height(), 3);
    let (stored, trigger): (String, String) = sqlx::query_as(
        "select e.sha256, r.trigger from review_exports e join reviews r on r.id = e.review_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stored, trigger.as_str()), (sha, "cli"));
    let audited = scalar(
        &pool,
        "select count(*) from audit_log where action = 'review.generate'",
    )
    .await;
    assert_eq!(audited, 1);

    let unknown = binary(&database_url(&pool))
        .env("HARBORMASTER_DATA_DIR", dir.path().join("data"))
        .args([
            "review", "generate", "--team", "nobody", "--format", "json", "--out",
        ])
        .arg(dir.path().join("x.json"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no team named nobody"));
}

/// A clock the test sets.
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn at(text: &str) -> Self {
        Self(Mutex::new(parse(text)))
    }

    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = parse(text);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn parse(text: &str) -> DateTime<Utc> {
    Utc.from_utc_datetime(
        &chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap(),
    )
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_schedule_fires_once_at_its_time_across_replicas_and_restarts(pool: PgPool) {
    seed(&pool).await;
    let schedules =
        || vec![Schedule::parse("0 6 * * MON", Some("payments".into()), &["json".into()]).unwrap()];
    // 2026-11-30 is a Monday.
    let clock = ManualClock::at("2026-11-30 05:58:00");
    let mut first = Scheduler::new(schedules());
    let mut second = Scheduler::new(schedules());
    assert!(first.tick(&pool, &clock).await.unwrap().is_empty());
    clock.set("2026-11-30 05:59:30");
    assert!(first.tick(&pool, &clock).await.unwrap().is_empty());
    assert!(second.tick(&pool, &clock).await.unwrap().is_empty());

    clock.set("2026-11-30 06:00:10");
    let fired = first.tick(&pool, &clock).await.unwrap();
    assert_eq!(fired.len(), 1);
    // The other replica sees the slot taken; a restarted server does not fire it again.
    assert!(second.tick(&pool, &clock).await.unwrap().is_empty());
    clock.set("2026-11-30 06:05:00");
    assert!(Scheduler::new(schedules())
        .tick(&pool, &clock)
        .await
        .unwrap()
        .is_empty());
    assert!(first.tick(&pool, &clock).await.unwrap().is_empty());

    let review = store::get(&pool, fired[0]).await.unwrap();
    assert_eq!(review.trigger, "schedule");
    assert_eq!(review.team_name.as_deref(), Some("payments"));
    assert_eq!(review.formats, ["json"]);
    assert_eq!(review.status, "queued");

    // A week later, once more.
    clock.set("2026-12-07 06:00:00");
    assert_eq!(second.tick(&pool, &clock).await.unwrap().len(), 1);
    assert!(first.tick(&pool, &clock).await.unwrap().is_empty());
    assert_eq!(scalar(&pool, "select count(*) from reviews").await, 2);
    assert_eq!(
        scalar(&pool, "select count(*) from review_schedule_runs").await,
        2
    );
}

async fn user_id(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("select id from users where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn only_a_member_of_the_team_or_an_admin_signs_a_review_off(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let estate = seed(&pool).await;
    let team_review = generate_now(&pool, &config, Some("payments")).await;
    let estate_review = generate_now(&pool, &config, None).await;
    let app = TestApp::spawn_with(pool.clone(), config, None).await;

    let outsider = app.login_as(Role::Viewer).await;
    let member = app.login_as(Role::Viewer).await;
    sqlx::query("insert into team_members (team_id, user_id) values ($1, $2)")
        .bind(estate.payments)
        .bind(user_id(&pool, &member.name).await)
        .execute(&pool)
        .await
        .unwrap();
    let path = format!("/api/v1/reviews/{}/signoffs", team_review.id);
    let refused = outsider
        .post_json(&path, &serde_json::json!({"comment": "fine by me"}))
        .await;
    assert_eq!(refused.status(), 403);

    // The member sees the form on the page and signs off through it.
    let page = html(
        &member
            .get(&format!("/reviews/{}", team_review.id))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(texts(&page, "form[action$='/signoff'] button").len(), 1);
    let outsider_page = html(
        &outsider
            .get(&format!("/reviews/{}", team_review.id))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(texts(&outsider_page, "form[action$='/signoff']").is_empty());
    let signed = member
        .post_form(
            &format!("/reviews/{}/signoff", team_review.id),
            &[("comment", "reviewed with the team")],
        )
        .await;
    assert_eq!(signed.status(), 303);
    let view: Value = member
        .get(&format!("/api/v1/reviews/{}", team_review.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["signoffs"][0]["user_name"], member.name.as_str());
    assert_eq!(view["signoffs"][0]["comment"], "reviewed with the team");

    // The estate-wide review: a member of one team may not, an admin may.
    let estate_path = format!("/api/v1/reviews/{}/signoffs", estate_review.id);
    assert_eq!(
        member
            .post_json(&estate_path, &serde_json::json!({}))
            .await
            .status(),
        403
    );
    let admin = app.login_as(Role::Admin).await;
    assert_eq!(
        admin
            .post_json(&estate_path, &serde_json::json!({"comment": "ok"}))
            .await
            .status(),
        201
    );

    let rows = app.audit_rows().await;
    let signoffs: Vec<&(String, String, String)> = rows
        .iter()
        .filter(|(action, _, _)| action == "review.signoff")
        .collect();
    assert_eq!(
        signoffs
            .iter()
            .map(|(_, _, outcome)| outcome.as_str())
            .collect::<Vec<_>>(),
        ["denied", "success", "denied", "success"]
    );
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_console_generates_a_team_review_and_shows_its_progress_and_downloads(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    seed(&pool).await;
    let app = TestApp::spawn_with(pool.clone(), config_in(dir.path()), None).await;
    let responder = app.login_as(Role::Responder).await;
    let list = html(&responder.get("/reviews").await.text().await.unwrap());
    assert!(texts(&list, "nav.mainnav a").contains(&"Reviews".to_string()));
    assert!(texts(&list, "select[name=team] option").contains(&"payments".to_string()));

    let created = responder
        .post_form("/reviews", &[("team", "payments")])
        .await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let id: i64 = location.trim_start_matches("/reviews/").parse().unwrap();
    wait_generated(&app, id).await;

    let page = html(&responder.get(&location).await.text().await.unwrap());
    assert_eq!(texts(&page, "h1"), [format!("Review {id} — payments")]);
    assert_eq!(texts(&page, ".review-downloads li a").len(), 4);
    assert_eq!(texts(&page, "#open_findings tbody tr").len(), 2);
    assert_eq!(texts(&page, "svg.chart").len(), 2);
    let list = html(&responder.get("/reviews").await.text().await.unwrap());
    assert_eq!(texts(&list, ".review-scope"), ["payments"]);
    assert_eq!(texts(&list, ".review-downloads a").len(), 4);

    // A viewer may read but not ask for a review.
    let viewer = app.login_as(Role::Viewer).await;
    let page = html(&viewer.get("/reviews").await.text().await.unwrap());
    assert!(texts(&page, "form[action='/reviews']").is_empty());
    assert_eq!(
        viewer.post_form("/reviews", &[("team", "")]).await.status(),
        403
    );
    let missing = responder
        .post_json("/api/v1/reviews", &serde_json::json!({"team": "nobody"}))
        .await;
    assert_eq!(missing.status(), 422);
    app.assert_mutations_audited().await;
}
