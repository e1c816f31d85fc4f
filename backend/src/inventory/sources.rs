//! Sources and their collector status.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;

/// A source as the console and the API show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Source {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub endpoint: String,
    pub connected: bool,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_resync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub counts: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The replica collecting it now (the holder of its lease), when one does.
    pub collected_by: Option<String>,
}

/// Freshness of a source's data, for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Fresh,
    Stale,
    Down,
}

impl Source {
    /// Down when disconnected; stale when the last full resync is older than `stale_after`.
    pub fn health(&self, now: DateTime<Utc>, stale_after: chrono::Duration) -> Health {
        if !self.connected {
            return Health::Down;
        }
        match self.last_resync_at {
            Some(at) if now - at <= stale_after => Health::Fresh,
            _ => Health::Stale,
        }
    }
}

/// The source's id, creating it on first use. The endpoint is updated (it may have been
/// re-configured).
pub async fn ensure(
    db: impl PgExecutor<'_>,
    kind: &str,
    name: &str,
    endpoint: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"insert into sources (kind, name, endpoint) values ($1, $2, $3)
           on conflict on constraint sources_kind_name_key
           do update set endpoint = excluded.endpoint, updated_at = now()
           returning id"#,
        kind,
        name,
        endpoint
    )
    .fetch_one(db)
    .await
}

/// The collector reached the source.
pub async fn mark_connected(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update sources set connected = true, updated_at = now() where id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The collector lost the source; the error is kept until the next success.
pub async fn mark_down(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update sources set connected = false, last_error = $2, last_error_at = now(),
           updated_at = now() where id = $1"#,
        id,
        error
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An event from the source was processed.
pub async fn mark_event(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update sources set last_event_at = now(), connected = true where id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A full resync finished with these object counts.
pub async fn mark_resynced(
    db: impl PgExecutor<'_>,
    id: i64,
    counts: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update sources set last_resync_at = now(), counts = $2, connected = true,
           last_error = null, updated_at = now() where id = $1"#,
        id,
        counts
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every source, by kind and name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Source>, sqlx::Error> {
    sqlx::query_as!(
        Source,
        r#"select s.id, s.kind, s.name, s.endpoint, s.connected, s.last_event_at,
                  s.last_resync_at, s.last_error, s.last_error_at, s.counts, s.created_at,
                  s.updated_at, l.holder as "collected_by?"
           from sources s
           left join leases l
             on l.name = 'source:' || s.kind || ':' || s.name and l.expires_at > now()
           order by s.kind, s.name"#
    )
    .fetch_all(db)
    .await
}
