//! Opaque tokens: generated from the OS CSPRNG and stored only as keyed hashes.

use crypto_vault::KeyMaterial;
use ring::hmac;

/// 32 random bytes (256 bits): above the 128 bits ASVS 5.0 V7.2.3 requires of session tokens and
/// the "32-byte random" one-time tokens the seeds promise.
pub const TOKEN_BYTES: usize = 32;

/// A new token as 64 lowercase hex characters.
pub fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// HMAC-SHA256 of tokens under the token key: what the stores keep instead of the token. A leak
/// of the store alone does not yield usable tokens, and the hash is deterministic so a presented
/// token is found by equality.
#[derive(Clone)]
pub struct TokenHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher([REDACTED])")
    }
}

impl TokenHasher {
    pub fn new(key: &KeyMaterial) -> TokenHasher {
        TokenHasher { key: hmac::Key::new(hmac::HMAC_SHA256, key.expose()) }
    }

    /// `purpose` separates domains, so a token of one kind never matches another kind's hash.
    pub fn hash(&self, purpose: &str, token: &str) -> String {
        hex::encode(self.sign(&[purpose.as_bytes(), token.as_bytes()]))
    }

    /// HMAC-SHA256 over length-prefixed parts (unambiguous concatenation), for signed values.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.sign().as_ref().to_vec()
    }
}

/// Constant-time equality for secrets of equal length (timing does not reveal a matching prefix).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_characters_and_unique() {
        let a = generate();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, generate());
    }

    #[test]
    fn hashes_depend_on_key_and_purpose() {
        let key = KeyMaterial::generate();
        let h = TokenHasher::new(&key);
        let t = generate();
        assert_eq!(h.hash("session", &t), h.hash("session", &t));
        assert_ne!(h.hash("session", &t), h.hash("reset", &t));
        assert_ne!(h.hash("session", &t), TokenHasher::new(&KeyMaterial::generate()).hash("session", &t));
        assert!(!h.hash("session", &t).contains(&t));
    }
}
