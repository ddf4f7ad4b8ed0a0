//! Reads of the embedded SQLite file run in place, on the calling thread, for the lookup every
//! authenticated request makes (is the user still active?). The async driver runs each SQLite
//! connection on a thread of its own, so every query pays two thread hand-offs that cost many
//! times a primary-key read of a page already in memory. This reader's connections are
//! read-only and never wait: where SQLite would have to wait or anything else goes wrong, the
//! caller gets `None` and asks the pool instead, which reports real errors.
//!
//! Each statement runs outside any transaction, on a fresh read snapshot, so it sees every
//! commit made before it began, by this process or any other (WAL mode).

use std::{
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use rusqlite::{OpenFlags, Params, Row};

/// Connections kept open between reads; more are opened when all are busy and closed after.
const IDLE_CONNECTIONS: usize = 8;

/// Read-only connections to one SQLite file.
#[derive(Debug)]
pub struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl InlineReader {
    /// A reader for a `sqlite://path?…` URL; `None` for an in-memory database, which another
    /// connection cannot see.
    pub(crate) fn for_url(url: &str) -> Option<InlineReader> {
        let rest = url.strip_prefix("sqlite://")?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.starts_with(":memory:") || url.contains("mode=memory") {
            return None;
        }
        Some(InlineReader { path: PathBuf::from(path), idle: Mutex::new(Vec::new()) })
    }

    /// The first row of `sql` with `params`, through `map`: `Some(Ok(None))` when there is no
    /// row, `None` when this reader cannot answer now (the caller uses the pool).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Option<Option<T>> {
        let conn = self.take()?;
        let result = conn.prepare_cached(sql).and_then(|mut stmt| {
            let mut rows = stmt.query(params)?;
            rows.next()?.map(map).transpose()
        });
        match result {
            Ok(found) => {
                self.give_back(conn);
                Some(found)
            }
            Err(err) => {
                tracing::debug!(error = %err, "inline SQLite read fell back to the pool");
                None
            }
        }
    }

    fn take(&self) -> Option<rusqlite::Connection> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Some(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags).ok()?;
        // Never wait on a lock: the pool is the fallback.
        conn.busy_timeout(std::time::Duration::ZERO).ok()?;
        Some(conn)
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }
}
