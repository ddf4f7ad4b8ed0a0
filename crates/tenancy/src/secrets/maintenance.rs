//! The key operator's work across every tenant: rotate data keys, re-encrypt sealed values under
//! the active keys (and re-wrap data keys under the active key-encryption key), retire versions
//! nothing uses any more, and shred a tenant's keys. On PostgreSQL each transaction runs as the
//! `rampart_keys` role (`SET LOCAL ROLE`): the connection must be a member of it — the owner
//! role is, the server's runtime role never is. Every step is recorded in the platform chain.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crypto_vault::{DataKey, Header, KeyName, Place, Purpose, Vault};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement, TransactionTrait};
use serde::Serialize;
use storage::settle;
use uuid::Uuid;

use super::{newest_key, stored_key, version_of, version_value, wrapped, SealedColumn, SEALED_COLUMNS};
use crate::TenancyError;

/// The role the key commands run as (deploy/postgres/bootstrap-roles.sql).
pub const KEYS_ROLE: &str = "rampart_keys";

/// Opens a transaction as [`KEYS_ROLE`] (PostgreSQL; SQLite has no roles).
pub async fn begin<C: TransactionTrait>(db: &C) -> Result<DatabaseTransaction, TenancyError> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SET LOCAL ROLE {KEYS_ROLE}")).await?;
    }
    // SQLite: the maintenance reads sealed rows before it rewrites them.
    storage::claim_sqlite_write_lock(&txn).await?;
    Ok(txn)
}

fn statement(txn: &DatabaseTransaction, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(txn.get_database_backend(), sql, values)
}

async fn record(
    txn: &DatabaseTransaction,
    action: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let event = audit::NewEvent::new(audit::Category::Secret, action, payload);
    audit::append(txn, Uuid::nil(), &event, now).await?;
    Ok(())
}

fn purpose_of(name: &str) -> Result<Purpose, TenancyError> {
    Purpose::parse(name).ok_or_else(|| TenancyError::Internal(format!("unknown key purpose {name:?}")))
}

/// Adds a new data key version — the active one from now on — for every tenant and purpose that
/// has keys (or only `tenant`'s). Old versions keep opening what they sealed until
/// [`rewrap`] has moved every value.
pub async fn rotate<C: TransactionTrait>(
    db: &C,
    vault: &Vault,
    tenant: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<KeyName>, TenancyError> {
    let txn = begin(db).await?;
    let result = async {
        let rows = txn
            .query_all(statement(
                &txn,
                "SELECT tenant_id, purpose, max(version) AS version FROM tenant_keys
                  WHERE $1 IS NULL OR tenant_id = $1 GROUP BY tenant_id, purpose ORDER BY tenant_id, purpose",
                vec![tenant.into()],
            ))
            .await?;
        let mut made = Vec::new();
        for row in &rows {
            let current = version_of(row)?;
            let name = KeyName {
                tenant: row.try_get("", "tenant_id")?,
                purpose: purpose_of(&row.try_get::<String>("", "purpose")?)?,
                version: current.checked_add(1).ok_or(TenancyError::Conflict("key version limit reached"))?,
            };
            let (stored, _) = vault.create_key(name).await?;
            txn.execute(statement(
                &txn,
                "INSERT INTO tenant_keys (tenant_id, purpose, version, kek_id, key_ciphertext, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    name.tenant.into(),
                    name.purpose.as_str().into(),
                    version_value(name.version),
                    stored.kek.into(),
                    stored.ciphertext.into(),
                    now.into(),
                ],
            ))
            .await?;
            record(
                &txn,
                "keys.rotated",
                serde_json::json!({ "tenant_id": name.tenant, "purpose": name.purpose.as_str(), "version": name.version }),
                now,
            )
            .await?;
            made.push(name);
        }
        Ok(made)
    }
    .await;
    settle(txn, result).await
}

/// How far a [`rewrap`] has come, after each batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub table: &'static str,
    pub column: &'static str,
    /// Values re-encrypted so far in this column.
    pub done: u64,
    /// Values that were on an older version when the column was started.
    pub total: u64,
}

/// What a [`rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewrapReport {
    /// Data keys moved to the active key-encryption key.
    pub keys_rewrapped: u64,
    /// Sealed values re-encrypted under their tenant's active data key.
    pub values_reencrypted: u64,
    /// Values that did not open (a shredded or corrupted key, or tampering), left as they are.
    pub failed: Vec<(String, Uuid)>,
}

/// Re-wraps every data key under the key-encryption key now active for it, then re-encrypts
/// every sealed value that is not on its tenant's active data key version, `batch` rows per
/// transaction. Resumable: the work left is read from the data itself (values whose version is
/// below the active one), so a run interrupted at any point is finished by running it again.
pub async fn rewrap<C: TransactionTrait>(
    db: &C,
    vault: &Vault,
    batch: u64,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<RewrapReport, TenancyError> {
    let batch = batch.clamp(1, 10_000);
    let mut report = RewrapReport::default();
    report.keys_rewrapped = rewrap_keys(db, vault, now, &mut report.failed).await?;
    for column in SEALED_COLUMNS {
        let stale = stale_values_sql(column);
        let txn = begin(db).await?;
        let total = txn
            .query_one(statement(&txn, &format!("SELECT count(*) AS n FROM ({stale}) s"), vec![]))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        txn.commit().await?;
        let mut state =
            Progress { table: column.table, column: column.column, done: 0, total: u64::try_from(total).unwrap_or(0) };
        progress(&state);
        let mut after = Uuid::nil();
        loop {
            let txn = begin(db).await?;
            let result = reencrypt_batch(&txn, vault, column, &stale, after, batch, &mut report).await;
            let (last, count) = settle(txn, result).await?;
            state.done += count;
            progress(&state);
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        report.values_reencrypted += state.done;
    }
    let txn = begin(db).await?;
    let result = record(
        &txn,
        "keys.rewrapped",
        serde_json::json!({ "keys_rewrapped": report.keys_rewrapped, "values_reencrypted": report.values_reencrypted, "failed": report.failed.len() }),
        now,
    )
    .await;
    settle(txn, result).await?;
    Ok(report)
}

/// Rows of `column` sealed under an older version than their tenant's active key.
fn stale_values_sql(column: &SealedColumn) -> String {
    let SealedColumn { table, column, version_column, purpose_sql } = column;
    format!(
        "SELECT t.id, t.tenant_id, t.{column} AS sealed, t.{version_column} AS version FROM {table} t
          WHERE t.{version_column} < (SELECT max(k.version) FROM tenant_keys k
                                       WHERE k.tenant_id = t.tenant_id AND k.purpose = ({purpose}))",
        purpose = purpose_sql("t")
    )
}

/// Re-encrypts up to `batch` stale rows after `after`; the last row seen (None when none were)
/// and how many were rewritten.
async fn reencrypt_batch(
    txn: &DatabaseTransaction,
    vault: &Vault,
    column: &SealedColumn,
    stale: &str,
    after: Uuid,
    batch: u64,
    report: &mut RewrapReport,
) -> Result<(Option<Uuid>, u64), TenancyError> {
    let lock =
        if txn.get_database_backend() == DatabaseBackend::Postgres { " FOR UPDATE OF t SKIP LOCKED" } else { "" };
    let sql = format!("{stale} AND t.id > $1 ORDER BY t.id LIMIT $2{lock}");
    let rows = txn
        .query_all(statement(txn, &sql, vec![after.into(), i64::try_from(batch).unwrap_or(i64::MAX).into()]))
        .await?;
    let mut keys: HashMap<(Uuid, Purpose), Arc<DataKey>> = HashMap::new();
    let mut last = None;
    let mut done = 0;
    for row in &rows {
        let id: Uuid = row.try_get("", "id")?;
        last = Some(id);
        let tenant: Uuid = row.try_get("", "tenant_id")?;
        let sealed: Vec<u8> = row.try_get("", "sealed")?;
        let old_version = version_of(row)?;
        let place = Place { tenant, table: column.table, column: column.column, row: id };
        let reencrypted = async {
            let header = Header::parse(&sealed)?;
            let name = KeyName { tenant, purpose: header.purpose, version: header.version };
            let old = stored_key(txn, vault, name).await?.ok_or_else(missing)?;
            let plaintext = old.open(&place, &sealed)?;
            let active = match keys.get(&(tenant, header.purpose)) {
                Some(key) => key.clone(),
                None => {
                    let key = newest_key(txn, vault, tenant, header.purpose).await?.ok_or_else(missing)?;
                    keys.insert((tenant, header.purpose), key.clone());
                    key
                }
            };
            Ok::<_, TenancyError>((active.seal(&place, &plaintext)?, active.version()))
        }
        .await;
        match reencrypted {
            Ok((value, version)) => {
                let written = txn
                    .execute(statement(
                        txn,
                        &format!(
                            "UPDATE {} SET {} = $1, {} = $2 WHERE id = $3 AND {} = $4",
                            column.table, column.column, column.version_column, column.version_column
                        ),
                        vec![value.into(), version_value(version), id.into(), version_value(old_version)],
                    ))
                    .await?;
                done += written.rows_affected();
            }
            Err(TenancyError::Vault(err)) => {
                tracing::warn!(table = column.table, row.id = %id, tenant.id = %tenant, error = %err, "a sealed value did not open; left as it is");
                report.failed.push((column.table.to_owned(), id));
            }
            Err(other) => return Err(other),
        }
    }
    Ok((last, done))
}

/// A key the value names, or the active one, must exist while its values are re-encrypted.
fn missing() -> TenancyError {
    TenancyError::Vault(crypto_vault::VaultError::UnknownKek)
}

/// Moves every data key to the key-encryption key now active for it; the number moved.
/// A data key that does not unwrap (its tenant's own key was removed, or an older KEK dropped
/// too early) is reported in `failed` as `tenant_keys` and the tenant, and left as it is.
async fn rewrap_keys<C: TransactionTrait>(
    db: &C,
    vault: &Vault,
    now: DateTime<Utc>,
    failed: &mut Vec<(String, Uuid)>,
) -> Result<u64, TenancyError> {
    let txn = begin(db).await?;
    let result = async {
        let rows = txn
            .query_all(statement(
                &txn,
                "SELECT tenant_id, purpose, version, kek_id, key_ciphertext FROM tenant_keys",
                vec![],
            ))
            .await?;
        let mut moved = 0;
        for row in &rows {
            let name = KeyName {
                tenant: row.try_get("", "tenant_id")?,
                purpose: purpose_of(&row.try_get::<String>("", "purpose")?)?,
                version: version_of(row)?,
            };
            let old = wrapped(row)?;
            let rewrapped = match vault.rewrap_key(name, &old).await {
                Ok(new) => new,
                Err(err) => {
                    tracing::warn!(tenant.id = %name.tenant, purpose = name.purpose.as_str(), version = name.version, error = %err, "a data key did not unwrap; left as it is");
                    failed.push(("tenant_keys".to_owned(), name.tenant));
                    continue;
                }
            };
            if let Some(new) = rewrapped {
                txn.execute(statement(
                    &txn,
                    "UPDATE tenant_keys SET kek_id = $1, key_ciphertext = $2
                      WHERE tenant_id = $3 AND purpose = $4 AND version = $5 AND kek_id = $6",
                    vec![
                        new.kek.into(),
                        new.ciphertext.into(),
                        name.tenant.into(),
                        name.purpose.as_str().into(),
                        version_value(name.version),
                        old.kek.into(),
                    ],
                ))
                .await?;
                moved += 1;
            }
        }
        if moved > 0 {
            record(&txn, "keys.kek_rewrapped", serde_json::json!({ "keys": moved }), now).await?;
        }
        Ok(moved)
    }
    .await;
    settle(txn, result).await
}

/// A tenant's purpose after [`retire`]: the versions deleted and the lowest that still opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retired {
    pub tenant: Uuid,
    pub purpose: &'static str,
    pub deleted: Vec<u32>,
    /// The minimum version that still opens: every older value fails from now on.
    pub min_version: u32,
}

/// Deletes every data key version below the active one that no sealed value still uses (run
/// [`rewrap`] first). A version still in use is kept, and the report's `min_version` says so.
pub async fn retire<C: TransactionTrait>(db: &C, now: DateTime<Utc>) -> Result<Vec<Retired>, TenancyError> {
    let txn = begin(db).await?;
    let result = async {
        let in_use = SEALED_COLUMNS
            .iter()
            .map(|c| {
                format!(
                    "EXISTS (SELECT 1 FROM {t} v WHERE v.tenant_id = k.tenant_id AND v.{vc} = k.version AND ({p}) = k.purpose)",
                    t = c.table,
                    vc = c.version_column,
                    p = (c.purpose_sql)("v"),
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let rows = txn
            .query_all(statement(
                &txn,
                &format!(
                    "DELETE FROM tenant_keys AS k
                      WHERE k.version < (SELECT max(a.version) FROM tenant_keys a WHERE a.tenant_id = k.tenant_id AND a.purpose = k.purpose)
                        AND NOT ({in_use})
                      RETURNING tenant_id, purpose, version"
                ),
                vec![],
            ))
            .await?;
        let mut by_key: HashMap<(Uuid, String), Vec<u32>> = HashMap::new();
        for row in &rows {
            by_key.entry((row.try_get("", "tenant_id")?, row.try_get("", "purpose")?)).or_default().push(version_of(row)?);
        }
        let mut report = Vec::new();
        let mut keys: Vec<_> = by_key.into_iter().collect();
        keys.sort();
        for ((tenant, purpose), mut deleted) in keys {
            deleted.sort_unstable();
            let min = txn
                .query_one(statement(
                    &txn,
                    "SELECT min(version) AS version FROM tenant_keys WHERE tenant_id = $1 AND purpose = $2",
                    vec![tenant.into(), purpose.clone().into()],
                ))
                .await?
                .ok_or(TenancyError::NotFound)?;
            let purpose = purpose_of(&purpose)?.as_str();
            let entry = Retired { tenant, purpose, deleted, min_version: version_of(&min)? };
            record(&txn, "keys.retired", serde_json::to_value(&entry).unwrap_or_default(), now).await?;
            report.push(entry);
        }
        Ok(report)
    }
    .await;
    settle(txn, result).await
}

/// Deletes every data key of `tenant`: its sealed values can never be opened again, by this
/// server or any other (crypto-shredding). Copies of the database taken earlier still hold the
/// wrapped keys until they expire; a tenant that brought its own key-encryption key is shredded
/// in those too by removing that key from the configuration. Returns the keys deleted.
pub async fn shred<C: TransactionTrait>(
    db: &C,
    vault: &Vault,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, TenancyError> {
    let txn = begin(db).await?;
    let result = async {
        let done = txn
            .execute(statement(&txn, "DELETE FROM tenant_keys WHERE tenant_id = $1", vec![tenant.into()]))
            .await?
            .rows_affected();
        record(&txn, "keys.shredded", serde_json::json!({ "tenant_id": tenant, "keys": done }), now).await?;
        Ok::<_, TenancyError>(done)
    }
    .await;
    let done = settle(txn, result).await?;
    vault.forget_tenant(tenant);
    Ok(done)
}
