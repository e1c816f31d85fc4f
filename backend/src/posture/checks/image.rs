//! 1.J Image and supply chain. References are parsed per §0.6: the tag is the text after the
//! last `:` only when it follows the last `/`, so `registry:5000/app` has no tag (E17).

use super::{s, Eval};
use crate::posture::catalog::CheckId;
use crate::posture::context::DEPRECATED_REGISTRIES;
use crate::posture::spec::{ContainerSpec, Health, ImageRef, Platform, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    tag_mutable(e);
    digest_unpinned(e);
    pull_policy(e);
    registry_not_allowed(e);
    signature_unverified(e);
    healthcheck_missing(e);
}

/// Whether a Docker container was started from an image id prefix (`docker run 55a8cf3a8159`).
fn started_by_id(c: &ContainerSpec, reference: &str) -> bool {
    reference.len() >= 12
        && reference.bytes().all(|b| b.is_ascii_hexdigit())
        && c.image_id
            .as_deref()
            .is_some_and(|id| id.trim_start_matches("sha256:").starts_with(reference))
}

/// `Some(reference)` or records UNKNOWN for a container without an image.
fn reference<'a>(
    e: &mut Eval<'a, '_, '_>,
    check: CheckId,
    c: &'a ContainerSpec,
) -> Option<&'a str> {
    match c.image.as_deref() {
        Some(image) if !image.trim().is_empty() => Some(image),
        _ => {
            let start = e.out.mark();
            e.fld(Some(c), &c.image, Val::Str("no image"));
            e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "the container names no image",
                start,
            );
            None
        }
    }
}

/// Whether a reference is mutable: no digest, and no tag, `latest` or a floating tag.
fn mutable(e: &Eval<'_, '_, '_>, r: &ImageRef<'_>) -> bool {
    !r.has_valid_digest()
        && r.effective_tag()
            .is_none_or(|tag| e.ctx.settings().is_floating(tag))
}

fn tag_mutable(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ImageTagMutable;
    e.each_container(check, |e, c| {
        let Some(text) = reference(e, check, c) else {
            return;
        };
        let start = e.out.mark();
        let r = ImageRef::parse(text);
        if r.is_id || started_by_id(c, text) {
            e.fld(Some(c), &c.image, Val::Str("image id"));
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "started from an image id",
                start,
            );
        } else if r.has_valid_digest() {
            e.fld(Some(c), &c.image, s(r.digest.unwrap_or_default()));
            e.outcome(check, Some(c), Outcome::Pass, "pinned by digest", start);
        } else if mutable(e, &r) {
            let tag = r.effective_tag().unwrap_or("latest");
            e.fld(Some(c), &c.image, s(tag));
            let message = if r.tag.is_none() {
                "no tag: implicitly latest"
            } else {
                "uses a floating tag"
            };
            e.outcome(check, Some(c), Outcome::Fail, message, start);
        } else {
            e.fld(Some(c), &c.image, s(r.tag.unwrap_or_default()));
            e.outcome(check, Some(c), Outcome::Pass, "uses a release tag", start);
        }
    });
}

fn digest_unpinned(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ImageDigestUnpinned;
    e.each_container(check, |e, c| {
        let Some(text) = reference(e, check, c) else {
            return;
        };
        let start = e.out.mark();
        let r = ImageRef::parse(text);
        if r.is_id || started_by_id(c, text) {
            e.fld(Some(c), &c.image, Val::Str("image id"));
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "started from a local image id (pinned locally, no registry provenance)",
                start,
            );
        } else if r.has_valid_digest() {
            e.fld(Some(c), &c.image, s(r.digest.unwrap_or_default()));
            e.outcome(check, Some(c), Outcome::Pass, "pinned by digest", start);
        } else {
            e.fld(
                Some(c),
                &c.image,
                r.digest
                    .map_or(Val::Str("no digest"), |_| Val::Str("malformed digest")),
            );
            e.outcome(check, Some(c), Outcome::Fail, "not pinned by digest", start);
        }
    });
}

fn pull_policy(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ImagePullPolicy;
    if !e.applies(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let Some(text) = reference(e, check, c) else {
            return;
        };
        let start = e.out.mark();
        let r = ImageRef::parse(text);
        let is_mutable = mutable(e, &r);
        // API default: Always for latest or untagged references, else IfNotPresent.
        let defaulted = if !r.has_valid_digest() && r.effective_tag() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        let policy = c.pull_policy.as_deref().unwrap_or(defaulted);
        e.fld(Some(c), &c.pull_policy, s(policy));
        if is_mutable && matches!(policy, "IfNotPresent" | "Never") {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "a mutable tag with a pull policy that reuses a cached image",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "pinned, or pulled on every start",
                start,
            );
        }
    });
}

/// Whether an allow-/block-list entry (`host` or `host/path-prefix`) covers the reference.
pub(crate) fn registry_matches(entry: &str, r: &ImageRef<'_>) -> bool {
    let entry = entry.trim().trim_end_matches('/');
    if entry.eq_ignore_ascii_case(r.registry) {
        return true;
    }
    match entry.split_once('/') {
        Some((host, prefix)) => {
            host.eq_ignore_ascii_case(r.registry)
                && (r.repository == prefix || r.repository.starts_with(&format!("{prefix}/")))
        }
        None => false,
    }
}

fn registry_not_allowed(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::StoreRegistryNotAllowed;
    let settings = e.ctx.settings();
    e.each_container(check, |e, c| {
        let Some(text) = reference(e, check, c) else {
            return;
        };
        let start = e.out.mark();
        let r = ImageRef::parse(text);
        if r.is_id || started_by_id(c, text) {
            e.fld(Some(c), &c.image, Val::Str("image id"));
            e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "started from an image id: no registry provenance",
                start,
            );
            return;
        }
        e.fld(Some(c), &c.image, s(r.registry));
        if DEPRECATED_REGISTRIES
            .iter()
            .any(|d| d.eq_ignore_ascii_case(r.registry))
        {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "pulls from a deprecated registry",
                start,
            );
        } else if settings
            .blocked_registries
            .iter()
            .any(|b| registry_matches(b, &r))
        {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "pulls from a blocked registry",
                start,
            );
        } else {
            match &settings.allowed_registries {
                Some(allowed) if allowed.iter().any(|a| registry_matches(a, &r)) => e.outcome(
                    check,
                    Some(c),
                    Outcome::Pass,
                    "pulls from an allowed registry",
                    start,
                ),
                Some(_) => e.outcome(
                    check,
                    Some(c),
                    Outcome::Fail,
                    "pulls from a registry outside the allow-list",
                    start,
                ),
                None => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "no registry allow-list is configured",
                    start,
                ),
            }
        }
    });
}

fn signature_unverified(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::StoreSignatureUnverified;
    let verified = e.ctx.verified_digests;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let r = c.image.as_deref().map(ImageRef::parse);
        let digest = r
            .as_ref()
            .filter(|r| r.has_valid_digest() && !r.is_id)
            .and_then(|r| r.digest)
            .or(c.image_id.as_deref().filter(|id| id.contains("sha256:")));
        e.fld(Some(c), &c.image, digest.map_or(Val::Str("no digest"), s));
        match (verified, digest) {
            (None, _) => e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "no signature verifier data",
                start,
            ),
            (Some(_), None) => e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "the running digest is not known, so its signature cannot be looked up",
                start,
            ),
            (Some(set), Some(digest)) => {
                let digest = digest.rsplit('@').next().unwrap_or(digest);
                if set.contains(digest) {
                    e.outcome(check, Some(c), Outcome::Pass, "signature verified", start);
                } else {
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Fail,
                        "no verified signature for the digest",
                        start,
                    );
                }
            }
        }
    });
}

fn healthcheck_missing(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::ImageHealthcheckMissing;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            match d.healthcheck.value {
                Health::Set => {
                    e.fld(Some(c), &d.healthcheck, Val::Str("health check"));
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Pass,
                        "health check configured",
                        start,
                    );
                }
                Health::Disabled => {
                    e.fld(Some(c), &d.healthcheck, Val::Str("disabled"));
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Fail,
                        "the health check is disabled (NONE)",
                        start,
                    );
                }
                Health::None => {
                    e.fld(Some(c), &d.healthcheck, Val::Str("none"));
                    e.outcome(check, Some(c), Outcome::Fail, "no health check", start);
                }
            }
            return;
        }
        debug_assert_eq!(spec.platform, Platform::Kubernetes);
        if !c.role.long_running() || spec.run_to_completion {
            e.outcome(
                check,
                Some(c),
                Outcome::NotApplicable,
                "runs to completion: probes do not apply",
                start,
            );
            return;
        }
        let p = &c.probes;
        if p.liveness || p.readiness || p.startup {
            e.out.ev(
                crate::posture::spec::Pointer::item(&c.ptr).path(if p.liveness {
                    "/livenessProbe"
                } else if p.readiness {
                    "/readinessProbe"
                } else {
                    "/startupProbe"
                }),
                Val::Str("probe"),
                Val::Str("probe declared"),
            );
            e.outcome(check, Some(c), Outcome::Pass, "probes declared", start);
        } else {
            e.out.ev(
                crate::posture::spec::Pointer::item(&c.ptr).path("/livenessProbe"),
                Val::Absent,
                Val::Str("no probe"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "no liveness, readiness or startup probe",
                start,
            );
        }
    });
}
