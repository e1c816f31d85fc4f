//! `GET /api/v1/workloads` (filters `source`, `namespace`, `kind`, `stage`, `q`; keyset
//! pagination `?limit=&after=` with a `next` cursor) and `GET /api/v1/workloads/{id}` (the
//! workload with its instances, images and lifecycle history). Source-agnostic: Docker and
//! Kubernetes workloads share the shapes.
//!
//! Unknown parameters and bad values are refused with 400, never ignored. `team` and `severity`
//! are refused until ownership and posture exist.

use crate::auth::Role;
use crate::web::RoutePolicy;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::json::ApiJson;
use super::{AppState, WebError};
use crate::lifecycle::store::{history, HistoryEntry};
use crate::lifecycle::Stage;

/// Who may call each route (see `crate::auth`).
pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/workloads", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/workloads/{id}", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workloads", get(list_workloads))
        .route("/api/v1/workloads/{id}", get(get_workload))
}

/// Every workload kind a collector writes.
pub const KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "CronJob",
    "Job",
    "Pod",
    "ReplicaSet",
    "ComposeService",
    "Container",
];

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

/// The validated filters of a workload list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkloadFilter {
    pub source: Option<i64>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub stage: Option<Stage>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    pub limit: i64,
    /// Only workloads with a larger id (the previous page's `next`).
    pub after: Option<i64>,
}

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
                "team" | "severity" => {
                    return Err(WebError::BadRequest(format!(
                        "the {name} filter is not available yet (it arrives with ownership and posture)"
                    )))
                }
                other => {
                    return Err(WebError::BadRequest(format!(
                        "unknown parameter '{other}'; expected source, namespace, kind, stage, q, limit or after"
                    )))
                }
            }
        }
        Ok(filter)
    }
}

/// A workload in a list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkloadSummary {
    pub id: i64,
    pub source_id: i64,
    pub source_kind: String,
    pub source_name: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub stage: String,
    pub stage_since: DateTime<Utc>,
    pub images: Vec<String>,
    pub image_digests: Vec<String>,
    pub instances_total: i32,
    pub instances_running: i32,
    pub labels: Value,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub gone_since: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadPage {
    pub workloads: Vec<WorkloadSummary>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<String>,
}

const SUMMARY_COLUMNS: &str =
    "select w.id, w.source_id, s.kind as source_kind, s.name as source_name, \
     w.namespace, w.kind, w.name, w.stage, w.stage_since, w.images, w.image_digests, \
     w.instances_total, w.instances_running, w.labels, w.first_seen, w.last_seen, w.gone_since, \
     w.retired_at from workloads w join sources s on s.id = w.source_id";

/// One page of workloads by ascending id.
pub async fn query_workloads(
    pool: &PgPool,
    filter: &WorkloadFilter,
) -> Result<WorkloadPage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SUMMARY_COLUMNS);
    query.push(" where true");
    if let Some(source) = filter.source {
        query.push(" and w.source_id = ").push_bind(source);
    }
    if let Some(namespace) = &filter.namespace {
        query
            .push(" and w.namespace = ")
            .push_bind(namespace.clone());
    }
    if let Some(kind) = &filter.kind {
        query.push(" and w.kind = ").push_bind(kind.clone());
    }
    if let Some(stage) = filter.stage {
        query.push(" and w.stage = ").push_bind(stage.as_str());
    }
    if let Some(q) = &filter.q {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        query
            .push(" and w.name ilike ")
            .push_bind(format!("%{escaped}%"));
    }
    if let Some(after) = filter.after {
        query.push(" and w.id > ").push_bind(after);
    }
    query
        .push(" order by w.id limit ")
        .push_bind(filter.limit + 1);
    let mut workloads: Vec<WorkloadSummary> = query.build_query_as().fetch_all(pool).await?;
    let next = if workloads.len() as i64 > filter.limit {
        workloads.truncate(filter.limit as usize);
        workloads.last().map(|w| w.id.to_string())
    } else {
        None
    };
    Ok(WorkloadPage { workloads, next })
}

async fn list_workloads(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<WorkloadPage>, WebError> {
    let filter = WorkloadFilter::parse(&params)?;
    Ok(ApiJson(query_workloads(&state.pool, &filter).await?))
}

/// An instance (container, pod) of a workload; `raw` has its secret values removed.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub state: String,
    pub running: bool,
    pub image_ref: Option<String>,
    pub image_digest: Option<String>,
    pub node: Option<String>,
    pub labels: Value,
    pub restart_count: i32,
    pub spec: Option<Value>,
    pub raw: Value,
    pub started_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

/// An image a workload runs or ran, with the references it is known under.
#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub digest: String,
    pub image_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub size_bytes: Option<i64>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub config: Value,
    pub references: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadDetail {
    pub workload: WorkloadSummary,
    /// Live instances first, then removed ones (newest first), at most 200.
    pub instances: Vec<InstanceView>,
    pub images: Vec<ImageView>,
    /// Every lifecycle transition, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// A workload with its instances, images and history; `None` when there is no such workload.
pub async fn workload_detail(
    pool: &PgPool,
    id: i64,
) -> Result<Option<WorkloadDetail>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SUMMARY_COLUMNS);
    query.push(" where w.id = ").push_bind(id);
    let Some(workload) = query
        .build_query_as::<WorkloadSummary>()
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let instances = sqlx::query_as!(
        InstanceView,
        r#"select id, external_id, name, state, running, image_ref, image_digest, node, labels,
                  restart_count, spec, raw, started_at, first_seen, last_seen, removed_at
           from instances where workload_id = $1
           order by removed_at is not null, removed_at desc, first_seen desc, id desc
           limit 200"#,
        id
    )
    .fetch_all(pool)
    .await?;
    let digests: Vec<String> = workload
        .image_digests
        .iter()
        .cloned()
        .chain(instances.iter().filter_map(|i| i.image_digest.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let images = sqlx::query!(
        r#"select i.digest, i.image_id, i.created_at, i.size_bytes, i.os, i.architecture, i.config,
                  coalesce(array_agg(r.reference order by r.reference)
                           filter (where r.reference is not null), '{}') as "references!"
           from images i left join image_references r on r.digest = i.digest
           where i.digest = any($1)
           group by i.digest order by i.digest"#,
        &digests
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| ImageView {
        digest: row.digest,
        image_id: row.image_id,
        created_at: row.created_at,
        size_bytes: row.size_bytes,
        os: row.os,
        architecture: row.architecture,
        config: row.config,
        references: row.references,
    })
    .collect();
    let history = history(pool, id).await?;
    Ok(Some(WorkloadDetail {
        workload,
        instances,
        images,
        history,
    }))
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
