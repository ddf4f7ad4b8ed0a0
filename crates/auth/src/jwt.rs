//! Short-lived EdDSA (Ed25519) JWT access tokens: issuing, verification, key rotation and JWKS.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The only `alg` header value this module accepts, written exactly as registered.
///
/// Algorithm verification against an allow-list of one is required by RFC 8725 §3.1, and
/// EdDSA is registered by RFC 8037 §3.1. Algorithm names are compared case-sensitively
/// (RFC 7515 §4.1.1), so `eddsa` or `EDDSA` are refused as well.
const ALLOWED_ALG_NAME: &str = "EdDSA";

/// The `alg` allow-list handed to `jsonwebtoken`, kept in step with [`ALLOWED_ALG_NAME`].
///
/// `none` (RFC 7518 §3.6), the HMAC family and the RSA family are absent on purpose:
/// RFC 8725 §2.1 describes both the `none` downgrade and the HS256-with-public-key
/// confusion attack that an open list would allow.
const ALLOWED_ALGS: [Algorithm; 1] = [Algorithm::EdDSA];

/// The `typ` header value of access tokens, as registered by RFC 9068 §2.1.
///
/// Explicit typing keeps other kinds of JWT signed with the same key from being accepted
/// as access tokens (RFC 8725 §3.11).
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The full media type form of [`ACCESS_TOKEN_TYP`], which RFC 9068 §4 also requires
/// resource servers to accept.
const ACCESS_TOKEN_TYP_FULL: &str = "application/at+jwt";

/// The claims that `jsonwebtoken` must find before it runs its own issuer and audience checks.
///
/// RFC 9068 §2.2 makes `iss`, `exp`, `aud`, `sub`, `iat` and `jti` mandatory; `nbf` is
/// mandatory here too because every token this module issues carries it. The claims that
/// `jsonwebtoken` does not know about are checked in [`JwtKeys::verify`].
const LIBRARY_REQUIRED_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// The length of an Ed25519 public key in bytes (RFC 8032 §5.1.5).
const ED25519_PUBLIC_KEY_LEN: usize = 32;

/// The longest key id accepted, a local limit that keeps headers and logs small.
const MAX_KID_LEN: usize = 128;

/// The largest token accepted by [`JwtKeys::verify`], a local limit against oversized input.
///
/// No standard fixes this number; an access token from this module is well under 1 KiB.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The largest clock-skew leeway a configuration may ask for.
///
/// RFC 7519 §4.1.4 allows "some small leeway, usually no more than a few minutes".
const MAX_LEEWAY: Duration = Duration::minutes(5);

/// The longest access-token lifetime a configuration may ask for.
///
/// This is local policy: access tokens are bearer credentials that cannot be recalled once
/// issued, so they must stay short-lived and be renewed with a refresh token.
const MAX_ACCESS_TTL: Duration = Duration::hours(1);

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
    /// The [`JwtConfig`] is unusable; the payload names the rule it breaks.
    #[error("invalid JWT configuration: {0}")]
    Config(&'static str),
}

/// An Ed25519 signing key together with the key id (`kid`) published for it.
///
/// The PKCS#8 DER bytes are wiped from memory when the key is dropped, and `Debug` never
/// prints them. The type deliberately does not implement `Clone`, so that the secret is
/// not copied around by accident.
pub struct SigningKey {
    /// The key id written into token headers and the JWKS.
    kid: String,
    /// The PKCS#8 DER encoding of the key pair (RFC 5958, RFC 8410), wiped on drop.
    pkcs8: Zeroizing<Vec<u8>>,
    /// The raw public key (RFC 8032 §5.1.5), derived from the private key when loaded.
    public: [u8; ED25519_PUBLIC_KEY_LEN],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("pkcs8", &"[REDACTED]").finish()
    }
}

impl SigningKey {
    /// Generates a fresh Ed25519 key pair from the operating system's random number generator.
    ///
    /// The key is encoded as PKCS#8 v2 (RFC 5958), which also carries the public key.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if `kid` is not 1 to 128 printable ASCII characters or if
    /// the random number generator fails.
    pub fn generate(kid: impl Into<String>) -> Result<Self, JwtError> {
        let kid = checked_kid(kid.into())?;
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| JwtError::Key("key generation failed"))?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Self::from_pkcs8_der(kid, pkcs8)
    }

    /// Loads a key from the standard base64 (RFC 4648 §4) encoding of its PKCS#8 DER bytes.
    ///
    /// Both PKCS#8 v2 (as written by [`SigningKey::to_pkcs8_base64`]) and PKCS#8 v1 (as
    /// written by `openssl genpkey -algorithm ed25519`) are accepted. Surrounding whitespace
    /// is ignored so that values read from files with a trailing newline still load.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if `kid` is invalid, the text is not base64 or the bytes
    /// are not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8_base64(kid: impl Into<String>, encoded: &str) -> Result<Self, JwtError> {
        let kid = checked_kid(kid.into())?;
        let encoded = encoded.trim();
        // The buffer is sized up front so decoding never reallocates and leaves stray copies behind.
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(encoded.len())));
        STANDARD.decode_vec(encoded, &mut pkcs8).map_err(|_| JwtError::Key("key is not valid base64"))?;
        Self::from_pkcs8_der(kid, pkcs8)
    }

    /// Validates PKCS#8 DER bytes and derives the public key from them.
    fn from_pkcs8_der(kid: String, pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, JwtError> {
        // A v2 key must have a public key that matches its private key; only v1 keys,
        // which carry no public key, fall back to the variant that derives it.
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8))
            .map_err(|_| JwtError::Key("key is not an Ed25519 PKCS#8 key"))?;
        let public = <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(pair.public_key().as_ref())
            .map_err(|_| JwtError::Key("public key has the wrong length"))?;
        Ok(Self { kid, pkcs8, public })
    }

    /// Returns the standard base64 encoding of the PKCS#8 DER bytes, for storage in a secret store.
    ///
    /// The returned string is wiped from memory when dropped.
    #[must_use]
    pub fn to_pkcs8_base64(&self) -> Zeroizing<String> {
        // The buffer is sized up front so encoding never reallocates and leaves stray copies behind.
        let capacity = base64::encoded_len(self.pkcs8.len(), true).unwrap_or_default();
        let mut encoded = Zeroizing::new(String::with_capacity(capacity));
        STANDARD.encode_string(self.pkcs8.as_slice(), &mut encoded);
        encoded
    }

    /// Returns the key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the 32-byte Ed25519 public key (RFC 8032 §5.1.5).
    #[must_use]
    pub fn public_key_bytes(&self) -> &[u8; ED25519_PUBLIC_KEY_LEN] {
        &self.public
    }

    /// Returns the public key as an OKP JSON Web Key (RFC 8037 §2, RFC 7517 §4).
    fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": ALLOWED_ALG_NAME,
            "use": "sig",
        })
    }
}

/// Checks that a key id is 1 to 128 printable ASCII characters without spaces.
///
/// Key ids end up in headers, in the JWKS and in logs, so control characters are refused.
fn checked_kid(kid: String) -> Result<String, JwtError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(JwtError::Key("key id must be 1 to 128 characters long"));
    }
    if !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(JwtError::Key("key id must be printable ASCII without spaces"));
    }
    Ok(kid)
}

/// Settings shared by token issuing and verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The `iss` claim written and required (RFC 7519 §4.1.1, RFC 8725 §3.8).
    pub issuer: String,
    /// The `aud` claim written and required (RFC 7519 §4.1.3, RFC 8725 §3.9).
    pub audience: String,
    /// How long an access token stays valid; 15 minutes by default, at most 1 hour.
    pub access_ttl: Duration,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`; 30 seconds by default, at most
    /// 5 minutes (RFC 7519 §4.1.4).
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: "rampart".to_owned(),
            audience: "rampart-api".to_owned(),
            access_ttl: Duration::minutes(15),
            leeway: Duration::seconds(30),
        }
    }
}

impl JwtConfig {
    /// Checks that the configuration is usable.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Config`] if the issuer or audience is empty, the lifetime is not
    /// between zero (exclusive) and one hour, or the leeway is not between zero and five minutes.
    pub fn validate(&self) -> Result<(), JwtError> {
        if self.issuer.is_empty() {
            return Err(JwtError::Config("issuer must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(JwtError::Config("audience must not be empty"));
        }
        if self.access_ttl <= Duration::zero() || self.access_ttl > MAX_ACCESS_TTL {
            return Err(JwtError::Config("access token lifetime must be more than 0 and at most 1 hour"));
        }
        if self.leeway < Duration::zero() || self.leeway > MAX_LEEWAY {
            return Err(JwtError::Config("leeway must be between 0 and 5 minutes"));
        }
        Ok(())
    }
}

/// The claims of an access token.
///
/// Times are NumericDate values: whole seconds since the Unix epoch (RFC 7519 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user the token was issued to (RFC 7519 §4.1.2).
    pub sub: Uuid,
    /// The session, or refresh-token family, the token belongs to; callers use it for revocation.
    pub sid: Uuid,
    /// The issuer (RFC 7519 §4.1.1).
    pub iss: String,
    /// The single intended audience (RFC 7519 §4.1.3).
    pub aud: String,
    /// When the token was issued (RFC 7519 §4.1.6).
    pub iat: i64,
    /// When the token starts to be valid (RFC 7519 §4.1.5).
    pub nbf: i64,
    /// When the token stops being valid (RFC 7519 §4.1.4).
    pub exp: i64,
    /// A unique token id (RFC 7519 §4.1.7).
    pub jti: Uuid,
    /// When the user last authenticated, at sign-in or step-up (OpenID Connect Core 1.0 §2
    /// `auth_time`); absent on tokens that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// How they authenticated (RFC 8176 `amr` values, such as `pwd` and `otp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The user's credential generation when the token was issued (a private claim). Every
    /// event that ends a user's credentials raises it, and a token of an older generation is
    /// refused on its next request: `iat`, whole seconds, cannot order events within a second.
    pub gen: i64,
    /// The one workspace a token made by exchange acts in (a private claim); absent on the
    /// tokens of a sign-in, which act wherever their user may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<Uuid>,
    /// The permissions an exchanged token is narrowed to, space-separated (RFC 8693 §4.2
    /// `scope`); absent: the user's own in that workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Whom an access token is for: the user, the session or token family, and the user's
/// credential generation at issue; for an exchanged token, its workspace and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: Uuid,
    pub sid: Uuid,
    pub generation: i64,
    pub workspace: Option<Uuid>,
    pub scope: Option<String>,
}

impl Holder {
    /// The holder of a sign-in's tokens: no workspace binding.
    pub fn signed_in(user: Uuid, sid: Uuid, generation: i64) -> Holder {
        Holder { user, sid, generation, workspace: None, scope: None }
    }
}

/// The claims as received, before the check that every one of them is present.
///
/// Duplicate members make deserialisation fail, so a payload such as
/// `{"aud":"a","aud":"b"}` is refused rather than read ambiguously.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: Option<Uuid>,
    sid: Option<Uuid>,
    iss: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<Uuid>,
    auth_time: Option<i64>,
    amr: Option<Vec<String>>,
    gen: Option<i64>,
    ws: Option<Uuid>,
    scope: Option<String>,
}

impl ReceivedClaims {
    /// Turns the received claims into [`AccessClaims`], naming the first one that is absent.
    fn require_all(self) -> Result<AccessClaims, JwtError> {
        Ok(AccessClaims {
            sub: self.sub.ok_or(JwtError::MissingClaim("sub"))?,
            sid: self.sid.ok_or(JwtError::MissingClaim("sid"))?,
            iss: self.iss.ok_or(JwtError::MissingClaim("iss"))?,
            aud: self.aud.ok_or(JwtError::MissingClaim("aud"))?,
            iat: self.iat.ok_or(JwtError::MissingClaim("iat"))?,
            nbf: self.nbf.ok_or(JwtError::MissingClaim("nbf"))?,
            exp: self.exp.ok_or(JwtError::MissingClaim("exp"))?,
            jti: self.jti.ok_or(JwtError::MissingClaim("jti"))?,
            auth_time: self.auth_time,
            amr: self.amr.unwrap_or_default(),
            gen: self.gen.ok_or(JwtError::MissingClaim("gen"))?,
            ws: self.ws,
            scope: self.scope,
        })
    }
}

/// The header parameters this module reads itself, before `jsonwebtoken` sees the token.
///
/// Duplicate members make deserialisation fail, as for [`ReceivedClaims`]. Header
/// parameters that point at keys (`jku`, `jwk`, `x5u`, `x5c`) are never read: keys are only
/// ever chosen among the ones this service holds (RFC 8725 §3.10).
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The signing key in use plus the retired keys whose tokens may still be in circulation.
///
/// Everything here is pure: no I/O, no environment and no system clock. The current time is
/// always passed in by the caller, which keeps every time-dependent rule testable; the only
/// ambient resource used is the operating system's random number generator, for new key
/// pairs and token ids.
///
/// The verification rules follow RFC 8725 (JWT Best Current Practices) and RFC 9068 (JWT
/// profile for OAuth 2.0 access tokens). The `client_id` claim of RFC 9068 §2.2 is left out
/// because these tokens are only issued to Rampart's own first-party clients. Revocation is
/// not checked here: callers look up the `sid` claim when they need to know whether the
/// session behind a token is still alive.
///
/// Rotation works in two steps: [`JwtKeys::rotate`] makes a new key active and keeps the old
/// one for verification; once every token it signed has expired (after one access-token
/// lifetime plus leeway), [`JwtKeys::retire`] removes it.
#[derive(Debug)]
pub struct JwtKeys {
    /// The key that signs new tokens.
    active: SigningKey,
    /// Keys that only verify, newest first.
    previous: Vec<SigningKey>,
}

impl JwtKeys {
    /// Builds a key set from the active key and the keys kept for verification only.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if two keys share a key id, since a token's `kid` must
    /// select exactly one key.
    pub fn new(active: SigningKey, previous: Vec<SigningKey>) -> Result<Self, JwtError> {
        let keys = Self { active, previous };
        for (index, key) in keys.all().enumerate() {
            if keys.all().skip(index + 1).any(|other| other.kid == key.kid) {
                return Err(JwtError::Key("two keys share the same key id"));
            }
        }
        Ok(keys)
    }

    /// Makes `new_active` the signing key and keeps the current one for verification.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Key`] if a key with the same key id is already held; the key set
    /// is left unchanged in that case.
    pub fn rotate(&mut self, new_active: SigningKey) -> Result<(), JwtError> {
        if self.find(&new_active.kid).is_some() {
            return Err(JwtError::Key("two keys share the same key id"));
        }
        let old = std::mem::replace(&mut self.active, new_active);
        self.previous.insert(0, old);
        Ok(())
    }

    /// Removes a verification-only key; tokens it signed stop verifying.
    ///
    /// Returns the removed key, or `None` if no previous key has that id. The active key
    /// cannot be retired this way: rotate first.
    pub fn retire(&mut self, kid: &str) -> Option<SigningKey> {
        let index = self.previous.iter().position(|key| key.kid == kid)?;
        Some(self.previous.remove(index))
    }

    /// Returns the key that signs new tokens.
    #[must_use]
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Returns the verification-only keys, newest first.
    #[must_use]
    pub fn previous(&self) -> &[SigningKey] {
        &self.previous
    }

    /// Iterates over every key, the active one first.
    fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active).chain(self.previous.iter())
    }

    /// Finds a held key by exact key id.
    ///
    /// The id from a token is only compared with the ids already held; it is never used to
    /// build a path, URL or query (RFC 8725 §3.10).
    fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.all().find(|key| key.kid == kid)
    }

    /// Issues an access token for `user` in session `sid`, valid from `now` for `cfg.access_ttl`.
    ///
    /// The header is `{"alg":"EdDSA","typ":"at+jwt","kid":<active kid>}` (RFC 9068 §2.1,
    /// RFC 8725 §3.11). The returned claims are exactly the ones in the token.
    ///
    /// # Errors
    ///
    /// Returns [`JwtError::Config`] if `cfg` is invalid or the expiry is not representable,
    /// and [`JwtError::Key`] if signing fails.
    pub fn issue(
        &self,
        cfg: &JwtConfig,
        user: Uuid,
        sid: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(String, AccessClaims), JwtError> {
        self.issue_authenticated(cfg, Holder::signed_in(user, sid, 0), now, None, &[])
    }

    /// [`JwtKeys::issue`] for a [`Holder`] (generation included), with the `auth_time` and `amr`
    /// claims of the sign-in behind the token.
    ///
    /// # Errors
    ///
    /// As [`JwtKeys::issue`].
    pub fn issue_authenticated(
        &self,
        cfg: &JwtConfig,
        holder: Holder,
        now: DateTime<Utc>,
        auth_time: Option<DateTime<Utc>>,
        amr: &[String],
    ) -> Result<(String, AccessClaims), JwtError> {
        let Holder { user, sid, generation, workspace, scope } = holder;
        cfg.validate()?;
        let expires = now.checked_add_signed(cfg.access_ttl).ok_or(JwtError::Config("token expiry is out of range"))?;
        let claims = AccessClaims {
            sub: user,
            sid,
            iss: cfg.issuer.clone(),
            aud: cfg.audience.clone(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires.timestamp(),
            jti: Uuid::new_v4(),
            auth_time: auth_time.map(|t| t.timestamp()),
            amr: amr.to_vec(),
            gen: generation,
            ws: workspace,
            scope,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.active.kid.clone());
        // `jsonwebtoken` copies the DER into a buffer of its own for the duration of the call.
        let key = EncodingKey::from_ed_der(&self.active.pkcs8);
        let token = jsonwebtoken::encode(&header, &claims, &key).map_err(|_| JwtError::Key("signing failed"))?;
        Ok((token, claims))
    }

    /// Verifies an access token at time `now` and returns its claims.
    ///
    /// The checks, in order: size and shape; `alg` is exactly `EdDSA` (RFC 8725 §3.1); no
    /// `crit` header (RFC 7515 §4.1.11); `typ` is `at+jwt` (RFC 9068 §4, RFC 8725 §3.11);
    /// `kid` names a held key (RFC 8725 §3.10); the signature; every claim is present;
    /// `iss` (RFC 8725 §3.8) and `aud` (RFC 8725 §3.9) match `cfg` exactly; `exp`, `nbf`
    /// and `iat` fit `now` within `cfg.leeway` (RFC 7519 §4.1.4, §4.1.5).
    ///
    /// # Errors
    ///
    /// Returns the [`JwtError`] of the first check that fails, or [`JwtError::Config`] if
    /// `cfg` is invalid.
    pub fn verify(&self, cfg: &JwtConfig, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, JwtError> {
        let claims = self.verify_signed(cfg, token)?;
        check_times(cfg, &claims, now)?;
        Ok(claims)
    }

    /// Every check of [`JwtKeys::verify`] but the ones against the time: shape, header,
    /// algorithm, key, signature, issuer, audience. What it accepts stays accepted for as long
    /// as this key set and `cfg` do not change; [`check_times`] decides when.
    ///
    /// # Errors
    ///
    /// As [`JwtKeys::verify`], except the time errors.
    pub fn verify_signed(&self, cfg: &JwtConfig, token: &str) -> Result<AccessClaims, JwtError> {
        cfg.validate()?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        // A compact JWS has exactly three parts (RFC 7515 §7.1).
        let mut parts = token.split('.');
        let (Some(encoded_header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD.decode(encoded_header).map_err(|_| JwtError::Malformed)?;
        let header: ReceivedHeader = serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;

        // The algorithm is checked against the allow-list before anything else (RFC 8725 §3.1).
        if header.alg.as_deref() != Some(ALLOWED_ALG_NAME) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // No extension is understood, so any critical one makes the token invalid (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        // Media types compare case-insensitively (RFC 7515 §4.1.9); both forms are allowed (RFC 9068 §4).
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP_FULL)
        });
        if !typ_ok {
            return Err(JwtError::WrongType);
        }
        let key = header.kid.as_deref().and_then(|kid| self.find(kid)).ok_or(JwtError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = ALLOWED_ALGS.to_vec();
        // `jsonwebtoken` would compare `exp` and `nbf` with the system clock, so its time checks
        // are turned off and done below against the `now` the caller passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = true;
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_required_spec_claims(&LIBRARY_REQUIRED_CLAIMS);
        let decoding_key = DecodingKey::from_ed_der(&key.public);
        let received = jsonwebtoken::decode::<ReceivedClaims>(token, &decoding_key, &validation)
            .map_err(map_library_error)?
            .claims;
        let claims = received.require_all()?;

        // These repeat the library's checks with exact string equality, so they hold even if
        // the library's rules change (RFC 8725 §3.8, §3.9).
        if claims.iss != cfg.issuer {
            return Err(JwtError::WrongIssuer);
        }
        if claims.aud != cfg.audience {
            return Err(JwtError::WrongAudience);
        }
        Ok(claims)
    }

    /// Returns the public keys as a JWK Set (RFC 7517 §5), the active key first.
    ///
    /// Each key is an OKP JWK (RFC 8037 §2) with `kty`, `crv`, `x` (base64url without
    /// padding, RFC 7515 §2), `kid`, `alg` and `use` (RFC 7517 §4). Private key material
    /// is never included.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.all().map(SigningKey::to_jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The time checks of [`JwtKeys::verify`]: `exp`, `nbf` and `iat` against `now`, with the
/// configured leeway.
///
/// # Errors
///
/// [`JwtError::Expired`] or [`JwtError::NotYetValid`].
pub fn check_times(cfg: &JwtConfig, claims: &AccessClaims, now: DateTime<Utc>) -> Result<(), JwtError> {
    let now = now.timestamp();
    let leeway = cfg.leeway.num_seconds();
    // The token is valid only while now < exp, give or take the leeway (RFC 7519 §4.1.4).
    if now >= claims.exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    // The token is valid only once now >= nbf, give or take the leeway (RFC 7519 §4.1.5).
    if claims.nbf > now.saturating_add(leeway) {
        return Err(JwtError::NotYetValid);
    }
    // A token issued in the future comes from a broken clock or a forger (RFC 7519 §4.1.6).
    if claims.iat > now.saturating_add(leeway) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// Maps a `jsonwebtoken` error to a [`JwtError`], dropping its details.
///
/// Library errors can quote parts of the payload, so none of their text is kept.
fn map_library_error(error: jsonwebtoken::errors::Error) -> JwtError {
    match error.kind() {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtError::AlgorithmNotAllowed,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => JwtError::MissingClaim("exp"),
            "nbf" => JwtError::MissingClaim("nbf"),
            "iss" => JwtError::MissingClaim("iss"),
            "aud" => JwtError::MissingClaim("aud"),
            "sub" => JwtError::MissingClaim("sub"),
            _ => JwtError::Malformed,
        },
        _ => JwtError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fixed instant, so no test depends on the system clock.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("the test instant is in range")
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(kid).expect("key generation works")
    }

    fn keys() -> JwtKeys {
        JwtKeys::new(key("k1"), Vec::new()).expect("a single key is a valid key set")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Joins a header and a payload, given as raw JSON text, with an arbitrary signature.
    fn forge(header: &str, payload: &str, signature: &[u8]) -> String {
        format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(signature))
    }

    /// Signs a header and a payload, given as raw JSON text, with a real Ed25519 key.
    ///
    /// This bypasses `jsonwebtoken` so tests can produce tokens it would refuse to build.
    fn sign_raw(key: &SigningKey, header: &str, payload: &str) -> String {
        let pair = Ed25519KeyPair::from_pkcs8(&key.pkcs8).expect("the test key parses");
        let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signature = pair.sign(message.as_bytes());
        format!("{message}.{}", b64(signature.as_ref()))
    }

    fn header_for(kid: &str) -> String {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid }).to_string()
    }

    /// A claim set that passes every check at `t0()` with the default configuration.
    fn good_claims() -> serde_json::Value {
        let now = t0().timestamp();
        json!({
            "sub": Uuid::new_v4(),
            "sid": Uuid::new_v4(),
            "iss": "rampart",
            "aud": "rampart-api",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": Uuid::new_v4(),
            "gen": 0,
        })
    }

    fn without(mut claims: serde_json::Value, name: &str) -> String {
        claims.as_object_mut().expect("claims are an object").remove(name);
        claims.to_string()
    }

    fn with(mut claims: serde_json::Value, name: &str, value: serde_json::Value) -> String {
        claims[name] = value;
        claims.to_string()
    }

    /// Builds a PKCS#8 v1 encoding (RFC 8410 §7) from the seed inside a ring PKCS#8 v2 document.
    fn pkcs8_v1_from_v2(v2: &[u8]) -> Vec<u8> {
        const V2_PREFIX: [u8; 16] =
            [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        const V1_PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        assert_eq!(&v2[..16], &V2_PREFIX, "ring's PKCS#8 v2 layout changed");
        let mut v1 = V1_PREFIX.to_vec();
        v1.extend_from_slice(&v2[16..48]);
        v1
    }

    #[test]
    fn a_fresh_token_round_trips_with_every_claim_intact() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, issued) = keys.issue(&cfg, user, sid, t0()).expect("issue works");

        let verified = keys.verify(&cfg, &token, t0()).expect("a fresh token verifies");

        assert_eq!(verified, issued);
        assert_eq!(verified.sub, user);
        assert_eq!(verified.sid, sid);
        assert_eq!(verified.iss, "rampart");
        assert_eq!(verified.aud, "rampart-api");
        assert_eq!(verified.iat, t0().timestamp());
        assert_eq!(verified.nbf, t0().timestamp());
        assert_eq!(verified.exp, t0().timestamp() + 15 * 60);
    }

    #[test]
    fn an_issued_token_has_an_eddsa_at_jwt_header_naming_the_active_key() {
        let keys = keys();
        let (token, _) = keys.issue(&JwtConfig::default(), Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let encoded_header = token.split('.').next().expect("a token has a header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded_header).expect("base64url"))
                .expect("the header is JSON");

        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], "k1");
    }

    #[test]
    fn two_issued_tokens_have_different_jtis() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let (_, first) = keys.issue(&cfg, user, sid, t0()).expect("issue works");
        let (_, second) = keys.issue(&cfg, user, sid, t0()).expect("issue works");

        assert_ne!(first.jti, second.jti);
    }

    #[test]
    fn a_hand_signed_token_with_good_claims_verifies() {
        // This guards the forging helpers: if they were broken, the refusal tests below
        // could pass for the wrong reason.
        let keys = keys();
        let token = sign_raw(keys.active(), &header_for("k1"), &good_claims().to_string());

        assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
    }

    #[test]
    fn alg_none_with_an_empty_signature_is_refused() {
        let keys = keys();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }).to_string();
            let token = forge(&header, &good_claims().to_string(), b"");
            assert!(token.ends_with('.'), "the forged token has an empty signature");

            assert_eq!(
                keys.verify(&JwtConfig::default(), &token, t0()),
                Err(JwtError::AlgorithmNotAllowed),
                "alg {alg} must be refused"
            );
        }
    }

    #[test]
    fn a_missing_alg_is_refused() {
        let keys = keys();
        let header = json!({ "typ": "at+jwt", "kid": "k1" }).to_string();
        let token = forge(&header, &good_claims().to_string(), &[0; 64]);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::AlgorithmNotAllowed));
    }

    #[test]
    fn an_hs256_token_keyed_with_the_ed25519_public_key_is_refused() {
        let keys = keys();
        let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": "k1" }).to_string();
        let payload = good_claims().to_string();
        let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        // The attacker knows the public key and uses it as the HMAC secret.
        let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, keys.active().public_key_bytes());
        let tag = ring::hmac::sign(&hmac_key, message.as_bytes());
        let token = format!("{message}.{}", b64(tag.as_ref()));

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::AlgorithmNotAllowed));
    }

    #[test]
    fn rs256_hs256_and_other_algorithm_headers_are_refused() {
        let keys = keys();
        for alg in ["RS256", "HS256", "HS512", "ES256", "PS256", "eddsa", "EDDSA", "Ed25519", ""] {
            let header = json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }).to_string();
            let token = forge(&header, &good_claims().to_string(), &[7; 64]);

            assert_eq!(
                keys.verify(&JwtConfig::default(), &token, t0()),
                Err(JwtError::AlgorithmNotAllowed),
                "alg {alg:?} must be refused"
            );
        }
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (token, claims) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = serde_json::to_value(&claims).expect("claims serialise");
        forged_claims["sub"] = json!(Uuid::new_v4());
        let forged_payload = b64(forged_claims.to_string().as_bytes());
        parts[1] = &forged_payload;

        assert_eq!(keys.verify(&cfg, &parts.join("."), t0()), Err(JwtError::BadSignature));
    }

    #[test]
    fn a_stripped_signature_is_refused() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (token, _) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let unsigned = format!("{}.", &token[..token.rfind('.').expect("token has dots")]);

        assert_eq!(keys.verify(&cfg, &unsigned, t0()), Err(JwtError::BadSignature));
    }

    #[test]
    fn a_token_signed_by_a_stranger_under_a_known_kid_is_refused() {
        let keys = keys();
        let stranger = key("k1");
        let token = sign_raw(&stranger, &header_for("k1"), &good_claims().to_string());

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::BadSignature));
    }

    #[test]
    fn an_expired_token_is_refused_once_the_leeway_has_passed() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (token, claims) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

        assert_eq!(keys.verify(&cfg, &token, expiry + cfg.leeway), Err(JwtError::Expired));
        assert_eq!(keys.verify(&cfg, &token, expiry + Duration::hours(1)), Err(JwtError::Expired));
    }

    #[test]
    fn an_expired_token_is_accepted_within_the_leeway() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (token, claims) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

        assert!(keys.verify(&cfg, &token, expiry).is_ok());
        assert!(keys.verify(&cfg, &token, expiry + cfg.leeway - Duration::seconds(1)).is_ok());
    }

    #[test]
    fn with_zero_leeway_a_token_expires_exactly_at_exp() {
        let keys = keys();
        let cfg = JwtConfig { leeway: Duration::zero(), ..JwtConfig::default() };
        let (token, claims) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let expiry = DateTime::from_timestamp(claims.exp, 0).expect("exp is in range");

        assert!(keys.verify(&cfg, &token, expiry - Duration::seconds(1)).is_ok());
        assert_eq!(keys.verify(&cfg, &token, expiry), Err(JwtError::Expired));
    }

    #[test]
    fn a_token_whose_nbf_is_in_the_future_is_refused() {
        let keys = keys();
        let later = t0().timestamp() + 120;
        let payload = with(good_claims(), "nbf", json!(later));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::NotYetValid));
    }

    #[test]
    fn a_token_whose_nbf_is_in_the_future_is_accepted_within_the_leeway() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let soon = t0().timestamp() + cfg.leeway.num_seconds();
        let payload = with(good_claims(), "nbf", json!(soon));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert!(keys.verify(&cfg, &token, t0()).is_ok());
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let keys = keys();
        let later = t0().timestamp() + 120;
        let payload = with(good_claims(), "iat", json!(later));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::NotYetValid));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "aud", json!("billing-api"));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongAudience));
    }

    #[test]
    fn a_token_issued_for_another_configured_audience_is_refused() {
        let keys = keys();
        let other = JwtConfig { audience: "admin-api".to_owned(), ..JwtConfig::default() };
        let (token, _) = keys.issue(&other, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongAudience));
    }

    #[test]
    fn a_token_without_an_audience_is_refused() {
        let keys = keys();
        let token = sign_raw(keys.active(), &header_for("k1"), &without(good_claims(), "aud"));

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::MissingClaim("aud")));
    }

    #[test]
    fn a_token_with_a_null_audience_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "aud", serde_json::Value::Null);
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::MissingClaim("aud")));
    }

    #[test]
    fn a_token_with_an_audience_array_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "aud", json!(["rampart-api", "billing-api"]));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
    }

    #[test]
    fn a_token_with_a_duplicated_audience_member_is_refused() {
        let keys = keys();
        let mut payload = with(good_claims(), "aud", json!("billing-api"));
        // The second `aud` would win in a last-member-wins parser.
        payload.insert_str(1, r#""aud":"rampart-api","#);
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "iss", json!("evil"));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongIssuer));
    }

    #[test]
    fn a_token_whose_issuer_differs_only_in_case_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "iss", json!("Rampart"));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongIssuer));
    }

    #[test]
    fn a_token_missing_any_required_claim_is_refused() {
        let keys = keys();
        for name in ["sub", "sid", "iss", "aud", "iat", "nbf", "exp", "jti", "gen"] {
            let token = sign_raw(keys.active(), &header_for("k1"), &without(good_claims(), name));

            assert_eq!(
                keys.verify(&JwtConfig::default(), &token, t0()),
                Err(JwtError::MissingClaim(name)),
                "a token without {name} must be refused"
            );
        }
    }

    #[test]
    fn a_token_whose_subject_is_not_a_uuid_is_refused() {
        let keys = keys();
        let payload = with(good_claims(), "sub", json!("admin"));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
    }

    #[test]
    fn a_token_with_the_wrong_typ_is_refused() {
        let keys = keys();
        for typ in [json!("JWT"), json!("at+jwt2"), json!("application/jwt"), json!(""), json!(null)] {
            let header = json!({ "alg": "EdDSA", "typ": typ, "kid": "k1" }).to_string();
            let token = sign_raw(keys.active(), &header, &good_claims().to_string());

            assert_eq!(
                keys.verify(&JwtConfig::default(), &token, t0()),
                Err(JwtError::WrongType),
                "typ {typ} must be refused"
            );
        }
    }

    #[test]
    fn a_token_without_a_typ_is_refused() {
        let keys = keys();
        let header = json!({ "alg": "EdDSA", "kid": "k1" }).to_string();
        let token = sign_raw(keys.active(), &header, &good_claims().to_string());

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::WrongType));
    }

    #[test]
    fn the_media_type_forms_of_at_jwt_are_accepted() {
        let keys = keys();
        for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
            let header = json!({ "alg": "EdDSA", "typ": typ, "kid": "k1" }).to_string();
            let token = sign_raw(keys.active(), &header, &good_claims().to_string());

            assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok(), "typ {typ} must be accepted");
        }
    }

    #[test]
    fn a_token_with_a_crit_header_is_refused() {
        let keys = keys();
        let header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": ["exp"] }).to_string();
        let token = sign_raw(keys.active(), &header, &good_claims().to_string());

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
    }

    #[test]
    fn a_header_with_a_duplicated_alg_member_is_refused() {
        let keys = keys();
        let header = r#"{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#;
        let token = sign_raw(keys.active(), header, &good_claims().to_string());

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::Malformed));
    }

    #[test]
    fn an_unknown_kid_is_refused() {
        let keys = keys();
        let stranger = key("k9");
        for kid in ["k9", "../../etc/passwd", "K1", "k1 ", ""] {
            let token = sign_raw(&stranger, &header_for(kid), &good_claims().to_string());

            assert_eq!(
                keys.verify(&JwtConfig::default(), &token, t0()),
                Err(JwtError::UnknownKey),
                "kid {kid:?} must be refused"
            );
        }
    }

    #[test]
    fn a_token_without_a_kid_is_refused() {
        let keys = keys();
        let header = json!({ "alg": "EdDSA", "typ": "at+jwt" }).to_string();
        let token = sign_raw(keys.active(), &header, &good_claims().to_string());

        assert_eq!(keys.verify(&JwtConfig::default(), &token, t0()), Err(JwtError::UnknownKey));
    }

    #[test]
    fn a_token_from_a_rotated_out_key_still_verifies() {
        let mut keys = keys();
        let cfg = JwtConfig::default();
        let (old_token, _) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");

        keys.rotate(key("k2")).expect("k2 is a new kid");
        let (new_token, _) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");

        assert_eq!(keys.active().kid(), "k2");
        assert_eq!(keys.previous()[0].kid(), "k1");
        assert!(keys.verify(&cfg, &old_token, t0()).is_ok());
        assert!(keys.verify(&cfg, &new_token, t0()).is_ok());
    }

    #[test]
    fn a_token_from_a_removed_key_fails() {
        let mut keys = keys();
        let cfg = JwtConfig::default();
        let (old_token, _) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        keys.rotate(key("k2")).expect("k2 is a new kid");

        let retired = keys.retire("k1").expect("k1 is a previous key");

        assert_eq!(retired.kid(), "k1");
        assert!(keys.previous().is_empty());
        assert_eq!(keys.verify(&cfg, &old_token, t0()), Err(JwtError::UnknownKey));
    }

    #[test]
    fn a_key_set_built_with_previous_keys_verifies_their_tokens() {
        let old = key("old");
        let token = sign_raw(&old, &header_for("old"), &good_claims().to_string());
        let keys = JwtKeys::new(key("new"), vec![old]).expect("distinct kids");

        assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
    }

    #[test]
    fn the_active_key_cannot_be_retired() {
        let mut keys = keys();

        assert!(keys.retire("k1").is_none());
        assert_eq!(keys.active().kid(), "k1");
    }

    #[test]
    fn duplicate_kids_are_refused() {
        assert_eq!(
            JwtKeys::new(key("k1"), vec![key("k2"), key("k1")]).err(),
            Some(JwtError::Key("two keys share the same key id"))
        );
        assert!(JwtKeys::new(key("k1"), vec![key("k2"), key("k2")]).is_err());

        let mut keys = keys();
        assert!(keys.rotate(key("k1")).is_err());
        assert!(keys.previous().is_empty(), "a refused rotation changes nothing");
    }

    #[test]
    fn the_jwks_contains_every_key_with_its_public_key_as_x() {
        let mut keys = keys();
        keys.rotate(key("k2")).expect("k2 is a new kid");
        keys.rotate(key("k3")).expect("k3 is a new kid");

        let jwks = keys.jwks();
        let published = jwks["keys"].as_array().expect("keys is an array");
        let held: Vec<&SigningKey> = keys.all().collect();

        assert_eq!(published.len(), 3);
        for (jwk, key) in published.iter().zip(held) {
            let x = URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().expect("x is a string"))
                .expect("x is base64url without padding");
            assert_eq!(x.as_slice(), key.public_key_bytes());
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["kty"], "OKP");
            assert_eq!(jwk["crv"], "Ed25519");
            assert_eq!(jwk["alg"], "EdDSA");
            assert_eq!(jwk["use"], "sig");
            assert!(jwk.get("d").is_none(), "the private key is never published");
        }
        let kids: Vec<&str> = published.iter().filter_map(|jwk| jwk["kid"].as_str()).collect();
        assert_eq!(kids, ["k3", "k2", "k1"]);
    }

    #[test]
    fn a_token_verifies_with_the_key_published_in_the_jwks() {
        let keys = keys();
        let cfg = JwtConfig::default();
        let (token, _) = keys.issue(&cfg, Uuid::new_v4(), Uuid::new_v4(), t0()).expect("issue works");
        let jwks = keys.jwks();
        let x = jwks["keys"][0]["x"].as_str().expect("x is a string");
        let decoding_key = DecodingKey::from_ed_components(x).expect("x decodes");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_audience(&["rampart-api"]);

        assert!(jsonwebtoken::decode::<AccessClaims>(&token, &decoding_key, &validation).is_ok());
    }

    #[test]
    fn debug_output_of_a_signing_key_hides_the_key() {
        let key = key("k1");
        let encoded = key.to_pkcs8_base64();
        let debug = format!("{key:?}");

        assert!(!debug.contains(encoded.as_str()));
        assert!(!debug.contains(&encoded[..16]));
        assert!(debug.contains("[REDACTED]"));
        assert!(debug.contains("k1"));
        assert!(!format!("{:?}", keys()).contains(&encoded[..16]));
    }

    #[test]
    fn a_key_survives_a_base64_round_trip() {
        let original = key("k1");
        let encoded = original.to_pkcs8_base64();
        let loaded = SigningKey::from_pkcs8_base64("k1", &format!("{}\n", encoded.as_str())).expect("loads");

        assert_eq!(loaded.public_key_bytes(), original.public_key_bytes());
        let token = sign_raw(&original, &header_for("k1"), &good_claims().to_string());
        let keys = JwtKeys::new(loaded, Vec::new()).expect("one key");
        assert!(keys.verify(&JwtConfig::default(), &token, t0()).is_ok());
    }

    #[test]
    fn a_pkcs8_v1_key_from_openssl_loads_with_the_same_public_key() {
        let original = key("k1");
        let v1 = pkcs8_v1_from_v2(&original.pkcs8);
        let loaded = SigningKey::from_pkcs8_base64("k1", &STANDARD.encode(v1)).expect("v1 loads");

        assert_eq!(loaded.public_key_bytes(), original.public_key_bytes());
    }

    #[test]
    fn bad_key_material_is_refused() {
        assert!(matches!(SigningKey::from_pkcs8_base64("k1", "not base64!"), Err(JwtError::Key(_))));
        assert!(matches!(SigningKey::from_pkcs8_base64("k1", &STANDARD.encode([0_u8; 48])), Err(JwtError::Key(_))));
        assert!(matches!(SigningKey::from_pkcs8_base64("k1", ""), Err(JwtError::Key(_))));
    }

    #[test]
    fn a_pkcs8_v2_key_whose_public_key_does_not_match_is_refused() {
        let mut pkcs8 = key("k1").pkcs8.to_vec();
        let last = pkcs8.len() - 1;
        pkcs8[last] ^= 1;

        assert!(matches!(SigningKey::from_pkcs8_base64("k1", &STANDARD.encode(&pkcs8)), Err(JwtError::Key(_))));
    }

    #[test]
    fn bad_key_ids_are_refused() {
        for kid in [String::new(), "a b".to_owned(), "k\n1".to_owned(), "k".repeat(129)] {
            assert!(matches!(SigningKey::generate(kid.clone()), Err(JwtError::Key(_))), "kid {kid:?} must be refused");
        }
        assert!(SigningKey::generate("k".repeat(128)).is_ok());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let keys = keys();
        let good = sign_raw(keys.active(), &header_for("k1"), &good_claims().to_string());
        let oversized = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
        for token in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "not a token",
            &format!("{good}.extra"),
            &format!("{}.e30.", b64(b"not json")),
            &oversized,
        ] {
            assert_eq!(
                keys.verify(&JwtConfig::default(), token, t0()),
                Err(JwtError::Malformed),
                "{token:?} must be refused as malformed"
            );
        }
    }

    #[test]
    fn error_messages_never_contain_the_token_or_claim_values() {
        let keys = keys();
        let secretish = "SENSITIVE-CLAIM-VALUE";
        let payload = with(good_claims(), "sub", json!(secretish));
        let token = sign_raw(keys.active(), &header_for("k1"), &payload);
        let error = keys.verify(&JwtConfig::default(), &token, t0()).expect_err("a non-UUID subject is refused");
        let shown = format!("{error} {error:?}");

        assert!(!shown.contains(secretish));
        assert!(!shown.contains(&token[..20]));
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let keys = keys();
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let bad = [
            JwtConfig { issuer: String::new(), ..JwtConfig::default() },
            JwtConfig { audience: String::new(), ..JwtConfig::default() },
            JwtConfig { access_ttl: Duration::zero(), ..JwtConfig::default() },
            JwtConfig { access_ttl: Duration::hours(2), ..JwtConfig::default() },
            JwtConfig { leeway: Duration::seconds(-1), ..JwtConfig::default() },
            JwtConfig { leeway: Duration::minutes(10), ..JwtConfig::default() },
        ];
        for cfg in bad {
            assert!(matches!(keys.issue(&cfg, user, sid, t0()), Err(JwtError::Config(_))));
            assert!(matches!(keys.verify(&cfg, "a.b.c", t0()), Err(JwtError::Config(_))));
        }
        assert!(JwtConfig::default().validate().is_ok());
    }

    #[test]
    fn the_default_configuration_matches_the_documented_values() {
        let cfg = JwtConfig::default();

        assert_eq!(cfg.issuer, "rampart");
        assert_eq!(cfg.audience, "rampart-api");
        assert_eq!(cfg.access_ttl, Duration::minutes(15));
        assert_eq!(cfg.leeway, Duration::seconds(30));
    }
}
