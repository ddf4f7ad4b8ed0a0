//! Database access for Rampart: connecting, the embedded migrations, and the role checks that keep
//! the runtime connection unprivileged.
//!
//! PostgreSQL is the production store; SQLite is the embedded default. Nothing above this crate
//! builds connection strings or runs DDL.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod inline_read;
mod migrate;
mod roles;

pub use config::{Backend, DatabaseConfig};
pub use inline_read::InlineReader;
pub use migrate::{
    expected_schema_version, migrate, schema_version, Migration, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE,
};
pub use roles::{check_runtime_role, RoleReport, RUNTIME_GROUP_ROLE};
pub use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait};

use std::time::Duration;

use sea_orm::{ConnectOptions, Database};
use secrecy::ExposeSecret;

/// Errors raised while connecting, migrating or checking the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("applied migration {version} ({name}) differs from the one this binary carries; refusing to continue")]
    MigrationChecksumMismatch { version: i64, name: String },
    #[error("the database has migration {0}, newer than this binary knows; upgrade the binary")]
    DatabaseNewerThanBinary(i64),
    #[error("the database schema is at version {actual}, this binary needs {expected}: run `rampart migrate` first")]
    SchemaBehind { actual: i64, expected: i64 },
    #[error("the runtime database role `{role}` is unsafe: {reason}")]
    UnsafeRuntimeRole { role: String, reason: String },
}

/// A connection pool together with the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
    /// SQLite files only: reads run in place on the calling thread ([`InlineReader`]).
    inline: Option<std::sync::Arc<InlineReader>>,
}

impl Db {
    /// Opens a pool for `url`. SQLite files are created when missing.
    pub async fn connect(url: &secrecy::SecretString, max_connections: u32) -> Result<Db, StorageError> {
        let backend = Backend::from_url(url.expose_secret())?;
        let mut opts = ConnectOptions::new(url.expose_secret().to_owned());
        // SQLite allows one writer; a small pool avoids `database is locked` under load.
        let max = match backend {
            Backend::Sqlite => max_connections.clamp(1, 8),
            Backend::Postgres => max_connections.max(1),
        };
        opts.max_connections(max)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        let conn = Database::connect(opts).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
            conn.execute_unprepared("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                .await?;
        }
        let inline = match backend {
            Backend::Sqlite => InlineReader::for_url(url.expose_secret()).map(std::sync::Arc::new),
            Backend::Postgres => None,
        };
        Ok(Db { conn, backend, inline })
    }

    /// The in-place reader of an SQLite file (`None` on PostgreSQL and for in-memory SQLite).
    pub fn inline_reader(&self) -> Option<&InlineReader> {
        self.inline.as_deref()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Calls `observer` with the SQL of every statement this pool (and its transactions) runs
    /// from now on; for tests that count round trips.
    pub fn observe_statements(&mut self, observer: impl Fn(&str) + Send + Sync + 'static) {
        self.conn.set_metric_callback(move |info| observer(&info.statement.sql));
    }

    /// Runs a trivial round trip; used by readiness probes.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.conn.query_one(Statement::from_string(self.conn.get_database_backend(), "SELECT 1")).await?;
        Ok(())
    }

    /// Fails unless the schema is exactly at the version this binary was built for.
    pub async fn ensure_schema_current(&self) -> Result<(), StorageError> {
        let expected = expected_schema_version(self.backend);
        let actual = schema_version(&self.conn).await?;
        match actual.cmp(&expected) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(StorageError::SchemaBehind { actual, expected }),
            std::cmp::Ordering::Greater => Err(StorageError::DatabaseNewerThanBinary(actual)),
        }
    }

    pub async fn close(self) -> Result<(), StorageError> {
        self.conn.close().await?;
        Ok(())
    }
}

/// The source of the current time. Expiry, lifetimes and retries take `now` from a clock so tests
/// can move time instead of waiting.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system clock, truncated to microseconds (the precision both stores keep).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place that reads the wall clock.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let now = chrono::Utc::now();
        chrono::DurationRound::duration_trunc(now, chrono::Duration::microseconds(1)).unwrap_or(now)
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl ManualClock {
    pub fn new(start: chrono::DateTime<chrono::Utc>) -> ManualClock {
        ManualClock(std::sync::Mutex::new(start))
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.lock().map(|now| *now).unwrap_or_default()
    }
}

/// Ends `txn` by the outcome of the work done in it: commits on `Ok`, rolls back at once on
/// `Err` and returns that error. Rolling back explicitly matters on SQLite, where a dropped
/// transaction holds the write lock until its connection is next used.
pub async fn settle<T, E: From<DbErr>>(txn: sea_orm::DatabaseTransaction, result: Result<T, E>) -> Result<T, E> {
    match result {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            txn.rollback().await?;
            Err(err)
        }
    }
}

/// Whether an error is SQLite's `SQLITE_BUSY` (code 5) or `SQLITE_BUSY_SNAPSHOT` (code 517): the
/// transaction lost a race for the write lock; rolled back, it may be run again from the start.
pub fn is_sqlite_busy(err: &dyn std::fmt::Display) -> bool {
    let text = err.to_string();
    text.contains("database is locked") || text.contains("(code: 5)") || text.contains("(code: 517)")
}

/// Whether a database error is a unique-constraint violation (both backends).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Makes the write lock `txn`'s first step on SQLite: a concurrent writer then waits for it (the
/// busy timeout) instead of failing its own first write after reads, on a snapshot another commit
/// has moved past (`SQLITE_BUSY`, not retried by SQLite). PostgreSQL needs nothing.
pub async fn claim_sqlite_write_lock<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        // Any write statement takes the lock, whether or not it changes a row.
        txn.execute_unprepared("UPDATE rampart_migrations SET version = version WHERE 0").await?;
    }
    Ok(())
}

/// The `VALUES` list of a multi-row insert: `rows` groups of `columns` numbered placeholders,
/// `($1, $2), ($3, $4)` (both stores bind `$n`).
pub fn values_rows(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=columns {
            if column > 1 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod values_rows_tests {
    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(super::values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_rows(1, 1), "($1)");
        assert_eq!(super::values_rows(0, 4), "");
    }
}
