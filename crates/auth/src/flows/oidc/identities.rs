//! An account's provider identities: listed, unlinked (never the last way in), and their stored
//! access tokens opened for server-side calls.

use chrono::{DateTime, Utc};
use ids::IdentityId;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use uuid::Uuid;

use super::sealed::{aad, open_text, AAD_ACCESS};
use super::settle::record_method_change;
use crate::core::context::{stmt, Core};
use crate::core::error::{AuthError, OidcError};
use crate::core::settings::RequestMeta;

/// An identity at a provider, as shown to its account.
#[derive(Debug, Clone)]
pub struct IdentityView {
    pub id: IdentityId,
    pub provider: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// The account's provider identities.
pub(crate) async fn identities(core: &Core, user: Uuid) -> Result<Vec<IdentityView>, AuthError> {
    let rows = core
        .db
        .conn()
        .query_all(stmt(
            core.db.conn(),
            "SELECT id, provider, email, created_at, last_sign_in_at FROM user_identities WHERE user_id = $1 ORDER BY created_at",
            vec![user.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(IdentityView {
                id: r.try_get("", "id")?,
                provider: r.try_get("", "provider")?,
                email: r.try_get("", "email")?,
                created_at: r.try_get("", "created_at")?,
                last_sign_in_at: r.try_get("", "last_sign_in_at")?,
            })
        })
        .collect()
}

/// Unlinks an identity (the caller has re-authenticated recently). An account keeps at least
/// one way to sign in: its password or another identity.
pub(crate) async fn unlink_identity(
    core: &Core,
    user: Uuid,
    identity: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    // Locks the account's row so two unlinks cannot each leave the other as the last way in.
    let password: Option<String> = txn
        .query_one(stmt(
            &txn,
            &format!(
                "SELECT password_hash FROM users WHERE id = $1{}",
                if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres { " FOR UPDATE" } else { "" }
            ),
            vec![user.into()],
        ))
        .await?
        .ok_or(AuthError::Unauthenticated)?
        .try_get("", "password_hash")?;
    let others = txn
        .query_one(stmt(
            &txn,
            "SELECT COUNT(*) AS n FROM user_identities WHERE user_id = $1 AND id <> $2",
            vec![user.into(), identity.into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let provider = txn
        .query_one(stmt(
            &txn,
            "DELETE FROM user_identities WHERE id = $1 AND user_id = $2 RETURNING provider",
            vec![identity.into(), user.into()],
        ))
        .await?
        .ok_or(OidcError::IdentityNotFound)?
        .try_get::<String>("", "provider")?;
    if password.is_none() && others == 0 {
        txn.rollback().await?;
        return Err(OidcError::LastSignInMethod.into());
    }
    record_method_change(core, &txn, user, &provider, false, meta).await?;
    txn.commit().await?;
    Ok(())
}

/// A provider's stored access token for `identity`, opened (for server-side calls that act
/// for the user).
pub(crate) async fn provider_access_token(
    core: &Core,
    user: Uuid,
    identity: Uuid,
) -> Result<Option<SecretString>, AuthError> {
    let row = core
        .db
        .conn()
        .query_one(stmt(
            core.db.conn(),
            "SELECT access_token_ciphertext FROM user_identities WHERE id = $1 AND user_id = $2",
            vec![identity.into(), user.into()],
        ))
        .await?;
    let Some(sealed) = row.map(|r| r.try_get::<Option<String>>("", "access_token_ciphertext")).transpose()?.flatten()
    else {
        return Ok(None);
    };
    Ok(Some(SecretString::from(open_text(core, &aad(AAD_ACCESS, identity.as_bytes()), &sealed)?)))
}
