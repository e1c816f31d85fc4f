//! The build and store stages of an image's lifecycle, as reported from outside the engines: CI
//! pipelines post build reports (`POST /api/v1/events/build`, with an optional Trivy scan) and
//! registries post their notifications (`POST /api/v1/events/registry`).
//!
//! Pure parsing and judging live here ([`parse_build_report`], [`trivy`], [`registry`],
//! [`controls`]); [`store`] persists them and turns the controls into findings; [`query`] reads
//! the image inventory and the build / store part of a workload's timeline.
//!
//! # How the build / store / update controls become findings
//!
//! The controls are judged per image digest ([`controls::evaluate`]) from what is stored about
//! it: its latest build report, the registries holding it, its age and the references it shares
//! with newer digests. A workload's findings for them are the FAILs of the digests it runs,
//! stored under the container key [`IMAGE_SCOPE`] (`@image`, which no Docker or Kubernetes
//! container can be named), one per check with the digests as evidence. The collectors' own
//! evaluations never resolve findings of that scope; [`store::evaluate_workloads`] does, for the
//! workloads it judges. It runs
//! - when a build report or registry event arrives, for the workloads running the digests it
//!   concerns (and those sharing a reference with them: a newer digest may now be known);
//! - from the background sweep ([`store::sweep_once`]) for workloads whose digests changed since
//!   they were last judged, and for all of them once an hour (images age).

pub mod controls;
pub mod query;
pub mod registry;
pub mod store;
pub mod trivy;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// The findings key (the `container` column) of findings about a workload's image digests.
pub const IMAGE_SCOPE: &str = "@image";

/// What was wrong with a posted document; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Whether `digest` is a content digest `alg:hex` (sha256: 64 hex digits, sha384: 96, sha512:
/// 128), lower-case.
pub fn is_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A build report as posted by CI. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
struct BuildReportInput {
    image: Option<String>,
    digest: Option<String>,
    repository: Option<String>,
    commit: Option<String>,
    pipeline_url: Option<String>,
    pipeline_run: Option<String>,
    builder: Option<String>,
    built_at: Option<DateTime<Utc>>,
    scan: Option<Value>,
}

/// A validated build report, its scan already summarized (the report itself is not kept).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    pub image: String,
    pub digest: String,
    pub repository: Option<String>,
    pub commit: Option<String>,
    pub pipeline_url: Option<String>,
    /// The idempotency key with the digest: the run id given, else the pipeline URL.
    pub pipeline_run: String,
    pub builder: Option<String>,
    pub built_at: DateTime<Utc>,
    pub scan: Option<trivy::ScanSummary>,
}

/// Longest accepted text field of a build report.
const MAX_FIELD: usize = 2048;

fn text_field(name: &str, value: Option<String>) -> Result<Option<String>, InvalidInput> {
    let Some(value) = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if value.len() > MAX_FIELD {
        return Err(InvalidInput(format!(
            "{name} is longer than {MAX_FIELD} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput(format!("{name} contains control characters")));
    }
    Ok(Some(value))
}

/// Parses and validates a posted build report. `now` stands in for a missing `built_at`.
pub fn parse_build_report(body: &[u8], now: DateTime<Utc>) -> Result<BuildReport, InvalidInput> {
    let input: BuildReportInput = serde_json::from_slice(body)
        .map_err(|err| InvalidInput(format!("the build report is not valid JSON: {err}")))?;
    let image = text_field("image", input.image)?.ok_or_else(|| {
        InvalidInput::new(
            "image is required (the reference built, e.g. registry.example.com/team/app:1.4.2)",
        )
    })?;
    let digest = text_field("digest", input.digest)?
        .ok_or_else(|| InvalidInput::new("digest is required (sha256:<64 hex digits>)"))?;
    if !is_digest(&digest) {
        return Err(InvalidInput(format!(
            "digest '{digest}' is not a content digest; expected sha256:<64 lower-case hex digits>"
        )));
    }
    let pipeline_url = text_field("pipeline_url", input.pipeline_url)?;
    let pipeline_run = text_field("pipeline_run", input.pipeline_run)?
        .or_else(|| pipeline_url.clone())
        .ok_or_else(|| {
            InvalidInput::new("pipeline_url or pipeline_run is required (it identifies the build)")
        })?;
    let scan = match input.scan {
        None | Some(Value::Null) => None,
        Some(report) => Some(
            trivy::summarize(&report).map_err(|err| InvalidInput(format!("scan: {}", err.0)))?,
        ),
    };
    Ok(BuildReport {
        image,
        digest,
        repository: text_field("repository", input.repository)?,
        commit: text_field("commit", input.commit)?,
        pipeline_url,
        pipeline_run,
        builder: text_field("builder", input.builder)?,
        built_at: input.built_at.unwrap_or(now),
        scan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(body: &str) -> Result<BuildReport, InvalidInput> {
        parse_build_report(body.as_bytes(), Utc::now())
    }

    #[test]
    fn a_minimal_report_needs_image_digest_and_a_pipeline() {
        let report = parse(&format!(
            r#"{{"image":"reg.example/app:1","digest":"{DIGEST}","pipeline_url":"https://ci/1","colour":"red"}}"#
        ))
        .unwrap();
        assert_eq!(report.pipeline_run, "https://ci/1");
        assert!(report.scan.is_none());
        for (body, word) in [
            ("{", "not valid JSON"),
            ("[]", "not valid JSON"),
            (r#"{"digest":"x"}"#, "image is required"),
            (r#"{"image":"a"}"#, "digest is required"),
            (
                r#"{"image":"a","digest":"sha256:ABC"}"#,
                "not a content digest",
            ),
            (
                &format!(r#"{{"image":"a","digest":"{DIGEST}"}}"#),
                "pipeline_url or pipeline_run",
            ),
            (
                &format!(
                    r#"{{"image":"a","digest":"{DIGEST}","pipeline_run":"1","built_at":"yesterday"}}"#
                ),
                "not valid JSON",
            ),
            (
                &format!(
                    r#"{{"image":"a","digest":"{DIGEST}","pipeline_run":"1","scan":{{"Results":"x"}}}}"#
                ),
                "scan: Results",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.0.contains(word), "{body}: {err}");
        }
    }

    #[test]
    fn digests_are_checked_by_algorithm_and_length() {
        assert!(is_digest(DIGEST));
        assert!(!is_digest(&DIGEST.to_uppercase()));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("md5:0123456789abcdef0123456789abcdef"));
    }
}
