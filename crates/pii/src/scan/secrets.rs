//! Credentials: provider key prefixes, JWTs, PEM private key blocks, bearer tokens, and values in
//! `key=value` / `key: value` context (passwords, and high-entropy values under secret-looking
//! keys or under any key when they look random enough).

use base64::Engine as _;

use super::{contains, is_word, Cx};
use crate::{validate, Kind};

/// Which characters a key's body may hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[A-Za-z0-9_-]`
    Url,
    /// `[A-Za-z0-9_.-]`
    Dotted,
    /// `[A-Z0-9]`
    Upper,
    /// `[0-9a-f]`
    Hex,
    /// `[A-Za-z0-9+/=]`
    Base64,
}

impl Body {
    fn allows(self, b: u8) -> bool {
        match self {
            Body::Alnum => b.is_ascii_alphanumeric(),
            Body::Url => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Body::Dotted => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'),
            Body::Upper => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Body::Hex => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            Body::Base64 => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
        }
    }
}

/// A provider's key format: its literal prefix and what follows it.
#[derive(Debug)]
pub(super) struct Prefix {
    pub(super) literal: &'static str,
    body: Body,
    /// Body length bounds (characters after the prefix).
    min: usize,
    max: usize,
}

const fn key(literal: &'static str, body: Body, min: usize, max: usize) -> Prefix {
    Prefix { literal, body, min, max }
}

/// Key formats as their providers document them (lengths are lower bounds where formats have
/// grown). Stripe: `sk_live_`/`rk_live_` secret and restricted keys, `whsec_` webhook secrets;
/// GitHub: `ghp_` … `ghr_` (36 characters) and `github_pat_`; GitLab `glpat-`; Slack `xox?-` and
/// `xapp-`; AWS access key ids `AKIA`/`ASIA` + 16; Google API keys `AIza` + 35 and OAuth access
/// tokens `ya29.`; OpenAI and Anthropic `sk-`; SendGrid `SG.`; npm `npm_`; PyPI `pypi-`; Hugging
/// Face `hf_`; Shopify `shpat_`/`shpss_`; DigitalOcean `dop_v1_`; Square `sq0atp-`/`sq0csp-`; age
/// `AGE-SECRET-KEY-1`.
pub(super) const PREFIXES: &[Prefix] = &[
    key("sk_live_", Body::Alnum, 16, 256),
    key("sk_test_", Body::Alnum, 16, 256),
    key("rk_live_", Body::Alnum, 16, 256),
    key("rk_test_", Body::Alnum, 16, 256),
    key("whsec_", Body::Base64, 24, 256),
    key("ghp_", Body::Alnum, 30, 255),
    key("gho_", Body::Alnum, 30, 255),
    key("ghu_", Body::Alnum, 30, 255),
    key("ghs_", Body::Alnum, 30, 255),
    key("ghr_", Body::Alnum, 30, 255),
    key("github_pat_", Body::Url, 40, 255),
    key("glpat-", Body::Url, 20, 255),
    key("xoxb-", Body::Url, 10, 255),
    key("xoxp-", Body::Url, 10, 255),
    key("xoxa-", Body::Url, 10, 255),
    key("xoxr-", Body::Url, 10, 255),
    key("xoxs-", Body::Url, 10, 255),
    key("xoxe-", Body::Url, 10, 255),
    key("xapp-", Body::Url, 10, 255),
    key("AKIA", Body::Upper, 16, 16),
    key("ASIA", Body::Upper, 16, 16),
    key("AIza", Body::Url, 35, 35),
    key("ya29.", Body::Url, 30, 2048),
    key("sk-", Body::Url, 20, 256),
    key("SG.", Body::Dotted, 40, 128),
    key("npm_", Body::Alnum, 36, 36),
    key("pypi-", Body::Url, 50, 512),
    key("hf_", Body::Alnum, 30, 64),
    key("shpat_", Body::Hex, 32, 32),
    key("shpss_", Body::Hex, 32, 32),
    key("dop_v1_", Body::Hex, 64, 64),
    key("sq0atp-", Body::Url, 22, 64),
    key("sq0csp-", Body::Url, 40, 64),
    key("AGE-SECRET-KEY-1", Body::Upper, 50, 80),
];

fn run(cx: &Cx<'_, '_>, from: usize, max: usize, allowed: impl Fn(u8) -> bool) -> usize {
    cx.b.get(from..).map_or(0, |rest| rest.iter().take(max).take_while(|&&b| allowed(b)).count())
}

pub(super) fn prefixed(cx: &mut Cx<'_, '_>, p: usize, i: usize) {
    let Some(prefix) = PREFIXES.get(i) else { return };
    let left = cx.before(p);
    if is_word(left) || left == b'-' {
        return;
    }
    let from = p + prefix.literal.len();
    let len = run(cx, from, prefix.max + 1, |b| prefix.body.allows(b));
    if len < prefix.min || len > prefix.max {
        return;
    }
    let end = from + len;
    let body = cx.b.get(from..end).unwrap_or_default();
    // `sk-` also starts ordinary hyphenated words: demand a digit and a letter.
    if prefix.literal == "sk-" && !(body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_alphabetic)) {
        return;
    }
    if is_word(cx.at(end)) {
        return;
    }
    cx.push(Kind::Secret, p, end);
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// JSON Web Tokens (RFC 7519 §3, JWS compact serialisation RFC 7515 §7.1): base64url header `.`
/// payload `.` signature; the header must decode to a JSON object naming `alg` or `typ`, or the
/// payload must be base64url JSON too. JWE's five parts are covered by the same rule.
pub(super) fn jwt(cx: &mut Cx<'_, '_>, p: usize) {
    if is_b64url(cx.before(p)) || cx.before(p) == b'.' {
        return;
    }
    let mut end = p;
    let mut parts = [(0usize, 0usize); 5];
    let mut n = 0;
    loop {
        let len = run(cx, end, usize::MAX, is_b64url);
        parts[n] = (end, end + len);
        n += 1;
        end += len;
        if n == parts.len() || cx.at(end) != b'.' || (len == 0 && n > 1) {
            break;
        }
        end += 1;
    }
    if cx.at(end.saturating_sub(1)) == b'.' && parts[n - 1].0 == parts[n - 1].1 && n > 3 {
        end -= 1;
    }
    if n < 3 || parts[1].0 == parts[1].1 {
        return;
    }
    let header = cx.b.get(parts[0].0..parts[0].1).unwrap_or_default();
    let payload = cx.b.get(parts[1].0..parts[1].1).unwrap_or_default();
    let json_header = header.len() <= 2048
        && base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).is_ok_and(|h| {
            h.first() == Some(&b'{')
                && (memchr::memmem::find(&h, b"\"alg\"").is_some() || memchr::memmem::find(&h, b"\"typ\"").is_some())
        });
    if !json_header && !payload.starts_with(b"eyJ") {
        return;
    }
    if is_word(cx.at(end)) {
        return;
    }
    cx.push(Kind::Secret, p, end);
}

/// PEM private key blocks (RFC 7468 §2 encapsulation boundaries whose label names a private
/// key: `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, `OPENSSH PRIVATE KEY`, `ENCRYPTED
/// PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`). The finding covers the block to its end boundary; a
/// truncated block (no end line) is covered as far as its base64 body reaches.
pub(super) fn pem(cx: &mut Cx<'_, '_>, p: usize) {
    let label_from = p + "-----BEGIN ".len();
    let Some(rest) = cx.b.get(label_from..) else { return };
    let window = &rest[..rest.len().min(64)];
    let Some(label_len) = memchr::memmem::find(window, b"-----") else { return };
    let label = &window[..label_len];
    if memchr::memmem::find(label, b"PRIVATE KEY").is_none() {
        return;
    }
    let body_from = label_from + label_len + 5;
    // One search for the end boundary serves every BEGIN before it, so many BEGINs without an
    // END stay linear.
    let found = match cx.pem_end {
        Some((from, found)) if from <= body_from && found.is_none_or(|f| f >= body_from) => found,
        _ => {
            let found =
                cx.b.get(body_from..).and_then(|h| memchr::memmem::find(h, b"-----END ")).map(|i| body_from + i);
            cx.pem_end = Some((body_from, found));
            found
        }
    };
    let end = match found {
        Some(q) => {
            let tail_from = q + "-----END ".len();
            let tail = cx.b.get(tail_from..).unwrap_or_default();
            match memchr::memmem::find(&tail[..tail.len().min(64)], b"-----") {
                Some(i) => tail_from + i + 5,
                None => tail_from,
            }
        }
        None => {
            let body =
                |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ' | b'\\');
            body_from + run(cx, body_from, usize::MAX, body)
        }
    };
    cx.push(Kind::Secret, p, end);
}

/// `Bearer <token>` (RFC 6750 §2.1, `b64token` syntax): the token, at least 16 characters.
pub(super) fn bearer(cx: &mut Cx<'_, '_>, p: usize, from: usize) {
    if is_word(cx.before(p)) {
        return;
    }
    let b64token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let len = run(cx, from, usize::MAX, b64token);
    let pad = run(cx, from + len, 2, |b| b == b'=');
    if len >= 16 {
        cx.push(Kind::Secret, from, from + len + pad);
    }
}

/// How a key's name classes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// A password: any non-trivial value is secret.
    Password,
    /// A secret-sounding name: the value is secret when it looks random.
    Secretish,
    /// Any other name: only values that look very random.
    Other,
}

fn key_class(name: &[u8]) -> KeyClass {
    let mut buf = [0u8; 64];
    let n = name.len().min(buf.len());
    for (d, s) in buf.iter_mut().zip(&name[name.len() - n..]) {
        *d = s.to_ascii_lowercase();
    }
    let name = &buf[..n];
    let has = |w: &[u8]| contains(name, w);
    if has(b"password") || has(b"passwd") || has(b"passphrase") || has(b"pwd") || name.ends_with(b"pass") {
        KeyClass::Password
    } else if [
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "auth",
        "credential",
        "signature",
        "private",
        "session",
    ]
    .iter()
    .any(|w| has(w.as_bytes()))
        || name.ends_with(b"key")
    {
        KeyClass::Secretish
    } else {
        KeyClass::Other
    }
}

/// Character classes present: lower, upper, digit.
fn classes(v: &[u8]) -> usize {
    usize::from(v.iter().any(u8::is_ascii_lowercase))
        + usize::from(v.iter().any(u8::is_ascii_uppercase))
        + usize::from(v.iter().any(u8::is_ascii_digit))
}

/// Values that stand for "no value", for one that is already hidden, or for a template slot:
/// `null`, `***`, `[SECRET]`, `<password>`, `${DB_PASSWORD}`, `{{ token }}`, `%s`, `%(pw)s`.
fn placeholder(v: &[u8]) -> bool {
    const WORDS: &[&[u8]] =
        &[b"null", b"none", b"nil", b"true", b"false", b"undefined", b"redacted", b"hidden", b"empty"];
    let wrapped = |open: &[u8], close: u8| v.starts_with(open) && v.last() == Some(&close);
    WORDS.iter().any(|w| v.eq_ignore_ascii_case(w))
        || v.iter().all(|&b| b == v[0])
        || wrapped(b"<", b'>')
        || wrapped(b"[", b']')
        || wrapped(b"${", b'}')
        || wrapped(b"{{", b'}')
        || wrapped(b"%(", b's')
        || v == b"%s"
}

fn looks_secret(class: KeyClass, v: &[u8]) -> bool {
    if v.is_empty() || placeholder(v) {
        return false;
    }
    let entropy = || validate::shannon_entropy(v);
    match class {
        // Plain lower-case words after "password:" are usually prose ("password: incorrect").
        KeyClass::Password => {
            v.len() >= 6
                && (v.len() >= 12
                    || v.iter().any(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b.is_ascii_punctuation())
                    || !v.is_ascii())
        }
        // Hex, base64 and similar: 16+ characters of two classes with ≥ 3 bits of entropy per
        // character, or 10+ of all three classes.
        KeyClass::Secretish => {
            let c = classes(v);
            (v.len() >= 16 && c >= 2 && entropy() >= 3.0) || (v.len() >= 10 && c == 3 && entropy() >= 2.8)
        }
        // Random-looking values under any key: 24+ characters, all three classes, ≥ 4 bits per
        // character (beyond what hex or words reach).
        KeyClass::Other => v.len() >= 24 && classes(v) == 3 && entropy() >= 4.0,
    }
}

/// `key=value`, `key: value`, `"key": "value"` and `Authorization: Bearer …` at the `=`/`:` at
/// `p`.
pub(super) fn key_value(cx: &mut Cx<'_, '_>, p: usize) {
    // Values are at most this long; a longer one is judged on its first part.
    const MAX_VALUE: usize = 4096;
    if p < cx.kv_skip {
        return;
    }
    // The value, past spaces and an opening quote.
    let mut v = p + 1;
    if cx.at(p) == b':' && cx.at(v) == b':' {
        return;
    }
    v += run(cx, v, 4, |b| b == b' ' || b == b'\t');
    if cx.at(v) == b'\\' && cx.at(v + 1) == b'"' {
        v += 1;
    }
    let quote = match cx.at(v) {
        q @ (b'"' | b'\'') => {
            v += 1;
            Some(q)
        }
        _ => None,
    };
    // Values shorter than six bytes are never secret: most `key: value` pairs in prose and logs
    // (`10:30`, `status=200`) end here, before the key is read.
    let short = run(cx, v, 6, |b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'')) < 6;
    if quote.is_none() && short && !matches!(cx.at(v) | 0x20, b'b' | b't' | b'd') {
        cx.kv_skip = v;
        return;
    }
    // The key, read leftwards past closing quotes and spaces.
    let mut k = p;
    let mut skipped = 0;
    while k > cx.cursor && skipped < 3 && matches!(cx.at(k - 1), b'"' | b'\'' | b'\\' | b' ') {
        k -= 1;
        skipped += 1;
    }
    let key_end = k;
    let lo = cx.cursor.max(k.saturating_sub(64));
    while k > lo && (is_word(cx.at(k - 1)) || matches!(cx.at(k - 1), b'-' | b'.')) {
        k -= 1;
    }
    if k == key_end {
        return;
    }
    let key = k..key_end;
    // `Authorization: Bearer <token>`: the credential is what follows the scheme.
    for scheme in [&b"bearer "[..], b"basic ", b"token ", b"digest "] {
        if cx.b.get(v..v + scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme)) {
            v += scheme.len();
            break;
        }
    }
    // A value that is no password under the most lenient rule (six characters with a digit, a
    // capital, a symbol or beyond ASCII) is no secret under any key: decided before the key is
    // classed.
    let widest =
        v + run(cx, v, MAX_VALUE, |b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`'));
    if quote.is_none() && !looks_secret(KeyClass::Password, cx.b.get(v..widest).unwrap_or_default()) {
        cx.kv_skip = widest;
        return;
    }
    let class = key_class(cx.b.get(key).unwrap_or_default());
    let stop = |b: u8| match quote {
        Some(q) => b == q || b == b'\\' || b == b'\n',
        // Passwords may hold any symbol: only white space and quotes end them.
        None if class == KeyClass::Password => {
            b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`')
        }
        None => {
            b.is_ascii_whitespace()
                || matches!(
                    b,
                    b',' | b';' | b'&' | b'?' | b'"' | b'\'' | b'<' | b'>' | b'`' | b')' | b']' | b'}' | b'\\'
                )
        }
    };
    let mut e = v + run(cx, v, MAX_VALUE, |b| !stop(b));
    while e > v && !cx.text.is_char_boundary(e) {
        e -= 1;
    }
    cx.kv_skip = e;
    // A sentence may end right after the value.
    while e > v && quote.is_none() && matches!(cx.at(e - 1), b'.' | b':' | b'!' | b'?' | b',' | b';' | b')') {
        e -= 1;
    }
    let value = cx.b.get(v..e).unwrap_or_default();
    if looks_secret(class, value) {
        cx.push(Kind::Secret, v, e);
    }
}
