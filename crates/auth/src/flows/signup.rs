//! Sign-up and e-mail verification: an account is created and its address proved by a mailed
//! link; an address that already has an account gets a notice instead, after the same work.

use chrono::Duration;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::email::EmailAddress;
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::password::Password;
use crate::core::settings::{RequestMeta, SignupMode};

/// E-mail verification links live 24 hours (the seeds' promise).
pub const VERIFY_EMAIL_TTL: Duration = Duration::hours(24);
const VERIFY_PURPOSE: &str = "verify_email";

/// Creates an account and mails a verification link. For an address that already has an
/// account it mails a notice instead and answers the same way, after the same work.
pub(crate) async fn sign_up(core: &Core, email: &str, password: &str, meta: &RequestMeta) -> Result<(), AuthError> {
    if core.settings.signup != SignupMode::Open {
        return Err(AuthError::SignupClosed);
    }
    let email = EmailAddress::parse(email)?;
    let password = Password::parse_new(password, &[email.as_str(), email.local_part(), "rampart"])?;
    // Hashed before the transaction opens, for both outcomes alike (the same work whether or
    // not the address has an account), so no transaction waits on bcrypt: on SQLite a write
    // transaction held open that long makes concurrent writers fail.
    let hash = core.hasher.hash(&password).await?;
    let txn = core.db.begin_write().await?;
    let id = Uuid::new_v4();
    let now = core.clock.now();
    // Claims the address in one statement. ON CONFLICT waits for a concurrent sign-up of the
    // same address to commit and then inserts nothing, so the sign-up that loses the race
    // takes the taken-address path below and answers exactly as the first did — never a
    // conflict that would tell the account exists (OWASP ASVS 5.0 V6.3.8).
    let created = txn
        .query_one(stmt(
            &txn,
            "INSERT INTO users (id, email, password_hash, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, $3, 'active', 0, 0, $4, $4)
             ON CONFLICT (email) DO NOTHING RETURNING id",
            vec![id.into(), email.as_str().into(), hash.into(), now.into()],
        ))
        .await?
        .is_some();
    if !created {
        let row = txn
            .query_one(stmt(&txn, "SELECT id FROM users WHERE email = $1", vec![email.as_str().into()]))
            .await?
            .ok_or_else(|| AuthError::Internal("the account holding the address is gone".into()))?;
        let user: Uuid = row.try_get("", "id")?;
        core.mail(
            &txn,
            email.as_str(),
            "Someone tried to sign up with your address",
            format!(
                "Someone (perhaps you) tried to create an account with this address, which already has one.\n\
                 If it was you, sign in or reset your password at {}/auth/reset-password.\n\
                 If not, you can ignore this message.",
                core.settings.link_base_url
            ),
        )
        .await?;
        core.record_event(&txn, events::SIGNUP, Some(user), meta, serde_json::json!({"outcome": "address_in_use"}))
            .await?;
        txn.commit().await?;
        return Ok(());
    }
    let token = core.issue_one_time_token(&txn, id, VERIFY_PURPOSE, VERIFY_EMAIL_TTL).await?;
    core.mail(
        &txn,
        email.as_str(),
        "Confirm your e-mail address",
        format!(
            "Confirm your address by opening this link within 24 hours:\n\n{}/auth/verify-email#token={token}\n",
            core.settings.link_base_url
        ),
    )
    .await?;
    core.record_event(&txn, events::SIGNUP, Some(id), meta, serde_json::json!({"outcome": "created"})).await?;
    txn.commit().await?;
    Ok(())
}

/// Consumes a verification token and marks the address verified.
pub(crate) async fn verify_email(core: &Core, token: &str, meta: &RequestMeta) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    let user = core.consume_one_time_token(&txn, VERIFY_PURPOSE, token).await?;
    let now = core.clock.now();
    txn.execute(stmt(
        &txn,
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1), updated_at = $1 WHERE id = $2",
        vec![now.into(), user.into()],
    ))
    .await?;
    core.record_event(&txn, events::EMAIL_VERIFIED, Some(user), meta, serde_json::json!({})).await?;
    txn.commit().await?;
    Ok(())
}
