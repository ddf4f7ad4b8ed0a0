//! Verification: algorithms, signatures, times, audience, issuer and required claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration};
use ids::{SessionId, UserId};
use serde_json::json;
use uuid::Uuid;

use super::support::{b64, forge, good_claims, header_for, key, keys, sign_raw, t0, with, without};
use crate::core::jwt::{JwtConfig, JwtError};

#[test]
fn a_fresh_token_round_trips_with_every_claim_intact() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (user, sid) = (UserId::new_random(), SessionId::new_random());
    let (token, issued) = keys.issue(&cfg, user, sid, t0()).expect("issue works");

    let verified = keys.verify(&cfg, &token, t0()).expect("a fresh token verifies");

    assert_eq!(verified, issued);
    assert_eq!(verified.sub, user);
    assert_eq!(verified.sid, sid);
    assert_eq!(verified.iss, "rampart");
    assert_eq!(verified.aud, "rampart-api");
    assert_eq!(verified.iat, t0().timestamp());
    assert_eq!(verified.nbf, t0().timestamp());
    assert_eq!(verified.exp, t0().timestamp() + 15 * 60);
}

#[test]
fn an_issued_token_has_an_eddsa_at_jwt_header_naming_the_active_key() {
    let keys = keys();
    let (token, _) =
        keys.issue(&JwtConfig::default(), UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let encoded_header = token.split('.').next().expect("a token has a header");
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded_header).expect("base64url"))
        .expect("the header is JSON");

    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "k1");
}

#[test]
fn two_issued_tokens_have_different_jtis() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (user, sid) = (UserId::new_random(), SessionId::new_random());
    let (_, first) = keys.issue(&cfg, user, sid, t0()).expect("issue works");
    let (_, second) = keys.issue(&cfg, user, sid, t0()).expect("issue works");

    assert_ne!(first.jti, second.jti);
}

#[test]
fn a_hand_signed_token_with_good_claims_verifies() {
    // This guards the forging helpers: if they were broken, the refusal tests below
    // could pass for the wrong reason.
    let keys = keys();
    let token = sign_raw(keys.active(), &header_for("k1"), &good_claims().to_string());

    assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
}

#[test]
fn alg_none_with_an_empty_signature_is_refused() {
    let keys = keys();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }).to_string();
        let token = forge(&header, &good_claims().to_string(), b"");
        assert!(token.ends_with('.'), "the forged token has an empty signature");

        assert_eq!(
            keys.verify(&JwtConfig::default(), &token, t0()),
            Err(JwtError::AlgorithmNotAllowed),
            "alg {alg} must be refused"
        );
    }
}

#[test]
fn a_missing_alg_is_refused() {
    let keys = keys();
    let header = json!({ "typ": "at+jwt", "kid": "k1" }).to_string();
    let token = forge(&header, &good_claims().to_string(), &[0; 64]);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::AlgorithmNotAllowed));
}

#[test]
fn an_hs256_token_keyed_with_the_ed25519_public_key_is_refused() {
    let keys = keys();
    let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": "k1" }).to_string();
    let payload = good_claims().to_string();
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    // The attacker knows the public key and uses it as the HMAC secret.
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, keys.active().public_key_bytes());
    let tag = ring::hmac::sign(&hmac_key, message.as_bytes());
    let token = format!("{message}.{}", b64(tag.as_ref()));

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::AlgorithmNotAllowed));
}

#[test]
fn rs256_hs256_and_other_algorithm_headers_are_refused() {
    let keys = keys();
    for alg in ["RS256", "HS256", "HS512", "ES256", "PS256", "eddsa", "EDDSA", "Ed25519", ""] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }).to_string();
        let token = forge(&header, &good_claims().to_string(), &[7; 64]);

        assert_eq!(
            keys.verify(&JwtConfig::default(), &token, t0()),
            Err(JwtError::AlgorithmNotAllowed),
            "alg {alg:?} must be refused"
        );
    }
}

#[test]
fn a_tampered_payload_is_refused() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (token, claims) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged_claims = serde_json::to_value(&claims).expect("claims serialise");
    forged_claims["sub"] = json!(Uuid::new_v4());
    let forged_payload = b64(forged_claims.to_string().as_bytes());
    parts[1] = &forged_payload;

    assert_eq!(keys.verify(&cfg, &parts.join("."), t0()), Err(JwtError::BadSignature));
}

#[test]
fn a_stripped_signature_is_refused() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (token, _) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let unsigned = format!("{}.", &token[..token.rfind('.').expect("token has dots")]);

    assert_eq!(keys.verify(&cfg, &unsigned, t0()), Err(JwtError::BadSignature));
}

#[test]
fn a_token_signed_by_a_stranger_under_a_known_kid_is_refused() {
    let keys = keys();
    let stranger = key("k1");
    let token = sign_raw(&stranger, &header_for("k1"), &good_claims().to_string());

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::BadSignature));
}

#[test]
fn an_expired_token_is_refused_once_the_leeway_has_passed() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (token, claims) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

    assert_eq!(keys.verify(&cfg, &token, expiry + cfg.leeway), Err(JwtError::Expired));
    assert_eq!(keys.verify(&cfg, &token, expiry + Duration::hours(1)), Err(JwtError::Expired));
}

#[test]
fn an_expired_token_is_accepted_within_the_leeway() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (token, claims) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

    assert!(keys.verify(&cfg, &token, expiry).is_ok());
    assert!(keys.verify(&cfg, &token, expiry + cfg.leeway - Duration::seconds(1)).is_ok());
}

#[test]
fn with_zero_leeway_a_token_expires_exactly_at_exp() {
    let keys = keys();
    let cfg = JwtConfig { leeway: Duration::zero(), ..JwtConfig::default() };
    let (token, claims) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

    assert!(keys.verify(&cfg, &token, expiry - Duration::seconds(1)).is_ok());
    assert_eq!(keys.verify(&cfg, &token, expiry), Err(JwtError::Expired));
}

#[test]
fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let keys = keys();
    let later = t0().timestamp() + 120;
    let payload = with(good_claims(), "nbf", json!(later));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::NotYetValid));
}

#[test]
fn a_token_whose_nbf_is_in_the_future_is_accepted_within_the_leeway() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let soon = t0().timestamp() + cfg.leeway.num_seconds();
    let payload = with(good_claims(), "nbf", json!(soon));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert!(keys.verify(&cfg, &token, t0()).is_ok());
}

#[test]
fn a_token_issued_in_the_future_is_refused() {
    let keys = keys();
    let later = t0().timestamp() + 120;
    let payload = with(good_claims(), "iat", json!(later));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::NotYetValid));
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "aud", json!("billing-api"));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongAudience));
}

#[test]
fn a_token_issued_for_another_configured_audience_is_refused() {
    let keys = keys();
    let other = JwtConfig { audience: "admin-api".to_owned(), ..JwtConfig::default() };
    let (token, _) = keys.issue(&other, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongAudience));
}

#[test]
fn a_token_without_an_audience_is_refused() {
    let keys = keys();
    let token = sign_raw(keys.active(), &header_for("k1"), &without(good_claims(), "aud"));

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::MissingClaim("aud")));
}

#[test]
fn a_token_with_a_null_audience_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "aud", serde_json::Value::Null);
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::MissingClaim("aud")));
}

#[test]
fn a_token_with_an_audience_array_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "aud", json!(["rampart-api", "billing-api"]));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
}

#[test]
fn a_token_with_a_duplicated_audience_member_is_refused() {
    let keys = keys();
    let mut payload = with(good_claims(), "aud", json!("billing-api"));
    // The second `aud` would win in a last-member-wins parser.
    payload.insert_str(1, r#""aud":"rampart-api","#);
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
}

#[test]
fn a_token_from_another_issuer_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "iss", json!("evil"));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongIssuer));
}

#[test]
fn a_token_whose_issuer_differs_only_in_case_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "iss", json!("Rampart"));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongIssuer));
}
