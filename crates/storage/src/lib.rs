//! Database access for Rampart: connecting, the embedded migrations, and the role checks that keep
//! the runtime connection unprivileged.
//!
//! PostgreSQL is the production store; SQLite is the embedded default. Nothing above this crate
//! builds connection strings or runs DDL.
//! It must never know about tenants or HTTP.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod inline_read;
mod migrate;
mod roles;
mod write;

pub use config::{Backend, DatabaseConfig};
pub use inline_read::InlineReader;
pub use migrate::{
    expected_schema_version, migrate, schema_version, Migration, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE,
};
pub use roles::{check_runtime_role, RoleMembership, RoleReport, RUNTIME_GROUP_ROLE};
pub use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};
pub use write::{Ending, Txn};

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

/// The connection pools of one store, with the backend they talk to.
///
/// **One write path per store.** On PostgreSQL every transaction comes from one pool; contention
/// is the database's to settle (row locks), and what it refuses is classified by [`fault`]. On
/// SQLite, which allows one writer at a time, a transaction that may write opens with
/// [`Db::begin_write`]: it takes the store's writer permit (a one-slot semaphore, first come
/// first served, so this process's writers queue in order instead of polling the file lock), and
/// its first statement claims the file's write lock, before any read, so no transaction ever
/// reads a snapshot and then fails to upgrade it (`SQLITE_BUSY_SNAPSHOT`, which no busy timeout
/// retries). Writers in other processes (a `rampart worker`, the CLI) wait for the lock through
/// the busy timeout. Transactions that only read go through a concurrent pool of `query_only`
/// connections ([`Db::reader`], [`Db::begin_read`]), so a write on a read path fails loudly
/// instead of racing. This is PocketBase's shape — a concurrent pool for reads, one writer at a
/// time, WAL, `synchronous = NORMAL` and a busy timeout — with the single writer kept as a permit
/// rather than a one-connection pool, so a statement a writer makes on [`Db::conn`] outside its
/// transaction (a read) never waits for the writer's own connection.
#[derive(Debug, Clone)]
pub struct Db {
    /// Every statement that is not in a read transaction.
    conn: DatabaseConnection,
    /// SQLite files only: the read pool. `None` on PostgreSQL and for in-memory SQLite, whose
    /// reads use `conn`.
    reader: Option<DatabaseConnection>,
    /// SQLite only: the one writer's turn.
    writer: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    backend: Backend,
    /// SQLite files only: reads run in place on the calling thread ([`InlineReader`]).
    inline: Option<std::sync::Arc<InlineReader>>,
}

/// How long an SQLite connection waits for another process's write lock before `SQLITE_BUSY`
/// (writers in this process queue on the writer pool instead). A write transaction here lasts
/// milliseconds; five seconds absorbs a `rampart worker` or CLI command writing the same file.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a statement waits for a pooled connection — including reconnecting to a server that
/// went away — before it fails as [`Fault::Unavailable`] (answered 503). Transactions last
/// milliseconds, so this wait already means an outage or an overload: the request is answered
/// within a second rather than held.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(750);
/// How long a transaction waits for the SQLite writer's turn (a queue of short transactions, or
/// one long maintenance transaction) before it fails as [`Fault::Unavailable`].
const WRITER_TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// The pragmas of every SQLite connection, set by the driver as it opens each one (a pragma run
/// once through the pool reaches only the connection that happened to run it). WAL lets readers
/// proceed during a write; `synchronous = NORMAL` syncs at checkpoints rather than at every
/// commit, which in WAL mode keeps the file consistent after a crash and loses no commit when
/// the process dies (power loss may undo the last commits); foreign keys are off by default in
/// SQLite.
fn sqlite_options(
    opts: sea_orm::sqlx::sqlite::SqliteConnectOptions,
    query_only: bool,
) -> sea_orm::sqlx::sqlite::SqliteConnectOptions {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    let opts = opts
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    if query_only {
        opts.pragma("query_only", "ON")
    } else {
        opts
    }
}

impl Db {
    /// Opens the pools for `url`: on PostgreSQL one of `max_connections`; on SQLite a pool and a
    /// read pool of up to `max_connections` each (at most 8). SQLite files are created when
    /// missing.
    pub async fn connect(url: &secrecy::SecretString, max_connections: u32) -> Result<Db, StorageError> {
        let backend = Backend::from_url(url.expose_secret())?;
        let pool = |max: u32, query_only: bool| {
            let mut opts = ConnectOptions::new(url.expose_secret().to_owned());
            opts.max_connections(max)
                .min_connections(0)
                .connect_timeout(ACQUIRE_TIMEOUT)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .sqlx_logging(false)
                .map_sqlx_sqlite_opts(move |o| sqlite_options(o, query_only));
            opts
        };
        match backend {
            Backend::Postgres => {
                let conn = Database::connect(pool(max_connections.max(1), false)).await?;
                Ok(Db { conn, reader: None, writer: None, backend, inline: None })
            }
            Backend::Sqlite => {
                // Writable connections first: they create the file and turn WAL on before any
                // reader opens.
                let max = max_connections.clamp(1, 8);
                let conn = Database::connect(pool(max, false)).await?;
                let inline = InlineReader::for_url(url.expose_secret()).map(std::sync::Arc::new);
                let reader = match inline {
                    Some(_) => Some(Database::connect(pool(max, true)).await?),
                    None => None,
                };
                let writer = Some(std::sync::Arc::new(tokio::sync::Semaphore::new(1)));
                Ok(Db { conn, reader, writer, backend, inline })
            }
        }
    }

    /// Begins a transaction that may write. On SQLite it waits for the writer's turn (at most
    /// ten seconds, then a [`Fault::Unavailable`] error) and holds it, and the file's
    /// write lock, from its first statement to its end; on PostgreSQL it is a plain transaction.
    pub async fn begin_write(&self) -> Result<Txn, DbErr> {
        let permit = match &self.writer {
            Some(turn) => match tokio::time::timeout(WRITER_TURN_TIMEOUT, turn.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                Ok(Err(_)) => return Err(DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::ConnectionClosed)),
                Err(_) => return Err(DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)),
            },
            None => None,
        };
        let txn = self.conn.begin().await?;
        match claim_sqlite_write_lock(&txn).await {
            Ok(()) => Ok(Txn::new(txn, permit)),
            Err(err) => {
                let _ = txn.rollback().await;
                Err(err)
            }
        }
    }

    /// Begins a transaction that only reads; on SQLite it runs beside the writer and other
    /// readers, and any write in it fails (`query_only`).
    pub async fn begin_read(&self) -> Result<Txn, DbErr> {
        Ok(Txn::new(self.reader().begin().await?, None))
    }

    /// The pool for statements that only read: SQLite's read pool, else [`Db::conn`].
    pub fn reader(&self) -> &DatabaseConnection {
        self.reader.as_ref().unwrap_or(&self.conn)
    }

    /// The in-place reader of an SQLite file (`None` on PostgreSQL and for in-memory SQLite).
    pub fn inline_reader(&self) -> Option<&InlineReader> {
        self.inline.as_deref()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for statements outside a transaction. A transaction that may write begins with
    /// [`Db::begin_write`], never `conn().begin()`.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Calls `observer` with the SQL of every statement this pool (and its transactions) runs
    /// from now on; for tests that count round trips.
    pub fn observe_statements(&mut self, observer: impl Fn(&str) + Send + Sync + 'static) {
        let observer = std::sync::Arc::new(observer);
        for pool in std::iter::once(&mut self.conn).chain(self.reader.as_mut()) {
            let observer = observer.clone();
            pool.set_metric_callback(move |info| observer(&info.statement.sql));
        }
    }

    /// Runs a trivial round trip; used by readiness probes.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.reader().query_one(Statement::from_string(self.conn.get_database_backend(), "SELECT 1")).await?;
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
        if let Some(reader) = self.reader {
            reader.close().await?;
        }
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
pub async fn settle<T, E: From<DbErr>>(txn: impl Ending, result: Result<T, E>) -> Result<T, E> {
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

/// A database failure that says nothing about the request itself: the store was busy or out of
/// reach. Callers answer it 503 with `Retry-After` (RFC 9110 §15.6.4), never 500; the
/// transaction rolled back, so nothing was half-written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Lost a race with another transaction: a deadlock (`40P01`), a serialization failure
    /// (`40001`), a lock or statement timeout (`55P03`, `57014`), SQLite busy or locked. Run from
    /// the start, the same work may succeed.
    Contention,
    /// The store could not be reached or went away: no connection could be had in time, the
    /// connection was refused or reset, the server is shutting down or starting (`08xxx`,
    /// `57P0x`, `53300`).
    Unavailable,
}

/// Classifies `err` as a [`Fault`], or `None` for an error that is the request's or a bug's.
pub fn fault(err: &DbErr) -> Option<Fault> {
    use sea_orm::{sqlx::Error as Sqlx, RuntimeErr};
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) => return Some(Fault::Unavailable),
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    match sqlx {
        Sqlx::Database(db) => {
            let sqlite = db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some();
            db.code().and_then(|code| code_fault(&code, sqlite))
        }
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => {
            Some(Fault::Unavailable)
        }
        _ => None,
    }
}

/// An SQLite result code or a PostgreSQL SQLSTATE, classified.
fn code_fault(code: &str, sqlite: bool) -> Option<Fault> {
    if sqlite {
        // SQLite extended codes carry the primary code in their low byte: 5 BUSY, 6 LOCKED.
        return code.parse::<u32>().ok().filter(|c| matches!(c & 0xff, 5 | 6)).map(|_| Fault::Contention);
    }
    match code {
        "40001" | "40P01" | "55P03" | "57014" => Some(Fault::Contention),
        "57P01" | "57P02" | "57P03" | "53300" => Some(Fault::Unavailable),
        _ if code.starts_with("08") => Some(Fault::Unavailable),
        _ => None,
    }
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
    fn sqlstates_and_sqlite_codes_are_classified_as_faults_or_not() {
        use super::{code_fault, Fault};
        assert_eq!(code_fault("40P01", false), Some(Fault::Contention));
        assert_eq!(code_fault("40001", false), Some(Fault::Contention));
        assert_eq!(code_fault("08006", false), Some(Fault::Unavailable));
        assert_eq!(code_fault("57P01", false), Some(Fault::Unavailable));
        assert_eq!(code_fault("5", true), Some(Fault::Contention));
        assert_eq!(code_fault("517", true), Some(Fault::Contention));
        assert_eq!(code_fault("23505", false), None, "a unique violation is the request's conflict");
        assert_eq!(code_fault("2067", true), None, "SQLite's unique violation likewise");
        assert_eq!(code_fault("42501", false), None, "a refused privilege is a bug, not a fault");
    }

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(super::values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_rows(1, 1), "($1)");
        assert_eq!(super::values_rows(0, 4), "");
    }
}
