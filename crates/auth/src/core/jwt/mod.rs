//! Short-lived EdDSA (Ed25519) JWT access tokens: issuing, verification, key rotation and JWKS.

mod claims;
mod config;
mod error;
mod keys;
mod limits;
mod signing_key;
#[cfg(test)]
mod tests;

pub use claims::{AccessClaims, Holder};
pub use config::JwtConfig;
pub use error::JwtError;
pub use keys::{check_times, JwtKeys};
pub use signing_key::SigningKey;
