//! Refresh-token rotation: each use returns a new pair in the same family; reuse after the grace
//! window is theft and ends the family (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::families::{FamilyTurn, TokenPair, FAMILY_COLUMNS, REFRESH_PURPOSE, REFRESH_REUSE_GRACE};
use crate::core::settings::RequestMeta;

/// Rotates a refresh token. Reuse after the grace window revokes the family; a token of an
/// older credential generation (a password reset, revoke-all, … since) is refused.
pub(crate) async fn refresh(core: &Core, refresh_token: &str, meta: &RequestMeta) -> Result<TokenPair, AuthError> {
    let hash = core.tokens.hash(REFRESH_PURPOSE, refresh_token);
    let now = core.clock.now();
    let txn = core.db.begin_write().await?;
    let claimed = txn
        .query_one(stmt(
            &txn,
            &format!(
                "UPDATE refresh_tokens SET used_at = $1
                  WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
                  RETURNING {FAMILY_COLUMNS}"
            ),
            vec![now.into(), hash.clone().into()],
        ))
        .await?;
    let (turn, user) = match claimed {
        Some(row) => (FamilyTurn::from_row(&row)?, row.try_get::<Uuid>("", "user_id")?),
        None => {
            let row = txn
                .query_one(stmt(
                    &txn,
                    &format!(
                        "SELECT {FAMILY_COLUMNS}, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1"
                    ),
                    vec![hash.into()],
                ))
                .await?
                .ok_or(AuthError::InvalidToken)?;
            let turn = FamilyTurn::from_row(&row)?;
            let user: Uuid = row.try_get("", "user_id")?;
            let used_at: Option<DateTime<Utc>> = row.try_get("", "used_at")?;
            let revoked: Option<DateTime<Utc>> = row.try_get("", "revoked_at")?;
            let expires: DateTime<Utc> = row.try_get("", "expires_at")?;
            match used_at {
                Some(used) if revoked.is_none() && expires > now && now - used <= REFRESH_REUSE_GRACE => (turn, user),
                Some(_) if revoked.is_none() => {
                    core.end_family(&txn, user, turn.family).await?;
                    // The thief's (or the victim's) access tokens end with the family.
                    core.mark_family_revoked(&txn, user, turn.family).await?;
                    core.record_event(
                        &txn,
                        events::REFRESH_REUSE_DETECTED,
                        Some(user),
                        meta,
                        serde_json::json!({"token_family": turn.family}),
                    )
                    .await?;
                    txn.commit().await?;
                    return Err(AuthError::RefreshTokenReused);
                }
                _ if revoked.is_some() => return Err(AuthError::TokenFamilyEnded),
                _ => return Err(AuthError::InvalidToken),
            }
        }
    };
    // On the transaction's own connection: waiting for a second pooled connection while
    // holding one starves the pool when as many refreshes as connections arrive at once.
    if Core::active_generation_on(&txn, user).await? != turn.generation {
        return Err(AuthError::TokenFamilyEnded);
    }
    let pair = core.issue_pair(&txn, user, &turn, meta).await?;
    core.record_event(
        &txn,
        events::TOKEN_REFRESHED,
        Some(user),
        meta,
        serde_json::json!({"token_family": turn.family}),
    )
    .await?;
    txn.commit().await?;
    Ok(pair)
}
