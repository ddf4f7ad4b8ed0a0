//! Standard Webhooks (spec 1.0.0, <https://www.standardwebhooks.com/>): verification of inbound
//! deliveries, signing of outbound ones, and generation of `whsec_` secrets.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; the signature is
//! HMAC-SHA256 keyed by the base64-decoded secret, written `v1,<base64>`. The
//! `webhook-signature` header is a space-separated list of such entries (several while a secret
//! rotates); any `v1` entry that matches passes and other versions (`v1a`, ed25519) are ignored.

use std::fmt;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::mac::{self, Candidates, Key};
use crate::{Verified, VerifyError};

/// The header carrying the message id (also the receiver's idempotency key).
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the unix time of the attempt, in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying the space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Five minutes in both directions, as every reference library (python `timedelta(minutes=5)`,
/// rust `TOLERANCE_IN_SECONDS = 5 * 60`, javascript `WEBHOOK_TOLERANCE_IN_SECONDS = 5 * 60`).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The serialisation prefix of a symmetric secret (spec: "base64 encoded, prefixed with
/// `whsec_`").
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of a generated secret: 256 bits, inside the spec's "between 24 bytes (192 bits) and 64
/// bytes (512 bits)".
pub const GENERATED_SECRET_BYTES: usize = 32;

/// The longest message id [`MessageId::parse`] accepts.
pub const MAX_MESSAGE_ID_LEN: usize = 256;

const SIGNATURE_VERSION: &str = "v1";

/// Decodes secrets as the python reference library does (`b64decode(secret + "==")`): padding
/// optional and non-zero trailing bits tolerated, standard alphabet only.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A symmetric Standard Webhooks secret: the decoded key bytes.
#[derive(Clone)]
pub struct Secret(Key);

impl Secret {
    /// Takes `whsec_<base64>` or the bare base64 (the libraries strip the prefix when present).
    /// Empty (also `whsec_` alone) or not base64: [`VerifyError::SecretMissing`], since the
    /// fault is the configuration's.
    pub fn parse(secret: &str) -> Result<Secret, VerifyError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        if encoded.is_empty() {
            return Err(VerifyError::SecretMissing("the Standard Webhooks secret is empty"));
        }
        let decoded = Zeroizing::new(
            LENIENT_BASE64
                .decode(encoded)
                .map_err(|_| VerifyError::SecretMissing("the Standard Webhooks secret is not base64"))?,
        );
        Secret::from_bytes(&decoded)
    }

    /// Takes the key bytes themselves. Empty: [`VerifyError::SecretMissing`].
    pub fn from_bytes(key: &[u8]) -> Result<Secret, VerifyError> {
        if key.is_empty() {
            return Err(VerifyError::SecretMissing("the Standard Webhooks secret is empty"));
        }
        Ok(Secret(Key::from_bytes(key)))
    }

    /// A new secret of [`GENERATED_SECRET_BYTES`] random bytes from `rng` (pass
    /// `&mut rand::rngs::OsRng` in production).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Secret {
        let mut bytes = Zeroizing::new([0u8; GENERATED_SECRET_BYTES]);
        rng.fill_bytes(bytes.as_mut_slice());
        Secret(Key::from_bytes(bytes.as_slice()))
    }

    /// The secret serialised as `whsec_<base64>`, to hand to a receiver once.
    pub fn to_whsec(&self) -> SecretString {
        let encoded = Zeroizing::new(STANDARD.encode(self.0.expose()));
        let mut serialised = String::with_capacity(SECRET_PREFIX.len() + encoded.len());
        serialised.push_str(SECRET_PREFIX);
        serialised.push_str(&encoded);
        SecretString::from(serialised)
    }

    /// Number of key bytes (not secret; useful to enforce a minimum on configured secrets).
    pub fn len(&self) -> usize {
        self.0.expose().len()
    }

    /// Always false: an empty secret cannot be built.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.0).finish()
    }
}

/// The three header values of an inbound delivery, each `None` when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// The id of an outbound message: 1 to [`MAX_MESSAGE_ID_LEN`] visible ASCII characters without
/// `.` (the spec: ids must "not be allowed to include any `.`", which separates the signed
/// fields), so it is always a valid header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Checks the rules above; anything else is [`VerifyError::SignatureMalformed`].
    pub fn parse(id: &str) -> Result<MessageId, VerifyError> {
        let valid =
            !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic() && b != b'.');
        if !valid {
            return Err(VerifyError::SignatureMalformed(
                "a message id is 1 to 256 visible ASCII characters without `.`",
            ));
        }
        Ok(MessageId(id.to_owned()))
    }

    /// The id as sent in `webhook-id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verifies an inbound delivery with the spec's five-minute tolerance.
pub fn verify(
    headers: &Headers<'_>,
    body: &[u8],
    secrets: &[Secret],
    now: DateTime<Utc>,
) -> Result<Verified, VerifyError> {
    verify_with_tolerance(headers, body, secrets, now, DEFAULT_TOLERANCE)
}

/// [`verify`] with another tolerance (always applied, in both directions).
///
/// Missing or empty header: `missing`. An id containing `.`, a timestamp that is not canonical
/// unix seconds, an entry without `,`, or `v1` entries none of which is base64 of 32 bytes:
/// `malformed`. Entries of other versions are skipped; a header with no `v1` entry is
/// `missing`. The signature is checked before the timestamp, so `stale`/`future` mean an
/// authentic message outside the window.
pub fn verify_with_tolerance(
    headers: &Headers<'_>,
    body: &[u8],
    secrets: &[Secret],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::SecretMissing("no Standard Webhooks secret is configured"));
    }
    let id = present(headers.id, "no webhook-id header")?;
    let timestamp_text = present(headers.timestamp, "no webhook-timestamp header")?;
    let signature = present(headers.signature, "no webhook-signature header")?;
    if id.contains('.') {
        return Err(VerifyError::SignatureMalformed("the webhook-id contains `.`"));
    }
    let timestamp = mac::parse_unix_seconds(timestamp_text)
        .ok_or(VerifyError::SignatureMalformed("the webhook-timestamp is not a unix time in seconds"))?;

    let mut candidates = Candidates::<32>::new();
    for entry in signature.split(' ').filter(|entry| !entry.is_empty()) {
        let Some((version, value)) = entry.split_once(',') else {
            return Err(VerifyError::SignatureMalformed("a webhook-signature entry has no `,`"));
        };
        if version == SIGNATURE_VERSION {
            candidates.push(mac::decode_base64::<32>(value));
        }
    }
    let index = candidates.find(
        secrets,
        "the webhook-signature header has no v1 signature",
        "no v1 signature in the webhook-signature header is base64 of 32 bytes",
        |secret| mac::hmac_sha256(&secret.0, &signed_content(id, timestamp_text, body)),
    )?;
    mac::check_window(timestamp, now, tolerance)?;
    Ok(Verified::new(index))
}

/// The `webhook-signature` value for an outbound delivery: one `v1,<base64>` entry per secret,
/// in the order given, separated by spaces (the current secret and, during a rotation, the next
/// one). Send `id` as `webhook-id` and `timestamp` (whole seconds) as `webhook-timestamp`.
///
/// No secret: [`VerifyError::SecretMissing`]; a timestamp before 1970:
/// [`VerifyError::SignatureMalformed`].
pub fn sign(secrets: &[Secret], id: &MessageId, timestamp: DateTime<Utc>, body: &[u8]) -> Result<String, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::SecretMissing("no Standard Webhooks secret to sign with"));
    }
    let timestamp = mac::unix_seconds(timestamp)?.to_string();
    let mut header = String::new();
    for secret in secrets {
        let signature = mac::hmac_sha256(&secret.0, &signed_content(id.as_str(), &timestamp, body))?;
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(SIGNATURE_VERSION);
        header.push(',');
        header.push_str(&STANDARD.encode(signature));
    }
    Ok(header)
}

fn signed_content<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

fn present<'a>(value: Option<&'a str>, missing: &'static str) -> Result<&'a str, VerifyError> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value.trim()),
        _ => Err(VerifyError::SignatureMissing(missing)),
    }
}
