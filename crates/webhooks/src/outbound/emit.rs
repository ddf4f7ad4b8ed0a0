//! Event emission: a delivery row and an outbox action per subscribed endpoint, in the transaction
//! of the change the event reports, and the test event sent to one endpoint.

use chrono::{DateTime, Utc};
use crypto_vault::KeyMaterial;
use ids::{DeliveryId, EndpointId};
use sea_orm::ConnectionTrait;
use tenancy::{TenancyError, TenantTx};

use super::endpoints::{get, ALL_EVENTS, FROM};
use super::history::{get_delivery, Delivery};
use super::schedule::enqueue_attempt;

/// The test event sent by [`send_test`].
pub const TEST_EVENT: &str = "webhook.test";

/// The delivery's body: `{type, timestamp, data}` as Standard Webhooks recommends.
fn event_body(event_type: &str, data: &serde_json::Value, now: DateTime<Utc>) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": data,
    })
    .to_string()
}

async fn insert_delivery(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    endpoint: EndpointId,
    event_type: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<DeliveryId, TenancyError> {
    let id = DeliveryId::new_random();
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
            vec![id.into(), tx.tenant().0.into(), endpoint.into(), event_type.into(), body.into(), now.into()],
        ))
        .await?;
    enqueue_attempt(tx, outbox_key, id, "scheduled", now, now).await?;
    Ok(id)
}

/// Emits `event_type` with `data` to every enabled endpoint of the transaction's workspace that
/// subscribes to it: one delivery and one outbox action each, in this transaction, so they exist
/// exactly when the change they report commits. Returns the deliveries' ids.
pub async fn emit(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    event_type: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Vec<DeliveryId>, TenancyError> {
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!("SELECT e.id, e.event_types FROM {FROM} WHERE e.tenant_id = $1 AND h.disabled_at IS NULL"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    let body = event_body(event_type, data, now);
    let mut out = Vec::new();
    for row in rows {
        let types: String = row.try_get("", "event_types")?;
        let types: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
        if types.iter().any(|t| t == event_type || t == ALL_EVENTS) {
            out.push(insert_delivery(tx, outbox_key, row.try_get("", "id")?, event_type, &body, now).await?);
        }
    }
    Ok(out)
}

/// Sends the test event to one endpoint, subscribed or not (`webhooks.manage`).
pub async fn send_test(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    id: EndpointId,
    now: DateTime<Utc>,
) -> Result<Delivery, TenancyError> {
    let endpoint = get(tx, id, now).await?;
    if endpoint.disabled_at.is_some() {
        return Err(TenancyError::StateConflict {
            code: "endpoint_disabled",
            message: "the endpoint is disabled; enable it first",
        });
    }
    let body = event_body(TEST_EVENT, &serde_json::json!({ "endpoint_id": id }), now);
    let delivery = insert_delivery(tx, outbox_key, id, TEST_EVENT, &body, now).await?;
    get_delivery(tx, delivery).await
}
