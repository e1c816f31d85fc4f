//! API tokens for scripts, CI and Prometheus: `hm_` followed by 32 random bytes in base64url,
//! shown once when created and stored only as their sha256. A token has a name (unique among
//! live tokens), a role, who created it and when it was last used; revoking keeps the row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use super::{digest, new_secret, validate_name, AuthError, Role};

/// What every token starts with, so a leaked one is easy to recognise (and to scan for).
pub const PREFIX: &str = "hm_";

/// How often `last_used_at` is written at most.
const TOUCH_EVERY_SECS: f64 = 60.0;

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

struct TokenRow {
    id: i64,
    name: String,
    role: String,
    created_by: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
}

impl From<TokenRow> for ApiToken {
    fn from(row: TokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            // The column's check constraint admits only known roles; an unknown one reads as
            // the role that can do least.
            role: row.role.parse().unwrap_or(Role::Ci),
            created_by: row.created_by,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by,
        }
    }
}

/// A token just created, with its secret: show `secret` once, it cannot be recovered.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

pub async fn create(
    executor: impl PgExecutor<'_>,
    name: &str,
    role: Role,
    created_by: &str,
) -> Result<CreatedToken, AuthError> {
    let name = name.trim();
    validate_name(name, "token")?;
    let secret = format!("{PREFIX}{}", new_secret());
    let token = sqlx::query_as!(
        TokenRow,
        "insert into api_tokens (name, role, token_hash, created_by) values ($1, $2, $3, $4)
         returning id, name, role, created_by, created_at, last_used_at, revoked_at, revoked_by",
        name,
        role.as_str(),
        digest(&secret),
        created_by
    )
    .fetch_one(executor)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.constraint() == Some("api_tokens_name_key") => {
            AuthError::TokenExists(name.to_string())
        }
        _ => AuthError::Db(err),
    })?;
    Ok(CreatedToken {
        token: token.into(),
        secret,
    })
}

/// Every token, live ones first, newest first.
pub async fn list(executor: impl PgExecutor<'_>) -> Result<Vec<ApiToken>, sqlx::Error> {
    let rows = sqlx::query_as!(
        TokenRow,
        "select id, name, role, created_by, created_at, last_used_at, revoked_at, revoked_by
         from api_tokens order by revoked_at is not null, created_at desc, id desc"
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(ApiToken::from).collect())
}

/// The live token a bearer secret belongs to, marking it used.
pub async fn authenticate(pool: &PgPool, secret: &str) -> Result<Option<ApiToken>, sqlx::Error> {
    if !secret.starts_with(PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    let hash = digest(secret);
    let row = sqlx::query!(
        r#"select id, name, role, created_by, created_at, last_used_at,
                  (last_used_at is null or last_used_at < now() - make_interval(secs => $2)) as "stale!"
           from api_tokens where token_hash = $1 and revoked_at is null"#,
        hash,
        TOUCH_EVERY_SECS
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut last_used_at = row.last_used_at;
    if row.stale {
        last_used_at = sqlx::query_scalar!(
            "update api_tokens set last_used_at = now() where id = $1 returning last_used_at",
            row.id
        )
        .fetch_one(pool)
        .await?;
    }
    Ok(Some(ApiToken::from(TokenRow {
        id: row.id,
        name: row.name,
        role: row.role,
        created_by: row.created_by,
        created_at: row.created_at,
        last_used_at,
        revoked_at: None,
        revoked_by: None,
    })))
}

/// Revokes a live token by id.
pub async fn revoke(
    executor: impl PgExecutor<'_>,
    id: i64,
    revoked_by: &str,
) -> Result<ApiToken, AuthError> {
    sqlx::query_as!(
        TokenRow,
        "update api_tokens set revoked_at = now(), revoked_by = $2
         where id = $1 and revoked_at is null
         returning id, name, role, created_by, created_at, last_used_at, revoked_at, revoked_by",
        id,
        revoked_by
    )
    .fetch_optional(executor)
    .await?
    .map(ApiToken::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no live token with id {id}")))
}

/// Revokes the live token with this name.
pub async fn revoke_by_name(
    executor: impl PgExecutor<'_>,
    name: &str,
    revoked_by: &str,
) -> Result<ApiToken, AuthError> {
    sqlx::query_as!(
        TokenRow,
        "update api_tokens set revoked_at = now(), revoked_by = $2
         where lower(name) = lower($1) and revoked_at is null
         returning id, name, role, created_by, created_at, last_used_at, revoked_at, revoked_by",
        name.trim(),
        revoked_by
    )
    .fetch_optional(executor)
    .await?
    .map(ApiToken::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no live token named {}", name.trim())))
}
