//! Recording: a batch of verified arrivals inserted into the inbox and processed in one
//! transaction (run again on SQLite's `SQLITE_BUSY`), failures counted on the source, and each
//! arrival's answer.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use crypto_vault::Vault;
use ids::{SourceId, UserId, WorkspaceId};
use sea_orm::ConnectionTrait;
use tenancy::{TenancyError, TenantTx};
use uuid::Uuid;

use super::settings::Kind;
use super::verify::{check, Checked, Delivery, Event};
use crate::VerifyError;

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Authentic and new: recorded and processed.
    Accepted { event_id: String },
    /// Authentic, already processed: acknowledged, nothing done.
    Duplicate { event_id: String },
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No such live source in that workspace.
    #[error("not found")]
    NotFound,
    /// The signature check for a source of `kind` failed (or no secret is configured:
    /// `VerifyError::SecretMissing`).
    #[error("{1}")]
    Verify(Kind, VerifyError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
}

/// What [`Inbox::receive`](super::Inbox::receive) answers for one delivery.
pub type Outcome = Result<(Kind, Received), ReceiveError>;

/// Verifies and records `arrivals` for `source`, answering each in order.
///
/// On PostgreSQL one transaction does both: a concurrent copy's inbox insert (from another
/// replica) waits on the primary key for this one's commit and then finds it. On SQLite the check
/// runs in a read-only transaction and the recording in a second one whose first statement
/// writes, so concurrent writers queue on the write lock instead of failing on a stale snapshot.
pub(super) async fn receive_batch(
    db: &tenancy::Db,
    vault: &Vault,
    tenant: WorkspaceId,
    source: SourceId,
    arrivals: &[(&Delivery, DateTime<Utc>)],
) -> Result<Vec<Outcome>, TenancyError> {
    // No principal: the policies let a tenant-context transaction read sources and write the
    // inbox, its statistics and the audit trail, nothing else.
    let tx = TenantTx::begin_claiming(db, tenant, UserId(Uuid::nil())).await?;
    let checked = match check(&tx, vault, source, arrivals).await {
        Ok(Some(checked)) => checked,
        Ok(None) => {
            tx.rollback().await?;
            return Ok(arrivals.iter().map(|_| Err(ReceiveError::NotFound)).collect());
        }
        Err(err) => return tx.settle(Err(err)).await,
    };
    if db.backend() == storage::Backend::Postgres {
        let result = record(&tx, source, &checked).await;
        return tx.settle(result).await;
    }
    tx.commit().await?;
    let mut attempt = 0;
    loop {
        let tx = TenantTx::begin_claiming(db, tenant, UserId(Uuid::nil())).await?;
        let result = record(&tx, source, &checked).await;
        match tx.settle(result).await {
            // SQLite refuses a write whose read snapshot another writer has since moved past
            // (`SQLITE_BUSY`); the transaction was rolled back whole, so it is simply run again.
            Err(err) if attempt < SQLITE_BUSY_RETRIES && is_sqlite_busy(&err) => attempt += 1,
            other => return other,
        }
    }
}

/// Times a webhook's recording transaction is run again after SQLite's `SQLITE_BUSY`.
const SQLITE_BUSY_RETRIES: u32 = 16;

fn is_sqlite_busy(err: &TenancyError) -> bool {
    match err {
        TenancyError::Db(e) => storage::is_sqlite_busy(e),
        TenancyError::Audit(e) => storage::is_sqlite_busy(e),
        _ => false,
    }
}

/// Counts the batch's signature failures on the source, inserts its verified events into the
/// inbox and processes those that were not there already; each arrival's answer, in order.
async fn record(tx: &TenantTx, source: SourceId, checked: &Checked) -> Result<Vec<Outcome>, TenancyError> {
    let kind = checked.kind;
    let failed: Vec<DateTime<Utc>> = checked
        .verdicts
        .iter()
        .filter(|(_, v)| v.as_ref().is_err_and(|e| !e.is_configuration_error()))
        .map(|(at, _)| *at)
        .collect();
    if let Some(last_at) = failed.iter().max() {
        count_failures(tx, source, failed.len(), *last_at).await?;
    }
    // The first copy of an event id in the batch goes to the inbox; later ones are duplicates.
    let mut seen = HashSet::new();
    let fresh: Vec<(DateTime<Utc>, &Event)> = checked
        .verdicts
        .iter()
        .filter_map(|(at, v)| v.as_ref().ok().map(|e| (*at, e)))
        .filter(|(_, e)| seen.insert(e.event_id.as_str()))
        .collect();
    let mut inserted = insert(tx, source, &fresh).await?;
    let mut outcomes = Vec::with_capacity(checked.verdicts.len());
    for (at, verdict) in &checked.verdicts {
        outcomes.push(match verdict {
            Err(err) => Err(ReceiveError::Verify(kind, *err)),
            // Only the copy that was inserted is processed (the first to claim its id here).
            Ok(e) if inserted.remove(&e.event_id) => {
                // Processing: the event enters the workspace's audit trail (never its body).
                tx.record(
                    audit::Category::Webhook,
                    "webhook.received",
                    serde_json::json!({ "source_id": source, "kind": kind.as_str(), "event_id": e.event_id, "event_type": e.event_type }),
                    *at,
                )
                .await?;
                Ok((kind, Received::Accepted { event_id: e.event_id.clone() }))
            }
            Ok(e) => Ok((kind, Received::Duplicate { event_id: e.event_id.clone() })),
        });
    }
    // The accepted count is the inbox's own row count: no shared counter row to lock per event.
    Ok(outcomes)
}

/// Inserts `events` into the inbox in one statement, skipping those there already; the event ids
/// it inserted.
async fn insert(
    tx: &TenantTx,
    source: SourceId,
    events: &[(DateTime<Utc>, &Event)],
) -> Result<HashSet<String>, TenancyError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    const COLUMNS: usize = 6;
    let mut values = Vec::with_capacity(events.len() * COLUMNS);
    for (at, e) in events {
        values.extend([
            tx.tenant().0.into(),
            source.into(),
            e.event_id.clone().into(),
            e.event_type.clone().into(),
            e.body_sha256.clone().into(),
            (*at).into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO webhook_inbox (tenant_id, source_id, event_id, event_type, body_sha256, received_at) VALUES {}
         ON CONFLICT (source_id, event_id) DO NOTHING RETURNING event_id",
        storage::values_rows(events.len(), COLUMNS)
    );
    let rows = tx.conn().query_all(tx.statement(&sql, values)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "event_id").map_err(TenancyError::from)).collect()
}

/// Counts `n` signature failures on a source, the last of them at `last_at`.
async fn count_failures(tx: &TenantTx, source: SourceId, n: usize, last_at: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_source_stats (source_id, tenant_id, accepted, signature_failures, last_failure_at)
             VALUES ($1, $2, 0, $3, $4)
             ON CONFLICT (source_id) DO UPDATE SET signature_failures = webhook_source_stats.signature_failures + excluded.signature_failures,
                 last_failure_at = excluded.last_failure_at",
            vec![source.into(), tx.tenant().0.into(), i64::try_from(n).unwrap_or(i64::MAX).into(), last_at.into()],
        ))
        .await?;
    Ok(())
}
