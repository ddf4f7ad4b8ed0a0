//! Twilio's `X-Twilio-Signature`: base64 of an HMAC, keyed by the auth token (or a SharedKey
//! secret), over the full URL Twilio requested followed by the form parameters (sorted by name,
//! each as `name` + `value`, no delimiters). JSON bodies are covered instead by a `bodySHA256`
//! query parameter, the hex SHA-256 of the raw body, and the signature is over the URL alone.
//! The HMAC is SHA-1 unless the `X-Twilio-Webhooks-Signature-Settings` header names another
//! algorithm (webhooks signed with a SharedKey may use HMAC-SHA256).
//!
//! Validation follows the official libraries step for step: twilio-python
//! `twilio/request_validator.py` (`get_signature_algorithm`, `RequestValidator.validate`) and
//! twilio-node `lib/webhooks/webhooks.js` (`getSignatureAlgorithm`, `validateRequest`,
//! `validateRequestWithBody`); Twilio's docs: "Webhooks security"
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>) and "Sign webhooks with shared
//! keys" (<https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys>).
//!
//! `url` must be the URL as Twilio requested it (scheme, host, optional port, path, the whole
//! query string), rebuilt from the configured public URL and the request's own query string —
//! never from the request's `Host` header, which the sender controls. As in both libraries, a
//! signature over the same URL with its port removed, or with the scheme's default port added
//! when it has none, also passes.
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

/// The header Twilio adds to webhooks signed with a SharedKey:
/// `key=<sharedKeyId>,algorithm=<algorithm>` (twilio-python `SIGNATURE_SETTINGS_HEADER`;
/// <https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys>).
pub const SIGNATURE_SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// The query parameter holding the hex SHA-256 of a non-form body.
pub const BODY_HASH_PARAMETER: &str = "bodySHA256";

const SIGNATURE_MISSING: &str = "no X-Twilio-Signature header";

/// The HMAC a signature is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `HMAC_SHA1`: the auth token's signature, and the default.
    HmacSha1,
    /// `HMAC_SHA256`: offered for webhooks signed with a SharedKey.
    HmacSha256,
}

impl Algorithm {
    /// Twilio's name for the algorithm, as the settings header and the libraries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HMAC_SHA1",
            Algorithm::HmacSha256 => "HMAC_SHA256",
        }
    }

    /// The algorithm an `X-Twilio-Webhooks-Signature-Settings` value names, read as
    /// twilio-python's `get_signature_algorithm` and `validate` (and twilio-node's
    /// `getSignatureAlgorithm` and `toHashName`) read it: split on `,`, each part on its first
    /// `=`; the first part whose trimmed name is exactly `algorithm` and whose trimmed value is
    /// not empty decides, its value compared after upper-casing. No header, an empty one or one
    /// without such a part means `HMAC_SHA1`. Any other algorithm is refused (`malformed`): the
    /// libraries refuse it too.
    ///
    /// The `key=` part is not read, as in the libraries: they take the secret from the caller,
    /// and [`verify`] tries every configured secret.
    pub fn from_settings(header: Option<&str>) -> Result<Algorithm, VerifyError> {
        let named = header.unwrap_or_default().split(',').find_map(|part| {
            let (name, value) = part.split_once('=')?;
            let value = value.trim();
            (name.trim() == "algorithm" && !value.is_empty()).then_some(value)
        });
        let Some(named) = named else { return Ok(Algorithm::HmacSha1) };
        // Full Unicode upper-casing, as python's `str.upper()` and javascript's `toUpperCase()`.
        match named.to_uppercase().as_str() {
            "HMAC_SHA1" => Ok(Algorithm::HmacSha1),
            "HMAC_SHA256" => Ok(Algorithm::HmacSha256),
            _ => Err(VerifyError::SignatureMalformed("the signature settings name an unsupported algorithm")),
        }
    }
}

/// The request headers the scheme reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `X-Twilio-Signature`.
    pub signature: Option<&'a str>,
    /// `X-Twilio-Webhooks-Signature-Settings`, present on webhooks signed with a SharedKey.
    pub settings: Option<&'a str>,
}

/// A Twilio auth token (primary or secondary) or SharedKey secret, held as its UTF-8 bytes.
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
pub fn verify(headers: &Headers<'_>, url: &str, body: &[u8], tokens: &[AuthToken]) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    if body_hash_parameter(url)?.is_some() {
        return verify_body_hash(headers, url, body, tokens);
    }
    let params: Vec<(Cow<'_, str>, Cow<'_, str>)> = url::form_urlencoded::parse(body).collect();
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    verify_form_params(headers, url, &params, tokens)
}

/// Verifies a form POST (or a GET, with no parameters) from its decoded parameters.
///
/// A name sent several times contributes each distinct value once, in sorted order, as
/// twilio-python (`sorted(set(values))`) and twilio-node do.
pub fn verify_form_params(
    headers: &Headers<'_>,
    url: &str,
    params: &[(&str, &str)],
    tokens: &[AuthToken],
) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    let algorithm = Algorithm::from_settings(headers.settings)?;
    let params = canonical_params(params);
    let index = match_url_variants(headers.signature, algorithm, url, &params, tokens)?;
    Ok(Verified::new(index))
}

/// Verifies a request with a non-form (JSON) body: the signature is over the URL alone, and
/// the URL's `bodySHA256` must equal the hex SHA-256 of `body`.
///
/// No `bodySHA256`: `missing`; two of them, or one that is not 64 lower-case hex digits (the
/// libraries compare the hex text, so upper case never matches): `malformed`; a valid
/// signature with a different body: `mismatch`.
pub fn verify_body_hash(
    headers: &Headers<'_>,
    url: &str,
    body: &[u8],
    tokens: &[AuthToken],
) -> Result<Verified, VerifyError> {
    if tokens.is_empty() {
        return Err(VerifyError::SecretMissing("no Twilio auth token is configured"));
    }
    let algorithm = Algorithm::from_settings(headers.settings)?;
    let expected_hash =
        body_hash_parameter(url)?.ok_or(VerifyError::SignatureMissing("the URL has no bodySHA256 parameter"))?;
    let index = match_url_variants(headers.signature, algorithm, url, "", tokens)?;
    let body_hash: [u8; 32] = Sha256::digest(body).into();
    if !mac::ct_eq(&body_hash, &expected_hash) {
        return Err(VerifyError::SignatureMismatch);
    }
    Ok(Verified::new(index))
}

/// Whether `url` carries a well-formed `bodySHA256`, that is whether [`verify`] checks the
/// body against it rather than reading the body as form parameters.
pub fn has_body_hash(url: &str) -> bool {
    matches!(body_hash_parameter(url), Ok(Some(_)))
}

/// The `X-Twilio-Signature` value Twilio would send for `url` and `params` with the auth token
/// (HMAC-SHA1): for tests and local tools that simulate Twilio.
pub fn sign(token: &AuthToken, url: &str, params: &[(&str, &str)]) -> Result<String, VerifyError> {
    sign_with(Algorithm::HmacSha1, token, url, params)
}

/// The `X-Twilio-Signature` value for `url` and `params` made with `algorithm`.
pub fn sign_with(
    algorithm: Algorithm,
    token: &AuthToken,
    url: &str,
    params: &[(&str, &str)],
) -> Result<String, VerifyError> {
    let params = canonical_params(params);
    let parts = [url.as_bytes(), params.as_bytes()];
    Ok(match algorithm {
        Algorithm::HmacSha1 => STANDARD.encode(mac::hmac_sha1(&token.0, &parts)?),
        Algorithm::HmacSha256 => STANDARD.encode(mac::hmac_sha256(&token.0, &parts)?),
    })
}

fn match_url_variants(
    signature: Option<&str>,
    algorithm: Algorithm,
    url: &str,
    params: &str,
    tokens: &[AuthToken],
) -> Result<usize, VerifyError> {
    match algorithm {
        Algorithm::HmacSha1 => find_in_variants::<20>(
            signature,
            "the X-Twilio-Signature is not base64 of 20 bytes (HMAC-SHA1)",
            url,
            params,
            tokens,
            mac::hmac_sha1,
        ),
        Algorithm::HmacSha256 => find_in_variants::<32>(
            signature,
            "the X-Twilio-Signature is not base64 of 32 bytes (HMAC-SHA256)",
            url,
            params,
            tokens,
            mac::hmac_sha256,
        ),
    }
}

/// An HMAC of the concatenated parts under a key ([`mac::hmac_sha1`], [`mac::hmac_sha256`]).
type Hmac<const N: usize> = fn(&Key, &[&[u8]]) -> Result<[u8; N], VerifyError>;

/// The first token whose HMAC over a variant of `url` followed by `params` is the signature.
fn find_in_variants<const N: usize>(
    signature: Option<&str>,
    malformed: &'static str,
    url: &str,
    params: &str,
    tokens: &[AuthToken],
    hmac: Hmac<N>,
) -> Result<usize, VerifyError> {
    let signature = signature
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::SignatureMissing(SIGNATURE_MISSING))?;
    let mut candidates = Candidates::<N>::new();
    candidates.push(mac::decode_base64::<N>(signature));
    let mut outcome = Err(VerifyError::SignatureMismatch);
    for variant in url_variants(url) {
        outcome = candidates.find(tokens, SIGNATURE_MISSING, malformed, |token| {
            hmac(&token.0, &[variant.as_bytes(), params.as_bytes()])
        });
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
        let lower_hex = value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        found = Some(
            mac::decode_hex::<32>(&value)
                .filter(|_| lower_hex)
                .ok_or(VerifyError::SignatureMalformed("the bodySHA256 parameter is not 64 lower-case hex digits"))?,
        );
    }
    Ok(found)
}

/// `url` itself, then its counterpart: without its port when it has one, or with the scheme's
/// default port (`:443` for https, `:80` for anything else) when it has none. These are the two
/// URLs both libraries try (python `remove_port` / `add_port`, node `removePort` / `addPort`);
/// any port is removed, not only a default one, because Twilio has signed https requests to a
/// non-default port without it (twilio-python issue 402, twilio-node issue 411). The URL is
/// split as twilio-node's `splitUrl` splits it, without normalising anything: user information
/// (`user:pass@`) stays, as Twilio signs it, and the port is what follows the first `:` after
/// any bracketed IPv6 literal.
fn url_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut variants = vec![Cow::Borrowed(url)];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    if !scheme_ok {
        return variants;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    let port_search_from = host_port.rfind(']').map_or(0, |bracket| bracket + 1);
    let port_colon = host_port[port_search_from..].find(':').map(|i| i + port_search_from);
    let alternative = match port_colon {
        Some(colon) => format!("{scheme}://{userinfo}{}{tail}", &host_port[..colon]),
        None => {
            let default_port = if scheme.eq_ignore_ascii_case("https") { "443" } else { "80" };
            format!("{scheme}://{userinfo}{host_port}:{default_port}{tail}")
        }
    };
    variants.push(Cow::Owned(alternative));
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_remove_any_port_and_add_only_the_default_one() {
        let check = |url: &str, expected: &[&str]| {
            let got: Vec<String> = url_variants(url).into_iter().map(Cow::into_owned).collect();
            assert_eq!(got, expected, "{url}");
        };
        check("https://a.example/p?q=1", &["https://a.example/p?q=1", "https://a.example:443/p?q=1"]);
        check("https://a.example:443/p", &["https://a.example:443/p", "https://a.example/p"]);
        check("http://a.example:80?x", &["http://a.example:80?x", "http://a.example?x"]);
        check("http://a.example", &["http://a.example", "http://a.example:80"]);
        check("HTTPS://a.example/p", &["HTTPS://a.example/p", "HTTPS://a.example:443/p"]);
        check("http://a.example:1234/p", &["http://a.example:1234/p", "http://a.example/p"]);
        check("https://a.example:80/p", &["https://a.example:80/p", "https://a.example/p"]);
        check("https://user:pass@a.example/p", &["https://user:pass@a.example/p", "https://user:pass@a.example:443/p"]);
        check(
            "https://user:pass@a.example:443/p",
            &["https://user:pass@a.example:443/p", "https://user:pass@a.example/p"],
        );
        check("https://[::1]/p", &["https://[::1]/p", "https://[::1]:443/p"]);
        check("https://[::1]:443/p", &["https://[::1]:443/p", "https://[::1]/p"]);
        check(
            "https://a.example/p?next=http://b.example:8080/",
            &["https://a.example/p?next=http://b.example:8080/", "https://a.example:443/p?next=http://b.example:8080/"],
        );
        check("ftp://a.example/p", &["ftp://a.example/p", "ftp://a.example:80/p"]);
        check("1http://a.example/p", &["1http://a.example/p"]);
        check("not a url", &["not a url"]);
    }

    #[test]
    fn parameters_are_sorted_by_name_then_value_and_repeats_count_once() {
        let params = [("b", "2"), ("a", "9"), ("b", "1"), ("b", "2"), ("B", "0")];
        assert_eq!(canonical_params(&params), "B0a9b1b2");
    }

    #[test]
    fn the_settings_header_is_read_as_the_libraries_read_it() {
        let check = |header: Option<&str>, expected: Result<Algorithm, &str>| {
            assert_eq!(Algorithm::from_settings(header).map_err(|e| e.code()), expected, "{header:?}");
        };
        let unsupported = Err("webhook_signature_malformed");
        check(None, Ok(Algorithm::HmacSha1));
        check(Some(""), Ok(Algorithm::HmacSha1));
        check(Some("key=webhooks_sharedkey_1"), Ok(Algorithm::HmacSha1));
        check(Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"), Ok(Algorithm::HmacSha256));
        check(Some(" algorithm = hmac_sha256 , key=k"), Ok(Algorithm::HmacSha256));
        check(Some("algorithm=HMAC_SHA1"), Ok(Algorithm::HmacSha1));
        check(Some("algorithm=,algorithm=HMAC_SHA256"), Ok(Algorithm::HmacSha256));
        check(Some("algorithm=HMAC_SHA256,algorithm=HMAC_SHA1"), Ok(Algorithm::HmacSha256));
        check(Some("algorithm=HMAC_SHA256=x"), unsupported);
        check(Some("Algorithm=HMAC_SHA256"), Ok(Algorithm::HmacSha1));
        check(Some("algorithm"), Ok(Algorithm::HmacSha1));
        check(Some("algorithm=HMAC_SHA512"), unsupported);
        check(Some("algorithm=SHA256"), unsupported);
        // python's `str.upper()` maps the long s to `S`, so the libraries accept this spelling.
        check(Some("algorithm=hmac_\u{17f}ha256"), Ok(Algorithm::HmacSha256));
    }
}
