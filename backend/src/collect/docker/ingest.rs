//! Writing what the engine said: a batch of inspect documents (a full resync, or the containers
//! and images a burst of events touched) is mapped and written in one transaction, a few
//! statements per batch, then the lifecycle stage machine runs for every workload it touched.
//! The collector and the benchmark both go through [`ingest`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::map::{self, LiveInstance};
use crate::findings::{self, Evaluated, Evaluation};
use crate::inventory::{sources, store, WorkloadKey};
use crate::lifecycle::store::{apply, Pending};
use crate::lifecycle::Stage;
use crate::lifecycle::{Observation, Transition};
use crate::posture::{Context, ImageFacts};

pub use crate::runtime::RuntimeEvent;

/// What one write carries.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Container inspect documents (raw: env values are redacted while mapping).
    pub containers: Vec<Value>,
    /// Image inspect documents.
    pub images: Vec<Value>,
    /// Containers the engine no longer has.
    pub removed: Vec<String>,
    /// A full resync: every container not in `containers` is gone.
    pub full: bool,
    /// Exec sessions, restarts, OOM kills and the like: recorded after the containers, so that
    /// they find their instance ([`crate::runtime::record_events`]).
    pub runtime_events: Vec<RuntimeEvent>,
    /// The run-stage monitoring settings the events are judged with (restart loops).
    pub monitoring: crate::runtime::Settings,
    /// Why, for the lifecycle history ("resync", "container web-1: start").
    pub reason: String,
    /// Per-container reasons, by container id, winning over `reason`.
    pub reasons: HashMap<String, String>,
}

/// What a write did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub containers: usize,
    pub images: usize,
    pub removed: usize,
    pub transitions: Vec<(i64, Transition)>,
    pub counts: Value,
}

/// Maps and writes a batch, in one transaction; a full batch also marks the source resynced.
pub async fn ingest(
    pool: &PgPool,
    source_id: i64,
    batch: Batch,
    grace: Duration,
) -> Result<Report, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let report = ingest_in(&mut tx, source_id, batch, grace).await?;
    tx.commit().await?;
    Ok(report)
}

/// [`ingest`] on a connection or transaction the caller owns.
pub async fn ingest_in(
    conn: &mut PgConnection,
    source_id: i64,
    batch: Batch,
    grace: Duration,
) -> Result<Report, sqlx::Error> {
    let images: Vec<_> = batch.images.iter().filter_map(map::map_image).collect();
    store::upsert_images(conn, Some(source_id), &images).await?;

    // Image ids → digests: this batch's images first, then what the store knows.
    let mut digests: HashMap<String, String> = images
        .iter()
        .filter_map(|image| image.image_id.clone().map(|id| (id, image.digest.clone())))
        .collect();
    let unknown: Vec<String> = batch
        .containers
        .iter()
        .filter_map(|doc| doc.get("Image").and_then(Value::as_str))
        .filter(|id| !digests.contains_key(*id))
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unknown.is_empty() {
        let rows = sqlx::query!(
            r#"select image_id as "image_id!", digest from images where image_id = any($1)"#,
            &unknown
        )
        .fetch_all(&mut *conn)
        .await?;
        digests.extend(rows.into_iter().map(|row| (row.image_id, row.digest)));
    }

    // Posture: each container evaluated from its un-redacted document (the secret checks need
    // the values; findings keep only names), keyed by container id until its workload is known.
    let image_facts: HashMap<String, ImageFacts> = batch
        .images
        .iter()
        .filter_map(ImageFacts::from_inspect)
        .map(|facts| (facts.id.clone(), facts))
        .collect();
    let ctx = Context {
        images: (!image_facts.is_empty()).then_some(&image_facts),
        ..Context::default()
    };
    let evaluated: Vec<(String, Evaluated)> = batch
        .containers
        .iter()
        .filter_map(|doc| {
            let id = doc.get("Id").and_then(Value::as_str)?;
            Some((id.to_string(), findings::evaluate_docker(doc, &ctx)?))
        })
        .collect();

    let containers = batch.containers;
    let mapped = if containers.len() > 64 {
        // Mapping a large batch is CPU work: off the async runtime.
        tokio::task::spawn_blocking(move || map::map_containers(containers, &digests))
            .await
            .map_err(|err| sqlx::Error::Protocol(format!("mapping failed: {err}")))?
    } else {
        map::map_containers(containers, &digests)
    };
    let (workloads, instances): (Vec<_>, Vec<_>) =
        mapped.into_iter().map(|m| (m.workload, m.instance)).unzip();
    // What is stored of these containers: the workload they belong to (a renamed plain container
    // or edited Compose labels move one, and the workload it leaves must be counted again) and
    // the hash of their stored document (an unchanged one is only marked seen, not rewritten).
    let external_ids: Vec<String> = instances.iter().map(|i| i.external_id.clone()).collect();
    let stored = sqlx::query!(
        r#"select external_id, workload_id, spec->>'RawHash' as raw_hash from instances
           where source_id = $1 and removed_at is null and external_id = any($2)"#,
        source_id,
        &external_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let previous: Vec<i64> = stored.iter().map(|row| row.workload_id).collect();
    let stored_hashes: HashMap<String, String> = stored
        .into_iter()
        .filter_map(|row| row.raw_hash.map(|hash| (row.external_id, hash)))
        .collect();
    let counts = map::counts(&instances, images.len());
    let keys: Vec<(String, WorkloadKey)> = instances
        .iter()
        .map(|i| (i.external_id.clone(), i.workload.clone()))
        .collect();
    let (unchanged, changed): (Vec<_>, Vec<_>) = instances.into_iter().partition(|instance| {
        let hash = instance
            .spec
            .as_ref()
            .and_then(|spec| spec.get("RawHash"))
            .and_then(Value::as_str);
        hash.is_some() && stored_hashes.get(&instance.external_id).map(String::as_str) == hash
    });
    let written = store::upsert_workloads(conn, source_id, &workloads).await?;
    store::upsert_instances(conn, source_id, &changed, &written).await?;
    if !unchanged.is_empty() {
        let ids: Vec<String> = unchanged.iter().map(|i| i.external_id.clone()).collect();
        sqlx::query!(
            "update instances set last_seen = now() where source_id = $1 and external_id = any($2)",
            source_id,
            &ids
        )
        .execute(&mut *conn)
        .await?;
    }

    let mut touched: BTreeSet<i64> = written.values().map(|w| w.id).collect();
    touched.extend(previous);
    let removed = if batch.full {
        store::remove_instances_except(conn, source_id, &external_ids).await?
    } else if batch.removed.is_empty() {
        Vec::new()
    } else {
        store::remove_instances(conn, source_id, &batch.removed).await?
    };
    let removed_count = removed.len();
    touched.extend(removed);
    let touched: Vec<i64> = touched.into_iter().collect();
    store::refresh_counts(conn, &touched).await?;

    let mut new: HashSet<i64> = written
        .values()
        .filter(|w| w.inserted)
        .map(|w| w.id)
        .collect();
    // A new workload whose image is in the engine starts its history at `store`.
    let new_ids: Vec<i64> = new.iter().copied().collect();
    for id in record_store_stage(conn, &new_ids).await? {
        new.remove(&id);
    }
    // The reason of a workload: the reason of the last of its containers in this batch.
    let mut reasons: HashMap<i64, String> = HashMap::new();
    for (external_id, key) in &keys {
        if let Some(w) = written.get(key) {
            let reason = batch
                .reasons
                .get(external_id)
                .cloned()
                .unwrap_or_else(|| batch.reason.clone());
            reasons.insert(w.id, reason);
        }
    }
    let mut transitions = apply_lifecycle(conn, &touched, &new, &reasons, &batch.reason).await?;
    transitions.extend(retire_expired(conn, source_id, grace).await?);

    let key_of: HashMap<&str, &WorkloadKey> =
        keys.iter().map(|(id, key)| (id.as_str(), key)).collect();
    let evaluations: Vec<Evaluation> = evaluated
        .into_iter()
        .filter_map(|(id, evaluated)| {
            let workload = written.get(*key_of.get(id.as_str())?)?;
            Some(evaluated.for_workload(workload.id))
        })
        .collect();
    findings::store::sync_findings(conn, &evaluations).await?;
    findings::store::close_removed_containers(conn, &touched).await?;
    let retired: Vec<i64> = transitions
        .iter()
        .filter(|(_, t)| t.to == Stage::Retire)
        .map(|(id, _)| *id)
        .collect();
    findings::store::close_retired(conn, &retired).await?;
    // Owners of what was written: labels and images route ownership.
    crate::ownership::store::resolve(conn, &touched, "Docker inventory").await?;

    crate::runtime::record_events(conn, source_id, &batch.runtime_events, &batch.monitoring)
        .await?;

    if batch.full {
        sources::mark_resynced(&mut *conn, source_id, &counts).await?;
    } else {
        sources::mark_event(&mut *conn, source_id).await?;
    }
    Ok(Report {
        containers: keys.len(),
        images: images.len(),
        removed: removed_count,
        transitions,
        counts,
    })
}

/// Runs the stage machine for these workloads from their live instances. A workload with no
/// instance left keeps its stage: it retires only after the grace period ([`retire_expired`]).
pub async fn apply_lifecycle(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    new: &HashSet<i64>,
    reasons: &HashMap<i64, String>,
    default_reason: &str,
) -> Result<Vec<(i64, Transition)>, sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        r#"select workload_id, running, image_digest, spec->>'SpecHash' as spec_hash,
                  spec->>'Created' as created
           from instances where workload_id = any($1) and removed_at is null"#,
        workload_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut live: HashMap<i64, Vec<LiveInstance>> = HashMap::new();
    for row in rows {
        live.entry(row.workload_id).or_default().push(LiveInstance {
            running: row.running,
            digest: row.image_digest,
            spec_hash: row.spec_hash,
            created: row.created,
        });
    }
    let pending: Vec<Pending> = workload_ids
        .iter()
        .filter_map(|id| {
            let reason = reasons
                .get(id)
                .cloned()
                .unwrap_or_else(|| default_reason.to_string());
            let observation = map::observe(live.get(id)?, Some(reason))?;
            Some(Pending {
                workload_id: *id,
                is_new: new.contains(id),
                observation,
            })
        })
        .collect();
    apply(conn, &pending).await
}

/// Appends the `store` stage (the image is in the engine) to new workloads whose current image
/// is among the stored images; returns those workloads. The stage machine then moves them on to
/// deploy or run from there.
pub async fn record_store_stage(
    conn: &mut PgConnection,
    workload_ids: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar!(
        r#"with current as (
               select distinct on (i.workload_id) i.workload_id, i.image_digest as "digest!"
               from instances i join images im on im.digest = i.image_digest
               where i.workload_id = any($1) and i.removed_at is null
               order by i.workload_id, i.spec->>'Created' desc nulls last, i.id desc
           ), appended as (
               insert into lifecycle_events (workload_id, from_stage, to_stage, cause, digests_after)
               select workload_id, null, 'store', 'image ' || "digest!" || ' is in the engine',
                      array["digest!"]
               from current order by workload_id
               returning workload_id
           )
           update workloads w set stage = 'store', stage_since = now(),
                                  image_digests = array[c."digest!"], updated_at = now()
           from current c where w.id = c.workload_id
           returning w.id"#,
        workload_ids
    )
    .fetch_all(&mut *conn)
    .await
}

/// Retires the source's workloads whose last instance went away longer than `grace` ago.
pub async fn retire_expired(
    conn: &mut PgConnection,
    source_id: i64,
    grace: Duration,
) -> Result<Vec<(i64, Transition)>, sqlx::Error> {
    let grace_secs = grace.as_secs_f64();
    let ids = sqlx::query_scalar!(
        r#"select id from workloads
           where source_id = $1 and stage <> 'retire' and instances_total = 0
             and gone_since is not null
             and gone_since <= now() - make_interval(secs => $2)"#,
        source_id,
        grace_secs
    )
    .fetch_all(&mut *conn)
    .await?;
    let reason = format!("no container left for {}s", grace.as_secs());
    let pending: Vec<Pending> = ids
        .into_iter()
        .map(|id| Pending {
            workload_id: id,
            is_new: false,
            observation: Observation {
                present: false,
                reason: Some(reason.clone()),
                ..Observation::default()
            },
        })
        .collect();
    apply(conn, &pending).await
}
