//! The lease of a claim, on both stores: a worker renews the claims it holds while their handlers
//! run, so a second worker never takes over from a live one however long a handler takes; once
//! the worker dies (its future is dropped) its claim passes to another after the lease; and a
//! worker that stalled past its lease and was overtaken renews nothing of the new claim.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use storage::{Clock, Db, ManualClock};
use testkit::{backend_tests, Backend, TestDb};
use tokio::sync::{watch, Notify};

/// Every wait here ends on an event (a handler starting, a renewal); reaching this fails the test.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

type Pass = Result<scheduler::PassReport, scheduler::OutboxError>;

/// A connection to `test_db` that counts the renewals of claims run through it (each a single
/// `UPDATE … SET locked_until`), so a test can wait for the next one instead of sleeping.
async fn counting_renewals(test_db: &TestDb) -> (Db, watch::Receiver<usize>) {
    let mut db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let (count, renewals) = watch::channel(0);
    db.observe_statements(move |sql| {
        if sql.contains("SET locked_until = $") {
            count.send_modify(|n| *n += 1);
        }
    });
    (db, renewals)
}

/// The claim on `id` as stored: status, attempts counted, and the end of its lease.
async fn claim_of(db: &Db, id: ids::ActionId) -> (String, i32, Option<DateTime<Utc>>) {
    let row = db
        .conn()
        .query_one(Statement::from_sql_and_values(
            db.conn().get_database_backend(),
            "SELECT status, attempts, locked_until FROM scheduled_actions WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap()
        .expect("the action exists");
    (row.try_get("", "status").unwrap(), row.try_get("", "attempts").unwrap(), row.try_get("", "locked_until").unwrap())
}

/// Polls `worker`, a pass whose handler never returns, until `wait` is over.
async fn polling<F: Future<Output = Pass>>(worker: Pin<&mut F>, wait: impl Future<Output = ()>) {
    let both = async {
        tokio::select! {
            pass = worker => panic!("the pass ended while its handler still runs: {pass:?}"),
            () = wait => {}
        }
    };
    tokio::time::timeout(DEADLINE, both).await.expect("the awaited event came");
}

/// A worker whose only handler (`test.long`) says it started, then waits for `release` before it
/// returns `outcome`.
fn worker_with_handler(
    db: Db,
    key: &crypto_vault::KeyMaterial,
    clock: &Arc<ManualClock>,
    lease: chrono::Duration,
    started: &Arc<Notify>,
    release: &Arc<Notify>,
    outcome: Result<(), String>,
) -> scheduler::Worker {
    let (started, release) = (started.clone(), release.clone());
    scheduler::Worker::new(db, key.clone(), clock.clone()).with_lease(lease).handle("test.long", move |_| {
        let (started, release, outcome) = (started.clone(), release.clone(), outcome.clone());
        async move {
            started.notify_one();
            release.notified().await;
            outcome
        }
    })
}

/// The handler of the first worker outlasts its lease many times over, and a second worker
/// finds nothing to take over while the first keeps renewing; once the first is killed (its pass
/// dropped mid-handler) its last renewal still holds for a lease, then the second takes over.
async fn a_worker_keeps_a_claim_its_handler_holds_past_the_lease_until_it_dies(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let (first_db, mut renewals) = counting_renewals(&test_db).await;
    let key = crypto_vault::KeyMaterial::generate();
    let clock = Arc::new(ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    let lease = scheduler::MIN_LEASE;
    let (started, never) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first = worker_with_handler(first_db, &key, &clock, lease, &started, &never, Ok(()));
    let second_attempts = Arc::new(Mutex::new(Vec::new()));
    let second = {
        let attempts = second_attempts.clone();
        scheduler::Worker::new(db.clone(), key.clone(), clock.clone()).with_lease(lease).handle(
            "test.long",
            move |action| {
                attempts.lock().unwrap().push(action.attempt);
                async { Ok(()) }
            },
        )
    };
    let id = scheduler::enqueue(db.conn(), &key, "test.long", &serde_json::json!({}), clock.now(), clock.now())
        .await
        .unwrap();

    let mut first_pass = Box::pin(first.run_due());
    polling(first_pass.as_mut(), started.notified()).await;
    for round in 0..3 {
        // Time passes, three leases' worth, with the handler still running; the first worker's
        // next renewal extends the claim from the new time.
        clock.advance(lease * 3);
        let now = clock.now();
        let renewed = async {
            loop {
                renewals.changed().await.unwrap();
                if claim_of(&db, id).await.2.is_some_and(|until| until > now) {
                    return;
                }
            }
        };
        polling(first_pass.as_mut(), renewed).await;
        assert_eq!(
            second.run_due().await.unwrap(),
            scheduler::PassReport::default(),
            "round {round}: nothing is taken over from a live worker"
        );
        let (status, attempts, _) = claim_of(&db, id).await;
        assert_eq!((status.as_str(), attempts), ("running", 1), "round {round}");
    }

    // Killed: the pass is dropped in the middle of its handler, and renewal stops with it.
    drop(first_pass);
    assert_eq!(
        second.run_due().await.unwrap(),
        scheduler::PassReport::default(),
        "the last renewal holds for a lease after the kill"
    );
    clock.advance(lease + chrono::Duration::seconds(1));
    assert_eq!(second.run_due().await.unwrap().done, 1, "once the lease has passed the second worker takes over");
    assert_eq!(second_attempts.lock().unwrap().as_slice(), [2]);
    let (status, attempts, until) = claim_of(&db, id).await;
    assert_eq!((status.as_str(), attempts, until), ("done", 2, None));
}

/// The first worker stalls past its lease (a paused process: its pass is not polled) and a second
/// takes the action over. When the first resumes, its renewals name its own claim's attempt: the
/// new claim keeps the second worker's lease, and the first's late failure is dropped too.
async fn a_worker_that_resumes_after_being_overtaken_does_not_renew_the_new_claim(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let (first_db, mut renewals) = counting_renewals(&test_db).await;
    let key = crypto_vault::KeyMaterial::generate();
    let clock = Arc::new(ManualClock::new(storage::Clock::now(&storage::SystemClock)));
    // Leases of different lengths: a renewal by the wrong worker would show in the stored end.
    let (first_lease, second_lease) = (scheduler::MIN_LEASE, scheduler::MIN_LEASE * 2);
    let (first_started, first_release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (second_started, second_release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let stale = Err("timed out talking to the remote".to_owned());
    let first = worker_with_handler(first_db, &key, &clock, first_lease, &first_started, &first_release, stale);
    let second = worker_with_handler(db.clone(), &key, &clock, second_lease, &second_started, &second_release, Ok(()));
    let id = scheduler::enqueue(db.conn(), &key, "test.long", &serde_json::json!({}), clock.now(), clock.now())
        .await
        .unwrap();

    let mut first_pass = Box::pin(first.run_due());
    polling(first_pass.as_mut(), first_started.notified()).await;
    // The first worker is not polled while its lease passes: the second takes the action over.
    clock.advance(first_lease + chrono::Duration::seconds(1));
    let mut second_pass = Box::pin(second.run_due());
    polling(second_pass.as_mut(), second_started.notified()).await;
    let taken = claim_of(&db, id).await;
    assert_eq!(taken, ("running".to_owned(), 2, Some(clock.now() + second_lease)));

    // The first worker resumes and renews twice (the first of those may have been under way when
    // it stalled): neither touches the second worker's claim.
    let seen = *renewals.borrow_and_update();
    polling(first_pass.as_mut(), async {
        renewals.wait_for(|n| *n >= seen + 2).await.unwrap();
    })
    .await;
    assert_eq!(claim_of(&db, id).await, taken, "the overtaken worker's renewals leave the new claim alone");

    // Its handler fails late: that outcome is dropped; the second worker's success decides.
    first_release.notify_one();
    first_pass.await.unwrap();
    assert_eq!(claim_of(&db, id).await, taken);
    second_release.notify_one();
    assert_eq!(second_pass.await.unwrap().done, 1);
    let all = scheduler::list(db.conn(), None, 10).await.unwrap();
    let action = all.iter().find(|a| a.id == id).unwrap();
    assert_eq!((action.status.as_str(), action.attempts, action.last_error.as_deref()), ("done", 2, None));
}

backend_tests!(
    a_worker_keeps_a_claim_its_handler_holds_past_the_lease_until_it_dies,
    a_worker_that_resumes_after_being_overtaken_does_not_renew_the_new_claim,
);
