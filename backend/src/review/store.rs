//! Reviews in the database: asking for one, the queue the worker claims from, progress, stored
//! exports and sign-offs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::{Format, ReviewError};

/// One review as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Review {
    pub id: i64,
    pub team_id: Option<i64>,
    /// The team's name; `None` for a review of the whole estate.
    pub team_name: Option<String>,
    pub trigger: String,
    pub schedule_key: Option<String>,
    pub requested_by: String,
    pub formats: Vec<String>,
    pub status: String,
    pub phase: String,
    pub progress_percent: i32,
    pub rows_done: i64,
    pub error: Option<String>,
    pub taken_at: Option<DateTime<Utc>>,
    pub previous_review_id: Option<i64>,
    pub summary: Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Review {
    /// `all teams` or the team's name.
    pub fn scope(&self) -> String {
        self.team_name
            .clone()
            .unwrap_or_else(|| "all teams".to_string())
    }

    pub fn formats(&self) -> Vec<Format> {
        self.formats.iter().filter_map(|f| f.parse().ok()).collect()
    }

    pub fn in_progress(&self) -> bool {
        self.status == "queued" || self.status == "running"
    }
}

/// A review to ask for.
#[derive(Debug, Clone)]
pub struct NewReview {
    /// A team name (case-insensitive); `None` for the whole estate.
    pub team: Option<String>,
    pub formats: Vec<Format>,
    pub trigger: &'static str,
    pub schedule_key: Option<String>,
    pub requested_by: String,
    pub idempotency_key: Option<String>,
}

/// Queues a review; a repeated idempotency key returns the first one (`false`).
pub async fn request(
    conn: &mut PgConnection,
    new: NewReview,
) -> Result<(Review, bool), ReviewError> {
    if let Some(key) = &new.idempotency_key {
        if let Some(existing) =
            sqlx::query_scalar!("select id from reviews where idempotency_key = $1", key)
                .fetch_optional(&mut *conn)
                .await?
        {
            return Ok((get(&mut *conn, existing).await?, false));
        }
    }
    let team = match new.team.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(name) => Some(
            sqlx::query!(
                "select id, name from teams where lower(name) = lower($1)",
                name
            )
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| (row.id, row.name))
            .ok_or_else(|| ReviewError::UnknownTeam(name.to_string()))?,
        ),
    };
    let mut formats = if new.formats.is_empty() {
        Format::ALL.to_vec()
    } else {
        new.formats
    };
    formats.dedup();
    let formats: Vec<String> = formats.iter().map(|f| f.as_str().to_string()).collect();
    let id = sqlx::query_scalar!(
        "insert into reviews (team_id, team_name, trigger, schedule_key, requested_by, formats,
                              idempotency_key)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        team.as_ref().map(|t| t.0),
        team.as_ref().map(|t| t.1.clone()),
        new.trigger,
        new.schedule_key,
        new.requested_by,
        &formats,
        new.idempotency_key,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((get(&mut *conn, id).await?, true))
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Review, ReviewError> {
    sqlx::query_as!(
        Review,
        "select id, team_id, team_name, trigger, schedule_key, requested_by, formats, status,
                phase, progress_percent, rows_done, error, taken_at, previous_review_id, summary,
                created_at, started_at, finished_at
         from reviews where id = $1",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(ReviewError::NotFound)
}

/// The newest reviews first, `limit` of them, older than `before` when given (keyset).
pub async fn list(
    db: impl PgExecutor<'_>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Review>, ReviewError> {
    Ok(sqlx::query_as!(
        Review,
        "select id, team_id, team_name, trigger, schedule_key, requested_by, formats, status,
                phase, progress_percent, rows_done, error, taken_at, previous_review_id, summary,
                created_at, started_at, finished_at
         from reviews where ($2::bigint is null or id < $2)
         order by id desc limit $1",
        limit,
        before
    )
    .fetch_all(db)
    .await?)
}

/// Claims the oldest queued review (or one whose worker stopped beating) for this worker.
pub async fn claim(db: impl PgExecutor<'_>) -> Result<Option<i64>, ReviewError> {
    Ok(sqlx::query_scalar!(
        "update reviews set status = 'running', phase = 'starting', started_at = now(),
                heartbeat_at = now(), error = null
         where id = (
             select id from reviews
             where status = 'queued'
                or (status = 'running' and heartbeat_at < now() - interval '5 minutes')
             order by id
             for update skip locked
             limit 1
         )
         returning id"
    )
    .fetch_optional(db)
    .await?)
}

/// Marks a review as taken by the caller itself (the CLI generates in its own process).
pub async fn start(db: impl PgExecutor<'_>, id: i64) -> Result<(), ReviewError> {
    sqlx::query!(
        "update reviews set status = 'running', phase = 'starting', started_at = now(),
                heartbeat_at = now()
         where id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records how far the generation is.
pub async fn progress(
    db: impl PgExecutor<'_>,
    id: i64,
    phase: &str,
    percent: i32,
    rows_done: i64,
) -> Result<(), ReviewError> {
    sqlx::query!(
        "update reviews set phase = $2, progress_percent = $3, rows_done = $4,
                heartbeat_at = now()
         where id = $1",
        id,
        phase,
        percent.clamp(0, 100),
        rows_done
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn succeed(db: impl PgExecutor<'_>, id: i64) -> Result<(), ReviewError> {
    sqlx::query!(
        "update reviews set status = 'succeeded', phase = 'done', progress_percent = 100,
                finished_at = now(), heartbeat_at = now()
         where id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn fail(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), ReviewError> {
    sqlx::query!(
        "update reviews set status = 'failed', error = $2, finished_at = now() where id = $1",
        id,
        error
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One rendered file.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Export {
    pub review_id: i64,
    pub format: String,
    #[serde(skip)]
    pub file_name: String,
    pub bytes: i64,
    pub sha256: String,
    pub generated_at: DateTime<Utc>,
}

pub async fn exports(db: impl PgExecutor<'_>, review_id: i64) -> Result<Vec<Export>, ReviewError> {
    exports_of(db, &[review_id]).await
}

pub async fn export(
    db: impl PgExecutor<'_>,
    review_id: i64,
    format: Format,
) -> Result<Option<Export>, ReviewError> {
    Ok(sqlx::query_as!(
        Export,
        "select review_id, format, file_name, bytes, sha256, generated_at
         from review_exports where review_id = $1 and format = $2",
        review_id,
        format.as_str()
    )
    .fetch_optional(db)
    .await?)
}

pub async fn save_export(
    db: impl PgExecutor<'_>,
    review_id: i64,
    format: Format,
    file_name: &str,
    bytes: i64,
    sha256: &str,
) -> Result<Export, ReviewError> {
    Ok(sqlx::query_as!(
        Export,
        "insert into review_exports (review_id, format, file_name, bytes, sha256)
         values ($1, $2, $3, $4, $5)
         on conflict on constraint review_exports_pkey do update
             set file_name = excluded.file_name, bytes = excluded.bytes,
                 sha256 = excluded.sha256, generated_at = now()
         returning review_id, format, file_name, bytes, sha256, generated_at",
        review_id,
        format.as_str(),
        file_name,
        bytes,
        sha256
    )
    .fetch_one(db)
    .await?)
}

/// A sign-off: who, when, and what they said.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SignOff {
    pub id: i64,
    pub review_id: i64,
    pub user_name: String,
    pub comment: String,
    pub signed_at: DateTime<Utc>,
}

pub async fn signoffs(
    db: impl PgExecutor<'_>,
    review_id: i64,
) -> Result<Vec<SignOff>, ReviewError> {
    Ok(sqlx::query_as!(
        SignOff,
        "select id, review_id, user_name, comment, signed_at from review_signoffs
         where review_id = $1 order by id",
        review_id
    )
    .fetch_all(db)
    .await?)
}

/// Whether the user may sign `review` off: an admin, or a member of the review's team. A review
/// of the whole estate is signed off by an admin.
pub async fn may_sign_off(
    db: impl PgExecutor<'_>,
    review: &Review,
    user_id: i64,
    is_admin: bool,
) -> Result<bool, ReviewError> {
    if is_admin {
        return Ok(true);
    }
    let Some(team_id) = review.team_id else {
        return Ok(false);
    };
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from team_members where team_id = $1 and user_id = $2) as "member!""#,
        team_id,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// Records a sign-off of a finished review by a user allowed to give it.
pub async fn sign_off(
    conn: &mut PgConnection,
    review_id: i64,
    user_id: i64,
    user_name: &str,
    is_admin: bool,
    comment: &str,
) -> Result<SignOff, ReviewError> {
    let review = get(&mut *conn, review_id).await?;
    if review.status != "succeeded" {
        return Err(ReviewError::NotReady(review.status));
    }
    if !may_sign_off(&mut *conn, &review, user_id, is_admin).await? {
        return Err(ReviewError::Forbidden(match &review.team_name {
            Some(team) => {
                format!("only a member of the team {team} or an admin may sign this review off")
            }
            None => "only an admin may sign off a review of every team".to_string(),
        }));
    }
    if comment.len() > 4000 {
        return Err(ReviewError::Invalid(
            "the comment is longer than 4000 characters".into(),
        ));
    }
    sqlx::query_as!(
        SignOff,
        "insert into review_signoffs (review_id, user_id, user_name, comment)
         values ($1, $2, $3, $4)
         on conflict on constraint review_signoffs_once_key do nothing
         returning id, review_id, user_name, comment, signed_at",
        review_id,
        user_id,
        user_name,
        comment
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ReviewError::Invalid(format!("{user_name} has already signed this review off")))
}

/// The team names, for the console's form.
pub async fn team_names(db: impl PgExecutor<'_>) -> Result<Vec<String>, ReviewError> {
    Ok(
        sqlx::query_scalar!("select name from teams order by lower(name)")
            .fetch_all(db)
            .await?,
    )
}

/// The stored exports of several reviews (for a list page).
pub async fn exports_of(
    db: impl PgExecutor<'_>,
    review_ids: &[i64],
) -> Result<Vec<Export>, ReviewError> {
    Ok(sqlx::query_as!(
        Export,
        "select review_id, format, file_name, bytes, sha256, generated_at
         from review_exports where review_id = any($1)
         order by review_id, array_position(array['csv', 'json', 'xlsx', 'html'], format)",
        review_ids
    )
    .fetch_all(db)
    .await?)
}

/// The first `limit` rows of one table of a review's snapshot.
pub async fn rows(
    db: impl PgExecutor<'_>,
    review_id: i64,
    table: &str,
    limit: i64,
) -> Result<Vec<Vec<Value>>, ReviewError> {
    Ok(sqlx::query_scalar!(
        r#"select cells as "cells!: sqlx::types::Json<Vec<Value>>" from review_rows
           where review_id = $1 and tbl = $2 order by key limit $3"#,
        review_id,
        table,
        limit
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|sqlx::types::Json(cells)| cells)
    .collect())
}
