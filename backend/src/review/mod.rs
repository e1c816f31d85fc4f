//! Periodic reviews: a snapshot of the estate (or of one team's part of it) taken once, stored
//! table by table in `review_rows`, and rendered from that stored snapshot into CSV (a zip with
//! one file per table), JSON, XLSX and printable HTML. Every format reads the same stored rows,
//! so their numbers agree; "new" and "resolved since the previous review" compare two stored
//! snapshots.
//!
//! - [`snapshot`] takes the snapshot in one repeatable-read transaction;
//! - [`render`] streams the stored rows into each format's file (bounded memory);
//! - [`store`] asks for reviews, lists them, records exports and sign-offs;
//! - [`worker`] generates queued reviews in the background, with progress;
//! - [`schedule`] starts reviews from the cron expressions in the configuration.

pub mod render;
pub mod schedule;
pub mod snapshot;
pub mod store;
pub mod worker;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Xlsx,
    Html,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Csv, Format::Json, Format::Xlsx, Format::Html];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Xlsx => "xlsx",
            Self::Html => "html",
        }
    }

    /// The stored file's extension (the CSV export is a zip of CSV files).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "zip",
            other => other.as_str(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "application/zip",
            Self::Json => "application/json",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Html => "text/html; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ReviewError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "xlsx" => Ok(Self::Xlsx),
            "html" => Ok(Self::Html),
            other => Err(ReviewError::Invalid(format!(
                "'{other}' is not a review format; expected csv, json, xlsx or html"
            ))),
        }
    }
}

/// One table of a review: its stable name (the CSV file, XLSX sheet and JSON key), a title for
/// people, and its columns in order (the JSON field names).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TableSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub columns: &'static [&'static str],
    /// Tables that can hold a row per finding or per workload; the printable HTML shows the
    /// first [`render::HTML_ROW_LIMIT`] rows of these and says how many more the other formats
    /// hold.
    pub large: bool,
}

const FINDING_COLUMNS: &[&str] = &[
    "finding_id",
    "workload_id",
    "check_id",
    "severity",
    "layer",
    "team",
    "source",
    "namespace",
    "kind",
    "workload",
    "container",
    "first_seen",
    "age_days",
    "waived",
    "message",
];

/// Every table of a review, in the order every format shows them.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "inventory",
        title: "Inventory",
        columns: &["category", "name", "count"],
        large: false,
    },
    TableSpec {
        name: "posture_by_team",
        title: "Posture by team",
        columns: &[
            "team",
            "workloads",
            "open",
            "waived",
            "critical",
            "high",
            "medium",
            "low",
            "info",
        ],
        large: false,
    },
    TableSpec {
        name: "posture_by_layer",
        title: "Posture by layer",
        columns: &[
            "layer", "open", "waived", "critical", "high", "medium", "low", "info",
        ],
        large: false,
    },
    TableSpec {
        name: "posture_by_check",
        title: "Posture by check",
        columns: &[
            "check_id",
            "severity",
            "layer",
            "workloads",
            "open",
            "waived",
        ],
        large: false,
    },
    TableSpec {
        name: "open_findings",
        title: "Open findings",
        columns: FINDING_COLUMNS,
        large: true,
    },
    TableSpec {
        name: "new_findings",
        title: "New since the previous review",
        columns: FINDING_COLUMNS,
        large: true,
    },
    TableSpec {
        name: "resolved_findings",
        title: "Resolved since the previous review",
        columns: &[
            "finding_id",
            "workload_id",
            "check_id",
            "severity",
            "layer",
            "team",
            "source",
            "namespace",
            "kind",
            "workload",
            "container",
            "first_seen",
            "resolved_at",
            "resolution",
        ],
        large: true,
    },
    TableSpec {
        name: "waivers",
        title: "Active waivers",
        columns: &[
            "waiver_id",
            "check_id",
            "scope",
            "reason",
            "requested_by",
            "approved_by",
            "expires_at",
            "days_left",
            "expiring_within_30_days",
            "findings_waived",
        ],
        large: false,
    },
    TableSpec {
        name: "incidents",
        title: "Incidents of the period",
        columns: &[
            "incident_id",
            "title",
            "severity",
            "state",
            "opened_at",
            "opened_by",
            "workloads",
            "isolated_at",
            "minutes_to_isolate",
            "restored_at",
            "minutes_to_restore",
            "closed_at",
        ],
        large: false,
    },
    TableSpec {
        name: "ownership_gaps",
        title: "Ownership gaps",
        columns: &[
            "workload_id",
            "source",
            "namespace",
            "kind",
            "workload",
            "owned_layers",
            "missing_layers",
        ],
        large: true,
    },
    TableSpec {
        name: "lifecycle_anomalies",
        title: "Lifecycle anomalies",
        columns: &[
            "anomaly",
            "workload_id",
            "source",
            "namespace",
            "kind",
            "workload",
            "detail",
            "age_days",
        ],
        large: true,
    },
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|spec| spec.name == name)
}

/// The five responsibility layers, in the order the shared-responsibility model lists them.
pub const LAYERS: [&str; 5] = ["application", "image", "runtime", "orchestration", "host"];

/// What went wrong with a review.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such review")]
    NotFound,
    #[error("no team named {0}")]
    UnknownTeam(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the review is not ready: it is {0}")]
    NotReady(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("writing the {format} export: {message}")]
    Render { format: Format, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl ReviewError {
    fn render(format: Format, err: impl fmt::Display) -> Self {
        Self::Render {
            format,
            message: err.to_string(),
        }
    }
}

/// Where the time comes from: the system clock, or a clock the tests set.
pub trait Clock: Send + Sync {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_case_insensitively_and_name_the_bad_one() {
        assert_eq!("XLSX".parse::<Format>().unwrap(), Format::Xlsx);
        let err = "pdf".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("'pdf'"), "{err}");
    }

    #[test]
    fn table_names_are_unique_and_fit_a_sheet_name() {
        let mut names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len());
        // XLSX sheet names: at most 31 characters, with room for a continuation suffix.
        assert!(TABLES.iter().all(|t| t.name.len() <= 28));
    }
}
