//! The single-pass scanner. One Aho-Corasick automaton finds trigger literals (digits, `@`, `:`,
//! `=`, provider key prefixes, `eyJ`, `-----BEGIN `, `Bearer `); a validator looks around each
//! trigger and either records a finding or lets the scan go on.
//!
//! Linear time: every validator either reads a bounded window around its trigger, or reads a
//! token that starts at a word boundary and then moves a skip mark past it, so no byte is read by
//! the same kind of validator more than a bounded number of times. Nothing backtracks.

mod email;
mod numbers;
mod secrets;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::{Finding, Kind};

/// What a trigger literal starts.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Digit,
    At,
    /// `:` — an IPv6 address, or `key: value`.
    Colon,
    /// `=` — `key=value`.
    Equals,
    /// A provider key prefix (index into [`secrets::PREFIXES`]).
    Prefix(usize),
    /// `eyJ`, the base64url of `{"`: a JWT header.
    Jwt,
    /// `-----BEGIN `: a PEM block.
    PemBegin,
    /// `Bearer ` (three spellings).
    Bearer,
}

/// The scanner: build once ([`Scanner::new`] or the shared [`scanner`]), use from any thread.
#[derive(Debug, Clone)]
pub struct Scanner {
    automaton: AhoCorasick,
    triggers: Vec<Trigger>,
}

/// The automaton could not be built (it never fails with the built-in patterns; a test proves it).
#[derive(Debug, thiserror::Error)]
#[error("the pii scanner automaton could not be built: {0}")]
pub struct BuildError(#[from] aho_corasick::BuildError);

impl Scanner {
    /// Builds the automaton over every trigger literal.
    pub fn new() -> Result<Scanner, BuildError> {
        let mut patterns: Vec<&'static str> = Vec::new();
        let mut triggers = Vec::new();
        let mut add = |p: &'static str, t: Trigger| {
            patterns.push(p);
            triggers.push(t);
        };
        for d in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
            add(d, Trigger::Digit);
        }
        add("@", Trigger::At);
        add(":", Trigger::Colon);
        add("=", Trigger::Equals);
        // Prefixes come after the single digits in the list but start earlier in the text, so
        // leftmost-first matching still reports them first.
        for (i, prefix) in secrets::PREFIXES.iter().enumerate() {
            add(prefix.literal, Trigger::Prefix(i));
        }
        add("eyJ", Trigger::Jwt);
        add("-----BEGIN ", Trigger::PemBegin);
        for b in ["Bearer ", "bearer ", "BEARER "] {
            add(b, Trigger::Bearer);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)?;
        Ok(Scanner { automaton, triggers })
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
        let mut cx = Cx { b: text.as_bytes(), text, out, cursor: 0, num_skip: 0, kv_skip: 0, pem_end: None };
        for m in self.automaton.find_iter(text) {
            let p = m.start();
            if p < cx.cursor {
                continue;
            }
            let Some(&trigger) = self.triggers.get(m.pattern().as_usize()) else { continue };
            match trigger {
                Trigger::Digit => numbers::at_digit(&mut cx, p),
                Trigger::At => email::at_sign(&mut cx, p),
                Trigger::Colon => {
                    if !numbers::ipv6_at_colon(&mut cx, p) {
                        secrets::key_value(&mut cx, p);
                    }
                }
                Trigger::Equals => secrets::key_value(&mut cx, p),
                Trigger::Prefix(i) => secrets::prefixed(&mut cx, p, i),
                Trigger::Jwt => secrets::jwt(&mut cx, p),
                Trigger::PemBegin => secrets::pem(&mut cx, p),
                Trigger::Bearer => secrets::bearer(&mut cx, p, m.end()),
            }
        }
    }
}

/// The shared scanner, built on first use. `None` only if the automaton could not be built.
pub fn scanner() -> Option<&'static Scanner> {
    static SHARED: std::sync::OnceLock<Option<Scanner>> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| Scanner::new().ok()).as_ref()
}

/// Scans with the shared scanner. Fails closed: should the scanner be unavailable, the whole text
/// is one [`Kind::Secret`] finding, so redaction removes everything rather than nothing.
pub fn scan(text: &str) -> Vec<Finding> {
    match scanner() {
        Some(s) => s.scan(text),
        None if text.is_empty() => Vec::new(),
        None => vec![Finding { kind: Kind::Secret, start: 0, end: text.len() }],
    }
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
        words.iter().any(|w| memchr::memmem::find(lower, w.as_bytes()).is_some())
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
        words.iter().any(|w| memchr::memmem::find(lower, w.as_bytes()).is_some())
    }
}

/// ASCII letter, digit or underscore.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
