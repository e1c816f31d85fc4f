//! The audit log: one append-only row per thing done in the console or through the API — who
//! (actor), what (action), to what (target), when, from where (client address), how it ended
//! (outcome) and any details. The table refuses UPDATE, DELETE and TRUNCATE by trigger.
//!
//! Every mutation handler calls [`record`], preferably on the transaction that makes the change
//! so that the row commits with it. Details are a JSON object and never hold a secret value.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, Postgres, QueryBuilder};

use super::{Principal, PrincipalKind};

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was tried and failed (a wrong password, an engine that refused).
    Failure,
    /// It was not allowed (role too low, a cross-site request, throttled).
    Denied,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of actor a row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A signed-in person.
    User,
    /// An API token, by its name.
    Token,
    /// Someone not signed in, by the name they tried (sign-in) or `anonymous`.
    Anonymous,
    /// Harbormaster itself or its command line (`cli`, `setup`).
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub kind: ActorKind,
}

impl<'a> Actor<'a> {
    pub fn user(name: &'a str) -> Self {
        Self {
            name,
            kind: ActorKind::User,
        }
    }

    /// Someone not signed in; `name` is what they claimed (the sign-in name), if anything.
    pub fn anonymous(name: &'a str) -> Self {
        Self {
            name,
            kind: ActorKind::Anonymous,
        }
    }

    /// Harbormaster itself: `cli` for commands, `setup` for the first-start link.
    pub fn system(name: &'a str) -> Self {
        Self {
            name,
            kind: ActorKind::System,
        }
    }
}

impl<'a> From<&'a Principal> for Actor<'a> {
    fn from(principal: &'a Principal) -> Self {
        Self {
            name: &principal.name,
            kind: match principal.kind {
                PrincipalKind::Session => ActorKind::User,
                PrincipalKind::Token => ActorKind::Token,
            },
        }
    }
}

tokio::task_local! {
    /// Audit rows written while handling the current request (see [`counted`]).
    static WRITTEN: Arc<AtomicUsize>;
}

/// Runs `future` (a request's handler) and says how many audit rows it recorded, so that the
/// web layer can notice a mutation that recorded none.
pub async fn counted<F: Future>(future: F) -> (F::Output, usize) {
    let written = Arc::new(AtomicUsize::new(0));
    let output = WRITTEN.scope(written.clone(), future).await;
    (output, written.load(Ordering::Relaxed))
}

/// Appends one row to the audit log and returns its id.
///
/// `actor` is a `&Principal` or an [`Actor`]; `action` a dotted verb such as `user.create` or
/// `incident.isolate`; `target` what was acted on (`user alice`, `workload 42`); `details` a
/// JSON object (use `json!({})` for none) that must never carry a secret value.
pub async fn record<'a>(
    executor: impl PgExecutor<'_>,
    actor: impl Into<Actor<'a>>,
    action: &str,
    target: &str,
    outcome: Outcome,
    client_addr: Option<IpAddr>,
    details: serde_json::Value,
) -> Result<i64, sqlx::Error> {
    let actor = actor.into();
    let id = sqlx::query_scalar!(
        "insert into audit_log (actor, actor_kind, action, target, outcome, client_addr, details)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        actor.name,
        actor.kind.as_str(),
        action,
        target,
        outcome.as_str(),
        client_addr.map(|addr| addr.to_string()),
        details
    )
    .fetch_one(executor)
    .await?;
    let _ = WRITTEN.try_with(|written| written.fetch_add(1, Ordering::Relaxed));
    Ok(id)
}

/// One row of the audit log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_kind: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub client_addr: Option<String>,
    pub details: serde_json::Value,
}

/// Which rows to read: every filter is optional; newest first, before `before` (an id, for
/// paging), at most `limit`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilter {
    /// The actor's name, exactly (any case).
    pub actor: Option<String>,
    /// The action, or its prefix when it ends with `.` or `*` (`user.` matches `user.create`).
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows with an id below this one (the next page).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

impl AuditFilter {
    /// Drops empty strings, as an HTML form sends them for untouched fields.
    pub fn normalized(mut self) -> Self {
        for field in [&mut self.actor, &mut self.action, &mut self.outcome] {
            if field
                .as_deref()
                .is_some_and(|value| value.trim().is_empty())
            {
                *field = None;
            }
        }
        self
    }
}

/// The rows matching `filter`, newest first. `max` bounds `filter.limit`.
pub async fn list(
    executor: impl PgExecutor<'_>,
    filter: &AuditFilter,
    max: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "select id, at, actor, actor_kind, action, target, outcome, client_addr, details \
         from audit_log where true",
    );
    if let Some(actor) = filter.actor.as_deref().map(str::trim) {
        query
            .push(" and lower(actor) = lower(")
            .push_bind(actor.to_string())
            .push(")");
    }
    if let Some(action) = filter.action.as_deref().map(str::trim) {
        if let Some(prefix) = action.strip_suffix('*') {
            query
                .push(" and starts_with(action, ")
                .push_bind(prefix.to_string())
                .push(")");
        } else if action.ends_with('.') {
            query
                .push(" and starts_with(action, ")
                .push_bind(action.to_string())
                .push(")");
        } else {
            query.push(" and action = ").push_bind(action.to_string());
        }
    }
    if let Some(outcome) = filter.outcome.as_deref().map(str::trim) {
        query.push(" and outcome = ").push_bind(outcome.to_string());
    }
    if let Some(since) = filter.since {
        query.push(" and at >= ").push_bind(since);
    }
    if let Some(before) = filter.before {
        query.push(" and id < ").push_bind(before);
    }
    let limit = filter.limit.unwrap_or(max).clamp(1, max);
    query.push(" order by id desc limit ").push_bind(limit);
    query.build_query_as().fetch_all(executor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("maybe"), None);
    }

    #[test]
    fn empty_form_fields_do_not_filter() {
        let filter = AuditFilter {
            actor: Some(" ".into()),
            action: Some("user.".into()),
            ..AuditFilter::default()
        }
        .normalized();
        assert!(filter.actor.is_none());
        assert_eq!(filter.action.as_deref(), Some("user."));
    }
}
