//! Workspace roles as data: the built-in roles (shared, read-only) and each workspace's custom
//! roles. Nobody creates a role above their own level or with a permission they lack.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rbac::{Permission, Role};
use sea_orm::{ConnectionTrait, QueryResult};

use crate::{access::role_from_row, access::store_permissions, check_name, is_unique_violation, stmt};
use crate::{TenancyError, TenantTx};

fn from_row(row: &QueryResult) -> Result<Role, TenancyError> {
    // Built-in roles are the rows without a tenant.
    let builtin = row.try_get::<Option<uuid::Uuid>>("", "tenant_id")?.is_none();
    role_from_row(row, row.try_get("", "name")?, builtin)
}

/// The built-in roles and the workspace's custom roles, by level then name.
pub async fn list(tx: &TenantTx) -> Result<Vec<Role>, TenancyError> {
    tx.require_access()?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            "SELECT tenant_id, name, level, permissions FROM roles WHERE tenant_id IS NULL OR tenant_id = $1
              ORDER BY level DESC, name",
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// The role called `name` (case-insensitive) in this workspace, or `Invalid` if there is none.
pub async fn find(tx: &TenantTx, name: &str) -> Result<Role, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT tenant_id, name, level, permissions FROM roles
              WHERE lower(name) = lower($1) AND (tenant_id IS NULL OR tenant_id = $2)",
            vec![name.trim().into(), tx.tenant().0.into()],
        ))
        .await?
        .ok_or(TenancyError::Invalid("no such role in this workspace"))?;
    from_row(&row)
}

/// Creates a custom role (`roles.manage`, at most the creator's level, only permissions the
/// creator holds, only known permissions).
pub async fn create(
    tx: &TenantTx,
    name: &str,
    level: u8,
    permissions: &[String],
    now: DateTime<Utc>,
) -> Result<Role, TenancyError> {
    let actor = tx.require_member(&Permission::ROLES_MANAGE)?.role.clone();
    let name = check_name(name)?;
    if name.chars().count() > 64 {
        return Err(TenancyError::Invalid("a role name is at most 64 characters"));
    }
    if level > 100 {
        return Err(TenancyError::Invalid("a role level is 0 to 100"));
    }
    let permissions: BTreeSet<Permission> =
        permissions.iter().map(|p| Permission::parse(p)).collect::<Result<_, _>>()?;
    let role = Role::custom(name, level, permissions);
    rbac::can_create_custom_role(&actor, &role)?;
    if rbac::builtin_roles().iter().any(|b| b.name.eq_ignore_ascii_case(name)) || name.eq_ignore_ascii_case("Grant") {
        return Err(TenancyError::Conflict("that name belongs to a built-in role"));
    }
    let inserted = tx
        .conn()
        .execute(stmt(
            tx,
            "INSERT INTO roles (tenant_id, name, level, permissions, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![
                tx.tenant().0.into(),
                name.into(),
                i32::from(level).into(),
                store_permissions(&role.permissions).into(),
                now.into(),
            ],
        ))
        .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(TenancyError::Conflict("a role of that name exists")),
        Err(e) => Err(e.into()),
        Ok(_) => {
            let permissions = store_permissions(&role.permissions);
            let payload = serde_json::json!({ "role": role.name, "level": level, "permissions": permissions });
            tx.record(audit::Category::Membership, "role.created", payload, now).await?;
            Ok(role)
        }
    }
}
