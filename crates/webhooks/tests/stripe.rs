//! Stripe signatures: the official and derived vectors of test-vectors.md §1.2–1.3, the
//! behavioural cases of the official suites (§1.4), and the refusals every scheme must make.

use std::time::Duration;

use chrono::{DateTime, Utc};
use webhooks::stripe::{self, SignatureHeader, SigningSecret};
use webhooks::VerifyError;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn secret(text: &str) -> SigningSecret {
    SigningSecret::parse(text).unwrap()
}

/// async-stripe `test_webhook_construct_event` (S1): serde_json's sorted compact rendering.
const S1_PAYLOAD: &str = r#"{"account":"acct_123","api_version":"2017-05-25","created":1533204620,"data":{"object":{"amount":1000,"currency":"usd","customer":"cus_123","date":1533204620,"description":"Test Invoice Item","discountable":false,"id":"ii_123","invoice":"in_123","livemode":false,"metadata":{},"object":"invoiceitem","period":{"end":1533204620,"start":1533204620},"proration":false,"quantity":3,"quantity_decimal":"0"}},"id":"evt_123","livemode":false,"object":"event","pending_webhooks":1,"request":{"id":"req_123","idempotency_key":"idempotency-key-123"},"type":"invoiceitem.created"}"#;
const S1_HEADER: &str = "t=1533204620,v1=d7373bc68f4bd320b253cd7461f87af6e1cdf1b4d7db1614d8d1d746972d2d0a,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

const PAYLOAD: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
const T: i64 = 1_492_774_577;
const V1: &str = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";
const V1_ROLLED: &str = "9e010fbc4cc8f6c5dc44a6824569d0ab0d471b5fd81ab229d222117f0a69c435";

fn valid_header() -> String {
    format!("t={T},v1={V1}")
}

fn verify(header: &str, body: &str, secrets: &[&str], now: i64) -> Result<usize, VerifyError> {
    let secrets: Vec<SigningSecret> = secrets.iter().map(|s| secret(s)).collect();
    stripe::verify(Some(header), body.as_bytes(), &secrets, at(now)).map(|v| v.secret_index)
}

#[test]
fn the_async_stripe_event_verifies_at_its_own_timestamp() {
    assert_eq!(verify(S1_HEADER, S1_PAYLOAD, &["secret"], 1_533_204_620), Ok(0));
}

#[test]
fn the_async_stripe_event_with_its_keys_in_insertion_order_does_not_verify() {
    let reordered = S1_PAYLOAD.replacen(
        r#"{"account":"acct_123","api_version":"2017-05-25""#,
        r#"{"api_version":"2017-05-25","account":"acct_123""#,
        1,
    );
    assert_ne!(reordered, S1_PAYLOAD);
    assert_eq!(verify(S1_HEADER, &reordered, &["secret"], 1_533_204_620), Err(VerifyError::SignatureMismatch));
}

#[test]
fn the_async_stripe_parse_vector_yields_its_timestamp_and_only_the_v1_signature() {
    let header = SignatureHeader::parse("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39").unwrap();
    assert_eq!(header.timestamp(), 1_492_774_577);
    let v1: Vec<String> = header.v1_signatures().iter().map(hex::encode).collect();
    assert_eq!(v1, ["5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"]);
}

#[test]
fn the_derived_vectors_are_signed_and_verified_exactly() {
    let dummy = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}";
    let table: [(i64, &str, &str); 3] = [
        (1_700_000_000, dummy, "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"),
        (T, PAYLOAD, V1),
        (1_700_000_000, "", "316b9ab98c15bfa039d243f3196acee619cf29749a91a634e6a8154e2f7b6727"),
    ];
    for (t, payload, v1) in table {
        let expected = format!("t={t},v1={v1}");
        let signed = stripe::sign(&secret("whsec_test_secret"), at(t), payload.as_bytes()).unwrap();
        assert_eq!(signed, expected, "t={t}");
        assert_eq!(verify(&expected, payload, &["whsec_test_secret"], t), Ok(0), "t={t}");
    }
}

#[test]
fn a_header_from_a_rolled_secret_verifies_under_either_secret() {
    let header = format!("t={T},v1={V1},v1={V1_ROLLED}");
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret"], T), Ok(0));
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret_rolled_key"], T), Ok(0));
    let rolled = stripe::sign(&secret("whsec_test_secret_rolled_key"), at(T), PAYLOAD.as_bytes()).unwrap();
    assert_eq!(rolled, format!("t={T},v1={V1_ROLLED}"));
}

#[test]
fn a_second_configured_secret_is_accepted_and_reported_by_index() {
    let header = format!("t={T},v1={V1_ROLLED}");
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret", "whsec_test_secret_rolled_key"], T), Ok(1));
    assert_eq!(verify(&valid_header(), PAYLOAD, &["whsec_other", "whsec_test_secret"], T), Ok(1));
}

#[test]
fn the_official_suites_behavioural_cases_give_the_specific_errors() {
    let s = "whsec_test_secret";
    let cases: [(&str, String, Result<usize, VerifyError>); 9] = [
        // 1. Not a signature header at all.
        (
            "bad_header",
            "bad_header".into(),
            Err(VerifyError::SignatureMalformed("a Stripe-Signature element has no `=`")),
        ),
        (
            "not a header",
            "i'm not even a real signature header".into(),
            Err(VerifyError::SignatureMalformed("a Stripe-Signature element has no `=`")),
        ),
        // 2. Only the v0 scheme.
        (
            "only v0",
            format!("t={T},v0={V1}"),
            Err(VerifyError::SignatureMissing("the Stripe-Signature header has no v1 signature")),
        ),
        // 3. A v1 value that is not a signature.
        (
            "bad v1 only",
            format!("t={T},v1=bad_signature"),
            Err(VerifyError::SignatureMalformed("no v1 signature in the Stripe-Signature header is 64 hex digits")),
        ),
        // 4. A valid header with a bad v1 appended.
        ("valid plus bad", format!("{},v1=bad_signature", valid_header()), Ok(0)),
        // 8 (stripe-go).
        ("v1,t=1", "v1,t=1".into(), Err(VerifyError::SignatureMalformed("a Stripe-Signature element has no `=`"))),
        (
            "t=",
            "t=".into(),
            Err(VerifyError::SignatureMalformed("the Stripe-Signature timestamp is not a unix time in seconds")),
        ),
        ("empty", "".into(), Err(VerifyError::SignatureMissing("the Stripe-Signature header is empty"))),
        ("unknown keys ignored", format!("t={T},v2=abc,scheme=x,v1={V1}"), Ok(0)),
    ];
    for (name, header, expected) in cases {
        assert_eq!(verify(&header, PAYLOAD, &[s], T), expected, "{name}");
    }
}

#[test]
fn a_timestamp_outside_a_ten_second_tolerance_is_stale_and_inside_twenty_is_valid() {
    let secrets = [secret("whsec_test_secret")];
    let now = at(T + 15);
    let check = |seconds| {
        stripe::verify_with_tolerance(
            Some(&valid_header()),
            PAYLOAD.as_bytes(),
            &secrets,
            now,
            Duration::from_secs(seconds),
        )
        .map(|v| v.secret_index)
    };
    assert_eq!(check(10), Err(VerifyError::SignatureStale));
    assert_eq!(check(20), Ok(0));
}

#[test]
fn a_timestamp_from_1970_verifies_only_near_its_own_time_because_the_window_cannot_be_disabled() {
    let secrets = [secret("whsec_test_secret")];
    let header = stripe::sign(&secrets[0], at(12_345), PAYLOAD.as_bytes()).unwrap();
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret"], 12_345), Ok(0));
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret"], T), Err(VerifyError::SignatureStale));
}

#[test]
fn a_body_that_is_not_json_verifies_because_only_the_bytes_are_signed() {
    let body = "this is not JSON {";
    let header = stripe::sign(&secret("whsec_test_secret"), at(T), body.as_bytes()).unwrap();
    assert_eq!(verify(&header, body, &["whsec_test_secret"], T), Ok(0));
}

#[test]
fn a_signature_made_with_another_secret_is_a_mismatch() {
    // stripe-go signs with the bytes `de ad be ef`; secrets here are text, so the text stands in.
    let other = secret("deadbeef");
    let header = stripe::sign(&other, at(T), PAYLOAD.as_bytes()).unwrap();
    assert_eq!(verify(&header, PAYLOAD, &["whsec_test_secret"], T), Err(VerifyError::SignatureMismatch));
    assert_eq!(verify(&valid_header(), PAYLOAD, &["whsec_wrong"], T), Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_tampered_body_is_a_mismatch() {
    let tampered = PAYLOAD.replace("evt_test_webhook", "evt_test_webhooc");
    assert_eq!(verify(&valid_header(), &tampered, &["whsec_test_secret"], T), Err(VerifyError::SignatureMismatch));
    assert_eq!(
        verify(&valid_header(), &format!("{PAYLOAD}\n"), &["whsec_test_secret"], T),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn the_window_is_300_seconds_in_both_directions_bounds_included() {
    let s = ["whsec_test_secret"];
    assert_eq!(verify(&valid_header(), PAYLOAD, &s, T + 300), Ok(0));
    assert_eq!(verify(&valid_header(), PAYLOAD, &s, T - 300), Ok(0));
    assert_eq!(verify(&valid_header(), PAYLOAD, &s, T + 301), Err(VerifyError::SignatureStale));
    assert_eq!(verify(&valid_header(), PAYLOAD, &s, T - 301), Err(VerifyError::SignatureFuture));
}

#[test]
fn a_stale_timestamp_with_a_wrong_signature_is_a_mismatch_not_stale() {
    assert_eq!(verify(&valid_header(), "{}", &["whsec_test_secret"], T + 10_000), Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_missing_header_is_missing_and_no_secret_fails_closed_before_the_header_is_read() {
    let secrets = [secret("whsec_test_secret")];
    assert_eq!(
        stripe::verify(None, PAYLOAD.as_bytes(), &secrets, at(T)),
        Err(VerifyError::SignatureMissing("no Stripe-Signature header"))
    );
    assert_eq!(
        stripe::verify(Some(&valid_header()), PAYLOAD.as_bytes(), &[], at(T)),
        Err(VerifyError::SecretMissing("no Stripe signing secret is configured"))
    );
    assert_eq!(
        stripe::verify(None, PAYLOAD.as_bytes(), &[], at(T)).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(
        SigningSecret::parse("").map(|_| ()),
        Err(VerifyError::SecretMissing("the Stripe signing secret is empty"))
    );
}

#[test]
fn malformed_timestamps_and_headers_are_malformed() {
    let s = ["whsec_test_secret"];
    for header in [
        format!("v1={V1}"),
        format!("t=0{T},v1={V1}"),
        format!("t=-{T},v1={V1}"),
        format!("t={T}.5,v1={V1}"),
        format!("t={T},t={T},v1={V1}"),
        format!("t={T},v1={V1},"),
        format!("t={T},v1={}", &V1[..62]),
    ] {
        let error = verify(&header, PAYLOAD, &s, T).unwrap_err();
        assert_eq!(error.code(), "webhook_signature_malformed", "{header}");
    }
}

#[test]
fn upper_case_hex_signatures_are_decoded_like_lower_case() {
    assert_eq!(verify(&format!("t={T},v1={}", V1.to_uppercase()), PAYLOAD, &["whsec_test_secret"], T), Ok(0));
}

#[test]
fn errors_and_secrets_never_print_the_secret_or_the_expected_signature() {
    let s = secret("whsec_test_secret");
    assert_eq!(format!("{s:?}"), "SigningSecret([REDACTED])");
    let error = verify(&format!("t={T},v1={}", "0".repeat(64)), PAYLOAD, &["whsec_test_secret"], T).unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("test_secret") && !text.contains(V1), "{text}");
    }
}

#[test]
fn the_default_tolerance_is_the_official_300_seconds() {
    assert_eq!(stripe::DEFAULT_TOLERANCE, Duration::from_secs(300));
    assert_eq!(stripe::SIGNATURE_HEADER, "Stripe-Signature");
}
