//! The HTTP layer: routes, middleware, the one error shape and the API description.
//!
//! This is the only crate that knows poem, HTTP status codes or headers. Domain crates return their
//! own error enums; [`error`] maps them to stable codes in one place.
//! It must never put an unexpected error's cause in a response (every 500 is opaque), nor reach
//! a workspace's data except through `routes::scope::Scope`.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod codes;
pub mod config;
pub mod contract;
mod csrf;
pub mod describe;
pub mod error;
mod forwarded;
pub mod metrics;
mod middleware;
pub mod principal;
mod routes;
pub mod server;
mod state;

pub use config::{HttpConfig, SecurityTxtConfig, TrustedProxies};
pub use routes::{build_app, openapi_json, render_security_txt};
pub use state::{AppState, Assembly, Egress};
