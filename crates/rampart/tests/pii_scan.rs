//! The `rampart pii scan` contract: JSON lines in, one JSON line per input line out, offsets in
//! Unicode scalar values, malformed lines answered in place and reported by the exit status.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn run(input: &str) -> (Vec<Value>, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["pii", "scan"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, String::from_utf8(out.stderr).unwrap(), out.status.code())
}

#[test]
fn pii_scan_answers_each_line_with_findings_in_character_offsets_and_tagged_text() {
    let input = [
        json!({"id": "a", "text": "Mail jane@example.com or call +44 20 7946 0958"}),
        json!({"id": "b", "text": "日本語 4111 1111 1111 1111 ✓"}),
        json!({"id": 3, "text": "nothing here", "extra": true}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>();
    let (lines, stderr, code) = run(&input);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        lines,
        [
            json!({"id": "a", "findings": [{"kind": "email", "start": 5, "end": 21}, {"kind": "phone_number", "start": 30, "end": 46}],
                   "redacted": "Mail [EMAIL] or call [PHONE_NUMBER]"}),
            json!({"id": "b", "findings": [{"kind": "credit_card", "start": 4, "end": 23}], "redacted": "日本語 [CREDIT_CARD] ✓"}),
            json!({"id": 3, "findings": [], "redacted": "nothing here"}),
        ]
    );
}

#[test]
fn pii_scan_answers_malformed_lines_in_place_and_exits_non_zero() {
    let input = "{\"id\":\"ok\",\"text\":\"a@b.io\"}\nnot json\n\n{\"id\":\"x\"}\n{\"id\":\"y\",\"text\":5}\n[1]\n{\"id\":\"last\",\"text\":\"ssn 078-05-1123\"}";
    let (lines, stderr, code) = run(input);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 6, "one output line per non-blank input line");
    assert_eq!(lines[0]["redacted"], "[EMAIL]");
    assert_eq!(lines[1]["id"], Value::Null);
    assert!(lines[1]["error"].as_str().unwrap().starts_with("not JSON"));
    assert_eq!(lines[2], json!({"id": "x", "error": "\"text\" is missing"}));
    assert_eq!(lines[3], json!({"id": "y", "error": "\"text\" must be a string"}));
    assert!(lines[4]["error"].is_string());
    assert_eq!(lines[5]["findings"], json!([{"kind": "us_ssn", "start": 4, "end": 15}]));
    assert!(stderr.contains("line 2: not JSON") && stderr.contains("line 4:"), "{stderr}");
}
