//! The example domain's workspace data: projects. Every statement filters by the transaction's
//! tenant; PostgreSQL's policies filter again.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult};
use uuid::Uuid;

use crate::{stmt, TenancyError, TenantId, TenantTx};

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub description: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(row: &QueryResult) -> Result<Project, TenancyError> {
    Ok(Project {
        id: row.try_get("", "id")?,
        tenant: TenantId(row.try_get("", "tenant_id")?),
        name: row.try_get("", "name")?,
        description: row.try_get("", "description")?,
        created_by: row.try_get("", "created_by")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

const COLUMNS: &str = "id, tenant_id, name, description, created_by, created_at, updated_at";

fn check_name(name: &str) -> Result<&str, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(TenancyError::Invalid("name must be 1 to 200 characters"));
    }
    Ok(name)
}

pub async fn create(tx: &TenantTx, name: &str, description: &str, now: DateTime<Utc>) -> Result<Project, TenancyError> {
    let name = check_name(name)?;
    let id = Uuid::new_v4();
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO projects (id, tenant_id, name, description, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            vec![id.into(), tx.tenant().0.into(), name.into(), description.into(), tx.user().0.into(), now.into()],
        ))
        .await?;
    get(tx, id).await
}

/// The newest `limit` projects of the tenant.
pub async fn list(tx: &TenantTx, limit: u64) -> Result<Vec<Project>, TenancyError> {
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2"),
            vec![tx.tenant().0.into(), limit.min(200).into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// One project of the tenant; another tenant's id is `NotFound`.
pub async fn get(tx: &TenantTx, id: Uuid) -> Result<Project, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM projects WHERE id = $1 AND tenant_id = $2"),
            vec![id.into(), tx.tenant().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

pub async fn rename(tx: &TenantTx, id: Uuid, name: &str, now: DateTime<Utc>) -> Result<Project, TenancyError> {
    let name = check_name(name)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "UPDATE projects SET name = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
            vec![name.into(), now.into(), id.into(), tx.tenant().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    get(tx, id).await
}

pub async fn delete(tx: &TenantTx, id: Uuid) -> Result<(), TenancyError> {
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM projects WHERE id = $1 AND tenant_id = $2",
            vec![id.into(), tx.tenant().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    Ok(())
}
