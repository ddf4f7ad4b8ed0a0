//! Test harness: a throwaway database per test (PostgreSQL cloned from a migrated template and
//! reached as the unprivileged runtime role, or a fresh SQLite file), and the real server bound
//! to port 0.
//!
//! PostgreSQL and Redis come from `RAMPART_TEST_DATABASE_URL` (a role that may create roles and
//! databases) and `RAMPART_TEST_REDIS_URL`; `cargo xtask test` starts throwaway servers and sets
//! both. When they are missing the PostgreSQL tests fail with the command to run: they never skip.

use std::sync::Arc;

use anyhow::Context as _;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

pub mod conformance;
pub mod oidc;
pub mod receiver;
pub mod services;

pub use api;
pub use auth;
pub use storage;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const MISSING_PG: &str = "RAMPART_TEST_DATABASE_URL is not set. Run the suite with `cargo xtask test`, which starts throwaway PostgreSQL and Redis servers (install them with `apt-get install -y postgresql redis-server`), or point RAMPART_TEST_DATABASE_URL at a PostgreSQL role that can create roles and databases.";
const MISSING_REDIS: &str = "RAMPART_TEST_REDIS_URL is not set. Run the suite with `cargo xtask test` (install Redis with `apt-get install -y redis-server`), or point RAMPART_TEST_REDIS_URL at a Redis server.";

const BOOTSTRAP_ROLES: &str = include_str!("../../../deploy/postgres/bootstrap-roles.sql");
/// Password the harness gives the test roles, for clusters that do not use trust authentication.
const TEST_ROLE_PASSWORD: &str = "rampart-test-only";
/// Serialises template creation across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x7465_6d70_6c61_7465;

/// The PostgreSQL admin URL for tests; panics with the install command when absent.
#[allow(clippy::disallowed_methods)] // The harness variables are the tests' configuration.
pub fn pg_admin_url() -> String {
    std::env::var("RAMPART_TEST_DATABASE_URL").expect(MISSING_PG)
}

/// The Redis URL for tests; panics with the install command when absent.
#[allow(clippy::disallowed_methods)] // The harness variables are the tests' configuration.
pub fn redis_url() -> String {
    std::env::var("RAMPART_TEST_REDIS_URL").expect(MISSING_REDIS)
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub backend: Backend,
    /// URL for the server: the runtime role on PostgreSQL.
    pub runtime_url: SecretString,
    /// URL of the owner role (PostgreSQL) or the same file (SQLite), for migrations and fixtures.
    pub owner_url: SecretString,
    pg_name: Option<String>,
    /// The admin URL of the cluster the database lives in (PostgreSQL).
    pg_admin: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("backend", &self.backend).field("pg_name", &self.pg_name).finish()
    }
}

fn with_user_and_db(admin: &str, user: &str, db: &str) -> String {
    let mut url = url::Url::parse(admin).expect("RAMPART_TEST_DATABASE_URL is not a URL");
    url.set_username(user).expect("URL cannot carry a user name");
    url.set_password(Some(TEST_ROLE_PASSWORD)).expect("URL cannot carry a password");
    url.set_path(&format!("/{db}"));
    url.to_string()
}

async fn single_connection(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1).min_connections(1).sqlx_logging(false);
    Ok(Database::connect(opts).await?)
}

async fn exec(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<()> {
    conn.execute_unprepared(sql).await.with_context(|| sql.to_owned())?;
    Ok(())
}

fn template_name() -> String {
    let mut hash = Sha256::new();
    for m in storage::MIGRATIONS_POSTGRES {
        hash.update(m.checksum());
    }
    hash.update(BOOTSTRAP_ROLES);
    format!("rampart_tpl_{}", &hex_string(&hash.finalize())[..16])
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the roles and the migrated template database once per cluster and schema version.
async fn ensure_template(admin: &DatabaseConnection, admin_url: &str) -> anyhow::Result<String> {
    let template = template_name();
    exec(admin, &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})")).await?;
    let result = async {
        exec(admin, BOOTSTRAP_ROLES).await?;
        for role in ["rampart_owner", "rampart_app"] {
            exec(admin, &format!("ALTER ROLE {role} PASSWORD '{TEST_ROLE_PASSWORD}'")).await?;
        }
        let exists = admin
            .query_one(Statement::from_string(
                admin.get_database_backend(),
                format!("SELECT 1 AS one FROM pg_database WHERE datname = '{template}'"),
            ))
            .await?
            .is_some();
        if !exists {
            let building = format!("{template}_building_{}", uuid::Uuid::new_v4().simple());
            exec(admin, &format!("CREATE DATABASE \"{building}\" OWNER rampart_owner")).await?;
            let owner = single_connection(&with_user_and_db(admin_url, "rampart_owner", &building)).await?;
            storage::migrate(&owner).await?;
            owner.close().await?;
            exec(admin, &format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"")).await?;
        }
        anyhow::Ok(())
    }
    .await;
    exec(admin, &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})")).await?;
    result.map(|()| template)
}

impl TestDb {
    /// A migrated database.
    pub async fn new(backend: Backend) -> TestDb {
        Self::create(backend, true).await.expect("creating the test database")
    }

    /// An empty database (roles exist on PostgreSQL), for migration tests.
    pub async fn unmigrated(backend: Backend) -> TestDb {
        Self::create(backend, false).await.expect("creating the test database")
    }

    /// A migrated PostgreSQL database on the cluster at `admin_url` (a superuser URL), for tests
    /// that run a cluster of their own ([`services::PgCluster`]).
    pub async fn on_cluster(admin_url: &str) -> TestDb {
        Self::create_on(Backend::Postgres, true, admin_url).await.expect("creating the test database")
    }

    async fn create(backend: Backend, migrated: bool) -> anyhow::Result<TestDb> {
        let admin_url = if backend == Backend::Postgres { pg_admin_url() } else { String::new() };
        Self::create_on(backend, migrated, &admin_url).await
    }

    async fn create_on(backend: Backend, migrated: bool, admin_url: &str) -> anyhow::Result<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = SecretString::from(format!("sqlite://{}?mode=rwc", dir.path().join("rampart.db").display()));
                if migrated {
                    let db = storage::Db::connect(&url, 1).await?;
                    storage::migrate(db.conn()).await?;
                    db.close().await?;
                }
                Ok(TestDb {
                    backend,
                    runtime_url: url.clone(),
                    owner_url: url,
                    pg_name: None,
                    pg_admin: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = single_connection(admin_url).await.context("connecting to RAMPART_TEST_DATABASE_URL")?;
                let template = ensure_template(&admin, admin_url).await?;
                let name = format!("rampart_test_{}", uuid::Uuid::new_v4().simple());
                let clause =
                    if migrated { format!("TEMPLATE \"{template}\"") } else { "TEMPLATE template0".to_owned() };
                exec(&admin, &format!("CREATE DATABASE \"{name}\" {clause} OWNER rampart_owner")).await?;
                admin.close().await?;
                Ok(TestDb {
                    backend,
                    runtime_url: SecretString::from(with_user_and_db(admin_url, "rampart_app", &name)),
                    owner_url: SecretString::from(with_user_and_db(admin_url, "rampart_owner", &name)),
                    pg_name: Some(name),
                    pg_admin: Some(admin_url.to_owned()),
                    _dir: None,
                })
            }
        }
    }

    /// The admin (superuser) URL of this database, for tests that must act beyond the roles.
    pub fn admin_url(&self) -> Option<String> {
        let name = self.pg_name.as_ref()?;
        let mut url = url::Url::parse(self.pg_admin.as_ref()?).ok()?;
        url.set_path(&format!("/{name}"));
        Some(url.to_string())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (Some(name), Some(admin_url)) = (self.pg_name.take(), self.pg_admin.take()) else {
            return;
        };
        // Dropping needs async I/O; a short-lived runtime on its own thread keeps Drop usable from
        // inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let admin = single_connection(&admin_url).await.ok()?;
                let _ = exec(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

const MISSING_SMTP: &str = "RAMPART_TEST_SMTP_URL / RAMPART_TEST_MAILDIR are not set. Run the suite with `cargo xtask test`, which starts an aiosmtpd sink (install it with `python3 -m pip install aiosmtpd`).";

/// The SMTP sink's URL and the Maildir it writes to.
#[allow(clippy::disallowed_methods)] // The harness variables are the tests' configuration.
pub fn smtp_sink() -> (String, std::path::PathBuf) {
    let url = std::env::var("RAMPART_TEST_SMTP_URL").expect(MISSING_SMTP);
    let dir = std::env::var("RAMPART_TEST_MAILDIR").expect(MISSING_SMTP);
    (url, dir.into())
}

/// An address no other test uses, so each test finds its own mail in the shared sink.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// A message the SMTP sink received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl ReceivedMail {
    /// The token in a link of the form `…#token=<hex>`.
    pub fn link_token(&self) -> Option<String> {
        let start = self.body.find("#token=")? + "#token=".len();
        Some(self.body[start..].chars().take_while(char::is_ascii_hexdigit).collect())
    }
}

/// Every message the sink holds for `to`, oldest first.
pub fn mails_to(to: &str) -> Vec<ReceivedMail> {
    let (_, dir) = smtp_sink();
    let mut found: Vec<(std::time::SystemTime, ReceivedMail)> = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in entries.flatten() {
            let Ok(raw) = std::fs::read_to_string(entry.path()) else { continue };
            let (head, body) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n")).unwrap_or((&raw, ""));
            let header = |name: &str| {
                head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
            };
            let mut body = body.replace("\r\n", "\n");
            if header("Content-Transfer-Encoding:").eq_ignore_ascii_case("quoted-printable") {
                body = decode_quoted_printable(&body);
            }
            let mail = ReceivedMail { to: header("To:"), subject: header("Subject:"), body };
            if mail.to.trim_matches(|c| c == '<' || c == '>') == to {
                let when = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                found.push((when, mail));
            }
        }
    }
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, m)| m).collect()
}

/// Decodes a quoted-printable body (RFC 2045 §6.7): soft line breaks and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The real server on a loopback port, with a client pointed at it.
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub db: TestDb,
    pub state: api::AppState,
    pub clock: Arc<storage::ManualClock>,
    worker: scheduler::Worker,
    /// Every response of this server, held to the published description.
    pub conformance: Arc<conformance::Conformance>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp").field("base_url", &self.base_url).field("backend", &self.backend).finish()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request failed")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let mismatches = self.conformance.take();
        if !mismatches.is_empty() && !std::thread::panicking() {
            panic!("responses that break the published API description:\n{}", mismatches.join("\n"));
        }
    }
}

/// Starts the server with default HTTP settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the server after `configure` adjusts the HTTP settings.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut api::HttpConfig)) -> TestApp {
    spawn_app_with_signup(backend, auth::SignupMode::Open, configure).await
}

/// Starts the server with a given sign-up mode.
pub async fn spawn_app_with_signup(
    backend: Backend,
    signup: auth::SignupMode,
    configure: impl FnOnce(&mut api::HttpConfig),
) -> TestApp {
    spawn_app_adjusted(backend, signup, configure, |_| {}).await
}

/// Starts the server after `adjust` changed the assembled state (for example its egress
/// resolver).
pub async fn spawn_app_adjusted(
    backend: Backend,
    signup: auth::SignupMode,
    configure: impl FnOnce(&mut api::HttpConfig),
    adjust: impl FnOnce(&mut api::AppState),
) -> TestApp {
    spawn_app_extended(backend, signup, configure, adjust, Extras::default()).await
}

/// What a state may have beyond the defaults: identity providers, and the egress exceptions
/// that let the server reach a loopback provider.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    pub oidc: Vec<auth::oidc::ProviderConfig>,
    pub egress_exceptions: Vec<std::net::SocketAddr>,
}

/// [`spawn_app_adjusted`] with [`Extras`].
pub async fn spawn_app_extended(
    backend: Backend,
    signup: auth::SignupMode,
    configure: impl FnOnce(&mut api::HttpConfig),
    adjust: impl FnOnce(&mut api::AppState),
    extras: Extras,
) -> TestApp {
    let db = TestDb::new(backend).await;
    // The per-client limit counts on the test's manual clock, on which a second never passes by
    // itself: it is lifted unless a test (of the limit) configures it.
    let mut http = api::HttpConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        rate_limit_per_client_per_sec: 100_000,
        ..Default::default()
    };
    configure(&mut http);
    let clock = Arc::new(storage::ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    let mut state = app_state_extended(&db, clock.clone(), signup, test_keyring(), extras).await;
    adjust(&mut state);
    let (smtp, _) = smtp_sink();
    let mailer = scheduler::mail::Mailer::smtp(&smtp, "Rampart <no-reply@example.com>").expect("mailer");
    let worker = state.worker(mailer, clock.clone());
    let conformance = conformance::Conformance::new();
    let app = api::contract::observed(api::build_app(state.clone(), &http), conformance.clone());
    let bound = api::server::Bound::bind(http.listen, None).await.expect("binding port 0");
    let base_url = format!("http://{}", bound.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(app, async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { base_url, client, backend, db, state, clock, worker, conformance, shutdown: Some(tx) }
}

/// The state the binary would build for this database: PostgreSQL tests connect as the runtime
/// role (checked), with Redis under a key prefix of their own; SQLite tests run with in-process
/// stores. bcrypt runs at the lowest allowed cost (10) to keep the suite quick.
pub async fn app_state(db: &TestDb, clock: Arc<storage::ManualClock>, signup: auth::SignupMode) -> api::AppState {
    app_state_with_keys(db, clock, signup, test_keyring()).await
}

/// Fresh random keys.
pub fn test_keyring() -> crypto_vault::Keyring {
    crypto_vault::Keyring {
        token_hmac: crypto_vault::KeyMaterial::generate(),
        vault_kek: crypto_vault::KeyMaterial::generate(),
        vault_previous: Vec::new(),
        password_pepper: crypto_vault::KeyMaterial::generate(),
        source: crypto_vault::KeySource::Configured,
    }
}

/// The keys of a running state, for a second server over the same database (a restart).
pub fn same_keys(state: &api::AppState) -> crypto_vault::Keyring {
    crypto_vault::Keyring {
        token_hmac: state.keyring.token_hmac.clone(),
        vault_kek: state.keyring.vault_kek.clone(),
        vault_previous: state.keyring.vault_previous.clone(),
        password_pepper: state.keyring.password_pepper.clone(),
        source: crypto_vault::KeySource::Configured,
    }
}

/// [`app_state`] with given keys: for tests of key rotation (a second server over the same
/// database with a new `secrets.vault_key` and the old one among `secrets.vault_previous_keys`).
pub async fn app_state_with_keys(
    db: &TestDb,
    clock: Arc<storage::ManualClock>,
    signup: auth::SignupMode,
    keyring: crypto_vault::Keyring,
) -> api::AppState {
    app_state_extended(db, clock, signup, keyring, Extras::default()).await
}

/// [`app_state_with_keys`] with [`Extras`].
pub async fn app_state_extended(
    db: &TestDb,
    clock: Arc<storage::ManualClock>,
    signup: auth::SignupMode,
    keyring: crypto_vault::Keyring,
    extras: Extras,
) -> api::AppState {
    let conn = storage::Db::connect(&db.runtime_url, 8).await.expect("connecting as the runtime role");
    let redis = match db.backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let report = storage::check_runtime_role(&conn).await.expect("runtime role must be safe");
            assert!(report.is_some_and(|r| r.is_safe()));
            conn.ensure_schema_current().await.expect("template is migrated");
            let client = redis::Client::open(redis_url()).expect("RAMPART_TEST_REDIS_URL is not a Redis URL");
            Some(
                auth::store::connect_redis(client, auth::store::RedisSettings::default())
                    .await
                    .expect("connecting to Redis"),
            )
        }
    };
    let security = api::SecurityTxtConfig {
        contact: vec!["mailto:security@example.com".into()],
        policy: Some("https://example.com/security-policy".into()),
        ..Default::default()
    };
    let now = storage::Clock::now(clock.as_ref());
    let security_txt = api::render_security_txt(
        &security,
        "https://api.example.com/.well-known/security.txt",
        now + chrono::Duration::days(180),
    );
    api::AppState::assemble(api::Assembly {
        db: conn,
        redis,
        redis_prefix: format!("rampart-test:{}:", uuid::Uuid::new_v4().simple()),
        redis_settings: auth::store::RedisSettings::default(),
        vault: vault_with(&keyring.vault_kek, &keyring.vault_previous),
        egress: api::Egress { exceptions: extras.egress_exceptions, ..api::Egress::default() },
        oidc: extras.oidc,
        keyring,
        jwt_keys: auth::jwt::JwtKeys::new(auth::jwt::SigningKey::generate("test-key").expect("key"), Vec::new())
            .expect("keys"),
        jwt: auth::jwt::JwtConfig::default(),
        clock,
        settings: auth::AuthSettings {
            signup,
            link_base_url: "https://app.example.com".into(),
            native_redirect_uris: vec![NATIVE_REDIRECT_URI.into()],
        },
        bcrypt_cost: auth::password::MIN_BCRYPT_COST,
        hash_concurrency: 4,
        security_txt,
        auth_attempts_per_minute: 10,
        workspace_creations_per_hour: 10,
    })
    .expect("assembling the state")
}

/// A vault whose only key-encryption key is `kek`.
pub fn vault(kek: &crypto_vault::KeyMaterial) -> crypto_vault::Vault {
    vault_with(kek, &[])
}

/// A vault with the key-encryption key `kek` and earlier ones that still unwrap.
pub fn vault_with(kek: &crypto_vault::KeyMaterial, previous: &[crypto_vault::KeyMaterial]) -> crypto_vault::Vault {
    crypto_vault::Vault::new(Arc::new(crypto_vault::LocalKeyProvider::new(kek, previous).expect("valid keys")))
}

/// Declares each listed `async fn name(backend: Backend)` as two tests, `on_sqlite::name` and
/// `on_postgres::name`, so every API behaviour is proven on both stores.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )+
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )+
        }
    };
}

impl TestApp {
    /// Runs every due outbox action now (mail reaches the SMTP sink before this returns).
    pub async fn run_outbox(&self) -> scheduler::PassReport {
        self.worker.run_due().await.expect("outbox pass")
    }
}

/// The tokens of a grant that needed no second factor.
fn done(step: auth::mfa::SignIn<auth::service::TokenPair>) -> auth::service::TokenPair {
    match step {
        auth::mfa::SignIn::Done(pair) => pair,
        auth::mfa::SignIn::SecondFactor(_) => panic!("this account has a second factor: complete the grant first"),
    }
}

/// The one native client the test servers know (any loopback port).
pub const NATIVE_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// The password every [`TestApp::new_user`] signs up with.
pub const TEST_PASSWORD: &str = "violet ocean ladder 42";

/// A verified user with an access token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    /// A JWT access token (send as a bearer token).
    pub token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Signs up a fresh address, follows the verification link from the mail the SMTP sink
    /// received, and takes a token pair — through the same service the HTTP handlers call, so
    /// suites that need many users stay clear of the per-address sign-in throttle.
    pub async fn new_user(&self) -> TestUser {
        use secrecy::ExposeSecret as _;
        let email = unique_email();
        let meta = auth::RequestMeta::default();
        self.state.auth.sign_up(&email, TEST_PASSWORD, &meta).await.expect("sign-up");
        self.run_outbox().await;
        let mail = mails_to(&email).pop().expect("a verification mail");
        let token = mail.link_token().expect("a token in the verification link");
        self.state.auth.verify_email(&token, &meta).await.expect("verification");
        let pair = done(self.state.auth.password_grant(&email, TEST_PASSWORD, &meta).await.expect("token grant"));
        let token = pair.access_token.expose_secret().to_owned();
        let me: serde_json::Value = self
            .client
            .get(self.url("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /me")
            .json()
            .await
            .expect("a user body");
        let id = me["id"].as_str().and_then(|id| uuid::Uuid::parse_str(id).ok()).expect("a user id");
        TestUser { id, email, token, refresh_token: pair.refresh_token.expose_secret().to_owned() }
    }

    /// `user` with a new token pair (after the test clock moved past the old token's expiry).
    pub async fn renew(&self, user: &TestUser) -> TestUser {
        use secrecy::ExposeSecret as _;
        let meta = auth::RequestMeta::default();
        let pair = done(self.state.auth.password_grant(&user.email, TEST_PASSWORD, &meta).await.expect("token grant"));
        TestUser {
            token: pair.access_token.expose_secret().to_owned(),
            refresh_token: pair.refresh_token.expose_secret().to_owned(),
            ..user.clone()
        }
    }

    /// A JSON request as `user`: the status and the JSON body (`null` when there is none).
    pub async fn json(
        &self,
        user: &TestUser,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.call(user, method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A request as `user` (bearer token).
    pub fn call(&self, user: &TestUser, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(&user.token)
    }
}

/// The session cookie a response sets, as a `Cookie` header value (`__Host-rampart_session=…`).
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .find(|c| c.starts_with("__Host-rampart_session="))
}

/// A browser session as a client holds it.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    /// The `Cookie` header value.
    pub cookie: String,
    /// The CSRF token to send as `X-CSRF-Token`.
    pub csrf: String,
    /// The session's public id.
    pub id: String,
}

impl TestApp {
    /// Signs `email` in through `POST /api/v1/auth/signin` (no second factor): the session.
    pub async fn browser_sign_in(&self, email: &str, password: &str) -> BrowserSession {
        let body = serde_json::json!({"email": email, "password": password});
        let resp = self.client.post(self.url("/api/v1/auth/signin")).json(&body).send().await.expect("sign-in");
        assert_eq!(resp.status(), 200, "sign-in");
        let cookie = session_cookie(&resp).expect("a session cookie");
        let body: serde_json::Value = resp.json().await.expect("a session body");
        BrowserSession {
            cookie,
            csrf: body["csrf_token"].as_str().expect("a CSRF token").to_owned(),
            id: body["session"]["id"].as_str().expect("a session id").to_owned(),
        }
    }
}

impl TestApp {
    /// A new workspace owned by `owner`; its id.
    pub async fn workspace(&self, owner: &TestUser, name: &str) -> String {
        let (status, body) = self
            .json(owner, reqwest::Method::POST, "/api/v1/workspaces", Some(serde_json::json!({"name": name})))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("a workspace id").to_owned()
    }

    /// `invitee` joins `ws` with `role` through an invitation mailed by `inviter`.
    pub async fn join(&self, inviter: &TestUser, invitee: &TestUser, ws: &str, role: &str) {
        let path = format!("/api/v1/workspaces/{ws}/invitations");
        let invitation = serde_json::json!({"email": invitee.email, "role": role});
        let (status, body) = self.json(inviter, reqwest::Method::POST, &path, Some(invitation)).await;
        assert_eq!(status, 201, "{body}");
        self.run_outbox().await;
        let token = mails_to(&invitee.email).pop().and_then(|m| m.link_token()).expect("an invitation token");
        let accept = serde_json::json!({"workspace_id": ws, "token": token});
        let (status, body) =
            self.json(invitee, reqwest::Method::POST, "/api/v1/invitations/accept", Some(accept)).await;
        assert_eq!(status, 200, "{body}");
    }
}

impl TestApp {
    /// The TOTP code an independent generator (the `pyotp` package on PyPI) computes for the
    /// base32 `secret` at the server's clock.
    pub fn totp_code(&self, secret: &str) -> String {
        let at = storage::Clock::now(self.clock.as_ref()).timestamp().to_string();
        let out = std::process::Command::new("python3")
            .args(["-c", "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))", secret, &at])
            .output()
            .expect("python3 (install pyotp with `python3 -m pip install pyotp`)");
        assert!(
            out.status.success(),
            "pyotp: {} (install it with `python3 -m pip install pyotp`)",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }
}
