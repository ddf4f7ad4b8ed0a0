//! Embedded, checksummed schema migrations.
//!
//! The SQL lives in the top-level `migrations/` folder, one sub-folder per backend, and is compiled
//! into the binary so a single file can migrate its own database. Each applied migration is
//! recorded with a SHA-256 of its text; an applied migration that no longer matches the binary's
//! copy stops the process instead of silently diverging.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::{Backend, StorageError};

/// One forward-only migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

macro_rules! migration {
    ($backend:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../migrations/",
                $backend,
                "/",
                stringify!($version),
                "_",
                $name,
                ".sql"
            )),
        }
    };
}

/// PostgreSQL migrations, in order. File names are `<version>_<name>.sql`.
pub const MIGRATIONS_POSTGRES: &[Migration] = &[
    migration!("postgres", 1, "foundation"),
    migration!("postgres", 2, "identity"),
    migration!("postgres", 3, "tenancy"),
    migration!("postgres", 4, "rbac"),
    migration!("postgres", 5, "audit"),
    migration!("postgres", 6, "vault"),
    migration!("postgres", 7, "activity_windows"),
    migration!("postgres", 8, "webhooks"),
    migration!("postgres", 9, "outbound_webhooks"),
    migration!("postgres", 10, "api_keys"),
    migration!("postgres", 11, "mfa"),
    migration!("postgres", 12, "oidc_and_step_up"),
    migration!("postgres", 13, "audit_link_plpgsql"),
    migration!("postgres", 14, "platform_level_by_operators"),
    migration!("postgres", 15, "audit_link_inline"),
    migration!("postgres", 16, "credential_generation"),
];

/// SQLite migrations, in order. File names are `<version>_<name>.sql`.
pub const MIGRATIONS_SQLITE: &[Migration] = &[
    migration!("sqlite", 1, "foundation"),
    migration!("sqlite", 2, "identity"),
    migration!("sqlite", 3, "tenancy"),
    migration!("sqlite", 4, "rbac"),
    migration!("sqlite", 5, "audit"),
    migration!("sqlite", 6, "vault"),
    migration!("sqlite", 7, "activity_windows"),
    migration!("sqlite", 8, "webhooks"),
    migration!("sqlite", 9, "outbound_webhooks"),
    migration!("sqlite", 10, "api_keys"),
    migration!("sqlite", 11, "mfa"),
    migration!("sqlite", 12, "oidc_and_step_up"),
    migration!("sqlite", 13, "audit_link_plpgsql"),
    migration!("sqlite", 14, "platform_level_by_operators"),
    migration!("sqlite", 15, "audit_link_inline"),
    migration!("sqlite", 16, "credential_generation"),
];

fn migrations_for(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Postgres => MIGRATIONS_POSTGRES,
        Backend::Sqlite => MIGRATIONS_SQLITE,
    }
}

/// The schema version this binary expects.
pub fn expected_schema_version(backend: Backend) -> i64 {
    migrations_for(backend).last().map(|m| m.version).unwrap_or(0)
}

/// Arbitrary constant for the PostgreSQL advisory lock that serialises concurrent migrators.
const MIGRATION_LOCK_KEY: i64 = 0x0072_616d_7061_7274;

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS rampart_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Applies every pending migration in one transaction and returns the versions applied.
///
/// On PostgreSQL this must run as the owner role; a transaction-scoped advisory lock makes
/// concurrent migrators wait for each other.
pub async fn migrate(conn: &DatabaseConnection) -> Result<Vec<i64>, StorageError> {
    let db_backend = conn.get_database_backend();
    let backend = match db_backend {
        DatabaseBackend::Postgres => Backend::Postgres,
        DatabaseBackend::Sqlite => Backend::Sqlite,
        DatabaseBackend::MySql => {
            return Err(StorageError::InvalidUrl("MySQL is not supported".into()));
        }
    };
    let txn = conn.begin().await?;
    if backend == Backend::Postgres {
        txn.execute(Statement::from_sql_and_values(
            db_backend,
            "SELECT pg_advisory_xact_lock($1)",
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await?;
    }
    txn.execute_unprepared(CREATE_HISTORY).await?;

    let rows = txn
        .query_all(Statement::from_string(
            db_backend,
            "SELECT version, name, checksum FROM rampart_migrations ORDER BY version",
        ))
        .await?;
    let known = migrations_for(backend);
    let mut applied_max = 0;
    for row in rows {
        let version: i64 = row.try_get("", "version")?;
        let name: String = row.try_get("", "name")?;
        let checksum: String = row.try_get("", "checksum")?;
        let Some(ours) = known.iter().find(|m| m.version == version) else {
            return Err(StorageError::DatabaseNewerThanBinary(version));
        };
        if ours.checksum() != checksum {
            return Err(StorageError::MigrationChecksumMismatch { version, name });
        }
        applied_max = applied_max.max(version);
    }

    let mut applied = Vec::new();
    for m in known.iter().filter(|m| m.version > applied_max) {
        txn.execute_unprepared(m.sql).await?;
        txn.execute(Statement::from_sql_and_values(
            db_backend,
            match backend {
                Backend::Postgres => {
                    "INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now()::text)"
                }
                Backend::Sqlite => {
                    "INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
                }
            },
            [m.version.into(), m.name.into(), m.checksum().into()],
        ))
        .await?;
        tracing::info!(migration.version = m.version, migration.name = m.name, "applied migration");
        applied.push(m.version);
    }
    txn.commit().await?;
    Ok(applied)
}

/// The highest applied migration, or 0 for an empty database.
pub async fn schema_version(conn: &DatabaseConnection) -> Result<i64, StorageError> {
    let db_backend = conn.get_database_backend();
    let exists_sql = match db_backend {
        DatabaseBackend::Postgres => "SELECT to_regclass('rampart_migrations') IS NOT NULL AS present",
        _ => "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rampart_migrations') AS present",
    };
    let present = conn
        .query_one(Statement::from_string(db_backend, exists_sql))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    if !present {
        return Ok(0);
    }
    let version = conn
        .query_one(Statement::from_string(
            db_backend,
            "SELECT COALESCE(MAX(version), 0) AS version FROM rampart_migrations",
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "version"))
        .transpose()?
        .unwrap_or(0);
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_folder(folder: &str, list: &[Migration]) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(folder);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort_by_key(|n| n.split('_').next().unwrap().parse::<i64>().unwrap());
        let embedded: Vec<String> = list.iter().map(|m| format!("{}_{}.sql", m.version, m.name)).collect();
        assert_eq!(on_disk, embedded, "every file in migrations/{folder} must be listed, in order");
        for pair in list.windows(2) {
            assert_eq!(pair[1].version, pair[0].version + 1, "versions must be contiguous");
        }
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        check_folder("postgres", MIGRATIONS_POSTGRES);
        check_folder("sqlite", MIGRATIONS_SQLITE);
    }

    #[test]
    fn both_backends_reach_the_same_schema_version() {
        assert_eq!(expected_schema_version(Backend::Postgres), expected_schema_version(Backend::Sqlite));
    }
}
