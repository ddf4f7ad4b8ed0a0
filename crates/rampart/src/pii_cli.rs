//! `rampart pii scan`: JSON lines on standard input, one JSON line per input line on standard
//! output. The contract (README.md, "Scanning text for personal data") is stable:
//!
//! - in: `{"id": "...", "text": "..."}` (the id may also be a number; other fields are ignored;
//!   blank lines are skipped);
//! - out: `{"id": "...", "findings": [{"kind": "...", "start": N, "end": N}], "redacted": "..."}`
//!   with offsets in Unicode scalar values of `text`, end exclusive, and `redacted` in tag mode;
//! - a malformed line gets `{"id": <id or null>, "error": "..."}` in its place (so output lines
//!   stay aligned with input lines), a message on standard error, and exit status 1 once all
//!   input is read. Nothing panics on any input.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde::Serialize;

#[derive(Debug, Serialize)]
struct Found {
    kind: &'static str,
    start: usize,
    end: usize,
}

#[derive(Debug, Serialize)]
struct Scanned<'a> {
    id: &'a serde_json::Value,
    findings: Vec<Found>,
    redacted: &'a str,
}

#[derive(Debug, Serialize)]
struct Failed<'a> {
    id: &'a serde_json::Value,
    error: String,
}

/// Runs the scan over the process's standard streams.
pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = scan(stdin.lock(), &mut out, &mut std::io::stderr()).and_then(|bad| {
        out.flush()?;
        Ok(bad)
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("rampart pii scan: {err}");
            ExitCode::from(2)
        }
    }
}

/// Scans every line of `input`; returns how many lines were malformed.
pub fn scan(mut input: impl BufRead, out: &mut impl Write, errors: &mut impl Write) -> std::io::Result<usize> {
    let scanner = pii::scanner();
    let redactor = pii::Redactor::tag();
    let mut line = Vec::new();
    let mut findings = Vec::new();
    let (mut number, mut bad) = (0usize, 0usize);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, text) = match parse(&line) {
            Ok(parsed) => parsed,
            Err((id, error)) => {
                bad += 1;
                writeln!(errors, "rampart pii scan: line {number}: {error}")?;
                serde_json::to_writer(&mut *out, &Failed { id: &id, error })?;
                out.write_all(b"\n")?;
                continue;
            }
        };
        scanner.scan_into(&text, &mut findings);
        let redacted = redactor.apply(&text, &findings);
        let found = pii::char_spans(&text, &findings)
            .into_iter()
            .map(|s| Found { kind: s.kind.as_str(), start: s.start, end: s.end })
            .collect();
        serde_json::to_writer(&mut *out, &Scanned { id: &id, findings: found, redacted: &redacted })?;
        out.write_all(b"\n")?;
    }
    Ok(bad)
}

/// The id and text of one input line, or the id (null when unknown) and what is wrong.
fn parse(line: &[u8]) -> Result<(serde_json::Value, String), (serde_json::Value, String)> {
    let null = serde_json::Value::Null;
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| (null.clone(), format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err((null, "expected an object {\"id\": ..., \"text\": ...}".into()));
    };
    let id = object.remove("id").unwrap_or(serde_json::Value::Null);
    if !(id.is_string() || id.is_number()) {
        return Err((id, "\"id\" must be a string or a number".into()));
    }
    match object.remove("text") {
        Some(serde_json::Value::String(text)) => Ok((id, text)),
        Some(_) => Err((id, "\"text\" must be a string".into())),
        None => Err((id, "\"text\" is missing".into())),
    }
}
