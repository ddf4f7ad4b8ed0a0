//! The authorization checks: what a role may do, grant, create and change.
//!
//! Every check returns `Ok(())` only when a rule explicitly allows the operation and otherwise
//! refuses with an [`RbacError`] that names what was required (OWASP Authorization Cheat Sheet,
//! "Deny by Default"). The checks are pure: the caller loads the roles and counts, runs the check
//! on every request, and writes the outcome to the audit trail (same cheat sheet, "Validate the
//! Permissions on Every Request" and "Implement Appropriate Logging").

use std::collections::BTreeSet;

use crate::permission::Permission;
use crate::role::Role;
use crate::RbacError;

/// Allows `actor` to do what needs `required` when one of its permissions covers it.
///
/// Anything not granted is refused (OWASP Authorization Cheat Sheet, "Deny by Default").
pub fn authorize(actor: &Role, required: &Permission) -> Result<(), RbacError> {
    if actor.has(required) {
        Ok(())
    } else {
        Err(RbacError::MissingPermission { required: required.clone(), role: actor.name.clone() })
    }
}

/// Allows `actor` to give an existing member the role `target`.
///
/// Needs `members.update_role`, a `target` level no higher than the actor's, and every permission
/// of `target` held by the actor; see [`can_invite_with_role`] for the rules shared with invites.
pub fn can_grant_role(actor: &Role, target: &Role) -> Result<(), RbacError> {
    check_grant(actor, target, &Permission::MEMBERS_UPDATE_ROLE)
}

/// Allows `actor` to invite someone into the workspace with the role `target`.
///
/// Needs `members.invite`, then the same rules as [`can_grant_role`]: an invitation hands out a
/// role just as a role change does, so it must not be a way around them.
pub fn can_invite_with_role(actor: &Role, target: &Role) -> Result<(), RbacError> {
    check_grant(actor, target, &Permission::MEMBERS_INVITE)
}

/// Allows `actor` to create (or redefine) the custom role `new_role`.
///
/// Needs `roles.manage`, a level no higher than the actor's, permissions that are all in the
/// catalogue (or wildcards of catalogue resources), and every one of them held by the actor.
pub fn can_create_custom_role(actor: &Role, new_role: &Role) -> Result<(), RbacError> {
    authorize(actor, &Permission::ROLES_MANAGE)?;
    require_level(actor, new_role.level)?;
    // A permission outside the catalogue guards nothing today and would silently start granting
    // access when an action of that name ships, so it is refused rather than stored.
    if let Some(unknown) = new_role.permissions.iter().find(|permission| !permission.is_known()) {
        return Err(RbacError::UnknownPermission(unknown.clone()));
    }
    require_held(actor, &new_role.permissions)
}

/// Allows `actor` to move a member from `member_current` to `new`.
///
/// Needs `members.update_role`; a member whose current level is above the actor's cannot be
/// touched (so a manager cannot demote an admin), and `new` must pass [`can_grant_role`]. When the
/// member is an owner, the caller must also pass [`ensure_not_last_owner`].
pub fn can_change_member_role(actor: &Role, member_current: &Role, new: &Role) -> Result<(), RbacError> {
    authorize(actor, &Permission::MEMBERS_UPDATE_ROLE)?;
    require_level(actor, member_current.level)?;
    can_grant_role(actor, new)
}

/// Allows `actor` to remove a member whose role is `member`.
///
/// Needs `members.remove`, and a member whose level is above the actor's cannot be removed. When
/// the member is an owner, the caller must also pass [`ensure_not_last_owner`].
pub fn can_remove_member(actor: &Role, member: &Role) -> Result<(), RbacError> {
    authorize(actor, &Permission::MEMBERS_REMOVE)?;
    require_level(actor, member.level)
}

/// Refuses a removal or demotion that would leave the workspace with no owner, so that every
/// workspace always has someone who can administer and delete it.
///
/// The caller counts the owners as they would be after the change, inside the transaction that
/// makes it, so that two concurrent demotions cannot both see another owner remaining.
pub fn ensure_not_last_owner(owner_count_after_change: usize) -> Result<(), RbacError> {
    if owner_count_after_change == 0 {
        Err(RbacError::LastOwner)
    } else {
        Ok(())
    }
}

/// The rules shared by every way of handing out a role.
fn check_grant(actor: &Role, target: &Role, via: &Permission) -> Result<(), RbacError> {
    authorize(actor, via)?;
    require_level(actor, target.level)?;
    require_held(actor, &target.permissions)
}

/// Refuses to act on a role or member ranked above the actor; an equal level is allowed.
///
/// Administrative operations on roles are themselves bounded by the administrator's rank, as in
/// the administrative RBAC model ARBAC97 (Sandhu, Bhamidipati and Munawer, ACM TISSEC 2(1), 1999).
fn require_level(actor: &Role, required_level: u8) -> Result<(), RbacError> {
    if actor.level >= required_level {
        Ok(())
    } else {
        Err(RbacError::LevelTooHigh { required_level, actual_level: actor.level })
    }
}

/// Refuses to hand out any permission the actor does not hold itself, which would be privilege
/// escalation (CWE-269, "Improper Privilege Management"; NIST SP 800-53 Rev. 5, AC-6 "Least
/// Privilege"). A wildcard such as `projects.*` can be handed out only by a role that holds it, or
/// holds every catalogue action on its resource (see [`Role::has`]). The first missing permission
/// in sorted order is reported.
fn require_held(actor: &Role, permissions: &BTreeSet<Permission>) -> Result<(), RbacError> {
    match permissions.iter().find(|permission| !actor.has(permission)) {
        Some(missing) => Err(RbacError::Escalation { permission: missing.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin_role;

    fn role(name: &str) -> Role {
        builtin_role(name).unwrap()
    }

    fn missing(required: Permission, role: &str) -> Result<(), RbacError> {
        Err(RbacError::MissingPermission { required, role: role.to_owned() })
    }

    fn level(required_level: u8, actual_level: u8) -> Result<(), RbacError> {
        Err(RbacError::LevelTooHigh { required_level, actual_level })
    }

    fn escalation(permission: Permission) -> Result<(), RbacError> {
        Err(RbacError::Escalation { permission })
    }

    #[test]
    fn a_permission_that_was_not_granted_is_denied() {
        assert_eq!(authorize(&role("Member"), &Permission::MEMBERS_READ), missing(Permission::MEMBERS_READ, "Member"));
        assert_eq!(
            authorize(&role("Admin"), &Permission::WORKSPACE_DELETE),
            missing(Permission::WORKSPACE_DELETE, "Admin")
        );
        let empty = Role::custom("Nobody", 100, []);
        for permission in crate::PERMISSION_CATALOGUE {
            assert_eq!(authorize(&empty, permission), missing(permission.clone(), "Nobody"));
        }
    }

    #[test]
    fn a_granted_permission_is_allowed_directly_or_through_a_wildcard() {
        assert_eq!(authorize(&role("Member"), &Permission::PROJECTS_UPDATE), Ok(()));
        assert_eq!(authorize(&role("Manager"), &Permission::PROJECTS_DELETE), Ok(()));
        assert_eq!(authorize(&role("Owner"), &Permission::WORKSPACE_DELETE), Ok(()));
    }

    #[test]
    fn a_wildcard_on_one_resource_does_not_authorize_another_resource() {
        let projects_only = Role::custom("Projects", 40, [Permission::PROJECTS_ALL]);
        assert_eq!(authorize(&projects_only, &Permission::PROJECTS_READ), Ok(()));
        assert_eq!(authorize(&projects_only, &Permission::MEMBERS_READ), missing(Permission::MEMBERS_READ, "Projects"));
    }

    #[test]
    fn an_admin_cannot_grant_the_owner_role() {
        assert_eq!(can_grant_role(&role("Admin"), &role("Owner")), level(100, 80));
    }

    #[test]
    fn an_admin_can_grant_every_role_up_to_admin() {
        for target in ["Admin", "Manager", "Member", "Support Agent"] {
            assert_eq!(can_grant_role(&role("Admin"), &role(target)), Ok(()), "Admin granting {target}");
        }
    }

    #[test]
    fn a_role_above_the_actor_level_cannot_be_granted_even_with_few_permissions() {
        let senior_reader = Role::custom("Senior reader", 90, [Permission::PROJECTS_READ]);
        assert_eq!(can_grant_role(&role("Admin"), &senior_reader), level(90, 80));
        assert_eq!(can_invite_with_role(&role("Admin"), &senior_reader), level(90, 80));
    }

    #[test]
    fn a_role_carrying_a_permission_the_actor_lacks_cannot_be_granted() {
        let granter = Role::custom("Granter", 80, [Permission::MEMBERS_UPDATE_ROLE, Permission::PROJECTS_READ]);
        // The Support Agent role sorts as activity.read_own, audit.read, members.read, projects.read.
        assert_eq!(can_grant_role(&granter, &role("Support Agent")), escalation(Permission::ACTIVITY_READ_OWN));
        let granter = Role::custom(
            "Granter",
            80,
            [Permission::MEMBERS_UPDATE_ROLE, Permission::ACTIVITY_READ_OWN, Permission::PROJECTS_READ],
        );
        assert_eq!(can_grant_role(&granter, &role("Support Agent")), escalation(Permission::AUDIT_READ));
    }

    #[test]
    fn granting_a_role_needs_the_update_role_permission() {
        assert_eq!(
            can_grant_role(&role("Manager"), &role("Member")),
            missing(Permission::MEMBERS_UPDATE_ROLE, "Manager")
        );
    }

    #[test]
    fn a_manager_can_invite_members_but_not_admins() {
        assert_eq!(can_invite_with_role(&role("Manager"), &role("Member")), Ok(()));
        assert_eq!(can_invite_with_role(&role("Manager"), &role("Admin")), level(80, 60));
    }

    #[test]
    fn inviting_needs_the_invite_permission_and_cannot_escalate() {
        assert_eq!(
            can_invite_with_role(&role("Member"), &role("Member")),
            missing(Permission::MEMBERS_INVITE, "Member")
        );
        let inviter = Role::custom(
            "Inviter",
            60,
            [Permission::MEMBERS_INVITE, Permission::ACTIVITY_READ_OWN, Permission::PROJECTS_READ],
        );
        assert_eq!(can_invite_with_role(&inviter, &role("Member")), escalation(Permission::PROJECTS_CREATE));
    }

    #[test]
    fn creating_a_custom_role_needs_the_roles_manage_permission() {
        let helper = Role::custom("Helper", 10, [Permission::PROJECTS_READ]);
        assert_eq!(can_create_custom_role(&role("Manager"), &helper), missing(Permission::ROLES_MANAGE, "Manager"));
    }

    #[test]
    fn a_manager_cannot_create_a_custom_role_with_a_permission_the_manager_lacks() {
        let mut manager = role("Manager");
        manager.permissions.insert(Permission::ROLES_MANAGE);
        let promoter = Role::custom("Promoter", 50, [Permission::PROJECTS_READ, Permission::MEMBERS_UPDATE_ROLE]);
        assert_eq!(can_create_custom_role(&manager, &promoter), escalation(Permission::MEMBERS_UPDATE_ROLE));
    }

    #[test]
    fn a_custom_role_within_the_actor_level_and_permissions_can_be_created() {
        let mut manager = role("Manager");
        manager.permissions.insert(Permission::ROLES_MANAGE);
        let reviewer = Role::custom("Reviewer", 60, [Permission::PROJECTS_READ, Permission::AUDIT_READ]);
        assert_eq!(can_create_custom_role(&manager, &reviewer), Ok(()));
        let project_lead = Role::custom("Project lead", 50, [Permission::PROJECTS_ALL]);
        assert_eq!(can_create_custom_role(&manager, &project_lead), Ok(()));
    }

    #[test]
    fn a_custom_role_above_the_actor_level_cannot_be_created() {
        let reader = Role::custom("Reader", 81, [Permission::PROJECTS_READ]);
        assert_eq!(can_create_custom_role(&role("Admin"), &reader), level(81, 80));
    }

    #[test]
    fn a_project_wildcard_role_needs_every_project_action_or_the_wildcard() {
        let wildcard = Role::custom("Everything on projects", 40, [Permission::PROJECTS_ALL]);
        let partial = Role::custom(
            "Lead",
            60,
            [
                Permission::ROLES_MANAGE,
                Permission::PROJECTS_READ,
                Permission::PROJECTS_CREATE,
                Permission::PROJECTS_UPDATE,
            ],
        );
        assert_eq!(can_create_custom_role(&partial, &wildcard), escalation(Permission::PROJECTS_ALL));
        let mut complete = partial.clone();
        complete.permissions.insert(Permission::PROJECTS_DELETE);
        assert_eq!(can_create_custom_role(&complete, &wildcard), Ok(()));
    }

    #[test]
    fn a_custom_role_with_a_permission_outside_the_catalogue_is_refused() {
        let archive = Permission::parse("projects.archive").unwrap();
        let archivist = Role::custom("Archivist", 40, [archive.clone()]);
        assert_eq!(can_create_custom_role(&role("Owner"), &archivist), Err(RbacError::UnknownPermission(archive)));
    }

    #[test]
    fn a_member_above_the_actor_cannot_be_changed() {
        assert_eq!(can_change_member_role(&role("Admin"), &role("Owner"), &role("Member")), level(100, 80));
    }

    #[test]
    fn a_member_at_or_below_the_actor_can_be_moved_to_a_grantable_role() {
        assert_eq!(can_change_member_role(&role("Admin"), &role("Admin"), &role("Member")), Ok(()));
        assert_eq!(can_change_member_role(&role("Admin"), &role("Member"), &role("Manager")), Ok(()));
        assert_eq!(can_change_member_role(&role("Owner"), &role("Owner"), &role("Admin")), Ok(()));
    }

    #[test]
    fn a_member_cannot_be_promoted_above_the_actor() {
        assert_eq!(can_change_member_role(&role("Admin"), &role("Member"), &role("Owner")), level(100, 80));
    }

    #[test]
    fn changing_a_member_role_needs_the_update_role_permission() {
        assert_eq!(
            can_change_member_role(&role("Manager"), &role("Member"), &role("Support Agent")),
            missing(Permission::MEMBERS_UPDATE_ROLE, "Manager")
        );
    }

    #[test]
    fn a_member_above_the_actor_cannot_be_removed() {
        assert_eq!(can_remove_member(&role("Admin"), &role("Owner")), level(100, 80));
        assert_eq!(can_remove_member(&role("Admin"), &role("Manager")), Ok(()));
        assert_eq!(
            can_remove_member(&role("Manager"), &role("Member")),
            missing(Permission::MEMBERS_REMOVE, "Manager")
        );
    }

    #[test]
    fn the_last_owner_cannot_be_removed_or_demoted() {
        assert_eq!(ensure_not_last_owner(0), Err(RbacError::LastOwner));
        assert_eq!(ensure_not_last_owner(1), Ok(()));
        assert_eq!(ensure_not_last_owner(2), Ok(()));
    }
}
