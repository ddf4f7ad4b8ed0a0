//! Secrets at rest at the tenancy crate's boundary, on both stores: connections' secrets are
//! sealed with per-tenant data keys, bound to their row and tenant, survive rotation and
//! re-encryption, die with a shredded tenant's keys, and never appear in the database in clear.

use std::collections::BTreeMap;

use chrono::Utc;
use crypto_vault::{Header, KeyMaterial, LocalKeyProvider, Purpose, Vault};
use secrecy::SecretString;
use storage::{ConnectionTrait, Db, Statement};
use tenancy::connections::{self, NewConnection, Provider, SecretFields};
use tenancy::secrets::maintenance;
use tenancy::{invitations, workspaces, TenancyError, TenantTx, UserId, WorkspaceId};
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

fn vault(kek: &KeyMaterial, previous: &[KeyMaterial]) -> Vault {
    Vault::new(std::sync::Arc::new(LocalKeyProvider::new(kek, previous).unwrap()))
}

fn slack_secret(token: &str) -> SecretFields {
    SecretFields([("bot_token".to_owned(), SecretString::from(token.to_owned()))].into())
}

fn s3_secret(key_id: &str, secret: &str) -> SecretFields {
    SecretFields(
        [
            ("access_key_id".to_owned(), SecretString::from(key_id.to_owned())),
            ("secret_access_key".to_owned(), SecretString::from(secret.to_owned())),
        ]
        .into(),
    )
}

fn s3_config() -> BTreeMap<String, String> {
    [("bucket".to_owned(), "rampart-data".to_owned()), ("region".to_owned(), "eu-west-1".to_owned())].into()
}

struct World {
    db: Db,
    /// The owner role's connection (PostgreSQL) or the same file (SQLite): what an operator or
    /// an attacker with database access holds.
    owner: Db,
    kek: KeyMaterial,
    a: WorkspaceId,
    b: WorkspaceId,
    alice: UserId,
    bob: UserId,
    test_db: TestDb,
}

async fn world(backend: Backend) -> World {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.runtime_url, 2).await.unwrap();
    let owner = Db::connect(&test_db.owner_url, 2).await.unwrap();
    let alice = user(&db).await;
    let bob = user(&db).await;
    let a = workspaces::create(&db, alice, "A", now()).await.unwrap().id;
    let b = workspaces::create(&db, bob, "B", now()).await.unwrap().id;
    World { db, owner, kek: KeyMaterial::generate(), a, b, alice, bob, test_db }
}

impl World {
    async fn create(
        &self,
        vault: &Vault,
        tenant: WorkspaceId,
        user: UserId,
        provider: Provider,
        secret: SecretFields,
    ) -> ids::ConnectionId {
        let config = if provider == Provider::S3 { s3_config() } else { BTreeMap::new() };
        let tx = TenantTx::begin(&self.db, tenant, user).await.unwrap();
        let new = NewConnection { provider, name: "conn".into(), config, secret, scopes: None };
        let made = connections::create(&tx, vault, &new, now()).await;
        tx.settle(made).await.unwrap().id
    }

    async fn open(
        &self,
        vault: &Vault,
        tenant: WorkspaceId,
        user: UserId,
        id: ids::ConnectionId,
    ) -> Result<SecretFields, TenancyError> {
        let tx = TenantTx::begin(&self.db, tenant, user).await.unwrap();
        let opened = connections::open_for_test(&tx, vault, id).await;
        tx.settle(opened).await.map(|o| o.secret)
    }

    /// Runs `sql` with the owner's connection, as the key operators' role on PostgreSQL (the
    /// owner is a member): raw access to sealed columns.
    async fn raw(&self, sql: &str, values: Vec<sea_orm::Value>) -> Vec<sea_orm::QueryResult> {
        let txn = maintenance::begin(self.owner.conn()).await.unwrap();
        let rows =
            txn.query_all(Statement::from_sql_and_values(txn.get_database_backend(), sql, values)).await.unwrap();
        txn.commit().await.unwrap();
        rows
    }

    async fn sealed(&self, id: ids::ConnectionId) -> Vec<u8> {
        let rows = self.raw("SELECT secret_ciphertext FROM connections WHERE id = $1", vec![id.into()]).await;
        rows[0].try_get("", "secret_ciphertext").unwrap()
    }

    async fn set_sealed(&self, id: ids::ConnectionId, value: Vec<u8>) {
        self.raw(
            "UPDATE connections SET secret_ciphertext = $1 WHERE id = $2 RETURNING id",
            vec![value.into(), id.into()],
        )
        .await;
    }
}

async fn a_connection_secret_round_trips_and_the_list_shows_only_a_hint(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let id = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-0000-1111-secretvalue")).await;
    let opened = w.open(&v, w.a, w.alice, id).await.unwrap();
    assert_eq!(opened.get("bot_token"), Some("xoxb-0000-1111-secretvalue"));
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let listed = connections::list(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret_hint, "…alue");
    assert_eq!(listed[0].scopes, ["channels:history", "channels:read", "users:read"], "read-only by default");
    assert!(!listed[0].write_enabled);
    assert!(!format!("{listed:?}").contains("secretvalue"));
    // A fresh vault over the same key-encryption key (another server, a restart) opens it too.
    let elsewhere = vault(&w.kek, &[]);
    assert!(w.open(&elsewhere, w.a, w.alice, id).await.is_ok());
    // Without that key nothing opens.
    let stranger = vault(&KeyMaterial::generate(), &[]);
    assert!(matches!(w.open(&stranger, w.a, w.alice, id).await, Err(TenancyError::Vault(_))));
}

async fn a_changed_byte_or_a_ciphertext_moved_to_another_row_or_tenant_does_not_open(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let a1 = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-a1-aaaaaaaaaaaaaaaa")).await;
    let a2 = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-a2-bbbbbbbbbbbbbbbb")).await;
    let b1 = w.create(&v, w.b, w.bob, Provider::Slack, slack_secret("xoxb-b1-cccccccccccccccc")).await;
    let original = w.sealed(a1).await;
    // Each byte: header, nonce, ciphertext and tag.
    for i in [0, 1, 5, 6, 17, 18, original.len() / 2, original.len() - 1] {
        let mut tampered = original.clone();
        tampered[i] ^= 0x80;
        w.set_sealed(a1, tampered).await;
        assert!(matches!(w.open(&v, w.a, w.alice, a1).await, Err(TenancyError::Vault(_))), "byte {i}");
    }
    w.set_sealed(a1, original.clone()).await;
    assert!(w.open(&v, w.a, w.alice, a1).await.is_ok(), "the untouched value opens again");
    // Another row of the same tenant: bound to its row id.
    w.set_sealed(a2, original.clone()).await;
    assert!(matches!(w.open(&v, w.a, w.alice, a2).await, Err(TenancyError::Vault(_))));
    // Another tenant's row: bound to the tenant, and B's data key is not A's.
    w.set_sealed(b1, original).await;
    assert!(matches!(w.open(&v, w.b, w.bob, b1).await, Err(TenancyError::Vault(_))));
}

async fn rotation_and_rewrap_leave_every_value_readable_and_none_on_the_old_version(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push((
            w.a,
            w.alice,
            w.create(&v, w.a, w.alice, Provider::Slack, slack_secret(&format!("xoxb-a-{i}-0123456789abcdef"))).await,
        ));
        ids.push((
            w.b,
            w.bob,
            w.create(&v, w.b, w.bob, Provider::S3, s3_secret("AKIAEXAMPLE", &format!("b-{i}-wJalrXUtnFEMIK7MDENG")))
                .await,
        ));
    }
    let rotated = maintenance::rotate(w.owner.conn(), &v, None, now()).await.unwrap();
    let mut names: Vec<_> = rotated.iter().map(|n| (n.tenant, n.purpose, n.version)).collect();
    names.sort();
    let mut expected = vec![(w.a.0, Purpose::IntegrationTokens, 2), (w.b.0, Purpose::StorageCredentials, 2)];
    expected.sort();
    assert_eq!(names, expected);
    // New values use the new version at once; old ones still open.
    let fresh = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-after-rotation-000")).await;
    assert_eq!(Header::parse(&w.sealed(fresh).await).unwrap().version, 2);
    assert_eq!(Header::parse(&w.sealed(ids[0].2).await).unwrap().version, 1);
    assert!(w.open(&v, w.a, w.alice, ids[0].2).await.is_ok());
    // Nothing retires while a value still needs version 1.
    assert_eq!(maintenance::retire(w.owner.conn(), now()).await.unwrap(), vec![]);

    let mut seen = Vec::new();
    let report = maintenance::rewrap(w.owner.conn(), &v, 3, now(), &mut |p| {
        if p.table == "connections" {
            seen.push((p.done, p.total));
        }
    })
    .await
    .unwrap();
    assert_eq!(report.values_reencrypted, 10);
    assert!(report.failed.is_empty());
    assert_eq!(seen.first(), Some(&(0, 10)));
    assert_eq!(seen.last(), Some(&(10, 10)));
    assert!(seen.len() >= 5, "batches of 3 report progress after each: {seen:?}");
    for (tenant, user, id) in &ids {
        assert_eq!(Header::parse(&w.sealed(*id).await).unwrap().version, 2);
        assert!(w.open(&v, *tenant, *user, *id).await.is_ok());
    }
    let stale = w.raw("SELECT count(*) AS n FROM connections WHERE ciphertext_version < 2", vec![]).await;
    assert_eq!(stale[0].try_get::<i64>("", "n").unwrap(), 0);
    // A second run finds nothing left (resumable: the remaining work is read from the data).
    let again = maintenance::rewrap(w.owner.conn(), &v, 3, now(), &mut |_| {}).await.unwrap();
    assert_eq!(again.values_reencrypted, 0);

    let retired = maintenance::retire(w.owner.conn(), now()).await.unwrap();
    assert_eq!(retired.len(), 2);
    assert!(retired.iter().all(|r| r.deleted == [1] && r.min_version == 2), "{retired:?}");
    let versions = w.raw("SELECT count(*) AS n FROM tenant_keys WHERE version = 1", vec![]).await;
    assert_eq!(versions[0].try_get::<i64>("", "n").unwrap(), 0);
    for (tenant, user, id) in &ids {
        assert!(w.open(&v, *tenant, *user, *id).await.is_ok());
    }
}

async fn a_value_on_a_retired_version_no_longer_opens(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let id = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-retire-0123456789")).await;
    let old = w.sealed(id).await;
    maintenance::rotate(w.owner.conn(), &v, Some(w.a.0), now()).await.unwrap();
    maintenance::rewrap(w.owner.conn(), &v, 100, now(), &mut |_| {}).await.unwrap();
    maintenance::retire(w.owner.conn(), now()).await.unwrap();
    // A copy of the version-1 value (from a backup, say) is below the minimum version now.
    w.set_sealed(id, old).await;
    assert!(matches!(
        w.open(&v, w.a, w.alice, id).await,
        Err(TenancyError::Vault(crypto_vault::VaultError::UnknownKek))
    ));
}

async fn a_kek_rotation_rewraps_data_keys_so_the_old_kek_can_go(backend: Backend) {
    let w = world(backend).await;
    let old = vault(&w.kek, &[]);
    let id = w.create(&old, w.a, w.alice, Provider::Slack, slack_secret("xoxb-kek-rotation-000")).await;
    let new_kek = KeyMaterial::generate();
    let both = vault(&new_kek, std::slice::from_ref(&w.kek));
    let report = maintenance::rewrap(w.owner.conn(), &both, 100, now(), &mut |_| {}).await.unwrap();
    assert_eq!(report.keys_rewrapped, 1);
    let only_new = vault(&new_kek, &[]);
    assert_eq!(w.open(&only_new, w.a, w.alice, id).await.unwrap().get("bot_token"), Some("xoxb-kek-rotation-000"));
    assert!(matches!(w.open(&vault(&w.kek, &[]), w.a, w.alice, id).await, Err(TenancyError::Vault(_))));
}

async fn a_shredded_tenants_values_fail_to_decrypt_and_other_tenants_are_untouched(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let a = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-shred-me-00000000")).await;
    let b = w.create(&v, w.b, w.bob, Provider::Slack, slack_secret("xoxb-keep-me-000000000")).await;
    assert!(w.open(&v, w.a, w.alice, a).await.is_ok(), "cached before the shredding");
    assert_eq!(maintenance::shred(w.owner.conn(), &Vault::new(v.provider().clone()), w.a.0, now()).await.unwrap(), 1);
    // The server's vault still has the key in memory, yet the value no longer opens: the cache
    // serves only keys still present in the database.
    assert!(matches!(
        w.open(&v, w.a, w.alice, a).await,
        Err(TenancyError::Vault(crypto_vault::VaultError::UnknownKek))
    ));
    assert!(w.open(&v, w.b, w.bob, b).await.is_ok());
    // Its connection row is still there, unreadable.
    assert!(!w.sealed(a).await.is_empty());
}

async fn a_tenant_with_its_own_key_is_unreadable_without_it(backend: Backend) {
    let w = world(backend).await;
    let own = KeyMaterial::generate();
    let provider = LocalKeyProvider::new(&w.kek, &[]).unwrap().with_tenant_key(w.a.0, &own).unwrap();
    let v = Vault::new(std::sync::Arc::new(provider));
    let id = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-byok-0000000000")).await;
    let kek = w.raw("SELECT kek_id FROM tenant_keys WHERE tenant_id = $1", vec![w.a.0.into()]).await;
    assert!(kek[0].try_get::<String>("", "kek_id").unwrap().starts_with("tenant-"));
    assert!(w.open(&v, w.a, w.alice, id).await.is_ok());
    assert!(matches!(w.open(&vault(&w.kek, &[]), w.a, w.alice, id).await, Err(TenancyError::Vault(_))));
}

async fn the_database_holds_no_secret_in_clear(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let needles = ["xoxb-needle-5d41402abc4b2a76", "needle-wJalrXUtnFEMIK7MDENGbPxRfiCY"];
    w.create(&v, w.a, w.alice, Provider::Slack, slack_secret(needles[0])).await;
    w.create(&v, w.b, w.bob, Provider::S3, s3_secret("AKIANEEDLEKEYID", needles[1])).await;
    let dump = dump(&w).await;
    assert!(dump.len() > 1000, "the dump has the data ({} bytes)", dump.len());
    assert!(dump.contains("rampart-data"), "non-secret settings are stored in clear");
    for needle in needles {
        assert!(!dump.contains(needle), "{needle} found in the database");
        assert!(!dump.contains(&hex::encode(needle)), "{needle} found hex-encoded");
    }
}

/// Every byte of the database: the SQLite file and its write-ahead log, or every row of every
/// table as text (a superuser's view, past row-level security).
async fn dump(w: &World) -> String {
    match w.test_db.backend {
        Backend::Sqlite => {
            let path = w.test_db.owner_url.expose_path();
            let mut bytes = std::fs::read(&path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres => {
            let admin = Db::connect(&SecretString::from(w.test_db.admin_url().unwrap()), 1).await.unwrap();
            let backend = admin.conn().get_database_backend();
            let tables = admin
                .conn()
                .query_all(Statement::from_string(
                    backend,
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                ))
                .await
                .unwrap();
            let mut out = String::new();
            for t in tables {
                let name: String = t.try_get("", "tablename").unwrap();
                let rows = admin
                    .conn()
                    .query_all(Statement::from_string(backend, format!("SELECT t::text AS row FROM \"{name}\" t")))
                    .await
                    .unwrap();
                for r in rows {
                    out.push_str(&r.try_get::<String>("", "row").unwrap());
                    out.push('\n');
                }
            }
            out
        }
    }
}

trait ExposePath {
    fn expose_path(&self) -> String;
}

impl ExposePath for SecretString {
    fn expose_path(&self) -> String {
        let url = secrecy::ExposeSecret::expose_secret(self);
        url.trim_start_matches("sqlite://").trim_start_matches("sqlite:").split('?').next().unwrap().to_owned()
    }
}

async fn connections_are_read_with_connections_read_and_changed_with_manage_only(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let id = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-perm-00000000000")).await;
    let member = join(&w, w.a, w.alice, "Member").await;
    let manager = join(&w, w.a, w.alice, "Manager").await;
    let tx = TenantTx::begin(&w.db, w.a, member).await.unwrap();
    assert!(matches!(connections::list(&tx).await, Err(TenancyError::Forbidden(_))));
    tx.rollback().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, manager).await.unwrap();
    assert_eq!(connections::list(&tx).await.unwrap().len(), 1);
    assert!(matches!(connections::open_for_test(&tx, &v, id).await, Err(TenancyError::Forbidden(_))));
    assert!(matches!(
        connections::set_scopes(&tx, id, &["chat:write".into()], now()).await,
        Err(TenancyError::Forbidden(_))
    ));
    let new = NewConnection {
        provider: Provider::Slack,
        name: "x".into(),
        config: BTreeMap::new(),
        secret: slack_secret("xoxb-x-0000000000000"),
        scopes: None,
    };
    assert!(matches!(connections::create(&tx, &v, &new, now()).await, Err(TenancyError::Forbidden(_))));
    tx.rollback().await.unwrap();
    // B's owner cannot reach A's connection at all.
    let tx = TenantTx::begin(&w.db, w.a, w.bob).await.unwrap();
    assert!(matches!(connections::get(&tx, id).await, Err(TenancyError::NotFound)));
    tx.rollback().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.b, w.bob).await.unwrap();
    assert!(matches!(connections::get(&tx, id).await, Err(TenancyError::NotFound)));
    tx.rollback().await.unwrap();
}

async fn join(w: &World, tenant: WorkspaceId, inviter: UserId, role: &str) -> UserId {
    let invitee = user(&w.db).await;
    let hash = format!("hash-{}", Uuid::new_v4());
    let tx = TenantTx::begin(&w.db, tenant, inviter).await.unwrap();
    invitations::create(&tx, &format!("{}@example.com", invitee.0), role, &hash, now()).await.unwrap();
    tx.commit().await.unwrap();
    invitations::accept(&w.db, tenant, invitee, &hash, &format!("{}@example.com", invitee.0), now()).await.unwrap();
    invitee
}

async fn write_scopes_are_refused_at_creation_and_enabled_only_explicitly_with_a_record(backend: Backend) {
    let w = world(backend).await;
    let v = vault(&w.kek, &[]);
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let new = NewConnection {
        provider: Provider::Slack,
        name: "bot".into(),
        config: BTreeMap::new(),
        secret: slack_secret("xoxb-scopes-000000000"),
        scopes: Some(vec!["channels:read".into(), "chat:write".into()]),
    };
    assert!(matches!(
        connections::create(&tx, &v, &new, now()).await,
        Err(TenancyError::Rejected { code: "write_scope_not_enabled", .. })
    ));
    tx.rollback().await.unwrap();
    let id = w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-scopes-000000000")).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let bad = connections::set_scopes(&tx, id, &["admin".into()], now()).await;
    assert!(matches!(bad, Err(TenancyError::Rejected { code: "unknown_scope", .. })));
    let c = connections::set_scopes(&tx, id, &["channels:read".into(), "chat:write".into()], now()).await.unwrap();
    assert!(c.write_enabled);
    assert_eq!(c.scopes, ["channels:read", "chat:write"]);
    tx.commit().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let events = tenancy::authz::audit_log(&tx, &audit::Filter::default(), 100).await.unwrap();
    tx.commit().await.unwrap();
    let enabled = events.iter().find(|e| e.action == "connection.write_enabled").expect("recorded");
    assert_eq!(enabled.actor, Some(w.alice.0));
    let payload: serde_json::Value = serde_json::from_str(&enabled.payload).unwrap();
    assert_eq!(payload["added"], serde_json::json!(["chat:write"]));
    assert_eq!(payload["removed"], serde_json::json!(["channels:history", "users:read"]));
    assert!(events.iter().any(|e| e.action == "connection.created"));
    assert!(events.iter().all(|e| !e.payload.contains("xoxb-scopes")), "no secret in the trail");
}

backend_tests!(
    a_connection_secret_round_trips_and_the_list_shows_only_a_hint,
    a_changed_byte_or_a_ciphertext_moved_to_another_row_or_tenant_does_not_open,
    rotation_and_rewrap_leave_every_value_readable_and_none_on_the_old_version,
    a_value_on_a_retired_version_no_longer_opens,
    a_kek_rotation_rewraps_data_keys_so_the_old_kek_can_go,
    a_shredded_tenants_values_fail_to_decrypt_and_other_tenants_are_untouched,
    a_tenant_with_its_own_key_is_unreadable_without_it,
    the_database_holds_no_secret_in_clear,
    connections_are_read_with_connections_read_and_changed_with_manage_only,
    write_scopes_are_refused_at_creation_and_enabled_only_explicitly_with_a_record,
);

/// Raw SQL as the server's runtime role: wrapped keys cannot be changed or deleted, and a
/// connection of a tenant without context is invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_runtime_role_cannot_change_or_delete_data_keys_even_in_its_own_tenant() {
    let w = world(Backend::Postgres).await;
    let v = vault(&w.kek, &[]);
    w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-raw-0000000000000")).await;
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let backend = tx.conn().get_database_backend();
    let updated = tx.conn().execute(Statement::from_string(backend, "UPDATE tenant_keys SET kek_id = 'x'")).await;
    assert!(updated.is_err(), "no UPDATE privilege on tenant_keys");
    tx.rollback().await.unwrap();
    let tx = TenantTx::begin(&w.db, w.a, w.alice).await.unwrap();
    let deleted = tx.conn().execute(Statement::from_string(backend, "DELETE FROM tenant_keys")).await;
    assert!(deleted.is_err(), "no DELETE privilege on tenant_keys");
    tx.rollback().await.unwrap();
    // Without a tenant context, nothing at all.
    let txn = sea_orm::TransactionTrait::begin(w.db.conn()).await.unwrap();
    let rows = txn.query_all(Statement::from_string(backend, "SELECT * FROM connections")).await.unwrap();
    assert!(rows.is_empty());
    let keys = txn.query_all(Statement::from_string(backend, "SELECT * FROM tenant_keys")).await.unwrap();
    assert!(keys.is_empty());
    txn.rollback().await.unwrap();
}

/// The key operators' role reads sealed columns and ids, not a connection's other fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_key_role_sees_sealed_columns_but_not_the_rest_of_a_connection() {
    let w = world(Backend::Postgres).await;
    let v = vault(&w.kek, &[]);
    w.create(&v, w.a, w.alice, Provider::Slack, slack_secret("xoxb-cols-000000000000")).await;
    let txn = maintenance::begin(w.owner.conn()).await.unwrap();
    let backend = txn.get_database_backend();
    assert!(txn
        .query_all(Statement::from_string(backend, "SELECT id, secret_ciphertext FROM connections"))
        .await
        .is_ok());
    txn.rollback().await.unwrap();
    let txn = maintenance::begin(w.owner.conn()).await.unwrap();
    let config = txn.query_all(Statement::from_string(backend, "SELECT name, config FROM connections")).await;
    assert!(config.is_err(), "no SELECT on name or config");
    txn.rollback().await.unwrap();
}

/// Every `*_ciphertext` column of the schema is re-encrypted by `rewrap` and checked by
/// `retire` — data keys' own column aside, the outbox's payloads, which are sealed with the
/// key-encryption key itself (`scheduler`) and live only until their action has run, and the
/// accounts' TOTP secrets (`auth::mfa`) and provider tokens (`auth::oidc`), which belong to no
/// tenant: sealed with the key-encryption key, opened with the previous keys too and sealed again
/// under the current key at their next use (a sign-in stores the provider's new tokens), and the
/// ten-minute sign-in flows' nonces and verifiers (`oidc_flows`), gone long before a key is.
#[tokio::test]
async fn every_sealed_column_of_the_schema_is_known_to_the_key_maintenance() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = Db::connect(&test_db.owner_url, 1).await.unwrap();
    let backend = db.conn().get_database_backend();
    let tables = db
        .conn()
        .query_all(Statement::from_string(backend, "SELECT name FROM sqlite_master WHERE type = 'table'"))
        .await
        .unwrap();
    let mut found = Vec::new();
    for t in tables {
        let table: String = t.try_get("", "name").unwrap();
        let cols = db
            .conn()
            .query_all(Statement::from_string(backend, format!("SELECT name FROM pragma_table_info('{table}')")))
            .await
            .unwrap();
        for c in cols {
            let column: String = c.try_get("", "name").unwrap();
            if column.ends_with("_ciphertext")
                && !["tenant_keys", "scheduled_actions", "user_totp", "user_identities", "oidc_flows"]
                    .contains(&table.as_str())
            {
                found.push((table.clone(), column));
            }
        }
    }
    let known: Vec<_> =
        tenancy::secrets::SEALED_COLUMNS.iter().map(|c| (c.table.to_owned(), c.column.to_owned())).collect();
    assert_eq!(found, known);
}
