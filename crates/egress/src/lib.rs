//! Outbound HTTP guarded against server-side request forgery (OWASP ASVS 5.0 V1.3.6 and V13.2.4;
//! OWASP SSRF Prevention Cheat Sheet): a domain allow-list, https only, every resolved address
//! checked before it is connected to, and every redirect hop checked again. It knows no tenants,
//! and must never connect through an environment proxy or to an address it has not checked, nor
//! put a path, a query string or credentials in an error.
//!
//! The guard has three places, each covering what the others cannot see:
//!
//! - [`EgressPolicy::check_url`] runs before the first request and on every redirect hop: scheme,
//!   no credentials in the URL, host on the allow-list, IP-literal hosts (which are never resolved,
//!   so this is their only check) refused unless they are an exact exception.
//! - The DNS hook inside the client resolves a host name through the [`Resolver`], drops every
//!   forbidden address ([`is_forbidden_ip`]) and hands the connector only what remains, so the
//!   addresses checked are the addresses connected to (no time-of-check/time-of-use gap, no DNS
//!   rebinding between a check and the connection).
//! - The redirect policy counts hops and refuses past [`EgressPolicy::max_redirects`].
//!
//! Environment proxies are ignored (they would route around the filter) and the whole request,
//! connection included, is bounded by [`EgressPolicy::timeout`].

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod client;
mod error;
mod ip;
mod policy;
mod resolve;

pub use client::GuardedClient;
pub use error::EgressError;
pub use ip::is_forbidden_ip;
pub use policy::{is_internal_name, EgressPolicy, DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT};
pub use resolve::{BoxFuture, Resolver, StaticResolver, SystemResolver};
