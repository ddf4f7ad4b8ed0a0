//! Redaction: replace every finding by its type tag, a mask, or a keyed hash.

use std::borrow::Cow;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::{scan::scan, Finding, Kind};

/// A key for keyed-hash redaction (HMAC-SHA256). Its `Debug` never prints it.
#[derive(Clone)]
pub struct HashKey(Hmac<Sha256>);

impl HashKey {
    /// A key from secret bytes (use 32 random bytes, held by the caller's key store).
    pub fn new(key: &[u8]) -> HashKey {
        // HMAC takes keys of any length (RFC 2104 §2), so this cannot fail.
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => HashKey(mac),
            Err(_) => HashKey(<Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())),
        }
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey([REDACTED])")
    }
}

/// How a finding is replaced.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `[EMAIL]`, `[CREDIT_CARD]`, … (see [`Kind::tag`]).
    Tag,
    /// Each letter and digit becomes `*`; separators stay, so the shape remains readable
    /// (`***-**-****`). Secrets are masked whole.
    Mask,
    /// `[EMAIL:3f9a0c1d2b4e5f60]`: the kind and the first 64 bits of HMAC-SHA256 over the kind and
    /// the normalised value, so equal values stay joinable without being readable.
    Hash(HashKey),
}

/// Bytes of HMAC output kept in hash mode (64 bits: joins across millions of values without
/// collisions in practice).
const HASH_BYTES: usize = 8;

/// The result of redacting one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'t> {
    /// The text with every finding replaced (borrowed when nothing was found).
    pub text: Cow<'t, str>,
    /// What was found, with byte ranges in the original text.
    pub findings: Vec<Finding>,
}

/// A redactor in one mode.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: Mode,
}

impl Redactor {
    /// A redactor in `mode`.
    pub fn new(mode: Mode) -> Redactor {
        Redactor { mode }
    }

    /// Tag mode.
    pub fn tag() -> Redactor {
        Redactor::new(Mode::Tag)
    }

    /// Scans `text` and replaces what it finds.
    pub fn redact<'t>(&self, text: &'t str) -> Redacted<'t> {
        let findings = scan(text);
        let text = self.apply(text, &findings);
        Redacted { text, findings }
    }

    /// Replaces `findings` (from a scan of `text`) in `text`. Findings that do not fit `text` are
    /// skipped.
    pub fn apply<'t>(&self, text: &'t str, findings: &[Finding]) -> Cow<'t, str> {
        if findings.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in findings {
            let (Some(before), Some(value)) = (text.get(last..f.start), text.get(f.range())) else { continue };
            out.push_str(before);
            self.replace(&mut out, f.kind, value);
            last = f.end;
        }
        out.push_str(text.get(last..).unwrap_or(""));
        Cow::Owned(out)
    }

    fn replace(&self, out: &mut String, kind: Kind, value: &str) {
        match &self.mode {
            Mode::Tag => out.push_str(kind.tag()),
            Mode::Mask => {
                for c in value.chars() {
                    let keep = kind != Kind::Secret && c.is_ascii() && !c.is_ascii_alphanumeric();
                    out.push(if keep { c } else { '*' });
                }
            }
            Mode::Hash(key) => {
                let mut mac = key.0.clone();
                mac.update(kind.as_str().as_bytes());
                mac.update(&[0x1f]);
                mac.update(normalise(kind, value).as_bytes());
                let digest = mac.finalize().into_bytes();
                let tag = kind.tag();
                out.push_str(&tag[..tag.len() - 1]);
                out.push(':');
                out.push_str(&hex::encode(&digest[..HASH_BYTES]));
                out.push(']');
            }
        }
    }
}

/// The form two spellings of one value share, for hash mode: e-mail addresses and IBANs in one
/// case, numbers as their digits (a phone's leading `+` kept), IP addresses in their canonical text
/// form (RFC 5952 for IPv6).
pub fn normalise(kind: Kind, value: &str) -> Cow<'_, str> {
    match kind {
        Kind::Email => Cow::Owned(value.to_ascii_lowercase()),
        Kind::CreditCard | Kind::UsSsn => Cow::Owned(value.chars().filter(char::is_ascii_digit).collect()),
        Kind::PhoneNumber => {
            let plus = if value.starts_with('+') { "+" } else { "" };
            Cow::Owned(format!("{plus}{}", value.chars().filter(char::is_ascii_digit).collect::<String>()))
        }
        Kind::Iban => {
            Cow::Owned(value.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect())
        }
        Kind::IpAddress => match value.parse::<std::net::IpAddr>() {
            Ok(ip) => Cow::Owned(ip.to_string()),
            Err(_) => Cow::Borrowed(value),
        },
        Kind::Secret => Cow::Borrowed(value),
    }
}

/// The log-line and audit-payload scrubber: tag mode with the shared scanner. Borrows the input
/// unchanged when nothing is found, so clean lines cost one scan and no allocation.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let findings = scan(text);
    Redactor::tag().apply(text, &findings)
}

/// [`scrub`], leaving the kinds in `keep` as they are (the server's logs and audit payloads keep
/// IP addresses: a security event's source is part of its record).
pub fn scrub_keeping<'t>(text: &'t str, keep: &[Kind]) -> Cow<'t, str> {
    let mut findings = scan(text);
    findings.retain(|f| !keep.contains(&f.kind));
    Redactor::tag().apply(text, &findings)
}
