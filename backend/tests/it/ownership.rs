//! Ownership end to end: precedence and provenance of each rule kind through the API, a
//! namespace label change re-routing findings through the real Kubernetes collector, the owner
//! history, the unowned queue, bulk assignment, self-service by a team's members, the owners
//! an incident keeps, and the pages in a real browser.

use std::time::Duration;

use fantoccini::Locator;
use harbormaster::auth::Role;
use harbormaster::collect::kubernetes::{self, ClusterWatch, Step};
use harbormaster::inventory::sources;
use harbormaster::ownership::{self, store};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::browser::Browser;
use crate::common::{html, texts, Browser as Session, TestApp};
use crate::kubernetes::kube_api::objects::{deployment, Rollout};
use crate::kubernetes::kube_api::FakeCluster;

/// A workload row (as a collector would write it), with its owners resolved.
async fn workload(
    pool: &PgPool,
    source: i64,
    namespace: &str,
    name: &str,
    labels: Value,
    image: &str,
    risk: i32,
) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "insert into workloads (source_id, namespace, kind, name, stage, labels, images, risk_score)
         values ($1, $2, 'Deployment', $3, 'run', $4, array[$5], $6) returning id",
    )
    .bind(source)
    .bind(namespace)
    .bind(name)
    .bind(labels)
    .bind(image)
    .bind(risk)
    .fetch_one(pool)
    .await
    .unwrap();
    resolve(pool, &[id]).await;
    id
}

async fn resolve(pool: &PgPool, ids: &[i64]) {
    let mut tx = pool.begin().await.unwrap();
    store::resolve(&mut tx, ids, "inventory").await.unwrap();
    tx.commit().await.unwrap();
}

async fn finding(pool: &PgPool, workload: i64, check: &str, layer: &str) -> i64 {
    sqlx::query_scalar(
        "insert into findings (workload_id, check_id, severity, layer, message)
         values ($1, $2, 'high', $3, 'seeded') returning id",
    )
    .bind(workload)
    .bind(check)
    .bind(layer)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn create_team(admin: &Session, name: &str, kind: &str) -> i64 {
    let response = admin
        .post_json("/api/v1/teams", &json!({"name": name, "kind": kind}))
        .await;
    assert_eq!(response.status(), 201, "creating team {name}");
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn create_rule(admin: &Session, rule: Value) -> i64 {
    let response = admin.post_json("/api/v1/ownership-rules", &rule).await;
    assert_eq!(response.status(), 201, "creating rule {rule}");
    response.json::<Value>().await.unwrap()["rule"]["id"]
        .as_i64()
        .unwrap()
}

/// `layer → "team via provenance"` of a workload, from the API.
async fn owners(user: &Session, id: i64) -> Vec<(String, String)> {
    let detail: Value = user
        .get(&format!("/api/v1/workloads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    detail["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let owner = match o["team"].as_str() {
                Some(team) => format!("{team} via {}", o["provenance"].as_str().unwrap()),
                None => "unowned".to_string(),
            };
            (o["layer"].as_str().unwrap().to_string(), owner)
        })
        .collect()
}

fn owner_of(owners: &[(String, String)], layer: &str) -> String {
    owners
        .iter()
        .find(|(l, _)| l == layer)
        .map(|(_, o)| o.clone())
        .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn each_rule_kind_takes_its_place_in_the_precedence_with_its_provenance(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.login_as(Role::Admin).await;
    let source = sources::ensure(&pool, "kubernetes", "prod", "https://prod")
        .await
        .unwrap();
    sqlx::query(
        "insert into namespaces (source_id, name, labels) values ($1, 'shop', '{\"team\": \"payments\"}')",
    )
    .bind(source)
    .execute(&pool)
    .await
    .unwrap();
    let id = workload(
        &pool,
        source,
        "shop",
        "api",
        json!({}),
        "registry.example.com/pay/api:1",
        10,
    )
    .await;
    assert!(owners(&admin, id).await.iter().all(|(_, o)| o == "unowned"));

    // Creating the team a namespace label names routes the namespace's workloads to it, for the
    // layers a development team owns.
    let payments = create_team(&admin, "payments", "development").await;
    let infra = create_team(&admin, "infra", "infrastructure").await;
    let ops = create_team(&admin, "ops", "operations").await;
    let checkout = create_team(&admin, "checkout", "development").await;
    let o = owners(&admin, id).await;
    assert_eq!(
        owner_of(&o, "application"),
        "payments via namespace label team=payments"
    );
    assert_eq!(
        owner_of(&o, "image"),
        "payments via namespace label team=payments"
    );
    assert_eq!(owner_of(&o, "host"), "unowned");

    // Source default: every layer nothing stronger covers.
    create_rule(
        &admin,
        json!({"kind": "source_default", "source_id": source, "team_id": infra}),
    )
    .await;
    let o = owners(&admin, id).await;
    assert_eq!(owner_of(&o, "host"), "infra via default of source prod");
    assert_eq!(owner_of(&o, "runtime"), "infra via default of source prod");
    assert_eq!(
        owner_of(&o, "application"),
        "payments via namespace label team=payments"
    );

    // Image prefix beats the source default, loses to the namespace label.
    let prefix = create_rule(
        &admin,
        json!({"kind": "image_prefix", "value": "registry.example.com/pay/", "team_id": ops}),
    )
    .await;
    let o = owners(&admin, id).await;
    assert_eq!(
        owner_of(&o, "runtime"),
        "ops via image repository prefix registry.example.com/pay/ (registry.example.com/pay/api:1)"
    );
    assert_eq!(
        owner_of(&o, "image"),
        "payments via namespace label team=payments"
    );

    // A workload label beats the namespace label (a collector write re-resolves).
    sqlx::query("update workloads set labels = '{\"owner\": \"checkout\"}' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    resolve(&pool, &[id]).await;
    let o = owners(&admin, id).await;
    assert_eq!(
        owner_of(&o, "application"),
        "checkout via workload label owner=checkout"
    );

    // An explicit assignment beats everything; clearing it gives the layer back to the rules.
    let response = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/workloads/{id}/owners"),
        )
        .json(&json!({"application": ops}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let o = owners(&admin, id).await;
    assert_eq!(
        owner_of(&o, "application"),
        format!("ops via assigned by {}", admin.name)
    );
    let response = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/workloads/{id}/owners"),
        )
        .json(&json!({"application": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        owner_of(&owners(&admin, id).await, "application"),
        "checkout via workload label owner=checkout"
    );

    // Deleting a rule resolves what it decided again.
    let response = admin
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/ownership-rules/{prefix}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        owner_of(&owners(&admin, id).await, "runtime"),
        "infra via default of source prod"
    );

    // Every change of team is history, with its cause; the workload counts its owned layers.
    let history: Value = admin
        .get(&format!("/api/v1/workloads/{id}/owners"))
        .await
        .json()
        .await
        .unwrap();
    let causes: Vec<String> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["layer"] == "application")
        .map(|h| {
            format!(
                "{} -> {}: {}",
                h["from_team"],
                h["to_team"],
                h["cause"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        causes,
        vec![
            format!(
                "\"ops\" -> \"checkout\": assignment by {}: workload label owner=checkout",
                admin.name
            ),
            format!(
                "\"checkout\" -> \"ops\": assignment by {0}: assigned by {0}",
                admin.name
            ),
            "\"payments\" -> \"checkout\": inventory: workload label owner=checkout".to_string(),
            "null -> \"payments\": team payments created: namespace label team=payments"
                .to_string(),
        ],
        "newest first"
    );
    let owned: i32 = sqlx::query_scalar("select owned_layers from workloads where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(owned, 5);
    // The team filter of the workload list, and `team_for` for other areas.
    let list: Value = admin
        .get(&format!("/api/v1/workloads?team={checkout}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["workloads"].as_array().unwrap().len(), 1);
    let list: Value = admin
        .get(&format!("/api/v1/workloads?team={payments}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        list["workloads"].as_array().unwrap().is_empty(),
        "checkout took both development layers"
    );
    let mut conn = pool.acquire().await.unwrap();
    let team = ownership::team_for(&mut conn, id, "host")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(team.name, "infra");
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

/// Steps the watchers until `done` holds (10 s at most).
async fn step_until(watch: &mut ClusterWatch, pool: &PgPool, what: &str, done: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holds: bool = sqlx::query_scalar(done).fetch_one(pool).await.unwrap();
        if holds {
            return;
        }
        match tokio::time::timeout_at(deadline, watch.step()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Err(err)) => panic!("writing failed: {err}"),
            Ok(Ok(Step::Ended)) => panic!("the watch ended"),
            Ok(Ok(_)) => {}
        }
    }
}

fn labelled_namespace(name: &str, team: &str) -> Value {
    json!({"kind": "Namespace", "metadata": {"name": name, "labels": {"team": team},
           "annotations": {"note": "<b>not markup</b>"}}})
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_namespace_label_change_reroutes_that_namespaces_findings(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.login_as(Role::Admin).await;
    let payments = create_team(&admin, "payments", "development").await;
    let checkout = create_team(&admin, "checkout", "development").await;

    let cluster = FakeCluster::start().await;
    cluster.apply_all([
        labelled_namespace("shop", "payments"),
        labelled_namespace("other", "payments"),
        deployment("shop", "web", "nginx:1", Rollout::settled(0, 1)),
        deployment("other", "db", "postgres:16", Rollout::settled(0, 1)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = cluster.kubeconfig(dir.path(), "fake");
    let targets = kubernetes::watch::targets_from_kubeconfig(&path, &[]).unwrap();
    let (client, endpoint) = kubernetes::connect(&targets[0]).await.unwrap();
    let source = sources::ensure(&pool, "kubernetes", "fake", &endpoint)
        .await
        .unwrap();
    let mut watch = ClusterWatch::new(pool.clone(), source, client);
    step_until(
        &mut watch,
        &pool,
        "both workloads owned",
        "select count(*) = 2 from workloads where owned_layers = 2",
    )
    .await;
    let stored: (Value, Value) = sqlx::query_as(
        "select labels, annotations from namespaces where source_id = $1 and name = 'shop'",
    )
    .bind(source)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored.0, json!({"team": "payments"}));
    assert_eq!(stored.1["note"], "<b>not markup</b>");
    let web: i64 = sqlx::query_scalar("select id from workloads where name = 'web'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let db: i64 = sqlx::query_scalar("select id from workloads where name = 'db'")
        .fetch_one(&pool)
        .await
        .unwrap();
    finding(&pool, web, "test.seeded", "image").await;
    finding(&pool, db, "test.seeded", "image").await;
    // The open image-layer findings of each workload (the collector's own and the seeded one).
    let open_of = |id: i64| {
        let pool = pool.clone();
        async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "select id from findings where workload_id = $1 and layer = 'image' and status = 'open' order by id",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
            ids
        }
    };
    let web_findings = open_of(web).await;
    let db_findings = open_of(db).await;
    let both: Vec<i64> = {
        let mut all = [web_findings.clone(), db_findings.clone()].concat();
        all.sort_unstable();
        all
    };
    let routed = |team: i64| {
        let admin = &admin;
        async move {
            let page: Value = admin
                .get(&format!("/api/v1/findings?team={team}&layer=image"))
                .await
                .json()
                .await
                .unwrap();
            let mut ids: Vec<i64> = page["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_i64().unwrap())
                .collect();
            ids.sort_unstable();
            ids
        }
    };
    assert_eq!(routed(payments).await, both);
    assert!(routed(checkout).await.is_empty());

    // The label of one namespace changes: its workloads, and only them, move to checkout.
    cluster.apply(labelled_namespace("shop", "checkout"));
    step_until(
        &mut watch,
        &pool,
        "shop routed to checkout",
        &format!("select exists (select 1 from workload_owners where workload_id = {web} and team_id = {checkout})"),
    )
    .await;
    assert_eq!(routed(checkout).await, web_findings);
    assert_eq!(routed(payments).await, db_findings);
    // The findings page counts the team's routed findings the same way.
    let page_total = |team: i64| {
        let admin = &admin;
        async move {
            let page = html(
                &admin
                    .get(&format!("/findings?team={team}&layer=image"))
                    .await
                    .text()
                    .await
                    .unwrap(),
            );
            texts(&page, "table.finding-groups tbody td:nth-child(5)")
                .iter()
                .map(|n| n.parse::<usize>().unwrap())
                .sum::<usize>()
        }
    };
    assert_eq!(page_total(checkout).await, web_findings.len());
    assert_eq!(page_total(payments).await, db_findings.len());
    assert_eq!(
        owner_of(&owners(&admin, web).await, "image"),
        "checkout via namespace label team=checkout"
    );
    let causes: Vec<String> =
        sqlx::query_scalar("select cause from owner_history where workload_id = $1 order by id")
            .bind(web)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        causes.last().unwrap(),
        "Kubernetes namespace shop changed: namespace label team=checkout"
    );
    // The label goes away: the layers are unowned again, and the history says so.
    cluster.apply(json!({"kind": "Namespace", "metadata": {"name": "shop"}}));
    step_until(
        &mut watch,
        &pool,
        "shop unowned",
        &format!("select owned_layers = 0 from workloads where id = {web}"),
    )
    .await;
    let last: String = sqlx::query_scalar(
        "select cause from owner_history where workload_id = $1 order by id desc limit 1",
    )
    .bind(web)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        last,
        "Kubernetes namespace shop changed: no rule covers the layer"
    );
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_unowned_queue_puts_the_riskiest_first_and_bulk_assignment_empties_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.login_as(Role::Admin).await;
    let source = sources::ensure(&pool, "docker", "local", "unix:///x")
        .await
        .unwrap();
    let low = workload(&pool, source, "shop", "low", json!({}), "a:1", 5).await;
    let high = workload(&pool, source, "shop", "high", json!({}), "a:1", 90).await;
    let mid = workload(&pool, source, "misc", "mid", json!({}), "a:1", 40).await;
    let retired = workload(&pool, source, "misc", "gone", json!({}), "a:1", 99).await;
    sqlx::query("update workloads set stage = 'retire' where id = $1")
        .bind(retired)
        .execute(&pool)
        .await
        .unwrap();
    let infra = create_team(&admin, "infra", "infrastructure").await;
    create_rule(
        &admin,
        json!({"kind": "source_default", "source_id": source, "layer": "host", "team_id": infra}),
    )
    .await;
    let queue: Value = app
        .viewer_get("/api/v1/unowned?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["total"], 3);
    let ids: Vec<i64> = queue["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![high, mid]);
    assert_eq!(
        queue["workloads"][0]["missing"],
        json!(["application", "image", "runtime", "orchestration"])
    );
    let next = queue["next"].as_str().unwrap();
    let rest: Value = app
        .viewer_get(&format!("/api/v1/unowned?limit=2&after={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["workloads"][0]["id"], low);
    assert!(rest["next"].is_null());

    // The overview's panel counts them and lists the riskiest.
    let overview = html(&app.viewer_get("/").await.text().await.unwrap());
    assert_eq!(texts(&overview, ".unowned-total"), vec!["3"]);
    assert_eq!(texts(&overview, ".unowned-top li a")[0], "shop/high");

    // Bulk assignment from the filtered list: refused when the confirmed count is stale.
    let shop = create_team(&admin, "shop-team", "platform").await;
    let page = html(
        &admin
            .get("/workloads?namespace=shop")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        texts(&page, "#bulk-owner"),
        vec!["Assign an owner to these 2 workloads"]
    );
    let shop = shop.to_string();
    let assign = |confirmed: &'static str| {
        let (admin, shop) = (&admin, shop.clone());
        async move {
            let fields = [
                ("namespace", "shop"),
                ("assign_team", shop.as_str()),
                ("assign_layer", "all"),
                ("expected_count", confirmed),
            ];
            admin.post_form("/workloads/owners", &fields).await.status()
        }
    };
    assert_eq!(assign("3").await, 409, "the confirmed count is stale");
    assert_eq!(assign("2").await, 303);
    let queue: Value = app
        .viewer_get("/api/v1/unowned")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["total"], 1);
    assert_eq!(queue["workloads"][0]["id"], mid);
    // The unowned filter of the workload list agrees.
    let list: Value = app
        .viewer_get("/api/v1/workloads?team=none&stage=run")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["workloads"].as_array().unwrap().len(), 1);
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_viewer_cannot_change_ownership_but_a_team_member_acknowledges_and_requests_a_waiver(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.login_as(Role::Admin).await;
    let member = app.login_as(Role::Viewer).await;
    let outsider = app.login_as(Role::Viewer).await;
    let responder = app.login_as(Role::Responder).await;
    let source = sources::ensure(&pool, "docker", "local", "unix:///x")
        .await
        .unwrap();
    let payments = create_team(&admin, "payments", "development").await;
    let id = workload(
        &pool,
        source,
        "shop",
        "api",
        json!({"team": "payments"}),
        "a:1",
        10,
    )
    .await;
    let image_finding = finding(&pool, id, "user.runs_as_root", "image").await;
    let host_finding = finding(&pool, id, "mount.runtime_socket", "host").await;

    // Ownership changes are for admins only.
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/teams".to_string(),
            json!({"name": "x", "kind": "security"}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/ownership-rules".to_string(),
            json!({"kind": "image_prefix", "value": "a", "team_id": payments}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/workloads/{id}/owners"),
            json!({"host": payments}),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/teams/{payments}/members"),
            json!({"user": member.name}),
        ),
    ] {
        for user in [&member, &responder] {
            let status = user
                .request(method.clone(), &path)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 403, "{} {method} {path}", user.name);
        }
    }
    let status = member
        .post_form(
            &format!("/workloads/{id}/owners"),
            &[("layer", "host"), ("team", &payments.to_string())],
        )
        .await
        .status();
    assert_eq!(status, 403);
    assert_eq!(owner_of(&owners(&admin, id).await, "host"), "unowned");

    // Not a member yet: no acknowledgement, no waiver request.
    let ack = format!("/api/v1/findings/{image_finding}/acknowledge");
    assert_eq!(member.post_json(&ack, &json!({})).await.status(), 403);
    let waiver = json!({"check": "user.runs_as_root", "workload_id": id, "reason": "base image fix next sprint",
                        "expires_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339()});
    assert_eq!(
        member.post_json("/api/v1/waivers", &waiver).await.status(),
        403
    );

    let response = admin
        .post_json(
            &format!("/api/v1/teams/{payments}/members"),
            &json!({"user": member.name}),
        )
        .await;
    assert_eq!(response.status(), 201);
    // A member acknowledges a finding of a layer the team owns, and requests a waiver for it.
    let response = member.post_json(&ack, &json!({})).await;
    assert_eq!(response.status(), 200);
    let acked: Value = response.json().await.unwrap();
    assert_eq!(acked["acknowledged_by"], member.name.as_str());
    let response = member.post_json("/api/v1/waivers", &waiver).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap()["requested_by"],
        member.name.as_str()
    );
    // Not for a layer the team does not own, nor another scope, nor as an outsider.
    let host_ack = format!("/api/v1/findings/{host_finding}/acknowledge");
    assert_eq!(member.post_json(&host_ack, &json!({})).await.status(), 403);
    let mut wide = waiver.clone();
    wide.as_object_mut().unwrap().remove("workload_id");
    wide["namespace"] = json!("shop");
    assert_eq!(
        member.post_json("/api/v1/waivers", &wide).await.status(),
        403
    );
    assert_eq!(outsider.post_json(&ack, &json!({})).await.status(), 403);
    // An admin acknowledges anything; responders keep requesting waivers of any scope.
    assert_eq!(admin.post_json(&host_ack, &json!({})).await.status(), 200);
    assert_eq!(
        responder.post_json("/api/v1/waivers", &wide).await.status(),
        201
    );

    // The team page shows the member the team's findings with the self-service forms.
    let page = html(
        &member
            .get(&format!("/teams/{payments}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        texts(&page, ".team-finding .acknowledged"),
        vec![format!("acknowledged by {}", member.name)]
    );
    assert_eq!(
        texts(&page, ".team-waivers li code"),
        vec!["user.runs_as_root"]
    );
    let page = html(
        &outsider
            .get(&format!("/teams/{payments}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        texts(&page, ".waiver-request").is_empty(),
        "no forms for an outsider"
    );
    // The console form of a waiver request works for the member.
    let response = member
        .post_form(
            &format!("/findings/{image_finding}/waiver"),
            &[("reason", "again"), ("days", "10"), ("next", "/teams")],
        )
        .await;
    assert_eq!(response.status(), 303);

    // An incident keeps who owned the workload when it was opened.
    let response = responder
        .post_json(
            "/api/v1/incidents",
            &json!({"title": "shell in api", "severity": "high", "workload_ids": [id]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let incident = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let checkout = create_team(&admin, "checkout", "development").await;
    let response = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/workloads/{id}/owners"),
        )
        .json(&json!({"application": checkout, "image": checkout}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = html(
        &member
            .get(&format!("/incidents/{incident}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        texts(&page, ".owners-at-open tbody td:nth-child(3)"),
        vec!["payments", "payments"]
    );
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_ownership_pages_work_in_a_real_browser(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_user("ada", Role::Admin, "correct horse battery staple")
        .await;
    let source = sources::ensure(&pool, "docker", "local", "unix:///x")
        .await
        .unwrap();
    let id = workload(
        &pool,
        source,
        "shop",
        "api",
        json!({"team": "payments"}),
        "a:1",
        30,
    )
    .await;
    finding(&pool, id, "user.runs_as_root", "image").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let client = &browser.client;
    browser
        .sign_in(&app.url, "ada", "correct horse battery staple")
        .await;

    // Create the team with the console form: the label routes the workload to it at once.
    client.goto(&app.url("/teams")).await.unwrap();
    client
        .find(Locator::Css(".team-form input[name=name]"))
        .await
        .unwrap()
        .send_keys("payments")
        .await
        .unwrap();
    client
        .find(Locator::Css(".team-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The team's page, once the submit's navigation is done (the list page has an h1 too).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = match client.find(Locator::Css("main h1")).await {
            Ok(heading) => heading.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.starts_with("payments") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the team page never came: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finding_row = client
        .find(Locator::Css(".team-finding code"))
        .await
        .unwrap();
    assert_eq!(finding_row.text().await.unwrap(), "user.runs_as_root");
    browser.screenshot("ownership-team").await;

    client
        .goto(&app.url(&format!("/workloads/{id}")))
        .await
        .unwrap();
    let provenance = client
        .find(Locator::Css(
            ".owner-row[data-layer=application] .provenance",
        ))
        .await
        .unwrap();
    assert_eq!(
        provenance.text().await.unwrap(),
        "via workload label team=payments"
    );
    browser.screenshot("ownership-workload").await;

    for (path, title) in [
        ("/ownership/matrix", "Responsibility matrix"),
        ("/ownership/rules", "Ownership rules"),
        ("/unowned", "Unowned workloads"),
    ] {
        client.goto(&app.url(path)).await.unwrap();
        assert_eq!(
            client.title().await.unwrap(),
            format!("{title} · Harbormaster")
        );
        browser
            .screenshot(&format!("ownership{}", path.replace('/', "-")))
            .await;
    }
    client.goto(&app.url("/ownership/matrix")).await.unwrap();
    let cell = client
        .find(Locator::Css("tr[data-layer=image] .matrix-cell a"))
        .await
        .unwrap();
    assert_eq!(cell.text().await.unwrap(), "1");
    browser.close().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn teams_and_rules_of_the_configuration_file_apply_at_start_and_leave_with_it(pool: PgPool) {
    use harbormaster::config::{ConfiguredRule, ConfiguredTeam};

    let source = sources::ensure(&pool, "kubernetes", "prod", "https://prod:6443")
        .await
        .unwrap();
    let id = workload(
        &pool,
        source,
        "shop",
        "api",
        json!({}),
        "registry.example.com/pay/api:1",
        0,
    )
    .await;
    let mut config = crate::common::test_config();
    config.ownership_teams = vec![ConfiguredTeam {
        name: "payments".into(),
        kind: "development".into(),
        contact: String::new(),
    }];
    config.ownership_rules = vec![ConfiguredRule {
        kind: "image_prefix".into(),
        key: String::new(),
        value: "registry.example.com/pay/".into(),
        source: None,
        layer: Some("image".into()),
        team: "payments".into(),
    }];
    let owner = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "select t.name from workload_owners o join teams t on t.id = o.team_id
             where o.workload_id = $1 and o.layer = 'image'",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .unwrap()
    };

    let app = TestApp::spawn_with(pool.clone(), config.clone(), None).await;
    assert_eq!(owner(pool.clone()).await.as_deref(), Some("payments"));
    let admin = app.login_as(Role::Admin).await;
    let rules: Value = admin
        .get("/api/v1/ownership-rules")
        .await
        .json()
        .await
        .unwrap();
    assert!(rules.to_string().contains("harbormaster.toml"), "{rules}");
    drop(app);

    // A start with the same file changes nothing; a start without the rule removes it.
    TestApp::spawn_with(pool.clone(), config.clone(), None).await;
    let configured: i64 = sqlx::query_scalar(
        "select count(*) from ownership_rules where created_by = 'harbormaster.toml'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(configured, 1);
    config.ownership_rules.clear();
    TestApp::spawn_with(pool.clone(), config.clone(), None).await;
    assert_eq!(owner(pool.clone()).await, None);

    // A rule naming a team that does not exist stops the start, naming it.
    config.ownership_rules = vec![ConfiguredRule {
        kind: "namespace_label".into(),
        key: "team".into(),
        value: "shop".into(),
        source: None,
        layer: None,
        team: "nobody".into(),
    }];
    let err = harbormaster::startup::Application::with_pool(config, pool.clone())
        .await
        .err()
        .expect("the start is refused");
    assert!(err.to_string().contains("'nobody'"), "{err:#}");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_admin_changes_a_rule_in_place_and_owners_follow_but_not_a_rule_of_the_file(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.login_as(Role::Admin).await;
    let source = sources::ensure(&pool, "kubernetes", "prod", "https://prod:6443")
        .await
        .unwrap();
    let api = workload(
        &pool,
        source,
        "shop",
        "api",
        json!({}),
        "registry.example.com/pay/api:1",
        0,
    )
    .await;
    let web = workload(
        &pool,
        source,
        "shop",
        "web",
        json!({}),
        "registry.example.com/web/site:1",
        0,
    )
    .await;
    let ops = create_team(&admin, "ops", "operations").await;
    let rule = create_rule(
        &admin,
        json!({"kind": "image_prefix", "value": "registry.example.com/pay/", "layer": "runtime",
               "team_id": ops}),
    )
    .await;
    assert!(owner_of(&owners(&admin, api).await, "runtime").starts_with("ops via"));

    let changed = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/ownership-rules/{rule}"),
        )
        .json(
            &json!({"kind": "image_prefix", "value": "registry.example.com/web/",
                      "layer": "runtime", "team_id": ops}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["rule"]["id"], rule, "changed in place: {body}");
    assert_eq!(owner_of(&owners(&admin, api).await, "runtime"), "unowned");
    assert!(owner_of(&owners(&admin, web).await, "runtime").starts_with("ops via"));
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where action = 'ownership.rule.update' and outcome = 'success'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    let bad = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/ownership-rules/{rule}"),
        )
        .json(&json!({"kind": "image_prefix", "value": "", "team_id": ops}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "an empty prefix is refused");

    sqlx::query("update ownership_rules set created_by = 'harbormaster.toml' where id = $1")
        .bind(rule)
        .execute(&pool)
        .await
        .unwrap();
    let refused = admin
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/ownership-rules/{rule}"),
        )
        .json(&json!({"kind": "image_prefix", "value": "x/", "team_id": ops}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("harbormaster.toml"));
}
