//! Generic HMAC-SHA256 webhooks: stripe-node's raw HMAC vectors (test-vectors.md §1.2, S2),
//! GitHub's documented example, base64 and timestamped schemes, and the refusals.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use webhooks::generic::{self, Encoding, Headers, Scheme, Secret};
use webhooks::VerifyError;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn secret(text: &str) -> Secret {
    Secret::parse(text).unwrap()
}

fn timestamped() -> Scheme {
    Scheme::new("X-Signature", Encoding::Base64).with_timestamp("X-Timestamp", Duration::from_secs(300))
}

const NOW: i64 = 1_700_000_000;

fn check(
    scheme: &Scheme,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &str,
    secrets: &[&str],
    now: i64,
) -> Result<usize, VerifyError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| secret(s)).collect();
    generic::verify(scheme, &Headers { signature, timestamp }, body.as_bytes(), &secrets, at(now))
        .map(|v| v.secret_index)
}

#[test]
fn the_stripe_node_raw_hmac_vectors_are_signed_and_verified_in_hex() {
    let scheme = Scheme::new("X-Signature", Encoding::Hex);
    let table = [
        ("", "f7f9bd47fb987337b5796fdc1fdb9ba221d0d5396814bfcaf9521f43fd8927fd"),
        (r#"{"obj1":"hello","obj2":"world"}"#, "bebb1a643997f419b315ddba19e6f5411e1ce7f810ba6d3617ce72823092f363"),
        ("\u{1F600}", "837da296d05c4fe31f61d5d7ead035099d9585a5bcde87de952012a78f0b0c43"),
    ];
    for (payload, expected) in table {
        let (signature, timestamp) = generic::sign(&scheme, &secret("test_secret"), None, payload.as_bytes()).unwrap();
        assert_eq!((signature.as_str(), timestamp), (expected, None), "{payload:?}");
        assert_eq!(check(&scheme, Some(expected), None, payload, &["test_secret"], NOW), Ok(0), "{payload:?}");
    }
}

#[test]
fn githubs_documented_example_verifies_with_its_prefix() {
    // docs.github.com, "Validating webhook deliveries": secret and payload below, recomputed.
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let scheme = Scheme::github();
    assert_eq!(scheme.signature_header, "X-Hub-Signature-256");
    assert_eq!(
        generic::sign(&scheme, &secret("It's a Secret to Everybody"), None, b"Hello, World!").unwrap().0,
        expected
    );
    assert_eq!(check(&scheme, Some(expected), None, "Hello, World!", &["It's a Secret to Everybody"], NOW), Ok(0));
}

#[test]
fn a_signature_without_its_prefix_or_not_decoding_is_malformed() {
    let scheme = Scheme::github();
    let bare = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let s = ["It's a Secret to Everybody"];
    assert_eq!(
        check(&scheme, Some(bare), None, "Hello, World!", &s, NOW),
        Err(VerifyError::SignatureMalformed("the signature does not start with its prefix"))
    );
    for bad in ["sha256=zz", "sha256=757107ea", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"]
    {
        assert_eq!(
            check(&scheme, Some(bad), None, "Hello, World!", &s, NOW).map_err(|e| e.code()),
            Err("webhook_signature_malformed"),
            "{bad}"
        );
    }
    let base64 = Scheme::new("X-Signature", Encoding::Base64);
    assert_eq!(
        check(&base64, Some(bare), None, "Hello, World!", &s, NOW).map_err(|e| e.code()),
        Err("webhook_signature_malformed")
    );
}

#[test]
fn a_timestamped_base64_scheme_signs_timestamp_dot_body() {
    let scheme = timestamped();
    let (signature, timestamp) = generic::sign(&scheme, &secret("shh"), Some(at(NOW)), b"{}").unwrap();
    assert_eq!(timestamp.as_deref(), Some("1700000000"));
    let by_hand =
        generic::sign(&Scheme::new("X-Signature", Encoding::Base64), &secret("shh"), None, b"1700000000.{}").unwrap().0;
    assert_eq!(signature, by_hand);
    assert_eq!(STANDARD.decode(&signature).unwrap().len(), 32);
    assert_eq!(check(&scheme, Some(&signature), Some("1700000000"), "{}", &["shh"], NOW), Ok(0));
}

#[test]
fn a_timestamped_scheme_refuses_stale_future_missing_and_malformed_timestamps() {
    let scheme = timestamped();
    let (signature, _) = generic::sign(&scheme, &secret("shh"), Some(at(NOW)), b"{}").unwrap();
    let sig = Some(signature.as_str());
    let ts = Some("1700000000");
    assert_eq!(check(&scheme, sig, ts, "{}", &["shh"], NOW + 300), Ok(0));
    assert_eq!(check(&scheme, sig, ts, "{}", &["shh"], NOW - 300), Ok(0));
    assert_eq!(check(&scheme, sig, ts, "{}", &["shh"], NOW + 301), Err(VerifyError::SignatureStale));
    assert_eq!(check(&scheme, sig, ts, "{}", &["shh"], NOW - 301), Err(VerifyError::SignatureFuture));
    assert_eq!(
        check(&scheme, sig, None, "{}", &["shh"], NOW),
        Err(VerifyError::SignatureMissing("no timestamp header"))
    );
    assert_eq!(
        check(&scheme, sig, Some("17e8"), "{}", &["shh"], NOW).map_err(|e| e.code()),
        Err("webhook_signature_malformed")
    );
    // Moving the timestamp (to dodge the window) breaks the signature.
    assert_eq!(check(&scheme, sig, Some("1700000001"), "{}", &["shh"], NOW), Err(VerifyError::SignatureMismatch));
    assert!(generic::sign(&scheme, &secret("shh"), None, b"{}").is_err());
}

#[test]
fn a_tampered_body_or_a_wrong_secret_is_a_mismatch_and_a_rotated_secret_is_accepted() {
    let scheme = Scheme::github();
    let (signature, _) = generic::sign(&scheme, &secret("new"), None, b"payload").unwrap();
    assert_eq!(check(&scheme, Some(&signature), None, "payload", &["new"], NOW), Ok(0));
    assert_eq!(check(&scheme, Some(&signature), None, "payloae", &["new"], NOW), Err(VerifyError::SignatureMismatch));
    assert_eq!(check(&scheme, Some(&signature), None, "payload", &["old"], NOW), Err(VerifyError::SignatureMismatch));
    assert_eq!(check(&scheme, Some(&signature), None, "payload", &["old", "new"], NOW), Ok(1));
}

#[test]
fn a_missing_signature_is_missing_and_no_secret_fails_closed() {
    let scheme = Scheme::github();
    assert_eq!(
        check(&scheme, None, None, "payload", &["s"], NOW),
        Err(VerifyError::SignatureMissing("no signature header"))
    );
    assert_eq!(
        check(&scheme, Some(" "), None, "payload", &["s"], NOW).map_err(|e| e.code()),
        Err("webhook_signature_missing")
    );
    assert_eq!(
        check(&scheme, Some("sha256=00"), None, "payload", &[], NOW).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(Secret::parse("").map(|_| ()).map_err(|e| e.code()), Err("webhook_secret_missing"));
}

#[test]
fn secrets_print_redacted() {
    assert_eq!(format!("{:?}", secret("It's a Secret to Everybody")), "Secret([REDACTED])");
}

proptest! {
    #[test]
    fn any_signed_body_verifies_and_any_one_bit_change_does_not(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<prop::sample::Index>(),
    ) {
        let scheme = Scheme::github();
        let secrets = [secret("proptest")];
        let (signature, _) = generic::sign(&scheme, &secrets[0], None, &body).unwrap();
        let headers = Headers { signature: Some(&signature), timestamp: None };
        prop_assert!(generic::verify(&scheme, &headers, &body, &secrets, at(NOW)).is_ok());
        let mut flipped = body.clone();
        let position = bit.index(body.len() * 8);
        flipped[position / 8] ^= 1 << (position % 8);
        prop_assert_eq!(generic::verify(&scheme, &headers, &flipped, &secrets, at(NOW)), Err(VerifyError::SignatureMismatch));
    }
}
