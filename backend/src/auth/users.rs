//! Local user accounts. Names are unique regardless of case; passwords are stored only as
//! argon2id hashes. An account is disabled, never deleted, so the audit log's names stay
//! meaningful; at least one enabled admin always remains.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use super::{password, validate_name, AuthError, Role};

/// A user account as pages and the CLI show it (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

struct UserRow {
    id: i64,
    name: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
    last_login_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            // The column's check constraint admits only the three human roles.
            role: row.role.parse().unwrap_or(Role::Viewer),
            disabled: row.disabled,
            created_at: row.created_at,
            last_login_at: row.last_login_at,
        }
    }
}

/// Creates an account with a human role and a password that meets the rules.
pub async fn create(
    executor: impl PgExecutor<'_>,
    name: &str,
    role: Role,
    password: &str,
) -> Result<User, AuthError> {
    let name = name.trim();
    validate_name(name, "user")?;
    if !role.is_human() {
        return Err(AuthError::Invalid(
            "the ci role is for API tokens only; give a person viewer, responder or admin".into(),
        ));
    }
    let hash = password::hash(password).await?;
    sqlx::query_as!(
        UserRow,
        r#"insert into users (name, role, password_hash) values ($1, $2, $3)
           returning id, name, role, disabled, created_at, last_login_at"#,
        name,
        role.as_str(),
        hash
    )
    .fetch_one(executor)
    .await
    .map(User::from)
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.constraint() == Some("users_name_key") => {
            AuthError::UserExists(name.to_string())
        }
        _ => AuthError::Db(err),
    })
}

/// Every account, by name.
pub async fn list(executor: impl PgExecutor<'_>) -> Result<Vec<User>, sqlx::Error> {
    let rows = sqlx::query_as!(
        UserRow,
        "select id, name, role, disabled, created_at, last_login_at from users order by lower(name)"
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(User::from).collect())
}

pub async fn get(executor: impl PgExecutor<'_>, id: i64) -> Result<User, AuthError> {
    sqlx::query_as!(
        UserRow,
        "select id, name, role, disabled, created_at, last_login_at from users where id = $1",
        id
    )
    .fetch_optional(executor)
    .await?
    .map(User::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no user with id {id}")))
}

/// How many accounts exist (the setup link is offered only while there are none).
pub async fn count(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(executor)
        .await
}

/// The account a sign-in names, with its hash.
pub(crate) async fn find_for_login(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<(User, String)>, sqlx::Error> {
    let row = sqlx::query!(
        "select id, name, role, disabled, created_at, last_login_at, password_hash
         from users where lower(name) = lower($1)",
        name
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|row| {
        let user = User::from(UserRow {
            id: row.id,
            name: row.name,
            role: row.role,
            disabled: row.disabled,
            created_at: row.created_at,
            last_login_at: row.last_login_at,
        });
        (user, row.password_hash)
    }))
}

pub(crate) async fn mark_login(executor: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!("update users set last_login_at = now() where id = $1", id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Refuses a change that would leave no enabled admin. Locks every enabled admin's row, so two
/// admins demoting each other at once cannot both succeed.
async fn keep_an_admin(conn: &mut PgConnection, id: i64) -> Result<(), AuthError> {
    let admins: Vec<i64> = sqlx::query_scalar!(
        "select id from users where role = 'admin' and not disabled order by id for update"
    )
    .fetch_all(&mut *conn)
    .await?;
    if admins == [id] {
        return Err(AuthError::Conflict(
            "this is the only enabled admin; make another user an admin first".into(),
        ));
    }
    Ok(())
}

/// Gives a user another human role. Run it in a transaction.
pub async fn set_role(conn: &mut PgConnection, id: i64, role: Role) -> Result<User, AuthError> {
    if !role.is_human() {
        return Err(AuthError::Invalid(
            "the ci role is for API tokens only".into(),
        ));
    }
    if role != Role::Admin {
        keep_an_admin(conn, id).await?;
    }
    sqlx::query_as!(
        UserRow,
        "update users set role = $2, updated_at = now() where id = $1
         returning id, name, role, disabled, created_at, last_login_at",
        id,
        role.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(User::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no user with id {id}")))
}

/// Disables (signing the user out everywhere) or enables an account. Run it in a transaction.
pub async fn set_disabled(
    conn: &mut PgConnection,
    id: i64,
    disabled: bool,
) -> Result<User, AuthError> {
    if disabled {
        keep_an_admin(conn, id).await?;
    }
    let user = sqlx::query_as!(
        UserRow,
        "update users set disabled = $2, updated_at = now() where id = $1
         returning id, name, role, disabled, created_at, last_login_at",
        id,
        disabled
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(User::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no user with id {id}")))?;
    if disabled {
        super::sessions::delete_for_user(&mut *conn, id).await?;
    }
    Ok(user)
}

/// Sets a new password and ends the user's sessions. Run it in a transaction.
pub async fn set_password(
    conn: &mut PgConnection,
    id: i64,
    password: &str,
) -> Result<User, AuthError> {
    let hash = password::hash(password).await?;
    let user = sqlx::query_as!(
        UserRow,
        "update users set password_hash = $2, updated_at = now() where id = $1
         returning id, name, role, disabled, created_at, last_login_at",
        id,
        hash
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(User::from)
    .ok_or_else(|| AuthError::NotFound(format!("there is no user with id {id}")))?;
    super::sessions::delete_for_user(&mut *conn, id).await?;
    Ok(user)
}
