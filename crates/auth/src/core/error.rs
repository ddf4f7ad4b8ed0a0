//! The auth crate's errors, a provider sign-in's among them. No HTTP here: the api crate maps each
//! variant to a status and code.

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
    Jwt(#[from] crate::core::jwt::JwtError),
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    #[error("a second factor is already set up; disable it first")]
    MfaAlreadyEnabled,
    #[error("this account has no password or second factor here; re-authenticate with its identity provider")]
    ReauthenticateWithProvider,
    #[error(transparent)]
    Oidc(OidcError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a provider sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no identity provider is configured under that name")]
    UnknownProvider,
    #[error("the sign-in state is unknown, expired, already used or was begun in another browser")]
    InvalidState,
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    ProviderUnavailable(String),
    #[error("the identity provider refused the authorization code")]
    CodeRejected,
    #[error("the identity provider's ID token failed verification: {0}")]
    InvalidIdToken(String),
    #[error("the identity provider did not say the e-mail address is verified")]
    EmailUnverified,
    #[error("an account with this e-mail address exists: sign in to it and link the provider from its settings")]
    AccountExists,
    #[error("this provider identity belongs to another account")]
    IdentityInUse,
    #[error("re-authenticate with the provider identity linked to this account")]
    IdentityMismatch,
    #[error("the account would have no way left to sign in")]
    LastSignInMethod,
    #[error("no such identity")]
    IdentityNotFound,
    #[error("native client request refused: {0}")]
    InvalidNativeRequest(&'static str),
    #[error("this provider's addresses are not trusted here: sign in to your account and link the provider")]
    EmailUntrusted,
    #[error("this account has a password or a second factor: re-authenticate with them")]
    ReauthenticateLocally,
    #[error("the authorization answer names another issuer than this provider (RFC 9207)")]
    IssuerMismatch,
}

impl From<OidcError> for AuthError {
    fn from(err: OidcError) -> AuthError {
        AuthError::Oidc(err)
    }
}
