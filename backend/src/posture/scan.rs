//! `harbormaster scan`: the offline scanner, the build-stage gate users put in CI.
//!
//! It reads Kubernetes manifests (YAML or JSON, multi-document, `kind: List`, rendered Helm
//! output) and `docker inspect` output (containers; image, volume and `docker info` documents
//! add facts), evaluates every workload with the same engine the server uses, and writes a
//! table, JSON or SARIF. NetworkPolicies, ServiceAccounts and RuntimeClasses found in the
//! files are the context of the workloads next to them. A document that cannot be parsed or
//! adapted is reported with its file, index and line, and the rest is still scanned.
//!
//! Exit status: 0 when the gate passes, 1 when a finding at or above `--fail-on` exists (or a
//! workload is below `--profile`), 2 for unreadable files or malformed documents.

mod output;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::catalog::Severity;
use super::context::{
    Context, DaemonFacts, ImageFacts, NetworkPolicy, RuntimeClassFacts, ServiceAccountFacts,
    Settings, VolumeFacts,
};
use super::pss::PssLevel;
use super::spec::WorkloadSpec;
use super::{docker, kubernetes};

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "table" => Some(Format::Table),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            _ => None,
        }
    }
}

/// What to scan and how to judge it.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Files or directories (searched for `*.yaml`, `*.yml`, `*.json`); `-` is standard input.
    pub paths: Vec<PathBuf>,
    pub format: Format,
    /// Findings at or above this severity fail the gate.
    pub fail_on: Severity,
    /// Workloads below this Pod Security Standards level fail the gate.
    pub profile: Option<PssLevel>,
    pub settings: Settings,
}

/// The exit status of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStatus {
    /// Exit 0.
    Passed,
    /// Exit 1: findings at or above the threshold (or a workload below the profile).
    Failed,
    /// Exit 2: unreadable files or malformed documents.
    InputError,
}

impl ScanStatus {
    pub fn code(self) -> u8 {
        match self {
            ScanStatus::Passed => 0,
            ScanStatus::Failed => 1,
            ScanStatus::InputError => 2,
        }
    }
}

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRef {
    /// Index into [`Loaded::files`].
    pub file: usize,
    /// The document's index in the file (0-based, empty documents not counted; the element
    /// index for a JSON array).
    pub document: usize,
    /// The item index within a `kind: List`.
    pub item: Option<usize>,
    /// The 1-based line the document starts on.
    pub line: usize,
}

/// A file or document that could not be read, parsed or adapted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    pub document: Option<usize>,
    pub item: Option<usize>,
    pub line: Option<usize>,
    pub message: String,
}

/// A parsed document.
pub struct Document {
    pub at: DocRef,
    pub value: Value,
}

/// Everything read from the inputs.
#[derive(Default)]
pub struct Loaded {
    /// File names as given (`-` for standard input).
    pub files: Vec<String>,
    pub documents: Vec<Document>,
    pub errors: Vec<InputError>,
}

/// Reads every input path.
pub fn load(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match io::stdin().read_to_string(&mut text) {
                Ok(_) => load_text(&mut loaded, "-".to_string(), &text),
                Err(err) => loaded.errors.push(file_error(
                    "-",
                    format!("cannot read standard input: {err}"),
                )),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(message) = collect_files(path, &mut files, 0) {
            loaded
                .errors
                .push(file_error(&path.display().to_string(), message));
            continue;
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => load_text(&mut loaded, name, &text),
                    Err(_) => loaded
                        .errors
                        .push(file_error(&name, "not UTF-8 text".to_string())),
                },
                Err(err) => loaded
                    .errors
                    .push(file_error(&name, format!("cannot read: {err}"))),
            }
        }
    }
    loaded
}

fn file_error(file: &str, message: String) -> InputError {
    InputError {
        file: file.to_string(),
        document: None,
        item: None,
        line: None,
        message,
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot read: {err}"))?;
    if metadata.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !metadata.is_dir() {
        return Err("not a file or directory".to_string());
    }
    if depth > 32 {
        return Err("directories nested too deep".to_string());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|err| format!("cannot list: {err}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let is_dir = std::fs::metadata(&entry).is_ok_and(|m| m.is_dir());
        let wanted = entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"));
        if is_dir {
            collect_files(&entry, out, depth + 1)?;
        } else if wanted {
            out.push(entry);
        }
    }
    Ok(())
}

/// Splits and parses the text of one file.
pub fn load_text(loaded: &mut Loaded, name: String, text: &str) {
    let file = loaded.files.len();
    loaded.files.push(name);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => {
                for (index, value) in items.into_iter().enumerate() {
                    loaded.documents.push(Document {
                        at: DocRef {
                            file,
                            document: index,
                            item: None,
                            line: 1,
                        },
                        value,
                    });
                }
            }
            Ok(value) => loaded.documents.push(Document {
                at: DocRef {
                    file,
                    document: 0,
                    item: None,
                    line: 1,
                },
                value,
            }),
            Err(err) => loaded.errors.push(InputError {
                file: loaded.files[file].clone(),
                document: Some(0),
                item: None,
                line: Some(err.line()),
                message: format!("malformed JSON: {err}"),
            }),
        }
        return;
    }
    for (index, (line, chunk)) in yaml_documents(text).into_iter().enumerate() {
        match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(value) => loaded.documents.push(Document {
                at: DocRef {
                    file,
                    document: index,
                    item: None,
                    line,
                },
                value,
            }),
            Err(err) => {
                let at = err.location().map(|l| line + l.line().saturating_sub(1));
                loaded.errors.push(InputError {
                    file: loaded.files[file].clone(),
                    document: Some(index),
                    item: None,
                    line: at.or(Some(line)),
                    message: format!("malformed YAML: {err}"),
                });
            }
        }
    }
}

/// Splits a YAML stream at `---` / `...` lines into (first line, text) of each non-empty
/// document. Splitting before parsing keeps one broken document from hiding the others.
fn yaml_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut has_content = false;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let bare = line.trim_end();
        let separator =
            bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") || bare == "...";
        if separator {
            if has_content {
                documents.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            has_content = false;
            let rest = bare.strip_prefix("---").map(str::trim).unwrap_or("");
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                has_content = true;
                start = number;
            }
            continue;
        }
        if !has_content {
            // Leading blank and comment lines (Helm's `# Source:`) are not content.
            let content = bare.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            start = number;
            has_content = true;
        }
        current.push_str(line);
        current.push('\n');
    }
    if has_content {
        documents.push((start, current));
    }
    documents
}

/// A document the scanner did not evaluate, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub at: DocRef,
    pub kind: String,
    pub reason: &'static str,
}

/// The workloads and facts found in the documents.
#[derive(Default)]
pub struct Inventory {
    pub specs: Vec<WorkloadSpec>,
    pub sources: Vec<DocRef>,
    pub daemon: Option<DaemonFacts>,
    pub images: HashMap<String, ImageFacts>,
    pub volumes: HashMap<String, VolumeFacts>,
    pub network_policies: Vec<NetworkPolicy>,
    pub service_accounts: Vec<ServiceAccountFacts>,
    pub runtime_classes: Vec<RuntimeClassFacts>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<InputError>,
}

impl Inventory {
    /// Classifies every document and adapts the workloads.
    pub fn build(loaded: &Loaded) -> Self {
        let mut inventory = Inventory::default();
        let mut candidates: Vec<(DocRef, &Value)> = Vec::new();
        for document in &loaded.documents {
            match &document.value {
                Value::Object(map)
                    if map
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List"))
                        && map.get("items").is_some_and(Value::is_array) =>
                {
                    for (item, value) in map["items"].as_array().into_iter().flatten().enumerate() {
                        let mut at = document.at.clone();
                        at.item = Some(item);
                        candidates.push((at, value));
                    }
                }
                value => candidates.push((document.at.clone(), value)),
            }
        }
        // Owners present in the input: their ReplicaSets and Jobs are evaluated through them (E21).
        let owners: Vec<(String, String, String)> = candidates
            .iter()
            .filter_map(|(_, value)| {
                let kind = value.get("kind")?.as_str()?;
                matches!(kind, "Deployment" | "CronJob").then(|| {
                    let meta = value.get("metadata");
                    let text = |key: &str| {
                        meta.and_then(|m| m.get(key))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    (kind.to_string(), text("namespace"), text("name"))
                })
            })
            .collect();
        for (at, value) in candidates {
            inventory.classify(loaded, at, value, &owners);
        }
        // Grouped by namespace, so each workload sees only its namespace's policies.
        inventory
            .network_policies
            .sort_by(|a, b| a.namespace.cmp(&b.namespace));
        inventory
    }

    /// The NetworkPolicies of one namespace (the policies are sorted by namespace).
    pub fn policies_of(&self, namespace: &str) -> &[NetworkPolicy] {
        let policies = &self.network_policies;
        let start = policies.partition_point(|p| p.namespace.as_str() < namespace);
        let end = policies.partition_point(|p| p.namespace.as_str() <= namespace);
        &policies[start..end]
    }

    fn error(&mut self, loaded: &Loaded, at: &DocRef, message: String) {
        self.errors.push(InputError {
            file: loaded.files[at.file].clone(),
            document: Some(at.document),
            item: at.item,
            line: Some(at.line),
            message,
        });
    }

    fn classify(
        &mut self,
        loaded: &Loaded,
        at: DocRef,
        value: &Value,
        owners: &[(String, String, String)],
    ) {
        if !value.is_object() {
            self.error(
                loaded,
                &at,
                "not an object: expected a Kubernetes object or docker inspect output".to_string(),
            );
            return;
        }
        if let Some(kind) = value.get("kind").and_then(Value::as_str) {
            if value.get("apiVersion").is_none() {
                self.error(loaded, &at, format!("{kind} without apiVersion"));
                return;
            }
            if kubernetes::pod_paths(kind).is_some() {
                if matches!(kind, "ReplicaSet" | "Job") && owned_by_present(value, owners) {
                    self.skipped.push(Skipped {
                        at,
                        kind: kind.to_string(),
                        reason: "owned by a Deployment or CronJob in the input; evaluated through its owner",
                    });
                    return;
                }
                match kubernetes::adapt(value) {
                    Ok(spec) => {
                        self.specs.push(spec);
                        self.sources.push(at);
                    }
                    Err(err) => self.error(loaded, &at, format!("{kind}: {err}")),
                }
                return;
            }
            let kept = match kind {
                "NetworkPolicy" => NetworkPolicy::from_object(value)
                    .map(|p| self.network_policies.push(p))
                    .is_some(),
                "ServiceAccount" => ServiceAccountFacts::from_object(value)
                    .map(|s| self.service_accounts.push(s))
                    .is_some(),
                "RuntimeClass" => RuntimeClassFacts::from_object(value)
                    .map(|r| self.runtime_classes.push(r))
                    .is_some(),
                _ => false,
            };
            if !kept {
                self.skipped.push(Skipped {
                    at,
                    kind: kind.to_string(),
                    reason: if matches!(kind, "NetworkPolicy" | "ServiceAccount" | "RuntimeClass") {
                        "incomplete object"
                    } else {
                        "not a workload"
                    },
                });
            } else {
                self.skipped.push(Skipped {
                    at,
                    kind: kind.to_string(),
                    reason: "read as context",
                });
            }
            return;
        }
        if docker::looks_like_container(value) {
            match docker::adapt(value) {
                Ok(spec) => {
                    self.specs.push(spec);
                    self.sources.push(at);
                }
                Err(err) => self.error(loaded, &at, format!("docker container: {err}")),
            }
        } else if DaemonFacts::looks_like_info(value) {
            self.daemon = Some(DaemonFacts::from_info(value));
            self.skipped.push(Skipped {
                at,
                kind: "docker info".to_string(),
                reason: "read as context",
            });
        } else if ImageFacts::looks_like_image(value) {
            if let Some(image) = ImageFacts::from_inspect(value) {
                self.images.insert(image.id.clone(), image);
            }
            self.skipped.push(Skipped {
                at,
                kind: "docker image".to_string(),
                reason: "read as context",
            });
        } else if VolumeFacts::looks_like_volume(value) {
            if let Some(volume) = VolumeFacts::from_inspect(value) {
                self.volumes.insert(volume.name.clone(), volume);
            }
            self.skipped.push(Skipped {
                at,
                kind: "docker volume".to_string(),
                reason: "read as context",
            });
        } else {
            self.error(
                loaded,
                &at,
                "unrecognized document: neither a Kubernetes object (kind, apiVersion) nor docker inspect output".to_string(),
            );
        }
    }

    /// The evaluation context built from the facts in the input.
    pub fn context<'a>(&'a self, settings: &'a Settings) -> Context<'a> {
        Context {
            daemon: self.daemon.as_ref(),
            images: (!self.images.is_empty()).then_some(&self.images),
            docker_volumes: (!self.volumes.is_empty()).then_some(&self.volumes),
            docker_peers: &self.specs,
            // No NetworkPolicy in the input at all: say UNKNOWN rather than "none selects".
            network_policies: (!self.network_policies.is_empty())
                .then_some(self.network_policies.as_slice()),
            service_accounts: (!self.service_accounts.is_empty())
                .then_some(self.service_accounts.as_slice()),
            runtime_classes: (!self.runtime_classes.is_empty())
                .then_some(self.runtime_classes.as_slice()),
            settings: Some(settings),
            ..Context::default()
        }
    }
}

fn owned_by_present(value: &Value, owners: &[(String, String, String)]) -> bool {
    let meta = value.get("metadata");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    meta.and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|owner| {
            let kind = owner.get("kind").and_then(Value::as_str).unwrap_or("");
            let name = owner.get("name").and_then(Value::as_str).unwrap_or("");
            owners
                .iter()
                .any(|(k, ns, n)| k == kind && ns == namespace && n == name)
        })
}

/// Runs a scan and writes the report; returns the exit status.
pub fn run(
    options: &ScanOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ScanStatus> {
    let loaded = load(&options.paths);
    run_loaded(options, &loaded, out, err)
}

/// Runs a scan of documents already loaded.
pub fn run_loaded(
    options: &ScanOptions,
    loaded: &Loaded,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ScanStatus> {
    let inventory = Inventory::build(loaded);
    let ctx = inventory.context(&options.settings);
    let mut errors: Vec<&InputError> = loaded.errors.iter().chain(&inventory.errors).collect();
    errors.sort_by(|a, b| (&a.file, a.document, a.item).cmp(&(&b.file, b.document, b.item)));
    for error in &errors {
        writeln!(err, "error: {}", output::describe_error(error))?;
    }
    let gate_failed = output::write(options, loaded, &inventory, &ctx, &errors, out)?;
    out.flush()?;
    Ok(if !errors.is_empty() {
        ScanStatus::InputError
    } else if gate_failed {
        ScanStatus::Failed
    } else {
        ScanStatus::Passed
    })
}

/// Counts skipped documents by kind, for summaries.
pub(crate) fn skipped_by_kind(skipped: &[Skipped]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for s in skipped.iter().filter(|s| s.reason != "read as context") {
        *counts.entry(s.kind.as_str()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_streams_split_at_separators_keeping_line_numbers() {
        let text = "---\n# Source: chart/templates/a.yaml\napiVersion: v1\nkind: A\n---\n\n---\napiVersion: v1\nkind: B\n...\n--- {apiVersion: v1, kind: C}\n";
        let docs = yaml_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].0, 3);
        assert!(docs[0].1.contains("kind: A"));
        assert_eq!(docs[1].0, 8);
        assert!(docs[2].1.contains("kind: C"));
        assert_eq!(docs[2].0, 11);
    }

    #[test]
    fn a_malformed_document_is_reported_and_the_others_are_kept() {
        let mut loaded = Loaded::default();
        load_text(
            &mut loaded,
            "x.yaml".into(),
            "apiVersion: v1\nkind: Pod\n---\nkind: [unclosed\n---\napiVersion: v1\nkind: Service\n",
        );
        assert_eq!(loaded.documents.len(), 2);
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].document, Some(1));
        assert!(matches!(loaded.errors[0].line, Some(4..=5)));
    }
}
