//! Password reset (a mailed single-use link, queued the same way whether or not the account
//! exists) and password change; both end the account's other credentials.

use chrono::Duration;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::email::EmailAddress;
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::password::Password;
use crate::core::sessions::{NewSession, SessionPrincipal};
use crate::core::settings::RequestMeta;

/// Password-reset links live 1 hour and work once (OWASP Forgot Password Cheat Sheet: short
/// expiry, single use).
pub const RESET_PASSWORD_TTL: Duration = Duration::hours(1);
const RESET_PURPOSE: &str = "reset_password";

/// Outbox action that looks the account up and, only if it exists, mails a reset link; queued
/// for every request so existing and unknown addresses take the same path.
pub const RESET_REQUEST_ACTION: &str = "password_reset_request";

/// Changes the password after checking the current one; every other session ends and the
/// current one is replaced by a fresh token (rotation on an authentication event).
pub(crate) async fn change_password(
    core: &Core,
    principal: &SessionPrincipal,
    current: &str,
    new: &str,
    meta: &RequestMeta,
) -> Result<NewSession, AuthError> {
    let me = core.me(principal.user_id).await?;
    core.check_password(&me.email, current, meta).await?;
    let email = EmailAddress::parse(&me.email)?;
    let password = Password::parse_new(new, &[email.as_str(), email.local_part(), "rampart"])?;
    let hash = core.hasher.hash(&password).await?;
    let txn = core.db.begin_write().await?;
    let now = core.clock.now();
    txn.execute(stmt(
        &txn,
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
        vec![hash.into(), now.into(), principal.user_id.into()],
    ))
    .await?;
    core.mail(&txn, &me.email, "Your password was changed", "Your password was just changed and your other sessions were signed out. If this was not you, reset your password now.".into())
        .await?;
    let ending = core.end_credentials_in(&txn, principal.user_id.0, None).await?;
    core.record_event(&txn, events::PASSWORD_CHANGED, Some(principal.user_id.0), meta, serde_json::json!({})).await?;
    txn.commit().await?;
    core.finish_ending(ending).await?;
    // The new session keeps the authentication of the one it replaces.
    let methods: Vec<&str> = principal.session.amr.iter().map(String::as_str).collect();
    core.open_session(principal.user_id.0, meta, principal.session.authenticated_at, &methods).await
}

/// Queues a reset for `email`. The answer and the request's work are the same whether or not
/// the account exists: the lookup happens later, in the outbox worker.
pub(crate) async fn request_password_reset(core: &Core, email: &str, meta: &RequestMeta) -> Result<(), AuthError> {
    let email = EmailAddress::parse(email)?;
    let txn = core.db.begin_write().await?;
    let now = core.clock.now();
    scheduler::enqueue(
        &txn,
        &core.outbox_key,
        RESET_REQUEST_ACTION,
        &serde_json::json!({"email": email.as_str()}),
        now,
        now,
    )
    .await?;
    core.record_event(&txn, events::PASSWORD_RESET_REQUESTED, None, meta, serde_json::json!({})).await?;
    txn.commit().await?;
    Ok(())
}

/// The outbox handler of [`RESET_REQUEST_ACTION`]: if the account exists, issue a token and
/// mail the link, in one transaction.
pub(crate) async fn handle_reset_request(core: &Core, payload: &serde_json::Value) -> Result<(), AuthError> {
    let Some(email) = payload.get("email").and_then(|e| e.as_str()) else {
        return Ok(());
    };
    let txn = core.db.begin_write().await?;
    let row = txn
        .query_one(stmt(&txn, "SELECT id FROM users WHERE email = $1 AND status = 'active'", vec![email.into()]))
        .await?;
    if let Some(row) = row {
        let user: Uuid = row.try_get("", "id")?;
        let token = core.issue_one_time_token(&txn, user, RESET_PURPOSE, RESET_PASSWORD_TTL).await?;
        core.mail(
            &txn,
            email,
            "Reset your password",
            format!(
                "Reset your password with this link within one hour (it works once):\n\n{}/auth/reset-password#token={token}\n\n\
                 If you did not ask for this, ignore this message; your password is unchanged.",
                core.settings.link_base_url
            ),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Sets a new password with a reset token (single use), verifies the address (the mail
/// proved it), clears any lockout and ends every session.
pub(crate) async fn reset_password(core: &Core, token: &str, new: &str, meta: &RequestMeta) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    let user = core.consume_one_time_token(&txn, RESET_PURPOSE, token).await?;
    let row = txn
        .query_one(stmt(&txn, "SELECT email FROM users WHERE id = $1", vec![user.into()]))
        .await?
        .ok_or(AuthError::InvalidToken)?;
    let email = EmailAddress::parse(&row.try_get::<String>("", "email")?)?;
    let password = Password::parse_new(new, &[email.as_str(), email.local_part(), "rampart"])?;
    let hash = core.hasher.hash(&password).await?;
    let now = core.clock.now();
    txn.execute(stmt(
        &txn,
        "UPDATE users SET password_hash = $1, email_verified_at = COALESCE(email_verified_at, $2), failed_signins = 0, locked_until = NULL, updated_at = $2 WHERE id = $3",
        vec![hash.into(), now.into(), user.into()],
    ))
    .await?;
    core.mail(
        &txn,
        email.as_str(),
        "Your password was reset",
        "Your password was reset and every session was signed out. If this was not you, contact support.".into(),
    )
    .await?;
    let ending = core.end_credentials_in(&txn, user, None).await?;
    core.record_event(&txn, events::PASSWORD_RESET, Some(user), meta, serde_json::json!({})).await?;
    txn.commit().await?;
    core.finish_ending(ending).await?;
    Ok(())
}
