//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the JSON API, built from the
//! route table itself ([`super::route_policies`]) so that every operation, its path parameters
//! and the role it needs are always those the server enforces; the summaries and the query
//! parameters of the lists are kept here, and a test fails when a route has none.

use axum::http::Method;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::access::{Access, RoutePolicy};
use super::json::ApiJson;
use super::AppState;
use crate::auth::sessions::COOKIE;

pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::public(Method::GET, "/api/v1/openapi.json")];

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(get_document))
}

async fn get_document() -> ApiJson<Value> {
    ApiJson(document())
}

/// What an operation does, and the query parameters it takes.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    query: &'static [&'static str],
}

const fn op(method: &'static str, path: &'static str, summary: &'static str) -> Operation {
    Operation {
        method,
        path,
        summary,
        query: &[],
    }
}

const fn list(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    query: &'static [&'static str],
) -> Operation {
    Operation {
        method,
        path,
        summary,
        query,
    }
}

const OPERATIONS: &[Operation] = &[
    op("GET", "/healthz", "The process is alive"),
    op(
        "GET",
        "/readyz",
        "The database answers and every migration is applied",
    ),
    op("GET", "/metrics", "Prometheus metrics (text format)"),
    op("GET", "/api/v1/openapi.json", "This document"),
    op(
        "GET",
        "/api/v1/me",
        "The signed-in user or token and its role",
    ),
    list(
        "GET",
        "/api/v1/audit",
        "The audit log, newest first",
        &["actor", "action", "outcome", "since", "before", "limit"],
    ),
    op(
        "GET",
        "/api/v1/sources",
        "Docker engines and Kubernetes clusters with their collector status",
    ),
    list(
        "GET",
        "/api/v1/workloads",
        "Workloads, filtered, in keyset pages",
        super::workloads::PARAMETERS,
    ),
    op(
        "GET",
        "/api/v1/workloads/{id}",
        "A workload: instances, images, stage history, findings with evidence, owners per layer",
    ),
    op(
        "GET",
        "/api/v1/workloads/{id}/owners",
        "A workload's owner per responsibility layer with provenance",
    ),
    op(
        "PUT",
        "/api/v1/workloads/{id}/owners",
        "Assign a workload's owners per layer",
    ),
    op(
        "POST",
        "/api/v1/workloads/owners",
        "Assign owners to many workloads at once",
    ),
    op(
        "GET",
        "/api/v1/workloads/{id}/process-baseline",
        "The learned process baseline of a workload",
    ),
    op(
        "POST",
        "/api/v1/workloads/{id}/process-baseline",
        "Accept or reset a workload's process baseline",
    ),
    list(
        "GET",
        "/api/v1/findings",
        "Findings, filtered, in keyset pages",
        super::findings::PARAMETERS,
    ),
    op(
        "POST",
        "/api/v1/findings/{id}/acknowledge",
        "Acknowledge a finding (its owning team)",
    ),
    list(
        "GET",
        "/api/v1/posture/summary",
        "Open findings and grades grouped by source, namespace, team or check",
        &["by"],
    ),
    op("GET", "/api/v1/checks", "The posture check catalog"),
    op("GET", "/api/v1/checks/{id}", "One check of the catalog"),
    list(
        "GET",
        "/api/v1/waivers",
        "Waivers",
        &["status", "check", "workload", "expiring_within_days"],
    ),
    op(
        "POST",
        "/api/v1/waivers",
        "Request a waiver for a check on a workload, namespace or source",
    ),
    op(
        "POST",
        "/api/v1/waivers/{id}/approve",
        "Approve a requested waiver",
    ),
    op(
        "POST",
        "/api/v1/waivers/{id}/reject",
        "Reject a requested waiver",
    ),
    op(
        "POST",
        "/api/v1/waivers/{id}/revoke",
        "Revoke an approved waiver",
    ),
    op("GET", "/api/v1/teams", "Teams"),
    op("POST", "/api/v1/teams", "Create a team"),
    op(
        "GET",
        "/api/v1/teams/{id}",
        "A team: members, owned workloads, score",
    ),
    op(
        "POST",
        "/api/v1/teams/{id}/members",
        "Add a member to a team",
    ),
    op(
        "DELETE",
        "/api/v1/teams/{id}/members/{user_id}",
        "Remove a member from a team",
    ),
    op("GET", "/api/v1/ownership-rules", "Ownership rules"),
    op("POST", "/api/v1/ownership-rules", "Add an ownership rule"),
    op(
        "PUT",
        "/api/v1/ownership-rules/{id}",
        "Change an ownership rule in place",
    ),
    op(
        "DELETE",
        "/api/v1/ownership-rules/{id}",
        "Delete an ownership rule",
    ),
    op(
        "GET",
        "/api/v1/ownership/matrix",
        "Owners per layer across the estate",
    ),
    list(
        "GET",
        "/api/v1/unowned",
        "Live workloads with a layer nobody owns, riskiest first",
        &["limit", "after"],
    ),
    op("GET", "/api/v1/incidents", "Incidents, newest first"),
    op(
        "POST",
        "/api/v1/incidents",
        "Open an incident for workloads or findings",
    ),
    op(
        "GET",
        "/api/v1/incidents/{id}",
        "An incident: workloads, actions, evidence, isolation targets",
    ),
    op(
        "POST",
        "/api/v1/incidents/{id}/{step}",
        "Run a step: isolate, analysis, fix, restore or close",
    ),
    op(
        "GET",
        "/api/v1/incidents/{id}/actions/{action}",
        "One action of an incident and its outcome",
    ),
    op(
        "GET",
        "/api/v1/incidents/{id}/evidence/{evidence}",
        "Download one piece of collected evidence",
    ),
    list(
        "GET",
        "/api/v1/events",
        "Runtime events (exec sessions, drift, restarts)",
        &[
            "source", "workload", "kind", "severity", "since", "limit", "after",
        ],
    ),
    op("GET", "/api/v1/events/{id}", "One runtime event"),
    op(
        "POST",
        "/api/v1/events/{id}/incident",
        "Open an incident from a runtime event",
    ),
    op(
        "POST",
        "/api/v1/events/build",
        "Report a build (CI): image digest, provenance, scan",
    ),
    op(
        "POST",
        "/api/v1/events/registry",
        "Docker Distribution registry notification envelope",
    ),
    list(
        "GET",
        "/api/v1/images",
        "Images with their build, store and run facts",
        &["registry", "q", "critical", "running", "limit", "after"],
    ),
    op("GET", "/api/v1/images/{digest}", "One image by digest"),
    list(
        "GET",
        "/api/v1/reviews",
        "Reviews, newest first",
        &["limit", "after"],
    ),
    op(
        "POST",
        "/api/v1/reviews",
        "Ask for a review of the estate or one team",
    ),
    op(
        "GET",
        "/api/v1/reviews/{id}",
        "A review: progress, summary, exports, sign-offs",
    ),
    list(
        "GET",
        "/api/v1/reviews/{id}/export",
        "Download a review in one format",
        &["format"],
    ),
    op(
        "POST",
        "/api/v1/reviews/{id}/signoffs",
        "Sign a review off (a member of its team, or an admin)",
    ),
    op(
        "GET",
        "/api/v1/notification-channels",
        "Notification channels (secrets masked)",
    ),
    op(
        "POST",
        "/api/v1/notification-channels",
        "Add a notification channel",
    ),
    op(
        "DELETE",
        "/api/v1/notification-channels/{id}",
        "Delete a notification channel",
    ),
    op("GET", "/api/v1/notification-routes", "Notification routes"),
    op(
        "POST",
        "/api/v1/notification-routes",
        "Add a notification route",
    ),
    op(
        "DELETE",
        "/api/v1/notification-routes/{id}",
        "Delete a notification route",
    ),
    op(
        "GET",
        "/api/v1/notification-deliveries",
        "Queued, sent and dead notification messages",
    ),
    op(
        "POST",
        "/api/v1/notification-deliveries/{id}/retry",
        "Queue a dead message again",
    ),
];

/// The routes the document describes: the JSON API and the operational endpoints.
fn described(policy: &RoutePolicy) -> bool {
    policy.path.starts_with("/api/") || ["/healthz", "/readyz", "/metrics"].contains(&policy.path)
}

fn operation(method: &Method, path: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|op| op.method == method.as_str() && op.path == path)
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for policy in super::route_policies().iter().filter(|p| described(p)) {
        let described = operation(&policy.method, policy.path);
        let mut parameters: Vec<Value> = policy
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(described.into_iter().flat_map(|op| op.query).map(|name| {
            json!({"name": name, "in": "query", "required": false,
                   "schema": {"type": "string"}})
        }));
        let mut operation = json!({
            "summary": described.map_or("", |op| op.summary),
            "parameters": parameters,
            "responses": {
                "200": {"description": "Success"},
                "201": {"description": "Created"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"}
            }
        });
        match policy.access {
            Access::Public => operation["security"] = json!([]),
            Access::AtLeast(role) => operation["x-harbormaster-role"] = json!(role.as_str()),
        }
        if matches!(policy.method, Method::POST | Method::PUT) {
            operation["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": {"type": "object"}}}
            });
        }
        let entry = paths
            .entry(policy.path.to_string())
            .or_insert_with(|| json!({}));
        entry[policy.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Harbormaster API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Container lifecycle security: inventory, posture, ownership, incidents, reviews. \
                            Every operation but the public ones needs a session cookie or a bearer token \
                            whose role is at least `x-harbormaster-role` (viewer < responder < admin; \
                            ci for the event endpoints). Lists are keyset-paginated (`limit`, `after`). \
                            Errors are `{\"error\": {\"code\", \"message\"}}`."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                    }}
                }
            },
            "responses": {
                "Error": {
                    "description": "The request was refused; the message names what was wrong",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_described_route_has_a_summary_and_every_summary_a_route() {
        let routes: Vec<(String, &str)> = crate::web::route_policies()
            .iter()
            .filter(|p| described(p))
            .map(|p| (p.method.as_str().to_string(), p.path))
            .collect();
        for (method, path) in &routes {
            let op = OPERATIONS
                .iter()
                .find(|op| op.method == method && op.path == *path);
            assert!(
                op.is_some_and(|op| !op.summary.is_empty()),
                "{method} {path} is not described in web/openapi.rs"
            );
        }
        for op in OPERATIONS {
            assert!(
                routes.iter().any(|(m, p)| m == op.method && *p == op.path),
                "{} {} is described but is not a route",
                op.method,
                op.path
            );
        }
    }

    #[test]
    fn the_document_names_path_parameters_roles_and_list_filters() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        let workload = &document["paths"]["/api/v1/workloads/{id}"]["get"];
        assert_eq!(workload["parameters"][0]["name"], "id");
        assert_eq!(workload["parameters"][0]["in"], "path");
        assert_eq!(workload["x-harbormaster-role"], "viewer");
        let put = &document["paths"]["/api/v1/workloads/{id}/owners"]["put"];
        assert_eq!(put["x-harbormaster-role"], "admin");
        let list = &document["paths"]["/api/v1/workloads"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"namespace") && names.contains(&"after"),
            "{names:?}"
        );
        assert_eq!(document["paths"]["/healthz"]["get"]["security"], json!([]));
    }
}
