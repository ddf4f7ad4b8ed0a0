//! Twilio's `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed by the auth token, over the full
//! URL Twilio requested followed by the form parameters (sorted by name, each as `name` +
//! `value`, no delimiters). JSON bodies are covered instead by a `bodySHA256` query parameter,
//! the hex SHA-256 of the raw body, and the signature is over the URL alone.
//!
//! `url` must be the URL as Twilio requested it (scheme, host, optional port, path, the whole
//! query string), rebuilt from the configured public base URL — never from the request's `Host`
//! header, which the sender controls. Following twilio-python and twilio-node, a signature over
//! the same URL with the scheme's default port removed (`:443`, `:80`) or added also passes.
//!
//! The scheme carries no timestamp, so a captured request stays valid: receivers must treat
//! Twilio's ids (`MessageSid`, `CallSid`, the `I-Twilio-Idempotency-Token` header) as
//! idempotency keys.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::mac::{self, Candidates, Key};
use crate::{Verified, VerifyError};

/// The header Twilio signs with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The query parameter holding the hex SHA-256 of a non-form body.
pub const BODY_HASH_PARAMETER: &str = "bodySHA256";

/// A Twilio auth token (primary or secondary), held as its UTF-8 bytes.
#[derive(Clone)]
pub struct AuthToken(Key);

impl AuthToken {
    /// Takes the token as Twilio shows it. Empty: [`VerifyError::SecretMissing`].
    pub fn parse(token: &str) -> Result<AuthToken, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::SecretMissing("the Twilio auth token is empty"));
        }
        Ok(AuthToken(Key::from_bytes(token.as_bytes())))
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuthToken").field(&self.0).finish()
    }
}

/// Verifies a request whatever its body: when `url` carries `bodySHA256` the body is checked
/// against it ([`verify_body_hash`]), otherwise `body` is read as
/// `application/x-www-form-urlencoded` ([`verify_form_params`]). The URL is signed, so a
/// sender cannot switch a request from one mode to the other.
pub fn verify(signature: Option<&str>, url: &str, body: &[u8], tokens: &[AuthToken]) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    if body_hash_parameter(url)?.is_some() {
        return verify_body_hash(signature, url, body, tokens);
    }
    let params: Vec<(Cow<'_, str>, Cow<'_, str>)> = url::form_urlencoded::parse(body).collect();
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    verify_form_params(signature, url, &params, tokens)
}

/// Verifies a form POST (or a GET, with no parameters) from its decoded parameters.
///
/// A name sent several times contributes each distinct value once, in sorted order, as
/// twilio-python (`sorted(set(values))`) and twilio-node do.
pub fn verify_form_params(
    signature: Option<&str>,
    url: &str,
    params: &[(&str, &str)],
    tokens: &[AuthToken],
) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    let candidates = parse_signature(signature)?;
    let params = canonical_params(params);
    let index = match_url_variants(&candidates, url, &params, tokens)?;
    Ok(Verified::new(index))
}

/// Verifies a request with a non-form (JSON) body: the signature is over the URL alone, and
/// the URL's `bodySHA256` must equal the hex SHA-256 of `body`.
///
/// No `bodySHA256`: `missing`; two of them or one that is not 64 hex digits: `malformed`; a
/// valid signature with a different body: `mismatch`.
pub fn verify_body_hash(
    signature: Option<&str>,
    url: &str,
    body: &[u8],
    tokens: &[AuthToken],
) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    let candidates = parse_signature(signature)?;
    let expected_hash =
        body_hash_parameter(url)?.ok_or(VerifyError::SignatureMissing("the URL has no bodySHA256 parameter"))?;
    let index = match_url_variants(&candidates, url, "", tokens)?;
    let body_hash: [u8; 32] = Sha256::digest(body).into();
    if !mac::ct_eq(&body_hash, &expected_hash) {
        return Err(VerifyError::SignatureMismatch);
    }
    Ok(Verified::new(index))
}

/// The `X-Twilio-Signature` value Twilio would send for `url` and `params`: for tests and local
/// tools that simulate Twilio.
pub fn sign(token: &AuthToken, url: &str, params: &[(&str, &str)]) -> Result<String, VerifyError> {
    let signature = mac::hmac_sha1(&token.0, &[url.as_bytes(), canonical_params(params).as_bytes()])?;
    Ok(STANDARD.encode(signature))
}

fn parse_signature(signature: Option<&str>) -> Result<Candidates<20>, VerifyError> {
    let signature = signature
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::SignatureMissing("no X-Twilio-Signature header"))?;
    let mut candidates = Candidates::new();
    candidates.push(mac::decode_base64::<20>(signature));
    Ok(candidates)
}

fn match_url_variants(
    candidates: &Candidates<20>,
    url: &str,
    params: &str,
    tokens: &[AuthToken],
) -> Result<usize, VerifyError> {
    let mut outcome = Err(VerifyError::SignatureMismatch);
    for variant in url_variants(url) {
        outcome = candidates.find(
            tokens,
            "no X-Twilio-Signature header",
            "the X-Twilio-Signature is not base64 of 20 bytes",
            |token| mac::hmac_sha1(&token.0, &[variant.as_bytes(), params.as_bytes()]),
        );
        if outcome.is_ok() {
            break;
        }
    }
    outcome
}

/// `name` + `value` of every distinct pair, sorted by name then value (byte order, which is
/// code point order: python's `sorted`).
fn canonical_params(params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.iter().flat_map(|(name, value)| [*name, *value]).collect()
}

/// The decoded `bodySHA256` of the URL's query, if there is one.
fn body_hash_parameter(url: &str) -> Result<Option<[u8; 32]>, VerifyError> {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let Some((_, query)) = without_fragment.split_once('?') else {
        return Ok(None);
    };
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name != BODY_HASH_PARAMETER {
            continue;
        }
        if found.is_some() {
            return Err(VerifyError::SignatureMalformed("the URL has two bodySHA256 parameters"));
        }
        found = Some(
            mac::decode_hex::<32>(&value)
                .ok_or(VerifyError::SignatureMalformed("the bodySHA256 parameter is not 64 hex digits"))?,
        );
    }
    Ok(found)
}

/// `url` itself, then the same URL with the scheme's default port removed (when it is written
/// out) or added (when there is no port). Other ports have no variant: Twilio signs the URL it
/// requested, and only the default port may be spelled either way. User information
/// (`user:pass@`) stays in every variant, as Twilio signs it.
fn url_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut variants = vec![Cow::Borrowed(url)];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    // The port follows the last `:` after any bracketed IPv6 literal.
    let port_search_from = host_port.rfind(']').map_or(0, |bracket| bracket + 1);
    let port_colon = host_port[port_search_from..].rfind(':').map(|i| i + port_search_from);
    let alternative = match port_colon {
        Some(colon) if &host_port[colon + 1..] == default_port => {
            format!("{scheme}://{userinfo}{}{tail}", &host_port[..colon])
        }
        Some(_) => return variants,
        None if host_port.is_empty() => return variants,
        None => format!("{scheme}://{userinfo}{host_port}:{default_port}{tail}"),
    };
    variants.push(Cow::Owned(alternative));
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_or_remove_only_the_default_port() {
        let check = |url: &str, expected: &[&str]| {
            let got: Vec<String> = url_variants(url).into_iter().map(Cow::into_owned).collect();
            assert_eq!(got, expected, "{url}");
        };
        check("https://a.example/p?q=1", &["https://a.example/p?q=1", "https://a.example:443/p?q=1"]);
        check("https://a.example:443/p", &["https://a.example:443/p", "https://a.example/p"]);
        check("http://a.example:80?x", &["http://a.example:80?x", "http://a.example?x"]);
        check("http://a.example", &["http://a.example", "http://a.example:80"]);
        check("http://a.example:1234/p", &["http://a.example:1234/p"]);
        check("https://a.example:80/p", &["https://a.example:80/p"]);
        check("https://user:pass@a.example/p", &["https://user:pass@a.example/p", "https://user:pass@a.example:443/p"]);
        check(
            "https://user:pass@a.example:443/p",
            &["https://user:pass@a.example:443/p", "https://user:pass@a.example/p"],
        );
        check("https://[::1]/p", &["https://[::1]/p", "https://[::1]:443/p"]);
        check("https://[::1]:443/p", &["https://[::1]:443/p", "https://[::1]/p"]);
        check("ftp://a.example/p", &["ftp://a.example/p"]);
        check("not a url", &["not a url"]);
    }

    #[test]
    fn parameters_are_sorted_by_name_then_value_and_repeats_count_once() {
        let params = [("b", "2"), ("a", "9"), ("b", "1"), ("b", "2"), ("B", "0")];
        assert_eq!(canonical_params(&params), "B0a9b1b2");
    }
}
