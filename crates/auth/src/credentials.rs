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

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    service::{events, stmt, RequestMeta, Revoke, REFRESH_TTL},
    AuthError, AuthService,
};

/// The longest an access token made by exchange may live (the JWT configuration's limit too).
pub const EXCHANGED_TTL_MAX: chrono::Duration = chrono::Duration::hours(1);

/// The kinds of credential a user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A browser session (the session cookie).
    BrowserSession,
    /// An API client's refresh-token family and its access tokens.
    TokenFamily,
}

/// One live credential as its owner sees it: never a token or a token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The session's public id, or the token family's id (the access tokens' `sid`).
    pub id: Uuid,
    pub kind: CredentialKind,
    pub created_at: DateTime<Utc>,
    /// The last sliding refresh of a session; the last token rotation of a family.
    pub last_used_at: DateTime<Utc>,
    /// When it ends if unused.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub absolute_expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    /// Where it was last used from (the client address, behind trusted proxies).
    pub ip: Option<String>,
}

impl From<crate::store::SessionRecord> for Credential {
    fn from(r: crate::store::SessionRecord) -> Credential {
        Credential {
            id: r.id,
            kind: CredentialKind::BrowserSession,
            created_at: r.created_at,
            last_used_at: r.last_refreshed_at,
            idle_expires_at: r.idle_expires_at,
            absolute_expires_at: r.absolute_expires_at,
            user_agent: r.user_agent,
            ip: r.ip,
        }
    }
}

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

/// What [`AuthService::end_credentials_in`] did in the caller's transaction; finished by
/// [`AuthService::finish_ending`] once that transaction has committed.
#[derive(Debug, Clone, Copy)]
#[must_use = "the sessions end in finish_ending, after the transaction commits"]
pub(crate) struct Ending {
    user: Uuid,
    generation: i64,
    keep: Option<Uuid>,
    token_families: usize,
}

impl AuthService {
    /// Ends every credential of `user` but `keep` (a session id or a token family), in `txn`:
    /// raises the generation, revokes the refresh tokens and re-stamps a kept family. Browser
    /// sessions end in [`AuthService::finish_ending`] after `txn` commits; until then (or if the
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
        for (hash, mut record) in self.kv.user_sessions(ending.user).await? {
            if Some(record.id) == ending.keep {
                record.generation = ending.generation;
                self.kv.replace_session(&hash, &record, now).await?;
            } else if self.kv.delete_session(&hash, ending.user).await? && now < record.absolute_expires_at {
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

    /// The claims and user of a bearer access token, if it still authenticates: valid signature
    /// and times, an active user of the same credential generation, a family not revoked.
    pub async fn authenticate_access(
        &self,
        token: &str,
    ) -> Result<(crate::jwt::AccessClaims, crate::service::UserView), AuthError> {
        let claims = self.access.verify_access(token)?;
        // Suspension and deletion take effect on the very next request, not at token expiry; so
        // do the credential generation and the family's own end, read in the same query.
        let (user, family_revoked) = self.active_user(claims.sub, claims.sid).await?;
        if claims.gen != user.credential_generation || family_revoked {
            return Err(AuthError::Unauthenticated);
        }
        Ok((claims, user))
    }

    /// The user's live credentials, browser sessions and token families alike, newest first.
    pub async fn list_sessions(&self, user: Uuid) -> Result<Vec<Credential>, AuthError> {
        let now = self.clock.now();
        let generation = Self::active_generation_on(self.db.conn(), user).await?;
        let mut list: Vec<Credential> = self
            .kv
            .user_sessions(user)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| now < r.idle_expires_at && now < r.absolute_expires_at && r.generation == generation)
            .map(Credential::from)
            .collect();
        let conn = self.db.conn();
        let rows = conn
            .query_all(stmt(
                conn,
                "SELECT family_id, created_at, COALESCE(family_created_at, created_at) AS began, expires_at, ip, user_agent
                   FROM refresh_tokens
                  WHERE user_id = $1 AND generation = $2 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $3
                  ORDER BY created_at DESC",
                vec![user.into(), generation.into(), now.into()],
            ))
            .await?;
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            let id: Uuid = row.try_get("", "family_id")?;
            // Two live tokens of one family exist only within the reuse grace; the newest speaks.
            if !seen.insert(id) {
                continue;
            }
            let began: DateTime<Utc> = row.try_get("", "began")?;
            list.push(Credential {
                id,
                kind: CredentialKind::TokenFamily,
                created_at: began,
                last_used_at: row.try_get("", "created_at")?,
                idle_expires_at: row.try_get("", "expires_at")?,
                absolute_expires_at: began + REFRESH_TTL,
                user_agent: row.try_get("", "user_agent")?,
                ip: row.try_get("", "ip")?,
            });
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(list)
    }

    /// Ends credentials of `user`: one (a session or a token family, by id), or all (optionally
    /// keeping the caller's own). Ending all raises the credential generation: every access token
    /// issued before stops on its next request, the kept credential excepted (a kept token
    /// family keeps its refresh token; its next refresh brings an access token of the new
    /// generation).
    pub async fn revoke_sessions(&self, user: Uuid, which: Revoke, meta: &RequestMeta) -> Result<Ended, AuthError> {
        let txn = self.db.begin_write().await?;
        let id = match which {
            Revoke::One(id) => id,
            Revoke::AllExcept(keep) => return self.end_all(txn, user, Some(keep), meta).await,
            Revoke::All => return self.end_all(txn, user, None, meta).await,
        };
        let mut ended = Ended::default();
        for (hash, record) in self.kv.user_sessions(user).await? {
            // Counted only if this request removed it: of concurrent revocations of one session,
            // one ends it and the others find nothing, as a later one would.
            if record.id == id && self.kv.delete_session(&hash, user).await? {
                ended.sessions += 1;
            }
        }
        if ended.sessions == 0 && self.end_family(&txn, user, id).await? {
            ended.token_families += 1;
        }
        if ended.total() == 0 {
            return Err(AuthError::SessionNotFound);
        }
        // A session's or a family's exchanged tokens end with it (their `sid`).
        self.mark_family_revoked(&txn, user, id).await?;
        let detail = serde_json::json!({"sessions": ended.sessions, "token_families": ended.token_families, "id": id});
        self.record_event(&txn, events::SESSION_REVOKED, Some(user), meta, detail).await?;
        txn.commit().await?;
        Ok(ended)
    }

    /// [`AuthService::revoke_sessions`] of everything but `keep`, recorded.
    async fn end_all(
        &self,
        txn: storage::Txn,
        user: Uuid,
        keep: Option<Uuid>,
        meta: &RequestMeta,
    ) -> Result<Ended, AuthError> {
        let ending = self.end_credentials_in(&txn, user, keep).await?;
        let detail = serde_json::json!({"token_families": ending.token_families, "kept": keep});
        self.record_event(&txn, events::SESSION_REVOKED, Some(user), meta, detail).await?;
        txn.commit().await?;
        self.finish_ending(ending).await
    }

    /// Ends one token family (sign-out for API clients): its refresh tokens and, at once, its
    /// access tokens.
    pub async fn revoke_family(&self, user: Uuid, family: Uuid, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        self.end_family(&txn, user, family).await?;
        self.mark_family_revoked(&txn, user, family).await?;
        self.record_event(&txn, events::SIGNOUT, Some(user), meta, serde_json::json!({"token_family": family})).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Ends every browser session and every token family of `user` on behalf of a workspace
    /// administrator (`admin`, recorded as the actor in the event); their access tokens stop on
    /// their next request.
    pub async fn revoke_all_by_admin(
        &self,
        user: Uuid,
        admin: Uuid,
        workspace: Uuid,
        meta: &RequestMeta,
    ) -> Result<Ended, AuthError> {
        let txn = self.db.begin_write().await?;
        let ending = self.end_credentials_in(&txn, user, None).await?;
        let detail = serde_json::json!({"token_families": ending.token_families, "by": admin, "workspace": workspace});
        self.record_event(&txn, events::SESSIONS_REVOKED_BY_ADMIN, Some(user), meta, detail).await?;
        txn.commit().await?;
        self.finish_ending(ending).await
    }

    /// Exchanges the caller's credential (session or token family `sid`) for an access token
    /// bound to `workspace` and, when given, narrowed to `scope` (RFC 8693 token exchange). It
    /// lives `ttl`, carries the caller's authentication and generation, and ends with its
    /// session: every check of a sign-in's access token applies to it on each request, and the
    /// workspace's own (membership, role, scope) on each workspace request.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange_for_workspace(
        &self,
        user: &crate::service::UserView,
        sid: Uuid,
        authentication: Option<&crate::stepup::Authentication>,
        workspace: Uuid,
        scope: Option<String>,
        ttl: chrono::Duration,
        meta: &RequestMeta,
    ) -> Result<(secrecy::SecretString, i64), AuthError> {
        let holder = crate::jwt::Holder {
            user: user.id,
            sid,
            generation: user.credential_generation,
            workspace: Some(workspace),
            scope: scope.clone(),
        };
        let (token, claims) = self.access.issue_for(holder, authentication, ttl)?;
        let txn = self.db.begin_write().await?;
        let detail = serde_json::json!({
            "workspace": workspace, "scope": scope, "expires_in": ttl.num_seconds(), "from": sid, "token": claims.jti
        });
        self.record_event(&txn, events::TOKEN_EXCHANGED, Some(user.id), meta, detail).await?;
        txn.commit().await?;
        Ok((secrecy::SecretString::from(token), ttl.num_seconds()))
    }
}
