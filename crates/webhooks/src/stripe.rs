//! Stripe's `Stripe-Signature` scheme: HMAC-SHA256 of `{t}.{raw body}` in hex, keyed by the
//! whole signing secret, with a timestamp window.
//!
//! The header reads `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`. Only `v1` is checked;
//! other keys (`v0` test-mode signatures, anything new) are ignored, as in stripe-python,
//! stripe-go and stripe-node. Any `v1` that matches any configured secret passes: Stripe sends
//! several `v1` values while a rolled secret overlaps the old one, and the caller may configure
//! several secrets for its own rotation.
//!
//! The signing secret is used as its UTF-8 bytes, `whsec_` prefix included: unlike Standard
//! Webhooks it is not base64-decoded (all official libraries: `secret.encode("utf-8")`).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::mac::{self, Candidates, Key};
use crate::{Verified, VerifyError};

/// The header Stripe signs with.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// 300 seconds: `DEFAULT_TOLERANCE = 300` in stripe-python and stripe-node, `DefaultTolerance =
/// 300 * time.Second` in stripe-go (<https://docs.stripe.com/webhooks/signature>). Applied in
/// both directions here, as async-stripe does, so a far-future timestamp cannot extend a
/// signature's life.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The only signature scheme checked (`EXPECTED_SCHEME = "v1"` in the official libraries).
const EXPECTED_SCHEME: &str = "v1";

/// A Stripe endpoint signing secret (`whsec_…`), held as its UTF-8 bytes.
#[derive(Clone)]
pub struct SigningSecret(Key);

impl SigningSecret {
    /// Takes the secret exactly as Stripe shows it. An empty secret is
    /// [`VerifyError::SecretMissing`].
    pub fn parse(secret: &str) -> Result<SigningSecret, VerifyError> {
        if secret.is_empty() {
            return Err(VerifyError::SecretMissing("the Stripe signing secret is empty"));
        }
        Ok(SigningSecret(Key::from_bytes(secret.as_bytes())))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SigningSecret").field(&self.0).finish()
    }
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone)]
pub struct SignatureHeader {
    timestamp: i64,
    v1: Candidates<32>,
}

impl SignatureHeader {
    /// Splits the header on `,` and each element on its first `=`.
    ///
    /// Empty: `missing`. An element without `=`, no `t`, two `t`, or a `t` that is not a
    /// canonical unix time in seconds: `malformed` (stripe-go: `"v1,t=1"` and `"t="` are
    /// `ErrInvalidHeader`). A `v1` value that is not 64 hex digits is kept aside: it never
    /// matches, and a valid `v1` beside it still verifies (all three official suites).
    pub fn parse(header: &str) -> Result<SignatureHeader, VerifyError> {
        if header.trim().is_empty() {
            return Err(VerifyError::SignatureMissing("the Stripe-Signature header is empty"));
        }
        let mut timestamp = None;
        let mut v1 = Candidates::new();
        for element in header.split(',') {
            let Some((key, value)) = element.split_once('=') else {
                return Err(VerifyError::SignatureMalformed("a Stripe-Signature element has no `=`"));
            };
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(VerifyError::SignatureMalformed(
                            "the Stripe-Signature header has more than one timestamp",
                        ));
                    }
                    timestamp = Some(mac::parse_unix_seconds(value).ok_or(VerifyError::SignatureMalformed(
                        "the Stripe-Signature timestamp is not a unix time in seconds",
                    ))?);
                }
                EXPECTED_SCHEME => v1.push(mac::decode_hex::<32>(value)),
                _ => {}
            }
        }
        let timestamp =
            timestamp.ok_or(VerifyError::SignatureMalformed("the Stripe-Signature header has no timestamp"))?;
        Ok(SignatureHeader { timestamp, v1 })
    }

    /// The `t` value, in unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The `v1` signatures that decoded to 32 bytes, in header order.
    pub fn v1_signatures(&self) -> &[[u8; 32]] {
        &self.v1.decoded
    }
}

/// Verifies a Stripe webhook with the default 300-second tolerance: the equivalent of the
/// official `construct_event` / `constructEvent`, without the JSON parsing.
///
/// `header` is the `Stripe-Signature` value (`None` when absent), `body` the raw request bytes
/// exactly as received.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SigningSecret],
    now: DateTime<Utc>,
) -> Result<Verified, VerifyError> {
    verify_with_tolerance(header, body, secrets, now, DEFAULT_TOLERANCE)
}

/// [`verify`] with another tolerance. The timestamp is always checked: there is no way to turn
/// the window off.
///
/// The signature is checked before the timestamp (as stripe-python and stripe-node do), so
/// `stale` and `future` are only ever reported for authentic messages: a replay or a clock
/// skew, not a forgery.
pub fn verify_with_tolerance(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SigningSecret],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::SecretMissing("no Stripe signing secret is configured"));
    }
    let header = header.ok_or(VerifyError::SignatureMissing("no Stripe-Signature header"))?;
    let parsed = SignatureHeader::parse(header)?;
    let t = parsed.timestamp.to_string();
    let index = parsed.v1.find(
        secrets,
        "the Stripe-Signature header has no v1 signature",
        "no v1 signature in the Stripe-Signature header is 64 hex digits",
        |secret| mac::hmac_sha256(&secret.0, &[t.as_bytes(), b".", body]),
    )?;
    mac::check_window(parsed.timestamp, now, tolerance)?;
    Ok(Verified::new(index))
}

/// The `Stripe-Signature` value Stripe would send for `body` at `timestamp`
/// (`t=<seconds>,v1=<hex>`): for tests and local tools that simulate Stripe.
pub fn sign(secret: &SigningSecret, timestamp: DateTime<Utc>, body: &[u8]) -> Result<String, VerifyError> {
    let t = mac::unix_seconds(timestamp)?.to_string();
    let signature = mac::hmac_sha256(&secret.0, &[t.as_bytes(), b".", body])?;
    Ok(format!("t={t},v1={}", hex::encode(signature)))
}
