//! Tenant context: the only crate that sets `app.tenant_id` on a database transaction.
//!
//! Workspaces, memberships and the per-request transaction arrive with the tenancy work.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub use storage::Db;
