//! Storage configuration and backend detection.

use secrecy::SecretString;
use serde::Deserialize;

use crate::StorageError;

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Reads the engine from the URL scheme; anything but PostgreSQL or SQLite is refused.
    pub fn from_url(url: &str) -> Result<Backend, StorageError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "sqlite" => Ok(Backend::Sqlite),
            // Never echo the URL itself: it may carry a password.
            _ => Err(StorageError::InvalidUrl(format!(
                "unsupported scheme `{scheme}` (expected postgres:// or sqlite://)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Database settings. URLs are secrets because they may carry passwords.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The runtime connection: on PostgreSQL a `NOSUPERUSER NOBYPASSRLS` role that owns nothing.
    /// When absent the embedded SQLite file under the data directory is used.
    #[serde(default)]
    pub url: Option<SecretString>,
    /// The owner connection used only by `rampart migrate` (PostgreSQL). SQLite migrates through
    /// `url`.
    #[serde(default)]
    pub migrate_url: Option<SecretString>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    16
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, migrate_url: None, max_connections: default_max_connections() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_read_from_the_url_scheme() {
        assert_eq!(Backend::from_url("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::from_url("postgresql://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::from_url("sqlite://x.db?mode=rwc").unwrap(), Backend::Sqlite);
    }

    #[test]
    fn unsupported_schemes_are_refused_without_echoing_the_url() {
        let err = Backend::from_url("mysql://root:hunter2@h/db").unwrap_err().to_string();
        assert!(err.contains("mysql"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
