//! Recent authentication ("step-up"): sensitive actions — changing the password, turning off the
//! second factor, creating API keys, deleting a workspace, changing a workspace's sign-in rules,
//! linking and unlinking identities — need a sign-in or re-authentication within the last
//! [`STEP_UP_MAX_AGE`] (OWASP ASVS 5.0 V6.8.4 / V7.5.3: re-authentication before highly sensitive
//! transactions). Every credential carries when and how its holder last authenticated: the
//! session record, and the access token's `auth_time` and `amr` claims (OpenID Connect Core 1.0
//! §2, RFC 8176), copied across refreshes by the token family.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::mfa::Factor;
use crate::service::{stmt, AuthService, RequestMeta};
use crate::AuthError;

/// How long an authentication counts as recent: five minutes, the `max_age` a sensitive action
/// asks for (RFC 9470 §3, OpenID Connect Core 1.0 §3.1.2.1 `max_age`).
pub const STEP_UP_MAX_AGE: Duration = Duration::minutes(5);

/// How far ahead of this replica's clock another replica's may be.
pub const CLOCK_LEEWAY: Duration = Duration::seconds(60);

/// Authentication method references (RFC 8176 §2).
pub mod amr {
    /// A password.
    pub const PASSWORD: &str = "pwd";
    /// A one-time code: TOTP or a recovery code.
    pub const OTP: &str = "otp";
    /// Sign-in through an OpenID Connect provider. Not in RFC 8176's registry; the value other
    /// identity platforms use for federated sign-in.
    pub const FEDERATED: &str = "fed";
}

/// When and how a credential's holder last authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub at: DateTime<Utc>,
    /// RFC 8176 values, see [`amr`].
    pub amr: Vec<String>,
}

impl Authentication {
    pub fn new(at: DateTime<Utc>, amr: &[&str]) -> Authentication {
        Authentication { at, amr: amr.iter().map(|m| (*m).to_owned()).collect() }
    }

    /// Within [`STEP_UP_MAX_AGE`] of `now`, and not further in the future than replicas' clocks
    /// may differ ([`CLOCK_LEEWAY`]).
    pub fn is_recent(&self, now: DateTime<Utc>) -> bool {
        self.at <= now + CLOCK_LEEWAY && now - self.at <= STEP_UP_MAX_AGE
    }

    /// The sign-in included a second factor.
    pub fn has_second_factor(&self) -> bool {
        self.amr.iter().any(|m| m == amr::OTP)
    }

    /// The `amr` stored with a token family or native code: space-separated.
    pub(crate) fn amr_text(&self) -> String {
        self.amr.join(" ")
    }

    pub(crate) fn from_stored(at: Option<DateTime<Utc>>, amr: Option<String>) -> Option<Authentication> {
        Some(Authentication {
            at: at?,
            amr: amr.unwrap_or_default().split(' ').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
        })
    }
}

pub(crate) const REAUTHENTICATED: &str = "reauthenticated";

/// What an account can re-authenticate with here.
pub(crate) struct LocalFactors {
    pub email: String,
    pub has_password: bool,
    pub has_mfa: bool,
}

impl AuthService {
    /// Re-authenticates a signed-in user with every local factor the account has: the password
    /// when it has one, and the second factor when it has one. An account with neither (it signs
    /// in only through a provider) re-authenticates through that provider instead
    /// ([`AuthError::ReauthenticateWithProvider`]). Wrong passwords count towards the lockout
    /// like sign-in attempts; TOTP codes are accepted at most once.
    pub async fn reauthenticate(
        &self,
        user: Uuid,
        password: Option<&str>,
        factor: Option<&Factor<'_>>,
        meta: &RequestMeta,
    ) -> Result<Authentication, AuthError> {
        let LocalFactors { email, has_password, has_mfa } = self.local_factors(user).await?;
        if !has_password && !has_mfa {
            return Err(AuthError::ReauthenticateWithProvider);
        }
        let mut methods = Vec::new();
        if has_password {
            let password = password.ok_or(AuthError::InvalidCredentials)?;
            self.check_password(&email, password, meta).await?;
            methods.push(amr::PASSWORD);
        }
        if has_mfa {
            let factor = factor.ok_or(AuthError::InvalidCode)?;
            let txn = self.db.begin_write().await?;
            if let Err(err) = self.check_factor(&txn, user, factor, meta).await {
                txn.rollback().await?;
                return Err(err);
            }
            txn.commit().await?;
            methods.push(amr::OTP);
        }
        let authentication = Authentication::new(self.clock.now(), &methods);
        let txn = self.db.begin_write().await?;
        self.record_event(&txn, REAUTHENTICATED, Some(user), meta, serde_json::json!({"amr": authentication.amr}))
            .await?;
        txn.commit().await?;
        Ok(authentication)
    }

    /// The account's address and local factors (an active account only).
    pub(crate) async fn local_factors(&self, user: Uuid) -> Result<LocalFactors, AuthError> {
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT email, password_hash FROM users WHERE id = $1 AND status = 'active'",
                vec![user.into()],
            ))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        Ok(LocalFactors {
            email: row.try_get("", "email")?,
            has_password: row.try_get::<Option<String>>("", "password_hash")?.is_some(),
            has_mfa: self.mfa_enabled(user).await?,
        })
    }

    /// Stamps the live refresh tokens of a token family, so its next refreshes carry the new
    /// authentication; the family's credential generation, or `None` when it has no live token
    /// (ended).
    pub(crate) async fn stamp_family_tokens(
        &self,
        user: Uuid,
        family: Uuid,
        authentication: &Authentication,
    ) -> Result<Option<i64>, AuthError> {
        let conn = self.db.conn();
        let rows = conn
            .query_all(stmt(
                conn,
                "UPDATE refresh_tokens SET auth_time = $3, amr = $4
                  WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL AND used_at IS NULL
                  RETURNING generation",
                vec![family.into(), user.into(), authentication.at.into(), authentication.amr_text().into()],
            ))
            .await?;
        let mut generation = None;
        for row in rows {
            generation = generation.max(Some(row.try_get::<i64>("", "generation")?));
        }
        Ok(generation)
    }

    /// Stamps a browser session with a fresh authentication.
    pub async fn stamp_session(&self, token_hash: &str, authentication: &Authentication) -> Result<(), AuthError> {
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

    /// Stamps an API client's token family with a fresh authentication (its next refreshes keep
    /// it) and issues an access token that carries it.
    pub async fn stamp_family(
        &self,
        user: Uuid,
        family: Uuid,
        authentication: &Authentication,
    ) -> Result<(secrecy::SecretString, i64), AuthError> {
        let Some(generation) = self.stamp_family_tokens(user, family, authentication).await? else {
            return Err(AuthError::Unauthenticated);
        };
        let holder = crate::jwt::Holder::signed_in(user, family, generation);
        let (access, _) = self.access.issue_authenticated(holder, Some(authentication))?;
        Ok((secrecy::SecretString::from(access), self.access.ttl_secs()))
    }
}
