//! A source's secrets: the list that never prints them, its check per scheme, and sealing and
//! opening it with the workspace's data key.

use chrono::{DateTime, Utc};
use crypto_vault::{Place, Purpose, Vault};
use ids::SourceId;
use sea_orm::ConnectionTrait;
use secrecy::{ExposeSecret, SecretString};
use tenancy::{secrets, TenancyError, TenantTx};

use super::settings::Kind;
use crate::{generic, standard, stripe, twilio};

const TABLE: &str = "webhook_sources";
const SECRETS_COLUMN: &str = "secrets_ciphertext";
/// Secrets a source holds at most (the current one and those being rotated out).
pub const MAX_SECRETS: usize = 5;

/// Secrets of a source, newest first. `Debug` prints how many, never them.
pub struct SourceSecrets(pub Vec<SecretString>);

impl std::fmt::Debug for SourceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceSecrets({} secrets)", self.0.len())
    }
}

impl SourceSecrets {
    /// Each secret must parse for the scheme; 1 to [`MAX_SECRETS`] of them.
    pub(super) fn check(&self, kind: Kind) -> Result<(), TenancyError> {
        if self.0.is_empty() || self.0.len() > MAX_SECRETS {
            return Err(TenancyError::Rejected { code: "invalid_secrets", message: "a source holds 1 to 5 secrets" });
        }
        for s in &self.0 {
            let s = s.expose_secret();
            let ok = match kind {
                Kind::Stripe => stripe::SigningSecret::parse(s).is_ok(),
                Kind::Standard => standard::Secret::parse(s).is_ok(),
                Kind::Twilio => twilio::AuthToken::parse(s).is_ok(),
                Kind::Generic => generic::Secret::parse(s).is_ok(),
            };
            if !ok || s.len() > 1024 {
                return Err(TenancyError::Rejected {
                    code: "invalid_secrets",
                    message: "a secret this scheme cannot use",
                });
            }
        }
        Ok(())
    }

    fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let list: Vec<&str> = self.0.iter().map(|s| s.expose_secret()).collect();
        zeroize::Zeroizing::new(serde_json::to_vec(&list).unwrap_or_default())
    }

    fn from_json(bytes: &[u8]) -> Result<SourceSecrets, TenancyError> {
        let list: Vec<String> = serde_json::from_slice(bytes)
            .map_err(|_| TenancyError::Internal("sealed webhook secrets are not JSON".into()))?;
        Ok(SourceSecrets(list.into_iter().map(SecretString::from).collect()))
    }
}

pub(super) async fn seal(
    tx: &TenantTx,
    vault: &Vault,
    id: SourceId,
    secrets: &SourceSecrets,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRETS_COLUMN, row: id.0 };
    secrets::seal(tx, vault, Purpose::IntegrationTokens, &place, &secrets.to_json(), now).await
}

pub(super) async fn open_secrets(
    tx: &TenantTx,
    vault: &Vault,
    id: SourceId,
) -> Result<Option<SourceSecrets>, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            "SELECT secrets_ciphertext FROM webhook_sources WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let sealed: Option<Vec<u8>> = row.try_get("", "secrets_ciphertext")?;
    open_sealed(tx, vault, id, sealed.as_deref()).await
}

/// Opens a source's sealed secrets column (`None`: no secret configured).
pub(super) async fn open_sealed(
    tx: &TenantTx,
    vault: &Vault,
    id: SourceId,
    sealed: Option<&[u8]>,
) -> Result<Option<SourceSecrets>, TenancyError> {
    let Some(sealed) = sealed else { return Ok(None) };
    let place = Place { tenant: tx.tenant().0, table: TABLE, column: SECRETS_COLUMN, row: id.0 };
    Ok(Some(SourceSecrets::from_json(&secrets::open(tx, vault, &place, sealed).await?)?))
}
