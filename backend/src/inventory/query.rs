//! Reading the inventory for the console and the API: one page of workloads by filters (keyset
//! pagination on the id, both directions) and one workload with its instances, images and
//! lifecycle history. The API (`web/workloads.rs`) and the console pages call the same functions.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::lifecycle::store::{history, HistoryEntry};
use crate::lifecycle::Stage;

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
    /// Only workloads with a smaller id (the next page's `previous`); wins over `after`.
    pub before: Option<i64>,
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
    /// The posture score (see `crate::findings`): `None` until first evaluated.
    pub grade: Option<String>,
    pub risk_score: i32,
    pub worst_severity: Option<String>,
    pub pss_level: Option<String>,
    /// Open, non-waived findings by severity.
    pub findings_critical: i32,
    pub findings_high: i32,
    pub findings_medium: i32,
    pub findings_low: i32,
    pub findings_info: i32,
}

#[derive(Debug, Serialize)]
pub struct WorkloadPage {
    pub workloads: Vec<WorkloadSummary>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<String>,
    /// The `before` of the previous page; `null` on the first page.
    pub previous: Option<String>,
}

const SUMMARY_COLUMNS: &str =
    "select w.id, w.source_id, s.kind as source_kind, s.name as source_name, \
     w.namespace, w.kind, w.name, w.stage, w.stage_since, w.images, w.image_digests, \
     w.instances_total, w.instances_running, w.labels, w.first_seen, w.last_seen, w.gone_since, \
     w.retired_at, w.grade, w.risk_score, w.worst_severity, w.pss_level, w.findings_critical, \
     w.findings_high, w.findings_medium, w.findings_low, w.findings_info \
     from workloads w join sources s on s.id = w.source_id";

fn push_filters(query: &mut QueryBuilder<'_, Postgres>, filter: &WorkloadFilter) {
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
}

/// Whether any workload matching the filters has an id on the given side of `id`.
async fn exists_beyond(
    pool: &PgPool,
    filter: &WorkloadFilter,
    id: i64,
    above: bool,
) -> Result<bool, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> =
        QueryBuilder::new("select exists (select 1 from workloads w");
    push_filters(&mut query, filter);
    query
        .push(if above {
            " and w.id > "
        } else {
            " and w.id < "
        })
        .push_bind(id)
        .push(")");
    query.build_query_scalar().fetch_one(pool).await
}

/// One page of workloads by ascending id: after `filter.after`, or the page that ends just
/// before `filter.before`. Every step is an index range scan (`order by id` with a limit).
pub async fn query_workloads(
    pool: &PgPool,
    filter: &WorkloadFilter,
) -> Result<WorkloadPage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SUMMARY_COLUMNS);
    push_filters(&mut query, filter);
    let backwards = filter.before.is_some();
    if let Some(before) = filter.before {
        query.push(" and w.id < ").push_bind(before);
        query.push(" order by w.id desc limit ");
    } else {
        if let Some(after) = filter.after {
            query.push(" and w.id > ").push_bind(after);
        }
        query.push(" order by w.id limit ");
    }
    query.push_bind(filter.limit + 1);
    let mut workloads: Vec<WorkloadSummary> = query.build_query_as().fetch_all(pool).await?;
    let more = workloads.len() as i64 > filter.limit;
    workloads.truncate(filter.limit as usize);
    if backwards {
        workloads.reverse();
    }
    let (first, last) = (
        workloads.first().map(|w| w.id),
        workloads.last().map(|w| w.id),
    );
    let (next, previous) = if backwards {
        let next = match last {
            Some(last) if exists_beyond(pool, filter, last, true).await? => Some(last),
            _ => None,
        };
        (next, first.filter(|_| more))
    } else {
        let previous = match (filter.after, first) {
            (Some(_), Some(first)) if exists_beyond(pool, filter, first, false).await? => {
                Some(first)
            }
            _ => None,
        };
        (last.filter(|_| more), previous)
    };
    Ok(WorkloadPage {
        workloads,
        next: next.map(|id| id.to_string()),
        previous: previous.map(|id| id.to_string()),
    })
}

/// Per lifecycle stage (every stage present, zeros included): how many workloads, and how many
/// instances they run. One pass over the workloads.
pub async fn stage_counts(db: impl PgExecutor<'_>) -> Result<Vec<(Stage, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select stage, count(*) as "count!",
                  coalesce(sum(instances_running), 0)::bigint as "running!"
           from workloads group by stage"#
    )
    .fetch_all(db)
    .await?;
    Ok(Stage::ALL
        .into_iter()
        .map(|stage| {
            rows.iter()
                .find(|row| row.stage == stage.as_str())
                .map_or((stage, 0, 0), |row| (stage, row.count, row.running))
        })
        .collect())
}

/// What the list does not carry about a workload.
#[derive(Debug, Clone)]
pub struct WorkloadExtras {
    pub uid: Option<String>,
    pub annotations: Value,
    /// The declared object (a Kubernetes controller with its pod template), secret values
    /// removed.
    pub declared: Option<Value>,
}

/// The uid, annotations and declared object of a workload; `None` when there is no such
/// workload.
pub async fn extras(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<WorkloadExtras>, sqlx::Error> {
    sqlx::query_as!(
        WorkloadExtras,
        "select uid, annotations, declared from workloads where id = $1",
        id
    )
    .fetch_optional(db)
    .await
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
    /// The history merged with the build reports and registry events of the workload's
    /// digests, by time; a build or store stage nobody reported comes first as "not reported".
    pub timeline: Vec<crate::supply::query::TimelineEntry>,
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
    let timeline = crate::supply::query::timeline(pool, &digests, &history).await?;
    Ok(Some(WorkloadDetail {
        workload,
        instances,
        images,
        history,
        timeline,
    }))
}
