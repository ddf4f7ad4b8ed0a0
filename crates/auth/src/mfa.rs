//! Multi-factor authentication: TOTP (RFC 6238 over RFC 4226 HOTP: HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of drift either way), ten single-use recovery codes, and the two-step sign-in.
//!
//! The secret is 160 random bits (RFC 4226 §4 R6 recommends 160), shown once as base32 and in an
//! `otpauth://` URI, stored sealed with the server's vault key and bound to the user; it counts
//! only once a first code confirms it. A code is accepted at most once: the last accepted time
//! step is kept and a code of that step or an earlier one is refused (RFC 6238 §5.2). Recovery
//! codes are stored as HMAC-SHA256 hashes and consumed by one conditional update each.
//!
//! With a confirmed factor, the password step ends in a challenge (a random token, stored
//! hashed, five minutes, five attempts, single use, for the one flow — browser session or API
//! token — that started it); the second step presents it with a code.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use sha1::Sha1;
use uuid::Uuid;

use crate::service::{stmt, AuthService, NewSession, RequestMeta, TokenPair};
use crate::stepup::amr;
use crate::{token, AuthError};

/// Digits of a code (RFC 6238 reference; what authenticator apps show).
pub const DIGITS: u32 = 6;
/// The time step X of RFC 6238 §4.1, in seconds.
pub const STEP_SECS: i64 = 30;
/// Steps accepted before and after the current one (RFC 6238 §5.2 recommends at most one).
pub const DRIFT_STEPS: i64 = 1;
/// Secret length: 160 bits (RFC 4226 §4, requirement R6).
pub const SECRET_BYTES: usize = 20;
/// Recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
/// How long the step between password and second factor lasts.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Wrong codes a challenge takes before it is spent (the account's sign-in throttle applies too).
pub const CHALLENGE_ATTEMPTS: i32 = 5;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Rampart";

const CHALLENGE_PURPOSE: &str = "mfa_challenge";
const RECOVERY_PURPOSE: &str = "recovery_code";

/// HOTP (RFC 4226 §5.3): HMAC-SHA-1 over the 8-byte big-endian counter, dynamic truncation,
/// modulo 10^digits, zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else { return String::new() };
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = (u32::from(hash[offset]) & 0x7f) << 24
        | u32::from(hash[offset + 1]) << 16
        | u32::from(hash[offset + 2]) << 8
        | u32::from(hash[offset + 3]);
    let code = u64::from(binary) % 10u64.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// TOTP (RFC 6238 §4.2) at `unix_secs` with T0 = 0 and [`STEP_SECS`].
pub fn totp(key: &[u8], unix_secs: i64, digits: u32) -> String {
    hotp(key, u64::try_from(unix_secs.div_euclid(STEP_SECS)).unwrap_or(0), digits)
}

/// The time step `code` belongs to at `now`, within the drift window, compared in constant time.
pub fn matching_step(key: &[u8], code: &str, now: DateTime<Utc>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now.timestamp().div_euclid(STEP_SECS);
    let mut found = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = hotp(key, u64::try_from(step).unwrap_or(0), DIGITS);
        if token::constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps read secrets.
pub fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// The `otpauth://totp/…` URI authenticator apps import (Key Uri Format), QR-ready.
pub fn otpauth_uri(account: &str, secret_base32: &str) -> String {
    let label: String = url::form_urlencoded::byte_serialize(format!("{ISSUER}:{account}").as_bytes()).collect();
    format!(
        "otpauth://totp/{label}?secret={secret_base32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

/// A new recovery code: 10 base32 characters (50 bits) in two groups, lower case.
fn recovery_code() -> String {
    let mut bytes = [0u8; 7];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    let text = base32(&bytes).to_ascii_lowercase();
    format!("{}-{}", &text[..5], &text[5..10])
}

fn normalise_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase().replace(' ', "")
}

/// A TOTP factor being set up: shown once.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32.
    pub secret: SecretString,
    /// The `otpauth://` URI with the secret, for a QR code.
    pub uri: SecretString,
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
    fn as_str(self) -> &'static str {
        match self {
            Flow::Session => "session",
            Flow::Token => "token",
        }
    }
}

pub(crate) mod events {
    pub const MFA_ENABLED: &str = "mfa_enabled";
    pub const MFA_DISABLED: &str = "mfa_disabled";
    pub const MFA_FAILED: &str = "mfa_failed";
    pub const RECOVERY_CODE_USED: &str = "recovery_code_used";
    pub const RECOVERY_CODES_REGENERATED: &str = "recovery_codes_regenerated";
}

impl AuthService {
    /// Whether `user` has a confirmed second factor.
    pub async fn mfa_enabled(&self, user: Uuid) -> Result<bool, AuthError> {
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

    /// Starts setting up TOTP: a new secret, shown once. Replaces an unconfirmed one; a confirmed
    /// factor must be disabled first.
    pub async fn totp_enrol(&self, user: Uuid) -> Result<Enrolment, AuthError> {
        if self.mfa_enabled(user).await? {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        let me = self.me(user).await?;
        let mut secret = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
        rand::Rng::fill(&mut rand::rngs::OsRng, secret.as_mut_slice());
        let sealed = self.seal_with_vault_key(user.as_bytes(), secret.as_slice())?;
        let now = self.clock.now();
        self.db
            .conn()
            .execute(stmt(
                self.db.conn(),
                "INSERT INTO user_totp (user_id, secret_ciphertext, confirmed_at, last_step, created_at) VALUES ($1, $2, NULL, NULL, $3)
                 ON CONFLICT (user_id) DO UPDATE SET secret_ciphertext = excluded.secret_ciphertext, created_at = excluded.created_at
                 WHERE user_totp.confirmed_at IS NULL",
                vec![user.into(), sealed.into(), now.into()],
            ))
            .await?;
        let encoded = base32(secret.as_slice());
        Ok(Enrolment { uri: SecretString::from(otpauth_uri(&me.email, &encoded)), secret: SecretString::from(encoded) })
    }

    /// Confirms the factor being set up with a first code; returns the ten recovery codes, shown
    /// once.
    pub async fn totp_confirm(
        &self,
        user: Uuid,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, AuthError> {
        let txn = self.db.begin_write().await?;
        let row = txn
            .query_one(stmt(
                &txn,
                "SELECT secret_ciphertext, confirmed_at FROM user_totp WHERE user_id = $1",
                vec![user.into()],
            ))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let confirmed: Option<DateTime<Utc>> = row.try_get("", "confirmed_at")?;
        if confirmed.is_some() {
            return Err(AuthError::MfaAlreadyEnabled);
        }
        let (secret, _) =
            self.open_with_vault_keys(user.as_bytes(), &row.try_get::<String>("", "secret_ciphertext")?)?;
        let now = self.clock.now();
        let step = matching_step(&secret, code, now).ok_or(AuthError::InvalidCode)?;
        let confirmed = txn
            .execute(stmt(
                &txn,
                "UPDATE user_totp SET confirmed_at = $2, last_step = $3, secret_ciphertext = $4 WHERE user_id = $1 AND confirmed_at IS NULL",
                vec![user.into(), now.into(), step.into(), self.seal_with_vault_key(user.as_bytes(), &secret)?.into()],
            ))
            .await?;
        if confirmed.rows_affected() == 0 {
            // A concurrent confirmation came first (READ COMMITTED: this update waited for it and
            // then matched nothing): its recovery codes stand, and this code was used there.
            txn.rollback().await?;
            return Err(AuthError::MfaAlreadyEnabled);
        }
        let codes = self.replace_recovery_codes(&txn, user, now).await?;
        self.record_event(&txn, events::MFA_ENABLED, Some(user), meta, serde_json::json!({"factor": "totp"})).await?;
        txn.commit().await?;
        Ok(codes)
    }

    async fn replace_recovery_codes<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<SecretString>, AuthError> {
        conn.execute(stmt(conn, "DELETE FROM recovery_codes WHERE user_id = $1", vec![user.into()])).await?;
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let code = recovery_code();
            conn.execute(stmt(
                conn,
                "INSERT INTO recovery_codes (user_id, code_hash, used_at, created_at) VALUES ($1, $2, NULL, $3)",
                vec![user.into(), self.tokens.hash(RECOVERY_PURPOSE, &normalise_recovery(&code)).into(), now.into()],
            ))
            .await?;
            codes.push(SecretString::from(code));
        }
        Ok(codes)
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

    /// New recovery codes (the old ones stop working), after a current second factor.
    pub async fn regenerate_recovery_codes(
        &self,
        user: Uuid,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, AuthError> {
        let txn = self.db.begin_write().await?;
        self.check_factor(&txn, user, factor, meta).await?;
        let codes = self.replace_recovery_codes(&txn, user, self.clock.now()).await?;
        self.record_event(&txn, events::RECOVERY_CODES_REGENERATED, Some(user), meta, serde_json::json!({})).await?;
        txn.commit().await?;
        Ok(codes)
    }

    /// Turns the second factor off, after a current second factor (step-up).
    pub async fn mfa_disable(&self, user: Uuid, factor: &Factor<'_>, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        if let Err(err) = self.check_factor(&txn, user, factor, meta).await {
            txn.rollback().await?;
            return Err(err);
        }
        txn.execute(stmt(&txn, "DELETE FROM user_totp WHERE user_id = $1", vec![user.into()])).await?;
        txn.execute(stmt(&txn, "DELETE FROM recovery_codes WHERE user_id = $1", vec![user.into()])).await?;
        self.record_event(&txn, events::MFA_DISABLED, Some(user), meta, serde_json::json!({})).await?;
        txn.commit().await?;
        Ok(())
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

    /// The second step: the challenge and a factor. A wrong factor counts against the challenge
    /// (five at most); a right one spends it. Returns the user to sign in and the first factor
    /// they passed.
    async fn pass_challenge(
        &self,
        challenge: &str,
        flow: Flow,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<(Uuid, String), AuthError> {
        let hash = self.tokens.hash(CHALLENGE_PURPOSE, challenge);
        let now = self.clock.now();
        // Counting the attempt first, in its own statement, means a wrong code is counted even
        // though its transaction below rolls back.
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "UPDATE mfa_challenges SET attempts = attempts + 1
                  WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3 AND attempts < $4
                  RETURNING user_id, first_factor",
                vec![hash.clone().into(), flow.as_str().into(), now.into(), CHALLENGE_ATTEMPTS.into()],
            ))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user: Uuid = row.try_get("", "user_id")?;
        let first: String = row.try_get("", "first_factor")?;
        let txn = self.db.begin_write().await?;
        if let Err(err) = self.check_factor(&txn, user, factor, meta).await {
            txn.rollback().await?;
            let failed = self.db.begin_write().await?;
            self.record_event(&failed, events::MFA_FAILED, Some(user), meta, serde_json::json!({})).await?;
            failed.commit().await?;
            return Err(err);
        }
        let spent = txn
            .execute(stmt(
                &txn,
                "UPDATE mfa_challenges SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                vec![hash.into(), now.into()],
            ))
            .await?;
        if spent.rows_affected() == 0 {
            txn.rollback().await?;
            return Err(AuthError::InvalidToken);
        }
        txn.commit().await?;
        Ok((user, first))
    }

    /// Completes a browser sign-in with its second factor: a new session.
    pub async fn complete_sign_in(
        &self,
        challenge: &str,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<NewSession, AuthError> {
        let (user, first) = self.pass_challenge(challenge, Flow::Session, factor, meta).await?;
        self.finish_sign_in(user, meta, &[first.as_str(), amr::OTP], Some(self.clock.now())).await
    }

    /// Completes an API client's password grant with its second factor: a new token family.
    pub async fn complete_password_grant(
        &self,
        challenge: &str,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<TokenPair, AuthError> {
        let (user, first) = self.pass_challenge(challenge, Flow::Token, factor, meta).await?;
        self.finish_password_grant(user, meta, &[first.as_str(), amr::OTP], Some(self.clock.now())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_rfc_4226_appendix_d() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(SEED, counter as u64, 6), *code, "count {counter}");
        }
    }

    #[test]
    fn totp_matches_rfc_6238_appendix_b_for_sha1() {
        let table = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in table {
            assert_eq!(totp(SEED, time, 8), code, "t={time}");
            assert_eq!(totp(SEED, time, 6), code[2..], "t={time}, 6 digits");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_step_either_side_only() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let code = totp(SEED, 1_111_111_111, 6);
        let step = 1_111_111_111 / STEP_SECS;
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 + STEP_SECS)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 - STEP_SECS)), Some(step));
        assert_eq!(matching_step(SEED, &code, at(1_111_111_111 + 2 * STEP_SECS)), None);
        for bad in ["", "12345", "1234567", "abcdef", " 0 0 0 "] {
            assert_eq!(matching_step(SEED, bad, at(1_111_111_111)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_seed_in_base32_and_the_otpauth_uri_are_what_apps_read() {
        assert_eq!(base32(SEED), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri("alice@example.com", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri,
            "otpauth://totp/Rampart%3Aalice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Rampart&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_ten_base32_characters_in_two_groups() {
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert!(code.chars().filter(|c| *c != '-').all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_eq!(normalise_recovery(" ABCDE-FGHIJ "), "abcde-fghij");
    }
}
