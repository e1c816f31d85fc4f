//! Waivers (DESIGN §1): a reason, a requester, an approver and an expiry for one check on a
//! scope (a workload; a namespace, of one source or of all; a source). Requested → approved /
//! rejected; approved → revoked / expired. Only an approved, unexpired waiver takes findings out
//! of the score ([`super::store::apply_waivers`]); [`expire_waivers`] runs periodically.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tokio_util::sync::CancellationToken;

use super::store::{apply_waivers, refresh_scores};

/// How long before expiry a waiver is flagged `expiring_soon`.
pub const WARN_DAYS: i64 = 7;
/// The longest a waiver may run.
pub const MAX_DAYS: i64 = 365;
/// How often [`spawn`]'s loop expires waivers.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WaiverError {
    #[error("{0}")]
    Invalid(String),
    #[error("there is no waiver {0}")]
    NotFound(i64),
    #[error("waiver {id} is {status}, not {expected}")]
    WrongStatus {
        id: i64,
        status: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A waiver request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWaiver {
    pub check: String,
    pub workload_id: Option<i64>,
    pub namespace: Option<String>,
    pub source_id: Option<i64>,
    pub reason: String,
    pub requested_by: String,
    pub expires_at: DateTime<Utc>,
}

impl NewWaiver {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), WaiverError> {
        if crate::posture::catalog::find(&self.check).is_none() {
            return Err(WaiverError::Invalid(format!(
                "check '{}' is not in the catalog",
                self.check
            )));
        }
        if self.workload_id.is_some() && (self.namespace.is_some() || self.source_id.is_some()) {
            return Err(WaiverError::Invalid(
                "the scope is a workload_id, or a namespace (with an optional source_id), or a source_id".into(),
            ));
        }
        if self.workload_id.is_none() && self.namespace.is_none() && self.source_id.is_none() {
            return Err(WaiverError::Invalid(
                "a waiver needs a scope: workload_id, namespace or source_id".into(),
            ));
        }
        if self.reason.trim().is_empty() {
            return Err(WaiverError::Invalid("a waiver needs a reason".into()));
        }
        if self.requested_by.trim().is_empty() {
            return Err(WaiverError::Invalid("a waiver needs a requester".into()));
        }
        if self.expires_at <= now {
            return Err(WaiverError::Invalid(
                "expires_at must be in the future".into(),
            ));
        }
        if self.expires_at > now + chrono::Duration::days(MAX_DAYS) {
            return Err(WaiverError::Invalid(format!(
                "a waiver may run at most {MAX_DAYS} days"
            )));
        }
        Ok(())
    }
}

/// A waiver as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Waiver {
    pub id: i64,
    pub check_id: String,
    pub workload_id: Option<i64>,
    pub namespace: Option<String>,
    pub source_id: Option<i64>,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Approved and expiring within [`WARN_DAYS`] days.
    pub expiring_soon: bool,
    /// Open findings it currently takes out of the score.
    pub findings_waived: i64,
}

/// Records a requested waiver (it waives nothing until approved), in the caller's transaction.
pub async fn create(
    conn: &mut PgConnection,
    new: &NewWaiver,
    now: DateTime<Utc>,
) -> Result<Waiver, WaiverError> {
    new.validate(now)?;
    if let Some(id) = new.workload_id {
        let exists =
            sqlx::query_scalar!("select exists(select 1 from workloads where id = $1)", id)
                .fetch_one(&mut *conn)
                .await?;
        if exists != Some(true) {
            return Err(WaiverError::Invalid(format!("there is no workload {id}")));
        }
    }
    if let Some(id) = new.source_id {
        let exists = sqlx::query_scalar!("select exists(select 1 from sources where id = $1)", id)
            .fetch_one(&mut *conn)
            .await?;
        if exists != Some(true) {
            return Err(WaiverError::Invalid(format!("there is no source {id}")));
        }
    }
    let id = sqlx::query_scalar!(
        r#"insert into waivers (check_id, workload_id, namespace, source_id, reason, requested_by,
                                expires_at)
           values ($1, $2, $3, $4, $5, $6, $7) returning id"#,
        new.check,
        new.workload_id,
        new.namespace,
        new.source_id,
        new.reason.trim(),
        new.requested_by.trim(),
        new.expires_at
    )
    .fetch_one(&mut *conn)
    .await?;
    get(&mut *conn, id, now)
        .await?
        .ok_or(WaiverError::NotFound(id))
}

/// Approves (`approve = true`) or rejects a requested waiver; approval applies it at once.
pub async fn decide(
    conn: &mut PgConnection,
    id: i64,
    approve: bool,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Waiver, WaiverError> {
    if by.trim().is_empty() {
        return Err(WaiverError::Invalid("the approver is required".into()));
    }
    let status = sqlx::query_scalar!("select status from waivers where id = $1 for update", id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(WaiverError::NotFound(id))?;
    if status != "requested" {
        return Err(WaiverError::WrongStatus {
            id,
            status,
            expected: "requested",
        });
    }
    let (new_status, approved_by, approved_at) = if approve {
        ("approved", Some(by.trim()), Some(now))
    } else {
        ("rejected", None, None)
    };
    sqlx::query!(
        r#"update waivers set status = $2, approved_by = $3, approved_at = $4, updated_at = now()
           where id = $1"#,
        id,
        new_status,
        approved_by,
        approved_at
    )
    .execute(&mut *conn)
    .await?;
    if approve {
        let workloads = covered_workloads(conn, &[id]).await?;
        apply_waivers(conn, &workloads, now).await?;
        refresh_scores(conn, &workloads).await?;
    }
    get(&mut *conn, id, now)
        .await?
        .ok_or(WaiverError::NotFound(id))
}

/// Revokes an approved waiver: its findings count again.
pub async fn revoke(
    conn: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Waiver, WaiverError> {
    let status = sqlx::query_scalar!("select status from waivers where id = $1 for update", id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(WaiverError::NotFound(id))?;
    if status != "approved" && status != "requested" {
        return Err(WaiverError::WrongStatus {
            id,
            status,
            expected: "approved or requested",
        });
    }
    sqlx::query!(
        "update waivers set status = 'revoked', updated_at = now() where id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    let workloads = covered_workloads(conn, &[id]).await?;
    apply_waivers(conn, &workloads, now).await?;
    refresh_scores(conn, &workloads).await?;
    get(&mut *conn, id, now)
        .await?
        .ok_or(WaiverError::NotFound(id))
}

/// The live workloads whose open findings these waivers may cover (or did).
async fn covered_workloads(
    conn: &mut PgConnection,
    waiver_ids: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select distinct f.workload_id from waivers v
           join workloads w on (v.workload_id = w.id)
                or (v.workload_id is null and v.namespace is not null and w.namespace = v.namespace
                    and (v.source_id is null or v.source_id = w.source_id))
                or (v.workload_id is null and v.namespace is null and v.source_id = w.source_id)
           join findings f on f.workload_id = w.id and f.status = 'open' and f.check_id = v.check_id
           where v.id = any($1)
           union
           select distinct workload_id from findings where waiver_id = any($1) and status = 'open'"#,
        waiver_ids
    )
    .fetch_all(&mut *conn)
    .await
    .map(|ids| ids.into_iter().flatten().collect())
}

/// One step of the expiry loop: approved waivers due at `now` become `expired` and the findings
/// they covered count again (unless another waiver covers them). Returns the expired ids.
pub async fn expire_waivers(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let expired = sqlx::query_scalar!(
        r#"update waivers set status = 'expired', updated_at = now()
           where status = 'approved' and expires_at <= $1 returning id"#,
        now
    )
    .fetch_all(&mut *tx)
    .await?;
    if !expired.is_empty() {
        let workloads = covered_workloads(&mut tx, &expired).await?;
        apply_waivers(&mut tx, &workloads, now).await?;
        refresh_scores(&mut tx, &workloads).await?;
    }
    tx.commit().await?;
    Ok(expired)
}

/// The expiry loop, until `cancel` fires (with several replicas, run by the holder of the
/// `job:waivers` lease only).
pub async fn run(pool: PgPool, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match expire_waivers(&pool, Utc::now()).await {
            Ok(ids) if !ids.is_empty() => tracing::info!(?ids, "waivers expired"),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot expire waivers"),
        }
    }
}

/// The filters of a waiver list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaiverFilter {
    pub status: Option<String>,
    pub check: Option<String>,
    pub workload_id: Option<i64>,
    /// Approved waivers expiring within this many days of now.
    pub expiring_within_days: Option<i64>,
}

const WAIVER_COLUMNS: &str = "select v.id, v.check_id, v.workload_id, v.namespace, v.source_id, \
     v.reason, v.requested_by, v.approved_by, v.approved_at, v.status, v.expires_at, \
     v.created_at, (v.status = 'approved' and v.expires_at <= ";

fn select_waivers(now: DateTime<Utc>) -> QueryBuilder<'static, Postgres> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(WAIVER_COLUMNS);
    query
        .push_bind(now + chrono::Duration::days(WARN_DAYS))
        .push(
            ") as expiring_soon, (select count(*) from findings f where f.waiver_id = v.id \
             and f.status = 'open') as findings_waived from waivers v where true",
        );
    query
}

/// Waivers, newest first (at most 1000).
pub async fn list(
    pool: &PgPool,
    filter: &WaiverFilter,
    now: DateTime<Utc>,
) -> Result<Vec<Waiver>, sqlx::Error> {
    let mut query = select_waivers(now);
    if let Some(status) = &filter.status {
        query.push(" and v.status = ").push_bind(status.clone());
    }
    if let Some(check) = &filter.check {
        query.push(" and v.check_id = ").push_bind(check.clone());
    }
    if let Some(id) = filter.workload_id {
        query.push(" and v.workload_id = ").push_bind(id);
    }
    if let Some(days) = filter.expiring_within_days {
        query
            .push(" and v.status = 'approved' and v.expires_at > ")
            .push_bind(now)
            .push(" and v.expires_at <= ")
            .push_bind(now + chrono::Duration::days(days));
    }
    query.push(" order by v.id desc limit 1000");
    query.build_query_as().fetch_all(pool).await
}

pub async fn get(
    conn: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<Waiver>, sqlx::Error> {
    let mut query = select_waivers(now);
    query.push(" and v.id = ").push_bind(id);
    query.build_query_as().fetch_optional(conn).await
}

/// A requested or approved waiver that covers (or would cover) a workload's findings.
#[derive(Debug, Clone, Serialize)]
pub struct CoveringWaiver {
    pub id: i64,
    pub check_id: String,
    pub status: String,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// `workload`, `namespace` or `source`.
    pub scope: String,
}

/// The requested and approved, unexpired waivers whose scope takes in this workload, oldest
/// first.
pub async fn covering(
    pool: &PgPool,
    workload_id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<CoveringWaiver>, sqlx::Error> {
    sqlx::query_as!(
        CoveringWaiver,
        r#"select v.id, v.check_id, v.status, v.reason, v.requested_by, v.approved_by,
                  v.expires_at,
                  case when v.workload_id is not null then 'workload'
                       when v.namespace is not null then 'namespace'
                       else 'source' end as "scope!"
           from waivers v join workloads w on w.id = $1
           where v.status in ('requested', 'approved') and v.expires_at > $2
             and ((v.workload_id = w.id)
                  or (v.workload_id is null and v.namespace is not null
                      and v.namespace = w.namespace
                      and (v.source_id is null or v.source_id = w.source_id))
                  or (v.workload_id is null and v.namespace is null
                      and v.source_id = w.source_id))
           order by v.id"#,
        workload_id,
        now
    )
    .fetch_all(pool)
    .await
}
