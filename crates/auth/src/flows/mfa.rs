//! Multi-factor authentication: TOTP (RFC 6238 over RFC 4226 HOTP: HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of drift either way), ten single-use recovery codes, and the two-step sign-in.
//!
//! The secret is 160 random bits (RFC 4226 §4 R6 recommends 160), shown once as base32 and in an
//! `otpauth://` URI, stored sealed with the server's vault key and bound to the user; it counts
//! only once a first code confirms it. The checks of a code and the challenge between the two
//! steps are the core's (`core::factors`); this module sets the factor up, turns it off
//! and completes the two-step sign-in.

use chrono::{DateTime, Utc};
use ids::UserId;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::authentication::amr;
use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::factors::{normalise_recovery, recovery_code, CHALLENGE_PURPOSE, RECOVERY_PURPOSE};
pub use crate::core::factors::{Challenge, Factor, Flow, SignIn, CHALLENGE_ATTEMPTS, CHALLENGE_TTL, RECOVERY_CODES};
use crate::core::families::TokenPair;
use crate::core::sessions::NewSession;
use crate::core::settings::RequestMeta;
pub use crate::core::totp::{
    base32, hotp, matching_step, otpauth_uri, totp, DIGITS, DRIFT_STEPS, ISSUER, SECRET_BYTES, STEP_SECS,
};

/// A TOTP factor being set up: shown once.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32.
    pub secret: SecretString,
    /// The `otpauth://` URI with the secret, for a QR code.
    pub uri: SecretString,
}

/// Starts setting up TOTP: a new secret, shown once. Replaces an unconfirmed one; a confirmed
/// factor must be disabled first.
pub(crate) async fn totp_enrol(core: &Core, user: Uuid) -> Result<Enrolment, AuthError> {
    if core.mfa_enabled(user).await? {
        return Err(AuthError::MfaAlreadyEnabled);
    }
    let me = core.me(UserId(user)).await?;
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rand::Rng::fill(&mut rand::rngs::OsRng, secret.as_mut_slice());
    let sealed = core.seal_with_vault_key(user.as_bytes(), secret.as_slice())?;
    let now = core.clock.now();
    core.db
        .conn()
        .execute(stmt(
            core.db.conn(),
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
pub(crate) async fn totp_confirm(
    core: &Core,
    user: Uuid,
    code: &str,
    meta: &RequestMeta,
) -> Result<Vec<SecretString>, AuthError> {
    let txn = core.db.begin_write().await?;
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
    let (secret, _) = core.open_with_vault_keys(user.as_bytes(), &row.try_get::<String>("", "secret_ciphertext")?)?;
    let now = core.clock.now();
    let step = matching_step(&secret, code, now).ok_or(AuthError::InvalidCode)?;
    let confirmed = txn
        .execute(stmt(
            &txn,
            "UPDATE user_totp SET confirmed_at = $2, last_step = $3, secret_ciphertext = $4 WHERE user_id = $1 AND confirmed_at IS NULL",
            vec![user.into(), now.into(), step.into(), core.seal_with_vault_key(user.as_bytes(), &secret)?.into()],
        ))
        .await?;
    if confirmed.rows_affected() == 0 {
        // A concurrent confirmation came first (READ COMMITTED: this update waited for it and
        // then matched nothing): its recovery codes stand, and this code was used there.
        txn.rollback().await?;
        return Err(AuthError::MfaAlreadyEnabled);
    }
    let codes = replace_recovery_codes(core, &txn, user, now).await?;
    core.record_event(&txn, events::MFA_ENABLED, Some(user), meta, serde_json::json!({"factor": "totp"})).await?;
    txn.commit().await?;
    Ok(codes)
}

async fn replace_recovery_codes<C: ConnectionTrait>(
    core: &Core,
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
            vec![user.into(), core.tokens.hash(RECOVERY_PURPOSE, &normalise_recovery(&code)).into(), now.into()],
        ))
        .await?;
        codes.push(SecretString::from(code));
    }
    Ok(codes)
}

/// New recovery codes (the old ones stop working), after a current second factor.
pub(crate) async fn regenerate_recovery_codes(
    core: &Core,
    user: Uuid,
    factor: &Factor<'_>,
    meta: &RequestMeta,
) -> Result<Vec<SecretString>, AuthError> {
    let txn = core.db.begin_write().await?;
    core.check_factor(&txn, user, factor, meta).await?;
    let codes = replace_recovery_codes(core, &txn, user, core.clock.now()).await?;
    core.record_event(&txn, events::RECOVERY_CODES_REGENERATED, Some(user), meta, serde_json::json!({})).await?;
    txn.commit().await?;
    Ok(codes)
}

/// Turns the second factor off, after a current second factor (step-up).
pub(crate) async fn mfa_disable(
    core: &Core,
    user: Uuid,
    factor: &Factor<'_>,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    if let Err(err) = core.check_factor(&txn, user, factor, meta).await {
        txn.rollback().await?;
        return Err(err);
    }
    txn.execute(stmt(&txn, "DELETE FROM user_totp WHERE user_id = $1", vec![user.into()])).await?;
    txn.execute(stmt(&txn, "DELETE FROM recovery_codes WHERE user_id = $1", vec![user.into()])).await?;
    core.record_event(&txn, events::MFA_DISABLED, Some(user), meta, serde_json::json!({})).await?;
    txn.commit().await?;
    Ok(())
}

/// The second step: the challenge and a factor. A wrong factor counts against the challenge
/// (five at most); a right one spends it. Returns the user to sign in and the first factor
/// they passed.
async fn pass_challenge(
    core: &Core,
    challenge: &str,
    flow: Flow,
    factor: &Factor<'_>,
    meta: &RequestMeta,
) -> Result<(Uuid, String), AuthError> {
    let hash = core.tokens.hash(CHALLENGE_PURPOSE, challenge);
    let now = core.clock.now();
    // Counting the attempt first, in its own statement, means a wrong code is counted even
    // though its transaction below rolls back.
    let row = core
        .db
        .conn()
        .query_one(stmt(
            core.db.conn(),
            "UPDATE mfa_challenges SET attempts = attempts + 1
              WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3 AND attempts < $4
              RETURNING user_id, first_factor",
            vec![hash.clone().into(), flow.as_str().into(), now.into(), CHALLENGE_ATTEMPTS.into()],
        ))
        .await?
        .ok_or(AuthError::InvalidToken)?;
    let user: Uuid = row.try_get("", "user_id")?;
    let first: String = row.try_get("", "first_factor")?;
    let txn = core.db.begin_write().await?;
    if let Err(err) = core.check_factor(&txn, user, factor, meta).await {
        txn.rollback().await?;
        let failed = core.db.begin_write().await?;
        core.record_event(&failed, events::MFA_FAILED, Some(user), meta, serde_json::json!({})).await?;
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
pub(crate) async fn complete_sign_in(
    core: &Core,
    challenge: &str,
    factor: &Factor<'_>,
    meta: &RequestMeta,
) -> Result<NewSession, AuthError> {
    let (user, first) = pass_challenge(core, challenge, Flow::Session, factor, meta).await?;
    core.finish_sign_in(user, meta, &[first.as_str(), amr::OTP], Some(core.clock.now())).await
}

/// Completes an API client's password grant with its second factor: a new token family.
pub(crate) async fn complete_password_grant(
    core: &Core,
    challenge: &str,
    factor: &Factor<'_>,
    meta: &RequestMeta,
) -> Result<TokenPair, AuthError> {
    let (user, first) = pass_challenge(core, challenge, Flow::Token, factor, meta).await?;
    core.finish_password_grant(user, meta, &[first.as_str(), amr::OTP], Some(core.clock.now())).await
}
