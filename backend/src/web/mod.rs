//! The console and the JSON API: the router, the shared state and the layers every response
//! goes through. Each area owns its routes in its own module (`fn router() -> Router<AppState>`);
//! this module merges them and adds the layers once.

pub mod access;
pub mod assets;
pub mod auth;
pub mod checks;
pub mod error;
pub mod events;
pub mod findings;
pub mod health;
pub mod images;
pub mod incidents;
pub mod json;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod overview;
pub mod ownership;
pub mod page;
pub mod params;
pub mod recent;
pub mod reviews;
pub mod sources;
pub mod workloads;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
pub use access::{RequireRole, RoutePolicy};
pub use error::WebError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    /// Fires when the server shuts down; long-running handlers (streams) stop on it.
    pub shutdown: CancellationToken,
    pub started_at: Instant,
    /// Posture summaries counted recently (see [`findings::SummaryCache`]).
    pub summaries: Arc<findings::SummaryCache>,
    /// The overview's counts per lifecycle stage, computed a moment ago.
    pub stage_counts: Arc<recent::Recent<Vec<crate::inventory::query::StageCount>>>,
}

impl AppState {
    pub fn new(config: Arc<Config>, pool: PgPool, shutdown: CancellationToken) -> Self {
        Self {
            pool,
            config,
            metrics: Arc::new(metrics::Metrics::default()),
            shutdown,
            started_at: Instant::now(),
            summaries: Arc::new(findings::SummaryCache::default()),
            stage_counts: Arc::new(recent::Recent::default()),
        }
    }
}

/// The Content-Security-Policy of every response: no inline script or style, nothing from
/// elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The route table: who may call each route of every area (see [`crate::auth`]). Every route
/// belongs here; a mutating route that is missing is refused.
pub fn route_policies() -> Vec<RoutePolicy> {
    [
        health::POLICIES,
        incidents::POLICIES,
        incidents::PAGE_POLICIES,
        metrics::POLICIES,
        assets::POLICIES,
        overview::POLICIES,
        auth::POLICIES,
        checks::POLICIES,
        sources::POLICIES,
        workloads::POLICIES,
        findings::POLICIES,
        events::POLICIES,
        notifications::POLICIES,
        ownership::POLICIES,
        images::POLICIES,
        reviews::POLICIES,
        openapi::POLICIES,
    ]
    .concat()
}

/// The whole application: every area's routes, the fallback and the layers. `extra` routes
/// (tests) are merged beside the areas' and `extra_policies` added to the route table.
pub fn router(
    state: AppState,
    extra: Option<Router<AppState>>,
    extra_policies: Vec<RoutePolicy>,
) -> Router {
    let mut routes = Router::new()
        .merge(health::router())
        .merge(incidents::router())
        .merge(incidents::page_router())
        .merge(metrics::router())
        .merge(assets::router())
        .merge(checks::router())
        .merge(overview::router())
        .merge(sources::router())
        .merge(workloads::router())
        .merge(auth::router())
        .merge(findings::router())
        .merge(events::router())
        .merge(notifications::router())
        .merge(ownership::router())
        .merge(images::router())
        .merge(reviews::router())
        .merge(openapi::router());
    if let Some(extra) = extra {
        routes = routes.merge(extra);
    }
    let body_limit = state.config.body_limit;
    let largest_body = body_limit.max(state.config.images.build_report_limit);
    let config = state.config.clone();
    let timeout = state.config.request_timeout;
    // Bodies are limited per route: the event endpoints read theirs with limits of their own
    // (a build report with its scan is far larger than any form), every other route takes at
    // most `body_limit`.
    let routes = routes
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(images::events_router());

    // Layers that must see the matched route run per route (`Router::layer`); the rest wrap the
    // whole service, the fallback included.
    let routes = routes
        .fallback(error::not_found)
        // Authentication sees the matched route (the route table is keyed by it).
        .layer(axum::middleware::from_fn_with_state(
            access::AccessState {
                app: state.clone(),
                table: Arc::new(access::RouteTable::new(
                    [route_policies(), extra_policies].concat(),
                )),
            },
            access::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("unmatched");
                tracing::info_span!("request", method = %request.method(), route)
            }),
        )
        .with_state(state);

    // `Router::layer` wraps everything added so far; the last call is the outermost layer.
    routes
        .layer(CatchPanicLayer::custom(error::panic_response))
        // Before anything else, a body declared larger than its route accepts is refused.
        .layer(axum::middleware::from_fn_with_state(
            config,
            images::refuse_declared_oversize,
        ))
        .layer(RequestBodyLimitLayer::new(largest_body))
        .layer(DefaultBodyLimit::max(largest_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(error::render_errors))
        .layer(CompressionLayer::new())
        .layer(security_header(
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ))
        .layer(security_header(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .layer(security_header(
            header::REFERRER_POLICY,
            "strict-origin-when-cross-origin",
        ))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}
