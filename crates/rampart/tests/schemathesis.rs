//! Schemathesis (PyPI, the version pinned in `openapi/schemathesis/requirements.txt`) over every
//! operation of the committed `openapi/openapi.json`, against the real `rampart` binary on
//! PostgreSQL as the runtime role with Redis. Users and real resources are prepared here over
//! HTTP and handed to the hooks (`openapi/schemathesis/hooks.py`), which substitute the real ids
//! for the path parameters and take a fresh credential before every call. Any server error,
//! response that breaks its schema, wrong content type or status the description does not
//! document fails the test with schemathesis's report, a table of the undocumented statuses and
//! their error codes, and the server's error log.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, Method};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use testkit::receiver::Receiver;
use testkit::storage::ConnectionTrait;
use testkit::{Backend, TestDb};

const PASSWORD: &str = "violet ocean ladder 42";
/// The Stripe signing secret of the prepared webhook sources; the hooks sign deliveries with it.
const SOURCE_SECRET: &str = "whsec_rampart_schemathesis";
/// How long the preparation waits for a mail before failing.
const MAIL_DEADLINE: Duration = Duration::from_secs(60);
/// The hard cap on the schemathesis run, whatever its configuration says.
const RUN_CAP: Duration = Duration::from_secs(300);
/// The users the hooks act as (see `ACTORS` in hooks.py); `member` and `member_doomed` join the
/// main workspace, `admin` is a platform Admin.
const USERS: [&str; 12] = [
    "main",
    "member",
    "member_doomed",
    "admin",
    "mfa",
    "reauth",
    "password",
    "sign_out",
    "revoke_all",
    "revoke_others",
    "revoke_session",
    "revoke_token",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harness_dir() -> PathBuf {
    workspace_root().join("openapi/schemathesis")
}

/// The schemathesis version `requirements.txt` pins.
fn pinned_version() -> String {
    let requirements = std::fs::read_to_string(harness_dir().join("requirements.txt")).expect("requirements.txt");
    requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("schemathesis=="))
        .expect("requirements.txt pins schemathesis==<version>")
        .trim()
        .to_owned()
}

/// Fails with the install command unless the pinned schemathesis is importable.
fn require_schemathesis() {
    let pinned = pinned_version();
    let install = "python3 -m pip install -r openapi/schemathesis/requirements.txt";
    let out = std::process::Command::new("python3")
        .args(["-c", "import importlib.metadata as m, schemathesis.cli; print(m.version('schemathesis'))"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run schemathesis ({e}); then run `{install}`"));
    let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && found == pinned,
        "schemathesis {pinned} is not installed (found: {}): install it with `{install}`\n{}",
        if found.is_empty() { "none" } else { &found },
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `nth` mail to `to` (0: the first), waiting for the server's outbox to send it (polled,
/// with a deadline).
async fn mail_to(to: &str, nth: usize) -> testkit::ReceivedMail {
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    loop {
        poll.tick().await;
        if let Some(mail) = testkit::mails_to(to).into_iter().nth(nth) {
            return mail;
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail {nth} to {to} within {MAIL_DEADLINE:?}");
    }
}

/// The running server, as the preparation calls it.
struct Api {
    client: Client,
    base: String,
}

impl Api {
    /// Sends a JSON request as `token` (none: anonymous) and expects `status`; the JSON body.
    async fn expect(&self, status: u16, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let got = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "preparing the fixtures: {method} {path} answered {got}: {body}");
        body
    }

    /// Signs up a fresh address, follows the mailed link and takes a token pair: the address,
    /// the user id and an access token.
    async fn account(&self) -> (String, String, String) {
        let email = testkit::unique_email();
        let creds = json!({"email": email, "password": PASSWORD});
        self.expect(202, None, Method::POST, "/api/v1/auth/signup", Some(creds.clone())).await;
        let token = mail_to(&email, 0).await.link_token().expect("a token in the verification link");
        self.expect(204, None, Method::POST, "/api/v1/auth/verify-email", Some(json!({"token": token}))).await;
        let grant = self.expect(200, None, Method::POST, "/api/v1/auth/token", Some(creds)).await;
        let access = grant["access_token"].as_str().expect("an access token").to_owned();
        let me = self.expect(200, Some(&access), Method::GET, "/api/v1/me", None).await;
        (email, me["id"].as_str().expect("a user id").to_owned(), access)
    }

    /// POSTs `body` under the workspace `ws` as `token`, expecting 201; the new resource's id.
    async fn create(&self, token: &str, ws: &str, what: &str, body: Value) -> String {
        let made =
            self.expect(201, Some(token), Method::POST, &format!("/api/v1/workspaces/{ws}/{what}"), Some(body)).await;
        id_of(&made)
    }
}

/// The id in a creation's answer: top level, or in its one nested object.
fn id_of(made: &Value) -> String {
    let nested = made.as_object().and_then(|o| o.values().find_map(|v| v.get("id")));
    made.get("id").or(nested).and_then(Value::as_str).unwrap_or_else(|| panic!("an id in {made}")).to_owned()
}

/// The users (address and password) and the ids the hooks substitute.
async fn prepare(api: &Api, db: &TestDb, receiver: &Receiver) -> Value {
    let mut users = serde_json::Map::new();
    let mut user_ids = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    for name in USERS {
        let (email, id, access) = api.account().await;
        users.insert(name.to_owned(), json!({"email": email, "password": PASSWORD}));
        user_ids.insert(name, id);
        tokens.insert(name, access);
    }
    let main = tokens["main"].as_str();
    let mut ids = BTreeMap::new();
    for name in ["workspace", "workspace_doomed", "workspace_mfa", "workspace_grantee"] {
        let made = api.expect(201, Some(main), Method::POST, "/api/v1/workspaces", Some(json!({"name": name}))).await;
        ids.insert(name, id_of(&made));
    }
    let ws = ids["workspace"].clone();

    // Two members of the main workspace, through invitations accepted from their mails.
    for name in ["member", "member_doomed"] {
        let email = users[name]["email"].as_str().unwrap().to_owned();
        api.create(main, &ws, "invitations", json!({"email": email, "role": "Member"})).await;
        // The second mail, after the verification link.
        let token = mail_to(&email, 1).await.link_token().expect("an invitation token");
        let accept = json!({"workspace_id": ws, "token": token});
        api.expect(200, Some(&tokens[name]), Method::POST, "/api/v1/invitations/accept", Some(accept)).await;
        ids.insert(name, user_ids[name].clone());
    }
    let invitee = testkit::unique_email();
    ids.insert("invitation", api.create(main, &ws, "invitations", json!({"email": invitee, "role": "Member"})).await);

    for name in ["project", "project_doomed"] {
        ids.insert(name, api.create(main, &ws, "projects", json!({"name": name})).await);
    }
    for name in ["connection", "connection_doomed"] {
        let body = json!({
            "provider": "s3",
            "name": name,
            "config": {"bucket": "rampart-schemathesis", "region": "eu-west-1"},
            "secret": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "not-a-real-secret"},
        });
        ids.insert(name, api.create(main, &ws, "connections", body).await);
    }
    for name in ["source", "source_doomed"] {
        let body = json!({"kind": "stripe", "name": name, "secrets": [SOURCE_SECRET]});
        ids.insert(name, api.create(main, &ws, "webhook-sources", body).await);
    }
    for name in ["endpoint", "endpoint_doomed"] {
        let body = json!({"url": receiver.url(&format!("/hooks/{name}")), "event_types": ["*"]});
        ids.insert(name, api.create(main, &ws, "webhook-endpoints", body).await);
    }
    let test = format!("/api/v1/workspaces/{ws}/webhook-endpoints/{}/test", ids["endpoint"]);
    ids.insert("delivery", id_of(&api.expect(201, Some(main), Method::POST, &test, None).await));
    let grant = json!({"grantee_workspace_id": ids["workspace_grantee"], "permission": "projects.read"});
    ids.insert("grant", api.create(main, &ws, "grants", grant).await);
    let key = json!({"name": "schemathesis", "scopes": ["projects.read"]});
    ids.insert("api_key", api.create(main, &ws, "api-keys", key).await);
    for name in ["activity", "activity_doomed"] {
        let body = json!({"app": "editor", "title": format!("Notes {name}"), "body": "Quarterly planning notes"});
        ids.insert(name, api.create(main, &ws, "activity", body).await);
    }

    // A second session of `revoke_session`'s, for `DELETE /auth/sessions/{id}` to end.
    let creds = json!({"email": users["revoke_session"]["email"], "password": PASSWORD});
    let signed_in = api.expect(200, None, Method::POST, "/api/v1/auth/signin", Some(creds)).await;
    ids.insert("session", signed_in["session"]["id"].as_str().expect("a session id").to_owned());

    // A platform Admin, made one by an operator as the owner role (the runtime role cannot).
    let owner = testkit::storage::Db::connect(&db.owner_url, 1).await.expect("the owner role connects");
    let promote = testkit::storage::Statement::from_sql_and_values(
        owner.conn().get_database_backend(),
        "UPDATE users SET platform_level = 80 WHERE email = $1",
        [users["admin"]["email"].as_str().unwrap().into()],
    );
    assert_eq!(owner.conn().execute(promote).await.expect("promoting the admin").rows_affected(), 1);
    owner.close().await.expect("closing the owner connection");
    let actions = api.expect(200, Some(&tokens["admin"]), Method::GET, "/api/v1/admin/outbox", None).await;
    let action = actions.as_array().and_then(|a| a.first()).expect("an outbox action (the mails above)");
    ids.insert("outbox_action", action["id"].as_str().expect("an action id").to_owned());

    json!({"base_url": api.base, "users": users, "ids": ids, "source_secret": SOURCE_SECRET})
}

/// The statuses the description documents, by operation id.
fn documented_statuses() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("openapi/openapi.json")).expect("openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let mut out = BTreeMap::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("a path item").values() {
            if let (Some(id), Some(responses)) = (op["operationId"].as_str(), op["responses"].as_object()) {
                out.insert(id.to_owned(), responses.keys().cloned().collect());
            }
        }
    }
    out
}

/// The failed checks in schemathesis's NDJSON report but undocumented statuses, deduplicated:
/// (operation, failure code, what failed, where). Schema violations name the schema location.
fn failed_checks(events: &Path) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    let text = std::fs::read_to_string(events).unwrap_or_default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        let Some(checks) = event["ScenarioFinished"]["recorder"]["checks"].as_object() else { continue };
        for failure in checks.values().flat_map(|c| c.as_array().cloned().unwrap_or_default()) {
            let failure = &failure["failure_info"]["failure"];
            // Undocumented statuses are tabulated from the hooks' log, with their error codes.
            let Some(code) = failure["code"].as_str().filter(|c| *c != "ST103") else { continue };
            let message = failure["message"].as_str().unwrap_or_default();
            let first = message.lines().next().unwrap_or_default().to_owned();
            let location = message
                .lines()
                .find_map(|l| l.strip_prefix("Schema at "))
                .map(|l| l.trim_end_matches(':').to_owned())
                .unwrap_or_default();
            let op = failure["operation"].as_str().unwrap_or_default().to_owned();
            out.insert((op, code.to_owned(), first, location));
        }
    }
    out
}

/// What the run found, deduplicated: server errors with a curl command each (from the hooks'
/// log), schema violations and other failed checks (from the report), and a table of the
/// statuses the description does not document, with the error codes their bodies carried.
fn findings(answers: &Path, events: &Path) -> String {
    let documented = documented_statuses();
    let mut server_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut statuses: BTreeMap<String, BTreeMap<u16, BTreeSet<String>>> = BTreeMap::new();
    let mut other_methods: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let text = std::fs::read_to_string(answers).unwrap_or_default();
    for line in text.lines() {
        let Ok(answer) = serde_json::from_str::<Value>(line) else { continue };
        let op = answer["operation"].as_str().unwrap_or_default().to_owned();
        let status = answer["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let code = answer["code"].as_str().unwrap_or("(no code)").to_owned();
        if status >= 500 {
            let curl = answer["curl"].as_str().unwrap_or_default().to_owned();
            server_errors.entry(format!("{op} {status} {code}")).or_insert(curl);
        }
        if answer["method"] != answer["declared_method"] {
            other_methods.entry(status).or_default().insert(code);
            continue;
        }
        let listed = documented.get(&op).is_some_and(|s| s.contains(&status.to_string()) || s.contains("default"));
        if !listed {
            statuses.entry(op).or_default().entry(status).or_default().insert(code);
        }
    }
    let codes = |by_status: &BTreeMap<u16, BTreeSet<String>>| {
        let cells: Vec<String> = by_status
            .iter()
            .map(|(status, codes)| format!("{status}: {}", codes.iter().cloned().collect::<Vec<_>>().join(", ")))
            .collect();
        cells.join("; ")
    };
    let mut out = format!("Server errors ({}):\n", server_errors.len());
    for (what, curl) in &server_errors {
        out.push_str(&format!("- {what}: {curl}\n"));
    }
    let checks = failed_checks(events);
    out.push_str(&format!("\nFailed checks other than undocumented statuses ({}):\n", checks.len()));
    for (op, code, what, location) in &checks {
        out.push_str(&format!("- {op} {code} {location}: {what}\n"));
    }
    out.push_str("\nUndocumented statuses (the operation's own method):\n");
    out.push_str("| operation | status: error codes |\n|---|---|\n");
    for (op, by_status) in &statuses {
        out.push_str(&format!("| {op} | {} |\n", codes(by_status)));
    }
    out.push_str(&format!("\nMethods a path does not serve: {}\n", codes(&other_methods)));
    out
}

// Two workers: stopping the server blocks one while the loopback receiver, on the other, takes
// the deliveries the server finishes before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_openapi_description_says_under_schemathesis() {
    require_schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let receiver = Receiver::start().await;
    let (smtp, _) = testkit::smtp_sink();
    let config = format!(
        r#"env = "test"
data_dir = {data_dir:?}

[http]
# Schemathesis sends many requests a second from one address; the per-client budget and the
# sign-in throttle (the hooks sign in before every call) would answer them 429.
rate_limit_per_client_per_sec = 0

[auth]
bcrypt_cost = 10
attempts_per_minute = 0
workspace_creations_per_hour = 0

[database]
url = {database:?}

[redis]
url = {redis:?}
key_prefix = "rampart-test-{prefix}:"

[mail]
smtp_url = {smtp:?}

[outbox]
poll_interval_ms = 20

[egress]
# The prepared webhook endpoints deliver to this loopback receiver.
test_exceptions = ["{receiver}"]
"#,
        data_dir = dir.path().join("data").display().to_string(),
        database = db.runtime_url.expose_secret(),
        redis = testkit::redis_url(),
        prefix = uuid::Uuid::new_v4().simple(),
        receiver = receiver.addr,
    );
    std::fs::write(dir.path().join("rampart.toml"), config).unwrap();
    let server =
        support::serve(support::rampart(dir.path())).unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"));
    let api = Api { client: Client::new(), base: server.base_url.clone() };

    let fixtures = prepare(&api, &db, &receiver).await;
    let fixtures_path = dir.path().join("fixtures.json");
    std::fs::write(&fixtures_path, serde_json::to_vec_pretty(&fixtures).unwrap()).unwrap();
    let log_path = dir.path().join("answers.jsonl");
    let events_path = dir.path().join("events.ndjson");
    let report_path = dir.path().join("report.txt");
    let report = std::fs::File::create(&report_path).unwrap();

    let harness = harness_dir();
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(harness.join("schemathesis.toml"))
        .args(["run", "--url", &server.base_url, "--report", "ndjson", "--report-ndjson-path"])
        .arg(&events_path)
        .arg(workspace_root().join("openapi/openapi.json"))
        .current_dir(&harness)
        .env("RAMPART_SCHEMATHESIS_FIXTURES", &fixtures_path)
        .env("RAMPART_SCHEMATHESIS_LOG", &log_path)
        // Nothing is written beside the hooks: no bytecode, no hypothesis directory.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HYPOTHESIS_STORAGE_DIRECTORY", dir.path().join("hypothesis"))
        .stdin(std::process::Stdio::null())
        .stdout(report.try_clone().unwrap())
        .stderr(report)
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs schemathesis");
    let status = match tokio::time::timeout(RUN_CAP, child.wait()).await {
        Ok(status) => Some(status.expect("schemathesis ends")),
        Err(_) => {
            child.kill().await.expect("stopping schemathesis");
            None
        }
    };
    let elapsed = started.elapsed();
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    let findings = findings(&log_path, &events_path);
    let (_, server_log) = server.stop();
    let errors: Vec<&str> = server_log.lines().filter(|l| l.contains(r#""level":"ERROR""#)).collect();
    let verdict = match status {
        Some(s) if s.success() => return,
        Some(s) => format!("schemathesis failed ({s}) after {elapsed:.0?}"),
        None => format!("schemathesis was stopped at the {RUN_CAP:?} cap"),
    };
    panic!(
        "{verdict}\n\n{report}\n\nFindings, deduplicated:\n{findings}\nThe server's error log:\n{}",
        errors.join("\n")
    );
}
