//! Records of authorization failures (OWASP ASVS 5.0 V16.3.2): the endpoint, the user, and the
//! required and actual role or permission. Written in a transaction of their own, since the
//! refused request's transaction is rolled back; append-only in the database.

use chrono::{DateTime, Utc};
use rbac::Permission;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{stmt, Db, TenancyError, TenantId, TenantTx, UserId};

/// One refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzFailure {
    pub id: Uuid,
    pub user_id: Uuid,
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

/// Stores a refusal in `tenant`'s records. A workspace that does not exist has nowhere to keep
/// it; the caller logs it either way.
pub async fn record(
    db: &Db,
    tenant: TenantId,
    user: UserId,
    refusal: &Refusal<'_>,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let tx = TenantTx::begin(db, tenant, user).await?;
    let result = tx
        .conn()
        .execute(stmt(
            &tx,
            "INSERT INTO authz_failures (id, tenant_id, user_id, endpoint, required, actual, request_id, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                Uuid::new_v4().into(),
                tenant.0.into(),
                user.0.into(),
                refusal.endpoint.into(),
                refusal.required.clone().into(),
                refusal.actual.clone().into(),
                refusal.request_id.into(),
                now.into(),
            ],
        ))
        .await
        .map(|_| ())
        .map_err(Into::into);
    tx.settle(result).await
}

/// The newest `limit` refusals in the workspace (`audit.read`).
pub async fn list(tx: &TenantTx, limit: u64) -> Result<Vec<AuthzFailure>, TenancyError> {
    tx.require_member(&Permission::AUDIT_READ)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            "SELECT id, user_id, endpoint, required, actual, request_id, occurred_at FROM authz_failures
              WHERE tenant_id = $1 ORDER BY occurred_at DESC, id LIMIT $2",
            vec![tx.tenant().0.into(), limit.clamp(1, 200).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AuthzFailure {
                id: row.try_get("", "id")?,
                user_id: row.try_get("", "user_id")?,
                endpoint: row.try_get("", "endpoint")?,
                required: row.try_get("", "required")?,
                actual: row.try_get("", "actual")?,
                request_id: row.try_get("", "request_id")?,
                occurred_at: row.try_get("", "occurred_at")?,
            })
        })
        .collect()
}
