//! Batches: each source's lane in the process's [`Inbox`], where the request holding the turn
//! records every delivery then waiting in one transaction.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use crypto_vault::Vault;
use ids::{SourceId, WorkspaceId};
use tenancy::TenancyError;
use tokio::sync::oneshot;

use super::record::{receive_batch, Outcome, ReceiveError};
use super::verify::Delivery;

/// Deliveries one recording transaction takes at most: 64 inbox rows of 6 parameters and 64
/// audit events of 11, far below the 32,766 (SQLite) and 65,535 (PostgreSQL) a statement may bind.
pub const MAX_BATCH: usize = 64;

/// Receives this process's inbound deliveries, source by source.
///
/// Every delivery to one source of one workspace passes through that source's *lane*: whoever
/// takes the lane's turn verifies and records every delivery then waiting (up to [`MAX_BATCH`])
/// in one transaction, and answers each. Each delivery is still recorded in the inbox in the same
/// transaction as its processing (its audit event); what is shared is the transaction, so under
/// load the workspace's audit chain head is locked, and the WAL flushed, once per batch rather
/// than once per delivery. An idle lane holds nothing: the first delivery takes the turn at once
/// and is a batch of one.
///
/// Cancel-safe: a request dropped while it holds the turn rolls its transaction back, and the
/// deliveries it had taken go back to the front of their lane (had its commit already gone
/// through, the next batch finds them in the inbox and answers `duplicate`); one dropped while
/// waiting leaves its delivery to be recorded or not (unacknowledged either way, so the sender
/// delivers it again and the inbox tells the copies apart).
#[derive(Default)]
pub struct Inbox {
    lanes: std::sync::Mutex<HashMap<(WorkspaceId, SourceId), Arc<Lane>>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("lanes", &lock(&self.lanes).len()).finish()
    }
}

#[derive(Default)]
struct Lane {
    waiting: std::sync::Mutex<VecDeque<Waiting>>,
    /// Held by the request recording a batch (tokio's mutex queues waiters in order).
    turn: tokio::sync::Mutex<()>,
}

struct Waiting {
    delivery: Delivery,
    now: DateTime<Utc>,
    answer: oneshot::Sender<Outcome>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request's hold on its lane: the last one out removes the lane.
struct Entered<'a> {
    inbox: &'a Inbox,
    key: (WorkspaceId, SourceId),
    lane: Arc<Lane>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut lanes = lock(&self.inbox.lanes);
        // Every other holder of the lane took it from the map under this lock.
        if Arc::strong_count(&self.lane) == 2 {
            lanes.remove(&self.key);
        }
    }
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Receives one delivery for `source` of `tenant`: verifies it against the source's secrets
    /// at `now`, then records it in the inbox and processes it, or finds it there already. A
    /// failed check is counted on the source and processes nothing.
    pub async fn receive(
        &self,
        db: &tenancy::Db,
        vault: &Vault,
        tenant: WorkspaceId,
        source: SourceId,
        delivery: Delivery,
        now: DateTime<Utc>,
    ) -> Outcome {
        let key = (tenant, source);
        let lane = lock(&self.lanes).entry(key).or_default().clone();
        let entered = Entered { inbox: self, key, lane };
        let lane = &entered.lane;
        let (answer, mut answered) = oneshot::channel();
        lock(&lane.waiting).push_back(Waiting { delivery, now, answer });
        loop {
            let turn = tokio::select! {
                biased;
                outcome = &mut answered => return outcome.unwrap_or_else(|_| Err(unanswered())),
                turn = lane.turn.lock() => turn,
            };
            match answered.try_recv() {
                Ok(outcome) => return outcome,
                Err(oneshot::error::TryRecvError::Closed) => return Err(unanswered()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // Those waiting now, this delivery among them unless more than a batch is ahead of it.
            let taken = {
                let mut waiting = lock(&lane.waiting);
                let n = waiting.len().min(MAX_BATCH);
                waiting.drain(..n).collect()
            };
            Batch { lane, taken }.record(db, vault, tenant, source).await;
            drop(turn);
        }
    }
}

/// Never expected: a batch answers every delivery it takes or puts it back.
fn unanswered() -> ReceiveError {
    ReceiveError::Tenancy(TenancyError::Internal("an inbound delivery was left unanswered".into()))
}

/// Deliveries taken from a lane: each is answered, or put back at the front of the lane (in
/// order) if the request recording them is dropped first.
struct Batch<'a> {
    lane: &'a Lane,
    taken: Vec<Waiting>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.taken.is_empty() {
            let mut waiting = lock(&self.lane.waiting);
            for w in self.taken.drain(..).rev() {
                waiting.push_front(w);
            }
        }
    }
}

impl Batch<'_> {
    async fn record(mut self, db: &tenancy::Db, vault: &Vault, tenant: WorkspaceId, source: SourceId) {
        let arrivals: Vec<(&Delivery, DateTime<Utc>)> = self.taken.iter().map(|w| (&w.delivery, w.now)).collect();
        let outcomes = match receive_batch(db, vault, tenant, source, &arrivals).await {
            Ok(outcomes) => outcomes,
            Err(err) if arrivals.len() == 1 => vec![Err(err.into())],
            // The whole batch failed: each delivery alone, so each gets its own answer.
            Err(_) => {
                let mut outcomes = Vec::with_capacity(arrivals.len());
                for one in arrivals.chunks(1) {
                    outcomes.push(match receive_batch(db, vault, tenant, source, one).await {
                        Ok(mut alone) => alone.pop().unwrap_or_else(|| Err(unanswered())),
                        Err(err) => Err(err.into()),
                    });
                }
                outcomes
            }
        };
        for (w, outcome) in std::mem::take(&mut self.taken).into_iter().zip(outcomes) {
            // A request that has gone away no longer needs its answer.
            let _ = w.answer.send(outcome);
        }
    }
}
