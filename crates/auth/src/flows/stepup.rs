//! Recent authentication ("step-up"): sensitive actions — changing the password, turning off the
//! second factor, creating API keys, deleting a workspace, changing a workspace's sign-in rules,
//! linking and unlinking identities — need a sign-in or re-authentication within the last
//! [`STEP_UP_MAX_AGE`] (OWASP ASVS 5.0 V6.8.4 / V7.5.3: re-authentication before highly sensitive
//! transactions). Every credential carries when and how its holder last authenticated: the
//! session record, and the access token's `auth_time` and `amr` claims (OpenID Connect Core 1.0
//! §2, RFC 8176), copied across refreshes by the token family.

use uuid::Uuid;

pub use crate::core::authentication::{amr, Authentication, CLOCK_LEEWAY, STEP_UP_MAX_AGE};
use crate::core::context::Core;
use crate::core::error::AuthError;
use crate::core::events::REAUTHENTICATED;
use crate::core::factors::{Factor, LocalFactors};
use crate::core::jwt::Holder;
use crate::core::settings::RequestMeta;

/// Re-authenticates a signed-in user with every local factor the account has: the password
/// when it has one, and the second factor when it has one. An account with neither (it signs
/// in only through a provider) re-authenticates through that provider instead
/// ([`AuthError::ReauthenticateWithProvider`]). Wrong passwords count towards the lockout
/// like sign-in attempts; TOTP codes are accepted at most once.
pub(crate) async fn reauthenticate(
    core: &Core,
    user: Uuid,
    password: Option<&str>,
    factor: Option<&Factor<'_>>,
    meta: &RequestMeta,
) -> Result<Authentication, AuthError> {
    let LocalFactors { email, has_password, has_mfa } = core.local_factors(user).await?;
    if !has_password && !has_mfa {
        return Err(AuthError::ReauthenticateWithProvider);
    }
    let mut methods = Vec::new();
    if has_password {
        let password = password.ok_or(AuthError::InvalidCredentials)?;
        core.check_password(&email, password, meta).await?;
        methods.push(amr::PASSWORD);
    }
    if has_mfa {
        let factor = factor.ok_or(AuthError::InvalidCode)?;
        let txn = core.db.begin_write().await?;
        if let Err(err) = core.check_factor(&txn, user, factor, meta).await {
            txn.rollback().await?;
            return Err(err);
        }
        txn.commit().await?;
        methods.push(amr::OTP);
    }
    let authentication = Authentication::new(core.clock.now(), &methods);
    let txn = core.db.begin_write().await?;
    core.record_event(&txn, REAUTHENTICATED, Some(user), meta, serde_json::json!({"amr": authentication.amr})).await?;
    txn.commit().await?;
    Ok(authentication)
}

/// Stamps an API client's token family with a fresh authentication (its next refreshes keep
/// it) and issues an access token that carries it.
pub(crate) async fn stamp_family(
    core: &Core,
    user: Uuid,
    family: Uuid,
    authentication: &Authentication,
) -> Result<(secrecy::SecretString, i64), AuthError> {
    let Some(generation) = core.stamp_family_tokens(user, family, authentication).await? else {
        return Err(AuthError::Unauthenticated);
    };
    let holder = Holder::signed_in(ids::UserId(user), ids::SessionId(family), generation);
    let (access, _) = core.access.issue_authenticated(holder, Some(authentication))?;
    Ok((secrecy::SecretString::from(access), core.access.ttl_secs()))
}
