//! Dependency outages under a running `rampart serve`: Redis killed and started again, the
//! PostgreSQL cluster stopped and started again. Requests that need the missing dependency are
//! answered 503 with `Retry-After` — never 500, never 401 for a valid credential — requests that
//! do not need it still succeed, and afterwards the same credentials work again without a
//! restart, with nothing queued lost. The servers here belong to the test
//! ([`testkit::services`]), so stopping them disturbs no other test.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use testkit::services::{PgCluster, RedisServer};
use testkit::{Backend, TestDb};

const PASSWORD: &str = "violet ocean ladder 42";
/// How long recovery may take before the test fails.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

struct Api {
    client: Client,
    base: String,
}

/// What a request got, and how long it took (printed, never asserted on).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

impl Api {
    async fn send(&self, method: Method, path: &str, auth: Auth<'_>, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::Cookie(cookie) => req.header("cookie", cookie),
            Auth::ApiKey(key) => req.header("x-api-key", key),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        let started = Instant::now();
        let resp = req.send().await.expect("the server answers");
        let took = started.elapsed();
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body = resp.json().await.unwrap_or(Value::Null);
        Answer { status, retry_after, body, took }
    }

    /// Signs up, follows the mailed link, and takes a token pair: the access token.
    async fn account(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": PASSWORD});
        let made = self.send(Method::POST, "/api/v1/auth/signup", Auth::None, Some(creds.clone())).await;
        assert_eq!(made.status, 202, "{made:?}");
        let token = mail_to(email).await.link_token().unwrap();
        let verified =
            self.send(Method::POST, "/api/v1/auth/verify-email", Auth::None, Some(json!({"token": token}))).await;
        assert_eq!(verified.status, 204, "{verified:?}");
        let grant = self.send(Method::POST, "/api/v1/auth/token", Auth::None, Some(creds)).await;
        assert_eq!(grant.status, 200, "{grant:?}");
        grant.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs in with the password form: the session cookie (`name=value`).
    async fn cookie_session(&self, email: &str) -> String {
        let resp = self
            .client
            .post(format!("{}/api/v1/auth/signin", self.base))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let set = resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned());
        let session = set.into_iter().find(|c| c.starts_with("__Host-rampart_session=")).expect("a session cookie");
        session.split(';').next().unwrap().to_owned()
    }

    /// Polls `path` until it answers 200 (the dependency is back), failing after the deadline.
    async fn until_ok(&self, path: &str, auth: Auth<'_>) -> Duration {
        let started = Instant::now();
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            let answer = self.send(Method::GET, path, auth, None).await;
            if answer.status == 200 {
                return started.elapsed();
            }
            assert_ne!(answer.status, 401, "a valid credential was refused during recovery: {answer:?}");
            assert!(answer.status != 500, "recovery answered 500: {answer:?}");
            assert!(started.elapsed() < RECOVERY_DEADLINE, "{path} still failing: {answer:?}");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
    ApiKey(&'a str),
}

/// The newest mail to `to`, polled for with a deadline.
async fn mail_to(to: &str) -> testkit::ReceivedMail {
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if let Some(mail) = testkit::mails_to(to).pop() {
            return mail;
        }
        assert!(started.elapsed() < RECOVERY_DEADLINE * 2, "no mail to {to}");
    }
}

/// Asserts a 503 `code` with a `Retry-After`, and prints how long it took.
fn assert_unavailable(what: &str, answer: &Answer, code: &str) {
    assert_eq!(answer.status, 503, "{what}: {answer:?}");
    assert_eq!(answer.body["code"], code, "{what}: {answer:?}");
    let wait: u64 = answer.retry_after.as_deref().expect("a Retry-After header").parse().unwrap();
    assert!(wait >= 1, "{what}: Retry-After {wait}");
    eprintln!("{what}: 503 {code} in {:?}", answer.took);
}

fn server_env(cmd: &mut std::process::Command) {
    let (smtp, _) = testkit::smtp_sink();
    cmd.env("RAMPART_ENV", "test")
        .env("RAMPART__AUTH__BCRYPT_COST", "10")
        .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", "30")
        .env("RAMPART__MAIL__SMTP_URL", smtp)
        .env("RAMPART__OUTBOX__POLL_INTERVAL_MS", "50")
        .env("RAMPART__OUTBOX__LEASE_SECS", "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_while_redis_is_down_what_needs_it_is_answered_503_and_afterwards_the_same_credentials_work() {
    let mut redis = RedisServer::start();
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::rampart(dir.path());
    server_env(&mut cmd);
    cmd.env("DATABASE_URL", db.runtime_url.expose_secret()).env("REDIS_URL", redis.url());
    let server = support::serve(cmd).expect("rampart serve starts");
    let api = Api { client: Client::new(), base: server.base_url.clone() };
    let email = testkit::unique_email();
    let bearer = api.account(&email).await;
    let cookie = api.cookie_session(&email).await;
    assert_eq!(api.send(Method::GET, "/api/v1/me", Auth::Cookie(&cookie), None).await.status, 200);
    // An API key whose per-minute and monthly caps are counted in Redis.
    let made = api.send(Method::POST, "/api/v1/workspaces", Auth::Bearer(&bearer), Some(json!({"name": "Keys"}))).await;
    assert_eq!(made.status, 201, "{made:?}");
    let projects = format!("/api/v1/workspaces/{}/projects", made.body["id"].as_str().unwrap());
    let keys = projects.replace("/projects", "/api-keys");
    let made = api
        .send(Method::POST, &keys, Auth::Bearer(&bearer), Some(json!({"name": "sync", "scopes": ["projects.read"]})))
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let key = made.body["key"].as_str().unwrap().to_owned();
    assert_eq!(api.send(Method::GET, &projects, Auth::ApiKey(&key), None).await.status, 200);

    redis.stop();
    // The cookie session lives in Redis: its requests wait at most the Redis timeout, then 503.
    for round in 0..3 {
        let me = api.send(Method::GET, "/api/v1/me", Auth::Cookie(&cookie), None).await;
        assert_unavailable(&format!("GET /me by cookie, round {round}"), &me, "session_store_unavailable");
    }
    let signin = api
        .send(Method::POST, "/api/v1/auth/signin", Auth::None, Some(json!({"email": email, "password": PASSWORD})))
        .await;
    assert_unavailable("POST /auth/signin", &signin, "session_store_unavailable");
    let ready = api.send(Method::GET, "/readyz", Auth::None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    // Key caps fail closed: what cannot be counted is not let through.
    let keyed = api.send(Method::GET, &projects, Auth::ApiKey(&key), None).await;
    assert_unavailable("GET /projects by API key", &keyed, "session_store_unavailable");
    // What does not need Redis goes on: bearer tokens (the request limit fails open), token
    // grants (their attempt throttle counts in process meanwhile) and sign-ups with their mail.
    let me = api.send(Method::GET, "/api/v1/me", Auth::Bearer(&bearer), None).await;
    assert_eq!(me.status, 200, "{me:?}");
    eprintln!("GET /me by bearer during the outage: 200 in {:?}", me.took);
    let grant = api
        .send(Method::POST, "/api/v1/auth/token", Auth::None, Some(json!({"email": email, "password": PASSWORD})))
        .await;
    assert_eq!(grant.status, 200, "{grant:?}");
    let late = testkit::unique_email();
    let signup = api
        .send(Method::POST, "/api/v1/auth/signup", Auth::None, Some(json!({"email": late, "password": PASSWORD})))
        .await;
    assert_eq!(signup.status, 202, "{signup:?}");

    redis.resume();
    let took = api.until_ok("/api/v1/me", Auth::Cookie(&cookie)).await;
    eprintln!("the cookie session works again {took:?} after Redis answers");
    assert_eq!(api.send(Method::GET, "/readyz", Auth::None, None).await.status, 200);
    assert_eq!(api.send(Method::GET, &projects, Auth::ApiKey(&key), None).await.status, 200);
    assert!(!api.cookie_session(&email).await.is_empty());
    // The mail queued during the outage was sent once.
    mail_to(&late).await;
    let (status, _) = server.stop();
    assert!(status.success());
    assert_eq!(testkit::mails_to(&late).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_while_the_database_is_down_requests_are_answered_503_and_afterwards_the_same_token_works() {
    let cluster = PgCluster::start();
    let db = TestDb::on_cluster(&cluster.admin_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::rampart(dir.path());
    server_env(&mut cmd);
    cmd.env("DATABASE_URL", db.runtime_url.expose_secret());
    let server = support::serve(cmd).expect("rampart serve starts");
    let api = Api { client: Client::new(), base: server.base_url.clone() };
    let bearer = api.account(&testkit::unique_email()).await;
    // Mail queued just before the outage: sent before it or after, never lost.
    let queued: Vec<String> = (0..3).map(|_| testkit::unique_email()).collect();
    for email in &queued {
        let made = api
            .send(Method::POST, "/api/v1/auth/signup", Auth::None, Some(json!({"email": email, "password": PASSWORD})))
            .await;
        assert_eq!(made.status, 202);
    }

    cluster.stop();
    for round in 0..3 {
        let me = api.send(Method::GET, "/api/v1/me", Auth::Bearer(&bearer), None).await;
        assert_unavailable(&format!("GET /me, round {round}"), &me, "storage_unavailable");
    }
    let made = api
        .send(Method::POST, "/api/v1/workspaces", Auth::Bearer(&bearer), Some(json!({"name": "During the outage"})))
        .await;
    assert_unavailable("POST /workspaces", &made, "storage_unavailable");
    let health = api.send(Method::GET, "/healthz", Auth::None, None).await;
    assert_eq!(health.status, 200, "liveness does not need the database: {health:?}");
    assert_eq!(api.send(Method::GET, "/readyz", Auth::None, None).await.status, 503);

    cluster.resume();
    let took = api.until_ok("/api/v1/me", Auth::Bearer(&bearer)).await;
    eprintln!("the same bearer token works again {took:?} after PostgreSQL accepts connections");
    let made = api
        .send(Method::POST, "/api/v1/workspaces", Auth::Bearer(&bearer), Some(json!({"name": "After the outage"})))
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    for email in &queued {
        mail_to(email).await;
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    // Mail is at least once: a mail the worker sent as the database went away, before it could
    // record the send, goes again after its lease; none is lost.
    for email in &queued {
        let sent = testkit::mails_to(email).len();
        assert!((1..=2).contains(&sent), "{sent} verification mails to {email}");
    }
}
