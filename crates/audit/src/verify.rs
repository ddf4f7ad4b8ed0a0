//! Walking a chain and naming its first broken link.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use serde::Serialize;
use uuid::Uuid;

use crate::{event_from_row, stmt, AuditError, Event, GENESIS_HASH};

/// Events read per round trip while verifying.
const PAGE: u64 = 2_000;

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: i64,
    pub id: Option<Uuid>,
    pub reason: String,
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub chain: Uuid,
    pub events: u64,
    /// The newest link seen (seq, hash): keep it outside the database to detect a rewrite of the
    /// whole chain later.
    pub head: Option<(i64, String)>,
    pub broken: Option<Broken>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Recomputes every link of `chain` in order: each event's hash must match its content, its
/// `prev_hash` the previous event's hash, and positions must follow without gaps. A chain whose
/// oldest events were purged must start where a retention record says the purge ended, with that
/// record's anchor hash. On PostgreSQL the chain's head row must also match the newest event (an
/// event removed from the end shows there).
pub async fn verify<C: ConnectionTrait>(conn: &C, chain: Uuid) -> Result<Verification, AuditError> {
    let mut events = 0u64;
    let mut first: Option<Event> = None;
    let mut last: Option<Event> = None;
    let mut broken: Option<Broken> = None;
    // (through_seq, anchor_hash) of every retention record seen.
    let mut anchors: Vec<(i64, String)> = Vec::new();
    'pages: loop {
        let after = last.as_ref().map_or(i64::MIN, |e| e.seq);
        let rows = conn
            .query_all(stmt(
                conn,
                &format!(
                    "SELECT {} FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    crate::COLUMNS
                ),
                vec![chain.into(), after.into(), PAGE.into()],
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = event_from_row(row)?;
            events += 1;
            if event.computed_hash() != event.hash {
                broken = Some(at(&event, "its stored hash does not match its content (the event was altered)"));
                break 'pages;
            }
            if let Some(prev) = &last {
                if event.seq != prev.seq + 1 {
                    broken = Some(at(&event, &format!("events {} to {} are missing", prev.seq + 1, event.seq - 1)));
                    break 'pages;
                }
                if event.prev_hash != prev.hash {
                    broken = Some(at(&event, &format!("its previous hash does not match event {}", prev.seq)));
                    break 'pages;
                }
            }
            if event.category == "retention" {
                if let Ok(p) = serde_json::from_str::<serde_json::Value>(&event.payload) {
                    if let (Some(through), Some(anchor)) = (p["through_seq"].as_i64(), p["anchor_hash"].as_str()) {
                        anchors.push((through, anchor.to_owned()));
                    }
                }
            }
            if first.is_none() {
                first = Some(event.clone());
            }
            last = Some(event);
        }
        if (rows.len() as u64) < PAGE {
            break;
        }
    }
    if broken.is_none() {
        if let Some(first) = &first {
            let genesis = first.seq == 1 && first.prev_hash == GENESIS_HASH;
            let anchored = anchors.iter().any(|(through, hash)| *through == first.seq - 1 && *hash == first.prev_hash);
            if !genesis && !anchored {
                broken = Some(at(
                    first,
                    "the chain does not start at its first event, and no retention record accounts for the events before it",
                ));
            }
        }
    }
    if broken.is_none() && conn.get_database_backend() == DatabaseBackend::Postgres {
        broken = check_head(conn, chain, last.as_ref()).await?;
    }
    Ok(Verification { chain, events, head: last.map(|e| (e.seq, e.hash)), broken })
}

/// PostgreSQL keeps each chain's newest link in `audit_heads`; it must be the newest event.
async fn check_head<C: ConnectionTrait>(
    conn: &C,
    chain: Uuid,
    last: Option<&Event>,
) -> Result<Option<Broken>, AuditError> {
    let row = conn
        .query_one(stmt(conn, "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", vec![chain.into()]))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (seq, hash): (i64, String) = (row.try_get("", "seq")?, row.try_get("", "hash")?);
    Ok(match last {
        Some(e) if e.seq == seq && e.hash == hash => None,
        Some(e) => Some(Broken {
            seq,
            id: None,
            reason: format!(
                "the chain's head is event {seq}, but the newest stored event is {}: events were removed from its end",
                e.seq
            ),
        }),
        None => {
            Some(Broken { seq, id: None, reason: format!("the chain's head is event {seq}, but no events remain") })
        }
    })
}

fn at(event: &Event, reason: &str) -> Broken {
    Broken { seq: event.seq, id: Some(event.id), reason: reason.to_owned() }
}
