//! Roles, numeric levels and `resource.action` permissions. A pure library: no I/O.
//!
//! Permissions ([`Permission`]) are `resource.action` strings, with `resource.*` standing for
//! every action on one resource; [`PERMISSION_CATALOGUE`] lists the ones Rampart knows. Platform
//! levels ([`PlatformLevel`]) rank accounts across the installation. Workspace roles ([`Role`])
//! are data: the built-in ones come from [`builtin_roles`], and custom ones are the same type
//! with `builtin: false`. The checks ([`authorize`], [`can_grant_role`] and the rest) deny by
//! default and return an [`RbacError`] naming what was required, for the audit trail.
//!
//! This crate owns the notion of a role so nothing else grows its own. It does no I/O, no async
//! and no storage: callers load roles and counts, call a check, and record the outcome.
//! It must never grant by default: a check that cannot show the permission or level denies.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod check;
mod error;
mod level;
mod permission;
mod role;

pub use check::{
    authorize, can_change_member_role, can_create_custom_role, can_grant_role, can_invite_with_role, can_remove_member,
    ensure_not_last_owner,
};
pub use error::RbacError;
pub use level::{require_platform_level, PlatformLevel, PLATFORM_LEVELS};
pub use permission::{Permission, MAX_PERMISSION_LEN, PERMISSION_CATALOGUE, WILDCARD_ACTION};
pub use role::{
    builtin_role, builtin_roles, Role, ADMIN_ROLE, MANAGER_ROLE, MEMBER_ROLE, OWNER_ROLE, SUPPORT_AGENT_ROLE,
};
