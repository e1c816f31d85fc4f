//! Prometheus metrics: request counts and latency by matched route, and database pool figures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{AppState, RoutePolicy};
use crate::auth::Role;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

type RouteKey = (String, String);

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<RouteKey, Histogram>,
}

/// Request figures, updated by [`record`] and read by `GET /metrics`.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *inner
            .requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        inner
            .latency
            .entry((route.to_string(), method.to_string()))
            .or_default()
            .observe(seconds);
    }

    fn render(&self, out: &mut String) {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        out.push_str("# HELP harbormaster_http_requests_total HTTP requests by matched route, method and status.\n");
        out.push_str("# TYPE harbormaster_http_requests_total counter\n");
        for ((route, method, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "harbormaster_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP harbormaster_http_request_duration_seconds HTTP request latency by matched route and method.\n");
        out.push_str("# TYPE harbormaster_http_request_duration_seconds histogram\n");
        for ((route, method), histogram) in &inner.latency {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter()) {
                let _ = writeln!(
                    out,
                    "harbormaster_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "harbormaster_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "harbormaster_http_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "harbormaster_http_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus scrapes with a viewer API token (`Authorization: Bearer hm_…`).
pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::role(Method::GET, "/metrics", Role::Viewer)];

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(get_metrics))
}

/// Counts the request and its latency under its matched route (never the raw URL, whose
/// variety would explode the series).
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    let pool = &state.pool;
    let idle = pool.num_idle() as u32;
    let size = pool.size();
    out.push_str("# HELP harbormaster_db_pool_connections Database pool connections by state.\n");
    out.push_str("# TYPE harbormaster_db_pool_connections gauge\n");
    let _ = writeln!(
        out,
        "harbormaster_db_pool_connections{{state=\"idle\"}} {idle}"
    );
    let _ = writeln!(
        out,
        "harbormaster_db_pool_connections{{state=\"in_use\"}} {}",
        size.saturating_sub(idle)
    );
    out.push_str("# HELP harbormaster_db_pool_max_connections The pool's configured maximum.\n");
    out.push_str("# TYPE harbormaster_db_pool_max_connections gauge\n");
    let _ = writeln!(
        out,
        "harbormaster_db_pool_max_connections {}",
        pool.options().get_max_connections()
    );
    out.push_str("# HELP harbormaster_uptime_seconds Seconds since the server started.\n");
    out.push_str("# TYPE harbormaster_uptime_seconds gauge\n");
    let _ = writeln!(
        out,
        "harbormaster_uptime_seconds {}",
        state.started_at.elapsed().as_secs()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
