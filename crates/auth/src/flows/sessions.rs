//! Sessions and a user's credentials: resolving a session or access token for a request,
//! signing out, listing and revoking credentials, and exchanging one for a workspace-bound token.

use chrono::{DateTime, Utc};
use ids::{SessionId, UserId, WorkspaceId};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::core::accounts::UserView;
use crate::core::authentication::Authentication;
use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::families::REFRESH_TTL;
use crate::core::jwt::{AccessClaims, Holder};
use crate::core::revocation::Ended;
use crate::core::sessions::{SessionPrincipal, SESSION_IDLE, SESSION_PURPOSE, SESSION_REFRESH};
use crate::core::settings::RequestMeta;
use crate::core::store::SessionRecord;

/// Which sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Revoke {
    One(SessionId),
    AllExcept(SessionId),
    All,
}

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
    pub id: SessionId,
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

impl From<SessionRecord> for Credential {
    fn from(r: SessionRecord) -> Credential {
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

/// Resolves a session token for one request: expired sessions and inactive users are refused
/// here, on every request (suspension is effective on the next request).
pub(crate) async fn authenticate_session(core: &Core, token: &str) -> Result<SessionPrincipal, AuthError> {
    let hash = core.tokens.hash(SESSION_PURPOSE, token);
    let mut record = core.kv.get_session(&hash).await?.ok_or(AuthError::Unauthenticated)?;
    let now = core.clock.now();
    if now >= record.idle_expires_at || now >= record.absolute_expires_at {
        core.kv.delete_session(&hash, record.user_id).await?;
        return Err(AuthError::Unauthenticated);
    }
    let user = core.me(record.user_id).await?;
    if record.generation != user.credential_generation {
        // Opened before an event that ended the user's credentials (and missed by its
        // deletion, say while the store was unreachable): ended now.
        core.kv.delete_session(&hash, record.user_id).await?;
        return Err(AuthError::Unauthenticated);
    }
    if now - record.last_refreshed_at >= SESSION_REFRESH {
        record.last_refreshed_at = now;
        record.idle_expires_at = (now + SESSION_IDLE).min(record.absolute_expires_at);
        // Never recreates a session a concurrent sign-out just ended.
        if !core.kv.replace_session(&hash, &record, now).await? {
            return Err(AuthError::Unauthenticated);
        }
    }
    Ok(SessionPrincipal { user_id: record.user_id, user, session: record, token_hash: hash })
}

/// The claims and user of a bearer access token, if it still authenticates: valid signature
/// and times, an active user of the same credential generation, a family not revoked.
pub(crate) async fn authenticate_access(core: &Core, token: &str) -> Result<(AccessClaims, UserView), AuthError> {
    let claims = core.access.verify_access(token)?;
    // Suspension and deletion take effect on the very next request, not at token expiry; so
    // do the credential generation and the family's own end, read in the same query.
    let (user, family_revoked) = core.active_user(claims.sub.0, claims.sid.0).await?;
    if claims.gen != user.credential_generation || family_revoked {
        return Err(AuthError::Unauthenticated);
    }
    Ok((claims, user))
}

/// Ends the presented session.
pub(crate) async fn sign_out(core: &Core, principal: &SessionPrincipal, meta: &RequestMeta) -> Result<(), AuthError> {
    core.kv.delete_session(&principal.token_hash, principal.user_id).await?;
    let txn = core.db.begin_write().await?;
    // Tokens exchanged from this session end with it.
    core.mark_family_revoked(&txn, principal.user_id.0, principal.session.id.0).await?;
    core.record_event(
        &txn,
        events::SIGNOUT,
        Some(principal.user_id.0),
        meta,
        serde_json::json!({"session": principal.session.id}),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The user's live credentials, browser sessions and token families alike, newest first.
pub(crate) async fn list_sessions(core: &Core, user: Uuid) -> Result<Vec<Credential>, AuthError> {
    let now = core.clock.now();
    let generation = Core::active_generation_on(core.db.conn(), user).await?;
    let mut list: Vec<Credential> = core
        .kv
        .user_sessions(UserId(user))
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| now < r.idle_expires_at && now < r.absolute_expires_at && r.generation == generation)
        .map(Credential::from)
        .collect();
    let conn = core.db.conn();
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
            id: SessionId(id),
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
pub(crate) async fn revoke_sessions(
    core: &Core,
    user: Uuid,
    which: Revoke,
    meta: &RequestMeta,
) -> Result<Ended, AuthError> {
    let txn = core.db.begin_write().await?;
    let id = match which {
        Revoke::One(id) => id.0,
        Revoke::AllExcept(keep) => return end_all(core, txn, user, Some(keep.0), meta).await,
        Revoke::All => return end_all(core, txn, user, None, meta).await,
    };
    let mut ended = Ended::default();
    for (hash, record) in core.kv.user_sessions(UserId(user)).await? {
        // Counted only if this request removed it: of concurrent revocations of one session,
        // one ends it and the others find nothing, as a later one would.
        if record.id.0 == id && core.kv.delete_session(&hash, UserId(user)).await? {
            ended.sessions += 1;
        }
    }
    if ended.sessions == 0 && core.end_family(&txn, user, id).await? {
        ended.token_families += 1;
    }
    if ended.total() == 0 {
        return Err(AuthError::SessionNotFound);
    }
    // A session's or a family's exchanged tokens end with it (their `sid`).
    core.mark_family_revoked(&txn, user, id).await?;
    let detail = serde_json::json!({"sessions": ended.sessions, "token_families": ended.token_families, "id": id});
    core.record_event(&txn, events::SESSION_REVOKED, Some(user), meta, detail).await?;
    txn.commit().await?;
    Ok(ended)
}

/// [`revoke_sessions`] of everything but `keep`, recorded.
async fn end_all(
    core: &Core,
    txn: storage::Txn,
    user: Uuid,
    keep: Option<Uuid>,
    meta: &RequestMeta,
) -> Result<Ended, AuthError> {
    let ending = core.end_credentials_in(&txn, user, keep).await?;
    let detail = serde_json::json!({"token_families": ending.token_families, "kept": keep});
    core.record_event(&txn, events::SESSION_REVOKED, Some(user), meta, detail).await?;
    txn.commit().await?;
    core.finish_ending(ending).await
}

/// Ends one token family (sign-out for API clients): its refresh tokens and, at once, its
/// access tokens.
pub(crate) async fn revoke_family(core: &Core, user: Uuid, family: Uuid, meta: &RequestMeta) -> Result<(), AuthError> {
    let txn = core.db.begin_write().await?;
    core.end_family(&txn, user, family).await?;
    core.mark_family_revoked(&txn, user, family).await?;
    core.record_event(&txn, events::SIGNOUT, Some(user), meta, serde_json::json!({"token_family": family})).await?;
    txn.commit().await?;
    Ok(())
}

/// Ends every browser session and every token family of `user` on behalf of a workspace
/// administrator (`admin`, recorded as the actor in the event); their access tokens stop on
/// their next request.
pub(crate) async fn revoke_all_by_admin(
    core: &Core,
    user: Uuid,
    admin: Uuid,
    workspace: Uuid,
    meta: &RequestMeta,
) -> Result<Ended, AuthError> {
    let txn = core.db.begin_write().await?;
    let ending = core.end_credentials_in(&txn, user, None).await?;
    let detail = serde_json::json!({"token_families": ending.token_families, "by": admin, "workspace": workspace});
    core.record_event(&txn, events::SESSIONS_REVOKED_BY_ADMIN, Some(user), meta, detail).await?;
    txn.commit().await?;
    core.finish_ending(ending).await
}

/// Exchanges the caller's credential (session or token family `sid`) for an access token
/// bound to `workspace` and, when given, narrowed to `scope` (RFC 8693 token exchange). It
/// lives `ttl`, carries the caller's authentication and generation, and ends with its
/// session: every check of a sign-in's access token applies to it on each request, and the
/// workspace's own (membership, role, scope) on each workspace request.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange_for_workspace(
    core: &Core,
    user: &UserView,
    sid: Uuid,
    authentication: Option<&Authentication>,
    workspace: Uuid,
    scope: Option<String>,
    ttl: chrono::Duration,
    meta: &RequestMeta,
) -> Result<(secrecy::SecretString, i64), AuthError> {
    let holder = Holder {
        user: user.id,
        sid: SessionId(sid),
        generation: user.credential_generation,
        workspace: Some(WorkspaceId(workspace)),
        scope: scope.clone(),
    };
    let (token, claims) = core.access.issue_for(holder, authentication, ttl)?;
    let txn = core.db.begin_write().await?;
    let detail = serde_json::json!({
        "workspace": workspace, "scope": scope, "expires_in": ttl.num_seconds(), "from": sid, "token": claims.jti
    });
    core.record_event(&txn, events::TOKEN_EXCHANGED, Some(user.id.0), meta, detail).await?;
    txn.commit().await?;
    Ok((secrecy::SecretString::from(token), ttl.num_seconds()))
}
