//! The build and store stages: `POST /api/v1/events/build` (a CI build report with an optional
//! Trivy scan), `POST /api/v1/events/registry` (a Docker Distribution notification envelope),
//! and the image inventory: `GET /api/v1/images` (filters `registry`, `q`, `critical`,
//! `running`; keyset pagination `?limit=&after=<digest>`), `GET /api/v1/images/{digest}`, and
//! the pages `/images` and `/images/{digest}`.
//!
//! The event endpoints read their body themselves, each with its own limit (a build report with
//! its scan may be far larger than other requests): over it is a 413 naming the setting; a
//! malformed document a 400 naming the field. A request is stored whole or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde_json::{json, Value};

use super::access::{Ci, RequireRole};
use super::json::ApiJson;
use super::page::{console_filters, parse_limit, query_string, PageContext};
use super::{AppState, RoutePolicy, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::Role;
use crate::config::Config;
use crate::posture::catalog::CheckMeta;
use crate::supply::query::{image_detail, query_images, ImageDetail, ImageFilter, ImagePage};
use crate::supply::{self, is_digest, store};

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::POST, "/api/v1/events/build", Role::Ci),
    RoutePolicy::role(Method::POST, "/api/v1/events/registry", Role::Ci),
    RoutePolicy::role(Method::GET, "/api/v1/images", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/images/{digest}", Role::Viewer),
    RoutePolicy::role(Method::GET, "/images", Role::Viewer),
    RoutePolicy::role(Method::GET, "/images/{digest}", Role::Viewer),
];

/// The event endpoints: mounted outside the general body limit (they apply their own).
pub fn events_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/build", post(post_build_event))
        .route("/api/v1/events/registry", post(post_registry_event))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/images", get(list_images))
        .route("/api/v1/images/{digest}", get(get_image))
        .route("/images", get(get_images_page))
        .route("/images/{digest}", get(get_image_page))
}

/// The body limit of a path and the setting that sets it.
fn body_limit_of(config: &Config, path: &str) -> (usize, &'static str) {
    if path == "/api/v1/events/build" {
        (
            config.images.build_report_limit,
            "HARBORMASTER_BUILD_REPORT_LIMIT_BYTES",
        )
    } else {
        (config.body_limit, "HARBORMASTER_BODY_LIMIT_BYTES")
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuses, before authentication, a request whose declared body is larger than its route
/// accepts (the build-report endpoint has a limit of its own). Bodies without a declared length
/// are limited while they are read.
pub async fn refuse_declared_oversize(
    State(config): State<Arc<Config>>,
    request: Request,
    next: Next,
) -> Response {
    let (limit, setting) = body_limit_of(&config, request.uri().path());
    if declared_length(request.headers()).is_some_and(|n| n > limit as u64) {
        return WebError::PayloadTooLarge(format!(
            "the request body is larger than {limit} bytes (the limit is {setting})"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Reads the whole body of a request to `path`, within the path's limit; more is a 413 naming
/// the setting.
async fn read_body(
    config: &Config,
    path: &str,
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<axum::body::Bytes, WebError> {
    let (limit, setting) = body_limit_of(config, path);
    let too_large = || {
        WebError::PayloadTooLarge(format!(
            "the {what} is larger than {limit} bytes (the limit is {setting})"
        ))
    };
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(WebError::BadRequest(format!("the {what} is empty")));
    }
    Ok(bytes)
}

async fn post_build_event(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Ci>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, ApiJson<Value>), WebError> {
    let bytes = read_body(
        &state.config,
        "/api/v1/events/build",
        &headers,
        body,
        "build report",
    )
    .await?;
    let report = supply::parse_build_report(&bytes, Utc::now())
        .map_err(|err| WebError::BadRequest(err.0))?;
    let settings = store::control_settings(&state.config);
    let mut tx = state.pool.begin().await?;
    let recorded = store::record_build(&mut tx, &report, &principal.name).await?;
    let workloads = store::workloads_running(&mut tx, std::slice::from_ref(&report.digest)).await?;
    store::evaluate_workloads(&mut tx, &workloads, &settings, Utc::now()).await?;
    let counts = report.scan.as_ref().map(|s| s.counts);
    audit::record(
        &mut *tx,
        &principal,
        "build.report",
        &format!("image {}", report.digest),
        Outcome::Success,
        principal.client_addr,
        json!({
            "build_report": recorded.id,
            "created": recorded.created,
            "pipeline_run": report.pipeline_run,
            "scanned": counts.is_some(),
            "critical": counts.map(|c| c.critical),
        }),
    )
    .await?;
    tx.commit().await?;
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        ApiJson(json!({
            "id": recorded.id,
            "created": recorded.created,
            "digest": report.digest,
            "scan": report.scan,
            "workloads_judged": workloads.len(),
            "image": format!("/api/v1/images/{}", report.digest),
        })),
    ))
}

async fn post_registry_event(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Ci>,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson<Value>, WebError> {
    let bytes = read_body(
        &state.config,
        "/api/v1/events/registry",
        &headers,
        body,
        "registry notification",
    )
    .await?;
    let envelope = supply::registry::parse_envelope(&bytes, Utc::now())
        .map_err(|err| WebError::BadRequest(err.0))?;
    let settings = store::control_settings(&state.config);
    let mut tx = state.pool.begin().await?;
    let outcome = store::record_registry_events(&mut tx, &envelope, &principal.name).await?;
    let workloads = store::workloads_running(&mut tx, &outcome.digests).await?;
    store::evaluate_workloads(&mut tx, &workloads, &settings, Utc::now()).await?;
    let registries: Vec<&str> = envelope
        .events
        .iter()
        .map(|e| e.registry.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    audit::record(
        &mut *tx,
        &principal,
        "registry.notify",
        &format!("registry {}", registries.join(", ")),
        Outcome::Success,
        principal.client_addr,
        json!({
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "skipped": envelope.skipped,
            "digests": outcome.digests,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiJson(json!({
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "skipped": envelope.skipped,
        "digests": outcome.digests,
        "workloads_judged": workloads.len(),
    })))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;
/// How many images one page of the console list shows.
const PAGE_SIZE: i64 = 50;

fn yes_no(name: &str, value: &str) -> Result<bool, WebError> {
    match value.trim() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(WebError::BadRequest(format!(
            "{name} must be true or false, not '{other}'"
        ))),
    }
}

impl ImageFilter {
    /// Validates query parameters; anything unknown or malformed is a 400 naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = ImageFilter {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (name, value) in params {
            let given = || Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match name.as_str() {
                "registry" => filter.registry = given(),
                "q" => filter.q = given(),
                "critical" => filter.critical = Some(yes_no("critical", value)?),
                "running" => filter.running = Some(yes_no("running", value)?),
                "limit" => filter.limit = parse_limit(value, MAX_LIMIT)?,
                "after" => {
                    if !is_digest(value.trim()) {
                        return Err(WebError::BadRequest(
                            "after must be an image digest (the previous page's next)".into(),
                        ));
                    }
                    filter.after = given();
                }
                other => {
                    return Err(WebError::BadRequest(format!(
                        "unknown parameter '{other}'; expected registry, q, critical, running, limit or after"
                    )))
                }
            }
        }
        Ok(filter)
    }
}

async fn list_images(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<ImagePage>, WebError> {
    let filter = ImageFilter::parse(&params)?;
    Ok(ApiJson(query_images(&state.pool, &filter).await?))
}

async fn detail(state: &AppState, digest: &str) -> Result<ImageDetail, WebError> {
    if !is_digest(digest) {
        return Err(WebError::BadRequest(format!(
            "'{digest}' is not an image digest (sha256:<64 hex digits>)"
        )));
    }
    let settings = store::control_settings(&state.config);
    image_detail(&state.pool, digest, &settings)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("there is no image {digest}")))
}

async fn get_image(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<ApiJson<ImageDetail>, WebError> {
    Ok(ApiJson(detail(&state, &digest).await?))
}

/// The image list: filters (a GET form) and one page with a link to the next.
#[derive(Template)]
#[template(path = "images.html")]
pub struct ImagesPage {
    ctx: PageContext,
    page: ImagePage,
    registries: Vec<String>,
    registry: String,
    q: String,
    critical: String,
    running: String,
    filtered: bool,
    next_href: Option<String>,
}

async fn get_images_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let params = console_filters(params, "/api/v1/images")?;
    let mut filter = ImageFilter::parse(&params)?;
    filter.limit = PAGE_SIZE;
    let page = query_images(&state.pool, &filter).await?;
    let given = |name: &str| params.get(name).cloned().unwrap_or_default();
    let filters: Vec<(&str, String)> = ["registry", "q", "critical", "running"]
        .into_iter()
        .filter_map(|name| params.get(name).map(|value| (name, value.clone())))
        .collect();
    let next_href = page.next.as_ref().map(|digest| {
        let mut pairs = filters.clone();
        pairs.push(("after", digest.clone()));
        format!("/images{}", query_string(&pairs))
    });
    let view = ImagesPage {
        ctx: ctx.titled("Images").active("/images"),
        page,
        registries: supply::query::registries(&state.pool).await?,
        registry: given("registry"),
        q: given("q"),
        critical: given("critical"),
        running: given("running"),
        filtered: !filters.is_empty(),
        next_href,
    };
    Ok(Html(view.render().map_err(anyhow::Error::from)?))
}

/// One control's result as shown.
pub struct ControlRow {
    pub meta: &'static CheckMeta,
    pub stage: String,
    pub outcome: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub evidence: Vec<(String, String)>,
    pub per_container: bool,
}

/// One image: references, where it runs, build record with scan, registries, controls.
#[derive(Template)]
#[template(path = "image.html")]
pub struct ImageDetailPage {
    ctx: PageContext,
    detail: ImageDetail,
    controls: Vec<ControlRow>,
    short: String,
}

async fn get_image_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(digest): Path<String>,
) -> Result<Html<String>, WebError> {
    let detail = detail(&state, &digest).await?;
    let controls = detail
        .controls
        .iter()
        .map(|r| ControlRow {
            meta: r.check.meta(),
            stage: serde_json::to_value(r.check.meta().stage())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            outcome: r.outcome.as_str(),
            severity: r.severity.as_str(),
            message: r.message.clone(),
            evidence: r
                .evidence
                .iter()
                .map(|e| {
                    let value = match &e.value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (e.pointer.clone(), value)
                })
                .collect(),
            per_container: r.per_container,
        })
        .collect();
    let short: String = digest.chars().take(19).collect();
    let page = ImageDetailPage {
        ctx: ctx.titled(format!("{short} · Images")).active("/images"),
        detail,
        controls,
        short,
    };
    Ok(Html(page.render().map_err(anyhow::Error::from)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::page::params;

    #[test]
    fn image_filters_are_parsed_and_bad_values_refused() {
        let filter = ImageFilter::parse(&params(&[
            ("registry", "reg.example"),
            ("critical", "true"),
            ("running", "no"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(filter.critical, Some(true));
        assert_eq!(filter.running, Some(false));
        assert_eq!(filter.limit, 5);
        for bad in [
            ("critical", "maybe"),
            ("limit", "0"),
            ("after", "x"),
            ("colour", "red"),
        ] {
            assert!(
                ImageFilter::parse(&params(&[bad])).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
