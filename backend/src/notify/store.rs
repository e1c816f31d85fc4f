//! Channels, routes and the delivery queue in PostgreSQL.
//!
//! Secret columns (`url`, `signing_key`, `smtp_password`) are read only to send; what the API and
//! the console show is [`ChannelView`], where they are masked.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::{ChannelInput, Message, NotifyError, RouteInput};
use crate::config::NotifyConfig;

/// A channel as stored, secrets included: never serialized, never logged.
#[derive(Clone)]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub team_id: Option<i64>,
    pub team: Option<String>,
    pub url: Option<String>,
    pub signing_key: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i32>,
    pub smtp_security: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub mail_from: Option<String>,
    pub mail_to: Vec<String>,
    pub enabled: bool,
    pub origin: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A channel as shown: secrets masked.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub team: Option<String>,
    /// Where it goes: the URL's scheme and host only (its path and query hold tokens), or the
    /// SMTP server and recipients.
    pub target: String,
    pub signing_key_set: bool,
    pub smtp_password_set: bool,
    pub enabled: bool,
    pub origin: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The scheme and host of a URL; the rest (which carries tokens) becomes `/…`.
pub fn mask_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}/…", parsed.scheme())
        }
        Err(_) => "(invalid URL)".into(),
    }
}

impl Channel {
    pub fn view(&self) -> ChannelView {
        let target = if self.kind == "email" {
            format!(
                "{}:{} → {}",
                self.smtp_host.as_deref().unwrap_or_default(),
                self.smtp_port.unwrap_or_default(),
                self.mail_to.join(", ")
            )
        } else if self.origin == "config" {
            "(from the configuration)".into()
        } else {
            self.url.as_deref().map(mask_url).unwrap_or_default()
        };
        ChannelView {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind.clone(),
            team: self.team.clone(),
            target,
            signing_key_set: self.signing_key.is_some() || self.origin == "config",
            smtp_password_set: self.smtp_password.is_some(),
            enabled: self.enabled,
            origin: self.origin.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
        }
    }
}

/// A route with its channel's name.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub id: i64,
    pub name: String,
    pub event: String,
    pub min_severity: String,
    pub audience: String,
    pub channel_id: Option<i64>,
    pub channel: Option<String>,
    pub enabled: bool,
    pub origin: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// One queued message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub route_id: Option<i64>,
    pub event: String,
    pub message: Json<Message>,
    pub attempts: i32,
}

/// A message as listed in the console.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub channel: String,
    pub route: Option<String>,
    pub event: String,
    pub title: String,
    pub item_count: i32,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

pub async fn list_channels(conn: &mut PgConnection) -> Result<Vec<Channel>, sqlx::Error> {
    sqlx::query_as!(
        Channel,
        r#"select c.id, c.name, c.kind, c.team_id, t.name as "team?", c.url, c.signing_key,
                  c.smtp_host, c.smtp_port, c.smtp_security, c.smtp_username, c.smtp_password,
                  c.mail_from, c.mail_to, c.enabled, c.origin, c.created_by, c.created_at
           from notification_channels c left join teams t on t.id = c.team_id
           order by lower(c.name)"#
    )
    .fetch_all(conn)
    .await
}

pub async fn channel(conn: &mut PgConnection, id: i64) -> Result<Channel, NotifyError> {
    sqlx::query_as!(
        Channel,
        r#"select c.id, c.name, c.kind, c.team_id, t.name as "team?", c.url, c.signing_key,
                  c.smtp_host, c.smtp_port, c.smtp_security, c.smtp_username, c.smtp_password,
                  c.mail_from, c.mail_to, c.enabled, c.origin, c.created_by, c.created_at
           from notification_channels c left join teams t on t.id = c.team_id
           where c.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| NotifyError::NotFound(format!("channel {id}")))
}

async fn team_id(conn: &mut PgConnection, team: Option<&str>) -> Result<Option<i64>, NotifyError> {
    let Some(team) = team.map(str::trim).filter(|team| !team.is_empty()) else {
        return Ok(None);
    };
    sqlx::query_scalar!("select id from teams where lower(name) = lower($1)", team)
        .fetch_optional(conn)
        .await?
        .map(Some)
        .ok_or_else(|| NotifyError::Invalid(format!("team: there is no team named '{team}'")))
}

fn unique_violation(err: sqlx::Error, what: &str) -> NotifyError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            NotifyError::Conflict(format!("a {what} with this name exists"))
        }
        _ => err.into(),
    }
}

/// Stores a channel. Channels from the configuration keep their secrets out of the database.
pub async fn create_channel(
    conn: &mut PgConnection,
    input: &ChannelInput,
    origin: &str,
    created_by: &str,
) -> Result<Channel, NotifyError> {
    input.validate().map_err(NotifyError::Invalid)?;
    let team = team_id(conn, input.team.as_deref()).await?;
    let keep_secrets = origin == "console";
    let secret = |value: &Option<crate::config::Secret<String>>| {
        value
            .as_ref()
            .filter(|_| keep_secrets)
            .map(|secret| secret.expose().trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let email = input.kind == "email";
    let id = sqlx::query_scalar!(
        "insert into notification_channels
             (name, kind, team_id, url, signing_key, smtp_host, smtp_port, smtp_security,
              smtp_username, smtp_password, mail_from, mail_to, origin, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         returning id",
        input.name.trim(),
        input.kind,
        team,
        secret(&input.url),
        secret(&input.signing_key),
        input.smtp_host.as_deref().map(str::trim).filter(|_| email),
        email.then(|| i32::from(input.port())),
        email.then(|| input.security().to_string()),
        input
            .smtp_username
            .as_deref()
            .map(str::trim)
            .filter(|name| email && !name.is_empty()),
        secret(&input.smtp_password).filter(|_| email),
        input.mail_from.as_deref().map(str::trim).filter(|_| email),
        &input
            .mail_to
            .iter()
            .map(|to| to.trim().to_string())
            .collect::<Vec<_>>(),
        origin,
        created_by,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| unique_violation(err, "channel"))?;
    channel(conn, id).await
}

/// Deletes a channel made in the console (its routes and queued messages go with it).
pub async fn delete_channel(conn: &mut PgConnection, id: i64) -> Result<Channel, NotifyError> {
    let existing = channel(conn, id).await?;
    if existing.origin == "config" {
        return Err(NotifyError::Conflict(
            "this channel comes from the configuration file; remove it there".into(),
        ));
    }
    sqlx::query!("delete from notification_items where channel_id = $1", id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!("delete from notification_channels where id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(existing)
}

pub async fn list_routes(conn: &mut PgConnection) -> Result<Vec<Route>, sqlx::Error> {
    sqlx::query_as!(
        Route,
        r#"select r.id, r.name, r.event, r.min_severity, r.audience, r.channel_id,
                  c.name as "channel?", r.enabled, r.origin, r.created_by, r.created_at
           from notification_routes r left join notification_channels c on c.id = r.channel_id
           order by lower(r.name)"#
    )
    .fetch_all(conn)
    .await
}

pub async fn route(conn: &mut PgConnection, id: i64) -> Result<Route, NotifyError> {
    sqlx::query_as!(
        Route,
        r#"select r.id, r.name, r.event, r.min_severity, r.audience, r.channel_id,
                  c.name as "channel?", r.enabled, r.origin, r.created_by, r.created_at
           from notification_routes r left join notification_channels c on c.id = r.channel_id
           where r.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| NotifyError::NotFound(format!("route {id}")))
}

pub async fn create_route(
    conn: &mut PgConnection,
    input: &RouteInput,
    origin: &str,
    created_by: &str,
) -> Result<Route, NotifyError> {
    input.validate().map_err(NotifyError::Invalid)?;
    let channel_id = match input
        .channel
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        Some(name) => Some(
            sqlx::query_scalar!(
                "select id from notification_channels where lower(name) = lower($1)",
                name
            )
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                NotifyError::Invalid(format!("channel: there is no channel named '{name}'"))
            })?,
        ),
        None => None,
    };
    let id = sqlx::query_scalar!(
        "insert into notification_routes (name, event, min_severity, audience, channel_id, origin, created_by)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        input.name.trim(),
        input.event,
        input.min_severity.as_deref().unwrap_or("info"),
        input.audience,
        channel_id,
        origin,
        created_by,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| unique_violation(err, "route"))?;
    route(conn, id).await
}

pub async fn delete_route(conn: &mut PgConnection, id: i64) -> Result<Route, NotifyError> {
    let existing = route(conn, id).await?;
    if existing.origin == "config" {
        return Err(NotifyError::Conflict(
            "this route comes from the configuration file; remove it there".into(),
        ));
    }
    sqlx::query!("delete from notification_items where route_id = $1", id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!("delete from notification_routes where id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(existing)
}

/// Makes the database's configuration-file channels and routes those of `config`: new ones are
/// added, changed ones replaced, removed ones deleted. Their secrets stay in the configuration.
pub async fn sync_configured(pool: &PgPool, config: &NotifyConfig) -> Result<(), NotifyError> {
    let mut tx = pool.begin().await?;
    // One server at a time.
    sqlx::query!("select pg_advisory_xact_lock(7120001)")
        .execute(&mut *tx)
        .await?;
    // Routes no longer in the file go; the others keep their id (and digest window).
    let route_names: Vec<String> = config
        .routes
        .iter()
        .map(|r| r.name.trim().to_lowercase())
        .collect();
    sqlx::query!(
        "delete from notification_items where route_id in
             (select id from notification_routes where origin = 'config' and not (lower(name) = any($1)))",
        &route_names
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "delete from notification_routes where origin = 'config' and not (lower(name) = any($1))",
        &route_names
    )
    .execute(&mut *tx)
    .await?;
    let names: Vec<String> = config
        .channels
        .iter()
        .map(|c| c.name.trim().to_lowercase())
        .collect();
    sqlx::query!(
        "delete from notification_items where channel_id in
             (select id from notification_channels where origin = 'config' and not (lower(name) = any($1)))",
        &names
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "delete from notification_channels where origin = 'config' and not (lower(name) = any($1))",
        &names
    )
    .execute(&mut *tx)
    .await?;
    for input in &config.channels {
        let existing = sqlx::query_scalar!(
            "select origin from notification_channels where lower(name) = lower($1)",
            input.name.trim()
        )
        .fetch_optional(&mut *tx)
        .await?;
        match existing.as_deref() {
            Some("console") => {
                tracing::warn!(channel = %input.name, "a console channel has the name of a configured one; the console's is kept");
                continue;
            }
            Some(_) => {
                // Replace the stored copy (its queue stays: same id).
                let team = team_id(&mut tx, input.team.as_deref()).await.ok().flatten();
                let email = input.kind == "email";
                sqlx::query!(
                    "update notification_channels set kind = $2, team_id = $3, smtp_host = $4,
                         smtp_port = $5, smtp_security = $6, smtp_username = $7, mail_from = $8,
                         mail_to = $9, updated_at = now()
                     where lower(name) = lower($1)",
                    input.name.trim(),
                    input.kind,
                    team,
                    input.smtp_host.as_deref().filter(|_| email),
                    email.then(|| i32::from(input.port())),
                    email.then(|| input.security().to_string()),
                    input.smtp_username.as_deref().filter(|_| email),
                    input.mail_from.as_deref().filter(|_| email),
                    &input.mail_to,
                )
                .execute(&mut *tx)
                .await?;
            }
            None => {
                create_channel(&mut tx, input, "config", "configuration").await?;
            }
        }
    }
    for input in &config.routes {
        let channel = input.channel.as_deref().map(str::trim).unwrap_or_default();
        let updated = sqlx::query!(
            "update notification_routes set event = $2, min_severity = $3, audience = $4,
                 channel_id = (select id from notification_channels where lower(name) = lower($5))
             where lower(name) = lower($1) and origin = 'config'",
            input.name.trim(),
            input.event,
            input.min_severity.as_deref().unwrap_or("info"),
            input.audience,
            channel,
        )
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() > 0 {
            continue;
        }
        match create_route(&mut tx, input, "config", "configuration").await {
            Ok(_) => {}
            Err(NotifyError::Conflict(_)) => {
                tracing::warn!(route = %input.name, "a console route has the name of a configured one; the console's is kept");
            }
            Err(err) => return Err(err),
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Claims the next due message (`FOR UPDATE SKIP LOCKED`: each replica gets its own) and counts
/// the attempt. A message left `sending` by a server that died is due again after 10 minutes.
pub async fn claim_due(pool: &PgPool, now: DateTime<Utc>) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query!(
        "update notification_deliveries set status = 'failed', next_attempt_at = $1,
             last_error = 'interrupted while sending'
         where status = 'sending' and claimed_at < $1::timestamptz - interval '10 minutes'",
        now
    )
    .execute(pool)
    .await?;
    sqlx::query_as!(
        Delivery,
        r#"update notification_deliveries d
           set status = 'sending', attempts = d.attempts + 1, claimed_at = $1
           where d.id = (select id from notification_deliveries
                         where status in ('queued', 'failed') and next_attempt_at <= $1
                         order by next_attempt_at, id
                         for update skip locked limit 1)
           returning d.id, d.channel_id, d.route_id, d.event,
                     d.message as "message: Json<Message>", d.attempts"#,
        now
    )
    .fetch_optional(pool)
    .await
}

pub async fn mark_sent(pool: &PgPool, id: i64, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update notification_deliveries set status = 'sent', sent_at = $2, last_error = null
         where id = $1",
        id,
        at
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_failed(
    pool: &PgPool,
    id: i64,
    error: &str,
    dead: bool,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(500).collect();
    sqlx::query!(
        "update notification_deliveries
         set status = case when $3 then 'dead' else 'failed' end, last_error = $2,
             next_attempt_at = $4
         where id = $1",
        id,
        error,
        dead,
        next_attempt_at
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The latest messages, or only the dead ones, newest first.
pub async fn deliveries(
    conn: &mut PgConnection,
    dead_only: bool,
    limit: i64,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryView,
        r#"select d.id, c.name as channel, r.name as "route?", d.event,
                  coalesce(d.message->>'title', '') as "title!", d.item_count, d.status,
                  d.attempts, d.last_error, d.created_at, d.next_attempt_at, d.sent_at
           from notification_deliveries d
           join notification_channels c on c.id = d.channel_id
           left join notification_routes r on r.id = d.route_id
           where not $1 or d.status = 'dead'
           order by d.id desc limit $2"#,
        dead_only,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Puts a dead message back in the queue, due now, with a fresh set of attempts.
pub async fn retry(conn: &mut PgConnection, id: i64) -> Result<(), NotifyError> {
    let updated = sqlx::query!(
        "update notification_deliveries
         set status = 'queued', attempts = 0, next_attempt_at = now(), last_error = null
         where id = $1 and status = 'dead'",
        id
    )
    .execute(conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(NotifyError::NotFound(format!("dead message {id}")));
    }
    Ok(())
}
