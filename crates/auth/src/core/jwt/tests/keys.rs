//! Headers, key rotation, the JWKS, key material and configurations.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::Duration;
use ids::{SessionId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::support::{b64, good_claims, header_for, key, keys, pkcs8_v1_from_v2, sign_raw, t0, with, without};
use crate::core::jwt::limits::MAX_TOKEN_LEN;
use crate::core::jwt::{AccessClaims, JwtConfig, JwtError, JwtKeys, SigningKey};

#[test]
fn a_token_missing_any_required_claim_is_refused() {
    let keys = keys();
    for name in ["sub", "sid", "iss", "aud", "iat", "nbf", "exp", "jti", "gen"] {
        let token = sign_raw(keys.active(), &header_for("k1"), &without(good_claims(), name));

        assert_eq!(
            keys.verify(&JwtConfig::default(), &token, t0()),
            Err(JwtError::MissingClaim(name)),
            "a token without {name} must be refused"
        );
    }
}

#[test]
fn a_token_whose_subject_is_not_a_uuid_is_refused() {
    let keys = keys();
    let payload = with(good_claims(), "sub", json!("admin"));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
}

#[test]
fn a_token_with_the_wrong_typ_is_refused() {
    let keys = keys();
    for typ in [json!("JWT"), json!("at+jwt2"), json!("application/jwt"), json!(""), json!(null)] {
        let header = json!({ "alg": "EdDSA", "typ": typ, "kid": "k1" }).to_string();
        let token = sign_raw(keys.active(), &header, &good_claims().to_string());

        assert_eq!(
            keys.verify(&JwtConfig::default(), &token, t0()),
            Err(JwtError::WrongType),
            "typ {typ} must be refused"
        );
    }
}

#[test]
fn a_token_without_a_typ_is_refused() {
    let keys = keys();
    let header = json!({ "alg": "EdDSA", "kid": "k1" }).to_string();
    let token = sign_raw(keys.active(), &header, &good_claims().to_string());

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongType));
}

#[test]
fn the_media_type_forms_of_at_jwt_are_accepted() {
    let keys = keys();
    for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
        let header = json!({ "alg": "EdDSA", "typ": typ, "kid": "k1" }).to_string();
        let token = sign_raw(keys.active(), &header, &good_claims().to_string());

        assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok(), "typ {typ} must be accepted");
    }
}

#[test]
fn a_token_with_a_crit_header_is_refused() {
    let keys = keys();
    let header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": ["exp"] }).to_string();
    let token = sign_raw(keys.active(), &header, &good_claims().to_string());

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
}

#[test]
fn a_header_with_a_duplicated_alg_member_is_refused() {
    let keys = keys();
    let header = r#"{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#;
    let token = sign_raw(keys.active(), header, &good_claims().to_string());

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
}

#[test]
fn an_unknown_kid_is_refused() {
    let keys = keys();
    let stranger = key("k9");
    for kid in ["k9", "../../etc/passwd", "K1", "k1 ", ""] {
        let token = sign_raw(&stranger, &header_for(kid), &good_claims().to_string());

        assert_eq!(
            keys.verify(&JwtConfig::default(), &token, t0()),
            Err(JwtError::UnknownKey),
            "kid {kid:?} must be refused"
        );
    }
}

#[test]
fn a_token_without_a_kid_is_refused() {
    let keys = keys();
    let header = json!({ "alg": "EdDSA", "typ": "at+jwt" }).to_string();
    let token = sign_raw(keys.active(), &header, &good_claims().to_string());

    assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::UnknownKey));
}

#[test]
fn a_token_from_a_rotated_out_key_still_verifies() {
    let mut keys = keys();
    let cfg = JwtConfig::default();
    let (old_token, _) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");

    keys.rotate(key("k2")).expect("k2 is a new kid");
    let (new_token, _) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");

    assert_eq!(keys.active().kid(), "k2");
    assert_eq!(keys.previous()[0].kid(), "k1");
    assert!(keys.verify(&cfg, &old_token, t0()).is_ok());
    assert!(keys.verify(&cfg, &new_token, t0()).is_ok());
}

#[test]
fn a_token_from_a_removed_key_fails() {
    let mut keys = keys();
    let cfg = JwtConfig::default();
    let (old_token, _) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    keys.rotate(key("k2")).expect("k2 is a new kid");

    let retired = keys.retire("k1").expect("k1 is a previous key");

    assert_eq!(retired.kid(), "k1");
    assert!(keys.previous().is_empty());
    assert_eq!(keys.verify(&cfg, &old_token, t0()), Err(JwtError::UnknownKey));
}

#[test]
fn a_key_set_built_with_previous_keys_verifies_their_tokens() {
    let old = key("old");
    let token = sign_raw(&old, &header_for("old"), &good_claims().to_string());
    let keys = JwtKeys::new(key("new"), vec![old]).expect("distinct kids");

    assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
}

#[test]
fn the_active_key_cannot_be_retired() {
    let mut keys = keys();

    assert!(keys.retire("k1").is_none());
    assert_eq!(keys.active().kid(), "k1");
}

#[test]
fn duplicate_kids_are_refused() {
    assert_eq!(
        JwtKeys::new(key("k1"), vec![key("k2"), key("k1")]).err(),
        Some(JwtError::Key("two keys share the same key id"))
    );
    assert!(JwtKeys::new(key("k1"), vec![key("k2"), key("k2")]).is_err());

    let mut keys = keys();
    assert!(keys.rotate(key("k1")).is_err());
    assert!(keys.previous().is_empty(), "a refused rotation changes nothing");
}

#[test]
fn the_jwks_contains_every_key_with_its_public_key_as_x() {
    let mut keys = keys();
    keys.rotate(key("k2")).expect("k2 is a new kid");
    keys.rotate(key("k3")).expect("k3 is a new kid");

    let jwks = keys.jwks();
    let published = jwks["keys"].as_array().expect("keys is an array");
    let held: Vec<&SigningKey> = keys.all().collect();

    assert_eq!(published.len(), 3);
    for (jwk, key) in published.iter().zip(held) {
        let x =
            URL_SAFE_NO_PAD.decode(jwk["x"].as_str().expect("x is a string")).expect("x is base64url without padding");
        assert_eq!(x.as_slice(), key.public_key_bytes());
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "the private key is never published");
    }
    let kids: Vec<&str> = published.iter().filter_map(|jwk| jwk["kid"].as_str()).collect();
    assert_eq!(kids, ["k3", "k2", "k1"]);
}

#[test]
fn a_token_verifies_with_the_key_published_in_the_jwks() {
    let keys = keys();
    let cfg = JwtConfig::default();
    let (token, _) = keys.issue(&cfg, UserId::new_random(), SessionId::new_random(), t0()).expect("issue works");
    let jwks = keys.jwks();
    let x = jwks["keys"][0]["x"].as_str().expect("x is a string");
    let decoding_key = DecodingKey::from_ed_components(x).expect("x decodes");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.set_audience(&["rampart-api"]);

    assert!(jsonwebtoken::decode::<AccessClaims>(&token, &decoding_key, &validation).is_ok());
}

#[test]
fn debug_output_of_a_signing_key_hides_the_key() {
    let key = key("k1");
    let encoded = key.to_pkcs8_base64();
    let debug = format!("{key:?}");

    assert!(!debug.contains(encoded.as_str()));
    assert!(!debug.contains(&encoded[..16]));
    assert!(debug.contains("[REDACTED]"));
    assert!(debug.contains("k1"));
    assert!(!format!("{:?}", keys()).contains(&encoded[..16]));
}

#[test]
fn a_key_survives_a_base64_round_trip() {
    let original = key("k1");
    let encoded = original.to_pkcs8_base64();
    let loaded = SigningKey::from_pkcs8_base64("k1", &format!("{}\n", encoded.as_str())).expect("loads");

    assert_eq!(loaded.public_key_bytes(), original.public_key_bytes());
    let token = sign_raw(&original, &header_for("k1"), &good_claims().to_string());
    let keys = JwtKeys::new(loaded, Vec::new()).expect("one key");
    assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
}

#[test]
fn a_pkcs8_v1_key_from_openssl_loads_with_the_same_public_key() {
    let original = key("k1");
    let v1 = pkcs8_v1_from_v2(&original.pkcs8);
    let loaded = SigningKey::from_pkcs8_base64("k1", &STANDARD.encode(v1)).expect("v1 loads");

    assert_eq!(loaded.public_key_bytes(), original.public_key_bytes());
}

#[test]
fn bad_key_material_is_refused() {
    assert!(matches!(SigningKey::from_pkcs8_base64("k1", "not base64!"), Err(JwtError::Key(_))));
    assert!(matches!(SigningKey::from_pkcs8_base64("k1", &STANDARD.encode([0_u8; 48])), Err(JwtError::Key(_))));
    assert!(matches!(SigningKey::from_pkcs8_base64("k1", ""), Err(JwtError::Key(_))));
}

#[test]
fn a_pkcs8_v2_key_whose_public_key_does_not_match_is_refused() {
    let mut pkcs8 = key("k1").pkcs8.to_vec();
    let last = pkcs8.len() - 1;
    pkcs8[last] ^= 1;

    assert!(matches!(SigningKey::from_pkcs8_base64("k1", &STANDARD.encode(&pkcs8)), Err(JwtError::Key(_))));
}

#[test]
fn bad_key_ids_are_refused() {
    for kid in [String::new(), "a b".to_owned(), "k\n1".to_owned(), "k".repeat(129)] {
        assert!(matches!(SigningKey::generate(kid.clone()), Err(JwtError::Key(_))), "kid {kid:?} must be refused");
    }
    assert!(SigningKey::generate("k".repeat(128)).is_ok());
}

#[test]
fn malformed_tokens_are_refused() {
    let keys = keys();
    let good = sign_raw(keys.active(), &header_for("k1"), &good_claims().to_string());
    let oversized = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
    for token in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "not a token",
        &format!("{good}.extra"),
        &format!("{}.e30.", b64(b"not json")),
        &oversized,
    ] {
        assert_eq!(
            keys.verify(&JwtConfig::default(), token, t0()),
            Err(JwtError::Malformed),
            "{token:?} must be refused as malformed"
        );
    }
}

#[test]
fn error_messages_never_contain_the_token_or_claim_values() {
    let keys = keys();
    let secretish = "SENSITIVE-CLAIM-VALUE";
    let payload = with(good_claims(), "sub", json!(secretish));
    let token = sign_raw(keys.active(), &header_for("k1"), &payload);
    let error = keys.verify(&JwtConfig::default(), &token, t0()).expect_err("a non-UUID subject is refused");
    let shown = format!("{error} {error:?}");

    assert!(!shown.contains(secretish));
    assert!(!shown.contains(&token[..20]));
}

#[test]
fn invalid_configurations_are_refused() {
    let keys = keys();
    let (user, sid) = (UserId::new_random(), SessionId::new_random());
    let bad = [
        JwtConfig { issuer: String::new(), ..JwtConfig::default() },
        JwtConfig { audience: String::new(), ..JwtConfig::default() },
        JwtConfig { access_ttl: Duration::zero(), ..JwtConfig::default() },
        JwtConfig { access_ttl: Duration::hours(2), ..JwtConfig::default() },
        JwtConfig { leeway: Duration::seconds(-1), ..JwtConfig::default() },
        JwtConfig { leeway: Duration::minutes(10), ..JwtConfig::default() },
    ];
    for cfg in bad {
        assert!(matches!(keys.issue(&cfg, user, sid, t0()), Err(JwtError::Config(_))));
        assert!(matches!(keys.verify(&cfg, "a.b.c", t0()), Err(JwtError::Config(_))));
    }
    assert!(JwtConfig::default().validate().is_ok());
}

#[test]
fn the_default_configuration_matches_the_documented_values() {
    let cfg = JwtConfig::default();

    assert_eq!(cfg.issuer, "rampart");
    assert_eq!(cfg.audience, "rampart-api");
    assert_eq!(cfg.access_ttl, Duration::minutes(15));
    assert_eq!(cfg.leeway, Duration::seconds(30));
}
