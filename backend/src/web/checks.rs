//! The check catalog over the API: `GET /api/v1/checks` lists every check with all its
//! metadata (severity, threat, stage, owning layer, remediation per source, references),
//! filterable by `severity`, `threat`, `stage`, `layer` and `source`, keyset-paginated with
//! `limit` and `after` (a check id; catalog order); `GET /api/v1/checks/{id}` returns one.

use crate::auth::Role;
use crate::web::RoutePolicy;
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::page::PageContext;
use super::{AppState, WebError};
use crate::posture::catalog::{self, CheckMeta, Layer, Severity, Stage, Threat, CATALOG};
use crate::posture::pss;

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/checks", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/checks/{id}", Role::Viewer),
    RoutePolicy::role(Method::GET, "/checks", Role::Viewer),
    RoutePolicy::role(Method::GET, "/checks/{id}", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/checks/{id}", get(get_check))
        .route("/checks", get(get_checks_page))
        .route("/checks/{id}", get(get_check_page))
}

/// One catalog entry with its primary stage and owning layer spelled out.
#[derive(Serialize)]
pub struct CheckView {
    #[serde(flatten)]
    meta: &'static CheckMeta,
    /// The primary lifecycle stage (the first of `stages`).
    stage: Stage,
    /// The layer that owns the fix by default (the first of `layers`).
    layer: Layer,
}

impl From<&'static CheckMeta> for CheckView {
    fn from(meta: &'static CheckMeta) -> Self {
        Self {
            meta,
            stage: meta.stage(),
            layer: meta.layer(),
        }
    }
}

#[derive(Serialize)]
pub struct CheckList {
    /// The Pod Security Admission policy version the PSS conformance encodes.
    pss_policy_version: &'static str,
    checks: Vec<CheckView>,
    /// The `after` value of the next page, when there is one.
    next: Option<&'static str>,
}

/// The filters and page of `GET /api/v1/checks`.
#[derive(Debug, Default, Deserialize)]
pub struct CheckFilter {
    severity: Option<String>,
    threat: Option<String>,
    stage: Option<String>,
    layer: Option<String>,
    /// `docker` or `kubernetes`: checks with a rule for that source.
    source: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// The serde name of an enum value (`container_escape`, `orchestration`, …).
pub(super) fn name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Checks `wanted` against the allowed names; 400 naming the parameter otherwise.
fn allowed(parameter: &str, wanted: &str, names: &[String]) -> Result<(), WebError> {
    if names.iter().any(|n| n == wanted) {
        Ok(())
    } else {
        Err(WebError::BadRequest(format!(
            "{parameter} must be one of {}",
            names.join(", ")
        )))
    }
}

/// The catalog, in catalog order, filtered and paginated.
async fn list_checks(Query(filter): Query<CheckFilter>) -> Result<Json<CheckList>, WebError> {
    if let Some(severity) = &filter.severity {
        allowed("severity", severity, &Severity::ALL.map(name))?;
    }
    if let Some(threat) = &filter.threat {
        let names = [
            Threat::ContainerEscape,
            Threat::MaliciousImage,
            Threat::PrivilegeAbuse,
            Threat::Misconfiguration,
        ]
        .map(name);
        allowed("threat", threat, &names)?;
    }
    if let Some(stage) = &filter.stage {
        let names = [
            Stage::Build,
            Stage::Store,
            Stage::Deploy,
            Stage::Run,
            Stage::Update,
        ]
        .map(name);
        allowed("stage", stage, &names)?;
    }
    if let Some(layer) = &filter.layer {
        let names = [
            Layer::Application,
            Layer::Image,
            Layer::Runtime,
            Layer::Orchestration,
            Layer::Host,
        ]
        .map(name);
        allowed("layer", layer, &names)?;
    }
    if let Some(source) = &filter.source {
        allowed("source", source, &["docker".into(), "kubernetes".into()])?;
    }
    let start = match &filter.after {
        Some(after) => {
            let meta = catalog::find(after).ok_or_else(|| {
                WebError::BadRequest(format!("after: there is no check {after:?}"))
            })?;
            meta.check as usize + 1
        }
        None => 0,
    };
    let limit = filter
        .limit
        .unwrap_or(CATALOG.len())
        .clamp(1, CATALOG.len());
    let mut matching = CATALOG[start..].iter().filter(|meta| {
        filter
            .severity
            .as_deref()
            .is_none_or(|s| name(meta.severity) == s)
            && filter
                .threat
                .as_deref()
                .is_none_or(|t| name(meta.threat) == t)
            && filter
                .stage
                .as_deref()
                .is_none_or(|s| meta.stages.iter().any(|stage| name(stage) == s))
            && filter
                .layer
                .as_deref()
                .is_none_or(|l| meta.layers.iter().any(|layer| name(layer) == l))
            && filter.source.as_deref().is_none_or(|s| match s {
                "docker" => meta.sources.docker(),
                _ => meta.sources.kubernetes(),
            })
    });
    let checks: Vec<CheckView> = matching.by_ref().take(limit).map(CheckView::from).collect();
    let next = match (checks.last(), matching.next()) {
        (Some(last), Some(_)) => Some(last.meta.id),
        _ => None,
    };
    Ok(Json(CheckList {
        pss_policy_version: pss::POLICY_VERSION,
        checks,
        next,
    }))
}

/// One check by id (`priv.privileged`).
async fn get_check(Path(id): Path<String>) -> Result<Json<CheckView>, WebError> {
    catalog::find(&id)
        .map(|meta| Json(CheckView::from(meta)))
        .ok_or_else(|| WebError::NotFound(format!("there is no check {id:?}")))
}

/// A check as the console shows it: every enum spelled out.
pub struct CheckRow {
    pub meta: &'static CheckMeta,
    pub severity: &'static str,
    pub threat: &'static str,
    pub stages: String,
    pub layers: String,
    pub sources: &'static str,
    pub scope: String,
}

impl From<&'static CheckMeta> for CheckRow {
    fn from(meta: &'static CheckMeta) -> Self {
        let join = |names: Vec<String>| names.join(", ");
        Self {
            meta,
            severity: meta.severity.as_str(),
            threat: meta.threat.label(),
            stages: join(meta.stages.iter().map(name).collect()),
            layers: join(meta.layers.iter().map(name).collect()),
            sources: match meta.sources {
                catalog::Sources::Both => "Docker and Kubernetes",
                catalog::Sources::Docker => "Docker",
                catalog::Sources::Kubernetes => "Kubernetes",
            },
            scope: name(meta.scope),
        }
    }
}

/// The check catalog: every check with its severity, threat, stage and layer.
#[derive(Template)]
#[template(path = "checks.html")]
pub struct ChecksPage {
    ctx: PageContext,
    checks: Vec<CheckRow>,
    pss_policy_version: &'static str,
}

async fn get_checks_page(ctx: PageContext) -> Result<Html<String>, WebError> {
    let page = ChecksPage {
        ctx: ctx.titled("Checks").active("/checks"),
        checks: CATALOG.iter().map(CheckRow::from).collect(),
        pss_policy_version: pss::POLICY_VERSION,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

/// One check explained: why it matters, how to fix it on each source, where it comes from.
#[derive(Template)]
#[template(path = "check.html")]
pub struct CheckPage {
    ctx: PageContext,
    check: CheckRow,
}

async fn get_check_page(
    ctx: PageContext,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let meta = catalog::find(&id)
        .ok_or_else(|| WebError::NotFound(format!("there is no check {id:?}")))?;
    let page = CheckPage {
        ctx: ctx
            .titled(format!("{} · Checks", meta.id))
            .active("/checks"),
        check: CheckRow::from(meta),
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}
