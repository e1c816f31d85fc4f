//! The resolver: precedence and provenance for each kind of rule.

use chrono::Utc;
use serde_json::json;

use super::*;

fn team(id: i64, name: &str, kind: &str) -> Team {
    Team {
        id,
        name: name.into(),
        kind: kind.into(),
        contact: String::new(),
        created_at: Utc::now(),
    }
}

fn rule(
    id: i64,
    kind: RuleKind,
    key: &str,
    value: &str,
    layer: Option<&str>,
    team_id: i64,
) -> Rule {
    Rule {
        id,
        kind: kind.as_str().into(),
        key: key.into(),
        value: value.into(),
        source_id: (kind == RuleKind::SourceDefault).then_some(7),
        layer: layer.map(str::to_string),
        team_id,
        created_by: "admin".into(),
        created_at: Utc::now(),
    }
}

fn teams() -> Vec<Team> {
    vec![
        team(1, "payments", "development"),
        team(2, "platform", "platform"),
        team(3, "infra", "infrastructure"),
        team(4, "ops", "operations"),
        team(5, "checkout", "development"),
    ]
}

fn subject() -> Subject {
    Subject {
        id: 10,
        source_id: 7,
        source_name: "prod".into(),
        namespace: "shop".into(),
        labels: json!({}),
        annotations: json!({}),
        namespace_labels: Some(json!({})),
        namespace_annotations: Some(json!({})),
        images: vec!["registry.example.com/payments/api:1".into()],
        assignments: Vec::new(),
    }
}

fn keys() -> Vec<String> {
    DEFAULT_LABEL_KEYS.iter().map(|k| k.to_string()).collect()
}

fn owner<'a>(resolved: &'a [Resolved], layer: &str) -> Option<&'a Resolved> {
    resolved.iter().find(|r| r.layer == layer)
}

#[test]
fn a_source_default_owns_what_nothing_stronger_covers() {
    let teams = teams();
    let rules = vec![rule(1, RuleKind::SourceDefault, "", "", Some("host"), 3)];
    let keys = keys();
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&subject());
    assert_eq!(resolved.len(), 1);
    let host = owner(&resolved, "host").unwrap();
    assert_eq!((host.team_id, host.via), (3, Via::SourceDefault));
    assert_eq!(host.provenance, "default of source prod");
}

#[test]
fn an_image_prefix_beats_the_source_default() {
    let teams = teams();
    let rules = vec![
        rule(1, RuleKind::SourceDefault, "", "", None, 4),
        rule(
            2,
            RuleKind::ImagePrefix,
            "",
            "registry.example.com/payments/",
            Some("image"),
            1,
        ),
    ];
    let keys = keys();
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&subject());
    let image = owner(&resolved, "image").unwrap();
    assert_eq!(
        (image.team_id, image.via, image.rule_id),
        (1, Via::ImagePrefix, Some(2))
    );
    assert!(image
        .provenance
        .starts_with("image repository prefix registry.example.com/payments/"));
    assert_eq!(owner(&resolved, "runtime").unwrap().via, Via::SourceDefault);
}

#[test]
fn a_namespace_label_beats_the_image_prefix_and_names_its_team_by_value() {
    let teams = teams();
    let rules = vec![rule(
        2,
        RuleKind::ImagePrefix,
        "",
        "registry.example.com/",
        None,
        2,
    )];
    let keys = keys();
    let mut s = subject();
    s.namespace_labels = Some(json!({"team": "Payments"}));
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&s);
    let app = owner(&resolved, "application").unwrap();
    assert_eq!((app.team_id, app.via), (1, Via::NamespaceLabel));
    assert_eq!(app.provenance, "namespace label team=Payments");
    // A development team named by a label owns the layers development teams own; the rest
    // stays with the weaker rule.
    assert_eq!(owner(&resolved, "image").unwrap().team_id, 1);
    assert_eq!(
        owner(&resolved, "orchestration").unwrap().via,
        Via::ImagePrefix
    );
}

#[test]
fn a_namespace_label_rule_matches_key_and_value_or_any_value() {
    let teams = teams();
    let rules = vec![
        rule(
            1,
            RuleKind::NamespaceLabel,
            "cost-center",
            "42",
            Some("orchestration"),
            2,
        ),
        rule(2, RuleKind::NamespaceLabel, "tier", "", Some("host"), 3),
    ];
    let keys = keys();
    let mut s = subject();
    s.namespace_labels = Some(json!({"cost-center": "42"}));
    s.namespace_annotations = Some(json!({"tier": "gold"}));
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&s);
    let orch = owner(&resolved, "orchestration").unwrap();
    assert_eq!((orch.team_id, orch.rule_id), (2, Some(1)));
    assert_eq!(orch.provenance, "namespace label cost-center=42");
    let host = owner(&resolved, "host").unwrap();
    assert_eq!(host.provenance, "namespace annotation tier=gold");
    s.namespace_labels = Some(json!({"cost-center": "43"}));
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&s);
    assert!(owner(&resolved, "orchestration").is_none());
}

#[test]
fn a_workload_label_beats_the_namespace_label() {
    let teams = teams();
    let keys = keys();
    let mut s = subject();
    s.namespace_labels = Some(json!({"team": "payments"}));
    s.labels = json!({"app.kubernetes.io/part-of": "checkout"});
    let resolved = Resolver::new(&teams, &[], &keys).resolve(&s);
    let app = owner(&resolved, "application").unwrap();
    assert_eq!((app.team_id, app.via), (5, Via::WorkloadLabel));
    assert_eq!(
        app.provenance,
        "workload label app.kubernetes.io/part-of=checkout"
    );
    // An annotation counts like a label; a value naming no team is ignored.
    s.labels = json!({"team": "nobody"});
    s.annotations = json!({"owner": "checkout"});
    let resolved = Resolver::new(&teams, &[], &keys).resolve(&s);
    assert_eq!(
        owner(&resolved, "application").unwrap().provenance,
        "workload annotation owner=checkout"
    );
}

#[test]
fn an_explicit_assignment_beats_every_rule() {
    let teams = teams();
    let rules = vec![rule(1, RuleKind::WorkloadLabel, "app", "", None, 2)];
    let keys = keys();
    let mut s = subject();
    s.labels = json!({"app": "web", "team": "payments"});
    s.assignments = vec![Assignment {
        layer: "application".into(),
        team_id: 4,
        assigned_by: "alice".into(),
    }];
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&s);
    let app = owner(&resolved, "application").unwrap();
    assert_eq!((app.team_id, app.via), (4, Via::Assignment));
    assert_eq!(app.provenance, "assigned by alice");
    // Explicit rules come before label keys of the same tier.
    let image = owner(&resolved, "image").unwrap();
    assert_eq!((image.team_id, image.rule_id), (2, Some(1)));
    assert_eq!(resolved.len(), 5);
}

#[test]
fn a_layer_rule_beats_an_every_layer_rule_and_older_beats_newer() {
    let teams = teams();
    let rules = vec![
        rule(1, RuleKind::SourceDefault, "", "", None, 4),
        rule(2, RuleKind::SourceDefault, "", "", Some("host"), 3),
        rule(3, RuleKind::SourceDefault, "", "", None, 2),
    ];
    let keys = keys();
    let resolved = Resolver::new(&teams, &rules, &keys).resolve(&subject());
    assert_eq!(owner(&resolved, "host").unwrap().team_id, 3);
    assert_eq!(owner(&resolved, "runtime").unwrap().team_id, 4);
}

#[test]
fn configured_label_keys_replace_the_defaults() {
    let teams = teams();
    let keys = vec!["squad".to_string()];
    let mut s = subject();
    s.labels = json!({"team": "payments", "squad": "checkout"});
    let resolved = Resolver::new(&teams, &[], &keys).resolve(&s);
    assert_eq!(owner(&resolved, "application").unwrap().team_id, 5);
}
