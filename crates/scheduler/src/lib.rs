//! The outbox: every durable side effect is a `scheduled_actions` row written in the same
//! transaction as the change that causes it, then claimed by a worker with a lease (renewed while
//! its handler runs), run with its id as the idempotency key, and retried with exponential
//! back-off until it succeeds or dies.
//!
//! Payloads are sealed with AES-256-GCM, bound to the row id, because they may carry secrets
//! (a verification link holds a one-time token).
//! It must never store a payload in clear, nor renew or settle a claim it no longer holds.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod mail;

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use chrono::{DateTime, Duration, Utc};
use crypto_vault::KeyMaterial;
use ids::ActionId;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use uuid::Uuid;

/// Errors of the outbox itself (a failing handler is not one: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("payload could not be sealed: {0}")]
    Seal(#[from] crypto_vault::VaultError),
    #[error("payload is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// How long a claim lasts before another worker may take the action over (the default). A live
/// worker renews its claims while their handlers run, so this bounds only how long the actions of
/// a killed worker wait before another takes them over.
pub const LEASE: Duration = Duration::seconds(60);
/// The shortest lease a worker accepts: 3 s. It no longer has to outlast the slowest handler (a
/// webhook delivery's 15 s deadline, `webhooks::outbound::REQUEST_TIMEOUT`): a worker renews the
/// claims it still holds every third of its lease for as long as their handlers run, so a live
/// worker is not overtaken however long a handler takes. What the lease must outlast is a late
/// renewal: with one every second, a renewal may take up to 2 s (or fail, and the next one take
/// up to 1 s) before the claim lapses, where the one-row-per-claim UPDATE takes milliseconds
/// (SQLite waits up to 5 s for another process's write lock, but write transactions there last
/// milliseconds). Shorter, one slow round trip under load, or clock skew between hosts, would let
/// a live worker be overtaken. Even then nothing is lost or recorded twice, the action only runs
/// again: handlers take the action id as their idempotency key, and an overtaken worker's outcome
/// and renewals name its claim's attempt, so they no longer touch the new claim. Production keeps
/// [`LEASE`]; the floor serves deployments and drills that want a killed worker's actions back
/// within seconds.
pub const MIN_LEASE: Duration = Duration::seconds(3);
/// Attempts before an action is declared dead.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 8;

/// Writes an action on `conn` — pass the business transaction so both commit or neither does.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    key: &KeyMaterial,
    kind: &str,
    payload: &serde_json::Value,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<ActionId, OutboxError> {
    let id = ActionId::new_random();
    let sealed = crypto_vault::seal(key, id.0.as_bytes(), &serde_json::to_vec(payload)?)?;
    conn.execute(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO scheduled_actions (id, kind, payload_ciphertext, status, attempts, max_attempts, run_at, created_at)
         VALUES ($1, $2, $3, 'pending', 0, $4, $5, $6)",
        [id.into(), kind.into(), sealed.into(), DEFAULT_MAX_ATTEMPTS.into(), run_at.into(), now.into()],
    ))
    .await?;
    Ok(id)
}

/// The outbox at a glance, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    /// Actions whose time has come and that are not done.
    pub due: u64,
    /// Seconds since the oldest due action's time (0 when none is due).
    pub lag_secs: f64,
    /// Actions that exhausted their attempts.
    pub dead: u64,
}

/// Counts due and dead actions and measures the oldest due action's wait, at `now`.
pub async fn stats<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<OutboxStats, OutboxError> {
    let row = conn
        .query_one(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT (SELECT COUNT(*) FROM scheduled_actions WHERE status IN ('pending', 'running') AND run_at <= $1) AS due,
                    (SELECT MIN(run_at) FROM scheduled_actions WHERE status IN ('pending', 'running') AND run_at <= $1) AS oldest,
                    (SELECT COUNT(*) FROM scheduled_actions WHERE status = 'dead') AS dead",
            [now.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(OutboxStats::default());
    };
    let oldest: Option<DateTime<Utc>> = row.try_get("", "oldest")?;
    Ok(OutboxStats {
        due: u64::try_from(row.try_get::<i64>("", "due")?).unwrap_or(0),
        lag_secs: oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        dead: u64::try_from(row.try_get::<i64>("", "dead")?).unwrap_or(0),
    })
}

/// Enqueues `kind` unless an action of that kind is already pending or running: for recurring
/// maintenance that reschedules itself. Two replicas starting at once may both enqueue; the
/// actions this is used for are idempotent.
pub async fn ensure_pending<C: ConnectionTrait>(
    conn: &C,
    key: &KeyMaterial,
    kind: &str,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<ActionId>, OutboxError> {
    let existing = conn
        .query_one(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT id FROM scheduled_actions WHERE kind = $1 AND status IN ('pending', 'running') LIMIT 1",
            [kind.into()],
        ))
        .await?;
    if existing.is_some() {
        return Ok(None);
    }
    enqueue(conn, key, kind, &serde_json::json!({}), run_at, now).await.map(Some)
}

/// One action as operators see it: never its payload (sealed; it may hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionInfo {
    pub id: ActionId,
    pub kind: String,
    /// `pending`, `running`, `done`, `dead` or `cancelled`.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Statuses an action can have.
pub const STATUSES: [&str; 5] = ["pending", "running", "done", "dead", "cancelled"];

/// The newest `limit` actions (1 to 1,000), optionally of one status, for operators.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    status: Option<&str>,
    limit: u64,
) -> Result<Vec<ActionInfo>, OutboxError> {
    let rows = conn
        .query_all(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT id, kind, status, attempts, max_attempts, run_at, last_error, created_at, completed_at
               FROM scheduled_actions WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
            [status.map(str::to_owned).into(), i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ActionInfo {
                id: r.try_get("", "id")?,
                kind: r.try_get("", "kind")?,
                status: r.try_get("", "status")?,
                attempts: r.try_get("", "attempts")?,
                max_attempts: r.try_get("", "max_attempts")?,
                run_at: r.try_get("", "run_at")?,
                last_error: r.try_get("", "last_error")?,
                created_at: r.try_get("", "created_at")?,
                completed_at: r.try_get("", "completed_at")?,
            })
        })
        .collect()
}

/// Finished actions (done or cancelled) are kept this long for operators (`rampart outbox list`),
/// then removed by the purge job; dead ones stay until an operator retries or cancels them.
pub const FINISHED_RETENTION: Duration = Duration::days(7);

/// Removes actions that finished (done or cancelled) more than [`FINISHED_RETENTION`] before
/// `now`; how many.
pub async fn purge_finished<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64, OutboxError> {
    let done = conn
        .execute(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "DELETE FROM scheduled_actions WHERE status IN ('done', 'cancelled') AND completed_at <= $1",
            vec![(now - FINISHED_RETENTION).into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// Puts a dead or cancelled action back in the queue, due at `now`, with a fresh set of
/// [`DEFAULT_MAX_ATTEMPTS`] attempts (its id, and so its idempotency key, stays). Returns
/// whether it was requeued (a pending, running or done action is left alone).
pub async fn retry<C: ConnectionTrait>(conn: &C, id: ActionId, now: DateTime<Utc>) -> Result<bool, OutboxError> {
    let done = conn
        .execute(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE scheduled_actions SET status = 'pending', run_at = $2, max_attempts = attempts + $3,
                    locked_until = NULL, completed_at = NULL
              WHERE id = $1 AND status IN ('dead', 'cancelled')",
            [id.into(), now.into(), DEFAULT_MAX_ATTEMPTS.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Cancels a pending action so no worker runs it. A running action cannot be cancelled (its
/// effect may be under way): returns false for it, as for done, dead and cancelled ones.
pub async fn cancel<C: ConnectionTrait>(conn: &C, id: ActionId, now: DateTime<Utc>) -> Result<bool, OutboxError> {
    let done = conn
        .execute(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE scheduled_actions SET status = 'cancelled', completed_at = $2, locked_until = NULL
              WHERE id = $1 AND status = 'pending'",
            [id.into(), now.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A claimed action, handed to its handler.
#[derive(Debug, Clone)]
pub struct Action {
    /// Stable across retries: handlers use it as their idempotency key.
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempt: i32,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type HandlerFn = Arc<dyn Fn(Action) -> HandlerFuture + Send + Sync>;

/// Runs due actions. Build once with every handler, then call [`Worker::run_due`] (tests, CLI) or
/// [`Worker::run`] (the server's background loop).
#[derive(Clone)]
pub struct Worker {
    db: storage::Db,
    key: KeyMaterial,
    previous_keys: Vec<KeyMaterial>,
    clock: Arc<dyn storage::Clock>,
    handlers: HashMap<String, HandlerFn>,
    batch: u64,
    lease: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("kinds", &self.handlers.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// What one pass over due actions did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub done: usize,
    pub retried: usize,
    pub dead: usize,
}

impl Worker {
    pub fn new(db: storage::Db, key: KeyMaterial, clock: Arc<dyn storage::Clock>) -> Worker {
        Worker { db, key, previous_keys: Vec::new(), clock, handlers: HashMap::new(), batch: 32, lease: LEASE }
    }

    /// How long this worker's claims last (at least [`MIN_LEASE`]; shorter values are raised to
    /// it). The worker renews the claims it holds every third of it while their handlers run; a
    /// crashed worker's actions are taken over once its last renewal has passed.
    pub fn with_lease(mut self, lease: Duration) -> Worker {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// Keys that sealed payloads before the current one (`secrets.vault_previous_keys`): actions
    /// queued before a key rotation still open and run.
    pub fn with_previous_keys(mut self, keys: Vec<KeyMaterial>) -> Worker {
        self.previous_keys = keys;
        self
    }

    /// Registers the handler for `kind`.
    pub fn handle<F, Fut>(mut self, kind: &str, f: F) -> Worker
    where
        F: Fn(Action) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.handlers.insert(kind.to_owned(), Arc::new(move |a| Box::pin(f(a))));
        self
    }

    /// Claims due actions (and actions whose lease expired) until none is left, running each.
    /// While a batch runs, the claims it still holds are renewed every third of the lease, in the
    /// same task: when this future is dropped (the process stops), renewal stops with it.
    pub async fn run_due(&self) -> Result<PassReport, OutboxError> {
        let mut report = PassReport::default();
        loop {
            let claimed = self.claim().await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            // The index of the action running now: it and the ones after it are still held.
            let running = AtomicUsize::new(0);
            let batch = tokio::select! {
                biased;
                batch = self.run_batch(&claimed, &running) => batch?,
                never = self.keep_renewing(&claimed, &running) => match never {},
            };
            report.done += batch.done;
            report.retried += batch.retried;
            report.dead += batch.dead;
        }
    }

    /// Runs the handlers of a claimed batch in turn and records each outcome, advancing
    /// `running` past every action it has finished with.
    async fn run_batch(&self, claimed: &[(Action, i32)], running: &AtomicUsize) -> Result<PassReport, OutboxError> {
        let mut report = PassReport::default();
        for (index, (action, max_attempts)) in claimed.iter().enumerate() {
            running.store(index, Ordering::Release);
            match self.execute(action).await {
                Ok(()) => {
                    self.finish(action.id, action.attempt, "done", None, None).await?;
                    report.done += 1;
                }
                Err(err) if action.attempt >= *max_attempts => {
                    tracing::error!(action.id = %action.id, action.kind = %action.kind, error = %err, "action is dead after its last attempt");
                    self.finish(action.id, action.attempt, "dead", Some(&err), None).await?;
                    report.dead += 1;
                }
                Err(err) => {
                    let at = self.clock.now() + backoff(action.attempt);
                    tracing::warn!(action.id = %action.id, action.kind = %action.kind, attempt = action.attempt, error = %err, "action failed; will retry");
                    self.finish(action.id, action.attempt, "pending", Some(&err), Some(at)).await?;
                    report.retried += 1;
                }
            }
        }
        running.store(claimed.len(), Ordering::Release);
        Ok(report)
    }

    /// Renews the claims of `claimed` from `running` on, every third of the lease, forever: the
    /// caller drops this future when the batch is over. A renewal that fails is logged and tried
    /// again at the next turn; the claim lapses only if none succeeds within the lease.
    async fn keep_renewing(&self, claimed: &[(Action, i32)], running: &AtomicUsize) -> Infallible {
        let every = (self.lease / 3).to_std().unwrap_or(std::time::Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let held = claimed.get(running.load(Ordering::Acquire)..).unwrap_or_default();
            match self.renew(held).await {
                Ok(renewed) => tracing::debug!(renewed, held = held.len(), "outbox claims renewed"),
                Err(err) => tracing::warn!(error = %err, "outbox claims could not be renewed; trying again"),
            }
        }
    }

    /// Extends the lease of `held` to a full lease from now, in one statement. Like
    /// [`Worker::finish`], it names each claim's attempt: a claim another worker has taken over
    /// since (which counted another attempt) or that is no longer running is left alone.
    /// Returns how many claims were renewed.
    async fn renew(&self, held: &[(Action, i32)]) -> Result<u64, OutboxError> {
        if held.is_empty() {
            return Ok(0);
        }
        let conn = self.db.conn();
        let until = self.clock.now() + self.lease;
        let sql = format!(
            "UPDATE scheduled_actions SET locked_until = ${}
              WHERE status = 'running' AND (id, attempts) IN (VALUES {})",
            held.len() * 2 + 1,
            storage::values_rows(held.len(), 2)
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(held.len() * 2 + 1);
        for (action, _) in held {
            values.push(action.id.into());
            values.push(action.attempt.into());
        }
        values.push(until.into());
        let done = conn.execute(Statement::from_sql_and_values(conn.get_database_backend(), &sql, values)).await?;
        Ok(done.rows_affected())
    }

    /// The server's loop: a pass every `interval` until `shutdown` resolves.
    pub async fn run(self, interval: std::time::Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        loop {
            if let Err(err) = self.run_due().await {
                tracing::error!(error = %err, "outbox pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn execute(&self, action: &Action) -> Result<(), String> {
        let Some(handler) = self.handlers.get(&action.kind) else {
            return Err(format!("no handler for action kind `{}`", action.kind));
        };
        handler(action.clone()).await
    }

    async fn claim(&self) -> Result<Vec<(Action, i32)>, OutboxError> {
        let conn = self.db.conn();
        let backend = conn.get_database_backend();
        let now = self.clock.now();
        // PostgreSQL: SKIP LOCKED lets several workers claim disjoint rows at once. SQLite has a
        // single writer, so the UPDATE is already atomic.
        let lock = if backend == DatabaseBackend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE scheduled_actions SET status = 'running', locked_until = $2, attempts = attempts + 1
              WHERE id IN (SELECT id FROM scheduled_actions
                            WHERE (status = 'pending' AND run_at <= $1) OR (status = 'running' AND locked_until < $1)
                            ORDER BY run_at LIMIT $3 {lock})
              RETURNING id, kind, payload_ciphertext, attempts, max_attempts"
        );
        let rows = conn
            .query_all(Statement::from_sql_and_values(
                backend,
                &sql,
                [now.into(), (now + self.lease).into(), self.batch.into()],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get("", "id")?;
            let attempt: i32 = row.try_get("", "attempts")?;
            let sealed: String = row.try_get("", "payload_ciphertext")?;
            let opened = std::iter::once(&self.key)
                .chain(&self.previous_keys)
                .map(|key| crypto_vault::open(key, id.as_bytes(), &sealed))
                .find(Result::is_ok)
                .unwrap_or_else(|| crypto_vault::open(&self.key, id.as_bytes(), &sealed));
            let payload = match opened {
                Ok(bytes) => serde_json::from_slice(&bytes)?,
                Err(err) => {
                    // A payload that does not open will never open: no retry.
                    tracing::error!(action.id = %id, error = %err, "action payload does not open; marking dead");
                    self.finish(id, attempt, "dead", Some("payload does not open"), None).await?;
                    continue;
                }
            };
            out.push((
                Action { id, kind: row.try_get("", "kind")?, payload, attempt },
                row.try_get("", "max_attempts")?,
            ));
        }
        Ok(out)
    }

    /// Records the outcome of the claim made at `attempt`. A worker whose lease ran out while the
    /// handler ran (its renewals stalled) has been overtaken (the new claim counted another
    /// attempt): its outcome is dropped rather than overwrite the new claim's, which decides.
    async fn finish(
        &self,
        id: Uuid,
        attempt: i32,
        status: &str,
        error: Option<&str>,
        run_at: Option<DateTime<Utc>>,
    ) -> Result<(), OutboxError> {
        let conn = self.db.conn();
        let now = self.clock.now();
        let completed = if status == "done" || status == "dead" { Some(now) } else { None };
        let done = conn
            .execute(Statement::from_sql_and_values(
                conn.get_database_backend(),
                "UPDATE scheduled_actions
                    SET status = $2, last_error = $3, locked_until = NULL, completed_at = $4, run_at = COALESCE($5, run_at)
                  WHERE id = $1 AND status = 'running' AND attempts = $6",
                [id.into(), status.into(), error.map(str::to_owned).into(), completed.into(), run_at.into(), attempt.into()],
            ))
            .await?;
        if done.rows_affected() == 0 {
            tracing::warn!(action.id = %id, attempt, "action was taken over after its lease ran out; this outcome is dropped");
        }
        Ok(())
    }
}

/// Exponential back-off with full jitter (AWS Architecture Blog, "Exponential Backoff And
/// Jitter"): a random delay up to 5 s × 2^(attempt-1), capped at one hour.
pub fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 20) - 1;
    let cap_ms: i64 = (5_000_i64 << exp).min(3_600_000);
    let ms = rand::Rng::gen_range(&mut rand::thread_rng(), cap_ms / 2..=cap_ms);
    Duration::milliseconds(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt);
            let cap = (5_000_i64 << (attempt.clamp(1, 20) - 1)).min(3_600_000);
            assert!(d.num_milliseconds() >= cap / 2 && d.num_milliseconds() <= cap, "{attempt}: {d}");
        }
    }
}
