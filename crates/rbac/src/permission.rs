//! Permissions: parsed `resource.action` strings and the catalogue of the ones Rampart knows.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::RbacError;

/// The longest permission text accepted, counting the resource, the dot and the action.
pub const MAX_PERMISSION_LEN: usize = 64;

/// The action that stands for every action on one resource, as in `projects.*`.
pub const WILDCARD_ACTION: &str = "*";

/// A permission: an action on a kind of resource, written `resource.action`.
///
/// Both parts are non-empty and made of lowercase ASCII letters, digits and `_`; the whole text is
/// at most [`MAX_PERMISSION_LEN`] characters. The action may instead be [`WILDCARD_ACTION`]:
/// `projects.*` covers every action on `projects` (including actions added later) and nothing on
/// any other resource. There is no resource wildcard, so no single permission means "everything".
///
/// Values are compared and ordered by resource, then action. A wildcard is a different value from
/// the concrete permissions it covers; use [`Permission::covers`] to ask whether one grants another.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    resource: Cow<'static, str>,
    action: Cow<'static, str>,
}

impl Permission {
    pub const PROJECTS_READ: Permission = Permission::known("projects", "read");
    pub const PROJECTS_CREATE: Permission = Permission::known("projects", "create");
    pub const PROJECTS_UPDATE: Permission = Permission::known("projects", "update");
    pub const PROJECTS_DELETE: Permission = Permission::known("projects", "delete");
    /// Every action on projects; held by the built-in Manager role.
    pub const PROJECTS_ALL: Permission = Permission::known("projects", WILDCARD_ACTION);
    pub const MEMBERS_READ: Permission = Permission::known("members", "read");
    pub const MEMBERS_INVITE: Permission = Permission::known("members", "invite");
    pub const MEMBERS_REMOVE: Permission = Permission::known("members", "remove");
    pub const MEMBERS_UPDATE_ROLE: Permission = Permission::known("members", "update_role");
    pub const ROLES_MANAGE: Permission = Permission::known("roles", "manage");
    pub const AUDIT_READ: Permission = Permission::known("audit", "read");
    pub const CONNECTIONS_READ: Permission = Permission::known("connections", "read");
    pub const CONNECTIONS_MANAGE: Permission = Permission::known("connections", "manage");
    pub const WEBHOOKS_MANAGE: Permission = Permission::known("webhooks", "manage");
    pub const API_KEYS_MANAGE: Permission = Permission::known("api_keys", "manage");
    pub const SESSIONS_REVOKE: Permission = Permission::known("sessions", "revoke");
    pub const WORKSPACE_UPDATE: Permission = Permission::known("workspace", "update");
    pub const WORKSPACE_DELETE: Permission = Permission::known("workspace", "delete");
    pub const GRANTS_MANAGE: Permission = Permission::known("grants", "manage");
    pub const ACTIVITY_READ_OWN: Permission = Permission::known("activity", "read_own");

    /// Builds a permission from parts known to be valid; a test parses every catalogue entry.
    const fn known(resource: &'static str, action: &'static str) -> Permission {
        Permission { resource: Cow::Borrowed(resource), action: Cow::Borrowed(action) }
    }

    /// Parses `resource.action` (or `resource.*`) exactly as written: nothing is trimmed or
    /// lower-cased, because a permission that only matches after rewriting is a typo to report.
    pub fn parse(text: &str) -> Result<Permission, RbacError> {
        let invalid = || RbacError::invalid_permission(text);
        if text.len() > MAX_PERMISSION_LEN {
            return Err(invalid());
        }
        let (resource, action) = text.split_once('.').ok_or_else(invalid)?;
        if !is_name(resource) || !(action == WILDCARD_ACTION || is_name(action)) {
            return Err(invalid());
        }
        Ok(Permission { resource: Cow::Owned(resource.to_owned()), action: Cow::Owned(action.to_owned()) })
    }

    /// The resource part, such as `projects`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The action part, such as `read`, or `*` for a wildcard.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Whether this permission is `resource.*`.
    pub fn is_wildcard(&self) -> bool {
        self.action == WILDCARD_ACTION
    }

    /// Whether holding `self` grants `other`: the same permission, or `self` is the wildcard of
    /// `other`'s resource. A concrete permission never covers a wildcard on its own; a role that
    /// holds every catalogue action of a resource holds its wildcard (see [`crate::Role::has`]).
    pub fn covers(&self, other: &Permission) -> bool {
        self.resource == other.resource && (self.action == other.action || self.is_wildcard())
    }

    /// Whether this permission is in [`PERMISSION_CATALOGUE`], or is the wildcard of a resource
    /// that appears there.
    pub fn is_known(&self) -> bool {
        if self.is_wildcard() {
            PERMISSION_CATALOGUE.iter().any(|known| known.resource == self.resource)
        } else {
            PERMISSION_CATALOGUE.contains(self)
        }
    }
}

/// Whether `part` is a non-empty run of lowercase ASCII letters, digits and `_`.
fn is_name(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.resource, self.action)
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permission({self})")
    }
}

impl FromStr for Permission {
    type Err = RbacError;

    fn from_str(text: &str) -> Result<Permission, RbacError> {
        Permission::parse(text)
    }
}

/// Every concrete permission Rampart knows, in catalogue order. Wildcards are not listed: they
/// are shorthands over these.
pub const PERMISSION_CATALOGUE: &[Permission] = &[
    Permission::PROJECTS_READ,
    Permission::PROJECTS_CREATE,
    Permission::PROJECTS_UPDATE,
    Permission::PROJECTS_DELETE,
    Permission::MEMBERS_READ,
    Permission::MEMBERS_INVITE,
    Permission::MEMBERS_REMOVE,
    Permission::MEMBERS_UPDATE_ROLE,
    Permission::ROLES_MANAGE,
    Permission::AUDIT_READ,
    Permission::CONNECTIONS_READ,
    Permission::CONNECTIONS_MANAGE,
    Permission::WEBHOOKS_MANAGE,
    Permission::API_KEYS_MANAGE,
    Permission::SESSIONS_REVOKE,
    Permission::WORKSPACE_UPDATE,
    Permission::WORKSPACE_DELETE,
    Permission::GRANTS_MANAGE,
    Permission::ACTIVITY_READ_OWN,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Parses `input` and compares with `expected`: `Some((resource, action))`, or `None` for a
    /// refusal that must carry the input.
    fn check(input: &str, expected: Option<(&str, &str)>) {
        match (Permission::parse(input), expected) {
            (Ok(permission), Some((resource, action))) => {
                assert_eq!((permission.resource(), permission.action()), (resource, action), "input {input:?}");
                assert_eq!(permission.to_string(), input, "input {input:?} must print as written");
            }
            (Err(error), None) => {
                assert_eq!(error, RbacError::InvalidPermission(input.to_owned()), "input {input:?}");
            }
            (got, want) => panic!("input {input:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn well_formed_permissions_parse_into_resource_and_action() {
        check("projects.read", Some(("projects", "read")));
        check("members.update_role", Some(("members", "update_role")));
        check("api_keys.manage", Some(("api_keys", "manage")));
        check("v2.read", Some(("v2", "read")));
        check("_.0", Some(("_", "0")));
        check("projects.*", Some(("projects", "*")));
        let longest = format!("{}.{}", "r".repeat(31), "a".repeat(32));
        assert_eq!(longest.len(), MAX_PERMISSION_LEN);
        check(&longest, Some((&longest[..31], &longest[32..])));
    }

    #[test]
    fn malformed_permissions_are_refused_with_the_input() {
        for input in [
            "",
            ".",
            "projects",
            "projects.",
            ".read",
            "Projects.read",
            "projects.Read",
            "projects.read.own",
            "projects..read",
            " projects.read",
            "projects.read ",
            "projects-x.read",
            "projects:read",
            "projéts.read",
            "*.read",
            "*.*",
            "projects.**",
            "projects.read*",
            "projects.*read",
        ] {
            check(input, None);
        }
        let too_long = format!("{}.{}", "r".repeat(32), "a".repeat(32));
        assert_eq!(too_long.len(), MAX_PERMISSION_LEN + 1);
        check(&too_long, None);
    }

    #[test]
    fn from_str_agrees_with_parse() {
        assert_eq!("audit.read".parse::<Permission>(), Ok(Permission::AUDIT_READ));
        assert_eq!("audit".parse::<Permission>(), Err(RbacError::InvalidPermission("audit".to_owned())));
    }

    #[test]
    fn a_resource_wildcard_covers_every_action_on_that_resource_only() {
        let all_projects = Permission::parse("projects.*").unwrap();
        assert_eq!(all_projects, Permission::PROJECTS_ALL);
        assert!(all_projects.covers(&Permission::PROJECTS_READ));
        assert!(all_projects.covers(&Permission::PROJECTS_DELETE));
        assert!(all_projects.covers(&Permission::parse("projects.archive").unwrap()));
        assert!(all_projects.covers(&all_projects));
        assert!(!all_projects.covers(&Permission::MEMBERS_READ));
        assert!(!all_projects.covers(&Permission::parse("projects_archive.read").unwrap()));
    }

    #[test]
    fn a_concrete_permission_covers_only_itself() {
        assert!(Permission::PROJECTS_READ.covers(&Permission::PROJECTS_READ));
        assert!(!Permission::PROJECTS_READ.covers(&Permission::PROJECTS_UPDATE));
        assert!(!Permission::PROJECTS_READ.covers(&Permission::PROJECTS_ALL));
        assert!(!Permission::MEMBERS_READ.covers(&Permission::PROJECTS_READ));
    }

    #[test]
    fn every_catalogue_entry_parses_back_to_itself_and_is_unique() {
        for known in PERMISSION_CATALOGUE {
            assert_eq!(Permission::parse(&known.to_string()).as_ref(), Ok(known));
            assert!(!known.is_wildcard(), "{known} must be concrete");
        }
        let unique: BTreeSet<&Permission> = PERMISSION_CATALOGUE.iter().collect();
        assert_eq!(unique.len(), PERMISSION_CATALOGUE.len());
        assert_eq!(Permission::parse(&Permission::PROJECTS_ALL.to_string()), Ok(Permission::PROJECTS_ALL));
    }

    #[test]
    fn the_catalogue_holds_the_permissions_of_the_product_brief() {
        let listed: Vec<String> = PERMISSION_CATALOGUE.iter().map(Permission::to_string).collect();
        assert_eq!(
            listed,
            [
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
            ]
        );
    }

    #[test]
    fn known_permissions_are_catalogue_entries_or_wildcards_of_catalogue_resources() {
        assert!(Permission::MEMBERS_UPDATE_ROLE.is_known());
        assert!(Permission::PROJECTS_ALL.is_known());
        assert!(!Permission::parse("projects.archive").unwrap().is_known());
        assert!(!Permission::parse("billing.*").unwrap().is_known());
    }

    #[test]
    fn parsed_and_constant_permissions_are_equal_and_hash_alike() {
        use std::collections::HashSet;
        let parsed = Permission::parse("members.invite").unwrap();
        assert_eq!(parsed, Permission::MEMBERS_INVITE);
        let set: HashSet<Permission> = [Permission::MEMBERS_INVITE].into_iter().collect();
        assert!(set.contains(&parsed));
    }

    #[test]
    fn permissions_order_by_resource_then_action() {
        let mut sorted = vec![Permission::PROJECTS_READ, Permission::AUDIT_READ, Permission::PROJECTS_ALL];
        sorted.sort();
        assert_eq!(sorted, [Permission::AUDIT_READ, Permission::PROJECTS_ALL, Permission::PROJECTS_READ]);
    }
}
