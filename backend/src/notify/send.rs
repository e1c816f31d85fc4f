//! Sending one message through one channel: a signed generic webhook, a Slack-compatible or a
//! Microsoft Teams-compatible incoming webhook, or email over SMTP.
//!
//! Every send has a timeout; HTTP redirects are followed only to the same host (and at most 3);
//! errors never carry the URL (it holds tokens).
//!
//! # Webhook signature
//!
//! A generic webhook is a `POST` of the message as JSON with
//! `X-Harbormaster-Timestamp: <unix seconds>` and
//! `X-Harbormaster-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with the
//! channel's signing key. A receiver recomputes the HMAC over the timestamp, a dot and the raw
//! body, compares in constant time, and refuses a timestamp older than a few minutes (replay).
//! See [`verify`].

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::PgPool;

use super::store::{self, Channel, Delivery};
use super::{ChannelInput, Message};
use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "x-harbormaster-signature";
pub const TIMESTAMP_HEADER: &str = "x-harbormaster-timestamp";
pub const DELIVERY_HEADER: &str = "x-harbormaster-delivery";
pub const EVENT_HEADER: &str = "x-harbormaster-event";

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the channel is not usable: {0}")]
    Channel(String),
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("SMTP failed: {0}")]
    Smtp(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot read the channel: {0}")]
    Database(#[from] super::NotifyError),
}

/// `sha256=<hex>` of `"<timestamp>.<body>"` keyed with `key`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver does: checks the signature (constant time) and that the timestamp is within
/// `tolerance` of `now` (unix seconds).
pub fn verify(
    key: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> bool {
    let Ok(at) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - at).abs() > tolerance {
        return false;
    }
    let Some(Ok(given)) = signature.strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The generic webhook's JSON.
pub fn webhook_body(delivery_id: i64, message: &Message) -> Value {
    json!({
        "delivery": delivery_id,
        "event": message.event,
        "route": message.route,
        "title": message.title,
        "total": message.total,
        "more": message.more,
        "link": message.link,
        "items": message.items,
    })
}

/// The message as plain text (email, and the fallback text of chat messages).
pub fn text_body(message: &Message) -> String {
    let mut text = format!("{}\n\n", message.title);
    for item in &message.items {
        text.push_str(&format!(
            "- [{}] {}\n  {}\n  {}\n",
            item.severity, item.title, item.text, item.link
        ));
    }
    if message.more > 0 {
        text.push_str(&format!("\nand {} more: {}\n", message.more, message.link));
    } else {
        text.push_str(&format!("\n{}\n", message.link));
    }
    text
}

/// Slack's mrkdwn needs only these three escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut clipped: String = text.chars().take(max - 1).collect();
        clipped.push('…');
        clipped
    }
}

/// A Slack-compatible incoming webhook payload: `text` (the notification's fallback) and
/// `blocks`.
pub fn slack_body(message: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&message.title, 150)}
    })];
    for item in &message.items {
        blocks.push(json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip(&format!(
                    "*<{}|{}>* `{}`\n{}",
                    item.link,
                    slack_escape(&item.title),
                    item.severity,
                    slack_escape(&item.text)
                ), 3000)
            }
        }));
    }
    let footer = if message.more > 0 {
        format!(
            "and {} more — <{}|open Harbormaster>",
            message.more, message.link
        )
    } else {
        format!("<{}|Open Harbormaster>", message.link)
    };
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": footer}]
    }));
    let mut text = slack_escape(&message.title);
    if message.more > 0 {
        text.push_str(&format!(" (and {} more)", message.more));
    }
    json!({"text": text, "blocks": blocks})
}

fn theme_color(message: &Message) -> &'static str {
    let worst = message
        .items
        .iter()
        .map(|item| super::severity_rank(&item.severity))
        .max()
        .unwrap_or(0);
    match worst {
        4 => "B00020",
        3 => "E65100",
        2 => "F9A825",
        _ => "546E7A",
    }
}

fn teams_escape(text: &str) -> String {
    text.replace('<', "&lt;").replace('>', "&gt;")
}

/// A Microsoft Teams-compatible incoming webhook payload (an Office 365 MessageCard).
pub fn teams_body(message: &Message) -> Value {
    let sections: Vec<Value> = message
        .items
        .iter()
        .map(|item| {
            json!({
                "activityTitle": teams_escape(&item.title),
                "activitySubtitle": item.severity,
                "text": teams_escape(&item.text),
                "potentialAction": [{
                    "@type": "OpenUri",
                    "name": "Open in Harbormaster",
                    "targets": [{"os": "default", "uri": item.link}]
                }]
            })
        })
        .collect();
    let text = if message.more > 0 {
        format!("and {} more", message.more)
    } else {
        String::new()
    };
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": clip(&message.title, 150),
        "themeColor": theme_color(message),
        "title": teams_escape(&message.title),
        "text": text,
        "sections": sections,
        "potentialAction": [{
            "@type": "OpenUri",
            "name": "Open Harbormaster",
            "targets": [{"os": "default", "uri": message.link}]
        }]
    })
}

/// Sends messages; holds the HTTP client and the configuration file's channel secrets.
pub struct Sender {
    http: reqwest::Client,
    configured: HashMap<String, ChannelInput>,
    timeout: Duration,
}

/// Follows a redirect only to the same scheme, host and port, at most 3 times.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        let same = first.is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > 3 || !same {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl Sender {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        Self::with_channels(
            config.notifications.channels.clone(),
            config.notifications.timeout,
        )
    }

    /// A sender with the configuration file's channels (their secrets) and a timeout.
    pub fn with_channels(
        channels: Vec<ChannelInput>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(same_host_redirects())
            .user_agent(concat!("Harbormaster/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            configured: channels
                .into_iter()
                .map(|channel| (channel.name.trim().to_lowercase(), channel))
                .collect(),
            timeout,
        })
    }

    /// Sends `delivery` through its channel.
    pub async fn send(&self, pool: &PgPool, delivery: &Delivery) -> Result<(), SendError> {
        let mut conn = pool.acquire().await.map_err(super::NotifyError::from)?;
        let mut channel = store::channel(&mut conn, delivery.channel_id).await?;
        drop(conn);
        if channel.origin == "config" {
            let configured = self
                .configured
                .get(&channel.name.to_lowercase())
                .ok_or_else(|| SendError::Channel("it is no longer in the configuration".into()))?;
            channel.url = configured.url.as_ref().map(|s| s.expose().clone());
            channel.signing_key = configured.signing_key.as_ref().map(|s| s.expose().clone());
            channel.smtp_password = configured
                .smtp_password
                .as_ref()
                .map(|s| s.expose().clone());
        }
        let message = &delivery.message.0;
        let work = async {
            match channel.kind.as_str() {
                "webhook" => {
                    let body = serde_json::to_vec(&webhook_body(delivery.id, message))
                        .expect("a message serializes");
                    let key = channel
                        .signing_key
                        .as_deref()
                        .ok_or_else(|| SendError::Channel("no signing key".into()))?;
                    let timestamp = Utc::now().timestamp();
                    let signature = sign(key.as_bytes(), timestamp, &body);
                    let request = self
                        .post(&channel)?
                        .header(TIMESTAMP_HEADER, timestamp.to_string())
                        .header(SIGNATURE_HEADER, signature)
                        .header(DELIVERY_HEADER, delivery.id.to_string())
                        .header(EVENT_HEADER, &delivery.event)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body);
                    self.finish(request).await
                }
                "slack" => {
                    let request = self.post(&channel)?.json(&slack_body(message));
                    self.finish(request).await
                }
                "teams" => {
                    let request = self.post(&channel)?.json(&teams_body(message));
                    self.finish(request).await
                }
                "email" => send_mail(&channel, message, self.timeout).await,
                other => Err(SendError::Channel(format!("unknown kind {other}"))),
            }
        };
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), work).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }

    fn post(&self, channel: &Channel) -> Result<reqwest::RequestBuilder, SendError> {
        let url = channel
            .url
            .as_deref()
            .ok_or_else(|| SendError::Channel("no URL".into()))?;
        Ok(self.http.post(url))
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> Result<(), SendError> {
        let response = request
            .send()
            .await
            // The URL holds the token: never in an error.
            .map_err(|err| SendError::Http(err.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}

async fn send_mail(
    channel: &Channel,
    message: &Message,
    timeout: Duration,
) -> Result<(), SendError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let smtp = |err: &dyn std::fmt::Display| SendError::Smtp(err.to_string());
    let host = channel
        .smtp_host
        .as_deref()
        .ok_or_else(|| SendError::Channel("no SMTP server".into()))?;
    let port = channel.smtp_port.unwrap_or(587);
    let port = u16::try_from(port).map_err(|_| SendError::Channel("bad SMTP port".into()))?;
    let tls = match channel.smtp_security.as_deref().unwrap_or("starttls") {
        "none" => Tls::None,
        security => {
            let parameters = TlsParameters::new(host.to_string()).map_err(|e| smtp(&e))?;
            if security == "tls" {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &channel.smtp_username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            channel.smtp_password.clone().unwrap_or_default(),
        ));
    }
    let mailer = builder.build();
    let from = channel
        .mail_from
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| smtp(&e))?;
    let mut mail = lettre::Message::builder()
        .from(from)
        .subject(clip(&format!("[Harbormaster] {}", message.title), 200));
    for to in &channel.mail_to {
        mail = mail.to(to.parse().map_err(|e| smtp(&e))?);
    }
    let mail = mail
        .header(ContentType::TEXT_PLAIN)
        .body(text_body(message))
        .map_err(|e| smtp(&e))?;
    mailer.send(mail).await.map_err(|e| smtp(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Item;

    fn message(more: i64) -> Message {
        Message {
            event: "finding".into(),
            route: "critical".into(),
            title: "Privileged <container> on web".into(),
            items: vec![Item {
                kind: "finding".into(),
                subject: "finding:1".into(),
                title: "Privileged <container> on web".into(),
                severity: "critical".into(),
                text: "runs privileged & more".into(),
                link: "http://hm.example/workloads/1#posture".into(),
                at: Utc::now(),
            }],
            total: 1 + more,
            more,
            link: "http://hm.example/workloads".into(),
        }
    }

    #[test]
    fn a_signature_verifies_and_a_changed_body_or_old_timestamp_does_not() {
        let body = br#"{"a":1}"#;
        let signature = sign(b"key-key-key-key-key", 1_700_000_000, body);
        assert!(signature.starts_with("sha256="));
        assert!(verify(
            b"key-key-key-key-key",
            "1700000000",
            &signature,
            body,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            b"key-key-key-key-key",
            "1700000000",
            &signature,
            br#"{"a":2}"#,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            b"other-key",
            "1700000000",
            &signature,
            body,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            b"key-key-key-key-key",
            "1700000000",
            &signature,
            body,
            1_700_001_000,
            300
        ));
        assert!(!verify(
            b"key-key-key-key-key",
            "1700000001",
            &signature,
            body,
            1_700_000_010,
            300
        ));
    }

    #[test]
    fn slack_and_teams_payloads_escape_and_count_the_rest() {
        let slack = slack_body(&message(99));
        assert!(slack["text"]
            .as_str()
            .unwrap()
            .contains("&lt;container&gt;"));
        assert!(slack["text"].as_str().unwrap().contains("and 99 more"));
        let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("<http://hm.example/workloads/1#posture|"),
            "{section}"
        );
        assert!(section.contains("&amp; more"));
        let teams = teams_body(&message(99));
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["text"], "and 99 more");
        assert_eq!(teams["themeColor"], "B00020");
        let text = text_body(&message(0));
        assert!(text.contains("http://hm.example/workloads/1#posture"));
    }
}
