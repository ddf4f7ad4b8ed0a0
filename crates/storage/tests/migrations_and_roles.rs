//! Migrations and role checks against real databases.

use storage::{check_runtime_role, migrate, ConnectionTrait, Db, RoleReport, StorageError, RUNTIME_GROUP_ROLE};
use testkit::{backend_tests, Backend, TestDb};

async fn owner(db: &TestDb) -> Db {
    Db::connect(&db.owner_url, 2).await.expect("owner connection")
}

async fn migrating_twice_applies_nothing_the_second_time(backend: Backend) {
    let db = TestDb::unmigrated(backend).await;
    let conn = owner(&db).await;
    let first = migrate(conn.conn()).await.unwrap();
    assert_eq!(first, (1..=storage::expected_schema_version(conn.backend())).collect::<Vec<_>>());
    assert!(migrate(conn.conn()).await.unwrap().is_empty());
    conn.ensure_schema_current().await.unwrap();
}

async fn a_modified_applied_migration_stops_the_migrator(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = owner(&db).await;
    conn.conn()
        .execute_unprepared("UPDATE rampart_migrations SET checksum = 'tampered' WHERE version = 1")
        .await
        .unwrap();
    let err = migrate(conn.conn()).await.unwrap_err();
    assert!(matches!(err, StorageError::MigrationChecksumMismatch { version: 1, .. }), "{err}");
}

async fn a_database_newer_than_the_binary_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = owner(&db).await;
    conn.conn()
        .execute_unprepared(
            "INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES (9999, 'future', 'x', 'now')",
        )
        .await
        .unwrap();
    assert!(matches!(migrate(conn.conn()).await.unwrap_err(), StorageError::DatabaseNewerThanBinary(9999)));
    assert!(matches!(conn.ensure_schema_current().await.unwrap_err(), StorageError::DatabaseNewerThanBinary(9999)));
}

backend_tests!(
    migrating_twice_applies_nothing_the_second_time,
    a_modified_applied_migration_stops_the_migrator,
    a_database_newer_than_the_binary_is_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrators_on_postgres_apply_each_migration_exactly_once() {
    let db = TestDb::unmigrated(Backend::Postgres).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.owner_url.clone();
        tasks.push(tokio::spawn(async move {
            let conn = Db::connect(&url, 1).await.unwrap();
            migrate(conn.conn()).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap());
    }
    applied.sort();
    let expected: Vec<i64> = (1..=storage::expected_schema_version(storage::Backend::Postgres)).collect();
    assert_eq!(applied, expected, "each version applied by exactly one migrator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_runtime_role_can_read_but_not_change_the_schema_or_its_history() {
    let db = TestDb::new(Backend::Postgres).await;
    let runtime = Db::connect(&db.runtime_url, 1).await.unwrap();
    let report = check_runtime_role(&runtime).await.unwrap().expect("a report on PostgreSQL");
    assert_eq!(report.role, "rampart_app");
    assert!(report.is_safe(), "{report:?}");
    runtime.ensure_schema_current().await.expect("the runtime role may read the schema version");
    for sql in [
        "DELETE FROM rampart_migrations",
        "UPDATE rampart_migrations SET checksum = 'x'",
        "INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES (2, 'x', 'x', 'x')",
        "CREATE TABLE public.sneaky (id int)",
    ] {
        let err = runtime.conn().execute_unprepared(sql).await.expect_err(sql).to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_runtime_role_check_refuses_a_superuser_connection() {
    let db = TestDb::new(Backend::Postgres).await;
    let admin = Db::connect(&db.admin_url().unwrap().into(), 1).await.unwrap();
    let err = check_runtime_role(&admin).await.unwrap_err().to_string();
    assert!(err.contains("superuser"), "{err}");
    assert!(err.contains("BYPASSRLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_runtime_role_check_refuses_a_role_that_owns_tables() {
    let db = TestDb::new(Backend::Postgres).await;
    let owner = owner(&db).await;
    let err = check_runtime_role(&owner).await.unwrap_err().to_string();
    assert!(err.contains("owns"), "{err}");
}

/// The password the harness gives its roles (`testkit`'s `TEST_ROLE_PASSWORD`), for clusters that
/// do not use trust authentication.
const TEST_ROLE_PASSWORD: &str = "rampart-test-only";

/// A name no other test uses for a role, which is cluster-wide.
fn unique_role(what: &str) -> String {
    format!("rampart_test_{what}_{}", uuid::Uuid::new_v4().simple())
}

/// What `check_runtime_role` says over a connection to `db` as `roles[0]`, a login role: `setup`
/// (run as the superuser, in one implicit transaction) creates `roles`. They are dropped again
/// before this returns, whatever the check said, and only then does a failed step panic. `Err`
/// holds the refusal.
async fn check_as_new_role(db: &TestDb, roles: &[&str], setup: &str) -> Result<RoleReport, String> {
    let admin_url = db.admin_url().expect("a PostgreSQL database");
    let admin = Db::connect(&admin_url.clone().into(), 1).await.expect("admin connection");
    let created = admin.conn().execute_unprepared(setup).await.map(|_| ());
    let checked = match &created {
        Ok(()) => {
            let mut url = url::Url::parse(&admin_url).expect("a URL");
            url.set_username(roles[0]).expect("a user name");
            url.set_password(Some(TEST_ROLE_PASSWORD)).expect("a password");
            match Db::connect(&url.to_string().into(), 1).await {
                Ok(conn) => {
                    let checked = check_runtime_role(&conn).await;
                    let _ = conn.close().await;
                    Some(checked)
                }
                Err(err) => Some(Err(err)),
            }
        }
        Err(_) => None,
    };
    let dropped = match created {
        Ok(()) => {
            let names = roles.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
            admin.conn().execute_unprepared(&format!("DROP OWNED BY {names}; DROP ROLE {names}")).await.map(|_| ())
        }
        Err(err) => panic!("setting up the roles: {err}"),
    };
    let _ = admin.close().await;
    dropped.expect("dropping the test roles");
    match checked.expect("the check ran") {
        Ok(report) => Ok(report.expect("a report on PostgreSQL")),
        Err(err @ StorageError::UnsafeRuntimeRole { .. }) => Err(err.to_string()),
        Err(err) => panic!("the check failed to run: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_that_is_a_member_of_the_owner_role_is_refused_and_told_which_membership() {
    let db = TestDb::new(Backend::Postgres).await;
    let login = unique_role("owner_member");
    let setup = format!(
        "CREATE ROLE \"{login}\" LOGIN PASSWORD '{TEST_ROLE_PASSWORD}';
         GRANT {RUNTIME_GROUP_ROLE} TO \"{login}\";
         GRANT rampart_owner TO \"{login}\";"
    );
    let err = check_as_new_role(&db, &[&login], &setup).await.expect_err("a member of the owner must be refused");
    assert!(err.contains(&format!("`{login}` is unsafe")), "{err}");
    assert!(err.contains("it is a member of `rampart_owner`, which owns "), "{err}");
    assert!(!err.contains("it owns"), "the login role owns nothing itself: {err}");
    assert!(!err.contains(&format!("member of `{RUNTIME_GROUP_ROLE}`,")), "the group role is harmless: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_that_can_only_set_role_to_the_owner_is_refused_too() {
    let db = TestDb::new(Backend::Postgres).await;
    let login = unique_role("owner_set_role");
    let setup = format!(
        "CREATE ROLE \"{login}\" LOGIN NOINHERIT PASSWORD '{TEST_ROLE_PASSWORD}';
         GRANT rampart_owner TO \"{login}\";"
    );
    let err = check_as_new_role(&db, &[&login], &setup).await.expect_err("SET ROLE rampart_owner must be refused");
    assert!(err.contains("it is a member of `rampart_owner`, which owns "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_that_is_a_member_of_a_bypassrls_role_is_refused_and_told_which_membership() {
    let db = TestDb::new(Backend::Postgres).await;
    let login = unique_role("bypass_member");
    let bypass = unique_role("bypass");
    let setup = format!(
        "CREATE ROLE \"{bypass}\" NOLOGIN BYPASSRLS;
         CREATE ROLE \"{login}\" LOGIN PASSWORD '{TEST_ROLE_PASSWORD}';
         GRANT {RUNTIME_GROUP_ROLE} TO \"{login}\";
         GRANT \"{bypass}\" TO \"{login}\";"
    );
    let err = check_as_new_role(&db, &[&login, &bypass], &setup).await.expect_err("a BYPASSRLS membership");
    assert!(err.contains(&format!("it is a member of `{bypass}`, which has BYPASSRLS")), "{err}");
    assert!(!err.contains("it has BYPASSRLS"), "the login role itself has no BYPASSRLS: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_that_reaches_the_owner_role_through_an_intermediate_role_is_refused_naming_both() {
    let db = TestDb::new(Backend::Postgres).await;
    let login = unique_role("indirect");
    let middle = unique_role("middle");
    let setup = format!(
        "CREATE ROLE \"{middle}\" NOLOGIN;
         CREATE ROLE \"{login}\" LOGIN PASSWORD '{TEST_ROLE_PASSWORD}';
         GRANT rampart_owner TO \"{middle}\";
         GRANT {RUNTIME_GROUP_ROLE} TO \"{login}\";
         GRANT \"{middle}\" TO \"{login}\";"
    );
    let err = check_as_new_role(&db, &[&login, &middle], &setup).await.expect_err("an indirect owner membership");
    assert!(
        err.contains(&format!("it is a member of `rampart_owner` (through its membership of `{middle}`), which owns ")),
        "{err}"
    );
    assert!(!err.contains(&format!("member of `{middle}`,")), "the intermediate role itself is harmless: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_that_is_a_member_of_a_superuser_role_is_refused_and_told_which_membership() {
    let db = TestDb::new(Backend::Postgres).await;
    let login = unique_role("super_member");
    let superuser = unique_role("superuser");
    let setup = format!(
        "CREATE ROLE \"{superuser}\" NOLOGIN SUPERUSER;
         CREATE ROLE \"{login}\" LOGIN PASSWORD '{TEST_ROLE_PASSWORD}';
         GRANT \"{superuser}\" TO \"{login}\";"
    );
    let err = check_as_new_role(&db, &[&login, &superuser], &setup).await.expect_err("a superuser membership");
    assert!(err.contains(&format!("it is a member of `{superuser}`, which is a superuser")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_runtime_role_passes_the_check_with_its_harmless_group_membership() {
    let db = TestDb::new(Backend::Postgres).await;
    let runtime = Db::connect(&db.runtime_url, 1).await.unwrap();
    let report = check_runtime_role(&runtime).await.unwrap().expect("a report on PostgreSQL");
    assert!(report.is_safe(), "{report:?}");
    let groups: Vec<&str> = report.memberships.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(groups, [RUNTIME_GROUP_ROLE], "{report:?}");
    assert_eq!(report.memberships[0].via, None, "granted directly: {report:?}");
}

/// The status read every authenticated request makes, as the inline reader runs it.
fn inline_status(db: &Db, id: uuid::Uuid) -> Option<Option<String>> {
    db.inline_reader().expect("an SQLite file has an inline reader").query_row(
        "SELECT status FROM users WHERE id = ?1",
        [id.as_bytes().as_slice()],
        |row| row.get(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_sqlite_read_sees_each_commit_through_the_pool_at_once() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let id = uuid::Uuid::new_v4();
    assert_eq!(inline_status(&db, id), Some(None), "no row yet");
    let now = storage::Clock::now(&storage::SystemClock);
    db.conn()
        .execute(storage::Statement::from_sql_and_values(
            storage::DatabaseBackend::Sqlite,
            "INSERT INTO users (id, email, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, 'active', 0, 0, $3, $3)",
            [id.into(), format!("{id}@example.com").into(), now.into()],
        ))
        .await
        .unwrap();
    assert_eq!(inline_status(&db, id), Some(Some("active".into())));
    // The driver's text for a timestamp reads back in place as the same instant, and the
    // placeholder style of the pool's statements binds here too.
    let created = db.inline_reader().unwrap().query_row(
        "SELECT created_at FROM users WHERE id = $1",
        [id.as_bytes().as_slice()],
        |row| row.get::<_, chrono::DateTime<chrono::Utc>>(0),
    );
    assert_eq!(created, Some(Some(now)));
    // Another pool on the same file, as an operator's session would be.
    let other = Db::connect(&test_db.runtime_url, 1).await.unwrap();
    other
        .conn()
        .execute(storage::Statement::from_sql_and_values(
            storage::DatabaseBackend::Sqlite,
            "UPDATE users SET status = 'suspended' WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap();
    assert_eq!(inline_status(&db, id), Some(Some("suspended".into())), "the next read sees the suspension");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_has_no_inline_reader() {
    let test_db = TestDb::new(Backend::Postgres).await;
    let db = Db::connect(&test_db.runtime_url, 1).await.unwrap();
    assert!(db.inline_reader().is_none());
}

/// A second connection to the same SQLite file that never waits for a lock.
fn impatient_writer(test_db: &TestDb) -> rusqlite::Connection {
    use secrecy::ExposeSecret as _;
    let url = test_db.runtime_url.expose_secret();
    let path = url.strip_prefix("sqlite://").and_then(|rest| rest.split('?').next()).expect("an SQLite file URL");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_transaction_that_claims_the_write_lock_first_is_not_undercut_by_another_writer() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let other = impatient_writer(&test_db);
    other.execute("CREATE TABLE scratch (n INTEGER)", []).unwrap();
    let write = "INSERT INTO scratch (n) VALUES (1)";
    let read =
        || storage::Statement::from_string(storage::DatabaseBackend::Sqlite, "SELECT count(*) AS n FROM scratch");

    // Unclaimed: it reads, another connection commits, and its own first write then fails.
    let txn = storage::TransactionTrait::begin(db.conn()).await.unwrap();
    txn.query_one(read()).await.unwrap();
    other.execute(write, []).unwrap();
    let err = txn.execute_unprepared(write).await.unwrap_err();
    assert!(storage::is_sqlite_busy(&err), "a stale snapshot cannot write: {err}");
    txn.rollback().await.unwrap();

    // Claimed: from its first step no other writer gets in, and its own write goes through.
    let txn = storage::TransactionTrait::begin(db.conn()).await.unwrap();
    storage::claim_sqlite_write_lock(&txn).await.unwrap();
    txn.query_one(read()).await.unwrap();
    let refused = other.execute(write, []).unwrap_err();
    assert!(storage::is_sqlite_busy(&refused), "the other writer waits for the lock: {refused}");
    txn.execute_unprepared(write).await.unwrap();
    txn.commit().await.unwrap();
    other.execute(write, []).expect("the lock is free after the commit");
    let rows: i64 = other.query_row("SELECT count(*) FROM scratch", [], |row| row.get(0)).unwrap();
    assert_eq!(rows, 3, "the other's two writes and the claimed transaction's one");
}
