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

backend_tests!(a_dead_action_can_be_retried_and_a_pending_one_cancelled);
