//! What the ownership pages and API read: the unowned queue, a team's work (workloads, findings
//! routed by the layer that owns the fix, incidents, waivers, score and trend) and the
//! responsibility matrix.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use super::{Team, LAYERS};

/// A workload with at least one layer unowned.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UnownedWorkload {
    pub id: i64,
    pub source_name: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub grade: Option<String>,
    pub risk_score: i32,
    pub owned_layers: i32,
    /// The layers no rule covers.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UnownedPage {
    /// Live workloads with a layer unowned, in all.
    pub total: i64,
    pub workloads: Vec<UnownedWorkload>,
    /// The `after` of the next page (`risk:id`); `null` on the last page.
    pub next: Option<String>,
}

/// A keyset cursor of the unowned queue: `risk:id`.
pub fn parse_cursor(text: &str) -> Option<(i32, i64)> {
    let (risk, id) = text.split_once(':')?;
    Some((risk.parse().ok()?, id.parse().ok()?))
}

/// The unowned queue: live workloads with any layer unowned, biggest risk first.
pub async fn unowned(
    pool: &PgPool,
    limit: i64,
    after: Option<(i32, i64)>,
) -> sqlx::Result<UnownedPage> {
    let total = sqlx::query_scalar!(
        r#"select count(*) as "n!" from workloads where owned_layers < 5 and stage <> 'retire'"#
    )
    .fetch_one(pool)
    .await?;
    let (risk, id) = after.unwrap_or((i32::MAX, 0));
    let mut workloads = sqlx::query_as!(
        UnownedWorkload,
        r#"select w.id, s.name as source_name, w.namespace, w.kind, w.name, w.grade, w.risk_score,
                  w.owned_layers,
                  array(select l from unnest(array['application','image','runtime',
                                                   'orchestration','host']) with ordinality as x(l, n)
                        where not exists (select 1 from workload_owners o
                                          where o.workload_id = w.id and o.layer = x.l)
                        order by x.n) as "missing!"
           from workloads w join sources s on s.id = w.source_id
           where w.owned_layers < 5 and w.stage <> 'retire'
             and (w.risk_score < $1 or (w.risk_score = $1 and w.id > $2))
           order by w.risk_score desc, w.id limit $3"#,
        risk,
        id,
        limit + 1
    )
    .fetch_all(pool)
    .await?;
    let next = if workloads.len() as i64 > limit {
        workloads.truncate(limit as usize);
        workloads
            .last()
            .map(|w| format!("{}:{}", w.risk_score, w.id))
    } else {
        None
    };
    Ok(UnownedPage {
        total,
        workloads,
        next,
    })
}

/// A team in the list, with what it owns.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TeamSummary {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub contact: String,
    pub members: i64,
    pub workloads: i64,
    /// Open, non-waived findings routed to the team.
    pub open_findings: i64,
}

pub async fn team_summaries(pool: &PgPool) -> sqlx::Result<Vec<TeamSummary>> {
    sqlx::query_as!(
        TeamSummary,
        r#"select t.id, t.name, t.kind, t.contact,
                  (select count(*) from team_members m where m.team_id = t.id) as "members!",
                  (select count(distinct o.workload_id) from workload_owners o
                   join workloads w on w.id = o.workload_id
                   where o.team_id = t.id and w.stage <> 'retire') as "workloads!",
                  (select count(*) from findings f
                   join workload_owners o on o.workload_id = f.workload_id and o.layer = f.layer
                   where o.team_id = t.id and f.status = 'open' and f.waiver_id is null)
                   as "open_findings!"
           from teams t order by lower(t.name)"#
    )
    .fetch_all(pool)
    .await
}

/// A workload a team owns (some of its layers).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TeamWorkload {
    pub id: i64,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub stage: String,
    pub grade: Option<String>,
    pub risk_score: i32,
    pub layers: Vec<String>,
}

/// A finding routed to a team.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TeamFinding {
    pub id: i64,
    pub workload_id: i64,
    pub workload: String,
    pub container: String,
    pub check_id: String,
    pub severity: String,
    pub layer: String,
    pub message: String,
    pub waived: bool,
    pub first_seen: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TeamIncident {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TeamWaiver {
    pub id: i64,
    pub check_id: String,
    pub workload_id: Option<i64>,
    pub status: String,
    pub requested_by: String,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
}

/// The posture of what a team owns: its live workloads' grades and risk.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct TeamScore {
    pub workloads: i64,
    pub graded: i64,
    /// Mean grade, A = 4 … F = 0.
    pub average_grade: Option<f64>,
    pub worst_grade: Option<String>,
    pub total_risk: i64,
}

impl TeamScore {
    /// The mean grade as a letter.
    pub fn letter(&self) -> &'static str {
        match self.average_grade {
            None => "–",
            Some(v) if v >= 3.5 => "A",
            Some(v) if v >= 2.5 => "B",
            Some(v) if v >= 1.5 => "C",
            Some(v) if v >= 0.5 => "D",
            Some(_) => "F",
        }
    }
}

/// Open findings routed to the team at the end of a past week.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TrendPoint {
    pub at: DateTime<Utc>,
    pub open: i64,
}

#[derive(Debug, Serialize)]
pub struct TeamWork {
    pub team: Team,
    pub workloads: Vec<TeamWorkload>,
    pub findings: Vec<TeamFinding>,
    pub incidents: Vec<TeamIncident>,
    pub waivers: Vec<TeamWaiver>,
    pub score: TeamScore,
    /// Open findings at the end of each of the last 8 weeks, routed by today's owners.
    pub trend: Vec<TrendPoint>,
}

/// Everything the team page shows; `layer` narrows the findings.
pub async fn team_work(pool: &PgPool, team: Team, layer: Option<&str>) -> sqlx::Result<TeamWork> {
    let id = team.id;
    let workloads = sqlx::query_as!(
        TeamWorkload,
        r#"select w.id, w.namespace, w.kind, w.name, w.stage, w.grade, w.risk_score,
                  array_agg(o.layer order by array_position(array['application','image','runtime',
                            'orchestration','host'], o.layer)) as "layers!"
           from workload_owners o join workloads w on w.id = o.workload_id
           where o.team_id = $1 and w.stage <> 'retire'
           group by w.id order by w.risk_score desc, w.id limit 500"#,
        id
    )
    .fetch_all(pool)
    .await?;
    let findings = sqlx::query_as!(
        TeamFinding,
        r#"select f.id, f.workload_id,
                  case when w.namespace = '' then w.name else w.namespace || '/' || w.name end
                      as "workload!",
                  f.container, f.check_id, f.severity, f.layer, f.message,
                  f.waiver_id is not null as "waived!", f.first_seen, f.acknowledged_by,
                  f.acknowledged_at
           from findings f
           join workload_owners o on o.workload_id = f.workload_id and o.layer = f.layer
           join workloads w on w.id = f.workload_id
           where o.team_id = $1 and f.status = 'open' and ($2::text is null or f.layer = $2)
           order by array_position(array['critical','high','medium','low','info'], f.severity),
                    f.id
           limit 500"#,
        id,
        layer
    )
    .fetch_all(pool)
    .await?;
    let incidents = sqlx::query_as!(
        TeamIncident,
        r#"select i.id, i.title, i.severity, i.state, i.created_at from incidents i
           where i.owners_at_open @> jsonb_build_array(jsonb_build_object('team_id', $1::int8))
              or exists (select 1 from incident_workloads iw
                         join workload_owners o on o.workload_id = iw.workload_id
                         where iw.incident_id = i.id and o.team_id = $1)
           order by i.id desc limit 100"#,
        id
    )
    .fetch_all(pool)
    .await?;
    let waivers = sqlx::query_as!(
        TeamWaiver,
        r#"select v.id, v.check_id, v.workload_id, v.status, v.requested_by, v.reason, v.expires_at
           from waivers v
           where exists (select 1 from workload_owners o
                         where o.workload_id = v.workload_id and o.team_id = $1)
              or v.requested_by in (select u.name from team_members m
                                    join users u on u.id = m.user_id where m.team_id = $1)
           order by v.id desc limit 100"#,
        id
    )
    .fetch_all(pool)
    .await?;
    let score = sqlx::query_as!(
        TeamScore,
        r#"select count(*) as "workloads!", count(w.grade) as "graded!",
                  avg(case w.grade when 'A' then 4 when 'B' then 3 when 'C' then 2
                      when 'D' then 1 when 'F' then 0 end)::float8 as average_grade,
                  (array['F','D','C','B','A'])[min(case w.grade when 'A' then 4 when 'B' then 3
                      when 'C' then 2 when 'D' then 1 when 'F' then 0 end) + 1] as worst_grade,
                  coalesce(sum(w.risk_score), 0)::int8 as "total_risk!"
           from workloads w
           where w.stage <> 'retire'
             and exists (select 1 from workload_owners o where o.workload_id = w.id
                         and o.team_id = $1)"#,
        id
    )
    .fetch_one(pool)
    .await?;
    let trend = sqlx::query_as!(
        TrendPoint,
        r#"select t.at as "at!", count(f.id) as "open!"
           from generate_series(date_trunc('week', now()) - interval '7 weeks',
                                date_trunc('week', now()), interval '1 week') as g(week)
           cross join lateral (select least(g.week + interval '1 week', now()) as at) t
           left join (select f.id, f.first_seen, f.resolved_at from findings f
                      join workload_owners o on o.workload_id = f.workload_id
                           and o.layer = f.layer
                      where o.team_id = $1) f
             on f.first_seen <= t.at and (f.resolved_at is null or f.resolved_at > t.at)
           group by t.at order by t.at"#,
        id
    )
    .fetch_all(pool)
    .await?;
    Ok(TeamWork {
        team,
        workloads,
        findings,
        incidents,
        waivers,
        score,
        trend,
    })
}

/// One cell of the responsibility matrix.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixCell {
    /// `None`: the unowned column.
    pub team_id: Option<i64>,
    pub open_findings: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    pub layer: &'static str,
    pub default_kind: &'static str,
    /// One per team of [`Matrix::teams`], then the unowned cell.
    pub cells: Vec<MatrixCell>,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub teams: Vec<Team>,
    pub rows: Vec<MatrixRow>,
}

/// Layers × teams: open, non-waived findings of live workloads, by the owner of their layer.
pub async fn matrix(db: impl PgExecutor<'_> + Copy) -> sqlx::Result<Matrix> {
    let teams = super::store::teams(db).await?;
    let counts: HashMap<(String, Option<i64>), i64> = sqlx::query!(
        r#"select f.layer, o.team_id as "team_id?", count(*) as "n!"
           from findings f join workloads w on w.id = f.workload_id and w.stage <> 'retire'
           left join workload_owners o on o.workload_id = f.workload_id and o.layer = f.layer
           where f.status = 'open' and f.waiver_id is null
           group by 1, 2"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|row| ((row.layer, row.team_id), row.n))
    .collect();
    let rows = LAYERS
        .iter()
        .map(|layer| {
            let count =
                |team: Option<i64>| counts.get(&(layer.to_string(), team)).copied().unwrap_or(0);
            MatrixRow {
                layer,
                default_kind: super::default_kind(layer),
                cells: teams
                    .iter()
                    .map(|t| Some(t.id))
                    .chain([None])
                    .map(|team_id| MatrixCell {
                        team_id,
                        open_findings: count(team_id),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Matrix { teams, rows })
}

/// Whether the user is a member of the team that owns `layer` of the workload.
pub async fn member_of_owner(
    db: impl PgExecutor<'_>,
    user_id: i64,
    workload_id: i64,
    layer: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from workload_owners o
                          join team_members m on m.team_id = o.team_id
                          where o.workload_id = $1 and o.layer = $2 and m.user_id = $3) as "e!""#,
        workload_id,
        layer,
        user_id
    )
    .fetch_one(db)
    .await
}
