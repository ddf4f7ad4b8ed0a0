//! Access tokens for API clients (short-lived JWTs) and the JWKS document that publishes their
//! verification keys.

use std::sync::Arc;

use storage::Clock;
use uuid::Uuid;

use crate::{
    jwt::{AccessClaims, JwtConfig, JwtKeys},
    AuthError,
};

/// Issues and verifies access tokens with the configured keys, at the clock's time.
#[derive(Clone)]
pub struct AccessTokens {
    keys: Arc<JwtKeys>,
    cfg: JwtConfig,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(keys: JwtKeys, cfg: JwtConfig, clock: Arc<dyn Clock>) -> Result<AccessTokens, AuthError> {
        cfg.validate()?;
        Ok(AccessTokens { keys: Arc::new(keys), cfg, clock })
    }

    pub fn issue(&self, user: Uuid, family: Uuid) -> Result<(String, AccessClaims), AuthError> {
        Ok(self.keys.issue(&self.cfg, user, family, self.clock.now())?)
    }

    /// An access token that carries the authentication of its sign-in (`auth_time`, `amr`).
    pub fn issue_authenticated(
        &self,
        user: Uuid,
        family: Uuid,
        authentication: Option<&crate::stepup::Authentication>,
    ) -> Result<(String, AccessClaims), AuthError> {
        let (at, amr) = match authentication {
            Some(a) => (Some(a.at), a.amr.as_slice()),
            None => (None, &[][..]),
        };
        Ok(self.keys.issue_authenticated(&self.cfg, user, family, self.clock.now(), at, amr)?)
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthError> {
        Ok(self.keys.verify(&self.cfg, token, self.clock.now())?)
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    pub fn ttl_secs(&self) -> i64 {
        self.cfg.access_ttl.num_seconds()
    }
}
