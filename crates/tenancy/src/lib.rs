//! Tenant context: the only crate that sets `app.tenant_id` (and `app.user_id`) on a database
//! transaction. Tenant data is reached only through a [`TenantTx`], which cannot be built without
//! a [`TenantId`], and every query here also filters by it, so isolation holds in the application
//! (the only layer on SQLite) and again in PostgreSQL's forced row-level security.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod projects;
pub mod workspaces;

pub use storage::Db;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement, TransactionTrait};
use uuid::Uuid;

/// A workspace id: the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Uuid);

/// A user id: the principal acting in the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

/// Errors of tenant-scoped operations. A row of another tenant is `NotFound`, never `Forbidden`:
/// its existence is not revealed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("not found")]
    NotFound,
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// One database transaction bound to a tenant and a principal.
///
/// On PostgreSQL the ids are set with `set_config(name, value, true)`: transaction-local, so
/// they vanish at commit or rollback and never leak to the next user of the pooled connection
/// (a plain `SET` would).
#[derive(Debug)]
pub struct TenantTx {
    txn: DatabaseTransaction,
    tenant: TenantId,
    user: UserId,
}

impl TenantTx {
    pub async fn begin(db: &Db, tenant: TenantId, user: UserId) -> Result<TenantTx, TenancyError> {
        let txn = db.conn().begin().await?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)",
                [tenant.0.to_string().into(), user.0.to_string().into()],
            ))
            .await?;
        }
        Ok(TenantTx { txn, tenant, user })
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// The transaction, for statements of this crate (and tests that probe the database layer).
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    pub async fn commit(self) -> Result<(), TenancyError> {
        self.txn.commit().await?;
        Ok(())
    }
}

pub(crate) fn stmt(tx: &TenantTx, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(tx.conn().get_database_backend(), sql, values)
}
