//! Browser session records: opened in the session store under the token's keyed hash (the token
//! goes to the client once and is never stored), with their idle and absolute limits.

use chrono::{DateTime, Duration, Utc};
use ids::{SessionId, UserId};
use uuid::Uuid;

use crate::core::accounts::UserView;
use crate::core::authentication::Authentication;
use crate::core::context::Core;
use crate::core::error::AuthError;
use crate::core::settings::RequestMeta;
use crate::core::store::SessionRecord;
use crate::core::token;

/// A session's idle deadline slides forward at most once per 24 hours of use.
pub const SESSION_REFRESH: Duration = Duration::hours(24);
/// Sessions unused for 7 days end (ASVS 5.0 V7.3.1: idle timeout by risk analysis).
pub const SESSION_IDLE: Duration = Duration::days(7);
/// No session outlives 30 days (ASVS 5.0 V7.3.2: absolute timeout; NIST SP 800-63B AAL1 ≤ 30 days).
pub const SESSION_ABSOLUTE: Duration = Duration::days(30);

pub(crate) const SESSION_PURPOSE: &str = "session";

/// A session just created: the token goes to the client once and is never stored.
#[derive(Debug)]
pub struct NewSession {
    pub token: secrecy::SecretString,
    pub record: SessionRecord,
}

/// An authenticated session, as resolved for one request.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    pub user_id: UserId,
    /// The user, read on this request (so a suspension is seen at once).
    pub user: UserView,
    pub session: SessionRecord,
    pub token_hash: String,
}

impl Core {
    pub(crate) async fn open_session(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        at: Option<DateTime<Utc>>,
        methods: &[&str],
    ) -> Result<NewSession, AuthError> {
        let token = token::generate();
        let generation = Core::active_generation_on(self.db.conn(), user).await?;
        let now = self.clock.now();
        let record = SessionRecord {
            id: SessionId::new_random(),
            user_id: UserId(user),
            created_at: now,
            last_refreshed_at: now,
            idle_expires_at: now + SESSION_IDLE,
            absolute_expires_at: now + SESSION_ABSOLUTE,
            user_agent: meta.user_agent.clone().map(|ua| ua.chars().take(256).collect()),
            ip: meta.ip.clone(),
            authenticated_at: at,
            amr: methods.iter().map(|m| (*m).to_owned()).collect(),
            generation,
        };
        self.kv.put_session(&self.tokens.hash(SESSION_PURPOSE, &token), &record, now).await?;
        Ok(NewSession { token: secrecy::SecretString::from(token), record })
    }

    /// Stamps a browser session with a fresh authentication.
    pub(crate) async fn stamp_session(
        &self,
        token_hash: &str,
        authentication: &Authentication,
    ) -> Result<(), AuthError> {
        let mut record = self.kv.get_session(token_hash).await?.ok_or(AuthError::Unauthenticated)?;
        record.authenticated_at = Some(authentication.at);
        record.amr = authentication.amr.clone();
        // A revocation that lands between the read and this write wins.
        if self.kv.replace_session(token_hash, &record, self.clock.now()).await? {
            Ok(())
        } else {
            Err(AuthError::Unauthenticated)
        }
    }
}
