//! Values a sign-in keeps sealed with the server's vault key: the flow's nonce and verifier, and
//! the provider's tokens.

use crate::core::context::Core;
use crate::core::error::AuthError;

/// Each sealed value is bound to its purpose and its row, so no ciphertext opens in another
/// column or another row (the vault key also seals TOTP secrets and outbox payloads).
pub(super) const AAD_NONCE: &[u8] = b"oidc.flow.nonce|";
pub(super) const AAD_VERIFIER: &[u8] = b"oidc.flow.verifier|";
pub(super) const AAD_ACCESS: &[u8] = b"oidc.identity.access_token|";
pub(super) const AAD_REFRESH: &[u8] = b"oidc.identity.refresh_token|";

pub(super) fn aad(purpose: &[u8], row: &[u8]) -> Vec<u8> {
    [purpose, row].concat()
}

/// Opens a sealed text value (see [`Core::open_with_vault_keys`]).
pub(super) fn open_text(core: &Core, aad: &[u8], sealed: &str) -> Result<String, AuthError> {
    let (plain, _) = core.open_with_vault_keys(aad, sealed)?;
    String::from_utf8(plain.to_vec()).map_err(|_| AuthError::Internal("a sealed sign-in value is not text".into()))
}
