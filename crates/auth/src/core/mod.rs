//! The core every flow stands on: accounts, passwords and their lockout, one-time tokens, session
//! and token-family records, revocation, second-factor checks, access tokens and their key set,
//! the session store, the clock and vault keys ([`context::Core`]), errors and event kinds. It
//! imports no flow.
//!
//! Layers, lowest first (a file uses only files of lower layers):
//! 1. `error`, `jwt`, `token`, `email`, `password`, `metrics`, `settings`, `events`,
//!    `authentication`, `totp`;
//! 2. `store`, `access`;
//! 3. `context`;
//! 4. `accounts`, `one_time`, `lockout`, `families`, `revocation`, `factors`;
//! 5. `sessions`;
//! 6. `completion`.

pub mod access;
pub(crate) mod accounts;
pub mod authentication;
pub(crate) mod completion;
pub(crate) mod context;
pub mod email;
pub(crate) mod error;
pub mod events;
pub(crate) mod factors;
pub(crate) mod families;
pub mod jwt;
pub(crate) mod lockout;
pub mod metrics;
pub(crate) mod one_time;
pub mod password;
pub(crate) mod revocation;
pub(crate) mod sessions;
pub(crate) mod settings;
pub mod store;
pub mod token;
pub mod totp;
