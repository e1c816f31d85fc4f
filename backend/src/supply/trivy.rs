//! A Trivy image report (`trivy image -f json`) reduced to what is kept: vulnerability counts per
//! severity, the worst vulnerabilities, and the names of image ENV variables that hold a
//! secret-looking value (from `Metadata.ImageConfig.config.Env`; the values are dropped).
//! Missing or null fields are tolerated and unknown fields ignored; a field of the wrong type is
//! refused with its path.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InvalidInput;
use crate::posture::checks::secrets::classify_env;

/// How many vulnerabilities are kept, worst first.
pub const TOP: usize = 20;

/// Vulnerability counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub critical: i32,
    pub high: i32,
    pub medium: i32,
    pub low: i32,
    pub unknown: i32,
}

/// One vulnerability of one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub id: String,
    pub package: String,
    pub installed: String,
    pub fixed: Option<String>,
    /// CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN.
    pub severity: String,
    pub title: Option<String>,
}

/// An image ENV variable whose value looks like a secret: its name and the rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSecret {
    pub name: String,
    pub rule: String,
}

/// What is kept of a scan report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// `Trivy <version>` when the report says, else `Trivy`.
    pub scanner: String,
    pub counts: Counts,
    /// At most [`TOP`], worst severity first.
    pub top: Vec<Vulnerability>,
    pub env_secrets: Vec<EnvSecret>,
}

const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];

fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len() - 1)
}

/// An optional string field: absent or null is `None`, another type an error naming `path`.
fn opt_str(object: &Value, key: &str, path: &str) -> Result<Option<String>, InvalidInput> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Some(_) => Err(InvalidInput(format!("{path}.{key} must be a string"))),
    }
}

/// An optional array field.
fn opt_array<'a>(object: &'a Value, key: &str, path: &str) -> Result<&'a [Value], InvalidInput> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(InvalidInput(format!("{path}{key} must be an array"))),
    }
}

fn limited(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Summarizes a Trivy JSON report.
pub fn summarize(report: &Value) -> Result<ScanSummary, InvalidInput> {
    if !report.is_object() {
        return Err(InvalidInput(
            "the scan report must be a JSON object (the output of trivy image -f json)".into(),
        ));
    }
    let version = report
        .get("Trivy")
        .and_then(|t| t.get("Version"))
        .and_then(Value::as_str);
    let scanner = match version {
        Some(version) => limited(format!("Trivy {version}"), 64),
        None => "Trivy".to_string(),
    };
    let mut seen = BTreeSet::new();
    let mut counts = Counts::default();
    let mut all = Vec::new();
    for (r, result) in opt_array(report, "Results", "")?.iter().enumerate() {
        if result.is_null() {
            continue;
        }
        let path = format!("Results[{r}]");
        if !result.is_object() {
            return Err(InvalidInput(format!("{path} must be an object")));
        }
        let items = opt_array(result, "Vulnerabilities", &format!("{path}."))?;
        for (v, item) in items.iter().enumerate() {
            if item.is_null() {
                continue;
            }
            let path = format!("{path}.Vulnerabilities[{v}]");
            if !item.is_object() {
                return Err(InvalidInput(format!("{path} must be an object")));
            }
            let id = opt_str(item, "VulnerabilityID", &path)?.unwrap_or_else(|| "(no id)".into());
            let package = opt_str(item, "PkgName", &path)?.unwrap_or_default();
            let installed = opt_str(item, "InstalledVersion", &path)?.unwrap_or_default();
            // The same vulnerability of the same package is listed once per target.
            if !seen.insert((id.clone(), package.clone(), installed.clone())) {
                continue;
            }
            let severity = opt_str(item, "Severity", &path)?
                .map(|s| s.to_ascii_uppercase())
                .filter(|s| SEVERITIES.contains(&s.as_str()))
                .unwrap_or_else(|| "UNKNOWN".into());
            match severity.as_str() {
                "CRITICAL" => counts.critical += 1,
                "HIGH" => counts.high += 1,
                "MEDIUM" => counts.medium += 1,
                "LOW" => counts.low += 1,
                _ => counts.unknown += 1,
            }
            all.push(Vulnerability {
                id: limited(id, 128),
                package: limited(package, 256),
                installed: limited(installed, 128),
                fixed: opt_str(item, "FixedVersion", &path)?.map(|f| limited(f, 256)),
                severity,
                title: opt_str(item, "Title", &path)?.map(|t| limited(t, 300)),
            });
        }
    }
    // Worst first; among equals, those with a fix first, then by id.
    all.sort_by(|a, b| {
        rank(&a.severity)
            .cmp(&rank(&b.severity))
            .then(a.fixed.is_none().cmp(&b.fixed.is_none()))
            .then_with(|| b.id.cmp(&a.id))
    });
    all.truncate(TOP);

    let mut env_secrets = Vec::new();
    let env = report
        .pointer("/Metadata/ImageConfig/config/Env")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for entry in env.iter().filter_map(Value::as_str) {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        if let Some(hit) = classify_env(name, value) {
            env_secrets.push(EnvSecret {
                name: limited(name.to_string(), 256),
                rule: hit.rule.to_string(),
            });
        }
    }
    Ok(ScanSummary {
        scanner,
        counts,
        top: all,
        env_secrets,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn vulnerabilities_are_counted_once_per_package_and_the_worst_kept_first() {
        let report = json!({
            "SchemaVersion": 2,
            "Trivy": {"Version": "0.57.1"},
            "Metadata": {"ImageConfig": {"config": {"Env": [
                "PATH=/usr/bin", "DB_PASSWORD=hunter2hunter2", "KEY_FILE=/run/secrets/key"
            ]}}},
            "Results": [
                {"Target": "debian", "Vulnerabilities": [
                    {"VulnerabilityID": "CVE-2024-1", "PkgName": "openssl", "InstalledVersion": "3.0.1",
                     "FixedVersion": "3.0.2", "Severity": "HIGH", "Title": "t", "Extra": 1},
                    {"VulnerabilityID": "CVE-2024-2", "PkgName": "libc", "InstalledVersion": "2.36",
                     "Severity": "CRITICAL", "FixedVersion": null},
                    {"VulnerabilityID": "CVE-2024-3", "PkgName": "zlib"},
                    null
                ]},
                {"Target": "again", "Vulnerabilities": [
                    {"VulnerabilityID": "CVE-2024-1", "PkgName": "openssl", "InstalledVersion": "3.0.1",
                     "Severity": "HIGH"}
                ]},
                {"Target": "clean", "Vulnerabilities": null},
                {"Target": "no field"}
            ]
        });
        let summary = summarize(&report).unwrap();
        assert_eq!(summary.scanner, "Trivy 0.57.1");
        assert_eq!(
            summary.counts,
            Counts {
                critical: 1,
                high: 1,
                medium: 0,
                low: 0,
                unknown: 1
            }
        );
        let ids: Vec<&str> = summary.top.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, vec!["CVE-2024-2", "CVE-2024-1", "CVE-2024-3"]);
        assert_eq!(summary.env_secrets.len(), 1);
        assert_eq!(summary.env_secrets[0].name, "DB_PASSWORD");
        assert!(!serde_json::to_string(&summary).unwrap().contains("hunter2"));
    }

    #[test]
    fn wrong_types_are_named_by_path() {
        let err =
            summarize(&json!({"Results": [{"Vulnerabilities": [{"Severity": 5}]}]})).unwrap_err();
        assert_eq!(
            err.0,
            "Results[0].Vulnerabilities[0].Severity must be a string"
        );
        assert!(summarize(&json!("x")).is_err());
        assert_eq!(summarize(&json!({})).unwrap().counts, Counts::default());
    }
}
