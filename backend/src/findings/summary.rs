//! Open findings counted per check (`check_summaries`), for the findings page: counting a
//! million findings on every request is too slow, so the server recounts them every
//! [`REFRESH_INTERVAL`] ([`spawn`]) and the page reads the counts; a page that finds them missing
//! or older than [`MAX_AGE`] recounts first.
//!
//! Each check has a row for every severity, every layer, every severity and layer, and all of
//! them together (null = any), so a filter on severity and / or layer reads exact counts,
//! distinct workloads included.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::posture::Severity;

/// How often [`spawn`]'s loop recounts.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Counts older than this are recounted before they are read.
pub const MAX_AGE: Duration = Duration::from_secs(180);

/// One check's open findings (for the filters asked).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CheckCount {
    pub check_id: String,
    pub worst: String,
    /// Workloads with an open finding of the check that no waiver covers.
    pub workloads: i32,
    /// Open findings a waiver covers.
    pub waived: i32,
    pub findings: i32,
}

/// Recounts every check's open findings (one pass over the partial index of open findings).
pub async fn refresh(pool: &PgPool) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One recount at a time; a second waits and then recounts from the newer state.
    sqlx::query!("select pg_advisory_xact_lock(7104202611280105)")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("delete from check_summaries")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        r#"insert into check_summaries (check_id, severity, layer, findings, waived, workloads,
                                        worst)
           select check_id, case when grouping(severity) = 0 then severity end,
                  case when grouping(layer) = 0 then layer end,
                  count(*), count(*) filter (where waiver_id is not null),
                  count(distinct workload_id) filter (where waiver_id is null),
                  (array['info','low','medium','high','critical'])[
                      max(array_position(array['info','low','medium','high','critical'],
                                         severity))]
           from findings where status = 'open'
           group by grouping sets ((check_id), (check_id, severity), (check_id, layer),
                                   (check_id, severity, layer))"#
    )
    .execute(&mut *tx)
    .await?;
    let at = sqlx::query_scalar!(
        r#"insert into check_summaries_refresh (id, refreshed_at) values (true, now())
           on conflict (id) do update set refreshed_at = excluded.refreshed_at
           returning refreshed_at"#
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(at)
}

/// When the counts were last refreshed, if ever.
pub async fn refreshed_at(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("select refreshed_at from check_summaries_refresh")
        .fetch_optional(pool)
        .await
}

/// The counts per check for the filters (`checks`: only these ids, when given), recounted first
/// when missing or older than [`MAX_AGE`]; with the time they were counted.
pub async fn counts(
    pool: &PgPool,
    severity: Option<Severity>,
    layer: Option<&str>,
    checks: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<(Vec<CheckCount>, DateTime<Utc>), sqlx::Error> {
    let max_age = chrono::Duration::from_std(MAX_AGE).unwrap_or(chrono::Duration::minutes(3));
    let at = match refreshed_at(pool).await? {
        Some(at) if now - at <= max_age => at,
        _ => refresh(pool).await?,
    };
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "select check_id, worst, workloads, waived, findings from check_summaries \
         where severity is not distinct from ",
    );
    query
        .push_bind(severity.map(|s| s.as_str()))
        .push(" and layer is not distinct from ")
        .push_bind(layer.map(str::to_string));
    if let Some(checks) = checks {
        query
            .push(" and check_id = any(")
            .push_bind(checks.to_vec())
            .push(")");
    }
    let rows = query.build_query_as().fetch_all(pool).await?;
    Ok((rows, at))
}

/// Recounts every [`REFRESH_INTERVAL`] (the first at start-up) until cancelled.
pub fn spawn(pool: PgPool, tasks: &TaskTracker, cancel: &CancellationToken) {
    super::every(
        pool,
        tasks,
        cancel,
        REFRESH_INTERVAL,
        "count the open findings per check",
        |pool| async move { refresh(&pool).await.map(|_| ()) },
    );
}
