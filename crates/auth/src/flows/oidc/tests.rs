//! Native redirects, PKCE and provider names, checked against their RFCs.

use secrecy::SecretString;

use super::native::{challenge_ok, native_redirect_ok, verifier_matches};
use super::providers::{ProviderConfig, ProviderKind, GOOGLE_ISSUER};

#[test]
fn native_redirects_are_loopback_ip_literals_or_private_use_schemes() {
    for ok in ["http://127.0.0.1:53123/callback", "http://[::1]:8080/cb", "com.example.app:/oauth2redirect"] {
        assert!(native_redirect_ok(ok), "{ok}");
    }
    for bad in [
        "http://localhost:8080/cb",
        "https://127.0.0.1/cb",
        "http://evil.example/cb",
        "http://192.168.1.2:80/cb",
        "myapp:/cb",
        "javascript:alert(1)",
        "http://127.0.0.1:1/cb#frag",
        "http://user@127.0.0.1:1/cb",
        "not a url",
    ] {
        assert!(!native_redirect_ok(bad), "{bad}");
    }
}

#[test]
fn the_pkce_verifier_matches_rfc_7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(challenge_ok(challenge));
    assert!(verifier_matches(verifier, challenge));
    assert!(!verifier_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", challenge));
    assert!(!verifier_matches("short", challenge));
}

#[test]
fn a_provider_name_must_fit_a_url_segment() {
    let cfg = |name: &str| ProviderConfig {
        name: name.into(),
        issuer: GOOGLE_ISSUER.into(),
        client_id: "id".into(),
        client_secret: SecretString::from("secret"),
        scopes: vec![],
        redirect_uri: "https://api.example.com/api/v1/auth/oidc/google/callback".into(),
        kind: ProviderKind::OpenIdConnect,
        trust_email: true,
    };
    assert!(cfg("google").validate().is_ok());
    assert!(cfg("Google").validate().is_err());
    assert!(cfg("a/b").validate().is_err());
    assert!(cfg("").validate().is_err());
    let mut no_secret = cfg("google");
    no_secret.client_secret = SecretString::from("");
    assert!(no_secret.validate().is_err());
}
