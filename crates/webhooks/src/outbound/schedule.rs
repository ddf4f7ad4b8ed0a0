//! When a delivery's attempts run: the outbox action that runs one, the retry schedule, and the
//! wait before the next attempt.

use chrono::{DateTime, Duration, Utc};
use crypto_vault::KeyMaterial;
use ids::{DeliveryId, WorkspaceId};
use serde::{Deserialize, Serialize};
use tenancy::{TenancyError, TenantTx};

/// The outbox action kind of one delivery attempt.
pub const DELIVER_ACTION: &str = "webhook_deliver";

/// Waits before each retry after a failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h —
/// the Standard Webhooks specification's recommended schedule ("immediately, 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, …"), cut at eight attempts, about 27.6 hours in all.
pub const RETRY_SCHEDULE_SECS: [i64; 7] = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];

/// Attempts a delivery gets: the first and one per [`RETRY_SCHEDULE_SECS`] entry.
pub const ATTEMPTS: i32 = RETRY_SCHEDULE_SECS.len() as i32 + 1;

/// A `Retry-After` longer than this is not waited for (the schedule's longest step).
const MAX_RETRY_AFTER_SECS: i64 = 10 * 3600;

/// When the attempt after `attempts` recorded ones runs: the schedule's wait from `now`, or the
/// receiver's `Retry-After` when that is longer (but never more than [`MAX_RETRY_AFTER_SECS`]).
pub(super) fn retry_at(attempts: i32, retry_after: Option<i64>, now: DateTime<Utc>) -> DateTime<Utc> {
    let wait = RETRY_SCHEDULE_SECS[usize::try_from(attempts).unwrap_or(0).min(RETRY_SCHEDULE_SECS.len() - 1)];
    let wait = retry_after.map_or(wait, |r| wait.max(r.min(MAX_RETRY_AFTER_SECS)));
    now + Duration::seconds(wait)
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ActionPayload {
    pub(super) tenant: WorkspaceId,
    pub(super) delivery: DeliveryId,
    pub(super) cause: String,
}

pub(super) async fn enqueue_attempt(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    delivery: DeliveryId,
    cause: &str,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let payload = serde_json::to_value(ActionPayload { tenant: tx.tenant(), delivery, cause: cause.to_owned() })
        .map_err(|e| TenancyError::Internal(e.to_string()))?;
    scheduler::enqueue(tx.conn(), outbox_key, DELIVER_ACTION, &payload, run_at, now)
        .await
        .map_err(|e| TenancyError::Internal(e.to_string()))?;
    Ok(())
}
