//! Why a key, a configuration or a token was rejected.

/// Why a key, a configuration or a token was rejected.
///
/// The messages are fixed strings: they never contain key material, the token or any
/// claim value, so they are safe to log and to return to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is not a well-formed compact JWS with JSON header and claims.
    #[error("access token is malformed")]
    Malformed,
    /// The signature does not verify with the key named by the token's `kid`.
    #[error("access token signature is invalid")]
    BadSignature,
    /// The token's `alg` is missing or is anything other than `EdDSA`.
    #[error("access token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The token's `kid` is missing or names no key this service holds.
    #[error("access token key id is unknown")]
    UnknownKey,
    /// The token's `exp` has passed, even allowing for the configured leeway.
    #[error("access token has expired")]
    Expired,
    /// The token's `nbf` or `iat` lies in the future, even allowing for the configured leeway.
    #[error("access token is not yet valid")]
    NotYetValid,
    /// The token's `iss` is not the configured issuer.
    #[error("access token issuer is not accepted")]
    WrongIssuer,
    /// The token's `aud` is not the configured audience.
    #[error("access token audience is not accepted")]
    WrongAudience,
    /// The token's `typ` header is missing or is not `at+jwt`.
    #[error("token is not an access token")]
    WrongType,
    /// A required claim is absent; the payload names the claim.
    #[error("access token is missing the `{0}` claim")]
    MissingClaim(&'static str),
    /// The key material or key id is unusable; the payload says why in general terms.
    #[error("invalid signing key: {0}")]
    Key(&'static str),
    /// The [`JwtConfig`](super::JwtConfig) is unusable; the payload names the rule it breaks.
    #[error("invalid JWT configuration: {0}")]
    Config(&'static str),
}
