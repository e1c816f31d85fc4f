//! The check catalog over the API: `GET /api/v1/checks` lists every check with all its
//! metadata (severity, threat, stage, owning layer, remediation per source, references);
//! `GET /api/v1/checks/{id}` returns one.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{AppState, WebError};
use crate::posture::catalog::{self, CheckMeta, Layer, Stage, CATALOG};
use crate::posture::pss;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/checks/{id}", get(get_check))
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
}

/// The whole catalog, in catalog order.
async fn list_checks() -> Json<CheckList> {
    Json(CheckList {
        pss_policy_version: pss::POLICY_VERSION,
        checks: CATALOG.iter().map(CheckView::from).collect(),
    })
}

/// One check by id (`priv.privileged`).
async fn get_check(Path(id): Path<String>) -> Result<Json<CheckView>, WebError> {
    catalog::find(&id)
        .map(|meta| Json(CheckView::from(meta)))
        .ok_or_else(|| WebError::NotFound(format!("there is no check {id:?}")))
}
