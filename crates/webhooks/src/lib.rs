//! Inbound webhook verification (Stripe, Standard Webhooks, Twilio, generic HMAC) and signed
//! outbound delivery. Arrives with the webhooks work; this crate owns that area from the start.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// Inbound webhooks refused for a missing, malformed, stale or wrong signature, labelled by
/// `source` (a Prometheus counter; alert rules in `deploy/prometheus/` read it).
pub const SIGNATURE_FAILURES_METRIC: &str = "rampart_webhook_signature_failures_total";
