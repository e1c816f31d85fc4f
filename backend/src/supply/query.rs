//! Reading the image inventory (one page of digests by filters, keyset-paginated on the digest;
//! one digest with everything known about it) and the build / store part of a workload's
//! lifecycle timeline.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::controls::{self, ControlResult, ControlSettings};
use super::store::load_facts;
use super::trivy::{EnvSecret, Vulnerability};
use crate::lifecycle::store::HistoryEntry;

/// The validated filters of an image list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageFilter {
    /// Stored in this registry (host as reported).
    pub registry: Option<String>,
    /// Case-insensitive substring of one of its references.
    pub q: Option<String>,
    /// `Some(true)`: its latest scan has a critical vulnerability; `Some(false)`: it has none
    /// (or no scan).
    pub critical: Option<bool>,
    /// `Some(true)`: a live instance runs it; `Some(false)`: none does.
    pub running: Option<bool>,
    pub limit: i64,
    /// Only digests sorting after this one (the previous page's `next`).
    pub after: Option<String>,
}

/// An image in the list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ImageSummary {
    pub digest: String,
    pub references: Vec<String>,
    pub registries: Vec<String>,
    /// Workloads with a live instance of it, and its running instances.
    pub workloads: i64,
    pub running: i64,
    pub built_at: Option<DateTime<Utc>>,
    pub pipeline_url: Option<String>,
    pub scanned: Option<bool>,
    pub vulns_critical: Option<i32>,
    pub vulns_high: Option<i32>,
    pub created_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    /// Days since it was built (CI), else created (image config), else first seen.
    pub age_days: i32,
}

#[derive(Debug, Serialize)]
pub struct ImagePage {
    pub images: Vec<ImageSummary>,
    /// The `after` of the next page; `null` on the last page.
    pub next: Option<String>,
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The list query: images by ascending digest (a primary-key range scan), each row's references
/// and instance counts read through their indexes.
pub const LIST_COLUMNS: &str = "select i.digest, \
     coalesce((select array_agg(r.reference order by r.reference) from image_references r \
               where r.digest = i.digest), '{}') as references, \
     i.registries, \
     (select count(distinct n.workload_id) from instances n \
      where n.image_digest = i.digest and n.removed_at is null) as workloads, \
     (select count(*) from instances n \
      where n.image_digest = i.digest and n.removed_at is null and n.running) as running, \
     b.built_at, b.pipeline_url, b.scanned, i.vulns_critical, i.vulns_high, i.created_at, \
     i.first_seen, \
     (extract(day from now() - coalesce(b.built_at, i.created_at, i.first_seen)))::int as age_days \
     from images i left join build_reports b on b.id = i.build_report_id";

fn push_filters(query: &mut QueryBuilder<'_, Postgres>, filter: &ImageFilter) {
    query.push(" where true");
    if let Some(registry) = &filter.registry {
        query
            .push(" and ")
            .push_bind(registry.to_ascii_lowercase())
            .push(" = any(i.registries)");
    }
    if let Some(q) = &filter.q {
        query
            .push(
                " and exists (select 1 from image_references r where r.digest = i.digest \
                 and r.reference ilike ",
            )
            .push_bind(format!("%{}%", escape_like(q)))
            .push(")");
    }
    match filter.critical {
        Some(true) => {
            query.push(" and i.vulns_critical > 0");
        }
        Some(false) => {
            query.push(" and coalesce(i.vulns_critical, 0) = 0");
        }
        None => {}
    }
    if let Some(running) = filter.running {
        query
            .push(if running { " and " } else { " and not " })
            .push(
                "exists (select 1 from instances n where n.image_digest = i.digest \
             and n.removed_at is null and n.running)",
            );
    }
    if let Some(after) = &filter.after {
        query.push(" and i.digest > ").push_bind(after.clone());
    }
}

/// One page of images by ascending digest.
pub async fn query_images(pool: &PgPool, filter: &ImageFilter) -> Result<ImagePage, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(LIST_COLUMNS);
    push_filters(&mut query, filter);
    query.push(" order by i.digest limit ");
    query.push_bind(filter.limit + 1);
    let mut images: Vec<ImageSummary> = query.build_query_as().fetch_all(pool).await?;
    let more = images.len() as i64 > filter.limit;
    images.truncate(filter.limit as usize);
    let next = images
        .last()
        .filter(|_| more)
        .map(|image| image.digest.clone());
    Ok(ImagePage { images, next })
}

/// The registries images are stored in, for the filter's choices.
pub async fn registries(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select distinct registry as "registry!" from registry_images order by 1 limit 500"#
    )
    .fetch_all(pool)
    .await
}

/// A build report as shown.
#[derive(Debug, Clone, Serialize)]
pub struct BuildView {
    pub id: i64,
    pub image_reference: String,
    pub pipeline_run: String,
    pub pipeline_url: Option<String>,
    pub source_repository: Option<String>,
    pub source_commit: Option<String>,
    pub builder: Option<String>,
    pub built_at: DateTime<Utc>,
    pub scanned: bool,
    pub scanner: Option<String>,
    pub vulns_critical: Option<i32>,
    pub vulns_high: Option<i32>,
    pub vulns_medium: Option<i32>,
    pub vulns_low: Option<i32>,
    pub vulns_unknown: Option<i32>,
    pub top_vulnerabilities: Vec<Vulnerability>,
    pub env_secrets: Vec<EnvSecret>,
    pub reported_by: String,
    pub reported_at: DateTime<Utc>,
}

/// A reference of the image.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceView {
    pub reference: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// A registry repository holding the image.
#[derive(Debug, Clone, Serialize)]
pub struct StoredView {
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub first_pushed: Option<DateTime<Utc>>,
    pub last_pushed: Option<DateTime<Utc>>,
    pub last_pulled: Option<DateTime<Utc>>,
    pub pulls: i64,
    pub removed_at: Option<DateTime<Utc>>,
}

/// A registry notification about the image.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryEventView {
    pub at: DateTime<Utc>,
    pub action: String,
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub actor: Option<String>,
}

/// A workload running the image.
#[derive(Debug, Clone, Serialize)]
pub struct RunsIn {
    pub workload_id: i64,
    pub source_name: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub stage: String,
    pub instances: i64,
    pub running: i64,
}

#[derive(Debug, Serialize)]
pub struct ImageDetail {
    pub image: ImageSummary,
    pub image_id: Option<String>,
    pub size_bytes: Option<i64>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub config: Value,
    pub references: Vec<ReferenceView>,
    /// Newest first; the first is the one the controls read.
    pub builds: Vec<BuildView>,
    pub stored_in: Vec<StoredView>,
    /// The latest 100, newest first.
    pub registry_events: Vec<RegistryEventView>,
    pub runs_in: Vec<RunsIn>,
    /// The build, store and update controls of this digest.
    pub controls: Vec<ControlResult>,
}

/// One image with everything known about it; `None` when the digest is unknown.
pub async fn image_detail(
    pool: &PgPool,
    digest: &str,
    settings: &ControlSettings,
) -> Result<Option<ImageDetail>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(LIST_COLUMNS);
    query
        .push(" where i.digest = ")
        .push_bind(digest.to_string());
    let Some(image) = query
        .build_query_as::<ImageSummary>()
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let extra = sqlx::query!(
        "select image_id, size_bytes, os, architecture, config from images where digest = $1",
        digest
    )
    .fetch_one(pool)
    .await?;
    let references = sqlx::query_as!(
        ReferenceView,
        r#"select reference, first_seen, last_seen from image_references where digest = $1
           order by reference"#,
        digest
    )
    .fetch_all(pool)
    .await?;
    let builds = sqlx::query!(
        r#"select id, image_reference, pipeline_run, pipeline_url, source_repository,
                  source_commit, builder, built_at, scanned, scanner, vulns_critical, vulns_high,
                  vulns_medium, vulns_low, vulns_unknown, top_vulnerabilities, env_secrets,
                  reported_by, reported_at
           from build_reports where digest = $1 order by built_at desc, id desc limit 50"#,
        digest
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| BuildView {
        id: row.id,
        image_reference: row.image_reference,
        pipeline_run: row.pipeline_run,
        pipeline_url: row.pipeline_url,
        source_repository: row.source_repository,
        source_commit: row.source_commit,
        builder: row.builder,
        built_at: row.built_at,
        scanned: row.scanned,
        scanner: row.scanner,
        vulns_critical: row.vulns_critical,
        vulns_high: row.vulns_high,
        vulns_medium: row.vulns_medium,
        vulns_low: row.vulns_low,
        vulns_unknown: row.vulns_unknown,
        top_vulnerabilities: serde_json::from_value(row.top_vulnerabilities).unwrap_or_default(),
        env_secrets: serde_json::from_value(row.env_secrets).unwrap_or_default(),
        reported_by: row.reported_by,
        reported_at: row.reported_at,
    })
    .collect();
    let stored_in = sqlx::query_as!(
        StoredView,
        r#"select registry, repository, tags, first_pushed, last_pushed, last_pulled, pulls,
                  removed_at
           from registry_images where digest = $1 order by registry, repository"#,
        digest
    )
    .fetch_all(pool)
    .await?;
    let registry_events = sqlx::query_as!(
        RegistryEventView,
        r#"select at, action, registry, repository, tag, actor from registry_events
           where digest = $1 order by at desc, id desc limit 100"#,
        digest
    )
    .fetch_all(pool)
    .await?;
    let runs_in = sqlx::query_as!(
        RunsIn,
        r#"select w.id as workload_id, s.name as source_name, w.namespace, w.kind, w.name,
                  w.stage, count(*) as "instances!",
                  count(*) filter (where n.running) as "running!"
           from instances n join workloads w on w.id = n.workload_id
           join sources s on s.id = w.source_id
           where n.image_digest = $1 and n.removed_at is null
           group by w.id, s.name order by w.id limit 200"#,
        digest
    )
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let facts = load_facts(&mut conn, &[digest.to_string()]).await?;
    let controls = facts
        .get(digest)
        .map(|f| controls::evaluate(f, settings, Utc::now()))
        .unwrap_or_default();
    Ok(Some(ImageDetail {
        image,
        image_id: extra.image_id,
        size_bytes: extra.size_bytes,
        os: extra.os,
        architecture: extra.architecture,
        config: extra.config,
        references,
        builds,
        stored_in,
        registry_events,
        runs_in,
        controls,
    }))
}

/// One row of a workload's lifecycle timeline: a transition the collectors recorded, a build
/// (CI) or a registry event of one of its digests, or a build / store stage nobody reported.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// `None` for a stage that was not reported.
    pub at: Option<DateTime<Utc>>,
    pub stage: String,
    pub from_stage: Option<String>,
    /// `ci`, `registry` or `collector`.
    pub reported_by: &'static str,
    /// Whether the stage was reported at all.
    pub reported: bool,
    pub summary: String,
    /// The digests the row is about (a transition: the digests after it).
    pub digests: Vec<String>,
    /// A transition: the digests before it.
    pub digests_before: Vec<String>,
    /// The image page or pipeline the row is about.
    pub link: Option<String>,
}

/// The timeline of a workload: the build reports and registry pushes / deletes of its digests
/// merged with its recorded transitions, by time; with "not reported" rows first for a build or
/// store stage no report covers.
pub async fn timeline(
    pool: &PgPool,
    digests: &[String],
    history: &[HistoryEntry],
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let builds = sqlx::query!(
        r#"select digest, image_reference, pipeline_run, pipeline_url, source_repository,
                  source_commit, builder, built_at, vulns_critical
           from build_reports where digest = any($1) order by built_at, id limit 100"#,
        digests
    )
    .fetch_all(pool)
    .await?;
    let pushes = sqlx::query!(
        r#"select digest as "digest!", action, registry, repository, tag, at
           from registry_events where digest = any($1) and action in ('push', 'delete')
           order by at, id limit 100"#,
        digests
    )
    .fetch_all(pool)
    .await?;
    let mut entries = Vec::new();
    let subject = if digests.is_empty() {
        "no image digest is known".to_string()
    } else {
        format!("for {}", digests.join(", "))
    };
    if builds.is_empty() {
        entries.push(TimelineEntry {
            at: None,
            stage: "build".into(),
            from_stage: None,
            reported_by: "ci",
            reported: false,
            summary: format!("not reported: no CI build report {subject}"),
            digests: digests.to_vec(),
            digests_before: Vec::new(),
            link: None,
        });
    }
    if pushes.is_empty() {
        entries.push(TimelineEntry {
            at: None,
            stage: "store".into(),
            from_stage: None,
            reported_by: "registry",
            reported: false,
            summary: format!("not reported: no registry push {subject}"),
            digests: digests.to_vec(),
            digests_before: Vec::new(),
            link: None,
        });
    }
    let mut dated = Vec::new();
    for b in builds {
        let mut summary = format!("built {} in pipeline {}", b.image_reference, b.pipeline_run);
        if let (Some(repo), Some(commit)) = (&b.source_repository, &b.source_commit) {
            summary.push_str(&format!(" from {repo}@{commit}"));
        }
        if let Some(builder) = &b.builder {
            summary.push_str(&format!(" by {builder}"));
        }
        match b.vulns_critical {
            Some(0) => summary.push_str("; scanned, no critical vulnerability"),
            Some(n) => summary.push_str(&format!("; scanned, {n} critical")),
            None => summary.push_str("; not scanned"),
        }
        dated.push(TimelineEntry {
            at: Some(b.built_at),
            stage: "build".into(),
            from_stage: None,
            reported_by: "ci",
            reported: true,
            summary,
            link: Some(format!("/images/{}", b.digest)),
            digests: vec![b.digest],
            digests_before: Vec::new(),
        });
    }
    for p in pushes {
        let place = match &p.tag {
            Some(tag) => format!("{}/{}:{tag}", p.registry, p.repository),
            None => format!("{}/{}", p.registry, p.repository),
        };
        let summary = if p.action == "push" {
            format!("pushed to {place}")
        } else {
            format!("deleted from {place}")
        };
        dated.push(TimelineEntry {
            at: Some(p.at),
            stage: "store".into(),
            from_stage: None,
            reported_by: "registry",
            reported: true,
            summary,
            link: Some(format!("/images/{}", p.digest)),
            digests: vec![p.digest],
            digests_before: Vec::new(),
        });
    }
    for h in history {
        dated.push(TimelineEntry {
            at: Some(h.at),
            stage: h.to_stage.clone(),
            from_stage: h.from_stage.clone(),
            reported_by: "collector",
            reported: true,
            summary: h.cause.clone(),
            digests: h.digests_after.clone(),
            digests_before: h.digests_before.clone(),
            link: None,
        });
    }
    // Stable: transitions keep their recorded order among equal times.
    dated.sort_by_key(|e| e.at);
    entries.extend(dated);
    Ok(entries)
}
