//! The build, store and update controls of one image digest, judged from what is stored about
//! it (pure). Each result is in the catalog's shape: check, outcome, severity, message and the
//! evidence read (where in the stored record, and the value).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::trivy::{Counts, EnvSecret};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::checks::image::registry_matches;
use crate::posture::context::DEPRECATED_REGISTRIES;
use crate::posture::spec::ImageRef;
use crate::posture::{Outcome, Settings};

/// The latest build report of a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildFacts {
    pub id: i64,
    pub built_at: DateTime<Utc>,
    pub pipeline: String,
    /// `None` when the report came without a scan.
    pub counts: Option<Counts>,
    /// Ids of the critical vulnerabilities among the kept top ones.
    pub critical_ids: Vec<String>,
    pub env_secrets: Vec<EnvSecret>,
}

/// A registry repository holding (or having held) the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIn {
    pub registry: String,
    pub repository: String,
    pub removed: bool,
}

/// A reference of this digest that now points at another, newer digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newer {
    pub reference: String,
    pub digest: String,
    pub seen_at: DateTime<Utc>,
}

/// Everything the controls read about one digest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DigestFacts {
    pub digest: String,
    pub build: Option<BuildFacts>,
    pub stored_in: Vec<StoredIn>,
    /// The image's creation time from its config (engines), when known.
    pub created_at: Option<DateTime<Utc>>,
    pub newer: Vec<Newer>,
    /// The references live instances run this digest by.
    pub run_references: Vec<String>,
}

/// The operator's choices for these controls.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub posture: Settings,
    /// An image older than this many days fails `update.image_stale`.
    pub max_age_days: u32,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            posture: Settings::DEFAULT,
            max_age_days: 90,
        }
    }
}

/// What a control read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Where: a field of the stored record (`/build_reports/12/vulns_critical`).
    pub pointer: String,
    pub value: Value,
}

/// One control's result for one digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlResult {
    pub check: CheckId,
    pub outcome: Outcome,
    pub severity: Severity,
    pub message: String,
    pub evidence: Vec<Evidence>,
    /// The finding for this control is raised per container by the collectors' own evaluation
    /// (`image.digest_unpinned`); shown here, not raised again.
    #[serde(skip)]
    pub per_container: bool,
}

fn ev(pointer: impl Into<String>, value: Value) -> Evidence {
    Evidence {
        pointer: pointer.into(),
        value,
    }
}

struct Out(Vec<ControlResult>);

impl Out {
    fn push(&mut self, check: CheckId, outcome: Outcome, message: String, evidence: Vec<Evidence>) {
        self.push_with(check, outcome, check.meta().severity, message, evidence);
    }
    fn push_with(
        &mut self,
        check: CheckId,
        outcome: Outcome,
        severity: Severity,
        message: String,
        evidence: Vec<Evidence>,
    ) {
        self.0.push(ControlResult {
            check,
            outcome,
            severity,
            message,
            evidence,
            per_container: check == CheckId::ImageDigestUnpinned,
        });
    }
}

/// Judges every build / store / update control of one digest at `now`.
pub fn evaluate(
    facts: &DigestFacts,
    settings: &ControlSettings,
    now: DateTime<Utc>,
) -> Vec<ControlResult> {
    let mut out = Out(Vec::new());
    build(facts, &mut out);
    store(facts, settings, &mut out);
    update(facts, settings, now, &mut out);
    out.0
}

fn build(facts: &DigestFacts, out: &mut Out) {
    let Some(build) = &facts.build else {
        out.push(
            CheckId::BuildNotReported,
            Outcome::Fail,
            format!("no CI build report for {}", facts.digest),
            vec![ev("/build_reports", json!([]))],
        );
        for check in [
            CheckId::BuildScanMissing,
            CheckId::BuildCriticalVulnerability,
        ] {
            out.push(
                check,
                Outcome::Unknown,
                "no build report to read".into(),
                vec![],
            );
        }
        out.push(
            CheckId::SecretsEnvLiteral,
            Outcome::Unknown,
            "the image ENV is read from the build report's scan; there is none".into(),
            vec![],
        );
        return;
    };
    let at = format!("/build_reports/{}", build.id);
    out.push(
        CheckId::BuildNotReported,
        Outcome::Pass,
        format!("built by pipeline {}", build.pipeline),
        vec![ev(format!("{at}/pipeline_run"), json!(build.pipeline))],
    );
    let Some(counts) = &build.counts else {
        out.push(
            CheckId::BuildScanMissing,
            Outcome::Fail,
            "the build report came without a vulnerability scan".into(),
            vec![ev(format!("{at}/scanned"), json!(false))],
        );
        out.push(
            CheckId::BuildCriticalVulnerability,
            Outcome::Unknown,
            "no scan report".into(),
            vec![ev(format!("{at}/scanned"), json!(false))],
        );
        out.push(
            CheckId::SecretsEnvLiteral,
            Outcome::Unknown,
            "the image ENV is read from the scan report; there is none".into(),
            vec![],
        );
        return;
    };
    out.push(
        CheckId::BuildScanMissing,
        Outcome::Pass,
        "scanned".into(),
        vec![ev(format!("{at}/scanned"), json!(true))],
    );
    let mut evidence = vec![ev(format!("{at}/vulns_critical"), json!(counts.critical))];
    if counts.critical > 0 {
        evidence.push(ev(
            format!("{at}/top_vulnerabilities"),
            json!(build.critical_ids),
        ));
        out.push(
            CheckId::BuildCriticalVulnerability,
            Outcome::Fail,
            format!(
                "{} critical {} in the image ({})",
                counts.critical,
                if counts.critical == 1 {
                    "vulnerability"
                } else {
                    "vulnerabilities"
                },
                build.critical_ids.join(", ")
            ),
            evidence,
        );
    } else {
        out.push(
            CheckId::BuildCriticalVulnerability,
            Outcome::Pass,
            "no critical vulnerability".into(),
            evidence,
        );
    }
    let names: Vec<Value> = build
        .env_secrets
        .iter()
        .map(|s| json!({"name": s.name, "rule": s.rule}))
        .collect();
    let evidence = vec![ev(format!("{at}/env_secrets"), Value::Array(names))];
    if build.env_secrets.is_empty() {
        out.push(
            CheckId::SecretsEnvLiteral,
            Outcome::Pass,
            "no secret-looking value in the image ENV".into(),
            evidence,
        );
    } else {
        let names: Vec<&str> = build.env_secrets.iter().map(|s| s.name.as_str()).collect();
        out.push(
            CheckId::SecretsEnvLiteral,
            Outcome::Fail,
            format!(
                "the image ENV holds secret-looking values: {}",
                names.join(", ")
            ),
            evidence,
        );
    }
}

fn store(facts: &DigestFacts, settings: &ControlSettings, out: &mut Out) {
    let places: Vec<Value> = facts
        .stored_in
        .iter()
        .map(|s| json!(format!("{}/{}", s.registry, s.repository)))
        .collect();
    if facts.stored_in.is_empty() {
        out.push(
            CheckId::StoreNotReported,
            Outcome::Fail,
            format!("no registry reported {}", facts.digest),
            vec![ev("/registry_images", json!([]))],
        );
    } else {
        out.push(
            CheckId::StoreNotReported,
            Outcome::Pass,
            "reported by a registry".into(),
            vec![ev("/registry_images", Value::Array(places.clone()))],
        );
    }

    let live: Vec<&StoredIn> = facts.stored_in.iter().filter(|s| !s.removed).collect();
    let posture = &settings.posture;
    if live.is_empty() {
        out.push(
            CheckId::StoreRegistryNotAllowed,
            Outcome::Unknown,
            "not stored in any reporting registry".into(),
            vec![],
        );
    } else {
        let mut bad = Vec::new();
        let mut why = "outside the allow-list";
        for place in &live {
            let text = format!("{}/{}", place.registry, place.repository);
            let r = ImageRef::parse(&text);
            let deprecated = DEPRECATED_REGISTRIES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(r.registry));
            let blocked = posture
                .blocked_registries
                .iter()
                .any(|b| registry_matches(b, &r));
            let allowed = posture
                .allowed_registries
                .as_ref()
                .map(|list| list.iter().any(|a| registry_matches(a, &r)));
            if deprecated || blocked {
                why = if deprecated { "deprecated" } else { "blocked" };
                bad.push(text);
            } else if allowed == Some(false) {
                bad.push(text);
            }
        }
        let evidence = vec![ev("/registry_images", Value::Array(places))];
        if !bad.is_empty() {
            out.push(
                CheckId::StoreRegistryNotAllowed,
                Outcome::Fail,
                format!("stored in a registry {why}: {}", bad.join(", ")),
                evidence,
            );
        } else if posture.allowed_registries.is_none() {
            out.push(
                CheckId::StoreRegistryNotAllowed,
                Outcome::Unknown,
                "no registry allow-list is configured".into(),
                evidence,
            );
        } else {
            out.push(
                CheckId::StoreRegistryNotAllowed,
                Outcome::Pass,
                "stored in allowed registries".into(),
                evidence,
            );
        }
    }

    if facts.run_references.is_empty() {
        out.push(
            CheckId::ImageDigestUnpinned,
            Outcome::NotApplicable,
            "no live instance runs this digest".into(),
            vec![],
        );
    } else {
        let unpinned: Vec<&String> = facts
            .run_references
            .iter()
            .filter(|r| {
                let parsed = ImageRef::parse(r);
                !(parsed.is_id || parsed.has_valid_digest())
            })
            .collect();
        let evidence = vec![ev("/instances/image_ref", json!(facts.run_references))];
        if unpinned.is_empty() {
            out.push(
                CheckId::ImageDigestUnpinned,
                Outcome::Pass,
                "every instance references it by digest".into(),
                evidence,
            );
        } else {
            out.push(
                CheckId::ImageDigestUnpinned,
                Outcome::Fail,
                format!(
                    "run by a reference without a digest: {}",
                    unpinned
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence,
            );
        }
    }
}

fn update(facts: &DigestFacts, settings: &ControlSettings, now: DateTime<Utc>, out: &mut Out) {
    let born = match (&facts.build, facts.created_at) {
        (Some(build), _) => Some(("/build_reports/built_at", build.built_at)),
        (None, Some(created)) => Some(("/images/created_at", created)),
        (None, None) => None,
    };
    match born {
        None => out.push(
            CheckId::UpdateImageStale,
            Outcome::Unknown,
            "neither a build time nor the image's creation time is known".into(),
            vec![],
        ),
        Some((pointer, at)) => {
            let days = (now - at).num_days();
            let evidence = vec![ev(pointer, json!(at.to_rfc3339()))];
            if days > i64::from(settings.max_age_days) {
                out.push(
                    CheckId::UpdateImageStale,
                    Outcome::Fail,
                    format!(
                        "the image is {days} days old (more than {})",
                        settings.max_age_days
                    ),
                    evidence,
                );
            } else {
                out.push(
                    CheckId::UpdateImageStale,
                    Outcome::Pass,
                    format!("the image is {days} days old"),
                    evidence,
                );
            }
        }
    }
    if facts.newer.is_empty() {
        out.push(
            CheckId::UpdateNewerDigest,
            Outcome::Pass,
            "no newer digest is known for its references".into(),
            vec![],
        );
    } else {
        let evidence = facts
            .newer
            .iter()
            .map(|n| {
                ev(
                    format!("/image_references/{}", n.reference),
                    json!({"digest": n.digest, "seen_at": n.seen_at.to_rfc3339()}),
                )
            })
            .collect();
        let first = &facts.newer[0];
        out.push(
            CheckId::UpdateNewerDigest,
            Outcome::Fail,
            format!(
                "{} now points at a newer digest {}",
                first.reference, first.digest
            ),
            evidence,
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn result(results: &[ControlResult], check: CheckId) -> &ControlResult {
        results.iter().find(|r| r.check == check).unwrap()
    }

    fn build(counts: Option<Counts>) -> BuildFacts {
        BuildFacts {
            id: 7,
            built_at: Utc::now() - Duration::days(3),
            pipeline: "https://ci/1".into(),
            counts,
            critical_ids: vec!["CVE-2024-2".into()],
            env_secrets: vec![],
        }
    }

    #[test]
    fn a_digest_nobody_reported_fails_both_not_reported_controls() {
        let facts = DigestFacts {
            digest: "sha256:a".into(),
            ..DigestFacts::default()
        };
        let results = evaluate(&facts, &ControlSettings::default(), Utc::now());
        assert_eq!(
            result(&results, CheckId::BuildNotReported).outcome,
            Outcome::Fail
        );
        assert_eq!(
            result(&results, CheckId::StoreNotReported).outcome,
            Outcome::Fail
        );
        assert_eq!(
            result(&results, CheckId::UpdateImageStale).outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn a_critical_vulnerability_fails_the_build_control_with_its_ids_as_evidence() {
        let facts = DigestFacts {
            digest: "sha256:a".into(),
            build: Some(build(Some(Counts {
                critical: 1,
                ..Counts::default()
            }))),
            ..DigestFacts::default()
        };
        let results = evaluate(&facts, &ControlSettings::default(), Utc::now());
        let critical = result(&results, CheckId::BuildCriticalVulnerability);
        assert_eq!(critical.outcome, Outcome::Fail);
        assert_eq!(critical.severity, Severity::Critical);
        assert_eq!(critical.evidence[1].value, json!(["CVE-2024-2"]));
        let unscanned = DigestFacts {
            build: Some(build(None)),
            ..facts
        };
        let results = evaluate(&unscanned, &ControlSettings::default(), Utc::now());
        assert_eq!(
            result(&results, CheckId::BuildScanMissing).outcome,
            Outcome::Fail
        );
    }

    #[test]
    fn registries_outside_the_allow_list_and_old_images_fail() {
        let mut settings = ControlSettings::default();
        settings.posture.allowed_registries = Some(vec!["reg.example".into()]);
        settings.max_age_days = 2;
        let facts = DigestFacts {
            digest: "sha256:a".into(),
            build: Some(build(None)),
            stored_in: vec![StoredIn {
                registry: "other.example".into(),
                repository: "team/app".into(),
                removed: false,
            }],
            run_references: vec!["other.example/team/app:1".into()],
            ..DigestFacts::default()
        };
        let results = evaluate(&facts, &settings, Utc::now());
        assert_eq!(
            result(&results, CheckId::StoreRegistryNotAllowed).outcome,
            Outcome::Fail
        );
        assert_eq!(
            result(&results, CheckId::UpdateImageStale).outcome,
            Outcome::Fail
        );
        let pinned = result(&results, CheckId::ImageDigestUnpinned);
        assert_eq!(pinned.outcome, Outcome::Fail);
        assert!(pinned.per_container);
    }
}
