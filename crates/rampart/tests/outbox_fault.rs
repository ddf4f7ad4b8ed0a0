//! The outbox under a crash, on both stores: `rampart worker` processes share webhook deliveries
//! through the database; one is killed with SIGKILL in the middle of a batch (a delivery of its
//! in flight, held unanswered by the receiver). Every action still completes, none is lost, and
//! none has its effect recorded twice: the killed worker's claims are taken over once their lease
//! passes, and the one delivery it had sent is sent again with the same `webhook-id`, which is
//! what a receiver de-duplicates on. Live workers renew their claims while their handlers run, so
//! the drill runs with the shortest lease and takes seconds.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use testkit::receiver::Receiver;
use testkit::{backend_tests, Backend, TestApp};

/// Deliveries queued before any worker runs.
const DELIVERIES: usize = 60;
/// The receiver answers this many, then holds the next one unanswered while its worker is killed.
const ANSWERED_BEFORE_KILL: usize = 10;
/// The workers' lease: the shortest allowed ([`scheduler::MIN_LEASE`]), so the takeover comes
/// within seconds of the kill; the live workers renew theirs every second.
const LEASE_SECS: i64 = 3;

/// A `rampart worker` process, killed on drop.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl WorkerProcess {
    /// SIGTERM, then waits for the process: the pass under way finishes first.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.0.wait().unwrap()
    }
}

/// The environment a worker runs with: the test database (on PostgreSQL as the runtime role; on
/// SQLite the same file as the in-process server), the in-process server's vault key (so both
/// open the same sealed values), fresh other keys, the shortest lease, and the receiver as the
/// one egress exception (allowed with `env = "test"` only).
#[allow(clippy::disallowed_methods)] // The child gets a clean environment except PATH.
fn worker_env(app: &TestApp, receiver: &Receiver, dir: &std::path::Path) -> Vec<(String, String)> {
    let generated = Command::new(env!("CARGO_BIN_EXE_rampart")).args(["keys", "generate"]).output().unwrap();
    assert!(generated.status.success());
    let mut env: Vec<(String, String)> = String::from_utf8(generated.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "RAMPART__SECRETS__VAULT_KEY")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.extend([
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("RAMPART_ENV".to_owned(), "test".to_owned()),
        ("RAMPART__SECRETS__VAULT_KEY".to_owned(), app.state.keyring.vault_kek.to_hex().to_string()),
        ("RAMPART__DATABASE__URL".to_owned(), app.db.runtime_url.expose_secret().to_owned()),
        ("RAMPART__DATA_DIR".to_owned(), dir.display().to_string()),
        ("RAMPART__OUTBOX__LEASE_SECS".to_owned(), LEASE_SECS.to_string()),
        ("RAMPART__OUTBOX__POLL_INTERVAL_MS".to_owned(), "50".to_owned()),
        ("RAMPART__EGRESS__TEST_EXCEPTIONS".to_owned(), format!("[\"{}\"]", receiver.addr)),
    ]);
    env
}

fn start_worker(env: &[(String, String)], log: &std::path::Path) -> WorkerProcess {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("worker")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn rampart worker");
    WorkerProcess(child)
}

fn distinct_ids(hooks: &[testkit::receiver::Hook]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for hook in hooks {
        *ids.entry(hook.header("webhook-id").to_owned()).or_insert(0) += 1;
    }
    ids
}

async fn a_worker_killed_mid_batch_loses_no_action_and_records_no_effect_twice(backend: Backend) {
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    let app = testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |_| {},
        move |state| state.egress = api::Egress { exceptions: vec![addr], ..api::Egress::default() },
    )
    .await;
    let alice = app.new_user().await;
    let (status, ws) = app.json(&alice, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Crash"}))).await;
    assert_eq!(status, 201);
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (status, made) = app
        .json(
            &alice,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/webhook-endpoints"),
            Some(json!({"url": receiver.url("/hook"), "event_types": ["webhook.test"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let ep = made["endpoint"]["id"].as_str().unwrap().to_owned();
    // Queued in one transaction through the same call the test route makes (the API's per-client
    // rate limit would slow sixty requests down).
    let tx =
        tenancy::TenantTx::begin(&app.state.db, tenancy::WorkspaceId(ws.parse().unwrap()), tenancy::UserId(alice.id))
            .await
            .unwrap();
    let now = testkit::storage::Clock::now(app.clock.as_ref());
    for _ in 0..DELIVERIES {
        webhooks::outbound::send_test(&tx, &app.state.keyring.vault_kek, ep.parse().unwrap(), now).await.unwrap();
    }
    tx.commit().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let env = worker_env(&app, &receiver, dir.path());
    receiver.hold_from(ANSWERED_BEFORE_KILL);
    let mut first = start_worker(&env, &dir.path().join("first.log"));
    let held = receiver.wait_for(ANSWERED_BEFORE_KILL + 1).await.pop().unwrap();
    // The first worker now waits on the held delivery with the rest of its batch claimed.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    receiver.release();

    let second = start_worker(&env, &dir.path().join("second.log"));
    let third = start_worker(&env, &dir.path().join("third.log"));
    let mut seen = ANSWERED_BEFORE_KILL + 1;
    while distinct_ids(&receiver.hooks()).len() < DELIVERIES {
        seen = receiver.wait_for(seen + 1).await.len();
    }
    assert!(second.stop().success());
    assert!(third.stop().success());

    // Nothing stays claimed: the killed worker's claims were all taken over, and the stopped
    // workers finished their passes, so no action is left running past its lease.
    let running = scheduler::list(app.state.db.conn(), Some("running"), 1000).await.unwrap();
    assert!(running.is_empty(), "no action stays claimed once its workers are gone: {running:?}");

    // None lost: every delivery action is done, nothing pending, running or dead.
    let actions = scheduler::list(app.state.db.conn(), None, 1000).await.unwrap();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    for action in actions.iter().filter(|a| a.kind == webhooks::outbound::DELIVER_ACTION) {
        *by_status.entry(action.status.clone()).or_insert(0) += 1;
    }
    assert_eq!(by_status, BTreeMap::from([("done".to_owned(), DELIVERIES as i64)]));

    // None recorded twice: each delivery is delivered after exactly one recorded attempt.
    let (status, list) = app
        .json(
            &alice,
            Method::GET,
            &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}/deliveries?limit=200"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), DELIVERIES);
    assert!(list.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1), "{list:?}");

    // The receiver got every message; the one in flight at the kill came twice — its worker died
    // before recording it — with the same webhook-id (its idempotency key), so a receiver that
    // de-duplicates, as Standard Webhooks asks, handles it once.
    let hooks = receiver.hooks();
    let ids = distinct_ids(&hooks);
    assert_eq!(ids.len(), DELIVERIES);
    let repeated: Vec<&String> = ids.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert_eq!(repeated, [held.header("webhook-id")], "the delivery in flight at the kill was sent again: {ids:?}");
    assert_eq!(hooks.len(), DELIVERIES + 1);
    let listed: std::collections::BTreeSet<&str> = list.iter().map(|d| d["message_id"].as_str().unwrap()).collect();
    assert!(ids.keys().all(|id| listed.contains(id.as_str())));
}

backend_tests!(a_worker_killed_mid_batch_loses_no_action_and_records_no_effect_twice);
