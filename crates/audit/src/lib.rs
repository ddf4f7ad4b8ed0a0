//! The append-only, hash-chained audit trail, written in the same transaction as the change it
//! records.
//! It must never store a secret value in a payload, nor update or delete an event outside `purge`.
//!
//! Each tenant (workspace) has one chain; events that belong to no workspace (sign-ins, resets)
//! go to the platform chain, [`PLATFORM_CHAIN`]. Every event carries its position (`seq`), the
//! hash of the previous event and its own hash, [`link_hash`] — SHA-256 over a length-prefixed
//! encoding of every field — so an edited, removed or reordered event breaks the chain and
//! [`verify`] names the first broken link.
//!
//! On PostgreSQL the database chains each row itself (a trigger holding the chain's head row
//! lock, so concurrent writers stay linear) and refuses UPDATE, DELETE and TRUNCATE even for the
//! owner; only the `rampart_audit` role may delete, and only events past the one-year retention,
//! and every such purge is recorded in the chain it shortened. On SQLite this crate chains the row
//! (a `UNIQUE (tenant_id, seq)` keeps chains linear) and triggers refuse changes.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod verify;

pub use verify::{verify, Broken, Verification};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, QueryResult, Statement, TransactionTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The chain of events that belong to no workspace (authentication, for instance).
pub const PLATFORM_CHAIN: Uuid = Uuid::nil();

/// The `prev_hash` of a chain's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Audit events are kept at least this long. The seeds promise "retained ≥ 1 year"; OWASP ASVS
/// 5.0 V16.4 asks that logs be protected from modification and kept per the retention policy.
/// The database enforces the same floor (`migrations/*/5_audit.sql`).
pub const MIN_RETENTION_DAYS: i64 = 365;

/// Errors of the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid audit event: {0}")]
    Invalid(&'static str),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

/// What kind of thing happened. The categories the seeds list, plus the purge's own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Sign-in success and failure, sign-out, refresh, reuse detected, reset, lockout, sessions.
    Authentication,
    /// Refusals: endpoint, user, required and actual role or permission.
    Authorization,
    /// Members, roles, invitations and cross-workspace grants.
    Membership,
    /// The workspace itself: created, renamed, deleted.
    Workspace,
    /// Inbound and outbound webhook events (source, type, processed or not).
    Webhook,
    /// Language-model usage: model, token counts, estimated cost, calling function.
    LlmUsage,
    /// Action executions: type, success, error, duration.
    Action,
    /// Data synchronisation: items, success.
    DataSync,
    /// Secret and key operations: the event, never the value.
    Secret,
    /// Data exports and erasures.
    Privacy,
    /// Retention purges of the trail itself.
    Retention,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Authentication,
        Category::Authorization,
        Category::Membership,
        Category::Workspace,
        Category::Webhook,
        Category::LlmUsage,
        Category::Action,
        Category::DataSync,
        Category::Secret,
        Category::Privacy,
        Category::Retention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Authorization => "authorization",
            Category::Membership => "membership",
            Category::Workspace => "workspace",
            Category::Webhook => "webhook",
            Category::LlmUsage => "llm_usage",
            Category::Action => "action",
            Category::DataSync => "data_sync",
            Category::Secret => "secret",
            Category::Privacy => "privacy",
            Category::Retention => "retention",
        }
    }

    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append. `payload` must never hold a secret value: record that a key rotated, not
/// the key.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub category: Category,
    /// `resource.verb`-style name, lowercase: `auth.signin_failed`, `member.role_changed`.
    pub action: String,
    pub actor: Option<Uuid>,
    pub request_id: Option<String>,
    pub payload: serde_json::Value,
}

impl NewEvent {
    pub fn new(category: Category, action: impl Into<String>, payload: serde_json::Value) -> NewEvent {
        NewEvent { category, action: action.into(), actor: None, request_id: None, payload }
    }

    /// The checks [`append`] makes before writing anything, for a caller that appends later.
    pub fn check(&self) -> Result<(), AuditError> {
        check_action(&self.action)
    }

    pub fn by(mut self, actor: Option<Uuid>) -> NewEvent {
        self.actor = actor;
        self
    }

    pub fn request(mut self, request_id: Option<String>) -> NewEvent {
        self.request_id = request_id;
        self
    }
}

/// A stored event, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub chain: Uuid,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub category: String,
    pub action: String,
    pub actor: Option<Uuid>,
    pub request_id: Option<String>,
    /// The JSON text exactly as stored and hashed.
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    /// The hash this event's content should have.
    pub fn computed_hash(&self) -> String {
        link_hash(&Link {
            chain: self.chain,
            seq: self.seq,
            prev_hash: &self.prev_hash,
            id: self.id,
            occurred_at: self.occurred_at,
            category: &self.category,
            action: &self.action,
            actor: self.actor,
            request_id: self.request_id.as_deref(),
            payload: &self.payload,
        })
    }
}

/// The fields one link's hash covers.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub chain: Uuid,
    pub seq: i64,
    pub prev_hash: &'a str,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub category: &'a str,
    pub action: &'a str,
    pub actor: Option<Uuid>,
    pub request_id: Option<&'a str>,
    pub payload: &'a str,
}

/// SHA-256 (FIPS 180-4), hex, of one link: a version tag, then each field as its byte length, a
/// colon, the value and a newline (`~` and a newline for an absent value). The time counts
/// microseconds since the Unix epoch. PostgreSQL's chaining trigger computes the same bytes.
pub fn link_hash(link: &Link<'_>) -> String {
    fn field(h: &mut Sha256, value: Option<&str>) {
        match value {
            None => h.update(b"~\n"),
            Some(v) => {
                h.update(v.len().to_string().as_bytes());
                h.update(b":");
                h.update(v.as_bytes());
                h.update(b"\n");
            }
        }
    }
    let mut h = Sha256::new();
    h.update(b"rampart-audit-v1\n");
    field(&mut h, Some(&link.chain.to_string()));
    field(&mut h, Some(&link.seq.to_string()));
    field(&mut h, Some(link.prev_hash));
    field(&mut h, Some(&link.id.to_string()));
    field(&mut h, Some(&link.occurred_at.timestamp_micros().to_string()));
    field(&mut h, Some(link.category));
    field(&mut h, Some(link.action));
    field(&mut h, link.actor.map(|a| a.to_string()).as_deref());
    field(&mut h, link.request_id);
    field(&mut h, Some(link.payload));
    hex::encode(h.finalize())
}

fn check_action(action: &str) -> Result<(), AuditError> {
    let mut chars = action.chars();
    let ok = action.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(AuditError::Invalid("action must be 1 to 64 of a-z, 0-9, '_' and '.', starting with a letter"))
    }
}

/// Personal data and secrets in a payload's strings become type tags (`[EMAIL]`, `[SECRET]`…)
/// before the event is hashed, so the chain never holds them and erasing a person never means
/// rewriting it. IP addresses stay: a security event's source address is part of the record
/// (OWASP ASVS 5.0 V16.2.1), kept for the retention period like the rest of it.
pub fn scrub_value(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = pii::scrub_keeping(text, &[pii::Kind::IpAddress]) {
                *text = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_value),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(scrub_value),
        _ => {}
    }
}

/// Microsecond precision: what both stores keep, so the hash of a read-back event matches.
fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

pub(crate) fn stmt<C: ConnectionTrait>(conn: &C, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

/// Appends `event` to `chain` on `conn` — the caller's transaction, so the event commits or rolls
/// back with the change it records. Returns the event's id.
///
/// On PostgreSQL the row policy admits the current tenant's chain (the tenant context set by
/// `tenancy`) or the platform chain; the database numbers and links the row.
pub async fn append<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<Uuid, AuditError> {
    let id = Uuid::new_v4();
    insert_linked(conn, chain, &[(id, event, now)]).await?;
    Ok(id)
}

/// Appends `events` to `chain` in order, like [`append`] for each of them. On PostgreSQL they go
/// in multi-row inserts of up to [`APPEND_CHUNK`] events: the chaining trigger runs per row, each
/// run seeing the head the one before it moved, so one statement links them all in a single round
/// trip while the chain's head lock is held. Returns their ids.
pub async fn append_many<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    events: &[(NewEvent, DateTime<Utc>)],
) -> Result<Vec<Uuid>, AuditError> {
    let rows: Vec<(Uuid, &NewEvent, DateTime<Utc>)> = events.iter().map(|(e, now)| (Uuid::new_v4(), e, *now)).collect();
    for chunk in rows.chunks(APPEND_CHUNK) {
        insert_linked(conn, chain, chunk).await?;
    }
    Ok(rows.iter().map(|(id, _, _)| *id).collect())
}

/// The payload text an event is stored and hashed with (its action checked, its personal data
/// scrubbed).
fn stored_payload(event: &NewEvent) -> Result<String, AuditError> {
    check_action(&event.action)?;
    let mut payload = event.payload.clone();
    scrub_value(&mut payload);
    Ok(payload.to_string())
}

/// Appends `rows` to `chain` in order: numbered and linked by the database's trigger on
/// PostgreSQL, by this crate on SQLite.
async fn insert_linked<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    rows: &[(Uuid, &NewEvent, DateTime<Utc>)],
) -> Result<(), AuditError> {
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        insert_linked_by_trigger(conn, chain, rows).await
    } else {
        link_in_order(conn, chain, rows).await
    }
}

/// PostgreSQL: one insert of `rows` into `chain`; the chaining trigger numbers and links each
/// (whatever is bound for seq, prev_hash and hash).
async fn insert_linked_by_trigger<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    rows: &[(Uuid, &NewEvent, DateTime<Utc>)],
) -> Result<(), AuditError> {
    const COLUMNS: usize = 11;
    let mut values = Vec::with_capacity(rows.len() * COLUMNS);
    for (id, event, now) in rows {
        values.extend([
            (*id).into(),
            chain.into(),
            0i64.into(),
            truncate_micros(*now).into(),
            event.category.as_str().into(),
            event.action.as_str().into(),
            event.actor.into(),
            event.request_id.clone().into(),
            stored_payload(event)?.into(),
            "".into(),
            "".into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO audit_events (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash) VALUES {}",
        storage::values_rows(rows.len(), COLUMNS)
    );
    conn.execute(stmt(conn, &sql, values)).await?;
    Ok(())
}

/// Events one insert of [`append_many`] carries at most (11 parameters each, far below
/// PostgreSQL's 65,535).
pub const APPEND_CHUNK: usize = 256;

/// An event's fields before it is linked.
struct Row<'a> {
    id: Uuid,
    chain: Uuid,
    occurred_at: DateTime<Utc>,
    category: &'a str,
    action: &'a str,
    actor: Option<Uuid>,
    request_id: Option<&'a str>,
    payload: &'a str,
}

/// SQLite: takes the write lock, so no other writer can move the chain meanwhile (it waits, where
/// a transaction that read first would fail its write on a stale snapshot), reads the chain's
/// newest link once and inserts each row linked to the one before.
async fn link_in_order<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    rows: &[(Uuid, &NewEvent, DateTime<Utc>)],
) -> Result<(), AuditError> {
    storage::claim_sqlite_write_lock(conn).await?;
    let mut head = head_from_events(conn, chain).await?;
    for (id, event, now) in rows {
        let payload = stored_payload(event)?;
        let row = Row {
            id: *id,
            chain,
            occurred_at: truncate_micros(*now),
            category: event.category.as_str(),
            action: &event.action,
            actor: event.actor,
            request_id: event.request_id.as_deref(),
            payload: &payload,
        };
        head = Some(insert_link(conn, &row, head).await?);
    }
    Ok(())
}

/// SQLite: inserts `row` as the link after `head` (the chain's newest (seq, hash), `None` for an
/// empty chain), with its position, previous hash and own hash; returns its (seq, hash), the
/// chain's new head.
async fn insert_link<C: ConnectionTrait>(
    conn: &C,
    row: &Row<'_>,
    head: Option<(i64, String)>,
) -> Result<(i64, String), DbErr> {
    let (seq, prev_hash) = head.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
    let hash = link_hash(&Link {
        chain: row.chain,
        seq,
        prev_hash: &prev_hash,
        id: row.id,
        occurred_at: row.occurred_at,
        category: row.category,
        action: row.action,
        actor: row.actor,
        request_id: row.request_id,
        payload: row.payload,
    });
    conn.execute(stmt(
        conn,
        "INSERT INTO audit_events (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        vec![
            row.id.into(),
            row.chain.into(),
            seq.into(),
            row.occurred_at.into(),
            row.category.into(),
            row.action.into(),
            row.actor.into(),
            row.request_id.map(str::to_owned).into(),
            row.payload.into(),
            prev_hash.into(),
            hash.clone().into(),
        ],
    ))
    .await?;
    Ok((seq, hash))
}

async fn head_from_events<C: ConnectionTrait>(conn: &C, chain: Uuid) -> Result<Option<(i64, String)>, AuditError> {
    let row = conn
        .query_one(stmt(
            conn,
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
            vec![chain.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("", "seq")?, r.try_get("", "hash")?)),
        None => None,
    })
}

/// Which events of a chain to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub category: Option<Category>,
    pub actor: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only events before this position (the previous page's last `seq`).
    pub before_seq: Option<i64>,
}

/// Most events one page returns.
pub const MAX_PAGE: u64 = 200;

const COLUMNS: &str =
    "id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash";

/// The newest events of `chain` matching `filter`, newest first, at most `limit` (1 to
/// [`MAX_PAGE`]). On PostgreSQL the row policy decides what the caller may see.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    filter: &Filter,
    limit: u64,
) -> Result<Vec<Event>, AuditError> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE tenant_id = $1");
    let mut values: Vec<sea_orm::Value> = vec![chain.into()];
    let mut push = |clause: &str, value: sea_orm::Value| {
        values.push(value);
        sql.push_str(&format!(" AND {clause} ${}", values.len()));
    };
    if let Some(c) = filter.category {
        push("category =", c.as_str().into());
    }
    if let Some(a) = filter.actor {
        push("actor_id =", a.into());
    }
    if let Some(t) = filter.since {
        push("occurred_at >=", t.into());
    }
    if let Some(t) = filter.until {
        push("occurred_at <", t.into());
    }
    if let Some(s) = filter.before_seq {
        push("seq <", s.into());
    }
    values.push(limit.clamp(1, MAX_PAGE).into());
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", values.len()));
    let rows = conn.query_all(stmt(conn, &sql, values)).await?;
    rows.iter().map(event_from_row).collect()
}

pub(crate) fn event_from_row(row: &QueryResult) -> Result<Event, AuditError> {
    Ok(Event {
        id: row.try_get("", "id")?,
        chain: row.try_get("", "tenant_id")?,
        seq: row.try_get("", "seq")?,
        occurred_at: row.try_get("", "occurred_at")?,
        category: row.try_get("", "category")?,
        action: row.try_get("", "action")?,
        actor: row.try_get("", "actor_id")?,
        request_id: row.try_get("", "request_id")?,
        payload: row.try_get("", "payload")?,
        prev_hash: row.try_get("", "prev_hash")?,
        hash: row.try_get("", "hash")?,
    })
}

/// Every chain (what the connection may see of them). PostgreSQL keeps one head row per chain,
/// so this reads those rather than scanning the events.
pub async fn chains<C: ConnectionTrait>(conn: &C) -> Result<Vec<Uuid>, AuditError> {
    let sql = match conn.get_database_backend() {
        DatabaseBackend::Postgres => "SELECT tenant_id FROM audit_heads ORDER BY tenant_id",
        _ => "SELECT DISTINCT tenant_id FROM audit_events ORDER BY tenant_id",
    };
    let rows = conn.query_all(stmt(conn, sql, vec![])).await?;
    rows.iter().map(|r| Ok(r.try_get("", "tenant_id")?)).collect()
}

/// The role that reads every chain and alone may purge (PostgreSQL).
pub const AUDIT_ROLE: &str = "rampart_audit";

/// Opens a read-only view of every chain, for verification and operators: on PostgreSQL a
/// transaction as the `rampart_audit` role (the connection must be a member of it, as the owner
/// role is); on SQLite a plain transaction.
pub async fn begin_auditor<C: TransactionTrait>(db: &C) -> Result<sea_orm::DatabaseTransaction, AuditError> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SET LOCAL ROLE {AUDIT_ROLE}")).await?;
        txn.execute_unprepared("SET TRANSACTION READ ONLY").await?;
    }
    Ok(txn)
}

/// What a retention purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// (chain, events removed) for every chain that was shortened.
    pub chains: Vec<(Uuid, u64)>,
}

/// Removes, in each chain, the oldest events recorded before `now - retention_days` — always a
/// prefix of the chain — and records each purge in the chain it shortened (with the hash of the
/// last removed event, from which the rest verifies). `retention_days` below
/// [`MIN_RETENTION_DAYS`] is refused.
///
/// On PostgreSQL this runs as the `rampart_audit` role (`SET LOCAL ROLE`), so the connection must
/// be a member of it: the owner role is (`deploy/postgres/bootstrap-roles.sql`), the server's
/// runtime role never is.
pub async fn purge<C: TransactionTrait>(
    db: &C,
    retention_days: i64,
    now: DateTime<Utc>,
) -> Result<PurgeReport, AuditError> {
    if retention_days < MIN_RETENTION_DAYS {
        return Err(AuditError::Invalid("audit retention must be at least 365 days"));
    }
    let cutoff = truncate_micros(now) - chrono::Duration::days(retention_days);
    let txn = db.begin().await?;
    let postgres = txn.get_database_backend() == DatabaseBackend::Postgres;
    if postgres {
        txn.execute_unprepared(&format!("SET LOCAL ROLE {AUDIT_ROLE}")).await?;
    }
    // SQLite: it reads each chain's anchor and head before it deletes and links.
    storage::claim_sqlite_write_lock(&txn).await?;
    let mut report = PurgeReport::default();
    for chain in chains(&txn).await? {
        let bound = txn
            .query_one(stmt(
                &txn,
                "SELECT (SELECT min(seq) FROM audit_events WHERE tenant_id = $1 AND occurred_at >= $2) AS young,
                        (SELECT max(seq) FROM audit_events WHERE tenant_id = $1) AS newest,
                        (SELECT min(seq) FROM audit_events WHERE tenant_id = $1) AS oldest",
                vec![chain.into(), cutoff.into()],
            ))
            .await?;
        let Some(bound) = bound else { continue };
        let young: Option<i64> = bound.try_get("", "young")?;
        let newest: Option<i64> = bound.try_get("", "newest")?;
        let oldest: Option<i64> = bound.try_get("", "oldest")?;
        let (Some(newest), Some(oldest)) = (newest, oldest) else { continue };
        let through = young.map_or(newest, |y| y - 1);
        if through < oldest {
            continue;
        }
        // PostgreSQL records the purge itself (a statement trigger, with the anchor); on SQLite
        // this crate does, so it reads the anchor and the head before they go.
        let record = if postgres {
            None
        } else {
            let anchor = txn
                .query_one(stmt(
                    &txn,
                    "SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2",
                    vec![chain.into(), through.into()],
                ))
                .await?
                .map(|r| r.try_get::<String>("", "hash"))
                .transpose()?;
            Some((anchor, head_from_events(&txn, chain).await?))
        };
        let deleted = txn
            .execute(stmt(
                &txn,
                "DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2",
                vec![chain.into(), through.into()],
            ))
            .await?
            .rows_affected();
        if let Some((anchor, head)) = record {
            let payload =
                serde_json::json!({ "through_seq": through, "anchor_hash": anchor, "deleted": deleted }).to_string();
            let row = Row {
                id: Uuid::new_v4(),
                chain,
                occurred_at: truncate_micros(now),
                category: Category::Retention.as_str(),
                action: "retention.purged",
                actor: None,
                request_id: None,
                payload: &payload,
            };
            insert_link(&txn, &row, head).await?;
        }
        report.chains.push((chain, deleted));
    }
    txn.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            id: Uuid::from_u128(1),
            chain: Uuid::from_u128(2),
            seq: 1,
            occurred_at: DateTime::from_timestamp_micros(1_764_619_551_123_456).unwrap(),
            category: "membership".into(),
            action: "member.role_changed".into(),
            actor: Some(Uuid::from_u128(3)),
            request_id: Some("req-1".into()),
            payload: r#"{"role":"Admin"}"#.into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_field_changes_the_link_hash() {
        let base = sample().computed_hash();
        let mutations: Vec<fn(&mut Event)> = vec![
            |e| e.id = Uuid::from_u128(9),
            |e| e.chain = Uuid::from_u128(9),
            |e| e.seq = 2,
            |e| e.occurred_at += chrono::Duration::microseconds(1),
            |e| e.category = "workspace".into(),
            |e| e.action = "member.removed".into(),
            |e| e.actor = None,
            |e| e.request_id = None,
            |e| e.payload = r#"{"role":"Owner"}"#.into(),
            |e| e.prev_hash = "1".repeat(64),
        ];
        for mutate in mutations {
            let mut e = sample();
            mutate(&mut e);
            assert_ne!(e.computed_hash(), base);
        }
    }

    #[test]
    fn an_absent_value_and_an_empty_one_hash_differently() {
        let mut a = sample();
        a.request_id = None;
        let mut b = sample();
        b.request_id = Some(String::new());
        assert_ne!(a.computed_hash(), b.computed_hash());
    }

    #[test]
    fn the_link_hash_is_sha256_of_the_documented_encoding() {
        let e = sample();
        let text = format!(
            "rampart-audit-v1\n36:{}\n1:1\n64:{}\n36:{}\n16:1764619551123456\n10:membership\n19:member.role_changed\n36:{}\n5:req-1\n16:{{\"role\":\"Admin\"}}\n",
            e.chain,
            GENESIS_HASH,
            e.id,
            e.actor.unwrap()
        );
        assert_eq!(e.computed_hash(), hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn personal_data_in_payload_strings_is_tagged_but_addresses_and_ids_stay() {
        let member = Uuid::from_u128(42);
        let mut payload = serde_json::json!({
            "note": "invited carol@example.com",
            "nested": [{"contact": "write to dave@example.org"}],
            "ip": "203.0.113.7",
            "member": member,
            "count": 3,
        });
        scrub_value(&mut payload);
        let text = payload.to_string();
        assert!(!text.contains("carol@example.com") && !text.contains("dave@example.org"), "{text}");
        assert_eq!(payload["ip"], "203.0.113.7");
        assert_eq!(payload["member"], member.to_string());
        assert_eq!(payload["count"], 3);
    }

    #[test]
    fn actions_are_lowercase_dotted_names() {
        assert!(check_action("auth.signin_failed").is_ok());
        for bad in ["", "Auth.signin", "1auth", "auth signin", "auth;drop", &"a".repeat(65)] {
            assert!(check_action(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn categories_round_trip_through_their_names() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.as_str().into()));
        }
        assert_eq!(Category::parse("nope"), None);
    }
}
