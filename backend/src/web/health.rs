//! Liveness and readiness for orchestrators and load balancers.

use axum::extract::State;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{AppState, RoutePolicy};
use crate::db;

/// Orchestrators and load balancers probe these without credentials.
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::public(Method::GET, "/healthz"),
    RoutePolicy::public(Method::GET, "/readyz"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(get_health))
        .route("/readyz", get(get_readiness))
}

/// The process is alive and serving.
async fn get_health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The database answers and every migration is applied; 503 with the reason otherwise.
async fn get_readiness(State(state): State<AppState>) -> impl IntoResponse {
    match db::readiness(&state.pool).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        ),
    }
}
