//! Notifications: the owning team hears about what needs it, through the channel it already
//! works in (a signed JSON webhook, Slack, Microsoft Teams, email).
//!
//! # Flow
//!
//! Nothing in the collectors' write paths calls this module. The planner ([`plan::plan_once`])
//! reads each source past its cursor (`notification_cursors`): new findings, runtime events and
//! incident steps in (writing transaction, id) order, only those of transactions that have
//! ended (a row committed late with a low id is not stepped over), approved waivers expiring
//! within 7 days and reviews just generated. For every item and every
//! enabled route of its event it resolves the audience *now* (the team owning the layer of the
//! fix from `workload_owners`, the security teams, or a fixed channel) and records one
//! `notification_items` row per (route, channel, subject): a finding is told once, however often
//! it is re-evaluated. It then composes messages: per route and channel, at most one message per
//! digest window; the items gathered in the window go out together in the next message (the
//! first few in full, "and N more" for the rest).
//!
//! Messages are rows of `notification_deliveries`, a queue in PostgreSQL: the worker
//! ([`deliver_due`]) claims one with `FOR UPDATE SKIP LOCKED` (safe with several replicas),
//! sends it ([`send`]), and on failure retries with exponential backoff and jitter until the
//! last attempt, after which the message is dead (the dead letters, retried by an admin).
//!
//! The first time a source is read its cursor starts at the current horizon: an existing
//! backlog (say, the estate's first million findings) is never announced. Each round reads at
//! most `batch` rows per source, so a burst is planned in bounded steps and digested.

pub mod plan;
pub mod send;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};

/// What a route can be about.
pub const EVENTS: [&str; 5] = [
    "finding",
    "runtime_event",
    "incident",
    "waiver_expiring",
    "review_ready",
];
/// Who a route reaches.
pub const AUDIENCES: [&str; 3] = ["owner", "security", "channel"];
/// Channel kinds.
pub const KINDS: [&str; 4] = ["webhook", "slack", "teams", "email"];
/// Severities, lowest first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];
/// SMTP connection security.
pub const SMTP_SECURITY: [&str; 3] = ["starttls", "tls", "none"];
/// How many items a message lists in full; the rest are counted.
pub const ITEMS_IN_FULL: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A channel as configured in the file or posted to the API. Secret fields never show in
/// `Debug`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub name: String,
    /// webhook, slack, teams or email.
    pub kind: String,
    /// The team this channel reaches, by name.
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub url: Option<Secret<String>>,
    /// The HMAC key a generic webhook is signed with.
    #[serde(default)]
    pub signing_key: Option<Secret<String>>,
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_security: Option<String>,
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<Secret<String>>,
    #[serde(default)]
    pub mail_from: Option<String>,
    #[serde(default)]
    pub mail_to: Vec<String>,
}

fn blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|text| text.trim().is_empty())
}

impl ChannelInput {
    /// Checks the fields the kind needs; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err("name: 1 to 64 characters".into());
        }
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(format!(
                "kind: '{}' is not one of {}",
                self.kind,
                KINDS.join(", ")
            ));
        }
        if self.kind == "email" {
            if blank(&self.smtp_host) {
                return Err("smtp_host: an email channel needs its SMTP server".into());
            }
            if let Some(security) = &self.smtp_security {
                if !SMTP_SECURITY.contains(&security.as_str()) {
                    return Err(format!(
                        "smtp_security: '{security}' is not one of {}",
                        SMTP_SECURITY.join(", ")
                    ));
                }
            }
            let from = self.mail_from.as_deref().unwrap_or_default();
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!("mail_from: '{from}' is not an email address"));
            }
            if self.mail_to.is_empty() {
                return Err("mail_to: at least one recipient".into());
            }
            for to in &self.mail_to {
                if to.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(format!("mail_to: '{to}' is not an email address"));
                }
            }
        } else {
            let url = self.url.as_ref().map(|url| url.expose().trim());
            match url {
                Some(url)
                    if (url.starts_with("https://") || url.starts_with("http://"))
                        && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some()) => {}
                // The URL carries a token: never echo it.
                Some(_) => return Err("url: not an http:// or https:// URL".into()),
                None => return Err(format!("url: a {} channel needs its URL", self.kind)),
            }
            if self.kind == "webhook"
                && self
                    .signing_key
                    .as_ref()
                    .is_none_or(|key| key.expose().len() < 16)
            {
                return Err(
                    "signing_key: a webhook needs an HMAC key of 16 characters or more".into(),
                );
            }
        }
        Ok(())
    }

    /// The SMTP security with its default.
    pub fn security(&self) -> &str {
        self.smtp_security.as_deref().unwrap_or("starttls")
    }

    /// The SMTP port with the default of its security.
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.security() {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        })
    }
}

/// A route as configured in the file or posted to the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    pub name: String,
    pub event: String,
    #[serde(default)]
    pub min_severity: Option<String>,
    pub audience: String,
    /// The channel, by name: required for the `channel` audience, the fallback for the others.
    #[serde(default)]
    pub channel: Option<String>,
}

impl RouteInput {
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err("name: 1 to 64 characters".into());
        }
        if !EVENTS.contains(&self.event.as_str()) {
            return Err(format!(
                "event: '{}' is not one of {}",
                self.event,
                EVENTS.join(", ")
            ));
        }
        if let Some(severity) = &self.min_severity {
            if !SEVERITIES.contains(&severity.as_str()) {
                return Err(format!(
                    "min_severity: '{severity}' is not one of {}",
                    SEVERITIES.join(", ")
                ));
            }
        }
        if !AUDIENCES.contains(&self.audience.as_str()) {
            return Err(format!(
                "audience: '{}' is not one of {}",
                self.audience,
                AUDIENCES.join(", ")
            ));
        }
        if self.audience == "channel" && blank(&self.channel) {
            return Err("channel: the channel audience names its channel".into());
        }
        Ok(())
    }
}

/// The rank of a severity (info = 0 … critical = 4); unknown words rank lowest.
pub fn severity_rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|known| *known == severity)
        .unwrap_or(0)
}

/// One thing to tell, channel-neutral. Never holds a secret value: findings carry their check's
/// message (which names variables, never values), events their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// finding, runtime_event, incident, waiver_expiring, review_ready
    pub kind: String,
    /// `finding:42`: what de-duplication keys on.
    pub subject: String,
    pub title: String,
    pub severity: String,
    pub text: String,
    /// The console page, absolute.
    pub link: String,
    pub at: DateTime<Utc>,
}

/// One message: the items of a route for one channel in a digest window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub event: String,
    pub route: String,
    pub title: String,
    /// The first items in full (most severe first).
    pub items: Vec<Item>,
    /// How many items the message covers in all.
    pub total: i64,
    /// `total - items.len()`: the ones only counted.
    pub more: i64,
    /// A console page listing them all.
    pub link: String,
}

/// The runtime settings of planning and delivery.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The console's public base URL, for links.
    pub public_url: String,
    /// At most one message per route and channel per this window.
    pub digest: Duration,
    pub max_attempts: i32,
    /// The first retry waits about this long; each next one twice as long (capped at 1 h).
    pub retry_base: Duration,
    pub timeout: Duration,
    /// Rows read per source per round.
    pub batch: i64,
    /// How often the loops run when idle.
    pub interval: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        let notify = &config.notifications;
        Self {
            public_url: config.public_url.clone(),
            digest: notify.digest,
            max_attempts: notify.max_attempts as i32,
            retry_base: notify.retry_base,
            timeout: notify.timeout,
            batch: notify.batch,
            interval: notify.interval,
        }
    }

    /// How long to wait before attempt `attempts + 1`, with ±25 % jitter.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = attempts.clamp(1, 20) as u32 - 1;
        let base = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(Duration::from_secs(3600));
        let random = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        base.mul_f64(0.75 + random * 0.5)
    }
}

/// Claims and sends due messages until none is due; returns how many were attempted.
pub async fn deliver_due(
    pool: &PgPool,
    sender: &send::Sender,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<usize, NotifyError> {
    let mut attempted = 0;
    while let Some(delivery) = store::claim_due(pool, now).await? {
        attempted += 1;
        let result = sender.send(pool, &delivery).await;
        match result {
            Ok(()) => store::mark_sent(pool, delivery.id, Utc::now()).await?,
            Err(err) => {
                let dead = delivery.attempts >= settings.max_attempts;
                let next = now
                    + chrono::Duration::from_std(settings.backoff(delivery.attempts))
                        .unwrap_or_default();
                tracing::warn!(
                    delivery = delivery.id,
                    channel = delivery.channel_id,
                    attempts = delivery.attempts,
                    dead,
                    error = %err,
                    "a notification could not be delivered"
                );
                store::mark_failed(pool, delivery.id, &err.to_string(), dead, next).await?;
            }
        }
    }
    Ok(attempted)
}

/// Starts the planner and the delivery worker; both stop when `cancel` fires.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    let settings = Settings::from_config(&config);
    let cancel = cancel.clone();
    tasks.spawn(async move {
        if let Err(err) = store::sync_configured(&pool, &config.notifications).await {
            tracing::error!(%err, "cannot apply the configured notification channels and routes");
        }
        // Existing rows are never announced: sources start at their current maximum.
        if let Err(err) = plan::init_cursors(&pool).await {
            tracing::error!(%err, "cannot start the notification cursors");
        }
        let sender = match send::Sender::new(&config) {
            Ok(sender) => sender,
            Err(err) => {
                tracing::error!(%err, "notifications are off: cannot build the HTTP client");
                return;
            }
        };
        loop {
            let now = Utc::now();
            let work = async {
                let planned = plan::plan_once(&pool, &settings, now).await?;
                let sent = deliver_due(&pool, &sender, &settings, Utc::now()).await?;
                Ok::<_, NotifyError>(planned.busy() || sent > 0)
            };
            let wait = tokio::select! {
                () = cancel.cancelled() => return,
                result = work => match result {
                    Ok(true) => Duration::ZERO,
                    Ok(false) => settings.interval,
                    Err(err) => {
                        tracing::error!(%err, "notification planning or delivery failed");
                        settings.interval.max(Duration::from_secs(2))
                    }
                },
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook() -> ChannelInput {
        ChannelInput {
            name: "hooks".into(),
            kind: "webhook".into(),
            url: Some(Secret::new("https://example.com/hook?token=abc".into())),
            signing_key: Some(Secret::new("0123456789abcdef".into())),
            ..ChannelInput::default()
        }
    }

    #[test]
    fn channels_are_checked_without_echoing_secrets() {
        assert!(webhook().validate().is_ok());
        let short_key = ChannelInput {
            signing_key: Some(Secret::new("short".into())),
            ..webhook()
        };
        assert!(short_key.validate().unwrap_err().contains("signing_key"));
        let bad_url = ChannelInput {
            url: Some(Secret::new("ftp://x/secret-token".into())),
            ..webhook()
        };
        let err = bad_url.validate().unwrap_err();
        assert!(
            err.contains("url") && !err.contains("secret-token"),
            "{err}"
        );
        let email = ChannelInput {
            name: "mail".into(),
            kind: "email".into(),
            smtp_host: Some("smtp.example.com".into()),
            mail_from: Some("hm@example.com".into()),
            mail_to: vec!["ops@example.com".into()],
            ..ChannelInput::default()
        };
        assert!(email.validate().is_ok());
        assert_eq!(email.port(), 587);
        let no_to = ChannelInput {
            mail_to: vec!["nobody".into()],
            ..email
        };
        assert!(no_to.validate().unwrap_err().contains("mail_to"));
        assert!(!format!("{:?}", webhook()).contains("0123456789abcdef"));
    }

    #[test]
    fn routes_are_checked() {
        let route = RouteInput {
            name: "critical to owners".into(),
            event: "finding".into(),
            min_severity: Some("critical".into()),
            audience: "owner".into(),
            channel: None,
        };
        assert!(route.validate().is_ok());
        let fixed = RouteInput {
            audience: "channel".into(),
            ..route.clone()
        };
        assert!(fixed.validate().unwrap_err().contains("channel"));
        let bad = RouteInput {
            event: "everything".into(),
            ..route
        };
        assert!(bad.validate().unwrap_err().contains("event"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let settings = Settings {
            public_url: "http://x".into(),
            digest: Duration::from_secs(600),
            max_attempts: 5,
            retry_base: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            batch: 10,
            interval: Duration::from_secs(1),
        };
        for attempts in 1..=4 {
            let expected = 10.0 * 2f64.powi(attempts - 1);
            let got = settings.backoff(attempts).as_secs_f64();
            assert!(
                got >= expected * 0.75 && got <= expected * 1.25,
                "{attempts}: {got}"
            );
        }
        assert!(settings.backoff(30) <= Duration::from_secs(4500));
    }
}
