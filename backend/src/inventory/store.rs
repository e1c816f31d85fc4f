//! Batched writes of the inventory: one statement per table and batch (UNNEST), idempotent.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use sqlx::PgConnection;

use super::{ImageRecord, InstanceRecord, WorkloadKey, WorkloadRecord};

/// A workload row written by [`upsert_workloads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub id: i64,
    /// The row did not exist before: the lifecycle starts from nothing.
    pub inserted: bool,
}

fn json_list(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Inserts or updates workloads by identity; returns each key's row. New rows get the
/// placeholder stage `deploy` until [`crate::lifecycle::store::apply`] records their first stage.
/// A key given twice counts once (the last record wins).
pub async fn upsert_workloads(
    conn: &mut PgConnection,
    source_id: i64,
    records: &[WorkloadRecord],
) -> Result<HashMap<WorkloadKey, Upserted>, sqlx::Error> {
    let unique: BTreeMap<&WorkloadKey, &WorkloadRecord> =
        records.iter().map(|record| (&record.key, record)).collect();
    if unique.is_empty() {
        return Ok(HashMap::new());
    }
    let mut namespaces = Vec::with_capacity(unique.len());
    let mut kinds = Vec::with_capacity(unique.len());
    let mut names = Vec::with_capacity(unique.len());
    let mut uids = Vec::with_capacity(unique.len());
    let mut labels = Vec::with_capacity(unique.len());
    let mut annotations = Vec::with_capacity(unique.len());
    let mut declared = Vec::with_capacity(unique.len());
    let mut images = Vec::with_capacity(unique.len());
    for (key, record) in &unique {
        namespaces.push(key.namespace.clone());
        kinds.push(key.kind.clone());
        names.push(key.name.clone());
        uids.push(record.uid.clone());
        labels.push(&record.labels);
        annotations.push(&record.annotations);
        declared.push(record.declared.as_ref().unwrap_or(&Value::Null));
        images.push(json_list(&record.images));
    }
    let rows = sqlx::query!(
        r#"insert into workloads (source_id, namespace, kind, name, uid, stage, labels, annotations,
                                  declared, images)
           select $1, t.namespace, t.kind, t.name, t.uid, 'deploy', t.labels, t.annotations,
                  nullif(t.declared, 'null'::jsonb),
                  array(select jsonb_array_elements_text(t.images))
           from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[],
                       $8::jsonb[], $9::jsonb[])
                as t(namespace, kind, name, uid, labels, annotations, declared, images)
           on conflict on constraint workloads_identity_key do update set
               uid = excluded.uid,
               labels = excluded.labels,
               annotations = excluded.annotations,
               declared = coalesce(excluded.declared, workloads.declared),
               images = excluded.images,
               last_seen = now(),
               updated_at = now()
           returning id, namespace, kind, name, (xmax = 0) as "inserted!""#,
        source_id,
        &namespaces,
        &kinds,
        &names,
        &uids as &[Option<String>],
        &labels as &[&Value],
        &annotations as &[&Value],
        &declared as &[&Value],
        &images,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                WorkloadKey::new(row.namespace, row.kind, row.name),
                Upserted {
                    id: row.id,
                    inserted: row.inserted,
                },
            )
        })
        .collect())
}

/// Inserts or updates instances by (source, external id). Every record's workload must be in
/// `workloads`. An instance seen again after removal is live again.
pub async fn upsert_instances(
    conn: &mut PgConnection,
    source_id: i64,
    records: &[InstanceRecord],
    workloads: &HashMap<WorkloadKey, Upserted>,
) -> Result<(), sqlx::Error> {
    let unique: BTreeMap<&str, &InstanceRecord> = records
        .iter()
        .map(|record| (record.external_id.as_str(), record))
        .collect();
    if unique.is_empty() {
        return Ok(());
    }
    let n = unique.len();
    let (mut workload_ids, mut external_ids, mut names, mut states, mut running) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut image_refs, mut image_digests, mut nodes, mut labels, mut restarts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut specs, mut raws, mut started) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for record in unique.values() {
        let Some(workload) = workloads.get(&record.workload) else {
            return Err(sqlx::Error::Protocol(format!(
                "instance {} names workload {:?}, which was not written first",
                record.external_id, record.workload
            )));
        };
        workload_ids.push(workload.id);
        external_ids.push(record.external_id.clone());
        names.push(record.name.clone());
        states.push(record.state.clone());
        running.push(record.running);
        image_refs.push(record.image_ref.clone());
        image_digests.push(record.image_digest.clone());
        nodes.push(record.node.clone());
        // The documents are large: borrowed, not copied.
        labels.push(&record.labels);
        restarts.push(record.restart_count);
        specs.push(record.spec.as_ref().unwrap_or(&Value::Null));
        raws.push(&record.raw);
        started.push(record.started_at);
    }
    sqlx::query!(
        r#"insert into instances (workload_id, source_id, external_id, name, state, running,
                                  image_ref, image_digest, node, labels, restart_count, spec, raw,
                                  started_at)
           select t.workload_id, $1, t.external_id, t.name, t.state, t.running, t.image_ref,
                  t.image_digest, t.node, t.labels, t.restart_count,
                  nullif(t.spec, 'null'::jsonb), t.raw, t.started_at
           from unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::text[],
                       $8::text[], $9::text[], $10::jsonb[], $11::int[], $12::jsonb[], $13::jsonb[],
                       $14::timestamptz[])
                as t(workload_id, external_id, name, state, running, image_ref, image_digest, node,
                     labels, restart_count, spec, raw, started_at)
           on conflict on constraint instances_source_external_key do update set
               workload_id = excluded.workload_id,
               name = excluded.name,
               state = excluded.state,
               running = excluded.running,
               image_ref = excluded.image_ref,
               image_digest = excluded.image_digest,
               node = excluded.node,
               labels = excluded.labels,
               restart_count = excluded.restart_count,
               spec = coalesce(excluded.spec, instances.spec),
               raw = excluded.raw,
               started_at = excluded.started_at,
               last_seen = now(),
               removed_at = null"#,
        source_id,
        &workload_ids,
        &external_ids,
        &names,
        &states,
        &running,
        &image_refs as &[Option<String>],
        &image_digests as &[Option<String>],
        &nodes as &[Option<String>],
        &labels as &[&Value],
        &restarts,
        &specs as &[&Value],
        &raws as &[&Value],
        &started as &[Option<chrono::DateTime<chrono::Utc>>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the source's live instances whose external id is *not* in `present` as removed (a full
/// resync saw everything there is). Returns the workloads touched.
pub async fn remove_instances_except(
    conn: &mut PgConnection,
    source_id: i64,
    present: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"update instances set removed_at = now(), running = false
           where source_id = $1 and removed_at is null and not (external_id = any($2))
           returning workload_id"#,
        source_id,
        present
    )
    .fetch_all(&mut *conn)
    .await
}

/// Marks these instances as removed (an event said so). Returns the workloads touched.
pub async fn remove_instances(
    conn: &mut PgConnection,
    source_id: i64,
    external_ids: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"update instances set removed_at = now(), running = false
           where source_id = $1 and removed_at is null and external_id = any($2)
           returning workload_id"#,
        source_id,
        external_ids
    )
    .fetch_all(&mut *conn)
    .await
}

/// Live instance counts of some workloads, after instances changed; `gone_since` is set when the
/// last instance went away and cleared when one is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: i32,
    pub running: i32,
}

pub async fn refresh_counts(
    conn: &mut PgConnection,
    workload_ids: &[i64],
) -> Result<HashMap<i64, Counts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"with c as (
               select w.id,
                      count(i.id)::int as total,
                      (count(i.id) filter (where i.running))::int as running
               from workloads w
               left join instances i on i.workload_id = w.id and i.removed_at is null
               where w.id = any($1)
               group by w.id
           ),
           -- Rows whose counts did not change are not rewritten.
           changed as (
               update workloads w set
                   instances_total = c.total,
                   instances_running = c.running,
                   gone_since = case when c.total = 0 then coalesce(w.gone_since, now()) else null end
               from c
               where w.id = c.id
                 and (w.instances_total, w.instances_running, w.gone_since is null)
                     is distinct from (c.total, c.running, c.total > 0)
           )
           select c.id as "id!", c.total as "instances_total!", c.running as "instances_running!"
           from c"#,
        workload_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.id,
                Counts {
                    total: row.instances_total,
                    running: row.instances_running,
                },
            )
        })
        .collect())
}

/// Inserts or refreshes images and the references they were seen under.
pub async fn upsert_images(
    conn: &mut PgConnection,
    source_id: Option<i64>,
    records: &[ImageRecord],
) -> Result<(), sqlx::Error> {
    let unique: BTreeMap<&str, &ImageRecord> = records
        .iter()
        .map(|record| (record.digest.as_str(), record))
        .collect();
    if unique.is_empty() {
        return Ok(());
    }
    let n = unique.len();
    let (mut digests, mut image_ids, mut created, mut sizes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut oses, mut arches, mut configs) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ref_digests, mut refs) = (Vec::new(), Vec::new());
    for record in unique.values() {
        digests.push(record.digest.clone());
        image_ids.push(record.image_id.clone());
        created.push(record.created_at);
        sizes.push(record.size_bytes);
        oses.push(record.os.clone());
        arches.push(record.architecture.clone());
        configs.push(record.config.clone());
        for reference in &record.references {
            ref_digests.push(record.digest.clone());
            refs.push(reference.clone());
        }
    }
    sqlx::query!(
        r#"insert into images (digest, image_id, created_at, size_bytes, os, architecture, config)
           select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::text[],
                                $6::text[], $7::jsonb[])
           on conflict (digest) do update set
               image_id = coalesce(excluded.image_id, images.image_id),
               created_at = coalesce(excluded.created_at, images.created_at),
               size_bytes = coalesce(excluded.size_bytes, images.size_bytes),
               os = coalesce(excluded.os, images.os),
               architecture = coalesce(excluded.architecture, images.architecture),
               config = case when excluded.config = '{}'::jsonb then images.config else excluded.config end,
               last_seen = now()"#,
        &digests,
        &image_ids as &[Option<String>],
        &created as &[Option<chrono::DateTime<chrono::Utc>>],
        &sizes as &[Option<i64>],
        &oses as &[Option<String>],
        &arches as &[Option<String>],
        &configs,
    )
    .execute(&mut *conn)
    .await?;
    if !refs.is_empty() {
        sqlx::query!(
            r#"insert into image_references (digest, reference, source_id)
               select t.digest, t.reference, $3 from unnest($1::text[], $2::text[]) as t(digest, reference)
               on conflict on constraint image_references_key do update set
                   last_seen = now(), source_id = coalesce(excluded.source_id, image_references.source_id)"#,
            &ref_digests,
            &refs,
            source_id as Option<i64>,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
