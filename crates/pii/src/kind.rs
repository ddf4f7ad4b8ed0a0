//! What the scanner finds: the kinds of personal data and secrets, and where each finding is.

use std::ops::Range;

/// A kind of personal data or secret. The names returned by [`Kind::as_str`] are stable: they are
/// part of the `rampart pii scan` output contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An e-mail address.
    Email,
    /// A payment card number (Luhn-valid).
    CreditCard,
    /// A US Social Security number (SSA-valid area, group and serial).
    UsSsn,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A phone number, national or international.
    PhoneNumber,
    /// An International Bank Account Number (ISO 13616, mod-97 checked).
    Iban,
    /// A credential: provider API keys, bearer tokens, JWTs, private key blocks, passwords and
    /// high-entropy values in `key=value` context.
    Secret,
}

impl Kind {
    /// Every kind, in the order of the output contract.
    pub const ALL: [Kind; 7] =
        [Kind::Email, Kind::CreditCard, Kind::UsSsn, Kind::IpAddress, Kind::PhoneNumber, Kind::Iban, Kind::Secret];

    /// The stable name: `email`, `credit_card`, `us_ssn`, `ip_address`, `phone_number`, `iban`,
    /// `secret`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::CreditCard => "credit_card",
            Kind::UsSsn => "us_ssn",
            Kind::IpAddress => "ip_address",
            Kind::PhoneNumber => "phone_number",
            Kind::Iban => "iban",
            Kind::Secret => "secret",
        }
    }

    /// The tag that replaces a value in tag mode, e.g. `[EMAIL]`.
    pub const fn tag(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::CreditCard => "[CREDIT_CARD]",
            Kind::UsSsn => "[US_SSN]",
            Kind::IpAddress => "[IP_ADDRESS]",
            Kind::PhoneNumber => "[PHONE_NUMBER]",
            Kind::Iban => "[IBAN]",
            Kind::Secret => "[SECRET]",
        }
    }

    /// Parses a stable name back into a kind.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: its kind and its byte range in the scanned text. Ranges always fall on character
/// boundaries, never overlap, and come in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    /// What was found.
    pub kind: Kind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Finding {
    /// The byte range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// The value found, as it appears in `text` (the text that was scanned). Empty when `text` is
    /// another text the range does not fit.
    pub fn value<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.range()).unwrap_or("")
    }
}

/// A finding located by Unicode scalar values (Rust `char`s) rather than bytes: the offsets of the
/// `rampart pii scan` contract and of Python `str` indices. End exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CharSpan {
    /// What was found.
    pub kind: Kind,
    /// Index of the first character.
    pub start: usize,
    /// Index one past the last character.
    pub end: usize,
}

/// Converts findings of `text` (in the order the scanner returns them) to character offsets in one
/// pass over the text.
pub fn char_spans(text: &str, findings: &[Finding]) -> Vec<CharSpan> {
    let mut out = Vec::with_capacity(findings.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    let advance = |to: usize, byte: &mut usize, chars: &mut usize| {
        if to >= *byte {
            *chars += text.get(*byte..to).map_or(0, |s| s.chars().count());
            *byte = to;
        } else {
            // Out of order: count again from the start (never happens with scanner output).
            *chars = text.get(..to).map_or(0, |s| s.chars().count());
            *byte = to;
        }
    };
    for f in findings {
        advance(f.start, &mut byte, &mut chars);
        let start = chars;
        advance(f.end, &mut byte, &mut chars);
        out.push(CharSpan { kind: f.kind, start, end: chars });
    }
    out
}
