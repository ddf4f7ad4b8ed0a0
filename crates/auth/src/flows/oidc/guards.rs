//! What a flow that began signed in checks at its callback: the session (or token family) that
//! began it is still live, and the account has no local factor to re-authenticate with instead.

use ids::UserId;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::{AuthError, OidcError};

/// The store key of `user`'s session `id`, if it is still live.
pub(super) async fn session_hash(core: &Core, user: Uuid, id: Uuid) -> Result<Option<String>, AuthError> {
    Ok(core
        .kv
        .user_sessions(UserId(user))
        .await?
        .into_iter()
        .find(|(_, record)| record.id.0 == id)
        .map(|(hash, _)| hash))
}

/// Refuses a flow whose session (or token family) ended since it began.
pub(super) async fn require_live(core: &Core, user: Uuid, session: Option<Uuid>) -> Result<(), AuthError> {
    let Some(session) = session else { return Err(AuthError::Unauthenticated) };
    if session_hash(core, user, session).await?.is_some() {
        return Ok(());
    }
    let family = core
        .db
        .conn()
        .query_one(stmt(
            core.db.conn(),
            "SELECT 1 AS one FROM refresh_tokens
              WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $3",
            vec![session.into(), user.into(), core.clock.now().into()],
        ))
        .await?;
    family.map(|_| ()).ok_or(AuthError::Unauthenticated)
}

/// Re-authentication through a provider is for accounts with no local factor: one with a
/// password or a second factor re-authenticates with those, so a provider's session alone
/// never stands in for them.
pub(super) async fn refuse_if_local_factors(core: &Core, user: Uuid) -> Result<(), AuthError> {
    let factors = core.local_factors(user).await?;
    if factors.has_password || factors.has_mfa {
        return Err(OidcError::ReauthenticateLocally.into());
    }
    Ok(())
}
