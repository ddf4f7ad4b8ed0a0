//! The audit trail at its own boundary, on both stores: events chain in the writer's
//! transaction, nobody rewrites them, `verify` names the first broken link, and the retention
//! purge removes only what is past a year and records itself. PostgreSQL is reached as the
//! runtime role (RLS in force), the owner role and, for tampering, a superuser.

use audit::{Category, NewEvent, PLATFORM_CHAIN};
use chrono::{DateTime, Duration, Utc};
use storage::{ConnectionTrait, Db, Statement, TransactionTrait};
use testkit::{backend_tests, Backend, TestDb};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    storage::Clock::now(&storage::SystemClock)
}

struct Stores {
    /// The server's connection (the runtime role on PostgreSQL).
    runtime: Db,
    /// The owner role (PostgreSQL) or the same file (SQLite).
    owner: Db,
    test_db: TestDb,
}

async fn stores(backend: Backend) -> Stores {
    let test_db = TestDb::new(backend).await;
    let runtime = Db::connect(&test_db.runtime_url, 8).await.unwrap();
    let owner = Db::connect(&test_db.owner_url, 2).await.unwrap();
    Stores { runtime, owner, test_db }
}

fn is_postgres(db: &Db) -> bool {
    db.conn().get_database_backend() == sea_orm::DatabaseBackend::Postgres
}

/// A transaction whose tenant context is `chain` (what `tenancy` does for every request).
async fn in_chain(db: &Db, chain: Uuid) -> sea_orm::DatabaseTransaction {
    let txn = db.conn().begin().await.unwrap();
    if is_postgres(db) {
        txn.execute(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT set_config('app.tenant_id', $1, true)",
            [chain.to_string().into()],
        ))
        .await
        .unwrap();
    }
    txn
}

fn event(n: usize) -> NewEvent {
    NewEvent::new(Category::Membership, "member.role_changed", serde_json::json!({ "n": n, "to": "Admin" }))
        .by(Some(Uuid::new_v4()))
        .request(Some(format!("req-{n}")))
}

async fn append_committed(db: &Db, chain: Uuid, count: usize, at: DateTime<Utc>) {
    let txn = in_chain(db, chain).await;
    for n in 0..count {
        audit::append(&txn, chain, &event(n), at).await.unwrap();
    }
    txn.commit().await.unwrap();
}

async fn verify(db: &Db, chain: Uuid) -> audit::Verification {
    let txn = audit::begin_auditor(db.conn()).await.unwrap();
    let v = audit::verify(&txn, chain).await.unwrap();
    txn.commit().await.unwrap();
    v
}

async fn sql(db: &Db, text: &str) -> Result<u64, sea_orm::DbErr> {
    sql_with(db, text, vec![]).await
}

/// Runs `text` with bound values (uuids are stored differently by the two stores).
async fn sql_with(db: &Db, text: &str, values: Vec<sea_orm::Value>) -> Result<u64, sea_orm::DbErr> {
    db.conn()
        .execute(Statement::from_sql_and_values(db.conn().get_database_backend(), text, values))
        .await
        .map(|r| r.rows_affected())
}

async fn committed_events_chain_in_order_and_a_rolled_back_one_leaves_nothing(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 3, now()).await;
    let txn = in_chain(&s.runtime, chain).await;
    audit::append(&txn, chain, &event(99), now()).await.unwrap();
    txn.rollback().await.unwrap();

    let v = verify(&s.owner, chain).await;
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.events, 3, "the rolled-back event left nothing");
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let events = audit::list(&txn, chain, &audit::Filter::default(), 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1], "newest first");
    assert_eq!(events[2].prev_hash, audit::GENESIS_HASH);
    assert_eq!(events[1].prev_hash, events[2].hash);
    assert_eq!(events[0].request_id.as_deref(), Some("req-2"));
    assert_eq!(v.head, Some((3, events[0].hash.clone())));
}

async fn events_appended_together_are_linked_in_order_like_single_appends(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 2, now()).await;
    let txn = in_chain(&s.runtime, chain).await;
    let batch: Vec<(NewEvent, DateTime<Utc>)> = (10..15).map(|n| (event(n), now())).collect();
    let ids = audit::append_many(&txn, chain, &batch).await.unwrap();
    txn.commit().await.unwrap();
    // One event more after the batch, so the head the batch left is where the next one links.
    append_committed(&s.runtime, chain, 1, now()).await;

    let v = verify(&s.owner, chain).await;
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.events, 8);
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let mut events = audit::list(&txn, chain, &audit::Filter::default(), 10).await.unwrap();
    events.reverse();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    assert_eq!(events[2..7].iter().map(|e| e.id).collect::<Vec<_>>(), ids, "in the order given");
    let requests: Vec<_> = events[2..7].iter().map(|e| e.request_id.clone().unwrap()).collect();
    assert_eq!(requests, ["req-10", "req-11", "req-12", "req-13", "req-14"]);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "each links to the one before it");
    }
}

async fn chains_are_per_tenant_and_filters_select_by_category_actor_and_cursor(backend: Backend) {
    let s = stores(backend).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    append_committed(&s.runtime, a, 2, now()).await;
    append_committed(&s.runtime, b, 4, now()).await;
    let actor = Uuid::new_v4();
    let txn = in_chain(&s.runtime, a).await;
    let denied = NewEvent::new(Category::Authorization, "access.denied", serde_json::json!({"required": "x.read"}))
        .by(Some(actor));
    audit::append(&txn, a, &denied, now()).await.unwrap();
    txn.commit().await.unwrap();

    assert_eq!(verify(&s.owner, a).await.events, 3);
    assert_eq!(verify(&s.owner, b).await.events, 4, "each tenant has a chain of its own");
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let only = |f: audit::Filter| {
        let txn = &txn;
        async move { audit::list(txn, a, &f, 50).await.unwrap() }
    };
    let by_category = only(audit::Filter { category: Some(Category::Authorization), ..Default::default() }).await;
    assert_eq!(by_category.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["access.denied"]);
    assert_eq!(only(audit::Filter { actor: Some(actor), ..Default::default() }).await.len(), 1);
    let page = only(audit::Filter { before_seq: Some(3), ..Default::default() }).await;
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
    assert!(only(audit::Filter { since: Some(now() + Duration::hours(1)), ..Default::default() }).await.is_empty());
}

async fn the_retention_purge_removes_only_a_prefix_past_a_year_and_records_itself(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 3, now() - Duration::days(400)).await;
    append_committed(&s.runtime, chain, 2, now() - Duration::days(10)).await;
    let other = Uuid::new_v4();
    append_committed(&s.runtime, other, 2, now()).await;

    assert!(matches!(audit::purge(s.owner.conn(), 30, now()).await, Err(audit::AuditError::Invalid(_))));
    let report = audit::purge(s.owner.conn(), 365, now()).await.unwrap();
    assert_eq!(report.chains, vec![(chain, 3)], "only the old prefix of one chain went");

    let v = verify(&s.owner, chain).await;
    assert!(v.is_intact(), "the rest verifies from the purge's anchor: {v:?}");
    assert_eq!(v.events, 3, "two recent events and the purge record");
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let newest = audit::list(&txn, chain, &audit::Filter::default(), 1).await.unwrap().remove(0);
    assert_eq!((newest.category.as_str(), newest.action.as_str()), ("retention", "retention.purged"));
    let record: serde_json::Value = serde_json::from_str(&newest.payload).unwrap();
    assert_eq!((record["through_seq"].as_i64(), record["deleted"].as_i64()), (Some(3), Some(3)));
    assert!(verify(&s.owner, other).await.is_intact());
}

async fn a_missing_first_event_without_a_purge_record_is_reported(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 3, now() - Duration::days(400)).await;
    // Removed behind the chain's back (the retention role on PostgreSQL, past the year, with the
    // purge record then removed too; on SQLite a plain delete of an old row).
    if is_postgres(&s.runtime) {
        let admin = Db::connect(&s.test_db.admin_url().unwrap().into(), 1).await.unwrap();
        sql(&admin, "SET session_replication_role = replica").await.unwrap();
        sql_with(&admin, "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 1", vec![chain.into()])
            .await
            .unwrap();
    } else {
        let gone = sql_with(&s.owner, "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 1", vec![chain.into()]);
        assert_eq!(gone.await.unwrap(), 1, "a year-old event may be deleted on SQLite");
    }
    let v = verify(&s.owner, chain).await;
    let broken = v.broken.expect("a gap at the start is reported");
    assert_eq!(broken.seq, 2);
    assert!(broken.reason.contains("does not start"), "{}", broken.reason);
}

async fn an_edited_event_and_a_rehashed_one_are_both_reported_at_the_right_link(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 4, now()).await;
    // Tampering beyond the product's roles: a superuser with triggers off, or SQLite without them.
    let (tamper, off) = if is_postgres(&s.runtime) {
        (
            Db::connect(&s.test_db.admin_url().unwrap().into(), 1).await.unwrap(),
            "SET session_replication_role = replica",
        )
    } else {
        (Db::connect(&s.test_db.owner_url, 1).await.unwrap(), "DROP TRIGGER audit_events_no_update")
    };
    sql(&tamper, off).await.unwrap();
    let edit = "UPDATE audit_events SET payload = '{\"to\":\"Owner\"}' WHERE tenant_id = $1 AND seq = 2";
    assert_eq!(sql_with(&tamper, edit, vec![chain.into()]).await.unwrap(), 1);
    let broken = verify(&s.owner, chain).await.broken.expect("an edited payload breaks its own link");
    assert_eq!(broken.seq, 2);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);

    // Recompute the edited event's hash as a careful forger would: the next link still breaks.
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let mut events = audit::list(&txn, chain, &audit::Filter::default(), 10).await.unwrap();
    txn.commit().await.unwrap();
    let edited = events.iter_mut().find(|e| e.seq == 2).unwrap();
    let forged = edited.computed_hash();
    let rehash = "UPDATE audit_events SET hash = $1 WHERE tenant_id = $2 AND seq = 2";
    assert_eq!(sql_with(&tamper, rehash, vec![forged.into(), chain.into()]).await.unwrap(), 1);
    let broken = verify(&s.owner, chain).await.broken.expect("the next link no longer follows");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("previous hash"), "{}", broken.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_recent_event_can_be_neither_updated_nor_deleted() {
    let s = stores(Backend::Sqlite).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 2, now()).await;
    for statement in ["UPDATE audit_events SET payload = '{}'", "DELETE FROM audit_events"] {
        let err = sql(&s.owner, statement).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{statement}: {err}");
    }
    assert_eq!(verify(&s.owner, chain).await.events, 2);
}

async fn unset_fields_non_ascii_text_and_times_before_1970_link_as_the_crate_computes(backend: Backend) {
    let s = stores(backend).await;
    let chain = Uuid::new_v4();
    let plain = NewEvent::new(Category::Workspace, "workspace.renamed", serde_json::json!({ "to": "Zoë — 東京 🚀" }));
    let events = [
        (plain.clone(), now()),
        (plain.clone().request(Some("rêq-ü".into())), now()),
        (plain.clone().by(Some(Uuid::new_v4())), DateTime::from_timestamp_micros(-1).unwrap()),
        (plain, DateTime::from_timestamp_micros(-86_400_000_001).unwrap()),
    ];
    let txn = in_chain(&s.runtime, chain).await;
    for (event, at) in &events {
        audit::append(&txn, chain, event, *at).await.unwrap();
    }
    txn.commit().await.unwrap();

    let v = verify(&s.owner, chain).await;
    assert!(v.is_intact(), "the store's links are the crate's: {v:?}");
    let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
    let mut stored = audit::list(&txn, chain, &audit::Filter::default(), 10).await.unwrap();
    txn.commit().await.unwrap();
    stored.reverse();
    assert_eq!(stored.len(), 4);
    for (e, (event, at)) in stored.iter().zip(&events) {
        assert_eq!(e.hash, e.computed_hash(), "event {}", e.seq);
        assert_eq!((e.actor, e.request_id.as_deref()), (event.actor, event.request_id.as_deref()));
        assert_eq!(e.occurred_at.timestamp_micros(), at.timestamp_micros());
    }
    assert!(stored[0].payload.contains("東京"), "{}", stored[0].payload);
}

backend_tests!(
    committed_events_chain_in_order_and_a_rolled_back_one_leaves_nothing,
    events_appended_together_are_linked_in_order_like_single_appends,
    chains_are_per_tenant_and_filters_select_by_category_actor_and_cursor,
    the_retention_purge_removes_only_a_prefix_past_a_year_and_records_itself,
    a_missing_first_event_without_a_purge_record_is_reported,
    an_edited_event_and_a_rehashed_one_are_both_reported_at_the_right_link,
    unset_fields_non_ascii_text_and_times_before_1970_link_as_the_crate_computes,
);

/// Waits until a backend of this test's database waits for a lock: an observed state, not a delay.
async fn until_a_writer_waits_for_a_lock(admin: &Db) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting = admin
            .conn()
            .query_one(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the second writer never waited for the first");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_writer_racing_a_chains_first_event_links_after_it_or_starts_the_chain_if_it_rolls_back() {
    let s = stores(Backend::Postgres).await;
    let admin = Db::connect(&s.test_db.admin_url().unwrap().into(), 1).await.unwrap();
    for first_commits in [true, false] {
        let chain = Uuid::new_v4();
        let first = in_chain(&s.runtime, chain).await;
        audit::append(&first, chain, &event(1), now()).await.unwrap();
        let db = s.runtime.clone();
        let second = tokio::spawn(async move {
            let txn = in_chain(&db, chain).await;
            audit::append(&txn, chain, &event(2), now()).await.unwrap();
            txn.commit().await.unwrap();
        });
        // The second writer waits on the head the first event created, still uncommitted.
        until_a_writer_waits_for_a_lock(&admin).await;
        if first_commits {
            first.commit().await.unwrap();
        } else {
            first.rollback().await.unwrap();
        }
        second.await.unwrap();

        let v = verify(&s.owner, chain).await;
        assert!(v.is_intact(), "{v:?}");
        let txn = audit::begin_auditor(s.owner.conn()).await.unwrap();
        let mut events = audit::list(&txn, chain, &audit::Filter::default(), 10).await.unwrap();
        txn.commit().await.unwrap();
        events.reverse();
        let requests: Vec<_> = events.iter().map(|e| (e.seq, e.request_id.clone().unwrap())).collect();
        if first_commits {
            assert_eq!(requests, [(1, "req-1".to_owned()), (2, "req-2".to_owned())], "linked after the first");
        } else {
            assert_eq!(requests, [(1, "req-2".to_owned())], "the rolled-back head went with its event");
            assert_eq!(events[0].prev_hash, audit::GENESIS_HASH);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_eight_concurrent_writers_to_one_tenant_keep_its_chain_unbroken() {
    let s = stores(Backend::Postgres).await;
    let chain = Uuid::new_v4();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let db = s.runtime.clone();
        writers.spawn(async move {
            for n in 0..25 {
                let txn = in_chain(&db, chain).await;
                audit::append(&txn, chain, &event(w * 100 + n), now()).await.unwrap();
                // Another statement after the append: the head lock is held to commit.
                txn.execute_unprepared("SELECT 1").await.unwrap();
                txn.commit().await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let v = verify(&s.owner, chain).await;
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.events, 200);
    assert_eq!(v.head.map(|h| h.0), Some(200), "positions 1..=200 without gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_neither_the_runtime_role_nor_the_owner_may_update_delete_or_truncate_events() {
    let s = stores(Backend::Postgres).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 2, now() - Duration::days(400)).await;
    for statement in ["UPDATE audit_events SET payload = '{}'", "DELETE FROM audit_events", "TRUNCATE audit_events"] {
        let err = sql(&s.runtime, statement).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "runtime role, {statement}: {err}");
    }
    // The owner: no policy admits an update (nothing changes); the triggers refuse the rest.
    assert_eq!(sql(&s.owner, "UPDATE audit_events SET payload = '{}'").await.unwrap(), 0);
    for statement in ["DELETE FROM audit_events", "TRUNCATE audit_events"] {
        let err = sql(&s.owner, statement).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "owner, {statement}: {err}");
    }
    // A superuser passes every policy, so the statement reaches the rows: the trigger refuses.
    let admin = Db::connect(&s.test_db.admin_url().unwrap().into(), 1).await.unwrap();
    for statement in ["UPDATE audit_events SET payload = '{}'", "DELETE FROM audit_events", "TRUNCATE audit_events"] {
        let err = sql(&admin, statement).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "superuser, {statement}: {err}");
    }
    assert!(verify(&s.owner, chain).await.is_intact());
    // Even as the retention role, a recent event stays.
    append_committed(&s.runtime, chain, 1, now()).await;
    let txn = s.owner.conn().begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL ROLE rampart_audit").await.unwrap();
    let gone = txn.execute_unprepared("DELETE FROM audit_events WHERE seq = 3").await.unwrap().rows_affected();
    assert_eq!(gone, 0, "the retention policy admits only events past a year");
    txn.rollback().await.unwrap();
    // And the runtime role cannot become it.
    let err = sql(&s.runtime, "SET ROLE rampart_audit").await.unwrap_err().to_string();
    assert!(err.contains("permission denied"), "{err}");
    assert!(matches!(audit::purge(s.runtime.conn(), 365, now()).await, Err(audit::AuditError::Db(_))));
    assert_eq!(verify(&s.owner, chain).await.events, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_event_removed_from_the_end_of_a_chain_is_reported_by_its_head() {
    let s = stores(Backend::Postgres).await;
    let chain = Uuid::new_v4();
    append_committed(&s.runtime, chain, 3, now()).await;
    let admin = Db::connect(&s.test_db.admin_url().unwrap().into(), 1).await.unwrap();
    sql(&admin, "SET session_replication_role = replica").await.unwrap();
    sql_with(&admin, "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 3", vec![chain.into()]).await.unwrap();
    let broken = verify(&s.owner, chain).await.broken.expect("the head still names event 3");
    assert!(broken.reason.contains("removed from its end"), "{}", broken.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_runtime_role_writes_only_its_tenants_chain_or_the_platform_chain() {
    let s = stores(Backend::Postgres).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let txn = in_chain(&s.runtime, a).await;
    let err = audit::append(&txn, b, &event(1), now()).await.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "{err}");
    txn.rollback().await.unwrap();
    let txn = s.runtime.conn().begin().await.unwrap();
    audit::append(&txn, PLATFORM_CHAIN, &event(2), now()).await.unwrap();
    // Without a tenant context nothing of a workspace's chain is visible, even unfiltered.
    let seen = txn
        .execute_unprepared("SELECT 1 FROM audit_events WHERE tenant_id <> '00000000-0000-0000-0000-000000000000'")
        .await
        .unwrap();
    assert_eq!(seen.rows_affected(), 0);
    txn.commit().await.unwrap();
    assert!(verify(&s.owner, PLATFORM_CHAIN).await.is_intact());
}
