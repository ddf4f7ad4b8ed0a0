//! Number-shaped findings: IBANs (which start with two letters but are triggered by their check
//! digits), IPv4 and IPv6 addresses, payment cards, US SSNs and phone numbers.
//!
//! A number token is digit groups joined by single separators (` `, `-`, `.`), optionally with a
//! leading `+`, parenthesised groups (`(555) 123-4567`) and a phone extension. The whole token is
//! classified first (IPv4, card, SSN, phone); failing that, runs of its groups are tried for the
//! strongly validated kinds only (IPv4, Luhn-checked cards, SSNs).

use super::{is_word, Cx};
use crate::{validate, Kind};

/// At most this many groups form one token; a longer run is split.
const MAX_GROUPS: usize = 8;
/// A digit run longer than this is no card, SSN, IP or phone group (IBANs are handled apart).
const MAX_GROUP_DIGITS: usize = 19;

/// Words that make a bare digit run or a two-group number a phone number (Presidio's phone
/// recognizer context words, trimmed).
const PHONE_CONTEXT: &[&str] = &["phone", "tel", "call", "mobile", "cell", "fax", "contact", "whatsapp", "sms", "dial"];
/// Words that make a bare nine-digit run an SSN (Presidio's SSN context words).
const SSN_CONTEXT: &[&str] = &["ssn", "social security", "social sec", "ssa number", "ss#", "ssid"];

#[derive(Debug, Clone, Copy, Default)]
struct Group {
    /// Offsets of the digits (without parentheses).
    start: usize,
    end: usize,
    /// The separator before this group (0 for the first; `)` after a parenthesised group with
    /// nothing between).
    sep: u8,
    paren: bool,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

struct Token {
    /// Offset of the first byte (`+`, `(` or a digit).
    start: usize,
    /// Offset one past the last digit or `)`.
    end: usize,
    plus: bool,
    groups: [Group; MAX_GROUPS],
    n: usize,
}

impl Token {
    fn groups(&self) -> &[Group] {
        &self.groups[..self.n]
    }
}

pub(super) fn at_digit(cx: &mut Cx<'_, '_>, p: usize) {
    if p < cx.num_skip {
        return;
    }
    if iban(cx, p) {
        return;
    }
    // Glued to a word on the left (`T09`, `id5f0c`): not a number of its own; its digits are
    // skipped, and what follows a separator is judged as glued too (see `parse_token`).
    let run = count_digits(cx, p);
    if is_word(cx.before(p)) {
        cx.num_skip = p + run;
        return;
    }
    // Fast path: a short number standing alone (`42 `, `2024,`) is nothing; most digits in prose
    // end here.
    let (c, next) = (cx.at(p + run), cx.at(p + run + 1));
    let continues = matches!(c, b' ' | b'-' | b'.' | b'(') && (next.is_ascii_digit() || next == b'(');
    if run < 7 && !continues && c != b')' {
        cx.num_skip = p + run;
        return;
    }
    let mut token = Token { start: p, end: p, plus: false, groups: [Group::default(); MAX_GROUPS], n: 0 };
    if parse_token(cx, p, &mut token) {
        cx.num_skip = token.end;
        classify(cx, &token);
    }
}

/// Reads the token whose first digit is at `p` into `token`. False (with the skip mark moved)
/// when `p` is not the start of a standalone number.
fn parse_token(cx: &mut Cx<'_, '_>, p: usize, token: &mut Token) -> bool {
    let prev = cx.before(p);
    // A leading `(` counts only when its digits are closed by `)`.
    let digits_at_p = count_digits(cx, p);
    let mut start = p;
    let mut first_paren = false;
    if prev == b'(' && cx.at(p + digits_at_p) == b')' && p > cx.cursor {
        start = p - 1;
        first_paren = true;
    }
    let mut plus = false;
    if cx.before(start) == b'+' && start > cx.cursor {
        start -= 1;
        plus = true;
    }
    token.start = start;
    token.plus = plus;
    let mut i = p;
    let mut sep = 0u8;
    let mut paren = first_paren;
    loop {
        let len = count_digits(cx, i);
        if len == 0 {
            break;
        }
        let end = i + len;
        if len > MAX_GROUP_DIGITS {
            // A long digit run: nothing here, and nothing inside it either.
            cx.num_skip = end;
            return false;
        }
        let group_end = if paren { end + 1 } else { end };
        token.groups[token.n] = Group { start: i, end, sep, paren };
        token.n += 1;
        token.end = group_end;
        if token.n == MAX_GROUPS {
            break;
        }
        let c = cx.at(group_end);
        let next = cx.at(group_end + 1);
        let (next_start, next_sep) = if matches!(c, b' ' | b'-' | b'.') && (next.is_ascii_digit() || next == b'(') {
            (group_end + 1, c)
        } else if paren && c.is_ascii_digit() {
            (group_end, b')')
        } else if c == b'(' && next.is_ascii_digit() {
            (group_end, b'(')
        } else {
            break;
        };
        sep = next_sep;
        paren = cx.at(next_start) == b'(';
        i = if paren { next_start + 1 } else { next_start };
        if paren && cx.at(i + count_digits(cx, i)) != b')' {
            break;
        }
    }
    // A full token that goes on: end it at its last space, so what follows starts a token of
    // its own instead of being cut mid-number.
    let goes_on = matches!(cx.at(token.end), b' ' | b'-' | b'.') && cx.at(token.end + 1).is_ascii_digit();
    if token.n == MAX_GROUPS && goes_on {
        if let Some(k) = (1..token.n).rev().find(|&k| token.groups[k].sep == b' ') {
            let last = token.groups[k - 1];
            token.n = k;
            token.end = if last.paren { last.end + 1 } else { last.end };
        }
    }
    // Standalone on the left: not glued to a word.
    let left = cx.before(token.start);
    if is_word(left) || (left == b'.' || left == b'-') && cx.before(token.start - 1).is_ascii_digit() {
        cx.num_skip = token.end;
        return false;
    }
    true
}

fn count_digits(cx: &Cx<'_, '_>, from: usize) -> usize {
    cx.b.get(from..).map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// The token's digits (without separators) into `buf`; returns how many.
fn digits_of(cx: &Cx<'_, '_>, groups: &[Group], buf: &mut [u8; MAX_GROUPS * MAX_GROUP_DIGITS]) -> usize {
    let mut n = 0;
    for g in groups {
        if let Some(d) = cx.b.get(g.start..g.end) {
            buf[n..n + d.len()].copy_from_slice(d);
            n += d.len();
        }
    }
    n
}

fn classify(cx: &mut Cx<'_, '_>, t: &Token) {
    let right = cx.at(t.end);
    let glued_right = is_word(right) || right == b'@';
    let groups = t.groups();
    let mut buf = [0u8; MAX_GROUPS * MAX_GROUP_DIGITS];
    let nd = digits_of(cx, groups, &mut buf);
    let digits = &buf[..nd];

    if !glued_right {
        if !t.plus && ipv4(cx, groups) {
            cx.push(Kind::IpAddress, t.start, t.end);
            return;
        }
        if !t.plus && card(groups, digits) {
            cx.push(Kind::CreditCard, t.start, t.end);
            return;
        }
        match ssn(cx, t, groups, digits) {
            Some(true) => {
                cx.push(Kind::UsSsn, t.start, t.end);
                return;
            }
            // SSN-shaped but invalid: not a phone number either.
            Some(false) => return,
            None => {}
        }
    }
    // Phones may carry an extension glued on the right (`x123`, `ext. 123`).
    let ext_end = extension(cx, t.end);
    let after = cx.at(ext_end.unwrap_or(t.end));
    if !(is_word(after) || after == b'@') && phone(cx, t, groups, digits) {
        cx.push(Kind::PhoneNumber, t.start, ext_end.unwrap_or(t.end));
        return;
    }
    if groups.len() >= 2 {
        sub_ranges(cx, t, digits);
    }
}

/// Runs of groups inside a token that failed as a whole: the leftmost-longest run that is an
/// IPv4 address, card or SSN, and before it a leading run that is a phone number in international
/// form, with an area code or a trunk zero (`+44 20 7946 0958 4111 1111 1111 1111`).
fn sub_ranges(cx: &mut Cx<'_, '_>, t: &Token, digits: &[u8]) {
    let groups = t.groups();
    let n = groups.len();
    // Digits before each group, so a run's digits are one slice.
    let mut offsets = [0usize; MAX_GROUPS + 1];
    for (k, g) in groups.iter().enumerate() {
        offsets[k + 1] = offsets[k] + g.len();
    }
    let strong = strong_run(cx, t, digits, &offsets);
    let limit = strong.map_or(n - 1, |(i, _, _)| i);
    let first = cx.b.get(groups[0].start..groups[0].end).unwrap_or_default();
    let phone_like = t.plus || groups[0].paren || first.first() == Some(&b'0');
    // A token cut short at MAX_GROUPS goes on past its end: its tail may be the start of a longer
    // number (a card cut after three groups), so it is never taken whole as a second phone.
    let cut_short = matches!(cx.at(t.end), b' ' | b'-' | b'.') && cx.at(t.end + 1).is_ascii_digit();
    if phone_like && strong.is_none() && !cut_short && !looks_like_date(cx, groups) {
        // Two phone numbers in a row: split where both halves are one.
        #[allow(clippy::needless_range_loop)] // `j` splits both `groups` and `offsets`.
        for j in 2..n.saturating_sub(1) {
            let (head, tail) = (sub_token(t, 0, j), sub_token(t, j, n));
            if phone(cx, &head, head.groups(), digits.get(..offsets[j]).unwrap_or_default())
                && phone(cx, &tail, tail.groups(), digits.get(offsets[j]..).unwrap_or_default())
            {
                cx.push(Kind::PhoneNumber, head.start, head.end);
                let end = extension(cx, tail.end).unwrap_or(tail.end);
                cx.push(Kind::PhoneNumber, tail.start, end);
                cx.num_skip = end;
                return;
            }
        }
    }
    if phone_like && !looks_like_date(cx, groups) {
        // Split only at a space, so the rest is read again as a token of its own (which may hold
        // the strong run, or another phone number before it).
        for j in (2..=limit).rev().filter(|&j| groups[j].sep == b' ') {
            let head = sub_token(t, 0, j);
            let head_digits = digits.get(..offsets[j]).unwrap_or_default();
            if extension(cx, head.end).is_none() && phone(cx, &head, head.groups(), head_digits) {
                cx.push(Kind::PhoneNumber, head.start, head.end);
                cx.num_skip = head.end;
                return;
            }
        }
    }
    if let Some((i, j, kind)) = strong {
        let (start, end) = (groups[i].start, groups[j - 1].end);
        cx.push(kind, start, end);
        // The groups after the run are read again as a token of their own.
        cx.num_skip = end;
    }
}

/// Groups `i..j` of `t` as a token of their own.
fn sub_token(t: &Token, i: usize, j: usize) -> Token {
    let groups = t.groups();
    let mut sub = Token {
        start: groups[i].start,
        end: groups[j - 1].end,
        plus: i == 0 && t.plus,
        groups: [Group::default(); MAX_GROUPS],
        n: j - i,
    };
    sub.groups[..j - i].copy_from_slice(&groups[i..j]);
    sub.groups[0].sep = 0;
    if i == 0 {
        sub.start = t.start;
    } else if groups[i].paren {
        sub.start -= 1;
    }
    if groups[j - 1].paren {
        sub.end += 1;
    }
    sub
}

/// The leftmost-longest run of groups (not the whole token) that is an IPv4 address, a card or an
/// SSN: (first group, one past the last, kind).
fn strong_run(
    cx: &Cx<'_, '_>,
    t: &Token,
    digits: &[u8],
    offsets: &[usize; MAX_GROUPS + 1],
) -> Option<(usize, usize, Kind)> {
    let groups = t.groups();
    let n = groups.len();
    let dotted = groups.iter().any(|g| g.sep == b'.');
    if !dotted && digits.len() < 9 {
        return None;
    }
    for i in 0..n {
        for j in (i + 1..=n).rev() {
            if i == 0 && (j == n || t.plus) {
                continue;
            }
            let run = &groups[i..j];
            let run_digits = digits.get(offsets[i]..offsets[j]).unwrap_or_default();
            if run.iter().any(|g| g.paren) || (run_digits.len() < 9 && !dotted) {
                continue;
            }
            // A run never ends where its edge group is bound more tightly (`-`, `.`) to the group
            // outside than to its own neighbours by spaces: `… 1111 078-05-1123` is no card
            // ending in 078.
            let inner = run.get(1).map_or(0, |g| g.sep);
            let tighter = |edge: u8| matches!(edge, b'-' | b'.') && inner != edge;
            if (i > 0 && tighter(groups[i].sep)) || (j < n && tighter(groups[j].sep)) {
                continue;
            }
            // Dotted runs inside longer dotted runs are versions or OIDs, not addresses.
            let dotted_outside = (i > 0 && groups[i].sep == b'.') || (j < n && groups[j].sep == b'.');
            if !dotted_outside && ipv4(cx, run) {
                return Some((i, j, Kind::IpAddress));
            } else if card(run, run_digits) {
                return Some((i, j, Kind::CreditCard));
            } else if ssn_shape(run) && validate::us_ssn(run_digits) {
                return Some((i, j, Kind::UsSsn));
            }
        }
    }
    None
}

/// Whether the separators between `groups` are one and the same, from `allowed` (the first
/// group's own separator does not count).
fn uniform_sep(groups: &[Group], allowed: &[u8]) -> bool {
    let Some(first) = groups.get(1) else { return true };
    allowed.contains(&first.sep) && groups[1..].iter().all(|g| g.sep == first.sep)
}

fn ipv4(cx: &Cx<'_, '_>, groups: &[Group]) -> bool {
    groups.len() == 4
        && groups.iter().all(|g| !g.paren && (1..=3).contains(&g.len()))
        && uniform_sep(groups, b".")
        && groups.iter().all(|g| group_value(cx, g) <= 255)
}

fn group_value(cx: &Cx<'_, '_>, g: &Group) -> u64 {
    cx.b.get(g.start..g.end).map_or(u64::MAX, |d| d.iter().fold(0u64, |a, &b| a * 10 + u64::from(b - b'0')))
}

/// Payment cards: 13–19 digits, in one run or in groups of the printed layouts (first group of 4,
/// then groups of 3–6) joined by one kind of separator, space or hyphen; issuer and Luhn checked.
fn card(groups: &[Group], digits: &[u8]) -> bool {
    if groups.iter().any(|g| g.paren) || !uniform_sep(groups, b" -") {
        return false;
    }
    if groups.len() > 1 && (groups[0].len() != 4 || groups[1..].iter().any(|g| !(3..=6).contains(&g.len()))) {
        return false;
    }
    validate::card_number(digits)
}

fn ssn_shape(groups: &[Group]) -> bool {
    groups.len() == 3
        && groups[0].len() == 3
        && groups[1].len() == 2
        && groups[2].len() == 4
        && uniform_sep(groups, b"- .")
        && !groups.iter().any(|g| g.paren)
}

/// `Some(valid)` when the token is shaped like an SSN: `ddd-dd-dddd` with one kind of separator
/// (`-`, space or `.`), or — only after a context word such as "SSN" — nine bare digits,
/// `ddd-dddddd` or `ddddd-dddd` (Presidio's weak patterns).
fn ssn(cx: &Cx<'_, '_>, t: &Token, groups: &[Group], digits: &[u8]) -> Option<bool> {
    if t.plus {
        return None;
    }
    if ssn_shape(groups) {
        return Some(validate::us_ssn(digits));
    }
    // `ddd-dd.dddd`: SSN digits with mixed separators, which Presidio refuses; no phone either.
    if let [a, b, c] = groups {
        if a.len() == 3 && b.len() == 2 && c.len() == 4 && !groups.iter().any(|g| g.paren) {
            return Some(false);
        }
    }
    let weak = match groups {
        [g] => g.len() == 9,
        [a, b] => b.sep == b'-' && ((a.len() == 3 && b.len() == 6) || (a.len() == 5 && b.len() == 4)),
        _ => false,
    };
    if weak && cx.context_before(t.start, 40, SSN_CONTEXT) {
        return Some(validate::us_ssn(digits));
    }
    None
}

/// An extension after a phone number: `x123`, ` x123`, `ext123`, `ext. 123`, `#123`. Returns its
/// end.
fn extension(cx: &Cx<'_, '_>, end: usize) -> Option<usize> {
    let rest = cx.b.get(end..)?;
    let lower = |i: usize| rest.get(i).map_or(0, u8::to_ascii_lowercase);
    let mut i = usize::from(lower(0) == b' ');
    if lower(i) == b'x' || lower(i) == b'#' {
        i += 1;
    } else if lower(i) == b'e' && lower(i + 1) == b'x' && lower(i + 2) == b't' {
        i += 3;
        if lower(i) == b'.' {
            i += 1;
        }
        if lower(i) == b' ' {
            i += 1;
        }
    } else {
        return None;
    }
    let digits = rest.get(i..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    (1..=6).contains(&digits).then_some(end + i + digits)
}

/// Phone numbers in international and national formats.
fn phone(cx: &Cx<'_, '_>, t: &Token, groups: &[Group], digits: &[u8]) -> bool {
    let n = groups.len();
    let d = digits.len();
    // A time follows (`2024-05-01 14:30`), or an IPv6 address goes on (`… 2001:db8::1`).
    if cx.at(t.end) == b':' && cx.at(t.end + 1).is_ascii_alphanumeric() {
        return false;
    }
    if cx.before(t.start) == b'$' || looks_like_date(cx, groups) || year_list(cx, groups) {
        return false;
    }
    // An area code in parentheses comes first or after the country code, never last.
    if groups.iter().skip(2).any(|g| g.paren) || (n > 1 && groups[n - 1].paren) {
        return false;
    }
    // E.164 numbers have at most 15 digits (ITU-T E.164 §6.1); the shortest national numbers 7.
    if t.plus {
        return if n == 1 { (8..=15).contains(&d) } else { (7..=15).contains(&d) };
    }
    if n > 1 && groups[1..].iter().any(|g| g.len() < 2) && !(n == 2 && groups[0].paren) {
        return false;
    }
    let first = groups[0];
    let first_digits = cx.b.get(first.start..first.end).unwrap_or_default();
    // International call prefixes: 00 (ITU-T E.164 Annex) and 011 (North America).
    let intl = first_digits.starts_with(b"00") || first_digits == b"011";
    if intl {
        return n >= 2 && (9..=18).contains(&d);
    }
    let context = || cx.context_before(t.start, 32, PHONE_CONTEXT) || cx.context_after(t.end, 24, PHONE_CONTEXT);
    let trunk = first_digits.first() == Some(&b'0');
    let paren = groups.iter().any(|g| g.paren);
    let long_groups_ok = paren || trunk;
    if !((7..=13).contains(&d) || n == 1 && (8..=15).contains(&d)) {
        return false;
    }
    if n == 1 {
        return context();
    }
    if groups.iter().any(|g| g.len() > 5) && !(long_groups_ok || context()) {
        return false;
    }
    if n == 2 {
        let [a, b] = [groups[0], groups[1]];
        return a.paren || trunk && d >= 8 || (b.sep == b'-' && a.len() == 3 && b.len() == 4) || context();
    }
    // Space-separated short numbers are more often tables and lists than phone numbers: without a
    // trunk zero, an area code or context, demand nine digits or more, not all in pairs.
    let spaces_only = groups[1..].iter().all(|g| g.sep == b' ');
    // A year among space-separated numbers (`in 2019 42 people`) is prose, not a phone number.
    if spaces_only
        && !paren
        && groups.iter().any(|g| g.len() == 4 && (1900..=2099).contains(&group_value(cx, g)))
        && !context()
    {
        return false;
    }
    if spaces_only && !trunk && !paren && (d < 9 || groups.iter().all(|g| g.len() == 2)) && !context() {
        return false;
    }
    // Amounts with thousands separators: 1 234 567, 1.234.567 (no trunk zero, no area code).
    if !trunk
        && !paren
        && uniform_sep(groups, b" .")
        && first.len() <= 3
        && groups[1..].iter().all(|g| g.len() == 3)
        && !context()
    {
        return false;
    }
    // A dotted triple of short groups is a version number.
    if uniform_sep(groups, b".") && groups.iter().all(|g| g.len() <= 2) {
        return false;
    }
    true
}

/// Dates anywhere in the token: `yyyy-mm-dd`, `dd.mm.yyyy`, `mm-dd-yyyy` and the like, with one
/// separator.
fn looks_like_date(cx: &Cx<'_, '_>, groups: &[Group]) -> bool {
    groups.windows(3).any(|g| date(cx, g))
}

fn date(cx: &Cx<'_, '_>, g: &[Group]) -> bool {
    if g[1].sep != g[2].sep || !b"-. /".contains(&g[1].sep) {
        return false;
    }
    let v = [group_value(cx, &g[0]), group_value(cx, &g[1]), group_value(cx, &g[2])];
    let year = |i: usize| g[i].len() == 4 && (1900..=2099).contains(&v[i]);
    let day_or_month = |i: usize| g[i].len() <= 2 && (1..=31).contains(&v[i]);
    (year(0) && day_or_month(1) && day_or_month(2)) || (day_or_month(0) && day_or_month(1) && year(2))
}

/// Two or more four-digit years in a row: `2019 2020 2021`.
fn year_list(cx: &Cx<'_, '_>, groups: &[Group]) -> bool {
    groups.iter().filter(|g| g.len() == 4 && (1900..=2099).contains(&group_value(cx, g))).count() >= 2
}

/// IBANs: two upper-case letters then the check digits at `p`, in compact form or printed in
/// groups of four joined by one kind of separator (space or hyphen).
fn iban(cx: &mut Cx<'_, '_>, p: usize) -> bool {
    if p < 2 || p - 2 < cx.cursor {
        return false;
    }
    let start = p - 2;
    if !cx.at(start).is_ascii_uppercase() || !cx.at(start + 1).is_ascii_uppercase() || is_word(cx.before(start)) {
        return false;
    }
    let Some(expected) = validate::iban_length(&cx.b[start..p]) else { return false };
    let mut chars = [0u8; 34];
    let mut n = 0usize;
    let mut i = start;
    let mut group = 0usize;
    let mut sep = 0u8;
    let mut end = start;
    while n < expected {
        let c = cx.at(i);
        if c.is_ascii_digit() || c.is_ascii_uppercase() {
            chars[n] = c;
            n += 1;
            group += 1;
            i += 1;
            end = i;
        } else if matches!(c, b' ' | b'-') && group == 4 && (sep == 0 || sep == c) {
            sep = c;
            group = 0;
            i += 1;
        } else {
            break;
        }
    }
    if n != expected || is_word(cx.at(end)) {
        return false;
    }
    validate::iban(&chars[..n]) && cx.push(Kind::Iban, start, end)
}

/// IPv6 addresses around a `:` (RFC 4291 §2.2 text forms, parsed by the standard library).
pub(super) fn ipv6_at_colon(cx: &mut Cx<'_, '_>, p: usize) -> bool {
    // The longest text form (with an embedded IPv4 address) is 45 characters.
    const MAX: usize = 45;
    let is_v6 = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    // Quick refusal: an address has a second colon within five bytes of this one (groups are at
    // most four hex digits), and this colon is its first unless an earlier one failed already.
    let near = |from: usize, to: usize| cx.b.get(from..to.min(cx.b.len())).is_some_and(|w| w.contains(&b':'));
    if !near(p + 1, p + 6) && !near(p.saturating_sub(5), p) {
        return false;
    }
    let lo = cx.cursor.max(p.saturating_sub(MAX));
    let mut s = p;
    while s > lo && is_v6(cx.at(s - 1)) {
        s -= 1;
    }
    let hi = cx.b.len().min(p + MAX);
    let mut e = p;
    while e < hi && is_v6(cx.at(e)) {
        e += 1;
    }
    while e > p && cx.at(e - 1) == b'.' {
        e -= 1;
    }
    if e > p + 1 && cx.at(e - 1) == b':' && cx.at(e - 2) != b':' {
        e -= 1;
    }
    let left = cx.before(s);
    if is_word(left) || left == b':' || left == b'.' || is_word(cx.at(e)) || (s == lo && lo > cx.cursor) {
        return false;
    }
    let Some(candidate) = cx.text.get(s..e) else { return false };
    let colons = candidate.bytes().filter(|&b| b == b':').count();
    // Eight groups, or fewer with `::` (RFC 4291 §2.2): times such as 09:26:53 end here.
    if colons < 2 || (colons < 7 && !candidate.contains("::")) || !candidate.bytes().any(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    candidate.parse::<std::net::Ipv6Addr>().is_ok() && cx.push(Kind::IpAddress, s, e)
}
