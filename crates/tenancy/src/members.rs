//! Memberships: listing, role changes, removal and leaving. Nobody grants a role above their own
//! level or with a permission they lack, and the last owner cannot be removed or demoted.

use chrono::{DateTime, Utc};
use rbac::{Permission, RbacError, Role};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{roles, stmt, TenancyError, TenantTx, UserId};

/// A member of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

/// Every member, oldest first (`members.read`).
pub async fn list(tx: &TenantTx) -> Result<Vec<Member>, TenancyError> {
    tx.require_member(&Permission::MEMBERS_READ)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            "SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id
              WHERE m.tenant_id = $1 ORDER BY m.created_at, m.user_id",
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Member {
                user_id: row.try_get("", "user_id")?,
                email: row.try_get("", "email")?,
                role: row.try_get("", "role")?,
                joined_at: row.try_get("", "created_at")?,
            })
        })
        .collect()
}

/// The role of `member` in this workspace; `NotFound` for non-members.
pub async fn role_of(tx: &TenantTx, member: UserId) -> Result<Role, TenancyError> {
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2",
            vec![tx.tenant().0.into(), member.0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    roles::find(tx, &row.try_get::<String>("", "role")?).await
}

/// The acting member's role; access through a grant never manages members.
fn acting_role<'a>(tx: &'a TenantTx, permission: &Permission) -> Result<&'a Role, TenancyError> {
    Ok(&tx.require_member(permission)?.role)
}

/// Fails unless the workspace keeps an owner once `leaving` stops being one. On PostgreSQL a
/// transaction-level advisory lock on the workspace is taken first, so two owners demoting each
/// other at once cannot both succeed (SQLite has one writer at a time).
async fn ensure_an_owner_remains(tx: &TenantTx, leaving: UserId) -> Result<(), TenancyError> {
    tx.take_turn("owners").await?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            "SELECT user_id FROM memberships WHERE tenant_id = $1 AND role = 'Owner'",
            vec![tx.tenant().0.into()],
        ))
        .await?;
    let remaining = rows
        .iter()
        .map(|row| row.try_get::<Uuid>("", "user_id"))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|id| *id != leaving.0)
        .count();
    rbac::ensure_not_last_owner(remaining)?;
    Ok(())
}

/// Gives `member` the role `new_role` (`members.update_role`; the actor must outrank the member's
/// current role and hold everything the new role carries).
pub async fn change_role(
    tx: &TenantTx,
    member: UserId,
    new_role: &str,
    now: DateTime<Utc>,
) -> Result<Role, TenancyError> {
    let actor = acting_role(tx, &Permission::MEMBERS_UPDATE_ROLE)?.clone();
    let current = role_of(tx, member).await?;
    let new = roles::find(tx, new_role).await?;
    rbac::can_change_member_role(&actor, &current, &new)?;
    if current.name == new.name {
        // Nothing changes: a repeated request answers as the first did and records nothing.
        return Ok(new);
    }
    if current.name == rbac::OWNER_ROLE && new.name != rbac::OWNER_ROLE {
        ensure_an_owner_remains(tx, member).await?;
    }
    // Only if the role is still the one the checks saw: a concurrent change makes this a conflict.
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "UPDATE memberships SET role = $1 WHERE tenant_id = $2 AND user_id = $3 AND role = $4",
            vec![new.name.clone().into(), tx.tenant().0.into(), member.0.into(), current.name.clone().into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        // A concurrent request changed the role first (READ COMMITTED: this statement sees its
        // commit). The very role asked for is no conflict; a member gone meanwhile is not found.
        return match role_of(tx, member).await? {
            now if now.name == new.name => Ok(new),
            _ => Err(TenancyError::Conflict("the member's role changed meanwhile; try again")),
        };
    }
    let payload = serde_json::json!({ "member": member.0, "from": current.name, "to": new.name });
    tx.record(audit::Category::Membership, "member.role_changed", payload, now).await?;
    Ok(new)
}

/// Removes `member` (`members.remove` and outranking them), or lets the principal leave. The last
/// owner can do neither.
pub async fn remove(tx: &TenantTx, member: UserId, now: DateTime<Utc>) -> Result<(), TenancyError> {
    let current = role_of(tx, member).await?;
    if member != tx.user() {
        let actor = acting_role(tx, &Permission::MEMBERS_REMOVE)?;
        rbac::can_remove_member(actor, &current)?;
    }
    if current.name == rbac::OWNER_ROLE {
        ensure_an_owner_remains(tx, member).await?;
    }
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2 AND role = $3",
            vec![tx.tenant().0.into(), member.0.into(), current.name.clone().into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        // Removed by a concurrent request: not found, as for a request after it. Still a member
        // (under another role): a real conflict.
        role_of(tx, member).await?;
        return Err(TenancyError::Conflict("the member's role changed meanwhile; try again"));
    }
    let action = if member == tx.user() { "member.left" } else { "member.removed" };
    tx.record(audit::Category::Membership, action, serde_json::json!({ "member": member.0, "role": current.name }), now)
        .await
}

/// Checks that the principal may end `member`'s sessions: `sessions.revoke` and a level at least
/// the member's. Answers `NotFound` for non-members.
pub async fn check_may_revoke_sessions(tx: &TenantTx, member: UserId) -> Result<(), TenancyError> {
    let actor = acting_role(tx, &Permission::SESSIONS_REVOKE)?.clone();
    let target = role_of(tx, member).await?;
    if actor.level < target.level {
        return Err(RbacError::LevelTooHigh { required_level: target.level, actual_level: actor.level }.into());
    }
    Ok(())
}
