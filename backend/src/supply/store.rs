//! Persisting build reports and registry events, and judging the build / store / update controls
//! of the workloads that run the digests they concern (see the module doc of [`crate::supply`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::controls::{self, BuildFacts, ControlSettings, DigestFacts, Newer, StoredIn};
use super::registry::{Action, Envelope};
use super::trivy::{Counts, EnvSecret, Vulnerability};
use super::{BuildReport, IMAGE_SCOPE};
use crate::config::Config;
use crate::findings::{self, Evaluation, FailedCheck};
use crate::posture::{Outcome, Settings};

/// The control settings from the configuration.
pub fn control_settings(config: &Config) -> ControlSettings {
    ControlSettings {
        posture: Settings {
            allowed_registries: config.images.allowed_registries.clone(),
            ..Settings::default()
        },
        max_age_days: config.images.max_age_days,
    }
}

async fn ensure_image(conn: &mut PgConnection, digests: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into images (digest) select unnest($1::text[])
           on conflict (digest) do update set last_seen = now()"#,
        digests
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn add_reference(
    conn: &mut PgConnection,
    digest: &str,
    reference: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into image_references (digest, reference) values ($1, $2)
           on conflict on constraint image_references_key do update set last_seen = now()"#,
        digest,
        reference
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What storing a build report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    /// `false` when the (digest, pipeline run) was already reported: the record was replaced.
    pub created: bool,
}

/// Stores a build report: one record per (digest, pipeline run); the digest's latest report is
/// the one the image inventory and the controls read.
pub async fn record_build(
    conn: &mut PgConnection,
    report: &BuildReport,
    reported_by: &str,
) -> Result<Recorded, sqlx::Error> {
    ensure_image(conn, std::slice::from_ref(&report.digest)).await?;
    add_reference(conn, &report.digest, &report.image).await?;
    let scan = report.scan.as_ref();
    let counts = scan.map(|s| s.counts);
    let top = scan.map_or(json!([]), |s| json!(s.top));
    let env = scan.map_or(json!([]), |s| json!(s.env_secrets));
    let row = sqlx::query!(
        r#"insert into build_reports (digest, image_reference, pipeline_run, pipeline_url,
                                      source_repository, source_commit, builder, built_at,
                                      scanned, scanner, vulns_critical, vulns_high, vulns_medium,
                                      vulns_low, vulns_unknown, top_vulnerabilities, env_secrets,
                                      reported_by)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
           on conflict on constraint build_reports_run_key do update set
               image_reference = excluded.image_reference, pipeline_url = excluded.pipeline_url,
               source_repository = excluded.source_repository,
               source_commit = excluded.source_commit, builder = excluded.builder,
               built_at = excluded.built_at, scanned = excluded.scanned,
               scanner = excluded.scanner, vulns_critical = excluded.vulns_critical,
               vulns_high = excluded.vulns_high, vulns_medium = excluded.vulns_medium,
               vulns_low = excluded.vulns_low, vulns_unknown = excluded.vulns_unknown,
               top_vulnerabilities = excluded.top_vulnerabilities,
               env_secrets = excluded.env_secrets, reported_by = excluded.reported_by,
               updated_at = now()
           returning id, (xmax = 0) as "created!""#,
        report.digest,
        report.image,
        report.pipeline_run,
        report.pipeline_url,
        report.repository,
        report.commit,
        report.builder,
        report.built_at,
        scan.is_some(),
        scan.map(|s| s.scanner.clone()),
        counts.map(|c| c.critical),
        counts.map(|c| c.high),
        counts.map(|c| c.medium),
        counts.map(|c| c.low),
        counts.map(|c| c.unknown),
        top,
        env,
        reported_by,
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        r#"update images i set build_report_id = b.id, vulns_critical = b.vulns_critical,
                               vulns_high = b.vulns_high
           from (select id, vulns_critical, vulns_high from build_reports where digest = $1
                 order by built_at desc, id desc limit 1) b
           where i.digest = $1"#,
        report.digest
    )
    .execute(&mut *conn)
    .await?;
    Ok(Recorded {
        id: row.id,
        created: row.created,
    })
}

/// What storing a notification envelope did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOutcome {
    pub stored: usize,
    /// Events already stored (a retried delivery).
    pub duplicates: usize,
    /// The digests whose store records changed.
    pub digests: Vec<String>,
}

/// Stores the kept events of an envelope and updates where each digest is stored: a push adds
/// the digest (and its tag, moved off any other digest of the repository) to the registry's
/// repository, a pull counts, a delete marks the manifest (or removes the tag) as gone.
pub async fn record_registry_events(
    conn: &mut PgConnection,
    envelope: &Envelope,
    reported_by: &str,
) -> Result<RegistryOutcome, sqlx::Error> {
    let mut outcome = RegistryOutcome::default();
    let mut touched = BTreeSet::new();
    for event in &envelope.events {
        if let Some(digest) = &event.digest {
            if event.action != Action::Delete {
                ensure_image(conn, std::slice::from_ref(digest)).await?;
            }
        }
        let inserted = sqlx::query_scalar!(
            r#"insert into registry_events (event_id, registry, repository, digest, tag, action,
                                            media_type, actor, source_addr, at, reported_by)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               on conflict on constraint registry_events_event_key do nothing
               returning id"#,
            event.event_id,
            event.registry,
            event.repository,
            event.digest,
            event.tag,
            event.action.as_str(),
            event.media_type,
            event.actor,
            event.source_addr,
            event.at,
            reported_by,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if inserted.is_none() {
            outcome.duplicates += 1;
            continue;
        }
        outcome.stored += 1;
        match (event.action, &event.digest) {
            (Action::Push, Some(digest)) => {
                add_reference(
                    conn,
                    digest,
                    &format!("{}/{}@{digest}", event.registry, event.repository),
                )
                .await?;
                if let Some(reference) = event.tag_reference() {
                    add_reference(conn, digest, &reference).await?;
                }
                let tags: Vec<String> = event.tag.iter().cloned().collect();
                sqlx::query!(
                    r#"insert into registry_images (registry, repository, digest, tags,
                                                    first_pushed, last_pushed)
                       values ($1, $2, $3, $4, $5, $5)
                       on conflict on constraint registry_images_pkey do update set
                           tags = array(select distinct unnest(registry_images.tags || excluded.tags)
                                        order by 1),
                           first_pushed = least(registry_images.first_pushed, excluded.first_pushed),
                           last_pushed = greatest(registry_images.last_pushed, excluded.last_pushed),
                           removed_at = null"#,
                    event.registry,
                    event.repository,
                    digest,
                    &tags,
                    event.at,
                )
                .execute(&mut *conn)
                .await?;
                // A tag names one digest of a repository at a time.
                if let Some(tag) = &event.tag {
                    let moved = sqlx::query_scalar!(
                        r#"update registry_images set tags = array_remove(tags, $4)
                           where registry = $1 and repository = $2 and digest <> $3
                             and $4 = any(tags)
                           returning digest"#,
                        event.registry,
                        event.repository,
                        digest,
                        tag
                    )
                    .fetch_all(&mut *conn)
                    .await?;
                    touched.extend(moved);
                }
                touched.insert(digest.clone());
            }
            (Action::Pull, Some(digest)) => {
                sqlx::query!(
                    r#"insert into registry_images (registry, repository, digest, last_pulled,
                                                    pulls)
                       values ($1, $2, $3, $4, 1)
                       on conflict on constraint registry_images_pkey do update set
                           last_pulled = greatest(registry_images.last_pulled, excluded.last_pulled),
                           pulls = registry_images.pulls + 1"#,
                    event.registry,
                    event.repository,
                    digest,
                    event.at,
                )
                .execute(&mut *conn)
                .await?;
                touched.insert(digest.clone());
            }
            (Action::Delete, Some(digest)) => {
                sqlx::query!(
                    r#"update registry_images set removed_at = $4, tags = '{}'
                       where registry = $1 and repository = $2 and digest = $3"#,
                    event.registry,
                    event.repository,
                    digest,
                    event.at,
                )
                .execute(&mut *conn)
                .await?;
                touched.insert(digest.clone());
            }
            (Action::Delete, None) => {
                let untagged = sqlx::query_scalar!(
                    r#"update registry_images set tags = array_remove(tags, $3)
                       where registry = $1 and repository = $2 and $3 = any(tags)
                       returning digest"#,
                    event.registry,
                    event.repository,
                    event.tag,
                )
                .fetch_all(&mut *conn)
                .await?;
                touched.extend(untagged);
            }
            (_, None) => {}
        }
    }
    let digests: Vec<String> = touched.into_iter().collect();
    sqlx::query!(
        r#"update images i set registries = coalesce(
               (select array_agg(distinct r.registry order by r.registry) from registry_images r
                where r.digest = i.digest and r.removed_at is null), '{}')
           where i.digest = any($1)"#,
        &digests
    )
    .execute(&mut *conn)
    .await?;
    outcome.digests = digests;
    Ok(outcome)
}

/// The live workloads running these digests or another digest of the same references (whose
/// newer-digest control may change).
pub async fn workloads_running(
    conn: &mut PgConnection,
    digests: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"with related as (
               select unnest($1::text[]) as digest
               union
               select other.digest from image_references mine
               join image_references other on other.reference = mine.reference
               where mine.digest = any($1)
           )
           select distinct i.workload_id from instances i
           join workloads w on w.id = i.workload_id
           where i.image_digest in (select digest from related) and i.removed_at is null
             and w.stage <> 'retire'
           order by 1"#,
        digests
    )
    .fetch_all(&mut *conn)
    .await
}

fn counts_of(row_scanned: bool, values: [Option<i32>; 5]) -> Option<Counts> {
    row_scanned.then(|| Counts {
        critical: values[0].unwrap_or(0),
        high: values[1].unwrap_or(0),
        medium: values[2].unwrap_or(0),
        low: values[3].unwrap_or(0),
        unknown: values[4].unwrap_or(0),
    })
}

/// What the controls read about these digests, by digest.
pub async fn load_facts(
    conn: &mut PgConnection,
    digests: &[String],
) -> Result<HashMap<String, DigestFacts>, sqlx::Error> {
    let mut facts: HashMap<String, DigestFacts> = HashMap::new();
    let images = sqlx::query!(
        r#"select i.digest, i.created_at, b.id as "build_id?", b.built_at as "built_at?",
                  b.pipeline_run as "pipeline_run?", b.scanned as "scanned?",
                  b.vulns_critical, b.vulns_high, b.vulns_medium, b.vulns_low, b.vulns_unknown,
                  b.top_vulnerabilities as "top?", b.env_secrets as "env_secrets?"
           from images i left join build_reports b on b.id = i.build_report_id
           where i.digest = any($1)"#,
        digests
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in images {
        let build = match (row.build_id, row.built_at, row.pipeline_run) {
            (Some(id), Some(built_at), Some(pipeline)) => {
                let top: Vec<Vulnerability> = row
                    .top
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let env_secrets: Vec<EnvSecret> = row
                    .env_secrets
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                Some(BuildFacts {
                    id,
                    built_at,
                    pipeline,
                    counts: counts_of(
                        row.scanned.unwrap_or(false),
                        [
                            row.vulns_critical,
                            row.vulns_high,
                            row.vulns_medium,
                            row.vulns_low,
                            row.vulns_unknown,
                        ],
                    ),
                    critical_ids: top
                        .into_iter()
                        .filter(|v| v.severity == "CRITICAL")
                        .map(|v| v.id)
                        .collect(),
                    env_secrets,
                })
            }
            _ => None,
        };
        facts.insert(
            row.digest.clone(),
            DigestFacts {
                digest: row.digest,
                build,
                created_at: row.created_at,
                ..DigestFacts::default()
            },
        );
    }
    let stored = sqlx::query!(
        r#"select digest, registry, repository, removed_at from registry_images
           where digest = any($1) order by registry, repository"#,
        digests
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in stored {
        if let Some(f) = facts.get_mut(&row.digest) {
            f.stored_in.push(StoredIn {
                registry: row.registry,
                repository: row.repository,
                removed: row.removed_at.is_some(),
            });
        }
    }
    // A tag reference of this digest that was later seen naming another digest.
    let newer = sqlx::query!(
        r#"select mine.digest, mine.reference, other.digest as newer, other.first_seen
           from image_references mine
           join image_references other on other.reference = mine.reference
                and other.digest <> mine.digest and other.first_seen > mine.first_seen
           where mine.digest = any($1) and strpos(mine.reference, '@') = 0
           order by mine.digest, mine.reference, other.first_seen desc"#,
        digests
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in newer {
        if let Some(f) = facts.get_mut(&row.digest) {
            if f.newer.iter().any(|n| n.reference == row.reference) {
                continue;
            }
            f.newer.push(Newer {
                reference: row.reference,
                digest: row.newer,
                seen_at: row.first_seen,
            });
        }
    }
    let refs = sqlx::query!(
        r#"select image_digest as "digest!",
                  array_agg(distinct image_ref) filter (where image_ref is not null) as refs
           from instances where image_digest = any($1) and removed_at is null
           group by image_digest"#,
        digests
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in refs {
        if let Some(f) = facts.get_mut(&row.digest) {
            f.run_references = row.refs.unwrap_or_default();
        }
    }
    Ok(facts)
}

/// Judges the build / store / update controls of these workloads from the digests they run and
/// syncs their image-scope findings. Retired workloads are skipped.
pub async fn evaluate_workloads(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    settings: &ControlSettings,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(0);
    }
    let rows = sqlx::query!(
        r#"select w.id, w.image_digests,
                  array(select distinct d from (
                      select unnest(w.image_digests) as d
                      union
                      select i.image_digest from instances i
                      where i.workload_id = w.id and i.removed_at is null
                        and i.image_digest is not null) x
                   order by 1) as "digests!"
           from workloads w where w.id = any($1) and w.stage <> 'retire'
           for update of w"#,
        workload_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let all: Vec<String> = rows
        .iter()
        .flat_map(|r| r.digests.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let facts = load_facts(conn, &all).await?;
    let results: HashMap<&str, Vec<controls::ControlResult>> = facts
        .iter()
        .map(|(digest, f)| (digest.as_str(), controls::evaluate(f, settings, now)))
        .collect();
    let mut evaluations = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut failures: Vec<FailedCheck> = Vec::new();
        for digest in &row.digests {
            let Some(results) = results.get(digest.as_str()) else {
                continue;
            };
            for result in results
                .iter()
                .filter(|r| r.outcome == Outcome::Fail && !r.per_container)
            {
                let evidence = json!({"digest": digest, "read": result.evidence});
                match failures.iter_mut().find(|f| f.check == result.check) {
                    Some(existing) => {
                        if result.severity > existing.severity {
                            existing.severity = result.severity;
                            existing.message = result.message.clone();
                        }
                        if let Value::Array(items) = &mut existing.evidence {
                            items.push(evidence);
                        }
                    }
                    None => failures.push(FailedCheck {
                        check: result.check,
                        container: IMAGE_SCOPE.to_string(),
                        severity: result.severity,
                        message: result.message.clone(),
                        evidence: Value::Array(vec![evidence]),
                    }),
                }
            }
        }
        evaluations.push(Evaluation {
            workload_id: row.id,
            container_scope: Some(IMAGE_SCOPE.to_string()),
            failures,
            pss_level: None,
        });
    }
    findings::store::sync_findings(conn, &evaluations).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sqlx::query!(
        "update workloads set image_checked_digests = image_digests
         where id = any($1) and image_checked_digests is distinct from image_digests",
        &ids
    )
    .execute(&mut *conn)
    .await?;
    Ok(rows.len())
}

/// How many workloads one sweep transaction judges.
const SWEEP_BATCH: i64 = 2_000;

/// Judges the workloads whose digests changed since they were last judged (`all`: every live
/// workload, for the controls that change with time). Returns how many were judged.
pub async fn sweep_once(
    pool: &PgPool,
    settings: &ControlSettings,
    all: bool,
) -> Result<usize, sqlx::Error> {
    sweep(pool, settings, all, false).await
}

/// [`sweep_once`]; `paced`: after each batch, pause as long as the batch took, so that a sweep
/// of a large estate (the first after a start, the hourly full one) takes at most about half
/// of the database's attention and the console stays responsive meanwhile.
async fn sweep(
    pool: &PgPool,
    settings: &ControlSettings,
    all: bool,
    paced: bool,
) -> Result<usize, sqlx::Error> {
    let mut after = 0_i64;
    let mut judged = 0;
    loop {
        let started = std::time::Instant::now();
        let mut tx = pool.begin().await?;
        let ids = sqlx::query_scalar!(
            r#"select id from workloads
               where id > $1 and stage <> 'retire'
                 and ($2 or image_checked_digests is distinct from image_digests)
               order by id limit $3"#,
            after,
            all,
            SWEEP_BATCH
        )
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        judged += evaluate_workloads(&mut tx, &ids, settings, Utc::now()).await?;
        tx.commit().await?;
        after = last;
        if paced && ids.len() as i64 == SWEEP_BATCH {
            tokio::time::sleep(started.elapsed()).await;
        }
    }
    Ok(judged)
}

/// How often new and changed workloads are judged.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How often every workload is judged again (images age).
const FULL_SWEEP_EVERY: u32 = 120;

/// Starts the background sweep.
pub fn spawn(pool: PgPool, config: &Config, tasks: &TaskTracker, cancel: &CancellationToken) {
    if !config.images.background_sweep {
        return;
    }
    let settings = control_settings(config);
    // With several replicas, one sweeps: the one holding the lease.
    let work_pool = pool.clone();
    let work = move |cancel: CancellationToken| {
        let pool = work_pool.clone();
        let settings = settings.clone();
        async move {
            let mut round: u32 = 0;
            loop {
                let all = round % FULL_SWEEP_EVERY == 0;
                if let Err(err) = sweep(&pool, &settings, all, true).await {
                    tracing::warn!(%err, "judging the image controls of workloads failed");
                }
                round = round.wrapping_add(1);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                }
            }
        }
    };
    tasks.spawn(crate::db::lease::run_while_held(
        pool,
        "job:image-controls".into(),
        crate::db::lease::replica_id().into(),
        config.lease_ttl,
        cancel.clone(),
        work,
    ));
}
