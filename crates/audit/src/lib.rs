//! The append-only, hash-chained audit trail, written in the same transaction as the change it
//! records. Arrives with the audit work; this crate owns that area from the start.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
