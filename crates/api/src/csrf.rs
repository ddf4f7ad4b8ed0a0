//! Signed double-submit CSRF tokens (OWASP CSRF Prevention Cheat Sheet, "Signed Double-Submit
//! Cookie"): `hex(HMAC-SHA256(key, len‖session-id ‖ len‖random)) "." hex(random)`, bound to the
//! session's public id, compared in constant time. The exact encoding: both HMAC inputs are
//! length-prefixed (8-byte big-endian), the session id as its 16 raw bytes, the random value as
//! its 32 raw bytes.

use auth::token::{constant_time_eq, TokenHasher};

const RANDOM_BYTES: usize = 32;

/// A fresh token for `session`.
pub fn issue(hasher: &TokenHasher, session: ids::SessionId) -> String {
    let mut random = [0u8; RANDOM_BYTES];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut random);
    let mac = hasher.sign(&[b"csrf", session.0.as_bytes(), &random]);
    format!("{}.{}", hex::encode(mac), hex::encode(random))
}

/// True when `token` was issued for `session` with this key.
pub fn verify(hasher: &TokenHasher, session: ids::SessionId, token: &str) -> bool {
    let Some((mac_hex, random_hex)) = token.split_once('.') else { return false };
    let (Ok(mac), Ok(random)) = (hex::decode(mac_hex), hex::decode(random_hex)) else { return false };
    if random.len() != RANDOM_BYTES {
        return false;
    }
    let expected = hasher.sign(&[b"csrf", session.0.as_bytes(), &random]);
    constant_time_eq(&expected, &mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_session_and_key() {
        let key = crypto_vault::KeyMaterial::generate();
        let h = TokenHasher::new(&key);
        let a = ids::SessionId::new_random();
        let b = ids::SessionId::new_random();
        let t = issue(&h, a);
        assert!(verify(&h, a, &t));
        assert!(!verify(&h, b, &t), "a token from session A is refused in session B");
        assert!(!verify(&TokenHasher::new(&crypto_vault::KeyMaterial::generate()), a, &t));
        let mut tampered = t.clone().into_bytes();
        tampered[3] = if tampered[3] == b'0' { b'1' } else { b'0' };
        assert!(!verify(&h, a, std::str::from_utf8(&tampered).unwrap()));
        assert!(!verify(&h, a, ""));
        assert!(!verify(&h, a, "zz.zz"));
    }
}
