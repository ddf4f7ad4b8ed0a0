//! Housekeeping: the hourly purge of expired and used tokens, challenges, sign-in flows, finished
//! outbox actions and expired sessions.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;

/// Outbox action of the purge job, which reschedules itself every hour.
pub const PURGE_ACTION: &str = "auth_purge_expired";
pub const PURGE_EVERY: Duration = Duration::hours(1);

/// The purge job's outbox handler: purge, then schedule the next run.
pub(crate) async fn handle_purge(core: &Core) -> Result<u64, AuthError> {
    let purged = purge_expired(core).await?;
    let now = core.clock.now();
    scheduler::enqueue(core.db.conn(), &core.outbox_key, PURGE_ACTION, &serde_json::json!({}), now + PURGE_EVERY, now)
        .await?;
    tracing::info!(purged, "purged expired tokens and sessions");
    Ok(purged)
}

/// Makes sure a purge is scheduled (called at start-up).
pub(crate) async fn schedule_purge(core: &Core) -> Result<(), AuthError> {
    let now = core.clock.now();
    scheduler::ensure_pending(core.db.conn(), &core.outbox_key, PURGE_ACTION, now, now).await?;
    Ok(())
}

/// Deletes expired and used one-time tokens, expired refresh tokens, expired and used MFA
/// challenges, finished OIDC flows, outbox actions finished more than
/// [`scheduler::FINISHED_RETENTION`] ago and (in process memory) expired sessions; Redis
/// expires its own keys, the per-user session index with its newest session.
pub(crate) async fn purge_expired(core: &Core) -> Result<u64, AuthError> {
    let now = core.clock.now();
    let sessions = core.kv.prune_sessions(now)? as u64;
    let conn = core.db.conn();
    let a = conn
        .execute(stmt(
            conn,
            "DELETE FROM one_time_tokens WHERE expires_at <= $1 OR consumed_at IS NOT NULL",
            vec![now.into()],
        ))
        .await?
        .rows_affected();
    let b = conn
        .execute(stmt(conn, "DELETE FROM refresh_tokens WHERE expires_at <= $1", vec![now.into()]))
        .await?
        .rows_affected();
    let c = purge_oidc(core, now).await?;
    // Second-factor challenges, once used or expired, prove nothing more.
    let d = conn
        .execute(stmt(
            conn,
            "DELETE FROM mfa_challenges WHERE expires_at <= $1 OR used_at IS NOT NULL",
            vec![now.into()],
        ))
        .await?
        .rows_affected();
    let e = scheduler::purge_finished(conn, now).await?;
    let f = conn
        .execute(stmt(conn, "DELETE FROM revoked_families WHERE until <= $1", vec![now.into()]))
        .await?
        .rows_affected();
    Ok(a + b + c + d + e + f + sessions)
}

/// Deletes flows and native codes past their expiry.
async fn purge_oidc(core: &Core, now: DateTime<Utc>) -> Result<u64, AuthError> {
    let conn = core.db.conn();
    let a = conn.execute(stmt(conn, "DELETE FROM oidc_flows WHERE expires_at <= $1", vec![now.into()])).await?;
    let b = conn.execute(stmt(conn, "DELETE FROM oidc_native_codes WHERE expires_at <= $1", vec![now.into()])).await?;
    Ok(a.rows_affected() + b.rows_affected())
}
