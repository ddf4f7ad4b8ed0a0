//! Workspace connections to external providers: object storage (S3, R2, GCS, Firebase) and
//! connectors' OAuth or bot tokens (Slack, Google). Secret fields are write-only: sealed with the
//! tenant's data key for the provider's purpose (`secrets`), never returned — the list shows a
//! hint of their last characters. Scopes start read-only; write scopes are enabled only by an
//! explicit [`set_scopes`] (`connections.manage`), which the audit trail records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crypto_vault::{Place, Purpose, Vault};
use ids::{ConnectionId, UserId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use secrecy::{ExposeSecret, SecretString};

use crate::{check_name, secrets, stmt, TenancyError, TenantTx, WorkspaceId};

const TABLE: &str = "connections";
const SECRET_COLUMN: &str = "secret_ciphertext";

/// An external provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    S3,
    R2,
    Gcs,
    Firebase,
    Slack,
    Google,
}

/// A required non-secret setting: its name, its rule, and the rule in words.
pub type Setting = (&'static str, fn(&str) -> bool, &'static str);

/// What a provider's connection holds and may do.
#[derive(Debug)]
pub struct Spec {
    pub provider: Provider,
    pub name: &'static str,
    pub purpose: Purpose,
    /// Non-secret settings, each required, with its rule.
    pub config: &'static [Setting],
    /// Secret fields (required unless listed in `optional_secrets`).
    pub secrets: &'static [&'static str],
    pub optional_secrets: &'static [&'static str],
    /// The secret field whose last characters the list shows.
    pub hinted_secret: &'static str,
    pub read_scopes: &'static [&'static str],
    pub write_scopes: &'static [&'static str],
    /// The only domains (and their subdomains) a connection test may reach.
    pub domains: &'static [&'static str],
    /// Whether the connection is object storage (its paths carry the workspace id).
    pub storage: bool,
}

const STORAGE_READ: &[&str] = &["objects.list", "objects.read"];
const STORAGE_WRITE: &[&str] = &["objects.delete", "objects.write"];
const AWS_KEYS: &[&str] = &["access_key_id", "secret_access_key"];
const SERVICE_ACCOUNT: &[&str] = &["service_account_json"];

static SPECS: [Spec; 6] = [
    Spec {
        provider: Provider::S3,
        name: "s3",
        purpose: Purpose::StorageCredentials,
        config: &[
            ("bucket", is_bucket_name, "3 to 63 lowercase letters, digits, dots or hyphens"),
            ("region", is_region, "an AWS region such as eu-west-1"),
        ],
        secrets: AWS_KEYS,
        optional_secrets: &[],
        hinted_secret: "access_key_id",
        read_scopes: STORAGE_READ,
        write_scopes: STORAGE_WRITE,
        domains: &["amazonaws.com"],
        storage: true,
    },
    Spec {
        provider: Provider::R2,
        name: "r2",
        purpose: Purpose::StorageCredentials,
        config: &[
            ("account_id", is_r2_account, "32 hexadecimal characters"),
            ("bucket", is_bucket_name, "3 to 63 lowercase letters, digits, dots or hyphens"),
        ],
        secrets: AWS_KEYS,
        optional_secrets: &[],
        hinted_secret: "access_key_id",
        read_scopes: STORAGE_READ,
        write_scopes: STORAGE_WRITE,
        domains: &["r2.cloudflarestorage.com"],
        storage: true,
    },
    Spec {
        provider: Provider::Gcs,
        name: "gcs",
        purpose: Purpose::StorageCredentials,
        config: &[("bucket", is_bucket_name, "3 to 63 lowercase letters, digits, dots, hyphens or underscores")],
        secrets: SERVICE_ACCOUNT,
        optional_secrets: &[],
        hinted_secret: "service_account_json",
        read_scopes: STORAGE_READ,
        write_scopes: STORAGE_WRITE,
        domains: &["googleapis.com"],
        storage: true,
    },
    Spec {
        provider: Provider::Firebase,
        name: "firebase",
        purpose: Purpose::StorageCredentials,
        config: &[
            ("project_id", is_project_id, "6 to 30 lowercase letters, digits or hyphens"),
            ("bucket", is_bucket_name, "3 to 63 lowercase letters, digits, dots, hyphens or underscores"),
        ],
        secrets: SERVICE_ACCOUNT,
        optional_secrets: &[],
        hinted_secret: "service_account_json",
        read_scopes: STORAGE_READ,
        write_scopes: STORAGE_WRITE,
        domains: &["googleapis.com"],
        storage: true,
    },
    Spec {
        provider: Provider::Slack,
        name: "slack",
        purpose: Purpose::IntegrationTokens,
        config: &[],
        secrets: &["bot_token"],
        optional_secrets: &[],
        hinted_secret: "bot_token",
        read_scopes: &["channels:history", "channels:read", "users:read"],
        write_scopes: &["chat:write", "files:write"],
        domains: &["slack.com"],
        storage: false,
    },
    Spec {
        provider: Provider::Google,
        name: "google",
        purpose: Purpose::IntegrationTokens,
        config: &[],
        secrets: &["access_token"],
        optional_secrets: &["refresh_token"],
        hinted_secret: "access_token",
        read_scopes: &["calendar.readonly", "drive.readonly"],
        write_scopes: &["calendar.events", "drive.file"],
        domains: &["googleapis.com"],
        storage: false,
    },
];

impl Provider {
    pub const ALL: [Provider; 6] =
        [Provider::S3, Provider::R2, Provider::Gcs, Provider::Firebase, Provider::Slack, Provider::Google];

    pub fn spec(self) -> &'static Spec {
        // SPECS is in the order of ALL.
        &SPECS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
        && !s.contains("..")
        // A bucket named like an IP address is refused by every provider (and by us: no host games).
        && s.parse::<std::net::Ipv4Addr>().is_err()
}

fn is_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.split('-').count() >= 3
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_r2_account(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_project_id(s: &str) -> bool {
    (6..=30).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
}

/// Longest accepted secret field (a service-account JSON is a few KiB).
const MAX_SECRET_LEN: usize = 16 * 1024;

/// Secret fields, by name. `Debug` prints the names only.
#[derive(Default)]
pub struct SecretFields(pub BTreeMap<String, SecretString>);

impl std::fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "[REDACTED]"))).finish()
    }
}

impl SecretFields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.expose_secret())
    }

    /// Checks the fields against the provider's: every required one present, none unknown,
    /// each 1 to 16 KiB.
    fn check(&self, spec: &Spec) -> Result<(), TenancyError> {
        for name in self.0.keys() {
            if !spec.secrets.contains(&name.as_str()) && !spec.optional_secrets.contains(&name.as_str()) {
                return Err(TenancyError::Rejected {
                    code: "unknown_field",
                    message: "a secret field this provider does not take",
                });
            }
        }
        for name in spec.secrets {
            if self.get(name).is_none_or(|v| v.trim().is_empty()) {
                return Err(TenancyError::Rejected {
                    code: "missing_field",
                    message: "a secret field this provider requires is missing",
                });
            }
        }
        if self
            .0
            .values()
            .any(|v| v.expose_secret().len() > MAX_SECRET_LEN || v.expose_secret().chars().any(|c| c == '\0'))
        {
            return Err(TenancyError::Invalid("secret fields are at most 16 KiB of text"));
        }
        if spec.secrets == SERVICE_ACCOUNT {
            let json: serde_json::Value =
                self.get("service_account_json").and_then(|s| serde_json::from_str(s).ok()).ok_or(
                    TenancyError::Rejected { code: "invalid_field", message: "service_account_json is not JSON" },
                )?;
            if json.get("client_email").and_then(|v| v.as_str()).is_none()
                || json.get("private_key").and_then(|v| v.as_str()).is_none()
            {
                return Err(TenancyError::Rejected {
                    code: "invalid_field",
                    message: "service_account_json needs client_email and private_key",
                });
            }
        }
        Ok(())
    }

    fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let map: BTreeMap<&str, &str> = self.0.iter().map(|(k, v)| (k.as_str(), v.expose_secret())).collect();
        zeroize::Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default())
    }

    fn from_json(bytes: &[u8]) -> Result<SecretFields, TenancyError> {
        let map: BTreeMap<String, String> = serde_json::from_slice(bytes)
            .map_err(|_| TenancyError::Internal("a sealed connection secret is not JSON".into()))?;
        Ok(SecretFields(map.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect()))
    }

    /// At most the last four characters of a long enough value, after an ellipsis.
    fn hint(&self, spec: &Spec) -> String {
        let value = self.get(spec.hinted_secret).unwrap_or("");
        let chars: Vec<char> = value.trim().chars().collect();
        if spec.secrets == SERVICE_ACCOUNT || chars.len() < 16 {
            return "…".into();
        }
        format!("…{}", chars[chars.len() - 4..].iter().collect::<String>())
    }
}

/// A new connection.
#[derive(Debug)]
pub struct NewConnection {
    pub provider: Provider,
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub secret: SecretFields,
    /// Read scopes to hold; `None` for all of the provider's read scopes. Write scopes are
    /// refused here: they are enabled by [`set_scopes`].
    pub scopes: Option<Vec<String>>,
}

/// A connection as it is listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: ConnectionId,
    pub tenant: WorkspaceId,
    pub provider: Provider,
    pub name: String,
    pub config: BTreeMap<String, String>,
    /// The secret's last characters, for recognising it.
    pub secret_hint: String,
    pub scopes: Vec<String>,
    /// Whether any write scope is enabled.
    pub write_enabled: bool,
    /// Where this connection's objects live in the bucket (storage providers).
    pub path_prefix: Option<String>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub secret_rotated_at: DateTime<Utc>,
    pub last_tested_at: Option<DateTime<Utc>>,
    /// `ok`, or the stable code of the failure.
    pub last_test_outcome: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, provider, name, config, display_hint, scopes, created_by, created_at, updated_at, rotated_at, last_tested_at, last_test_outcome";

fn from_row(row: &QueryResult) -> Result<Connection, TenancyError> {
    let provider: String = row.try_get("", "provider")?;
    let provider =
        Provider::parse(&provider).ok_or_else(|| TenancyError::Internal(format!("unknown provider {provider:?}")))?;
    let config: String = row.try_get("", "config")?;
    let scopes: String = row.try_get("", "scopes")?;
    let scopes: Vec<String> = scopes.split_whitespace().map(str::to_owned).collect();
    let id: ConnectionId = row.try_get("", "id")?;
    let tenant = WorkspaceId(row.try_get("", "tenant_id")?);
    Ok(Connection {
        id,
        tenant,
        provider,
        name: row.try_get("", "name")?,
        config: serde_json::from_str(&config)
            .map_err(|_| TenancyError::Internal("connection config is not JSON".into()))?,
        secret_hint: row.try_get("", "display_hint")?,
        write_enabled: scopes.iter().any(|s| provider.spec().write_scopes.contains(&s.as_str())),
        scopes,
        path_prefix: provider.spec().storage.then(|| prefix(tenant, id)),
        created_by: row.try_get("", "created_by")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
        secret_rotated_at: row.try_get("", "rotated_at")?,
        last_tested_at: row.try_get("", "last_tested_at")?,
        last_test_outcome: row.try_get("", "last_test_outcome")?,
    })
}

fn prefix(tenant: WorkspaceId, id: ConnectionId) -> String {
    format!("workspaces/{}/connections/{id}/", tenant.0)
}

/// The object key of `relative` in a storage connection's bucket: always under
/// `workspaces/<workspace id>/connections/<connection id>/`, so two workspaces sharing a bucket
/// never share a path. Refuses empty, absolute, `..`, backslash and control-character paths.
pub fn object_path(tenant: WorkspaceId, connection: ConnectionId, relative: &str) -> Result<String, TenancyError> {
    let bad = relative.is_empty()
        || relative.len() > 900
        || relative.starts_with('/')
        || relative.contains('\\')
        || relative.chars().any(char::is_control)
        || relative.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(TenancyError::Rejected {
            code: "invalid_path",
            message: "an object path is relative, without empty, `.` or `..` segments",
        });
    }
    Ok(format!("{}{relative}", prefix(tenant, connection)))
}

fn check_config(spec: &Spec, config: &BTreeMap<String, String>) -> Result<(), TenancyError> {
    for key in config.keys() {
        if !spec.config.iter().any(|(name, _, _)| name == key) {
            return Err(TenancyError::Rejected {
                code: "unknown_field",
                message: "a setting this provider does not take",
            });
        }
    }
    for (name, valid, _) in spec.config {
        match config.get(*name) {
            Some(value) if valid(value) => {}
            _ => {
                return Err(TenancyError::Rejected {
                    code: "invalid_field",
                    message: "a provider setting is missing or malformed",
                })
            }
        }
    }
    Ok(())
}

/// Checks `scopes` are the provider's, without duplicates; sorted.
fn check_scopes(spec: &Spec, scopes: &[String]) -> Result<Vec<String>, TenancyError> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        if !spec.read_scopes.contains(&scope.as_str()) && !spec.write_scopes.contains(&scope.as_str()) {
            return Err(TenancyError::Rejected {
                code: "unknown_scope",
                message: "a scope this provider does not have",
            });
        }
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    out.sort();
    Ok(out)
}

async fn seal_secret(
    tx: &TenantTx,
    vault: &Vault,
    spec: &Spec,
    id: ConnectionId,
    secret: &SecretFields,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRET_COLUMN, row: id.0 };
    secrets::seal(tx, vault, spec.purpose, &place, &secret.to_json(), now).await
}

/// Creates a connection (`connections.manage`) holding read scopes only.
pub async fn create(
    tx: &TenantTx,
    vault: &Vault,
    new: &NewConnection,
    now: DateTime<Utc>,
) -> Result<Connection, TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    let spec = new.provider.spec();
    let name = check_name(&new.name)?;
    check_config(spec, &new.config)?;
    new.secret.check(spec)?;
    let scopes = match &new.scopes {
        None => spec.read_scopes.iter().map(|s| (*s).to_owned()).collect(),
        Some(given) => check_scopes(spec, given)?,
    };
    if scopes.iter().any(|s| spec.write_scopes.contains(&s.as_str())) {
        return Err(TenancyError::Rejected {
            code: "write_scope_not_enabled",
            message: "connections start read-only; enable write scopes explicitly afterwards",
        });
    }
    let id = ConnectionId::new_random();
    let (sealed, version) = seal_secret(tx, vault, spec, id, &new.secret, now).await?;
    let config = serde_json::to_string(&new.config).map_err(|e| TenancyError::Internal(e.to_string()))?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!(
                "INSERT INTO connections (id, tenant_id, provider, name, config, secret_ciphertext, ciphertext_version, display_hint,
                                          scopes, created_by, created_at, updated_at, rotated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11) RETURNING {COLUMNS}"
            ),
            vec![
                id.into(),
                tx.tenant().0.into(),
                spec.name.into(),
                name.into(),
                config.into(),
                sealed.into(),
                secrets::version_value(version),
                new.secret.hint(spec).into(),
                scopes.join(" ").into(),
                tx.user().0.into(),
                now.into(),
            ],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    tx.record(
        audit::Category::Secret,
        "connection.created",
        serde_json::json!({ "connection_id": id, "provider": spec.name, "name": name, "scopes": scopes }),
        now,
    )
    .await?;
    from_row(&row)
}

/// The workspace's connections (`connections.read`), oldest first.
pub async fn list(tx: &TenantTx) -> Result<Vec<Connection>, TenancyError> {
    require_read(tx)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM connections WHERE tenant_id = $1 ORDER BY created_at, id"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

fn require_read(tx: &TenantTx) -> Result<(), TenancyError> {
    if tx.require_member(&Permission::CONNECTIONS_MANAGE).is_ok() {
        return Ok(());
    }
    tx.require_member(&Permission::CONNECTIONS_READ).map(|_| ())
}

/// One connection (`connections.read`).
pub async fn get(tx: &TenantTx, id: ConnectionId) -> Result<Connection, TenancyError> {
    require_read(tx)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM connections WHERE tenant_id = $1 AND id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// Replaces the secret fields (`connections.manage`); sealed afresh with the active key.
pub async fn rotate_secret(
    tx: &TenantTx,
    vault: &Vault,
    id: ConnectionId,
    secret: &SecretFields,
    now: DateTime<Utc>,
) -> Result<Connection, TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    let current = get(tx, id).await?;
    let spec = current.provider.spec();
    secret.check(spec)?;
    let (sealed, version) = seal_secret(tx, vault, spec, id, secret, now).await?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!(
                "UPDATE connections SET secret_ciphertext = $1, ciphertext_version = $2, display_hint = $3, rotated_at = $4, updated_at = $4
                  WHERE tenant_id = $5 AND id = $6 RETURNING {COLUMNS}"
            ),
            vec![sealed.into(), secrets::version_value(version), secret.hint(spec).into(), now.into(), tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    tx.record(audit::Category::Secret, "connection.secret_rotated", serde_json::json!({ "connection_id": id }), now)
        .await?;
    from_row(&row)
}

/// Sets the scopes (`connections.manage`). This is the only way write scopes are enabled; the
/// change is recorded with what was added and removed.
pub async fn set_scopes(
    tx: &TenantTx,
    id: ConnectionId,
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<Connection, TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    let current = get(tx, id).await?;
    let spec = current.provider.spec();
    let scopes = check_scopes(spec, scopes)?;
    let added: Vec<&String> = scopes.iter().filter(|s| !current.scopes.contains(s)).collect();
    let removed: Vec<&String> = current.scopes.iter().filter(|s| !scopes.contains(s)).collect();
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("UPDATE connections SET scopes = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 RETURNING {COLUMNS}"),
            vec![scopes.join(" ").into(), now.into(), tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let updated = from_row(&row)?;
    let action = if updated.write_enabled && !current.write_enabled {
        "connection.write_enabled"
    } else {
        "connection.scopes_changed"
    };
    tx.record(
        audit::Category::Secret,
        action,
        serde_json::json!({ "connection_id": id, "added": added, "removed": removed, "write_enabled": updated.write_enabled }),
        now,
    )
    .await?;
    Ok(updated)
}

/// Deletes a connection and its sealed secret (`connections.manage`).
pub async fn delete(tx: &TenantTx, id: ConnectionId, now: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM connections WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Secret, "connection.deleted", serde_json::json!({ "connection_id": id }), now).await
}

/// A connection with its secret opened, for testing it (`connections.manage`). Hold it only as
/// long as the test takes.
#[derive(Debug)]
pub struct Opened {
    pub connection: Connection,
    pub secret: SecretFields,
}

pub async fn open_for_test(tx: &TenantTx, vault: &Vault, id: ConnectionId) -> Result<Opened, TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    // One read: the listed columns and the sealed secret of the same row.
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS}, secret_ciphertext FROM connections WHERE tenant_id = $1 AND id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let connection = from_row(&row)?;
    let sealed: Vec<u8> = row.try_get("", "secret_ciphertext")?;
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRET_COLUMN, row: id.0 };
    let plaintext = secrets::open(tx, vault, &place, &sealed).await?;
    Ok(Opened { connection, secret: SecretFields::from_json(&plaintext)? })
}

/// Records the outcome of a connection test: `ok` or the failure's stable code.
pub async fn record_test(
    tx: &TenantTx,
    id: ConnectionId,
    outcome: &str,
    now: DateTime<Utc>,
) -> Result<Connection, TenancyError> {
    tx.require_member(&Permission::CONNECTIONS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("UPDATE connections SET last_tested_at = $1, last_test_outcome = $2 WHERE tenant_id = $3 AND id = $4 RETURNING {COLUMNS}"),
            vec![now.into(), outcome.into(), tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    tx.record(
        audit::Category::Secret,
        "connection.tested",
        serde_json::json!({ "connection_id": id, "outcome": outcome }),
        now,
    )
    .await?;
    from_row(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_in_the_order_of_all() {
        for p in Provider::ALL {
            assert_eq!(p.spec().provider, p);
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn object_paths_always_start_with_the_workspace_and_refuse_traversal() {
        let tenant = WorkspaceId::new_random();
        let id = ConnectionId::new_random();
        assert_eq!(
            object_path(tenant, id, "a/b.txt").unwrap(),
            format!("workspaces/{}/connections/{id}/a/b.txt", tenant.0)
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a\\b", "a/./b", "x\n"] {
            assert!(object_path(tenant, id, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn provider_settings_are_checked_by_their_rules() {
        assert!(is_bucket_name("my-bucket.data"));
        for bad in ["ab", "My-Bucket", "-x-", "a..b", "192.168.0.1", "bucket/../x", "b@d"] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
        assert!(is_region("eu-west-1") && !is_region("eu") && !is_region("169.254.169.254"));
        assert!(is_r2_account(&"a1".repeat(16)) && !is_r2_account("xyz"));
    }

    #[test]
    fn hints_show_at_most_four_trailing_characters_of_long_secrets() {
        let slack = Provider::Slack.spec();
        let fields = |v: &str| SecretFields([("bot_token".to_owned(), SecretString::from(v.to_owned()))].into());
        assert_eq!(fields("xoxb-1234567890-abcd").hint(slack), "…abcd");
        assert_eq!(fields("short").hint(slack), "…");
        assert_eq!(format!("{:?}", fields("xoxb-1234567890-abcd")), "{\"bot_token\": \"[REDACTED]\"}");
    }
}
