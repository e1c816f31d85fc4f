//! The console pages: HTML structure (parsed with scraper) over a real database, and the whole
//! console in a real headless Chromium over the real Docker collector.

use std::collections::HashMap;

use fantoccini::Locator;
use harbormaster::collect::docker::Collector;
use harbormaster::config::{parse_docker_endpoint, Config};
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
            "Images",
            "Incidents",
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
    seed_deployments(&pool, 60).await;

    let mut config: Config = test_config();
    config.docker_endpoints = vec![LOCAL.to_string()];
    let app = TestApp::spawn_with(pool, config, None).await;
    app.create_user("grace", Role::Viewer, "correct horse battery staple")
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
    browser.screenshot("console-overview").await;

    // The list: filter through the form, then page with the links.
    client.goto(&app.url("/workloads")).await.unwrap();
    browser.screenshot("console-workloads").await;
    client
        .find(Locator::Css("a[rel=next]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rows = client
        .find_all(Locator::Css("table.workloads tbody tr"))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    client
        .find(Locator::Css("a[rel=prev]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let first = client
        .find(Locator::Css("table.workloads tbody tr td a"))
        .await
        .unwrap();
    assert!(!first.text().await.unwrap().is_empty());
    let search = client.find(Locator::Css("#f-q")).await.unwrap();
    search.send_keys(&containers.prefix).await.unwrap();
    client
        .find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Wait for the filtered page before reading it (the click only starts the navigation).
    for _ in 0..100 {
        let url = client.current_url().await.unwrap();
        let ready = client
            .execute("return document.readyState;", vec![])
            .await
            .unwrap();
        if url.as_str().contains("q=hm-test-console-") && ready == "complete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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

    for (path, name) in [
        ("/checks", "console-checks"),
        ("/checks/priv.privileged", "console-check"),
        ("/sources", "console-sources"),
        ("/images", "console-images"),
    ] {
        client.goto(&app.url(path)).await.unwrap();
        let heading = client.find(Locator::Css("main h1")).await.unwrap();
        assert!(!heading.text().await.unwrap().is_empty());
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
