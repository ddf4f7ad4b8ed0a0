//! Twilio deliveries signed by the official `twilio` Python library, sent over HTTP to the real
//! server, on SQLite and on PostgreSQL as the runtime role. The library signs (its
//! `RequestValidator.compute_signature`, and its `compute_hash` for the `bodySHA256` Twilio puts
//! in the URL of a JSON delivery) and also judges every request sent: its
//! `RequestValidator.validate`, given the public URL the request reached and the signature
//! settings header read by its `get_signature_algorithm`, must agree with the server on each one,
//! and each is also checked against the verdict written in the test. Everything is passed on
//! stdin; nothing leaves the machine.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser};

const INSTALL_HINT: &str = "install it with `python3 -m pip install twilio`";
/// 9.13.0 is the first release whose `request_validator` reads the signature settings header.
const UPGRADE_HINT: &str = "upgrade it with `python3 -m pip install --upgrade \"twilio>=9.13.0\"`";

/// Reads a JSON list of operations on stdin and prints a JSON list of answers.
///
/// `sign`: the signature the library computes for `url` and the form `params`, or, when `body`
/// is given, for `url` with `bodySHA256=<compute_hash(body)>` appended (what Twilio does with a
/// JSON body: the URL alone is signed); answers the URL signed and the signature.
/// `validate`: the library's verdict on a request (`body` as the raw text of a JSON delivery,
/// otherwise the form `params`), with the algorithm the settings header names. An exception
/// inside the library (it raises on a JSON body whose URL has no `bodySHA256`) is a refusal.
const PY_ORACLE: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator, get_signature_algorithm

class Form(dict):
    # A form with repeated names, read through `getlist` as the library reads Django's QueryDict.
    def getlist(self, name):
        return self[name]

def form(pairs):
    params = Form()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params

def sign(op):
    validator = RequestValidator(op["token"])
    url = op["url"]
    params = form(op["params"])
    if op.get("body") is not None:
        url += ("&" if "?" in url else "?") + "bodySHA256=" + validator.compute_hash(op["body"])
        params = {}
    return {"url": url, "signature": validator.compute_signature(url, params, op.get("algorithm"))}

def validate(op):
    validator = RequestValidator(op["token"])
    params = op["body"] if op.get("body") is not None else form(op["params"])
    algorithm = get_signature_algorithm(op.get("settings"))
    try:
        return {"valid": validator.validate(op["url"], params, op["signature"], algorithm)}
    except Exception as error:
        return {"valid": False, "raised": type(error).__name__}

answers = [sign(op) if op["op"] == "sign" else validate(op) for op in json.load(sys.stdin)]
print(json.dumps(answers))
"#;

fn require_library() {
    let probe =
        |code: &str| Command::new("python3").args(["-c", code]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    match probe("import twilio") {
        Ok(status) if status.success() => {}
        Ok(_) => panic!("the Python package `twilio` is not importable: {INSTALL_HINT}"),
        Err(error) => panic!("python3 could not be started ({error}): {INSTALL_HINT}"),
    }
    let current = probe("from twilio.request_validator import get_signature_algorithm");
    assert!(
        current.is_ok_and(|status| status.success()),
        "the installed `twilio` cannot read X-Twilio-Webhooks-Signature-Settings: {UPGRADE_HINT}"
    );
}

/// Runs the oracle over `ops`; one answer per operation.
async fn oracle(ops: Vec<Value>) -> Vec<Value> {
    tokio::task::spawn_blocking(move || {
        require_library();
        let mut child = Command::new("python3")
            .args(["-c", PY_ORACLE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let input = serde_json::to_vec(&ops).unwrap();
        child.stdin.take().expect("stdin is piped").write_all(&input).expect("stdin is written");
        let output = child.wait_with_output().expect("python3 finishes");
        assert!(output.status.success(), "the oracle failed: {}", String::from_utf8_lossy(&output.stderr));
        let answers: Vec<Value> = serde_json::from_slice(&output.stdout).expect("the oracle answers JSON");
        assert_eq!(answers.len(), ops.len());
        answers
    })
    .await
    .unwrap()
}

/// What the library signs: a form (`params`) or a JSON body, over `url`, with `algorithm`.
struct Signing<'a> {
    token: &'a str,
    url: &'a str,
    params: &'a [(&'a str, &'a str)],
    body: Option<&'a str>,
    algorithm: Option<&'a str>,
}

impl<'a> Signing<'a> {
    fn form(token: &'a str, url: &'a str, params: &'a [(&'a str, &'a str)]) -> Self {
        Signing { token, url, params, body: None, algorithm: None }
    }

    fn json(token: &'a str, url: &'a str, body: &'a str) -> Self {
        Signing { token, url, params: &[], body: Some(body), algorithm: None }
    }

    fn with_algorithm(self, algorithm: &'a str) -> Self {
        Signing { algorithm: Some(algorithm), ..self }
    }
}

/// A URL and signature the library made.
#[derive(Debug, Clone)]
struct Signed {
    url: String,
    signature: String,
}

impl Signed {
    /// The query string of the signed URL, which the request carries.
    fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, query)| query)
    }
}

async fn sign_all(signings: &[Signing<'_>]) -> Vec<Signed> {
    let ops = signings
        .iter()
        .map(|s| {
            json!({"op": "sign", "token": s.token, "url": s.url, "params": s.params, "body": s.body, "algorithm": s.algorithm})
        })
        .collect();
    oracle(ops)
        .await
        .into_iter()
        .map(|a| Signed {
            url: a["url"].as_str().unwrap().to_owned(),
            signature: a["signature"].as_str().unwrap().to_owned(),
        })
        .collect()
}

async fn sign_one(signing: Signing<'_>) -> Signed {
    sign_all(&[signing]).await.remove(0)
}

/// The verdict a request must get from both the server and the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Duplicate,
    /// 401 with this code.
    Refused(&'static str),
}

/// One request to a source, as an attacker or Twilio would send it.
#[derive(Debug, Clone)]
struct Attempt {
    what: &'static str,
    /// The query string the request carries (raw, without `?`).
    query: String,
    /// A JSON body (sent as `application/json`), or else the form `params`.
    json: Option<String>,
    params: Vec<(String, String)>,
    signature: String,
    settings: Option<String>,
    host: Option<String>,
    verdict: Verdict,
}

impl Attempt {
    fn json(what: &'static str, signed: &Signed, body: &str, verdict: Verdict) -> Attempt {
        Attempt {
            what,
            query: signed.query().to_owned(),
            json: Some(body.to_owned()),
            params: Vec::new(),
            signature: signed.signature.clone(),
            settings: None,
            host: None,
            verdict,
        }
    }

    fn form(what: &'static str, signed: &Signed, params: &[(&str, &str)], verdict: Verdict) -> Attempt {
        Attempt {
            what,
            query: signed.query().to_owned(),
            json: None,
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            signature: signed.signature.clone(),
            settings: None,
            host: None,
            verdict,
        }
    }

    fn query(self, query: &str) -> Attempt {
        Attempt { query: query.to_owned(), ..self }
    }

    fn settings(self, settings: &str) -> Attempt {
        Attempt { settings: Some(settings.to_owned()), ..self }
    }

    fn host(self, host: &str) -> Attempt {
        Attempt { host: Some(host.to_owned()), ..self }
    }

    fn signature(self, signature: &str) -> Attempt {
        Attempt { signature: signature.to_owned(), ..self }
    }
}

const MISMATCH: Verdict = Verdict::Refused("webhook_signature_mismatch");
const MALFORMED: Verdict = Verdict::Refused("webhook_signature_malformed");
const MISSING: Verdict = Verdict::Refused("webhook_signature_missing");

/// A Twilio source of a fresh workspace.
struct Source<'a> {
    app: &'a TestApp,
    owner: &'a TestUser,
    workspace: String,
    id: String,
    path: String,
    /// The URL configured at Twilio, as the source holds it.
    configured: String,
    /// The first configured secret: the auth token.
    token: String,
}

impl<'a> Source<'a> {
    async fn create(app: &'a TestApp, owner: &'a TestUser, configured: &str, secrets: &[&str]) -> Source<'a> {
        let (status, ws) = call(app, owner, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Twilio"}))).await;
        assert_eq!(status, 201, "{ws}");
        let workspace = ws["id"].as_str().unwrap().to_owned();
        let body = json!({"kind": "twilio", "name": "SMS", "settings": {"url": configured}, "secrets": secrets});
        let (status, made) =
            call(app, owner, Method::POST, &format!("/api/v1/workspaces/{workspace}/webhook-sources"), Some(body))
                .await;
        assert_eq!(status, 201, "{made}");
        Source {
            app,
            owner,
            workspace,
            id: made["id"].as_str().unwrap().to_owned(),
            path: made["delivery_path"].as_str().unwrap().to_owned(),
            configured: configured.to_owned(),
            token: secrets[0].to_owned(),
        }
    }

    /// The public URL a request with `query` reached: what the library is given to validate.
    fn public_url(&self, query: &str) -> String {
        let base = self.configured.split('?').next().unwrap();
        if query.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{query}")
        }
    }

    async fn send(&self, attempt: &Attempt) -> (u16, Value) {
        let mut url = self.app.url(&self.path);
        if !attempt.query.is_empty() {
            url = format!("{url}?{}", attempt.query);
        }
        let mut req = self.app.client.post(url).header("x-twilio-signature", &attempt.signature);
        req = match &attempt.json {
            Some(body) => req.header("content-type", "application/json").body(body.clone()),
            None => {
                let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&attempt.params).finish();
                req.header("content-type", "application/x-www-form-urlencoded").body(form)
            }
        };
        if let Some(settings) = &attempt.settings {
            req = req.header("x-twilio-webhooks-signature-settings", settings);
        }
        if let Some(host) = &attempt.host {
            req = req.header("host", host);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends each attempt in order and checks the server's answer against its verdict, and the
    /// library's `validate` against the same verdict; the server's answers.
    async fn check(&self, attempts: &[Attempt]) -> Vec<Value> {
        let ops = attempts
            .iter()
            .map(|a| {
                json!({
                    "op": "validate",
                    "token": self.token,
                    "url": self.public_url(&a.query),
                    "params": a.params,
                    "body": a.json,
                    "signature": a.signature,
                    "settings": a.settings,
                })
            })
            .collect();
        let library = oracle(ops).await;
        let mut answers = Vec::new();
        for (attempt, judged) in attempts.iter().zip(library) {
            let (status, answer) = self.send(attempt).await;
            let what = attempt.what;
            let served = match (status, answer["status"].as_str(), answer["code"].as_str()) {
                (200, Some("accepted"), _) => Verdict::Accepted,
                (200, Some("duplicate"), _) => Verdict::Duplicate,
                _ => Verdict::Refused(refusal_code(status, &answer)),
            };
            assert_eq!(served, attempt.verdict, "{what}: the server answered {status} {answer}");
            let valid = judged["valid"].as_bool().unwrap();
            let expected_valid = matches!(attempt.verdict, Verdict::Accepted | Verdict::Duplicate);
            assert_eq!(valid, expected_valid, "{what}: the twilio library's validate answered {judged}");
            answers.push(answer);
        }
        answers
    }

    async fn received(&self) -> usize {
        let path = format!("/api/v1/workspaces/{}/audit-events?category=webhook", self.workspace);
        let (status, page) = call(self.app, self.owner, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().unwrap().iter().filter(|e| e["action"] == "webhook.received").count()
    }

    async fn signature_failures(&self) -> i64 {
        let path = format!("/api/v1/workspaces/{}/webhook-sources", self.workspace);
        let (status, sources) = call(self.app, self.owner, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{sources}");
        let source = sources.as_array().unwrap().iter().find(|s| s["id"] == self.id.as_str()).unwrap();
        source["signature_failures"].as_i64().unwrap()
    }
}

/// The code of a refusal; only 401 counts as one (anything else fails the verdict check).
fn refusal_code(status: u16, answer: &Value) -> &'static str {
    if status != 401 {
        return "not a 401";
    }
    match answer["code"].as_str() {
        Some("webhook_signature_mismatch") => "webhook_signature_mismatch",
        Some("webhook_signature_malformed") => "webhook_signature_malformed",
        Some("webhook_signature_missing") => "webhook_signature_missing",
        _ => "another code",
    }
}

async fn call(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    app.json(user, method, path, body).await
}

const CONFIGURED: &str = "https://hooks.example.com/twilio/status";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// A SharedKey secret (Twilio shows it once when the key is created).
const SHARED_KEY: &str = "shared-key-secret-for-the-hmac-sha256-setting";
const SHA256_SETTINGS: &str = "key=webhooks_sharedkey_0123456789abcdef0123456789abcdef,algorithm=HMAC_SHA256";
const EVENT: &str = r#"{"specversion":"1.0","type":"com.twilio.messaging.message.delivered","id":"EZ0123456789abcdef0123456789abcdef","data":{"messageSid":"SM0123456789abcdef0123456789abcdef","to":"+14155550100","body":"Ça va? 👍"}}"#;
const SMS: [(&str, &str); 6] = [
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("From", "+14155550100"),
    ("To", "+14155550199"),
    ("Body", "Ça va? 1+1=2 & 👍"),
    ("FromCity", ""),
    ("MessagingBinding.Address", "+14155550101"),
];

async fn a_json_delivery_signed_with_body_sha256_by_the_official_library_is_accepted_once(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let signed = sign_one(Signing::json(TOKEN, CONFIGURED, EVENT)).await;
    assert!(signed.query().starts_with("bodySHA256="), "{signed:?}");

    let answers = source
        .check(&[
            Attempt::json("the delivery", &signed, EVENT, Verdict::Accepted),
            Attempt::json("the same delivery again", &signed, EVENT, Verdict::Duplicate),
        ])
        .await;
    assert!(answers[0]["event_id"].as_str().unwrap().starts_with("sha256:"), "{}", answers[0]);
    assert_eq!(answers[0]["event_id"], answers[1]["event_id"]);
    assert_eq!(source.received().await, 1);
    assert_eq!(source.signature_failures().await, 0);
}

async fn a_json_body_changed_after_signing_is_refused_and_nothing_is_processed(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let tampered = EVENT.replace("delivered", "undelivered");
    let reformatted = EVENT.replace(",\"", ", \"");
    let signed = sign_one(Signing::json(TOKEN, CONFIGURED, EVENT)).await;
    // The attacker re-hashes the body they send, but cannot sign the URL that now names it.
    let rehashed = sign_one(Signing::json("not-the-token", CONFIGURED, &tampered)).await;
    let rehashed = Signed { signature: signed.signature.clone(), ..rehashed };

    source
        .check(&[
            Attempt::json("a changed body", &signed, &tampered, MISMATCH),
            Attempt::json("the same JSON with other whitespace", &signed, &reformatted, MISMATCH),
            Attempt::json("an empty body", &signed, "", MISMATCH),
            Attempt::json("a changed body with its own bodySHA256", &rehashed, &tampered, MISMATCH),
        ])
        .await;
    assert_eq!(source.received().await, 0);
    assert_eq!(source.signature_failures().await, 4);
}

async fn a_form_post_signed_by_the_official_library_is_accepted(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let with_query = format!("{CONFIGURED}?channel=sms&tenant=a%20b");
    let mut repeated = SMS.to_vec();
    repeated.push(("MessagingBinding.Address", "+14155550102"));
    let signed = sign_all(&[
        Signing::form(TOKEN, CONFIGURED, &SMS),
        Signing::form(TOKEN, &with_query, &SMS),
        Signing::form(TOKEN, CONFIGURED, &repeated),
    ])
    .await;
    let mut reordered = SMS.to_vec();
    reordered.reverse();
    let mut tampered = SMS.to_vec();
    tampered[3].1 = "Ça va? 1+1=3 & 👍";

    let answers = source
        .check(&[
            Attempt::form("a form post", &signed[0], &SMS, Verdict::Accepted),
            Attempt::form("the same parameters in another order", &signed[0], &reordered, Verdict::Duplicate),
            Attempt::form("a form post to a URL with a query", &signed[1], &SMS, Verdict::Accepted),
            Attempt::form("a name sent twice", &signed[2], &repeated, Verdict::Accepted),
            Attempt::form("a changed value", &signed[0], &tampered, MISMATCH),
            Attempt::form("a parameter left out", &signed[0], &SMS[..5], MISMATCH),
            Attempt::form("the form's signature with no query", &signed[1], &SMS, MISMATCH).query(""),
        ])
        .await;
    assert_eq!(answers[0]["event_id"], answers[1]["event_id"]);
    assert_ne!(answers[0]["event_id"], answers[2]["event_id"], "the query is part of what was signed");
    assert_eq!(source.received().await, 3);
}

async fn the_hmac_sha256_signature_setting_is_accepted_as_the_library_reads_it(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    // The source holds the auth token and the SharedKey secret; the header names no secret of
    // its own that the libraries read, so each configured one is tried.
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN, SHARED_KEY]).await;
    let signed = sign_all(&[
        Signing::json(SHARED_KEY, CONFIGURED, EVENT).with_algorithm("HMAC_SHA256"),
        Signing::form(SHARED_KEY, CONFIGURED, &SMS).with_algorithm("HMAC_SHA256"),
        Signing::form(TOKEN, CONFIGURED, &SMS),
        Signing::form(SHARED_KEY, CONFIGURED, &SMS[..3]).with_algorithm("HMAC_SHA256"),
    ])
    .await;
    let (json, form, sha1, other) = (&signed[0], &signed[1], &signed[2], &signed[3]);

    // The library's `validate` takes one secret: the SharedKey secret while the header is there.
    let shared = Source { token: SHARED_KEY.to_owned(), ..source };
    let answers = shared
        .check(&[
            Attempt::json("a JSON delivery", json, EVENT, Verdict::Accepted).settings(SHA256_SETTINGS),
            Attempt::form("a form post", form, &SMS, Verdict::Accepted).settings(SHA256_SETTINGS),
            Attempt::form("the algorithm in lower case", other, &SMS[..3], Verdict::Accepted)
                .settings("algorithm=hmac_sha256, key=webhooks_sharedkey_0123456789abcdef0123456789abcdef"),
            Attempt::json("a changed body", json, &EVENT.replace("👍", "👎"), MISMATCH).settings(SHA256_SETTINGS),
            Attempt::form("the HMAC-SHA256 signature without the header", form, &SMS, MALFORMED),
            Attempt::form("the header naming HMAC_SHA1", form, &SMS, MALFORMED).settings("algorithm=HMAC_SHA1"),
            Attempt::form("an algorithm the library does not know", form, &SMS, MALFORMED)
                .settings("key=webhooks_sharedkey_1,algorithm=HMAC_SHA512"),
            Attempt::form("the token's HMAC-SHA1 under the HMAC_SHA256 setting", sha1, &SMS, MALFORMED)
                .settings(SHA256_SETTINGS),
        ])
        .await;
    assert!(answers[0]["event_id"].as_str().unwrap().starts_with("sha256:"), "{}", answers[0]);
    // The same event signed the other way is the same event: the settings header and the
    // algorithm are not part of what names it.
    let auth_token = Source { token: TOKEN.to_owned(), ..shared };
    auth_token.check(&[Attempt::form("the auth token's HMAC-SHA1", sha1, &SMS, Verdict::Duplicate)]).await;
    assert_eq!(auth_token.received().await, 3);
}

async fn a_signature_made_over_a_different_query_string_is_refused(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let a1 = format!("{CONFIGURED}?a=1&b=2");
    let signed = sign_all(&[Signing::form(TOKEN, &a1, &SMS), Signing::json(TOKEN, &a1, EVENT)]).await;
    let (form, json) = (&signed[0], &signed[1]);
    let json_query = json.query().to_owned();

    source
        .check(&[
            Attempt::form("another value", form, &SMS, MISMATCH).query("a=2&b=2"),
            Attempt::form("the same pairs in another order", form, &SMS, MISMATCH).query("b=2&a=1"),
            Attempt::form("one more pair", form, &SMS, MISMATCH).query("a=1&b=2&c=3"),
            Attempt::form("the value spelled percent-encoded", form, &SMS, MISMATCH).query("a=%31&b=2"),
            Attempt::form("no query", form, &SMS, MISMATCH).query(""),
            Attempt::json("a pair added after bodySHA256", json, EVENT, MISMATCH).query(&format!("{json_query}&c=3")),
            Attempt::json("a pair taken out before bodySHA256", json, EVENT, MISMATCH)
                .query(&json_query.replace("a=1&", "")),
            Attempt::form("the signed query", form, &SMS, Verdict::Accepted),
            Attempt::json("the signed query with bodySHA256", json, EVENT, Verdict::Accepted),
        ])
        .await;
    assert_eq!(source.received().await, 2);
}

async fn the_host_header_never_stands_in_for_the_configured_url(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let evil = "https://evil.example/twilio/status";
    let listening = app.url(&source.path);
    let signed = sign_all(&[
        Signing::json(TOKEN, CONFIGURED, EVENT),
        Signing::json(TOKEN, evil, EVENT),
        Signing::json(TOKEN, &listening, EVENT),
        Signing::json(TOKEN, &format!("https://hooks.example.com{}", source.path), EVENT),
    ])
    .await;

    source
        .check(&[
            Attempt::json("signed for the host it claims", &signed[1], EVENT, MISMATCH).host("evil.example"),
            Attempt::json("signed for the address the server listens on", &signed[2], EVENT, MISMATCH),
            Attempt::json("signed for the delivery path on the configured host", &signed[3], EVENT, MISMATCH)
                .host("hooks.example.com"),
            Attempt::json(
                "signed for the configured URL, sent with another Host",
                &signed[0],
                EVENT,
                Verdict::Accepted,
            )
            .host("evil.example"),
        ])
        .await;
}

async fn the_port_variants_are_the_two_the_library_tries(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let plain = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let odd_port = "https://hooks.example.com:8443/twilio/status";
    let with_port = Source::create(&app, &owner, odd_port, &[TOKEN]).await;
    let signed = sign_all(&[
        Signing::json(TOKEN, "https://hooks.example.com:443/twilio/status", EVENT),
        Signing::json(TOKEN, odd_port, EVENT),
        Signing::json(TOKEN, "https://hooks.example.com:80/twilio/status", EVENT),
        Signing::json(TOKEN, CONFIGURED, EVENT),
    ])
    .await;
    let (default_port, odd, wrong_default, none) = (&signed[0], &signed[1], &signed[2], &signed[3]);

    plain
        .check(&[
            Attempt::json("a port the URL does not have", odd, EVENT, MISMATCH),
            Attempt::json("http's default port on an https URL", wrong_default, EVENT, MISMATCH),
            Attempt::json("the default port written out", default_port, EVENT, Verdict::Accepted),
        ])
        .await;
    with_port
        .check(&[
            Attempt::json("the default port instead of the URL's own", default_port, EVENT, MISMATCH),
            // Both libraries drop whatever port the URL has before trying without one.
            Attempt::json("the URL's port left out", none, EVENT, Verdict::Accepted),
            Attempt::json("the URL's own port", odd, EVENT, Verdict::Duplicate),
        ])
        .await;
}

async fn a_json_body_without_a_well_formed_hash_in_the_signed_url_is_refused(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let source = Source::create(&app, &owner, CONFIGURED, &[TOKEN]).await;
    let signed = sign_one(Signing::json(TOKEN, CONFIGURED, EVENT)).await;
    // URLs Twilio never signs for a JSON body, signed by the library all the same.
    let upper = format!("{CONFIGURED}?{}", signed.query().to_uppercase().replace("BODYSHA256", "bodySHA256"));
    let doubled = format!("{}&{}", signed.url, signed.query());
    let unsigned = sign_all(&[
        Signing::form(TOKEN, CONFIGURED, &[]),
        Signing::form(TOKEN, &upper, &[]),
        Signing::form(TOKEN, &doubled, &[]),
    ])
    .await;

    source
        .check(&[
            // The library raises on a JSON body whose URL has no bodySHA256: a refusal.
            Attempt::json("no bodySHA256 at all", &unsigned[0], EVENT, MISMATCH),
            Attempt::json("the hash in upper case", &unsigned[1], EVENT, MALFORMED),
            Attempt::json("the signature for the bodySHA256 URL, without it", &signed, EVENT, MISMATCH).query(""),
            Attempt::json("an empty signature", &signed, EVENT, MISSING).signature(""),
        ])
        .await;
    // Python reads the first of two bodySHA256 parameters and accepts; this server refuses the
    // URL as malformed. Twilio never sends two, so only the server's answer is checked here.
    let twice = Attempt::json("two bodySHA256 parameters", &unsigned[2], EVENT, MALFORMED);
    let (status, answer) = source.send(&twice).await;
    assert_eq!((status, refusal_code(status, &answer)), (401, "webhook_signature_malformed"), "{answer}");
    assert_eq!(source.received().await, 0);
}

async fn a_configured_url_with_a_query_is_checked_with_the_query_the_request_carries(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let configured = format!("{CONFIGURED}?tenant=acme");
    let source = Source::create(&app, &owner, &configured, &[TOKEN]).await;
    let signed = sign_all(&[Signing::json(TOKEN, &configured, EVENT), Signing::form(TOKEN, &configured, &SMS)]).await;
    assert!(signed[0].query().starts_with("tenant=acme&bodySHA256="), "{:?}", signed[0]);

    source
        .check(&[
            Attempt::json("Twilio's JSON delivery to it", &signed[0], EVENT, Verdict::Accepted),
            Attempt::form("Twilio's form post to it", &signed[1], &SMS, Verdict::Accepted),
            Attempt::form("the form post without the query", &signed[1], &SMS, MISMATCH).query(""),
        ])
        .await;
}

backend_tests!(
    a_json_delivery_signed_with_body_sha256_by_the_official_library_is_accepted_once,
    a_json_body_changed_after_signing_is_refused_and_nothing_is_processed,
    a_form_post_signed_by_the_official_library_is_accepted,
    the_hmac_sha256_signature_setting_is_accepted_as_the_library_reads_it,
    a_signature_made_over_a_different_query_string_is_refused,
    the_host_header_never_stands_in_for_the_configured_url,
    the_port_variants_are_the_two_the_library_tries,
    a_json_body_without_a_well_formed_hash_in_the_signed_url_is_refused,
    a_configured_url_with_a_query_is_checked_with_the_query_the_request_carries,
);
