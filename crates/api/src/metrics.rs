//! Prometheus metrics: request counts and latency by operation and status, authentication
//! failures, rate-limit refusals, webhook signature failures, and the outbox's lag and dead
//! actions. Served at `GET /metrics` only to a scraper presenting `http.metrics_token` (a bearer
//! token compared in constant time); without a configured token the route does not exist (404).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by OpenAPI operation (`other` outside the API), method and status.
pub const HTTP_REQUESTS: &str = "rampart_http_requests_total";
/// Request latency in seconds, by operation.
pub const HTTP_DURATION: &str = "rampart_http_request_duration_seconds";
/// Requests refused with 429, by limit.
pub const RATE_LIMITED: &str = "rampart_rate_limited_total";
/// Outbox actions due and not yet done.
pub const OUTBOX_DUE: &str = "rampart_outbox_due_actions";
/// Age in seconds of the oldest due outbox action (0 when none is waiting).
pub const OUTBOX_LAG: &str = "rampart_outbox_lag_seconds";
/// Outbox actions that exhausted their attempts.
pub const OUTBOX_DEAD: &str = "rampart_outbox_dead_actions";

/// Latency buckets (seconds): 1 ms to 10 s.
const DURATION_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder, installed on first use. `None` if another recorder was installed
/// first (metrics are then that recorder's to export).
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &DURATION_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "Requests served, by operation, method and status.");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "Request latency, by operation.");
    metrics::describe_counter!(RATE_LIMITED, "Requests refused with 429.");
    metrics::describe_counter!(auth::metrics::AUTH_FAILURES, "Failed sign-ins, by reason.");
    metrics::describe_counter!(
        webhooks::SIGNATURE_FAILURES_METRIC,
        "Inbound webhooks refused for a missing, malformed, stale or wrong signature, by source."
    );
    metrics::describe_gauge!(OUTBOX_DUE, "Outbox actions due and not yet done.");
    metrics::describe_gauge!(OUTBOX_LAG, metrics::Unit::Seconds, "Age of the oldest due outbox action.");
    metrics::describe_gauge!(OUTBOX_DEAD, "Outbox actions that exhausted their attempts.");
    // Present from the start, so alert expressions have a series to read.
    metrics::counter!(RATE_LIMITED).absolute(0);
}

/// Records one served request.
pub(crate) fn observe_request(operation: &'static str, method: &str, status: u16, seconds: f64) {
    if handle().is_none() {
        return;
    }
    metrics::counter!(HTTP_REQUESTS, "operation" => operation, "method" => method.to_owned(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "operation" => operation).record(seconds);
}

pub(crate) fn rate_limited() {
    metrics::counter!(RATE_LIMITED).increment(1);
}
