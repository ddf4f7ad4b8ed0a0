//! Workspaces and memberships.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{stmt, Db, TenancyError, TenantId, TenantTx, UserId};

/// A workspace as its members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: TenantId,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// Creates a workspace with `owner` as its first member (role `Owner`), in one transaction.
pub async fn create(db: &Db, owner: UserId, name: &str, now: DateTime<Utc>) -> Result<Workspace, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(TenancyError::Invalid("name must be 1 to 200 characters"));
    }
    let id = TenantId(Uuid::new_v4());
    let tx = TenantTx::begin(db, id, owner).await?;
    tx.conn()
        .execute(stmt(
            &tx,
            "INSERT INTO workspaces (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)",
            vec![id.0.into(), name.into(), owner.0.into(), now.into()],
        ))
        .await?;
    tx.conn()
        .execute(stmt(
            &tx,
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'Owner', $3)",
            vec![id.0.into(), owner.0.into(), now.into()],
        ))
        .await?;
    tx.commit().await?;
    Ok(Workspace { id, name: name.to_owned(), role: "Owner".into(), created_at: now })
}

/// The principal's role in the transaction's workspace, or `NotFound` for non-members.
pub async fn role_of(tx: &TenantTx) -> Result<String, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT m.role FROM memberships m JOIN workspaces w ON w.id = m.tenant_id
              WHERE m.tenant_id = $1 AND m.user_id = $2 AND w.deleted_at IS NULL",
            vec![tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    Ok(row.try_get("", "role")?)
}
