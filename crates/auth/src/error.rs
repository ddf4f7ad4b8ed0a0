//! The auth crate's errors. No HTTP here: the api crate maps each variant to a status and code.

/// Everything an authentication flow can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the e-mail address is not valid")]
    InvalidEmail,
    #[error("password rejected: {0}")]
    WeakPassword(String),
    #[error("e-mail or password is incorrect")]
    InvalidCredentials,
    #[error("the e-mail address has not been verified yet")]
    EmailNotVerified,
    #[error("the link or token is invalid, expired or already used")]
    InvalidToken,
    #[error("authentication required")]
    Unauthenticated,
    #[error("sign-up is closed on this server")]
    SignupClosed,
    #[error("no such session")]
    SessionNotFound,
    #[error("refresh token reuse detected; the whole token family was revoked")]
    RefreshTokenReused,
    #[error("the token family was ended: signed out, revoked, or every credential ended since")]
    TokenFamilyEnded,
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("session store error: {0}")]
    Store(String),
    /// The session store (Redis) could not be reached; nothing was changed there.
    #[error("the session store is unavailable; retry in {retry_after_secs} s")]
    Unavailable { retry_after_secs: u64 },
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("audit trail: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("outbox error: {0}")]
    Outbox(#[from] scheduler::OutboxError),
    #[error("token error: {0}")]
    Jwt(#[from] crate::jwt::JwtError),
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    #[error("a second factor is already set up; disable it first")]
    MfaAlreadyEnabled,
    #[error("this account has no password or second factor here; re-authenticate with its identity provider")]
    ReauthenticateWithProvider,
    #[error(transparent)]
    Oidc(crate::oidc::OidcError),
    #[error("internal error: {0}")]
    Internal(String),
}
