//! Tenant context: the only crate that sets `app.tenant_id` on a database transaction.
//!
//! Workspaces, memberships and the per-request transaction arrive with the tenancy work.

pub use storage::Db;
