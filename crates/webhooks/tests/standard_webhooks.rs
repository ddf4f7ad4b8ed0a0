//! Standard Webhooks: the official vectors (test-vectors.md §2.2) and derived ones (§2.3), the
//! negative fixtures shared by the reference suites, signing for outbound deliveries, secret
//! generation and rotation.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rand::rngs::{OsRng, StdRng};
use rand::SeedableRng;
use secrecy::ExposeSecret;
use webhooks::standard::{self, Headers, MessageId, Secret};
use webhooks::VerifyError;

const W1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const W1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const W1_TS: i64 = 1_614_265_330;
const W1_PAYLOAD: &str = r#"{"test": 2432232314}"#;
const W1_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const WRONG: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
const W3_V1A: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn secret(text: &str) -> Secret {
    Secret::parse(text).unwrap()
}

fn id(text: &str) -> MessageId {
    MessageId::parse(text).unwrap()
}

fn sign(secret_text: &str, msg_id: &str, ts: i64, payload: &str) -> String {
    standard::sign(&[secret(secret_text)], &id(msg_id), at(ts), payload.as_bytes()).unwrap()
}

fn verify_w1(signature: &str, now: i64) -> Result<usize, VerifyError> {
    let headers = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(signature) };
    standard::verify(&headers, W1_PAYLOAD.as_bytes(), &[secret(W1_SECRET)], at(now)).map(|v| v.secret_index)
}

#[test]
fn the_official_vectors_are_signed_exactly_and_verify() {
    let table = [
        (W1_SECRET, W1_ID, W1_TS, W1_PAYLOAD, W1_SIGNATURE),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];
    for (secret_text, msg_id, ts, payload, expected) in table {
        assert_eq!(sign(secret_text, msg_id, ts, payload), expected, "{msg_id}");
        let ts_text = ts.to_string();
        let headers = Headers { id: Some(msg_id), timestamp: Some(&ts_text), signature: Some(expected) };
        let verified = standard::verify(&headers, payload.as_bytes(), &[secret(secret_text)], at(ts));
        assert_eq!(verified.map(|v| v.secret_index), Ok(0), "{msg_id}");
    }
}

#[test]
fn the_official_secret_decodes_to_its_24_byte_key() {
    let key = secret(W1_SECRET);
    assert_eq!(key.len(), 24);
    let from_hex =
        Secret::from_bytes(&hex::decode("31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0").unwrap()).unwrap();
    assert_eq!(standard::sign(&[from_hex], &id(W1_ID), at(W1_TS), W1_PAYLOAD.as_bytes()).unwrap(), W1_SIGNATURE);
}

#[test]
fn the_derived_vectors_are_signed_exactly() {
    let spec_body = r#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}"#;
    let table = [
        (
            "one digit changed",
            W1_SECRET,
            W1_ID,
            W1_TS,
            r#"{"test": 2432232315}"#,
            "v1,TW/pFPJ2/LwRQdgfM7WklE9yJiRyMs0cTpVPK8leNAU=",
        ),
        ("timestamp + 1", W1_SECRET, W1_ID, W1_TS + 1, W1_PAYLOAD, "v1,l6C9/1+N/lSU6+gfh+YEGqTK2aQ+k8nMEWDvvCgHh7U="),
        (
            "spec example",
            W1_SECRET,
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            1_674_087_231,
            spec_body,
            "v1,ARw42xaAApl/nxRo+iPGYwSaMQaOwMo2eyH5JBRA+bQ=",
        ),
        (
            "unpadded 23-byte key",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            W1_ID,
            W1_TS,
            W1_PAYLOAD,
            "v1,LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk=",
        ),
        (
            "unpadded 25-byte key",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
            W1_ID,
            W1_TS,
            W1_PAYLOAD,
            "v1,yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
        ),
    ];
    for (name, secret_text, msg_id, ts, payload, expected) in table {
        assert_eq!(sign(secret_text, msg_id, ts, payload), expected, "{name}");
    }
    assert_eq!(secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").len(), 23);
    assert_eq!(secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr").len(), 25);
}

#[test]
fn the_secret_is_base64_decoded_and_never_used_as_its_text() {
    const TEXT_KEYED: &str = "v1,ELhqG0Ku1gwOc1f4jyKdp3SFGFLAOdJ9bvpWLciCakI=";
    let text_keyed = Secret::from_bytes(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(standard::sign(&[text_keyed], &id(W1_ID), at(W1_TS), W1_PAYLOAD.as_bytes()).unwrap(), TEXT_KEYED);
    assert_ne!(sign(W1_SECRET, W1_ID, W1_TS, W1_PAYLOAD), TEXT_KEYED);
    assert_eq!(verify_w1(TEXT_KEYED, W1_TS), Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_secret_without_the_whsec_prefix_is_the_same_key() {
    assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", W1_ID, W1_TS, W1_PAYLOAD), W1_SIGNATURE);
}

#[test]
fn empty_or_undecodable_secrets_are_refused_as_missing() {
    for text in ["", "whsec_", "whsec_not base64!", "whsec_A"] {
        let error = Secret::parse(text).map(|_| ()).unwrap_err();
        assert_eq!(error.code(), "webhook_secret_missing", "{text:?}");
        assert!(error.is_configuration_error());
    }
    assert_eq!(Secret::from_bytes(b"").map(|_| ()).unwrap_err().code(), "webhook_secret_missing");
}

#[test]
fn the_negative_fixtures_of_the_reference_suites_give_the_specific_errors() {
    let valid_third = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {W1_SIGNATURE} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=");
    let cases: [(&str, String, &str); 10] = [
        ("valid", W1_SIGNATURE.into(), "ok"),
        ("wrong", WRONG.into(), "webhook_signature_mismatch"),
        ("unknown version only", "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=".into(), "webhook_signature_missing"),
        ("empty v1", "v1,".into(), "webhook_signature_malformed"),
        ("garbage", "v1,dawfeoifkpqwoekfpqoekf".into(), "webhook_signature_malformed"),
        (
            "last character changed",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=".into(),
            "webhook_signature_mismatch",
        ),
        ("valid third of four", valid_third, "ok"),
        ("no comma", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(), "webhook_signature_malformed"),
        ("asymmetric only", W3_V1A.into(), "webhook_signature_missing"),
        ("asymmetric beside a valid v1", format!("{W3_V1A} {W1_SIGNATURE}"), "ok"),
    ];
    for (name, signature, expected) in cases {
        let got = verify_w1(&signature, W1_TS).map_or_else(|e| e.code(), |_| "ok");
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn the_spec_examples_v1_entry_is_read_and_its_unknown_secret_does_not_match() {
    let spec = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";
    assert_eq!(verify_w1(spec, W1_TS), Err(VerifyError::SignatureMismatch));
}

#[test]
fn each_missing_header_is_missing() {
    let secrets = [secret(W1_SECRET)];
    let full = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(W1_SIGNATURE) };
    let cases = [
        (Headers { id: None, ..full }, "no webhook-id header"),
        (Headers { id: Some(""), ..full }, "no webhook-id header"),
        (Headers { timestamp: None, ..full }, "no webhook-timestamp header"),
        (Headers { signature: None, ..full }, "no webhook-signature header"),
        (Headers { signature: Some("  "), ..full }, "no webhook-signature header"),
    ];
    for (headers, detail) in cases {
        let got = standard::verify(&headers, W1_PAYLOAD.as_bytes(), &secrets, at(W1_TS));
        assert_eq!(got, Err(VerifyError::SignatureMissing(detail)), "{headers:?}");
    }
    assert!(standard::verify(&full, W1_PAYLOAD.as_bytes(), &secrets, at(W1_TS)).is_ok());
}

#[test]
fn timestamps_that_are_not_canonical_unix_seconds_are_malformed() {
    let secrets = [secret(W1_SECRET)];
    for ts in ["hello", "161426533.0", "invalid timestamp", "-161426533", "01614265330", "1614265330 1"] {
        let headers = Headers { id: Some(W1_ID), timestamp: Some(ts), signature: Some(W1_SIGNATURE) };
        let got = standard::verify(&headers, W1_PAYLOAD.as_bytes(), &secrets, at(W1_TS));
        assert_eq!(got.map_err(|e| e.code()), Err("webhook_signature_malformed"), "{ts}");
    }
}

#[test]
fn the_window_is_five_minutes_in_both_directions_bounds_included() {
    assert_eq!(verify_w1(W1_SIGNATURE, W1_TS + 300), Ok(0));
    assert_eq!(verify_w1(W1_SIGNATURE, W1_TS - 300), Ok(0));
    assert_eq!(verify_w1(W1_SIGNATURE, W1_TS + 301), Err(VerifyError::SignatureStale));
    assert_eq!(verify_w1(W1_SIGNATURE, W1_TS - 301), Err(VerifyError::SignatureFuture));
}

#[test]
fn a_tampered_body_or_a_wrong_secret_is_a_mismatch() {
    let headers = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(W1_SIGNATURE) };
    let tampered = standard::verify(&headers, br#"{"test": 2432232315}"#, &[secret(W1_SECRET)], at(W1_TS));
    assert_eq!(tampered, Err(VerifyError::SignatureMismatch));
    let other_id = Headers { id: Some("msg_p5jXN8AQM9LWM0D4loKWxJel"), ..headers };
    assert_eq!(
        standard::verify(&other_id, W1_PAYLOAD.as_bytes(), &[secret(W1_SECRET)], at(W1_TS)),
        Err(VerifyError::SignatureMismatch)
    );
    let wrong = standard::verify(
        &headers,
        W1_PAYLOAD.as_bytes(),
        &[secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")],
        at(W1_TS),
    );
    assert_eq!(wrong, Err(VerifyError::SignatureMismatch));
}

#[test]
fn an_id_containing_a_dot_is_malformed_inbound_and_refused_outbound() {
    let headers = Headers { id: Some("msg.1"), timestamp: Some("1614265330"), signature: Some(W1_SIGNATURE) };
    let got = standard::verify(&headers, W1_PAYLOAD.as_bytes(), &[secret(W1_SECRET)], at(W1_TS));
    assert_eq!(got, Err(VerifyError::SignatureMalformed("the webhook-id contains `.`")));
    for bad in ["", "msg.1", "msg 1", "msg\n1", &"a".repeat(257)] {
        assert_eq!(MessageId::parse(bad).map_err(|e| e.code()), Err("webhook_signature_malformed"), "{bad:?}");
    }
    assert_eq!(MessageId::parse(W1_ID).unwrap().as_str(), W1_ID);
}

#[test]
fn no_configured_secret_fails_closed_for_verifying_and_signing() {
    let headers = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(W1_SIGNATURE) };
    assert_eq!(
        standard::verify(&headers, W1_PAYLOAD.as_bytes(), &[], at(W1_TS)).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(
        standard::verify(&Headers::default(), b"", &[], at(W1_TS)).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(standard::sign(&[], &id(W1_ID), at(W1_TS), b"{}").map_err(|e| e.code()), Err("webhook_secret_missing"));
}

#[test]
fn signing_before_1970_is_refused() {
    let got = standard::sign(&[secret(W1_SECRET)], &id(W1_ID), at(-161_426_533), b"{}");
    assert_eq!(got, Err(VerifyError::SignatureMalformed("the timestamp is before 1970")));
}

#[test]
fn signing_with_two_secrets_gives_two_entries_each_verifying_alone() {
    let old = secret(W1_SECRET);
    let new = secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
    let header = standard::sign(&[old.clone(), new.clone()], &id(W1_ID), at(W1_TS), W1_PAYLOAD.as_bytes()).unwrap();
    let entries: Vec<&str> = header.split(' ').collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], W1_SIGNATURE);
    let headers = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(&header) };
    let check = |secrets: &[Secret]| {
        standard::verify(&headers, W1_PAYLOAD.as_bytes(), secrets, at(W1_TS)).map(|v| v.secret_index)
    };
    assert_eq!(check(std::slice::from_ref(&old)), Ok(0));
    assert_eq!(check(std::slice::from_ref(&new)), Ok(0));
    let unrelated = secret("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(check(&[unrelated.clone(), new.clone()]), Ok(1));
    assert_eq!(check(&[unrelated]), Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_generated_secret_is_whsec_and_32_random_bytes_that_round_trip() {
    let generated = Secret::generate(&mut StdRng::seed_from_u64(7));
    assert_eq!(generated.len(), 32);
    let text = generated.to_whsec();
    assert!(text.expose_secret().starts_with("whsec_"));
    assert_eq!(text.expose_secret().len(), "whsec_".len() + 44);
    let reparsed = secret(text.expose_secret());
    let a = standard::sign(&[generated], &id(W1_ID), at(W1_TS), b"{}").unwrap();
    let b = standard::sign(&[reparsed], &id(W1_ID), at(W1_TS), b"{}").unwrap();
    assert_eq!(a, b);
    let one = Secret::generate(&mut OsRng).to_whsec();
    let two = Secret::generate(&mut OsRng).to_whsec();
    assert_ne!(one.expose_secret(), two.expose_secret());
}

#[test]
fn secrets_and_errors_never_print_the_key_or_the_expected_signature() {
    assert_eq!(format!("{:?}", secret(W1_SECRET)), "Secret([REDACTED])");
    let error = verify_w1(WRONG, W1_TS).unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") && !text.contains("g0hM9SsE"), "{text}");
    }
}

proptest! {
    #[test]
    fn any_signed_body_verifies_and_any_one_bit_change_does_not(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<prop::sample::Index>(),
        ts in 0i64..4_000_000_000,
    ) {
        let secrets = [secret(W1_SECRET)];
        let header = standard::sign(&secrets, &id(W1_ID), at(ts), &body).unwrap();
        let ts_text = ts.to_string();
        let headers = Headers { id: Some(W1_ID), timestamp: Some(&ts_text), signature: Some(&header) };
        prop_assert_eq!(standard::verify(&headers, &body, &secrets, at(ts)).map(|v| v.secret_index), Ok(0));
        let mut flipped = body.clone();
        let position = bit.index(body.len() * 8);
        flipped[position / 8] ^= 1 << (position % 8);
        prop_assert_eq!(standard::verify(&headers, &flipped, &secrets, at(ts)), Err(VerifyError::SignatureMismatch));
    }
}

#[test]
fn the_default_tolerance_is_five_minutes_and_a_narrower_one_is_applied() {
    assert_eq!(standard::DEFAULT_TOLERANCE, std::time::Duration::from_secs(300));
    let headers = Headers { id: Some(W1_ID), timestamp: Some("1614265330"), signature: Some(W1_SIGNATURE) };
    let check = |now: i64| {
        let tolerance = std::time::Duration::from_secs(10);
        standard::verify_with_tolerance(&headers, W1_PAYLOAD.as_bytes(), &[secret(W1_SECRET)], at(now), tolerance)
    };
    assert_eq!(check(W1_TS + 10).map(|v| v.secret_index), Ok(0));
    assert_eq!(check(W1_TS + 11), Err(VerifyError::SignatureStale));
    assert_eq!(check(W1_TS - 11), Err(VerifyError::SignatureFuture));
}
