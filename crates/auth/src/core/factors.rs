//! An account's factors as the sign-in flows check them: whether it has a second factor, the
//! challenge between the first factor and the second, the check of a TOTP or recovery code,
//! and which local factors it can re-authenticate with.
//!
//! A code is accepted at most once: the last accepted time step is kept and a code of that step
//! or an earlier one is refused (RFC 6238 §5.2). Recovery codes are stored as HMAC-SHA256 hashes
//! and consumed by one conditional update each. A challenge is a random token, stored hashed,
//! five minutes, five attempts, single use, for the one flow — browser session or API token —
//! that started it.

use chrono::Duration;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::settings::RequestMeta;
use crate::core::token;
use crate::core::totp::{base32, matching_step};

/// Recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
/// How long the step between password and second factor lasts.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Wrong codes a challenge takes before it is spent (the account's sign-in throttle applies too).
pub const CHALLENGE_ATTEMPTS: i32 = 5;

pub(crate) const CHALLENGE_PURPOSE: &str = "mfa_challenge";
pub(crate) const RECOVERY_PURPOSE: &str = "recovery_code";

/// A new recovery code: 10 base32 characters (50 bits) in two groups, lower case.
pub(crate) fn recovery_code() -> String {
    let mut bytes = [0u8; 7];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    let text = base32(&bytes).to_ascii_lowercase();
    format!("{}-{}", &text[..5], &text[5..10])
}

pub(crate) fn normalise_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase().replace(' ', "")
}

/// The outcome of the password step.
#[derive(Debug)]
pub enum SignIn<T> {
    /// No second factor is set up: signed in.
    Done(T),
    /// A second factor is required: present the challenge with a code.
    SecondFactor(Challenge),
}

/// The step between password and second factor.
#[derive(Debug)]
pub struct Challenge {
    pub token: SecretString,
    pub expires_in: i64,
}

/// The second factor presented.
#[derive(Debug)]
pub enum Factor<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

/// The flow a challenge completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Session,
    Token,
}

impl Flow {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Flow::Session => "session",
            Flow::Token => "token",
        }
    }
}

/// What an account can re-authenticate with here.
pub(crate) struct LocalFactors {
    pub email: String,
    pub has_password: bool,
    pub has_mfa: bool,
}

impl Core {
    /// Whether `user` has a confirmed second factor.
    pub(crate) async fn mfa_enabled(&self, user: Uuid) -> Result<bool, AuthError> {
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT 1 AS one FROM user_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
                vec![user.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// Checks a second factor of `user` inside `txn`: a TOTP code newer than the last accepted
    /// one (recorded, so it is never accepted again), or an unused recovery code (consumed).
    pub(crate) async fn check_factor<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        match factor {
            Factor::Totp(code) => {
                let row = conn
                    .query_one(stmt(
                        conn,
                        "SELECT secret_ciphertext FROM user_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
                        vec![user.into()],
                    ))
                    .await?
                    .ok_or(AuthError::InvalidCode)?;
                let (secret, stale) =
                    self.open_with_vault_keys(user.as_bytes(), &row.try_get::<String>("", "secret_ciphertext")?)?;
                let step = matching_step(&secret, code, now).ok_or(AuthError::InvalidCode)?;
                if stale {
                    // Sealed under a vault key being rotated out: move it to the current one.
                    conn.execute(stmt(
                        conn,
                        "UPDATE user_totp SET secret_ciphertext = $2 WHERE user_id = $1",
                        vec![user.into(), self.seal_with_vault_key(user.as_bytes(), &secret)?.into()],
                    ))
                    .await?;
                }
                // Accepting a step moves the mark past it: the same code (or an older one) is
                // refused from now on, also when two requests race.
                let done = conn
                    .execute(stmt(
                        conn,
                        "UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)",
                        vec![user.into(), step.into()],
                    ))
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(AuthError::InvalidCode);
                }
                Ok(())
            }
            Factor::RecoveryCode(code) => {
                let hash = self.tokens.hash(RECOVERY_PURPOSE, &normalise_recovery(code));
                let done = conn
                    .execute(stmt(
                        conn,
                        "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                        vec![user.into(), hash.into(), now.into()],
                    ))
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(AuthError::InvalidCode);
                }
                let left = conn
                    .query_one(stmt(
                        conn,
                        "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                        vec![user.into()],
                    ))
                    .await?
                    .map(|r| r.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0);
                self.record_event(conn, events::RECOVERY_CODE_USED, Some(user), meta, serde_json::json!({"left": left}))
                    .await
            }
        }
    }

    /// After a correct first factor (`first`: `pwd`, or `fed` for a provider's sign-in): a
    /// challenge when `user` has a second factor, else `None`.
    pub(crate) async fn challenge_if_enrolled(
        &self,
        user: Uuid,
        flow: Flow,
        first: &str,
    ) -> Result<Option<Challenge>, AuthError> {
        if !self.mfa_enabled(user).await? {
            return Ok(None);
        }
        let token = token::generate();
        let now = self.clock.now();
        self.db
            .conn()
            .execute(stmt(
                self.db.conn(),
                "INSERT INTO mfa_challenges (token_hash, user_id, kind, attempts, expires_at, first_factor) VALUES ($1, $2, $3, 0, $4, $5)",
                vec![
                    self.tokens.hash(CHALLENGE_PURPOSE, &token).into(),
                    user.into(),
                    flow.as_str().into(),
                    (now + CHALLENGE_TTL).into(),
                    first.into(),
                ],
            ))
            .await?;
        Ok(Some(Challenge { token: SecretString::from(token), expires_in: CHALLENGE_TTL.num_seconds() }))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_ten_base32_characters_in_two_groups() {
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert!(code.chars().filter(|c| *c != '-').all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_eq!(normalise_recovery(" ABCDE-FGHIJ "), "abcde-fghij");
    }
}
