//! The fixed rules of access tokens: the one algorithm, the type, the required claims and the
//! bounds on keys, tokens and configurations.

use chrono::Duration;
use jsonwebtoken::Algorithm;

/// The only `alg` header value this module accepts, written exactly as registered.
///
/// Algorithm verification against an allow-list of one is required by RFC 8725 §3.1, and
/// EdDSA is registered by RFC 8037 §3.1. Algorithm names are compared case-sensitively
/// (RFC 7515 §4.1.1), so `eddsa` or `EDDSA` are refused as well.
pub(super) const ALLOWED_ALG_NAME: &str = "EdDSA";

/// The `alg` allow-list handed to `jsonwebtoken`, kept in step with [`ALLOWED_ALG_NAME`].
///
/// `none` (RFC 7518 §3.6), the HMAC family and the RSA family are absent on purpose:
/// RFC 8725 §2.1 describes both the `none` downgrade and the HS256-with-public-key
/// confusion attack that an open list would allow.
pub(super) const ALLOWED_ALGS: [Algorithm; 1] = [Algorithm::EdDSA];

/// The `typ` header value of access tokens, as registered by RFC 9068 §2.1.
///
/// Explicit typing keeps other kinds of JWT signed with the same key from being accepted
/// as access tokens (RFC 8725 §3.11).
pub(super) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The full media type form of [`ACCESS_TOKEN_TYP`], which RFC 9068 §4 also requires
/// resource servers to accept.
pub(super) const ACCESS_TOKEN_TYP_FULL: &str = "application/at+jwt";

/// The claims that `jsonwebtoken` must find before it runs its own issuer and audience checks.
///
/// RFC 9068 §2.2 makes `iss`, `exp`, `aud`, `sub`, `iat` and `jti` mandatory; `nbf` is
/// mandatory here too because every token this module issues carries it. The claims that
/// `jsonwebtoken` does not know about are checked in [`JwtKeys::verify`].
pub(super) const LIBRARY_REQUIRED_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// The length of an Ed25519 public key in bytes (RFC 8032 §5.1.5).
pub(super) const ED25519_PUBLIC_KEY_LEN: usize = 32;

/// The longest key id accepted, a local limit that keeps headers and logs small.
pub(super) const MAX_KID_LEN: usize = 128;

/// The largest token accepted by [`JwtKeys::verify`], a local limit against oversized input.
///
/// No standard fixes this number; an access token from this module is well under 1 KiB.
pub(super) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The largest clock-skew leeway a configuration may ask for.
///
/// RFC 7519 §4.1.4 allows "some small leeway, usually no more than a few minutes".
pub(super) const MAX_LEEWAY: Duration = Duration::minutes(5);

/// The longest access-token lifetime a configuration may ask for.
///
/// This is local policy: access tokens are bearer credentials that cannot be recalled once
/// issued, so they must stay short-lived and be renewed with a refresh token.
pub(super) const MAX_ACCESS_TTL: Duration = Duration::hours(1);
