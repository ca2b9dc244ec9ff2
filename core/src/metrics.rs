//! Prometheus metrics: request counts and latency by method, route and status, served at
//! `/metrics` in the OpenMetrics text format.
//!
//! Each app has its own registry (no globals), so tests and several apps in one process
//! never mix their figures. Routes are labelled by their pattern (`/v1/keys/{id}`), never
//! by the raw path, and methods outside HTTP's registered few are labelled `other`, so
//! label cardinality stays bounded whatever clients send.
//!
//! `/metrics` is open by default, as Prometheus expects on a private network. Where the
//! core's port is reachable by others, set `VERGE_METRICS_TOKEN` (scrapers then send it as
//! a bearer token) or `VERGE_METRICS_LISTEN` (metrics move to their own address).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// A job attempt's end: its kind (bounded by the kinds the core registers) and outcome
/// (succeeded, retried, deferred, dead, lease_lost).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    kind: String,
    state: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// A rate-limit decision of the global tier: the policy (ids are bounded by the policies
/// that exist) and what happened (allowed, denied, shadow_denied, store_unavailable).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    outcome: &'static str,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    decisions: Family<DecisionLabels, Counter>,
    job_attempts: Family<JobLabels, Counter>,
    job_depth: Family<DepthLabels, Gauge>,
    job_oldest_due: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The last hour, per minute, for the console.
    pub(crate) traffic: crate::traffic::Traffic,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("verge");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer HTTP requests", latency.clone());
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("ratelimit_decisions", "Rate-limit decisions of the global tier", decisions.clone());
        let job_attempts = Family::<JobLabels, Counter>::default();
        registry.register("job_attempts", "Job attempts by kind and how they ended", job_attempts.clone());
        let job_depth = Family::<DepthLabels, Gauge>::default();
        registry.register("jobs", "Jobs queued, running and dead, by kind (refreshed every second)", job_depth.clone());
        let job_oldest_due = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "job_oldest_due_age_seconds",
            "How long the longest-waiting due job has waited",
            job_oldest_due.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            decisions,
            job_attempts,
            job_depth,
            job_oldest_due,
            traffic: Default::default(),
        })
    }

    /// Counts a request to `route` answered with `status`, and its latency since `started`.
    pub(crate) fn observe_request(&self, method: &Method, route: String, status: StatusCode, started: Instant) {
        let labels = RequestLabels { method: method_label(method).to_owned(), route, status: status.as_u16() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        self.traffic.record(status.is_server_error());
    }

    /// Counts a global-tier decision of `policy`.
    pub(crate) fn count_decision(&self, policy: &str, outcome: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { policy: policy.to_owned(), outcome }).inc();
    }

    /// Counts a job attempt of `kind` that ended with `outcome`.
    pub(crate) fn count_job(&self, kind: &str, outcome: &'static str) {
        self.job_attempts.get_or_create(&JobLabels { kind: kind.to_owned(), outcome }).inc();
    }

    /// Sets the queue gauges from (kind, state, jobs) and the oldest due job's wait;
    /// kinds and states no longer present disappear.
    pub(crate) fn set_job_depths<'a>(&self, depths: impl Iterator<Item = (&'a str, &'a str, i64)>, oldest_due: f64) {
        self.job_depth.clear();
        for (kind, state, jobs) in depths {
            self.job_depth.get_or_create(&DepthLabels { kind: kind.to_owned(), state: state.to_owned() }).set(jobs);
        }
        self.job_oldest_due.set(oldest_due);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

pub(crate) async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics.observe_request(&method, route, response.status(), started);
    response
}

/// The method as a label: one of HTTP's registered methods, or `other`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// Who may read `/metrics`: anyone, or bearers of the configured token.
#[derive(Debug, Clone)]
pub(crate) struct Exposition {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<secrecy::SecretString>,
}

pub(crate) async fn serve(State(exposition): State<Exposition>, headers: HeaderMap) -> Response {
    if let Some(token) = &exposition.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        // Digests compared in constant time, so neither the token's bytes nor its length
        // leak through timing.
        let expected = Sha256::digest(secrecy::ExposeSecret::expose_secret(token).as_bytes());
        if !bool::from(Sha256::digest(given.as_bytes()).as_slice().ct_eq(expected.as_slice())) {
            return ApiError::unauthorized("`/metrics` needs the metrics token as a bearer token").into_response();
        }
    }
    let metrics = exposition.metrics;
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
