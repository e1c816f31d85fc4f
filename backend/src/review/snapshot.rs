//! Taking a review's snapshot: every table computed once, set-based, inside one repeatable-read
//! transaction (so every table sees the same instant), and stored in `review_rows`. The posture
//! tables and the differences from the previous review are computed from the stored open
//! findings, so they agree with them by construction.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{store, ReviewError, TABLES};

/// What a snapshot needs besides the review.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSettings {
    /// Images built longer ago than this are a lifecycle anomaly.
    pub image_max_age_days: i32,
}

/// The steps of a snapshot, with the progress (percent of the whole generation) reached after
/// each; rendering takes the rest.
const STEPS: &[(&str, i32)] = &[
    ("inventory", 3),
    ("open_findings", 30),
    ("posture", 36),
    ("differences", 42),
    ("waivers, incidents, ownership, lifecycle", 48),
];
/// The share of the progress bar the snapshot takes.
pub const SNAPSHOT_PERCENT: i32 = 50;

/// Takes the snapshot of review `id` and stores its rows and summary; returns the summary.
pub async fn take(
    pool: &PgPool,
    id: i64,
    settings: SnapshotSettings,
) -> Result<Value, ReviewError> {
    let review = store::get(pool, id).await?;
    let team = review.team_id;
    let mut tx = pool.begin().await?;
    sqlx::query!("set transaction isolation level repeatable read")
        .execute(&mut *tx)
        .await?;
    let taken_at: DateTime<Utc> = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(&mut *tx)
        .await?;
    // A retried generation starts again from nothing.
    sqlx::query!("delete from review_rows where review_id = $1", id)
        .execute(&mut *tx)
        .await?;
    let previous = sqlx::query!(
        r#"select id, taken_at as "taken_at!" from reviews
           where status = 'succeeded' and coalesce(team_id, 0) = coalesce($1::bigint, 0) and id <> $2
             and taken_at is not null and taken_at <= $3
           order by taken_at desc, id desc limit 1"#,
        team,
        id,
        taken_at
    )
    .fetch_optional(&mut *tx)
    .await?;
    let previous_id = previous.as_ref().map(|p| p.id);
    let period_start = previous.as_ref().map(|p| p.taken_at);

    let step = |index: usize| {
        let (phase, percent) = STEPS[index];
        store::progress(pool, id, phase, percent, 0)
    };

    step(0).await?;
    sqlx::query!(
        r#"with scoped as (
               select w.* from workloads w
               where $2::bigint is null
                  or exists (select 1 from workload_owners o
                             where o.workload_id = w.id and o.team_id = $2)
           )
           insert into review_rows (review_id, tbl, key, cells)
           select $1, 'inventory', row_number() over (order by ord, name),
                  jsonb_build_array(category, name, n)
           from (
               select 1 as ord, 'total' as category, 'workloads' as name, count(*) as n
                 from scoped where stage <> 'retire'
               union all select 1, 'total', 'workloads_retired', count(*)
                 from scoped where stage = 'retire'
               union all select 1, 'total', 'instances_running',
                                coalesce(sum(instances_running), 0)::bigint from scoped
               union all select 1, 'total', 'images', count(distinct d)
                 from scoped, unnest(image_digests) d where stage <> 'retire'
               union all select 2, 'stage', stage, count(*) from scoped group by stage
               union all select 3, 'grade', coalesce(grade, 'ungraded'), count(*)
                 from scoped where stage <> 'retire' group by 3
               union all select 4, 'kind', kind, count(*)
                 from scoped where stage <> 'retire' group by kind
               union all select 5, 'source', s.kind || ' ' || s.name, count(*)
                 from scoped w join sources s on s.id = w.source_id
                 where w.stage <> 'retire' group by 3
           ) x"#,
        id,
        team
    )
    .execute(&mut *tx)
    .await?;

    step(1).await?;
    sqlx::query!(
        r#"insert into review_rows (review_id, tbl, key, cells)
           select $1, 'open_findings', f.id,
                  jsonb_build_array(f.id, f.workload_id, f.check_id, f.severity, f.layer, t.name,
                                    s.name, w.namespace, w.kind, w.name, f.container,
                                    date_trunc('second', f.first_seen),
                                    greatest(0, floor(extract(epoch from ($3 - f.first_seen)) / 86400))::int,
                                    f.waiver_id is not null, f.message)
           from findings f
           join workloads w on w.id = f.workload_id
           join sources s on s.id = w.source_id
           left join workload_owners o on o.workload_id = f.workload_id and o.layer = f.layer
           left join teams t on t.id = o.team_id
           where f.status = 'open' and ($2::bigint is null or o.team_id = $2)"#,
        id,
        team,
        taken_at
    )
    .execute(&mut *tx)
    .await?;

    step(2).await?;
    // The three posture tables in one pass over the stored open findings (grouping sets), so
    // the million jsonb rows of a large review are read once, not three times.
    sqlx::query!(
        r#"with base as (
               select coalesce(cells->>5, '(unowned)') as team, cells->>4 as layer,
                      cells->>2 as check_id, cells->>3 as severity,
                      (cells->>1)::bigint as workload, (cells->>13)::boolean as waived
               from review_rows where review_id = $1 and tbl = 'open_findings'
           ),
           agg as materialized (
               select grouping(team, layer, check_id, severity) as g, team, layer, check_id,
                      severity,
                      count(distinct workload) as workloads,
                      count(*) as open,
                      count(*) filter (where waived) as waived,
                      count(*) filter (where not waived and severity = 'critical') as critical,
                      count(*) filter (where not waived and severity = 'high') as high,
                      count(*) filter (where not waived and severity = 'medium') as medium,
                      count(*) filter (where not waived and severity = 'low') as low,
                      count(*) filter (where not waived and severity = 'info') as info
               from base
               group by grouping sets ((team), (layer), (check_id, severity, layer))
           ),
           teams_in_scope as (select name from teams where $2::bigint is null or id = $2),
           team_rows as (
               select coalesce(a.team, t.name) as team, coalesce(a.workloads, 0) as workloads,
                      coalesce(a.open, 0) as open, coalesce(a.waived, 0) as waived,
                      coalesce(a.critical, 0) as critical, coalesce(a.high, 0) as high,
                      coalesce(a.medium, 0) as medium, coalesce(a.low, 0) as low,
                      coalesce(a.info, 0) as info
               from (select * from agg where g = 7) a
               full join teams_in_scope t on t.name = a.team
           ),
           by_team as (
               insert into review_rows (review_id, tbl, key, cells)
               select $1, 'posture_by_team',
                      row_number() over (order by team = '(unowned)', lower(team), team),
                      jsonb_build_array(team, workloads, open, waived, critical, high, medium,
                                        low, info)
               from team_rows
           ),
           layers as (
               select l as layer, n from unnest(array['application', 'image', 'runtime',
                                                      'orchestration', 'host']) with ordinality as x(l, n)
           ),
           layer_rows as (
               select coalesce(a.layer, l.layer) as layer, coalesce(l.n, 99) as n,
                      coalesce(a.open, 0) as open, coalesce(a.waived, 0) as waived,
                      coalesce(a.critical, 0) as critical, coalesce(a.high, 0) as high,
                      coalesce(a.medium, 0) as medium, coalesce(a.low, 0) as low,
                      coalesce(a.info, 0) as info
               from (select * from agg where g = 11) a
               full join layers l on l.layer = a.layer
           ),
           by_layer as (
               insert into review_rows (review_id, tbl, key, cells)
               select $1, 'posture_by_layer', row_number() over (order by n, layer),
                      jsonb_build_array(layer, open, waived, critical, high, medium, low, info)
               from layer_rows
           )
           insert into review_rows (review_id, tbl, key, cells)
           select $1, 'posture_by_check',
                  row_number() over (order by array_position(array['critical', 'high', 'medium', 'low', 'info'], severity),
                                              open desc, check_id),
                  jsonb_build_array(check_id, severity, layer, workloads, open, waived)
           from agg where g = 8"#,
        id,
        team
    )
    .execute(&mut *tx)
    .await?;

    step(3).await?;
    if let Some(previous_id) = previous_id {
        sqlx::query!(
            r#"insert into review_rows (review_id, tbl, key, cells)
               select $1, 'new_findings', r.key, r.cells
               from (select key from review_rows where review_id = $1 and tbl = 'open_findings'
                     except
                     select key from review_rows where review_id = $2 and tbl = 'open_findings') n
               join review_rows r on r.review_id = $1 and r.tbl = 'open_findings' and r.key = n.key"#,
            id,
            previous_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"insert into review_rows (review_id, tbl, key, cells)
               select $1, 'resolved_findings', p.key,
                      jsonb_build_array(p.cells->0, p.cells->1, p.cells->2, p.cells->3,
                                        p.cells->4, p.cells->5, p.cells->6, p.cells->7,
                                        p.cells->8, p.cells->9, p.cells->10, p.cells->11,
                                        case when f.resolved_at <= $3
                                             then date_trunc('second', f.resolved_at) end,
                                        case when f.resolved_at <= $3 then f.resolved_reason
                                             else 'out of scope' end)
               from (select key from review_rows where review_id = $2 and tbl = 'open_findings'
                     except
                     select key from review_rows where review_id = $1 and tbl = 'open_findings') gone
               join review_rows p on p.review_id = $2 and p.tbl = 'open_findings' and p.key = gone.key
               join findings f on f.id = gone.key"#,
            id,
            previous_id,
            taken_at
        )
        .execute(&mut *tx)
        .await?;
    }

    step(4).await?;
    sqlx::query!(
        r#"insert into review_rows (review_id, tbl, key, cells)
           select $1, 'waivers', row_number() over (order by w.expires_at, w.id),
                  jsonb_build_array(
                      w.id, w.check_id,
                      case when w.workload_id is not null
                               then 'workload ' || coalesce(nullif(wl.namespace, '') || '/', '') || wl.name
                           when w.namespace is not null
                               then 'namespace ' || w.namespace || coalesce(' on ' || s.name, '')
                           else 'source ' || coalesce(s.name, '?') end,
                      w.reason, w.requested_by, w.approved_by, date_trunc('second', w.expires_at),
                      floor(extract(epoch from (w.expires_at - $3)) / 86400)::int,
                      w.expires_at <= $3 + interval '30 days',
                      (select count(*) from findings f where f.waiver_id = w.id and f.status = 'open'))
           from waivers w
           left join workloads wl on wl.id = w.workload_id
           left join sources s on s.id = w.source_id
           where w.status = 'approved' and w.expires_at > $3
             and ($2::bigint is null
                  or exists (select 1 from findings f
                             join workload_owners o on o.workload_id = f.workload_id and o.layer = f.layer
                             where f.waiver_id = w.id and f.status = 'open' and o.team_id = $2))"#,
        id,
        team,
        taken_at
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"insert into review_rows (review_id, tbl, key, cells)
           select $1, 'incidents', i.id,
                  jsonb_build_array(
                      i.id, i.title, i.severity, i.state, date_trunc('second', i.created_at),
                      i.opened_by,
                      (select count(*) from incident_workloads iw where iw.incident_id = i.id),
                      date_trunc('second', iso.at),
                      round((extract(epoch from (iso.at - i.created_at)) / 60)::numeric, 1),
                      date_trunc('second', res.at),
                      round((extract(epoch from (res.at - iso.at)) / 60)::numeric, 1),
                      date_trunc('second', i.closed_at))
           from incidents i
           left join lateral (
               select min(a.finished_at) as at from incident_actions a
               where a.incident_id = i.id and a.kind = 'isolate' and a.status = 'succeeded'
                 and a.finished_at <= $3
           ) iso on true
           left join lateral (
               select min(a.finished_at) as at from incident_actions a
               where a.incident_id = i.id and a.kind = 'restore' and a.status = 'succeeded'
                 and a.finished_at <= $3
           ) res on true
           where i.created_at <= $3
             and (i.closed_at is null or $4::timestamptz is null or i.closed_at > $4)
             and ($2::bigint is null
                  or exists (select 1 from incident_workloads iw
                             join workload_owners o on o.workload_id = iw.workload_id
                             where iw.incident_id = i.id and o.team_id = $2))"#,
        id,
        team,
        taken_at,
        period_start
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"insert into review_rows (review_id, tbl, key, cells)
           select $1, 'ownership_gaps', w.id,
                  jsonb_build_array(w.id, s.name, w.namespace, w.kind, w.name,
                                    5 - cardinality(g.missing), array_to_string(g.missing, ', '))
           from workloads w
           join sources s on s.id = w.source_id
           cross join lateral (
               select array(
                   select x.l from unnest(array['application', 'image', 'runtime',
                                                'orchestration', 'host']) with ordinality as x(l, n)
                   where not exists (select 1 from workload_owners o
                                     where o.workload_id = w.id and o.layer = x.l)
                   order by x.n) as missing
           ) g
           where w.stage <> 'retire' and cardinality(g.missing) > 0
             and ($2::bigint is null
                  or exists (select 1 from workload_owners o
                             where o.workload_id = w.id and o.team_id = $2))"#,
        id,
        team
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"with scoped as (
               select w.*, s.name as source_name from workloads w
               join sources s on s.id = w.source_id
               where $2::bigint is null
                  or exists (select 1 from workload_owners o
                             where o.workload_id = w.id and o.team_id = $2)
           )
           insert into review_rows (review_id, tbl, key, cells)
           select $1, 'lifecycle_anomalies',
                  row_number() over (order by anomaly, workload_id, detail),
                  jsonb_build_array(anomaly, workload_id, source, namespace, kind, workload,
                                    detail, age_days)
           from (
               select 'image_older_than_policy' as anomaly, w.id as workload_id,
                      w.source_name as source, w.namespace, w.kind, w.name as workload,
                      i.digest as detail,
                      floor(extract(epoch from ($3 - i.created_at)) / 86400)::int as age_days
               from scoped w
               cross join lateral unnest(w.image_digests) as d(digest)
               join images i on i.digest = d.digest
               where w.stage <> 'retire' and i.created_at < $3 - make_interval(days => $4)
               union all
               select 'retired_with_leftovers', w.id, w.source_name, w.namespace, w.kind, w.name,
                      concat_ws(', ',
                                case when live.n > 0 then live.n || ' live instance(s)' end,
                                case when opened.n > 0 then opened.n || ' open finding(s)' end),
                      floor(extract(epoch from ($3 - coalesce(w.retired_at, w.stage_since))) / 86400)::int
               from scoped w
               cross join lateral (select count(*) as n from instances x
                                   where x.workload_id = w.id and x.removed_at is null) live
               cross join lateral (select count(*) as n from findings f
                                   where f.workload_id = w.id and f.status = 'open') opened
               where w.stage = 'retire' and (live.n > 0 or opened.n > 0)
           ) a"#,
        id,
        team,
        taken_at,
        settings.image_max_age_days
    )
    .execute(&mut *tx)
    .await?;

    let summary = summarize(&mut tx, id, taken_at, previous_id, period_start).await?;
    tx.commit().await?;
    // Outside the snapshot's transaction: the progress updates change this row meanwhile, which
    // a repeatable-read transaction may not overwrite.
    sqlx::query!(
        "update reviews set taken_at = $2, previous_review_id = $3, summary = $4 where id = $1",
        id,
        taken_at,
        previous_id,
        summary
    )
    .execute(pool)
    .await?;
    store::progress(pool, id, "snapshot taken", SNAPSHOT_PERCENT, 0).await?;
    Ok(summary)
}

/// The headline numbers and the row count of every table.
async fn summarize(
    conn: &mut sqlx::PgConnection,
    id: i64,
    taken_at: DateTime<Utc>,
    previous_id: Option<i64>,
    period_start: Option<DateTime<Utc>>,
) -> Result<Value, ReviewError> {
    let counts = sqlx::query!(
        r#"select tbl, count(*) as "rows!" from review_rows where review_id = $1 group by tbl"#,
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    let rows_of = |name: &str| counts.iter().find(|c| c.tbl == name).map_or(0, |c| c.rows);
    let tables: serde_json::Map<String, Value> = TABLES
        .iter()
        .map(|t| (t.name.to_string(), json!(rows_of(t.name))))
        .collect();
    let totals = sqlx::query!(
        r#"select
             coalesce(sum((cells->>2)::bigint), 0)::bigint as "open!",
             coalesce(sum((cells->>3)::bigint), 0)::bigint as "waived!",
             coalesce(sum((cells->>4)::bigint), 0)::bigint as "critical!",
             coalesce(sum((cells->>5)::bigint), 0)::bigint as "high!",
             coalesce(sum((cells->>6)::bigint), 0)::bigint as "medium!",
             coalesce(sum((cells->>7)::bigint), 0)::bigint as "low!",
             coalesce(sum((cells->>8)::bigint), 0)::bigint as "info!",
             coalesce(sum((cells->>2)::bigint) filter (where cells->>0 = '(unowned)'), 0)::bigint as "unowned!"
           from review_rows where review_id = $1 and tbl = 'posture_by_team'"#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    let extra = sqlx::query!(
        r#"select
             coalesce((select (cells->>2)::bigint from review_rows
                       where review_id = $1 and tbl = 'inventory'
                         and cells->>0 = 'total' and cells->>1 = 'workloads'), 0) as "workloads!",
             (select count(*) from review_rows
              where review_id = $1 and tbl = 'waivers'
                and (cells->>8)::boolean) as "expiring!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(json!({
        "taken_at": taken_at,
        "period_start": period_start,
        "previous_review_id": previous_id,
        "totals": {
            "workloads": extra.workloads,
            "open_findings": totals.open,
            "waived_findings": totals.waived,
            "unowned_findings": totals.unowned,
            "critical": totals.critical,
            "high": totals.high,
            "medium": totals.medium,
            "low": totals.low,
            "info": totals.info,
            "new_findings": rows_of("new_findings"),
            "resolved_findings": rows_of("resolved_findings"),
            "waivers_active": rows_of("waivers"),
            "waivers_expiring_within_30_days": extra.expiring,
            "incidents": rows_of("incidents"),
            "ownership_gaps": rows_of("ownership_gaps"),
            "lifecycle_anomalies": rows_of("lifecycle_anomalies"),
        },
        "tables": tables,
    }))
}
