//! One module per flow. Each uses the core only ([`crate::core`]), never another flow: what two
//! flows share lives in the core.

pub mod api_keys;
pub mod mfa;
pub mod oidc;
pub mod operator;
pub(crate) mod purge;
pub(crate) mod refresh;
pub(crate) mod reset;
pub(crate) mod sessions;
pub(crate) mod signin;
pub(crate) mod signup;
pub mod stepup;
