//! Rampart's accounts and their credentials: sign-up, passwords, sign-in (by password, through an
//! OpenID Connect provider, with a second factor), browser sessions, API clients' token families
//! and access tokens, step-up, API keys, and the revocation of all of them. The crate owns the
//! rows and store entries behind those and the rules that guard them; it never speaks HTTP (the
//! api crate maps [`AuthError`] to statuses), never panics on bad input outside tests, and never
//! keeps a token, password or secret in the clear: tokens as keyed hashes, passwords as bcrypt
//! hashes, secrets sealed with the vault key.
//!
//! The code map: `core/` is what every flow stands on (accounts, credentials, session and token
//! records, the clock and vault keys, the key set, the store) and imports no flow; `flows/` holds
//! one module per flow, each using the core only; [`AuthService`] (`service.rs`) is the façade
//! other crates call, handing each request to a flow. No file imports another that imports it back.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod core;
mod flows;
pub mod service;

pub use crate::core::{access, email, jwt, metrics, password, store, token};
pub use crate::flows::{api_keys, mfa, oidc, operator, stepup};

/// A user's credentials as one set: browser sessions and API clients' token families.
pub mod credentials {
    pub use crate::core::revocation::{Ended, EXCHANGED_TTL_MAX};
    pub use crate::flows::sessions::{Credential, CredentialKind};
}

pub use crate::core::access::AccessTokens;
pub use crate::core::authentication::{Authentication, STEP_UP_MAX_AGE};
pub use crate::core::error::AuthError;
pub use credentials::{Credential, CredentialKind, Ended};
pub use service::{AuthService, AuthSettings, RequestMeta, Revoke, SessionPrincipal, SignupMode};
