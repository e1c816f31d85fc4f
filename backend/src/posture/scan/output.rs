//! The scanner's output formats: a table for people, JSON for tools (every workload, its Pod
//! Security Standards level and every check with its outcome), SARIF 2.1.0 for code-scanning
//! dashboards (failures only). All three stream one workload at a time.

use std::io::{self, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{skipped_by_kind, DocRef, Format, InputError, Inventory, Loaded, ScanOptions};
use crate::posture::catalog::{CheckId, CheckMeta, Severity, CATALOG};
use crate::posture::context::Context;
use crate::posture::pss::{self, PssAssessment, PssLevel};
use crate::posture::score::{grade, Grade, SeverityCounts};
use crate::posture::spec::WorkloadSpec;
use crate::posture::{evaluate_into, CheckResult, Evidence, Outcome, Report};

/// One evaluated workload.
struct Evaluated<'r, 'a> {
    spec: &'a WorkloadSpec,
    at: &'a DocRef,
    report: &'r Report<'a>,
    pss: PssAssessment<'a>,
    counts: SeverityCounts,
    grade: Grade,
}

/// Totals over the scan.
#[derive(Default, Serialize)]
struct Summary {
    files: usize,
    documents: usize,
    workloads: usize,
    skipped: usize,
    errors: usize,
    findings: SeverityCounts,
    failing_workloads: usize,
    gate: &'static str,
}

/// Writes the report in the chosen format; returns whether the gate failed.
pub(super) fn write(
    options: &ScanOptions,
    loaded: &Loaded,
    inventory: &Inventory,
    ctx: &Context<'_>,
    errors: &[&InputError],
    out: &mut dyn Write,
) -> io::Result<bool> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut writer: Box<dyn FormatWriter> = match options.format {
        Format::Table => Box::new(Table),
        Format::Json => Box::new(Json::default()),
        Format::Sarif => Box::new(Sarif::default()),
    };
    writer.begin(options, &mut out)?;
    let mut summary = Summary {
        files: loaded.files.len(),
        documents: loaded.documents.len(),
        workloads: inventory.specs.len(),
        skipped: inventory.skipped.len(),
        errors: errors.len(),
        ..Summary::default()
    };
    let mut report = Report::new();
    for (spec, at) in inventory.specs.iter().zip(&inventory.sources) {
        let mut ctx = *ctx;
        if ctx.network_policies.is_some() {
            ctx.network_policies = Some(inventory.policies_of(spec.namespace_or_default()));
        }
        evaluate_into(spec, &ctx, &mut report);
        let counts = report.counts();
        let evaluated = Evaluated {
            spec,
            at,
            report: &report,
            pss: pss::assess(spec),
            grade: grade(&counts),
            counts,
        };
        let failing = counts.at_or_above(options.fail_on) > 0
            || options.profile.is_some_and(|p| evaluated.pss.level < p);
        if failing {
            summary.failing_workloads += 1;
        }
        for severity in report.failures().map(|r| r.severity) {
            summary.findings.add(severity);
        }
        writer.workload(options, loaded, &evaluated, &mut out)?;
    }
    let gate_failed = summary.failing_workloads > 0;
    summary.gate = if gate_failed { "failed" } else { "passed" };
    writer.end(options, loaded, inventory, errors, &summary, &mut out)?;
    out.flush()?;
    Ok(gate_failed)
}

trait FormatWriter {
    fn begin(&mut self, options: &ScanOptions, out: &mut dyn Write) -> io::Result<()>;
    fn workload(
        &mut self,
        options: &ScanOptions,
        loaded: &Loaded,
        w: &Evaluated<'_, '_>,
        out: &mut dyn Write,
    ) -> io::Result<()>;
    fn end(
        &mut self,
        options: &ScanOptions,
        loaded: &Loaded,
        inventory: &Inventory,
        errors: &[&InputError],
        summary: &Summary,
        out: &mut dyn Write,
    ) -> io::Result<()>;
}

/// `file (document N[, item M], line L)`.
fn describe_at(loaded: &Loaded, at: &DocRef) -> String {
    let mut text = format!("{} (document {}", loaded.files[at.file], at.document);
    if let Some(item) = at.item {
        text.push_str(&format!(", item {item}"));
    }
    text.push_str(&format!(", line {})", at.line));
    text
}

/// `file: document N, line L: message`.
pub(super) fn describe_error(error: &InputError) -> String {
    let mut text = error.file.clone();
    if let Some(document) = error.document {
        text.push_str(&format!(": document {document}"));
    }
    if let Some(item) = error.item {
        text.push_str(&format!(", item {item}"));
    }
    if let Some(line) = error.line {
        text.push_str(&format!(", line {line}"));
    }
    text.push_str(": ");
    text.push_str(&error.message);
    text
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn workload_name(spec: &WorkloadSpec) -> String {
    match &spec.namespace {
        Some(namespace) => format!("{} {namespace}/{}", spec.kind, spec.name),
        None => format!("{} {}", spec.kind, spec.name),
    }
}

// ---------------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Table;

impl FormatWriter for Table {
    fn begin(&mut self, _: &ScanOptions, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn workload(
        &mut self,
        options: &ScanOptions,
        loaded: &Loaded,
        w: &Evaluated<'_, '_>,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        writeln!(
            out,
            "{} — {}",
            workload_name(w.spec),
            describe_at(loaded, w.at)
        )?;
        write!(
            out,
            "  grade {} · Pod Security Standards: {}",
            w.grade.as_str(),
            w.pss.level.as_str()
        )?;
        if !w.pss.blocking.is_empty() {
            let mut controls: Vec<&str> = w.pss.blocking.iter().map(|v| v.control).collect();
            controls.dedup();
            let next = match w.pss.level {
                PssLevel::Privileged => "baseline",
                _ => "restricted",
            };
            write!(out, " ({next} blocked by: {})", controls.join(", "))?;
        }
        writeln!(out)?;
        let mut failures: Vec<&CheckResult<'_>> = w.report.failures().collect();
        failures.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(&b.check)));
        for r in &failures {
            let marker = if r.severity >= options.fail_on {
                "!"
            } else {
                " "
            };
            writeln!(
                out,
                "  {marker}{:<9} {:<32} {:<16} {}",
                r.severity.as_str(),
                r.check.as_str(),
                r.container.unwrap_or("(pod)"),
                r.message
            )?;
        }
        let unknown: Vec<&CheckResult<'_>> = w
            .report
            .results()
            .iter()
            .filter(|r| r.outcome == Outcome::Unknown)
            .collect();
        if !unknown.is_empty() {
            let mut ids: Vec<&str> = unknown.iter().map(|r| r.check.as_str()).collect();
            ids.dedup();
            writeln!(out, "   unknown   {}", ids.join(", "))?;
        }
        if failures.is_empty() && unknown.is_empty() {
            writeln!(out, "   every check passed")?;
        }
        writeln!(out)
    }

    fn end(
        &mut self,
        options: &ScanOptions,
        _: &Loaded,
        inventory: &Inventory,
        _: &[&InputError],
        summary: &Summary,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        // Input errors went to standard error already.
        let skipped = skipped_by_kind(&inventory.skipped);
        if !skipped.is_empty() {
            let list: Vec<String> = skipped.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            writeln!(out, "not workloads, skipped: {}", list.join(", "))?;
        }
        let f = &summary.findings;
        writeln!(
            out,
            "{} in {}: {} critical, {} high, {} medium, {} low, {} info findings; {}",
            plural(summary.workloads, "workload"),
            plural(summary.files, "file"),
            f.critical,
            f.high,
            f.medium,
            f.low,
            f.info,
            plural(summary.errors, "input error"),
        )?;
        let mut gate = format!("--fail-on {}", options.fail_on.as_str());
        if let Some(profile) = options.profile {
            gate.push_str(&format!(" --profile {}", profile.as_str()));
        }
        writeln!(
            out,
            "gate ({gate}): {}{}",
            summary.gate,
            if summary.failing_workloads > 0 {
                format!(
                    " — {} at or above the threshold (marked !)",
                    plural(summary.failing_workloads, "workload")
                )
            } else {
                String::new()
            }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Json {
    first: bool,
}

#[derive(Serialize)]
struct SourceOut<'a> {
    file: &'a str,
    document: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<usize>,
    line: usize,
}

#[derive(Serialize)]
struct ResultOut<'r, 'a> {
    check: CheckId,
    title: &'static str,
    container: Option<&'a str>,
    outcome: Outcome,
    severity: Severity,
    message: &'r str,
    evidence: &'r [Evidence<'a>],
}

#[derive(Serialize)]
struct WorkloadOut<'r, 'a> {
    source: SourceOut<'r>,
    platform: crate::posture::spec::Platform,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    name: &'a str,
    containers: Vec<&'a str>,
    grade: Grade,
    findings: SeverityCounts,
    pss: &'r PssAssessment<'a>,
    results: Vec<ResultOut<'r, 'a>>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    message: &'a str,
}

#[derive(Serialize)]
struct SkippedOut<'a> {
    source: SourceOut<'a>,
    kind: &'a str,
    reason: &'a str,
}

impl FormatWriter for Json {
    fn begin(&mut self, options: &ScanOptions, out: &mut dyn Write) -> io::Result<()> {
        self.first = true;
        write!(
            out,
            "{{\"tool\":\"harbormaster\",\"version\":{},\"policy_version\":{},\"fail_on\":{},\"profile\":{},\"workloads\":[",
            serde_json::to_string(env!("CARGO_PKG_VERSION"))?,
            serde_json::to_string(pss::POLICY_VERSION)?,
            serde_json::to_string(&options.fail_on)?,
            serde_json::to_string(&options.profile)?,
        )
    }

    fn workload(
        &mut self,
        _: &ScanOptions,
        loaded: &Loaded,
        w: &Evaluated<'_, '_>,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if !std::mem::take(&mut self.first) {
            out.write_all(b",")?;
        }
        let value = WorkloadOut {
            source: SourceOut {
                file: &loaded.files[w.at.file],
                document: w.at.document,
                item: w.at.item,
                line: w.at.line,
            },
            platform: w.spec.platform,
            kind: &w.spec.kind,
            namespace: w.spec.namespace.as_deref(),
            name: &w.spec.name,
            containers: w.spec.containers.iter().map(|c| &*c.name).collect(),
            grade: w.grade,
            findings: w.counts,
            pss: &w.pss,
            results: w
                .report
                .iter()
                .map(|(r, evidence)| ResultOut {
                    check: r.check,
                    title: r.meta().title,
                    container: r.container,
                    outcome: r.outcome,
                    severity: r.severity,
                    message: &r.message,
                    evidence,
                })
                .collect(),
        };
        serde_json::to_writer(&mut *out, &value)?;
        Ok(())
    }

    fn end(
        &mut self,
        _: &ScanOptions,
        loaded: &Loaded,
        inventory: &Inventory,
        errors: &[&InputError],
        summary: &Summary,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let errors: Vec<ErrorOut<'_>> = errors
            .iter()
            .map(|e| ErrorOut {
                file: &e.file,
                document: e.document,
                item: e.item,
                line: e.line,
                message: &e.message,
            })
            .collect();
        let skipped: Vec<SkippedOut<'_>> = inventory
            .skipped
            .iter()
            .map(|s| SkippedOut {
                source: SourceOut {
                    file: &loaded.files[s.at.file],
                    document: s.at.document,
                    item: s.at.item,
                    line: s.at.line,
                },
                kind: &s.kind,
                reason: s.reason,
            })
            .collect();
        write!(out, "],\"errors\":")?;
        serde_json::to_writer(&mut *out, &errors)?;
        write!(out, ",\"skipped\":")?;
        serde_json::to_writer(&mut *out, &skipped)?;
        write!(out, ",\"summary\":")?;
        serde_json::to_writer(&mut *out, summary)?;
        writeln!(out, "}}")
    }
}

// ---------------------------------------------------------------------------------------------
// SARIF 2.1.0
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Sarif {
    first: bool,
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// A file name as a SARIF artifact URI (relative reference, `/` separators).
fn artifact_uri(file: &str) -> String {
    let path = file.replace('\\', "/");
    let encoded: String = path
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_string(),
            '#' => "%23".to_string(),
            '?' => "%3F".to_string(),
            '%' => "%25".to_string(),
            c => c.to_string(),
        })
        .collect();
    if encoded.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded.trim_start_matches("./").to_string()
    }
}

fn rule(meta: &CheckMeta) -> serde_json::Value {
    let mut help = meta.remediation.summary.to_string();
    if let Some(docker) = meta.remediation.docker {
        help.push_str(&format!("\nDocker: {docker}"));
    }
    if let Some(kubernetes) = meta.remediation.kubernetes {
        help.push_str(&format!("\nKubernetes:\n{kubernetes}"));
    }
    let mut tags = vec!["security".to_string(), meta.threat.label().to_string()];
    if let Some(pss) = meta.references.pss {
        tags.push(format!("PSS {pss}"));
    }
    if let Some(cis) = meta.references.cis_docker {
        tags.push(format!("CIS Docker {cis}"));
    }
    serde_json::json!({
        "id": meta.id,
        "name": meta.id,
        "shortDescription": {"text": meta.title},
        "fullDescription": {"text": format!("{}: {}", meta.title, meta.rationale)},
        "help": {"text": help},
        "defaultConfiguration": {"level": sarif_level(meta.severity)},
        "properties": {
            "security-severity": security_severity(meta.severity),
            "severity": meta.severity,
            "threat": meta.threat,
            "stage": meta.stage(),
            "layer": meta.layer(),
            "tags": tags,
        }
    })
}

impl FormatWriter for Sarif {
    fn begin(&mut self, _: &ScanOptions, out: &mut dyn Write) -> io::Result<()> {
        self.first = true;
        let rules: Vec<serde_json::Value> = CATALOG.iter().map(rule).collect();
        write!(
            out,
            "{{\"$schema\":\"https://json.schemastore.org/sarif-2.1.0.json\",\"version\":\"2.1.0\",\"runs\":[{{\"tool\":{{\"driver\":{{\"name\":\"harbormaster\",\"version\":{},\"rules\":",
            serde_json::to_string(env!("CARGO_PKG_VERSION"))?
        )?;
        serde_json::to_writer(&mut *out, &rules)?;
        write!(out, "}}}},\"results\":[")
    }

    fn workload(
        &mut self,
        _: &ScanOptions,
        loaded: &Loaded,
        w: &Evaluated<'_, '_>,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let file = &loaded.files[w.at.file];
        let uri = artifact_uri(file);
        let name = workload_name(w.spec);
        for (r, evidence) in w.report.iter().filter(|(r, _)| r.outcome == Outcome::Fail) {
            if !std::mem::take(&mut self.first) {
                out.write_all(b",")?;
            }
            let logical = match r.container {
                Some(container) => format!("{name}/{container}"),
                None => name.clone(),
            };
            let mut hash = Sha256::new();
            hash.update(uri.as_bytes());
            hash.update([0]);
            hash.update(logical.as_bytes());
            hash.update([0]);
            hash.update(r.check.as_str().as_bytes());
            let fingerprint = hex::encode(&hash.finalize()[..16]);
            let message = match r.container {
                Some(container) => format!("{name}, container {container}: {}", r.message),
                None => format!("{name}: {}", r.message),
            };
            let result = serde_json::json!({
                "ruleId": r.check.as_str(),
                "ruleIndex": r.check as usize,
                "level": sarif_level(r.severity),
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": {"startLine": w.at.line}
                    },
                    "logicalLocations": [{"fullyQualifiedName": logical, "kind": "resource"}]
                }],
                "partialFingerprints": {"harbormaster/v1": fingerprint},
                "properties": {
                    "severity": r.severity,
                    "security-severity": security_severity(r.severity),
                    "container": r.container,
                    "evidence": evidence,
                }
            });
            serde_json::to_writer(&mut *out, &result)?;
        }
        Ok(())
    }

    fn end(
        &mut self,
        _: &ScanOptions,
        _: &Loaded,
        _: &Inventory,
        errors: &[&InputError],
        summary: &Summary,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let notifications: Vec<serde_json::Value> = errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "level": "error",
                    "message": {"text": describe_error(e)},
                    "locations": [{"physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(&e.file)},
                        "region": {"startLine": e.line.unwrap_or(1)}
                    }}]
                })
            })
            .collect();
        let invocation = serde_json::json!([{
            "executionSuccessful": errors.is_empty(),
            "toolExecutionNotifications": notifications,
            "properties": {"summary": summary}
        }]);
        write!(out, "],\"invocations\":")?;
        serde_json::to_writer(&mut *out, &invocation)?;
        writeln!(out, "}}]}}")
    }
}
