//! The Docker Distribution registry notification envelope (`application/vnd.docker.distribution.events.v1+json`):
//! `{"events": [{"id", "timestamp", "action", "target": {"mediaType", "digest", "repository",
//! "url", "tag"}, "request": {"host", …}, "actor": {"name"}, "source": {"addr", …}}]}`.
//!
//! Only manifest events (images and indexes) are kept: blob (layer and config) pushes and pulls
//! describe parts of an image, not an image, and are skipped. Actions other than push, pull and
//! delete (`mount`) are skipped too. Unknown fields are ignored; a required field that is missing
//! or of the wrong type is refused with its path.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{is_digest, InvalidInput};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Pull,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
        }
    }
}

/// One kept event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    pub event_id: String,
    pub action: Action,
    /// The registry host as clients address it (`request.host`, else the host of `target.url`).
    pub registry: String,
    pub repository: String,
    /// Absent for a tag deletion.
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub media_type: Option<String>,
    pub actor: Option<String>,
    pub source_addr: Option<String>,
    pub at: DateTime<Utc>,
}

impl RegistryEvent {
    /// `registry/repository:tag`, when the event names a tag.
    pub fn tag_reference(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}/{}:{tag}", self.registry, self.repository))
    }
}

/// The kept events of an envelope and how many were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub events: Vec<RegistryEvent>,
    pub skipped: usize,
}

/// Whether a media type is a manifest (an image or an index), not a blob.
pub fn is_manifest(media_type: &str) -> bool {
    let media_type = media_type.to_ascii_lowercase();
    media_type.contains("manifest")
        || media_type.contains("image.index")
        || media_type.ends_with("+prettyjws")
}

fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn string(object: &Value, key: &str, path: &str) -> Result<Option<String>, InvalidInput> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Some(_) => Err(InvalidInput(format!("{path}.{key} must be a string"))),
    }
}

fn host_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?;
    Some(host.to_string()).filter(|h| !h.is_empty())
}

/// Parses a notification envelope. `now` stands in for a missing timestamp.
pub fn parse_envelope(body: &[u8], now: DateTime<Utc>) -> Result<Envelope, InvalidInput> {
    let document: Value = serde_json::from_slice(body).map_err(|err| {
        InvalidInput(format!(
            "the registry notification is not valid JSON: {err}"
        ))
    })?;
    let events = match document.get("events") {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(InvalidInput("events must be an array".into())),
        None => {
            return Err(InvalidInput(
                "events is required (a Docker Distribution notification envelope)".into(),
            ))
        }
    };
    let mut kept = Vec::new();
    let mut skipped = 0;
    for (index, event) in events.iter().enumerate() {
        let path = format!("events[{index}]");
        if !event.is_object() {
            return Err(InvalidInput(format!("{path} must be an object")));
        }
        let action = match string(event, "action", &path)?.as_deref() {
            Some("push") => Action::Push,
            Some("pull") => Action::Pull,
            Some("delete") => Action::Delete,
            Some(_) => {
                skipped += 1;
                continue;
            }
            None => return Err(InvalidInput(format!("{path}.action is required"))),
        };
        let event_id = string(event, "id", &path)?
            .ok_or_else(|| InvalidInput(format!("{path}.id is required")))?;
        let target_path = format!("{path}.target");
        let target = match field(event, "target") {
            Some(target) if target.is_object() => target,
            Some(_) => return Err(InvalidInput(format!("{target_path} must be an object"))),
            None => return Err(InvalidInput(format!("{target_path} is required"))),
        };
        let media_type = string(target, "mediaType", &target_path)?;
        if media_type.as_deref().is_some_and(|m| !is_manifest(m)) {
            skipped += 1;
            continue;
        }
        let repository = string(target, "repository", &target_path)?
            .ok_or_else(|| InvalidInput(format!("{target_path}.repository is required")))?;
        let digest = string(target, "digest", &target_path)?;
        if let Some(digest) = &digest {
            if !is_digest(digest) {
                return Err(InvalidInput(format!(
                    "{target_path}.digest '{digest}' is not a content digest"
                )));
            }
        }
        let tag = string(target, "tag", &target_path)?;
        if digest.is_none() && (action != Action::Delete || tag.is_none()) {
            return Err(InvalidInput(format!(
                "{target_path}.digest is required (only a tag deletion may name a tag alone)"
            )));
        }
        let at = match string(event, "timestamp", &path)? {
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map_err(|err| {
                    InvalidInput(format!(
                        "{path}.timestamp '{text}' is not an RFC 3339 time: {err}"
                    ))
                })?
                .with_timezone(&Utc),
            None => now,
        };
        let request_host = match field(event, "request") {
            Some(request) => string(request, "host", &format!("{path}.request"))?,
            None => None,
        };
        let url_host = string(target, "url", &target_path)?
            .as_deref()
            .and_then(host_of_url);
        let source_addr = match field(event, "source") {
            Some(source) => string(source, "addr", &format!("{path}.source"))?,
            None => None,
        };
        let registry = request_host
            .or(url_host)
            .or_else(|| source_addr.clone())
            .unwrap_or_else(|| "unknown".into())
            .to_ascii_lowercase();
        let actor = match field(event, "actor") {
            Some(actor) => string(actor, "name", &format!("{path}.actor"))?,
            None => None,
        };
        kept.push(RegistryEvent {
            event_id,
            action,
            registry,
            repository,
            digest,
            tag,
            media_type,
            actor,
            source_addr,
            at,
        });
    }
    Ok(Envelope {
        events: kept,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(value: Value) -> Result<Envelope, InvalidInput> {
        parse_envelope(value.to_string().as_bytes(), Utc::now())
    }

    #[test]
    fn manifest_events_are_kept_and_blob_events_skipped() {
        let envelope = parse(json!({"events": [
            {"id": "1", "timestamp": "2026-11-28T10:00:00.5Z", "action": "push",
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST,
                        "repository": "team/app", "tag": "1.4.2",
                        "url": "https://reg.example:5000/v2/team/app/manifests/sha256:x"},
             "request": {"host": "Reg.Example:5000"}, "actor": {"name": "ci"},
             "source": {"addr": "10.0.0.1:5000"}, "unknown": true},
            {"id": "2", "action": "pull",
             "target": {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": DIGEST, "repository": "team/app"}},
            {"id": "3", "action": "mount", "target": {"repository": "team/app"}},
            {"id": "4", "action": "delete", "target": {"repository": "team/app", "tag": "old"},
             "request": {"host": "reg.example:5000"}}
        ]}))
        .unwrap();
        assert_eq!(envelope.skipped, 2);
        assert_eq!(envelope.events.len(), 2);
        let push = &envelope.events[0];
        assert_eq!(push.registry, "reg.example:5000");
        assert_eq!(
            push.tag_reference().unwrap(),
            "reg.example:5000/team/app:1.4.2"
        );
        assert_eq!(push.actor.as_deref(), Some("ci"));
        assert_eq!(envelope.events[1].digest, None);
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_path() {
        for (value, expected) in [
            (json!({}), "events is required"),
            (json!({"events": {}}), "events must be an array"),
            (
                json!({"events": [{"id": "1"}]}),
                "events[0].action is required",
            ),
            (
                json!({"events": [{"id": "1", "action": "push", "target": {"repository": "a"}}]}),
                "events[0].target.digest is required",
            ),
            (
                json!({"events": [{"id": "1", "action": "push", "target": {"repository": "a", "digest": "sha256:1"}}]}),
                "not a content digest",
            ),
            (
                json!({"events": [{"id": "1", "action": "push", "timestamp": "noon",
                                   "target": {"repository": "a", "digest": DIGEST}}]}),
                "events[0].timestamp 'noon'",
            ),
        ] {
            let err = parse(value.clone()).unwrap_err();
            assert!(err.0.contains(expected), "{value}: {err}");
        }
    }
}
