//! Scanner and redactor for personal data and secrets, the activity ingestion pipeline and the
//! untrusted-content envelope. A pure library: no I/O.
//!
//! The scanner arrives with the PII work; this crate owns that area from the start.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
