//! Incidents, their timeline (also the action queue), the saved pre-states and the evidence.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};

use super::workflow::{self, GuardError, Override, State, Step};
use super::{Outcome, Saved, Target};

/// An action left running by a server that died is resumed this many times at most, then
/// marked failed.
pub const MAX_ATTEMPTS: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no such incident")]
    NotFound,
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("an isolate or restore action of this incident is still in progress")]
    Busy,
    #[error("{0}")]
    Invalid(String),
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub origin: String,
    pub assignee: Option<String>,
    pub opened_by: String,
    pub analysis_notes: String,
    pub attack_path: String,
    pub fixed_findings: Vec<i64>,
    pub fixed_digest: Option<String>,
    pub finding_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Action {
    pub id: i64,
    pub incident_id: i64,
    pub kind: String,
    pub status: String,
    pub actor: String,
    pub note: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub request: Value,
    pub result: Value,
    pub error: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AffectedWorkload {
    pub id: i64,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EvidenceSummary {
    pub id: i64,
    pub kind: String,
    pub instance: Option<String>,
    pub sha256: String,
    pub bytes: i32,
    pub captured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TargetSummary {
    pub id: i64,
    pub instance_id: i64,
    pub driver: String,
    pub name: String,
    pub method: String,
    pub pre_state: Value,
    pub isolated_at: Option<DateTime<Utc>>,
    pub restored_at: Option<DateTime<Utc>>,
}

/// What opening an incident needs.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub severity: String,
    pub assignee: Option<String>,
    pub opened_by: String,
    pub workload_ids: Vec<i64>,
    pub finding_ids: Vec<i64>,
    pub note: String,
    pub idempotency_key: Option<String>,
}

/// A step someone asked for.
#[derive(Debug, Clone, Default)]
pub struct StepRequest {
    pub actor: String,
    pub note: String,
    pub idempotency_key: Option<String>,
    /// Restore before fix: the reason, and whether the actor is an admin.
    pub override_reason: Option<String>,
    pub by_admin: bool,
    pub analysis_notes: Option<String>,
    pub attack_path: Option<String>,
    pub fixed_findings: Vec<i64>,
    pub fixed_digest: Option<String>,
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// Opens an incident (once per idempotency key). Returns it and whether it is new.
pub async fn open(pool: &PgPool, new: NewIncident) -> Result<(Incident, bool), IncidentError> {
    if new.title.trim().is_empty() {
        return Err(IncidentError::Invalid("an incident needs a title".into()));
    }
    if !SEVERITIES.contains(&new.severity.as_str()) {
        return Err(IncidentError::Invalid(format!(
            "severity must be one of {}",
            SEVERITIES.join(", ")
        )));
    }
    let mut tx = pool.begin().await?;
    if let Some(key) = &new.idempotency_key {
        let existing =
            sqlx::query_scalar!("select id from incidents where idempotency_key = $1", key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = existing {
            tx.commit().await?;
            return Ok((get(pool, id).await?, false));
        }
    }
    let known = sqlx::query_scalar!(
        "select count(*) from workloads where id = any($1)",
        &new.workload_ids
    )
    .fetch_one(&mut *tx)
    .await?
    .unwrap_or(0);
    let mut wanted = new.workload_ids.clone();
    wanted.sort_unstable();
    wanted.dedup();
    if known != wanted.len() as i64 {
        return Err(IncidentError::Invalid(
            "an affected workload does not exist".into(),
        ));
    }
    // An incident opened from findings is about their workloads too: they can be isolated
    // without being named again.
    let mut findings = new.finding_ids.clone();
    findings.sort_unstable();
    findings.dedup();
    if !findings.is_empty() {
        let rows = sqlx::query!(
            "select id, workload_id from findings where id = any($1)",
            &findings
        )
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = findings
            .iter()
            .find(|id| !rows.iter().any(|row| row.id == **id))
        {
            return Err(IncidentError::Invalid(format!(
                "finding {missing} does not exist"
            )));
        }
        wanted.extend(rows.iter().map(|row| row.workload_id));
        wanted.sort_unstable();
        wanted.dedup();
    }
    let origin = if !new.finding_ids.is_empty() {
        "finding"
    } else if !wanted.is_empty() {
        "workload"
    } else {
        "manual"
    };
    let id = sqlx::query_scalar!(
        r#"insert into incidents (title, severity, origin, assignee, opened_by, finding_ids, idempotency_key)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict on constraint incidents_idempotency_key do nothing
           returning id"#,
        new.title.trim(),
        new.severity,
        origin,
        new.assignee,
        new.opened_by,
        &findings,
        new.idempotency_key,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        // A concurrent request with the same key won.
        tx.rollback().await?;
        let id = sqlx::query_scalar!(
            "select id from incidents where idempotency_key = $1",
            new.idempotency_key
        )
        .fetch_one(pool)
        .await?;
        return Ok((get(pool, id).await?, false));
    };
    sqlx::query!(
        "insert into incident_workloads (incident_id, workload_id) select $1, unnest($2::bigint[])",
        id,
        &wanted
    )
    .execute(&mut *tx)
    .await?;
    // Who owned the affected workloads when it happened: kept, whatever ownership does later.
    let owners = crate::ownership::store::owners_snapshot(&mut tx, &wanted).await?;
    sqlx::query!(
        "update incidents set owners_at_open = $2 where id = $1",
        id,
        owners
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"insert into incident_actions (incident_id, kind, status, actor, note, to_state, request, started_at, finished_at)
           values ($1, 'open', 'succeeded', $2, $3, 'open', $4, now(), now())"#,
        id,
        new.opened_by,
        new.note,
        json!({"workloads": wanted, "findings": findings, "severity": new.severity}),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((get(pool, id).await?, true))
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Incident, IncidentError> {
    sqlx::query_as!(
        Incident,
        r#"select id, title, severity, state, origin, assignee, opened_by, analysis_notes,
                  attack_path, fixed_findings, fixed_digest, finding_ids, created_at, updated_at,
                  closed_at
           from incidents where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(IncidentError::NotFound)
}

/// Every incident, the unfinished ones first, newest first.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Incident>, sqlx::Error> {
    sqlx::query_as!(
        Incident,
        r#"select id, title, severity, state, origin, assignee, opened_by, analysis_notes,
                  attack_path, fixed_findings, fixed_digest, finding_ids, created_at, updated_at,
                  closed_at
           from incidents order by (state = 'closed'), id desc limit 500"#
    )
    .fetch_all(db)
    .await
}

pub async fn workloads(
    db: impl PgExecutor<'_>,
    incident_id: i64,
) -> Result<Vec<AffectedWorkload>, sqlx::Error> {
    sqlx::query_as!(
        AffectedWorkload,
        r#"select w.id, w.kind, w.namespace, w.name
           from incident_workloads iw join workloads w on w.id = iw.workload_id
           where iw.incident_id = $1 order by w.id"#,
        incident_id
    )
    .fetch_all(db)
    .await
}

/// The timeline, oldest first.
pub async fn actions(
    db: impl PgExecutor<'_>,
    incident_id: i64,
) -> Result<Vec<Action>, sqlx::Error> {
    sqlx::query_as!(
        Action,
        r#"select id, incident_id, kind, status, actor, note, from_state, to_state, request,
                  result, error, attempts, created_at, started_at, finished_at
           from incident_actions where incident_id = $1 order by id"#,
        incident_id
    )
    .fetch_all(db)
    .await
}

pub async fn action(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Action>, sqlx::Error> {
    sqlx::query_as!(
        Action,
        r#"select id, incident_id, kind, status, actor, note, from_state, to_state, request,
                  result, error, attempts, created_at, started_at, finished_at
           from incident_actions where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn evidence(
    db: impl PgExecutor<'_>,
    incident_id: i64,
) -> Result<Vec<EvidenceSummary>, sqlx::Error> {
    sqlx::query_as!(
        EvidenceSummary,
        r#"select e.id, e.kind, t.name as "instance?", e.sha256,
                  octet_length(e.content::text) as "bytes!", e.captured_at
           from incident_evidence e left join incident_targets t on t.id = e.target_id
           where e.incident_id = $1 order by e.id"#,
        incident_id
    )
    .fetch_all(db)
    .await
}

/// One piece of evidence's content.
pub async fn evidence_content(
    db: impl PgExecutor<'_>,
    incident_id: i64,
    id: i64,
) -> Result<Option<Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "select content from incident_evidence where incident_id = $1 and id = $2",
        incident_id,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn targets(
    db: impl PgExecutor<'_>,
    incident_id: i64,
) -> Result<Vec<TargetSummary>, sqlx::Error> {
    sqlx::query_as!(
        TargetSummary,
        r#"select id, instance_id, driver, name, method, pre_state, isolated_at, restored_at
           from incident_targets where incident_id = $1 order by id"#,
        incident_id
    )
    .fetch_all(db)
    .await
}

/// Records a step: workflow steps apply at once; isolate and restore are queued for the worker.
/// The same idempotency key returns the action it first created (a double click acts once).
pub async fn request_step(
    pool: &PgPool,
    incident_id: i64,
    step: Step,
    request: StepRequest,
) -> Result<(Action, bool), IncidentError> {
    let mut tx = pool.begin().await?;
    let state = sqlx::query_scalar!(
        "select state from incidents where id = $1 for update",
        incident_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(IncidentError::NotFound)?;
    if let Some(key) = &request.idempotency_key {
        let existing = sqlx::query_scalar!(
            "select id from incident_actions where incident_id = $1 and idempotency_key = $2",
            incident_id,
            key
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            tx.commit().await?;
            let action = action(pool, id).await?.ok_or(IncidentError::NotFound)?;
            return Ok((action, false));
        }
    }
    let pending = sqlx::query_scalar!(
        r#"select exists(select 1 from incident_actions
           where incident_id = $1 and status in ('queued', 'running')) as "pending!""#,
        incident_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if pending {
        return Err(IncidentError::Busy);
    }
    let from = State::parse(&state)
        .ok_or_else(|| IncidentError::Invalid(format!("unknown incident state {state}")))?;
    let over = request.override_reason.as_ref().map(|reason| Override {
        by_admin: request.by_admin,
        reason: reason.clone(),
    });
    let to = workflow::next(from, step, over.as_ref())?;
    let overridden = step == Step::Restore && from != State::Fixed;
    let details = json!({
        "override_reason": if overridden { request.override_reason.clone() } else { None },
        "analysis_notes": request.analysis_notes,
        "attack_path": request.attack_path,
        "fixed_findings": request.fixed_findings,
        "fixed_digest": request.fixed_digest,
    });
    let id = if step.is_engine_action() {
        sqlx::query_scalar!(
            r#"insert into incident_actions
                 (incident_id, kind, status, actor, note, idempotency_key, from_state, request)
               values ($1, $2, 'queued', $3, $4, $5, $6, $7) returning id"#,
            incident_id,
            step.as_str(),
            request.actor,
            request.note,
            request.idempotency_key,
            from.as_str(),
            details,
        )
        .fetch_one(&mut *tx)
        .await?
    } else {
        if step == Step::Fix && request.fixed_findings.is_empty() && request.fixed_digest.is_none()
        {
            return Err(IncidentError::Invalid(
                "a fix links the findings it resolved or the image digest deployed".into(),
            ));
        }
        sqlx::query!(
            r#"update incidents set
                 state = $2,
                 analysis_notes = case when $3::text is null then analysis_notes
                                       when analysis_notes = '' then $3
                                       else analysis_notes || E'\n\n' || $3 end,
                 attack_path = coalesce($4, attack_path),
                 fixed_findings = fixed_findings || $5,
                 fixed_digest = coalesce($6, fixed_digest),
                 closed_at = case when $2 = 'closed' then now() else closed_at end,
                 updated_at = now()
               where id = $1"#,
            incident_id,
            to.as_str(),
            request.analysis_notes,
            request.attack_path,
            &request.fixed_findings,
            request.fixed_digest,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar!(
            r#"insert into incident_actions
                 (incident_id, kind, status, actor, note, idempotency_key, from_state, to_state,
                  request, started_at, finished_at)
               values ($1, $2, 'succeeded', $3, $4, $5, $6, $7, $8, now(), now()) returning id"#,
            incident_id,
            step.as_str(),
            request.actor,
            request.note,
            request.idempotency_key,
            from.as_str(),
            to.as_str(),
            details,
        )
        .fetch_one(&mut *tx)
        .await?
    };
    tx.commit().await?;
    let action = action(pool, id).await?.ok_or(IncidentError::NotFound)?;
    Ok((action, true))
}

/// Takes the oldest queued action and marks it running for the replica `holder` (skipping rows
/// another worker holds).
pub async fn claim_next(pool: &PgPool, holder: &str) -> Result<Option<Action>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_scalar!(
        r#"select id from incident_actions where status = 'queued'
           order by id limit 1 for update skip locked"#
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Ok(None);
    };
    sqlx::query!(
        r#"update incident_actions set status = 'running', started_at = now(),
             attempts = attempts + 1, claimed_by = $2, heartbeat_at = now()
           where id = $1"#,
        id,
        holder
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    action(pool, id).await
}

/// The replica running action `id` is alive; `false` when the action is no longer its own
/// (another replica took it over after missed heartbeats).
pub async fn heartbeat(pool: &PgPool, id: i64, holder: &str) -> Result<bool, sqlx::Error> {
    let beat = sqlx::query!(
        r#"update incident_actions set heartbeat_at = now()
           where id = $1 and claimed_by = $2 and status = 'running'"#,
        id,
        holder
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(beat == 1)
}

/// Records how an engine action ended and moves the incident on.
pub async fn finish(pool: &PgPool, action: &Action, outcome: &Outcome) -> Result<(), sqlx::Error> {
    let succeeded = outcome.failures.is_empty();
    let mut tx = pool.begin().await?;
    let state = sqlx::query_scalar!(
        "select state from incidents where id = $1 for update",
        action.incident_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let to = match action.kind.as_str() {
        // A partial isolation still isolates: restore must be able to undo it.
        "isolate" if state == "open" && outcome.touched => "isolated".to_string(),
        "restore" if succeeded => "restored".to_string(),
        _ => state,
    };
    sqlx::query!(
        "update incidents set state = $2, updated_at = now() where id = $1",
        action.incident_id,
        to
    )
    .execute(&mut *tx)
    .await?;
    let error = (!succeeded).then(|| outcome.failures.join("; "));
    crate::auth::audit::record(
        &mut *tx,
        crate::auth::audit::Actor::system("incident-worker"),
        &format!("incident.{}.finished", action.kind),
        &format!("incident {}", action.incident_id),
        if succeeded {
            crate::auth::audit::Outcome::Success
        } else {
            crate::auth::audit::Outcome::Failure
        },
        None,
        json!({"action": action.id, "requested_by": action.actor, "instances": outcome.results.len(), "failures": outcome.failures, "warnings": outcome.warnings}),
    )
    .await?;
    sqlx::query!(
        r#"update incident_actions set status = $2, result = $3, error = $4, to_state = $5,
             finished_at = now()
           where id = $1"#,
        action.id,
        if succeeded { "succeeded" } else { "failed" },
        json!({"instances": outcome.results, "failures": outcome.failures,
               "warnings": outcome.warnings}),
        error,
        to,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Actions whose replica stopped heart-beating for `stale_after` (it died; with several replicas
/// the others' actions are left alone) are queued again — they are idempotent and re-read the
/// saved pre-state — until [`MAX_ATTEMPTS`], then marked failed with the reason. Every worker
/// runs this on start and then periodically.
pub async fn recover_interrupted(
    pool: &PgPool,
    stale_after: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let stale_after = stale_after.as_secs_f64();
    let resumed = sqlx::query!(
        r#"update incident_actions set status = 'queued', claimed_by = null, heartbeat_at = null,
             result = result || jsonb_build_object('resumed_after_restart', attempts)
           where status = 'running' and attempts < $1
             and coalesce(heartbeat_at, started_at, '-infinity')
                 < now() - make_interval(secs => $2)"#,
        MAX_ATTEMPTS,
        stale_after
    )
    .execute(pool)
    .await?
    .rows_affected();
    let failed = sqlx::query!(
        r#"update incident_actions set status = 'failed', finished_at = now(),
             error = 'the server stopped while this action ran, ' || attempts || ' times; not retried again'
           where status = 'running'
             and coalesce(heartbeat_at, started_at, '-infinity')
                 < now() - make_interval(secs => $1)"#,
        stale_after
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(resumed + failed)
}

/// The live instances of the incident's workloads, with their source.
pub async fn live_targets(pool: &PgPool, incident_id: i64) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as!(
        Target,
        r#"select $1::int8 as "incident_id!", i.id as instance_id, s.kind as source_kind,
                  s.name as source_name, s.endpoint as source_endpoint,
                  i.external_id, i.name, w.namespace
           from incident_workloads iw
           join workloads w on w.id = iw.workload_id
           join instances i on i.workload_id = w.id and i.removed_at is null
           join sources s on s.id = i.source_id
           where iw.incident_id = $1
           order by i.id"#,
        incident_id
    )
    .fetch_all(pool)
    .await
}

/// The saved pre-state of an instance in this incident: (target id, saved, isolated).
pub async fn saved_target(
    pool: &PgPool,
    incident_id: i64,
    instance_id: i64,
) -> Result<Option<(i64, Saved, bool)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select id, method, pre_state, isolated_at from incident_targets
           where incident_id = $1 and instance_id = $2"#,
        incident_id,
        instance_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        (
            row.id,
            Saved {
                method: row.method,
                pre_state: row.pre_state,
                document: Value::Null,
            },
            row.isolated_at.is_some(),
        )
    }))
}

/// Saves the pre-state before anything changes (kept if one was saved already).
pub async fn save_target(
    pool: &PgPool,
    incident_id: i64,
    target: &Target,
    saved: &Saved,
) -> Result<i64, sqlx::Error> {
    sqlx::query!(
        r#"insert into incident_targets
             (incident_id, instance_id, driver, external_id, name, method, pre_state)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict on constraint incident_targets_instance_key do nothing"#,
        incident_id,
        target.instance_id,
        target.source_kind,
        target.external_id,
        target.name,
        saved.method,
        saved.pre_state,
    )
    .execute(pool)
    .await?;
    sqlx::query_scalar!(
        "select id from incident_targets where incident_id = $1 and instance_id = $2",
        incident_id,
        target.instance_id
    )
    .fetch_one(pool)
    .await
}

pub async fn mark_isolated(
    pool: &PgPool,
    target_id: i64,
    verification: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update incident_targets set isolated_at = now(), isolation = $2 where id = $1",
        target_id,
        verification
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_restored(
    pool: &PgPool,
    target_id: i64,
    verification: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update incident_targets set restored_at = now(), restoration = $2 where id = $1",
        target_id,
        verification
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Instances isolated (or half-isolated) and not restored yet, with their saved pre-state.
pub async fn unrestored_targets(
    pool: &PgPool,
    incident_id: i64,
) -> Result<Vec<(i64, Target, Saved)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select t.id, t.instance_id, t.driver, t.external_id, t.name, t.method, t.pre_state,
                  s.name as source_name, s.endpoint, w.namespace
           from incident_targets t
           join instances i on i.id = t.instance_id
           join sources s on s.id = i.source_id
           join workloads w on w.id = i.workload_id
           where t.incident_id = $1 and t.restored_at is null
           order by t.id"#,
        incident_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.id,
                Target {
                    incident_id,
                    instance_id: row.instance_id,
                    source_kind: row.driver,
                    source_name: row.source_name,
                    source_endpoint: row.endpoint,
                    external_id: row.external_id,
                    name: row.name,
                    namespace: row.namespace,
                },
                Saved {
                    method: row.method,
                    pre_state: row.pre_state,
                    document: Value::Null,
                },
            )
        })
        .collect())
}

pub async fn has_evidence(pool: &PgPool, target_id: i64, kind: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from incident_evidence where target_id = $1 and kind = $2) as "present!""#,
        target_id,
        kind
    )
    .fetch_one(pool)
    .await
}

pub async fn add_evidence(
    pool: &PgPool,
    incident_id: i64,
    target_id: Option<i64>,
    kind: &str,
    content: &Value,
) -> Result<(), sqlx::Error> {
    let sha256 = hex::encode(Sha256::digest(content.to_string().as_bytes()));
    sqlx::query!(
        r#"insert into incident_evidence (incident_id, target_id, kind, content, sha256)
           values ($1, $2, $3, $4, $5)"#,
        incident_id,
        target_id,
        kind,
        content,
        sha256
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// What an isolation would touch, for the confirmation text: every live instance with its
/// source kind, namespace, and (Docker) network mode and networks attached.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PlannedTarget {
    pub name: String,
    pub source_kind: String,
    pub namespace: String,
    pub network_mode: Option<String>,
    pub networks: Vec<String>,
}

pub async fn isolation_plan(
    pool: &PgPool,
    incident_id: i64,
) -> Result<Vec<PlannedTarget>, sqlx::Error> {
    let workloads = sqlx::query_scalar!(
        "select workload_id from incident_workloads where incident_id = $1",
        incident_id
    )
    .fetch_all(pool)
    .await?;
    workloads_isolation_plan(pool, &workloads).await
}

/// [`isolation_plan`] for workloads before an incident exists (the workload page's button).
pub async fn workloads_isolation_plan(
    pool: &PgPool,
    workload_ids: &[i64],
) -> Result<Vec<PlannedTarget>, sqlx::Error> {
    sqlx::query_as!(
        PlannedTarget,
        r#"select i.name, s.kind as source_kind, w.namespace,
                  i.raw #>> '{HostConfig,NetworkMode}' as network_mode,
                  coalesce(array(select jsonb_object_keys(
                      coalesce(i.raw #> '{NetworkSettings,Networks}', '{}'::jsonb)) order by 1),
                      '{}') as "networks!"
           from workloads w
           join instances i on i.workload_id = w.id and i.removed_at is null
           join sources s on s.id = i.source_id
           where w.id = any($1)
           order by i.id"#,
        workload_ids
    )
    .fetch_all(pool)
    .await
}

/// A finding an incident was opened from, with its workload and check.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LinkedFinding {
    pub id: i64,
    pub check_id: String,
    pub container: String,
    pub severity: String,
    pub status: String,
    pub message: String,
    pub workload_id: i64,
    pub workload_kind: String,
    pub workload_namespace: String,
    pub workload_name: String,
}

pub async fn linked_findings(
    db: impl PgExecutor<'_>,
    finding_ids: &[i64],
) -> Result<Vec<LinkedFinding>, sqlx::Error> {
    sqlx::query_as!(
        LinkedFinding,
        r#"select f.id, f.check_id, f.container, f.severity, f.status, f.message,
                  w.id as workload_id, w.kind as workload_kind,
                  w.namespace as workload_namespace, w.name as workload_name
           from findings f join workloads w on w.id = f.workload_id
           where f.id = any($1) order by f.id"#,
        finding_ids
    )
    .fetch_all(db)
    .await
}
