//! Sign-in through OpenID Connect providers (Google first, any provider by configuration), with
//! the `openidconnect` client library.
//!
//! - The authorization-code flow with `state`, `nonce` and PKCE S256 (RFC 7636; OAuth 2.0
//!   Security BCP, RFC 9700 §2.1.1). All three live in `oidc_flows` — the state as a keyed hash,
//!   the nonce and verifier sealed with the server's vault key — so a restart or another replica
//!   completes the flow. A state works once (the callback deletes its row) and for
//!   [`FLOW_TTL`].
//! - A browser flow is bound to the browser that began it by a cookie whose hash the flow keeps
//!   (login CSRF: RFC 6749 §10.12). A native client's flow is bound to the client by its own PKCE
//!   challenge, which only it can answer (RFC 8252 §8.1), and ends at its loopback or
//!   private-use-scheme redirect (RFC 8252 §7.1, §7.3).
//! - The ID token is verified against the provider's JWKS: signature, issuer, audience, expiry
//!   and nonce (OpenID Connect Core 1.0 §3.1.3.7), and `at_hash` when present. The JWKS is
//!   fetched again once when a token names a key it does not hold (key rotation).
//! - An address is taken from a provider only when it says the address is verified.
//! - Provider requests go through the egress client: https only, redirects never followed.
//! - Provider tokens Rampart keeps are sealed with the server's vault key, bound to the identity;
//!   the default scopes (`openid email profile`) read the profile and nothing else.

mod exchange;
mod flow;
mod guards;
mod identities;
mod native;
mod providers;
mod sealed;
mod settle;
#[cfg(test)]
mod tests;

pub use crate::core::error::OidcError;
pub(crate) use flow::{callback, start};
pub use flow::{Completed, Purpose, Started, BROWSER_COOKIE, FLOW_TTL};
pub use identities::IdentityView;
pub(crate) use identities::{identities, provider_access_token, unlink_identity};
pub(crate) use native::native_token;
pub use native::NATIVE_CODE_TTL;
pub use providers::{provider_policy, OAuth2Endpoints, ProviderConfig, ProviderKind, Providers, GOOGLE_ISSUER};
