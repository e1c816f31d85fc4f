//! `harbormaster import PATH...`: Kubernetes YAML/JSON files (multi-document, `kind: List`,
//! the output of `kubectl get … -o yaml|json`) loaded into the inventory as the file source
//! `import`, through the same mapping as a live cluster.
//!
//! Lenient: unknown fields are ignored, a missing name is replaced, and each document that
//! cannot be used is reported with its file and index while the rest is imported. `docker
//! inspect` and `docker image inspect` output goes through the Docker collector's mapping.
//! An import adds to what earlier imports brought; nothing is retired by leaving it out.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;

use super::kubernetes::mapping::{self, Objects};
use super::kubernetes::persist::{self, Persisted, Written};
use crate::inventory::sources;

/// The source kind and name imports are stored under.
pub const SOURCE_KIND: &str = "file";
pub const SOURCE_NAME: &str = "import";
/// Everything taken from the files: Kubernetes objects, and `docker inspect` / `docker image
/// inspect` documents, which go through the Docker collector's own mapping.
#[derive(Debug, Default)]
pub struct Intake {
    pub objects: Objects,
    pub containers: Vec<Value>,
    pub images: Vec<Value>,
}

/// Where a document sits: its file, its 1-based position, and the item of a `List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.file.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        Ok(())
    }
}

/// What happened to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken into the inventory as `kind namespace/name`.
    Imported { kind: String, name: String },
    /// Understood but not collected (another kind).
    Skipped(String),
    /// Not usable: malformed, no kind.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReport {
    pub location: Location,
    pub outcome: Outcome,
}

/// The whole import's result.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub documents: Vec<DocumentReport>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    pub persisted: Persisted,
}

impl ImportReport {
    pub fn imported(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Imported { .. }))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.documents.iter().filter(|d| which(&d.outcome)).count()
    }

    /// The import failed as a whole: a file could not be read, or nothing was imported.
    pub fn is_failure(&self) -> bool {
        !self.unreadable.is_empty() || self.imported() == 0
    }
}

/// Splits a file into its documents: one JSON value, or YAML documents separated by `---`
/// lines (split by hand, so a broken document does not hide the ones after it).
pub fn split_documents(text: &str) -> Vec<Result<Value, String>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            return vec![Ok(value)];
        }
    }
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            chunks.push(String::new());
        } else if line.trim() == "..." {
            continue;
        } else {
            let chunk = chunks.last_mut().expect("one chunk at least");
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    chunks
        .into_iter()
        .map(|chunk| {
            let deserializer = serde_yaml_ng::Deserializer::from_str(&chunk);
            Value::deserialize(deserializer).map_err(|err| format!("not valid YAML or JSON: {err}"))
        })
        .collect()
}

fn is_docker_inspect(value: &Value) -> bool {
    value.get("Id").is_some() && value.get("Config").is_some()
}

/// A container's inspect document has a state and host configuration; an image's does not.
fn is_docker_container(value: &Value) -> bool {
    value.get("State").is_some() || value.get("HostConfig").is_some()
}

/// Takes one parsed document (an object, a `List`, or a JSON array) into `intake`.
pub fn take_document(
    intake: &mut Intake,
    location: Location,
    value: Value,
    reports: &mut Vec<DocumentReport>,
) {
    let report = |location: Location, outcome: Outcome| DocumentReport { location, outcome };
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for (index, item) in items.into_iter().enumerate() {
                let location = Location {
                    item: Some(index),
                    ..location.clone()
                };
                take_object(intake, location, item, reports);
            }
        }
        Value::Object(ref map)
            if map.get("items").is_some_and(Value::is_array)
                && map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
        {
            let Value::Object(mut map) = value else {
                unreachable!()
            };
            let Some(Value::Array(items)) = map.remove("items") else {
                unreachable!()
            };
            for (index, item) in items.into_iter().enumerate() {
                let location = Location {
                    item: Some(index),
                    ..location.clone()
                };
                take_object(intake, location, item, reports);
            }
        }
        Value::Object(_) => take_object(intake, location, value, reports),
        other => reports.push(report(
            location,
            Outcome::Failed(format!("expected an object, found {}", type_name(&other))),
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn take_object(
    intake: &mut Intake,
    location: Location,
    mut value: Value,
    reports: &mut Vec<DocumentReport>,
) {
    let outcome = if is_docker_inspect(&value) {
        if is_docker_container(&value) {
            let name = crate::collect::docker::map::container_name(&value);
            intake.containers.push(value);
            Outcome::Imported {
                kind: "Container".into(),
                name,
            }
        } else {
            let name = value
                .get("RepoTags")
                .and_then(|tags| tags.get(0))
                .and_then(Value::as_str)
                .or_else(|| value.get("Id").and_then(Value::as_str))
                .unwrap_or_default()
                .to_string();
            intake.images.push(value);
            Outcome::Imported {
                kind: "Image".into(),
                name,
            }
        }
    } else if !value.is_object() {
        Outcome::Failed(format!("expected an object, found {}", type_name(&value)))
    } else {
        // A missing name is tolerated: the document's place stands in for it.
        let metadata = value
            .as_object_mut()
            .expect("checked")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !metadata.is_object() {
            *metadata = json!({});
        }
        let name_missing = metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if name_missing {
            let stem = location
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut name = format!("unnamed-{stem}-{}", location.document);
            if let Some(item) = location.item {
                name.push_str(&format!("-{item}"));
            }
            metadata["name"] = json!(name);
        }
        let display = format!(
            "{}/{}",
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        match intake.objects.insert(value) {
            Ok(kind) => Outcome::Imported {
                kind: kind.as_str().into(),
                name: display.trim_start_matches('/').to_string(),
            },
            Err(mapping::MapError::UnsupportedKind(kind)) => {
                Outcome::Skipped(format!("kind {kind} is not collected"))
            }
            Err(err) => Outcome::Failed(err.to_string()),
        }
    };
    reports.push(DocumentReport { location, outcome });
}

/// Reads every file, maps what it holds and writes it under the `import` source.
pub async fn import(pool: &PgPool, paths: &[PathBuf]) -> Result<ImportReport, sqlx::Error> {
    let mut report = ImportReport::default();
    let mut intake = Intake::default();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => take_file(&mut intake, path, &text, &mut report.documents),
            Err(err) => report.unreadable.push((path.clone(), err.to_string())),
        }
    }
    if report.imported() == 0 {
        return Ok(report);
    }
    let endpoint = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let source_id = sources::ensure(pool, SOURCE_KIND, SOURCE_NAME, &endpoint).await?;
    if !intake.containers.is_empty() || !intake.images.is_empty() {
        let batch = crate::collect::docker::ingest::Batch {
            containers: std::mem::take(&mut intake.containers),
            images: std::mem::take(&mut intake.images),
            reason: "imported from a file".into(),
            ..Default::default()
        };
        // Not a full resync: an import adds to what earlier imports brought.
        crate::collect::docker::ingest::ingest(
            pool,
            source_id,
            batch,
            std::time::Duration::from_secs(600),
        )
        .await?;
    }
    let objects = intake.objects;
    let mut snapshot = mapping::snapshot(&objects, false);
    // A file shows a declared state, not a rollout in progress.
    for workload in snapshot.workloads.values_mut() {
        workload.observation.rolled_out = true;
    }
    let mut counts = objects.counts();
    counts.insert("workloads".into(), json!(snapshot.workloads.len()));
    counts.insert("instances".into(), json!(snapshot.instance_count()));
    // Additive: compared with an empty previous write, nothing is gone.
    let mut written = Some(Written::default());
    report.persisted = persist::persist(
        pool,
        source_id,
        &snapshot,
        &mut written,
        &serde_json::Value::Object(counts),
        true,
    )
    .await?;
    Ok(report)
}

/// Takes every document of one file.
pub fn take_file(intake: &mut Intake, path: &Path, text: &str, reports: &mut Vec<DocumentReport>) {
    for (index, document) in split_documents(text).into_iter().enumerate() {
        let location = Location {
            file: path.to_path_buf(),
            document: index + 1,
            item: None,
        };
        match document {
            Ok(value) => take_document(intake, location, value, reports),
            Err(message) => reports.push(DocumentReport {
                location,
                outcome: Outcome::Failed(message),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::kubernetes::mapping::Kind;

    fn take(text: &str) -> (Objects, Vec<DocumentReport>) {
        let mut intake = Intake::default();
        let mut reports = Vec::new();
        take_file(&mut intake, Path::new("x.yaml"), text, &mut reports);
        (intake.objects, reports)
    }

    #[test]
    fn a_broken_document_is_reported_with_its_index_and_the_rest_is_taken() {
        let (objects, reports) = take(
            "kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: [unclosed\n---\n# only a comment\n---\nkind: Deployment\nmetadata: {name: b}\nextra: ignored\n",
        );
        assert_eq!(objects.count(Kind::Pod), 1);
        assert_eq!(objects.count(Kind::Deployment), 1);
        let failed: Vec<_> = reports
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].location.document, 2);
        assert_eq!(failed[0].location.to_string(), "x.yaml document 2");
    }

    #[test]
    fn lists_missing_names_other_kinds_and_docker_inspect_are_told_apart() {
        let (objects, reports) = take(
            r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": {}}, {"kind": "Service", "metadata": {"name": "s"}}, 42]}"#,
        );
        assert!(objects.get(Kind::Pod, "", "unnamed-x-1-0").is_some());
        assert!(matches!(&reports[1].outcome, Outcome::Skipped(m) if m.contains("Service")));
        assert!(matches!(&reports[2].outcome, Outcome::Failed(_)));
        assert_eq!(reports[2].location.item, Some(2));

        let mut intake = Intake::default();
        let mut reports = Vec::new();
        take_file(
            &mut intake,
            Path::new("inspect.json"),
            r#"[{"Id": "abc", "Name": "/web-1", "Config": {"Image": "x"}, "State": {"Running": true}},
                {"Id": "sha256:def", "RepoTags": ["x:1"], "Config": {}}]"#,
            &mut reports,
        );
        assert_eq!(
            reports[0].outcome,
            Outcome::Imported {
                kind: "Container".into(),
                name: "web-1".into()
            }
        );
        assert_eq!(intake.containers.len(), 1);
        assert_eq!(
            intake.images.len(),
            1,
            "an image inspect document is an image"
        );
    }
}
