//! E-mail addresses around an `@`: a dot-atom local part (RFC 5322 §3.4.1, restricted to the
//! characters addresses use in practice, as Presidio's pattern does) of at most 64 characters
//! (RFC 5321 §4.5.3.1.1) and a domain of at least two labels whose last is alphabetic.

use super::{is_word, Cx};
use crate::Kind;

/// File extensions that follow `@` in asset names (`logo@2x.png`) and are no top-level domain.
const NOT_TLDS: &[&[u8]] =
    &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"tif", b"tiff", b"css", b"js", b"json"];

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

pub(super) fn at_sign(cx: &mut Cx<'_, '_>, p: usize) {
    const MAX_LOCAL: usize = 64;
    const MAX_LABEL: usize = 63;
    const MAX_DOMAIN: usize = 253;
    // Local part, read leftwards.
    let lo = cx.cursor.max(p.saturating_sub(MAX_LOCAL + 1));
    let mut s = p;
    while s > lo && is_local(cx.at(s - 1)) {
        s -= 1;
    }
    if s == lo && lo > cx.cursor && is_local(cx.before(s)) {
        return; // Longer than 64 characters.
    }
    while s < p && matches!(cx.at(s), b'.' | b'-' | b'+') {
        s += 1;
    }
    if s == p || p - s > MAX_LOCAL || cx.at(p - 1) == b'.' {
        return;
    }
    if cx.b.get(s..p).is_some_and(|l| l.windows(2).any(|w| w == b"..")) {
        return;
    }
    // Domain, read rightwards label by label; an invalid label ends it before that label.
    let mut i = p + 1;
    let mut labels = 0usize;
    let mut last_label = (i, i);
    loop {
        let ls = i;
        while is_label(cx.at(i)) && i - ls <= MAX_LABEL {
            i += 1;
        }
        let le = i;
        if le == ls || le - ls > MAX_LABEL || cx.at(ls) == b'-' || cx.at(le - 1) == b'-' {
            break;
        }
        labels += 1;
        last_label = (ls, le);
        if le - (p + 1) > MAX_DOMAIN {
            return;
        }
        if cx.at(le) == b'.' && is_label(cx.at(le + 1)) {
            i = le + 1;
            continue;
        }
        break;
    }
    let (ts, te) = last_label;
    let tld = cx.b.get(ts..te).unwrap_or_default();
    let alphabetic = tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    let punycode = tld.len() > 4 && tld[..4].eq_ignore_ascii_case(b"xn--");
    if labels < 2 || !(alphabetic || punycode) || NOT_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t)) {
        return;
    }
    let end = te;
    if is_word(cx.at(end)) {
        return;
    }
    cx.push(Kind::Email, s, end);
}
