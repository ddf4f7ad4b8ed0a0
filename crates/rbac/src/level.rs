//! Platform levels: the numeric rank of an account across the whole installation.

use crate::RbacError;

/// The named platform levels as data, highest first. Names are the stable snake_case spellings
/// used in configuration and storage; the numbers are those of the product brief.
pub const PLATFORM_LEVELS: &[(&str, u8)] =
    &[("super_admin", 100), ("admin", 80), ("manager", 60), ("user", 40), ("learner", 30), ("viewer", 20)];

/// A platform level. Higher is more privileged; any `u8` is a level, and the named ones are
/// constants (and rows of [`PLATFORM_LEVELS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlatformLevel(u8);

impl PlatformLevel {
    pub const SUPER_ADMIN: PlatformLevel = PlatformLevel(100);
    pub const ADMIN: PlatformLevel = PlatformLevel(80);
    pub const MANAGER: PlatformLevel = PlatformLevel(60);
    pub const USER: PlatformLevel = PlatformLevel(40);
    pub const LEARNER: PlatformLevel = PlatformLevel(30);
    pub const VIEWER: PlatformLevel = PlatformLevel(20);

    pub const fn new(value: u8) -> PlatformLevel {
        PlatformLevel(value)
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    /// The level named `name` in [`PLATFORM_LEVELS`] (exact, case-sensitive match).
    pub fn from_name(name: &str) -> Option<PlatformLevel> {
        PLATFORM_LEVELS.iter().find(|(known, _)| *known == name).map(|(_, value)| PlatformLevel(*value))
    }

    /// The name of this level in [`PLATFORM_LEVELS`], if it is a named one.
    pub fn name(self) -> Option<&'static str> {
        PLATFORM_LEVELS.iter().find(|(_, value)| *value == self.0).map(|(name, _)| *name)
    }
}

/// Allows an account at `actual` to do what needs `required` or above, and refuses otherwise
/// (OWASP Authorization Cheat Sheet, "Deny by Default": only a level that reaches the bar passes).
pub fn require_platform_level(actual: PlatformLevel, required: PlatformLevel) -> Result<(), RbacError> {
    if actual >= required {
        Ok(())
    } else {
        Err(RbacError::LevelTooHigh { required_level: required.0, actual_level: actual.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_levels_table_holds_100_80_60_40_30_20() {
        let values: Vec<u8> = PLATFORM_LEVELS.iter().map(|(_, value)| *value).collect();
        assert_eq!(values, [100, 80, 60, 40, 30, 20]);
        let names: Vec<&str> = PLATFORM_LEVELS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["super_admin", "admin", "manager", "user", "learner", "viewer"]);
    }

    #[test]
    fn the_named_constants_match_the_levels_table() {
        let constants = [
            PlatformLevel::SUPER_ADMIN,
            PlatformLevel::ADMIN,
            PlatformLevel::MANAGER,
            PlatformLevel::USER,
            PlatformLevel::LEARNER,
            PlatformLevel::VIEWER,
        ];
        assert_eq!(constants.map(PlatformLevel::value), [100, 80, 60, 40, 30, 20]);
        for (constant, (name, value)) in constants.iter().zip(PLATFORM_LEVELS) {
            assert_eq!(constant.value(), *value);
            assert_eq!(PlatformLevel::from_name(name), Some(*constant));
            assert_eq!(constant.name(), Some(*name));
        }
    }

    #[test]
    fn unnamed_levels_and_unknown_names_have_no_match() {
        assert_eq!(PlatformLevel::new(50).name(), None);
        assert_eq!(PlatformLevel::from_name("Admin"), None);
        assert_eq!(PlatformLevel::from_name("root"), None);
    }

    #[test]
    fn a_platform_level_passes_at_or_above_the_bar_and_fails_below_it() {
        assert_eq!(require_platform_level(PlatformLevel::ADMIN, PlatformLevel::ADMIN), Ok(()));
        assert_eq!(require_platform_level(PlatformLevel::SUPER_ADMIN, PlatformLevel::ADMIN), Ok(()));
        assert_eq!(
            require_platform_level(PlatformLevel::MANAGER, PlatformLevel::ADMIN),
            Err(RbacError::LevelTooHigh { required_level: 80, actual_level: 60 })
        );
    }
}
