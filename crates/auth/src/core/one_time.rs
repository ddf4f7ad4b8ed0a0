//! One-time tokens (e-mail verification, password reset): issued into the caller's transaction,
//! stored as keyed hashes, consumed once.

use chrono::Duration;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use uuid::Uuid;

use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::token;

impl Core {
    pub(crate) async fn issue_one_time_token<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        purpose: &str,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let token = token::generate();
        let now = self.clock.now();
        conn.execute(stmt(
            conn,
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![self.tokens.hash(purpose, &token).into(), user.into(), purpose.into(), (now + ttl).into(), now.into()],
        ))
        .await?;
        Ok(token)
    }

    /// Marks a one-time token used and returns its user. Atomic: of two concurrent uses, exactly
    /// one updates the row.
    pub(crate) async fn consume_one_time_token(
        &self,
        txn: &DatabaseTransaction,
        purpose: &str,
        token: &str,
    ) -> Result<Uuid, AuthError> {
        let hash = self.tokens.hash(purpose, token);
        let now = self.clock.now();
        let row = txn
            .query_one(stmt(
                txn,
                "UPDATE one_time_tokens SET consumed_at = $1
                  WHERE token_hash = $2 AND purpose = $3 AND consumed_at IS NULL AND expires_at > $1
                  RETURNING user_id",
                vec![now.into(), hash.into(), purpose.into()],
            ))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        Ok(row.try_get("", "user_id")?)
    }
}
