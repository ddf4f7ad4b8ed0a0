//! Inbound webhook verification (Stripe, Standard Webhooks, Twilio, generic HMAC) and signed
//! outbound delivery; [`inbound`] holds a workspace's sources and the persistent inbox,
//! [`outbound`] its endpoints, deliveries and the outbox handler that sends them.
//! It must never log or return a secret or an expected signature, never accept a request when no
//! secret is configured, and never send outside the egress client.
//!
//! The scheme modules are pure: every function takes the raw body bytes, the header values and,
//! where the scheme carries a timestamp, `now` as an argument. Nothing here reads a clock, the
//! environment or the network, so the caller decides where time and secrets come from.
//!
//! Every verifier fails closed: an empty list of secrets is [`VerifyError::SecretMissing`]
//! before the request is looked at, and the caller answers 500 and processes nothing. Signatures
//! are decoded first and compared as bytes in constant time (`subtle`); a value that does not
//! decode is [`VerifyError::SignatureMalformed`]. A successful check returns [`Verified`], which
//! names the configured secret that matched (so rotation can be watched before the old secret is
//! removed).

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
pub mod generic;
pub mod inbound;
mod mac;
pub mod outbound;
pub mod standard;
pub mod stripe;
pub mod twilio;

pub use error::{Verified, VerifyError};

/// Inbound webhooks refused for a missing, malformed, stale or wrong signature, labelled by
/// `source` (a Prometheus counter; alert rules in `deploy/prometheus/` read it).
pub const SIGNATURE_FAILURES_METRIC: &str = "rampart_webhook_signature_failures_total";
