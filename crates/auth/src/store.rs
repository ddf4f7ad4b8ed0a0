//! Short-lived shared state: session records (keyed by token hash) and rate-limit counters. In
//! Redis when configured, so replicas share revocations and limits; in process otherwise.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthError;

/// What the store keeps about a session. The token itself is never stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    /// Public id, used to list and revoke sessions without exposing the token or its hash.
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// When the holder last proved who they are: at sign-in, then at each step-up
    /// ([`crate::stepup`]). Records written before this field existed read as never.
    #[serde(default)]
    pub authenticated_at: Option<DateTime<Utc>>,
    /// How (RFC 8176 values: `pwd`, `otp`, `fed`).
    #[serde(default)]
    pub amr: Vec<String>,
}

impl SessionRecord {
    /// The authentication this session carries, if it says.
    pub fn authentication(&self) -> Option<crate::stepup::Authentication> {
        Some(crate::stepup::Authentication { at: self.authenticated_at?, amr: self.amr.clone() })
    }
}

/// The outcome of counting one hit against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets (at least 1).
    pub retry_after_secs: u64,
}

/// Process-memory state of [`Kv::Memory`].
#[derive(Debug, Default)]
pub struct Memory {
    sessions: HashMap<String, SessionRecord>,
    counters: HashMap<String, (u64, Instant)>,
    hits_since_prune: u64,
}

/// The store: Redis or process memory.
#[derive(Clone)]
pub enum Kv {
    Memory(Arc<Mutex<Memory>>),
    Redis { conn: redis::aio::ConnectionManager, prefix: Arc<str> },
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kv::Memory(_) => f.write_str("Kv::Memory"),
            Kv::Redis { prefix, .. } => write!(f, "Kv::Redis({prefix})"),
        }
    }
}

/// Fixed-window counter in one round trip: INCR, set the expiry on the first hit, read the TTL.
const HIT_SCRIPT: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {c, ttl}
";

fn store_err(e: impl std::fmt::Display) -> AuthError {
    AuthError::Store(e.to_string())
}

impl Kv {
    pub fn memory() -> Kv {
        Kv::Memory(Arc::new(Mutex::new(Memory::default())))
    }

    /// A Redis store; `prefix` namespaces every key (one deployment, or one test, per prefix).
    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str) -> Kv {
        Kv::Redis { conn, prefix: Arc::from(prefix) }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Kv::Redis { .. })
    }

    fn lock(m: &Arc<Mutex<Memory>>) -> Result<std::sync::MutexGuard<'_, Memory>, AuthError> {
        m.lock().map_err(|_| AuthError::Store("memory store poisoned".into()))
    }

    pub async fn put_session(&self, hash: &str, record: &SessionRecord, now: DateTime<Utc>) -> Result<(), AuthError> {
        let expires = record.idle_expires_at.min(record.absolute_expires_at);
        let ttl = (expires - now).num_seconds().max(1) as u64;
        match self {
            Kv::Memory(m) => {
                Self::lock(m)?.sessions.insert(hash.to_owned(), record.clone());
                Ok(())
            }
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(record).map_err(store_err)?;
                redis::pipe()
                    .atomic()
                    .set_ex(format!("{prefix}sess:{hash}"), json, ttl)
                    .sadd(format!("{prefix}usess:{}", record.user_id), hash)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(store_err)
            }
        }
    }

    /// Writes `record` over a session that still exists, and only then: a sign-out or revocation
    /// racing this write is never undone (Redis `SET … XX`). `false` when the session is gone.
    pub async fn replace_session(
        &self,
        hash: &str,
        record: &SessionRecord,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthError> {
        let expires = record.idle_expires_at.min(record.absolute_expires_at);
        let ttl = (expires - now).num_seconds().max(1) as u64;
        match self {
            Kv::Memory(m) => {
                let mut memory = Self::lock(m)?;
                match memory.sessions.get_mut(hash) {
                    Some(existing) => {
                        *existing = record.clone();
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(record).map_err(store_err)?;
                let done: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}sess:{hash}"))
                    .arg(json)
                    .arg("EX")
                    .arg(ttl)
                    .arg("XX")
                    .query_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                Ok(done.is_some())
            }
        }
    }

    pub async fn get_session(&self, hash: &str) -> Result<Option<SessionRecord>, AuthError> {
        match self {
            Kv::Memory(m) => Ok(Self::lock(m)?.sessions.get(hash).cloned()),
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json: Option<String> = conn.get(format!("{prefix}sess:{hash}")).await.map_err(store_err)?;
                json.map(|j| serde_json::from_str(&j).map_err(store_err)).transpose()
            }
        }
    }

    pub async fn delete_session(&self, hash: &str, user_id: Uuid) -> Result<(), AuthError> {
        match self {
            Kv::Memory(m) => {
                Self::lock(m)?.sessions.remove(hash);
                Ok(())
            }
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                redis::pipe()
                    .atomic()
                    .del(format!("{prefix}sess:{hash}"))
                    .srem(format!("{prefix}usess:{user_id}"), hash)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(store_err)
            }
        }
    }

    /// Every live session of a user, with its token hash.
    pub async fn user_sessions(&self, user_id: Uuid) -> Result<Vec<(String, SessionRecord)>, AuthError> {
        match self {
            Kv::Memory(m) => Ok(Self::lock(m)?
                .sessions
                .iter()
                .filter(|(_, r)| r.user_id == user_id)
                .map(|(h, r)| (h.clone(), r.clone()))
                .collect()),
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let index = format!("{prefix}usess:{user_id}");
                let hashes: Vec<String> = conn.smembers(&index).await.map_err(store_err)?;
                if hashes.is_empty() {
                    return Ok(Vec::new());
                }
                // One round trip for every record.
                let keys: Vec<String> = hashes.iter().map(|h| format!("{prefix}sess:{h}")).collect();
                let records: Vec<Option<String>> = conn.mget(&keys).await.map_err(store_err)?;
                let mut out = Vec::new();
                let mut expired = Vec::new();
                for (hash, json) in hashes.into_iter().zip(records) {
                    match json {
                        Some(j) => out.push((hash, serde_json::from_str(&j).map_err(store_err)?)),
                        None => expired.push(hash),
                    }
                }
                if !expired.is_empty() {
                    // Expired records leave the index too.
                    conn.srem::<_, _, ()>(&index, &expired).await.map_err(store_err)?;
                }
                Ok(out)
            }
        }
    }

    /// Counts a hit on `key` in a fixed window of `window`; allowed while the count is at most
    /// `limit`.
    pub async fn hit(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision, AuthError> {
        let (count, ttl) = match self {
            Kv::Memory(m) => {
                let now = Instant::now();
                let mut state = Self::lock(m)?;
                state.hits_since_prune += 1;
                if state.hits_since_prune >= 4096 {
                    state.hits_since_prune = 0;
                    state.counters.retain(|_, (_, end)| *end > now);
                }
                let entry = state.counters.entry(key.to_owned()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 += 1;
                (entry.0, entry.1 - now)
            }
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (count, ttl_ms): (u64, i64) = redis::Script::new(HIT_SCRIPT)
                    .key(format!("{prefix}rl:{key}"))
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                (count, Duration::from_millis(ttl_ms.max(0) as u64))
            }
        };
        Ok(RateDecision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            retry_after_secs: ttl.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Drops expired sessions from process memory (Redis expires its keys by itself).
    pub fn prune_sessions(&self, now: DateTime<Utc>) -> Result<usize, AuthError> {
        match self {
            Kv::Memory(m) => {
                let mut state = Self::lock(m)?;
                let before = state.sessions.len();
                state.sessions.retain(|_, r| now < r.idle_expires_at && now < r.absolute_expires_at);
                Ok(before - state.sessions.len())
            }
            Kv::Redis { .. } => Ok(0),
        }
    }

    /// Round trip for readiness (Redis only).
    pub async fn ping(&self) -> Result<(), AuthError> {
        match self {
            Kv::Memory(_) => Ok(()),
            Kv::Redis { conn, .. } => {
                let mut conn = conn.clone();
                redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(store_err)
            }
        }
    }
}
