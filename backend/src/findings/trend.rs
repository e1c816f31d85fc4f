//! The posture history behind the overview's trend: one snapshot per UTC day
//! (`posture_snapshots`, scope `all`).
//!
//! The **posture score** of the estate is the mean grade of its live graded workloads (live: not
//! retired), with A = 4, B = 3, C = 2, D = 1, F = 0 — the grades of
//! [`crate::posture::score::grade`] (README "Posture checks and grades"), averaged the way
//! `GET /api/v1/posture/summary` averages them. A snapshot also keeps how many workloads had each
//! grade and the open, non-waived findings by severity.
//!
//! - [`snapshot_today`] writes today's row from the workloads' maintained scores (origin `live`);
//!   [`spawn`] runs it at start-up and every [`REFRESH_INTERVAL`], so a day's row holds its state
//!   as last refreshed before midnight.
//! - [`backfill`] rebuilds the missing days of the last [`BACKFILL_DAYS`] from the findings'
//!   history (findings are never deleted: a finding was open at the end of a day when it was
//!   first seen by then and not resolved by then), so a fresh install with findings history shows
//!   a real trend (origin `backfill`). A workload counts on a day when it was first seen by its
//!   end and not retired by then, and it is graded today. Waivers: a finding waived now leaves the
//!   counts from its waiver's approval on; waivers that have since expired or been revoked are
//!   not known per finding and are not replayed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::inventory::query::{stage_counts, StageCount};
use crate::lifecycle::Stage;
use crate::posture::score::{grade, Grade, SeverityCounts};
use crate::posture::Severity;

/// The scope of the estate-wide snapshots.
pub const SCOPE_ALL: &str = "all";
/// How often [`spawn`]'s loop refreshes today's snapshot (and fills missing days).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// How far back [`backfill`] rebuilds missing days.
pub const BACKFILL_DAYS: u64 = 90;

/// The posture of the estate at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EstatePosture {
    /// Live graded workloads by grade: A, B, C, D, F.
    pub grades: [i64; 5],
    /// Open, non-waived findings of live workloads: critical, high, medium, low, info.
    pub open: [i64; 5],
}

/// The grades in the order of [`EstatePosture::grades`], with their value in the score.
pub const GRADES: [(Grade, f64); 5] = [
    (Grade::A, 4.0),
    (Grade::B, 3.0),
    (Grade::C, 2.0),
    (Grade::D, 1.0),
    (Grade::F, 0.0),
];

/// The severities in the order of [`EstatePosture::open`].
pub const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

impl EstatePosture {
    /// Counts one live workload with its grade and open counts.
    pub fn add(&mut self, counts: &SeverityCounts) {
        let index = GRADES
            .iter()
            .position(|(g, _)| *g == grade(counts))
            .expect("every grade is listed");
        self.grades[index] += 1;
        for (slot, n) in self.open.iter_mut().zip([
            counts.critical,
            counts.high,
            counts.medium,
            counts.low,
            counts.info,
        ]) {
            *slot += i64::from(n);
        }
    }

    pub fn graded(&self) -> i64 {
        self.grades.iter().sum()
    }

    /// The mean grade, 0 (all F) to 4 (all A); `None` without a graded workload.
    pub fn score(&self) -> Option<f64> {
        let graded = self.graded();
        (graded > 0).then(|| {
            let total: f64 = self
                .grades
                .iter()
                .zip(GRADES)
                .map(|(n, (_, value))| *n as f64 * value)
                .sum();
            total / graded as f64
        })
    }

    /// Open findings at `severity`.
    pub fn open_at(&self, severity: Severity) -> i64 {
        SEVERITIES
            .iter()
            .position(|s| *s == severity)
            .map_or(0, |i| self.open[i])
    }
}

/// The letter nearest a score (3.6 → A, 2.4 → C).
pub fn letter(score: f64) -> &'static str {
    let rounded = score.round().clamp(0.0, 4.0);
    GRADES
        .iter()
        .find(|(_, value)| *value == rounded)
        .map_or("F", |(g, _)| g.as_str())
}

impl EstatePosture {
    /// The posture of the live workloads from the per-stage counts (retired ones left out).
    pub fn of_live(stages: &[StageCount]) -> Self {
        let mut sum = Self::default();
        for count in stages.iter().filter(|c| c.stage != Stage::Retire) {
            for (total, n) in sum.grades.iter_mut().zip(count.posture.grades) {
                *total += n;
            }
            for (total, n) in sum.open.iter_mut().zip(count.posture.open) {
                *total += n;
            }
        }
        sum
    }
}

/// The posture now, from the workloads' maintained grades and counts (one pass).
pub async fn current(db: impl PgExecutor<'_>) -> Result<EstatePosture, sqlx::Error> {
    Ok(EstatePosture::of_live(&stage_counts(db).await?))
}

/// One day of the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayPosture {
    pub day: NaiveDate,
    pub posture: EstatePosture,
}

async fn store(
    db: impl PgExecutor<'_>,
    day: NaiveDate,
    posture: &EstatePosture,
    origin: &str,
    replace: bool,
) -> Result<(), sqlx::Error> {
    let g = posture.grades;
    let o = posture.open;
    sqlx::query!(
        r#"insert into posture_snapshots (day, scope, score, workloads_graded, grade_a, grade_b,
                  grade_c, grade_d, grade_f, open_critical, open_high, open_medium, open_low,
                  open_info, origin)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           on conflict (scope, day) do update set score = excluded.score,
                  workloads_graded = excluded.workloads_graded, grade_a = excluded.grade_a,
                  grade_b = excluded.grade_b, grade_c = excluded.grade_c,
                  grade_d = excluded.grade_d, grade_f = excluded.grade_f,
                  open_critical = excluded.open_critical, open_high = excluded.open_high,
                  open_medium = excluded.open_medium, open_low = excluded.open_low,
                  open_info = excluded.open_info, origin = excluded.origin, taken_at = now()
           where $16"#,
        day,
        SCOPE_ALL,
        posture.score(),
        posture.graded() as i32,
        g[0] as i32,
        g[1] as i32,
        g[2] as i32,
        g[3] as i32,
        g[4] as i32,
        o[0] as i32,
        o[1] as i32,
        o[2] as i32,
        o[3] as i32,
        o[4] as i32,
        origin,
        replace
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Writes (or refreshes) the snapshot of `now`'s day from the current posture.
pub async fn snapshot_today(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let posture = current(pool).await?;
    store(pool, now.date_naive(), &posture, "live", true).await
}

/// The stored history from `from` to `to` (inclusive), oldest first; days without a row are
/// absent.
pub async fn history(
    db: impl PgExecutor<'_>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DayPosture>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select day, grade_a, grade_b, grade_c, grade_d, grade_f, open_critical, open_high,
                  open_medium, open_low, open_info
           from posture_snapshots where scope = $1 and day between $2 and $3 order by day"#,
        SCOPE_ALL,
        from,
        to
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DayPosture {
            day: r.day,
            posture: EstatePosture {
                grades: [r.grade_a, r.grade_b, r.grade_c, r.grade_d, r.grade_f].map(i64::from),
                open: [
                    r.open_critical,
                    r.open_high,
                    r.open_medium,
                    r.open_low,
                    r.open_info,
                ]
                .map(i64::from),
            },
        })
        .collect())
}

/// A workload as the reconstruction needs it.
#[derive(Clone, Debug)]
pub struct WorkloadSpan {
    pub id: i64,
    pub first_seen: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// A finding as the reconstruction needs it.
#[derive(Clone, Debug)]
pub struct FindingSpan {
    pub workload_id: i64,
    pub severity: Severity,
    pub first_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the waiver that covers it now was approved.
    pub waived_since: Option<DateTime<Utc>>,
}

/// The first instant after `day` (its end, exclusive).
fn end_of(day: NaiveDate) -> DateTime<Utc> {
    (day + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

/// The posture at the end of each of `days`, rebuilt from the workloads' and findings' history.
pub fn reconstruct(
    workloads: &[WorkloadSpan],
    findings: &[FindingSpan],
    days: &[NaiveDate],
) -> Vec<DayPosture> {
    let index: HashMap<i64, usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id, i))
        .collect();
    let findings: Vec<(usize, &FindingSpan)> = findings
        .iter()
        .filter_map(|f| index.get(&f.workload_id).map(|i| (*i, f)))
        .collect();
    let mut counts = vec![SeverityCounts::default(); workloads.len()];
    days.iter()
        .map(|day| {
            let end = end_of(*day);
            let before_end = |at: DateTime<Utc>| at < end;
            let live = |w: &WorkloadSpan| {
                before_end(w.first_seen) && w.retired_at.is_none_or(|at| !before_end(at))
            };
            counts.fill(SeverityCounts::default());
            for (i, f) in &findings {
                let open = before_end(f.first_seen)
                    && f.resolved_at.is_none_or(|at| !before_end(at))
                    && f.waived_since.is_none_or(|at| !before_end(at));
                if open {
                    counts[*i].add(f.severity);
                }
            }
            let mut posture = EstatePosture::default();
            for (w, c) in workloads.iter().zip(&counts) {
                if live(w) {
                    posture.add(c);
                }
            }
            DayPosture { day: *day, posture }
        })
        .collect()
}

/// Rebuilds the days of the last [`BACKFILL_DAYS`] before `today` that have no snapshot yet;
/// returns how many were written. Costs one count when nothing is missing.
pub async fn backfill(pool: &PgPool, today: NaiveDate) -> Result<usize, sqlx::Error> {
    let from = today - Days::new(BACKFILL_DAYS);
    let yesterday = today - Days::new(1);
    let present: Vec<NaiveDate> = sqlx::query_scalar!(
        "select day from posture_snapshots where scope = $1 and day between $2 and $3",
        SCOPE_ALL,
        from,
        yesterday
    )
    .fetch_all(pool)
    .await?;
    let missing: Vec<NaiveDate> = from
        .iter_days()
        .take_while(|day| *day <= yesterday)
        .filter(|day| !present.contains(day))
        .collect();
    let Some(first) = missing.first().copied() else {
        return Ok(0);
    };
    let window_start = first
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let workloads: Vec<WorkloadSpan> = sqlx::query_as!(
        WorkloadSpan,
        r#"select id, first_seen, retired_at from workloads
           where grade is not null and (retired_at is null or retired_at >= $1)"#,
        window_start
    )
    .fetch_all(pool)
    .await?;
    let findings: Vec<FindingSpan> = sqlx::query!(
        r#"select f.workload_id, f.severity, f.first_seen, f.resolved_at,
                  v.approved_at as "waived_since?"
           from findings f left join waivers v on v.id = f.waiver_id
           where f.resolved_at is null or f.resolved_at >= $1"#,
        window_start
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .filter_map(|r| {
        Some(FindingSpan {
            workload_id: r.workload_id,
            severity: Severity::parse(&r.severity)?,
            first_seen: r.first_seen,
            resolved_at: r.resolved_at,
            waived_since: r.waived_since,
        })
    })
    .collect();
    let rebuilt = reconstruct(&workloads, &findings, &missing);
    let mut tx = pool.begin().await?;
    for day in &rebuilt {
        store(&mut *tx, day.day, &day.posture, "backfill", false).await?;
    }
    tx.commit().await?;
    Ok(rebuilt.len())
}

/// Refreshes today's snapshot at start-up and every [`REFRESH_INTERVAL`], filling missing days
/// first, until cancelled.
pub fn spawn(pool: PgPool, tasks: &TaskTracker, cancel: &CancellationToken) {
    super::every(
        pool,
        tasks,
        cancel,
        REFRESH_INTERVAL,
        "record the posture history",
        |pool| async move {
            let now = Utc::now();
            let days = backfill(&pool, now.date_naive()).await?;
            if days > 0 {
                tracing::info!(days, "posture history rebuilt from findings");
            }
            snapshot_today(&pool, now).await
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str, hour: u32) -> DateTime<Utc> {
        NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_score_is_the_mean_grade_and_its_letter_the_nearest() {
        let mut posture = EstatePosture::default();
        assert_eq!(posture.score(), None);
        posture.add(&SeverityCounts::default()); // A
        posture.add(&SeverityCounts {
            critical: 1,
            ..SeverityCounts::default()
        }); // F
        posture.add(&SeverityCounts {
            high: 1,
            info: 3,
            ..SeverityCounts::default()
        }); // C
        assert_eq!(posture.grades, [1, 0, 1, 0, 1]);
        assert_eq!(posture.score(), Some(2.0));
        assert_eq!(posture.open, [1, 1, 0, 0, 3]);
        assert_eq!(letter(3.6), "A");
        assert_eq!(letter(2.4), "C");
        assert_eq!(letter(0.2), "F");
    }

    #[test]
    fn findings_count_on_the_days_they_were_open_and_not_waived() {
        let workloads = vec![
            WorkloadSpan {
                id: 1,
                first_seen: at("2026-11-01", 8),
                retired_at: None,
            },
            // Retired on the 3rd: not counted from then on.
            WorkloadSpan {
                id: 2,
                first_seen: at("2026-11-01", 8),
                retired_at: Some(at("2026-11-03", 12)),
            },
        ];
        let finding = |workload_id, severity, first: &str, resolved: Option<&str>| FindingSpan {
            workload_id,
            severity,
            first_seen: at(first, 9),
            resolved_at: resolved.map(|d| at(d, 9)),
            waived_since: None,
        };
        let mut waived = finding(1, Severity::Medium, "2026-11-01", None);
        waived.waived_since = Some(at("2026-11-03", 10));
        let findings = vec![
            // Open the 1st, fixed the 2nd: counted on the 1st only.
            finding(1, Severity::Critical, "2026-11-01", Some("2026-11-02")),
            // Opened the 2nd, still open.
            finding(1, Severity::High, "2026-11-02", None),
            waived,
            finding(2, Severity::Low, "2026-11-01", Some("2026-11-03")),
            // A workload not graded (absent from the list) never counts.
            finding(9, Severity::Critical, "2026-11-01", None),
        ];
        let days: Vec<NaiveDate> = ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
            .map(day)
            .to_vec();
        let rebuilt = reconstruct(&workloads, &findings, &days);
        let open: Vec<[i64; 5]> = rebuilt.iter().map(|d| d.posture.open).collect();
        assert_eq!(
            open,
            [
                [0, 0, 0, 0, 0],
                [1, 0, 1, 1, 0],
                [0, 1, 1, 1, 0],
                [0, 1, 0, 0, 0],
            ]
        );
        let grades: Vec<[i64; 5]> = rebuilt.iter().map(|d| d.posture.grades).collect();
        assert_eq!(
            grades,
            [
                [0, 0, 0, 0, 0],
                [1, 0, 0, 0, 1], // workload 1: critical → F; workload 2: one low → A
                [1, 0, 1, 0, 0], // workload 1: high → C
                [0, 0, 1, 0, 0], // workload 2 retired
            ]
        );
        assert_eq!(rebuilt[2].posture.score(), Some(3.0));
    }
}
