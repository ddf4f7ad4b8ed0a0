//! A user's credentials as one set: browser sessions (in the key-value store) and API clients'
//! token families (refresh tokens in the database, with their short-lived access tokens).
//!
//! Revocation reaches every kind. Each user has a credential generation (`users.
//! credential_generation`) that every credential carries from its issue; an event that ends a
//! user's credentials raises it in the same transaction as the event, so:
//! - a session or access token of an older generation is refused on its next request, by the
//!   per-request user read that already exists (no extra query);
//! - a refresh token of an older generation is refused at refresh, even one rotated concurrently
//!   with the event (read committed lets that refresh commit, but under the old generation);
//! - what the user asked to keep (their current session or family) is stamped with the new one.
//!
//! Ending one token family (sign-out of an API client, refresh-token reuse) records it in
//! `revoked_families`, in the ending's own transaction, for as long as its tokens can live: the
//! per-request user read sees it in the same query, so they stop at once too, on every replica,
//! with or without Redis.

use ids::UserId;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;

/// The longest an access token made by exchange may live (the JWT configuration's limit too).
pub const EXCHANGED_TTL_MAX: chrono::Duration = chrono::Duration::hours(1);

/// How many credentials of each kind a revocation ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    pub sessions: usize,
    pub token_families: usize,
}

impl Ended {
    pub fn total(&self) -> usize {
        self.sessions + self.token_families
    }
}

/// What [`Core::end_credentials_in`] did in the caller's transaction; finished by
/// [`Core::finish_ending`] once that transaction has committed.
#[derive(Debug, Clone, Copy)]
#[must_use = "the sessions end in finish_ending, after the transaction commits"]
pub(crate) struct Ending {
    user: Uuid,
    generation: i64,
    keep: Option<Uuid>,
    pub(crate) token_families: usize,
}

impl Core {
    /// Ends every credential of `user` but `keep` (a session id or a token family), in `txn`:
    /// raises the generation, revokes the refresh tokens and re-stamps a kept family. Browser
    /// sessions end in [`Core::finish_ending`] after `txn` commits; until then (or if the
    /// store fails) they already stand refused by the generation.
    pub(crate) async fn end_credentials_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: Uuid,
        keep: Option<Uuid>,
    ) -> Result<Ending, AuthError> {
        let now = self.clock.now();
        let generation: i64 = txn
            .query_one(stmt(
                txn,
                "UPDATE users SET credential_generation = credential_generation + 1, updated_at = $2
                  WHERE id = $1 RETURNING credential_generation",
                vec![user.into(), now.into()],
            ))
            .await?
            .ok_or(AuthError::Unauthenticated)?
            .try_get("", "credential_generation")?;
        let keep_family = keep.unwrap_or(Uuid::nil());
        let live = txn
            .query_one(stmt(
                txn,
                "SELECT COUNT(DISTINCT family_id) AS n FROM refresh_tokens
                  WHERE user_id = $1 AND family_id <> $2 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $3",
                vec![user.into(), keep_family.into(), now.into()],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        txn.execute(stmt(
            txn,
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND family_id <> $2 AND revoked_at IS NULL",
            vec![user.into(), keep_family.into(), now.into()],
        ))
        .await?;
        if keep.is_some() {
            txn.execute(stmt(
                txn,
                "UPDATE refresh_tokens SET generation = $3 WHERE user_id = $1 AND family_id = $2 AND revoked_at IS NULL",
                vec![user.into(), keep_family.into(), generation.into()],
            ))
            .await?;
        }
        Ok(Ending { user, generation, keep, token_families: usize::try_from(live).unwrap_or(0) })
    }

    /// Ends the browser sessions of a committed [`Ending`] and stamps the kept one with the new
    /// generation. Sessions it cannot reach (the store failing) are refused by the generation.
    pub(crate) async fn finish_ending(&self, ending: Ending) -> Result<Ended, AuthError> {
        let now = self.clock.now();
        let mut sessions = 0;
        for (hash, mut record) in self.kv.user_sessions(UserId(ending.user)).await? {
            if Some(record.id.0) == ending.keep {
                record.generation = ending.generation;
                self.kv.replace_session(&hash, &record, now).await?;
            } else if self.kv.delete_session(&hash, UserId(ending.user)).await? && now < record.absolute_expires_at {
                sessions += 1;
            }
        }
        Ok(Ended { sessions, token_families: ending.token_families })
    }

    /// Ends one token family: its refresh tokens at once, its access tokens on their next
    /// request. `false` when `user` has no live family `family`.
    pub(crate) async fn end_family<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: Uuid,
        family: Uuid,
    ) -> Result<bool, AuthError> {
        let ended = txn
            .execute(stmt(
                txn,
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND user_id = $3 AND revoked_at IS NULL",
                vec![self.clock.now().into(), family.into(), user.into()],
            ))
            .await?
            .rows_affected();
        Ok(ended > 0)
    }

    /// Refuses the access tokens of `family` (a token family, or a session for the tokens
    /// exchanged from it) from the commit of `txn` until the last of them has expired.
    pub(crate) async fn mark_family_revoked<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: Uuid,
        family: Uuid,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        // As long as the longest of its tokens can live: a sign-in's, or one made by exchange.
        let longest = self.access.lifetime_with_leeway().max(EXCHANGED_TTL_MAX + chrono::Duration::minutes(5));
        txn.execute(stmt(
            txn,
            "INSERT INTO revoked_families (family_id, user_id, until) VALUES ($1, $2, $3)
             ON CONFLICT (family_id) DO UPDATE SET until = excluded.until",
            vec![family.into(), user.into(), (now + longest).into()],
        ))
        .await?;
        Ok(())
    }
}
