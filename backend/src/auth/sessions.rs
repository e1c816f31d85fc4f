//! Console sign-in sessions, kept in PostgreSQL. The browser holds a random token in the
//! `hm_session` cookie; the database holds only its sha256, the user, a per-session CSRF token
//! and the times that bound it: an idle expiry (last use + the configured idle time) and an
//! absolute one (sign-in + the configured lifetime). Signing out deletes the row.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use super::{digest, new_secret, Role};

/// The cookie that carries the session token.
pub const COOKIE: &str = "hm_session";

/// How often `last_seen_at` is written at most, so that busy pages do not write on every
/// request; the idle expiry is therefore exact to this much.
const TOUCH_EVERY_SECS: f64 = 60.0;

/// A session just created: the token goes into the cookie, once.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// The user behind a valid session.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

/// Starts a session for `user_id`, valid for at most `lifetime`.
pub async fn create(
    executor: impl PgExecutor<'_>,
    user_id: i64,
    lifetime: Duration,
    client_addr: Option<IpAddr>,
    user_agent: Option<&str>,
) -> Result<NewSession, sqlx::Error> {
    let token = new_secret();
    let csrf = new_secret();
    let user_agent = user_agent.map(|agent| agent.chars().take(256).collect::<String>());
    let expires_at = sqlx::query_scalar!(
        "insert into sessions (id_hash, user_id, csrf_token, expires_at, client_addr, user_agent)
         values ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)
         returning expires_at",
        digest(&token),
        user_id,
        csrf,
        lifetime.as_secs_f64(),
        client_addr.map(|addr| addr.to_string()),
        user_agent
    )
    .fetch_one(executor)
    .await?;
    Ok(NewSession {
        token,
        csrf,
        expires_at,
    })
}

/// The user of a session that is neither idle for longer than `idle` nor past its absolute
/// expiry, and whose account is enabled; marks the session used.
pub async fn resolve(
    pool: &PgPool,
    token: &str,
    idle: Duration,
) -> Result<Option<SessionUser>, sqlx::Error> {
    let hash = digest(token);
    let row = sqlx::query!(
        r#"select s.user_id, u.name, u.role, s.csrf_token,
                  s.last_seen_at < now() - make_interval(secs => $3) as "stale!"
           from sessions s join users u on u.id = s.user_id
           where s.id_hash = $1
             and s.expires_at > now()
             and s.last_seen_at > now() - make_interval(secs => $2)
             and not u.disabled"#,
        hash,
        idle.as_secs_f64(),
        TOUCH_EVERY_SECS
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.stale {
        sqlx::query!(
            "update sessions set last_seen_at = now() where id_hash = $1",
            hash
        )
        .execute(pool)
        .await?;
    }
    Ok(Some(SessionUser {
        user_id: row.user_id,
        name: row.name,
        role: row.role.parse().unwrap_or(Role::Viewer),
        csrf: row.csrf_token,
    }))
}

/// Ends one session (sign-out, or the old session at a new sign-in).
pub async fn delete(executor: impl PgExecutor<'_>, token: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("delete from sessions where id_hash = $1", digest(token))
        .execute(executor)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every session of a user (disabled, or a new password).
pub async fn delete_for_user(
    executor: impl PgExecutor<'_>,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!("delete from sessions where user_id = $1", user_id)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Removes sessions that can no longer be used.
pub async fn prune(executor: impl PgExecutor<'_>, idle: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from sessions
         where expires_at <= now() or last_seen_at <= now() - make_interval(secs => $1)",
        idle.as_secs_f64()
    )
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
