//! The key set: issuing and verifying tokens, rotation and the JWKS document.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ids::{SessionId, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use uuid::Uuid;

use super::claims::{AccessClaims, Holder, ReceivedClaims, ReceivedHeader};
use super::config::JwtConfig;
use super::error::JwtError;
use super::limits::{
    ACCESS_TOKEN_TYP, ACCESS_TOKEN_TYP_FULL, ALLOWED_ALGS, ALLOWED_ALG_NAME, LIBRARY_REQUIRED_CLAIMS, MAX_TOKEN_LEN,
};
use super::signing_key::SigningKey;

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
    pub(super) fn all(&self) -> impl Iterator<Item = &SigningKey> {
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
        user: UserId,
        sid: SessionId,
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
