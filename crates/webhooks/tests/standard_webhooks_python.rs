//! Cross-checks with the official Standard Webhooks Python library (`standardwebhooks` on PyPI):
//! what this crate signs, the reference verifies, and what the reference signs, this crate
//! verifies. Everything is passed through the environment and stdin; nothing leaves the machine.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use secrecy::ExposeSecret;
use webhooks::standard::{self, Headers, MessageId, Secret};

const INSTALL_HINT: &str = "install it with `python3 -m pip install standardwebhooks`";

/// Verifies with the reference `Webhook.verify`; prints `verified`, or `refused: …` and exits 3.
const PY_VERIFY: &str = r#"
import os, sys
from standardwebhooks import Webhook, WebhookVerificationError
body = sys.stdin.buffer.read().decode("utf-8")
headers = {
    "webhook-id": os.environ["WH_ID"],
    "webhook-timestamp": os.environ["WH_TIMESTAMP"],
    "webhook-signature": os.environ["WH_SIGNATURE"],
}
try:
    Webhook(os.environ["WH_SECRET"]).verify(body, headers)
except WebhookVerificationError as error:
    print("refused:", error)
    sys.exit(3)
print("verified")
"#;

/// Signs with the reference `Webhook.sign` and prints the header value.
const PY_SIGN: &str = r#"
import os, sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
body = sys.stdin.buffer.read().decode("utf-8")
timestamp = datetime.fromtimestamp(int(os.environ["WH_TIMESTAMP"]), tz=timezone.utc)
print(Webhook(os.environ["WH_SECRET"]).sign(os.environ["WH_ID"], timestamp, body))
"#;

fn require_library() {
    let probe = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => {}
        Ok(_) => panic!("the Python package `standardwebhooks` is not importable: {INSTALL_HINT}"),
        Err(error) => panic!("python3 could not be started ({error}): {INSTALL_HINT}"),
    }
}

fn python(script: &str, env: &[(&str, &str)], stdin: &[u8]) -> Output {
    require_library();
    let mut child = Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child.stdin.take().expect("stdin is piped").write_all(stdin).expect("stdin is written");
    child.wait_with_output().expect("python3 finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn python_verify(secret: &str, id: &str, timestamp: &str, signature: &str, body: &[u8]) -> Output {
    let env = [("WH_SECRET", secret), ("WH_ID", id), ("WH_TIMESTAMP", timestamp), ("WH_SIGNATURE", signature)];
    python(PY_VERIFY, &env, body)
}

fn python_sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let output = python(PY_SIGN, &[("WH_SECRET", secret), ("WH_ID", id), ("WH_TIMESTAMP", &timestamp)], body);
    assert!(output.status.success(), "python sign failed: {}", String::from_utf8_lossy(&output.stderr));
    stdout(&output)
}

/// The reference library checks timestamps against its own clock, so the deliveries it verifies
/// are stamped with the machine's time (the only clock read in this crate's tests).
fn wall_clock() -> DateTime<Utc> {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    DateTime::from_timestamp(i64::try_from(seconds).expect("fits"), 0).expect("in range")
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1","customer":"Zoë 😀","amount":4200}}"#;

#[test]
fn a_delivery_signed_here_verifies_with_the_official_python_library() {
    let secret = Secret::generate(&mut StdRng::seed_from_u64(1));
    let whsec = secret.to_whsec();
    let id = MessageId::parse("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W").unwrap();
    let now = wall_clock();
    let signature = standard::sign(&[secret], &id, now, BODY.as_bytes()).unwrap();
    let output =
        python_verify(whsec.expose_secret(), id.as_str(), &now.timestamp().to_string(), &signature, BODY.as_bytes());
    assert_eq!(stdout(&output), "verified", "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
}

#[test]
fn a_delivery_signed_here_with_two_secrets_verifies_in_python_under_each() {
    let old = Secret::generate(&mut StdRng::seed_from_u64(2));
    let new = Secret::generate(&mut StdRng::seed_from_u64(3));
    let id = MessageId::parse("msg_rotation").unwrap();
    let now = wall_clock();
    let signature = standard::sign(&[old.clone(), new.clone()], &id, now, BODY.as_bytes()).unwrap();
    assert_eq!(signature.split(' ').count(), 2);
    for secret in [old, new] {
        let output = python_verify(
            secret.to_whsec().expose_secret(),
            id.as_str(),
            &now.timestamp().to_string(),
            &signature,
            BODY.as_bytes(),
        );
        assert_eq!(stdout(&output), "verified", "stderr: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn the_python_library_refuses_a_delivery_signed_here_once_its_body_changes() {
    let secret = Secret::generate(&mut StdRng::seed_from_u64(4));
    let id = MessageId::parse("msg_tampered").unwrap();
    let now = wall_clock();
    let signature = standard::sign(std::slice::from_ref(&secret), &id, now, BODY.as_bytes()).unwrap();
    let tampered = BODY.replace("4200", "4201");
    let output = python_verify(
        secret.to_whsec().expose_secret(),
        id.as_str(),
        &now.timestamp().to_string(),
        &signature,
        tampered.as_bytes(),
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "stdout: {} stderr: {}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).starts_with("refused:"));
}

#[test]
fn a_delivery_signed_by_the_python_library_verifies_here_and_matches_our_signer() {
    let generated = Secret::generate(&mut StdRng::seed_from_u64(5)).to_whsec();
    let table = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        ),
        (generated.expose_secret(), "msg_from_python", 1_700_000_000, BODY),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "msg_unpadded", 1_700_000_001, "{}"),
    ];
    for (secret_text, id, ts, body) in table {
        let signature = python_sign(secret_text, id, ts, body.as_bytes());
        assert!(signature.starts_with("v1,"), "{signature}");
        let secret = Secret::parse(secret_text).unwrap();
        let ts_text = ts.to_string();
        let headers = Headers { id: Some(id), timestamp: Some(&ts_text), signature: Some(&signature) };
        let verified = standard::verify(&headers, body.as_bytes(), std::slice::from_ref(&secret), at(ts));
        assert_eq!(verified.map(|v| v.secret_index), Ok(0), "{id}");
        let ours = standard::sign(&[secret], &MessageId::parse(id).unwrap(), at(ts), body.as_bytes()).unwrap();
        assert_eq!(ours, signature, "{id}");
    }
}

#[test]
fn a_python_signature_is_refused_here_for_another_body() {
    let signature = python_sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    let headers = Headers {
        id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        timestamp: Some("1614265330"),
        signature: Some(&signature),
    };
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let got = standard::verify(&headers, br#"{"test": 2432232315}"#, &[secret], at(1_614_265_330));
    assert_eq!(got.map_err(|e| e.code()), Err("webhook_signature_mismatch"));
}
