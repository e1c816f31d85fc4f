//! The planner: reads each source past its cursor, records what each route must tell whom
//! (`notification_items`, one per route, channel and subject), then composes the digests into
//! queued messages. One planner runs at a time across replicas (a transaction-level advisory
//! lock); the cursors move in the same transaction as the items they produced.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::{severity_rank, Item, Message, NotifyError, Settings, ITEMS_IN_FULL, SEVERITIES};

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlanReport {
    /// Items recorded (after de-duplication).
    pub items: u64,
    /// Messages queued.
    pub deliveries: u64,
    /// Some source had more rows than one batch: run again soon.
    pub more: bool,
    /// Another planner (replica) held the lock: nothing was done.
    pub skipped: bool,
}

impl PlanReport {
    pub fn busy(&self) -> bool {
        self.more
    }
}

struct Rule {
    id: i64,
    name: String,
    event: String,
    min_rank: usize,
    audience: String,
    channel_id: Option<i64>,
}

/// The enabled routes and who their audiences reach right now.
struct Audience {
    routes: Vec<Rule>,
    /// Enabled channels by the team they reach.
    by_team: HashMap<i64, Vec<i64>>,
    /// Enabled channels of teams of kind `security`.
    security: Vec<i64>,
    enabled: Vec<i64>,
}

impl Audience {
    async fn load(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let routes = sqlx::query!(
            "select id, name, event, min_severity, audience, channel_id from notification_routes
             where enabled order by id"
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| Rule {
            id: row.id,
            name: row.name,
            event: row.event,
            min_rank: severity_rank(&row.min_severity),
            audience: row.audience,
            channel_id: row.channel_id,
        })
        .collect();
        let channels = sqlx::query!(
            r#"select c.id, c.team_id, t.kind as "team_kind?"
               from notification_channels c left join teams t on t.id = c.team_id
               where c.enabled order by c.id"#
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut by_team: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut security = Vec::new();
        let mut enabled = Vec::new();
        for channel in channels {
            enabled.push(channel.id);
            if let Some(team) = channel.team_id {
                by_team.entry(team).or_default().push(channel.id);
            }
            if channel.team_kind.as_deref() == Some("security") {
                security.push(channel.id);
            }
        }
        Ok(Self {
            routes,
            by_team,
            security,
            enabled,
        })
    }

    fn wants(&self, event: &str) -> bool {
        self.routes.iter().any(|route| route.event == event)
    }

    /// The channels `route` reaches for an item owned by `owners`; the route's own channel is
    /// the fallback when the audience has none.
    fn channels(&self, route: &Rule, owners: &[i64]) -> Vec<i64> {
        let mut found: Vec<i64> = match route.audience.as_str() {
            "owner" => owners
                .iter()
                .flat_map(|team| self.by_team.get(team).into_iter().flatten().copied())
                .collect(),
            "security" => self.security.clone(),
            _ => Vec::new(),
        };
        if found.is_empty() {
            if let Some(channel) = route.channel_id.filter(|id| self.enabled.contains(id)) {
                found.push(channel);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// The items one round recorded, column by column (inserted with one UNNEST).
#[derive(Default)]
struct NewItems {
    route: Vec<i64>,
    channel: Vec<i64>,
    subject: Vec<String>,
    severity: Vec<String>,
    item: Vec<Value>,
}

impl NewItems {
    fn add(&mut self, audience: &Audience, event: &str, owners: &[i64], item: &Item) {
        let rank = severity_rank(&item.severity);
        for route in audience
            .routes
            .iter()
            .filter(|route| route.event == event && rank >= route.min_rank)
        {
            for channel in audience.channels(route, owners) {
                self.route.push(route.id);
                self.channel.push(channel);
                self.subject.push(item.subject.clone());
                self.severity.push(item.severity.clone());
                self.item
                    .push(serde_json::to_value(item).expect("an item serializes"));
            }
        }
    }
}

/// Where a source's reading stands: the (transaction, id) of the last row planned. Rows are
/// read in that order and only below the horizon (see the migration `…160_notify_horizon.sql`),
/// so a row committed late with a low id is still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    xid: i64,
    id: i64,
}

/// The horizon of this transaction: rows written by transactions below it are final.
async fn horizon(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select notification_horizon() as "horizon!""#)
        .fetch_one(conn)
        .await
}

/// The cursor of `source`, started at the horizon the first time (what was written before is
/// not announced).
async fn cursor(
    conn: &mut PgConnection,
    source: &str,
    horizon: i64,
) -> Result<Cursor, sqlx::Error> {
    let existing = sqlx::query!(
        "select last_xid, last_id from notification_cursors where source = $1",
        source
    )
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some(row) => Ok(Cursor {
            xid: row.last_xid,
            id: row.last_id,
        }),
        None => {
            let start = Cursor {
                xid: horizon,
                id: 0,
            };
            set_cursor(conn, source, start).await?;
            Ok(start)
        }
    }
}

async fn set_cursor(
    conn: &mut PgConnection,
    source: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into notification_cursors (source, last_xid, last_id) values ($1, $2, $3)
         on conflict (source) do update
         set last_xid = excluded.last_xid, last_id = excluded.last_id, updated_at = now()",
        source,
        cursor.xid,
        cursor.id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Starts every source's cursor at the horizon when it has none: call once at start so that
/// existing rows are never announced.
pub async fn init_cursors(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let horizon = horizon(&mut tx).await?;
    for source in ["findings", "runtime_events", "incident_actions"] {
        sqlx::query!(
            "insert into notification_cursors (source, last_xid, last_id) values ($1, $2, 0)
             on conflict (source) do nothing",
            source,
            horizon
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Where a source starts this round and the horizon it reads up to, or `None` when no route
/// wants it (its cursor then jumps to the horizon: enabling a route later does not announce
/// the past).
async fn start(
    conn: &mut PgConnection,
    audience: &Audience,
    source: &str,
    event: &str,
    horizon: i64,
) -> Result<Option<Cursor>, sqlx::Error> {
    let from = cursor(conn, source, horizon).await?;
    if audience.wants(event) {
        Ok(Some(from))
    } else {
        let jumped = Cursor {
            xid: horizon,
            id: 0,
        };
        if jumped > from {
            set_cursor(conn, source, jumped).await?;
        }
        Ok(None)
    }
}

fn place(namespace: Option<&str>, name: Option<&str>) -> String {
    match (namespace.filter(|ns| !ns.is_empty()), name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.to_string(),
        _ => "no workload".to_string(),
    }
}

fn workload_link(settings: &Settings, workload: Option<i64>, anchor: &str) -> String {
    match workload {
        Some(id) => format!("{}/workloads/{id}{anchor}", settings.public_url),
        None => format!("{}/", settings.public_url),
    }
}

/// `" (variables: A, B)"`: the names a secret check pointed at (its evidence keeps the name
/// as written and never the value), so the owner knows where to look.
fn variable_names(evidence: Option<&Value>) -> String {
    let names: Vec<&str> = evidence
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("raw").and_then(Value::as_str))
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        })
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (variables: {})", names.join(", "))
    }
}

async fn plan_findings(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    horizon: i64,
    items: &mut NewItems,
) -> Result<bool, sqlx::Error> {
    let Some(from) = start(conn, audience, "findings", "finding", horizon).await? else {
        return Ok(false);
    };
    let rows = sqlx::query!(
        r#"select f.id, f.workload_id, f.check_id, f.container, f.severity, f.message,
                  f.first_seen, f.status, f.waiver_id, w.namespace, w.name,
                  case when f.check_id like 'secrets.%' then f.evidence end as "evidence?",
                  wo.team_id as "owner?", f.created_xid::text::bigint as "xid!"
           from findings f
           join workloads w on w.id = f.workload_id
           left join workload_owners wo on wo.workload_id = f.workload_id and wo.layer = f.layer
           where (f.created_xid, f.id) > ($1::bigint::text::xid8, $2)
             and f.created_xid < $3::bigint::text::xid8
           order by f.created_xid, f.id limit $4"#,
        from.xid,
        from.id,
        horizon,
        settings.batch
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last().map(|row| Cursor {
        xid: row.xid,
        id: row.id,
    }) else {
        return Ok(false);
    };
    for row in &rows {
        // Already fixed or waived by the time it is planned: nothing to tell.
        if row.status != "open" || row.waiver_id.is_some() {
            continue;
        }
        let check = crate::posture::catalog::find(&row.check_id)
            .map_or(row.check_id.as_str(), |meta| meta.title);
        let container = if row.container.is_empty() {
            String::new()
        } else {
            format!(" (container {})", row.container)
        };
        let item = Item {
            kind: "finding".into(),
            subject: format!("finding:{}", row.id),
            title: format!(
                "{check} on {}{container}",
                place(Some(&row.namespace), Some(&row.name))
            ),
            severity: row.severity.clone(),
            text: format!(
                "{}{} [{}]",
                row.message,
                variable_names(row.evidence.as_ref()),
                row.check_id
            ),
            link: workload_link(settings, Some(row.workload_id), "#posture"),
            at: row.first_seen,
        };
        let owners: Vec<i64> = row.owner.into_iter().collect();
        items.add(audience, "finding", &owners, &item);
    }
    set_cursor(conn, "findings", last).await?;
    Ok(rows.len() as i64 >= settings.batch)
}

async fn plan_runtime_events(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    horizon: i64,
    items: &mut NewItems,
) -> Result<bool, sqlx::Error> {
    let Some(from) = start(conn, audience, "runtime_events", "runtime_event", horizon).await?
    else {
        return Ok(false);
    };
    let rows = sqlx::query!(
        r#"select e.id, e.workload_id, e.kind, e.severity, e.summary, e.at,
                  w.namespace as "namespace?", w.name as "name?", wo.team_id as "owner?",
                  e.created_xid::text::bigint as "xid!"
           from runtime_events e
           left join workloads w on w.id = e.workload_id
           left join workload_owners wo on wo.workload_id = e.workload_id and wo.layer = 'runtime'
           where (e.created_xid, e.id) > ($1::bigint::text::xid8, $2)
             and e.created_xid < $3::bigint::text::xid8
           order by e.created_xid, e.id limit $4"#,
        from.xid,
        from.id,
        horizon,
        settings.batch
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last().map(|row| Cursor {
        xid: row.xid,
        id: row.id,
    }) else {
        return Ok(false);
    };
    for row in &rows {
        let item = Item {
            kind: "runtime_event".into(),
            subject: format!("runtime_event:{}", row.id),
            title: format!(
                "{} on {}",
                row.kind,
                place(row.namespace.as_deref(), row.name.as_deref())
            ),
            severity: row.severity.clone(),
            text: row.summary.chars().take(300).collect(),
            link: workload_link(settings, row.workload_id, "#timeline"),
            at: row.at,
        };
        let owners: Vec<i64> = row.owner.into_iter().collect();
        items.add(audience, "runtime_event", &owners, &item);
    }
    set_cursor(conn, "runtime_events", last).await?;
    Ok(rows.len() as i64 >= settings.batch)
}

async fn plan_incident_actions(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    horizon: i64,
    items: &mut NewItems,
) -> Result<bool, sqlx::Error> {
    let Some(from) = start(conn, audience, "incident_actions", "incident", horizon).await? else {
        return Ok(false);
    };
    let rows = sqlx::query!(
        r#"select a.id, a.incident_id, a.kind, a.status, a.actor, a.created_at, i.title,
                  i.severity,
                  array(select distinct wo.team_id from incident_workloads iw
                        join workload_owners wo on wo.workload_id = iw.workload_id
                             and wo.layer = 'runtime'
                        where iw.incident_id = a.incident_id) as "owners!",
                  a.created_xid::text::bigint as "xid!"
           from incident_actions a join incidents i on i.id = a.incident_id
           where (a.created_xid, a.id) > ($1::bigint::text::xid8, $2)
             and a.created_xid < $3::bigint::text::xid8
           order by a.created_xid, a.id limit $4"#,
        from.xid,
        from.id,
        horizon,
        settings.batch
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last().map(|row| Cursor {
        xid: row.xid,
        id: row.id,
    }) else {
        return Ok(false);
    };
    for row in &rows {
        let step = match row.kind.as_str() {
            "open" => "opened".to_string(),
            "analysis" => "analysis recorded".to_string(),
            "fix" => "fix recorded".to_string(),
            "close" => "closed".to_string(),
            other => format!("{other} {}", row.status),
        };
        let item = Item {
            kind: "incident".into(),
            subject: format!("incident_action:{}", row.id),
            title: format!("Incident #{} {step}: {}", row.incident_id, row.title),
            severity: row.severity.clone(),
            text: format!("{} by {}", row.kind, row.actor),
            link: format!("{}/incidents/{}", settings.public_url, row.incident_id),
            at: row.created_at,
        };
        items.add(audience, "incident", &row.owners, &item);
    }
    set_cursor(conn, "incident_actions", last).await?;
    Ok(rows.len() as i64 >= settings.batch)
}

/// Approved waivers that expire within 7 days; each is told once per expiry date (the item's
/// subject carries it, so an extended waiver is told again before its new expiry).
async fn plan_waivers(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    now: DateTime<Utc>,
    items: &mut NewItems,
) -> Result<(), sqlx::Error> {
    if !audience.wants("waiver_expiring") {
        return Ok(());
    }
    let until = now + chrono::Duration::days(crate::findings::waivers::WARN_DAYS);
    let rows = sqlx::query!(
        r#"select v.id, v.check_id, v.workload_id, v.namespace, v.expires_at,
                  w.namespace as "workload_namespace?", w.name as "workload?",
                  array(select distinct wo.team_id from findings f
                        join workload_owners wo on wo.workload_id = f.workload_id
                             and wo.layer = f.layer
                        where f.waiver_id = v.id) as "owners!"
           from waivers v left join workloads w on w.id = v.workload_id
           where v.status = 'approved' and v.expires_at > $1 and v.expires_at <= $2
           order by v.expires_at, v.id limit $3"#,
        now,
        until,
        settings.batch
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let scope = match (&row.workload, &row.namespace) {
            (Some(name), _) => place(row.workload_namespace.as_deref(), Some(name)),
            (None, Some(ns)) => format!("namespace {ns}"),
            _ => "a source".to_string(),
        };
        let item = Item {
            kind: "waiver_expiring".into(),
            subject: format!("waiver:{}:{}", row.id, row.expires_at.timestamp()),
            title: format!("Waiver #{} for {} on {scope} expires", row.id, row.check_id),
            severity: "medium".into(),
            text: format!("expires {}", row.expires_at.format("%Y-%m-%d %H:%M UTC")),
            link: workload_link(settings, row.workload_id, "#posture"),
            at: now,
        };
        items.add(audience, "waiver_expiring", &row.owners, &item);
    }
    Ok(())
}

/// Reviews finished in the last day, told once each (the subject is the review): to the team
/// the review is about, the security teams, or a fixed channel.
async fn plan_reviews(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    now: DateTime<Utc>,
    items: &mut NewItems,
) -> Result<(), sqlx::Error> {
    if !audience.wants("review_ready") {
        return Ok(());
    }
    let rows = sqlx::query!(
        r#"select id, team_id, team_name, trigger, requested_by,
                  finished_at as "finished_at!",
                  coalesce((summary #>> '{totals,open_findings}')::bigint, 0) as "open!",
                  coalesce((summary #>> '{totals,critical}')::bigint, 0) as "critical!"
           from reviews
           where status = 'succeeded' and finished_at > $1::timestamptz - interval '1 day'
             and finished_at <= $1
           order by finished_at, id limit $2"#,
        now,
        settings.batch
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let scope = row.team_name.as_deref().map_or_else(
            || "the whole estate".to_string(),
            |team| format!("team {team}"),
        );
        let item = Item {
            kind: "review_ready".into(),
            subject: format!("review:{}", row.id),
            title: format!("Review #{} of {scope} is ready for sign-off", row.id),
            severity: if row.critical > 0 { "high" } else { "info" }.into(),
            text: format!(
                "{} open findings ({} critical); {} review asked by {}",
                row.open, row.critical, row.trigger, row.requested_by
            ),
            link: format!("{}/reviews/{}", settings.public_url, row.id),
            at: row.finished_at,
        };
        let owners: Vec<i64> = row.team_id.into_iter().collect();
        items.add(audience, "review_ready", &owners, &item);
    }
    Ok(())
}

fn plural(event: &str, total: i64) -> String {
    match event {
        "finding" => format!("{total} new findings"),
        "runtime_event" => format!("{total} runtime events"),
        "incident" => format!("{total} incident steps"),
        "waiver_expiring" => format!("{total} waivers expire within 7 days"),
        _ => format!("{total} reviews are ready for sign-off"),
    }
}

fn list_link(settings: &Settings, event: &str) -> String {
    let path = match event {
        "finding" | "runtime_event" => "/workloads",
        "incident" => "/incidents",
        "review_ready" => "/reviews",
        _ => "/",
    };
    format!("{}{path}", settings.public_url)
}

struct Group<'a> {
    route: &'a Rule,
    channel_id: i64,
    total: i64,
    max_id: i64,
}

/// The (route, channel) pairs with waiting items whose last message is older than the digest
/// window. Each pair is probed through its indexes (a recent message first, then the waiting
/// items), so items held back in a window are not re-counted every round.
async fn due_groups<'a>(
    conn: &mut PgConnection,
    audience: &'a Audience,
    window_start: DateTime<Utc>,
) -> Result<Vec<Group<'a>>, sqlx::Error> {
    let mut groups = Vec::new();
    for route in &audience.routes {
        for &channel_id in &audience.enabled {
            let recent = sqlx::query_scalar!(
                r#"select exists (select 1 from notification_deliveries
                                  where route_id = $1 and channel_id = $2 and created_at > $3)
                   as "recent!""#,
                route.id,
                channel_id,
                window_start
            )
            .fetch_one(&mut *conn)
            .await?;
            if recent {
                continue;
            }
            let pending = sqlx::query!(
                r#"select count(*) as "total!", max(id) as max_id from notification_items
                   where route_id = $1 and channel_id = $2 and delivery_id is null"#,
                route.id,
                channel_id
            )
            .fetch_one(&mut *conn)
            .await?;
            if let Some(max_id) = pending.max_id {
                groups.push(Group {
                    route,
                    channel_id,
                    total: pending.total,
                    max_id,
                });
            }
        }
    }
    Ok(groups)
}

/// Queues one message per (route, channel) with waiting items whose last message is older than
/// the digest window.
async fn compose(
    conn: &mut PgConnection,
    audience: &Audience,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let window_start = now - chrono::Duration::from_std(settings.digest).unwrap_or_default();
    let mut queued = 0;
    for group in due_groups(conn, audience, window_start).await? {
        let shown: Vec<Item> = sqlx::query_scalar!(
            r#"select item as "item: Json<Item>" from notification_items
               where route_id = $1 and channel_id = $2 and delivery_id is null and id <= $3
               order by array_position($4::text[], severity) desc, id
               limit $5"#,
            group.route.id,
            group.channel_id,
            group.max_id,
            &SEVERITIES.map(String::from),
            ITEMS_IN_FULL as i64
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|Json(item)| item)
        .collect();
        let total = group.total;
        let title = match (total, shown.first()) {
            (1, Some(item)) => item.title.clone(),
            _ => plural(&group.route.event, total),
        };
        let link = match (total, shown.first()) {
            (1, Some(item)) => item.link.clone(),
            _ => list_link(settings, &group.route.event),
        };
        let message = Message {
            event: group.route.event.clone(),
            route: group.route.name.clone(),
            title,
            more: total - shown.len() as i64,
            items: shown,
            total,
            link,
        };
        let delivery = sqlx::query_scalar!(
            "insert into notification_deliveries
                 (channel_id, route_id, event, message, item_count, created_at, next_attempt_at)
             values ($1, $2, $3, $4, $5, $6, $6) returning id",
            group.channel_id,
            group.route.id,
            group.route.event,
            Json(&message) as _,
            total as i32,
            now
        )
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query!(
            "update notification_items set delivery_id = $4
             where route_id = $1 and channel_id = $2 and delivery_id is null and id <= $3",
            group.route.id,
            group.channel_id,
            group.max_id,
            delivery
        )
        .execute(&mut *conn)
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// One planning round at `now`: sources → items → messages. Returns at once when another
/// replica is planning.
pub async fn plan_once(
    pool: &PgPool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<PlanReport, NotifyError> {
    let mut tx = pool.begin().await?;
    let locked = sqlx::query_scalar!(r#"select pg_try_advisory_xact_lock(7120002) as "locked!""#)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(PlanReport {
            skipped: true,
            ..PlanReport::default()
        });
    }
    let audience = Audience::load(&mut tx).await?;
    let horizon = horizon(&mut tx).await?;
    let mut items = NewItems::default();
    let mut report = PlanReport::default();
    report.more |= plan_findings(&mut tx, &audience, settings, horizon, &mut items).await?;
    report.more |= plan_runtime_events(&mut tx, &audience, settings, horizon, &mut items).await?;
    report.more |= plan_incident_actions(&mut tx, &audience, settings, horizon, &mut items).await?;
    plan_waivers(&mut tx, &audience, settings, now, &mut items).await?;
    plan_reviews(&mut tx, &audience, settings, now, &mut items).await?;
    if !items.route.is_empty() {
        let inserted = sqlx::query!(
            "insert into notification_items (route_id, channel_id, subject, severity, item, created_at)
             select r, c, s, v, i, $6
             from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[])
                  as t(r, c, s, v, i)
             on conflict (route_id, channel_id, subject) do nothing",
            &items.route,
            &items.channel,
            &items.subject,
            &items.severity,
            &items.item,
            now
        )
        .execute(&mut *tx)
        .await?;
        report.items = inserted.rows_affected();
    }
    report.deliveries = compose(&mut tx, &audience, settings, now).await?;
    tx.commit().await?;
    Ok(report)
}
