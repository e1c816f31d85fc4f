//! Leases: which replica runs what when several servers share one database.
//!
//! A lease is a row of `leases (name, holder, expires_at)`. A replica takes a free or expired
//! lease, renews it every third of its time to live and releases it when it stops; a replica that
//! dies stops renewing, and once the lease expires (database clock, so the replicas' clocks do
//! not matter) another replica takes it over. A replica that cannot renew in time (the database
//! is unreachable) gives the lease up by itself before it could have expired, so two replicas
//! never run the same work for longer than one renewal round trip.
//!
//! [`run_while_held`] is the piece background loops use: it runs the work only while this
//! replica holds the lease, stops it when the lease is lost, and keeps trying to take the lease
//! while another replica holds it. Names in use: `source:<kind>:<name>` for a collector,
//! `job:<name>` for a loop that must run on one replica only.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;

/// This process's identity among the replicas: host name, process id and a random suffix (a
/// restarted process with a reused pid is a new replica).
pub fn replica_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}-{}", hostname(), std::process::id(), &random[..6])
    })
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if status == 0 && !name.is_empty() => name.to_string(),
        _ => "unknown-host".to_string(),
    }
}

/// The lease name of a source's collector (`inventory::sources::list` joins on the same form).
pub fn source_lease(kind: &str, name: &str) -> String {
    format!("source:{kind}:{name}")
}

/// A lease this replica holds.
#[derive(Debug)]
pub struct Lease {
    pool: PgPool,
    name: String,
    holder: String,
    ttl: Duration,
}

/// A live lease as the console shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Holder {
    pub name: String,
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Takes the lease `name` for `holder` when it is free, expired or already `holder`'s;
    /// `None` while another replica holds it.
    pub async fn acquire(
        pool: &PgPool,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, sqlx::Error> {
        let taken = sqlx::query_scalar!(
            r#"insert into leases (name, holder, expires_at)
               values ($1, $2, now() + make_interval(secs => $3))
               on conflict (name) do update set
                 holder = excluded.holder,
                 acquired_at = case when leases.holder = excluded.holder
                                    then leases.acquired_at else now() end,
                 renewed_at = now(),
                 expires_at = excluded.expires_at
               where leases.holder = excluded.holder or leases.expires_at < now()
               returning holder"#,
            name,
            holder,
            ttl.as_secs_f64()
        )
        .fetch_optional(pool)
        .await?;
        Ok(taken.map(|holder| Self {
            pool: pool.clone(),
            name: name.to_string(),
            holder,
            ttl,
        }))
    }

    /// Extends the lease by its time to live; `false` when another replica has taken it.
    pub async fn renew(&self) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query!(
            r#"update leases set renewed_at = now(),
                 expires_at = now() + make_interval(secs => $3)
               where name = $1 and holder = $2"#,
            self.name,
            self.holder,
            self.ttl.as_secs_f64()
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Gives the lease up so that another replica can take it at once.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "delete from leases where name = $1 and holder = $2",
            self.name,
            self.holder
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}

/// The live (unexpired) leases.
pub async fn holders(db: impl PgExecutor<'_>) -> Result<Vec<Holder>, sqlx::Error> {
    sqlx::query_as!(
        Holder,
        r#"select name, holder, acquired_at, expires_at from leases
           where expires_at > now() order by name"#
    )
    .fetch_all(db)
    .await
}

/// The replica holding `name` now, if any.
pub async fn holder(db: impl PgExecutor<'_>, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select holder from leases where name = $1 and expires_at > now()",
        name
    )
    .fetch_optional(db)
    .await
}

/// How long a replica without the lease waits before trying again: a third of the time to live,
/// at most 5 s, so a dead holder's work is taken over within the time to live plus 5 s.
pub fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(5))
}

/// Why holding a lease ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The work finished or the replica is stopping.
    Done,
    /// Another replica took the lease, or it could not be renewed in time.
    Lost(String),
}

/// Renews `lease` every third of its time to live until `held` is cancelled; gives up when
/// another replica has it or when the next renewal would come after the lease could have
/// expired (the database did not answer).
async fn keep(lease: &Lease, acquired: Instant, held: &CancellationToken) -> Ended {
    let period = lease.ttl / 3;
    let mut renewed = acquired;
    loop {
        tokio::select! {
            () = held.cancelled() => return Ended::Done,
            () = tokio::time::sleep(period) => {}
        }
        let sent = Instant::now();
        let why = match tokio::time::timeout(period, lease.renew()).await {
            Ok(Ok(true)) => {
                renewed = sent;
                continue;
            }
            Ok(Ok(false)) => return Ended::Lost("another replica holds it".into()),
            Ok(Err(err)) => format!("cannot renew: {err}"),
            Err(_) => "cannot renew: the database did not answer".to_string(),
        };
        tracing::warn!(lease = lease.name(), reason = %why, "lease renewal failed");
        if renewed.elapsed() + period >= lease.ttl {
            return Ended::Lost(why);
        }
    }
}

/// Runs `work` only while this replica (`holder`) holds the lease `name`, until `cancel` fires.
///
/// Without the lease it tries again every [`retry_interval`]. With it, `work` gets a token that
/// is cancelled when the lease is lost (it must then stop); when `work` returns by itself or
/// `cancel` fires, the lease is released and this returns.
pub async fn run_while_held<F, Fut>(
    pool: PgPool,
    name: String,
    holder: String,
    ttl: Duration,
    cancel: CancellationToken,
    mut work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let retry = retry_interval(ttl);
    let mut waiting_logged = false;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let started = Instant::now();
        match Lease::acquire(&pool, &name, &holder, ttl).await {
            Ok(Some(lease)) => {
                tracing::info!(lease = %name, holder = %holder, "lease taken; running");
                waiting_logged = false;
                let held = cancel.child_token();
                let run = async {
                    work(held.clone()).await;
                    held.cancel();
                };
                let keeper = async {
                    let ended = keep(&lease, started, &held).await;
                    held.cancel();
                    ended
                };
                let ((), ended) = tokio::join!(run, keeper);
                match ended {
                    Ended::Done => {
                        if let Err(err) = lease.release().await {
                            tracing::warn!(lease = %name, %err, "cannot release the lease; it expires by itself");
                        }
                        return;
                    }
                    Ended::Lost(why) => {
                        tracing::warn!(lease = %name, reason = %why, "lease lost; stopped");
                    }
                }
            }
            Ok(None) => {
                if !waiting_logged {
                    tracing::info!(lease = %name, "held by another replica; standing by");
                    waiting_logged = true;
                }
            }
            Err(err) => tracing::warn!(lease = %name, %err, "cannot take the lease"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_id_names_the_host_and_process_and_is_stable() {
        let id = replica_id();
        assert!(id.contains(&format!("-{}-", std::process::id())), "{id}");
        assert_eq!(id, replica_id());
    }

    #[test]
    fn a_standby_retries_within_a_third_of_the_ttl_and_at_most_5_s() {
        assert_eq!(
            retry_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_interval(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }
}
