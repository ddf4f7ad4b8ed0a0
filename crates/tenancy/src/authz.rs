//! Records of authorization failures (OWASP ASVS 5.0 V16.3.2): the endpoint, the user, and the
//! required and actual role or permission, kept in the tenant's audit chain (category
//! `authorization`). Written in a transaction of their own, since the refused request's
//! transaction is rolled back.

use chrono::{DateTime, Utc};
use rbac::Permission;
use uuid::Uuid;

use crate::{Db, TenancyError, TenantTx, UserId, WorkspaceId};

/// The audit action of a refusal.
pub const DENIED: &str = "access.denied";

/// One refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzFailure {
    pub id: Uuid,
    pub user_id: UserId,
    pub endpoint: String,
    pub required: String,
    pub actual: String,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// What was refused.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    pub endpoint: &'a str,
    pub required: String,
    pub actual: String,
    pub request_id: &'a str,
}

/// Stores a refusal in `tenant`'s audit chain. A workspace that does not exist has nowhere to
/// keep it; the caller logs it either way.
pub async fn record(
    db: &Db,
    tenant: WorkspaceId,
    user: UserId,
    refusal: &Refusal<'_>,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let mut tx = TenantTx::begin(db, tenant, user).await?;
    tx.set_request_id(refusal.request_id);
    let payload = serde_json::json!({
        "endpoint": refusal.endpoint,
        "required": refusal.required,
        "actual": refusal.actual,
    });
    let result = tx.record(audit::Category::Authorization, DENIED, payload, now).await;
    tx.settle(result).await
}

/// The newest `limit` refusals in the workspace (`audit.read`).
pub async fn list(tx: &TenantTx, limit: u64) -> Result<Vec<AuthzFailure>, TenancyError> {
    tx.require_member(&Permission::AUDIT_READ)?;
    let filter = audit::Filter { category: Some(audit::Category::Authorization), ..Default::default() };
    let events = audit::list(tx.conn(), tx.tenant().0, &filter, limit).await?;
    Ok(events
        .into_iter()
        .filter(|e| e.action == DENIED)
        .map(|e| {
            let p: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            AuthzFailure {
                id: e.id,
                user_id: UserId(e.actor.unwrap_or_default()),
                endpoint: text("endpoint"),
                required: text("required"),
                actual: text("actual"),
                request_id: e.request_id.unwrap_or_default(),
                occurred_at: e.occurred_at,
            }
        })
        .collect())
}

/// The workspace's audit trail, newest first (`audit.read`, members only).
pub async fn audit_log(tx: &TenantTx, filter: &audit::Filter, limit: u64) -> Result<Vec<audit::Event>, TenancyError> {
    tx.require_member(&Permission::AUDIT_READ)?;
    Ok(audit::list(tx.conn(), tx.tenant().0, filter, limit).await?)
}

/// The caller's own events in the platform chain (sign-ins, password changes, sessions), newest
/// first. No tenant: the row policy shows a principal only the platform events about them.
pub async fn own_platform_events(
    db: &Db,
    user: UserId,
    filter: &audit::Filter,
    limit: u64,
) -> Result<Vec<audit::Event>, TenancyError> {
    use sea_orm::ConnectionTrait;
    let txn = db.begin_write().await?;
    let backend = txn.get_database_backend();
    if backend == sea_orm::DatabaseBackend::Postgres {
        txn.execute(sea_orm::Statement::from_sql_and_values(
            backend,
            "SELECT set_config('app.user_id', $1, true)",
            [user.0.to_string().into()],
        ))
        .await?;
    }
    // The application's own scoping, complete without the policies (SQLite has none).
    let filter = audit::Filter { actor: Some(user.0), ..filter.clone() };
    let events = audit::list(&txn, audit::PLATFORM_CHAIN, &filter, limit).await;
    txn.commit().await?;
    Ok(events?)
}
