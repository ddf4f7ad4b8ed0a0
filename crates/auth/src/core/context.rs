//! The state every flow runs over — the database, the session store, the password and token
//! hashers, the vault keys, the clock, the settings and the access-token keys — and the three
//! things every flow does with it: record an event, queue a mail, seal a value.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crypto_vault::KeyMaterial;
use sea_orm::{ConnectionTrait, Statement};
use storage::{Clock, Db};
use uuid::Uuid;

use crate::core::{
    access::AccessTokens,
    error::AuthError,
    events, metrics,
    password::PasswordHasher,
    settings::{AuthSettings, RequestMeta},
    store::Kv,
    token::TokenHasher,
};

/// What the flows run over. Built once by the service; every flow borrows it.
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) db: Db,
    pub(crate) kv: Kv,
    pub(crate) hasher: PasswordHasher,
    pub(crate) tokens: TokenHasher,
    /// Seals outbox payloads (they may carry one-time links) and TOTP secrets.
    pub(crate) outbox_key: KeyMaterial,
    /// Earlier vault keys (`secrets.vault_previous_keys`): TOTP secrets sealed under them still
    /// open, and are sealed again under `outbox_key` at their next use.
    pub(crate) previous_keys: Vec<KeyMaterial>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: AuthSettings,
    pub(crate) access: AccessTokens,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("kv", &self.kv).field("settings", &self.settings).finish_non_exhaustive()
    }
}

pub(crate) fn stmt<C: ConnectionTrait>(conn: &C, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

impl Core {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Seals `plain` with the server's vault key, bound to `aad` (TOTP secrets, sign-in flows,
    /// provider tokens: values of accounts, which belong to no tenant).
    pub(crate) fn seal_with_vault_key(&self, aad: &[u8], plain: &[u8]) -> Result<String, AuthError> {
        crypto_vault::seal(&self.outbox_key, aad, plain).map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Opens what [`Core::seal_with_vault_key`] sealed, with the current vault key or an
    /// earlier one (`secrets.vault_previous_keys`); `true` when an earlier one opened it, so the
    /// caller seals it again under the current key.
    pub(crate) fn open_with_vault_keys(
        &self,
        aad: &[u8],
        sealed: &str,
    ) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool), AuthError> {
        if let Ok(plain) = crypto_vault::open(&self.outbox_key, aad, sealed) {
            return Ok((plain, false));
        }
        self.previous_keys
            .iter()
            .find_map(|key| crypto_vault::open(key, aad, sealed).ok())
            .map(|plain| (plain, true))
            .ok_or_else(|| AuthError::Internal("a sealed value opens with no configured vault key".into()))
    }

    pub(crate) async fn record_event<C: ConnectionTrait>(
        &self,
        conn: &C,
        kind: &str,
        user: Option<Uuid>,
        meta: &RequestMeta,
        detail: serde_json::Value,
    ) -> Result<(), AuthError> {
        // Network details are part of the security record (ASVS 5.0 V16.2.1: who, where, when);
        // the secret parts of a request never are.
        let payload = serde_json::json!({ "ip": meta.ip, "user_agent": meta.user_agent, "detail": detail });
        let event = audit::NewEvent::new(audit::Category::Authentication, format!("auth.{kind}"), payload)
            .by(user)
            .request(meta.request_id.clone());
        audit::append(conn, audit::PLATFORM_CHAIN, &event, self.clock.now()).await?;
        if kind == events::SIGNIN_FAILED {
            metrics::signin_failed(event.payload["detail"]["reason"].as_str().unwrap_or("other"));
        }
        tracing::info!(auth.event = kind, user.id = ?user, "authentication event");
        Ok(())
    }

    pub(crate) async fn mail<C: ConnectionTrait>(
        &self,
        conn: &C,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), AuthError> {
        let mail = scheduler::mail::Mail { to: to.to_owned(), subject: subject.to_owned(), body };
        let payload = serde_json::to_value(&mail).map_err(|e| AuthError::Internal(e.to_string()))?;
        let now = self.clock.now();
        scheduler::enqueue(conn, &self.outbox_key, scheduler::mail::SEND_EMAIL, &payload, now, now).await?;
        Ok(())
    }
}
