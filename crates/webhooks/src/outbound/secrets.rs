//! An endpoint's Standard Webhooks signing secrets: sealed with the workspace's data key, which of
//! them sign now, and rotation.

use chrono::{DateTime, Duration, Utc};
use crypto_vault::{Place, Purpose, Vault};
use ids::{EndpointId, WorkspaceId};
use rbac::Permission;
use sea_orm::ConnectionTrait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tenancy::{secrets, TenancyError, TenantTx};

use crate::standard;

/// How long a rotated-out secret keeps signing beside the new one, so receivers can switch over.
pub const SECRET_OVERLAP_SECS: i64 = 24 * 3600;

/// Secrets an endpoint signs with at most (the current one and those still overlapping).
pub const MAX_SIGNING_SECRETS: usize = 3;

const TABLE: &str = "webhook_endpoints";
const SECRETS_COLUMN: &str = "secrets_ciphertext";

/// An endpoint's secrets as sealed: newest first, each with the time it stops signing.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSecret {
    pub(super) secret: String,
    pub(super) expires_at: Option<DateTime<Utc>>,
}

impl Drop for StoredSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

fn place(tenant: WorkspaceId, endpoint: EndpointId) -> Place<'static> {
    Place { tenant: tenant.0, table: TABLE, column: SECRETS_COLUMN, row: endpoint.0 }
}

pub(super) async fn seal_secrets(
    tx: &TenantTx,
    vault: &Vault,
    endpoint: EndpointId,
    list: &[StoredSecret],
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(list).map_err(|e| TenancyError::Internal(e.to_string()))?);
    secrets::seal(tx, vault, Purpose::IntegrationTokens, &place(tx.tenant(), endpoint), &json, now).await
}

pub(super) async fn open_secrets(
    tx: &TenantTx,
    vault: &Vault,
    endpoint: EndpointId,
    sealed: &[u8],
) -> Result<Vec<StoredSecret>, TenancyError> {
    let bytes = secrets::open(tx, vault, &place(tx.tenant(), endpoint), sealed).await?;
    serde_json::from_slice(&bytes).map_err(|_| TenancyError::Internal("sealed endpoint secrets are not JSON".into()))
}

pub(super) fn signing_at(list: &[StoredSecret], now: DateTime<Utc>) -> impl Iterator<Item = &StoredSecret> {
    list.iter().filter(move |s| s.expires_at.is_none_or(|at| at > now))
}

/// Rotates the signing secret (`webhooks.manage`): a new `whsec_` secret, returned once, signs
/// from now on; the previous ones keep signing beside it for [`SECRET_OVERLAP_SECS`] (never
/// longer than they already would), so a receiver can switch secrets without dropping a
/// delivery. Returns the new secret and when the previous one stops signing.
pub async fn rotate_secret(
    tx: &TenantTx,
    vault: &Vault,
    id: EndpointId,
    now: DateTime<Utc>,
) -> Result<(SecretString, DateTime<Utc>), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(tx.statement(
            "SELECT secrets_ciphertext FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let sealed: Vec<u8> = row.try_get("", "secrets_ciphertext")?;
    let overlap_end = now + Duration::seconds(SECRET_OVERLAP_SECS);
    let mut list = open_secrets(tx, vault, id, &sealed).await?;
    list.retain(|s| s.expires_at.is_none_or(|at| at > now));
    for s in &mut list {
        s.expires_at = Some(s.expires_at.map_or(overlap_end, |at| at.min(overlap_end)));
    }
    let secret = standard::Secret::generate(&mut rand::rngs::OsRng).to_whsec();
    list.insert(0, StoredSecret { secret: secret.expose_secret().to_owned(), expires_at: None });
    // Rotating again and again within the overlap keeps only the newest few signing.
    list.truncate(MAX_SIGNING_SECRETS);
    let (sealed, version) = seal_secrets(tx, vault, id, &list, now).await?;
    let expiries: Vec<DateTime<Utc>> = list.iter().filter_map(|s| s.expires_at).collect();
    let expiries = serde_json::to_string(&expiries).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(tx.statement(
            "UPDATE webhook_endpoints SET secrets_ciphertext = $1, ciphertext_version = $2, overlap_ends = $3, updated_at = $4
              WHERE tenant_id = $5 AND id = $6",
            vec![
                sealed.into(),
                secrets::version_value(version),
                expiries.into(),
                now.into(),
                tx.tenant().0.into(),
                id.into(),
            ],
        ))
        .await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_endpoint.secret_rotated",
        serde_json::json!({ "endpoint_id": id, "previous_signs_until": overlap_end }),
        now,
    )
    .await?;
    Ok((secret, overlap_end))
}
