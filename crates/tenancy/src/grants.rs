//! Cross-workspace grants: a workspace lets the members of another workspace hold one permission
//! on its data. Explicit (one row per permission), scoped (only data permissions, only ones the
//! granter holds), revocable (revocation is recorded, the row stays) and visible to both sides.
//! Nothing crosses workspaces without one.

use chrono::{DateTime, Utc};
use ids::{GrantId, UserId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};

use crate::{stmt, TenancyError, TenantTx, WorkspaceId};

/// The permissions a grant may carry: data permissions of the example domain, never
/// administration of the granting workspace.
pub const GRANTABLE: &[Permission] =
    &[Permission::PROJECTS_READ, Permission::PROJECTS_CREATE, Permission::PROJECTS_UPDATE, Permission::PROJECTS_DELETE];

/// A grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub granting_workspace: WorkspaceId,
    pub grantee_workspace: WorkspaceId,
    pub permission: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub revoked_by: Option<UserId>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, tenant_id, grantee_tenant_id, permission, created_by, created_at, revoked_by, revoked_at";

fn from_row(row: &QueryResult) -> Result<Grant, TenancyError> {
    Ok(Grant {
        id: row.try_get("", "id")?,
        granting_workspace: WorkspaceId(row.try_get("", "tenant_id")?),
        grantee_workspace: WorkspaceId(row.try_get("", "grantee_tenant_id")?),
        permission: row.try_get("", "permission")?,
        created_by: row.try_get("", "created_by")?,
        created_at: row.try_get("", "created_at")?,
        revoked_by: row.try_get("", "revoked_by")?,
        revoked_at: row.try_get("", "revoked_at")?,
    })
}

fn require_manager(tx: &TenantTx) -> Result<(), TenancyError> {
    tx.require_member(&Permission::GRANTS_MANAGE).map(|_| ())
}

/// Lets the members of `grantee` hold `permission` here (`grants.manage`, and the granter must
/// hold `permission` themselves). Idempotent: while that grant is active, asking for it again —
/// later or at the same moment — answers the one grant, so a workspace never holds two copies of
/// one grant and revoking it ends the access.
pub async fn create(
    tx: &TenantTx,
    grantee: WorkspaceId,
    permission: &str,
    now: DateTime<Utc>,
) -> Result<Grant, TenancyError> {
    require_manager(tx)?;
    let permission = Permission::parse(permission)?;
    if !GRANTABLE.contains(&permission) {
        return Err(TenancyError::Invalid("a grant carries one of projects.read, .create, .update or .delete"));
    }
    tx.require(&permission)?;
    if grantee == tx.tenant() {
        return Err(TenancyError::Invalid("a workspace cannot grant to itself"));
    }
    // Identical requests queue here until the first commits, then find its grant.
    tx.take_turn(&format!("grants:{}:{permission}", grantee.0)).await?;
    let active = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!(
                "SELECT {COLUMNS} FROM workspace_grants
                  WHERE tenant_id = $1 AND grantee_tenant_id = $2 AND permission = $3 AND revoked_at IS NULL
                  ORDER BY created_at, id LIMIT 1"
            ),
            vec![tx.tenant().0.into(), grantee.0.into(), permission.to_string().into()],
        ))
        .await?;
    if let Some(row) = active {
        return from_row(&row);
    }
    let grant = Grant {
        id: GrantId::new_random(),
        granting_workspace: tx.tenant(),
        grantee_workspace: grantee,
        permission: permission.to_string(),
        created_by: tx.user(),
        created_at: now,
        revoked_by: None,
        revoked_at: None,
    };
    let inserted = tx
        .conn()
        .execute(stmt(
            tx,
            "INSERT INTO workspace_grants (id, tenant_id, grantee_tenant_id, permission, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                grant.id.into(),
                tx.tenant().0.into(),
                grantee.0.into(),
                grant.permission.clone().into(),
                grant.created_by.into(),
                now.into(),
            ],
        ))
        .await;
    match inserted {
        // The grantee must exist; its existence is checked by the foreign key, not by a read
        // that the policies would refuse.
        Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))) => {
            Err(TenancyError::Invalid("no such grantee workspace"))
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            let payload =
                serde_json::json!({ "grant": grant.id, "grantee": grantee.0, "permission": grant.permission });
            tx.record(audit::Category::Membership, "grant.created", payload, now).await?;
            Ok(grant)
        }
    }
}

/// Grants made by this workspace and grants made to it, newest first (members only).
pub async fn list(tx: &TenantTx) -> Result<Vec<Grant>, TenancyError> {
    let access = tx.require_access()?;
    if !access.is_member() {
        return Err(TenancyError::NotFound);
    }
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!(
                "SELECT {COLUMNS} FROM workspace_grants WHERE tenant_id = $1 OR grantee_tenant_id = $1 ORDER BY created_at DESC, id"
            ),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a grant this workspace made (`grants.manage`); takes effect on the grantee's next
/// request.
pub async fn revoke(tx: &TenantTx, id: GrantId, now: DateTime<Utc>) -> Result<(), TenancyError> {
    require_manager(tx)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "UPDATE workspace_grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
            vec![now.into(), tx.user().0.into(), id.into(), tx.tenant().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Membership, "grant.revoked", serde_json::json!({ "grant": id }), now).await
}
