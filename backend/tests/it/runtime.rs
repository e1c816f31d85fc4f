//! Run-stage monitoring against this machine's real Docker engine: exec sessions become events
//! with their command and user, the drift sampler finds files and processes that were not there,
//! a crash-looping container opens a restart-loop finding; events are listed, filtered, shown on
//! the console and open incidents. Containers are named by [`Containers`] and removed on drop.

use std::io::Write;
use std::time::{Duration, Instant};

use harbormaster::auth::Role;
use harbormaster::runtime::drift::sample_once;
use harbormaster::runtime::Settings;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{html, live_docker_socket, texts, TestApp};
use crate::docker::{
    config_with, docker, local_collector, wait_for_first_resync, wait_for_stage, Containers,
    IMAGE_1, LOCAL,
};

/// The open findings of a check on a workload: (container, severity, message).
async fn open_findings(pool: &PgPool, workload: i64, check: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select container, severity, message from findings
         where workload_id = $1 and check_id = $2 and status = 'open' order by id",
    )
    .bind(workload)
    .bind(check)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The events of a workload of one kind: (id, severity, details).
async fn events_of(pool: &PgPool, workload: i64, kind: &str) -> Vec<(i64, String, Value)> {
    sqlx::query_as(
        "select id, severity, details from runtime_events
         where workload_id = $1 and kind = $2 order by id",
    )
    .bind(workload)
    .bind(kind)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn source_of(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select id from sources where endpoint = $1")
        .bind(LOCAL)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_exec_session_is_an_event_with_command_and_user_within_five_seconds_and_opens_an_incident(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let app = TestApp::spawn_with(
        pool.clone(),
        config_with(&[LOCAL], Duration::from_secs(600)),
        None,
    )
    .await;
    wait_for_first_resync(&pool).await;
    let name = containers.name("exec");
    containers.run("exec", IMAGE_1, &["--user", "65534"]);
    let id = wait_for_stage(&pool, &name, "run", Duration::from_secs(5)).await;

    // Root into a container that runs as nobody: elevated, with the exec inspect's facts.
    docker(&["exec", "--user", "root", &name, "id", "-u"]);
    let execed = Instant::now();
    let event = loop {
        if let Some(event) = events_of(&pool, id, "exec_start").await.pop() {
            break event;
        }
        assert!(
            execed.elapsed() < Duration::from_secs(5),
            "no exec event within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (event_id, severity, details) = event;
    assert_eq!(details["command"], "id -u");
    assert_eq!(details["user"], "root");
    assert_eq!(details["container_user"], "65534");
    assert_eq!(details["privileged"], false);
    assert_eq!(details["tty"], false);
    assert_eq!(details["elevated"], true);
    assert_eq!(severity, "high");
    let root = open_findings(&pool, id, "run.exec_privileged_or_root").await;
    assert_eq!(root.len(), 1, "{root:?}");
    assert_eq!(root[0].0, name);

    // An interactive shell (stdin open, no script) as the container's user.
    let mut shell = std::process::Command::new("docker")
        .args(["exec", "-i", &name, "sh"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hi\nexit\n")
        .unwrap();
    assert!(shell.wait().unwrap().success());
    let start = Instant::now();
    while open_findings(&pool, id, "run.exec_interactive_shell")
        .await
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(5), "no shell finding");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A spec resync does not resolve what events opened.
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    collector.resync_once().await.unwrap();
    assert_eq!(
        open_findings(&pool, id, "run.exec_interactive_shell")
            .await
            .len(),
        1
    );

    // The API lists it with filters and pagination, newest first.
    let page: Value = app
        .viewer_get(&format!(
            "/api/v1/events?workload={id}&kind=exec_start&severity=high"
        ))
        .await
        .json()
        .await
        .unwrap();
    let listed = page["events"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    assert_eq!(listed[0]["id"], event_id);
    assert_eq!(listed[0]["details"]["command"], "id -u");
    let first: Value = app
        .viewer_get(&format!("/api/v1/events?workload={id}&limit=1"))
        .await
        .json()
        .await
        .unwrap();
    let after = first["next"].as_str().expect("more than one event");
    let second: Value = app
        .viewer_get(&format!(
            "/api/v1/events?workload={id}&limit=1&after={after}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        second["events"][0]["id"].as_i64().unwrap() < first["events"][0]["id"].as_i64().unwrap()
    );
    assert_eq!(
        app.viewer_get("/api/v1/events?kind=nope").await.status(),
        400
    );

    // A viewer cannot open an incident; a responder can, with the event as first evidence.
    let viewer = app.login_as(Role::Viewer).await;
    let refused = viewer
        .post_json(&format!("/api/v1/events/{event_id}/incident"), &json!({}))
        .await;
    assert_eq!(refused.status(), 403);
    let responder = app.login_as(Role::Responder).await;
    let opened = responder
        .post_json(
            &format!("/api/v1/events/{event_id}/incident"),
            &json!({"idempotency_key": "exec-1"}),
        )
        .await;
    assert_eq!(opened.status(), 201);
    let incident: Value = opened.json().await.unwrap();
    assert_eq!(incident["origin"], "event");
    assert_eq!(incident["severity"], "high");
    let again = responder
        .post_json(
            &format!("/api/v1/events/{event_id}/incident"),
            &json!({"idempotency_key": "exec-1"}),
        )
        .await;
    assert_eq!(again.status(), 200, "the same key opens it once");
    let view: Value = responder
        .get(&format!("/api/v1/incidents/{}", incident["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["workloads"][0]["id"], id);
    assert_eq!(view["evidence"][0]["kind"], "runtime_event");
    let content: Value = sqlx::query_scalar(
        "select content from incident_evidence where incident_id = $1 order by id limit 1",
    )
    .bind(incident["id"].as_i64().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(content["event"]["id"], event_id);
    assert_eq!(content["event"]["details"]["user"], "root");

    // The console: the events page with its filters, the button for responders, the workload's
    // timeline section.
    let page = html(
        &responder
            .get(&format!("/events?workload={id}&kind=exec_start"))
            .await
            .text()
            .await
            .unwrap(),
    );
    let summaries = texts(&page, "td.event-summary");
    assert!(
        summaries.iter().all(|s| s.contains("exec session started")),
        "{summaries:?}"
    );
    assert!(!texts(
        &page,
        &format!("form[action='/events/{event_id}/incident'] button")
    )
    .is_empty());
    let viewer_page = html(&viewer.get("/events").await.text().await.unwrap());
    assert!(texts(&viewer_page, "form[action$='/incident'] button").is_empty());
    let workload_page = html(
        &viewer
            .get(&format!("/workloads/{id}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(texts(&workload_page, "ol.runtime-events li")
        .iter()
        .any(|t| t.contains("id -u")));
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_file_written_under_usr_bin_is_filesystem_drift_on_the_next_sample_but_volumes_are_not(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    let name = containers.name("fs");
    containers.run("fs", IMAGE_1, &["-v", "/data", "--tmpfs", "/scratch"]);
    // Two more containers, to see the concurrency bound hold.
    containers.run("fs-b", IMAGE_1, &[]);
    containers.run("fs-c", IMAGE_1, &[]);
    collector.resync_once().await.unwrap();
    let id = wait_for_stage(&pool, &name, "run", Duration::ZERO).await;
    let source = source_of(&pool).await;
    let settings = Settings {
        drift_concurrency: 1,
        ..Settings::default()
    };
    let first = sample_once(&pool, &collector.docker, source, &settings)
        .await
        .unwrap();
    // Other suites share the engine: their containers may come and go meanwhile.
    assert!(first.containers >= 3 && first.sampled >= 3, "{first:?}");
    assert_eq!(first.max_in_flight, 1, "the concurrency bound holds");
    assert!(events_of(&pool, id, "fs_drift").await.is_empty());

    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo x > /usr/bin/evil; echo y > /data/ok; echo z > /scratch/ok",
    ]);
    sample_once(&pool, &collector.docker, source, &settings)
        .await
        .unwrap();
    let drift = events_of(&pool, id, "fs_drift").await;
    assert_eq!(drift.len(), 1, "{drift:?}");
    let (_, severity, details) = &drift[0];
    assert_eq!(severity, "high");
    let paths: Vec<&str> = details["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/usr/bin/evil"), "{paths:?}");
    assert!(
        paths
            .iter()
            .all(|p| !p.starts_with("/data") && !p.starts_with("/scratch")),
        "{paths:?}"
    );
    let findings = open_findings(&pool, id, "run.fs_drift_binaries").await;
    assert_eq!(findings.len(), 1);
    assert!(findings[0].2.contains("/usr/bin/evil"));

    // The next sample reports nothing new and keeps the finding open.
    sample_once(&pool, &collector.docker, source, &settings)
        .await
        .unwrap();
    assert_eq!(events_of(&pool, id, "fs_drift").await.len(), 1);
    assert_eq!(
        open_findings(&pool, id, "run.fs_drift_binaries")
            .await
            .len(),
        1
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_process_started_under_a_new_name_after_the_baseline_is_learned_is_process_drift(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let collector = local_collector(&pool, Duration::from_secs(600)).await;
    let name = containers.name("proc");
    containers.run("proc", IMAGE_1, &[]);
    collector.resync_once().await.unwrap();
    let id = wait_for_stage(&pool, &name, "run", Duration::ZERO).await;
    let source = source_of(&pool).await;
    let settings = Settings {
        baseline_window: Duration::from_millis(500),
        ..Settings::default()
    };
    // The first sample starts learning: `sleep` is in the baseline.
    sample_once(&pool, &collector.docker, source, &settings)
        .await
        .unwrap();
    let learned: Vec<String> = sqlx::query_scalar(
        "select unnest(processes) from process_baselines where workload_id = $1",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(learned, ["sleep"]);
    // The learning window is a time: wait until it has passed.
    let until: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select learning_until from process_baselines where workload_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    while chrono::Utc::now() <= until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // busybox runs `sleep` under a new executable name.
    docker(&[
        "exec",
        "-d",
        &name,
        "sh",
        "-c",
        "cp /bin/busybox /tmp/busyboxzz; /tmp/busyboxzz sleep 300",
    ]);
    // The shell that copies may be seen first: wait for the event naming the new executable.
    let start = Instant::now();
    loop {
        sample_once(&pool, &collector.docker, source, &settings)
            .await
            .unwrap();
        let named =
            events_of(&pool, id, "process_drift")
                .await
                .into_iter()
                .any(|(_, _, details)| {
                    details["new_processes"]
                        .as_array()
                        .is_some_and(|new| new.contains(&json!("busyboxzz")))
                });
        if named {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no process drift"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open_findings(&pool, id, "run.process_drift").await.len(), 1);

    // A responder approves it: the finding resolves and the next sample is quiet.
    let app = TestApp::spawn(pool.clone()).await;
    let responder = app.login_as(Role::Responder).await;
    let approved = responder
        .post_json(
            &format!("/api/v1/workloads/{id}/process-baseline"),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status(), 200);
    let baseline: Value = approved.json().await.unwrap();
    assert!(baseline["approved_by"]
        .as_str()
        .unwrap()
        .starts_with("responder"));
    assert!(baseline["processes"]
        .as_array()
        .unwrap()
        .contains(&json!("busyboxzz")));
    assert!(open_findings(&pool, id, "run.process_drift")
        .await
        .is_empty());
    let before = events_of(&pool, id, "process_drift").await.len();
    sample_once(&pool, &collector.docker, source, &settings)
        .await
        .unwrap();
    assert_eq!(events_of(&pool, id, "process_drift").await.len(), before);
    assert!(open_findings(&pool, id, "run.process_drift")
        .await
        .is_empty());
    app.assert_mutations_audited().await;
    app.stop().await.unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_crash_looping_container_produces_a_restart_loop_finding(pool: PgPool) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let app = TestApp::spawn_with(
        pool.clone(),
        config_with(&[LOCAL], Duration::from_secs(600)),
        None,
    )
    .await;
    wait_for_first_resync(&pool).await;
    let name = containers.name("crash");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--restart",
        "always",
        IMAGE_1,
        "sh",
        "-c",
        "exit 1",
    ]);
    let start = Instant::now();
    let finding = loop {
        let id: Option<i64> = sqlx::query_scalar("select id from workloads where name = $1")
            .bind(&name)
            .fetch_optional(&pool)
            .await
            .unwrap();
        if let Some(id) = id {
            if let Some(finding) = open_findings(&pool, id, "run.restart_loop").await.pop() {
                break (id, finding);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no restart-loop finding within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (id, (container, severity, message)) = finding;
    assert_eq!(container, name);
    assert_eq!(severity, "medium");
    assert!(message.contains("restarted"), "{message}");
    let restarts = events_of(&pool, id, "restart").await;
    assert!(restarts.len() >= 3, "{restarts:?}");
    let counts: Vec<i64> = restarts
        .iter()
        .map(|(_, _, d)| d["restart_count"].as_i64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "rising: {counts:?}");
    assert_eq!(events_of(&pool, id, "restart_loop").await.len(), 1);
    app.stop().await.unwrap();
}
