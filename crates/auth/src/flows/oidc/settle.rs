//! The account rules of a callback, each in one transaction: which account a provider sign-in
//! settles on (found, taken over or made), linking an identity, re-authenticating through one;
//! the provider's tokens kept sealed; refusals and changes of sign-in methods recorded.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::exchange::Verified;
use super::guards::session_hash;
use super::providers::ProviderConfig;
use super::sealed::{aad, AAD_ACCESS, AAD_REFRESH};
use crate::core::authentication::{amr, Authentication};
use crate::core::context::{stmt, Core};
use crate::core::email::EmailAddress;
use crate::core::error::{AuthError, OidcError};
use crate::core::events;
use crate::core::settings::{RequestMeta, SignupMode};

/// Times a provider sign-in's account transaction runs before a lost race to create the account
/// is reported (the second run finds the winner's account).
const SETTLE_ATTEMPTS: u32 = 3;

pub(super) async fn record_refusal(
    core: &Core,
    provider: &str,
    err: &AuthError,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    let reason = match err {
        AuthError::Oidc(OidcError::CodeRejected) => "code_rejected",
        AuthError::Oidc(OidcError::InvalidIdToken(_)) => "invalid_id_token",
        AuthError::Oidc(OidcError::ProviderUnavailable(_)) => "provider_unavailable",
        _ => "other",
    };
    core.record_event(
        &txn,
        events::OIDC_REFUSED,
        None,
        meta,
        serde_json::json!({"provider": provider, "reason": reason}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Stores the provider's tokens, sealed and bound to the identity.
async fn keep_tokens(
    core: &Core,
    txn: &DatabaseTransaction,
    identity: Uuid,
    verified: &Verified,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let access = core
        .seal_with_vault_key(&aad(AAD_ACCESS, identity.as_bytes()), verified.access_token.expose_secret().as_bytes())?;
    let refresh = verified
        .refresh_token
        .as_ref()
        .map(|t| core.seal_with_vault_key(&aad(AAD_REFRESH, identity.as_bytes()), t.expose_secret().as_bytes()))
        .transpose()?;
    txn.execute(stmt(
        txn,
        "UPDATE user_identities SET access_token_ciphertext = $2,
                refresh_token_ciphertext = COALESCE($3, refresh_token_ciphertext),
                access_expires_at = $4, last_sign_in_at = $5, email = COALESCE($6, email)
          WHERE id = $1",
        vec![
            identity.into(),
            access.into(),
            refresh.into(),
            verified.expires_at.into(),
            now.into(),
            verified.email.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

async fn insert_identity(
    core: &Core,
    txn: &DatabaseTransaction,
    user: Uuid,
    provider: &str,
    verified: &Verified,
    now: DateTime<Utc>,
) -> Result<Uuid, AuthError> {
    let id = Uuid::new_v4();
    txn.execute(stmt(
        txn,
        "INSERT INTO user_identities (id, user_id, provider, issuer, subject, email, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            id.into(),
            user.into(),
            provider.into(),
            verified.issuer.clone().into(),
            verified.subject.clone().into(),
            verified.email.clone().into(),
            now.into(),
        ],
    ))
    .await?;
    keep_tokens(core, txn, id, verified, now).await?;
    Ok(id)
}

/// The account rules of a provider sign-in, in one transaction:
/// - a known identity signs in its account;
/// - otherwise the provider must say the address is verified;
/// - an account with that address whose address Rampart never verified is taken over by
///   the provider's verified owner: its password (set by whoever signed up, perhaps a
///   squatter) is cleared and the address marked verified;
/// - an account with that address already verified is not linked silently: its owner signs
///   in and links the provider ([`OidcError::AccountExists`]);
/// - otherwise a new account, without a password, when sign-up is open.
///
/// Two first sign-ins of one identity at once: on SQLite the second waits for the first's
/// write lock, then finds what it created; on PostgreSQL both find no identity and both
/// create it, and the one whose commit comes second fails whole on the unique address or
/// identity and is settled again, now finding the first's.
pub(super) async fn settle_sign_in(
    core: &Core,
    cfg: &ProviderConfig,
    verified: &Verified,
    meta: &RequestMeta,
) -> Result<Uuid, AuthError> {
    let mut attempt = 1;
    loop {
        match settle_sign_in_once(core, cfg, verified, meta).await {
            Err(AuthError::Db(err) | AuthError::Audit(audit::AuditError::Db(err)))
                if attempt < SETTLE_ATTEMPTS && storage::is_unique_violation(&err) =>
            {
                attempt += 1;
            }
            settled => return settled,
        }
    }
}

/// One run of [`settle_sign_in`]'s transaction, ended by its outcome.
async fn settle_sign_in_once(
    core: &Core,
    cfg: &ProviderConfig,
    verified: &Verified,
    meta: &RequestMeta,
) -> Result<Uuid, AuthError> {
    let txn = core.db.begin_write().await?;
    let result = sign_in_account(core, &txn, cfg, verified, meta).await;
    let result = storage::settle(txn, result).await;
    if let Err(err @ AuthError::Oidc(OidcError::EmailUnverified)) = &result {
        record_refusal(core, cfg.name.as_str(), err, meta).await?;
    }
    result
}

/// SQLite it already holds the write lock, so a concurrent sign-in queues behind it).
async fn sign_in_account(
    core: &Core,
    txn: &DatabaseTransaction,
    cfg: &ProviderConfig,
    verified: &Verified,
    meta: &RequestMeta,
) -> Result<Uuid, AuthError> {
    let provider = cfg.name.as_str();
    let now = core.clock.now();
    // The account with the provider's address is read before the identity. On PostgreSQL
    // each statement sees every commit made before it began, so a concurrent first sign-in
    // that commits between the two reads shows its identity to the second one; read the
    // other way round, it would show its account (verified) but not its identity, and the
    // sign-in would be refused as the address of someone else's account.
    let by_email = match verified.email.as_deref().map(EmailAddress::parse) {
        Some(Ok(email)) => {
            txn.query_one(stmt(
                txn,
                "SELECT id, status, email_verified_at FROM users WHERE email = $1",
                vec![email.as_str().into()],
            ))
            .await?
        }
        _ => None,
    };
    let known = txn
        .query_one(stmt(
            txn,
            "SELECT i.id, i.user_id, u.status FROM user_identities i JOIN users u ON u.id = i.user_id
              WHERE i.issuer = $1 AND i.subject = $2",
            vec![verified.issuer.clone().into(), verified.subject.clone().into()],
        ))
        .await?;
    if let Some(row) = known {
        let status: String = row.try_get("", "status")?;
        if status != "active" {
            return Err(AuthError::Unauthenticated);
        }
        keep_tokens(core, txn, row.try_get("", "id")?, verified, now).await?;
        return Ok(row.try_get("", "user_id")?);
    }
    if !cfg.trust_email {
        return Err(OidcError::EmailUntrusted.into());
    }
    let email = match (&verified.email, verified.email_verified) {
        (Some(email), true) => EmailAddress::parse(email)?,
        _ => return Err(OidcError::EmailUnverified.into()),
    };
    let (user, cleared) = match by_email {
        Some(row) => (take_over_unverified(core, txn, &row, provider, now, meta).await?, true),
        None => (create_account(core, txn, &email, provider, now, meta).await?, false),
    };
    insert_identity(core, txn, user, provider, verified, now).await?;
    if cleared {
        // Sessions opened with the cleared password (none should exist while unverified,
        // but the rule does not rest on that) end with it, before the takeover commits: a
        // store failure leaves nothing half done.
        for (hash, _) in core.kv.user_sessions(ids::UserId(user)).await? {
            core.kv.delete_session(&hash, ids::UserId(user)).await?;
        }
    }
    Ok(user)
}

/// A first sign-in for the address of an account Rampart never verified: the provider's
/// verified owner takes it over, its password (set by whoever signed up, perhaps a squatter)
/// cleared and its address marked verified.
async fn take_over_unverified(
    core: &Core,
    txn: &DatabaseTransaction,
    row: &sea_orm::QueryResult,
    provider: &str,
    now: DateTime<Utc>,
    meta: &RequestMeta,
) -> Result<Uuid, AuthError> {
    let user: Uuid = row.try_get("", "id")?;
    let status: String = row.try_get("", "status")?;
    let verified_at: Option<DateTime<Utc>> = row.try_get("", "email_verified_at")?;
    if status != "active" {
        return Err(AuthError::Unauthenticated);
    }
    if verified_at.is_some() {
        return Err(OidcError::AccountExists.into());
    }
    txn.execute(stmt(
        txn,
        "UPDATE users SET password_hash = NULL, email_verified_at = $2, failed_signins = 0, lockouts = 0,
                locked_until = NULL, updated_at = $2 WHERE id = $1",
        vec![user.into(), now.into()],
    ))
    .await?;
    // Links mailed for the unverified account stop working with its password.
    txn.execute(stmt(txn, "DELETE FROM one_time_tokens WHERE user_id = $1", vec![user.into()])).await?;
    // Every credential opened with the cleared password ends with it: refresh tokens
    // here, access tokens and sessions by the generation (and the loop below).
    let _ending = core.end_credentials_in(txn, user, None).await?;
    core.record_event(
        txn,
        events::OIDC_UNVERIFIED_PASSWORD_CLEARED,
        Some(user),
        meta,
        serde_json::json!({"provider": provider}),
    )
    .await?;
    Ok(user)
}

/// A first sign-in for an address without an account: a new account, without a password,
/// when sign-up is open.
async fn create_account(
    core: &Core,
    txn: &DatabaseTransaction,
    email: &EmailAddress,
    provider: &str,
    now: DateTime<Utc>,
    meta: &RequestMeta,
) -> Result<Uuid, AuthError> {
    if core.settings.signup != SignupMode::Open {
        return Err(AuthError::SignupClosed);
    }
    let user = Uuid::new_v4();
    txn.execute(stmt(
        txn,
        "INSERT INTO users (id, email, email_verified_at, password_hash, status, failed_signins, lockouts, created_at, updated_at)
         VALUES ($1, $2, $3, NULL, 'active', 0, 0, $3, $3)",
        vec![user.into(), email.as_str().into(), now.into()],
    ))
    .await?;
    core.record_event(txn, events::OIDC_SIGNUP, Some(user), meta, serde_json::json!({"provider": provider})).await?;
    Ok(user)
}

pub(super) async fn settle_link(
    core: &Core,
    provider: &str,
    user: Uuid,
    verified: &Verified,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let now = core.clock.now();
    let txn = core.db.begin_write().await?;
    let known = txn
        .query_one(stmt(
            &txn,
            "SELECT id, user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
            vec![verified.issuer.clone().into(), verified.subject.clone().into()],
        ))
        .await?;
    match known {
        Some(row) if row.try_get::<Uuid>("", "user_id")? != user => return Err(OidcError::IdentityInUse.into()),
        Some(row) => keep_tokens(core, &txn, row.try_get("", "id")?, verified, now).await?,
        None => {
            insert_identity(core, &txn, user, provider, verified, now).await?;
        }
    }
    record_method_change(core, &txn, user, provider, true, meta).await?;
    txn.commit().await?;
    Ok(())
}

pub(super) async fn settle_reauth(
    core: &Core,
    provider: &str,
    user: Uuid,
    session: Option<Uuid>,
    verified: &Verified,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let now = core.clock.now();
    let txn = core.db.begin_write().await?;
    let row = txn
        .query_one(stmt(
            &txn,
            "SELECT id FROM user_identities WHERE issuer = $1 AND subject = $2 AND user_id = $3",
            vec![verified.issuer.clone().into(), verified.subject.clone().into(), user.into()],
        ))
        .await?
        .ok_or(OidcError::IdentityMismatch)?;
    keep_tokens(core, &txn, row.try_get("", "id")?, verified, now).await?;
    let authentication = Authentication::new(verified.auth_time.map_or(now, |t| t.min(now)), &[amr::FEDERATED]);
    let detail = serde_json::json!({"amr": authentication.amr, "provider": provider});
    core.record_event(&txn, events::REAUTHENTICATED, Some(user), meta, detail).await?;
    txn.commit().await?;
    if let Some(session) = session {
        if let Some(hash) = session_hash(core, user, session).await? {
            core.stamp_session(&hash, &authentication).await?;
        }
        // A bearer client's family: its next refresh carries the new authentication.
        core.stamp_family_tokens(user, session, &authentication).await?;
    }
    Ok(())
}

/// Records that an identity was linked (`added`) or unlinked, and mails the account's owner
/// (OWASP ASVS 5.0 V6.3.7: notify users of changes to their authentication details).
pub(super) async fn record_method_change(
    core: &Core,
    txn: &DatabaseTransaction,
    user: Uuid,
    provider: &str,
    added: bool,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let (event, subject, body) = if added {
        (
            events::IDENTITY_LINKED,
            "A sign-in method was added to your account",
            format!("Your account can now be signed in to through {provider}."),
        )
    } else {
        (
            events::IDENTITY_UNLINKED,
            "A sign-in method was removed from your account",
            format!("Your account can no longer be signed in to through {provider}."),
        )
    };
    core.record_event(txn, event, Some(user), meta, serde_json::json!({"provider": provider})).await?;
    let email: String = txn
        .query_one(stmt(txn, "SELECT email FROM users WHERE id = $1", vec![user.into()]))
        .await?
        .ok_or(AuthError::Unauthenticated)?
        .try_get("", "email")?;
    let body = format!("{body}\nIf this was not you, reset your password and review your account's sign-in methods.");
    core.mail(txn, &email, subject, body).await
}
