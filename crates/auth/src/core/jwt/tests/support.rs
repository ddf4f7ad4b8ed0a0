//! Helpers of the access-token tests: fixed instants, forged and hand-signed tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::Ed25519KeyPair;
use serde_json::json;
use uuid::Uuid;

use crate::core::jwt::{JwtKeys, SigningKey};

/// A fixed instant, so no test depends on the system clock.
pub(super) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("the test instant is in range")
}

pub(super) fn key(kid: &str) -> SigningKey {
    SigningKey::generate(kid).expect("key generation works")
}

pub(super) fn keys() -> JwtKeys {
    JwtKeys::new(key("k1"), Vec::new()).expect("a single key is a valid key set")
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Joins a header and a payload, given as raw JSON text, with an arbitrary signature.
pub(super) fn forge(header: &str, payload: &str, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(signature))
}

/// Signs a header and a payload, given as raw JSON text, with a real Ed25519 key.
///
/// This bypasses `jsonwebtoken` so tests can produce tokens it would refuse to build.
pub(super) fn sign_raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let pair = Ed25519KeyPair::from_pkcs8(&key.pkcs8).expect("the test key parses");
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = pair.sign(message.as_bytes());
    format!("{message}.{}", b64(signature.as_ref()))
}

pub(super) fn header_for(kid: &str) -> String {
    json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid }).to_string()
}

/// A claim set that passes every check at `t0()` with the default configuration.
pub(super) fn good_claims() -> serde_json::Value {
    let now = t0().timestamp();
    json!({
        "sub": Uuid::new_v4(),
        "sid": Uuid::new_v4(),
        "iss": "rampart",
        "aud": "rampart-api",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": Uuid::new_v4(),
        "gen": 0,
    })
}

pub(super) fn without(mut claims: serde_json::Value, name: &str) -> String {
    claims.as_object_mut().expect("claims are an object").remove(name);
    claims.to_string()
}

pub(super) fn with(mut claims: serde_json::Value, name: &str, value: serde_json::Value) -> String {
    claims[name] = value;
    claims.to_string()
}

/// Builds a PKCS#8 v1 encoding (RFC 8410 §7) from the seed inside a ring PKCS#8 v2 document.
pub(super) fn pkcs8_v1_from_v2(v2: &[u8]) -> Vec<u8> {
    const V2_PREFIX: [u8; 16] =
        [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    const V1_PREFIX: [u8; 16] =
        [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    assert_eq!(&v2[..16], &V2_PREFIX, "ring's PKCS#8 v2 layout changed");
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(&v2[16..48]);
    v1
}
