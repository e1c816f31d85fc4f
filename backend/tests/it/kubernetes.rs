//! The Kubernetes collector end to end: the real `kube` client and kube-runtime watchers against
//! the in-test API server ([`kube_api`]), writing to a real database.

#[path = "kube_api.rs"]
pub mod kube_api;

use std::time::Duration;

use harbormaster::collect::kubernetes::{self, ClusterWatch, Step, Target};
use harbormaster::inventory::sources;
use harbormaster::lifecycle::store::history;
use kube_api::objects::{cron_job, deployment, job, namespace, pod, replica_set, Rollout};
use kube_api::FakeCluster;
use sqlx::PgPool;

const A: &str = "sha256:aaaa";
const B: &str = "sha256:bbbb";

struct Harness {
    cluster: FakeCluster,
    watch: ClusterWatch,
    source: i64,
    pool: PgPool,
    _dir: tempfile::TempDir,
}

async fn start(pool: &PgPool, cluster: FakeCluster) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = cluster.kubeconfig(dir.path(), "fake");
    let targets = kubernetes::watch::targets_from_kubeconfig(&path, &[]).unwrap();
    assert_eq!(
        targets,
        vec![Target::Context {
            kubeconfig: path.clone(),
            context: "fake".into()
        }]
    );
    let (client, endpoint) = kubernetes::connect(&targets[0]).await.unwrap();
    let source = sources::ensure(pool, "kubernetes", "fake", &endpoint)
        .await
        .unwrap();
    Harness {
        cluster,
        watch: ClusterWatch::new(pool.clone(), source, client),
        source,
        pool: pool.clone(),
        _dir: dir,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Row {
    kind: String,
    name: String,
    stage: String,
    instances_total: i32,
    instances_running: i32,
}

impl Harness {
    async fn workloads(&self) -> Vec<Row> {
        sqlx::query_as::<_, Row>(
            "select kind, name, stage, instances_total, instances_running from workloads
             where source_id = $1 order by namespace, kind, name",
        )
        .bind(self.source)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Names of the live pods of every workload, as `workload/pod`.
    async fn pods(&self) -> Vec<String> {
        sqlx::query_scalar(
            "select w.name || '/' || i.name from instances i join workloads w on w.id = i.workload_id
             where i.source_id = $1 and i.removed_at is null order by 1",
        )
        .bind(self.source)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn stages(&self, kind: &str, name: &str) -> Vec<String> {
        let id: i64 = sqlx::query_scalar(
            "select id from workloads where source_id = $1 and kind = $2 and name = $3",
        )
        .bind(self.source)
        .bind(kind)
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        history(&self.pool, id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.to_stage)
            .collect()
    }

    /// Steps the watchers until `done` holds on the database (10 s at most).
    async fn step_until(&mut self, what: &str, done: impl Fn(&[Row], &[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if done(&self.workloads().await, &self.pods().await) {
                return;
            }
            let step = tokio::time::timeout_at(deadline, self.watch.step()).await;
            match step {
                Err(_) => panic!(
                    "timed out waiting for {what}; workloads: {:#?}",
                    self.workloads().await
                ),
                Ok(Err(err)) => panic!("writing failed: {err}"),
                Ok(Ok(Step::Ended)) => panic!("the watch ended"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn has(rows: &[Row], kind: &str, name: &str, stage: &str, total: i32, running: i32) -> bool {
    rows.iter().any(|r| {
        r.kind == kind
            && r.name == name
            && r.stage == stage
            && r.instances_total == total
            && r.instances_running == running
    })
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_deployment_rollout_goes_through_update_to_run_then_scale_to_zero_and_retire(
    pool: PgPool,
) {
    let cluster = FakeCluster::start().await;
    cluster.apply_all([
        namespace("shop"),
        deployment("shop", "web", "shop/web:1", Rollout::settled(2, 1)),
        replica_set("shop", "web-1", "web", 1, "shop/web:1"),
        pod("shop", "web-1-a", "ReplicaSet", "web-1", "shop/web:1", A),
        pod("shop", "web-1-b", "ReplicaSet", "web-1", "shop/web:1", A),
    ]);
    let mut h = start(&pool, cluster).await;
    h.step_until("the first sync", |rows, _| {
        has(rows, "Deployment", "web", "run", 2, 2)
    })
    .await;
    assert_eq!(
        h.workloads().await.len(),
        1,
        "the ReplicaSet is not a workload of its own"
    );
    let source = &sources::list(&pool).await.unwrap()[0];
    assert!(source.connected && source.last_resync_at.is_some());
    assert_eq!(source.counts["Pod"], 2);
    let declared: serde_json::Value =
        sqlx::query_scalar("select declared from workloads where name = 'web'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        declared["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/web:1"
    );
    assert!(
        !declared.to_string().contains("hunter2"),
        "secret values are redacted"
    );

    // The template changes: the controller has not observed it yet.
    h.cluster.apply(deployment(
        "shop",
        "web",
        "shop/web:2",
        Rollout {
            replicas: 2,
            generation: 2,
            observed: 1,
            updated: 0,
            total: 2,
        },
    ));
    h.step_until("the update", |rows, _| {
        has(rows, "Deployment", "web", "update", 2, 2)
    })
    .await;
    // New pods come up beside the old ones: still updating.
    h.cluster.apply_all([
        replica_set("shop", "web-2", "web", 2, "shop/web:2"),
        pod("shop", "web-2-a", "ReplicaSet", "web-2", "shop/web:2", B),
        pod("shop", "web-2-b", "ReplicaSet", "web-2", "shop/web:2", B),
    ]);
    h.step_until("new pods", |rows, _| {
        has(rows, "Deployment", "web", "update", 4, 4)
    })
    .await;
    h.cluster.delete("Pod", "shop", "web-1-a");
    h.cluster.delete("Pod", "shop", "web-1-b");
    h.step_until("old pods gone", |rows, _| {
        has(rows, "Deployment", "web", "update", 2, 2)
    })
    .await;
    // The rollout completes.
    h.cluster.apply(deployment(
        "shop",
        "web",
        "shop/web:2",
        Rollout::settled(2, 2),
    ));
    h.step_until("the rollout done", |rows, _| {
        has(rows, "Deployment", "web", "run", 2, 2)
    })
    .await;
    assert_eq!(
        h.stages("Deployment", "web").await,
        ["run", "update", "run"]
    );
    let digests: Vec<String> =
        sqlx::query_scalar("select image_digests from workloads where name = 'web'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(digests, [B]);

    // Scale to zero: the pods go, the Deployment stays deployed.
    h.cluster.apply(deployment(
        "shop",
        "web",
        "shop/web:2",
        Rollout::settled(0, 3),
    ));
    h.cluster.delete("Pod", "shop", "web-2-a");
    h.cluster.delete("Pod", "shop", "web-2-b");
    h.step_until("scaled to zero", |rows, _| {
        has(rows, "Deployment", "web", "deploy", 0, 0)
    })
    .await;

    // Deleted: retired.
    h.cluster.delete("Deployment", "shop", "web");
    h.cluster.delete("ReplicaSet", "shop", "web-1");
    h.cluster.delete("ReplicaSet", "shop", "web-2");
    h.step_until("retired", |rows, _| {
        has(rows, "Deployment", "web", "retire", 0, 0)
    })
    .await;
    assert_eq!(
        h.stages("Deployment", "web").await,
        ["run", "update", "run", "deploy", "retire"]
    );
    let retired: i64 = sqlx::query_scalar(
        "select count(*) from workloads where name = 'web' and retired_at is not null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(retired, 1);
    assert!(h.cluster.bookmarks_asked(), "the watches ask for bookmarks");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_cron_jobs_jobs_and_pods_are_grouped_under_the_cron_job(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    cluster.apply_all([
        cron_job("batch", "nightly", "batch/report:1"),
        job("batch", "nightly-100", Some("nightly"), "batch/report:1"),
        job("batch", "nightly-200", Some("nightly"), "batch/report:1"),
        pod(
            "batch",
            "nightly-100-x",
            "Job",
            "nightly-100",
            "batch/report:1",
            A,
        ),
        pod(
            "batch",
            "nightly-200-y",
            "Job",
            "nightly-200",
            "batch/report:1",
            A,
        ),
        job("batch", "migrate", None, "batch/migrate:1"),
    ]);
    let mut h = start(&pool, cluster).await;
    h.step_until("the first sync", |rows, _| {
        has(rows, "CronJob", "nightly", "run", 2, 2) && has(rows, "Job", "migrate", "deploy", 0, 0)
    })
    .await;
    let kinds: Vec<String> = h
        .workloads()
        .await
        .into_iter()
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect();
    assert_eq!(
        kinds,
        ["CronJob/nightly", "Job/migrate"],
        "Jobs of a CronJob are not workloads"
    );

    // The older Job and its pod are cleaned up; a new one runs.
    h.cluster.delete("Pod", "batch", "nightly-100-x");
    h.cluster.delete("Job", "batch", "nightly-100");
    h.cluster.apply_all([
        job("batch", "nightly-300", Some("nightly"), "batch/report:1"),
        pod(
            "batch",
            "nightly-300-z",
            "Job",
            "nightly-300",
            "batch/report:1",
            A,
        ),
    ]);
    h.step_until("the next run", |_, pods| {
        pods == ["nightly/nightly-200-y", "nightly/nightly-300-z"]
    })
    .await;
    let rows = h.workloads().await;
    assert!(has(&rows, "CronJob", "nightly", "run", 2, 2), "{rows:#?}");
    assert_eq!(
        rows.len(),
        2,
        "no Job of the CronJob became a workload: {rows:#?}"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_410_during_the_watch_relists_without_losing_or_duplicating_workloads(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    let mut objects = vec![namespace("shop")];
    for name in ["a", "b", "c"] {
        objects.push(deployment("shop", name, "shop/x:1", Rollout::settled(1, 1)));
        objects.push(replica_set(
            "shop",
            &format!("{name}-1"),
            name,
            1,
            "shop/x:1",
        ));
        objects.push(pod(
            "shop",
            &format!("{name}-1-p"),
            "ReplicaSet",
            &format!("{name}-1"),
            "shop/x:1",
            A,
        ));
    }
    cluster.apply_all(objects);
    let mut h = start(&pool, cluster).await;
    h.step_until("the first sync", |rows, _| {
        rows.len() == 3 && rows.iter().all(|r| r.stage == "run")
    })
    .await;
    let lists_before = h.cluster.requests("LIST Deployment");

    // While the watches are away, `c` is deleted and `d` created; nothing is sent to the watches
    // but a 410.
    h.cluster.change_behind_watches(
        vec![
            deployment("shop", "d", "shop/x:1", Rollout::settled(1, 1)),
            replica_set("shop", "d-1", "d", 1, "shop/x:1"),
            pod("shop", "d-1-p", "ReplicaSet", "d-1", "shop/x:1", A),
        ],
        &[
            ("Deployment", "shop", "c"),
            ("ReplicaSet", "shop", "c-1"),
            ("Pod", "shop", "c-1-p"),
        ],
    );
    h.step_until("the relist", |rows, _| {
        has(rows, "Deployment", "d", "run", 1, 1) && has(rows, "Deployment", "c", "retire", 0, 0)
    })
    .await;
    assert!(
        h.cluster.requests("LIST Deployment") > lists_before,
        "the watcher listed again"
    );
    let rows = h.workloads().await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for name in ["a", "b"] {
        assert_eq!(
            h.stages("Deployment", name).await,
            ["run"],
            "{name} is untouched"
        );
    }
    let live: i64 = sqlx::query_scalar(
        "select count(*) from instances where source_id = $1 and removed_at is null",
    )
    .bind(h.source)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(live, 3);
    let source = &sources::list(&pool).await.unwrap()[0];
    assert!(source.connected, "a 410 is not an outage");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_unreachable_cluster_is_shown_as_down_with_its_error(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let path = kube_api::write_kubeconfig(dir.path(), "gone", &format!("http://127.0.0.1:{port}"));
    let targets = kubernetes::watch::targets_from_kubeconfig(&path, &["gone".into()]).unwrap();
    let (client, endpoint) = kubernetes::connect(&targets[0]).await.unwrap();
    let source = sources::ensure(&pool, "kubernetes", "gone", &endpoint)
        .await
        .unwrap();
    let mut watch = ClusterWatch::new(pool.clone(), source, client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let step = tokio::time::timeout_at(deadline, watch.step())
            .await
            .expect("an unreachable cluster is reported quickly")
            .unwrap();
        match step {
            Step::Down(_) => break,
            Step::Pending => continue,
            other => panic!("{other:?}"),
        }
    }
    let source = &sources::list(&pool).await.unwrap()[0];
    assert!(!source.connected);
    let error = source.last_error.clone().unwrap_or_default();
    assert!(error.contains("Pod") || error.contains("list"), "{error}");
    assert!(source.last_resync_at.is_none());
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_unknown_context_is_refused_with_its_name(_pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = kube_api::write_kubeconfig(dir.path(), "one", "http://127.0.0.1:1");
    let err = kubernetes::watch::targets_from_kubeconfig(&path, &["two".into()]).unwrap_err();
    assert!(err.to_string().contains("two"), "{err}");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn sync_once_lists_every_page_and_bare_pods_are_workloads(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    let mut objects = Vec::new();
    for i in 0..5 {
        let mut bare = pod(
            "tools",
            &format!("shell-{i}"),
            "None",
            "none",
            "busybox:1",
            A,
        );
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        objects.push(bare);
    }
    cluster.apply_all(objects);
    let h = start(&pool, cluster).await;
    let client = kubernetes::connect(&Target::Context {
        kubeconfig: h._dir.path().join("kubeconfig-fake"),
        context: "fake".into(),
    })
    .await
    .unwrap()
    .0;
    let persisted = kubernetes::sync_once(&pool, h.source, &client)
        .await
        .unwrap();
    assert_eq!(persisted.workloads, 5);
    assert!(h.cluster.requests("LIST Pod") >= 3, "pages of two");
    let rows = h.workloads().await;
    assert!(
        rows.iter().all(|r| r.kind == "Pod" && r.stage == "run"),
        "{rows:#?}"
    );
    // A second sync changes nothing.
    let again = kubernetes::sync_once(&pool, h.source, &client)
        .await
        .unwrap();
    assert_eq!(again.transitions, 0);
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kubernetes")
        .join(name)
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn import_takes_multi_document_yaml_and_lists_and_reports_each_bad_document(pool: PgPool) {
    use harbormaster::collect::import::{self, Outcome};

    let paths = vec![
        data("manifests.yaml"),
        data("cluster.json"),
        data("docker-inspect.json"),
    ];
    let report = import::import(&pool, &paths).await.unwrap();
    assert!(!report.is_failure());
    let problems: Vec<String> = report
        .documents
        .iter()
        .filter_map(|d| match &d.outcome {
            Outcome::Imported { .. } => None,
            Outcome::Skipped(why) | Outcome::Failed(why) => Some(format!(
                "{} {}: {}",
                d.location.file.file_name().unwrap().to_string_lossy(),
                d.location.document,
                why.split(':').next().unwrap()
            )),
        })
        .collect();
    assert_eq!(
        problems,
        [
            "manifests.yaml 3: not valid YAML or JSON",
            "manifests.yaml 4: kind Service is not collected",
        ]
    );

    let workloads: Vec<(String, String, String, String)> = sqlx::query_as(
        "select w.namespace, w.kind, w.name, w.stage from workloads w join sources s on s.id = w.source_id
         where s.kind = 'file' and s.name = 'import' order by 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let names: Vec<String> = workloads
        .iter()
        .map(|(ns, kind, name, stage)| format!("{ns}/{kind}/{name}:{stage}"))
        .collect();
    assert_eq!(
        names,
        [
            "/Container/web-1:run",
            "batch/CronJob/nightly:run",
            "batch/Job/migrate:deploy",
            "kube-system/StaticPod/etcd-node1:run",
            "shop/CronJob/unnamed-manifests-5:deploy",
            "shop/Deployment/web:run",
            "shop/Pod/debug:run",
            "shop/ReplicaSet/legacy:deploy",
        ],
        "the manifest's web and the cluster's web are one workload; the live pods make it run"
    );
    let raw: String = sqlx::query_scalar("select raw::text from instances where name = 'web-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        !raw.contains("hunter2"),
        "an imported env value is never stored: {raw}"
    );
    assert!(raw.contains("DB_PASSWORD"), "its name is kept as evidence");
    let declared: serde_json::Value = sqlx::query_scalar(
        "select declared from workloads where kind = 'Deployment' and name = 'web'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!declared.to_string().contains("hunter2"));

    // Importing the same files again changes nothing and duplicates nothing.
    let again = import::import(&pool, &paths).await.unwrap();
    assert_eq!(again.persisted.transitions, 0);
    let count: i64 = sqlx::query_scalar("select count(*) from workloads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 8, "seven Kubernetes workloads and one container");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_import_command_prints_a_summary_and_fails_only_when_nothing_was_imported(
    pool: PgPool,
) {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let database = pool.connect_options().get_database().unwrap().to_string();
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => panic!("DATABASE_URL has no database: {base}"),
    };
    let run = |paths: &[std::path::PathBuf]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_harbormaster"))
            .arg("import")
            .args(paths)
            .env("DATABASE_URL", &url)
            .env("HARBORMASTER_LOG_FORMAT", "text")
            .env_remove("HARBORMASTER_CONFIG")
            .output()
            .unwrap()
    };
    let ok = run(&[data("manifests.yaml")]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("manifests.yaml document 3: failed"),
        "{stdout}"
    );
    assert!(stdout.contains("imported 3 objects"), "{stdout}");

    let docker = run(&[data("docker-inspect.json")]);
    assert!(docker.status.success(), "docker inspect output is imported");
    let only_services = std::env::temp_dir().join(format!("hm-import-{}.yaml", std::process::id()));
    std::fs::write(&only_services, "kind: Service\nmetadata: {name: s}\n").unwrap();
    let nothing = run(std::slice::from_ref(&only_services));
    let _ = std::fs::remove_file(&only_services);
    assert!(!nothing.status.success(), "nothing importable is a failure");
    let missing = run(&[data("manifests.yaml"), data("no-such-file.yaml")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_kind_the_account_may_not_read_is_skipped_and_named_on_the_source(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    cluster.forbid("NetworkPolicy");
    cluster.apply_all([
        deployment("shop", "web", "shop/web:1", Rollout::settled(1, 1)),
        replica_set("shop", "web-1", "web", 1, "shop/web:1"),
        pod("shop", "web-1-a", "ReplicaSet", "web-1", "shop/web:1", A),
    ]);
    let mut h = start(&pool, cluster).await;
    h.step_until("the sync without NetworkPolicies", |rows, _| {
        has(rows, "Deployment", "web", "run", 1, 1)
    })
    .await;
    let source = &sources::list(&pool).await.unwrap()[0];
    assert!(source.connected);
    assert_eq!(
        source.counts["unavailable"],
        serde_json::json!(["NetworkPolicy"])
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_server_collects_the_kubeconfig_contexts_in_the_background(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    cluster.apply_all([
        cron_job("batch", "nightly", "batch/report:1"),
        job("batch", "nightly-1", Some("nightly"), "batch/report:1"),
        pod(
            "batch",
            "nightly-1-x",
            "Job",
            "nightly-1",
            "batch/report:1",
            A,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config();
    config.kubeconfig = Some(cluster.kubeconfig(dir.path(), "prod"));
    let app = crate::common::TestApp::spawn_with(pool.clone(), config, None).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stage = loop {
        let stage: Option<String> = sqlx::query_scalar(
            "select w.stage from workloads w join sources s on s.id = w.source_id
             where s.kind = 'kubernetes' and s.name = 'prod' and w.kind = 'CronJob'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if stage.is_some() || tokio::time::Instant::now() > deadline {
            break stage;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stage.as_deref(), Some("run"));
    app.stop().await.unwrap();
}

/// (check, container, status) of every finding of the source's workloads, oldest first.
async fn findings_of(pool: &PgPool, source: i64) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select f.check_id, f.container, f.status from findings f
         join workloads w on w.id = f.workload_id where w.source_id = $1 order by f.id",
    )
    .bind(source)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn finding_is(
    findings: &[(String, String, String)],
    check: &str,
    container: &str,
    status: &str,
) -> bool {
    findings
        .iter()
        .rev()
        .find(|(c, k, _)| c == check && k == container)
        .is_some_and(|(_, _, s)| s == status)
}

impl Harness {
    /// Steps the watchers until `done` holds on the findings (10 s at most).
    async fn step_until_findings(
        &mut self,
        what: &str,
        done: impl Fn(&[(String, String, String)]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let findings = findings_of(&self.pool, self.source).await;
            if done(&findings) {
                return;
            }
            match tokio::time::timeout_at(deadline, self.watch.step()).await {
                Err(_) => panic!("timed out waiting for {what}; findings: {findings:#?}"),
                Ok(Err(err)) => panic!("writing failed: {err}"),
                Ok(Ok(Step::Ended)) => panic!("the watch ended"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn service_account(namespace: &str, name: &str, automount: Option<bool>) -> serde_json::Value {
    let mut account = serde_json::json!({"kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace}});
    if let Some(automount) = automount {
        account["automountServiceAccountToken"] = serde_json::json!(automount);
    }
    account
}

fn deny_all(namespace: &str, name: &str, selector: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": selector, "policyTypes": ["Ingress", "Egress"]}})
}

fn web_cluster(cluster: &FakeCluster) {
    cluster.apply_all([
        namespace("shop"),
        deployment("shop", "web", "shop/web:1", Rollout::settled(1, 1)),
        replica_set("shop", "web-1", "web", 1, "shop/web:1"),
        pod("shop", "web-1-a", "ReplicaSet", "web-1", "shop/web:1", A),
    ]);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn network_policies_and_service_accounts_added_through_the_watch_resolve_the_findings(
    pool: PgPool,
) {
    let cluster = FakeCluster::start().await;
    web_cluster(&cluster);
    cluster.apply(service_account("shop", "default", None));
    let mut h = start(&pool, cluster).await;

    // The policies are listed: none in the namespace is a FAIL, not UNKNOWN; the default
    // ServiceAccount leaves the token mounted.
    h.step_until_findings("the first findings", |f| {
        finding_is(f, "net.no_network_policy", "", "open")
            && finding_is(f, "sa.token_automount", "", "open")
    })
    .await;

    // A deny-all policy selecting the pods arrives through the watch.
    h.cluster.apply(deny_all(
        "shop",
        "deny-web",
        serde_json::json!({"matchLabels": {"app": "web"}}),
    ));
    h.step_until_findings("the policy finding fixed", |f| {
        finding_is(f, "net.no_network_policy", "", "resolved")
    })
    .await;
    let reason: String = sqlx::query_scalar(
        "select resolved_reason from findings where check_id = 'net.no_network_policy'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason, "fixed");
    assert!(finding_is(
        &findings_of(&pool, h.source).await,
        "sa.token_automount",
        "",
        "open"
    ));

    // The ServiceAccount stops mounting its token.
    h.cluster
        .apply(service_account("shop", "default", Some(false)));
    h.step_until_findings("the token finding fixed", |f| {
        finding_is(f, "sa.token_automount", "", "resolved")
    })
    .await;

    // The policy is removed: the workload is evaluated again and fails again.
    h.cluster.delete("NetworkPolicy", "shop", "deny-web");
    h.step_until_findings("the policy finding open again", |f| {
        finding_is(f, "net.no_network_policy", "", "open")
            && f.iter()
                .filter(|(c, _, _)| c == "net.no_network_policy")
                .count()
                == 2
    })
    .await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn unreadable_network_policies_leave_the_check_unknown(pool: PgPool) {
    let cluster = FakeCluster::start().await;
    web_cluster(&cluster);
    cluster.forbid("NetworkPolicy");
    let mut h = start(&pool, cluster).await;
    h.step_until("the workload", |rows, _| {
        has(rows, "Deployment", "web", "run", 1, 1)
    })
    .await;
    let findings = findings_of(&pool, h.source).await;
    assert!(
        !findings
            .iter()
            .any(|(c, _, _)| c == "net.no_network_policy"),
        "{findings:?}"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_live_pod_changed_after_its_creation_is_evaluated_and_its_findings_name_the_pod(
    pool: PgPool,
) {
    let cluster = FakeCluster::start().await;
    web_cluster(&cluster);
    cluster.apply(pod(
        "shop",
        "web-1-b",
        "ReplicaSet",
        "web-1",
        "shop/web:1",
        A,
    ));
    let mut h = start(&pool, cluster).await;
    h.step_until("two pods", |_, pods| pods.len() == 2).await;
    let before = findings_of(&pool, h.source).await;
    assert!(
        !before.iter().any(|(_, k, _)| k.starts_with("pod/")),
        "pods as their template have no findings of their own: {before:?}"
    );

    // Someone attaches a privileged debug container to one pod.
    let mut debugged = pod("shop", "web-1-b", "ReplicaSet", "web-1", "shop/web:1", A);
    debugged["spec"]["ephemeralContainers"] = serde_json::json!([{"name": "debugger",
        "image": "busybox:1", "securityContext": {"privileged": true}}]);
    h.cluster.apply(debugged);
    h.step_until_findings("the live pod's finding", |f| {
        finding_is(f, "priv.privileged", "pod/web-1-b/debugger", "open")
    })
    .await;
    let (message, severity): (String, String) = sqlx::query_as(
        "select message, severity from findings where container = 'pod/web-1-b/debugger'
         and check_id = 'priv.privileged'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(message.starts_with("live pod web-1-b: "), "{message}");
    assert_eq!(severity, "critical");
    let findings = findings_of(&pool, h.source).await;
    assert!(
        !findings
            .iter()
            .any(|(_, k, _)| k.starts_with("pod/web-1-a")),
        "the unchanged pod has none: {findings:?}"
    );
    assert!(
        !findings
            .iter()
            .any(|(c, k, _)| c == "secrets.env_literal" && k.starts_with("pod/")),
        "what the template already fails is not repeated per pod: {findings:?}"
    );

    // The pod is replaced by one as its template: the finding is resolved.
    h.cluster.delete("Pod", "shop", "web-1-b");
    h.step_until_findings("the live pod's finding resolved", |f| {
        finding_is(f, "priv.privileged", "pod/web-1-b/debugger", "resolved")
    })
    .await;
}
