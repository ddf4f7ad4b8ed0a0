//! HMAC-SHA256 webhooks of senders without a dedicated scheme: the header name, the encoding
//! (hex or base64), an optional prefix (GitHub's `sha256=`) and an optional timestamp header
//! with a tolerance are configuration.
//!
//! Without a timestamp the signed content is the raw body; with one it is
//! `{timestamp}{separator}{raw body}`, the timestamp being the header's text (canonical unix
//! seconds). A scheme without a timestamp cannot refuse replays: receivers must deduplicate on
//! the sender's delivery id.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::mac::{self, Candidates, Key};
use crate::{Verified, VerifyError};

/// How the signature bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hex digits (either case accepted, lower case produced).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// A timestamp header, signed in front of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRule {
    /// The header holding unix seconds.
    pub header: String,
    /// How far the timestamp may be from `now`, in either direction.
    pub tolerance: Duration,
    /// What separates the timestamp from the body in the signed content.
    pub separator: String,
}

/// One sender's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    /// The header holding the signature (the caller reads it; header names are
    /// case-insensitive).
    pub signature_header: String,
    /// How the signature is written.
    pub encoding: Encoding,
    /// Text that precedes the encoded signature (`sha256=`), required when set.
    pub prefix: Option<String>,
    /// The timestamp header, if the sender signs one.
    pub timestamp: Option<TimestampRule>,
}

impl Scheme {
    /// A scheme with the body as the only signed content and no prefix.
    pub fn new(signature_header: impl Into<String>, encoding: Encoding) -> Scheme {
        Scheme { signature_header: signature_header.into(), encoding, prefix: None, timestamp: None }
    }

    /// Requires `prefix` in front of the encoded signature.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Scheme {
        self.prefix = Some(prefix.into());
        self
    }

    /// Signs `{timestamp}.{body}`, the timestamp read from `header` and allowed `tolerance`
    /// either side of `now`.
    pub fn with_timestamp(mut self, header: impl Into<String>, tolerance: Duration) -> Scheme {
        self.timestamp = Some(TimestampRule { header: header.into(), tolerance, separator: ".".to_owned() });
        self
    }

    /// GitHub's `X-Hub-Signature-256: sha256=<hex>` over the body.
    pub fn github() -> Scheme {
        Scheme::new("X-Hub-Signature-256", Encoding::Hex).with_prefix("sha256=")
    }
}

/// A shared HMAC secret, held as the bytes given.
#[derive(Clone)]
pub struct Secret(Key);

impl Secret {
    /// Takes the secret's UTF-8 bytes. Empty: [`VerifyError::SecretMissing`].
    pub fn parse(secret: &str) -> Result<Secret, VerifyError> {
        Secret::from_bytes(secret.as_bytes())
    }

    /// Takes raw key bytes. Empty: [`VerifyError::SecretMissing`].
    pub fn from_bytes(key: &[u8]) -> Result<Secret, VerifyError> {
        if key.is_empty() {
            return Err(VerifyError::SecretMissing("the webhook secret is empty"));
        }
        Ok(Secret(Key::from_bytes(key)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.0).finish()
    }
}

/// The header values of an inbound request, each `None` when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// The value of [`Scheme::signature_header`].
    pub signature: Option<&'a str>,
    /// The value of the [`TimestampRule::header`], if the scheme has one (ignored otherwise).
    pub timestamp: Option<&'a str>,
}

/// Verifies a request under `scheme`.
///
/// Missing signature, or missing timestamp when the scheme has one: `missing`. Prefix absent,
/// signature not 32 bytes in the scheme's encoding, or timestamp not canonical unix seconds:
/// `malformed`. The signature is checked before the timestamp window.
pub fn verify(
    scheme: &Scheme,
    headers: &Headers<'_>,
    body: &[u8],
    secrets: &[Secret],
    now: DateTime<Utc>,
) -> Result<Verified, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::SecretMissing("no webhook secret is configured"));
    }
    let signature = headers
        .signature
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::SignatureMissing("no signature header"))?;
    let timestamp = match &scheme.timestamp {
        None => None,
        Some(rule) => {
            let text = headers
                .timestamp
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or(VerifyError::SignatureMissing("no timestamp header"))?;
            let seconds = mac::parse_unix_seconds(text)
                .ok_or(VerifyError::SignatureMalformed("the timestamp header is not a unix time in seconds"))?;
            Some((rule, text, seconds))
        }
    };
    let encoded = match &scheme.prefix {
        None => signature,
        Some(prefix) => signature
            .strip_prefix(prefix.as_str())
            .ok_or(VerifyError::SignatureMalformed("the signature does not start with its prefix"))?,
    };
    let mut candidates = Candidates::<32>::new();
    candidates.push(match scheme.encoding {
        Encoding::Hex => mac::decode_hex::<32>(encoded),
        Encoding::Base64 => mac::decode_base64::<32>(encoded),
    });
    let index = candidates.find(
        secrets,
        "no signature header",
        "the signature is not 32 bytes in the configured encoding",
        |secret| match timestamp {
            None => mac::hmac_sha256(&secret.0, &[body]),
            Some((rule, text, _)) => mac::hmac_sha256(&secret.0, &[text.as_bytes(), rule.separator.as_bytes(), body]),
        },
    )?;
    if let Some((rule, _, seconds)) = timestamp {
        mac::check_window(seconds, now, rule.tolerance)?;
    }
    Ok(Verified::new(index))
}

/// The signature header value the sender would send for `body` (prefix included) and, when the
/// scheme has a timestamp, the timestamp header value: for tests and for senders of our own.
///
/// A scheme with a timestamp needs `timestamp`; without one, `timestamp` is ignored.
pub fn sign(
    scheme: &Scheme,
    secret: &Secret,
    timestamp: Option<DateTime<Utc>>,
    body: &[u8],
) -> Result<(String, Option<String>), VerifyError> {
    let (signature, timestamp_text) = match &scheme.timestamp {
        None => (mac::hmac_sha256(&secret.0, &[body])?, None),
        Some(rule) => {
            let at =
                timestamp.ok_or(VerifyError::SignatureMissing("the scheme signs a timestamp and none was given"))?;
            let text = mac::unix_seconds(at)?.to_string();
            let signature = mac::hmac_sha256(&secret.0, &[text.as_bytes(), rule.separator.as_bytes(), body])?;
            (signature, Some(text))
        }
    };
    let encoded = match scheme.encoding {
        Encoding::Hex => hex::encode(signature),
        Encoding::Base64 => STANDARD.encode(signature),
    };
    let prefix = scheme.prefix.as_deref().unwrap_or("");
    Ok((format!("{prefix}{encoded}"), timestamp_text))
}
