//! Roles, numeric levels and `resource.action` permissions. A pure library: no I/O.
//!
//! The role catalogue and permission checks arrive with the tenancy and RBAC work; this crate
//! owns that area from the start so nothing else grows its own notion of a role.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
