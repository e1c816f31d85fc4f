//! Applying observations to stored workloads: reads their current stage, runs the stage machine
//! and appends the transitions, for a whole batch in a few statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::{next, Current, Observation, Stage, Transition};

/// One workload's observation, as written by a collector.
#[derive(Debug, Clone)]
pub struct Pending {
    pub workload_id: i64,
    /// The row was just created: there is no stage to move from yet.
    pub is_new: bool,
    pub observation: Observation,
}

fn json_list(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Runs the stage machine for every pending workload and stores the result. Returns the
/// transitions appended, by workload.
pub async fn apply(
    conn: &mut PgConnection,
    pending: &[Pending],
) -> Result<Vec<(i64, Transition)>, sqlx::Error> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = pending.iter().map(|p| p.workload_id).collect();
    let rows = sqlx::query!(
        r#"select id, stage, image_digests, spec_hash from workloads where id = any($1) for update"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let stored: HashMap<i64, Current> = rows
        .into_iter()
        .map(|row| {
            let stage = row.stage.parse().unwrap_or(Stage::Deploy);
            (
                row.id,
                Current {
                    stage,
                    digests: row.image_digests,
                    spec_hash: row.spec_hash,
                },
            )
        })
        .collect();

    let mut transitions = Vec::new();
    let (mut upd_ids, mut upd_stages, mut upd_digests, mut upd_hashes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for item in pending {
        let Some(current) = stored.get(&item.workload_id) else {
            continue;
        };
        let current = (!item.is_new).then_some(current);
        let steps = next(current, &item.observation);
        let final_stage = steps
            .last()
            .map(|t| t.to)
            .or(current.map(|c| c.stage))
            .unwrap_or(Stage::Deploy);
        let digests = if item.observation.digests.is_empty() {
            current.map(|c| c.digests.clone()).unwrap_or_default()
        } else {
            item.observation.digests.clone()
        };
        upd_ids.push(item.workload_id);
        upd_stages.push(final_stage.as_str().to_string());
        upd_digests.push(json_list(&digests));
        upd_hashes.push(
            item.observation
                .spec_hash
                .clone()
                .or_else(|| current.and_then(|c| c.spec_hash.clone())),
        );
        transitions.extend(steps.into_iter().map(|t| (item.workload_id, t)));
    }

    if !transitions.is_empty() {
        let n = transitions.len();
        let (mut w, mut from, mut to, mut cause, mut before, mut after) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut ordinal = Vec::with_capacity(n);
        for (index, (id, t)) in transitions.iter().enumerate() {
            w.push(*id);
            from.push(t.from.map(|s| s.as_str().to_string()));
            to.push(t.to.as_str().to_string());
            cause.push(t.cause.clone());
            before.push(json_list(&t.digests_before));
            after.push(json_list(&t.digests_after));
            ordinal.push(index as i32);
        }
        // Transitions of one batch share a timestamp; the ordinal keeps them in order.
        sqlx::query!(
            r#"insert into lifecycle_events (workload_id, from_stage, to_stage, cause,
                                             digests_before, digests_after)
               select t.w, t.f, t.s, t.c,
                      array(select jsonb_array_elements_text(t.b)),
                      array(select jsonb_array_elements_text(t.a))
               from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                           $6::jsonb[], $7::int[]) as t(w, f, s, c, b, a, o)
               order by t.o"#,
            &w,
            &from as &[Option<String>],
            &to,
            &cause,
            &before,
            &after,
            &ordinal,
        )
        .execute(&mut *conn)
        .await?;
    }

    sqlx::query!(
        r#"update workloads w set
               stage = t.stage,
               stage_since = case when w.stage is distinct from t.stage or t.is_new then now()
                                  else w.stage_since end,
               image_digests = array(select jsonb_array_elements_text(t.digests)),
               spec_hash = t.spec_hash,
               retired_at = case when t.stage = 'retire' then coalesce(w.retired_at, now())
                                 else null end,
               updated_at = now()
           from unnest($1::bigint[], $2::text[], $3::jsonb[], $4::text[], $5::bool[])
                as t(id, stage, digests, spec_hash, is_new)
           where w.id = t.id"#,
        &upd_ids,
        &upd_stages,
        &upd_digests,
        &upd_hashes as &[Option<String>],
        &pending.iter().map(|p| p.is_new).collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(transitions)
}

/// One entry of a workload's lifecycle history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub cause: String,
    pub digests_before: Vec<String>,
    pub digests_after: Vec<String>,
    pub details: Value,
}

/// A workload's whole history, oldest first.
pub async fn history(
    db: impl PgExecutor<'_>,
    workload_id: i64,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    sqlx::query_as!(
        HistoryEntry,
        r#"select id, at, from_stage, to_stage, cause, digests_before, digests_after, details
           from lifecycle_events where workload_id = $1 order by at, id"#,
        workload_id
    )
    .fetch_all(db)
    .await
}
