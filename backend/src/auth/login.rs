//! Signing in with a name and a password: throttled, recorded in the audit log, and answering
//! an unknown name exactly like a wrong password (same message, same work).

use std::net::IpAddr;

use serde_json::json;
use sqlx::PgPool;

use super::audit::{self, Actor, Outcome};
use super::password;
use super::throttle::{self, Throttled};
use super::users::{self, User};

/// What a refused sign-in is told, whatever the reason (unknown name, wrong password, disabled
/// account).
pub const BAD_CREDENTIALS: &str = "the name or password is wrong";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{}", .0.message())]
    Throttled(Throttled),
    #[error("{BAD_CREDENTIALS}")]
    BadCredentials,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Checks a name and password and returns the account; records the attempt in the audit log.
pub async fn authenticate(
    pool: &PgPool,
    name: &str,
    password: &str,
    client_addr: Option<IpAddr>,
) -> Result<User, LoginError> {
    let name = name.trim();
    let shown_name: String = name.chars().take(64).collect();
    let shown_name = if shown_name.is_empty() {
        "(empty)".to_string()
    } else {
        shown_name
    };

    let throttled = throttle::check(&mut *pool.acquire().await?, name, client_addr).await?;
    if let Some(throttled) = throttled {
        audit::record(
            pool,
            Actor::anonymous(&shown_name),
            "auth.login",
            &format!("user {shown_name}"),
            Outcome::Denied,
            client_addr,
            json!({ "reason": "throttled", "retry_after_secs": throttled.retry_after.as_secs() }),
        )
        .await?;
        return Err(LoginError::Throttled(throttled));
    }

    let found = if name.is_empty() {
        None
    } else {
        users::find_for_login(pool, name).await?
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = password::verify(hash, password).await;

    match user {
        Some(user) if matches && !user.disabled => {
            let mut tx = pool.begin().await?;
            throttle::clear_account(&mut tx, name).await?;
            users::mark_login(&mut *tx, user.id).await?;
            audit::record(
                &mut *tx,
                Actor::user(&user.name),
                "auth.login",
                &format!("user {}", user.name),
                Outcome::Success,
                client_addr,
                json!({}),
            )
            .await?;
            tx.commit().await?;
            Ok(user)
        }
        user => {
            let mut tx = pool.begin().await?;
            throttle::record_failure(&mut tx, name, client_addr).await?;
            // The reason is for the audit log only; the person signing in is told nothing more.
            let reason = match &user {
                None => "unknown user",
                Some(user) if user.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            audit::record(
                &mut *tx,
                Actor::anonymous(&shown_name),
                "auth.login",
                &format!("user {shown_name}"),
                Outcome::Failure,
                client_addr,
                json!({ "reason": reason }),
            )
            .await?;
            tx.commit().await?;
            Err(LoginError::BadCredentials)
        }
    }
}
