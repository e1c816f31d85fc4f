//! The shared inventory store and the lifecycle history, on a real database.

use harbormaster::inventory::store::{self, Upserted};
use harbormaster::inventory::{sources, InstanceRecord, WorkloadKey, WorkloadRecord};
use harbormaster::lifecycle::store::{apply, history, Pending};
use harbormaster::lifecycle::Observation;
use serde_json::json;
use sqlx::PgPool;

fn workload(name: &str) -> WorkloadRecord {
    WorkloadRecord {
        key: WorkloadKey::new("shop", "ComposeService", name),
        uid: None,
        labels: json!({"team": "<script>alert(1)</script>"}),
        annotations: json!({}),
        declared: None,
        images: vec!["shop/web:1".into()],
    }
}

fn instance(key: &WorkloadKey, id: &str, running: bool, digest: &str) -> InstanceRecord {
    InstanceRecord {
        workload: key.clone(),
        external_id: id.into(),
        name: format!("{}-{id}", key.name),
        state: if running { "running" } else { "exited" }.into(),
        running,
        image_ref: Some("shop/web:1".into()),
        image_digest: Some(digest.into()),
        node: None,
        labels: json!({}),
        restart_count: 0,
        spec: None,
        raw: json!({"Id": id}),
        started_at: None,
    }
}

fn observe(upserted: Upserted, running: u32, digest: &str) -> Pending {
    Pending {
        workload_id: upserted.id,
        is_new: upserted.inserted,
        observation: Observation {
            present: true,
            running,
            digests: vec![digest.into()],
            spec_hash: None,
            rolled_out: true,
            reason: None,
        },
    }
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn upserts_are_idempotent_and_the_history_records_every_stage(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", "unix:///var/run/docker.sock")
        .await
        .unwrap();
    assert_eq!(
        sources::ensure(&pool, "docker", "local", "unix:///x")
            .await
            .unwrap(),
        source
    );
    let mut conn = pool.acquire().await.unwrap();
    let web = workload("web");

    let first = store::upsert_workloads(&mut conn, source, &[web.clone(), web.clone()])
        .await
        .unwrap();
    let row = first[&web.key];
    assert!(row.inserted);
    store::upsert_instances(
        &mut conn,
        source,
        &[
            instance(&web.key, "c1", true, "sha256:a"),
            instance(&web.key, "c2", false, "sha256:a"),
        ],
        &first,
    )
    .await
    .unwrap();
    let counts = store::refresh_counts(&mut conn, &[row.id]).await.unwrap();
    assert_eq!((counts[&row.id].total, counts[&row.id].running), (2, 1));
    apply(&mut conn, &[observe(row, 1, "sha256:a")])
        .await
        .unwrap();

    // The same batch again changes nothing.
    let again = store::upsert_workloads(&mut conn, source, std::slice::from_ref(&web))
        .await
        .unwrap();
    assert_eq!(again[&web.key].id, row.id);
    assert!(!again[&web.key].inserted);
    assert!(apply(&mut conn, &[observe(again[&web.key], 1, "sha256:a")])
        .await
        .unwrap()
        .is_empty());

    // A new image: update then run, both digests kept.
    apply(&mut conn, &[observe(again[&web.key], 1, "sha256:b")])
        .await
        .unwrap();
    // Everything gone.
    let removed = store::remove_instances_except(&mut conn, source, &[])
        .await
        .unwrap();
    assert_eq!(removed.len(), 2);
    let counts = store::refresh_counts(&mut conn, &[row.id]).await.unwrap();
    assert_eq!(counts[&row.id].total, 0);
    let gone = Pending {
        workload_id: row.id,
        is_new: false,
        observation: Observation::default(),
    };
    apply(&mut conn, &[gone]).await.unwrap();

    let entries = history(&pool, row.id).await.unwrap();
    let stages: Vec<&str> = entries.iter().map(|e| e.to_stage.as_str()).collect();
    assert_eq!(stages, vec!["run", "update", "run", "retire"]);
    assert_eq!(entries[1].digests_before, vec!["sha256:a"]);
    assert_eq!(entries[1].digests_after, vec!["sha256:b"]);
    let (stage, labels): (String, serde_json::Value) =
        sqlx::query_as("select stage, labels from workloads where id = $1")
            .bind(row.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stage, "retire");
    assert_eq!(
        labels["team"], "<script>alert(1)</script>",
        "stored verbatim"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_lifecycle_history_cannot_be_rewritten(pool: PgPool) {
    let source = sources::ensure(&pool, "docker", "local", "").await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let web = workload("web");
    let rows = store::upsert_workloads(&mut conn, source, std::slice::from_ref(&web))
        .await
        .unwrap();
    apply(&mut conn, &[observe(rows[&web.key], 0, "sha256:a")])
        .await
        .unwrap();
    let update = sqlx::query("update lifecycle_events set cause = 'x'")
        .execute(&pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("delete from lifecycle_events")
        .execute(&pool)
        .await;
    assert!(delete.is_err());
}
