//! Tenant context: the only crate that sets `app.tenant_id` (and `app.user_id`) on a database
//! transaction. Tenant data is reached only through a [`TenantTx`], which cannot be built without
//! a [`WorkspaceId`], and every query here also filters by it, so isolation holds in the application
//! (the only layer on SQLite) and again in PostgreSQL's forced row-level security.
//! It must never build a tenant query without a [`TenantTx`].

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod activity;
pub mod authz;
pub mod connections;
pub mod grants;
pub mod invitations;
pub mod members;
pub mod projects;
pub mod roles;
pub mod secrets;
pub mod workspaces;

pub use access::{Access, Via};
pub use storage::Db;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement};

/// How a tenant transaction opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    /// Writes, keeping the tenant context without access.
    Claim,
}

/// The workspace id under its former name, for crates not yet moved to [`WorkspaceId`].
pub use ids::WorkspaceId as TenantId;
pub use ids::{UserId, WorkspaceId};

/// Errors of tenant-scoped operations. A row of another tenant is `NotFound`, never `Forbidden`:
/// its existence is not revealed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("not found")]
    NotFound,
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The principal may reach the workspace but not do this; carries required vs actual.
    #[error(transparent)]
    Forbidden(#[from] rbac::RbacError),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("audit trail: {0}")]
    Audit(#[from] audit::AuditError),
    /// Input refused with its own stable code (for example `write_scope_not_enabled`).
    #[error("{message}")]
    Rejected { code: &'static str, message: &'static str },
    /// The resource is in a state that forbids this, with its own stable code (for example
    /// `endpoint_disabled`); answered 409.
    #[error("{message}")]
    StateConflict { code: &'static str, message: &'static str },
    /// A sealed value or data key did not open, or no key-encryption key is configured for it.
    #[error("vault: {0}")]
    Vault(#[from] crypto_vault::VaultError),
    /// A side effect of the operation (such as queueing its mail) failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One database transaction bound to a tenant and a principal, with the principal's access to
/// the tenant as the database saw it when the transaction began.
///
/// On PostgreSQL the ids are set with `set_config(name, value, true)` — transaction-local, so they
/// vanish at commit or rollback and never leak to the next user of the pooled connection (a plain
/// `SET` would) — by `app_enter`, which in the same statement (one round trip) answers how the
/// principal may act in the tenant.
///
/// Audit events recorded in it are appended when it commits, as its last statements: the chain's
/// head row lock, which every writer of the tenant's chain waits for, is then held only from
/// those inserts to the commit, never across the rest of the transaction's work.
#[derive(Debug)]
pub struct TenantTx {
    txn: storage::Txn,
    tenant: WorkspaceId,
    user: UserId,
    access: Option<Access>,
    mode: Mode,
    request_id: Option<String>,
    /// Recorded, not yet appended: written by `commit`, dropped with a rollback.
    pending: std::sync::Mutex<Vec<(audit::NewEvent, chrono::DateTime<chrono::Utc>)>>,
}

impl TenantTx {
    /// Begins a transaction in `tenant` for `user`. Without access (neither membership nor
    /// grant) the tenant context is unset again on PostgreSQL, so nothing of the tenant can be
    /// read or written in it, whatever the application does next.
    pub async fn begin(db: &Db, tenant: WorkspaceId, user: UserId) -> Result<TenantTx, TenancyError> {
        Self::open(db, tenant, user, Mode::Write).await
    }

    /// Begins a transaction that only reads (a `GET`): on SQLite it runs beside the writer and
    /// other readers, and a write in it fails. It records no audit events.
    pub async fn begin_read(db: &Db, tenant: WorkspaceId, user: UserId) -> Result<TenantTx, TenancyError> {
        Self::open(db, tenant, user, Mode::Read).await
    }

    /// Begins a transaction that keeps the tenant context without access: for founding a
    /// workspace, accepting an invitation and purging. The policies decide what it may do.
    pub async fn begin_claiming(db: &Db, tenant: WorkspaceId, user: UserId) -> Result<TenantTx, TenancyError> {
        Self::open(db, tenant, user, Mode::Claim).await
    }

    /// Every tenant transaction opens here. One that may write takes the store's write path
    /// before its first statement ([`Db::begin_write`]), so the access check already runs as
    /// the writer.
    async fn open(db: &Db, tenant: WorkspaceId, user: UserId, mode: Mode) -> Result<TenantTx, TenancyError> {
        let txn = match mode {
            Mode::Read => db.begin_read().await?,
            Mode::Write | Mode::Claim => db.begin_write().await?,
        };
        let access = match access::enter(&txn, tenant, user, mode == Mode::Claim).await {
            Ok(access) => access,
            Err(err) => return storage::settle(txn, Err(err)).await,
        };
        Ok(TenantTx { txn, tenant, user, access, mode, request_id: None, pending: Default::default() })
    }

    /// Names the request this transaction serves; audit events written in it carry the id.
    pub fn set_request_id(&mut self, request_id: impl Into<String>) {
        self.request_id = Some(request_id.into());
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Records an audit event in this tenant's chain, in this transaction: it is appended when
    /// the transaction commits, so it commits with the change it records or not at all. The
    /// actor is the transaction's principal.
    pub async fn record(
        &self,
        category: audit::Category,
        action: &str,
        payload: serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), TenancyError> {
        if self.mode == Mode::Read {
            // A read path that records is a write path: it must open with `begin`.
            return Err(TenancyError::Internal(format!("audit event `{action}` recorded in a read transaction")));
        }
        let event = audit::NewEvent::new(category, action, payload)
            .by(Some(self.user.0).filter(|u| !u.is_nil()))
            .request(self.request_id.clone());
        event.check()?;
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((event, now));
        Ok(())
    }

    pub fn tenant(&self) -> WorkspaceId {
        self.tenant
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// Narrows the principal's access to `scopes` for the rest of this transaction (an API key
    /// acting for its creator): nothing the role does not grant, nothing the scopes do not cover.
    pub fn restrict(&mut self, scopes: &[rbac::Permission]) {
        if let Some(access) = &mut self.access {
            access.role = access.role.restricted(scopes);
        }
    }

    /// How the principal may act here; `None` for a principal with neither membership nor grant.
    pub fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// The principal's access, or `NotFound` (a workspace one cannot reach does not exist).
    pub fn require_access(&self) -> Result<&Access, TenancyError> {
        self.access.as_ref().ok_or(TenancyError::NotFound)
    }

    /// Checks `permission` against the principal's access: `NotFound` without access, `Forbidden`
    /// (with required vs actual) without the permission.
    pub fn require(&self, permission: &rbac::Permission) -> Result<&Access, TenancyError> {
        let access = self.require_access()?;
        rbac::authorize(&access.role, permission)?;
        Ok(access)
    }

    /// Like [`TenantTx::require`], for administering the workspace: only members administer it;
    /// access through a cross-workspace grant never does, whatever the grant carries.
    pub fn require_member(&self, permission: &rbac::Permission) -> Result<&Access, TenancyError> {
        let access = self.require(permission)?;
        if !access.is_member() {
            return Err(rbac::RbacError::MissingPermission {
                required: permission.clone(),
                role: access.role.name.clone(),
            }
            .into());
        }
        Ok(access)
    }

    /// Makes the transactions of this tenant that name the same `topic` take turns from here to
    /// their commit, so a check-then-act (count the keys, then insert one; look for the grant,
    /// then create it) sees the work of the one before it, which READ COMMITTED alone would not
    /// show. A transaction-level advisory lock on PostgreSQL; SQLite has one writer at a time.
    pub async fn take_turn(&self, topic: &str) -> Result<(), TenancyError> {
        if is_postgres(self) {
            let key = format!("rampart.{topic}:{}", self.tenant.0);
            self.txn
                .execute(self.statement("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", vec![key.into()]))
                .await?;
        }
        Ok(())
    }

    /// A statement in this transaction's SQL dialect, for crates that keep tenant tables of their
    /// own (webhooks) and must reach them only through a `TenantTx`.
    pub fn statement(&self, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(self.txn.get_database_backend(), sql, values)
    }

    /// The transaction, for statements of this crate (and tests that probe the database layer).
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Appends the recorded audit events, then commits; rolls back if an append fails.
    pub async fn commit(self) -> Result<(), TenancyError> {
        self.settle(Ok(())).await
    }

    /// Rolls back now. Prefer this to dropping the transaction: a dropped one is rolled back only
    /// when its connection is next used, and on SQLite it holds the write lock until then.
    pub async fn rollback(self) -> Result<(), TenancyError> {
        self.txn.rollback().await?;
        Ok(())
    }

    /// Ends the transaction by the outcome of the work done in it: commits on `Ok`, rolls back at
    /// once on `Err` (and returns that error). Every tenant transaction ends through here.
    /// The recorded audit events are appended first, as the last statements before the commit.
    pub async fn settle<T>(self, result: Result<T, TenancyError>) -> Result<T, TenancyError> {
        let pending = self.pending.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = match result {
            Ok(value) => {
                audit::append_many(&self.txn, self.tenant.0, &pending).await.map(|_| value).map_err(Into::into)
            }
            err => err,
        };
        storage::settle(self.txn, result).await
    }
}

pub(crate) fn stmt(tx: &TenantTx, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    tx.statement(sql, values)
}

pub(crate) fn is_postgres(tx: &TenantTx) -> bool {
    tx.conn().get_database_backend() == DatabaseBackend::Postgres
}

/// Trims `name` and checks it is 1 to 200 characters.
pub(crate) fn check_name(name: &str) -> Result<&str, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenancyError::Invalid("name must be 1 to 200 characters without control characters"));
    }
    Ok(name)
}

pub(crate) use storage::is_unique_violation;
