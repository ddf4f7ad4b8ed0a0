//! Ed25519 signing keys and their key ids.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use super::error::JwtError;
use super::limits::{ALLOWED_ALG_NAME, ED25519_PUBLIC_KEY_LEN, MAX_KID_LEN};

/// An Ed25519 signing key together with the key id (`kid`) published for it.
///
/// The PKCS#8 DER bytes are wiped from memory when the key is dropped, and `Debug` never
/// prints them. The type deliberately does not implement `Clone`, so that the secret is
/// not copied around by accident.
pub struct SigningKey {
    /// The key id written into token headers and the JWKS.
    pub(super) kid: String,
    /// The PKCS#8 DER encoding of the key pair (RFC 5958, RFC 8410), wiped on drop.
    pub(super) pkcs8: Zeroizing<Vec<u8>>,
    /// The raw public key (RFC 8032 §5.1.5), derived from the private key when loaded.
    pub(super) public: [u8; ED25519_PUBLIC_KEY_LEN],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("pkcs8", &"[REDACTED]").finish()
    }
}

impl SigningKey {
    /// Generates a fresh Ed25519 key pair from the operating system's random number generator.
    ///
    /// The key is encoded as PKCS#8 v2 (RFC 5958), which also carries the public key.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if `kid` is not 1 to 128 printable ASCII characters or if
    /// the random number generator fails.
    pub fn generate(kid: impl Into<String>) -> Result<Self, JwtError> {
        let kid = checked_kid(kid.into())?;
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| JwtError::Key("key generation failed"))?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Self::from_pkcs8_der(kid, pkcs8)
    }

    /// Loads a key from the standard base64 (RFC 4648 §4) encoding of its PKCS#8 DER bytes.
    ///
    /// Both PKCS#8 v2 (as written by [`SigningKey::to_pkcs8_base64`]) and PKCS#8 v1 (as
    /// written by `openssl genpkey -algorithm ed25519`) are accepted. Surrounding whitespace
    /// is ignored so that values read from files with a trailing newline still load.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if `kid` is invalid, the text is not base64 or the bytes
    /// are not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8_base64(kid: impl Into<String>, encoded: &str) -> Result<Self, JwtError> {
        let kid = checked_kid(kid.into())?;
        let encoded = encoded.trim();
        // The buffer is sized up front so decoding never reallocates and leaves stray copies behind.
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(encoded.len())));
        STANDARD.decode_vec(encoded, &mut pkcs8).map_err(|_| JwtError::Key("key is not valid base64"))?;
        Self::from_pkcs8_der(kid, pkcs8)
    }

    /// Validates PKCS#8 DER bytes and derives the public key from them.
    fn from_pkcs8_der(kid: String, pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, JwtError> {
        // A v2 key must have a public key that matches its private key; only v1 keys,
        // which carry no public key, fall back to the variant that derives it.
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8))
            .map_err(|_| JwtError::Key("key is not an Ed25519 PKCS#8 key"))?;
        let public = <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(pair.public_key().as_ref())
            .map_err(|_| JwtError::Key("public key has the wrong length"))?;
        Ok(Self { kid, pkcs8, public })
    }

    /// Returns the standard base64 encoding of the PKCS#8 DER bytes, for storage in a secret store.
    ///
    /// The returned string is wiped from memory when dropped.
    #[must_use]
    pub fn to_pkcs8_base64(&self) -> Zeroizing<String> {
        // The buffer is sized up front so encoding never reallocates and leaves stray copies behind.
        let capacity = base64::encoded_len(self.pkcs8.len(), true).unwrap_or_default();
        let mut encoded = Zeroizing::new(String::with_capacity(capacity));
        STANDARD.encode_string(self.pkcs8.as_slice(), &mut encoded);
        encoded
    }

    /// Returns the key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the 32-byte Ed25519 public key (RFC 8032 §5.1.5).
    #[must_use]
    pub fn public_key_bytes(&self) -> &[u8; ED25519_PUBLIC_KEY_LEN] {
        &self.public
    }

    /// Returns the public key as an OKP JSON Web Key (RFC 8037 §2, RFC 7517 §4).
    pub(super) fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": ALLOWED_ALG_NAME,
            "use": "sig",
        })
    }
}

/// Checks that a key id is 1 to 128 printable ASCII characters without spaces.
///
/// Key ids end up in headers, in the JWKS and in logs, so control characters are refused.
fn checked_kid(kid: String) -> Result<String, JwtError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(JwtError::Key("key id must be 1 to 128 characters long"));
    }
    if !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(JwtError::Key("key id must be printable ASCII without spaces"));
    }
    Ok(kid)
}
