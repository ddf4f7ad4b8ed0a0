//! Workspace roles as data: a name, a level and a set of permissions, built-in or custom.

use std::collections::BTreeSet;

use crate::permission::{Permission, PERMISSION_CATALOGUE};
use crate::RbacError;

/// Name of the built-in role that holds every permission.
pub const OWNER_ROLE: &str = "Owner";
/// Name of the built-in role that holds everything except deleting the workspace.
pub const ADMIN_ROLE: &str = "Admin";
/// Name of the built-in role that runs projects and invites members.
pub const MANAGER_ROLE: &str = "Manager";
/// Name of the built-in role that works on projects.
pub const MEMBER_ROLE: &str = "Member";
/// Name of the built-in read-only role for customer support.
pub const SUPPORT_AGENT_ROLE: &str = "Support Agent";

/// A workspace role. Built-in roles come from [`builtin_roles`]; a custom role is a workspace's
/// own `Role` with `builtin: false`, checked by [`crate::can_create_custom_role`] before it is
/// stored.
///
/// This is hierarchical RBAC in the sense of the NIST RBAC model (ANSI INCITS 359-2004): a user
/// acts through a role, and the role's permissions are the only source of access. The level ranks
/// roles for administration: nobody acts on a role or member ranked above themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub level: u8,
    pub permissions: BTreeSet<Permission>,
    pub builtin: bool,
}

impl Role {
    /// This role narrowed to `scopes` (an API key's): a permission survives when the role grants
    /// it and some scope covers it, so the result never exceeds either. The level stays (it ranks
    /// the holder for role changes, which a narrowed role can only do with the permissions left).
    pub fn restricted(&self, scopes: &[Permission]) -> Role {
        let mut permissions = BTreeSet::new();
        for scope in scopes {
            if self.has(scope) {
                permissions.insert(scope.clone());
            }
            for held in &self.permissions {
                if scope.covers(held) {
                    permissions.insert(held.clone());
                }
            }
        }
        Role { name: format!("{} (API key)", self.name), level: self.level, permissions, builtin: false }
    }

    /// A custom (not built-in) role. It grants nothing until it passes
    /// [`crate::can_create_custom_role`] and is stored by the caller.
    pub fn custom(name: impl Into<String>, level: u8, permissions: impl IntoIterator<Item = Permission>) -> Role {
        Role { name: name.into(), level, permissions: permissions.into_iter().collect(), builtin: false }
    }

    /// Whether this role grants `permission`: one of its permissions covers it (see
    /// [`Permission::covers`]), or it is a wildcard `resource.*` and the role holds every
    /// catalogue action on that resource. Anything else is denied (OWASP Authorization Cheat
    /// Sheet, "Deny by Default").
    ///
    /// The second rule lets Admin, who holds each project action, grant Manager, who holds
    /// `projects.*`. It is judged against today's catalogue: a resource with no catalogue action
    /// is never held through it, so an empty role does not hold `billing.*` by vacuous truth.
    pub fn has(&self, permission: &Permission) -> bool {
        self.permissions.iter().any(|held| held.covers(permission))
            || (permission.is_wildcard() && self.holds_every_known_action_on(permission.resource()))
    }

    /// Whether the resource has at least one catalogue action and this role holds all of them.
    fn holds_every_known_action_on(&self, resource: &str) -> bool {
        let mut actions = PERMISSION_CATALOGUE.iter().filter(|known| known.resource() == resource).peekable();
        actions.peek().is_some() && actions.all(|known| self.permissions.iter().any(|held| held.covers(known)))
    }
}

/// The built-in roles, highest level first.
///
/// Each holds only what its job needs (OWASP Authorization Cheat Sheet, "Enforce Least
/// Privileges"; NIST SP 800-53 Rev. 5, AC-6 "Least Privilege"). Owner holds the whole catalogue,
/// so a permission added to the catalogue reaches Owner at once and every other role only when it
/// is listed here.
pub fn builtin_roles() -> Vec<Role> {
    let everything = || PERMISSION_CATALOGUE.iter().cloned();
    vec![
        builtin(OWNER_ROLE, 100, everything()),
        // Deleting the workspace stays with owners so that an admin cannot destroy it.
        builtin(ADMIN_ROLE, 80, everything().filter(|p| *p != Permission::WORKSPACE_DELETE)),
        builtin(
            MANAGER_ROLE,
            60,
            [
                Permission::PROJECTS_ALL,
                Permission::MEMBERS_READ,
                Permission::MEMBERS_INVITE,
                Permission::AUDIT_READ,
                Permission::CONNECTIONS_READ,
                Permission::ACTIVITY_READ_OWN,
            ],
        ),
        builtin(
            MEMBER_ROLE,
            40,
            [
                Permission::PROJECTS_READ,
                Permission::PROJECTS_CREATE,
                Permission::PROJECTS_UPDATE,
                Permission::ACTIVITY_READ_OWN,
            ],
        ),
        builtin(
            SUPPORT_AGENT_ROLE,
            30,
            [
                Permission::PROJECTS_READ,
                Permission::MEMBERS_READ,
                Permission::AUDIT_READ,
                Permission::ACTIVITY_READ_OWN,
            ],
        ),
    ]
}

/// The built-in role named `name` (exact, case-sensitive match).
pub fn builtin_role(name: &str) -> Result<Role, RbacError> {
    builtin_roles().into_iter().find(|role| role.name == name).ok_or_else(|| RbacError::UnknownRole(name.to_owned()))
}

fn builtin(name: &str, level: u8, permissions: impl IntoIterator<Item = Permission>) -> Role {
    Role { name: name.to_owned(), level, permissions: permissions.into_iter().collect(), builtin: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The role's permissions as sorted text, so expectations are written independently of the
    /// constants under test.
    fn permission_names(role: &Role) -> Vec<String> {
        role.permissions.iter().map(Permission::to_string).collect()
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        names.sort();
        names
    }

    const EVERY_PERMISSION: &[&str] = &[
        "projects.read",
        "projects.create",
        "projects.update",
        "projects.delete",
        "members.read",
        "members.invite",
        "members.remove",
        "members.update_role",
        "roles.manage",
        "audit.read",
        "connections.read",
        "connections.manage",
        "webhooks.manage",
        "api_keys.manage",
        "sessions.revoke",
        "workspace.update",
        "workspace.delete",
        "grants.manage",
        "activity.read_own",
    ];

    #[test]
    fn a_role_narrowed_to_scopes_keeps_only_what_both_allow() {
        let member = builtin_role(MEMBER_ROLE).unwrap();
        let narrowed = member.restricted(&[Permission::PROJECTS_ALL, Permission::AUDIT_READ]);
        assert!(narrowed.has(&Permission::PROJECTS_READ) && narrowed.has(&Permission::PROJECTS_CREATE));
        assert!(!narrowed.has(&Permission::PROJECTS_DELETE), "the role never had it");
        assert!(!narrowed.has(&Permission::AUDIT_READ), "the role never had it");
        assert!(!narrowed.has(&Permission::ACTIVITY_READ_OWN), "no scope covers it");
        let read_only = builtin_role(OWNER_ROLE).unwrap().restricted(&[Permission::PROJECTS_READ]);
        assert_eq!(permission_names(&read_only), ["projects.read"]);
        assert!(member.restricted(&[]).permissions.is_empty());
    }

    #[test]
    fn the_built_in_roles_are_owner_admin_manager_member_and_support_agent_by_level() {
        let roles = builtin_roles();
        let summary: Vec<(&str, u8, bool)> = roles.iter().map(|r| (r.name.as_str(), r.level, r.builtin)).collect();
        assert_eq!(
            summary,
            [
                ("Owner", 100, true),
                ("Admin", 80, true),
                ("Manager", 60, true),
                ("Member", 40, true),
                ("Support Agent", 30, true),
            ]
        );
    }

    #[test]
    fn the_owner_holds_exactly_every_permission() {
        assert_eq!(permission_names(&builtin_role("Owner").unwrap()), sorted(EVERY_PERMISSION));
    }

    #[test]
    fn the_admin_holds_everything_except_deleting_the_workspace() {
        let expected: Vec<&str> = EVERY_PERMISSION.iter().copied().filter(|p| *p != "workspace.delete").collect();
        assert_eq!(expected.len(), EVERY_PERMISSION.len() - 1);
        let admin = builtin_role("Admin").unwrap();
        assert_eq!(permission_names(&admin), sorted(&expected));
        assert!(!admin.has(&Permission::WORKSPACE_DELETE));
    }

    #[test]
    fn the_manager_holds_exactly_the_documented_permissions() {
        assert_eq!(
            permission_names(&builtin_role("Manager").unwrap()),
            sorted(&[
                "projects.*",
                "members.read",
                "members.invite",
                "audit.read",
                "connections.read",
                "activity.read_own"
            ])
        );
    }

    #[test]
    fn the_member_holds_exactly_the_documented_permissions() {
        assert_eq!(
            permission_names(&builtin_role("Member").unwrap()),
            sorted(&["projects.read", "projects.create", "projects.update", "activity.read_own"])
        );
    }

    #[test]
    fn the_support_agent_holds_exactly_the_documented_permissions() {
        assert_eq!(
            permission_names(&builtin_role("Support Agent").unwrap()),
            sorted(&["projects.read", "members.read", "audit.read", "activity.read_own"])
        );
    }

    #[test]
    fn a_manager_may_do_anything_to_projects_through_the_wildcard_and_nothing_more() {
        let manager = builtin_role("Manager").unwrap();
        assert!(manager.has(&Permission::PROJECTS_DELETE));
        assert!(manager.has(&Permission::PROJECTS_READ));
        assert!(!manager.has(&Permission::MEMBERS_UPDATE_ROLE));
        assert!(!manager.has(&Permission::MEMBERS_REMOVE));
    }

    #[test]
    fn holding_every_catalogue_action_of_a_resource_counts_as_holding_its_wildcard() {
        let admin = builtin_role("Admin").unwrap();
        assert!(!admin.permissions.contains(&Permission::PROJECTS_ALL));
        assert!(admin.has(&Permission::PROJECTS_ALL));
        let three_of_four = Role::custom(
            "Partial",
            40,
            [Permission::PROJECTS_READ, Permission::PROJECTS_CREATE, Permission::PROJECTS_UPDATE],
        );
        assert!(!three_of_four.has(&Permission::PROJECTS_ALL));
        // Admin lacks workspace.delete, so it does not hold workspace.* either.
        assert!(!admin.has(&Permission::parse("workspace.*").unwrap()));
    }

    #[test]
    fn a_wildcard_of_a_resource_without_catalogue_actions_is_never_held_implicitly() {
        let billing = Permission::parse("billing.*").unwrap();
        assert!(!Role::custom("Empty", 100, []).has(&billing));
        assert!(!builtin_role("Owner").unwrap().has(&billing));
        assert!(Role::custom("Billing", 40, [billing.clone()]).has(&billing));
    }

    #[test]
    fn an_unknown_role_name_is_refused_with_the_name() {
        assert_eq!(builtin_role("owner"), Err(RbacError::UnknownRole("owner".to_owned())));
        assert_eq!(builtin_role("Root"), Err(RbacError::UnknownRole("Root".to_owned())));
    }

    #[test]
    fn a_custom_role_is_not_built_in_and_holds_what_it_was_given() {
        let role = Role::custom("Auditor", 35, [Permission::AUDIT_READ]);
        assert!(!role.builtin);
        assert_eq!((role.name.as_str(), role.level), ("Auditor", 35));
        assert!(role.has(&Permission::AUDIT_READ));
        assert!(!role.has(&Permission::PROJECTS_READ));
    }
}
