//! Writing findings and scores: a handful of UNNEST statements per batch, whatever its size.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use super::{layer_str, risk_score, Evaluation};
use crate::posture::score::{grade, SeverityCounts};
use crate::posture::Severity;
use crate::supply::IMAGE_SCOPE;

/// Statements carry at most this many findings each.
const FINDING_BATCH: usize = 5_000;

/// Syncs the findings of these evaluations (see the module doc of [`crate::findings`]): opens
/// new FAILs, bumps `last_seen` of still-failing ones, resolves (reason `fixed`) the open ones of
/// each evaluated scope that did not fail (a whole-workload scope leaves the image-digest scope
/// [`IMAGE_SCOPE`] alone: only an evaluation of that scope resolves it), marks waived ones, then recomputes the scores of the
/// workloads. Call it once per transaction (the resolution step tells "seen now" by the
/// transaction's `now()`).
pub async fn sync_findings(
    conn: &mut PgConnection,
    evaluations: &[Evaluation],
) -> Result<(), sqlx::Error> {
    if evaluations.is_empty() {
        return Ok(());
    }
    // One FAIL per (workload, check, container): ON CONFLICT cannot touch a row twice.
    let mut rows: BTreeMap<(i64, &str, &str), (&'static str, &str, &Value)> = BTreeMap::new();
    for evaluation in evaluations {
        for failure in &evaluation.failures {
            let key = (
                evaluation.workload_id,
                failure.check.as_str(),
                failure.container.as_str(),
            );
            let entry = (
                failure.severity.as_str(),
                failure.message.as_str(),
                &failure.evidence,
            );
            match rows.get(&key) {
                Some((severity, _, _)) if Severity::parse(severity) >= Some(failure.severity) => {}
                _ => {
                    rows.insert(key, entry);
                }
            }
        }
    }
    let rows: Vec<OpenRow<'_>> = rows
        .into_iter()
        .map(
            |((workload_id, check, container), (severity, message, evidence))| OpenRow {
                workload_id,
                check,
                container,
                severity,
                message,
                evidence,
            },
        )
        .collect();
    upsert_open(conn, &rows).await?;

    // Resolve what was evaluated and not seen failing now. Findings of runtime events are not
    // the spec's to resolve: the run-stage monitor does (crate::runtime).
    let scope_ids: Vec<i64> = evaluations.iter().map(|e| e.workload_id).collect();
    let scope_containers: Vec<Option<String>> = evaluations
        .iter()
        .map(|e| e.container_scope.clone())
        .collect();
    sqlx::query!(
        r#"update findings f set status = 'resolved', resolved_at = now(),
                                 resolved_reason = 'fixed'
           from unnest($1::int8[], $2::text[]) as s(workload_id, container)
           where f.workload_id = s.workload_id and f.status = 'open'
             and ((s.container is null and f.container <> $3) or f.container = s.container)
             and f.last_seen < now() and f.check_id <> all($4)"#,
        &scope_ids,
        &scope_containers as &[Option<String>],
        IMAGE_SCOPE,
        &crate::posture::catalog::event_check_ids()
    )
    .execute(&mut *conn)
    .await?;

    // The PSS level: the lowest level met by what was evaluated of each workload; written with
    // the scores (one row version per workload, not two).
    let mut levels: BTreeMap<i64, crate::posture::pss::PssLevel> = BTreeMap::new();
    for evaluation in evaluations {
        if let Some(level) = evaluation.pss_level {
            levels
                .entry(evaluation.workload_id)
                .and_modify(|l| *l = (*l).min(level))
                .or_insert(level);
        }
    }

    let ids: Vec<i64> = scope_ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    apply_waivers(conn, &ids, Utc::now()).await?;
    let levels: Vec<Option<String>> = ids
        .iter()
        .map(|id| levels.get(id).map(|l| l.as_str().to_string()))
        .collect();
    write_scores(conn, &ids, &levels).await
}

/// One FAIL to write as an open finding.
pub struct OpenRow<'a> {
    pub workload_id: i64,
    pub check: &'a str,
    pub container: &'a str,
    pub severity: &'a str,
    pub message: &'a str,
    pub evidence: &'a Value,
}

/// Opens these findings, or bumps `last_seen` (and refreshes severity, message, evidence) of the
/// open ones; the layer is the check's owning layer. At most one row per (workload, check,
/// container). Scores are not touched.
pub async fn upsert_open(conn: &mut PgConnection, rows: &[OpenRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(FINDING_BATCH) {
        let mut workload_ids = Vec::with_capacity(chunk.len());
        let mut checks = Vec::with_capacity(chunk.len());
        let mut containers = Vec::with_capacity(chunk.len());
        let mut severities = Vec::with_capacity(chunk.len());
        let mut layers = Vec::with_capacity(chunk.len());
        let mut messages = Vec::with_capacity(chunk.len());
        let mut evidence = Vec::with_capacity(chunk.len());
        for row in chunk {
            workload_ids.push(row.workload_id);
            checks.push(row.check.to_string());
            containers.push(row.container.to_string());
            severities.push(row.severity.to_string());
            let layer = crate::posture::catalog::find(row.check)
                .map(|meta| layer_str(meta.layer()))
                .unwrap_or("runtime");
            layers.push(layer.to_string());
            messages.push(row.message.to_string());
            evidence.push(row.evidence.clone());
        }
        sqlx::query!(
            r#"insert into findings (workload_id, check_id, container, severity, layer, message,
                                     evidence)
               select * from unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::text[], $7::jsonb[])
               on conflict (workload_id, check_id, container) where status = 'open'
               do update set last_seen = now(), severity = excluded.severity,
                             message = excluded.message, evidence = excluded.evidence"#,
            &workload_ids,
            &checks,
            &containers,
            &severities,
            &layers,
            &messages,
            &evidence
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Resolves the open findings of retired workloads with reason `retired`, and rescores them.
pub async fn close_retired(
    conn: &mut PgConnection,
    workload_ids: &[i64],
) -> Result<u64, sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(0);
    }
    let closed = sqlx::query!(
        r#"update findings set status = 'resolved', resolved_at = now(),
                               resolved_reason = 'retired'
           where workload_id = any($1) and status = 'open'"#,
        workload_ids
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    refresh_scores(conn, workload_ids).await?;
    Ok(closed)
}

/// Resolves, with reason `removed`, the open findings of containers that are gone from workloads
/// that still have live instances (a Compose service scaled down: the removed replica's findings
/// no longer describe anything running). Docker only: its findings are keyed by container name.
/// A workload with no live instance keeps its findings until it retires.
pub async fn close_removed_containers(
    conn: &mut PgConnection,
    workload_ids: &[i64],
) -> Result<u64, sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(0);
    }
    let closed = sqlx::query_scalar!(
        r#"update findings f set status = 'resolved', resolved_at = now(),
                                 resolved_reason = 'removed'
           where f.workload_id = any($1) and f.status = 'open' and f.container <> ''
             and f.container <> $2
             and exists (select 1 from instances i
                         where i.workload_id = f.workload_id and i.removed_at is null)
             and not exists (select 1 from instances i
                             where i.workload_id = f.workload_id and i.removed_at is null
                               and i.name = f.container)
           returning f.workload_id"#,
        workload_ids,
        IMAGE_SCOPE
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = closed.clone();
    ids.sort_unstable();
    ids.dedup();
    refresh_scores(conn, &ids).await?;
    Ok(closed.len() as u64)
}

/// Points each open finding of these workloads at the approved waiver (unexpired at `now`) that
/// covers it, or at none. With several, the one expiring last wins.
pub async fn apply_waivers(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(());
    }
    // Most of the time no waiver is active: then only clear what an earlier one marked.
    let any_active = sqlx::query_scalar!(
        r#"select exists(select 1 from waivers where status = 'approved' and expires_at > $1)
           as "any!""#,
        now
    )
    .fetch_one(&mut *conn)
    .await?;
    if !any_active {
        sqlx::query!(
            r#"update findings set waiver_id = null
               where workload_id = any($1) and status = 'open' and waiver_id is not null"#,
            workload_ids
        )
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    sqlx::query!(
        r#"with covering as (
               select f.id, (select v.id from waivers v
                             where v.status = 'approved' and v.expires_at > $2
                               and v.check_id = f.check_id
                               and (v.workload_id = f.workload_id
                                    or (v.workload_id is null and v.namespace is not null
                                        and v.namespace = w.namespace
                                        and (v.source_id is null or v.source_id = w.source_id))
                                    or (v.workload_id is null and v.namespace is null
                                        and v.source_id = w.source_id))
                             order by v.expires_at desc, v.id desc limit 1) as waiver_id
               from findings f join workloads w on w.id = f.workload_id
               where f.workload_id = any($1) and f.status = 'open'
           )
           update findings f set waiver_id = c.waiver_id
           from covering c
           where f.id = c.id and f.waiver_id is distinct from c.waiver_id"#,
        workload_ids,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Recomputes the counts, worst severity, grade and risk of these workloads from their open,
/// non-waived findings.
pub async fn refresh_scores(
    conn: &mut PgConnection,
    workload_ids: &[i64],
) -> Result<(), sqlx::Error> {
    write_scores(conn, workload_ids, &vec![None; workload_ids.len()]).await
}

/// [`refresh_scores`], also setting the PSS level of the workloads whose `levels` entry (in the
/// order of `workload_ids`) is known.
async fn write_scores(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    levels: &[Option<String>],
) -> Result<(), sqlx::Error> {
    if workload_ids.is_empty() {
        return Ok(());
    }
    let level_of: std::collections::HashMap<i64, Option<String>> = workload_ids
        .iter()
        .copied()
        .zip(levels.iter().cloned())
        .collect();
    let rows = sqlx::query!(
        r#"select t.id as "id!",
                  count(f.id) filter (where f.severity = 'critical') as "critical!",
                  count(f.id) filter (where f.severity = 'high') as "high!",
                  count(f.id) filter (where f.severity = 'medium') as "medium!",
                  count(f.id) filter (where f.severity = 'low') as "low!",
                  count(f.id) filter (where f.severity = 'info') as "info!"
           from unnest($1::int8[]) as t(id)
           left join findings f on f.workload_id = t.id and f.status = 'open'
                                and f.waiver_id is null
           group by t.id"#,
        workload_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let n = rows.len();
    let (mut ids, mut critical, mut high, mut medium, mut low, mut info) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut grades, mut worst, mut risks, mut pss) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in rows {
        let counts = SeverityCounts {
            critical: row.critical as u32,
            high: row.high as u32,
            medium: row.medium as u32,
            low: row.low as u32,
            info: row.info as u32,
        };
        ids.push(row.id);
        critical.push(row.critical as i32);
        high.push(row.high as i32);
        medium.push(row.medium as i32);
        low.push(row.low as i32);
        info.push(row.info as i32);
        grades.push(grade(&counts).as_str().to_string());
        worst.push(counts.worst().map(|s| s.as_str().to_string()));
        risks.push(risk_score(&counts));
        pss.push(level_of.get(&row.id).cloned().flatten());
    }
    sqlx::query!(
        r#"update workloads w set findings_critical = t.critical, findings_high = t.high,
                  findings_medium = t.medium, findings_low = t.low, findings_info = t.info,
                  grade = t.grade, worst_severity = t.worst, risk_score = t.risk,
                  pss_level = coalesce(t.pss, w.pss_level), posture_at = now()
           from unnest($1::int8[], $2::int4[], $3::int4[], $4::int4[], $5::int4[], $6::int4[],
                       $7::text[], $8::text[], $9::int4[], $10::text[])
                as t(id, critical, high, medium, low, info, grade, worst, risk, pss)
           where w.id = t.id
             -- An unchanged score is not rewritten: a row version less per workload and sync.
             and (w.findings_critical, w.findings_high, w.findings_medium, w.findings_low,
                  w.findings_info, w.grade, w.worst_severity, w.risk_score, w.pss_level)
                 is distinct from
                 (t.critical, t.high, t.medium, t.low, t.info, t.grade, t.worst, t.risk,
                  coalesce(t.pss, w.pss_level))"#,
        &ids,
        &critical,
        &high,
        &medium,
        &low,
        &info,
        &grades,
        &worst as &[Option<String>],
        &risks,
        &pss as &[Option<String>]
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
