//! Activity: records private to one user inside a workspace. Only their owner reads, lists or
//! deletes them — not the workspace's Owner or Admin — in code here and by policy on PostgreSQL.

use chrono::{DateTime, Utc};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{check_name, stmt, TenancyError, TenantTx};

/// Longest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One activity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: Uuid,
    pub app: String,
    pub title: String,
    pub body: String,
    /// SHA-256 of the body, hex.
    pub content_hash: String,
    pub occurred_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, app, title, body, content_hash, occurred_at";

fn from_row(row: &QueryResult) -> Result<Activity, TenancyError> {
    Ok(Activity {
        id: row.try_get("", "id")?,
        app: row.try_get("", "app")?,
        title: row.try_get("", "title")?,
        body: row.try_get("", "body")?,
        content_hash: row.try_get("", "content_hash")?,
        occurred_at: row.try_get("", "occurred_at")?,
    })
}

/// The principal must be a member with `activity.read_own`; grants never reach activity.
fn require_own(tx: &TenantTx) -> Result<(), TenancyError> {
    tx.require_member(&Permission::ACTIVITY_READ_OWN).map(|_| ())
}

/// Records activity for the principal.
pub async fn record(
    tx: &TenantTx,
    app: &str,
    title: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Activity, TenancyError> {
    require_own(tx)?;
    let app = check_name(app)?;
    let title = check_name(title)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(TenancyError::Invalid("body is at most 16 KiB"));
    }
    let activity = Activity {
        id: Uuid::new_v4(),
        app: app.to_owned(),
        title: title.to_owned(),
        body: body.to_owned(),
        content_hash: hex::encode(Sha256::digest(body.as_bytes())),
        occurred_at: now,
    };
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO activity (id, tenant_id, user_id, app, title, body, content_hash, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                activity.id.into(),
                tx.tenant().0.into(),
                tx.user().0.into(),
                activity.app.clone().into(),
                activity.title.clone().into(),
                activity.body.clone().into(),
                activity.content_hash.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(activity)
}

/// The principal's newest `limit` records in this workspace.
pub async fn list_own(tx: &TenantTx, limit: u64) -> Result<Vec<Activity>, TenancyError> {
    require_own(tx)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!(
                "SELECT {COLUMNS} FROM activity WHERE tenant_id = $1 AND user_id = $2 ORDER BY occurred_at DESC, id LIMIT $3"
            ),
            vec![tx.tenant().0.into(), tx.user().0.into(), limit.clamp(1, 200).into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// One of the principal's records; anyone else's is `NotFound`.
pub async fn get_own(tx: &TenantTx, id: Uuid) -> Result<Activity, TenancyError> {
    require_own(tx)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM activity WHERE id = $1 AND tenant_id = $2 AND user_id = $3"),
            vec![id.into(), tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// Deletes one of the principal's records; anyone else's is `NotFound`.
pub async fn delete_own(tx: &TenantTx, id: Uuid) -> Result<(), TenancyError> {
    require_own(tx)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM activity WHERE id = $1 AND tenant_id = $2 AND user_id = $3",
            vec![id.into(), tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    Ok(())
}
