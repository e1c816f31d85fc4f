//! Sign-in throttling: failed sign-ins are counted in PostgreSQL per account name (whether or
//! not the account exists, so the answer tells nothing) and per client address over a sliding
//! window. Past the limit every attempt is refused, the right password included, until enough
//! failures have aged out of the window.

use std::net::IpAddr;
use std::time::Duration;

use sqlx::PgConnection;

/// The sliding window failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins one account name may see in the window.
pub const PER_ACCOUNT: i64 = 5;
/// Failed sign-ins one client address may cause in the window, over all names.
pub const PER_ADDRESS: i64 = 20;

/// Sign-in is refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Until the oldest counted failure leaves the window.
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds to wait, rounded up (at least 1), for `Retry-After`.
    pub fn seconds(&self) -> u64 {
        (self.retry_after.as_secs_f64().ceil() as u64).max(1)
    }

    /// Whole minutes to wait, rounded up (at least 1).
    pub fn minutes(&self) -> u64 {
        self.seconds().div_ceil(60)
    }

    pub fn message(&self) -> String {
        let minutes = self.minutes();
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        format!("too many failed sign-ins; try again in {minutes} {unit}")
    }
}

/// The key failures are counted under for an account: the name as typed, trimmed and
/// lower-cased (names are case-insensitive), bounded in length.
pub fn account_key(name: &str) -> String {
    name.trim().to_lowercase().chars().take(128).collect()
}

fn address_key(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), |addr| addr.to_string())
}

/// Whether a sign-in for `account` from `addr` may be tried now.
pub async fn check(
    conn: &mut PgConnection,
    account: &str,
    addr: Option<IpAddr>,
) -> Result<Option<Throttled>, sqlx::Error> {
    let window = WINDOW.as_secs_f64();
    // The failure whose leaving the window brings the count back under the limit: the
    // limit-th newest. None while fewer than `limit` failures are in the window.
    let by_account: Option<f64> = sqlx::query_scalar!(
        r#"select extract(epoch from (at + make_interval(secs => $2) - now()))::float8 as "wait!"
           from login_failures
           where account = $1 and at > now() - make_interval(secs => $2)
           order by at desc offset $3 limit 1"#,
        account_key(account),
        window,
        PER_ACCOUNT - 1
    )
    .fetch_optional(&mut *conn)
    .await?;
    let by_address: Option<f64> = sqlx::query_scalar!(
        r#"select extract(epoch from (at + make_interval(secs => $2) - now()))::float8 as "wait!"
           from login_failures
           where client_addr = $1 and at > now() - make_interval(secs => $2)
           order by at desc offset $3 limit 1"#,
        address_key(addr),
        window,
        PER_ADDRESS - 1
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(by_account
        .into_iter()
        .chain(by_address)
        .reduce(f64::max)
        .map(|wait| Throttled {
            retry_after: Duration::from_secs_f64(wait.max(1.0)),
        }))
}

/// Counts a failed sign-in, and forgets failures older than a day.
pub async fn record_failure(
    conn: &mut PgConnection,
    account: &str,
    addr: Option<IpAddr>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into login_failures (account, client_addr) values ($1, $2)",
        account_key(account),
        address_key(addr)
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("delete from login_failures where at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Forgets an account's failures after its owner signed in. The address's failures stay: one
/// good password must not reset the count for guessing at other accounts.
pub async fn clear_account(conn: &mut PgConnection, account: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from login_failures where account = $1",
        account_key(account)
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_said_in_whole_minutes_rounded_up() {
        let throttled = Throttled {
            retry_after: Duration::from_secs(61),
        };
        assert_eq!(
            throttled.message(),
            "too many failed sign-ins; try again in 2 minutes"
        );
        let throttled = Throttled {
            retry_after: Duration::from_secs(5),
        };
        assert_eq!(
            throttled.message(),
            "too many failed sign-ins; try again in 1 minute"
        );
    }

    #[test]
    fn account_keys_ignore_case_and_spaces() {
        assert_eq!(account_key("  Alice "), "alice");
        assert_eq!(account_key(&"x".repeat(500)).len(), 128);
    }
}
