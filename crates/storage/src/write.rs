//! A transaction that may write, and the one way every transaction ends.

use std::ops::Deref;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement};

/// A transaction of the store ([`crate::Db::begin_write`], [`crate::Db::begin_read`]). A writing
/// one on SQLite holds the store's writer permit from its first statement until it commits or
/// rolls back (or is dropped), so the process's writers take turns and none reads a snapshot it
/// then cannot upgrade. It reads and writes like the [`DatabaseTransaction`] it wraps.
#[derive(Debug)]
pub struct Txn {
    txn: DatabaseTransaction,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Txn {
    pub(crate) fn new(txn: DatabaseTransaction, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Txn {
        Txn { txn, _permit: permit }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Deref for Txn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one(stmt).await
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all(stmt).await
    }
}

/// A transaction that ends by commit or rollback ([`crate::settle`]).
pub trait Ending: Send + Sized {
    fn commit(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send;
    fn rollback(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send;
}

impl Ending for DatabaseTransaction {
    fn commit(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send {
        DatabaseTransaction::commit(self)
    }

    fn rollback(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send {
        DatabaseTransaction::rollback(self)
    }
}

impl Ending for Txn {
    fn commit(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send {
        Txn::commit(self)
    }

    fn rollback(self) -> impl std::future::Future<Output = Result<(), DbErr>> + Send {
        Txn::rollback(self)
    }
}
