//! The one error type of this crate, carrying what was required and what the actor had.

use std::fmt;

use crate::permission::{Permission, MAX_PERMISSION_LEN};

/// Why a check refused or a value did not parse.
///
/// Each refusal names what was required and what the actor had, so that the caller can write
/// it into the audit record (OWASP Authorization Cheat Sheet, "Implement Appropriate Logging").
/// Text that came from outside (role names, rejected input) is printed quoted and escaped, so a
/// crafted name cannot forge a line in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacError {
    /// The actor's role holds no permission that covers `required`.
    MissingPermission { required: Permission, role: String },
    /// The operation needs at least `required_level` and the actor's level is `actual_level`.
    LevelTooHigh { required_level: u8, actual_level: u8 },
    /// The operation would hand out `permission`, which the actor does not hold.
    Escalation { permission: Permission },
    /// The change would leave the workspace without an owner.
    LastOwner,
    /// The text is not a valid `resource.action` permission; it is kept to at most
    /// [`MAX_PERMISSION_LEN`] + 1 characters.
    InvalidPermission(String),
    /// The permission is well formed but not in [`crate::PERMISSION_CATALOGUE`].
    UnknownPermission(Permission),
    /// No built-in role has this name.
    UnknownRole(String),
}

impl RbacError {
    /// Builds [`RbacError::InvalidPermission`], shortening very long input so that an attacker
    /// cannot make the error (and so the log line) arbitrarily large.
    pub(crate) fn invalid_permission(text: &str) -> RbacError {
        RbacError::InvalidPermission(text.chars().take(MAX_PERMISSION_LEN + 1).collect())
    }
}

impl fmt::Display for RbacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RbacError::MissingPermission { required, role } => {
                write!(f, "permission {required} is required and role {role:?} does not hold it")
            }
            RbacError::LevelTooHigh { required_level, actual_level } => {
                write!(f, "level {required_level} is required and the actor has level {actual_level}")
            }
            RbacError::Escalation { permission } => {
                write!(f, "permission {permission} cannot be handed out by an actor who does not hold it")
            }
            RbacError::LastOwner => f.write_str("the last owner of a workspace cannot be removed or demoted"),
            RbacError::InvalidPermission(text) => write!(
                f,
                "invalid permission {text:?}: expected resource.action of lowercase ASCII letters, digits or \
                 underscores (or resource.*), at most {MAX_PERMISSION_LEN} characters"
            ),
            RbacError::UnknownPermission(permission) => {
                write!(f, "permission {permission} is not in the permission catalogue")
            }
            RbacError::UnknownRole(name) => write!(f, "no built-in role is named {name:?}"),
        }
    }
}

impl std::error::Error for RbacError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_name_the_required_and_the_actual_values() {
        let missing = RbacError::MissingPermission { required: Permission::MEMBERS_READ, role: "Member".to_owned() };
        assert_eq!(missing.to_string(), "permission members.read is required and role \"Member\" does not hold it");
        let level = RbacError::LevelTooHigh { required_level: 100, actual_level: 80 };
        assert_eq!(level.to_string(), "level 100 is required and the actor has level 80");
        let escalation = RbacError::Escalation { permission: Permission::MEMBERS_UPDATE_ROLE };
        assert!(escalation.to_string().contains("members.update_role"));
    }

    #[test]
    fn outside_text_is_escaped_in_messages() {
        let error = RbacError::UnknownRole("Owner\nforged log line".to_owned());
        assert_eq!(error.to_string(), "no built-in role is named \"Owner\\nforged log line\"");
    }

    #[test]
    fn very_long_invalid_input_is_shortened_in_the_error() {
        let long = "a".repeat(10_000);
        assert_eq!(RbacError::invalid_permission(&long), RbacError::InvalidPermission("a".repeat(65)));
    }
}
