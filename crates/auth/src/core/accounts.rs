//! Accounts as every request reads them: active or refused, with their credential generation.

use chrono::{DateTime, Utc};
use ids::UserId;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    /// Standing across the whole platform (`rbac::PlatformLevel`'s value: 100 super admin …
    /// 20 viewer), read with the user on every request.
    pub platform_level: u8,
    /// Raised by every event that ends the user's credentials; a session or token of an older
    /// generation is refused (read in the same per-request query, at no extra cost).
    pub credential_generation: i64,
}

impl Core {
    /// Refuses users who are suspended or deleted.
    pub async fn ensure_active(&self, user: UserId) -> Result<(), AuthError> {
        Core::active_generation_on(self.db.conn(), user.0).await.map(|_| ())
    }

    /// The credential generation of `user` if active (read on `conn`); refused otherwise.
    pub(crate) async fn active_generation_on<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<i64, AuthError> {
        let row = conn
            .query_one(stmt(conn, "SELECT status, credential_generation FROM users WHERE id = $1", vec![user.into()]))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        match row.try_get::<String>("", "status")?.as_str() {
            "active" => Ok(row.try_get("", "credential_generation")?),
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// The active user `user`: the read every authenticated request makes. On an SQLite file it
    /// runs in place (no hand-off to the driver's thread); the pool answers when it cannot.
    pub async fn me(&self, user: UserId) -> Result<UserView, AuthError> {
        self.active_user(user.0, Uuid::nil()).await.map(|(view, _)| view)
    }

    /// [`Core::me`], and in the same query whether token family (or session) `family`
    /// was ended one by one ([`Core::mark_family_revoked`]).
    pub(crate) async fn active_user(&self, user: Uuid, family: Uuid) -> Result<(UserView, bool), AuthError> {
        // SQLite numbers `$n` parameters in their order of appearance: `$1` comes first.
        const ACTIVE_USER: &str = "SELECT email, email_verified_at, created_at, platform_level, credential_generation,
                EXISTS (SELECT 1 FROM revoked_families WHERE family_id = $1) AS family_revoked
           FROM users WHERE id = $2 AND status = 'active'";
        let level = |raw: i64| u8::try_from(raw.clamp(0, 100)).unwrap_or(0);
        let inline = self.db.inline_reader().and_then(|reader| {
            reader.query_row(ACTIVE_USER, [family.as_bytes().as_slice(), user.as_bytes().as_slice()], |row| {
                let view = UserView {
                    id: UserId(user),
                    email: row.get(0)?,
                    email_verified: row.get::<_, Option<String>>(1)?.is_some(),
                    created_at: row.get(2)?,
                    platform_level: level(row.get(3)?),
                    credential_generation: row.get(4)?,
                };
                Ok((view, row.get::<_, bool>(5)?))
            })
        });
        if let Some(found) = inline {
            return found.ok_or(AuthError::Unauthenticated);
        }
        let row = self
            .db
            .conn()
            .query_one(stmt(self.db.conn(), ACTIVE_USER, vec![family.into(), user.into()]))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let view = UserView {
            id: UserId(user),
            email: row.try_get("", "email")?,
            email_verified: row.try_get::<Option<DateTime<Utc>>>("", "email_verified_at")?.is_some(),
            created_at: row.try_get("", "created_at")?,
            platform_level: level(row.try_get::<i16>("", "platform_level")?.into()),
            credential_generation: row.try_get("", "credential_generation")?,
        };
        Ok((view, row.try_get("", "family_revoked")?))
    }
}
