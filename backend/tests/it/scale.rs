//! Several replicas on one database: leases (one holder at a time, takeover after expiry, loss
//! noticed by the holder), the incident queue's heartbeat recovery, and two real `harbormaster
//! serve` processes sharing the local Docker engine as a source.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::db::lease::{self, Lease};
use harbormaster::incident::store;
use harbormaster::inventory::sources;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::{binary, database_url, ServerGuard};
use crate::common::live_docker_socket;
use crate::docker::{wait_for_stage, Containers, IMAGE_1};

const TTL: Duration = Duration::from_secs(3);

/// Ends the lease `name` now, as if its holder had stopped renewing a while ago.
async fn expire(pool: &PgPool, name: &str) {
    sqlx::query("update leases set expires_at = now() - interval '1 second' where name = $1")
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_lease_has_one_holder_until_it_expires_and_the_old_holder_learns_it_lost_it(
    pool: PgPool,
) {
    let a = Lease::acquire(&pool, "job:test", "replica-a", TTL)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert!(Lease::acquire(&pool, "job:test", "replica-b", TTL)
        .await
        .unwrap()
        .is_none());
    assert!(a.renew().await.unwrap());
    assert_eq!(
        lease::holder(&pool, "job:test").await.unwrap().as_deref(),
        Some("replica-a")
    );

    expire(&pool, "job:test").await;
    assert_eq!(lease::holder(&pool, "job:test").await.unwrap(), None);
    let b = Lease::acquire(&pool, "job:test", "replica-b", TTL)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert!(!a.renew().await.unwrap(), "the old holder's renewal fails");
    a.release().await.unwrap();
    assert_eq!(
        lease::holder(&pool, "job:test").await.unwrap().as_deref(),
        Some("replica-b"),
        "releasing a lost lease leaves the new holder's alone"
    );
    b.release().await.unwrap();
    assert!(lease::holders(&pool).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn work_runs_only_while_the_lease_is_held_and_stops_when_another_replica_takes_it(
    pool: PgPool,
) {
    let runs = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(lease::run_while_held(
        pool.clone(),
        "job:held".into(),
        "replica-a".into(),
        TTL,
        cancel.clone(),
        {
            let runs = runs.clone();
            move |held: CancellationToken| {
                let runs = runs.clone();
                let stopped_tx = stopped_tx.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    held.cancelled().await;
                    let _ = stopped_tx.send(());
                }
            }
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease::holder(&pool, "job:held").await.unwrap().as_deref() != Some("replica-a") {
        assert!(Instant::now() < deadline, "the lease was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Another replica takes the expired lease: the work is stopped at the next renewal.
    expire(&pool, "job:held").await;
    let other = Lease::acquire(&pool, "job:held", "replica-b", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopped.recv())
        .await
        .expect("the work stops once the lease is lost");

    // Released by the other replica: this one takes it again and runs the work again.
    other.release().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the lease was not taken back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(
        lease::holder(&pool, "job:held").await.unwrap(),
        None,
        "a replica that stops releases its leases"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn only_the_actions_of_a_replica_that_stopped_heart_beating_are_recovered(pool: PgPool) {
    // Two running actions: one of a live replica (fresh heartbeat), one of a dead one.
    sqlx::query(
        "insert into incidents (title, severity, opened_by) values ('drill', 'high', 'alice')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        r#"insert into incident_actions (incident_id, kind, status, actor, attempts, started_at,
             claimed_by, heartbeat_at)
           select (select id from incidents), 'isolate', 'running', 'alice', 1, now(), holder, beat
           from (values ('live', now()), ('dead', now() - interval '1 minute')) as v(holder, beat)
           order by holder desc
           returning id"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let status = |id: i64| {
        let pool = pool.clone();
        async move {
            let action = store::action(&pool, id).await.unwrap().unwrap();
            action.status
        }
    };

    assert_eq!(
        store::recover_interrupted(&pool, Duration::from_secs(15))
            .await
            .unwrap(),
        1
    );
    let (live, dead) = (ids[0], ids[1]);
    assert_eq!(status(live).await, "running");
    assert_eq!(status(dead).await, "queued");
    assert!(store::heartbeat(&pool, live, "live").await.unwrap());

    // The dead replica's action is claimed by another one; the dead one's heartbeat is refused.
    let claimed = store::claim_next(&pool, "survivor").await.unwrap().unwrap();
    assert_eq!(claimed.id, dead);
    assert!(!store::heartbeat(&pool, dead, "dead").await.unwrap());
    assert!(store::heartbeat(&pool, dead, "survivor").await.unwrap());
}

/// The replica holding the local engine's source lease now.
async fn docker_holder(pool: &PgPool) -> Option<String> {
    lease::holder(
        pool,
        &lease::source_lease("docker", "unix:///var/run/docker.sock"),
    )
    .await
    .unwrap()
}

fn serve(url: &str) -> ServerGuard {
    ServerGuard(
        binary(url)
            .arg("serve")
            .env("HARBORMASTER_BIND", "127.0.0.1:0")
            .env("HARBORMASTER_DOCKER", "unix:///var/run/docker.sock")
            .env("HARBORMASTER_LEASE_TTL_SECS", TTL.as_secs().to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the harbormaster binary starts"),
    )
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn of_two_server_processes_one_collects_the_engine_and_the_other_takes_over_when_it_is_killed(
    pool: PgPool,
) {
    if live_docker_socket().is_none() {
        return;
    }
    let containers = Containers::new();
    let url = database_url(&pool);
    let mut servers = [serve(&url), serve(&url)];
    let pids = [servers[0].0.id(), servers[1].0.id()];
    let index_of = |holder: &str| {
        pids.iter()
            .position(|pid| holder.contains(&format!("-{pid}-")))
            .unwrap_or_else(|| panic!("{holder} is neither server"))
    };

    // Exactly one of them holds the source and collects it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        if let Some(holder) = docker_holder(&pool).await {
            break holder;
        }
        assert!(Instant::now() < deadline, "no server took the source");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = index_of(&holder);
    containers.run("before", IMAGE_1, &[]);
    wait_for_stage(
        &pool,
        &containers.name("before"),
        "run",
        Duration::from_secs(30),
    )
    .await;
    let listed = sources::list(&pool).await.unwrap();
    assert_eq!(listed.len(), 1, "both servers register one source");
    assert_eq!(listed[0].collected_by.as_deref(), Some(holder.as_str()));

    // The collecting server dies without a word; the other takes the source over within 30 s.
    servers[first].0.kill().unwrap();
    servers[first].0.wait().unwrap();
    let killed = Instant::now();
    let survivor = loop {
        match docker_holder(&pool).await {
            Some(next) if next != holder => break next,
            _ => {}
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the surviving server did not take the source over within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(index_of(&survivor), 1 - first);

    // And keeps the inventory current.
    containers.run("after", IMAGE_1, &[]);
    wait_for_stage(
        &pool,
        &containers.name("after"),
        "run",
        Duration::from_secs(30),
    )
    .await;
    let listed = sources::list(&pool).await.unwrap();
    assert_eq!(listed[0].collected_by.as_deref(), Some(survivor.as_str()));
}
