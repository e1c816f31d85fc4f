//! Incident response on Kubernetes: pods quarantined by label into a deny-all NetworkPolicy and
//! restored exactly, through the API and the action worker, against the in-test API server
//! ([`crate::kubernetes::kube_api`]) with the real kube client.

use std::time::{Duration, Instant};

use harbormaster::auth::Role;
use harbormaster::collect::kubernetes::{self, Target as ClusterTarget};
use harbormaster::incident::kubernetes::{KubernetesDriver, POLICY_NAME, QUARANTINE_LABEL};
use harbormaster::incident::store::{self, StepRequest};
use harbormaster::incident::workflow::Step;
use harbormaster::incident::{self, Drivers, IsolationDriver};
use harbormaster::inventory::sources;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::Arc;

use crate::common::{test_config, Browser, TestApp};
use crate::incident::{finished, open_and_queue_isolation, post};
use crate::kubernetes::kube_api::objects::{deployment, namespace, pod, replica_set, Rollout};
use crate::kubernetes::kube_api::{Call, FakeCluster};

const DIGEST: &str = "sha256:aaaa";

/// `shop` with the Deployments `web` (pods web-1-a, web-1-b) and `api` (pod api-1-a), and an
/// allow policy selecting the web pods.
fn shop(cluster: &FakeCluster) {
    let mut objects = vec![namespace("shop")];
    for (name, pods) in [("web", &["a", "b"][..]), ("api", &["a"][..])] {
        let image = format!("shop/{name}:1");
        objects.push(deployment(
            "shop",
            name,
            &image,
            Rollout::settled(pods.len() as i64, 1),
        ));
        let rs = format!("{name}-1");
        objects.push(replica_set("shop", &rs, name, 1, &image));
        for suffix in pods {
            let mut p = pod(
                "shop",
                &format!("{rs}-{suffix}"),
                "ReplicaSet",
                &rs,
                &image,
                DIGEST,
            );
            p["metadata"]["labels"] = json!({"app": name});
            objects.push(p);
        }
    }
    objects.push(json!({"kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "shop"},
        "spec": {"podSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["web"]}]},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {}}]}]}}));
    cluster.apply_all(objects);
}

fn label(cluster: &FakeCluster, pod: &str) -> Option<String> {
    cluster.object("Pod", "shop", pod).and_then(|p| {
        p["metadata"]["labels"][QUARANTINE_LABEL]
            .as_str()
            .map(String::from)
    })
}

fn policy(cluster: &FakeCluster) -> Option<Value> {
    cluster.object("NetworkPolicy", "shop", POLICY_NAME)
}

fn calls(cluster: &FakeCluster, method: &str, kind: &str) -> Vec<Call> {
    cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == method && c.kind == kind)
        .collect()
}

async fn workload(pool: &PgPool, name: &str, pods: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "select w.id, (select count(*) from instances i
                           where i.workload_id = w.id and i.removed_at is null)
             from workloads w where w.kind = 'Deployment' and w.name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some((id, count)) = row {
            if count == pods {
                return id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server did not collect {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Isolates (or restores) and waits for the outcome.
async fn act(app: &Browser, incident: i64, step: &str, key: &str) -> Value {
    let (status, action) = post(
        app,
        &format!("/api/v1/incidents/{incident}/{step}"),
        Some(key),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{action}");
    finished(app, incident, action["id"].as_i64().unwrap()).await
}

async fn fix_and_restore(app: &Browser, incident: i64) -> Value {
    let (status, body) = post(
        app,
        &format!("/api/v1/incidents/{incident}/fix"),
        None,
        json!({"fixed_digest": "sha256:0123"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    act(app, incident, "restore", &format!("restore-{incident}")).await
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn pods_are_labelled_into_a_deny_all_policy_kept_until_the_last_quarantined_pod_is_restored(
    pool: PgPool,
) {
    let cluster = FakeCluster::start().await;
    shop(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.kubeconfig = Some(cluster.kubeconfig(dir.path(), "fake"));
    config.kube_contexts = vec!["fake".into()];

    let server = TestApp::spawn_with(pool.clone(), config.clone(), None).await;
    let web = workload(&pool, "web", 2).await;
    let api = workload(&pool, "api", 1).await;
    let app = server.login_as(Role::Responder).await;

    // The workload page offers the isolation to a responder, not to a viewer, and the
    // confirmation says exactly what it does.
    let link = format!("/workloads/{web}/isolate");
    let page = app
        .get(&format!("/workloads/{web}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&link), "a responder sees Isolate…");
    let page = server
        .viewer_get(&format!("/workloads/{web}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains(&link), "a viewer does not");
    let page = app.get(&link).await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    for expected in [
        "web-1-a",
        "web-1-b",
        QUARANTINE_LABEL,
        POLICY_NAME,
        "namespace shop",
    ] {
        assert!(text.contains(expected), "{expected} in the confirmation");
    }

    // The first incident is opened from a finding of web: its page links the workload and
    // the check.
    let finding: i64 = sqlx::query_scalar(
        "select id from findings where workload_id = $1 and check_id = 'secrets.env_literal'",
    )
    .bind(web)
    .fetch_one(&pool)
    .await
    .unwrap();
    let (status, opened) = post(
        &app,
        "/api/v1/incidents",
        None,
        json!({"title": "web beacons out", "severity": "high", "workload_ids": [web],
               "finding_ids": [finding]}),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let first = opened["id"].as_i64().unwrap();
    let page = app
        .get(&format!("/incidents/{first}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("href=\"/workloads/{web}\"")),
        "{page}"
    );
    assert!(
        page.contains("href=\"/checks/secrets.env_literal\""),
        "{page}"
    );
    assert!(
        page.contains(QUARANTINE_LABEL),
        "the isolate confirmation names the label"
    );
    // A double click isolates once.
    let (status_1, click_1) = post(
        &app,
        &format!("/api/v1/incidents/{first}/isolate"),
        Some("click-1"),
        json!({}),
    )
    .await;
    let (status_2, click_2) = post(
        &app,
        &format!("/api/v1/incidents/{first}/isolate"),
        Some("click-1"),
        json!({}),
    )
    .await;
    assert_eq!((status_1, status_2), (202, 200));
    assert_eq!(click_1["id"], click_2["id"]);
    let action = finished(&app, first, click_1["id"].as_i64().unwrap()).await;
    assert_eq!(action["status"], "succeeded", "{action}");

    let value = first.to_string();
    assert_eq!(label(&cluster, "web-1-a").as_deref(), Some(value.as_str()));
    assert_eq!(label(&cluster, "web-1-b").as_deref(), Some(value.as_str()));
    assert_eq!(label(&cluster, "api-1-a"), None);
    let created = policy(&cluster).expect("the quarantine policy exists");
    assert_eq!(
        created["spec"]["podSelector"],
        json!({"matchExpressions": [{"key": QUARANTINE_LABEL, "operator": "Exists"}]})
    );
    assert_eq!(created["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(created["spec"].get("ingress").is_none() && created["spec"].get("egress").is_none());
    let patches = calls(&cluster, "PATCH", "Pod");
    assert_eq!(patches.len(), 2, "one patch per pod: {patches:?}");
    assert!(patches
        .iter()
        .all(|c| c.content_type.starts_with("application/merge-patch+json")));
    assert_eq!(
        patches[0].body,
        json!({"metadata": {"labels": {QUARANTINE_LABEL: value}}})
    );
    assert_eq!(calls(&cluster, "POST", "NetworkPolicy").len(), 1);
    let warnings = action["result"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "one warning per pod: {warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("allow-web"));
    let view: Value = app
        .get(&format!("/api/v1/incidents/{first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "isolated");
    assert_eq!(view["targets"][0]["method"], "quarantine");
    assert_eq!(view["targets"][0]["pre_state"]["label"], Value::Null);
    let page = app
        .get(&format!("/incidents/{first}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("allow-web"),
        "the warning is on the incident page"
    );

    // A second incident in the same namespace, from the workload page's form (submitted
    // twice: one incident, one isolation); the policy is already there.
    let form = [
        ("title", "api too"),
        ("severity", "critical"),
        ("idempotency_key", "form-1"),
    ];
    for _ in 0..2 {
        let response = app
            .post_form(&format!("/workloads/{api}/isolate"), &form)
            .await;
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with("/incidents/"), "{location}");
    }
    let second: i64 = sqlx::query_scalar("select id from incidents where title = 'api too'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let isolate: i64 = sqlx::query_scalar(
        "select id from incident_actions where incident_id = $1 and kind = 'isolate'",
    )
    .bind(second)
    .fetch_one(&pool)
    .await
    .unwrap();
    let action = finished(&app, second, isolate).await;
    assert_eq!(action["status"], "succeeded", "{action}");
    assert_eq!(
        label(&cluster, "api-1-a").as_deref(),
        Some(second.to_string().as_str())
    );
    assert_eq!(calls(&cluster, "POST", "NetworkPolicy").len(), 1);
    assert_eq!(
        action["result"]["warnings"],
        json!([]),
        "no other policy selects api"
    );

    // The server restarts between isolate and restore.
    server.stop().await.unwrap();
    let server = TestApp::spawn_with(pool.clone(), config, None).await;
    let app = server.login_as(Role::Responder).await;

    let action = fix_and_restore(&app, first).await;
    assert_eq!(action["status"], "succeeded", "{action}");
    assert_eq!(label(&cluster, "web-1-a"), None);
    assert_eq!(label(&cluster, "web-1-b"), None);
    assert!(
        policy(&cluster).is_some(),
        "the policy stays while api-1-a is quarantined"
    );
    assert!(calls(&cluster, "DELETE", "NetworkPolicy").is_empty());

    let action = fix_and_restore(&app, second).await;
    assert_eq!(action["status"], "succeeded", "{action}");
    assert_eq!(label(&cluster, "api-1-a"), None);
    assert!(
        policy(&cluster).is_none(),
        "the last restore removes the policy"
    );
    let deletes = calls(&cluster, "DELETE", "NetworkPolicy");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].name, POLICY_NAME);
    assert_eq!(deletes[0].status, 200);
    server.assert_mutations_audited().await;
    server.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_half_done_quarantine_is_resumed_after_a_restart_and_restore_puts_back_a_previous_label(
    pool: PgPool,
) {
    let cluster = FakeCluster::start().await;
    shop(&cluster);
    // The pod already carries the label (set by hand): restore must put that value back.
    let mut marked = cluster.object("Pod", "shop", "api-1-a").unwrap();
    marked["metadata"]["labels"][QUARANTINE_LABEL] = json!("by-hand");
    cluster.apply(marked);
    let dir = tempfile::tempdir().unwrap();
    let path = cluster.kubeconfig(dir.path(), "fake");
    let target = ClusterTarget::Context {
        kubeconfig: path,
        context: "fake".into(),
    };
    let (client, endpoint) = kubernetes::connect(&target).await.unwrap();
    let source = sources::ensure(&pool, "kubernetes", "fake", &endpoint)
        .await
        .unwrap();
    kubernetes::sync_once(&pool, source, &client).await.unwrap();
    let api = workload(&pool, "api", 1).await;

    let (opened, queued) = open_and_queue_isolation(&pool, api).await;

    // The dead server had claimed the action, saved the pre-state and labelled the pod, then
    // died before recording anything else.
    let driver = KubernetesDriver::with_client("fake", client.clone());
    store::claim_next(&pool, "replica-that-died")
        .await
        .unwrap()
        .unwrap();
    let targets = store::live_targets(&pool, opened.id).await.unwrap();
    let saved = driver.snapshot(&targets[0]).await.unwrap();
    assert_eq!(saved.pre_state["label"], "by-hand");
    store::save_target(&pool, opened.id, &targets[0], &saved)
        .await
        .unwrap();
    driver.isolate(&targets[0], &saved).await.unwrap();

    // A new server: the action is resumed and keeps the saved pre-state.
    assert_eq!(
        store::recover_interrupted(&pool, Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let mut drivers = Drivers::default();
    drivers.insert("kubernetes", Arc::new(driver));
    let ran = incident::try_execute_next_action(&pool, &drivers)
        .await
        .unwrap();
    assert_eq!(ran, Some(queued.id));
    let action = store::action(&pool, queued.id).await.unwrap().unwrap();
    assert_eq!(action.status, "succeeded", "{:?}", action.error);
    assert_eq!(
        label(&cluster, "api-1-a").as_deref(),
        Some(opened.id.to_string().as_str())
    );
    let view = store::targets(&pool, opened.id).await.unwrap();
    assert_eq!(view[0].pre_state["label"], "by-hand");

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
    let restore = incident::try_execute_next_action(&pool, &drivers)
        .await
        .unwrap()
        .unwrap();
    let action = store::action(&pool, restore).await.unwrap().unwrap();
    assert_eq!(action.status, "succeeded", "{:?}", action.error);
    assert_eq!(label(&cluster, "api-1-a").as_deref(), Some("by-hand"));
    assert!(
        policy(&cluster).is_some(),
        "a pod still carries the label: the policy stays"
    );
}
