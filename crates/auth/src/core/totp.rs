//! TOTP (RFC 6238 over RFC 4226 HOTP: HMAC-SHA-1, 6 digits, 30 s steps, one step of drift either
//! way) and the `otpauth://` URI authenticator apps import.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::core::token;

/// Digits of a code (RFC 6238 reference; what authenticator apps show).
pub const DIGITS: u32 = 6;
/// The time step X of RFC 6238 §4.1, in seconds.
pub const STEP_SECS: i64 = 30;
/// Steps accepted before and after the current one (RFC 6238 §5.2 recommends at most one).
pub const DRIFT_STEPS: i64 = 1;
/// Secret length: 160 bits (RFC 4226 §4, requirement R6).
pub const SECRET_BYTES: usize = 20;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Rampart";

/// HOTP (RFC 4226 §5.3): HMAC-SHA-1 over the 8-byte big-endian counter, dynamic truncation,
/// modulo 10^digits, zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else { return String::new() };
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = (u32::from(hash[offset]) & 0x7f) << 24
        | u32::from(hash[offset + 1]) << 16
        | u32::from(hash[offset + 2]) << 8
        | u32::from(hash[offset + 3]);
    let code = u64::from(binary) % 10u64.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// TOTP (RFC 6238 §4.2) at `unix_secs` with T0 = 0 and [`STEP_SECS`].
pub fn totp(key: &[u8], unix_secs: i64, digits: u32) -> String {
    hotp(key, u64::try_from(unix_secs.div_euclid(STEP_SECS)).unwrap_or(0), digits)
}

/// The time step `code` belongs to at `now`, within the drift window, compared in constant time.
pub fn matching_step(key: &[u8], code: &str, now: DateTime<Utc>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now.timestamp().div_euclid(STEP_SECS);
    let mut found = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = hotp(key, u64::try_from(step).unwrap_or(0), DIGITS);
        if token::constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps read secrets.
pub fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// The `otpauth://totp/…` URI authenticator apps import (Key Uri Format), QR-ready.
pub fn otpauth_uri(account: &str, secret_base32: &str) -> String {
    let label: String = url::form_urlencoded::byte_serialize(format!("{ISSUER}:{account}").as_bytes()).collect();
    format!(
        "otpauth://totp/{label}?secret={secret_base32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_rfc_4226_appendix_d() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(SEED, counter as u64, 6), *code, "count {counter}");
        }
    }

    #[test]
    fn totp_matches_rfc_6238_appendix_b_for_sha1() {
        let table = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in table {
            assert_eq!(totp(SEED, time, 8), code, "t={time}");
            assert_eq!(totp(SEED, time, 6), code[2..], "t={time}, 6 digits");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_step_either_side_only() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let code = totp(SEED, 1_111_111_111, 6);
        let step = 1_111_111_111 / STEP_SECS;
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 + STEP_SECS)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 - STEP_SECS)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 + 2 * STEP_SECS)), None);
        for bad in ["", "12345", "1234567", "abcdef", " 0 0 0 "] {
            assert_eq!(matching_step(SEED, bad, at(1_111_111_111)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_seed_in_base32_and_the_otpauth_uri_are_what_apps_read() {
        assert_eq!(base32(SEED), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri("alice@example.com", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri,
            "otpauth://totp/Rampart%3Aalice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Rampart&algorithm=SHA1&digits=6&period=30"
        );
    }
}
