//! The `rampart` binary end to end: the README's serve command, production refusals, and the
//! PostgreSQL owner/runtime split.

mod support;

use secrecy::ExposeSecret;
use support::{rampart, serve};
use testkit::{Backend, TestDb};

#[tokio::test]
async fn serve_with_no_configuration_runs_on_embedded_sqlite_with_generated_development_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(rampart(dir.path())).expect("server starts");
    let log = server.log.join("\n");
    assert!(log.contains("GENERATED DEVELOPMENT KEYS"), "{log}");
    assert!(log.contains("embedded SQLite"), "{log}");
    assert!(dir.path().join("rampart-data/dev-keys.toml").exists());
    assert!(dir.path().join("rampart-data/rampart.db").exists());

    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/docs", "/openapi.json", "/.well-known/security.txt"] {
        let resp = client.get(format!("{}{path}", server.base_url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // A sign-up and a failed sign-in put a password and a hash through the server.
    let secret = "marigold telescope 93 quartz";
    let resp = client
        .post(format!("{}/api/v1/auth/signup", server.base_url))
        .json(&serde_json::json!({"email": "logcheck@example.com", "password": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = client
        .post(format!("{}/api/v1/auth/signin", server.base_url))
        .json(&serde_json::json!({"email": "logcheck@example.com", "password": "wrong passphrase entirely"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Paths are logged; personal data and tokens in them are scrubbed from the line.
    let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJsb2djaGVjayJ9.c2lnbmF0dXJlLW9mLWEtdG9rZW4";
    for path in ["/lookup/logcheck@example.com".to_owned(), format!("/tokens/{jwt}")] {
        let resp = client.get(format!("{}{path}", server.base_url)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }

    // SIGTERM drains and exits cleanly.
    let (status, log) = server.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(log.contains("request served"), "the access log was captured: {log}");
    for leaked in [secret, "wrong passphrase entirely", "$rampart-bcrypt", "$2b$", "logcheck@example.com", jwt] {
        assert!(!log.contains(leaked), "`{leaked}` reached the log");
    }
    assert!(log.contains("/lookup/[EMAIL]"), "the scrubbed path is still logged: {log}");
}

#[test]
fn healthcheck_succeeds_against_a_live_server_and_fails_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(rampart(dir.path())).expect("server starts");
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let ok = rampart(dir.path()).arg("healthcheck").env("RAMPART__HTTP__LISTEN", &addr).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    drop(server);
    let down = rampart(dir.path()).arg("healthcheck").env("RAMPART__HTTP__LISTEN", &addr).output().unwrap();
    assert!(!down.status.success());
}

#[test]
fn production_mode_refuses_to_start_without_real_secrets_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_ENV", "production");
    let (code, log) = serve(cmd).err().expect("production must refuse");
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("refusing to start in production"), "{log}");
    for needle in ["database.url", "redis.url", "secrets.token_hmac_key", "secrets.vault_key"] {
        assert!(log.contains(needle), "missing `{needle}` in:\n{log}");
    }
    assert!(!dir.path().join("rampart-data/dev-keys.toml").exists(), "production never generates keys");
}

#[test]
fn openapi_command_prints_the_committed_description() {
    let dir = tempfile::tempdir().unwrap();
    let out = rampart(dir.path()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")).unwrap();
    assert_eq!(out.stdout, committed);
}

#[test]
fn help_is_available_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["--help"], vec!["serve", "--help"], vec!["migrate", "--help"], vec!["openapi", "--help"]] {
        let out = rampart(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_migrate_runs_as_the_owner_and_serve_as_the_runtime_role_with_redis() {
    let db = TestDb::unmigrated(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let out = rampart(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", db.runtime_url.expose_secret())
        .env("DATABASE_MIGRATE_URL", db.owner_url.expose_secret())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut cmd = rampart(dir.path());
    cmd.env("DATABASE_URL", db.runtime_url.expose_secret()).env("REDIS_URL", testkit::redis_url());
    let server = serve(cmd).expect("server starts on PostgreSQL");
    let body: serde_json::Value =
        reqwest::get(format!("{}/readyz", server.base_url)).await.unwrap().json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["redis"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_migrate_refuses_to_run_as_the_runtime_role() {
    let db = TestDb::unmigrated(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let out = rampart(dir.path()).arg("migrate").env("DATABASE_URL", db.runtime_url.expose_secret()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrate_url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_serve_refuses_a_superuser_connection() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env("DATABASE_URL", db.admin_url().unwrap());
    let (code, log) = serve(cmd).err().expect("a superuser runtime connection must be refused");
    assert_ne!(code, 0);
    assert!(log.contains("superuser") && log.contains("NOBYPASSRLS"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_serve_refuses_an_unmigrated_schema() {
    let db = TestDb::unmigrated(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env("DATABASE_URL", db.runtime_url.expose_secret());
    let (code, log) = serve(cmd).err().expect("an unmigrated database must be refused");
    assert_ne!(code, 0);
    assert!(log.contains("rampart migrate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_audit_verify_passes_an_intact_chain_and_names_the_link_a_superuser_edited() {
    use testkit::storage::{ConnectionTrait, Statement, TransactionTrait};
    let db = TestDb::new(Backend::Postgres).await;
    let runtime = testkit::storage::Db::connect(&db.runtime_url, 1).await.unwrap();
    let chain = uuid::Uuid::new_v4();
    let txn = runtime.conn().begin().await.unwrap();
    let pg = testkit::storage::DatabaseBackend::Postgres;
    let context =
        Statement::from_sql_and_values(pg, "SELECT set_config('app.tenant_id', $1, true)", [chain.to_string().into()]);
    txn.execute(context).await.unwrap();
    for n in 0..3 {
        let event = audit::NewEvent::new(audit::Category::Membership, "member.removed", serde_json::json!({ "n": n }));
        audit::append(&txn, chain, &event, storage_now()).await.unwrap();
    }
    txn.commit().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let verify = || {
        rampart(dir.path())
            .args(["audit", "verify"])
            .env("DATABASE_URL", db.runtime_url.expose_secret())
            .env("DATABASE_MIGRATE_URL", db.owner_url.expose_secret())
            .output()
            .unwrap()
    };
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("chain {chain}: 3 events intact; head 3 ")), "{stdout}");

    let admin = testkit::storage::Db::connect(&db.admin_url().unwrap().into(), 1).await.unwrap();
    admin.conn().execute_unprepared("SET session_replication_role = replica").await.unwrap();
    let edit = Statement::from_sql_and_values(
        pg,
        "UPDATE audit_events SET payload = '{\"n\":7}' WHERE tenant_id = $1 AND seq = 2",
        [chain.into()],
    );
    assert_eq!(admin.conn().execute(edit).await.unwrap().rows_affected(), 1);
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "a broken chain fails the command");
    assert!(stdout.contains(&format!("chain {chain}: BROKEN at event 2")) && stdout.contains("altered"), "{stdout}");

    // The runtime role alone cannot run it: it may not read every chain.
    let out =
        rampart(dir.path()).args(["audit", "verify"]).env("DATABASE_URL", db.runtime_url.expose_secret()).output();
    let out = out.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrate_url"));
}

fn storage_now() -> chrono::DateTime<chrono::Utc> {
    testkit::storage::Clock::now(&testkit::storage::SystemClock)
}

/// `rampart keys rotate`, `rewrap` (with progress), `retire`, and a key-encryption-key rotation
/// through `secrets.vault_previous_keys`, against a connection the server sealed: every step
/// leaves the secret readable, and after the last one only the new key opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_key_commands_rotate_reencrypt_and_retire_leaving_every_secret_readable() {
    use tenancy::connections::{self, NewConnection, Provider, SecretFields};
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let generated = rampart(dir.path()).args(["keys", "generate"]).output().unwrap();
    let env: Vec<(String, String)> = String::from_utf8(generated.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let old_kek = env.iter().find(|(k, _)| k == "RAMPART__SECRETS__VAULT_KEY").unwrap().1.clone();
    let vault_of = |active: &str, previous: &[&str]| {
        let previous: Vec<_> = previous.iter().map(|k| crypto_vault::KeyMaterial::from_hex(k).unwrap()).collect();
        let provider =
            crypto_vault::LocalKeyProvider::new(&crypto_vault::KeyMaterial::from_hex(active).unwrap(), &previous)
                .unwrap();
        crypto_vault::Vault::new(std::sync::Arc::new(provider))
    };

    let runtime = testkit::storage::Db::connect(&db.runtime_url, 1).await.unwrap();
    let user = tenancy::UserId(uuid::Uuid::new_v4());
    let backend = testkit::storage::DatabaseBackend::Postgres;
    testkit::storage::ConnectionTrait::execute(
        runtime.conn(),
        testkit::storage::Statement::from_sql_and_values(
            backend,
            "INSERT INTO users (id, email, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, 'active', 0, 0, $3, $3)",
            [user.0.into(), format!("{}@example.com", user.0).into(), storage_now().into()],
        ),
    )
    .await
    .unwrap();
    let ws = tenancy::workspaces::create(&runtime, user, "Keys", storage_now()).await.unwrap().id;
    let server_vault = vault_of(&old_kek, &[]);
    let tx = tenancy::TenantTx::begin(&runtime, ws, user).await.unwrap();
    let secret = SecretFields([("bot_token".to_owned(), "xoxb-cli-rotation-secret".to_owned().into())].into());
    let new = NewConnection {
        provider: Provider::Slack,
        name: "bot".into(),
        config: Default::default(),
        secret,
        scopes: None,
    };
    let id = connections::create(&tx, &server_vault, &new, storage_now()).await.unwrap().id;
    tx.commit().await.unwrap();
    let read_back = |vault: crypto_vault::Vault| {
        let runtime = runtime.clone();
        async move {
            let tx = tenancy::TenantTx::begin(&runtime, ws, user).await.unwrap();
            let opened = connections::open_for_test(&tx, &vault, id).await;
            tx.rollback().await.unwrap();
            opened.map(|o| o.secret.get("bot_token").map(str::to_owned))
        }
    };

    let keys = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = rampart(dir.path());
        cmd.arg("keys").args(args).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env("DATABASE_URL", db.runtime_url.expose_secret())
            .env("DATABASE_MIGRATE_URL", db.owner_url.expose_secret());
        cmd.envs(extra.iter().copied());
        let out = cmd.output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "keys {args:?}: {stdout}{stderr}");
        (stdout, stderr)
    };
    let (out, _) = keys(&["rotate"], &[]);
    assert!(out.contains(&format!("workspace {} integration_tokens: version 2 is now active", ws.0)), "{out}");
    let (out, progress) = keys(&["rewrap", "--batch", "1"], &[]);
    assert!(progress.contains("connections.secret_ciphertext: 0/1 values re-encrypted"), "{progress}");
    assert!(progress.contains("connections.secret_ciphertext: 1/1 values re-encrypted"), "{progress}");
    assert!(out.contains("re-encrypted 1 values"), "{out}");
    let (out, _) = keys(&["retire"], &[]);
    assert!(out.contains("deleted versions [1]; minimum decrypt version is now 2"), "{out}");
    assert_eq!(read_back(vault_of(&old_kek, &[])).await.unwrap().as_deref(), Some("xoxb-cli-rotation-secret"));

    // A new key-encryption key, the old one kept as previous until the data keys are re-wrapped.
    let new_kek = crypto_vault::KeyMaterial::generate().to_hex().to_string();
    let previous = format!("[\"{old_kek}\"]");
    let (out, _) = keys(
        &["rewrap"],
        &[
            ("RAMPART__SECRETS__VAULT_KEY", new_kek.as_str()),
            ("RAMPART__SECRETS__VAULT_PREVIOUS_KEYS", previous.as_str()),
        ],
    );
    assert!(out.contains("re-wrapped 1 data keys"), "{out}");
    assert_eq!(read_back(vault_of(&new_kek, &[])).await.unwrap().as_deref(), Some("xoxb-cli-rotation-secret"));
    assert!(read_back(vault_of(&old_kek, &[])).await.is_err(), "the old key-encryption key opens nothing any more");

    // Shredding needs --confirm, then nothing opens.
    let mut cmd = rampart(dir.path());
    cmd.args(["keys", "shred", "--workspace", &ws.0.to_string()])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let refused = cmd.env("DATABASE_MIGRATE_URL", db.owner_url.expose_secret()).output().unwrap();
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--confirm"));
    keys(
        &["shred", "--workspace", &ws.0.to_string(), "--confirm"],
        &[("RAMPART__SECRETS__VAULT_KEY", new_kek.as_str())],
    );
    assert!(read_back(vault_of(&new_kek, &[])).await.is_err());
}

/// `rampart outbox list | cancel | retry` on the embedded store: the list shows actions without
/// their payloads, a pending action is cancelled, a cancelled one is queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commands_list_cancel_and_retry_actions_without_showing_payloads() {
    let db = TestDb::new(Backend::Sqlite).await;
    let conn = testkit::storage::Db::connect(&db.runtime_url, 1).await.unwrap();
    let key = crypto_vault::KeyMaterial::generate();
    let payload = serde_json::json!({"link": "https://app.example.com/verify?token=outbox-secret-token"});
    let later = storage_now() + chrono::Duration::days(1);
    let id = scheduler::enqueue(conn.conn(), &key, "send_email", &payload, later, storage_now()).await.unwrap();
    conn.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = |args: &[&str]| {
        let out = rampart(dir.path())
            .arg("outbox")
            .args(args)
            .env("DATABASE_URL", db.runtime_url.expose_secret())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = outbox(&["list"]);
    assert!(ok, "{err}");
    assert!(listed.contains(&format!("{id} send_email pending attempts 0/8")), "{listed}");
    assert!(!listed.contains("outbox-secret-token"));
    let (ok, out, err) = outbox(&["cancel", &id.to_string()]);
    assert!(ok && out.contains("cancelled"), "{out}{err}");
    let (ok, _, err) = outbox(&["cancel", &id.to_string()]);
    assert!(!ok && err.contains("not pending"), "{err}");
    let (ok, json, _) = outbox(&["list", "--status", "cancelled", "--json"]);
    assert!(ok);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!((row["id"].as_str(), row["status"].as_str()), (Some(id.to_string().as_str()), Some("cancelled")));
    let (ok, out, err) = outbox(&["retry", &id.to_string()]);
    assert!(ok && out.contains("pending again"), "{out}{err}");
    let (ok, _, err) = outbox(&["list", "--status", "sleeping"]);
    assert!(!ok && err.contains("--status is one of"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_commands_suspend_and_reinstate_and_suspension_ends_every_credential_for_good() {
    use testkit::storage::ConnectionTrait as _;
    let app = testkit::spawn_app(Backend::Sqlite).await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    let dir = tempfile::tempdir().unwrap();
    let users = |args: &[&str]| {
        let out = rampart(dir.path())
            .arg("users")
            .args(args)
            .env("DATABASE_URL", app.db.runtime_url.expose_secret())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let me = |token: String| {
        let req = app.client.get(app.url("/api/v1/me")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let (ok, listed, err) = users(&["list"]);
    assert!(ok, "{err}");
    assert!(listed.contains(&format!("{} active {}", user.id, user.email)), "{listed}");

    let (ok, out, err) = users(&["suspend", &user.email]);
    assert!(ok && out.contains("suspended"), "{out}{err}");
    // The server (another process) sees it on the very next request.
    assert_eq!(me(user.token.clone()).await, 401, "suspended");
    assert_eq!(me(bystander.token.clone()).await, 200, "only that account");
    let (ok, out, _) = users(&["suspend", &user.id.to_string()]);
    assert!(ok && out.contains("already suspended"), "{out}");
    let (ok, json, _) = users(&["list", "--status", "suspended", "--json"]);
    assert!(ok);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!((row["email"].as_str(), row["status"].as_str()), (Some(user.email.as_str()), Some("suspended")));

    let (ok, out, err) = users(&["unsuspend", &user.id.to_string()]);
    assert!(ok && out.contains("reinstated"), "{out}{err}");
    // Reinstating revives no credential of before: the holder signs in again.
    assert_eq!(me(user.token.clone()).await, 401, "the old access token stays ended");
    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/token/refresh"))
        .json(&serde_json::json!({"refresh_token": user.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 401, "so does the old refresh token");
    assert_eq!(me(app.renew(&user).await.token).await, 200, "a new sign-in works");

    let (ok, _, err) = users(&["suspend", "nobody@example.com"]);
    assert!(!ok && err.contains("no account"), "{err}");
    let (ok, _, err) = users(&["list", "--status", "deleted"]);
    assert!(!ok && err.contains("--status"), "{err}");
    // Each change is in the audit trail, once.
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    for action in ["auth.user_suspended", "auth.user_reinstated"] {
        let sql = format!("SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}' AND actor_id IS NOT NULL");
        let row =
            owner.conn().query_one(testkit::storage::Statement::from_string(owner.conn().get_database_backend(), sql));
        let n: i64 = row.await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(n, 1, "{action}");
    }
}
