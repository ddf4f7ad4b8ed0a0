//! API clients' token families: single-use refresh tokens in the database, each rotation a new
//! token in the same family, with the family's sign-in time, generation and authentication.

use chrono::{DateTime, Duration, Utc};
use ids::{SessionId, UserId};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::authentication::Authentication;
use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::jwt::Holder;
use crate::core::settings::RequestMeta;
use crate::core::token;

/// A refresh token lives 30 days (the session's absolute limit) and is single use: each use
/// returns a new one in the same family.
pub const REFRESH_TTL: Duration = Duration::days(30);
/// A refresh token presented again within this window after its first use is treated as the
/// same client racing itself (two tabs, a retry after a lost response) and gets a fresh pair;
/// later reuse is theft and revokes the whole family (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
pub const REFRESH_REUSE_GRACE: Duration = Duration::seconds(10);
pub(crate) const REFRESH_PURPOSE: &str = "refresh";

/// Tokens for an API client.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: secrecy::SecretString,
    pub refresh_token: secrecy::SecretString,
    pub expires_in: i64,
    pub family: Uuid,
}

/// The token family a new refresh token joins: its id, when it began (its absolute limit runs
/// from there), the credential generation it belongs to and the authentication it carries.
#[derive(Debug, Clone)]
pub(crate) struct FamilyTurn {
    pub(crate) family: Uuid,
    pub(crate) began: DateTime<Utc>,
    pub(crate) generation: i64,
    pub(crate) authentication: Option<Authentication>,
}

impl FamilyTurn {
    /// The turn of the refresh token in `row` (selected with [`FAMILY_COLUMNS`]).
    pub(crate) fn from_row(row: &sea_orm::QueryResult) -> Result<FamilyTurn, AuthError> {
        Ok(FamilyTurn {
            family: row.try_get("", "family_id")?,
            began: row.try_get("", "began")?,
            generation: row.try_get("", "generation")?,
            authentication: Authentication::from_stored(row.try_get("", "auth_time")?, row.try_get("", "amr")?),
        })
    }
}

/// The columns [`FamilyTurn::from_row`] reads, and the owner.
pub(crate) const FAMILY_COLUMNS: &str =
    "family_id, user_id, generation, COALESCE(family_created_at, created_at) AS began, auth_time, amr";

impl Core {
    pub(crate) async fn issue_pair<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        turn: &FamilyTurn,
        meta: &RequestMeta,
    ) -> Result<TokenPair, AuthError> {
        let refresh = token::generate();
        let now = self.clock.now();
        let authentication = turn.authentication.as_ref();
        conn.execute(stmt(
            conn,
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at, auth_time, amr,
                                         generation, family_created_at, ip, user_agent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                self.tokens.hash(REFRESH_PURPOSE, &refresh).into(),
                turn.family.into(),
                user.into(),
                now.into(),
                // A family ends 30 days after its sign-in however often it is refreshed, as a
                // browser session does (SESSION_ABSOLUTE).
                (turn.began + REFRESH_TTL).into(),
                authentication.map(|a| a.at).into(),
                authentication.map(Authentication::amr_text).into(),
                turn.generation.into(),
                turn.began.into(),
                meta.ip.clone().into(),
                meta.user_agent.as_ref().map(|ua| ua.chars().take(256).collect::<String>()).into(),
            ],
        ))
        .await?;
        let holder = Holder::signed_in(UserId(user), SessionId(turn.family), turn.generation);
        let (access, _) = self.access.issue_authenticated(holder, authentication)?;
        Ok(TokenPair {
            access_token: secrecy::SecretString::from(access),
            refresh_token: secrecy::SecretString::from(refresh),
            expires_in: self.access.ttl_secs(),
            family: turn.family,
        })
    }

    /// Stamps the live refresh tokens of a token family, so its next refreshes carry the new
    /// authentication; the family's credential generation, or `None` when it has no live token
    /// (ended).
    pub(crate) async fn stamp_family_tokens(
        &self,
        user: Uuid,
        family: Uuid,
        authentication: &Authentication,
    ) -> Result<Option<i64>, AuthError> {
        let conn = self.db.conn();
        let rows = conn
            .query_all(stmt(
                conn,
                "UPDATE refresh_tokens SET auth_time = $3, amr = $4
                  WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL AND used_at IS NULL
                  RETURNING generation",
                vec![family.into(), user.into(), authentication.at.into(), authentication.amr_text().into()],
            ))
            .await?;
        let mut generation = None;
        for row in rows {
            generation = generation.max(Some(row.try_get::<i64>("", "generation")?));
        }
        Ok(generation)
    }
}
