//! Tenant isolation at the tenancy crate's boundary: the application's scoping on both stores,
//! and PostgreSQL's forced row-level security on its own, reached as the runtime role.

use chrono::Utc;
use storage::{ConnectionTrait, Db, Statement};
use tenancy::{invitations, members, projects, roles, workspaces, TenancyError, TenantTx, UserId, WorkspaceId};
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
    a: WorkspaceId,
    b: WorkspaceId,
    alice: UserId,
    bob: UserId,
    project_b: ids::ProjectId,
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
    let listed = projects::list(&tx, 20, None).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["alpha"]);
    assert!(matches!(projects::get(&tx, w.project_b).await, Err(TenancyError::NotFound)));
    assert!(matches!(
        projects::update(&tx, w.project_b, Some("stolen"), None, now()).await,
        Err(TenancyError::NotFound)
    ));
    assert!(matches!(projects::delete(&tx, w.project_b).await, Err(TenancyError::NotFound)));
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.b, w.bob).await.unwrap();
    assert_eq!(projects::get(&tx, w.project_b).await.unwrap().name, "beta", "B's project is untouched");
}

async fn a_non_member_has_no_role_in_a_workspace(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin_read(&w.db, w.b, w.alice).await.unwrap();
    assert!(tx.access().is_none());
    assert!(matches!(workspaces::get(&tx).await, Err(TenancyError::NotFound)));
    assert!(matches!(projects::list(&tx, 20, None).await, Err(TenancyError::NotFound)));
    let tx = TenantTx::begin_read(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(tx.access().unwrap().role.name, "Owner");
    assert_eq!(workspaces::get(&tx).await.unwrap().role, "Owner");
}

/// `inviter` invites `invitee` to `tenant` with `role`, and the invitee accepts.
async fn join(db: &Db, tenant: WorkspaceId, inviter: UserId, invitee: UserId, role: &str) {
    let hash = format!("hash-{}", Uuid::new_v4());
    let tx = TenantTx::begin(db, tenant, inviter).await.unwrap();
    invitations::create(&tx, &format!("{}@example.com", invitee.0), role, &hash, now()).await.unwrap();
    tx.commit().await.unwrap();
    invitations::accept(db, tenant, invitee, &hash, &format!("{}@example.com", invitee.0), now()).await.unwrap();
}

async fn roles_are_data_and_the_built_in_rows_match_the_rbac_catalogue(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let stored: Vec<rbac::Role> = roles::list(&tx).await.unwrap().into_iter().filter(|r| r.builtin).collect();
    assert_eq!(stored, rbac::builtin_roles());
    let rows =
        w.db.conn()
            .query_all(Statement::from_string(
                w.db.conn().get_database_backend(),
                "SELECT name, CAST(level AS INTEGER) AS level FROM platform_levels ORDER BY level DESC".to_owned(),
            ))
            .await
            .unwrap();
    let levels: Vec<(String, i32)> =
        rows.iter().map(|r| (r.try_get("", "name").unwrap(), r.try_get("", "level").unwrap())).collect();
    let expected: Vec<(String, i32)> =
        rbac::PLATFORM_LEVELS.iter().map(|(n, l)| ((*n).to_owned(), i32::from(*l))).collect();
    assert_eq!(levels, expected, "platform levels are data too");
}

async fn an_invitation_joins_only_the_invited_address_once(backend: Backend) {
    let w = world(backend).await;
    let carol = user(&w.db).await;
    let hash = "invitation-hash".to_owned();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    invitations::create(&tx, &format!("{}@example.com", w.bob.0), "Support Agent", &hash, now()).await.unwrap();
    tx.commit().await.unwrap();
    // Carol holds the link but is not the invited address.
    let stolen = invitations::accept(&w.db, w.a, carol, &hash, &format!("{}@example.com", carol.0), now()).await;
    assert!(matches!(stolen, Err(TenancyError::NotFound)), "{stolen:?}");
    let bob_email = format!("{}@example.com", w.bob.0);
    let joined = invitations::accept(&w.db, w.a, w.bob, &hash, &bob_email, now()).await.unwrap();
    assert_eq!(joined.role, "Support Agent");
    let tx = TenantTx::begin_read(&w.db, w.a, w.bob).await.unwrap();
    assert_eq!(tx.access().unwrap().role.name, "Support Agent");
    let again = invitations::accept(&w.db, w.a, w.bob, &hash, &bob_email, now()).await;
    assert!(matches!(again, Err(TenancyError::NotFound)), "single use: {again:?}");
}

async fn an_expired_invitation_is_refused(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    invitations::create(&tx, &format!("{}@example.com", w.bob.0), "Member", "h", now()).await.unwrap();
    tx.commit().await.unwrap();
    let later = now() + invitations::INVITATION_TTL + chrono::Duration::seconds(1);
    assert!(matches!(
        invitations::accept(&w.db, w.a, w.bob, "h", &format!("{}@example.com", w.bob.0), later).await,
        Err(TenancyError::NotFound)
    ));
}

async fn the_last_owner_can_neither_leave_nor_be_demoted(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let demoted = members::change_role(&tx, w.alice, "Admin", now()).await;
    assert!(matches!(demoted, Err(TenancyError::Forbidden(rbac::RbacError::LastOwner))), "{demoted:?}");
    let left = members::remove(&tx, w.alice, now()).await;
    assert!(matches!(left, Err(TenancyError::Forbidden(rbac::RbacError::LastOwner))), "{left:?}");
    tx.rollback().await.unwrap();
    // With a second owner, the first may step down.
    join(&w.db, w.a, w.alice, w.bob, "Owner").await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(members::change_role(&tx, w.alice, "Admin", now()).await.unwrap().name, "Admin");
    tx.commit().await.unwrap();
}

async fn an_admin_cannot_grant_owner_or_create_a_role_above_their_own(backend: Backend) {
    let w = world(backend).await;
    let carol = user(&w.db).await;
    join(&w.db, w.a, w.alice, w.bob, "Admin").await;
    join(&w.db, w.a, w.alice, carol, "Member").await;
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let up = members::change_role(&tx, carol, "Owner", now()).await;
    assert!(matches!(up, Err(TenancyError::Forbidden(rbac::RbacError::LevelTooHigh { .. }))), "{up:?}");
    let role = roles::create(&tx, "Deleter", 80, &["workspace.delete".to_owned()], now()).await;
    assert!(matches!(role, Err(TenancyError::Forbidden(rbac::RbacError::Escalation { .. }))), "{role:?}");
    let role = roles::create(&tx, "Senior", 90, &["projects.read".to_owned()], now()).await;
    assert!(matches!(role, Err(TenancyError::Forbidden(rbac::RbacError::LevelTooHigh { .. }))), "{role:?}");
    let reader = roles::create(&tx, "Reader", 35, &["projects.read".to_owned()], now()).await.unwrap();
    assert!(!reader.builtin);
    assert_eq!(members::change_role(&tx, carol, "reader", now()).await.unwrap().name, "Reader");
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, carol).await.unwrap();
    assert_eq!(tx.access().unwrap().role.name, "Reader");
    assert!(matches!(projects::create(&tx, "p", "", now()).await, Err(TenancyError::Forbidden(_))));
}

async fn a_recorded_audit_event_is_appended_at_commit_after_the_transactions_other_statements(backend: Backend) {
    let w = world(backend).await;
    let mut db = w.db.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    db.observe_statements(move |sql| log.lock().unwrap().push(sql.to_owned()));
    let tx = TenantTx::begin(&db, w.a, w.alice).await.unwrap();
    tx.record(audit::Category::Workspace, "workspace.renamed", serde_json::json!({ "name": "A2" }), now())
        .await
        .unwrap();
    let project = projects::create(&tx, "after the event", "", now()).await.unwrap();
    let before_commit = seen.lock().unwrap().clone();
    assert!(
        !before_commit.iter().any(|sql| sql.contains("audit_events")),
        "nothing is appended before the commit: {before_commit:?}"
    );
    tx.commit().await.unwrap();
    let statements = seen.lock().unwrap().clone();
    let last = statements.last().unwrap();
    assert!(last.contains("INSERT INTO audit_events"), "the append is the last statement: {statements:?}");

    // Both the change and its event committed, the event after the project's own.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(projects::get(&tx, project.id).await.unwrap().name, "after the event");
    let events = audit::list(tx.conn(), w.a.0, &audit::Filter::default(), 10).await.unwrap();
    assert_eq!(events[0].action, "workspace.renamed", "newest first: {events:?}");
    tx.commit().await.unwrap();
}

async fn a_recorded_audit_event_is_dropped_with_a_rollback(backend: Backend) {
    let w = world(backend).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let before = audit::list(tx.conn(), w.a.0, &audit::Filter::default(), 100).await.unwrap().len();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    tx.record(audit::Category::Workspace, "workspace.renamed", serde_json::json!({ "name": "A2" }), now())
        .await
        .unwrap();
    let result: Result<(), TenancyError> = Err(TenancyError::Invalid("the change failed"));
    assert!(tx.settle(result).await.is_err());
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(audit::list(tx.conn(), w.a.0, &audit::Filter::default(), 100).await.unwrap().len(), before);
    tx.commit().await.unwrap();
}

backend_tests!(
    a_recorded_audit_event_is_appended_at_commit_after_the_transactions_other_statements,
    a_recorded_audit_event_is_dropped_with_a_rollback,
    another_tenants_project_is_not_found_for_read_update_or_delete,
    a_non_member_has_no_role_in_a_workspace,
    roles_are_data_and_the_built_in_rows_match_the_rbac_catalogue,
    an_invitation_joins_only_the_invited_address_once,
    an_expired_invitation_is_refused,
    the_last_owner_can_neither_leave_nor_be_demoted,
    an_admin_cannot_grant_owner_or_create_a_role_above_their_own
);

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
    join(&w.db, w.a, w.alice, w.bob, "Member").await;
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let sql = "INSERT INTO activity (id, tenant_id, user_id, app, title, body, content_hash, occurred_at) VALUES ($1, $2, $3, 'editor', 't', 'b', 'h', now())";
    exec(&tx, sql, vec![Uuid::new_v4().into(), w.a.0.into(), w.bob.0.into()]).await.unwrap();
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM activity").await, 1);
    tx.commit().await.unwrap();
    // Alice owns the workspace and still sees none of it.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(tx.access().unwrap().role.name, "Owner");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_tenant_context_is_set_in_the_same_round_trip_as_the_first_statement() {
    let w = world(Backend::Postgres).await;
    let mut db = w.db.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    db.observe_statements(move |sql| log.lock().unwrap().push(sql.to_owned()));
    let tx = TenantTx::begin(&db, w.a, w.alice).await.unwrap();
    let statements = seen.lock().unwrap().clone();
    assert_eq!(statements.len(), 1, "one statement after BEGIN: {statements:?}");
    assert!(statements[0].contains("app_enter"), "{statements:?}");
    // That one statement both set the context and answered the principal's access.
    assert_eq!(tx.access().unwrap().role.name, "Owner");
    let row = tx
        .conn()
        .query_one(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT current_setting('app.tenant_id') AS t, current_setting('app.user_id') AS u".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "t").unwrap(), w.a.0.to_string());
    assert_eq!(row.try_get::<String>("", "u").unwrap(), w.alice.0.to_string());
    assert_eq!(projects::list(&tx, 20, None).await.unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap().len(), 3, "the list is the third statement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_write_policies_check_the_principals_permission_without_the_application() {
    let w = world(Backend::Postgres).await;
    join(&w.db, w.a, w.alice, w.bob, "Support Agent").await;
    let project_a = {
        let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
        let id = projects::list(&tx, 1, None).await.unwrap()[0].id;
        tx.commit().await.unwrap();
        id
    };
    // Bob may read A's projects; raw SQL writes, with the application's checks bypassed, do nothing.
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    assert_eq!(count(&tx, "SELECT COUNT(*) AS n FROM projects").await, 1);
    assert_eq!(
        exec(&tx, "UPDATE projects SET name = 'defaced' WHERE id = $1", vec![project_a.into()]).await.unwrap(),
        0
    );
    assert_eq!(exec(&tx, "DELETE FROM projects WHERE id = $1", vec![project_a.into()]).await.unwrap(), 0);
    let err = exec(
        &tx,
        "INSERT INTO projects (id, tenant_id, name, created_by, created_at, updated_at) VALUES ($1, $2, 'x', $3, now(), now())",
        vec![Uuid::new_v4().into(), w.a.0.into(), w.bob.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // Nor can he promote himself.
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let promoted = exec(
        &tx,
        "UPDATE memberships SET role = 'Owner' WHERE tenant_id = $1 AND user_id = $2",
        vec![w.a.0.into(), w.bob.0.into()],
    )
    .await
    .unwrap();
    assert_eq!(promoted, 0);
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    assert_eq!(tx.access().unwrap().role.name, "Support Agent");
    assert_eq!(projects::get(&tx, project_a).await.unwrap().name, "alpha");
    tx.rollback().await.unwrap();
    // Nor rename or delete the workspace.
    for sql in [
        "UPDATE workspaces SET name = 'renamed' WHERE id = $1",
        "UPDATE workspaces SET deleted_at = now() WHERE id = $1",
    ] {
        let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
        let err = exec(&tx, sql, vec![w.a.0.into()]).await.unwrap_err().to_string();
        assert!(err.contains("row-level security"), "{sql}: {err}");
        tx.rollback().await.unwrap();
    }
    // Even the Owner cannot remove a live workspace's row: only the purge of a deleted one can.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    assert_eq!(exec(&tx, "DELETE FROM workspaces WHERE id = $1", vec![w.a.0.into()]).await.unwrap(), 0);
    assert_eq!(exec(&tx, "UPDATE workspaces SET name = 'renamed' WHERE id = $1", vec![w.a.0.into()]).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_nobody_joins_a_workspace_without_an_invitation_accepted_in_the_same_transaction() {
    let w = world(Backend::Postgres).await;
    let insert = "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, now())";
    // Bob writes himself into A as Owner, in a transaction that keeps A's context.
    let tx = TenantTx::begin_claiming(&w.db, w.a, w.bob).await.unwrap();
    let err = exec(&tx, insert, vec![w.a.0.into(), w.bob.0.into(), "Owner".into()]).await.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // Alice (Owner of A) cannot write Bob in either: joining is the invitee's own act.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let err = exec(&tx, insert, vec![w.a.0.into(), w.bob.0.into(), "Member".into()]).await.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // An accepted invitation does not let a removed member back in later.
    join(&w.db, w.a, w.alice, w.bob, "Member").await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    members::remove(&tx, w.bob, now()).await.unwrap();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin_claiming(&w.db, w.a, w.bob).await.unwrap();
    assert!(tx.access().is_none());
    let err = exec(&tx, insert, vec![w.a.0.into(), w.bob.0.into(), "Member".into()]).await.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_authorization_failure_records_cannot_be_changed_or_deleted_by_the_runtime_role() {
    let w = world(Backend::Postgres).await;
    let refusal = tenancy::authz::Refusal {
        endpoint: "DELETE /x",
        required: "projects.delete".into(),
        actual: "Member".into(),
        request_id: "r1",
    };
    tenancy::authz::record(&w.db, w.a, w.alice, &refusal, now()).await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let denied = "SELECT COUNT(*) AS n FROM audit_events WHERE category = 'authorization'";
    assert_eq!(count(&tx, denied).await, 1);
    tx.commit().await.unwrap();
    for sql in ["DELETE FROM audit_events", "UPDATE audit_events SET payload = '{}'", "TRUNCATE audit_events"] {
        let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
        let err = exec(&tx, sql, vec![]).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_every_table_with_tenant_data_forces_rls_with_a_policy_per_command() {
    let w = world(Backend::Postgres).await;
    let rows = w
        .db
        .conn()
        .query_all(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT c.relname::text AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
                    (SELECT string_agg(DISTINCT p.polcmd::text, '' ORDER BY p.polcmd::text) FROM pg_policy p WHERE p.polrelid = c.oid) AS cmds
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind = 'r'
                AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
              ORDER BY 1"
                .to_owned(),
        ))
        .await
        .unwrap();
    let tables: Vec<(String, bool, bool, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "enabled").unwrap(),
                r.try_get("", "forced").unwrap(),
                r.try_get("", "cmds").unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "activity",
            "activity_windows",
            "api_keys",
            "audit_events",
            "audit_heads",
            "connections",
            "invitations",
            "memberships",
            "projects",
            "roles",
            "tenant_keys",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_endpoint_health",
            "webhook_endpoints",
            "webhook_inbox",
            "webhook_source_stats",
            "webhook_sources",
            "workspace_grants",
            "workspaces"
        ]
    );
    for (name, enabled, forced, cmds) in &tables {
        assert!(*enabled && *forced, "{name}: RLS enabled {enabled}, forced {forced}");
        // pg_policy.polcmd: r = SELECT, a = INSERT, w = UPDATE, d = DELETE.
        // `*` (ALL) is the key operators' policy on tenant_keys; the runtime role's are per command.
        let cmds = cmds.as_deref().unwrap_or_default().replace('*', "");
        assert_eq!(cmds, "adrw", "{name} needs a policy for each command");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_unfiltered_sql_under_a_context_reaches_no_row_of_b_in_any_tenant_table() {
    let w = world(Backend::Postgres).await;
    let carol = user(&w.db).await;
    let c = workspaces::create(&w.db, carol, "C", now()).await.unwrap().id;
    // B gets a row in every tenant table.
    join(&w.db, w.b, w.bob, carol, "Member").await;
    let tx = TenantTx::begin(&w.db, w.b, w.bob).await.unwrap();
    roles::create(&tx, "Auditor", 30, &["audit.read".to_owned()], now()).await.unwrap();
    invitations::create(&tx, "someone@example.com", "Member", "pending-hash", now()).await.unwrap();
    tenancy::grants::create(&tx, c, "projects.read", now()).await.unwrap();
    let pipeline = pii::pipeline::Pipeline::new(pii::pipeline::Config::default());
    let new = tenancy::activity::NewActivity {
        app: "app".into(),
        title: "title".into(),
        body: "body".into(),
        private_window: false,
    };
    assert!(tenancy::activity::record(&tx, &pipeline, new, now()).await.unwrap().activity.is_some());
    let windows = tenancy::activity::Windows { utc_offset_minutes: 60, windows: Vec::new() };
    tenancy::activity::set_windows(&tx, windows, now()).await.unwrap();
    let vault = testkit::vault(&crypto_vault::KeyMaterial::generate());
    let secret =
        tenancy::connections::SecretFields([("bot_token".to_owned(), "xoxb-b-0000000000000".to_owned().into())].into());
    let new = tenancy::connections::NewConnection {
        provider: tenancy::connections::Provider::Slack,
        name: "bot".into(),
        config: Default::default(),
        secret,
        scopes: None,
    };
    tenancy::connections::create(&tx, &vault, &new, now()).await.unwrap();
    // The webhook tables, in the shapes the webhooks crate writes (it depends on this crate, so
    // its rows are written here directly, as B's owner, through the same policies).
    let (source, endpoint, delivery) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let b = || sea_orm::Value::from(w.b.0);
    let at = || sea_orm::Value::from(now());
    for (sql, values) in [
        (
            "INSERT INTO webhook_sources (id, tenant_id, kind, name, settings, created_by, created_at, updated_at)
             VALUES ($1, $2, 'stripe', 'src', '{}', $3, $4, $4)",
            vec![source.into(), b(), w.bob.0.into(), at()],
        ),
        (
            "INSERT INTO webhook_inbox (tenant_id, source_id, event_id, body_sha256, received_at) VALUES ($1, $2, 'evt', 'h', $3)",
            vec![b(), source.into(), at()],
        ),
        ("INSERT INTO webhook_source_stats (source_id, tenant_id) VALUES ($1, $2)", vec![source.into(), b()]),
        (
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secrets_ciphertext, ciphertext_version, created_by, created_at, updated_at)
             VALUES ($1, $2, 'https://hooks.example.com/', '', '[\"*\"]', $3, 1, $4, $5, $5)",
            vec![endpoint.into(), b(), vec![0u8; 16].into(), w.bob.0.into(), at()],
        ),
        ("INSERT INTO webhook_endpoint_health (endpoint_id, tenant_id) VALUES ($1, $2)", vec![endpoint.into(), b()]),
        (
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, status, created_at)
             VALUES ($1, $2, $3, 'webhook.test', '{}', 'pending', $4)",
            vec![delivery.into(), b(), endpoint.into(), at()],
        ),
        (
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, per_minute, per_month, created_by, created_at)
             VALUES ($1, $2, 'ci', 'rk_live_00000000', $3, '[\"projects.read\"]', 60, 1000, $4, $5)",
            vec![uuid::Uuid::new_v4().into(), b(), format!("hash-{}", uuid::Uuid::new_v4()).into(), w.bob.0.into(), at()],
        ),
        (
            "INSERT INTO webhook_attempts (id, tenant_id, delivery_id, attempt, cause, started_at, duration_ms, outcome)
             VALUES ($1, $2, $3, 1, 'scheduled', $4, 1, 'ok')",
            vec![uuid::Uuid::new_v4().into(), b(), delivery.into(), at()],
        ),
    ] {
        assert_eq!(exec(&tx, sql, values).await.unwrap(), 1, "{sql}");
    }
    tx.commit().await.unwrap();
    let refusal = tenancy::authz::Refusal {
        endpoint: "GET /x",
        required: "x.read".into(),
        actual: "Member".into(),
        request_id: "r",
    };
    tenancy::authz::record(&w.db, w.b, w.bob, &refusal, now()).await.unwrap();

    // `audit_heads` is not listed: the runtime role holds no privilege on it at all.
    let tables = [
        "activity",
        "activity_windows",
        "api_keys",
        "audit_events",
        "connections",
        "invitations",
        "memberships",
        "projects",
        "roles",
        "tenant_keys",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_endpoint_health",
        "webhook_endpoints",
        "webhook_inbox",
        "webhook_source_stats",
        "webhook_sources",
        "workspace_grants",
        "workspaces",
    ];
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    for table in tables {
        let seen = exec(&tx, &format!("SELECT 1 FROM {table} WHERE tenant_id = $1"), vec![w.b.0.into()]).await.unwrap();
        assert_eq!(seen, 0, "{table}: A sees none of B's rows");
    }
    // `tenant_keys` is not listed: the runtime role may not update or delete data keys at all.
    for table in [
        "activity",
        "activity_windows",
        "connections",
        "invitations",
        "memberships",
        "projects",
        "roles",
        "workspace_grants",
        "workspaces",
    ] {
        let sql = format!("UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1");
        let sql =
            if table == "workspaces" { "UPDATE workspaces SET name = name WHERE id = $1".to_owned() } else { sql };
        assert_eq!(exec(&tx, &sql, vec![w.b.0.into()]).await.unwrap(), 0, "{table}: no update reaches B");
        if table != "workspace_grants" {
            // Grants are never deleted (the runtime role has no DELETE on them); revocation is recorded.
            let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
            assert_eq!(exec(&tx, &sql, vec![w.b.0.into()]).await.unwrap(), 0, "{table}: no delete reaches B");
        }
    }
    // The webhook tables the runtime role may change at all (the inbox and attempts are
    // insert-only; health, statistics and deliveries are never deleted but by cascade).
    for (table, delete) in [
        ("api_keys", false),
        ("webhook_sources", true),
        ("webhook_endpoints", true),
        ("webhook_source_stats", false),
        ("webhook_endpoint_health", false),
        ("webhook_deliveries", false),
    ] {
        // The runtime role may update only these columns of API keys.
        let column = if table == "api_keys" { "last_used_at" } else { "tenant_id" };
        let sql = format!("UPDATE {table} SET {column} = {column} WHERE tenant_id = $1");
        assert_eq!(exec(&tx, &sql, vec![w.b.0.into()]).await.unwrap(), 0, "{table}: no update reaches B");
        if delete {
            let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
            assert_eq!(exec(&tx, &sql, vec![w.b.0.into()]).await.unwrap(), 0, "{table}: no delete reaches B");
        }
    }
    tx.commit().await.unwrap();
    // And B still has them all.
    let tx = TenantTx::begin(&w.db, w.b, w.bob).await.unwrap();
    for table in tables {
        let seen = exec(&tx, &format!("SELECT 1 FROM {table} WHERE tenant_id = $1"), vec![w.b.0.into()]).await.unwrap();
        assert!(seen > 0, "{table}: B's rows are intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_strangers_transaction_has_no_tenant_context_at_all() {
    let w = world(Backend::Postgres).await;
    let tx = TenantTx::begin(&w.db, w.b, w.alice).await.unwrap();
    assert!(tx.access().is_none());
    // Even SQL that names B's rows outright finds nothing: the context was unset again.
    assert_eq!(exec(&tx, "SELECT 1 FROM projects WHERE tenant_id = $1", vec![w.b.0.into()]).await.unwrap(), 0);
    assert_eq!(exec(&tx, "SELECT 1 FROM workspaces WHERE id = $1", vec![w.b.0.into()]).await.unwrap(), 0);
    let row = tx
        .conn()
        .query_one(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT current_setting('app.tenant_id', true) AS t".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "t").unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_levels_bind_role_changes_and_invitations_and_grants_stay_as_made() {
    let w = world(Backend::Postgres).await;
    let carol = user(&w.db).await;
    join(&w.db, w.a, w.alice, w.bob, "Admin").await;
    // An Admin (level 80) cannot make himself Owner, even with raw SQL.
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let err = exec(
        &tx,
        "UPDATE memberships SET role = 'Owner' WHERE tenant_id = $1 AND user_id = $2",
        vec![w.a.0.into(), w.bob.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // Nor invite with a role above his own.
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    let err = exec(
        &tx,
        "INSERT INTO invitations (id, tenant_id, email, role, token_hash, invited_by, created_at, expires_at)
         VALUES ($1, $2, 'x@example.com', 'Owner', 'raw-hash', $3, now(), now() + interval '1 hour')",
        vec![Uuid::new_v4().into(), w.a.0.into(), w.bob.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // An invitee cannot rewrite the invitation's role while accepting it.
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    invitations::create(&tx, &format!("{}@example.com", carol.0), "Member", "carol-hash", now()).await.unwrap();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin_claiming(&w.db, w.a, carol).await.unwrap();
    let err = exec(
        &tx,
        "UPDATE invitations SET role = 'Owner', accepted_at = now(), accepted_by = $1 WHERE token_hash = 'carol-hash'",
        vec![carol.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("only accepted or revoked"), "{err}");
    tx.rollback().await.unwrap();
    // Nor can someone else accept it, knowing only its row.
    let dave = user(&w.db).await;
    let tx = TenantTx::begin_claiming(&w.db, w.a, dave).await.unwrap();
    let err = exec(
        &tx,
        "UPDATE invitations SET accepted_at = now(), accepted_by = $1 WHERE token_hash = 'carol-hash'",
        vec![dave.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    // A grant carries a data permission only, and is revoked once, never re-opened.
    let c = workspaces::create(&w.db, carol, "C", now()).await.unwrap().id;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let err = exec(
        &tx,
        "INSERT INTO workspace_grants (id, tenant_id, grantee_tenant_id, permission, created_by, created_at)
         VALUES ($1, $2, $3, 'members.remove', $4, now())",
        vec![Uuid::new_v4().into(), w.a.0.into(), c.0.into(), w.alice.0.into()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("check constraint"), "{err}");
    tx.rollback().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let grant = tenancy::grants::create(&tx, c, "projects.read", now()).await.unwrap();
    tenancy::grants::revoke(&tx, grant.id, now()).await.unwrap();
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let reopened = exec(
        &tx,
        "UPDATE workspace_grants SET revoked_at = NULL, revoked_by = NULL WHERE id = $1",
        vec![grant.id.into()],
    )
    .await
    .unwrap();
    assert_eq!(reopened, 0, "a revoked grant is out of reach of updates");
}
