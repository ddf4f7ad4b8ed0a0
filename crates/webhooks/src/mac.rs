//! What every scheme shares: key bytes held as a secret, the HMACs, constant-time matching of
//! decoded signatures, and the timestamp window.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha1::Sha1;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::VerifyError;

/// Key bytes, zeroed on drop, never printed.
pub(crate) struct Key(SecretBox<[u8]>);

impl Key {
    /// Copies `bytes` into a secret box of exactly their length.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Key {
        Key(SecretBox::new(Box::from(bytes)))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl Clone for Key {
    fn clone(&self) -> Key {
        Key::from_bytes(self.expose())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// HMAC-SHA256 over the concatenation of `parts` (no copy of the body is made).
pub(crate) fn hmac_sha256(key: &Key, parts: &[&[u8]]) -> Result<[u8; 32], VerifyError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
        .map_err(|_| VerifyError::SecretMissing("the secret cannot key an HMAC"))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// HMAC-SHA1 over the concatenation of `parts` (Twilio's scheme).
pub(crate) fn hmac_sha1(key: &Key, parts: &[&[u8]]) -> Result<[u8; 20], VerifyError> {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.expose())
        .map_err(|_| VerifyError::SecretMissing("the secret cannot key an HMAC"))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Hex (either case) of exactly `N` bytes.
pub(crate) fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Standard padded base64 of exactly `N` bytes.
pub(crate) fn decode_base64<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = STANDARD.decode(text).ok()?;
    <[u8; N]>::try_from(bytes.as_slice()).ok()
}

/// The signatures found in a header: those that decoded to the right length, and whether any
/// entry of the expected scheme did not.
#[derive(Debug, Clone)]
pub(crate) struct Candidates<const N: usize> {
    pub(crate) decoded: Vec<[u8; N]>,
    pub(crate) undecodable: bool,
}

impl<const N: usize> Candidates<N> {
    pub(crate) fn new() -> Self {
        Candidates { decoded: Vec::new(), undecodable: false }
    }

    /// Records one entry of the expected scheme.
    pub(crate) fn push(&mut self, decoded: Option<[u8; N]>) {
        match decoded {
            Some(signature) => self.decoded.push(signature),
            None => self.undecodable = true,
        }
    }

    /// The first secret whose expected signature equals one of the decoded candidates.
    ///
    /// No decoded candidate at all is `malformed` when an entry failed to decode, `missing`
    /// otherwise; candidates that match no secret are `mismatch`. Each expected value is
    /// compared with every candidate in constant time; only a match ends the search early.
    pub(crate) fn find<S>(
        &self,
        secrets: &[S],
        missing: &'static str,
        malformed: &'static str,
        expected: impl Fn(&S) -> Result<[u8; N], VerifyError>,
    ) -> Result<usize, VerifyError> {
        if self.decoded.is_empty() {
            return Err(if self.undecodable {
                VerifyError::SignatureMalformed(malformed)
            } else {
                VerifyError::SignatureMissing(missing)
            });
        }
        for (index, secret) in secrets.iter().enumerate() {
            let expected = expected(secret)?;
            let mut matched = Choice::from(0);
            for candidate in &self.decoded {
                matched |= expected.ct_eq(candidate);
            }
            if bool::from(matched) {
                return Ok(index);
            }
        }
        Err(VerifyError::SignatureMismatch)
    }
}

/// Parses a unix time in whole seconds written canonically: ASCII digits only, no sign, no
/// leading zero, at most 18 digits (so it always fits an `i64`). The signed content uses the
/// header's text, so refusing other spellings keeps "the text signed" and "the time checked"
/// the same value.
pub(crate) fn parse_unix_seconds(text: &str) -> Option<i64> {
    let canonical = !text.is_empty()
        && text.len() <= 18
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// The unix seconds of `at`, refusing instants before 1970 (which no verifier here accepts).
pub(crate) fn unix_seconds(at: DateTime<Utc>) -> Result<i64, VerifyError> {
    let seconds = at.timestamp();
    if seconds < 0 {
        return Err(VerifyError::SignatureMalformed("the timestamp is before 1970"));
    }
    Ok(seconds)
}

/// Accepts `timestamp` when it is at most `tolerance` before or after `now` (the bound itself
/// is inside, as in the reference libraries: they refuse only `timestamp < now - tolerance`).
pub(crate) fn check_window(timestamp: i64, now: DateTime<Utc>, tolerance: Duration) -> Result<(), VerifyError> {
    let tolerance = i128::from(tolerance.as_secs());
    let age = i128::from(now.timestamp()) - i128::from(timestamp);
    if age > tolerance {
        Err(VerifyError::SignatureStale)
    } else if -age > tolerance {
        Err(VerifyError::SignatureFuture)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn canonical_unix_seconds_parse_and_other_spellings_do_not() {
        assert_eq!(parse_unix_seconds("0"), Some(0));
        assert_eq!(parse_unix_seconds("1614265330"), Some(1_614_265_330));
        assert_eq!(parse_unix_seconds("999999999999999999"), Some(999_999_999_999_999_999));
        for bad in ["", "01614265330", "+1", "-1", " 1", "1 ", "1.0", "1e9", "hello", "1234567890123456789"] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_window_includes_its_bounds_and_nothing_beyond() {
        let tolerance = Duration::from_secs(300);
        let now = at(1_000_000);
        assert_eq!(check_window(1_000_000 - 300, now, tolerance), Ok(()));
        assert_eq!(check_window(1_000_000 + 300, now, tolerance), Ok(()));
        assert_eq!(check_window(1_000_000 - 301, now, tolerance), Err(VerifyError::SignatureStale));
        assert_eq!(check_window(1_000_000 + 301, now, tolerance), Err(VerifyError::SignatureFuture));
        assert_eq!(check_window(i64::MAX, now, tolerance), Err(VerifyError::SignatureFuture));
        assert_eq!(check_window(i64::MIN, now, tolerance), Err(VerifyError::SignatureStale));
    }

    #[test]
    fn a_key_prints_redacted() {
        assert_eq!(format!("{:?}", Key::from_bytes(b"hunter2")), "[REDACTED]");
    }

    #[test]
    fn decoders_accept_only_the_exact_length() {
        assert_eq!(decode_hex::<2>("abCD"), Some([0xab, 0xcd]));
        assert_eq!(decode_hex::<2>("abc"), None);
        assert_eq!(decode_hex::<2>("abcdef"), None);
        assert_eq!(decode_base64::<3>("AQID"), Some([1, 2, 3]));
        assert_eq!(decode_base64::<3>("AQIDBA=="), None);
        assert_eq!(decode_base64::<3>("AQI"), None);
    }
}
