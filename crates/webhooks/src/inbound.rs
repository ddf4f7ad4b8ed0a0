//! Inbound webhooks of a workspace: sources (a provider scheme and its secrets, sealed with the
//! workspace's data key) and the persistent inbox. A delivery is verified before anything else
//! runs; an accepted event is recorded in the inbox (unique on source and event id) in the same
//! transaction as its processing — an audit event in the workspace's chain — so a replay, also
//! after a restart or on another replica, is acknowledged and not processed again. Deliveries to
//! one source that arrive together share that transaction ([`Inbox`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use crypto_vault::{Place, Purpose, Vault};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult, Statement};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tenancy::{secrets, TenancyError, TenantId, TenantTx, UserId};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{generic, standard, stripe, twilio, VerifyError};

const TABLE: &str = "webhook_sources";
const SECRETS_COLUMN: &str = "secrets_ciphertext";
/// Secrets a source holds at most (the current one and those being rotated out).
pub const MAX_SECRETS: usize = 5;

/// A provider's signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stripe,
    Standard,
    Twilio,
    Generic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stripe => "stripe",
            Kind::Standard => "standard",
            Kind::Twilio => "twilio",
            Kind::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Stripe, Kind::Standard, Kind::Twilio, Kind::Generic].into_iter().find(|k| k.as_str() == s)
    }
}

/// Non-secret settings of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Twilio: the exact public URL configured at Twilio (signatures cover it; never taken from
    /// the request's Host header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Generic: the header carrying the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// Generic: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Generic: a prefix before the signature, such as `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Generic: a header carrying a unix timestamp that is signed as `{timestamp}.{body}` and
    /// must be within 300 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
}

fn header_name_ok(h: &str) -> bool {
    !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Settings {
    fn check(&self, kind: Kind) -> Result<(), TenancyError> {
        let generic_fields = self.signature_header.is_some()
            || self.encoding.is_some()
            || self.prefix.is_some()
            || self.timestamp_header.is_some();
        let bad = |message| Err(TenancyError::Rejected { code: "invalid_settings", message });
        match kind {
            Kind::Twilio => match &self.url {
                Some(u) if url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some()) => {}
                _ => return bad("twilio sources need the https url configured at Twilio"),
            },
            Kind::Generic => {
                if !self.signature_header.as_deref().is_some_and(header_name_ok) {
                    return bad("generic sources need a signature_header");
                }
                if !matches!(self.encoding.as_deref(), None | Some("hex") | Some("base64")) {
                    return bad("encoding is hex or base64");
                }
                if self.timestamp_header.as_deref().is_some_and(|h| !header_name_ok(h)) {
                    return bad("header names are letters, digits, - and _");
                }
                if self.prefix.as_ref().is_some_and(|p| p.len() > 32 || p.chars().any(char::is_control)) {
                    return bad("prefix is at most 32 characters");
                }
            }
            Kind::Stripe | Kind::Standard => {}
        }
        if kind != Kind::Twilio && self.url.is_some() || kind != Kind::Generic && generic_fields {
            return bad("a setting this scheme does not take");
        }
        Ok(())
    }

    fn scheme(&self) -> generic::Scheme {
        let encoding =
            if self.encoding.as_deref() == Some("base64") { generic::Encoding::Base64 } else { generic::Encoding::Hex };
        let mut scheme = generic::Scheme::new(self.signature_header.clone().unwrap_or_default(), encoding);
        if let Some(prefix) = &self.prefix {
            scheme = scheme.with_prefix(prefix.clone());
        }
        if let Some(header) = &self.timestamp_header {
            scheme = scheme.with_timestamp(header.clone(), standard::DEFAULT_TOLERANCE);
        }
        scheme
    }
}

/// A source as its workspace's administrators see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: Uuid,
    pub tenant: TenantId,
    pub kind: Kind,
    pub name: String,
    pub settings: Settings,
    /// How many secrets are configured (0: deliveries answer 500 and nothing is processed).
    pub secrets: usize,
    pub accepted: i64,
    pub signature_failures: i64,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn stmt(tx: &TenantTx, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    tx.statement(sql, values)
}

const COLUMNS: &str = "s.id, s.tenant_id, s.kind, s.name, s.settings, s.sealed_count, s.created_at,
    (SELECT COUNT(*) FROM webhook_inbox i WHERE i.source_id = s.id) AS accepted,
    COALESCE(st.signature_failures, 0) AS signature_failures, st.last_failure_at";
const FROM: &str = "webhook_sources s LEFT JOIN webhook_source_stats st ON st.source_id = s.id";

fn from_row(row: &QueryResult) -> Result<Source, TenancyError> {
    let kind: String = row.try_get("", "kind")?;
    let settings: String = row.try_get("", "settings")?;
    let count: i32 = row.try_get("", "sealed_count")?;
    Ok(Source {
        id: row.try_get("", "id")?,
        tenant: TenantId(row.try_get("", "tenant_id")?),
        kind: Kind::parse(&kind).ok_or_else(|| TenancyError::Internal(format!("unknown webhook kind {kind:?}")))?,
        name: row.try_get("", "name")?,
        settings: serde_json::from_str(&settings)
            .map_err(|_| TenancyError::Internal("webhook settings are not JSON".into()))?,
        secrets: usize::try_from(count).unwrap_or(0),
        accepted: row.try_get("", "accepted")?,
        signature_failures: row.try_get("", "signature_failures")?,
        last_failure_at: row.try_get("", "last_failure_at")?,
        created_at: row.try_get("", "created_at")?,
    })
}

/// Secrets of a source, newest first. `Debug` prints how many, never them.
pub struct SourceSecrets(pub Vec<SecretString>);

impl std::fmt::Debug for SourceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceSecrets({} secrets)", self.0.len())
    }
}

impl SourceSecrets {
    /// Each secret must parse for the scheme; 1 to [`MAX_SECRETS`] of them.
    fn check(&self, kind: Kind) -> Result<(), TenancyError> {
        if self.0.is_empty() || self.0.len() > MAX_SECRETS {
            return Err(TenancyError::Rejected { code: "invalid_secrets", message: "a source holds 1 to 5 secrets" });
        }
        for s in &self.0 {
            let s = s.expose_secret();
            let ok = match kind {
                Kind::Stripe => stripe::SigningSecret::parse(s).is_ok(),
                Kind::Standard => standard::Secret::parse(s).is_ok(),
                Kind::Twilio => twilio::AuthToken::parse(s).is_ok(),
                Kind::Generic => generic::Secret::parse(s).is_ok(),
            };
            if !ok || s.len() > 1024 {
                return Err(TenancyError::Rejected {
                    code: "invalid_secrets",
                    message: "a secret this scheme cannot use",
                });
            }
        }
        Ok(())
    }

    fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let list: Vec<&str> = self.0.iter().map(|s| s.expose_secret()).collect();
        zeroize::Zeroizing::new(serde_json::to_vec(&list).unwrap_or_default())
    }

    fn from_json(bytes: &[u8]) -> Result<SourceSecrets, TenancyError> {
        let list: Vec<String> = serde_json::from_slice(bytes)
            .map_err(|_| TenancyError::Internal("sealed webhook secrets are not JSON".into()))?;
        Ok(SourceSecrets(list.into_iter().map(SecretString::from).collect()))
    }
}

async fn seal(
    tx: &TenantTx,
    vault: &Vault,
    id: Uuid,
    secrets: &SourceSecrets,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRETS_COLUMN, row: id };
    secrets::seal(tx, vault, Purpose::IntegrationTokens, &place, &secrets.to_json(), now).await
}

/// Creates a source (`webhooks.manage`). Without secrets it exists but refuses every delivery
/// with 500 until secrets are set (fail closed).
pub async fn create(
    tx: &TenantTx,
    vault: &Vault,
    kind: Kind,
    name: &str,
    settings: Settings,
    secrets: Option<SourceSecrets>,
    now: DateTime<Utc>,
) -> Result<Source, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenancyError::Invalid("name must be 1 to 200 characters without control characters"));
    }
    settings.check(kind)?;
    let id = Uuid::new_v4();
    let (sealed, version, count) = match &secrets {
        Some(s) => {
            s.check(kind)?;
            let (sealed, version) = seal(tx, vault, id, s, now).await?;
            (Some(sealed), Some(secrets::version_value(version)), s.0.len())
        }
        None => (None, None, 0),
    };
    let settings_json = serde_json::to_string(&settings).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO webhook_sources (id, tenant_id, kind, name, settings, secrets_ciphertext, ciphertext_version, sealed_count, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            vec![
                id.into(),
                tx.tenant().0.into(),
                kind.as_str().into(),
                name.into(),
                settings_json.into(),
                sealed.into(),
                version.unwrap_or(sea_orm::Value::Int(None)),
                i32::try_from(count).unwrap_or(0).into(),
                tx.user().0.into(),
                now.into(),
            ],
        ))
        .await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_source.created",
        serde_json::json!({ "source_id": id, "kind": kind.as_str(), "name": name, "secrets": count }),
        now,
    )
    .await?;
    get(tx, id).await
}

/// The workspace's sources (`webhooks.manage`).
pub async fn list(tx: &TenantTx) -> Result<Vec<Source>, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE s.tenant_id = $1 ORDER BY s.created_at, s.id"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// One source (`webhooks.manage`).
pub async fn get(tx: &TenantTx, id: Uuid) -> Result<Source, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE s.tenant_id = $1 AND s.id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// Replaces the secrets (`webhooks.manage`): `secrets` first, then — when `keep_previous` — the
/// ones already configured (so deliveries signed with either verify while the sender rotates),
/// at most [`MAX_SECRETS`] in all.
pub async fn set_secrets(
    tx: &TenantTx,
    vault: &Vault,
    id: Uuid,
    new: SourceSecrets,
    keep_previous: bool,
    now: DateTime<Utc>,
) -> Result<Source, TenancyError> {
    let source = get(tx, id).await?;
    let mut all = new;
    if keep_previous {
        if let Some(old) = open_secrets(tx, vault, id).await? {
            all.0.extend(old.0);
        }
        all.0.truncate(MAX_SECRETS);
    }
    all.check(source.kind)?;
    let (sealed, version) = seal(tx, vault, id, &all, now).await?;
    tx.conn()
        .execute(stmt(
            tx,
            "UPDATE webhook_sources SET secrets_ciphertext = $1, ciphertext_version = $2, sealed_count = $3, updated_at = $4
              WHERE tenant_id = $5 AND id = $6",
            vec![
                sealed.into(),
                secrets::version_value(version),
                i32::try_from(all.0.len()).unwrap_or(0).into(),
                now.into(),
                tx.tenant().0.into(),
                id.into(),
            ],
        ))
        .await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_source.secrets_rotated",
        serde_json::json!({ "source_id": id, "secrets": all.0.len(), "kept_previous": keep_previous }),
        now,
    )
    .await?;
    get(tx, id).await
}

/// Deletes a source and its inbox (`webhooks.manage`).
pub async fn delete(tx: &TenantTx, id: Uuid, now: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM webhook_sources WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Webhook, "webhook_source.deleted", serde_json::json!({ "source_id": id }), now).await
}

async fn open_secrets(tx: &TenantTx, vault: &Vault, id: Uuid) -> Result<Option<SourceSecrets>, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT secrets_ciphertext FROM webhook_sources WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let sealed: Option<Vec<u8>> = row.try_get("", "secrets_ciphertext")?;
    open_sealed(tx, vault, id, sealed.as_deref()).await
}

/// Opens a source's sealed secrets column (`None`: no secret configured).
async fn open_sealed(
    tx: &TenantTx,
    vault: &Vault,
    id: Uuid,
    sealed: Option<&[u8]>,
) -> Result<Option<SourceSecrets>, TenancyError> {
    let Some(sealed) = sealed else { return Ok(None) };
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRETS_COLUMN, row: id };
    Ok(Some(SourceSecrets::from_json(&secrets::open(tx, vault, &place, sealed).await?)?))
}

/// One inbound delivery as the HTTP layer received it.
#[derive(Debug)]
pub struct Delivery {
    /// Header values by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// The request's query string exactly as received, without the `?` (Twilio signs it).
    pub query: Option<String>,
    pub body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

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

/// What [`Inbox::receive`] answers for one delivery.
pub type Outcome = Result<(Kind, Received), ReceiveError>;

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
    lanes: std::sync::Mutex<HashMap<(TenantId, Uuid), Arc<Lane>>>,
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
    key: (TenantId, Uuid),
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
        tenant: TenantId,
        source: Uuid,
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
    async fn record(mut self, db: &tenancy::Db, vault: &Vault, tenant: TenantId, source: Uuid) {
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

/// A verified delivery, ready for the inbox.
struct Event {
    event_id: String,
    event_type: Option<String>,
    body_sha256: String,
}

/// Verifies and records `arrivals` for `source`, answering each in order.
///
/// On PostgreSQL one transaction does both: a concurrent copy's inbox insert (from another
/// replica) waits on the primary key for this one's commit and then finds it. On SQLite the check
/// runs in a read-only transaction and the recording in a second one whose first statement
/// writes, so concurrent writers queue on the write lock instead of failing on a stale snapshot.
async fn receive_batch(
    db: &tenancy::Db,
    vault: &Vault,
    tenant: TenantId,
    source: Uuid,
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

/// A source's kind, and each arrival's time and verdict.
struct Checked {
    kind: Kind,
    verdicts: Vec<(DateTime<Utc>, Result<Event, VerifyError>)>,
}

/// Reads the source once and verifies every arrival against it; `None` when there is no such
/// live source.
async fn check(
    tx: &TenantTx,
    vault: &Vault,
    source: Uuid,
    arrivals: &[(&Delivery, DateTime<Utc>)],
) -> Result<Option<Checked>, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT s.kind, s.settings, s.secrets_ciphertext FROM webhook_sources s JOIN workspaces w ON w.id = s.tenant_id
              WHERE s.tenant_id = $1 AND s.id = $2 AND w.deleted_at IS NULL",
            vec![tx.tenant().0.into(), source.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let kind: String = row.try_get("", "kind")?;
    let Some(kind) = Kind::parse(&kind) else { return Ok(None) };
    let settings: String = row.try_get("", "settings")?;
    let settings: Settings =
        serde_json::from_str(&settings).map_err(|_| TenancyError::Internal("webhook settings are not JSON".into()))?;
    let sealed: Option<Vec<u8>> = row.try_get("", "secrets_ciphertext")?;
    let secrets = open_sealed(tx, vault, source, sealed.as_deref()).await?.unwrap_or(SourceSecrets(Vec::new()));
    let verdicts = arrivals
        .iter()
        .map(|(delivery, now)| {
            let verdict = verify(kind, &settings, &secrets, delivery, *now).map(|(event_id, event_type)| Event {
                event_id,
                event_type,
                body_sha256: hex::encode(Sha256::digest(&delivery.body)),
            });
            (*now, verdict)
        })
        .collect();
    Ok(Some(Checked { kind, verdicts }))
}

/// Counts the batch's signature failures on the source, inserts its verified events into the
/// inbox and processes those that were not there already; each arrival's answer, in order.
async fn record(tx: &TenantTx, source: Uuid, checked: &Checked) -> Result<Vec<Outcome>, TenancyError> {
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
    source: Uuid,
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
    let rows = tx.conn().query_all(stmt(tx, &sql, values)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "event_id").map_err(TenancyError::from)).collect()
}

/// Checks the delivery's signature; the event id (and type) it carries.
fn verify(
    kind: Kind,
    settings: &Settings,
    secrets: &SourceSecrets,
    d: &Delivery,
    now: DateTime<Utc>,
) -> Result<(String, Option<String>), VerifyError> {
    let body_id = || format!("sha256:{}", hex::encode(Sha256::digest(&d.body)));
    let json_field = |field: &str| {
        serde_json::from_slice::<serde_json::Value>(&d.body)
            .ok()
            .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(|s| s.chars().take(200).collect::<String>()))
    };
    let raw: Vec<&str> = secrets.0.iter().map(|s| s.expose_secret()).collect();
    match kind {
        Kind::Stripe => {
            let keys = raw.iter().filter_map(|s| stripe::SigningSecret::parse(s).ok()).collect::<Vec<_>>();
            stripe::verify(d.header(stripe::SIGNATURE_HEADER), &d.body, &keys, now)?;
            Ok((json_field("id").unwrap_or_else(body_id), json_field("type")))
        }
        Kind::Standard => {
            let keys = raw.iter().filter_map(|s| standard::Secret::parse(s).ok()).collect::<Vec<_>>();
            let headers = standard::Headers {
                id: d.header(standard::ID_HEADER),
                timestamp: d.header(standard::TIMESTAMP_HEADER),
                signature: d.header(standard::SIGNATURE_HEADER),
            };
            standard::verify(&headers, &d.body, &keys, now)?;
            Ok((headers.id.unwrap_or_default().to_owned(), json_field("type")))
        }
        Kind::Twilio => {
            let keys = raw.iter().filter_map(|s| twilio::AuthToken::parse(s).ok()).collect::<Vec<_>>();
            let url = twilio_url(settings.url.as_deref().unwrap_or_default(), d.query.as_deref());
            let headers = twilio::Headers {
                signature: d.header(twilio::SIGNATURE_HEADER),
                settings: d.header(twilio::SIGNATURE_SETTINGS_HEADER),
            };
            twilio::verify(&headers, &url, &d.body, &keys)?;
            // Only signed material names the event: the URL (its query included) and the
            // parameters as signed (sorted, decoded), or the body that `bodySHA256` in the signed
            // URL pins. An unsigned header such as `I-Twilio-Idempotency-Token` or the signature
            // settings, or a re-encoded or reordered body, must not make a replay look new.
            let signed = if twilio::has_body_hash(&url) {
                d.body.to_vec()
            } else {
                let mut params: Vec<(String, String)> =
                    url::form_urlencoded::parse(&d.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                params.sort();
                params.into_iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>().join("\n").into_bytes()
            };
            let mut h = Sha256::new();
            h.update(url.as_bytes());
            h.update([0]);
            h.update(&signed);
            Ok((format!("sha256:{}", hex::encode(h.finalize())), None))
        }
        Kind::Generic => {
            let keys = raw.iter().filter_map(|s| generic::Secret::parse(s).ok()).collect::<Vec<_>>();
            let scheme = settings.scheme();
            let headers = generic::Headers {
                signature: settings.signature_header.as_deref().and_then(|h| d.header(h)),
                timestamp: settings.timestamp_header.as_deref().and_then(|h| d.header(h)),
            };
            generic::verify(&scheme, &headers, &d.body, &keys, now)?;
            // The signed material names the event: the timestamp (when signed) and the body.
            let id = match headers.timestamp {
                Some(t) => {
                    let mut h = Sha256::new();
                    h.update(t.as_bytes());
                    h.update(b".");
                    h.update(&d.body);
                    format!("sha256:{}", hex::encode(h.finalize()))
                }
                None => body_id(),
            };
            Ok((id, None))
        }
    }
}

/// The URL Twilio requested, as it signed it: the source's configured URL up to its path (scheme,
/// host, port and path are the configured ones, never the request's `Host` header) followed by the
/// request's own query string as received. The query is Twilio's to choose — it appends
/// `bodySHA256` to JSON deliveries — and is signed, so a query the configured URL carries is not
/// used: a delivery to it arrives with that query anyway.
fn twilio_url(configured: &str, query: Option<&str>) -> String {
    let base = configured.split(['?', '#']).next().unwrap_or_default();
    match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{base}?{query}"),
        None => base.to_owned(),
    }
}

/// Counts `n` signature failures on a source, the last of them at `last_at`.
async fn count_failures(tx: &TenantTx, source: Uuid, n: usize, last_at: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO webhook_source_stats (source_id, tenant_id, accepted, signature_failures, last_failure_at)
             VALUES ($1, $2, 0, $3, $4)
             ON CONFLICT (source_id) DO UPDATE SET signature_failures = webhook_source_stats.signature_failures + excluded.signature_failures,
                 last_failure_at = excluded.last_failure_at",
            vec![source.into(), tx.tenant().0.into(), i64::try_from(n).unwrap_or(i64::MAX).into(), last_at.into()],
        ))
        .await?;
    Ok(())
}
