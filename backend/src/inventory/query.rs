//! Reading the inventory for the console and the API: one page of workloads by filters (keyset
//! pagination on the id or on (risk, id), both directions) and one workload with its instances, images and
//! lifecycle history. The API (`web/workloads.rs`) and the console pages call the same functions.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::findings::trend::EstatePosture;
use crate::lifecycle::store::{history, HistoryEntry};
use crate::lifecycle::Stage;
use crate::ownership::store::OwnerView;
use crate::posture::Severity;

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

/// The order of a workload list.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadSort {
    /// Ascending id (oldest first).
    #[default]
    Id,
    /// Riskiest first (`risk_score` descending), then ascending id.
    Risk,
}

impl WorkloadSort {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadSort::Id => "id",
            WorkloadSort::Risk => "risk",
        }
    }
}

/// A position in a workload list: the id, and in the risk order also the risk
/// (`RISK.ID` as text, `ID` in the id order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub risk: i32,
    pub id: i64,
}

impl Cursor {
    fn of(workload: &WorkloadSummary) -> Self {
        Self {
            risk: workload.risk_score,
            id: workload.id,
        }
    }

    pub fn encode(self, sort: WorkloadSort) -> String {
        match sort {
            WorkloadSort::Id => self.id.to_string(),
            WorkloadSort::Risk => format!("{}.{}", self.risk, self.id),
        }
    }

    /// `None` when the text is not a cursor of that order.
    pub fn decode(text: &str, sort: WorkloadSort) -> Option<Self> {
        let number = |part: &str| part.trim().parse::<i64>().ok().filter(|n| *n >= 0);
        match sort {
            WorkloadSort::Id => number(text).map(|id| Self { risk: 0, id }),
            WorkloadSort::Risk => {
                let (risk, id) = text.split_once('.')?;
                Some(Self {
                    risk: i32::try_from(number(risk)?).ok()?,
                    id: number(id)?,
                })
            }
        }
    }
}

/// The validated filters of a workload list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkloadFilter {
    pub source: Option<i64>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub stage: Option<Stage>,
    /// The worst open, non-waived severity (`low` to `critical`).
    pub severity: Option<Severity>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Owned (some layer) by the team with this id or name; `none`: some layer unowned.
    pub team: Option<String>,
    pub sort: WorkloadSort,
    pub limit: i64,
    /// Only workloads after this position (the previous page's `next`).
    pub after: Option<Cursor>,
    /// Only workloads before this position (the next page's `previous`); wins over `after`.
    pub before: Option<Cursor>,
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
    if let Some(severity) = filter.severity {
        query
            .push(" and w.worst_severity = ")
            .push_bind(severity.as_str());
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
    match filter.team.as_deref() {
        None => {}
        Some("none") => {
            query.push(" and w.owned_layers < 5");
        }
        Some(team) => {
            query
                .push(
                    " and exists (select 1 from workload_owners o join teams t on t.id = o.team_id \
                     where o.workload_id = w.id and (t.id::text = ",
                )
                .push_bind(team.trim().to_string())
                .push(" or lower(t.name) = lower(")
                .push_bind(team.trim().to_string())
                .push(")))");
        }
    }
}

/// How many workloads match the filters (the cursor and limit aside).
pub async fn count_workloads(pool: &PgPool, filter: &WorkloadFilter) -> Result<i64, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new("select count(*) from workloads w");
    push_filters(&mut query, filter);
    query.build_query_scalar().fetch_one(pool).await
}

/// The ids of every workload matching the filters (the cursor and limit aside).
pub async fn workload_ids(pool: &PgPool, filter: &WorkloadFilter) -> Result<Vec<i64>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new("select w.id from workloads w");
    push_filters(&mut query, filter);
    query.push(" order by w.id");
    query.build_query_scalar().fetch_all(pool).await
}

/// ` and <position> > (<cursor>)` (or `<`) in the list's order.
fn push_position(
    query: &mut QueryBuilder<'_, Postgres>,
    sort: WorkloadSort,
    cursor: Cursor,
    after: bool,
) {
    let op = if after { " > " } else { " < " };
    match sort {
        WorkloadSort::Id => {
            query.push(" and w.id").push(op).push_bind(cursor.id);
        }
        WorkloadSort::Risk => {
            query
                .push(" and (-w.risk_score, w.id)")
                .push(op)
                .push("(")
                .push_bind(-cursor.risk)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
    }
}

/// ` order by …` in the list's order, or reversed.
fn push_order(query: &mut QueryBuilder<'_, Postgres>, sort: WorkloadSort, reversed: bool) {
    query.push(match (sort, reversed) {
        (WorkloadSort::Id, false) => " order by w.id",
        (WorkloadSort::Id, true) => " order by w.id desc",
        (WorkloadSort::Risk, false) => " order by -w.risk_score, w.id",
        (WorkloadSort::Risk, true) => " order by -w.risk_score desc, w.id desc",
    });
}

/// Whether any workload matching the filters lies on the given side of `cursor`.
async fn exists_beyond(
    pool: &PgPool,
    filter: &WorkloadFilter,
    cursor: Cursor,
    after: bool,
) -> Result<bool, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> =
        QueryBuilder::new("select exists (select 1 from workloads w");
    push_filters(&mut query, filter);
    push_position(&mut query, filter.sort, cursor, after);
    query.push(")");
    query.build_query_scalar().fetch_one(pool).await
}

/// One page of workloads in the filter's order (ascending id, or riskiest first): after
/// `filter.after`, or the page that ends just before `filter.before`. Every step is an index
/// range scan (the id, or `(-risk_score, id)`, with a limit).
pub async fn query_workloads(
    pool: &PgPool,
    filter: &WorkloadFilter,
) -> Result<WorkloadPage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SUMMARY_COLUMNS);
    push_filters(&mut query, filter);
    let backwards = filter.before.is_some();
    if let Some(before) = filter.before {
        push_position(&mut query, filter.sort, before, false);
    } else if let Some(after) = filter.after {
        push_position(&mut query, filter.sort, after, true);
    }
    push_order(&mut query, filter.sort, backwards);
    query.push(" limit ").push_bind(filter.limit + 1);
    let mut workloads: Vec<WorkloadSummary> = query.build_query_as().fetch_all(pool).await?;
    let more = workloads.len() as i64 > filter.limit;
    workloads.truncate(filter.limit as usize);
    if backwards {
        workloads.reverse();
    }
    let (first, last) = (
        workloads.first().map(Cursor::of),
        workloads.last().map(Cursor::of),
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
        next: next.map(|c| c.encode(filter.sort)),
        previous: previous.map(|c| c.encode(filter.sort)),
    })
}

/// The list rows of these workloads (any order; unknown ids are left out).
pub async fn workloads_by_ids(
    pool: &PgPool,
    ids: &[i64],
) -> Result<Vec<WorkloadSummary>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(SUMMARY_COLUMNS);
    query
        .push(" where w.id = any(")
        .push_bind(ids.to_vec())
        .push(")");
    query.build_query_as().fetch_all(pool).await
}

/// One lifecycle stage: its workloads, the instances they run, and their grades and open
/// findings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageCount {
    pub stage: Stage,
    pub workloads: i64,
    pub running: i64,
    pub posture: EstatePosture,
}

/// Every lifecycle stage (zeros included), in lifecycle order: one pass over the workloads and
/// their maintained scores.
pub async fn stage_counts(db: impl PgExecutor<'_>) -> Result<Vec<StageCount>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select stage, count(*) as "count!",
                  coalesce(sum(instances_running), 0)::bigint as "running!",
                  count(*) filter (where grade = 'A') as "a!",
                  count(*) filter (where grade = 'B') as "b!",
                  count(*) filter (where grade = 'C') as "c!",
                  count(*) filter (where grade = 'D') as "d!",
                  count(*) filter (where grade = 'F') as "f!",
                  coalesce(sum(findings_critical), 0)::int8 as "critical!",
                  coalesce(sum(findings_high), 0)::int8 as "high!",
                  coalesce(sum(findings_medium), 0)::int8 as "medium!",
                  coalesce(sum(findings_low), 0)::int8 as "low!",
                  coalesce(sum(findings_info), 0)::int8 as "info!"
           from workloads group by stage"#
    )
    .fetch_all(db)
    .await?;
    Ok(Stage::ALL
        .into_iter()
        .map(|stage| {
            rows.iter().find(|row| row.stage == stage.as_str()).map_or(
                StageCount {
                    stage,
                    workloads: 0,
                    running: 0,
                    posture: EstatePosture::default(),
                },
                |row| StageCount {
                    stage,
                    workloads: row.count,
                    running: row.running,
                    posture: EstatePosture {
                        grades: [row.a, row.b, row.c, row.d, row.f],
                        open: [row.critical, row.high, row.medium, row.low, row.info],
                    },
                },
            )
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
    /// The owner of each responsibility layer with its provenance (`team: null`: unowned).
    pub owners: Vec<OwnerView>,
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
    let owners = crate::ownership::store::owners(&mut *pool.acquire().await?, id).await?;
    let timeline = crate::supply::query::timeline(pool, &digests, &history).await?;
    Ok(Some(WorkloadDetail {
        workload,
        instances,
        images,
        history,
        owners,
        timeline,
    }))
}
