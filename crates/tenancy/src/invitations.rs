//! Invitations by e-mail: the token is generated and hashed by the caller (only the keyed hash is
//! stored), valid for [`INVITATION_TTL`], single use, and accepted only by a signed-in user whose
//! address is the invited one — a forwarded link works for nobody else.

use chrono::{DateTime, Duration, Utc};
use ids::{InvitationId, UserId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};

use crate::{members, roles, stmt, TenancyError, TenantTx};

/// How long an invitation stays valid.
pub const INVITATION_TTL: Duration = Duration::hours(72);

/// An invitation (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: String,
    pub invited_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, role, invited_by, created_at, expires_at";

fn from_row(row: &QueryResult) -> Result<Invitation, TenancyError> {
    Ok(Invitation {
        id: row.try_get("", "id")?,
        email: row.try_get("", "email")?,
        role: row.try_get("", "role")?,
        invited_by: row.try_get("", "invited_by")?,
        created_at: row.try_get("", "created_at")?,
        expires_at: row.try_get("", "expires_at")?,
    })
}

/// Invites `email` (already normalised by the caller) with `role` (`members.invite`, and only a
/// role the inviter could grant). `token_hash` is the keyed hash of the token mailed to them.
pub async fn create(
    tx: &TenantTx,
    email: &str,
    role: &str,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Invitation, TenancyError> {
    let actor = tx.require_member(&Permission::MEMBERS_INVITE)?.role.clone();
    let role = roles::find(tx, role).await?;
    rbac::can_invite_with_role(&actor, &role)?;
    let already = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND u.email = $2",
            vec![tx.tenant().0.into(), email.into()],
        ))
        .await?;
    if already.is_some() {
        return Err(TenancyError::Conflict("that address already belongs to a member"));
    }
    let invitation = Invitation {
        id: InvitationId::new_random(),
        email: email.to_owned(),
        role: role.name,
        invited_by: tx.user(),
        created_at: now,
        expires_at: now + INVITATION_TTL,
    };
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO invitations (id, tenant_id, email, role, token_hash, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                invitation.id.into(),
                tx.tenant().0.into(),
                invitation.email.clone().into(),
                invitation.role.clone().into(),
                token_hash.into(),
                invitation.invited_by.into(),
                now.into(),
                invitation.expires_at.into(),
            ],
        ))
        .await?;
    // The invitation's id and role, not the invited address: personal data stays out of the chain.
    let payload = serde_json::json!({ "invitation": invitation.id, "role": invitation.role });
    tx.record(audit::Category::Membership, "invitation.created", payload, now).await?;
    Ok(invitation)
}

/// Pending invitations (`members.invite`), newest first.
pub async fn list_pending(tx: &TenantTx, now: DateTime<Utc>) -> Result<Vec<Invitation>, TenancyError> {
    tx.require_member(&Permission::MEMBERS_INVITE)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!(
                "SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL
                   AND expires_at > $2 ORDER BY created_at DESC"
            ),
            vec![tx.tenant().0.into(), now.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// Withdraws a pending invitation (`members.invite`).
pub async fn revoke(tx: &TenantTx, id: InvitationId, now: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.require_member(&Permission::MEMBERS_INVITE)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "UPDATE invitations SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
            vec![now.into(), id.into(), tx.tenant().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Membership, "invitation.revoked", serde_json::json!({ "invitation": id }), now).await
}

/// Accepts the invitation to `tenant` whose token hashes to `token_hash`, for `user`, whose
/// verified address is `user_email`, and commits. Single use: the acceptance is one conditional
/// update, so of two concurrent uses exactly one wins. Any mismatch — unknown, used, revoked,
/// expired, another address, a deleted workspace — is the same `NotFound`.
pub async fn accept(
    db: &crate::Db,
    tenant: crate::WorkspaceId,
    user: crate::UserId,
    token_hash: &str,
    user_email: &str,
    now: DateTime<Utc>,
) -> Result<members::Member, TenancyError> {
    let tx = TenantTx::begin_claiming(db, tenant, user).await?;
    let result = accept_in(&tx, token_hash, user_email, now).await;
    tx.settle(result).await
}

async fn accept_in(
    tx: &TenantTx,
    token_hash: &str,
    principal_email: &str,
    now: DateTime<Utc>,
) -> Result<members::Member, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2
              WHERE tenant_id = $3 AND token_hash = $4 AND email = $5
                AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1
                AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = $3 AND w.deleted_at IS NULL)
             RETURNING id, role",
            vec![now.into(), tx.user().0.into(), tx.tenant().0.into(), token_hash.into(), principal_email.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let role: String = row.try_get("", "role")?;
    let invitation: InvitationId = row.try_get("", "id")?;
    let inserted = tx
        .conn()
        .execute(stmt(
            tx,
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            vec![tx.tenant().0.into(), tx.user().0.into(), role.clone().into(), now.into()],
        ))
        .await;
    match inserted {
        Err(e) if crate::is_unique_violation(&e) => return Err(TenancyError::Conflict("already a member")),
        other => other?,
    };
    let payload = serde_json::json!({ "invitation": invitation, "role": role });
    tx.record(audit::Category::Membership, "invitation.accepted", payload, now).await?;
    Ok(members::Member { user_id: tx.user(), email: principal_email.to_owned(), role, joined_at: now })
}
