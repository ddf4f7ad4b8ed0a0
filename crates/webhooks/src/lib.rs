//! Inbound webhook verification (Stripe, Standard Webhooks, Twilio, generic HMAC) and signed
//! outbound delivery. Arrives with the webhooks work; this crate owns that area from the start.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
