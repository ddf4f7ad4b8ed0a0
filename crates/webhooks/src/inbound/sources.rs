//! A workspace's sources: creating, listing, reading and deleting them, and replacing their
//! secrets.

use chrono::{DateTime, Utc};
use crypto_vault::Vault;
use ids::{SourceId, WorkspaceId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use tenancy::{secrets, TenancyError, TenantTx};

use super::secrets::{open_secrets, seal, SourceSecrets, MAX_SECRETS};
use super::settings::{Kind, Settings};

/// A source as its workspace's administrators see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: SourceId,
    pub tenant: WorkspaceId,
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
        tenant: row.try_get("", "tenant_id")?,
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
    let id = SourceId::new_random();
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
        .execute(tx.statement(
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
        .query_all(tx.statement(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE s.tenant_id = $1 ORDER BY s.created_at, s.id"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// One source (`webhooks.manage`).
pub async fn get(tx: &TenantTx, id: SourceId) -> Result<Source, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(tx.statement(
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
    id: SourceId,
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
        .execute(tx.statement(
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
pub async fn delete(tx: &TenantTx, id: SourceId, now: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let done = tx
        .conn()
        .execute(tx.statement(
            "DELETE FROM webhook_sources WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Webhook, "webhook_source.deleted", serde_json::json!({ "source_id": id }), now).await
}
