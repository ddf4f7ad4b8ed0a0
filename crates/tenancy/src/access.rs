//! How a principal may act in a tenant: through their membership's role, or through grants the
//! tenant made to a workspace they belong to.

use std::collections::BTreeSet;

use rbac::{Permission, Role};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, QueryResult, Statement};

use crate::{TenancyError, UserId, WorkspaceId};

/// Where the principal's access comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Membership,
    /// Cross-workspace grants only; the role is named `Grant`, level 0.
    Grant,
}

/// The principal's access to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    pub via: Via,
    /// The tenant requires its members' sign-ins to include a second factor.
    pub require_mfa: bool,
}

impl Access {
    pub fn is_member(&self) -> bool {
        self.via == Via::Membership
    }
}

/// The same question `app_enter` answers on PostgreSQL, for SQLite (no settings to set there).
/// `app_enter` reads grants only for non-members; here both branches run and a membership wins.
const ACCESS_SQLITE: &str = "
    SELECT 'membership' AS via, r.name AS role, r.level AS level, r.permissions AS permissions,
           w.require_mfa AS require_mfa
      FROM memberships m
      JOIN workspaces w ON w.id = m.tenant_id AND w.deleted_at IS NULL
      JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
     WHERE m.tenant_id = $1 AND m.user_id = $2
    UNION ALL
    SELECT 'grant', 'Grant', 0, group_concat(DISTINCT g.permission), max(w.require_mfa)
      FROM workspace_grants g
      JOIN workspaces w ON w.id = g.tenant_id AND w.deleted_at IS NULL
      JOIN memberships gm ON gm.tenant_id = g.grantee_tenant_id AND gm.user_id = $2
      JOIN workspaces gw ON gw.id = g.grantee_tenant_id AND gw.deleted_at IS NULL
     WHERE g.tenant_id = $1 AND g.revoked_at IS NULL
    HAVING count(*) > 0";

/// Sets the tenant context (PostgreSQL) and reads the principal's access, in one statement.
pub(crate) async fn enter(
    txn: &DatabaseTransaction,
    tenant: WorkspaceId,
    user: UserId,
    keep_context: bool,
) -> Result<Option<Access>, TenancyError> {
    let backend = txn.get_database_backend();
    let stmt = match backend {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "SELECT via, role, level, permissions, require_mfa FROM app_enter($1, $2, $3)",
            [tenant.0.into(), user.0.into(), keep_context.into()],
        ),
        _ => Statement::from_sql_and_values(backend, ACCESS_SQLITE, [tenant.0.into(), user.0.into()]),
    };
    let rows = txn.query_all(stmt).await?;
    let mut found: Vec<Access> = rows.iter().map(access_from_row).collect::<Result<_, _>>()?;
    // A membership outranks grants: members act by their role.
    found.sort_by_key(|a| a.via != Via::Membership);
    Ok(found.into_iter().next())
}

fn access_from_row(row: &QueryResult) -> Result<Access, TenancyError> {
    let via = if row.try_get::<String>("", "via")? == "membership" { Via::Membership } else { Via::Grant };
    let name: String = row.try_get("", "role")?;
    let builtin = via == Via::Membership && rbac::builtin_role(&name).is_ok();
    let require_mfa = row.try_get::<Option<bool>>("", "require_mfa")?.unwrap_or(false);
    Ok(Access { role: role_from_row(row, name, builtin)?, via, require_mfa })
}

/// A role named `name` from a row with the `roles` table's `level` (`smallint` on PostgreSQL,
/// `INTEGER` on SQLite) and `permissions` columns.
pub(crate) fn role_from_row(row: &QueryResult, name: String, builtin: bool) -> Result<Role, TenancyError> {
    let level: i32 = match row.try_get::<i16>("", "level") {
        Ok(level) => level.into(),
        Err(_) => row.try_get::<i32>("", "level")?,
    };
    Ok(Role {
        name,
        level: u8::try_from(level).map_err(|_| TenancyError::Invalid("role level out of range"))?,
        permissions: parse_permissions(&row.try_get::<String>("", "permissions")?),
        builtin,
    })
}

/// Parses a stored permission list (space- or comma-separated); malformed entries grant nothing.
fn parse_permissions(stored: &str) -> BTreeSet<Permission> {
    stored.split([' ', ',']).filter(|p| !p.is_empty()).filter_map(|p| Permission::parse(p).ok()).collect()
}

/// Serialises permissions for storage, sorted, space-separated.
pub(crate) fn store_permissions(permissions: &BTreeSet<Permission>) -> String {
    permissions.iter().map(Permission::to_string).collect::<Vec<_>>().join(" ")
}
