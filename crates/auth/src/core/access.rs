//! Access tokens for API clients (short-lived JWTs) and the JWKS document that publishes their
//! verification keys.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use ids::{FamilyId, SessionId, UserId};
use sha2::{Digest, Sha256};
use storage::Clock;

use crate::core::authentication::Authentication;
use crate::core::error::AuthError;
use crate::core::jwt::{check_times, AccessClaims, Holder, JwtConfig, JwtKeys};

/// Tokens whose signature was checked, kept so a client presenting the same token again is not
/// made to pay an Ed25519 verification per request. Bounded: at most this many, then the expired
/// go, then all.
const VERIFIED_CAPACITY: usize = 16_384;

/// Access tokens this key set has already verified (all but the time checks), by the SHA-256 of
/// the whole compact token: any other byte string, however close, misses and is verified in
/// full. It lives and dies with its [`JwtKeys`], so a key that leaves the set takes its tokens'
/// entries with it; `exp`, `nbf` and `iat` are checked against the clock on every use.
#[derive(Default)]
struct Verified(Mutex<HashMap<[u8; 32], AccessClaims>>);

impl Verified {
    fn get(&self, digest: &[u8; 32]) -> Option<AccessClaims> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], claims: &AccessClaims, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            map.retain(|_, c| c.exp > now);
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        map.insert(digest, claims.clone());
    }
}

/// Issues and verifies access tokens with the configured keys, at the clock's time.
#[derive(Clone)]
pub struct AccessTokens {
    keys: Arc<JwtKeys>,
    cfg: JwtConfig,
    clock: Arc<dyn Clock>,
    verified: Arc<Verified>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(keys: JwtKeys, cfg: JwtConfig, clock: Arc<dyn Clock>) -> Result<AccessTokens, AuthError> {
        cfg.validate()?;
        Ok(AccessTokens { keys: Arc::new(keys), cfg, clock, verified: Arc::default() })
    }

    pub fn issue(&self, user: UserId, family: FamilyId) -> Result<(String, AccessClaims), AuthError> {
        // A token family is the session its access tokens name (`sid`).
        Ok(self.keys.issue(&self.cfg, user, SessionId(family.0), self.clock.now())?)
    }

    /// An access token for `holder` that carries the authentication of its sign-in (`auth_time`,
    /// `amr`).
    pub fn issue_authenticated(
        &self,
        holder: Holder,
        authentication: Option<&Authentication>,
    ) -> Result<(String, AccessClaims), AuthError> {
        let (at, amr) = match authentication {
            Some(a) => (Some(a.at), a.amr.as_slice()),
            None => (None, &[][..]),
        };
        Ok(self.keys.issue_authenticated(&self.cfg, holder, self.clock.now(), at, amr)?)
    }

    /// An access token for `holder` that lives `ttl` (at most the configuration's limit, one
    /// hour): the exchange of a credential for a short-lived, workspace-bound one.
    pub fn issue_for(
        &self,
        holder: Holder,
        authentication: Option<&Authentication>,
        ttl: chrono::Duration,
    ) -> Result<(String, AccessClaims), AuthError> {
        let cfg = JwtConfig { access_ttl: ttl, ..self.cfg.clone() };
        let (at, amr) = match authentication {
            Some(a) => (Some(a.at), a.amr.as_slice()),
            None => (None, &[][..]),
        };
        Ok(self.keys.issue_authenticated(&cfg, holder, self.clock.now(), at, amr)?)
    }

    /// How long an access token may be accepted after its issue: its lifetime plus the leeway.
    pub fn lifetime_with_leeway(&self) -> chrono::Duration {
        self.cfg.access_ttl + self.cfg.leeway
    }

    /// The claims of a valid access token: verified in full the first time this key set sees
    /// the token, then found by its digest; the time checks run on every call.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let now = self.clock.now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            check_times(&self.cfg, &claims, now)?;
            return Ok(claims);
        }
        let claims = self.keys.verify(&self.cfg, token, now)?;
        self.verified.insert(digest, &claims, now.timestamp());
        Ok(claims)
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    pub fn ttl_secs(&self) -> i64 {
        self.cfg.access_ttl.num_seconds()
    }
}

#[cfg(test)]
mod tests {
    use storage::ManualClock;

    use super::*;
    use crate::core::jwt::SigningKey;

    fn tokens(clock: Arc<ManualClock>) -> AccessTokens {
        let keys = JwtKeys::new(SigningKey::generate("k1").expect("key generation works"), Vec::new())
            .expect("a single key is a valid key set");
        AccessTokens::new(keys, JwtConfig::default(), clock).expect("the default configuration is valid")
    }

    fn start() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("the test instant is in range")
    }

    #[test]
    fn a_token_verified_before_is_still_refused_once_it_has_expired() {
        let clock = Arc::new(ManualClock::new(start()));
        let access = tokens(clock.clone());
        let (token, _) = access.issue(UserId::new_random(), FamilyId::new_random()).expect("issue works");
        assert!(access.verify_access(&token).is_ok());
        assert!(access.verify_access(&token).is_ok(), "the second use is served from the verified tokens");
        clock.advance(chrono::Duration::seconds(access.ttl_secs() + 3600));
        assert!(matches!(access.verify_access(&token), Err(AuthError::Jwt(crate::core::jwt::JwtError::Expired))));
    }

    #[test]
    fn a_token_differing_by_one_byte_from_a_verified_one_is_verified_in_full_and_refused() {
        let access = tokens(Arc::new(ManualClock::new(start())));
        let (token, _) = access.issue(UserId::new_random(), FamilyId::new_random()).expect("issue works");
        assert!(access.verify_access(&token).is_ok());
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("still ASCII");
        assert!(access.verify_access(&forged).is_err());
    }

    #[test]
    fn a_token_verified_by_one_key_set_is_refused_by_a_set_without_its_key() {
        let clock = Arc::new(ManualClock::new(start()));
        let first = tokens(clock.clone());
        let (token, _) = first.issue(UserId::new_random(), FamilyId::new_random()).expect("issue works");
        assert!(first.verify_access(&token).is_ok());
        let other = tokens(clock);
        assert!(other.verify_access(&token).is_err(), "a new key set starts with no verified tokens");
    }

    #[test]
    fn the_verified_tokens_stay_bounded() {
        let verified = Verified::default();
        let clock = Arc::new(ManualClock::new(start()));
        let access = tokens(clock);
        let (_, claims) = access.issue(UserId::new_random(), FamilyId::new_random()).expect("issue works");
        for n in 0..(VERIFIED_CAPACITY + 10) {
            let digest: [u8; 32] = Sha256::digest(n.to_le_bytes()).into();
            verified.insert(digest, &claims, start().timestamp());
        }
        let len = verified.0.lock().expect("not poisoned").len();
        assert!(len <= VERIFIED_CAPACITY, "{len} entries");
    }
}
