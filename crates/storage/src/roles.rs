//! Checks that the runtime PostgreSQL role cannot bypass row-level security.
//!
//! PostgreSQL docs, "Row Security Policies": superusers and `BYPASSRLS` roles always bypass RLS,
//! and table owners bypass it unless the table is `FORCE`d. The runtime role must be none of these.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::{Backend, Db, StorageError};

/// The `NOLOGIN` group role that migrations grant table privileges to. The login role the server
/// uses is made a member of it (see `deploy/postgres/bootstrap-roles.sql`).
pub const RUNTIME_GROUP_ROLE: &str = "rampart_runtime";

/// What the runtime connection is allowed to do, as read from the live catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReport {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub owned_relations: i64,
}

impl RoleReport {
    pub fn is_safe(&self) -> bool {
        !self.superuser && !self.bypass_rls && self.owned_relations == 0
    }
}

const ROLE_QUERY: &str = "SELECT r.rolname::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relowner = r.oid
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%') AS owned_relations
  FROM pg_roles r WHERE r.rolname = current_user";

/// Reads the runtime role's attributes and refuses a role that could bypass RLS.
/// SQLite has no roles: it returns `Ok(None)`.
pub async fn check_runtime_role(db: &Db) -> Result<Option<RoleReport>, StorageError> {
    if db.backend() != Backend::Postgres {
        return Ok(None);
    }
    let row =
        db.conn().query_one(Statement::from_string(DatabaseBackend::Postgres, ROLE_QUERY)).await?.ok_or_else(|| {
            StorageError::UnsafeRuntimeRole { role: "?".into(), reason: "current_user not found in pg_roles".into() }
        })?;
    let report = RoleReport {
        role: row.try_get("", "role")?,
        superuser: row.try_get("", "superuser")?,
        bypass_rls: row.try_get("", "bypass_rls")?,
        owned_relations: row.try_get("", "owned_relations")?,
    };
    let mut reasons = Vec::new();
    if report.superuser {
        reasons.push("it is a superuser".to_owned());
    }
    if report.bypass_rls {
        reasons.push("it has BYPASSRLS".to_owned());
    }
    if report.owned_relations > 0 {
        reasons.push(format!("it owns {} relation(s)", report.owned_relations));
    }
    if !reasons.is_empty() {
        return Err(StorageError::UnsafeRuntimeRole {
            role: report.role,
            reason: format!(
                "{}; connect the server as a NOSUPERUSER NOBYPASSRLS role that owns nothing and is a member of `{RUNTIME_GROUP_ROLE}` (deploy/postgres/bootstrap-roles.sql)",
                reasons.join(", ")
            ),
        });
    }
    Ok(Some(report))
}
