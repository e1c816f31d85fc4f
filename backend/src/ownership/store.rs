//! Ownership in the database: teams, members, rules, assignments, and [`resolve`], which keeps
//! `workload_owners`, `workloads.owned_layers` and `owner_history` current for a batch of
//! workloads with a handful of statements per [`RESOLVE_BATCH`] workloads, whatever their number.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::{Assignment, Resolver, Rule, RuleKind, Subject, Team, LAYERS, TEAM_KINDS};

/// Workloads resolved per round of statements.
pub const RESOLVE_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What one [`resolve`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Workloads looked at.
    pub workloads: usize,
    /// Owner rows changed (team, rule or provenance), added or removed.
    pub changed: usize,
    /// Of those, changes of the owning team (one history row each).
    pub reassigned: usize,
}

/// The configured label keys, as the last start wrote them.
pub async fn label_keys(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar!("select label_keys from ownership_settings")
            .fetch_optional(db)
            .await?
            .unwrap_or_default(),
    )
}

/// Who the configuration file's rules are recorded as created by.
pub const CONFIGURED_BY: &str = "harbormaster.toml";

/// A rule as stored: kind, key, value, source, layer, team.
type RuleRow = (String, String, String, Option<i64>, Option<String>, i64);

/// Creates the teams of the configuration file that do not exist yet, and makes the rules it
/// records as [`CONFIGURED_BY`] exactly the file's; when they changed, every workload is resolved
/// again. A rule naming a team that does not exist is refused; a `source_default` rule whose
/// source has not been collected yet waits for the next start. Returns the resolution when owners
/// were resolved again.
pub async fn apply_configured(
    conn: &mut PgConnection,
    teams: &[crate::config::ConfiguredTeam],
    rules: &[crate::config::ConfiguredRule],
) -> Result<Option<Resolution>, OwnershipError> {
    // Replicas starting together apply the file one after the other.
    sqlx::query!("select pg_advisory_xact_lock(7120003)")
        .execute(&mut *conn)
        .await?;
    for team in teams {
        if find_team(&mut *conn, &team.name).await?.is_none() {
            create_team(&mut *conn, &team.name, &team.kind, &team.contact).await?;
        }
    }
    let mut wanted: Vec<NewRule> = Vec::new();
    for (n, rule) in rules.iter().enumerate() {
        let team = find_team(&mut *conn, &rule.team).await?.ok_or_else(|| {
            OwnershipError::Invalid(format!(
                "ownership rule {} of the configuration names team '{}', which does not exist",
                n + 1,
                rule.team
            ))
        })?;
        let source_id = match &rule.source {
            Some(name) => {
                let id = sqlx::query_scalar!("select id from sources where name = $1", name)
                    .fetch_optional(&mut *conn)
                    .await?;
                if id.is_none() {
                    tracing::warn!(
                        rule = n + 1,
                        source = %name,
                        "an ownership rule of the configuration names a source not collected yet; it applies from the next start"
                    );
                    continue;
                }
                id
            }
            None => None,
        };
        wanted.push(NewRule {
            // As stored, so that an unchanged file compares equal.
            kind: RuleKind::parse(&rule.kind)
                .map_or_else(|| rule.kind.clone(), |k| k.as_str().into()),
            key: rule.key.trim().to_string(),
            value: rule.value.trim().to_string(),
            source_id,
            layer: rule.layer.clone(),
            team_id: team.id,
        });
    }
    let row = |r: &NewRule| -> RuleRow {
        (
            r.kind.clone(),
            r.key.clone(),
            r.value.clone(),
            r.source_id,
            r.layer.clone(),
            r.team_id,
        )
    };
    let mut stored: Vec<RuleRow> = sqlx::query!(
        "select kind, key, value, source_id, layer, team_id from ownership_rules
             where created_by = $1",
        CONFIGURED_BY
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.kind, r.key, r.value, r.source_id, r.layer, r.team_id))
    .collect();
    stored.sort();
    let mut sorted: Vec<RuleRow> = wanted.iter().map(row).collect();
    sorted.sort();
    if stored == sorted {
        return Ok(None);
    }
    sqlx::query!(
        "delete from ownership_rules where created_by = $1",
        CONFIGURED_BY
    )
    .execute(&mut *conn)
    .await?;
    for new in &wanted {
        insert_rule(conn, new, CONFIGURED_BY).await?;
    }
    Ok(Some(
        resolve_all(conn, "the ownership rules of the configuration changed").await?,
    ))
}

/// Stores the configured label keys; when they changed, every workload is resolved again.
pub async fn apply_label_keys(
    conn: &mut PgConnection,
    keys: &[String],
) -> sqlx::Result<Option<Resolution>> {
    let current = label_keys(&mut *conn).await?;
    if current == keys {
        return Ok(None);
    }
    sqlx::query!(
        r#"insert into ownership_settings (id, label_keys) values (true, $1)
           on conflict (id) do update set label_keys = excluded.label_keys, updated_at = now()"#,
        keys
    )
    .execute(&mut *conn)
    .await?;
    Ok(Some(
        resolve_all(conn, "the ownership label keys changed").await?,
    ))
}

pub async fn teams(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Team>> {
    sqlx::query_as!(
        Team,
        "select id, name, kind, contact, created_at from teams order by lower(name)"
    )
    .fetch_all(db)
    .await
}

pub async fn team(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<Team>> {
    sqlx::query_as!(
        Team,
        "select id, name, kind, contact, created_at from teams where id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// A team by id (`12`) or by name (case-insensitive).
pub async fn find_team(db: impl PgExecutor<'_>, given: &str) -> sqlx::Result<Option<Team>> {
    let id = given.trim().parse::<i64>().ok();
    sqlx::query_as!(
        Team,
        "select id, name, kind, contact, created_at from teams
         where id = $1 or lower(name) = lower($2) order by id = $1 desc limit 1",
        id,
        given.trim()
    )
    .fetch_optional(db)
    .await
}

pub async fn rules(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Rule>> {
    sqlx::query_as!(
        Rule,
        "select id, kind, key, value, source_id, layer, team_id, created_by, created_at
         from ownership_rules order by id"
    )
    .fetch_all(db)
    .await
}

/// Creates a team. A team named by a label key may own workloads at once: they are resolved.
pub async fn create_team(
    conn: &mut PgConnection,
    name: &str,
    kind: &str,
    contact: &str,
) -> Result<Team, OwnershipError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(OwnershipError::Invalid(
            "a team needs a name of 1 to 100 characters".into(),
        ));
    }
    if !TEAM_KINDS.contains(&kind) {
        return Err(OwnershipError::Invalid(format!(
            "kind '{kind}' is not one of {}",
            TEAM_KINDS.join(", ")
        )));
    }
    let team = sqlx::query_as!(
        Team,
        r#"insert into teams (name, kind, contact) values ($1, $2, $3)
           returning id, name, kind, contact, created_at"#,
        name,
        kind,
        contact.trim()
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.constraint() == Some("teams_name_key") => {
            OwnershipError::Conflict(format!("a team named '{name}' exists already"))
        }
        _ => OwnershipError::Db(err),
    })?;
    let keys = label_keys(&mut *conn).await?;
    let affected = sqlx::query_scalar!(
        r#"select w.id as "id!" from workloads w
           left join namespaces n on n.source_id = w.source_id and n.name = w.namespace
           where exists (select 1 from unnest($1::text[]) k
                         where lower(w.labels ->> k) = lower($2)
                            or lower(w.annotations ->> k) = lower($2)
                            or lower(n.labels ->> k) = lower($2)
                            or lower(n.annotations ->> k) = lower($2))"#,
        &keys,
        name
    )
    .fetch_all(&mut *conn)
    .await?;
    resolve(conn, &affected, &format!("team {name} created")).await?;
    Ok(team)
}

/// A member of a team.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Member {
    pub user_id: i64,
    pub name: String,
    pub role: String,
    pub added_at: DateTime<Utc>,
}

pub async fn members(db: impl PgExecutor<'_>, team_id: i64) -> sqlx::Result<Vec<Member>> {
    sqlx::query_as!(
        Member,
        r#"select u.id as user_id, u.name, u.role, m.added_at
           from team_members m join users u on u.id = m.user_id
           where m.team_id = $1 order by lower(u.name)"#,
        team_id
    )
    .fetch_all(db)
    .await
}

/// Adds a user (by name) to a team; returns the user's id.
pub async fn add_member(
    conn: &mut PgConnection,
    team_id: i64,
    user: &str,
) -> Result<i64, OwnershipError> {
    let user_id = sqlx::query_scalar!("select id from users where name = $1", user.trim())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| OwnershipError::Invalid(format!("there is no user '{}'", user.trim())))?;
    sqlx::query!(
        "insert into team_members (team_id, user_id) values ($1, $2) on conflict do nothing",
        team_id,
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(user_id)
}

pub async fn remove_member(
    conn: &mut PgConnection,
    team_id: i64,
    user_id: i64,
) -> Result<(), OwnershipError> {
    let removed = sqlx::query!(
        "delete from team_members where team_id = $1 and user_id = $2",
        team_id,
        user_id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(OwnershipError::NotFound(format!(
            "user {user_id} is not a member of team {team_id}"
        )));
    }
    Ok(())
}

/// The ids of the teams a user belongs to.
pub async fn teams_of_user(db: impl PgExecutor<'_>, user_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "select team_id from team_members where user_id = $1",
        user_id
    )
    .fetch_all(db)
    .await
}

/// A rule to create.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    pub kind: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub source_id: Option<i64>,
    /// `None`: every layer.
    pub layer: Option<String>,
    pub team_id: i64,
}

impl NewRule {
    fn validate(&self) -> Result<RuleKind, OwnershipError> {
        let kind = RuleKind::parse(&self.kind).ok_or_else(|| {
            OwnershipError::Invalid(format!(
                "kind '{}' is not one of workload_label, namespace_label, image_prefix, source_default",
                self.kind
            ))
        })?;
        if let Some(layer) = &self.layer {
            if !LAYERS.contains(&layer.as_str()) {
                return Err(OwnershipError::Invalid(format!(
                    "layer '{layer}' is not one of {}",
                    LAYERS.join(", ")
                )));
            }
        }
        match kind {
            RuleKind::WorkloadLabel | RuleKind::NamespaceLabel if self.key.trim().is_empty() => {
                Err(OwnershipError::Invalid(
                    "a label rule needs the label or annotation key".into(),
                ))
            }
            RuleKind::ImagePrefix if self.value.trim().is_empty() => Err(OwnershipError::Invalid(
                "an image prefix rule needs the prefix as its value".into(),
            )),
            RuleKind::SourceDefault if self.source_id.is_none() => Err(OwnershipError::Invalid(
                "a source default rule needs source_id".into(),
            )),
            _ => Ok(kind),
        }
    }
}

/// The workloads a rule may decide, or did: the candidates to resolve again when it comes or
/// goes. Set-based: one statement.
async fn affected_by_rule(conn: &mut PgConnection, rule: &Rule) -> sqlx::Result<Vec<i64>> {
    let mut ids = match RuleKind::parse(&rule.kind) {
        Some(RuleKind::WorkloadLabel) => {
            sqlx::query_scalar!(
                "select id from workloads where labels ? $1 or annotations ? $1",
                rule.key
            )
            .fetch_all(&mut *conn)
            .await?
        }
        Some(RuleKind::NamespaceLabel) => {
            sqlx::query_scalar!(
                r#"select w.id from workloads w
                   join namespaces n on n.source_id = w.source_id and n.name = w.namespace
                   where n.labels ? $1 or n.annotations ? $1"#,
                rule.key
            )
            .fetch_all(&mut *conn)
            .await?
        }
        Some(RuleKind::ImagePrefix) => {
            sqlx::query_scalar!(
                r#"select id from workloads
                   where exists (select 1 from unnest(images) i where starts_with(i, $1))"#,
                rule.value
            )
            .fetch_all(&mut *conn)
            .await?
        }
        Some(RuleKind::SourceDefault) => {
            sqlx::query_scalar!(
                "select id from workloads where source_id = $1",
                rule.source_id
            )
            .fetch_all(&mut *conn)
            .await?
        }
        None => Vec::new(),
    };
    ids.extend(
        sqlx::query_scalar!(
            "select workload_id from workload_owners where rule_id = $1",
            rule.id
        )
        .fetch_all(&mut *conn)
        .await?,
    );
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Creates a rule and resolves the workloads it may decide.
pub async fn create_rule(
    conn: &mut PgConnection,
    new: &NewRule,
    by: &str,
) -> Result<(Rule, Resolution), OwnershipError> {
    let rule = insert_rule(conn, new, by).await?;
    let affected = affected_by_rule(conn, &rule).await?;
    let resolution = resolve(conn, &affected, &format!("rule {} added", rule.id)).await?;
    Ok((rule, resolution))
}

/// Checks a rule and stores it, recorded as created `by`; owners are not resolved here.
async fn insert_rule(
    conn: &mut PgConnection,
    new: &NewRule,
    by: &str,
) -> Result<Rule, OwnershipError> {
    let (kind, source_id) = checked(conn, new).await?;
    Ok(sqlx::query_as!(
        Rule,
        r#"insert into ownership_rules (kind, key, value, source_id, layer, team_id, created_by)
           values ($1, $2, $3, $4, $5, $6, $7)
           returning id, kind, key, value, source_id, layer, team_id, created_by, created_at"#,
        kind.as_str(),
        new.key.trim(),
        new.value.trim(),
        source_id,
        new.layer,
        new.team_id,
        by
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// Changes a rule in place (its place in the order of rules of its kind stays) and resolves the
/// workloads it decided before or may decide now. Rules kept in the configuration file are
/// changed there.
pub async fn update_rule(
    conn: &mut PgConnection,
    id: i64,
    new: &NewRule,
) -> Result<(Rule, Resolution), OwnershipError> {
    let old = locked_rule(conn, id).await?;
    if old.created_by == CONFIGURED_BY {
        return Err(OwnershipError::Conflict(format!(
            "ownership rule {id} is kept in harbormaster.toml: change it there"
        )));
    }
    let (kind, source_id) = checked(conn, new).await?;
    let mut affected = affected_by_rule(conn, &old).await?;
    let rule = sqlx::query_as!(
        Rule,
        r#"update ownership_rules
           set kind = $2, key = $3, value = $4, source_id = $5, layer = $6, team_id = $7
           where id = $1
           returning id, kind, key, value, source_id, layer, team_id, created_by, created_at"#,
        id,
        kind.as_str(),
        new.key.trim(),
        new.value.trim(),
        source_id,
        new.layer,
        new.team_id
    )
    .fetch_one(&mut *conn)
    .await?;
    affected.extend(affected_by_rule(conn, &rule).await?);
    affected.sort_unstable();
    affected.dedup();
    let resolution = resolve(conn, &affected, &format!("rule {id} changed")).await?;
    Ok((rule, resolution))
}

/// Validates a rule against the catalog of kinds and layers and the teams and sources that
/// exist; returns the source it applies to (only a `source_default` rule has one).
async fn checked(
    conn: &mut PgConnection,
    new: &NewRule,
) -> Result<(RuleKind, Option<i64>), OwnershipError> {
    let kind = new.validate()?;
    if team(&mut *conn, new.team_id).await?.is_none() {
        return Err(OwnershipError::Invalid(format!(
            "there is no team {}",
            new.team_id
        )));
    }
    if let Some(source) = new.source_id {
        let exists =
            sqlx::query_scalar!("select exists(select 1 from sources where id = $1)", source)
                .fetch_one(&mut *conn)
                .await?;
        if exists != Some(true) {
            return Err(OwnershipError::Invalid(format!(
                "there is no source {source}"
            )));
        }
    }
    let source_id = (kind == RuleKind::SourceDefault)
        .then_some(new.source_id)
        .flatten();
    Ok((kind, source_id))
}

/// Rule `id`, locked until the transaction ends.
async fn locked_rule(conn: &mut PgConnection, id: i64) -> Result<Rule, OwnershipError> {
    sqlx::query_as!(
        Rule,
        r#"select id, kind, key, value, source_id, layer, team_id, created_by, created_at
           from ownership_rules where id = $1 for update"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| OwnershipError::NotFound(format!("there is no ownership rule {id}")))
}

/// Deletes a rule and resolves the workloads it decided or might have.
pub async fn delete_rule(
    conn: &mut PgConnection,
    id: i64,
) -> Result<(Rule, Resolution), OwnershipError> {
    let rule = locked_rule(conn, id).await?;
    let affected = affected_by_rule(conn, &rule).await?;
    sqlx::query!("delete from ownership_rules where id = $1", id)
        .execute(&mut *conn)
        .await?;
    let resolution = resolve(conn, &affected, &format!("rule {id} removed")).await?;
    Ok((rule, resolution))
}

/// Sets (`Some(team)`) or clears (`None`) the explicit assignment of layers of many workloads,
/// then resolves them. Unknown workloads or teams are refused.
pub async fn assign(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    changes: &[(&'static str, Option<i64>)],
    by: &str,
) -> Result<Resolution, OwnershipError> {
    let mut ids = workload_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let known = sqlx::query_scalar!(
        r#"select count(*) as "n!" from workloads where id = any($1)"#,
        &ids
    )
    .fetch_one(&mut *conn)
    .await?;
    if known != ids.len() as i64 {
        return Err(OwnershipError::NotFound(
            "a workload to assign does not exist".into(),
        ));
    }
    for (layer, team_id) in changes {
        match team_id {
            Some(team_id) => {
                if team(&mut *conn, *team_id).await?.is_none() {
                    return Err(OwnershipError::Invalid(format!(
                        "there is no team {team_id}"
                    )));
                }
                sqlx::query!(
                    r#"insert into owner_assignments (workload_id, layer, team_id, assigned_by)
                       select unnest($1::int8[]), $2, $3, $4
                       on conflict (workload_id, layer) do update
                       set team_id = excluded.team_id, assigned_by = excluded.assigned_by,
                           assigned_at = now()"#,
                    &ids,
                    layer,
                    team_id,
                    by
                )
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query!(
                    "delete from owner_assignments where workload_id = any($1) and layer = $2",
                    &ids,
                    layer
                )
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(resolve(conn, &ids, &format!("assignment by {by}")).await?)
}

/// Resolves every workload (after the label keys changed), in batches.
pub async fn resolve_all(conn: &mut PgConnection, cause: &str) -> sqlx::Result<Resolution> {
    let ids = sqlx::query_scalar!("select id from workloads order by id")
        .fetch_all(&mut *conn)
        .await?;
    resolve(conn, &ids, cause).await
}

/// The workloads of these namespaces of a source (their labels changed).
pub async fn workloads_in_namespaces(
    conn: &mut PgConnection,
    source_id: i64,
    namespaces: &[String],
) -> sqlx::Result<Vec<i64>> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar!(
        "select id from workloads where source_id = $1 and namespace = any($2)",
        source_id,
        namespaces
    )
    .fetch_all(conn)
    .await
}

/// Resolves the owners of these workloads (see [`crate::ownership`]) and writes what changed:
/// `workload_owners` rows (upserted / deleted), `workloads.owned_layers`, and an
/// `owner_history` row per change of owning team whose cause is `cause` and the new provenance.
/// Call it in the transaction that changed what ownership depends on.
pub async fn resolve(
    conn: &mut PgConnection,
    workload_ids: &[i64],
    cause: &str,
) -> sqlx::Result<Resolution> {
    let mut total = Resolution::default();
    if workload_ids.is_empty() {
        return Ok(total);
    }
    let teams = teams(&mut *conn).await?;
    let rules = rules(&mut *conn).await?;
    let keys = label_keys(&mut *conn).await?;
    let resolver = Resolver::new(&teams, &rules, &keys);
    for chunk in workload_ids.chunks(RESOLVE_BATCH) {
        let r = resolve_batch(conn, &resolver, chunk, cause).await?;
        total.workloads += r.workloads;
        total.changed += r.changed;
        total.reassigned += r.reassigned;
    }
    Ok(total)
}

async fn resolve_batch(
    conn: &mut PgConnection,
    resolver: &Resolver<'_>,
    ids: &[i64],
    cause: &str,
) -> sqlx::Result<Resolution> {
    let rows = sqlx::query!(
        r#"select w.id, w.source_id, s.name as source_name, w.namespace, w.labels,
                  w.annotations, w.images, w.owned_layers,
                  n.labels as "namespace_labels?", n.annotations as "namespace_annotations?"
           from workloads w join sources s on s.id = w.source_id
           left join namespaces n on n.source_id = w.source_id and n.name = w.namespace
                and n.removed_at is null
           where w.id = any($1)"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut assignments: HashMap<i64, Vec<Assignment>> = HashMap::new();
    for row in sqlx::query!(
        "select workload_id, layer, team_id, assigned_by from owner_assignments
         where workload_id = any($1)",
        ids
    )
    .fetch_all(&mut *conn)
    .await?
    {
        assignments
            .entry(row.workload_id)
            .or_default()
            .push(Assignment {
                layer: row.layer,
                team_id: row.team_id,
                assigned_by: row.assigned_by,
            });
    }
    let mut current: HashMap<(i64, String), StoredOwner> = HashMap::new();
    for row in sqlx::query!(
        "select workload_id, layer, team_id, via, rule_id, provenance from workload_owners
         where workload_id = any($1)",
        ids
    )
    .fetch_all(&mut *conn)
    .await?
    {
        current.insert(
            (row.workload_id, row.layer),
            (row.team_id, row.via, row.rule_id, row.provenance),
        );
    }

    let mut upsert = Upsert::default();
    let (mut del_ids, mut del_layers) = (Vec::new(), Vec::new());
    let mut history = History::default();
    let (mut count_ids, mut counts) = (Vec::new(), Vec::new());
    for row in rows {
        let subject = Subject {
            id: row.id,
            source_id: row.source_id,
            source_name: row.source_name,
            namespace: row.namespace,
            labels: row.labels,
            annotations: row.annotations,
            namespace_labels: row.namespace_labels,
            namespace_annotations: row.namespace_annotations,
            images: row.images,
            assignments: assignments.remove(&row.id).unwrap_or_default(),
        };
        let resolved = resolver.resolve(&subject);
        if resolved.len() as i32 != row.owned_layers {
            count_ids.push(row.id);
            counts.push(resolved.len() as i32);
        }
        for layer in LAYERS {
            let now = resolved.iter().find(|r| r.layer == layer);
            let before = current.remove(&(row.id, layer.to_string()));
            match (now, before) {
                (Some(now), before) => {
                    let same = before.as_ref().is_some_and(|(team, via, rule, prov)| {
                        *team == now.team_id
                            && via == now.via.as_str()
                            && *rule == now.rule_id
                            && *prov == now.provenance
                    });
                    if same {
                        continue;
                    }
                    let from = before.map(|(team, ..)| team);
                    if from != Some(now.team_id) {
                        history.push(
                            row.id,
                            layer,
                            from,
                            Some(now.team_id),
                            format!("{cause}: {}", now.provenance),
                        );
                    }
                    upsert.push(row.id, now);
                }
                (None, Some((team, ..))) => {
                    del_ids.push(row.id);
                    del_layers.push(layer.to_string());
                    history.push(
                        row.id,
                        layer,
                        Some(team),
                        None,
                        format!("{cause}: no rule covers the layer"),
                    );
                }
                (None, None) => {}
            }
        }
    }
    let changed = upsert.ids.len() + del_ids.len();
    let reassigned = history.ids.len();
    if !upsert.ids.is_empty() {
        sqlx::query!(
            r#"insert into workload_owners (workload_id, layer, team_id, via, rule_id, provenance)
               select * from unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::int8[],
                                    $6::text[])
               on conflict (workload_id, layer) do update
               set since = case when workload_owners.team_id = excluded.team_id
                                then workload_owners.since else now() end,
                   team_id = excluded.team_id, via = excluded.via, rule_id = excluded.rule_id,
                   provenance = excluded.provenance"#,
            &upsert.ids,
            &upsert.layers,
            &upsert.teams,
            &upsert.vias,
            &upsert.rules as &[Option<i64>],
            &upsert.provenances
        )
        .execute(&mut *conn)
        .await?;
    }
    if !del_ids.is_empty() {
        sqlx::query!(
            r#"delete from workload_owners o using unnest($1::int8[], $2::text[]) as d(id, layer)
               where o.workload_id = d.id and o.layer = d.layer"#,
            &del_ids,
            &del_layers
        )
        .execute(&mut *conn)
        .await?;
    }
    if !history.ids.is_empty() {
        sqlx::query!(
            r#"insert into owner_history (workload_id, layer, from_team_id, to_team_id, cause)
               select * from unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[])"#,
            &history.ids,
            &history.layers,
            &history.from as &[Option<i64>],
            &history.to as &[Option<i64>],
            &history.causes
        )
        .execute(&mut *conn)
        .await?;
    }
    if !count_ids.is_empty() {
        sqlx::query!(
            r#"update workloads w set owned_layers = c.n
               from unnest($1::int8[], $2::int4[]) as c(id, n) where w.id = c.id"#,
            &count_ids,
            &counts
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(Resolution {
        workloads: ids.len(),
        changed,
        reassigned,
    })
}

/// A stored owner row: team, via, rule, provenance.
type StoredOwner = (i64, String, Option<i64>, String);

#[derive(Default)]
struct Upsert {
    ids: Vec<i64>,
    layers: Vec<String>,
    teams: Vec<i64>,
    vias: Vec<String>,
    rules: Vec<Option<i64>>,
    provenances: Vec<String>,
}

impl Upsert {
    fn push(&mut self, id: i64, resolved: &super::Resolved) {
        self.ids.push(id);
        self.layers.push(resolved.layer.to_string());
        self.teams.push(resolved.team_id);
        self.vias.push(resolved.via.as_str().to_string());
        self.rules.push(resolved.rule_id);
        self.provenances.push(resolved.provenance.clone());
    }
}

#[derive(Default)]
struct History {
    ids: Vec<i64>,
    layers: Vec<String>,
    from: Vec<Option<i64>>,
    to: Vec<Option<i64>>,
    causes: Vec<String>,
}

impl History {
    fn push(&mut self, id: i64, layer: &str, from: Option<i64>, to: Option<i64>, cause: String) {
        self.ids.push(id);
        self.layers.push(layer.to_string());
        self.from.push(from);
        self.to.push(to);
        self.causes.push(cause);
    }
}

/// The owner of one layer of a workload, as shown (`team` `None`: unowned).
#[derive(Debug, Clone, Serialize)]
pub struct OwnerView {
    pub layer: &'static str,
    pub team_id: Option<i64>,
    pub team: Option<String>,
    pub via: Option<String>,
    pub provenance: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// The explicitly assigned team, when there is one.
    pub assigned_team_id: Option<i64>,
}

/// Every layer of a workload with its owner and provenance.
pub async fn owners(db: &mut PgConnection, workload_id: i64) -> sqlx::Result<Vec<OwnerView>> {
    let rows = sqlx::query!(
        r#"select o.layer, o.team_id, t.name, o.via, o.provenance, o.since
           from workload_owners o join teams t on t.id = o.team_id where o.workload_id = $1"#,
        workload_id
    )
    .fetch_all(&mut *db)
    .await?;
    let assigned = sqlx::query!(
        "select layer, team_id from owner_assignments where workload_id = $1",
        workload_id
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(LAYERS
        .iter()
        .map(|layer| {
            let row = rows.iter().find(|r| r.layer == *layer);
            OwnerView {
                layer,
                team_id: row.map(|r| r.team_id),
                team: row.map(|r| r.name.clone()),
                via: row.map(|r| r.via.clone()),
                provenance: row.map(|r| r.provenance.clone()),
                since: row.map(|r| r.since),
                assigned_team_id: assigned
                    .iter()
                    .find(|a| a.layer == *layer)
                    .map(|a| a.team_id),
            }
        })
        .collect())
}

/// One owner change.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    pub id: i64,
    pub layer: String,
    pub from_team: Option<String>,
    pub to_team: Option<String>,
    pub at: DateTime<Utc>,
    pub cause: String,
}

/// A workload's owner changes, newest first (at most 200).
pub async fn history(db: impl PgExecutor<'_>, workload_id: i64) -> sqlx::Result<Vec<HistoryEntry>> {
    sqlx::query_as!(
        HistoryEntry,
        r#"select h.id, h.layer, f.name as "from_team?", t.name as "to_team?", h.at, h.cause
           from owner_history h left join teams f on f.id = h.from_team_id
           left join teams t on t.id = h.to_team_id
           where h.workload_id = $1 order by h.at desc, h.id desc limit 200"#,
        workload_id
    )
    .fetch_all(db)
    .await
}

/// The owners of these workloads now, as stored on an incident when it opens.
pub async fn owners_snapshot(conn: &mut PgConnection, workload_ids: &[i64]) -> sqlx::Result<Value> {
    let value = sqlx::query_scalar!(
        r#"select coalesce(jsonb_agg(jsonb_build_object(
                    'workload_id', o.workload_id, 'layer', o.layer, 'team_id', o.team_id,
                    'team', t.name, 'provenance', o.provenance)
                  order by o.workload_id, array_position(array['application','image','runtime',
                    'orchestration','host'], o.layer)), '[]'::jsonb) as "owners!"
           from workload_owners o join teams t on t.id = o.team_id
           where o.workload_id = any($1)"#,
        workload_ids
    )
    .fetch_one(conn)
    .await?;
    Ok(value)
}

/// Who owned an affected workload's layer when an incident was opened.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OwnerAtOpen {
    pub workload_id: i64,
    pub layer: String,
    pub team_id: i64,
    pub team: String,
    pub provenance: String,
}

/// The owners stored on an incident when it was opened (empty for an unknown incident).
pub async fn owners_at_open(
    db: impl PgExecutor<'_>,
    incident_id: i64,
) -> sqlx::Result<Vec<OwnerAtOpen>> {
    let value = sqlx::query_scalar!(
        "select owners_at_open from incidents where id = $1",
        incident_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(Value::Array(Vec::new()));
    serde_json::from_value(value).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}
