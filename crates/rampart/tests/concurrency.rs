//! Concurrency over HTTP against the real binary. 1, 4 and 16 clients write at once — mixed writes
//! in one workspace, project creation in separate workspaces, sign-ups — while the server's own
//! outbox worker mails and delivers every project event to a local receiver. On both stores
//! (PostgreSQL as the unprivileged runtime role, with Redis): no answer is a 5xx, every write
//! the server acknowledged reads back, and every outbox action ran exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use testkit::receiver::Receiver;
use testkit::{Backend, TestDb};

/// Concurrent clients, one level after the other.
const LEVELS: [usize; 3] = [1, 4, 16];
/// Operations per level and workload, shared among that level's clients.
const OPS: usize = 48;
/// Sign-ups per level.
const SIGNUPS: usize = 12;
/// Owners of the separate workspaces.
const OWNERS: usize = 4;
/// How long the test waits for a mail before failing.
const MAIL_DEADLINE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "violet ocean ladder 42";

/// One answer the server gave.
#[derive(Clone)]
struct Answer {
    what: String,
    status: u16,
    body: Value,
}

/// The running server and what every client saw.
struct Run {
    client: Client,
    base: String,
    answers: Mutex<Vec<Answer>>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered {}: {}", self.what, self.status, self.body)
    }
}

impl Run {
    /// Sends a JSON request as `token` (none: anonymous) and keeps the answer.
    async fn call(&self, what: &str, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        let answer = Answer { what: what.to_owned(), status, body };
        self.answers.lock().unwrap().push(answer.clone());
        answer
    }

    /// Signs up a fresh address, follows the mailed link and takes an access token.
    async fn account(&self) -> String {
        let email = testkit::unique_email();
        let creds = json!({"email": email, "password": PASSWORD});
        assert_eq!(
            self.call("signup", None, Method::POST, "/api/v1/auth/signup", Some(creds.clone())).await.status,
            202
        );
        let token = mail_to(&email).await.link_token().expect("a token in the verification link");
        let verify = Some(json!({"token": token}));
        assert_eq!(self.call("verify", None, Method::POST, "/api/v1/auth/verify-email", verify).await.status, 204);
        let grant = self.call("token", None, Method::POST, "/api/v1/auth/token", Some(creds)).await;
        assert_eq!(grant.status, 200, "{:?}", grant.body);
        grant.body["access_token"].as_str().unwrap().to_owned()
    }

    /// A workspace of `token`'s with an endpoint subscribed to every project event.
    async fn workspace(&self, token: &str, receiver: &Receiver) -> String {
        let made = self
            .call("workspace", Some(token), Method::POST, "/api/v1/workspaces", Some(json!({"name": "Load"})))
            .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        let ws = made.body["id"].as_str().unwrap().to_owned();
        let endpoint = json!({
            "url": receiver.url(&format!("/hooks/{ws}")),
            "event_types": ["project.created", "project.updated", "project.deleted"],
        });
        let path = format!("/api/v1/workspaces/{ws}/webhook-endpoints");
        let made = self.call("endpoint", Some(token), Method::POST, &path, Some(endpoint)).await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        ws
    }
}

/// The one mail to `to`, waiting for the server's outbox to send it (polled, with a deadline).
async fn mail_to(to: &str) -> testkit::ReceivedMail {
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    loop {
        poll.tick().await;
        if let Some(mail) = testkit::mails_to(to).pop() {
            return mail;
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail to {to} within {MAIL_DEADLINE:?}");
    }
}

/// What a project should look like at the end: its workspace and final name, or gone.
#[derive(Debug, Clone)]
struct Expected {
    ws: String,
    name: Option<String>,
}

/// Runs `ops` operations on `clients` concurrent tasks; each operation gets its index.
async fn concurrently<F, Fut>(clients: usize, ops: usize, op: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ops {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client task panicked");
    }
}

async fn concurrent_clients_get_no_5xx_every_acknowledged_write_reads_back_and_every_action_runs_once(
    backend: Backend,
) {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (smtp, _) = testkit::smtp_sink();
    let mut cmd = support::rampart(dir.path());
    cmd.env("RAMPART_ENV", "test")
        // The lowest work factor allowed: sign-ups are load here, not the subject.
        .env("RAMPART__AUTH__BCRYPT_COST", "10")
        .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", "0")
        .env("RAMPART__HTTP__RATE_LIMIT_PER_CLIENT_PER_SEC", "0")
        .env("RAMPART__MAIL__SMTP_URL", smtp)
        .env("RAMPART__OUTBOX__POLL_INTERVAL_MS", "20")
        .env("RAMPART__EGRESS__TEST_EXCEPTIONS", format!("[\"{}\"]", receiver.addr));
    let _db = match backend {
        // The embedded default: no database configured at all.
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = TestDb::new(Backend::Postgres).await;
            cmd.env("DATABASE_URL", db.runtime_url.expose_secret())
                .env("REDIS_URL", testkit::redis_url())
                .env("RAMPART__REDIS__KEY_PREFIX", format!("rampart-test-{}:", uuid::Uuid::new_v4().simple()));
            Some(db)
        }
    };
    let server = support::serve(cmd).expect("rampart serve starts");
    let run = Arc::new(Run { client: Client::new(), base: server.base_url.clone(), answers: Mutex::new(Vec::new()) });

    let mut owners = Vec::new();
    for _ in 0..OWNERS {
        let token = run.account().await;
        let ws = run.workspace(&token, &receiver).await;
        owners.push((token, ws));
    }
    let owners = Arc::new(owners);
    let projects: Arc<Mutex<BTreeMap<String, Expected>>> = Arc::default();
    let mut signed_up = Vec::new();

    for clients in LEVELS {
        // Mixed writes in one workspace: create, list, rename, and delete every third.
        concurrently(clients, OPS, {
            let (run, owners, projects) = (run.clone(), owners.clone(), projects.clone());
            move |i| {
                let (run, owners, projects) = (run.clone(), owners.clone(), projects.clone());
                async move {
                    let (token, ws) = &owners[0];
                    let base = format!("/api/v1/workspaces/{ws}/projects");
                    let name = format!("mixed {clients}/{i}");
                    let made = run.call("create", Some(token), Method::POST, &base, Some(json!({"name": name}))).await;
                    let Some(id) = made.body["id"].as_str().map(str::to_owned) else { return };
                    projects.lock().unwrap().insert(id.clone(), Expected { ws: ws.clone(), name: Some(name.clone()) });
                    run.call("list", Some(token), Method::GET, &base, None).await;
                    let path = format!("{base}/{id}");
                    let renamed = format!("{name} renamed");
                    let patch = Some(json!({"name": renamed}));
                    if run.call("rename", Some(token), Method::PATCH, &path, patch).await.status == 200 {
                        projects.lock().unwrap().insert(id.clone(), Expected { ws: ws.clone(), name: Some(renamed) });
                    }
                    if i % 3 == 0 && run.call("delete", Some(token), Method::DELETE, &path, None).await.status == 204 {
                        projects.lock().unwrap().insert(id, Expected { ws: ws.clone(), name: None });
                    }
                }
            }
        })
        .await;

        // Separate workspaces: each client's projects go to the owners in turn.
        concurrently(clients, OPS, {
            let (run, owners, projects) = (run.clone(), owners.clone(), projects.clone());
            move |i| {
                let (run, owners, projects) = (run.clone(), owners.clone(), projects.clone());
                async move {
                    let (token, ws) = &owners[i % OWNERS];
                    let name = format!("separate {clients}/{i}");
                    let path = format!("/api/v1/workspaces/{ws}/projects");
                    let made = run.call("create", Some(token), Method::POST, &path, Some(json!({"name": name}))).await;
                    if let Some(id) = made.body["id"].as_str() {
                        projects.lock().unwrap().insert(id.to_owned(), Expected { ws: ws.clone(), name: Some(name) });
                    }
                }
            }
        })
        .await;

        // Sign-ups.
        let emails: Arc<Vec<String>> = Arc::new((0..SIGNUPS).map(|_| testkit::unique_email()).collect());
        concurrently(clients, SIGNUPS, {
            let (run, emails) = (run.clone(), emails.clone());
            move |i| {
                let (run, emails) = (run.clone(), emails.clone());
                async move {
                    let creds = json!({"email": emails[i], "password": PASSWORD});
                    run.call("signup", None, Method::POST, "/api/v1/auth/signup", Some(creds)).await;
                }
            }
        })
        .await;
        signed_up.extend(emails.iter().cloned());
    }

    // No 5xx, and nothing refused: every request here was valid.
    let answers = run.answers.lock().unwrap().clone();
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status >= 500).collect();
    assert!(failed.is_empty(), "{} of {} answers were 5xx: {failed:#?}", failed.len(), answers.len());
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status >= 400).collect();
    assert!(refused.is_empty(), "valid requests refused: {refused:#?}");

    // Every acknowledged write reads back as the last acknowledgement left it.
    let projects = projects.lock().unwrap().clone();
    assert_eq!(projects.len(), LEVELS.len() * 2 * OPS, "every create was acknowledged");
    let token_of: BTreeMap<&str, &str> = owners.iter().map(|(t, w)| (w.as_str(), t.as_str())).collect();
    for (id, expected) in &projects {
        let path = format!("/api/v1/workspaces/{}/projects/{id}", expected.ws);
        let found = run.call("read back", Some(token_of[expected.ws.as_str()]), Method::GET, &path, None).await;
        match &expected.name {
            Some(name) => {
                assert_eq!(found.status, 200, "{id}: {:?}", found.body);
                assert_eq!(found.body["name"], json!(name), "{id}");
            }
            None => assert_eq!(found.status, 404, "{id} was deleted: {:?}", found.body),
        }
    }

    // Every project event reaches its endpoint: one creation each, a rename for each mixed one,
    // a deletion for every third.
    let mixed = LEVELS.len() * OPS;
    let deleted = projects.values().filter(|p| p.name.is_none()).count();
    let events = projects.len() + mixed + deleted;
    receiver.wait_for(events).await;
    // Every verification mail is sent, then the server stops: nothing is sent after this.
    for email in &signed_up {
        mail_to(email).await;
    }
    let (status, log) = server.stop();
    assert!(status.success(), "graceful shutdown: {status}");
    assert!(!log.contains("database is locked"), "a writer failed for contention");

    // Exactly once: as many deliveries as events, each message id once, each to its workspace.
    let hooks = receiver.hooks();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for hook in &hooks {
        *ids.entry(hook.header("webhook-id").to_owned()).or_default() += 1;
    }
    let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "deliveries sent more than once: {repeated:?}");
    assert_eq!(hooks.len(), events, "one delivery per event");
    let mut per_ws: BTreeMap<String, usize> = BTreeMap::new();
    for hook in &hooks {
        *per_ws.entry(hook.path.trim_start_matches("/hooks/").to_owned()).or_default() += 1;
    }
    let mut expected_per_ws: BTreeMap<String, usize> = BTreeMap::new();
    for p in projects.values() {
        *expected_per_ws.entry(p.ws.clone()).or_default() += 1 + usize::from(p.name.is_none());
    }
    *expected_per_ws.entry(owners[0].1.clone()).or_default() += mixed;
    assert_eq!(per_ws, expected_per_ws, "each workspace's events went to its own endpoint");
    for email in &signed_up {
        assert_eq!(testkit::mails_to(email).len(), 1, "one verification mail to {email}");
    }
    let emails: BTreeSet<&String> = signed_up.iter().collect();
    assert_eq!(emails.len(), LEVELS.len() * SIGNUPS);
}

testkit::backend_tests!(concurrent_clients_get_no_5xx_every_acknowledged_write_reads_back_and_every_action_runs_once);
