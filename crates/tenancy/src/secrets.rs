//! Sealed values in tenant tables: the database half of `crypto-vault`'s envelope encryption.
//! A tenant's data keys live wrapped in `tenant_keys` (one row per purpose and version, the
//! newest active); a value is sealed with the active key and opens only with the key its header
//! names, at the place it was sealed for.
//!
//! [`maintenance`] holds the operator's work across tenants (rotate, re-encrypt, retire, shred),
//! which runs as the `rampart_keys` role, never as the server's runtime role.

pub mod maintenance;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crypto_vault::{DataKey, Header, KeyName, Place, Purpose, Vault, WrappedKey};
use sea_orm::{ConnectionTrait, QueryResult, Statement};
use uuid::Uuid;

use crate::{stmt, TenancyError, TenantTx};

/// A column that holds sealed values: re-encrypted by [`maintenance::rewrap`], and checked by
/// [`maintenance::retire`] before a key version goes.
#[derive(Debug, Clone, Copy)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// The integer column that repeats the data key version of the value (indexed).
    pub version_column: &'static str,
    /// SQL giving the purpose of the value in the row aliased by the argument (the purpose is
    /// also in each value's header).
    pub purpose_sql: fn(&str) -> String,
}

/// Every sealed column. A new one is added here, or `rampart keys retire` would delete keys it
/// still needs (a test compares this list with the schema's `*_ciphertext` columns).
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "connections",
        column: "secret_ciphertext",
        version_column: "ciphertext_version",
        purpose_sql: |alias| {
            format!("CASE WHEN {alias}.provider IN ('slack', 'google') THEN 'integration_tokens' ELSE 'storage_credentials' END")
        },
    },
    // Inbound webhook sources' signing secrets (the `webhooks` crate seals them through here).
    SealedColumn {
        table: "webhook_sources",
        column: "secrets_ciphertext",
        version_column: "ciphertext_version",
        purpose_sql: |_| "'integration_tokens'".to_owned(),
    },
    // Outbound webhook endpoints' Standard Webhooks secrets (sealed by `webhooks::outbound`).
    SealedColumn {
        table: "webhook_endpoints",
        column: "secrets_ciphertext",
        version_column: "ciphertext_version",
        purpose_sql: |_| "'integration_tokens'".to_owned(),
    },
];

/// Seals `plaintext` for `place` (which must be in the transaction's tenant) with the tenant's
/// active data key of `purpose`, creating the tenant's first key if it has none. Returns the
/// sealed bytes and the key version used.
pub async fn seal(
    tx: &TenantTx,
    vault: &Vault,
    purpose: Purpose,
    place: &Place<'_>,
    plaintext: &[u8],
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    if place.tenant != tx.tenant().0 {
        return Err(TenancyError::Invalid("a value is sealed in its own tenant"));
    }
    let key = active_key(tx, vault, purpose, now).await?;
    Ok((key.seal(place, plaintext)?, key.version()))
}

/// Opens a value sealed for `place` in the transaction's tenant.
pub async fn open(
    tx: &TenantTx,
    vault: &Vault,
    place: &Place<'_>,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, TenancyError> {
    if place.tenant != tx.tenant().0 {
        return Err(TenancyError::Invalid("a value is opened in its own tenant"));
    }
    let header = Header::parse(sealed)?;
    let name = KeyName { tenant: place.tenant, purpose: header.purpose, version: header.version };
    // Retired below the minimum version, or shredded: the value cannot be opened any more.
    let key =
        stored_key(tx.conn(), vault, name).await?.ok_or(TenancyError::Vault(crypto_vault::VaultError::UnknownKek))?;
    Ok(key.open(place, sealed)?)
}

/// The data key `name`, if its row is there (read on `conn`, unwrapped or served from the
/// vault's cache for exactly those bytes). Shared by the server and the key maintenance.
pub(crate) async fn stored_key<C: ConnectionTrait>(
    conn: &C,
    vault: &Vault,
    name: KeyName,
) -> Result<Option<Arc<DataKey>>, TenancyError> {
    let row = conn
        .query_one(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT kek_id, key_ciphertext FROM tenant_keys WHERE tenant_id = $1 AND purpose = $2 AND version = $3",
            [name.tenant.into(), name.purpose.as_str().into(), version_value(name.version)],
        ))
        .await?;
    match row {
        Some(row) => Ok(Some(vault.key(name, &wrapped(&row)?).await?)),
        None => Ok(None),
    }
}

/// The tenant's newest (active) data key of `purpose`, if it has one.
pub(crate) async fn newest_key<C: ConnectionTrait>(
    conn: &C,
    vault: &Vault,
    tenant: Uuid,
    purpose: Purpose,
) -> Result<Option<Arc<DataKey>>, TenancyError> {
    let row = conn
        .query_one(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT version, kek_id, key_ciphertext FROM tenant_keys WHERE tenant_id = $1 AND purpose = $2
              ORDER BY version DESC LIMIT 1",
            [tenant.into(), purpose.as_str().into()],
        ))
        .await?;
    match row {
        Some(row) => {
            let name = KeyName { tenant, purpose, version: version_of(&row)? };
            Ok(Some(vault.key(name, &wrapped(&row)?).await?))
        }
        None => Ok(None),
    }
}

/// The tenant's newest data key of `purpose`; its first one is created here.
async fn active_key(
    tx: &TenantTx,
    vault: &Vault,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<Arc<DataKey>, TenancyError> {
    let tenant = tx.tenant().0;
    if let Some(key) = newest_key(tx.conn(), vault, tenant, purpose).await? {
        return Ok(key);
    }
    let name = KeyName { tenant, purpose, version: 1 };
    let (stored, key) = vault.create_key(name).await?;
    let inserted = tx
        .conn()
        .execute(stmt(
            tx,
            "INSERT INTO tenant_keys (tenant_id, purpose, version, kek_id, key_ciphertext, created_at)
             VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (tenant_id, purpose, version) DO NOTHING",
            vec![tenant.into(), purpose.as_str().into(), stored.kek.into(), stored.ciphertext.into(), now.into()],
        ))
        .await?;
    if inserted.rows_affected() == 1 {
        return Ok(key);
    }
    // A concurrent first seal won: use its key.
    newest_key(tx.conn(), vault, tenant, purpose).await?.ok_or(TenancyError::NotFound)
}

pub(crate) fn wrapped(row: &QueryResult) -> Result<WrappedKey, TenancyError> {
    Ok(WrappedKey { kek: row.try_get("", "kek_id")?, ciphertext: row.try_get("", "key_ciphertext")? })
}

pub(crate) fn version_of(row: &QueryResult) -> Result<u32, TenancyError> {
    let version: i32 = row.try_get("", "version")?;
    u32::try_from(version).map_err(|_| TenancyError::Internal("a data key version out of range".into()))
}

/// A data key version as a database value.
pub fn version_value(version: u32) -> sea_orm::Value {
    i32::try_from(version).unwrap_or(i32::MAX).into()
}
