//! The pii scanner's part of `cargo xtask bench`: MB/s per core of scan + tag redaction
//! (`pii::scrub`) on generated clean text and on text with about 1 % PII, one thread, side by side
//! with Python 3's `re` running equivalent patterns (Presidio's, with the same validators) on the
//! same text in the same run; adversarial inputs (report only); and precision/recall per kind on
//! the labelled corpora.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

/// Bytes of generated text per subject.
const TEXT_BYTES: usize = 4 << 20;
/// One PII value after this many words: about 1 % of the bytes.
const PII_EVERY: usize = 300;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub subject_mb_s: f64,
    pub findings: usize,
    pub baseline: String,
    pub baseline_mb_s: Option<f64>,
    pub baseline_findings: Option<usize>,
    /// subject / baseline throughput.
    pub ratio: Option<f64>,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub corpus: String,
    pub kind: String,
    pub precision: f64,
    pub recall: f64,
    pub support: usize,
    pub false_positives: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PiiReport {
    pub throughput: Vec<Row>,
    pub quality: Vec<Quality>,
}

/// Measures everything; each subject runs for about `seconds` (at least one pass).
pub fn run(seconds: u64) -> anyhow::Result<PiiReport> {
    let budget = Duration::from_secs(seconds.clamp(1, 10));
    let clean = generate(TEXT_BYTES, None);
    let with_pii = generate(TEXT_BYTES, Some(PII_EVERY));
    let pii_bytes: usize = pii::scan(&with_pii).iter().map(|f| f.end - f.start).sum();
    let share = 100.0 * pii_bytes as f64 / with_pii.len() as f64;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("baseline.py");
    std::fs::write(&script, PYTHON)?;
    let mut throughput = Vec::new();
    let logs = generate_text(TEXT_BYTES, None, true);
    for (name, text, target) in [
        ("pii scrub, clean text (prose, one log line in ten)", &clean, ">= 300 MB/s; >= 50x"),
        (&*format!("pii scrub, text with {share:.1} % PII"), &with_pii, ">= 100 MB/s; >= 50x"),
        ("pii scrub, clean structured log lines only", &logs, "report only"),
    ] {
        let (mb_s, findings) = measure(text, budget);
        let file = dir.path().join("text.txt");
        std::fs::write(&file, text)?;
        let py = python(&script, &file)?;
        throughput.push(Row {
            name: name.to_owned(),
            subject_mb_s: mb_s,
            findings,
            baseline: "Python 3 re, Presidio-style patterns + validators, best of one pass per pattern and one combined alternation".into(),
            baseline_mb_s: Some(py.0),
            baseline_findings: Some(py.1),
            ratio: Some(mb_s / py.0.max(f64::MIN_POSITIVE)),
            target: target.to_owned(),
        });
    }
    for (name, text) in adversarial() {
        let (mb_s, findings) = measure(&text, budget / 2);
        throughput.push(Row {
            name: format!("pii scrub, adversarial: {name}"),
            subject_mb_s: mb_s,
            findings,
            baseline: "none (linear-time check)".into(),
            baseline_mb_s: None,
            baseline_findings: None,
            ratio: None,
            target: "report only".into(),
        });
    }
    Ok(PiiReport { throughput, quality: quality(Path::new("crates/pii/tests/data"))? })
}

/// Best MB/s of repeated `pii::scrub` passes within `budget` (at least three passes), and the
/// number of findings.
fn measure(text: &str, budget: Duration) -> (f64, usize) {
    let findings = pii::scan(text).len();
    let start = Instant::now();
    let mut best = f64::MAX;
    let mut passes = 0;
    while passes < 3 || start.elapsed() < budget {
        let t = Instant::now();
        let out = pii::scrub(std::hint::black_box(text));
        std::hint::black_box(out.len());
        best = best.min(t.elapsed().as_secs_f64());
        passes += 1;
    }
    (text.len() as f64 / best / 1e6, findings)
}

/// Runs the Python baseline over `file`: (MB/s, findings).
fn python(script: &Path, file: &Path) -> anyhow::Result<(f64, usize)> {
    let out = Command::new("python3").arg(script).arg(file).output().context("running python3 (is it installed?)")?;
    anyhow::ensure!(out.status.success(), "python baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((v["mb_s"].as_f64().context("mb_s")?, v["findings"].as_u64().context("findings")? as usize))
}

/// Precision and recall per kind on every labelled corpus in `dir`.
fn quality(dir: &Path) -> anyhow::Result<Vec<Quality>> {
    let mut rows = Vec::new();
    for file in ["presidio_generated_small.json", "generated_dev.json", "generated_holdout.json"] {
        let json = std::fs::read_to_string(dir.join(file)).with_context(|| format!("reading {file}"))?;
        let records: Vec<pii::eval::Record> = serde_json::from_str(&json)?;
        let labelled: Vec<_> = records.iter().map(pii::eval::Record::labelled).collect();
        let (scores, _) = pii::eval::evaluate(&labelled);
        for s in scores.iter().filter(|s| s.support() > 0 || s.false_positives > 0) {
            rows.push(Quality {
                corpus: file.to_owned(),
                kind: s.kind.as_str().to_owned(),
                precision: s.precision(),
                recall: s.recall(),
                support: s.support(),
                false_positives: s.false_positives,
            });
        }
    }
    Ok(rows)
}

pub fn markdown(r: &PiiReport) -> String {
    let mut md = String::from("\n## pii scanner (one thread)\n\n| measurement | MB/s | findings | baseline MB/s | baseline findings | ratio | target |\n|---|---|---|---|---|---|---|\n");
    let opt = |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
    for row in &r.throughput {
        md.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} |\n",
            row.name,
            row.subject_mb_s,
            row.findings,
            opt(row.baseline_mb_s, 1),
            row.baseline_findings.map_or("–".to_owned(), |n| n.to_string()),
            row.ratio.map_or("–".to_owned(), |x| format!("{x:.0}×")),
            row.target
        ));
    }
    if let Some(row) = r.throughput.first() {
        md.push_str(&format!("\nBaseline: {}.\n", row.baseline));
    }
    md.push_str("\n| corpus | kind | precision | recall | labels | false positives |\n|---|---|---|---|---|---|\n");
    for q in &r.quality {
        md.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {} | {} |\n",
            q.corpus, q.kind, q.precision, q.recall, q.support, q.false_positives
        ));
    }
    md
}

/// A small deterministic generator (xorshift64), so every run measures the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "customer",
    "account",
    "order",
    "support",
    "team",
    "meeting",
    "report",
    "project",
    "release",
    "server",
    "request",
    "update",
    "payment",
    "invoice",
    "schedule",
    "review",
    "document",
    "weather",
    "morning",
    "afternoon",
    "question",
    "answer",
    "problem",
    "solution",
    "please",
    "thanks",
    "tomorrow",
    "yesterday",
    "week",
    "month",
    "price",
    "delivery",
    "address",
    "message",
    "Monday",
    "London",
    "Paris",
    "Berlin",
    "Tokyo",
    "café",
    "naïve",
    "über",
    "señor",
    "straße",
    "日本",
    "привет",
    "مرحبا",
];

const LOG_LINES: &[&str] = &[
    "2025-03-14T09:26:53Z INFO request finished method=GET path=/api/v1/projects status=200 duration_ms=12",
    "2025-03-14T09:26:54Z WARN retrying job attempt=2 backoff_ms=400 queue=mail",
    "2025-03-14T09:26:55Z INFO user signed in request_id=5f0c9a1e-7b3d-4c2a-9e8f-1a2b3c4d5e6f",
    "[2025-03-14 09:26:56] DEBUG cache hit key=projects:list ttl=300 size=4096",
];

/// Generated text of about `bytes` bytes: prose with occasional numbers, times, versions and
/// percentages, and one log line in ten (`logs_only`: log lines alone). With `pii_every = Some(n)`, one PII value or secret
/// after every `n` words (about 1 % of the bytes for n = 300).
fn generate(bytes: usize, pii_every: Option<usize>) -> String {
    generate_text(bytes, pii_every, false)
}

fn generate_text(bytes: usize, pii_every: Option<usize>, logs_only: bool) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = String::with_capacity(bytes + 256);
    let mut words = 0usize;
    while s.len() < bytes {
        if logs_only || rng.below(10) == 0 {
            s.push_str(rng.pick(LOG_LINES));
            s.push('\n');
            continue;
        }
        let len = 6 + rng.below(14);
        for i in 0..len {
            // About one word in forty is a number (counts, years, times, versions, shares), as
            // in news and support text.
            let w = match rng.below(200) {
                0 | 1 => rng.below(100).to_string(),
                2 => format!("{}", 1990 + rng.below(40)),
                3 => format!("{}:{:02}", rng.below(24), rng.below(60)),
                4 => format!("{}.{}.{}", rng.below(5), rng.below(20), rng.below(10)),
                5 => format!("{}%", rng.below(100)),
                _ => rng.pick(WORDS).to_owned(),
            };
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                s.push_str(&w);
            }
            words += 1;
            if pii_every.is_some_and(|n| words.is_multiple_of(n)) {
                s.push(' ');
                s.push_str(&pii_value(&mut rng));
            }
            s.push(if i + 1 == len {
                '.'
            } else if rng.below(8) == 0 {
                ','
            } else {
                ' '
            });
            if i + 1 < len && s.ends_with(',') {
                s.push(' ');
            }
        }
        s.push(if rng.below(4) == 0 { '\n' } else { ' ' });
    }
    s
}

fn luhn_complete(mut digits: String) -> String {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    digits.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    digits
}

fn pii_value(rng: &mut Rng) -> String {
    let alnum = |rng: &mut Rng, n: usize| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| char::from(A[rng.below(A.len())])).collect()
    };
    match rng.below(9) {
        0 => format!(
            "{}.{}@{}.com",
            rng.pick(&["jane", "li", "omar", "eva"]),
            rng.below(1000),
            rng.pick(&["example", "mail", "corp"])
        ),
        1 => {
            let card = luhn_complete(format!("4{}", rng.digits(14)));
            format!("{} {} {} {}", &card[..4], &card[4..8], &card[8..12], &card[12..])
        }
        2 => format!("{}-{:02}-{:04}", 100 + rng.below(565), 1 + rng.below(98), 1 + rng.below(9998)),
        3 => format!("{}.{}.{}.{}", 1 + rng.below(223), rng.below(256), rng.below(256), 1 + rng.below(254)),
        4 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
        5 => "DE89 3704 0044 0532 0130 00".to_owned(),
        6 => format!("ghp_{}", alnum(rng, 36)),
        7 => format!("api_key={}", alnum(rng, 32)),
        _ => format!("(555) {}-{}", rng.digits(3), rng.digits(4)),
    }
}

/// Inputs built to make a careless scanner quadratic.
fn adversarial() -> Vec<(&'static str, String)> {
    let n = 1 << 20;
    let fill = |unit: &str| unit.repeat(n / unit.len());
    vec![
        ("digits and separators (\"1 2-3.4 \")", fill("1 2-3.4 ")),
        ("one 1 MiB digit run", "7".repeat(n)),
        ("@ signs in a word run (\"a@\")", fill("a@")),
        ("key=value chains (\"password=x=\")", fill("password=x=")),
        ("JWT starts (\"eyJ\")", fill("eyJ")),
        ("PEM headers without an end", fill("-----BEGIN PRIVATE KEY-----\n")),
        ("colons and hex (\"a:\")", fill("a:")),
    ]
}

/// The baseline: Presidio-style patterns in Python's `re`, with Luhn, SSN, IBAN and IP
/// validators, and the same tag redaction. Two strategies (one pass per pattern, as Presidio
/// runs its recognizers, and one combined alternation); the faster counts.
const PYTHON: &str = r#####"
import ipaddress, json, re, sys, time

P = [
 ("EMAIL", r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"),
 ("CREDIT_CARD", r"\b(?!1\d{12}(?!\d))(?:4\d{3}|5[0-5]\d{2}|6\d{3}|1\d{3}|3\d{3})[- ]?\d{3,4}[- ]?\d{3,4}[- ]?\d{3,5}\b"),
 ("US_SSN", r"\b\d{3}(?P<sep>[- .])\d{2}(?P=sep)\d{4}\b"),
 ("IP_ADDRESS", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
 ("IP6", r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f:]*(?![0-9A-Fa-f:])"),
 ("IBAN", r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"),
 ("PHONE_NUMBER", r"(?<!\w)(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?!\w)"),
 ("SECRET", r"\b(?:sk_live_|sk_test_|rk_live_|gh[pousr]_|github_pat_|glpat-|xox[bpares]-|AKIA|ASIA|AIza|npm_|hf_|sk-)[A-Za-z0-9_-]{10,}"),
 ("JWT", r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
 ("PEM", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
 ("BEARER", r"\bBearer\s+[A-Za-z0-9\-._~+/]{16,}=*"),
 ("KV", r"(?i)\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|auth)[\w.-]*[\"']?\s*[:=]\s*[\"']?[^\s\"',;&]{6,}"),
]

def luhn(d):
    s = 0
    for i, c in enumerate(reversed(d)):
        n = int(c)
        if i % 2: n = n * 2 - 9 if n > 4 else n * 2
        s += n
    return s % 10 == 0

def valid(kind, v):
    if kind == "CREDIT_CARD":
        return luhn(re.sub(r"[- ]", "", v))
    if kind == "US_SSN":
        d = re.sub(r"\D", "", v)
        return not (d[:3] in ("000", "666") or d[0] == "9" or d[3:5] == "00" or d[5:] == "0000")
    if kind == "IBAN":
        s = v.replace(" ", "")
        s = s[4:] + s[:4]
        return int("".join(str(int(c, 36)) for c in s)) % 97 == 1
    if kind == "IP6":
        try:
            ipaddress.IPv6Address(v); return True
        except ValueError:
            return False
    if kind == "PHONE_NUMBER":
        return 7 <= sum(c.isdigit() for c in v) <= 15
    return True

TAG = {"IP6": "IP_ADDRESS", "JWT": "SECRET", "PEM": "SECRET", "BEARER": "SECRET", "KV": "SECRET"}
SEPARATE = [(k, re.compile(p)) for k, p in P]
COMBINED = re.compile("|".join("(?P<%s>%s)" % (k, p.replace("(?i)", "")) for k, p in P), re.I * 0)

def redact(text, spans):
    spans.sort()
    out, last, n = [], 0, 0
    for s, e, k in spans:
        if s < last: continue
        out.append(text[last:s]); out.append("[" + TAG.get(k, k) + "]"); last = e; n += 1
    out.append(text[last:])
    return "".join(out), n

def separate(text):
    spans = [(m.start(), m.end(), k) for k, r in SEPARATE for m in r.finditer(text) if valid(k, m.group())]
    return redact(text, spans)

def combined(text):
    spans = [(m.start(), m.end(), m.lastgroup) for m in COMBINED.finditer(text) if valid(m.lastgroup, m.group())]
    return redact(text, spans)

text = open(sys.argv[1], encoding="utf-8").read()
size = len(text.encode("utf-8"))
best, found = None, 0
for f in (separate, combined):
    t = time.perf_counter()
    _, n = f(text)
    dt = time.perf_counter() - t
    if best is None or dt < best:
        best, found = dt, n
print(json.dumps({"mb_s": size / best / 1e6, "findings": found}))
"#####;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_pii_text_holds_about_one_percent_pii_and_the_clean_text_none_to_speak_of() {
        let clean = generate(1 << 20, None);
        let with_pii = generate(1 << 20, Some(PII_EVERY));
        let share = |t: &str| pii::scan(t).iter().map(|f| f.end - f.start).sum::<usize>() as f64 / t.len() as f64;
        assert!(share(&clean) < 0.001, "{}", share(&clean));
        assert!((0.005..0.02).contains(&share(&with_pii)), "{}", share(&with_pii));
    }

    #[test]
    fn generated_card_numbers_pass_luhn() {
        assert!(pii::validate::luhn(luhn_complete("411111111111111".into()).as_bytes()));
    }
}
