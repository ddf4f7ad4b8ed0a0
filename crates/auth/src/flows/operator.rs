//! What an operator does to accounts from the command line (`rampart users …`): list them,
//! suspend and reinstate them. Every change is recorded in the audit trail.

use chrono::{DateTime, Utc};
use ids::UserId;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::email::EmailAddress;
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::settings::RequestMeta;

/// An account as an operator lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub id: UserId,
    pub email: String,
    /// `active` or `suspended`.
    pub status: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// The newest accounts (at most `limit`), optionally only those with `status`.
pub(crate) async fn list_accounts(core: &Core, status: Option<&str>, limit: u64) -> Result<Vec<Account>, AuthError> {
    let conn = core.db.conn();
    let rows = conn
        .query_all(stmt(
            conn,
            "SELECT id, email, status, email_verified_at, created_at FROM users
              WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
            vec![status.map(str::to_owned).into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Account {
                id: row.try_get("", "id")?,
                email: row.try_get("", "email")?,
                status: row.try_get("", "status")?,
                email_verified: row.try_get::<Option<DateTime<Utc>>>("", "email_verified_at")?.is_some(),
                created_at: row.try_get("", "created_at")?,
            })
        })
        .collect()
}

/// The id of the account with address `email`.
pub(crate) async fn account_id(core: &Core, email: &str) -> Result<Option<Uuid>, AuthError> {
    let email = EmailAddress::parse(email)?;
    let conn = core.db.conn();
    let row = conn.query_one(stmt(conn, "SELECT id FROM users WHERE email = $1", vec![email.as_str().into()])).await?;
    Ok(row.map(|r| r.try_get("", "id")).transpose()?)
}

/// Suspends (`suspend`) or reinstates `user` for an operator. Suspension ends every
/// credential, so reinstating never revives one. `Some(false)` when the user was already so,
/// `None` when there is no such user.
pub(crate) async fn set_suspended(
    core: &Core,
    user: Uuid,
    suspend: bool,
    meta: &RequestMeta,
) -> Result<Option<bool>, AuthError> {
    let (from, to, kind) = if suspend {
        ("active", "suspended", events::USER_SUSPENDED)
    } else {
        ("suspended", "active", events::USER_REINSTATED)
    };
    let txn = core.db.begin_write().await?;
    let changed = txn
        .execute(stmt(
            &txn,
            "UPDATE users SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
            vec![user.into(), from.into(), to.into(), core.clock.now().into()],
        ))
        .await?
        .rows_affected()
        > 0;
    if !changed {
        let exists = txn.query_one(stmt(&txn, "SELECT id FROM users WHERE id = $1", vec![user.into()])).await?;
        return Ok(exists.map(|_| false));
    }
    let ending = if suspend { Some(core.end_credentials_in(&txn, user, None).await?) } else { None };
    core.record_event(&txn, kind, Some(user), meta, serde_json::json!({"by": "operator"})).await?;
    txn.commit().await?;
    if let Some(ending) = ending {
        core.finish_ending(ending).await?;
    }
    Ok(Some(true))
}
