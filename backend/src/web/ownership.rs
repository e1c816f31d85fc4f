//! Ownership in the API and the console: teams and their members, ownership rules, explicit
//! owners of a workload (one or a filtered list), the unowned queue, the responsibility matrix,
//! a team's page, and the self-service actions of a team's members (acknowledge a finding,
//! request a waiver).
//!
//! API: `GET|POST /api/v1/teams`, `GET /api/v1/teams/{id}`, `POST /api/v1/teams/{id}/members`,
//! `DELETE /api/v1/teams/{id}/members/{user_id}`, `GET|POST /api/v1/ownership-rules`,
//! `DELETE /api/v1/ownership-rules/{id}`, `GET|PUT /api/v1/workloads/{id}/owners`,
//! `POST /api/v1/workloads/owners` (bulk, by filter), `GET /api/v1/unowned`,
//! `GET /api/v1/ownership/matrix`, `POST /api/v1/findings/{id}/acknowledge`.
//!
//! Who may do what: reading is for every signed-in person; teams, members, rules and owners are
//! changed by admins only. Acting for a team ([`may_act_for_owner`]) is for admins and for the
//! signed-in members of the team that owns the layer of the finding; a waiver request
//! ([`may_request_waiver`]) also for responders, as the waiver API always allowed. Every change
//! writes an audit row in its transaction (a refused or failed one, after it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, Redirect};
use axum::routing::{delete, get, post, put};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::access::{Admin, RequireRole};
use super::findings::parse_body;
use super::json::ApiJson;
use super::page::{query_string, PageContext};
use super::params::parse_id;
use super::workloads::WorkloadFilter;
use super::{AppState, RoutePolicy, WebError};
use crate::auth::audit::{self, Outcome};
use crate::auth::{Principal, PrincipalKind, Role};
use crate::findings::waivers::NewWaiver;
use crate::ownership::store::{self, Member, NewRule, OwnerView, OwnershipError, Resolution};
use crate::ownership::views::{self, Matrix, TeamSummary, TeamWork, UnownedPage};
use crate::ownership::{self as own, Rule, Team, LAYERS, TEAM_KINDS};

pub const POLICIES: &[RoutePolicy] = &[
    RoutePolicy::role(Method::GET, "/api/v1/teams", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/teams", Role::Admin),
    RoutePolicy::role(Method::GET, "/api/v1/teams/{id}", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/teams/{id}/members", Role::Admin),
    RoutePolicy::role(
        Method::DELETE,
        "/api/v1/teams/{id}/members/{user_id}",
        Role::Admin,
    ),
    RoutePolicy::role(Method::GET, "/api/v1/ownership-rules", Role::Viewer),
    RoutePolicy::role(Method::POST, "/api/v1/ownership-rules", Role::Admin),
    RoutePolicy::role(Method::PUT, "/api/v1/ownership-rules/{id}", Role::Admin),
    RoutePolicy::role(Method::DELETE, "/api/v1/ownership-rules/{id}", Role::Admin),
    RoutePolicy::role(Method::GET, "/api/v1/workloads/{id}/owners", Role::Viewer),
    RoutePolicy::role(Method::PUT, "/api/v1/workloads/{id}/owners", Role::Admin),
    RoutePolicy::role(Method::POST, "/api/v1/workloads/owners", Role::Admin),
    RoutePolicy::role(Method::GET, "/api/v1/unowned", Role::Viewer),
    RoutePolicy::role(Method::GET, "/api/v1/ownership/matrix", Role::Viewer),
    // Members of the owning team act here: the handler decides (see `may_act_for_owner`).
    RoutePolicy::role(
        Method::POST,
        "/api/v1/findings/{id}/acknowledge",
        Role::Viewer,
    ),
    RoutePolicy::role(Method::GET, "/teams", Role::Viewer),
    RoutePolicy::role(Method::POST, "/teams", Role::Admin),
    RoutePolicy::role(Method::GET, "/teams/{id}", Role::Viewer),
    RoutePolicy::role(Method::POST, "/teams/{id}/members", Role::Admin),
    RoutePolicy::role(Method::GET, "/ownership/rules", Role::Viewer),
    RoutePolicy::role(Method::POST, "/ownership/rules", Role::Admin),
    RoutePolicy::role(Method::POST, "/ownership/rules/{id}/delete", Role::Admin),
    RoutePolicy::role(Method::GET, "/ownership/matrix", Role::Viewer),
    RoutePolicy::role(Method::GET, "/unowned", Role::Viewer),
    RoutePolicy::role(Method::POST, "/workloads/{id}/owners", Role::Admin),
    RoutePolicy::role(Method::POST, "/workloads/owners", Role::Admin),
    RoutePolicy::role(Method::POST, "/findings/{id}/acknowledge", Role::Viewer),
    RoutePolicy::role(Method::POST, "/findings/{id}/waiver", Role::Viewer),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/teams", get(list_teams).post(create_team))
        .route("/api/v1/teams/{id}", get(get_team))
        .route("/api/v1/teams/{id}/members", post(add_member))
        .route(
            "/api/v1/teams/{id}/members/{user_id}",
            delete(remove_member),
        )
        .route("/api/v1/ownership-rules", get(list_rules).post(create_rule))
        .route(
            "/api/v1/ownership-rules/{id}",
            put(update_rule).delete(delete_rule),
        )
        .route(
            "/api/v1/workloads/{id}/owners",
            get(get_owners).put(put_owners),
        )
        .route("/api/v1/workloads/owners", post(bulk_assign))
        .route("/api/v1/unowned", get(list_unowned))
        .route("/api/v1/ownership/matrix", get(get_matrix))
        .route(
            "/api/v1/findings/{id}/acknowledge",
            post(acknowledge_finding),
        )
        .route("/teams", get(get_teams_page).post(create_team_form))
        .route("/teams/{id}", get(get_team_page))
        .route("/teams/{id}/members", post(add_member_form))
        .route(
            "/ownership/rules",
            get(get_rules_page).post(create_rule_form),
        )
        .route("/ownership/rules/{id}/delete", post(delete_rule_form))
        .route("/ownership/matrix", get(get_matrix_page))
        .route("/unowned", get(get_unowned_page))
        .route("/workloads/{id}/owners", post(assign_form))
        .route("/workloads/owners", post(bulk_assign_form))
        .route("/findings/{id}/acknowledge", post(acknowledge_form))
        .route("/findings/{id}/waiver", post(request_waiver_form))
}

impl From<OwnershipError> for WebError {
    fn from(err: OwnershipError) -> Self {
        match err {
            OwnershipError::Invalid(message) => WebError::Unprocessable(message),
            OwnershipError::NotFound(message) => WebError::NotFound(message),
            OwnershipError::Conflict(message) => WebError::Conflict(message),
            OwnershipError::Db(err) => err.into(),
        }
    }
}

fn render(template: &impl Template) -> Result<Html<String>, WebError> {
    Ok(Html(template.render().map_err(anyhow::Error::from)?))
}

/// A `team` filter names a team (id or name) or is `none`; anything else is a 400.
pub async fn check_team_filter(state: &AppState, team: Option<&str>) -> Result<(), WebError> {
    match team {
        None | Some("none") => Ok(()),
        Some(given) => match store::find_team(&state.pool, given).await? {
            Some(_) => Ok(()),
            None => Err(WebError::BadRequest(format!(
                "team '{given}' is not a team's id or name (or none)"
            ))),
        },
    }
}

type Change<'c, T> = Pin<Box<dyn Future<Output = Result<T, WebError>> + Send + 'c>>;

/// Runs a change in a transaction with its audit row; a failure is audited after the rollback.
async fn audited<T: Send>(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    details: Value,
    change: impl for<'c> FnOnce(&'c mut PgConnection) -> Change<'c, T>,
) -> Result<T, WebError> {
    let mut tx = state.pool.begin().await?;
    match change(&mut tx).await {
        Ok(value) => {
            audit::record(
                &mut *tx,
                principal,
                action,
                target,
                Outcome::Success,
                principal.client_addr,
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            drop(tx);
            audit::record(
                &state.pool,
                principal,
                action,
                target,
                Outcome::Failure,
                principal.client_addr,
                json!({"error": err.to_string(), "request": details}),
            )
            .await?;
            Err(err)
        }
    }
}

/// Whether `principal` may act for the team that owns `layer` of the workload (acknowledge a
/// finding of that layer): an admin always; otherwise a person signed in (API tokens belong to
/// no team) who is a member of that team. The role does not matter: a viewer in the team may.
pub async fn may_act_for_owner(
    conn: &mut PgConnection,
    principal: &Principal,
    workload_id: i64,
    layer: &str,
) -> Result<bool, sqlx::Error> {
    if principal.role == Role::Admin {
        return Ok(true);
    }
    if principal.kind != PrincipalKind::Session {
        return Ok(false);
    }
    views::member_of_owner(&mut *conn, principal.id, workload_id, layer).await
}

/// Whether `principal` may request this waiver: responders and admins for any scope; a member
/// of the team owning the check's layer of the workload (see [`may_act_for_owner`]), whatever
/// their role, for a waiver scoped to that one workload.
pub async fn may_request_waiver(
    conn: &mut PgConnection,
    principal: &Principal,
    waiver: &NewWaiver,
) -> Result<bool, sqlx::Error> {
    if principal.role.satisfies(Role::Responder) {
        return Ok(true);
    }
    let (Some(workload_id), Some(meta)) = (
        waiver.workload_id,
        crate::posture::catalog::find(&waiver.check),
    ) else {
        return Ok(false);
    };
    let layer = crate::findings::layer_str(meta.layer());
    may_act_for_owner(conn, principal, workload_id, layer).await
}

// ---------------------------------------------------------------------------------------------
// Teams

#[derive(Debug, Serialize)]
struct TeamList {
    teams: Vec<TeamSummary>,
}

async fn list_teams(State(state): State<AppState>) -> Result<ApiJson<TeamList>, WebError> {
    Ok(ApiJson(TeamList {
        teams: views::team_summaries(&state.pool).await?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTeam {
    name: String,
    kind: String,
    #[serde(default)]
    contact: String,
    /// User names to add as members.
    #[serde(default)]
    members: Vec<String>,
}

async fn create_team_in(
    state: &AppState,
    principal: &Principal,
    new: NewTeam,
) -> Result<Team, WebError> {
    let details = json!({"name": new.name, "kind": new.kind, "members": new.members});
    let target = format!("team {}", new.name.trim());
    audited(state, principal, "team.create", &target, details, |conn| {
        Box::pin(async move {
            let team = store::create_team(conn, &new.name, &new.kind, &new.contact).await?;
            for member in &new.members {
                store::add_member(conn, team.id, member).await?;
            }
            Ok(team)
        })
    })
    .await
}

async fn create_team(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<Team>), WebError> {
    let new: NewTeam = parse_body(&body)?;
    let team = create_team_in(&state, &principal, new).await?;
    Ok((StatusCode::CREATED, ApiJson(team)))
}

#[derive(Debug, Serialize)]
struct TeamDetail {
    #[serde(flatten)]
    team: Team,
    members: Vec<Member>,
    #[serde(flatten)]
    work: TeamWorkView,
}

/// The team's work without the team (it is flattened beside it).
#[derive(Debug, Serialize)]
struct TeamWorkView {
    workloads: Vec<views::TeamWorkload>,
    findings: Vec<views::TeamFinding>,
    incidents: Vec<views::TeamIncident>,
    waivers: Vec<views::TeamWaiver>,
    score: views::TeamScore,
    trend: Vec<views::TrendPoint>,
}

async fn load_team(state: &AppState, id: &str) -> Result<Team, WebError> {
    let id = parse_id("the team id", id)?;
    store::team(&state.pool, id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("there is no team {id}")))
}

fn layer_param(params: &HashMap<String, String>) -> Result<Option<&'static str>, WebError> {
    match params.get("layer").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(given) => own::layer(given).map(Some).ok_or_else(|| {
            WebError::BadRequest(format!(
                "layer '{given}' is not one of {}",
                LAYERS.join(", ")
            ))
        }),
    }
}

async fn get_team(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<TeamDetail>, WebError> {
    let team = load_team(&state, &id).await?;
    let members = store::members(&state.pool, team.id).await?;
    let work = views::team_work(&state.pool, team, layer_param(&params)?).await?;
    Ok(ApiJson(TeamDetail {
        team: work.team,
        members,
        work: TeamWorkView {
            workloads: work.workloads,
            findings: work.findings,
            incidents: work.incidents,
            waivers: work.waivers,
            score: work.score,
            trend: work.trend,
        },
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    user: String,
}

async fn add_member_in(
    state: &AppState,
    principal: &Principal,
    team: &Team,
    user: String,
) -> Result<i64, WebError> {
    let team_id = team.id;
    let details = json!({"user": user});
    audited(
        state,
        principal,
        "team.member.add",
        &format!("team {}", team.name),
        details,
        |conn| Box::pin(async move { Ok(store::add_member(conn, team_id, &user).await?) }),
    )
    .await
}

async fn add_member(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<Value>), WebError> {
    let team = load_team(&state, &id).await?;
    let new: NewMember = parse_body(&body)?;
    let user_id = add_member_in(&state, &principal, &team, new.user).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(json!({"team_id": team.id, "user_id": user_id})),
    ))
}

async fn remove_member(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, WebError> {
    let team = load_team(&state, &id).await?;
    let user_id = parse_id("the user id", &user_id)?;
    let team_id = team.id;
    audited(
        &state,
        &principal,
        "team.member.remove",
        &format!("team {}", team.name),
        json!({"user_id": user_id}),
        |conn| Box::pin(async move { Ok(store::remove_member(conn, team_id, user_id).await?) }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Rules

#[derive(Debug, Serialize)]
struct RuleView {
    #[serde(flatten)]
    rule: Rule,
    team: String,
    description: String,
}

#[derive(Debug, Serialize)]
struct RuleList {
    rules: Vec<RuleView>,
    /// The label and annotation keys whose value names a team.
    label_keys: Vec<String>,
}

async fn rule_list(state: &AppState) -> Result<RuleList, WebError> {
    let teams: HashMap<i64, String> = store::teams(&state.pool)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let rules = store::rules(&state.pool)
        .await?
        .into_iter()
        .map(|rule| RuleView {
            team: teams.get(&rule.team_id).cloned().unwrap_or_default(),
            description: rule.describe(),
            rule,
        })
        .collect();
    Ok(RuleList {
        rules,
        label_keys: store::label_keys(&state.pool).await?,
    })
}

async fn list_rules(State(state): State<AppState>) -> Result<ApiJson<RuleList>, WebError> {
    Ok(ApiJson(rule_list(&state).await?))
}

#[derive(Debug, Serialize)]
struct RuleCreated {
    rule: Rule,
    resolution: Resolution,
}

async fn create_rule_in(
    state: &AppState,
    principal: &Principal,
    new: NewRule,
) -> Result<RuleCreated, WebError> {
    let details = json!({"kind": new.kind, "key": new.key, "value": new.value,
                         "source_id": new.source_id, "layer": new.layer, "team_id": new.team_id});
    let by = principal.name.clone();
    audited(
        state,
        principal,
        "ownership.rule.create",
        "ownership rule",
        details,
        |conn| {
            Box::pin(async move {
                let (rule, resolution) = store::create_rule(conn, &new, &by).await?;
                Ok(RuleCreated { rule, resolution })
            })
        },
    )
    .await
}

async fn create_rule(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<RuleCreated>), WebError> {
    let new: NewRule = parse_body(&body)?;
    let created = create_rule_in(&state, &principal, new).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

async fn update_rule(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<ApiJson<RuleCreated>, WebError> {
    let id = parse_id("the rule id", &id)?;
    let new: NewRule = parse_body(&body)?;
    let details = json!({"kind": new.kind, "key": new.key, "value": new.value,
                         "source_id": new.source_id, "layer": new.layer, "team_id": new.team_id});
    let updated = audited(
        &state,
        &principal,
        "ownership.rule.update",
        &format!("ownership rule {id}"),
        details,
        |conn| {
            Box::pin(async move {
                let (rule, resolution) = store::update_rule(conn, id, &new).await?;
                Ok(RuleCreated { rule, resolution })
            })
        },
    )
    .await?;
    Ok(ApiJson(updated))
}

async fn delete_rule_in(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Resolution, WebError> {
    audited(
        state,
        principal,
        "ownership.rule.delete",
        &format!("ownership rule {id}"),
        json!({}),
        |conn| {
            Box::pin(async move {
                let (_, resolution) = store::delete_rule(conn, id).await?;
                Ok(resolution)
            })
        },
    )
    .await
}

async fn delete_rule(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<ApiJson<Resolution>, WebError> {
    let id = parse_id("the rule id", &id)?;
    Ok(ApiJson(delete_rule_in(&state, &principal, id).await?))
}

// ---------------------------------------------------------------------------------------------
// Owners of workloads

#[derive(Debug, Serialize)]
struct Owners {
    workload_id: i64,
    owners: Vec<OwnerView>,
    history: Vec<store::HistoryEntry>,
}

async fn owners_of(state: &AppState, id: i64) -> Result<Owners, WebError> {
    let mut conn = state.pool.acquire().await?;
    let exists = sqlx::query_scalar!(
        r#"select exists(select 1 from workloads where id = $1) as "e!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Err(WebError::NotFound(format!("there is no workload {id}")));
    }
    Ok(Owners {
        workload_id: id,
        owners: store::owners(&mut conn, id).await?,
        history: store::history(&mut *conn, id).await?,
    })
}

async fn get_owners(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Owners>, WebError> {
    let id = parse_id("the workload id", &id)?;
    Ok(ApiJson(owners_of(&state, id).await?))
}

/// Layer → team id (`null` clears the explicit assignment); layers left out are unchanged.
fn parse_owner_changes(
    body: &HashMap<String, Option<i64>>,
) -> Result<Vec<(&'static str, Option<i64>)>, WebError> {
    if body.is_empty() {
        return Err(WebError::BadRequest(format!(
            "name at least one layer: {}",
            LAYERS.join(", ")
        )));
    }
    body.iter()
        .map(|(layer, team)| {
            own::layer(layer).map(|l| (l, *team)).ok_or_else(|| {
                WebError::BadRequest(format!(
                    "layer '{layer}' is not one of {}",
                    LAYERS.join(", ")
                ))
            })
        })
        .collect()
}

async fn assign_in(
    state: &AppState,
    principal: &Principal,
    ids: Vec<i64>,
    changes: Vec<(&'static str, Option<i64>)>,
    target: String,
) -> Result<Resolution, WebError> {
    let details = json!({
        "workloads": ids.len(),
        "workload_ids": ids.iter().take(100).collect::<Vec<_>>(),
        "owners": changes.iter().map(|(l, t)| json!({"layer": l, "team_id": t})).collect::<Vec<_>>(),
    });
    let by = principal.name.clone();
    audited(
        state,
        principal,
        "ownership.assign",
        &target,
        details,
        |conn| Box::pin(async move { Ok(store::assign(conn, &ids, &changes, &by).await?) }),
    )
    .await
}

async fn put_owners(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<ApiJson<Owners>, WebError> {
    let id = parse_id("the workload id", &id)?;
    let body: HashMap<String, Option<i64>> = parse_body(&body)?;
    let changes = parse_owner_changes(&body)?;
    assign_in(
        &state,
        &principal,
        vec![id],
        changes,
        format!("workload {id}"),
    )
    .await?;
    Ok(ApiJson(owners_of(&state, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkAssign {
    /// The workload list's filters (`source`, `namespace`, `kind`, `stage`, `team`, `q`).
    #[serde(default)]
    filter: HashMap<String, String>,
    /// Layers to assign; empty: every layer.
    #[serde(default)]
    layers: Vec<String>,
    team_id: i64,
    /// How many workloads the caller saw matching; refused when the list changed since.
    expected_count: i64,
}

/// Bulk assignment: every workload matching the filter, after checking the count the person
/// confirmed is still the count.
async fn bulk_assign_in(
    state: &AppState,
    principal: &Principal,
    bulk: BulkAssign,
) -> Result<(i64, Resolution), WebError> {
    let mut filter_params = bulk.filter.clone();
    filter_params.retain(|_, v| !v.trim().is_empty());
    for name in ["limit", "after", "before"] {
        filter_params.remove(name);
    }
    if filter_params.is_empty() {
        return Err(WebError::BadRequest(
            "bulk assignment needs a filter (source, namespace, kind, stage, team or q)".into(),
        ));
    }
    let filter = WorkloadFilter::parse(&filter_params)?;
    let layers: Vec<&'static str> = if bulk.layers.is_empty() {
        LAYERS.to_vec()
    } else {
        bulk.layers
            .iter()
            .map(|l| {
                own::layer(l).ok_or_else(|| {
                    WebError::BadRequest(format!("layer '{l}' is not one of {}", LAYERS.join(", ")))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let ids = crate::inventory::query::workload_ids(&state.pool, &filter).await?;
    if ids.len() as i64 != bulk.expected_count {
        return Err(WebError::Conflict(format!(
            "{} workloads match the filter now, not the {} confirmed; review the list and confirm again",
            ids.len(),
            bulk.expected_count
        )));
    }
    let count = ids.len() as i64;
    let changes = layers
        .into_iter()
        .map(|l| (l, Some(bulk.team_id)))
        .collect();
    let target = format!("{count} workloads{}", query_string(&sorted(&filter_params)));
    let resolution = assign_in(state, principal, ids, changes, target).await?;
    Ok((count, resolution))
}

fn sorted(params: &HashMap<String, String>) -> Vec<(&str, String)> {
    let mut pairs: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    pairs.sort();
    pairs
}

async fn bulk_assign(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    body: Bytes,
) -> Result<ApiJson<Value>, WebError> {
    let bulk: BulkAssign = parse_body(&body)?;
    let (count, resolution) = bulk_assign_in(&state, &principal, bulk).await?;
    Ok(ApiJson(
        json!({"workloads": count, "resolution": resolution}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Queue and matrix

fn unowned_params(params: &HashMap<String, String>) -> Result<(i64, Option<(i32, i64)>), WebError> {
    let mut limit = 100;
    let mut after = None;
    for (name, value) in params {
        match name.as_str() {
            "limit" => {
                limit = value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| {
                        WebError::BadRequest("limit must be a whole number from 1 to 500".into())
                    })?
            }
            "after" if value.is_empty() => {}
            "after" => {
                after = Some(views::parse_cursor(value).ok_or_else(|| {
                    WebError::BadRequest("after must be a cursor `risk:id` from `next`".into())
                })?)
            }
            other => {
                return Err(WebError::BadRequest(format!(
                    "unknown parameter '{other}'; expected limit or after"
                )))
            }
        }
    }
    Ok((limit, after))
}

async fn list_unowned(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<ApiJson<UnownedPage>, WebError> {
    let (limit, after) = unowned_params(&params)?;
    Ok(ApiJson(views::unowned(&state.pool, limit, after).await?))
}

async fn get_matrix(State(state): State<AppState>) -> Result<ApiJson<Matrix>, WebError> {
    Ok(ApiJson(views::matrix(&state.pool).await?))
}

// ---------------------------------------------------------------------------------------------
// Self-service

#[derive(Debug, Serialize)]
struct Acknowledged {
    id: i64,
    acknowledged_by: String,
    acknowledged_at: DateTime<Utc>,
}

async fn acknowledge_in(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Acknowledged, WebError> {
    let principal_for_check = principal.clone();
    let by = principal.name.clone();
    audited(
        state,
        principal,
        "finding.acknowledge",
        &format!("finding {id}"),
        json!({}),
        |conn| {
            Box::pin(async move {
                let finding = sqlx::query!(
                    "select workload_id, layer, status from findings where id = $1 for update",
                    id
                )
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| WebError::NotFound(format!("there is no finding {id}")))?;
                if !may_act_for_owner(conn, &principal_for_check, finding.workload_id, &finding.layer)
                    .await?
                {
                    return Err(WebError::Forbidden(format!(
                        "only members of the team owning the {} layer of this workload (or an admin) may acknowledge it",
                        finding.layer
                    )));
                }
                if finding.status != "open" {
                    return Err(WebError::Conflict(format!("finding {id} is not open")));
                }
                let at = sqlx::query_scalar!(
                    r#"update findings set acknowledged_by = $2, acknowledged_at = now()
                       where id = $1 returning acknowledged_at as "at!""#,
                    id,
                    by
                )
                .fetch_one(&mut *conn)
                .await?;
                Ok(Acknowledged {
                    id,
                    acknowledged_by: by,
                    acknowledged_at: at,
                })
            })
        },
    )
    .await
}

async fn acknowledge_finding(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<Acknowledged>, WebError> {
    let id = parse_id("the finding id", &id)?;
    Ok(ApiJson(acknowledge_in(&state, &principal, id).await?))
}

/// Where a self-service form returns: a path of this console, else the finding's team list.
fn back_to(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/teams".into())
}

#[derive(Debug, Deserialize)]
struct NextForm {
    next: Option<String>,
}

async fn acknowledge_form(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Form(form): Form<NextForm>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the finding id", &id)?;
    acknowledge_in(&state, &principal, id).await?;
    Ok(Redirect::to(&back_to(form.next)))
}

#[derive(Debug, Deserialize)]
struct WaiverForm {
    reason: String,
    days: String,
    next: Option<String>,
}

async fn request_waiver_form(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Form(form): Form<WaiverForm>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the finding id", &id)?;
    let days = form
        .days
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|d| (1..=crate::findings::waivers::MAX_DAYS).contains(d))
        .ok_or_else(|| {
            WebError::Unprocessable(format!(
                "days must be a whole number from 1 to {}",
                crate::findings::waivers::MAX_DAYS
            ))
        })?;
    let finding = sqlx::query!(
        "select workload_id, check_id from findings where id = $1",
        id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| WebError::NotFound(format!("there is no finding {id}")))?;
    let now = Utc::now();
    let new = NewWaiver {
        check: finding.check_id,
        workload_id: Some(finding.workload_id),
        namespace: None,
        source_id: None,
        reason: form.reason,
        requested_by: principal.name.clone(),
        expires_at: now + chrono::Duration::days(days),
    };
    request_waiver(&state, &principal, new, now).await?;
    Ok(Redirect::to(&back_to(form.next)))
}

/// Records a waiver request after [`may_request_waiver`], audited as `waiver.request` on
/// `waiver <id>` (a refusal or an invalid request on `waiver`).
pub async fn request_waiver(
    state: &AppState,
    principal: &Principal,
    new: NewWaiver,
    now: DateTime<Utc>,
) -> Result<crate::findings::waivers::Waiver, WebError> {
    let mut tx = state.pool.begin().await?;
    let outcome = async {
        if !may_request_waiver(&mut tx, principal, &new).await? {
            return Err(WebError::Forbidden(
                "a waiver request needs a responder, or a member of the team owning the \
                 check's layer of the workload (scope: that workload)"
                    .into(),
            ));
        }
        Ok(crate::findings::waivers::create(&mut tx, &new, now).await?)
    }
    .await;
    match outcome {
        Ok(waiver) => {
            audit::record(
                &mut *tx,
                principal,
                "waiver.request",
                &format!("waiver {}", waiver.id),
                Outcome::Success,
                principal.client_addr,
                json!({"check": waiver.check_id, "workload_id": waiver.workload_id,
                       "namespace": waiver.namespace, "source_id": waiver.source_id,
                       "expires_at": waiver.expires_at, "status": waiver.status}),
            )
            .await?;
            tx.commit().await?;
            Ok(waiver)
        }
        Err(err) => {
            drop(tx);
            audit::record(
                &state.pool,
                principal,
                "waiver.request",
                "waiver",
                Outcome::Failure,
                principal.client_addr,
                json!({"error": err.to_string(), "check": new.check,
                       "workload_id": new.workload_id}),
            )
            .await?;
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Template)]
#[template(path = "teams.html")]
struct TeamsPage {
    ctx: PageContext,
    teams: Vec<TeamSummary>,
    kinds: &'static [&'static str],
}

async fn get_teams_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    render(&TeamsPage {
        ctx: ctx.titled("Teams").active("/teams"),
        teams: views::team_summaries(&state.pool).await?,
        kinds: &TEAM_KINDS,
    })
}

#[derive(Debug, Deserialize)]
struct TeamForm {
    name: String,
    kind: String,
    #[serde(default)]
    contact: String,
}

async fn create_team_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Form(form): Form<TeamForm>,
) -> Result<Redirect, WebError> {
    let team = create_team_in(
        &state,
        &principal,
        NewTeam {
            name: form.name,
            kind: form.kind,
            contact: form.contact,
            members: Vec::new(),
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/teams/{}", team.id)))
}

/// A layer filter link of the team page.
struct LayerLink {
    layer: &'static str,
    current: bool,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    ctx: PageContext,
    work: TeamWork,
    members: Vec<Member>,
    /// The viewer is a member (self-service forms are shown).
    is_member: bool,
    layer_links: Vec<LayerLink>,
    layer: Option<&'static str>,
    trend_max: i64,
    here: String,
}

async fn get_team_page(
    State(state): State<AppState>,
    ctx: PageContext,
    principal: Principal,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let team = load_team(&state, &id).await?;
    let layer = layer_param(&params)?;
    let members = store::members(&state.pool, team.id).await?;
    let is_member = principal.kind == PrincipalKind::Session
        && members.iter().any(|m| m.user_id == principal.id);
    let title = format!("{} · Teams", team.name);
    let here = format!(
        "/teams/{}{}",
        team.id,
        layer.map_or_else(String::new, |l| format!("?layer={l}"))
    );
    let work = views::team_work(&state.pool, team, layer).await?;
    render(&TeamPage {
        ctx: ctx.titled(title).active("/teams"),
        trend_max: work.trend.iter().map(|p| p.open).max().unwrap_or(0).max(1),
        work,
        members,
        is_member,
        layer_links: LAYERS
            .iter()
            .map(|l| LayerLink {
                layer: l,
                current: layer == Some(*l),
            })
            .collect(),
        layer,
        here,
    })
}

#[derive(Debug, Deserialize)]
struct MemberForm {
    user: String,
}

async fn add_member_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
    Form(form): Form<MemberForm>,
) -> Result<Redirect, WebError> {
    let team = load_team(&state, &id).await?;
    add_member_in(&state, &principal, &team, form.user).await?;
    Ok(Redirect::to(&format!("/teams/{}", team.id)))
}

#[derive(Template)]
#[template(path = "ownership_rules.html")]
struct RulesPage {
    ctx: PageContext,
    list: RuleList,
    teams: Vec<Team>,
    sources: Vec<super::sources::SourceView>,
    layers: &'static [&'static str],
}

async fn get_rules_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    render(&RulesPage {
        ctx: ctx.titled("Ownership rules").active("/teams"),
        list: rule_list(&state).await?,
        teams: store::teams(&state.pool).await?,
        sources: super::sources::source_views(&state).await?,
        layers: &LAYERS,
    })
}

#[derive(Debug, Deserialize)]
struct RuleForm {
    kind: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    source_id: String,
    #[serde(default)]
    layer: String,
    team_id: String,
}

async fn create_rule_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Form(form): Form<RuleForm>,
) -> Result<Redirect, WebError> {
    let new = NewRule {
        kind: form.kind,
        key: form.key,
        value: form.value,
        source_id: match form.source_id.trim() {
            "" => None,
            given => Some(parse_id("source", given)?),
        },
        layer: Some(form.layer).filter(|l| !l.is_empty()),
        team_id: parse_id("team", &form.team_id)?,
    };
    create_rule_in(&state, &principal, new).await?;
    Ok(Redirect::to("/ownership/rules"))
}

async fn delete_rule_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the rule id", &id)?;
    delete_rule_in(&state, &principal, id).await?;
    Ok(Redirect::to("/ownership/rules"))
}

#[derive(Template)]
#[template(path = "ownership_matrix.html")]
struct MatrixPage {
    ctx: PageContext,
    matrix: Matrix,
}

async fn get_matrix_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    render(&MatrixPage {
        ctx: ctx.titled("Responsibility matrix").active("/teams"),
        matrix: views::matrix(&state.pool).await?,
    })
}

#[derive(Template)]
#[template(path = "unowned.html")]
struct UnownedQueuePage {
    ctx: PageContext,
    page: UnownedPage,
    next_href: Option<String>,
}

async fn get_unowned_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let (limit, after) = unowned_params(&params)?;
    let page = views::unowned(&state.pool, limit.min(100), after).await?;
    render(&UnownedQueuePage {
        ctx: ctx.titled("Unowned workloads").active("/teams"),
        next_href: page
            .next
            .as_ref()
            .map(|next| format!("/unowned{}", query_string(&[("after", next.clone())]))),
        page,
    })
}

#[derive(Debug, Deserialize)]
struct OwnerForm {
    layer: String,
    /// A team id; empty clears the explicit assignment.
    #[serde(default)]
    team: String,
}

async fn assign_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Path(id): Path<String>,
    Form(form): Form<OwnerForm>,
) -> Result<Redirect, WebError> {
    let id = parse_id("the workload id", &id)?;
    let team = match form.team.trim() {
        "" => None,
        given => Some(parse_id("team", given)?),
    };
    let layers: Vec<&'static str> = if form.layer == "all" {
        LAYERS.to_vec()
    } else {
        vec![own::layer(&form.layer).ok_or_else(|| {
            WebError::BadRequest(format!("layer '{}' is not a layer", form.layer))
        })?]
    };
    let changes = layers.into_iter().map(|l| (l, team)).collect();
    assign_in(
        &state,
        &principal,
        vec![id],
        changes,
        format!("workload {id}"),
    )
    .await?;
    Ok(Redirect::to(&format!("/workloads/{id}#owners")))
}

async fn bulk_assign_form(
    State(state): State<AppState>,
    RequireRole { principal, .. }: RequireRole<Admin>,
    Form(mut form): Form<HashMap<String, String>>,
) -> Result<Redirect, WebError> {
    let team_id = parse_id("team", form.get("assign_team").map_or("", String::as_str))?;
    let expected_count = form
        .get("expected_count")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .ok_or_else(|| WebError::BadRequest("expected_count is missing".into()))?;
    let layer = form.get("assign_layer").cloned().unwrap_or_default();
    let layers = if layer.is_empty() || layer == "all" {
        Vec::new()
    } else {
        vec![layer]
    };
    for name in ["csrf", "assign_team", "assign_layer", "expected_count"] {
        form.remove(name);
    }
    let back = format!("/workloads{}", query_string(&sorted(&form)));
    bulk_assign_in(
        &state,
        &principal,
        BulkAssign {
            filter: form,
            layers,
            team_id,
            expected_count,
        },
    )
    .await?;
    Ok(Redirect::to(&back))
}

/// The overview's unowned panel (`templates/_unowned_panel.html`, included by a page with an
/// `unowned` field): how many, and the ten riskiest.
pub struct UnownedPanel {
    pub page: UnownedPage,
}

impl UnownedPanel {
    pub async fn load(state: &AppState) -> Result<Self, WebError> {
        Ok(Self {
            page: views::unowned(&state.pool, 10, None).await?,
        })
    }
}
