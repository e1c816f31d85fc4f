//! Writing a cluster snapshot to the inventory: the first write after a start is complete
//! (everything upserted, what is no longer there removed and retired); later writes carry only
//! the workloads whose objects changed since, so a watch event costs one small transaction.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::PgPool;

use super::mapping::{MappedWorkload, Snapshot};
use super::posture;
use crate::findings::{self, Evaluation};
use crate::inventory::{sources, store, InstanceRecord, WorkloadKey, WorkloadRecord};
use crate::lifecycle::store::{apply, Pending};
use crate::lifecycle::{Observation, Stage};
use crate::ownership;

/// Instances per statement: keeps one UNNEST batch's parameters to a few megabytes.
const INSTANCE_BATCH: usize = 2_000;

/// What was written last, to tell what changed.
#[derive(Debug, Default, Clone)]
pub struct Written {
    workloads: HashMap<WorkloadKey, u64>,
    instances: HashSet<String>,
    /// Namespace name → its labels and annotations.
    namespaces: HashMap<String, (Value, Value)>,
}

/// What one write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    /// Workloads upserted (all of them on a complete write).
    pub workloads: usize,
    /// Instances upserted.
    pub instances: usize,
    /// Workloads retired because they are gone.
    pub retired: usize,
    /// Lifecycle transitions appended.
    pub transitions: usize,
}

/// Writes `snapshot` for the source. `written` is `None` for a complete write (the first after
/// a start, or a one-shot sync / import) and is updated to what is now stored. `counts` go to the
/// source status when `resynced` (a complete list of the cluster was just read).
pub async fn persist(
    pool: &PgPool,
    source_id: i64,
    snapshot: &Snapshot,
    written: &mut Option<Written>,
    counts: &Value,
    resynced: bool,
) -> Result<Persisted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let complete = written.is_none();
    let previous = written.take().unwrap_or_default();

    let changed: Vec<(&WorkloadKey, &MappedWorkload)> = snapshot
        .workloads
        .iter()
        .filter(|(key, mapped)| {
            complete || previous.workloads.get(*key) != Some(&mapped.fingerprint)
        })
        .collect();

    // Workloads no longer there: on a complete write, every live one of the source that the
    // snapshot lacks; otherwise the ones written before and missing now.
    let gone: Vec<i64> = if complete {
        sqlx::query!(
            r#"select id, namespace, kind, name from workloads
               where source_id = $1 and stage <> 'retire'"#,
            source_id
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter(|row| {
            !snapshot.workloads.contains_key(&WorkloadKey::new(
                row.namespace.clone(),
                row.kind.clone(),
                row.name.clone(),
            ))
        })
        .map(|row| row.id)
        .collect()
    } else {
        let missing: Vec<&WorkloadKey> = previous
            .workloads
            .keys()
            .filter(|key| !snapshot.workloads.contains_key(*key))
            .collect();
        if missing.is_empty() {
            Vec::new()
        } else {
            let namespaces: Vec<String> = missing.iter().map(|k| k.namespace.clone()).collect();
            let kinds: Vec<String> = missing.iter().map(|k| k.kind.clone()).collect();
            let names: Vec<String> = missing.iter().map(|k| k.name.clone()).collect();
            sqlx::query_scalar!(
                r#"select w.id from workloads w
                   join unnest($2::text[], $3::text[], $4::text[]) as t(namespace, kind, name)
                     on w.namespace = t.namespace and w.kind = t.kind and w.name = t.name
                   where w.source_id = $1 and w.stage <> 'retire'"#,
                source_id,
                &namespaces,
                &kinds,
                &names
            )
            .fetch_all(&mut *tx)
            .await?
        }
    };

    let records: Vec<WorkloadRecord> = changed.iter().map(|(_, m)| m.record.clone()).collect();
    let upserted = store::upsert_workloads(&mut tx, source_id, &records).await?;
    let instances: Vec<&InstanceRecord> = changed
        .iter()
        .flat_map(|(_, m)| m.instances.iter())
        .collect();
    for batch in instances.chunks(INSTANCE_BATCH) {
        let batch: Vec<InstanceRecord> = batch.iter().map(|i| (*i).clone()).collect();
        store::upsert_instances(&mut tx, source_id, &batch, &upserted).await?;
    }

    // Run-stage monitoring of the Pods just written (debug containers, restarts, drift).
    super::runtime::observe(
        &mut tx,
        source_id,
        &changed,
        &crate::runtime::Settings::default(),
    )
    .await?;

    let present: HashSet<String> = snapshot
        .workloads
        .values()
        .flat_map(|m| m.instances.iter().map(|i| i.external_id.clone()))
        .chain(snapshot.held.iter().cloned())
        .collect();
    let mut touched: Vec<i64> = if complete {
        let present: Vec<String> = present.iter().cloned().collect();
        store::remove_instances_except(&mut tx, source_id, &present).await?
    } else {
        let removed: Vec<String> = previous
            .instances
            .iter()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        if removed.is_empty() {
            Vec::new()
        } else {
            store::remove_instances(&mut tx, source_id, &removed).await?
        }
    };

    let mut pending: Vec<Pending> = changed
        .iter()
        .filter_map(|(key, mapped)| {
            upserted.get(*key).map(|row| Pending {
                workload_id: row.id,
                is_new: row.inserted,
                observation: mapped.observation.clone(),
            })
        })
        .collect();
    pending.extend(gone.iter().map(|id| Pending {
        workload_id: *id,
        is_new: false,
        observation: Observation {
            reason: Some("deleted from the cluster".into()),
            ..Observation::default()
        },
    }));
    let transitions = apply(&mut tx, &pending).await?;

    // Posture of what changed: the declared object evaluated as a whole with the namespace's
    // NetworkPolicies and the ServiceAccounts (their changes change the fingerprints of the
    // workloads concerned), and the live pods changed after their creation.
    let evaluations: Vec<Evaluation> = changed
        .iter()
        .filter_map(|(key, mapped)| {
            let id = upserted.get(*key)?.id;
            Some(posture::evaluate(&key.namespace, mapped, &snapshot.facts)?.for_workload(id))
        })
        .collect();
    findings::store::sync_findings(&mut tx, &evaluations).await?;
    let retired: Vec<i64> = transitions
        .iter()
        .filter(|(_, t)| t.to == Stage::Retire)
        .map(|(id, _)| *id)
        .collect();
    findings::store::close_retired(&mut tx, &retired).await?;

    touched.extend(upserted.values().map(|row| row.id));
    touched.extend(&gone);
    touched.sort_unstable();
    touched.dedup();
    store::refresh_counts(&mut tx, &touched).await?;

    // Namespaces: a label or annotation change re-routes every workload of the namespace.
    let rerouted = write_namespaces(&mut tx, source_id, snapshot, &previous, complete).await?;
    let mut resolve: Vec<i64> =
        ownership::store::workloads_in_namespaces(&mut tx, source_id, &rerouted).await?;
    resolve.extend(upserted.values().map(|row| row.id));
    resolve.sort_unstable();
    resolve.dedup();
    let cause = if rerouted.is_empty() {
        "Kubernetes inventory".to_string()
    } else {
        format!("Kubernetes namespace {} changed", rerouted.join(", "))
    };
    ownership::store::resolve(&mut tx, &resolve, &cause).await?;

    if resynced {
        sources::mark_resynced(&mut *tx, source_id, counts).await?;
    } else {
        sources::mark_event(&mut *tx, source_id).await?;
    }
    tx.commit().await?;

    *written = Some(Written {
        workloads: snapshot
            .workloads
            .iter()
            .map(|(key, mapped)| (key.clone(), mapped.fingerprint))
            .collect(),
        instances: present,
        namespaces: snapshot
            .namespaces
            .iter()
            .map(|ns| (ns.name.clone(), (ns.labels.clone(), ns.annotations.clone())))
            .collect(),
    });
    Ok(Persisted {
        workloads: records.len(),
        instances: instances.len(),
        retired: gone.len(),
        transitions: transitions.len(),
    })
}

/// Stores the namespaces that changed since the last write (all on a complete write) and marks
/// the ones gone as removed. Returns the names whose labels or annotations changed, or that
/// came or went: their workloads' owners must be resolved again.
async fn write_namespaces(
    conn: &mut sqlx::PgConnection,
    source_id: i64,
    snapshot: &Snapshot,
    previous: &Written,
    complete: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let changed: Vec<_> = snapshot
        .namespaces
        .iter()
        .filter(|ns| {
            complete
                || previous.namespaces.get(&ns.name)
                    != Some(&(ns.labels.clone(), ns.annotations.clone()))
        })
        .collect();
    let mut rerouted = Vec::new();
    if !changed.is_empty() {
        let names: Vec<String> = changed.iter().map(|ns| ns.name.clone()).collect();
        let labels: Vec<Value> = changed.iter().map(|ns| ns.labels.clone()).collect();
        let annotations: Vec<Value> = changed.iter().map(|ns| ns.annotations.clone()).collect();
        rerouted = sqlx::query_scalar!(
            r#"with input as (
                   select * from unnest($2::text[], $3::jsonb[], $4::jsonb[])
                       as t(name, labels, annotations)),
               old as (
                   select n.name, n.labels, n.annotations, n.removed_at from namespaces n
                   join input i on i.name = n.name where n.source_id = $1),
               up as (
                   insert into namespaces (source_id, name, labels, annotations)
                   select $1, name, labels, annotations from input
                   on conflict (source_id, name) do update
                   set labels = excluded.labels, annotations = excluded.annotations,
                       last_seen = now(), removed_at = null
                   returning name)
               select i.name as "name!" from input i left join old o on o.name = i.name
               where o.name is null or o.removed_at is not null or o.labels <> i.labels
                  or o.annotations <> i.annotations"#,
            source_id,
            &names,
            &labels,
            &annotations
        )
        .fetch_all(&mut *conn)
        .await?;
    }
    let present: Vec<String> = snapshot
        .namespaces
        .iter()
        .map(|ns| ns.name.clone())
        .collect();
    let present_set: HashSet<&String> = present.iter().collect();
    let gone: Vec<String> = if complete {
        sqlx::query_scalar!(
            r#"update namespaces set removed_at = now()
               where source_id = $1 and removed_at is null and name <> all($2) returning name"#,
            source_id,
            &present
        )
        .fetch_all(&mut *conn)
        .await?
    } else {
        let missing: Vec<String> = previous
            .namespaces
            .keys()
            .filter(|name| !present_set.contains(name))
            .cloned()
            .collect();
        if missing.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar!(
                r#"update namespaces set removed_at = now()
                   where source_id = $1 and removed_at is null and name = any($2) returning name"#,
                source_id,
                &missing
            )
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rerouted.extend(gone);
    Ok(rerouted)
}
