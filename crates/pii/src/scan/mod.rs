//! The single-pass scanner. One loop skips every byte that cannot start anything (a 256-entry
//! class table) and stops at trigger bytes: digits, `@`, `:`, `=`, and the bytes that anchor
//! the literal prefixes of secrets (`_` of `ghp_`, `-` of `xoxb-` and `-----BEGIN `, `J` of
//! `eyJ`, `A` of `AKIA`, `B` of `Bearer `, `G` of `SG.`…). At each trigger a validator looks around it and
//! either records a finding or lets the scan go on.
//!
//! A hand-written class table rather than one Aho-Corasick automaton over every literal: with ten
//! single-digit patterns among them the automaton gets no prefilter and ran at under 300 MB/s on
//! plain prose, where the table loop runs at memory speed.
//!
//! Linear time: every validator either reads a bounded window around its trigger, or reads a
//! token that starts at a word boundary and then moves a skip mark past it, so no byte is read by
//! the same kind of validator more than a bounded number of times. Nothing backtracks.

mod email;
mod numbers;
mod secrets;

use crate::{Finding, Kind};

/// What a literal starts.
#[derive(Debug, Clone, Copy)]
enum Literal {
    /// A provider key prefix (index into [`secrets::PREFIXES`]).
    Prefix(usize),
    /// `eyJ`, the base64url of `{"`: a JWT header.
    Jwt,
    /// `-----BEGIN `: a PEM block.
    PemBegin,
    /// `Bearer ` / `BEARER `.
    Bearer,
}

const DIGIT: u8 = 1;
const AT: u8 = 2;
const COLON: u8 = 3;
const EQUALS: u8 = 4;
/// A byte that only anchors literals.
const ANCHOR: u8 = 5;

/// The scanner: build once ([`Scanner::new`] or the shared [`scanner`]), use from any thread.
#[derive(Debug, Clone)]
pub struct Scanner {
    class: [u8; 256],
    /// For each byte, the literals it anchors: (index into `literals`, offset of the byte in it,
    /// the literal's first byte).
    anchors: Vec<Vec<(usize, usize, u8)>>,
    literals: Vec<(&'static [u8], Literal)>,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new()
    }
}

impl Scanner {
    /// Builds the class table and the literal anchors.
    pub fn new() -> Scanner {
        let mut class = [0u8; 256];
        for d in b'0'..=b'9' {
            class[usize::from(d)] = DIGIT;
        }
        class[usize::from(b'@')] = AT;
        class[usize::from(b':')] = COLON;
        class[usize::from(b'=')] = EQUALS;
        // Anchors: bytes rare in prose that every literal contains.
        for b in [b'_', b'-', b'A', b'B', b'G', b'J'] {
            class[usize::from(b)] = ANCHOR;
        }
        let mut literals: Vec<(&'static [u8], Literal)> =
            secrets::PREFIXES.iter().enumerate().map(|(i, p)| (p.literal.as_bytes(), Literal::Prefix(i))).collect();
        literals.push((b"eyJ", Literal::Jwt));
        literals.push((b"-----BEGIN ", Literal::PemBegin));
        literals.push((b"Bearer ", Literal::Bearer));
        literals.push((b"BEARER ", Literal::Bearer));
        let mut anchors = vec![Vec::new(); 256];
        for (i, (lit, _)) in literals.iter().enumerate() {
            // A literal is anchored at its first trigger byte, so no earlier trigger inside it
            // can be mistaken for the start of something else.
            if let Some(off) = lit.iter().position(|&b| class[usize::from(b)] != 0) {
                anchors[usize::from(lit[off])].push((i, off, lit[0]));
            }
        }
        Scanner { class, anchors, literals }
    }

    /// Every finding in `text`, in order, non-overlapping, on character boundaries.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.scan_into(text, &mut out);
        out
    }

    /// Like [`Scanner::scan`], appending to `out` (which is cleared first), so a caller scanning
    /// many texts can reuse one allocation.
    pub fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        let b = text.as_bytes();
        let mut cx = Cx { b, text, out, cursor: 0, num_skip: 0, kv_skip: 0, pem_end: None };
        let mut i = 0;
        while let Some(q) = self.next_trigger(b, i) {
            i = q + 1;
            let byte = b[q];
            if self.literal_at(&mut cx, q, byte) {
                i = i.max(cx.cursor);
                continue;
            }
            match self.class[usize::from(byte)] {
                DIGIT => {
                    numbers::at_digit(&mut cx, q);
                    i = i.max(cx.num_skip);
                }
                AT => email::at_sign(&mut cx, q),
                COLON if !numbers::ipv6_at_colon(&mut cx, q) => secrets::key_value(&mut cx, q),
                EQUALS => secrets::key_value(&mut cx, q),
                _ => {}
            }
            i = i.max(cx.cursor);
        }
        // Digit groups inside a UUID (RFC 9562) are an identifier, not a phone, SSN or card.
        out.retain(|f| {
            !(matches!(f.kind, Kind::PhoneNumber | Kind::UsSsn | Kind::CreditCard) && inside_uuid(b, f.start, f.end))
        });
    }

    /// The offset of the first trigger byte at or after `from`. Eight bytes at a time, a word-wide
    /// test (SWAR) skips every word holding no byte in `-`..=`J` (digits, `:`, `=`, `@`, capitals
    /// A–J…) and no `_`: a superset of the trigger bytes, so only candidates reach the table.
    fn next_trigger(&self, b: &[u8], from: usize) -> Option<usize> {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
        // Bytes strictly between 0x2c and 0x4b, and bytes equal to `_` (Hacker's Delight 6-1;
        // bytes of 0x80 and above never match, as no trigger is outside ASCII).
        let candidates = |x: u64| {
            let low = x & LOW7;
            let between = (ONES * (127 + 0x4b) - low) & !x & (low + ONES * (127 - 0x2c)) & HIGH;
            let y = x ^ (ONES * u64::from(b'_'));
            let underscore = y.wrapping_sub(ONES) & !y & HIGH;
            between | underscore
        };
        let rest = b.get(from..)?;
        let is_trigger = |x: &u8| self.class[usize::from(*x)] != 0;
        let mut chunks = rest.chunks_exact(8);
        let mut offset = 0;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if candidates(u64::from_le_bytes(word)) != 0 {
                if let Some(k) = chunk.iter().position(is_trigger) {
                    return Some(from + offset + k);
                }
            }
            offset += 8;
        }
        chunks.remainder().iter().position(is_trigger).map(|k| from + offset + k)
    }

    /// Tries the literals anchored at byte `q`; true when one recorded a finding.
    fn literal_at(&self, cx: &mut Cx<'_, '_>, q: usize, byte: u8) -> bool {
        let Some(anchored) = self.anchors.get(usize::from(byte)) else { return false };
        for &(index, off, first) in anchored {
            // The first byte alone refutes almost every candidate.
            let Some(start) = q.checked_sub(off) else { continue };
            if start < cx.cursor || cx.at(start) != first {
                continue;
            }
            let Some(&(lit, literal)) = self.literals.get(index) else { continue };
            if !cx.b.get(start..).is_some_and(|r| r.starts_with(lit)) {
                continue;
            }
            let found = cx.out.len();
            match literal {
                Literal::Prefix(i) => secrets::prefixed(cx, start, i),
                Literal::Jwt => secrets::jwt(cx, start),
                Literal::PemBegin => secrets::pem(cx, start),
                Literal::Bearer => secrets::bearer(cx, start, start + lit.len()),
            }
            if cx.out.len() > found {
                return true;
            }
        }
        false
    }
}

/// The shared scanner, built on first use.
pub fn scanner() -> &'static Scanner {
    static SHARED: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    SHARED.get_or_init(Scanner::new)
}

/// Whether `start..end` lies within a token shaped like a UUID: 8-4-4-4-12 hexadecimal digits.
fn inside_uuid(b: &[u8], start: usize, end: usize) -> bool {
    let part = |c: u8| c.is_ascii_hexdigit() || c == b'-';
    let mut from = start;
    while from > 0 && part(b[from - 1]) {
        from -= 1;
    }
    let mut to = end;
    while to < b.len() && part(b[to]) {
        to += 1;
    }
    let token = &b[from..to];
    token.len() == 36
        && token
            .iter()
            .enumerate()
            .all(|(i, &c)| if matches!(i, 8 | 13 | 18 | 23) { c == b'-' } else { c.is_ascii_hexdigit() })
}

/// Scans `text` with the shared scanner.
pub fn scan(text: &str) -> Vec<Finding> {
    scanner().scan(text)
}

/// Scan state shared by the validators.
struct Cx<'t, 'o> {
    b: &'t [u8],
    text: &'t str,
    out: &'o mut Vec<Finding>,
    /// End of the last finding: nothing before it is looked at again.
    cursor: usize,
    /// Digit triggers before this offset are inside a number token already judged.
    num_skip: usize,
    /// `=`/`:` triggers before this offset are inside a value already judged.
    kv_skip: usize,
    /// The last search for a PEM end marker: (searched from, found at).
    pem_end: Option<(usize, Option<usize>)>,
}

impl Cx<'_, '_> {
    /// The byte at `i`, or 0 outside the text.
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// The byte before `i`, or 0 at the start.
    fn before(&self, i: usize) -> u8 {
        if i == 0 {
            0
        } else {
            self.at(i - 1)
        }
    }

    /// Records a finding. Ranges that would overlap an earlier finding, are empty, or do not fall
    /// on character boundaries are dropped (the validators never produce them; this keeps the
    /// output's guarantees independent of their correctness).
    fn push(&mut self, kind: Kind, start: usize, end: usize) -> bool {
        if start < self.cursor || end <= start || !self.text.is_char_boundary(start) || !self.text.is_char_boundary(end)
        {
            return false;
        }
        self.out.push(Finding { kind, start, end });
        self.cursor = end;
        true
    }

    /// Whether one of `words` (lower-case ASCII) occurs, in any case, in the `window` bytes before
    /// `pos`.
    fn context_before(&self, pos: usize, window: usize, words: &[&str]) -> bool {
        let from = pos.saturating_sub(window);
        let Some(hay) = self.b.get(from..pos) else { return false };
        let mut lower = [0u8; 64];
        let n = hay.len().min(lower.len());
        let hay = &hay[hay.len() - n..];
        for (d, s) in lower.iter_mut().zip(hay) {
            *d = s.to_ascii_lowercase();
        }
        let lower = &lower[..n];
        words.iter().any(|w| contains_word(lower, w.as_bytes()))
    }

    /// Whether one of `words` occurs, in any case, in the `window` bytes after `pos`.
    fn context_after(&self, pos: usize, window: usize, words: &[&str]) -> bool {
        let to = self.b.len().min(pos.saturating_add(window));
        let Some(hay) = self.b.get(pos..to) else { return false };
        let mut lower = [0u8; 64];
        let n = hay.len().min(lower.len());
        for (d, s) in lower.iter_mut().zip(hay) {
            *d = s.to_ascii_lowercase();
        }
        let lower = &lower[..n];
        words.iter().any(|w| contains_word(lower, w.as_bytes()))
    }
}

/// Substring test for the short haystacks of key names (a searcher would cost more to build than
/// this costs to run).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    match needle.first() {
        None => true,
        Some(&first) => hay.windows(needle.len()).any(|w| w[0] == first && w == needle),
    }
}

/// Whether `word` starts a word somewhere in `hay` ("tel" in "Tel:" but not in "hotel").
fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    let Some(&first) = word.first() else { return true };
    hay.windows(word.len())
        .enumerate()
        .any(|(i, w)| w[0] == first && w == word && (i == 0 || !hay[i - 1].is_ascii_alphabetic()))
}

/// ASCII letter, digit or underscore.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
