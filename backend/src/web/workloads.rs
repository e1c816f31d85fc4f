//! `GET /api/v1/workloads` (filters `source`, `namespace`, `kind`, `stage`, `q`; keyset
//! pagination `?limit=&after=` with a `next` cursor, `?before=` with a `previous` one) and `GET /api/v1/workloads/{id}` (the
//! workload with its instances, images and lifecycle history). Source-agnostic: Docker and
//! Kubernetes workloads share the shapes.
//!
//! Unknown parameters and bad values are refused with 400, never ignored. `team` and `severity`
//! are refused until ownership and posture exist.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Router;

use super::json::ApiJson;
use super::{AppState, WebError};
pub use crate::inventory::query::{
    query_workloads, workload_detail, ImageView, InstanceView, WorkloadDetail, WorkloadFilter,
    WorkloadPage, WorkloadSummary, KINDS,
};
use crate::lifecycle::Stage;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workloads", get(list_workloads))
        .route("/api/v1/workloads/{id}", get(get_workload))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

fn parse_id(name: &str, value: &str) -> Result<i64, WebError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| WebError::BadRequest(format!("{name} must be a non-negative whole number")))
}

impl WorkloadFilter {
    /// Validates query parameters; anything unknown or malformed is a 400 naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, WebError> {
        let mut filter = WorkloadFilter {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (name, value) in params {
            let given = || Some(value.clone()).filter(|v| !v.is_empty());
            match name.as_str() {
                "source" => filter.source = Some(parse_id("source", value)?),
                "namespace" => filter.namespace = Some(value.clone()),
                "kind" => {
                    if !KINDS.contains(&value.as_str()) {
                        return Err(WebError::BadRequest(format!(
                            "kind '{value}' is not one of {}",
                            KINDS.join(", ")
                        )));
                    }
                    filter.kind = Some(value.clone());
                }
                "stage" => {
                    filter.stage = Some(
                        Stage::from_str(value).map_err(|err| WebError::BadRequest(err.to_string()))?,
                    )
                }
                "q" => filter.q = given(),
                "limit" => {
                    filter.limit = value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            WebError::BadRequest(format!(
                                "limit must be a whole number from 1 to {MAX_LIMIT}"
                            ))
                        })?
                }
                "after" => filter.after = Some(parse_id("after", value)?),
                "before" => filter.before = Some(parse_id("before", value)?),
                "team" | "severity" => {
                    return Err(WebError::BadRequest(format!(
                        "the {name} filter is not available yet (it arrives with ownership and posture)"
                    )))
                }
                other => {
                    return Err(WebError::BadRequest(format!(
                        "unknown parameter '{other}'; expected source, namespace, kind, stage, q, limit, after or before"
                    )))
                }
            }
        }
        Ok(filter)
    }
}

async fn list_workloads(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<WorkloadPage>, WebError> {
    let filter = WorkloadFilter::parse(&params)?;
    Ok(ApiJson(query_workloads(&state.pool, &filter).await?))
}

async fn get_workload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<WorkloadDetail>, WebError> {
    let id = parse_id("the workload id", &id)?;
    workload_detail(&state.pool, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| WebError::NotFound(format!("there is no workload {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_are_parsed_and_bad_values_refused() {
        let filter = WorkloadFilter::parse(&params(&[
            ("stage", "run"),
            ("kind", "ComposeService"),
            ("limit", "5"),
            ("after", "10"),
            ("q", "Web"),
        ]))
        .unwrap();
        assert_eq!(filter.stage, Some(Stage::Run));
        assert_eq!(filter.limit, 5);
        assert_eq!(filter.after, Some(10));
        for bad in [
            ("stage", "running"),
            ("kind", "Box"),
            ("limit", "0"),
            ("limit", "9999"),
            ("after", "x"),
            ("source", "-1"),
            ("team", "payments"),
            ("severity", "high"),
            ("colour", "red"),
        ] {
            assert!(
                matches!(
                    WorkloadFilter::parse(&params(&[bad])),
                    Err(WebError::BadRequest(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
