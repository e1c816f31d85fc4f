//! Reviews: ask for one (everything or one team), follow its progress, download its exports
//! (streamed from the stored file, with its sha256), and sign it off.
//!
//! API: `POST /api/v1/reviews` (responder), `GET /api/v1/reviews`, `GET /api/v1/reviews/{id}`,
//! `GET /api/v1/reviews/{id}/export?format=csv|json|xlsx|html` (viewer),
//! `POST /api/v1/reviews/{id}/signoffs` (a member of the review's team, or an admin).
//! Console: `/reviews` (list, form, progress, downloads) and `/reviews/{id}` (summary, charts,
//! tables, sign-off). Asking for a review (`review.generate`) and signing off (`review.signoff`,
//! refusals included) are audited.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::access::{RequireRole, Responder, RoutePolicy, Viewer};
use super::json::ApiJson;
use super::page::PageContext;
use super::{AppState, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, PrincipalKind, Role};
use crate::review::render::{self, Meta};
use crate::review::store::{self, Export, NewReview, Review, SignOff};
use crate::review::{worker, Format, ReviewError, TABLES};

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/reviews", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/reviews", Role::Responder),
    RoutePolicy::role(Method::GET, "/api/v1/reviews/{id}", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/reviews/{id}/export", Role::Viewer),
    // Team membership is checked by the handler.
    RoutePolicy::role(Method::POST, "/api/v1/reviews/{id}/signoffs", Role::Viewer),
    RoutePolicy::role(Method::GET, "/reviews", Role::Viewer),
    RoutePolicy::role(Method::POST, "/reviews", Role::Responder),
    RoutePolicy::role(Method::GET, "/reviews/{id}", Role::Viewer),
    RoutePolicy::role(Method::POST, "/reviews/{id}/signoff", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reviews", get(list_reviews).post(create_review))
        .route("/api/v1/reviews/{id}", get(get_review))
        .route("/api/v1/reviews/{id}/export", get(export_review))
        .route("/api/v1/reviews/{id}/signoffs", post(sign_off_review))
        .route("/reviews", get(reviews_page).post(create_review_form))
        .route("/reviews/{id}", get(review_page))
        .route("/reviews/{id}/signoff", post(sign_off_form))
}

impl From<ReviewError> for WebError {
    fn from(err: ReviewError) -> Self {
        match err {
            ReviewError::NotFound => Self::NotFound(err.to_string()),
            ReviewError::UnknownTeam(_) | ReviewError::Invalid(_) => {
                Self::Unprocessable(err.to_string())
            }
            ReviewError::NotReady(_) => Self::Conflict(err.to_string()),
            ReviewError::Forbidden(message) => Self::Forbidden(message),
            ReviewError::Database(err) => err.into(),
            other => Self::Internal(other.into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateReview {
    /// A team name; absent or empty for the whole estate.
    pub team: Option<String>,
    /// Formats to render right away (default: all four).
    #[serde(default)]
    pub formats: Vec<String>,
    pub idempotency_key: Option<String>,
}

/// A review with its stored exports and sign-offs, as the API shows it.
#[derive(Debug, Serialize)]
pub struct ReviewView {
    #[serde(flatten)]
    pub review: Review,
    pub exports: Vec<Export>,
    pub signoffs: Vec<SignOff>,
}

/// Writes the audit row of a review action, whatever its outcome (a refusal is `denied`).
async fn audit_outcome<T>(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    result: &Result<T, ReviewError>,
    details: serde_json::Value,
) -> Result<(), WebError> {
    let (outcome, details) = match result {
        Ok(_) => (Outcome::Success, details),
        Err(err) => (
            if matches!(err, ReviewError::Forbidden(_)) {
                Outcome::Denied
            } else {
                Outcome::Failure
            },
            serde_json::json!({"request": details, "error": err.to_string()}),
        ),
    };
    audit::record(
        &state.pool,
        principal,
        action,
        target,
        outcome,
        principal.client_addr,
        details,
    )
    .await?;
    Ok(())
}

async fn request_review(
    state: &AppState,
    principal: &Principal,
    request: CreateReview,
) -> Result<(Review, bool), WebError> {
    let formats = request
        .formats
        .iter()
        .map(|f| f.parse::<Format>())
        .collect::<Result<Vec<_>, _>>()?;
    let details = serde_json::json!({"team": request.team, "formats": request.formats});
    let mut conn = state.pool.acquire().await?;
    let result = store::request(
        &mut conn,
        NewReview {
            team: request.team,
            formats,
            trigger: "manual",
            schedule_key: None,
            requested_by: principal.display_name(),
            idempotency_key: request.idempotency_key.filter(|k| !k.trim().is_empty()),
        },
    )
    .await;
    let target = match &result {
        Ok((review, _)) => format!("review {}", review.id),
        Err(_) => "review (new)".to_string(),
    };
    let details = match &result {
        Ok((_, created)) => serde_json::json!({"request": details, "repeated": !created}),
        Err(_) => details,
    };
    audit_outcome(
        state,
        principal,
        "review.generate",
        &target,
        &result,
        details,
    )
    .await?;
    Ok(result?)
}

async fn create_review(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    headers: HeaderMap,
    payload: Result<Json<CreateReview>, JsonRejection>,
) -> Result<Response, WebError> {
    let mut request = payload
        .map(|Json(value)| value)
        .map_err(|err| WebError::BadRequest(err.body_text()))?;
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        request.idempotency_key = Some(key.to_string());
    }
    let (review, created) = request_review(&state, &principal, request).await?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(review)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    /// The id of the last review of the previous page (reviews come newest first).
    pub after: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<i64>,
}

async fn list_reviews(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<ReviewList>, WebError> {
    let Query(query) = query.map_err(|err| WebError::BadRequest(err.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(WebError::BadRequest(
            "limit must be a whole number from 1 to 500".into(),
        ));
    }
    let mut reviews = store::list(&state.pool, limit + 1, query.after).await?;
    let next = if reviews.len() as i64 > limit {
        reviews.truncate(limit as usize);
        reviews.last().map(|r| r.id)
    } else {
        None
    };
    let ids: Vec<i64> = reviews.iter().map(|r| r.id).collect();
    let mut exports = store::exports_of(&state.pool, &ids).await?;
    let reviews = reviews
        .into_iter()
        .map(|review| {
            let (mine, rest): (Vec<Export>, Vec<Export>) =
                exports.drain(..).partition(|e| e.review_id == review.id);
            exports = rest;
            ReviewView {
                review,
                exports: mine,
                signoffs: Vec::new(),
            }
        })
        .collect();
    Ok(ApiJson(ReviewList { reviews, next }))
}

async fn get_review(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<ApiJson<ReviewView>, WebError> {
    let review = store::get(&state.pool, id).await?;
    Ok(ApiJson(ReviewView {
        exports: store::exports(&state.pool, id).await?,
        signoffs: store::signoffs(&state.pool, id).await?,
        review,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    pub format: Option<String>,
}

/// A download name: `harbormaster-review-12-payments-2026-11-30.xlsx`.
fn download_name(review: &Review, format: Format) -> String {
    let scope: String = review
        .scope()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let date = review
        .taken_at
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    format!(
        "harbormaster-review-{}-{}-{date}.{}",
        review.id,
        scope.trim_matches('-'),
        format.extension()
    )
}

async fn export_review(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, WebError> {
    let format: Format = query
        .format
        .as_deref()
        .ok_or_else(|| WebError::BadRequest("format is missing: csv, json, xlsx or html".into()))?
        .parse()?;
    let review = store::get(&state.pool, id).await?;
    let (path, export) = worker::export_file(&state.pool, &state.config, &review, format).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| WebError::Internal(anyhow::anyhow!("opening {}: {err}", path.display())))?;
    // Streamed in chunks: a large export is never held in memory.
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buffer.truncate(read);
        Ok(Some((Bytes::from(buffer), file)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        download_name(&review, format)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&export.sha256) {
        headers.insert("x-content-sha256", value);
    }
    if matches!(format, Format::Csv | Format::Xlsx) {
        // Already compressed: the compression layer leaves it alone.
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(export.bytes));
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct SignOffRequest {
    #[serde(default)]
    pub comment: String,
}

/// Records a sign-off (or its refusal) in the audit log and returns it.
async fn sign_off(
    state: &AppState,
    principal: &Principal,
    id: i64,
    comment: &str,
) -> Result<SignOff, WebError> {
    // An unknown review is a 404 whoever asks.
    store::get(&state.pool, id).await?;
    let result = if principal.kind != PrincipalKind::Session {
        Err(ReviewError::Forbidden(
            "a review is signed off by a person signed in to the console, not by a token".into(),
        ))
    } else {
        let mut conn = state.pool.acquire().await?;
        store::sign_off(
            &mut conn,
            id,
            principal.id,
            &principal.name,
            principal.can(Role::Admin),
            comment,
        )
        .await
    };
    audit_outcome(
        state,
        principal,
        "review.signoff",
        &format!("review {id}"),
        &result,
        serde_json::json!({"comment": comment}),
    )
    .await?;
    Ok(result?)
}

async fn sign_off_review(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Viewer>,
    Path(id): Path<i64>,
    payload: Result<Json<SignOffRequest>, JsonRejection>,
) -> Result<Response, WebError> {
    let request = payload
        .map(|Json(value)| value)
        .map_err(|err| WebError::BadRequest(err.body_text()))?;
    let signed = sign_off(&state, &principal, id, request.comment.trim()).await?;
    Ok((StatusCode::CREATED, ApiJson(signed)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Console pages.

struct ExportLink {
    format: &'static str,
    label: String,
    sha256: String,
    size: String,
}

struct ReviewRow {
    id: i64,
    scope: String,
    trigger: String,
    requested_by: String,
    status: String,
    phase: String,
    progress: i32,
    created: String,
    taken: String,
    error: String,
    exports: Vec<ExportLink>,
}

fn size(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn export_links(exports: &[Export]) -> Vec<ExportLink> {
    exports
        .iter()
        .filter_map(|e| {
            let format: Format = e.format.parse().ok()?;
            Some(ExportLink {
                format: format.as_str(),
                label: match format {
                    Format::Csv => "CSV (zip)".into(),
                    other => other.as_str().to_uppercase(),
                },
                sha256: e.sha256.clone(),
                size: size(e.bytes),
            })
        })
        .collect()
}

fn row_of(ctx: &PageContext, review: &Review, exports: &[Export]) -> ReviewRow {
    ReviewRow {
        id: review.id,
        scope: review.scope(),
        trigger: review.trigger.clone(),
        requested_by: review.requested_by.clone(),
        status: review.status.clone(),
        phase: review.phase.clone(),
        progress: review.progress_percent,
        created: ctx.time(&review.created_at),
        taken: review
            .taken_at
            .as_ref()
            .map(|t| ctx.time(t))
            .unwrap_or_default(),
        error: review.error.clone().unwrap_or_default(),
        exports: export_links(exports),
    }
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct ReviewsPage {
    ctx: PageContext,
    reviews: Vec<ReviewRow>,
    teams: Vec<String>,
    can_generate: bool,
    in_progress: bool,
    next: Option<i64>,
}

async fn reviews_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    const PAGE: i64 = 25;
    let mut reviews = store::list(&state.pool, PAGE + 1, query.after).await?;
    let next = if reviews.len() as i64 > PAGE {
        reviews.truncate(PAGE as usize);
        reviews.last().map(|r| r.id)
    } else {
        None
    };
    let ids: Vec<i64> = reviews.iter().map(|r| r.id).collect();
    let exports = store::exports_of(&state.pool, &ids).await?;
    let rows = reviews
        .iter()
        .map(|review| {
            let mine: Vec<Export> = exports
                .iter()
                .filter(|e| e.review_id == review.id)
                .cloned()
                .collect();
            row_of(&ctx, review, &mine)
        })
        .collect();
    render_page(&ReviewsPage {
        can_generate: ctx.can(Role::Responder),
        in_progress: reviews.iter().any(Review::in_progress),
        teams: store::team_names(&state.pool).await?,
        ctx: ctx.titled("Reviews").active("/reviews"),
        reviews: rows,
        next,
    })
}

#[derive(Debug, Default, Deserialize)]
struct GenerateForm {
    #[serde(default)]
    team: String,
    idempotency_key: Option<String>,
}

async fn create_review_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Responder>,
    Form(form): Form<GenerateForm>,
) -> Result<Redirect, WebError> {
    let (review, _) = request_review(
        &state,
        &principal,
        CreateReview {
            team: Some(form.team).filter(|t| !t.trim().is_empty()),
            formats: Vec::new(),
            idempotency_key: form.idempotency_key,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/reviews/{}", review.id)))
}

struct TableView {
    name: &'static str,
    title: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<String>>,
    total: i64,
}

struct SignOffRow {
    user: String,
    at: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    ctx: PageContext,
    review: ReviewRow,
    in_progress: bool,
    succeeded: bool,
    previous: Option<i64>,
    period_start: String,
    totals: Vec<(String, String)>,
    /// Server-drawn SVG charts; every label in them is escaped by [`render::severity_chart`].
    charts: Vec<String>,
    tables: Vec<TableView>,
    signoffs: Vec<SignOffRow>,
    can_sign_off: bool,
    signed_by_me: bool,
}

/// Rows of a table shown on the console page; every format holds them all.
const PAGE_ROWS_LARGE: i64 = 20;
const PAGE_ROWS_SMALL: i64 = 200;

async fn review_page(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Viewer>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let review = store::get(&state.pool, id).await?;
    let exports = store::exports(&state.pool, id).await?;
    let signoffs = store::signoffs(&state.pool, id).await?;
    let succeeded = review.status == "succeeded";
    let meta = Meta::of(&review);
    let mut charts = Vec::new();
    let mut tables = Vec::new();
    if succeeded {
        for spec in TABLES {
            let limit = if spec.large {
                PAGE_ROWS_LARGE
            } else {
                PAGE_ROWS_SMALL
            };
            let rows = store::rows(&state.pool, id, spec.name, limit).await?;
            let chart = match spec.name {
                "posture_by_team" => Some(("Open findings by team (not waived)", 4)),
                "posture_by_layer" => Some(("Open findings by layer (not waived)", 3)),
                _ => None,
            };
            if let Some((title, first)) = chart {
                let bars: Vec<(String, [i64; 5])> = rows
                    .iter()
                    .map(|cells| render::severity_bar(cells, first))
                    .collect();
                charts.push(render::severity_chart(title, &bars));
            }
            tables.push(TableView {
                name: spec.name,
                title: spec.title,
                columns: spec.columns,
                rows: rows
                    .iter()
                    .map(|cells| {
                        cells
                            .iter()
                            .map(|c| render::cell_text(c).into_owned())
                            .collect()
                    })
                    .collect(),
                total: meta.rows(spec.name),
            });
        }
    }
    let can_sign_off = succeeded
        && principal.kind == PrincipalKind::Session
        && store::may_sign_off(
            &state.pool,
            &review,
            principal.id,
            principal.can(Role::Admin),
        )
        .await?;
    let signed_by_me = signoffs.iter().any(|s| s.user_name == principal.name);
    render_page(&ReviewPage {
        review: row_of(&ctx, &review, &exports),
        in_progress: review.in_progress(),
        succeeded,
        previous: review.previous_review_id,
        period_start: meta.period_start.clone().unwrap_or_default(),
        totals: meta
            .totals()
            .into_iter()
            .map(|(key, value)| {
                (
                    key.replace('_', " "),
                    render::cell_text(&value).into_owned(),
                )
            })
            .collect(),
        charts,
        tables,
        signoffs: signoffs
            .iter()
            .map(|s| SignOffRow {
                user: s.user_name.clone(),
                at: ctx.time(&s.signed_at),
                comment: s.comment.clone(),
            })
            .collect(),
        can_sign_off,
        signed_by_me,
        ctx: ctx.titled(format!("Review {id}")).active("/reviews"),
    })
}

#[derive(Debug, Default, Deserialize)]
struct SignOffForm {
    #[serde(default)]
    comment: String,
}

async fn sign_off_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Viewer>,
    Path(id): Path<i64>,
    Form(form): Form<SignOffForm>,
) -> Result<Redirect, WebError> {
    sign_off(&state, &principal, id, form.comment.trim()).await?;
    Ok(Redirect::to(&format!("/reviews/{id}")))
}

fn render_page(template: &impl Template) -> Result<Html<String>, WebError> {
    Ok(Html(template.render().map_err(anyhow::Error::from)?))
}
