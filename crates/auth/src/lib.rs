//! Accounts, passwords, sessions and tokens.
//!
//! Knows no HTTP: it returns `AuthError`, which `api` maps. It must never store a token, password
//! or link in clear.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod api_keys;
pub mod credentials;
pub mod email;
mod error;
pub mod jwt;
pub mod metrics;
pub mod mfa;
pub mod oidc;
pub mod operator;
pub mod password;
pub mod service;
pub mod stepup;
pub mod store;
pub mod token;

pub use access::AccessTokens;
pub use credentials::{Credential, CredentialKind, Ended};
pub use error::AuthError;
pub use service::{AuthService, AuthSettings, RequestMeta, Revoke, SessionPrincipal, SignupMode};
pub use stepup::{Authentication, STEP_UP_MAX_AGE};
