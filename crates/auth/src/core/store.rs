//! Short-lived shared state: session records (keyed by token hash) and rate-limit counters. In
//! Redis when configured, so replicas share revocations and limits; in process otherwise.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use ids::{SessionId, UserId};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::core::authentication::Authentication;
use crate::core::error::AuthError;

/// What the store keeps about a session. The token itself is never stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    /// Public id, used to list and revoke sessions without exposing the token or its hash.
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// When the holder last proved who they are: at sign-in, then at each step-up
    /// ([`crate::stepup`], [`Authentication`]). Records written before this field existed read as never.
    #[serde(default)]
    pub authenticated_at: Option<DateTime<Utc>>,
    /// How (RFC 8176 values: `pwd`, `otp`, `fed`).
    #[serde(default)]
    pub amr: Vec<String>,
    /// The user's credential generation when the session was opened (or last kept through a
    /// revocation of the others); a session of an older generation is refused.
    #[serde(default)]
    pub generation: i64,
}

impl SessionRecord {
    /// The authentication this session carries, if it says.
    pub fn authentication(&self) -> Option<Authentication> {
        Some(Authentication { at: self.authenticated_at?, amr: self.amr.clone() })
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

impl RateDecision {
    fn of(count: u64, ttl: Duration, limit: u64) -> RateDecision {
        RateDecision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            retry_after_secs: ttl.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// Process-memory state of [`Kv::Memory`]. Its rate windows run on the injected clock, so a test
/// decides when a second or a minute has passed.
#[derive(Debug)]
pub struct Memory {
    clock: Arc<dyn storage::Clock>,
    sessions: HashMap<String, SessionRecord>,
    counters: HashMap<String, (u64, DateTime<Utc>)>,
    hits_since_prune: u64,
}

/// The store: Redis or process memory.
#[derive(Clone)]
pub enum Kv {
    Memory(Arc<Mutex<Memory>>),
    Redis(Arc<RedisKv>),
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kv::Memory(_) => f.write_str("Kv::Memory"),
            Kv::Redis(r) => write!(f, "Kv::Redis({})", r.prefix),
        }
    }
}

/// How long Redis may take before a request stops waiting for it, and how long the circuit then
/// stays open (every call failing at once) before one call tries Redis again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// Connect and command timeout (and the budget of one call, reconnection included).
    pub timeout: Duration,
    /// How long calls fail at once after a failure, before the next one tries again.
    pub open_for: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings { timeout: Duration::from_millis(250), open_for: Duration::from_secs(1) }
    }
}

/// Connects to Redis with `settings`' timeouts: one reconnection attempt per call, so a request
/// never waits through the client's default back-off (seconds) while Redis is down.
pub async fn connect_redis(
    client: redis::Client,
    settings: RedisSettings,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.timeout))
        .set_response_timeout(Some(settings.timeout))
        .set_number_of_retries(1)
        .set_max_delay(settings.timeout);
    redis::aio::ConnectionManager::new_with_config(client, config).await
}

/// A Redis store behind a circuit breaker: after a call fails for the connection (refused,
/// reset, timed out), calls fail at once with [`AuthError::Unavailable`] for `open_for`, then the
/// next one tries Redis again and closes the circuit when it answers. A dependency outage thus
/// costs a request at most one `timeout`, never the client's reconnection back-off.
pub struct RedisKv {
    conn: redis::aio::ConnectionManager,
    prefix: Arc<str>,
    settings: RedisSettings,
    /// While open: when the next call may try Redis again.
    open_until: Mutex<Option<Instant>>,
    /// Rate counters kept in this process while Redis is unreachable ([`Kv::hit_or_local`]).
    local: Mutex<Memory>,
    /// [`HIT_SCRIPT`] with its SHA-1 computed once, not on every counted request.
    hit_script: redis::Script,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("prefix", &self.prefix)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Runs `call` unless the circuit is open; trips it on a connection failure or timeout.
    async fn call<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, AuthError> {
        let now = Instant::now();
        if let Some(until) = *self.open_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            if now < until {
                return Err(unavailable(until - now));
            }
        }
        let outcome = tokio::time::timeout(self.settings.timeout, call).await;
        let failure = match outcome {
            Ok(Ok(value)) => {
                *self.open_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                return Ok(value);
            }
            Ok(Err(err)) if !is_connection_failure(&err) => return Err(store_err(err)),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.settings.timeout),
        };
        let mut open = self.open_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.is_none() {
            tracing::warn!(error = %failure, open_ms = self.settings.open_for.as_millis() as u64, "Redis unreachable: circuit open");
        }
        *open = Some(Instant::now() + self.settings.open_for);
        Err(unavailable(self.settings.open_for))
    }
}

/// Whether `err` says Redis could not be reached, rather than refusing a command.
fn is_connection_failure(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal()
}

fn unavailable(wait: Duration) -> AuthError {
    AuthError::Unavailable { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
}

/// Fixed-window counter in one round trip: INCR, set the expiry on the first hit, read the TTL.
const HIT_SCRIPT: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {c, ttl}
";

impl Default for Memory {
    fn default() -> Memory {
        Memory::with_clock(Arc::new(storage::SystemClock))
    }
}

impl Memory {
    fn with_clock(clock: Arc<dyn storage::Clock>) -> Memory {
        Memory { clock, sessions: HashMap::new(), counters: HashMap::new(), hits_since_prune: 0 }
    }

    /// Counts a hit on `key` in a fixed window: the count so far and the time left.
    fn hit(&mut self, key: &str, window: Duration) -> (u64, Duration) {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        self.hits_since_prune += 1;
        if self.hits_since_prune >= 4096 {
            self.hits_since_prune = 0;
            self.counters.retain(|_, (_, end)| *end > now);
        }
        let entry = self.counters.entry(key.to_owned()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        (entry.0, (entry.1 - now).to_std().unwrap_or_default())
    }
}

fn store_err(e: impl std::fmt::Display) -> AuthError {
    AuthError::Store(e.to_string())
}

impl Kv {
    /// An in-process store whose rate windows run on `clock`.
    pub fn memory_with_clock(clock: Arc<dyn storage::Clock>) -> Kv {
        Kv::Memory(Arc::new(Mutex::new(Memory::with_clock(clock))))
    }

    /// A Redis store; `prefix` namespaces every key (one deployment, or one test, per prefix).
    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str, settings: RedisSettings) -> Kv {
        Kv::Redis(Arc::new(RedisKv {
            conn,
            prefix: Arc::from(prefix),
            settings,
            open_until: Mutex::new(None),
            local: Mutex::new(Memory::default()),
            hit_script: redis::Script::new(HIT_SCRIPT),
        }))
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Kv::Redis(_))
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
            Kv::Redis(r) => {
                let (mut conn, prefix) = (r.conn.clone(), &r.prefix);
                let json = serde_json::to_string(record).map_err(store_err)?;
                let index = format!("{prefix}usess:{}", record.user_id);
                // The per-user index lives as long as its newest session can: a user who never
                // comes back leaves nothing behind.
                let index_ttl = (record.absolute_expires_at - now).num_seconds().max(1);
                r.call(
                    redis::pipe()
                        .atomic()
                        .set_ex(format!("{prefix}sess:{hash}"), json, ttl)
                        .sadd(&index, hash)
                        .expire(&index, index_ttl)
                        .query_async::<()>(&mut conn),
                )
                .await
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
            Kv::Redis(r) => {
                let (mut conn, prefix) = (r.conn.clone(), &r.prefix);
                let json = serde_json::to_string(record).map_err(store_err)?;
                let set = redis::cmd("SET")
                    .arg(format!("{prefix}sess:{hash}"))
                    .arg(json)
                    .arg("EX")
                    .arg(ttl)
                    .arg("XX")
                    .clone();
                let done: Option<String> = r.call(set.query_async(&mut conn)).await?;
                Ok(done.is_some())
            }
        }
    }

    pub async fn get_session(&self, hash: &str) -> Result<Option<SessionRecord>, AuthError> {
        match self {
            Kv::Memory(m) => Ok(Self::lock(m)?.sessions.get(hash).cloned()),
            Kv::Redis(r) => {
                let (mut conn, prefix) = (r.conn.clone(), &r.prefix);
                let json: Option<String> = r.call(conn.get(format!("{prefix}sess:{hash}"))).await?;
                json.map(|j| serde_json::from_str(&j).map_err(store_err)).transpose()
            }
        }
    }

    pub async fn delete_session(&self, hash: &str, user_id: UserId) -> Result<bool, AuthError> {
        match self {
            Kv::Memory(m) => Ok(Self::lock(m)?.sessions.remove(hash).is_some()),
            Kv::Redis(r) => {
                let (mut conn, prefix) = (r.conn.clone(), &r.prefix);
                let (deleted, _): (u64, u64) = r
                    .call(
                        redis::pipe()
                            .atomic()
                            .del(format!("{prefix}sess:{hash}"))
                            .srem(format!("{prefix}usess:{user_id}"), hash)
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(deleted > 0)
            }
        }
    }

    /// Every live session of a user, with its token hash.
    pub async fn user_sessions(&self, user_id: UserId) -> Result<Vec<(String, SessionRecord)>, AuthError> {
        match self {
            Kv::Memory(m) => Ok(Self::lock(m)?
                .sessions
                .iter()
                .filter(|(_, r)| r.user_id == user_id)
                .map(|(h, r)| (h.clone(), r.clone()))
                .collect()),
            Kv::Redis(r) => {
                let (mut conn, prefix) = (r.conn.clone(), &r.prefix);
                let index = format!("{prefix}usess:{user_id}");
                let hashes: Vec<String> = r.call(conn.smembers(&index)).await?;
                if hashes.is_empty() {
                    return Ok(Vec::new());
                }
                // One round trip for every record.
                let keys: Vec<String> = hashes.iter().map(|h| format!("{prefix}sess:{h}")).collect();
                let records: Vec<Option<String>> = r.call(conn.mget(&keys)).await?;
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
                    r.call(conn.srem::<_, _, ()>(&index, &expired)).await?;
                }
                Ok(out)
            }
        }
    }

    /// Counts a hit on `key` in a fixed window of `window`; allowed while the count is at most
    /// `limit`.
    pub async fn hit(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision, AuthError> {
        let (count, ttl) = match self {
            Kv::Memory(m) => Memory::hit(&mut *Self::lock(m)?, key, window),
            Kv::Redis(r) => {
                let mut conn = r.conn.clone();
                let mut invocation = r.hit_script.key(format!("{}rl:{key}", r.prefix));
                invocation.arg(window.as_millis() as u64);
                let (count, ttl_ms): (u64, i64) = r.call(invocation.invoke_async(&mut conn)).await?;
                (count, Duration::from_millis(ttl_ms.max(0) as u64))
            }
        };
        Ok(RateDecision::of(count, ttl, limit))
    }

    /// Like [`Kv::hit`], but while Redis is unreachable the hit is counted in this process, so a
    /// short-window limit (sign-in attempts per minute) keeps holding — per replica rather than
    /// shared — instead of failing every request. Not for caps whose window outlasts an outage
    /// (an API key's month), which a fresh local count would reset.
    pub async fn hit_or_local(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision, AuthError> {
        match (self, self.hit(key, limit, window).await) {
            (Kv::Redis(r), Err(AuthError::Unavailable { .. })) => {
                let mut local = r.local.lock().map_err(|_| AuthError::Store("local counters poisoned".into()))?;
                let (count, ttl) = Memory::hit(&mut local, key, window);
                Ok(RateDecision::of(count, ttl, limit))
            }
            (_, decision) => decision,
        }
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
            Kv::Redis(_) => Ok(0),
        }
    }

    /// Round trip for readiness (Redis only).
    pub async fn ping(&self) -> Result<(), AuthError> {
        match self {
            Kv::Memory(_) => Ok(()),
            Kv::Redis(r) => {
                let mut conn = r.conn.clone();
                r.call(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(|_| ())
            }
        }
    }
}
