//! The console pages: HTML structure (parsed with scraper) over a real database, and the whole
//! console in a real headless Chromium over the real Docker collector.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use fantoccini::Locator;
use harbormaster::collect::docker::Collector;
use harbormaster::config::{parse_docker_endpoint, Config};
use harbormaster::findings::{self, trend};
use harbormaster::inventory::store::{self, Upserted};
use harbormaster::inventory::{sources, InstanceRecord, WorkloadKey, WorkloadRecord};
use harbormaster::lifecycle::store::{apply, Pending};
use harbormaster::lifecycle::Observation;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::browser::Browser;
use crate::common::{html, live_docker_socket, test_config, texts, TestApp};
use harbormaster::auth::Role;

const SCRIPT_LABEL: &str = "<script>alert(1)</script>";

/// A Kubernetes Deployment whose single container is privileged (a critical failure).
fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.example/shop/app:1.0",
                    "securityContext": {"privileged": true}
                }]}
            }
        }
    })
}

/// Stores `count` running Deployments named `app-000`… in a Kubernetes source `bulk`,
/// the first half in the namespace `billing`, the rest in `shop` (so ids follow names). Returns
/// their ids in order.
async fn seed_deployments(pool: &PgPool, count: usize) -> Vec<i64> {
    let source = sources::ensure(pool, "kubernetes", "bulk", "https://bulk.example:6443")
        .await
        .unwrap();
    let records: Vec<WorkloadRecord> = (0..count)
        .map(|i| {
            let namespace = if i < count / 2 { "billing" } else { "shop" };
            let name = format!("app-{i:03}");
            WorkloadRecord {
                key: WorkloadKey::new(namespace, "Deployment", &name),
                uid: Some(format!("uid-{i}")),
                labels: json!({"app": name, "x": SCRIPT_LABEL}),
                annotations: json!({"note": "seeded"}),
                declared: Some(deployment(namespace, &name)),
                images: vec!["registry.example/shop/app:1.0".into()],
            }
        })
        .collect();
    let mut conn = pool.acquire().await.unwrap();
    let upserted: HashMap<WorkloadKey, Upserted> =
        store::upsert_workloads(&mut conn, source, &records)
            .await
            .unwrap();
    let instances: Vec<InstanceRecord> = records
        .iter()
        .map(|record| InstanceRecord {
            workload: record.key.clone(),
            external_id: format!("pod-{}", record.key.name),
            name: format!("{}-7d9f-abcde", record.key.name),
            state: "Running".into(),
            running: true,
            image_ref: Some("registry.example/shop/app:1.0".into()),
            image_digest: Some(format!("sha256:{}", "a".repeat(64))),
            node: Some("node-1".into()),
            labels: json!({}),
            restart_count: 0,
            spec: None,
            raw: json!({}),
            started_at: None,
        })
        .collect();
    store::upsert_instances(&mut conn, source, &instances, &upserted)
        .await
        .unwrap();
    let ids: Vec<i64> = records.iter().map(|r| upserted[&r.key].id).collect();
    store::refresh_counts(&mut conn, &ids).await.unwrap();
    let pending: Vec<Pending> = records
        .iter()
        .map(|record| {
            let row = upserted[&record.key];
            Pending {
                workload_id: row.id,
                is_new: row.inserted,
                observation: Observation {
                    present: true,
                    running: 1,
                    digests: vec![format!("sha256:{}", "a".repeat(64))],
                    spec_hash: Some("h1".into()),
                    rolled_out: true,
                    reason: Some("seeded by the console test".into()),
                },
            }
        })
        .collect();
    apply(&mut conn, &pending).await.unwrap();
    ids
}

/// Judges the seeded Deployments the way the Kubernetes collector does and records their
/// findings; those for which `privileged(i)` is false run unprivileged (no critical finding).
async fn judge(pool: &PgPool, ids: &[i64], privileged: impl Fn(usize) -> bool) {
    let evaluations: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut doc = deployment("shop", &format!("app-{i:03}"));
            doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
                json!(privileged(i));
            findings::evaluate_kubernetes(&doc, &Default::default())
                .expect("a Deployment is judged")
                .for_workload(*id)
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    findings::store::sync_findings(&mut tx, &evaluations)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A signed-in viewer's GET of a page, parsed; panics unless it is a 200.
async fn page(user: &crate::common::Browser, path: &str) -> scraper::Html {
    let response = user.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    html(&response.text().await.unwrap())
}

fn attr(document: &scraper::Html, selector: &str, name: &str) -> Option<String> {
    let selector = scraper::Selector::parse(selector).unwrap();
    document
        .select(&selector)
        .next()
        .and_then(|e| e.value().attr(name).map(str::to_string))
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_overview_says_what_to_configure_when_there_is_no_source(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, "/").await;
    let empty = texts(&document, ".empty-state").join(" ");
    assert!(empty.contains("HARBORMASTER_DOCKER"), "{empty}");
    assert!(empty.contains("HARBORMASTER_KUBECONFIG"), "{empty}");
    // Every stage has its count, all zero.
    assert_eq!(
        texts(&document, ".stage-counts th"),
        ["build", "store", "deploy", "run", "update", "retire"]
    );
    assert_eq!(texts(&document, ".stage-counts td"), ["0"; 6]);
    assert_eq!(
        texts(&document, "nav.mainnav a"),
        [
            "Overview",
            "Workloads",
            "Findings",
            "Events",
            "Teams",
            "Images",
            "Incidents",
            "Reviews",
            "Checks",
            "Sources"
        ]
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_overview_counts_workloads_by_stage_and_shows_each_source(pool: PgPool) {
    seed_deployments(&pool, 7).await;
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, "/").await;
    assert!(texts(&document, ".empty-state").is_empty());
    let counts = texts(&document, ".stage-counts td");
    assert_eq!(counts, ["0", "0", "0", "7", "0", "0"]);
    assert_eq!(texts(&document, "svg.chart .chart-bar").len(), 6);
    assert_eq!(texts(&document, "svg.chart .stage-run .chart-value"), ["7"]);
    let status = texts(&document, ".source-status li").join(" ");
    assert!(status.contains("bulk"), "{status}");
    assert!(
        status.contains("stale") || status.contains("down"),
        "{status}"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_workload_list_filters_and_pages_through_every_workload(pool: PgPool) {
    let ids = seed_deployments(&pool, 60).await;
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;

    let first = page(&user, "/workloads").await;
    let names = texts(&first, "table.workloads tbody tr td:first-child a");
    assert_eq!(names.len(), 50);
    assert_eq!(names[0], "app-000");
    assert!(attr(&first, "a[rel=prev]", "href").is_none());
    let next = attr(&first, "a[rel=next]", "href").expect("a next page");
    assert_eq!(next, format!("/workloads?after={}", ids[49]));

    let second = page(&user, &next).await;
    let names = texts(&second, "table.workloads tbody tr td:first-child a");
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "app-050");
    assert!(attr(&second, "a[rel=next]", "href").is_none());
    let previous = attr(&second, "a[rel=prev]", "href").expect("a previous page");
    let back = page(&user, &previous).await;
    let names = texts(&back, "table.workloads tbody tr td:first-child a");
    assert_eq!(names.len(), 50);
    assert_eq!(names[0], "app-000");
    assert!(attr(&back, "a[rel=prev]", "href").is_none());

    // Filters as the form submits them: empty fields mean "any", links keep the filters.
    let filtered = page(
        &user,
        "/workloads?q=app-0&source=&namespace=billing&kind=Deployment&stage=run",
    )
    .await;
    let names = texts(&filtered, "table.workloads tbody tr td:first-child a");
    assert_eq!(names.len(), 30);
    assert!(names.iter().all(|n| n.starts_with("app-0")));
    assert_eq!(
        attr(&filtered, "#f-namespace", "value").as_deref(),
        Some("billing")
    );
    assert_eq!(texts(&filtered, "#f-stage option[selected]"), ["run"]);
    assert!(attr(&filtered, "a[rel=next]", "href").is_none());

    let none = page(&user, "/workloads?stage=retire").await;
    assert!(texts(&none, ".empty-state")
        .join(" ")
        .contains("No workload matches"));
    assert_eq!(user.get("/workloads?stage=sailing").await.status(), 400);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_workload_page_shows_its_timeline_its_failures_with_the_fix_and_escapes_labels(
    pool: PgPool,
) {
    let ids = seed_deployments(&pool, 1).await;
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, &format!("/workloads/{}", ids[0])).await;
    assert_eq!(
        texts(&document, "main h1")[0].split_whitespace().next(),
        Some("app-000")
    );
    assert_eq!(
        texts(&document, ".breadcrumbs li"),
        ["Overview", "Workloads", "shop/app-000"]
    );
    let timeline = texts(&document, ".timeline li.collector");
    assert_eq!(timeline.len(), 1, "{timeline:?}");
    // Nobody reported its build or its registry push: both stages say so.
    let gaps = texts(&document, ".timeline li.not-reported");
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(gaps[0].contains("not reported"), "{gaps:?}");
    assert!(timeline[0].contains("(new) → run"), "{timeline:?}");
    assert!(
        timeline[0].contains("seeded by the console test"),
        "{timeline:?}"
    );
    assert!(timeline[0].contains("after: sha256:aaaa"), "{timeline:?}");

    let fails = texts(&document, ".fail .fail-head");
    let privileged = fails
        .iter()
        .find(|f| f.contains("priv.privileged"))
        .expect("the privileged container fails priv.privileged");
    assert!(
        privileged.to_lowercase().contains("critical"),
        "{privileged}"
    );
    let fixes = texts(&document, ".fail .fix pre").join("\n");
    assert!(
        fixes.contains("privileged"),
        "the Kubernetes fix is shown: {fixes}"
    );
    assert!(texts(&document, ".pss").contains(&"privileged".to_string()));

    // The label is text, never markup.
    let values = texts(&document, "td.label-value");
    assert!(values.contains(&SCRIPT_LABEL.to_string()), "{values:?}");
    let scripts = scraper::Selector::parse("script").unwrap();
    assert_eq!(document.select(&scripts).count(), 1, "only app.js");

    assert_eq!(user.get("/workloads/999999").await.status(), 404);
    assert_eq!(user.get("/workloads/x").await.status(), 400);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_check_catalog_lists_every_check_and_explains_each(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;
    let catalog = page(&user, "/checks").await;
    let rows = texts(&catalog, "table.checks tbody tr");
    assert_eq!(rows.len(), harbormaster::posture::CATALOG.len());
    assert!(texts(&catalog, "table.checks .sev")
        .iter()
        .all(|s| !s.is_empty()));

    let check = page(&user, "/checks/priv.privileged").await;
    assert!(texts(&check, "main h1")[0].contains("priv.privileged"));
    assert_eq!(texts(&check, "#fix ~ h3"), ["Docker", "Kubernetes"]);
    assert_eq!(texts(&check, "pre.fix").len(), 2);
    assert_eq!(user.get("/checks/no.such").await.status(), 404);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_sources_page_shows_each_source_status_and_last_error(pool: PgPool) {
    let empty = TestApp::spawn(pool.clone()).await;
    let user = empty.login_as(Role::Viewer).await;
    let document = page(&user, "/sources").await;
    assert!(texts(&document, ".empty-state")
        .join(" ")
        .contains("HARBORMASTER_DOCKER"));
    drop(empty);

    let id = sources::ensure(&pool, "docker", "edge", "tcp://edge:2376")
        .await
        .unwrap();
    sources::mark_down(&pool, id, "connection refused <b>")
        .await
        .unwrap();
    let app = TestApp::spawn(pool).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, "/sources").await;
    let row = texts(&document, "table.sources tbody tr");
    assert_eq!(row.len(), 1);
    assert!(row[0].contains("down"), "{row:?}");
    assert_eq!(
        texts(&document, "table.sources .error-cell")[0]
            .split(" (")
            .next(),
        Some("connection refused <b>")
    );
}

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

/// Containers named `<prefix>-…`, removed on drop (also when the test fails).
struct Containers {
    prefix: String,
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

/// Waits (up to 5 s) until the browser shows a loaded page whose URL contains `part`.
async fn wait_for_page(client: &fantoccini::Client, part: &str) {
    for _ in 0..100 {
        let url = client.current_url().await.unwrap();
        let ready = client
            .execute("return document.readyState;", vec![])
            .await
            .unwrap();
        if url.as_str().contains(part) && ready == "complete" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the browser never reached a page with {part} in its URL");
}

/// Clicks the element `css` finds inside `scope` (the page when `None`).
async fn click(
    client: &fantoccini::Client,
    scope: Option<&fantoccini::elements::Element>,
    css: &str,
) {
    let element = match scope {
        Some(scope) => scope.find(Locator::Css(css)).await,
        None => client.find(Locator::Css(css)).await,
    };
    element.unwrap().click().await.unwrap();
}

/// Picks the option `value` of the select `css`.
async fn select(client: &fantoccini::Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Fails when a script error happened on the current page (app.js counts them).
async fn assert_no_script_errors(client: &fantoccini::Client) {
    let errors = client
        .execute(
            "return [document.documentElement.dataset.js, document.documentElement.dataset.jsErrors || '0'];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(errors, json!(["on", "0"]), "app.js ran without error");
}

const LOCAL: &str = "unix:///var/run/docker.sock";
const IMAGE: &str = "harbormaster-test/busybox:1";

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_console_works_in_a_real_browser_over_the_docker_collector(pool: PgPool) {
    if live_docker_socket().is_none() {
        return;
    }
    let random = uuid::Uuid::new_v4().simple().to_string();
    let containers = Containers {
        prefix: format!("hm-test-console-{}", &random[..10]),
    };
    let web = format!("{}-web", containers.prefix);
    let label = format!("x={SCRIPT_LABEL}");
    docker(&[
        "run", "-d", "--name", &web, "--label", &label, "--user", "0", IMAGE, "sleep", "3600",
    ]);
    let priv_name = format!("{}-priv", containers.prefix);
    docker(&[
        "create",
        "--name",
        &priv_name,
        "--privileged",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let source = sources::ensure(&pool, "docker", LOCAL, LOCAL)
        .await
        .unwrap();
    let collector = Collector::connect(
        pool.clone(),
        &parse_docker_endpoint(LOCAL, None),
        source,
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("the local engine answers");
    collector.resync_once().await.unwrap();
    let ids = seed_deployments(&pool, 60).await;
    judge(&pool, &ids, |i| i % 4 == 0).await;

    let mut config: Config = test_config();
    config.docker_endpoints = vec![LOCAL.to_string()];
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    app.create_user("grace", Role::Responder, "correct horse battery staple")
        .await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let client = &browser.client;
    browser
        .sign_in(&app.url, "grace", "correct horse battery staple")
        .await;

    client.goto(&app.url("/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Overview · Harbormaster");
    let chart = client.find(Locator::Css("svg.chart")).await.unwrap();
    assert!(chart.is_displayed().await.unwrap());
    let trend = client.find(Locator::Css("svg.trend")).await.unwrap();
    assert!(trend.is_displayed().await.unwrap());
    let riskiest = client
        .find_all(Locator::Css("table.riskiest tbody tr"))
        .await
        .unwrap();
    assert_eq!(riskiest.len(), 10);
    assert_no_script_errors(client).await;
    browser.screenshot("console-overview").await;

    // The list: filter through the form, then page with the links.
    client.goto(&app.url("/workloads")).await.unwrap();
    browser.screenshot("console-workloads").await;
    click(client, None, "a[rel=next]").await;
    let rows = client
        .find_all(Locator::Css("table.workloads tbody tr"))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    click(client, None, "a[rel=prev]").await;
    let first = client
        .find(Locator::Css("table.workloads tbody tr td a"))
        .await
        .unwrap();
    assert!(!first.text().await.unwrap().is_empty());
    let search = client.find(Locator::Css("#f-q")).await.unwrap();
    search.send_keys(&containers.prefix).await.unwrap();
    click(client, None, "form.filters button[type=submit]").await;
    // Wait for the filtered page before reading it (the click only starts the navigation).
    wait_for_page(client, "q=hm-test-console-").await;
    let names: Vec<String> = {
        let mut names = Vec::new();
        for link in client
            .find_all(Locator::Css("table.workloads tbody tr td:first-child a"))
            .await
            .unwrap()
        {
            names.push(link.text().await.unwrap());
        }
        names
    };
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("q=hm-test-console-"));
    browser.screenshot("console-workloads-filtered").await;

    // The labelled container: its timeline, its posture, and the label as inert text.
    client
        .find(Locator::LinkText(&web))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = client.find(Locator::Css(".timeline")).await.unwrap();
    assert!(timeline.text().await.unwrap().contains("run"));
    let posture = client.find(Locator::Css("#posture")).await.unwrap();
    assert!(posture.is_displayed().await.unwrap());
    let failed = client.find_all(Locator::Css(".fail")).await.unwrap();
    assert!(
        !failed.is_empty(),
        "a root busybox without limits fails checks"
    );
    let shown = client
        .execute(
            "return Array.from(document.querySelectorAll('td.label-value')).map(e => e.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        shown.as_array().unwrap().iter().any(|v| v == SCRIPT_LABEL),
        "{shown}"
    );
    let scripts = client
        .execute(
            "return Array.from(document.querySelectorAll('script')).map(s => s.getAttribute('src'));",
            vec![],
        )
        .await
        .unwrap();
    let scripts = scripts.as_array().unwrap();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert!(
        scripts[0].as_str().unwrap().contains("/js/app"),
        "{scripts:?}"
    );
    // No alert opened: with an open dialog, WebDriver refuses to read the page.
    assert!(matches!(
        client.get_alert_text().await,
        Err(fantoccini::error::CmdError::Standard(_))
    ));
    browser.screenshot("console-workload").await;

    // The privileged container (created, never started) fails priv.privileged.
    client
        .goto(&app.url(&format!("/workloads?q={priv_name}")))
        .await
        .unwrap();
    client
        .find(Locator::LinkText(&priv_name))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let heads = client.find_all(Locator::Css(".fail-head")).await.unwrap();
    let mut found = false;
    for head in heads {
        found |= head.text().await.unwrap().contains("priv.privileged");
    }
    assert!(found, "priv.privileged is among the failures");

    assert_no_script_errors(client).await;

    // Request a waiver of priv.privileged through the form on the workload page.
    let privileged_finding = client
        .find(Locator::XPath(
            "//li[contains(@class,'recorded-finding')][.//code[text()='priv.privileged']]",
        ))
        .await
        .unwrap();
    click(client, Some(&privileged_finding), ".waiver-request summary").await;
    privileged_finding
        .find(Locator::Css("textarea[name=reason]"))
        .await
        .unwrap()
        .send_keys("the <i>vendor</i> agent needs it until replaced")
        .await
        .unwrap();
    click(client, Some(&privileged_finding), "button[type=submit]").await;
    wait_for_page(client, "#findings").await;
    let pending = client
        .find(Locator::Css(".waiver-requested"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pending.contains("pending approval"), "{pending}");
    assert!(pending.contains("the <i>vendor</i> agent"), "{pending}");
    let requested: i64 = sqlx::query_scalar(
        "select count(*) from waivers where status = 'requested' and requested_by = 'grace'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(requested, 1);
    browser.screenshot("console-waiver-requested").await;

    // The list by worst severity, riskiest first, through the form.
    client.goto(&app.url("/workloads")).await.unwrap();
    select(client, "#f-severity", "critical").await;
    select(client, "#f-sort", "risk").await;
    click(client, None, "form.filters button[type=submit]").await;
    wait_for_page(client, "sort=risk").await;
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().contains("severity=critical"), "{url}");
    let risks = client
        .execute(
            "return Array.from(document.querySelectorAll('table.workloads tbody td.num')).map(e => Number(e.textContent));",
            vec![],
        )
        .await
        .unwrap();
    let risks: Vec<i64> = serde_json::from_value(risks).unwrap();
    assert!(risks.len() >= 15, "{risks:?}");
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    assert!(risks.iter().all(|r| *r >= 1000), "{risks:?}");
    browser.screenshot("console-workloads-riskiest").await;

    // Findings by check, then the drill-down of priv.privileged.
    client.goto(&app.url("/findings")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Findings · Harbormaster");
    browser.screenshot("console-findings").await;
    click(
        client,
        None,
        "table.finding-groups a[href^='/findings/priv.privileged']",
    )
    .await;
    wait_for_page(client, "/findings/priv.privileged").await;
    let affected = client
        .find_all(Locator::Css("table.affected tbody tr"))
        .await
        .unwrap();
    assert!(affected.len() >= 16, "{}", affected.len());
    assert_no_script_errors(client).await;
    browser.screenshot("console-findings-check").await;

    for (path, name) in [
        ("/checks", "console-checks"),
        ("/checks/priv.privileged", "console-check"),
        ("/sources", "console-sources"),
        ("/images", "console-images"),
    ] {
        client.goto(&app.url(path)).await.unwrap();
        let heading = client.find(Locator::Css("main h1")).await.unwrap();
        assert!(!heading.text().await.unwrap().is_empty());
        assert_no_script_errors(client).await;
        browser.screenshot(name).await;
    }
    // Keyboard: the skip link is the first focusable element and leads to the content.
    client.goto(&app.url("/workloads")).await.unwrap();
    let focused = client
        .execute(
            "document.body.focus(); return document.querySelector('.skip-link').getAttribute('href');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused, "#main");
    browser.close().await;
    drop(containers);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_overview_renders_in_a_real_browser_with_its_styles_and_script(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("ada", Role::Viewer, "correct horse battery staple")
        .await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let client = &browser.client;
    browser
        .sign_in(&app.url, "ada", "correct horse battery staple")
        .await;
    client.goto(&app.url("/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Overview · Harbormaster");
    let heading = client.find(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Overview");
    // The stylesheet applied (the CSP allowed it): the top bar has the brand colour.
    let background = client
        .execute(
            "return getComputedStyle(document.querySelector('.topbar')).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, "rgb(18, 53, 91)");
    // The script ran (it marks the document once loaded).
    let marked = client
        .execute("return document.documentElement.dataset.js;", vec![])
        .await
        .unwrap();
    assert_eq!(marked, "on");
    browser.screenshot("overview").await;

    client.goto(&app.url("/no/such/page")).await.unwrap();
    let heading = client.find(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "404 · Not Found");
    browser.screenshot("not-found").await;
    browser.close().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_overview_shows_the_score_its_trend_open_findings_the_riskiest_and_open_incidents(
    pool: PgPool,
) {
    let ids = seed_deployments(&pool, 14).await;
    judge(&pool, &ids, |i| i % 2 == 0).await;
    // Two earlier days of history: all F ten days ago, a gap, then a better day yesterday.
    let today = Utc::now().date_naive();
    for (days_ago, grade_f, grade_a) in [(10u64, 14, 0), (1, 7, 7)] {
        sqlx::query(
            "insert into posture_snapshots (day, score, workloads_graded, grade_a, grade_f, origin)
             values ($1, $2, 14, $3, $4, 'backfill')",
        )
        .bind(today - Days::new(days_ago))
        .bind(grade_a as f64 * 4.0 / 14.0)
        .bind(grade_a)
        .bind(grade_f)
        .execute(&pool)
        .await
        .unwrap();
    }
    let incident: i64 = sqlx::query_scalar(
        "insert into incidents (title, severity, opened_by) values ('<b>beacon</b>', 'high', 'ada')
         returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into incidents (title, severity, state, opened_by, closed_at)
         values ('old', 'low', 'closed', 'ada', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (critical, graded): (i64, i64) =
        sqlx::query_as("select sum(findings_critical)::int8, count(grade) from workloads")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(graded, 14);
    assert!(critical >= 7);

    let app = TestApp::spawn(pool.clone()).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, "/").await;
    // 7 F (0) and 7 unprivileged workloads, whatever their grade: the mean of the grades.
    let grades: Vec<String> = sqlx::query_scalar("select grade from workloads order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let value = |g: &str| "FDCBA".find(g).unwrap() as f64;
    let mean = grades.iter().map(|g| value(g)).sum::<f64>() / 14.0;
    assert_eq!(texts(&document, ".score-value"), [format!("{mean:.1}")]);
    // The trend: ten days ago alone, then yesterday joined to today.
    assert_eq!(texts(&document, "svg.trend polyline").len(), 2);
    assert_eq!(texts(&document, "svg.trend circle").len(), 3);
    assert_eq!(texts(&document, ".trend-table tbody tr").len(), 3);
    assert_eq!(
        attr(&document, ".switch a[aria-current]", "href").as_deref(),
        Some("/?trend=30")
    );
    // Open findings by severity, each a link to the findings filtered.
    let tiles = texts(&document, ".severity-tiles a");
    assert_eq!(tiles.len(), 5);
    assert!(tiles[0].starts_with(&format!("{critical} ")), "{tiles:?}");
    assert_eq!(
        attr(&document, ".severity-tiles a", "href").as_deref(),
        Some("/findings?severity=critical")
    );
    // The riskiest ten, riskiest first: the privileged ones lead.
    let risks: Vec<i64> = texts(&document, "table.riskiest td.num")
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    assert_eq!(risks.len(), 10);
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    assert!(risks[6] >= 1000 && risks[7] < 1000, "{risks:?}");
    // Open incidents only, linked, the title as text.
    let listed = texts(&document, ".incident-list li");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].contains("<b>beacon</b>"), "{listed:?}");
    assert_eq!(
        attr(&document, ".incident-list a", "href"),
        Some(format!("/incidents/{incident}"))
    );

    let ninety = page(&user, "/?trend=90").await;
    assert_eq!(
        attr(&ninety, ".switch a[aria-current]", "href").as_deref(),
        Some("/?trend=90")
    );
    assert_eq!(user.get("/?trend=7").await.status(), 400);
    assert_eq!(user.get("/?colour=red").await.status(), 400);
}

/// A graded workload first seen at `first_seen`.
async fn graded_workload(pool: &PgPool, name: &str, first_seen: DateTime<Utc>) -> i64 {
    let source = sources::ensure(pool, "docker", "history", "tcp://history:2376")
        .await
        .unwrap();
    sqlx::query_scalar(
        "insert into workloads (source_id, kind, name, stage, first_seen, grade)
         values ($1, 'Container', $2, 'run', $3, 'A') returning id",
    )
    .bind(source)
    .bind(name)
    .bind(first_seen)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn finding_on(
    pool: &PgPool,
    workload: i64,
    check: &str,
    severity: &str,
    first_seen: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
) {
    sqlx::query(
        "insert into findings (workload_id, check_id, severity, layer, message, first_seen,
                               last_seen, status, resolved_at, resolved_reason)
         values ($1, $2, $3, 'runtime', 'seeded', $4, $4,
                 case when $5::timestamptz is null then 'open' else 'resolved' end, $5,
                 case when $5::timestamptz is null then null else 'fixed' end)",
    )
    .bind(workload)
    .bind(check)
    .bind(severity)
    .bind(first_seen)
    .bind(resolved_at)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_posture_history_is_rebuilt_from_when_findings_opened_and_resolved(pool: PgPool) {
    let today = Utc::now().date_naive();
    let day = |ago: u64| today - Days::new(ago);
    let at = |ago: u64, hour: u32| day(ago).and_hms_opt(hour, 0, 0).unwrap().and_utc();
    let web = graded_workload(&pool, "web", at(5, 10)).await;
    let db = graded_workload(&pool, "db", at(3, 10)).await;
    // web: critical from 4 days ago until 2 days ago; high from 3 days ago, still open.
    finding_on(
        &pool,
        web,
        "priv.privileged",
        "critical",
        at(4, 10),
        Some(at(2, 10)),
    )
    .await;
    finding_on(&pool, web, "caps.dangerous_added", "high", at(3, 10), None).await;
    // db: one medium opened and fixed the same day (never open at a day's end), one low open.
    finding_on(
        &pool,
        db,
        "res.no_memory_limit",
        "medium",
        at(2, 9),
        Some(at(2, 11)),
    )
    .await;
    finding_on(&pool, db, "user.root", "low", at(2, 12), None).await;
    // A day already recorded live stays as it was.
    sqlx::query(
        "insert into posture_snapshots (day, score, workloads_graded, grade_b, origin)
         values ($1, 3, 1, 1, 'live')",
    )
    .bind(day(6))
    .execute(&pool)
    .await
    .unwrap();

    let written = trend::backfill(&pool, today).await.unwrap();
    assert_eq!(written, trend::BACKFILL_DAYS as usize - 1);
    assert_eq!(
        trend::backfill(&pool, today).await.unwrap(),
        0,
        "nothing missing"
    );

    let history = trend::history(&pool, day(6), day(1)).await.unwrap();
    let rows: Vec<(NaiveDate, [i64; 5], [i64; 5])> = history
        .iter()
        .map(|d| (d.day, d.posture.grades, d.posture.open))
        .collect();
    assert_eq!(
        rows,
        [
            (day(6), [0, 1, 0, 0, 0], [0; 5]),
            // web alone, clean.
            (day(5), [1, 0, 0, 0, 0], [0; 5]),
            // web: critical → F.
            (day(4), [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]),
            // web: critical and high → F; db arrives clean → A.
            (day(3), [1, 0, 0, 0, 1], [1, 1, 0, 0, 0]),
            // web: high → C; db: one low → A.
            (day(2), [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]),
            (day(1), [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]),
        ]
    );
    assert_eq!(history[4].posture.score(), Some(3.0));
    let origins: Vec<String> =
        sqlx::query_scalar("select origin from posture_snapshots where day >= $1 order by day")
            .bind(day(6))
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(origins[0], "live");
    assert!(origins[1..].iter().all(|o| o == "backfill"), "{origins:?}");

    // Today's snapshot comes from the maintained scores.
    trend::snapshot_today(&pool, Utc::now()).await.unwrap();
    let today_row = trend::history(&pool, today, today).await.unwrap();
    assert_eq!(today_row.len(), 1);
    assert_eq!(today_row[0].posture.graded(), 2);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_workload_list_filters_by_worst_severity_and_pages_riskiest_first(pool: PgPool) {
    let ids = seed_deployments(&pool, 60).await;
    judge(&pool, &ids, |i| i % 3 == 0).await;
    let app = TestApp::spawn(pool.clone()).await;
    let user = app.login_as(Role::Viewer).await;

    let critical = page(&user, "/workloads?severity=critical&source=").await;
    let names = texts(&critical, "table.workloads tbody tr td:first-child a");
    assert_eq!(names.len(), 20);
    assert_eq!(
        texts(&critical, "#f-severity option[selected]"),
        ["critical"]
    );

    // Riskiest first, across pages, with the order kept by the links.
    let first = page(&user, "/workloads?sort=risk").await;
    let risks = |document: &scraper::Html| -> Vec<i64> {
        texts(document, "table.workloads tbody tr td.num")
            .iter()
            .map(|r| r.parse().unwrap())
            .collect()
    };
    let first_risks = risks(&first);
    assert_eq!(first_risks.len(), 50);
    assert!(first_risks.windows(2).all(|w| w[0] >= w[1]));
    assert!(first_risks[0] >= 1000);
    assert_eq!(
        texts(&first, "#f-sort option[selected]"),
        ["riskiest first"]
    );
    let next = attr(&first, "a[rel=next]", "href").expect("a next page");
    assert!(next.starts_with("/workloads?sort=risk&after="), "{next}");
    let second = page(&user, &next).await;
    let second_risks = risks(&second);
    assert_eq!(second_risks.len(), 10);
    assert!(second_risks[0] <= *first_risks.last().unwrap());
    let names: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|d| texts(d, "table.workloads tbody tr td:first-child a"))
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 60, "every workload exactly once");
    let previous = attr(&second, "a[rel=prev]", "href").expect("a previous page");
    assert_eq!(risks(&page(&user, &previous).await), first_risks);

    // The API takes the same parameters.
    let response = user
        .get("/api/v1/workloads?sort=risk&severity=critical&limit=5")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let listed = body["workloads"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|w| w["worst_severity"] == "critical"));
    let cursor = body["next"].as_str().unwrap();
    assert!(cursor.contains('.'), "{cursor}");
    let response = user
        .get(&format!(
            "/api/v1/workloads?sort=risk&severity=critical&limit=50&after={cursor}"
        ))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["workloads"].as_array().unwrap().len(), 15);
    assert_eq!(
        user.get("/api/v1/workloads?severity=info").await.status(),
        400
    );
    assert_eq!(user.get("/api/v1/workloads?sort=name").await.status(), 400);
    // Free text stays a substring match (through the trigram index).
    let found = page(&user, "/workloads?q=PP-05").await;
    assert_eq!(
        texts(&found, "table.workloads tbody tr td:first-child a").len(),
        10
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn findings_are_grouped_by_check_and_drill_down_to_their_workloads(pool: PgPool) {
    let empty = TestApp::spawn(pool.clone()).await;
    let user = empty.login_as(Role::Viewer).await;
    let document = page(&user, "/findings").await;
    assert!(texts(&document, ".empty-state")
        .join(" ")
        .contains("HARBORMASTER_DOCKER"));
    drop(empty);

    let ids = seed_deployments(&pool, 60).await;
    judge(&pool, &ids, |i| i < 55).await;
    // The empty app counted nothing a moment ago: recount now, as the server does every minute.
    harbormaster::findings::summary::refresh(&pool)
        .await
        .unwrap();
    let app = TestApp::spawn(pool.clone()).await;
    let user = app.login_as(Role::Viewer).await;
    let document = page(&user, "/findings").await;
    let severities = texts(&document, "table.finding-groups tbody tr td .sev");
    assert_eq!(severities[0], "critical", "worst first: {severities:?}");
    let row = scraper::Selector::parse("table.finding-groups tbody tr").unwrap();
    let cell = scraper::Selector::parse("td").unwrap();
    let privileged: Vec<String> = document
        .select(&row)
        .map(|tr| {
            tr.select(&cell)
                .map(|td| td.text().collect::<String>().trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells[0] == "priv.privileged")
        .expect("a group for priv.privileged");
    assert_eq!(privileged[3..], ["55", "55", "0"]);
    assert!(
        texts(&document, "nav.mainnav a[aria-current=page]") == ["Findings"],
        "the nav marks Findings"
    );

    // Filters: by severity, by the check's stage and threat, by layer.
    let critical = page(&user, "/findings?severity=critical&layer=").await;
    let checks = texts(&critical, "table.finding-groups tbody tr td:first-child");
    assert!(checks
        .iter()
        .all(|c| { harbormaster::posture::catalog::find(c).is_some() }));
    assert!(
        checks.contains(&"priv.privileged".to_string()),
        "{checks:?}"
    );
    let escape = page(&user, "/findings?threat=container_escape&stage=deploy").await;
    for check in texts(&escape, "table.finding-groups tbody tr td:first-child") {
        let meta = harbormaster::posture::catalog::find(&check).unwrap();
        assert_eq!(meta.threat.label(), "container escape", "{check}");
    }
    let none = page(&user, "/findings?layer=host&severity=info").await;
    assert!(texts(&none, ".empty-state")
        .join(" ")
        .contains("No open finding matches"));
    assert_eq!(user.get("/findings?threat=aliens").await.status(), 400);
    assert_eq!(user.get("/findings?team=payments").await.status(), 400);

    // Drill-down: the workloads with the finding, paginated, filters kept.
    let link = attr(
        &critical,
        "table.finding-groups a[href^='/findings/priv.privileged']",
        "href",
    )
    .expect("a link to the drill-down");
    assert_eq!(link, "/findings/priv.privileged?severity=critical");
    let drill = page(&user, &link).await;
    let names = texts(&drill, "table.affected tbody tr td:first-child a");
    assert_eq!(names.len(), 50);
    assert_eq!(names[0], "app-000");
    assert_eq!(
        texts(&drill, ".breadcrumbs li"),
        ["Overview", "Findings", "priv.privileged"]
    );
    assert_eq!(
        attr(&drill, ".lead a", "href").as_deref(),
        Some("/checks/priv.privileged")
    );
    let next = attr(&drill, "a[rel=next]", "href").expect("a next page");
    assert_eq!(
        next,
        format!(
            "/findings/priv.privileged?severity=critical&after={}",
            ids[49]
        )
    );
    let rest = page(&user, &next).await;
    assert_eq!(
        texts(&rest, "table.affected tbody tr td:first-child a").len(),
        5
    );
    assert!(attr(&rest, "a[rel=next]", "href").is_none());
    assert_eq!(user.get("/findings/no.such").await.status(), 404);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_responder_requests_a_waiver_from_the_workload_page_and_sees_it_pending(pool: PgPool) {
    let ids = seed_deployments(&pool, 1).await;
    judge(&pool, &ids, |_| true).await;
    let app = TestApp::spawn(pool.clone()).await;
    let path = format!("/workloads/{}", ids[0]);

    // A viewer sees the findings but no form, and may not post one.
    let viewer = app.login_as(Role::Viewer).await;
    let document = page(&viewer, &path).await;
    let recorded = texts(&document, ".recorded-finding .fail-head");
    assert!(
        recorded.iter().any(|r| r.contains("priv.privileged")),
        "{recorded:?}"
    );
    assert!(texts(&document, ".waiver-request").is_empty());
    let waivers_path = format!("{path}/waivers");
    let later = (Utc::now().date_naive() + Days::new(30)).to_string();
    let fields = [
        ("check", "priv.privileged"),
        ("reason", "a <b>vendor</b> agent needs it"),
        ("expires", later.as_str()),
    ];
    assert_eq!(viewer.post_form(&waivers_path, &fields).await.status(), 403);

    let responder = app.login_as(Role::Responder).await;
    let document = page(&responder, &path).await;
    let form = format!("form[action='{waivers_path}']");
    assert!(!texts(&document, &form).is_empty(), "a form per finding");
    assert_eq!(
        attr(&document, &format!("{form} input[name=csrf]"), "value").as_deref(),
        Some(responder.csrf.as_str())
    );
    let response = responder.post_form(&waivers_path, &fields).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("{path}#findings").as_str()
    );
    let (status, reason, by, expires): (String, String, String, DateTime<Utc>) = sqlx::query_as(
        "select status, reason, requested_by, expires_at from waivers where workload_id = $1",
    )
    .bind(ids[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "requested");
    assert_eq!(reason, "a <b>vendor</b> agent needs it");
    assert_eq!(by, responder.name);
    assert_eq!(
        expires.date_naive(),
        Utc::now().date_naive() + Days::new(31),
        "it holds through the last day given"
    );
    let document = page(&responder, &path).await;
    let shown = texts(&document, ".waiver-requested").join(" ");
    assert!(shown.contains("pending approval"), "{shown}");
    assert!(shown.contains("a <b>vendor</b> agent needs it"), "{shown}");

    // Bad input is refused and audited as a failure.
    let past = [
        ("check", "priv.privileged"),
        ("reason", "why not"),
        ("expires", "2001-01-01"),
    ];
    assert_eq!(
        responder.post_form(&waivers_path, &past).await.status(),
        422
    );
    let bad_date = [
        ("check", "priv.privileged"),
        ("reason", "x"),
        ("expires", "soon"),
    ];
    assert_eq!(
        responder.post_form(&waivers_path, &bad_date).await.status(),
        422
    );
    let audit: Vec<(String, String)> = sqlx::query_as(
        "select action, outcome from audit_log where action = 'waiver.request' order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        ["success", "failure", "failure"]
            .map(|outcome| ("waiver.request".to_string(), outcome.to_string()))
    );
    app.assert_mutations_audited().await;
}
