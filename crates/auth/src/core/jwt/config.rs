//! The issuer, audience, lifetime and leeway shared by issuing and verification.

use chrono::Duration;

use super::error::JwtError;
use super::limits::{MAX_ACCESS_TTL, MAX_LEEWAY};

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
