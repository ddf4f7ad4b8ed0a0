//! Tenant isolation at the tenancy crate's boundary: the application's scoping on both stores,
//! and PostgreSQL's forced row-level security on its own, reached as the runtime role.

use chrono::Utc;
use storage::{ConnectionTrait, Db, Statement};
use tenancy::{projects, workspaces, TenancyError, TenantId, TenantTx, UserId};
use testkit::{backend_tests, Backend, TestDb};
use uuid::Uuid;

fn now() -> chrono::DateTime<Utc> {
    storage::Clock::now(&storage::SystemClock)
}

async fn user(db: &Db) -> UserId {
    let id = Uuid::new_v4();
    db.conn()
        .execute(Statement::from_sql_and_values(
            db.conn().get_database_backend(),
            "INSERT INTO users (id, email, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, 'active', 0, 0, $3, $3)",
            [id.into(), format!("{id}@example.com").into(), now().into()],
        ))
        .await
        .unwrap();
    UserId(id)
}

/// Two workspaces, each with an owner and one project.
struct World {
    db: Db,
    a: TenantId,
    b: TenantId,
    alice: UserId,
    bob: UserId,
    project_b: Uuid,
    _test_db: TestDb,
}

async fn world(backend: Backend) -> World {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let alice = user(&db).await;
    let bob = user(&db).await;
    let a = workspaces::create(&db, alice, "A", now()).await.unwrap().id;
    let b = workspaces::create(&db, bob, "B", now()).await.unwrap().id;
    let tx = TenantTx::begin(&db, a, alice).await.unwrap();
    projects::create(&tx, "alpha", "", now()).await.unwrap();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&db, b, bob).await.unwrap();
    let project_b = projects::create(&tx, "beta", "", now()).await.unwrap().id;
    tx.commit().await.unwrap();
    World { db, a, b, alice, bob, project_b, _test_db: test_db }
}

async fn another_tenants_project_is_not_found_for_read_update_or_delete(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let listed = projects::list(&tx, 20).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["alpha"]);
    assert!(matches!(projects::get(&tx, w.project_b).await, Err(TenancyError::NotFound)));
    assert!(matches!(projects::rename(&tx, w.project_b, "stolen", now()).await, Err(TenancyError::NotFound)));
    assert!(matches!(projects::delete(&tx, w.project_b).await, Err(TenancyError::NotFound)));
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.b, w.bob).await.unwrap();
    assert_eq!(projects::get(&tx, w.project_b).await.unwrap().name, "beta", "B's project is untouched");
}

async fn a_non_member_has_no_role_in_a_workspace(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.b, w.alice).await.unwrap();
    assert!(matches!(workspaces::role_of(&tx).await, Err(TenancyError::NotFound)));
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(workspaces::role_of(&tx).await.unwrap(), "Owner");
}

backend_tests!(another_tenants_project_is_not_found_for_read_update_or_delete, a_non_member_has_no_role_in_a_workspace);

/// Runs one PostgreSQL statement inside the tenant transaction.
async fn exec(tx: &TenantTx, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, sea_orm::DbErr> {
    let stmt = Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, values);
    tx.conn().execute(stmt).await.map(|r| r.rows_affected())
}

async fn count(tx: &TenantTx, sql: &str) -> i64 {
    let row = tx
        .conn()
        .query_one(Statement::from_string(tx.conn().get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_rls_alone_hides_other_tenants_rows_from_unfiltered_sql() {
    let w = world(Backend::Postgres).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    // The application's tenant filter is bypassed on purpose: the policies must hold on their own.
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM projects").await, 1);
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM workspaces").await, 1);
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM memberships").await, 1);
    let updated = tx.conn().execute_unprepared("UPDATE projects SET name = 'x'").await.unwrap().rows_affected();
    assert_eq!(updated, 1, "only A's own row is reachable");
    let deleted = exec(&tx, "DELETE FROM projects WHERE id = $1", vec![w.project_b.into()]).await.unwrap();
    assert_eq!(deleted, 0);
    let err = exec(
        &tx,
        "INSERT INTO projects (id, tenant_id, name, created_by, created_at, updated_at) VALUES ($1, $2, 'planted', $3, now(), now())",
        vec![Uuid::new_v4().into(), w.b.0.into(), w.alice.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row-level security"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_unset_context_sees_nothing_and_raises_nothing() {
    let w = world(Backend::Postgres).await;
    let conn = w.db.conn();
    for table in ["projects", "workspaces", "memberships", "activity"] {
        let row = conn
            .query_one(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_context_ends_with_its_transaction_on_a_pooled_connection() {
    let test_db = TestDb::new(Backend::Postgres).await;
    // One connection, so the next transaction reuses it.
    let db = Db::connect(&test_db.runtime_url, 1).await.unwrap();
    let alice = user(&db).await;
    let a = workspaces::create(&db, alice, "A", now()).await.unwrap().id;
    let tx = TenantTx::begin(&db, a, alice).await.unwrap();
    projects::create(&tx, "alpha", "", now()).await.unwrap();
    tx.commit().await.unwrap();
    let row = db
        .conn()
        .query_one(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) AS n FROM projects".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_activity_is_private_to_its_user_even_for_the_workspace_owner() {
    let w = world(Backend::Postgres).await;
    // Bob joins A as a member and records activity there.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let sql = "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'Member', now())";
    exec(&tx, sql, vec![w.a.0.into(), w.bob.0.into()]).await.unwrap();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let sql = "INSERT INTO activity (id, tenant_id, user_id, app, title, body, content_hash, occurred_at) VALUES ($1, $2, $3, 'editor', 't', 'b', 'h', now())";
    exec(&tx, sql, vec![Uuid::new_v4().into(), w.a.0.into(), w.bob.0.into()]).await.unwrap();
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM activity").await, 1);
    tx.commit().await.unwrap();
    // Alice owns the workspace and still sees none of it.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(workspaces::role_of(&tx).await.unwrap(), "Owner");
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM activity").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_owner_role_is_bound_by_forced_rls_too() {
    let w = world(Backend::Postgres).await;
    let owner = Db::connect(&w._test_db.owner_url, 1).await.unwrap();
    let tx = TenantTx::begin(&owner, w.a, w.alice).await.unwrap();
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM projects").await, 1, "FORCE binds the table owner");
    tx.commit().await.unwrap();
    let none = owner
        .conn()
        .query_one(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) AS n FROM projects".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(none.try_get::<i64>("", "n").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_project_list_query_uses_the_tenant_index() {
    let w = world(Backend::Postgres).await;
    // Enough rows in both tenants that a sequential scan would be the worse plan.
    for (tenant, user) in [(w.a, w.alice), (w.b, w.bob)] {
        let tx = TenantTx::begin(&w.db, tenant, user).await.unwrap();
        let sql = "INSERT INTO projects (id, tenant_id, name, created_by, created_at, updated_at)
                   SELECT gen_random_uuid(), $1, 'p' || g, $2, now() - g * interval '1 second', now() FROM generate_series(1, 3000) g";
        exec(&tx, sql, vec![tenant.0.into(), user.0.into()]).await.unwrap();
        tx.commit().await.unwrap();
    }
    let owner = Db::connect(&w._test_db.owner_url, 1).await.unwrap();
    owner.conn().execute_unprepared("ANALYZE projects").await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let rows = tx
        .conn()
        .query_all(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "EXPLAIN SELECT id, tenant_id, name, description, created_by, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 20",
            [w.a.0.into()],
        ))
        .await
        .unwrap();
    let plan: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap()).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("projects_tenant_created"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
