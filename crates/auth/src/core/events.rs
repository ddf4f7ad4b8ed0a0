//! Kinds of recorded authentication events (the audit trail's `auth.{kind}`).

pub const SIGNUP: &str = "signup";
pub const EMAIL_VERIFIED: &str = "email_verified";
pub const SIGNIN_SUCCEEDED: &str = "signin_succeeded";
pub const SIGNIN_FAILED: &str = "signin_failed";
pub const LOCKOUT: &str = "lockout";
pub const SIGNOUT: &str = "signout";
pub const SESSION_REVOKED: &str = "session_revoked";
pub const PASSWORD_CHANGED: &str = "password_changed";
pub const PASSWORD_RESET_REQUESTED: &str = "password_reset_requested";
pub const PASSWORD_RESET: &str = "password_reset";
pub const TOKEN_REFRESHED: &str = "token_refreshed";
pub const REFRESH_REUSE_DETECTED: &str = "refresh_token_reuse_detected";
pub const SESSIONS_REVOKED_BY_ADMIN: &str = "sessions_revoked_by_admin";
pub const USER_SUSPENDED: &str = "user_suspended";
pub const USER_REINSTATED: &str = "user_reinstated";
pub const TOKEN_EXCHANGED: &str = "token_exchanged";

/// A signed-in user re-authenticated (step-up), locally or through a provider.
pub(crate) const REAUTHENTICATED: &str = "reauthenticated";

// Second factors.
pub(crate) const MFA_ENABLED: &str = "mfa_enabled";
pub(crate) const MFA_DISABLED: &str = "mfa_disabled";
pub(crate) const MFA_FAILED: &str = "mfa_failed";
pub(crate) const RECOVERY_CODE_USED: &str = "recovery_code_used";
pub(crate) const RECOVERY_CODES_REGENERATED: &str = "recovery_codes_regenerated";

// Provider sign-ins and identities.
pub(crate) const OIDC_SIGNUP: &str = "oidc_signup";
pub(crate) const OIDC_UNVERIFIED_PASSWORD_CLEARED: &str = "oidc_unverified_password_cleared";
pub(crate) const IDENTITY_LINKED: &str = "identity_linked";
pub(crate) const IDENTITY_UNLINKED: &str = "identity_unlinked";
pub(crate) const OIDC_REFUSED: &str = "oidc_refused";
