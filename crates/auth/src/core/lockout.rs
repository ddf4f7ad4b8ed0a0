//! The password check every password flow shares: one answer for every failure, and the
//! account's lockout after repeated failures.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::email::EmailAddress;
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::password::Password;
use crate::core::settings::RequestMeta;

/// Consecutive failed sign-ins that lock an account (NIST SP 800-63B §5.2.2 allows at most 100).
pub const LOCKOUT_THRESHOLD: i32 = 5;
/// First lock lasts 15 minutes, doubling per further lock, never more than a day: an attacker can
/// delay a victim, never lock them out for good.
pub const LOCKOUT_BASE: Duration = Duration::minutes(15);
pub const LOCKOUT_MAX: Duration = Duration::hours(24);

impl Core {
    /// Verifies e-mail and password, applying lockout; the same answer for every failure.
    pub(crate) async fn check_password(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<Uuid, AuthError> {
        let password = Password::for_verification(password);
        let Ok(email) = EmailAddress::parse(email) else {
            self.hasher.burn().await?;
            return Err(AuthError::InvalidCredentials);
        };
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT id, password_hash, status, email_verified_at, locked_until, failed_signins, lockouts FROM users WHERE email = $1",
                vec![email.as_str().into()],
            ))
            .await?;
        let Some(row) = row else {
            self.hasher.verify(&password, None).await?;
            let txn = self.db.begin_write().await?;
            self.record_event(
                &txn,
                events::SIGNIN_FAILED,
                None,
                meta,
                serde_json::json!({"reason": "unknown_account"}),
            )
            .await?;
            txn.commit().await?;
            return Err(AuthError::InvalidCredentials);
        };
        let id: Uuid = row.try_get("", "id")?;
        let stored: Option<String> = row.try_get("", "password_hash")?;
        let status: String = row.try_get("", "status")?;
        let verified: Option<DateTime<Utc>> = row.try_get("", "email_verified_at")?;
        let locked_until: Option<DateTime<Utc>> = row.try_get("", "locked_until")?;
        let now = self.clock.now();
        let ok = self.hasher.verify(&password, stored.as_deref()).await?;
        let locked = locked_until.is_some_and(|t| t > now);
        if ok && !locked && status == "active" {
            if verified.is_none() {
                return Err(AuthError::EmailNotVerified);
            }
            self.db
                .conn()
                .execute(stmt(
                    self.db.conn(),
                    "UPDATE users SET failed_signins = 0, lockouts = 0, locked_until = NULL WHERE id = $1",
                    vec![id.into()],
                ))
                .await?;
            return Ok(id);
        }
        self.record_failed_sign_in(id, &email, locked, status == "active", now, meta).await?;
        Err(AuthError::InvalidCredentials)
    }

    /// Records a failed sign-in and counts it against an active, unlocked account; the failure
    /// that reaches [`LOCKOUT_THRESHOLD`] locks it.
    async fn record_failed_sign_in(
        &self,
        id: Uuid,
        email: &EmailAddress,
        locked: bool,
        active: bool,
        now: DateTime<Utc>,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let reason = if locked {
            "locked"
        } else if !active {
            "inactive"
        } else {
            "wrong_password"
        };
        let txn = self.db.begin_write().await?;
        if !locked && active {
            // Count the failure atomically; the update that reaches the threshold locks.
            let row = txn
                .query_one(stmt(
                    &txn,
                    "UPDATE users SET failed_signins = failed_signins + 1 WHERE id = $1 RETURNING failed_signins, lockouts",
                    vec![id.into()],
                ))
                .await?;
            if let Some(row) = row {
                let failed: i32 = row.try_get("", "failed_signins")?;
                let lockouts: i32 = row.try_get("", "lockouts")?;
                if failed >= LOCKOUT_THRESHOLD {
                    self.lock_account(&txn, id, email, lockouts, now, meta).await?;
                }
            }
        }
        self.record_event(&txn, events::SIGNIN_FAILED, Some(id), meta, serde_json::json!({"reason": reason})).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Locks the account for [`LOCKOUT_BASE`], doubled per earlier lock up to [`LOCKOUT_MAX`],
    /// and tells its owner.
    async fn lock_account<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: Uuid,
        email: &EmailAddress,
        lockouts: i32,
        now: DateTime<Utc>,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let duration = (LOCKOUT_BASE * 2i32.pow(lockouts.clamp(0, 10) as u32)).min(LOCKOUT_MAX);
        let until = now + duration;
        txn.execute(stmt(
            txn,
            "UPDATE users SET failed_signins = 0, lockouts = lockouts + 1, locked_until = $2 WHERE id = $1",
            vec![id.into(), until.into()],
        ))
        .await?;
        self.mail(
            txn,
            email.as_str(),
            "Your account was locked after failed sign-ins",
            format!(
                "After {LOCKOUT_THRESHOLD} failed sign-in attempts your account is locked until {} (UTC).\n\
                     If this was not you, consider resetting your password at {}/auth/reset-password.",
                until.format("%Y-%m-%d %H:%M"),
                self.settings.link_base_url
            ),
        )
        .await?;
        self.record_event(txn, events::LOCKOUT, Some(id), meta, serde_json::json!({"minutes": duration.num_minutes()}))
            .await?;
        Ok(())
    }
}
