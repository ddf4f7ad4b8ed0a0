//! The vault: creates, unwraps and re-wraps tenants' data keys through a [`KeyProvider`], and
//! keeps unwrapped keys in memory so sealing and opening cost one AES-GCM operation.
//!
//! The cache never decides whether a key exists: every lookup presents the wrapped key as read
//! from the database in the caller's transaction, and a cached key is used only for exactly those
//! bytes. Deleting a tenant's key rows (crypto-shredding) therefore ends its data at once, in
//! every running server, without cache invalidation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::{DataKey, KekId, KeyMaterial, KeyProvider, Purpose, VaultError};

/// A data key as stored: the KEK that wrapped it and the wrapped bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek: KekId,
    pub ciphertext: Vec<u8>,
}

/// Names one data key: a tenant's key for a purpose, at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyName {
    pub tenant: Uuid,
    pub purpose: Purpose,
    pub version: u32,
}

impl KeyName {
    /// Associated data of the wrapped key: it unwraps only as this tenant's key of this purpose
    /// and version, under this KEK.
    fn aad(&self, kek: &str) -> Vec<u8> {
        let mut aad = b"rampart data key\0".to_vec();
        aad.extend_from_slice(self.tenant.as_bytes());
        aad.push(self.purpose.code());
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(kek.as_bytes());
        aad
    }
}

/// Unwrapped keys kept at most; past it the cache starts over (keys unwrap again on demand).
const CACHE_CAPACITY: usize = 4096;

/// Data keys in memory, by name and the exact wrapped bytes they came from.
type Cache = HashMap<KeyName, (WrappedKey, Arc<DataKey>)>;

/// See the module documentation.
#[derive(Debug)]
pub struct Vault {
    provider: Arc<dyn KeyProvider>,
    cache: Mutex<Cache>,
}

impl Vault {
    pub fn new(provider: Arc<dyn KeyProvider>) -> Vault {
        Vault { provider, cache: Mutex::new(HashMap::new()) }
    }

    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// A fresh random data key for `name`, wrapped by the KEK active for its tenant and
    /// purpose. The caller stores the wrapped form; the key is cached for it.
    pub async fn create_key(&self, name: KeyName) -> Result<(WrappedKey, Arc<DataKey>), VaultError> {
        let material = KeyMaterial::generate();
        let kek = self.provider.active_kek(name.tenant, name.purpose)?;
        let ciphertext = self.provider.wrap(&kek, name.purpose, &name.aad(&kek), &material).await?;
        let wrapped = WrappedKey { kek, ciphertext };
        let key = Arc::new(DataKey::new(name.tenant, name.purpose, name.version, &material)?);
        self.remember(name, &wrapped, &key);
        Ok((wrapped, key))
    }

    /// The data key `name` stored as `wrapped`, unwrapped once and then served from memory for
    /// these exact bytes.
    pub async fn key(&self, name: KeyName, wrapped: &WrappedKey) -> Result<Arc<DataKey>, VaultError> {
        if let Some((seen, key)) = self.lock().get(&name) {
            if seen == wrapped {
                return Ok(key.clone());
            }
        }
        let material =
            self.provider.unwrap(&wrapped.kek, name.purpose, &name.aad(&wrapped.kek), &wrapped.ciphertext).await?;
        let key = Arc::new(DataKey::new(name.tenant, name.purpose, name.version, &material)?);
        self.remember(name, wrapped, &key);
        Ok(key)
    }

    /// `wrapped` re-wrapped under the KEK now active for its tenant and purpose, or `None` when
    /// it already is. The data key itself is unchanged, so no value needs re-encrypting for a
    /// KEK rotation.
    pub async fn rewrap_key(&self, name: KeyName, wrapped: &WrappedKey) -> Result<Option<WrappedKey>, VaultError> {
        let active = self.provider.active_kek(name.tenant, name.purpose)?;
        if active == wrapped.kek {
            return Ok(None);
        }
        let material =
            self.provider.unwrap(&wrapped.kek, name.purpose, &name.aad(&wrapped.kek), &wrapped.ciphertext).await?;
        let ciphertext = self.provider.wrap(&active, name.purpose, &name.aad(&active), &material).await?;
        Ok(Some(WrappedKey { kek: active, ciphertext }))
    }

    /// Drops every cached key of `tenant` (after shredding, so not even memory holds them).
    pub fn forget_tenant(&self, tenant: Uuid) {
        self.lock().retain(|name, _| name.tenant != tenant);
    }

    fn remember(&self, name: KeyName, wrapped: &WrappedKey, key: &Arc<DataKey>) {
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(&name) {
            cache.clear();
        }
        cache.insert(name, (wrapped.clone(), key.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the map half-written in a harmful way: at
        // worst an entry is missing and unwraps again.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalKeyProvider, Place};

    fn vault(active: &KeyMaterial, previous: &[KeyMaterial]) -> Vault {
        Vault::new(Arc::new(LocalKeyProvider::new(active, previous).unwrap()))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The local provider never awaits anything, so one poll completes it.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the local provider does not wait"),
        }
    }

    fn name(tenant: Uuid, version: u32) -> KeyName {
        KeyName { tenant, purpose: Purpose::StorageCredentials, version }
    }

    #[test]
    fn a_created_key_unwraps_from_its_stored_form_in_another_vault_with_the_same_kek() {
        let kek = KeyMaterial::generate();
        let tenant = Uuid::new_v4();
        let (wrapped, key) = block_on(vault(&kek, &[]).create_key(name(tenant, 1))).unwrap();
        let at = Place { tenant, table: "t", column: "c", row: Uuid::new_v4() };
        let sealed = key.seal(&at, b"AKIA secret").unwrap();
        let elsewhere = block_on(vault(&kek, &[]).key(name(tenant, 1), &wrapped)).unwrap();
        assert_eq!(elsewhere.open(&at, &sealed).unwrap().as_slice(), b"AKIA secret");
        // The wrapped form never holds the data key's bytes in clear.
        let provider = LocalKeyProvider::new(&kek, &[]).unwrap();
        let dek = KeyMaterial::generate();
        let id = provider.active_kek(tenant, Purpose::StorageCredentials).unwrap();
        let sealed = block_on(provider.wrap(&id, Purpose::StorageCredentials, b"aad", &dek)).unwrap();
        assert!(!sealed.windows(crate::KEY_LEN).any(|w| w == dek.expose()));
    }

    #[test]
    fn a_wrapped_key_does_not_unwrap_as_another_tenants_version_or_purpose_or_under_another_kek() {
        let kek = KeyMaterial::generate();
        let v = vault(&kek, &[]);
        let tenant = Uuid::new_v4();
        let (wrapped, _) = block_on(v.create_key(name(tenant, 1))).unwrap();
        let fresh = vault(&kek, &[]);
        assert_eq!(block_on(fresh.key(name(Uuid::new_v4(), 1), &wrapped)).unwrap_err(), VaultError::Crypto);
        assert_eq!(block_on(fresh.key(name(tenant, 2), &wrapped)).unwrap_err(), VaultError::Crypto);
        let other_purpose = KeyName { purpose: Purpose::PersonalData, ..name(tenant, 1) };
        assert_eq!(block_on(fresh.key(other_purpose, &wrapped)).unwrap_err(), VaultError::Crypto);
        assert_eq!(
            block_on(vault(&KeyMaterial::generate(), &[]).key(name(tenant, 1), &wrapped)).unwrap_err(),
            VaultError::UnknownKek
        );
        let mut flipped = wrapped.clone();
        flipped.ciphertext[20] ^= 1;
        assert_eq!(block_on(fresh.key(name(tenant, 1), &flipped)).unwrap_err(), VaultError::Crypto);
    }

    #[test]
    fn the_cache_serves_only_the_exact_wrapped_bytes_it_unwrapped() {
        let kek = KeyMaterial::generate();
        let v = vault(&kek, &[]);
        let tenant = Uuid::new_v4();
        let (wrapped, first) = block_on(v.create_key(name(tenant, 1))).unwrap();
        let again = block_on(v.key(name(tenant, 1), &wrapped)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let mut other = wrapped.clone();
        other.ciphertext[15] ^= 1;
        assert_eq!(block_on(v.key(name(tenant, 1), &other)).unwrap_err(), VaultError::Crypto);
        v.forget_tenant(tenant);
        let after = block_on(v.key(name(tenant, 1), &wrapped)).unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
    }

    #[test]
    fn a_kek_rotation_rewraps_data_keys_and_leaves_values_readable() {
        let old = KeyMaterial::generate();
        let new = KeyMaterial::generate();
        let tenant = Uuid::new_v4();
        let (wrapped, key) = block_on(vault(&old, &[]).create_key(name(tenant, 1))).unwrap();
        let at = Place { tenant, table: "t", column: "c", row: Uuid::new_v4() };
        let sealed = key.seal(&at, b"value").unwrap();
        let rotated = vault(&new, std::slice::from_ref(&old));
        let rewrapped = block_on(rotated.rewrap_key(name(tenant, 1), &wrapped)).unwrap().unwrap();
        assert_ne!(rewrapped.kek, wrapped.kek);
        assert_eq!(block_on(rotated.rewrap_key(name(tenant, 1), &rewrapped)).unwrap(), None);
        // Without the old KEK at all, the rewrapped key still opens the value.
        let only_new = vault(&new, &[]);
        let key = block_on(only_new.key(name(tenant, 1), &rewrapped)).unwrap();
        assert_eq!(key.open(&at, &sealed).unwrap().as_slice(), b"value");
        assert_eq!(block_on(only_new.key(name(tenant, 1), &wrapped)).unwrap_err(), VaultError::UnknownKek);
    }

    #[test]
    fn a_tenant_that_brought_its_key_has_its_data_keys_wrapped_by_it_alone() {
        let platform = KeyMaterial::generate();
        let own = KeyMaterial::generate();
        let tenant = Uuid::new_v4();
        let provider = LocalKeyProvider::new(&platform, &[]).unwrap().with_tenant_key(tenant, &own).unwrap();
        let v = Vault::new(Arc::new(provider));
        let (wrapped, _) = block_on(v.create_key(name(tenant, 1))).unwrap();
        assert!(wrapped.kek.starts_with("tenant-"), "{}", wrapped.kek);
        let (others, _) = block_on(v.create_key(name(Uuid::new_v4(), 1))).unwrap();
        assert!(others.kek.starts_with("kek-"), "{}", others.kek);
        // Without the tenant's key in the configuration its data keys are gone.
        assert_eq!(block_on(vault(&platform, &[]).key(name(tenant, 1), &wrapped)).unwrap_err(), VaultError::UnknownKek);
        // A tenant key cannot double as the platform's.
        assert!(LocalKeyProvider::new(&platform, &[]).unwrap().with_tenant_key(tenant, &platform).is_err());
    }
}
