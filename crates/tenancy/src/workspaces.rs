//! Workspaces: creation (the founder becomes the first Owner), the caller's list, renaming,
//! deletion (access ends at once) and the purge of deleted workspaces after a grace period.

use chrono::{DateTime, Duration, Utc};
use rbac::Permission;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use uuid::Uuid;

use crate::{check_name, stmt, Db, TenancyError, TenantTx, UserId, WorkspaceId};

/// How long a deleted workspace's content is kept before the purge job removes it.
pub const PURGE_AFTER: Duration = Duration::days(30);

/// Outbox action that purges a deleted workspace once its grace period is over.
pub const PURGE_ACTION: &str = "workspace_purge";

/// A workspace as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    /// The caller's role (`Grant` when reached through a cross-workspace grant).
    pub role: String,
    pub created_at: DateTime<Utc>,
    /// Members reach it only from a sign-in that included a second factor.
    pub require_mfa: bool,
}

/// Creates a workspace with `owner` as its first member (role `Owner`), in one transaction.
pub async fn create(db: &Db, owner: UserId, name: &str, now: DateTime<Utc>) -> Result<Workspace, TenancyError> {
    let name = check_name(name)?;
    let id = WorkspaceId(Uuid::new_v4());
    let tx = TenantTx::begin_claiming(db, id, owner).await?;
    let result = async {
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
        tx.record(audit::Category::Workspace, "workspace.created", serde_json::json!({ "name": name }), now).await
    }
    .await;
    tx.settle(result).await?;
    Ok(Workspace { id, name: name.to_owned(), role: rbac::OWNER_ROLE.into(), created_at: now, require_mfa: false })
}

/// The live workspaces `user` belongs to, oldest first.
pub async fn list_mine(db: &Db, user: UserId) -> Result<Vec<Workspace>, TenancyError> {
    let txn = db.begin_write().await?;
    let backend = txn.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        // No tenant: the policies show a principal their own memberships and those workspaces.
        txn.execute(Statement::from_sql_and_values(
            backend,
            "SELECT set_config('app.user_id', $1, true)",
            [user.0.to_string().into()],
        ))
        .await?;
    }
    let rows = txn
        .query_all(Statement::from_sql_and_values(
            backend,
            "SELECT w.id, w.name, m.role, w.created_at, w.require_mfa FROM memberships m JOIN workspaces w ON w.id = m.tenant_id
              WHERE m.user_id = $1 AND w.deleted_at IS NULL ORDER BY w.created_at, w.id",
            [user.0.into()],
        ))
        .await?;
    txn.commit().await?;
    rows.iter()
        .map(|row| {
            Ok(Workspace {
                id: WorkspaceId(row.try_get("", "id")?),
                name: row.try_get("", "name")?,
                role: row.try_get("", "role")?,
                created_at: row.try_get("", "created_at")?,
                require_mfa: row.try_get("", "require_mfa")?,
            })
        })
        .collect()
}

/// The transaction's workspace as the principal sees it.
pub async fn get(tx: &TenantTx) -> Result<Workspace, TenancyError> {
    let access = tx.require_access()?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT id, name, created_at, require_mfa FROM workspaces WHERE id = $1 AND deleted_at IS NULL",
            vec![tx.tenant().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    Ok(Workspace {
        id: WorkspaceId(row.try_get("", "id")?),
        name: row.try_get("", "name")?,
        role: access.role.name.clone(),
        created_at: row.try_get("", "created_at")?,
        require_mfa: row.try_get("", "require_mfa")?,
    })
}

/// Requires (or stops requiring) a second factor of the members (`workspace.update`). The
/// caller checks first that they themselves signed in with one, so they cannot lock themselves
/// out.
pub async fn set_require_mfa(tx: &TenantTx, required: bool, now: DateTime<Utc>) -> Result<Workspace, TenancyError> {
    tx.require_member(&Permission::WORKSPACE_UPDATE)?;
    tx.conn()
        .execute(stmt(
            tx,
            "UPDATE workspaces SET require_mfa = $1 WHERE id = $2 AND deleted_at IS NULL",
            vec![required.into(), tx.tenant().0.into()],
        ))
        .await?;
    tx.record(
        audit::Category::Workspace,
        "workspace.mfa_requirement_changed",
        serde_json::json!({ "required": required }),
        now,
    )
    .await?;
    get(tx).await
}

/// Renames the workspace (`workspace.update`).
pub async fn rename(tx: &TenantTx, name: &str, now: DateTime<Utc>) -> Result<Workspace, TenancyError> {
    tx.require_member(&Permission::WORKSPACE_UPDATE)?;
    let name = check_name(name)?;
    tx.conn()
        .execute(stmt(
            tx,
            "UPDATE workspaces SET name = $1 WHERE id = $2 AND deleted_at IS NULL",
            vec![name.into(), tx.tenant().0.into()],
        ))
        .await?;
    tx.record(audit::Category::Workspace, "workspace.renamed", serde_json::json!({ "name": name }), now).await?;
    get(tx).await
}

/// Marks the workspace deleted (`workspace.delete`): from this commit on nobody reaches it; its
/// content stays until [`purge`] runs [`PURGE_AFTER`] later.
pub async fn mark_deleted(tx: &TenantTx, now: DateTime<Utc>) -> Result<DateTime<Utc>, TenancyError> {
    tx.require_member(&Permission::WORKSPACE_DELETE)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "UPDATE workspaces SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
            vec![now.into(), tx.tenant().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    let purge_at = now + PURGE_AFTER;
    tx.record(audit::Category::Workspace, "workspace.deleted", serde_json::json!({ "purge_at": purge_at }), now)
        .await?;
    Ok(purge_at)
}

/// Deletes the workspace (`workspace.delete`, see [`mark_deleted`]) and queues its purge for the
/// end of the grace period, in the same transaction (the outbox, sealed with `outbox_key`).
/// Returns when the purge is due.
pub async fn delete(
    tx: &TenantTx,
    outbox_key: &crypto_vault::KeyMaterial,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, TenancyError> {
    let purge_after = mark_deleted(tx, now).await?;
    let payload = serde_json::json!({ "workspace_id": tx.tenant() });
    scheduler::enqueue(tx.conn(), outbox_key, PURGE_ACTION, &payload, purge_after, now)
        .await
        .map_err(|e| TenancyError::Internal(e.to_string()))?;
    Ok(purge_after)
}

/// Runs a [`PURGE_ACTION`] the outbox handed over: purges the workspace its payload names.
pub async fn run_purge_action(db: &Db, payload: &serde_json::Value, now: DateTime<Utc>) -> Result<(), String> {
    let id = payload
        .get("workspace_id")
        .cloned()
        .and_then(|v| serde_json::from_value::<WorkspaceId>(v).ok())
        .ok_or("workspace_purge: payload without workspace_id")?;
    let purged = purge(db, id, now).await.map_err(|e| e.to_string())?;
    tracing::info!(workspace.id = %id, purged, "deleted workspace purged");
    Ok(())
}

/// Removes a workspace deleted at least [`PURGE_AFTER`] before `now`, with everything that
/// belongs to it (foreign keys cascade). Returns whether a row went. Runs as no principal: the
/// delete policy admits only workspaces already marked deleted.
pub async fn purge(db: &Db, id: WorkspaceId, now: DateTime<Utc>) -> Result<bool, TenancyError> {
    let tx = TenantTx::begin_claiming(db, id, UserId(Uuid::nil())).await?;
    let result = tx
        .conn()
        .execute(stmt(
            &tx,
            "DELETE FROM workspaces WHERE id = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2",
            vec![id.0.into(), (now - PURGE_AFTER).into()],
        ))
        .await
        .map(|done| done.rows_affected() > 0)
        .map_err(TenancyError::from);
    let result = match result {
        // The chain outlives the workspace: its last event says the content is gone.
        Ok(true) => {
            tx.record(audit::Category::Workspace, "workspace.purged", serde_json::json!({}), now).await.map(|()| true)
        }
        other => other,
    };
    tx.settle(result).await
}
