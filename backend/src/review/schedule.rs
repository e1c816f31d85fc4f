//! Scheduled reviews: cron expressions from the configuration (`[[reviews.schedules]]`). Each
//! due time of each schedule fires once across every server and every restart: the first
//! server to insert the `(schedule, due time)` row into `review_schedule_runs` queues the review;
//! the others, and a restarted server, find the row and do nothing. A server that was down at a
//! due time queues that slot's review when it comes back (the newest missed slot only).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::{self, NewReview};
use super::{Clock, Format, ReviewError, SystemClock};
use crate::config::Config;

/// How often the schedules are looked at.
const TICK: Duration = Duration::from_secs(20);

/// One configured schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Stable identity of the schedule: its expression, team and formats.
    pub key: String,
    pub cron_text: String,
    pub cron: Cron,
    /// A team name; `None` for the whole estate.
    pub team: Option<String>,
    pub formats: Vec<Format>,
}

impl Schedule {
    /// Parses a schedule; the error says what is wrong with the expression or a format.
    pub fn parse(
        cron_text: &str,
        team: Option<String>,
        formats: &[String],
    ) -> Result<Self, String> {
        let cron_text = cron_text.trim().to_string();
        let cron = Cron::from_str(&cron_text).map_err(|err| {
            format!("'{cron_text}' is not a cron expression (minute hour day-of-month month day-of-week, e.g. \"0 6 * * MON\"): {err}")
        })?;
        let formats = formats
            .iter()
            .map(|f| f.parse::<Format>().map_err(|err| err.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let team = team.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let key = format!(
            "{cron_text}|{}|{}",
            team.as_deref().unwrap_or("*"),
            formats
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(Self {
            key,
            cron_text,
            cron,
            team,
            formats,
        })
    }

    /// The newest due time in `(after, now]`, if any.
    pub fn due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut due = None;
        let mut cursor = after;
        // A long outage fires once, for the newest missed slot; the bound keeps a per-minute
        // schedule after a long outage cheap.
        for _ in 0..100_000 {
            match self.cron.find_next_occurrence(&cursor, false) {
                Ok(next) if next <= now => {
                    due = Some(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        due
    }
}

/// The schedules and the time each was last looked at.
pub struct Scheduler {
    schedules: Vec<Schedule>,
    checked: HashMap<String, DateTime<Utc>>,
}

impl Scheduler {
    pub fn new(schedules: Vec<Schedule>) -> Self {
        Self {
            schedules,
            checked: HashMap::new(),
        }
    }

    /// Queues the review of every schedule that fell due since the last look; returns the ids
    /// of the reviews this call queued.
    pub async fn tick(
        &mut self,
        pool: &PgPool,
        clock: &dyn Clock,
    ) -> Result<Vec<i64>, ReviewError> {
        let now = clock.now();
        let mut queued = Vec::new();
        for schedule in &self.schedules {
            let since = match self.checked.get(&schedule.key) {
                Some(at) => *at,
                // First look: from the last slot any server fired, else from now on.
                None => sqlx::query_scalar!(
                    "select max(due_at) from review_schedule_runs where schedule_key = $1",
                    schedule.key
                )
                .fetch_one(pool)
                .await?
                .unwrap_or(now),
            };
            self.checked.insert(schedule.key.clone(), now.max(since));
            let Some(due_at) = schedule.due(since, now) else {
                continue;
            };
            if let Some(id) = fire(pool, schedule, due_at).await? {
                queued.push(id);
            }
        }
        Ok(queued)
    }
}

/// Claims the slot and queues its review; `None` when another server (or an earlier run) has.
async fn fire(
    pool: &PgPool,
    schedule: &Schedule,
    due_at: DateTime<Utc>,
) -> Result<Option<i64>, ReviewError> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query!(
        "insert into review_schedule_runs (schedule_key, due_at) values ($1, $2)
         on conflict on constraint review_schedule_runs_pkey do nothing",
        schedule.key,
        due_at
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(None);
    }
    let request = store::request(
        &mut tx,
        NewReview {
            team: schedule.team.clone(),
            formats: schedule.formats.clone(),
            trigger: "schedule",
            schedule_key: Some(schedule.key.clone()),
            requested_by: format!("schedule {}", schedule.cron_text),
            idempotency_key: None,
        },
    )
    .await;
    let review_id = match request {
        Ok((review, _)) => review.id,
        // The slot is still used up: a schedule naming an unknown team fails visibly.
        Err(ReviewError::UnknownTeam(team)) => {
            let id = sqlx::query_scalar!(
                "insert into reviews (team_name, trigger, schedule_key, requested_by, status,
                                      error, finished_at)
                 values ($1, 'schedule', $2, $3, 'failed', $4, now()) returning id",
                team,
                schedule.key,
                format!("schedule {}", schedule.cron_text),
                format!("no team named {team}")
            )
            .fetch_one(&mut *tx)
            .await?;
            tracing::warn!(schedule = %schedule.key, %team, "a review schedule names an unknown team");
            id
        }
        Err(err) => return Err(err),
    };
    sqlx::query!(
        "update review_schedule_runs set review_id = $3 where schedule_key = $1 and due_at = $2",
        schedule.key,
        due_at,
        review_id
    )
    .execute(&mut *tx)
    .await?;
    crate::auth::audit::record(
        &mut *tx,
        crate::auth::audit::Actor::system("scheduler"),
        "review.generate",
        &format!("review {review_id}"),
        crate::auth::audit::Outcome::Success,
        None,
        serde_json::json!({"schedule": schedule.key, "due_at": due_at, "team": schedule.team}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(schedule = %schedule.key, %due_at, review = review_id, "scheduled review queued");
    Ok(Some(review_id))
}

/// Starts the schedule loop when any schedule is configured.
pub fn spawn(pool: PgPool, config: Arc<Config>, tasks: &TaskTracker, cancel: &CancellationToken) {
    if config.reviews.schedules.is_empty() {
        return;
    }
    let cancel = cancel.clone();
    let mut scheduler = Scheduler::new(config.reviews.schedules.clone());
    tasks.spawn(async move {
        loop {
            if let Err(err) = scheduler.tick(&pool, &SystemClock).await {
                tracing::warn!(error = %err, "the review scheduler could not reach the database");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap(),
        )
    }

    #[test]
    fn a_weekly_schedule_is_due_on_monday_at_six_only() {
        let schedule = Schedule::parse("0 6 * * MON", Some("payments".into()), &[]).unwrap();
        // 2026-11-30 is a Monday.
        assert_eq!(
            schedule.due(at("2026-11-30 05:00:00"), at("2026-11-30 05:59:59")),
            None
        );
        assert_eq!(
            schedule.due(at("2026-11-30 05:00:00"), at("2026-11-30 06:00:00")),
            Some(at("2026-11-30 06:00:00"))
        );
        assert_eq!(
            schedule.due(at("2026-11-30 06:00:00"), at("2026-12-06 23:00:00")),
            None
        );
        // Down for three weeks: the newest missed slot only.
        assert_eq!(
            schedule.due(at("2026-11-29 00:00:00"), at("2026-12-20 00:00:00")),
            Some(at("2026-12-14 06:00:00"))
        );
    }

    #[test]
    fn a_bad_expression_or_format_is_named() {
        let err = Schedule::parse("every monday", None, &[]).unwrap_err();
        assert!(err.contains("'every monday'"), "{err}");
        let err = Schedule::parse("0 6 * * MON", None, &["pdf".into()]).unwrap_err();
        assert!(err.contains("'pdf'"), "{err}");
    }
}
