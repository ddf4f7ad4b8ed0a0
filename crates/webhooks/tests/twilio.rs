//! Twilio request validation: the official vectors of test-vectors.md §3.2 (twilio-python and
//! twilio-node suites), the port variants both libraries try, the `bodySHA256` variant, the
//! HMAC-SHA256 signature setting and the refusals.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use webhooks::twilio::{self, Algorithm, AuthToken, Headers};
use webhooks::VerifyError;

const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const COMMON: [(&str, &str); 5] = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
];
const T1: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
/// twilio-python 9.13.0 `compute_signature(URL, COMMON, "HMAC_SHA256")` with token `12345`
/// (twilio-node 6.3.1 `validateRequest` accepts it too).
const T1_SHA256: &str = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";
/// The same library's HMAC-SHA256 signature of the T6 URL (`{URL}&bodySHA256={JSON_HASH}`).
const T6_SHA256: &str = "+UOCWf84gdgo/5Hpg4m5/EgKnJA2/TbOw5sPNVr3bPk=";
const SHA256_SETTINGS: &str = "key=webhooks_sharedkey_00000000000000000000000000000000,algorithm=HMAC_SHA256";

fn token(text: &str) -> AuthToken {
    AuthToken::parse(text).unwrap()
}

fn signed(signature: &str) -> Headers<'_> {
    Headers { signature: Some(signature), settings: None }
}

fn form(signature: &str, url: &str, params: &[(&str, &str)]) -> Result<usize, VerifyError> {
    twilio::verify_form_params(&signed(signature), url, params, &[token("12345")]).map(|v| v.secret_index)
}

fn body(signature: &str, url: &str, body: &str) -> Result<usize, VerifyError> {
    twilio::verify_body_hash(&signed(signature), url, body.as_bytes(), &[token("12345")]).map(|v| v.secret_index)
}

/// Name, URL signed, parameters, expected signature.
type Vector<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn the_official_form_vectors_verify() {
    let t2: [(&str, &str); 5] =
        [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")];
    let t13a = [("MessagingBinding.Address", "+1325xxxxxxx"), ("MessagingBinding.Address", "+1415xxxxxxx")];
    let t13b = [("MessagingBinding.Address", "+1415xxxxxxx"), ("MessagingBinding.Address", "+1325xxxxxxx")];
    let table: [Vector<'_>; 10] = [
        ("T1", URL, &COMMON, T1),
        ("T2", URL, &t2, "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
        ("T3", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", &COMMON, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        ("T4", "https://mycompany.com:443/myapp.php?foo=1&bar=2", &COMMON, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("T5", "http://mycompany.com:80/myapp.php?foo=1&bar=2", &COMMON, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ("T9", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", &COMMON, "CukzLTc1tT5dXEDIHm/tKBanW10="),
        ("T10", "https://user@mycompany.com/myapp.php?foo=1&bar=2", &COMMON, "2YRLlVAflCqxaNicjMpJcSTgzSs="),
        ("T11", "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2", &COMMON, "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="),
        (
            "T12",
            "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It%27s+amazing",
            &COMMON,
            "TfZzewPq8wqrGlMfyAud8+/IvJ0=",
        ),
        ("T13", URL, &t13a, "83O6e2vORAoJHUNzJjDWN1jz+BA="),
    ];
    for (name, url, params, expected) in table {
        assert_eq!(twilio::sign(&token("12345"), url, params).unwrap(), expected, "{name}");
        assert_eq!(form(expected, url, params), Ok(0), "{name}");
    }
    assert_eq!(form("83O6e2vORAoJHUNzJjDWN1jz+BA=", URL, &t13b), Ok(0), "T13 in the other order");
}

#[test]
fn the_string_to_sign_is_the_url_then_sorted_names_and_values() {
    let manual = "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212";
    let shuffled = [COMMON[3], COMMON[0], COMMON[4], COMMON[2], COMMON[1]];
    assert_eq!(twilio::sign(&token("12345"), manual, &[]).unwrap(), T1);
    assert_eq!(form(T1, URL, &shuffled), Ok(0));
}

#[test]
fn a_signature_over_the_default_port_passes_for_the_url_without_it_and_back() {
    // python `test_validation_adds_port_on_https/http` and `removes_port_on_https/http`.
    assert_eq!(form("kvajT1Ptam85bY51eRf/AJRuM3w=", URL, &COMMON), Ok(0));
    assert_eq!(form("0ZXoZLH/DfblKGATFgpif+LLRf4=", "http://mycompany.com/myapp.php?foo=1&bar=2", &COMMON), Ok(0));
    assert_eq!(form(T1, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &COMMON), Ok(0));
    assert_eq!(
        form("ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", &COMMON),
        Ok(0)
    );
}

#[test]
fn a_non_default_port_is_never_added() {
    assert_eq!(
        form("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", "http://mycompany.com/myapp.php?foo=1&bar=2", &COMMON),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        form("kvajT1Ptam85bY51eRf/AJRuM3w=", "http://mycompany.com/myapp.php?foo=1&bar=2", &COMMON),
        Err(VerifyError::SignatureMismatch),
        "the default port of the scheme Twilio requested, not another one"
    );
}

#[test]
fn any_port_may_be_dropped_as_both_libraries_drop_it() {
    // python `remove_port` and node `removePort` strip whatever port the URL has: Twilio has
    // signed https requests to a non-default port without it (twilio-python issue 402).
    assert_eq!(form(T1, "https://mycompany.com:8443/myapp.php?foo=1&bar=2", &COMMON), Ok(0));
    assert_eq!(form(T1, "https://mycompany.com:80/myapp.php?foo=1&bar=2", &COMMON), Ok(0));
    assert_eq!(form("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", &COMMON), Ok(0));
    assert_eq!(
        form("kvajT1Ptam85bY51eRf/AJRuM3w=", "https://mycompany.com:8443/myapp.php?foo=1&bar=2", &COMMON),
        Err(VerifyError::SignatureMismatch),
        "a port is dropped or the default one added, never one swapped for another"
    );
}

#[test]
fn the_url_is_signed_as_given_so_an_unencoded_apostrophe_does_not_match_t12() {
    assert_eq!(
        form("TfZzewPq8wqrGlMfyAud8+/IvJ0=", "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing", &COMMON),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        twilio::sign(&token("12345"), "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing", &COMMON)
            .unwrap(),
        "dsq4Ehbj6cs+KdTkpF5sSSplOWw="
    );
}

#[test]
fn the_official_body_hash_vectors_verify() {
    let table = [
        ("T6", format!("{URL}&bodySHA256={JSON_HASH}"), JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4="),
        ("T7", "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".to_owned(), "{}", "Ldidvp12m26NI7eqEvxnEpkd9Hc="),
        ("T8", format!("https://mycompany.com/myapp.php?bodySHA256={JSON_HASH}"), JSON_BODY, "y77kIzt2vzLz71DgmJGsen2scGs="),
    ];
    for (name, url, json, signature) in table {
        assert_eq!(body(signature, &url, json), Ok(0), "{name}");
        let dispatched = twilio::verify(&signed(signature), &url, json.as_bytes(), &[token("12345")]);
        assert_eq!(dispatched.map(|v| v.secret_index), Ok(0), "{name} through verify");
    }
}

#[test]
fn the_stripe_node_sha256_vector_is_the_body_hash_compared() {
    let digest = STANDARD.decode("dPgf4WfZm0y0HW0MzagieMrunz4vJdXlo5Nv89zsYNA=").unwrap();
    let url = format!("https://example.test/hook?bodySHA256={}", hex::encode(digest));
    let signature = twilio::sign(&token("12345"), &url, &[]).unwrap();
    let verified = twilio::verify_body_hash(&signed(&signature), &url, &[1, 2, 3, 4, 5], &[token("12345")]);
    assert_eq!(verified.map(|v| v.secret_index), Ok(0));
    let other = twilio::verify_body_hash(&signed(&signature), &url, &[1, 2, 3, 4, 6], &[token("12345")]);
    assert_eq!(other, Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_body_that_differs_from_its_hash_is_a_mismatch() {
    let url = format!("{URL}&bodySHA256={JSON_HASH}");
    assert_eq!(
        body("a9nBmqA0ju/hNViExpshrM61xv4=", &url, r#"{"property": "value", "boolean": false}"#),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn a_body_hash_that_is_absent_doubled_or_not_hex_is_refused() {
    let sign = |url: &str| twilio::sign(&token("12345"), url, &[]).unwrap();
    assert_eq!(
        body(&sign(URL), URL, JSON_BODY),
        Err(VerifyError::SignatureMissing("the URL has no bodySHA256 parameter"))
    );
    let doubled = format!("{URL}&bodySHA256={JSON_HASH}&bodySHA256={JSON_HASH}");
    assert_eq!(body(&sign(&doubled), &doubled, JSON_BODY).map_err(|e| e.code()), Err("webhook_signature_malformed"));
    let short = format!("{URL}&bodySHA256={}", &JSON_HASH[..63]);
    assert_eq!(body(&sign(&short), &short, JSON_BODY).map_err(|e| e.code()), Err("webhook_signature_malformed"));
}

#[test]
fn a_form_body_is_decoded_before_signing() {
    let encoded = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    let verified = twilio::verify(&signed(T1), URL, encoded.as_bytes(), &[token("12345")]);
    assert_eq!(verified.map(|v| v.secret_index), Ok(0));
    // An unencoded `+` is a space in a form body, so the values differ.
    let plus = encoded.replace("%2B", "+");
    assert_eq!(
        twilio::verify(&signed(T1), URL, plus.as_bytes(), &[token("12345")]),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tampered_parameters_or_url_are_a_mismatch() {
    let mut tampered = COMMON;
    tampered[2] = ("Digits", "1235");
    assert_eq!(form(T1, URL, &tampered), Err(VerifyError::SignatureMismatch));
    assert_eq!(form(T1, URL, &COMMON[..4]), Err(VerifyError::SignatureMismatch));
    assert_eq!(form(T1, "https://mycompany.com/myapp.php?foo=1&bar=3", &COMMON), Err(VerifyError::SignatureMismatch));
}

#[test]
fn a_wrong_token_is_a_mismatch_and_a_secondary_token_is_accepted_by_index() {
    let wrong = twilio::verify_form_params(&signed(T1), URL, &COMMON, &[token("54321")]);
    assert_eq!(wrong, Err(VerifyError::SignatureMismatch));
    let rotated = twilio::verify_form_params(&signed(T1), URL, &COMMON, &[token("54321"), token("12345")]);
    assert_eq!(rotated.map(|v| v.secret_index), Ok(1));
}

#[test]
fn a_missing_or_malformed_signature_header_gives_its_own_error() {
    let tokens = [token("12345")];
    assert_eq!(
        twilio::verify_form_params(&Headers::default(), URL, &COMMON, &tokens),
        Err(VerifyError::SignatureMissing("no X-Twilio-Signature header"))
    );
    assert_eq!(
        twilio::verify_form_params(&signed(""), URL, &COMMON, &tokens).map_err(|e| e.code()),
        Err("webhook_signature_missing")
    );
    for bad in ["not base64!", "RSOYDt4T1cUTdK1PDd93/VVr8B8", "RSOYDt4T1cUTdK1PDd93/VVr8B8AAA==", "AAAA"] {
        let got = twilio::verify_form_params(&signed(bad), URL, &COMMON, &tokens);
        assert_eq!(got.map_err(|e| e.code()), Err("webhook_signature_malformed"), "{bad}");
    }
}

#[test]
fn no_configured_token_fails_closed_before_anything_else() {
    assert_eq!(
        twilio::verify_form_params(&signed(T1), URL, &COMMON, &[]).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(
        twilio::verify(&Headers::default(), "https://x.test/?bodySHA256=zz", b"", &[]).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    let unsupported = Headers { signature: Some(T1), settings: Some("algorithm=HMAC_SHA512") };
    assert_eq!(
        twilio::verify(&unsupported, URL, b"", &[]).map_err(|e| e.code()),
        Err("webhook_secret_missing"),
        "a source without a secret answers 500 whatever the request says"
    );
    assert_eq!(
        twilio::verify_body_hash(&Headers::default(), URL, b"", &[]).map_err(|e| e.code()),
        Err("webhook_secret_missing")
    );
    assert_eq!(AuthToken::parse("").map(|_| ()).map_err(|e| e.code()), Err("webhook_secret_missing"));
}

#[test]
fn tokens_and_errors_never_print_the_token_or_the_expected_signature() {
    assert_eq!(format!("{:?}", token("12345")), "AuthToken([REDACTED])");
    let error = twilio::verify_form_params(&signed("AAAAAAAAAAAAAAAAAAAAAAAAAAA="), URL, &COMMON, &[token("12345")])
        .unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("12345") && !text.contains("RSOYDt4T"), "{text}");
    }
}

#[test]
fn the_hmac_sha256_setting_verifies_what_the_python_library_signs() {
    let tokens = [token("12345")];
    let sha256 = |signature| Headers { signature: Some(signature), settings: Some(SHA256_SETTINGS) };
    assert_eq!(twilio::sign_with(Algorithm::HmacSha256, &tokens[0], URL, &COMMON).unwrap(), T1_SHA256);
    let verified = twilio::verify_form_params(&sha256(T1_SHA256), URL, &COMMON, &tokens);
    assert_eq!(verified.map(|v| v.secret_index), Ok(0));
    // The port variants apply whatever the algorithm.
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(
        twilio::verify_form_params(&sha256(T1_SHA256), with_port, &COMMON, &tokens).map(|v| v.secret_index),
        Ok(0)
    );
    let url = format!("{URL}&bodySHA256={JSON_HASH}");
    assert_eq!(twilio::sign_with(Algorithm::HmacSha256, &tokens[0], &url, &[]).unwrap(), T6_SHA256);
    let json = twilio::verify(&sha256(T6_SHA256), &url, JSON_BODY.as_bytes(), &tokens);
    assert_eq!(json.map(|v| v.secret_index), Ok(0));
    let tampered = twilio::verify(&sha256(T6_SHA256), &url, b"{}", &tokens);
    assert_eq!(tampered, Err(VerifyError::SignatureMismatch));
}

#[test]
fn the_settings_header_chooses_the_algorithm_so_a_signature_under_the_other_one_is_refused() {
    let tokens = [token("12345")];
    let with = |signature, settings| Headers { signature: Some(signature), settings: Some(settings) };
    // HMAC-SHA256 without the header, or HMAC-SHA1 under it: the lengths differ, so malformed.
    let no_header = twilio::verify_form_params(&signed(T1_SHA256), URL, &COMMON, &tokens);
    assert_eq!(no_header.map_err(|e| e.code()), Err("webhook_signature_malformed"));
    let sha1_under_sha256 = twilio::verify_form_params(&with(T1, SHA256_SETTINGS), URL, &COMMON, &tokens);
    assert_eq!(sha1_under_sha256.map_err(|e| e.code()), Err("webhook_signature_malformed"));
    // A header naming HMAC_SHA1, or none at all, is the auth token's HMAC-SHA1.
    let explicit = twilio::verify_form_params(&with(T1, "algorithm=HMAC_SHA1"), URL, &COMMON, &tokens);
    assert_eq!(explicit.map(|v| v.secret_index), Ok(0));
    let keyed_only = twilio::verify_form_params(&with(T1, "key=webhooks_sharedkey_1"), URL, &COMMON, &tokens);
    assert_eq!(keyed_only.map(|v| v.secret_index), Ok(0));
    // The algorithm's name is compared after upper-casing, as the libraries compare it.
    let lower = twilio::verify_form_params(&with(T1_SHA256, "algorithm=hmac_sha256"), URL, &COMMON, &tokens);
    assert_eq!(lower.map(|v| v.secret_index), Ok(0));
    // An algorithm the libraries do not know is refused, even with a signature that would match.
    for settings in ["algorithm=HMAC_SHA512", "algorithm=SHA256", "algorithm=HMAC_SHA256 x"] {
        let got = twilio::verify_form_params(&with(T1_SHA256, settings), URL, &COMMON, &tokens);
        assert_eq!(got.map_err(|e| e.code()), Err("webhook_signature_malformed"), "{settings}");
    }
}

#[test]
fn the_settings_header_names_no_key_so_every_configured_secret_is_tried() {
    let shared = token("shared-key-secret");
    let signature = twilio::sign_with(Algorithm::HmacSha256, &shared, URL, &COMMON).unwrap();
    let headers = Headers { signature: Some(&signature), settings: Some(SHA256_SETTINGS) };
    let verified = twilio::verify_form_params(&headers, URL, &COMMON, &[token("12345"), shared]);
    assert_eq!(verified.map(|v| v.secret_index), Ok(1));
}

#[test]
fn a_body_hash_in_upper_case_is_refused_as_the_libraries_compare_the_hex_text() {
    let url = format!("{URL}&bodySHA256={}", JSON_HASH.to_uppercase());
    let signature = twilio::sign(&token("12345"), &url, &[]).unwrap();
    assert_eq!(body(&signature, &url, JSON_BODY).map_err(|e| e.code()), Err("webhook_signature_malformed"));
    assert!(!twilio::has_body_hash(&url));
    assert!(twilio::has_body_hash(&format!("{URL}&bodySHA256={JSON_HASH}")));
    assert!(!twilio::has_body_hash(URL));
}
