//! AES-256-GCM sealing of small values with associated data that binds each ciphertext to its
//! place (for example an outbox row id), so a ciphertext copied elsewhere does not open.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD_NO_PAD, Engine as _};

use crate::{KeyMaterial, VaultError};

/// Format marker and version of a sealed value: `v1.<base64 nonce>.<base64 ciphertext+tag>`.
const VERSION: &str = "v1";
/// 96-bit random nonces, the size GCM is specified for (NIST SP 800-38D §8.2.2: at most 2^32
/// invocations per key with random nonces; keys here seal far fewer values).
const NONCE_LEN: usize = 12;

/// Encrypts `plaintext` under `key`, binding it to `aad`.
pub fn seal(key: &KeyMaterial, aad: &[u8], plaintext: &[u8]) -> Result<String, VaultError> {
    let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| VaultError::Crypto)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut nonce);
    let ciphertext =
        cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad }).map_err(|_| VaultError::Crypto)?;
    Ok(format!("{VERSION}.{}.{}", STANDARD_NO_PAD.encode(nonce), STANDARD_NO_PAD.encode(ciphertext)))
}

/// Decrypts a value made by [`seal`] with the same key and associated data.
pub fn open(key: &KeyMaterial, aad: &[u8], sealed: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
    let mut parts = sealed.split('.');
    let (Some(VERSION), Some(nonce), Some(ciphertext), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VaultError::Malformed);
    };
    let nonce = STANDARD_NO_PAD.decode(nonce).map_err(|_| VaultError::Malformed)?;
    let ciphertext = STANDARD_NO_PAD.decode(ciphertext).map_err(|_| VaultError::Malformed)?;
    if nonce.len() != NONCE_LEN {
        return Err(VaultError::Malformed);
    }
    let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| VaultError::Crypto)?;
    cipher
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad })
        .map(zeroize::Zeroizing::new)
        .map_err(|_| VaultError::Crypto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_and_place_only() {
        let key = KeyMaterial::generate();
        let sealed = seal(&key, b"row-1", b"hello").unwrap();
        assert_eq!(open(&key, b"row-1", &sealed).unwrap().as_slice(), b"hello");
        assert_eq!(open(&key, b"row-2", &sealed).unwrap_err(), VaultError::Crypto);
        assert_eq!(open(&KeyMaterial::generate(), b"row-1", &sealed).unwrap_err(), VaultError::Crypto);
        assert!(!sealed.contains("hello"));
    }

    #[test]
    fn any_flipped_byte_of_a_sealed_value_is_refused() {
        let key = KeyMaterial::generate();
        let sealed = seal(&key, b"a", b"secret payload").unwrap();
        let (_, body) = sealed.rsplit_once('.').unwrap();
        let mut raw = STANDARD_NO_PAD.decode(body).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let tampered = format!("{}.{}", sealed.rsplit_once('.').unwrap().0, STANDARD_NO_PAD.encode(&raw));
            assert!(open(&key, b"a", &tampered).is_err(), "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(open(&key, b"a", "v2.x.y").unwrap_err(), VaultError::Malformed);
    }
}
