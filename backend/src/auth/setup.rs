//! The first admin. There is never a default password: either `harbormaster user add NAME
//! --role admin --password-stdin`, or, at a start with no user at all, a one-time link
//! `<public_url>/setup/<token>` printed to the log (stored hashed, single use, valid 24 hours)
//! whose page creates the first admin.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use sqlx::{PgExecutor, PgPool};

use super::audit::{self, Actor, Outcome};
use super::users::{self, User};
use super::{digest, new_secret, AuthError, Role};

/// How long a setup link stays valid.
pub const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Why a setup link cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("this setup link is not valid: it was used already, it expired, or it never existed; restart the server to get a new one, or use `harbormaster user add NAME --role admin --password-stdin`")]
    InvalidLink,
    #[error("setup is done: an account exists already; sign in instead")]
    AlreadyDone,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Makes a new setup token, replacing any unused one, and returns it.
pub async fn create_token(pool: &PgPool) -> Result<String, sqlx::Error> {
    let token = new_secret();
    let mut tx = pool.begin().await?;
    sqlx::query!("delete from setup_tokens where used_at is null")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "insert into setup_tokens (token_hash, expires_at)
         values ($1, now() + make_interval(secs => $2))",
        digest(&token),
        LIFETIME.as_secs_f64()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// At a start with no user: makes a setup link, logs it and returns it. `None` when a user
/// exists.
pub async fn announce_if_needed(
    pool: &PgPool,
    public_url: &str,
) -> Result<Option<String>, sqlx::Error> {
    if users::count(pool).await? > 0 {
        return Ok(None);
    }
    let token = create_token(pool).await?;
    let link = format!("{}/setup/{token}", public_url.trim_end_matches('/'));
    tracing::warn!(
        "no user exists yet: create the first admin at {link} (single use, valid for 24 hours), \
         or run `harbormaster user add NAME --role admin --password-stdin`"
    );
    Ok(Some(link))
}

/// Whether `token` is a live setup link while no user exists.
pub async fn is_valid(executor: impl PgExecutor<'_>, token: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists(
               select 1 from setup_tokens
               where token_hash = $1 and used_at is null and expires_at > now()
           ) and not exists(select 1 from users) as "valid!""#,
        digest(token)
    )
    .fetch_one(executor)
    .await
}

/// Uses the link: creates the first admin and spends the token, in one transaction.
pub async fn complete(
    pool: &PgPool,
    token: &str,
    name: &str,
    password: &str,
    client_addr: Option<IpAddr>,
) -> Result<User, SetupError> {
    let mut tx = pool.begin().await?;
    let live = sqlx::query_scalar!(
        r#"select (used_at is null and expires_at > now()) as "live!"
           from setup_tokens where token_hash = $1 for update"#,
        digest(token)
    )
    .fetch_optional(&mut *tx)
    .await?;
    if live != Some(true) {
        return Err(SetupError::InvalidLink);
    }
    if users::count(&mut *tx).await? > 0 {
        return Err(SetupError::AlreadyDone);
    }
    let user = users::create(&mut *tx, name, Role::Admin, password).await?;
    sqlx::query!(
        "update setup_tokens set used_at = now() where token_hash = $1",
        digest(token)
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        Actor::system("setup"),
        "user.create",
        &format!("user {}", user.name),
        Outcome::Success,
        client_addr,
        json!({ "role": "admin", "via": "setup link" }),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}
