//! Key-encryption keys (KEKs): where data keys are wrapped and unwrapped. They come from outside
//! the database — the environment or a key file through [`LocalKeyProvider`], or a key-management
//! service through another implementation of [`KeyProvider`] — so a copy of the database alone
//! (a dump, a backup, a stolen replica) opens nothing.

use std::collections::HashMap;

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;

use crate::{KeyMaterial, Purpose, VaultError, KEY_LEN};

/// Names a key-encryption key; stored beside every data key it wrapped.
pub type KekId = String;

/// Wraps and unwraps data keys. Implementations for a key-management service do their I/O
/// inside `wrap`/`unwrap`; the vault calls them only when it creates a data key or meets a
/// wrapped key it has not unwrapped before.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// The KEK that wraps new data keys of `tenant` for `purpose` (the tenant's own key when it
    /// brought one).
    fn active_kek(&self, tenant: Uuid, purpose: Purpose) -> Result<KekId, VaultError>;

    /// Seals `key` under KEK `kek`, bound to `aad`.
    async fn wrap(&self, kek: &str, purpose: Purpose, aad: &[u8], key: &KeyMaterial) -> Result<Vec<u8>, VaultError>;

    /// Opens a key sealed by [`KeyProvider::wrap`] with the same KEK, purpose and `aad`.
    async fn unwrap(&self, kek: &str, purpose: Purpose, aad: &[u8], wrapped: &[u8]) -> Result<KeyMaterial, VaultError>;
}

/// One configured root key and the KEKs derived from it, one per purpose.
struct Root {
    id: KekId,
    fingerprint: [u8; 8],
    /// The tenant that brought this key, if any: it wraps that tenant's data keys only.
    tenant: Option<Uuid>,
    keks: HashMap<Purpose, KeyMaterial>,
}

/// HKDF salt of the KEK derivation; changing it would orphan every wrapped key.
const KDF_SALT: &[u8] = b"rampart vault kek v1";

impl Root {
    /// Derives a separate KEK per purpose with HKDF-SHA256 (RFC 5869; NIST SP 800-56C Rev. 2
    /// two-step derivation), and an id from a further HKDF output so the id reveals nothing of
    /// the key.
    fn new(prefix: &str, tenant: Option<Uuid>, root: &KeyMaterial) -> Result<Root, VaultError> {
        let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), root.expose());
        let mut keks = HashMap::new();
        for purpose in Purpose::ALL {
            let mut okm = zeroize::Zeroizing::new([0u8; KEY_LEN]);
            hk.expand(purpose.as_str().as_bytes(), &mut okm[..]).map_err(|_| VaultError::Crypto)?;
            keks.insert(purpose, KeyMaterial::from_bytes(*okm));
        }
        let mut fingerprint = [0u8; 8];
        hk.expand(b"key id", &mut fingerprint).map_err(|_| VaultError::Crypto)?;
        Ok(Root { id: format!("{prefix}-{}", hex::encode(fingerprint)), fingerprint, tenant, keks })
    }
}

/// KEKs from configuration: the active platform root key, older ones that still unwrap (until
/// `rampart keys rewrap` has moved every data key to the active one), and the keys tenants
/// brought. Removing a tenant's key from the configuration makes that tenant's data unreadable,
/// backups included: the key was never in the database.
pub struct LocalKeyProvider {
    active: KekId,
    tenant_active: HashMap<Uuid, KekId>,
    roots: HashMap<KekId, Root>,
}

impl std::fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyProvider")
            .field("active", &self.active)
            .field("tenant_active", &self.tenant_active)
            .field("roots", &self.roots.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalKeyProvider {
    /// `active` wraps new data keys; `previous` only unwrap.
    pub fn new(active: &KeyMaterial, previous: &[KeyMaterial]) -> Result<LocalKeyProvider, VaultError> {
        let first = Root::new("kek", None, active)?;
        let mut provider =
            LocalKeyProvider { active: first.id.clone(), tenant_active: HashMap::new(), roots: HashMap::new() };
        provider.roots.insert(first.id.clone(), first);
        for key in previous {
            let root = Root::new("kek", None, key)?;
            provider.roots.entry(root.id.clone()).or_insert(root);
        }
        Ok(provider)
    }

    /// Adds a key `tenant` brought: the first one given per tenant is active for it, later ones
    /// only unwrap.
    pub fn with_tenant_key(mut self, tenant: Uuid, key: &KeyMaterial) -> Result<LocalKeyProvider, VaultError> {
        let root = Root::new("tenant", Some(tenant), key)?;
        if self.roots.values().any(|r| r.fingerprint == root.fingerprint && r.tenant != Some(tenant)) {
            return Err(VaultError::Config("a tenant key must not be another tenant's or the platform's"));
        }
        self.tenant_active.entry(tenant).or_insert_with(|| root.id.clone());
        self.roots.entry(root.id.clone()).or_insert(root);
        Ok(self)
    }

    fn kek(&self, id: &str, purpose: Purpose) -> Result<&KeyMaterial, VaultError> {
        self.roots.get(id).and_then(|root| root.keks.get(&purpose)).ok_or(VaultError::UnknownKek)
    }
}

/// Bytes of a wrapped key: nonce, then the sealed key and tag.
const WRAP_NONCE_LEN: usize = 12;

#[async_trait::async_trait]
impl KeyProvider for LocalKeyProvider {
    fn active_kek(&self, tenant: Uuid, _purpose: Purpose) -> Result<KekId, VaultError> {
        Ok(self.tenant_active.get(&tenant).unwrap_or(&self.active).clone())
    }

    async fn wrap(&self, kek: &str, purpose: Purpose, aad: &[u8], key: &KeyMaterial) -> Result<Vec<u8>, VaultError> {
        let cipher = Aes256Gcm::new_from_slice(self.kek(kek, purpose)?.expose()).map_err(|_| VaultError::Crypto)?;
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: key.expose(), aad })
            .map_err(|_| VaultError::Crypto)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    async fn unwrap(&self, kek: &str, purpose: Purpose, aad: &[u8], wrapped: &[u8]) -> Result<KeyMaterial, VaultError> {
        let cipher = Aes256Gcm::new_from_slice(self.kek(kek, purpose)?.expose()).map_err(|_| VaultError::Crypto)?;
        if wrapped.len() != WRAP_NONCE_LEN + KEY_LEN + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, sealed) = wrapped.split_at(WRAP_NONCE_LEN);
        let bytes = zeroize::Zeroizing::new(
            cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad }).map_err(|_| VaultError::Crypto)?,
        );
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes);
        let material = KeyMaterial::from_bytes(key);
        zeroize::Zeroize::zeroize(&mut key);
        Ok(material)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_use_separate_keks_derived_from_one_root() {
        let root = KeyMaterial::generate();
        let p = LocalKeyProvider::new(&root, &[]).unwrap();
        let id = p.active_kek(Uuid::nil(), Purpose::PersonalData).unwrap();
        let a = p.kek(&id, Purpose::PersonalData).unwrap().expose();
        let b = p.kek(&id, Purpose::IntegrationTokens).unwrap().expose();
        let c = p.kek(&id, Purpose::StorageCredentials).unwrap().expose();
        assert!(a != b && b != c && a != c);
        assert!(a != root.expose());
        assert!(!id.contains(&hex::encode(&root.expose()[..4])));
    }
}
