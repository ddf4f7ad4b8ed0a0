//! The application state built once at start-up and shared by every request.

use std::sync::Arc;

use storage::Db;

/// Everything a handler may reach. Built by the binary (or the test harness), never by handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub redis: Option<redis::aio::ConnectionManager>,
    /// The rendered `security.txt`, fixed at start-up.
    pub security_txt: Arc<str>,
    /// Keys, one per purpose; never printed.
    pub keyring: Arc<crypto_vault::Keyring>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.backend())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}
