//! The operators' hold on the outbox, on both stores: list actions without their payloads, retry
//! a dead one (it runs again under the same id) and cancel a pending one (no worker runs it).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use storage::{Clock, Db, ManualClock};
use testkit::{backend_tests, Backend, TestDb};

async fn a_dead_action_can_be_retried_and_a_pending_one_cancelled(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let key = crypto_vault::KeyMaterial::generate();
    let clock = Arc::new(ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    let runs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let worker = {
        let (runs, fail) = (runs.clone(), fail.clone());
        scheduler::Worker::new(db.clone(), key.clone(), clock.clone()).handle("test.flaky", move |_| {
            let (runs, fail) = (runs.clone(), fail.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if fail.load(Ordering::SeqCst) {
                    Err("the remote said no".to_owned())
                } else {
                    Ok(())
                }
            }
        })
    };
    let payload = serde_json::json!({"token": "never-shown-secret"});
    let flaky = scheduler::enqueue(db.conn(), &key, "test.flaky", &payload, clock.now(), clock.now()).await.unwrap();
    let later = scheduler::enqueue(
        db.conn(),
        &key,
        "test.flaky",
        &payload,
        clock.now() + chrono::Duration::days(1),
        clock.now(),
    )
    .await
    .unwrap();
    for _ in 0..scheduler::DEFAULT_MAX_ATTEMPTS {
        worker.run_due().await.unwrap();
        clock.advance(chrono::Duration::hours(2));
    }
    let dead = scheduler::list(db.conn(), Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (flaky, scheduler::DEFAULT_MAX_ATTEMPTS));
    assert_eq!(dead[0].last_error.as_deref(), Some("the remote said no"));
    assert!(!format!("{dead:?}").contains("never-shown-secret"), "payloads are never listed");
    // The later action came due during those passes too; cancel a fresh one instead.
    let pending = scheduler::enqueue(
        db.conn(),
        &key,
        "test.flaky",
        &payload,
        clock.now() + chrono::Duration::days(7),
        clock.now(),
    )
    .await
    .unwrap();
    assert!(scheduler::cancel(db.conn(), pending, clock.now()).await.unwrap());
    assert!(!scheduler::cancel(db.conn(), pending, clock.now()).await.unwrap(), "only a pending action is cancelled");
    assert!(!scheduler::cancel(db.conn(), flaky, clock.now()).await.unwrap(), "a dead action is not pending");
    assert!(!scheduler::retry(db.conn(), later, clock.now()).await.unwrap(), "a pending action is not retried");

    // Retried: it runs again, under the same id, and succeeds this time.
    fail.store(false, Ordering::SeqCst);
    assert!(scheduler::retry(db.conn(), flaky, clock.now()).await.unwrap());
    assert!(!scheduler::retry(db.conn(), flaky, clock.now()).await.unwrap(), "a pending action is not retried twice");
    let before = runs.load(Ordering::SeqCst);
    let report = worker.run_due().await.unwrap();
    assert!(report.done >= 1, "{report:?}");
    assert!(runs.load(Ordering::SeqCst) > before);
    let all = scheduler::list(db.conn(), None, 100).await.unwrap();
    let status = |id| all.iter().find(|a| a.id == id).map(|a| a.status.clone());
    assert_eq!(status(flaky).as_deref(), Some("done"));
    assert_eq!(status(pending).as_deref(), Some("cancelled"));
    // Clock far ahead: the cancelled action never runs.
    clock.advance(chrono::Duration::days(30));
    worker.run_due().await.unwrap();
    let after = scheduler::list(db.conn(), Some("cancelled"), 10).await.unwrap();
    assert_eq!(after.iter().map(|a| a.id).collect::<Vec<_>>(), [pending]);
}

/// A worker whose lease runs out while its handler is still running (its renewals stalled) is
/// overtaken by another worker; when the first one finally reports, its outcome is dropped
/// instead of overwriting the one that took over (which would run the action yet again).
async fn a_worker_overtaken_after_its_lease_cannot_overwrite_the_new_claims_outcome(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let key = crypto_vault::KeyMaterial::generate();
    let clock = Arc::new(ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    let second_runs = Arc::new(AtomicUsize::new(0));
    let second = {
        let runs = second_runs.clone();
        scheduler::Worker::new(db.clone(), key.clone(), clock.clone()).handle("test.slow", move |action| {
            let runs = runs.clone();
            async move {
                assert_eq!(action.attempt, 2, "the takeover is the second attempt");
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let first = {
        let (second, clock) = (second.clone(), clock.clone());
        scheduler::Worker::new(db.clone(), key.clone(), clock.clone()).handle("test.slow", move |_| {
            let (second, clock) = (second.clone(), clock.clone());
            async move {
                // The first handler stalls past its lease; meanwhile the other worker takes over.
                clock.advance(scheduler::LEASE + chrono::Duration::seconds(1));
                let report = second.run_due().await.map_err(|e| e.to_string())?;
                assert_eq!(report.done, 1);
                Err("timed out talking to the remote".to_owned())
            }
        })
    };
    let id = scheduler::enqueue(db.conn(), &key, "test.slow", &serde_json::json!({}), clock.now(), clock.now())
        .await
        .unwrap();
    first.run_due().await.unwrap();
    let all = scheduler::list(db.conn(), None, 10).await.unwrap();
    let action = all.iter().find(|a| a.id == id).unwrap();
    assert_eq!((action.status.as_str(), action.attempts), ("done", 2), "{action:?}");
    assert_eq!(action.last_error, None, "the stale failure did not overwrite the outcome");
    // Nothing is left to run, however late it gets.
    clock.advance(chrono::Duration::days(1));
    let again = first.run_due().await.unwrap();
    assert_eq!((again.done, again.retried, again.dead), (0, 0, 0));
    assert_eq!(second_runs.load(Ordering::SeqCst), 1);
}

/// After `secrets.vault_key` changes, actions queued under the old key (kept among the previous
/// keys) still open and run; without it they would die.
async fn actions_queued_before_a_key_rotation_still_run_with_the_previous_key(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let clock = Arc::new(ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    let (old, new) = (crypto_vault::KeyMaterial::generate(), crypto_vault::KeyMaterial::generate());
    let payload = serde_json::json!({"workspace_id": "w"});
    let id = scheduler::enqueue(db.conn(), &old, "test.purge", &payload, clock.now(), clock.now()).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker = |previous: Vec<crypto_vault::KeyMaterial>| {
        let seen = seen.clone();
        scheduler::Worker::new(db.clone(), new.clone(), clock.clone()).with_previous_keys(previous).handle(
            "test.purge",
            move |a| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(a.payload);
                    Ok(())
                }
            },
        )
    };
    let report = worker(vec![old.clone()]).run_due().await.unwrap();
    assert_eq!(report.done, 1);
    assert_eq!(seen.lock().unwrap().as_slice(), [payload]);
    let all = scheduler::list(db.conn(), None, 10).await.unwrap();
    assert_eq!(all.iter().find(|a| a.id == id).map(|a| a.status.as_str()), Some("done"));
    // Without the previous key the payload does not open: the action dies, never runs.
    let stranded = scheduler::enqueue(db.conn(), &old, "test.purge", &serde_json::json!({}), clock.now(), clock.now())
        .await
        .unwrap();
    worker(Vec::new()).run_due().await.unwrap();
    let all = scheduler::list(db.conn(), None, 10).await.unwrap();
    assert_eq!(all.iter().find(|a| a.id == stranded).map(|a| a.status.as_str()), Some("dead"));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

backend_tests!(
    actions_queued_before_a_key_rotation_still_run_with_the_previous_key,
    a_dead_action_can_be_retried_and_a_pending_one_cancelled,
    a_worker_overtaken_after_its_lease_cannot_overwrite_the_new_claims_outcome,
);
