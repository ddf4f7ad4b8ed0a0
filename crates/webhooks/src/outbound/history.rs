//! What became of an endpoint's events: its deliveries, each delivery's attempts, and a replay of
//! one delivery.

use chrono::{DateTime, Utc};
use crypto_vault::KeyMaterial;
use ids::{DeliveryId, EndpointId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, FromQueryResult, QueryResult};
use tenancy::{TenancyError, TenantTx};

use super::schedule::enqueue_attempt;

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    /// The `webhook-id` header: the same for every attempt and replay (receivers de-duplicate on
    /// it).
    pub message_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `skipped` (the endpoint was disabled).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Attempt {
    pub attempt: i32,
    /// `scheduled` or `replay`.
    pub cause: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    /// `ok`, `http_status` (a non-2xx answer) or an egress code such as `egress_timeout`.
    pub outcome: String,
}

/// The `webhook-id` of a delivery (no `.`, as the specification asks).
pub fn message_id(delivery: DeliveryId) -> String {
    format!("msg_{}", delivery.0.simple())
}

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, event_type, status, attempts, next_attempt_at, last_attempt_at, delivered_at, created_at";

fn delivery_from_row(row: &QueryResult) -> Result<Delivery, TenancyError> {
    let id: DeliveryId = row.try_get("", "id")?;
    Ok(Delivery {
        id,
        endpoint_id: row.try_get("", "endpoint_id")?,
        message_id: message_id(id),
        event_type: row.try_get("", "event_type")?,
        status: row.try_get("", "status")?,
        attempts: row.try_get("", "attempts")?,
        next_attempt_at: row.try_get("", "next_attempt_at")?,
        last_attempt_at: row.try_get("", "last_attempt_at")?,
        delivered_at: row.try_get("", "delivered_at")?,
        created_at: row.try_get("", "created_at")?,
    })
}

pub(super) async fn get_delivery(tx: &TenantTx, id: DeliveryId) -> Result<Delivery, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    delivery_from_row(&row)
}

/// An endpoint's newest `limit` deliveries (1 to 200), newest first (`webhooks.manage`).
pub async fn deliveries(tx: &TenantTx, endpoint: EndpointId, limit: u64) -> Result<Vec<Delivery>, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let exists = tx
        .conn()
        .query_one(tx.statement(
            "SELECT 1 AS one FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), endpoint.into()],
        ))
        .await?;
    if exists.is_none() {
        return Err(TenancyError::NotFound);
    }
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2
                  ORDER BY created_at DESC, id LIMIT $3"
            ),
            vec![tx.tenant().0.into(), endpoint.into(), i64::try_from(limit.clamp(1, 200)).unwrap_or(200).into()],
        ))
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// A delivery and its attempts, oldest first (`webhooks.manage`).
pub async fn attempts(tx: &TenantTx, delivery: DeliveryId) -> Result<(Delivery, Vec<Attempt>), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let found = get_delivery(tx, delivery).await?;
    let rows = tx
        .conn()
        .query_all(tx.statement(
            "SELECT attempt, cause, started_at, duration_ms, response_status, outcome FROM webhook_attempts
              WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt",
            vec![tx.tenant().0.into(), delivery.into()],
        ))
        .await?;
    let list = rows.iter().map(|r| Attempt::from_query_result(r, "")).collect::<Result<Vec<_>, _>>()?;
    Ok((found, list))
}

/// A replay of a delivery that is still pending (being retried, or already queued again).
fn still_pending() -> TenancyError {
    TenancyError::StateConflict {
        code: "delivery_pending",
        message: "the delivery is still being retried on its schedule",
    }
}

/// Sends a delivery again, once, now, with the same `webhook-id` and body (`webhooks.manage`). A
/// delivery still on its schedule cannot be replayed (it is being retried); neither can one whose
/// endpoint is disabled.
pub async fn replay(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    delivery: DeliveryId,
    now: DateTime<Utc>,
) -> Result<Delivery, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let found = get_delivery(tx, delivery).await?;
    if found.status == "pending" {
        return Err(still_pending());
    }
    let disabled = tx
        .conn()
        .query_one(tx.statement(
            "SELECT disabled_at FROM webhook_endpoint_health WHERE tenant_id = $1 AND endpoint_id = $2",
            vec![tx.tenant().0.into(), found.endpoint_id.into()],
        ))
        .await?
        .map(|r| r.try_get::<Option<DateTime<Utc>>>("", "disabled_at"))
        .transpose()?
        .flatten();
    if disabled.is_some() {
        return Err(TenancyError::StateConflict {
            code: "endpoint_disabled",
            message: "the endpoint is disabled; enable it first",
        });
    }
    // Only if it is not pending yet: of concurrent replays one queues the attempt, the others
    // find it pending as a replay after it would, and the receiver gets the message once more.
    let queued = tx
        .conn()
        .execute(tx.statement(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1
              WHERE tenant_id = $2 AND id = $3 AND status <> 'pending'",
            vec![now.into(), tx.tenant().0.into(), delivery.into()],
        ))
        .await?;
    if queued.rows_affected() == 0 {
        return Err(still_pending());
    }
    enqueue_attempt(tx, outbox_key, delivery, "replay", now, now).await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_delivery.replayed",
        serde_json::json!({ "delivery_id": delivery, "endpoint_id": found.endpoint_id }),
        now,
    )
    .await?;
    get_delivery(tx, delivery).await
}
