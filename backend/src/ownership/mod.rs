//! Ownership (DESIGN §1): teams, the five responsibility layers, the rules that resolve each
//! workload's owning team per layer, the resolved owners with their provenance, and the history
//! of every change.
//!
//! # Resolution
//!
//! Each layer of each workload is owned by the first of, in precedence order:
//!
//! 1. an explicit assignment (`owner_assignments`, console or `PUT /api/v1/workloads/{id}/owners`);
//! 2. the workload's labels or annotations: a `workload_label` rule (`key=value`, or `key` with
//!    any value), else a configured label key (`ownership.label_keys`, default `team`, `owner`,
//!    `app.kubernetes.io/part-of`) whose value is a team's name;
//! 3. the same on the workload's Kubernetes namespace (`namespace_label` rules, label keys);
//! 4. an `image_prefix` rule matching one of the workload's image references;
//! 5. a `source_default` rule of the workload's source.
//!
//! A rule names its layer or covers every layer; a rule for the layer wins over an every-layer
//! rule of the same precedence, and an older rule over a newer one. A label key naming a team
//! covers the layers that kind of team owns ([`layer_kinds`]: a development team the application
//! and image layers, a platform team orchestration, …), so `team=payments` does not make the
//! payments developers the owners of the nodes. The pure part is [`Resolver`]; [`store::resolve`]
//! runs it set-based on a batch of workloads after every inventory write and every rule change,
//! writes `workload_owners`, `workloads.owned_layers` and one `owner_history` row per change.

pub mod store;
pub mod views;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgConnection;

/// The responsibility layers, from the code up to the node.
pub const LAYERS: [&str; 5] = ["application", "image", "runtime", "orchestration", "host"];

/// The kinds of team.
pub const TEAM_KINDS: [&str; 5] = [
    "development",
    "operations",
    "security",
    "platform",
    "infrastructure",
];

/// The label keys used when none are configured.
pub const DEFAULT_LABEL_KEYS: [&str; 3] = ["team", "owner", "app.kubernetes.io/part-of"];

/// The team kinds that typically own a layer (the seed's shared-responsibility model), the
/// default first.
pub fn layer_kinds(layer: &str) -> &'static [&'static str] {
    match layer {
        "application" => &["development"],
        "image" => &["development", "security"],
        "runtime" => &["operations", "security"],
        "orchestration" => &["platform"],
        "host" => &["infrastructure"],
        _ => &[],
    }
}

/// The team kind that owns a layer by default.
pub fn default_kind(layer: &str) -> &'static str {
    layer_kinds(layer).first().copied().unwrap_or("")
}

/// A layer name as the static string of [`LAYERS`].
pub fn layer(name: &str) -> Option<&'static str> {
    LAYERS.iter().copied().find(|l| *l == name)
}

/// A team.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub contact: String,
    pub created_at: DateTime<Utc>,
}

/// The kinds of ownership rule, weakest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    WorkloadLabel,
    NamespaceLabel,
    ImagePrefix,
    SourceDefault,
}

impl RuleKind {
    pub const ALL: [RuleKind; 4] = [
        RuleKind::WorkloadLabel,
        RuleKind::NamespaceLabel,
        RuleKind::ImagePrefix,
        RuleKind::SourceDefault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::WorkloadLabel => "workload_label",
            RuleKind::NamespaceLabel => "namespace_label",
            RuleKind::ImagePrefix => "image_prefix",
            RuleKind::SourceDefault => "source_default",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// An ownership rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Rule {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub value: String,
    pub source_id: Option<i64>,
    /// `None`: every layer.
    pub layer: Option<String>,
    pub team_id: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Rule {
    fn covers(&self, layer: &str) -> bool {
        self.layer.as_deref().is_none_or(|l| l == layer)
    }

    /// What the rule says, in words: `namespace label team=payments (image layer)`.
    pub fn describe(&self) -> String {
        let what = match RuleKind::parse(&self.kind) {
            Some(RuleKind::WorkloadLabel) | Some(RuleKind::NamespaceLabel) => {
                let whose = if self.kind == "workload_label" {
                    "workload"
                } else {
                    "namespace"
                };
                if self.value.is_empty() {
                    format!("{whose} label or annotation {} (any value)", self.key)
                } else {
                    format!("{whose} label or annotation {}={}", self.key, self.value)
                }
            }
            Some(RuleKind::ImagePrefix) => format!("image repository prefix {}", self.value),
            Some(RuleKind::SourceDefault) => format!(
                "default of source {}",
                self.source_id.map_or_else(String::new, |id| id.to_string())
            ),
            None => self.kind.clone(),
        };
        match &self.layer {
            Some(layer) => format!("{what} ({layer} layer)"),
            None => format!("{what} (every layer)"),
        }
    }
}

/// How an owner was found, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Assignment,
    WorkloadLabel,
    NamespaceLabel,
    ImagePrefix,
    SourceDefault,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Assignment => "assignment",
            Via::WorkloadLabel => "workload_label",
            Via::NamespaceLabel => "namespace_label",
            Via::ImagePrefix => "image_prefix",
            Via::SourceDefault => "source_default",
        }
    }
}

/// An explicit assignment of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub layer: String,
    pub team_id: i64,
    pub assigned_by: String,
}

/// What the resolver reads of one workload.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub id: i64,
    pub source_id: i64,
    pub source_name: String,
    pub namespace: String,
    pub labels: Value,
    pub annotations: Value,
    /// The namespace's labels and annotations, when it is a known Kubernetes namespace.
    pub namespace_labels: Option<Value>,
    pub namespace_annotations: Option<Value>,
    pub images: Vec<String>,
    pub assignments: Vec<Assignment>,
}

/// The owner of one layer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub layer: &'static str,
    pub team_id: i64,
    pub via: Via,
    pub rule_id: Option<i64>,
    /// In words: `namespace label team=payments`.
    pub provenance: String,
}

/// The rules, teams and label keys, ready to resolve many workloads.
pub struct Resolver<'a> {
    teams: HashMap<i64, &'a Team>,
    by_name: HashMap<String, &'a Team>,
    /// Layer-specific rules before every-layer ones, then oldest first.
    rules: Vec<&'a Rule>,
    label_keys: &'a [String],
}

fn string_at<'v>(map: Option<&'v Value>, key: &str) -> Option<&'v str> {
    map.and_then(Value::as_object)
        .and_then(|m: &Map<String, Value>| m.get(key))
        .and_then(Value::as_str)
}

impl<'a> Resolver<'a> {
    pub fn new(teams: &'a [Team], rules: &'a [Rule], label_keys: &'a [String]) -> Self {
        let mut sorted: Vec<&Rule> = rules.iter().collect();
        sorted.sort_by_key(|r| (r.layer.is_none(), r.id));
        Self {
            teams: teams.iter().map(|t| (t.id, t)).collect(),
            by_name: teams.iter().map(|t| (t.name.to_lowercase(), t)).collect(),
            rules: sorted,
            label_keys,
        }
    }

    /// The owners of every layer some rule covers.
    pub fn resolve(&self, subject: &Subject) -> Vec<Resolved> {
        LAYERS
            .iter()
            .filter_map(|layer| self.resolve_layer(subject, layer))
            .collect()
    }

    fn rules_of(&self, kind: RuleKind, layer: &str) -> impl Iterator<Item = &&'a Rule> + '_ {
        let kind = kind.as_str();
        let layer = layer.to_string();
        self.rules.iter().filter(move |r| {
            r.kind == kind && r.covers(&layer) && self.teams.contains_key(&r.team_id)
        })
    }

    /// A labels tier: explicit rules of `kind`, then the label keys naming a team.
    fn labels_tier(
        &self,
        kind: RuleKind,
        whose: &str,
        labels: Option<&Value>,
        annotations: Option<&Value>,
        layer: &'static str,
        via: Via,
    ) -> Option<Resolved> {
        let maps = [("label", labels), ("annotation", annotations)];
        for rule in self.rules_of(kind, layer) {
            for (what, map) in maps {
                if let Some(actual) = string_at(map, &rule.key) {
                    if rule.value.is_empty() || rule.value == actual {
                        return Some(Resolved {
                            layer,
                            team_id: rule.team_id,
                            via,
                            rule_id: Some(rule.id),
                            provenance: format!("{whose} {what} {}={actual}", rule.key),
                        });
                    }
                }
            }
        }
        for key in self.label_keys {
            for (what, map) in maps {
                let Some(actual) = string_at(map, key) else {
                    continue;
                };
                let Some(team) = self.by_name.get(&actual.trim().to_lowercase()) else {
                    continue;
                };
                if layer_kinds(layer).contains(&team.kind.as_str()) {
                    return Some(Resolved {
                        layer,
                        team_id: team.id,
                        via,
                        rule_id: None,
                        provenance: format!("{whose} {what} {key}={actual}"),
                    });
                }
            }
        }
        None
    }

    fn resolve_layer(&self, subject: &Subject, layer: &'static str) -> Option<Resolved> {
        if let Some(assignment) = subject
            .assignments
            .iter()
            .find(|a| a.layer == layer && self.teams.contains_key(&a.team_id))
        {
            return Some(Resolved {
                layer,
                team_id: assignment.team_id,
                via: Via::Assignment,
                rule_id: None,
                provenance: format!("assigned by {}", assignment.assigned_by),
            });
        }
        if let Some(found) = self.labels_tier(
            RuleKind::WorkloadLabel,
            "workload",
            Some(&subject.labels),
            Some(&subject.annotations),
            layer,
            Via::WorkloadLabel,
        ) {
            return Some(found);
        }
        if subject.namespace_labels.is_some() || subject.namespace_annotations.is_some() {
            if let Some(found) = self.labels_tier(
                RuleKind::NamespaceLabel,
                "namespace",
                subject.namespace_labels.as_ref(),
                subject.namespace_annotations.as_ref(),
                layer,
                Via::NamespaceLabel,
            ) {
                return Some(found);
            }
        }
        for rule in self.rules_of(RuleKind::ImagePrefix, layer) {
            if let Some(image) = subject.images.iter().find(|i| i.starts_with(&rule.value)) {
                return Some(Resolved {
                    layer,
                    team_id: rule.team_id,
                    via: Via::ImagePrefix,
                    rule_id: Some(rule.id),
                    provenance: format!("image repository prefix {} ({image})", rule.value),
                });
            }
        }
        for rule in self.rules_of(RuleKind::SourceDefault, layer) {
            if rule.source_id == Some(subject.source_id) {
                return Some(Resolved {
                    layer,
                    team_id: rule.team_id,
                    via: Via::SourceDefault,
                    rule_id: Some(rule.id),
                    provenance: format!("default of source {}", subject.source_name),
                });
            }
        }
        None
    }
}

/// The team that owns `layer` of the workload now (the resolved owner, see the module
/// documentation), or `None` when the layer is unowned or there is no such workload.
///
/// Other areas call this to route something to a team: a notification for a finding of that
/// layer, a review per team. It reads `workload_owners`, which every inventory write and rule
/// change keeps current, so it is one indexed lookup.
pub async fn team_for(
    conn: &mut PgConnection,
    workload_id: i64,
    layer: &str,
) -> sqlx::Result<Option<Team>> {
    sqlx::query_as!(
        Team,
        r#"select t.id, t.name, t.kind, t.contact, t.created_at
           from workload_owners o join teams t on t.id = o.team_id
           where o.workload_id = $1 and o.layer = $2"#,
        workload_id,
        layer
    )
    .fetch_optional(conn)
    .await
}

#[cfg(test)]
mod tests;
