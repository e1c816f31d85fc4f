//! Concurrent load on a running server: every console page and API list, requested by
//! `concurrency` clients in a loop for `duration`, with p50 / p95 / p99 per page (client-side
//! times over HTTP: an upper bound of the server's), and the server's peak memory when its
//! process id is given.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The pages and lists requested, by label; `{workload}` and `{check}` are replaced by the id of
/// a workload from the middle of the list and of the first check.
pub const PAGES: &[(&str, &str)] = &[
    ("overview", "/"),
    ("workloads: first page", "/workloads"),
    ("workloads: namespace filter", "/workloads?namespace=ns-123"),
    ("workloads: name search", "/workloads?q=app-0999"),
    ("workloads: a later page", "/workloads?after={workload}"),
    ("workload page", "/workloads/{workload}"),
    ("checks", "/checks"),
    ("check page", "/checks/{check}"),
    ("sources", "/sources"),
    ("incidents", "/incidents"),
    ("api: workloads", "/api/v1/workloads"),
    ("api: workload", "/api/v1/workloads/{workload}"),
    ("api: findings", "/api/v1/findings"),
    (
        "api: posture by namespace",
        "/api/v1/posture/summary?by=namespace",
    ),
    ("api: posture by check", "/api/v1/posture/summary?by=check"),
    ("api: checks", "/api/v1/checks"),
    ("api: sources", "/api/v1/sources"),
    ("api: incidents", "/api/v1/incidents"),
    ("api: waivers", "/api/v1/waivers"),
];

/// Where and how hard to push.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub token: String,
    pub concurrency: usize,
    pub duration: Duration,
    /// The server's process id (same machine): its peak resident memory is read after the run.
    pub server_pid: Option<u32>,
}

/// The figures of one page.
#[derive(Debug, Clone)]
pub struct PageStats {
    pub label: String,
    pub path: String,
    pub requests: usize,
    pub errors: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub pages: Vec<PageStats>,
    pub elapsed: Duration,
    /// Peak and current resident memory of the server, in KiB (`VmHWM`, `VmRSS`).
    pub server_memory: Option<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot reach {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error(
        "{url} answered {status}: is the token a viewer's or better, and is the estate seeded?"
    )]
    Status { url: String, status: u16 },
}

/// The `p`-quantile of sorted times (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The `id` of the first object of the first list in a JSON answer.
fn first_id(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .find_map(|item| item.get("id"))
            .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string)),
        Value::Object(map) => map.values().find_map(first_id),
        _ => None,
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, LoadError> {
    let error = |source| LoadError::Request {
        url: url.to_string(),
        source,
    };
    let response = client.get(url).send().await.map_err(error)?;
    if !response.status().is_success() {
        return Err(LoadError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    response.json().await.map_err(error)
}

/// `VmHWM` and `VmRSS` of process `pid`, in KiB.
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Runs the load and returns the figures per page.
pub async fn run(options: &LoadOptions) -> Result<LoadReport, LoadError> {
    let base = options.url.trim_end_matches('/').to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = format!("Bearer {}", options.token).parse() {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .map_err(|source| LoadError::Request {
            url: base.clone(),
            source,
        })?;

    // A workload from the middle of the first page and the first check.
    let workloads = get_json(&client, &format!("{base}/api/v1/workloads?limit=100")).await?;
    let workload = workloads
        .get("workloads")
        .and_then(Value::as_array)
        .and_then(|list| list.get(list.len() / 2))
        .and_then(|w| w.get("id"))
        .map(ToString::to_string)
        .or_else(|| first_id(&workloads))
        .unwrap_or_else(|| "1".into());
    let check = first_id(&get_json(&client, &format!("{base}/api/v1/checks")).await?)
        .unwrap_or_else(|| "image.latest_tag".into());
    let pages: Vec<(String, String)> = PAGES
        .iter()
        .map(|(label, path)| {
            (
                (*label).to_string(),
                path.replace("{workload}", &workload)
                    .replace("{check}", &check),
            )
        })
        .collect();

    let started = Instant::now();
    let deadline = started + options.duration;
    let workers = (0..options.concurrency.max(1)).map(|worker| {
        let client = client.clone();
        let pages = pages.clone();
        let base = base.clone();
        async move {
            let mut times: Vec<Vec<Duration>> = vec![Vec::new(); pages.len()];
            let mut errors = vec![0usize; pages.len()];
            // Each worker starts at another page so all pages are under load together.
            let mut index = worker % pages.len();
            while Instant::now() < deadline {
                let (_, path) = &pages[index];
                let sent = Instant::now();
                let ok = match client.get(format!("{base}{path}")).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    times[index].push(sent.elapsed());
                } else {
                    errors[index] += 1;
                }
                index = (index + 1) % pages.len();
            }
            (times, errors)
        }
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = started.elapsed();

    let mut merged: BTreeMap<usize, (Vec<Duration>, usize)> = BTreeMap::new();
    for (times, errors) in results {
        for (index, (mut page_times, page_errors)) in times.into_iter().zip(errors).enumerate() {
            let entry = merged.entry(index).or_default();
            entry.0.append(&mut page_times);
            entry.1 += page_errors;
        }
    }
    let pages = merged
        .into_iter()
        .map(|(index, (mut times, errors))| {
            times.sort_unstable();
            let (label, path) = pages[index].clone();
            PageStats {
                label,
                path,
                requests: times.len(),
                errors,
                p50: percentile(&times, 0.50),
                p95: percentile(&times, 0.95),
                p99: percentile(&times, 0.99),
                max: times.last().copied().unwrap_or_default(),
            }
        })
        .collect();
    Ok(LoadReport {
        pages,
        elapsed,
        server_memory: options.server_pid.and_then(memory_of),
    })
}

/// The report as a Markdown table (the form BENCHMARKS.md records).
pub fn render(report: &LoadReport, concurrency: usize) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "{concurrency} concurrent clients for {:.0} s\n\n| page | request | requests | errors | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|\n",
        report.elapsed.as_secs_f64()
    );
    for page in &report.pages {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
            page.label,
            page.path,
            page.requests,
            page.errors,
            ms(page.p50),
            ms(page.p95),
            ms(page.p99),
            ms(page.max)
        ));
    }
    if let Some((peak, now)) = report.server_memory {
        out.push_str(&format!(
            "\nserver memory: peak RSS (VmHWM) {} MiB, now {} MiB\n",
            peak / 1024,
            now / 1024
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&times, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&times, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_first_id_is_found_in_a_list_under_any_key() {
        let answer = serde_json::json!({"next": null, "checks": [{"id": "run.privileged"}]});
        assert_eq!(first_id(&answer).as_deref(), Some("run.privileged"));
    }

    #[test]
    fn the_memory_of_this_process_is_read() {
        let (peak, now) = memory_of(std::process::id()).unwrap();
        assert!(peak >= now && now > 0);
    }
}
