//! Key material and AES-256-GCM envelope encryption of secrets at rest. A pure library: no I/O,
//! no environment access; keys are handed in by the binary's configuration loader, and the
//! database work (storing wrapped data keys and sealed values) belongs to `tenancy::secrets`.
//! It must never log, print or return key material, or a plaintext it opened outside `Zeroizing`.
//!
//! - [`envelope`]: the sealed-value format, bound to its (tenant, table, column, row).
//! - [`KeyProvider`] / [`LocalKeyProvider`]: key-encryption keys from outside the database, one
//!   per purpose, per-tenant keys brought by a tenant, and older keys kept for unwrapping.
//! - [`Vault`]: data keys created, unwrapped (cached for their exact wrapped bytes) and re-wrapped.
//! - [`seal()`]/[`open()`]: the outbox's small text format (version 1).

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod envelope;
mod provider;
mod seal;
mod vault;

pub use envelope::{DataKey, Header, Place, Purpose};
pub use provider::{KekId, KeyProvider, LocalKeyProvider};
pub use seal::{open, seal};
pub use vault::{KeyName, Vault, WrappedKey};

use secrecy::{ExposeSecret, SecretBox};

/// Length of every symmetric key Rampart uses: 256 bits (NIST SP 800-57 Part 1 Rev. 5, table 2:
/// 256-bit symmetric keys give 256 bits of security; AES-256 per FIPS 197).
pub const KEY_LEN: usize = 32;

/// Errors from parsing or using key material. Messages never contain key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("key must be {KEY_LEN} bytes written as {} hex characters", KEY_LEN * 2)]
    BadKeyEncoding,
    #[error("key has too little variety to be random (all bytes equal)")]
    WeakKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open with this key and associated data")]
    Crypto,
    /// The value names another tenant's key, or another purpose or version than the key given.
    #[error("sealed value belongs to another key")]
    WrongKey,
    /// The key-encryption key that wrapped a data key is not configured (any more).
    #[error("the key-encryption key of this data key is not available")]
    UnknownKek,
    #[error("key configuration: {0}")]
    Config(&'static str),
}

/// A 256-bit symmetric key. Zeroized on drop; `Debug` prints `[REDACTED]`.
pub struct KeyMaterial(SecretBox<[u8; KEY_LEN]>);

impl KeyMaterial {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> KeyMaterial {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes[..]);
        KeyMaterial(SecretBox::new(bytes))
    }

    /// Takes ownership of raw key bytes (the caller zeroizes its copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> KeyMaterial {
        KeyMaterial(SecretBox::new(Box::new(bytes)))
    }

    /// Parses a key written as 64 hex characters. Refuses obviously non-random keys.
    pub fn from_hex(text: &str) -> Result<KeyMaterial, VaultError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), &mut bytes[..]).map_err(|_| VaultError::BadKeyEncoding)?;
        let key = KeyMaterial(SecretBox::new(bytes));
        let first = key.expose()[0];
        if key.expose().iter().all(|b| *b == first) {
            return Err(VaultError::WeakKey);
        }
        Ok(key)
    }

    /// Hex form, for writing a generated development key file. Handle the result as a secret.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.expose()))
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

impl Clone for KeyMaterial {
    fn clone(&self) -> Self {
        KeyMaterial(SecretBox::new(Box::new(*self.expose())))
    }
}

/// The keys a running server holds, one per purpose so that a leak of one does not expose the
/// others (NIST SP 800-57 Part 1 Rev. 5, §5.2: a key is used for one purpose only).
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Keys the HMAC-SHA256 of session tokens and one-time tokens before they are stored.
    pub token_hmac: KeyMaterial,
    /// Key-encryption key for the AES-256-GCM envelope of secrets at rest.
    pub vault_kek: KeyMaterial,
    /// Earlier `vault_kek`s, kept while a rotation is under way: they still open what they
    /// sealed (data keys until re-wrapped, outbox payloads until run) and seal nothing new.
    pub vault_previous: Vec<KeyMaterial>,
    /// Pepper of the password pre-hash (HMAC-SHA256 before bcrypt).
    pub password_pepper: KeyMaterial,
    /// Where the keys came from; production refuses [`KeySource::GeneratedForDevelopment`].
    pub source: KeySource,
}

/// Origin of a [`Keyring`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given by the operator (environment or configuration file).
    Configured,
    /// Generated on first run into the data directory, for development only.
    GeneratedForDevelopment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes() {
        let key = KeyMaterial::generate();
        let hex = key.to_hex();
        let printed = format!("{key:?}");
        assert_eq!(printed, "KeyMaterial([REDACTED])");
        assert!(!printed.contains(hex.as_str()));
    }

    #[test]
    fn generated_keys_round_trip_through_hex_and_differ() {
        let a = KeyMaterial::generate();
        let b = KeyMaterial::generate();
        assert_ne!(a.expose(), b.expose());
        let again = KeyMaterial::from_hex(&a.to_hex()).unwrap();
        assert_eq!(again.expose(), a.expose());
    }

    #[test]
    fn malformed_and_constant_keys_are_refused() {
        assert_eq!(KeyMaterial::from_hex("abcd").unwrap_err(), VaultError::BadKeyEncoding);
        assert_eq!(KeyMaterial::from_hex(&"zz".repeat(32)).unwrap_err(), VaultError::BadKeyEncoding);
        assert_eq!(KeyMaterial::from_hex(&"00".repeat(32)).unwrap_err(), VaultError::WeakKey);
    }
}
