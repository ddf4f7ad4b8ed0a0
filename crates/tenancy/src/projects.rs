//! The example domain's workspace data: projects, with role-based CRUD. Every operation checks
//! its permission and every statement filters by the transaction's tenant; PostgreSQL's policies
//! filter again and check the write permissions again.

use chrono::{DateTime, Utc};
use ids::{ProjectId, UserId};
use sea_orm::{ConnectionTrait, FromQueryResult, QueryResult};

use rbac::Permission;

use crate::{check_name, stmt, TenancyError, TenantTx, WorkspaceId};

/// A project.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Project {
    pub id: ProjectId,
    #[sea_orm(from_alias = "tenant_id")]
    pub tenant: WorkspaceId,
    pub name: String,
    pub description: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(row: &QueryResult) -> Result<Project, TenancyError> {
    Ok(Project::from_query_result(row, "")?)
}

const COLUMNS: &str = "id, tenant_id, name, description, created_by, created_at, updated_at";

pub async fn create(tx: &TenantTx, name: &str, description: &str, now: DateTime<Utc>) -> Result<Project, TenancyError> {
    tx.require(&Permission::PROJECTS_CREATE)?;
    let name = check_name(name)?;
    let description = check_description(description)?;
    // RETURNING: the writer gets the row in the same round trip, without needing `projects.read`.
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!(
                "INSERT INTO projects (id, tenant_id, name, description, created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
            ),
            vec![
                ProjectId::new_random().into(),
                tx.tenant().0.into(),
                name.into(),
                description.into(),
                tx.user().0.into(),
                now.into(),
            ],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

fn check_description(description: &str) -> Result<&str, TenancyError> {
    if description.chars().count() > 2000 {
        return Err(TenancyError::Invalid("description is at most 2000 characters"));
    }
    Ok(description)
}

/// The newest `limit` projects of the tenant (`projects.read`), optionally only those whose name
/// contains `name_contains` (case-insensitive).
pub async fn list(tx: &TenantTx, limit: u64, name_contains: Option<&str>) -> Result<Vec<Project>, TenancyError> {
    tx.require(&Permission::PROJECTS_READ)?;
    let limit = limit.clamp(1, 200);
    let rows = match name_contains.map(str::trim).filter(|q| !q.is_empty()) {
        None => {
            tx.conn()
                .query_all(stmt(
                    tx,
                    &format!("SELECT {COLUMNS} FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2"),
                    vec![tx.tenant().0.into(), limit.into()],
                ))
                .await?
        }
        Some(q) => {
            let pattern =
                format!("%{}%", q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            tx.conn()
                .query_all(stmt(
                    tx,
                    &format!(
                        "SELECT {COLUMNS} FROM projects WHERE tenant_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'
                          ORDER BY created_at DESC LIMIT $3"
                    ),
                    vec![tx.tenant().0.into(), pattern.into(), limit.into()],
                ))
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// One project of the tenant (`projects.read`); another tenant's id is `NotFound`.
pub async fn get(tx: &TenantTx, id: ProjectId) -> Result<Project, TenancyError> {
    tx.require(&Permission::PROJECTS_READ)?;
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

/// Changes a project's name and/or description (`projects.update`).
pub async fn update(
    tx: &TenantTx,
    id: ProjectId,
    name: Option<&str>,
    description: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Project, TenancyError> {
    tx.require(&Permission::PROJECTS_UPDATE)?;
    let name = name.map(check_name).transpose()?.map(str::to_owned);
    let description = description.map(check_description).transpose()?.map(str::to_owned);
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!(
                "UPDATE projects SET name = COALESCE($1, name), description = COALESCE($2, description), updated_at = $3
                  WHERE id = $4 AND tenant_id = $5 RETURNING {COLUMNS}"
            ),
            vec![name.into(), description.into(), now.into(), id.into(), tx.tenant().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// Deletes a project (`projects.delete`).
pub async fn delete(tx: &TenantTx, id: ProjectId) -> Result<(), TenancyError> {
    tx.require(&Permission::PROJECTS_DELETE)?;
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
