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

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::email::EmailAddress;
use crate::mfa::{Flow, SignIn};
use crate::service::{stmt, AuthService, NewSession, RequestMeta, SignupMode, TokenPair};
use crate::stepup::{amr, Authentication};
use crate::{token, AuthError};

/// An authorization request may take ten minutes between its start and its callback
/// (RFC 6749 §4.1.2 recommends codes live at most ten minutes; the state is held to the same).
pub const FLOW_TTL: Duration = Duration::minutes(10);
/// The code a native client exchanges lives one minute and works once (RFC 6749 §4.1.2).
pub const NATIVE_CODE_TTL: Duration = Duration::minutes(1);
/// Times a provider sign-in's account transaction runs before a lost race to create the account
/// is reported (the second run finds the winner's account).
const SETTLE_ATTEMPTS: u32 = 3;
/// Provider metadata and keys are fetched again after an hour, or for an unknown key (at most
/// once a minute, so forged tokens cannot make Rampart hammer the provider).
const METADATA_TTL: Duration = Duration::hours(1);
const METADATA_REFRESH_COOLDOWN: Duration = Duration::minutes(1);
/// Largest provider answer read (discovery, keys, tokens).
const MAX_PROVIDER_BODY: usize = 256 * 1024;
/// Google's issuer (https://accounts.google.com/.well-known/openid-configuration).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// ID-token signature algorithms accepted: RSA, RSA-PSS, ECDSA and EdDSA (asymmetric only).
const ID_TOKEN_ALGS: &[openidconnect::core::CoreJwsSigningAlgorithm] = {
    use openidconnect::core::CoreJwsSigningAlgorithm as A;
    &[
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
        A::EcdsaP521Sha512,
        A::EdDsa,
    ]
};
/// Clock difference tolerated with a provider (RFC 7519 §4.1.4 allows "a small leeway").
const ID_TOKEN_LEEWAY: Duration = Duration::minutes(5);

const STATE_PURPOSE: &str = "oidc_state";
/// Each sealed value is bound to its purpose and its row, so no ciphertext opens in another
/// column or another row (the vault key also seals TOTP secrets and outbox payloads).
const AAD_NONCE: &[u8] = b"oidc.flow.nonce|";
const AAD_VERIFIER: &[u8] = b"oidc.flow.verifier|";
const AAD_ACCESS: &[u8] = b"oidc.identity.access_token|";
const AAD_REFRESH: &[u8] = b"oidc.identity.refresh_token|";

fn aad(purpose: &[u8], row: &[u8]) -> Vec<u8> {
    [purpose, row].concat()
}
const BROWSER_PURPOSE: &str = "oidc_browser";
const NATIVE_CODE_PURPOSE: &str = "oidc_native_code";

/// Provider requests: any public host (the operator names the providers; Google's endpoints span
/// several domains), never a private address, https only, no redirects followed (the
/// `openidconnect` guidance against SSRF), a 10 s deadline. `exceptions` are loopback addresses
/// for tests only.
pub fn provider_policy(exceptions: &[std::net::SocketAddr]) -> egress::EgressPolicy {
    egress::EgressPolicy {
        timeout: std::time::Duration::from_secs(10),
        max_redirects: 0,
        ..egress::EgressPolicy::public_internet()
    }
    .with_test_exceptions(exceptions)
}

/// Why a provider sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no identity provider is configured under that name")]
    UnknownProvider,
    #[error("the sign-in state is unknown, expired, already used or was begun in another browser")]
    InvalidState,
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    ProviderUnavailable(String),
    #[error("the identity provider refused the authorization code")]
    CodeRejected,
    #[error("the identity provider's ID token failed verification: {0}")]
    InvalidIdToken(String),
    #[error("the identity provider did not say the e-mail address is verified")]
    EmailUnverified,
    #[error("an account with this e-mail address exists: sign in to it and link the provider from its settings")]
    AccountExists,
    #[error("this provider identity belongs to another account")]
    IdentityInUse,
    #[error("re-authenticate with the provider identity linked to this account")]
    IdentityMismatch,
    #[error("the account would have no way left to sign in")]
    LastSignInMethod,
    #[error("no such identity")]
    IdentityNotFound,
    #[error("native client request refused: {0}")]
    InvalidNativeRequest(&'static str),
    #[error("this provider's addresses are not trusted here: sign in to your account and link the provider")]
    EmailUntrusted,
    #[error("this account has a password or a second factor: re-authenticate with them")]
    ReauthenticateLocally,
    #[error("the authorization answer names another issuer than this provider (RFC 9207)")]
    IssuerMismatch,
}

impl From<OidcError> for AuthError {
    fn from(err: OidcError) -> AuthError {
        AuthError::Oidc(err)
    }
}

/// One provider, as configured.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The name in URLs (`/auth/oidc/{name}/…`): lower-case letters, digits and `-`.
    pub name: String,
    /// The issuer; its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Scopes beyond `openid`; default `email profile` (read-only).
    pub scopes: Vec<String>,
    /// Rampart's callback as registered at the provider:
    /// `{public_url}/api/v1/auth/oidc/{name}/callback`.
    pub redirect_uri: String,
    /// OpenID Connect (the default), or plain OAuth 2.0 with a user-info endpoint (GitHub-style).
    pub kind: ProviderKind,
    /// Whether this provider's word that an address is verified is taken: then a first sign-in
    /// creates the account of that address, or takes over its unverified one. Only for
    /// providers that verify every address they vouch for (Google does); otherwise their
    /// identities sign in only to accounts that linked them.
    pub trust_email: bool,
}

/// How a provider says who the user is.
#[derive(Debug, Clone, Default)]
pub enum ProviderKind {
    /// A verified ID token (`issuer` is read for discovery and keys).
    #[default]
    OpenIdConnect,
    /// Plain OAuth 2.0: no ID token, so no nonce and no proof of a fresh authentication; the
    /// user is whom the user-info endpoint names when called with the access token, over TLS.
    OAuth2(OAuth2Endpoints),
}

/// The endpoints of a plain OAuth 2.0 provider.
#[derive(Debug, Clone)]
pub struct OAuth2Endpoints {
    pub authorization_url: String,
    pub token_url: String,
    /// Answers the user as JSON for the access token (GitHub: `https://api.github.com/user`).
    pub userinfo_url: String,
    /// Where addresses and their verification are listed (GitHub:
    /// `https://api.github.com/user/emails`: the primary verified one is taken). Without it the
    /// user-info answer's `email` counts only when its `email_verified` is `true`.
    pub emails_url: Option<String>,
    /// The user-info member that identifies the user for good (GitHub: `id`; OpenID: `sub`).
    pub subject_field: String,
}

impl OAuth2Endpoints {
    /// GitHub's OAuth app endpoints.
    pub fn github() -> OAuth2Endpoints {
        OAuth2Endpoints {
            authorization_url: "https://github.com/login/oauth/authorize".into(),
            token_url: "https://github.com/login/oauth/access_token".into(),
            userinfo_url: "https://api.github.com/user".into(),
            emails_url: Some("https://api.github.com/user/emails".into()),
            subject_field: "id".into(),
        }
    }
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("kind", &self.kind)
            .field("trust_email", &self.trust_email)
            .finish_non_exhaustive()
    }
}

impl ProviderConfig {
    /// Refuses a configuration that cannot work safely.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!("provider name {:?}: use 1-32 lower-case letters, digits or '-'", self.name));
        }
        match &self.kind {
            ProviderKind::OpenIdConnect => {
                IssuerUrl::new(self.issuer.clone()).map_err(|e| format!("provider {}: issuer: {e}", self.name))?;
            }
            ProviderKind::OAuth2(endpoints) => {
                let urls =
                    [Some(&endpoints.authorization_url), Some(&endpoints.token_url), Some(&endpoints.userinfo_url)];
                for url in urls.into_iter().flatten().chain(endpoints.emails_url.as_ref()) {
                    url::Url::parse(url).map_err(|e| format!("provider {}: {url}: {e}", self.name))?;
                }
                if endpoints.subject_field.is_empty() {
                    return Err(format!("provider {}: subject_field is required", self.name));
                }
            }
        }
        RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|e| format!("provider {}: redirect_uri: {e}", self.name))?;
        if self.client_id.is_empty() || self.client_secret.expose_secret().is_empty() {
            return Err(format!("provider {}: client_id and client_secret are required", self.name));
        }
        Ok(())
    }
}

struct Provider {
    cfg: ProviderConfig,
    /// The discovery document with its keys, and when it was fetched (the service's clock).
    metadata: tokio::sync::Mutex<Option<(DateTime<Utc>, CoreProviderMetadata)>>,
}

/// The configured providers and the client that reaches them.
#[derive(Clone)]
pub struct Providers {
    providers: Arc<HashMap<String, Provider>>,
    http: Option<egress::GuardedClient>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("names", &self.providers.keys().collect::<Vec<_>>()).finish()
    }
}

impl Providers {
    /// No provider: every OIDC route answers 404 `unknown_provider`.
    pub fn none() -> Providers {
        Providers { providers: Arc::new(HashMap::new()), http: None }
    }

    /// The providers, reached through `http` (an egress client whose policy allows their hosts).
    pub fn new(configs: Vec<ProviderConfig>, http: egress::GuardedClient) -> Result<Providers, String> {
        let mut providers = HashMap::new();
        for cfg in configs {
            cfg.validate()?;
            let name = cfg.name.clone();
            if providers.insert(name.clone(), Provider { cfg, metadata: tokio::sync::Mutex::new(None) }).is_some() {
                return Err(format!("provider {name} is configured twice"));
            }
        }
        Ok(Providers { providers: Arc::new(providers), http: Some(http) })
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.providers.keys().cloned().collect();
        names.sort();
        names
    }

    fn get(&self, name: &str) -> Result<(&Provider, &egress::GuardedClient), OidcError> {
        match (self.providers.get(name), &self.http) {
            (Some(provider), Some(http)) => Ok((provider, http)),
            _ => Err(OidcError::UnknownProvider),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpFailure(String);

/// One provider request through the egress client (the `openidconnect` HTTP interface).
async fn send(
    http: &egress::GuardedClient,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpFailure> {
    let (parts, body) = request.into_parts();
    let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| HttpFailure(e.to_string()))?;
    let mut outgoing = reqwest::Request::new(parts.method, url);
    *outgoing.headers_mut() = parts.headers;
    *outgoing.body_mut() = Some(body.into());
    let mut response = http.send(outgoing).await.map_err(|e| HttpFailure(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpFailure(e.to_string()))? {
        if body.len() + chunk.len() > MAX_PROVIDER_BODY {
            return Err(HttpFailure("provider answer too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut answer = http::Response::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// The `openidconnect` HTTP interface over the egress client. A named type with a boxed `Send`
/// future (rather than a closure) keeps the callers' futures `Send`.
struct ProviderHttp<'a>(&'a egress::GuardedClient);

impl<'c> openidconnect::AsyncHttpClient<'c> for ProviderHttp<'_> {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpFailure>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(self.0, request))
    }
}

impl Provider {
    /// The discovery document with its keys, cached for an hour; `fresh` fetches it again.
    /// The discovery document with its keys, cached for an hour; `fresh` asks for it again (for
    /// a key the cached set lacks), which is done at most once a minute. Held under the lock
    /// while fetching, so concurrent sign-ins wait for one fetch instead of each making one.
    async fn metadata(
        &self,
        http: &egress::GuardedClient,
        now: DateTime<Utc>,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref() {
            let age = now - *at;
            if age < METADATA_TTL && (!fresh || age < METADATA_REFRESH_COOLDOWN) {
                return Ok(metadata.clone());
            }
        }
        let issuer =
            IssuerUrl::new(self.cfg.issuer.clone()).map_err(|e| OidcError::ProviderUnavailable(e.to_string()))?;
        let client = ProviderHttp(http);
        // Checks that the document names exactly this issuer (OpenID Connect Discovery 1.0 §4.3).
        let metadata = CoreProviderMetadata::discover_async(issuer, &client)
            .await
            .map_err(|e| OidcError::ProviderUnavailable(format!("discovery: {e}")))?;
        *cached = Some((now, metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.cfg.redirect_uri.clone())
            .map_err(|e| OidcError::ProviderUnavailable(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(self.cfg.client_secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }
}

/// What a flow is for.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// A browser signs in (or up).
    SignIn,
    /// A native or desktop client signs in: it finishes at `redirect_uri` with a one-minute code
    /// that only the holder of its PKCE verifier can exchange.
    Native { redirect_uri: String, code_challenge: String, state: String },
    /// A signed-in user links an identity at the provider to their account, from `session` (a
    /// session or token family, which must still be live at the callback).
    Link { user: Uuid, session: Uuid },
    /// A signed-in user re-authenticates with the provider (accounts without local factors).
    Reauth { user: Uuid, session: Uuid },
}

impl Purpose {
    fn as_str(&self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::Native { .. } => "native",
            Purpose::Link { .. } => "link",
            Purpose::Reauth { .. } => "reauth",
        }
    }
}

/// A flow just begun: send the user to `authorization_url`; a browser flow also sets the
/// binding cookie to `browser_binding`.
#[derive(Debug)]
pub struct Started {
    pub authorization_url: String,
    pub browser_binding: Option<SecretString>,
    pub expires_in: i64,
}

/// How a callback ended.
pub enum Completed {
    /// A browser session (or the second-factor challenge that completes it).
    SignedIn(SignIn<NewSession>),
    /// The native client's redirect, carrying its code and its state.
    Native {
        redirect: url::Url,
    },
    Linked {
        user: Uuid,
    },
    Reauthenticated {
        user: Uuid,
    },
}

impl std::fmt::Debug for Completed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Completed::SignedIn(SignIn::Done(session)) => f.debug_tuple("SignedIn").field(&session.record.id).finish(),
            Completed::SignedIn(SignIn::SecondFactor(_)) => f.write_str("SecondFactor"),
            // The redirect carries the one-time code.
            Completed::Native { .. } => f.write_str("Native { .. }"),
            Completed::Linked { user } => f.debug_struct("Linked").field("user", user).finish(),
            Completed::Reauthenticated { user } => f.debug_struct("Reauthenticated").field("user", user).finish(),
        }
    }
}

/// An identity at a provider, as shown to its account.
#[derive(Debug, Clone)]
pub struct IdentityView {
    pub id: Uuid,
    pub provider: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// What the verified ID token and the token answer said.
struct Verified {
    /// Whose subject it is: the issuer (OpenID Connect) or the token endpoint's origin (OAuth 2.0).
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
    auth_time: Option<DateTime<Utc>>,
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_at: Option<DateTime<Utc>>,
}

pub(crate) mod events {
    pub const OIDC_SIGNUP: &str = "oidc_signup";
    pub const OIDC_UNVERIFIED_PASSWORD_CLEARED: &str = "oidc_unverified_password_cleared";
    pub const IDENTITY_LINKED: &str = "identity_linked";
    pub const IDENTITY_UNLINKED: &str = "identity_unlinked";
    pub const OIDC_REFUSED: &str = "oidc_refused";
}

type OAuth2Client = oauth2::basic::BasicClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
>;

fn oauth2_client(cfg: &ProviderConfig, endpoints: &OAuth2Endpoints) -> Result<OAuth2Client, OidcError> {
    let bad = |e: url::ParseError| OidcError::ProviderUnavailable(e.to_string());
    Ok(oauth2::basic::BasicClient::new(ClientId::new(cfg.client_id.clone()))
        .set_client_secret(ClientSecret::new(cfg.client_secret.expose_secret().to_owned()))
        .set_auth_uri(openidconnect::AuthUrl::new(endpoints.authorization_url.clone()).map_err(bad)?)
        .set_token_uri(openidconnect::TokenUrl::new(endpoints.token_url.clone()).map_err(bad)?)
        .set_redirect_uri(RedirectUrl::new(cfg.redirect_uri.clone()).map_err(bad)?))
}

/// `scheme://host[:port]` of a URL: whose subjects a plain OAuth 2.0 provider's are.
fn origin(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| url.to_owned())
}

/// A JSON answer of a provider's API for the user's access token.
async fn provider_json(http: &egress::GuardedClient, url: &str, access: &str) -> Result<serde_json::Value, OidcError> {
    let unavailable = |e: String| OidcError::ProviderUnavailable(e);
    let request = http::Request::get(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {access}"))
        .header(http::header::ACCEPT, "application/json")
        // GitHub's API refuses requests without one.
        .header(http::header::USER_AGENT, "Rampart")
        .body(Vec::new())
        .map_err(|e| unavailable(e.to_string()))?;
    let answer = send(http, request).await.map_err(|e| unavailable(e.0))?;
    if !answer.status().is_success() {
        return Err(unavailable(format!("{} answered {}", origin(url), answer.status())));
    }
    serde_json::from_slice(answer.body()).map_err(|e| unavailable(format!("{}: {e}", origin(url))))
}

/// Linking and re-authentication ask the provider to authenticate the user afresh (`prompt=login`,
/// `max_age=0`); its `auth_time` must say it did, after the flow began (OpenID Connect Core 1.0
/// §3.1.2.1: `auth_time` is required when `max_age` was requested).
fn authenticated_afresh(verified: &Verified, began: DateTime<Utc>) -> Result<(), OidcError> {
    match verified.auth_time {
        Some(at) if at + ID_TOKEN_LEEWAY >= began => Ok(()),
        _ => Err(OidcError::InvalidIdToken("the provider did not authenticate the user afresh".into())),
    }
}

/// RFC 8252 §7.3 (loopback IP, any port; `localhost` is not recommended, §8.3) or §7.1 (a
/// private-use scheme in reverse domain name form, such as `com.example.app:/callback`).
fn native_redirect_ok(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    native_redirect_shape_ok(&url)
}

/// A registered native client's redirect: the same URI, or for loopback the same URI on any port
/// (RFC 8252 §7.3: the port is chosen when the client runs).
fn native_redirect_registered(uri: &str, registered: &[String]) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    let portless = |u: &url::Url| {
        let mut u = u.clone();
        if u.scheme() == "http" {
            let _ = u.set_port(None);
        }
        u.to_string()
    };
    let wanted = portless(&url);
    registered.iter().filter_map(|r| url::Url::parse(r).ok()).any(|r| portless(&r) == wanted)
}

fn native_redirect_shape_ok(url: &url::Url) -> bool {
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "http" => {
            matches!(
                url.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        }
        "https" | "javascript" | "data" | "file" => false,
        scheme => scheme.contains('.') && url.host().is_none(),
    }
}

/// A PKCE S256 challenge: 43 base64url characters (RFC 7636 §4.2).
fn challenge_ok(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time (RFC 7636 §4.6).
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine as _;
    // RFC 7636 §4.1: 43 to 128 unreserved characters.
    let shape = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shape & bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

impl AuthService {
    pub fn oidc_providers(&self) -> Vec<String> {
        self.oidc.names()
    }

    /// Opens a sealed text value (see [`AuthService::open_with_vault_keys`]).
    fn open_text(&self, aad: &[u8], sealed: &str) -> Result<String, AuthError> {
        let (plain, _) = self.open_with_vault_keys(aad, sealed)?;
        String::from_utf8(plain.to_vec()).map_err(|_| AuthError::Internal("a sealed sign-in value is not text".into()))
    }

    /// Begins a flow at `provider`: the authorization URL to send the user to.
    pub async fn oidc_start(&self, provider: &str, purpose: Purpose) -> Result<Started, AuthError> {
        let (provider, http) = self.oidc.get(provider)?;
        if let Purpose::Native { redirect_uri, code_challenge, state } = &purpose {
            if !native_redirect_ok(redirect_uri) {
                return Err(OidcError::InvalidNativeRequest(
                    "redirect_uri must be a loopback http URL (http://127.0.0.1:PORT/…) or a private-use scheme",
                )
                .into());
            }
            // Only registered clients: otherwise anyone could send a victim's code to whatever
            // listens on some port or claims some scheme (RFC 8252 §8.6).
            if !native_redirect_registered(redirect_uri, &self.settings.native_redirect_uris) {
                return Err(OidcError::InvalidNativeRequest(
                    "redirect_uri is not one of the native clients registered in auth.native_redirect_uris",
                )
                .into());
            }
            if !challenge_ok(code_challenge) {
                return Err(OidcError::InvalidNativeRequest("code_challenge must be an S256 challenge").into());
            }
            if state.is_empty() || state.len() > 512 || !state.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(OidcError::InvalidNativeRequest("state must be 1-512 visible ASCII characters").into());
            }
        }
        if let Purpose::Reauth { user, .. } = &purpose {
            self.refuse_if_local_factors(*user).await?;
        }
        let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = match &provider.cfg.kind {
            ProviderKind::OpenIdConnect => self.oidc_authorization(provider, http, &purpose, pkce_challenge).await?,
            ProviderKind::OAuth2(endpoints) => {
                let (url, state) = oauth2_client(&provider.cfg, endpoints)?
                    .authorize_url(CsrfToken::new_random)
                    .add_scopes(provider.cfg.scopes.iter().cloned().map(Scope::new))
                    .set_pkce_challenge(pkce_challenge)
                    .url();
                // No ID token will carry it; stored all the same so every flow has the same shape.
                (url, state, Nonce::new_random())
            }
        };
        let state_hash = self.tokens.hash(STATE_PURPOSE, state.secret());
        let browser = match purpose {
            Purpose::Native { .. } => None,
            _ => Some(token::generate()),
        };
        let now = self.clock.now();

        let (user, session, native) = match &purpose {
            Purpose::SignIn => (None, None, None),
            Purpose::Native { redirect_uri, code_challenge, state } => {
                (None, None, Some((redirect_uri, code_challenge, state)))
            }
            Purpose::Link { user, session } => (Some(*user), Some(*session), None),
            Purpose::Reauth { user, session } => (Some(*user), Some(*session), None),
        };
        self.db
            .conn()
            .execute(stmt(
                self.db.conn(),
                "INSERT INTO oidc_flows (state_hash, provider, purpose, browser_hash, user_id, session_id, nonce_ciphertext,
                                         verifier_ciphertext, native_redirect_uri, native_challenge, native_state, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                vec![
                    state_hash.clone().into(),
                    provider.cfg.name.clone().into(),
                    purpose.as_str().into(),
                    browser.as_ref().map(|b| self.tokens.hash(BROWSER_PURPOSE, b)).into(),
                    user.into(),
                    session.into(),
                    self.seal_with_vault_key(&aad(AAD_NONCE, state_hash.as_bytes()), nonce.secret().as_bytes())?.into(),
                    self.seal_with_vault_key(&aad(AAD_VERIFIER, state_hash.as_bytes()), pkce_verifier.secret().as_bytes())?.into(),
                    native.map(|n| n.0.clone()).into(),
                    native.map(|n| n.1.clone()).into(),
                    native.map(|n| n.2.clone()).into(),
                    now.into(),
                    (now + FLOW_TTL).into(),
                ],
            ))
            .await?;
        Ok(Started {
            authorization_url: url.to_string(),
            browser_binding: browser.map(SecretString::from),
            expires_in: FLOW_TTL.num_seconds(),
        })
    }

    /// The authorization URL of an OpenID Connect provider, with the nonce it must echo.
    async fn oidc_authorization(
        &self,
        provider: &Provider,
        http: &egress::GuardedClient,
        purpose: &Purpose,
        pkce_challenge: PkceCodeChallenge,
    ) -> Result<(url::Url, CsrfToken, Nonce), AuthError> {
        let client = provider.client(provider.metadata(http, self.clock.now(), false).await?)?;
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(pkce_challenge)
            // OpenID Connect Core 1.0 §5.5.1: ask for `auth_time`, so a sign-in counts as a
            // recent authentication only when the provider says it authenticated the user.
            .add_extra_param("claims", r#"{"id_token":{"auth_time":{"essential":true}}}"#);
        let scopes = if provider.cfg.scopes.is_empty() {
            vec!["email".to_owned(), "profile".to_owned()]
        } else {
            provider.cfg.scopes.clone()
        };
        for scope in scopes {
            request = request.add_scope(Scope::new(scope));
        }
        if matches!(purpose, Purpose::Reauth { .. } | Purpose::Link { .. }) {
            // The provider must authenticate the user now, not reuse its own session
            // (OpenID Connect Core 1.0 §3.1.2.1).
            request = request.add_prompt(CoreAuthPrompt::Login).set_max_age(std::time::Duration::ZERO);
        }
        Ok(request.url())
    }

    /// The provider's redirect back: `code` and `state`, and the browser's binding cookie.
    pub async fn oidc_callback(
        &self,
        provider_name: &str,
        code: &str,
        state: &str,
        issuer: Option<&str>,
        browser: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Completed, AuthError> {
        let (provider, http) = self.oidc.get(provider_name)?;
        // RFC 9207: a provider that names itself in the answer must name itself.
        if issuer.is_some_and(|iss| iss.trim_end_matches('/') != provider.cfg.issuer.trim_end_matches('/')) {
            return Err(OidcError::IssuerMismatch.into());
        }
        let state_hash = self.tokens.hash(STATE_PURPOSE, state);
        let now = self.clock.now();
        // Deleting the row is what makes the state single use, also when two callbacks race.
        let flow = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "DELETE FROM oidc_flows WHERE state_hash = $1 AND provider = $2
                  RETURNING purpose, browser_hash, user_id, session_id, nonce_ciphertext, verifier_ciphertext,
                            native_redirect_uri, native_challenge, native_state, created_at, expires_at",
                vec![state_hash.clone().into(), provider_name.into()],
            ))
            .await?
            .ok_or(OidcError::InvalidState)?;
        let expires: DateTime<Utc> = flow.try_get("", "expires_at")?;
        let bound: Option<String> = flow.try_get("", "browser_hash")?;
        let browser_ok = match (&bound, browser) {
            (None, _) => true,
            (Some(expected), Some(cookie)) => {
                bool::from(self.tokens.hash(BROWSER_PURPOSE, cookie).as_bytes().ct_eq(expected.as_bytes()))
            }
            (Some(_), None) => false,
        };
        if expires <= now || !browser_ok {
            return Err(OidcError::InvalidState.into());
        }
        let nonce =
            self.open_text(&aad(AAD_NONCE, state_hash.as_bytes()), &flow.try_get::<String>("", "nonce_ciphertext")?)?;
        let verifier = self.open_text(
            &aad(AAD_VERIFIER, state_hash.as_bytes()),
            &flow.try_get::<String>("", "verifier_ciphertext")?,
        )?;
        let verified = match self.exchange(provider, http, code, nonce, verifier).await {
            Ok(verified) => verified,
            Err(err) => {
                self.record_refusal(provider_name, &err, meta).await?;
                return Err(err);
            }
        };
        let purpose: String = flow.try_get("", "purpose")?;
        let flow_user: Option<Uuid> = flow.try_get("", "user_id")?;
        let began: DateTime<Utc> = flow.try_get("", "created_at")?;
        // When the provider authenticated the user (never later than now); unknown for plain
        // OAuth 2.0 and for providers that do not say, which then never counts as recent.
        let authenticated_at = verified.auth_time.map(|t| t.min(now));
        let outcome = match purpose.as_str() {
            "sign_in" => {
                let user = self.settle_sign_in(&provider.cfg, &verified, meta).await?;
                match self.challenge_if_enrolled(user, Flow::Session, amr::FEDERATED).await? {
                    Some(challenge) => Completed::SignedIn(SignIn::SecondFactor(challenge)),
                    None => Completed::SignedIn(SignIn::Done(
                        self.finish_sign_in(user, meta, &[amr::FEDERATED], authenticated_at).await?,
                    )),
                }
            }
            "native" => {
                let user = self.settle_sign_in(&provider.cfg, &verified, meta).await?;
                let redirect_uri: String =
                    flow.try_get::<Option<String>>("", "native_redirect_uri")?.unwrap_or_default();
                let challenge: String = flow.try_get::<Option<String>>("", "native_challenge")?.unwrap_or_default();
                let client_state: String = flow.try_get::<Option<String>>("", "native_state")?.unwrap_or_default();
                let code = token::generate();
                self.db
                    .conn()
                    .execute(stmt(
                        self.db.conn(),
                        "INSERT INTO oidc_native_codes (code_hash, user_id, challenge, redirect_uri, amr, auth_time, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        vec![
                            self.tokens.hash(NATIVE_CODE_PURPOSE, &code).into(),
                            user.into(),
                            challenge.into(),
                            redirect_uri.clone().into(),
                            amr::FEDERATED.into(),
                            authenticated_at.into(),
                            (now + NATIVE_CODE_TTL).into(),
                        ],
                    ))
                    .await?;
                let mut redirect = url::Url::parse(&redirect_uri).map_err(|e| AuthError::Internal(e.to_string()))?;
                redirect.query_pairs_mut().append_pair("code", &code).append_pair("state", &client_state);
                Completed::Native { redirect }
            }
            "link" => {
                let user = flow_user.ok_or_else(|| AuthError::Internal("link flow without its user".into()))?;
                let session: Option<Uuid> = flow.try_get("", "session_id")?;
                // A sign-out, password change or revocation since the start cancels the link.
                self.require_live(user, session).await?;
                if matches!(provider.cfg.kind, ProviderKind::OpenIdConnect) {
                    authenticated_afresh(&verified, began)?;
                }
                self.settle_link(provider_name, user, &verified, meta).await?;
                Completed::Linked { user }
            }
            "reauth" => {
                let user =
                    flow_user.ok_or_else(|| AuthError::Internal("re-authentication flow without its user".into()))?;
                let session: Option<Uuid> = flow.try_get("", "session_id")?;
                self.require_live(user, session).await?;
                self.refuse_if_local_factors(user).await?;
                authenticated_afresh(&verified, began)?;
                self.settle_reauth(provider_name, user, session, &verified, meta).await?;
                Completed::Reauthenticated { user }
            }
            other => return Err(AuthError::Internal(format!("unknown flow purpose {other:?}"))),
        };
        Ok(outcome)
    }

    /// Exchanges the code (with the PKCE verifier) and learns who the user is.
    async fn exchange(
        &self,
        provider: &Provider,
        http: &egress::GuardedClient,
        code: &str,
        nonce: String,
        verifier: String,
    ) -> Result<Verified, AuthError> {
        match &provider.cfg.kind {
            ProviderKind::OpenIdConnect => self.exchange_oidc(provider, http, code, nonce, verifier).await,
            ProviderKind::OAuth2(endpoints) => {
                self.exchange_oauth2(&provider.cfg, endpoints, http, code, verifier).await
            }
        }
    }

    /// Plain OAuth 2.0: the token answer, then the user-info endpoint (and the address list) read
    /// with the access token.
    async fn exchange_oauth2(
        &self,
        cfg: &ProviderConfig,
        endpoints: &OAuth2Endpoints,
        http: &egress::GuardedClient,
        code: &str,
        verifier: String,
    ) -> Result<Verified, AuthError> {
        let answer = oauth2_client(cfg, endpoints)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&ProviderHttp(http))
            .await
            .map_err(|err| match err {
                openidconnect::RequestTokenError::ServerResponse(_) => OidcError::CodeRejected,
                other => OidcError::ProviderUnavailable(format!("token endpoint: {other}")),
            })?;
        let access = answer.access_token().secret();
        let user = provider_json(http, &endpoints.userinfo_url, access).await?;
        let subject = match &user[endpoints.subject_field.as_str()] {
            serde_json::Value::String(s) if !s.is_empty() => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(OidcError::ProviderUnavailable("the user-info answer names no subject".into()).into()),
        };
        let (email, email_verified) = match &endpoints.emails_url {
            // GitHub: the primary address, if GitHub verified it.
            Some(url) => {
                let list = provider_json(http, url, access).await?;
                let primary = list.as_array().into_iter().flatten().find(|e| e["primary"] == true);
                match primary {
                    Some(e) => (e["email"].as_str().map(str::to_owned), e["verified"] == true),
                    None => (None, false),
                }
            }
            None => (user["email"].as_str().map(str::to_owned), user["email_verified"] == true),
        };
        let now = self.clock.now();
        Ok(Verified {
            issuer: origin(&endpoints.token_url),
            subject,
            email,
            email_verified,
            auth_time: None,
            access_token: SecretString::from(access.to_owned()),
            refresh_token: answer.refresh_token().map(|t| SecretString::from(t.secret().to_owned())),
            expires_at: answer.expires_in().and_then(|d| Duration::from_std(d).ok()).map(|d| now + d),
        })
    }

    /// OpenID Connect: the token answer and its verified ID token.
    async fn exchange_oidc(
        &self,
        provider: &Provider,
        http: &egress::GuardedClient,
        code: &str,
        nonce: String,
        verifier: String,
    ) -> Result<Verified, AuthError> {
        let client = provider.client(provider.metadata(http, self.clock.now(), false).await?)?;
        let send_fn = ProviderHttp(http);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::ProviderUnavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&send_fn)
            .await
            .map_err(|err| match err {
                openidconnect::RequestTokenError::ServerResponse(_) => OidcError::CodeRejected,
                other => OidcError::ProviderUnavailable(format!("token endpoint: {other}")),
            })?;
        let id_token =
            answer.id_token().ok_or_else(|| OidcError::InvalidIdToken("no ID token in the answer".into()))?;
        let nonce = Nonce::new(nonce);
        let clock = self.clock.clone();
        let check = |client: &CoreClient<_, _, _, _, _, _>| -> Result<_, openidconnect::ClaimsVerificationError> {
            let (now_clock, iat_clock) = (clock.clone(), clock.clone());
            let verifier = client
                .id_token_verifier()
                // Asymmetric signatures only: an HMAC "signature" keyed with the client secret
                // proves nothing the secret's other holders could not forge, and `none` nothing
                // at all (RFC 8725 §3.1; the library refuses `none` already).
                .set_allowed_algs(ID_TOKEN_ALGS.iter().cloned())
                // Expiry is judged at the service's clock, like every other deadline here.
                .set_time_fn(move || now_clock.now())
                // A token issued in the future comes from a broken clock or a forger.
                .set_issue_time_verifier_fn(move |iat| {
                    if iat <= iat_clock.now() + ID_TOKEN_LEEWAY {
                        Ok(())
                    } else {
                        Err("issued in the future".into())
                    }
                });
            let claims = id_token.claims(&verifier, &nonce)?.clone();
            // The access token is the one the ID token was issued with (OpenID Connect Core 1.0
            // §3.1.3.8).
            if let Some(expected) = claims.access_token_hash() {
                let alg =
                    id_token.signing_alg().map_err(openidconnect::ClaimsVerificationError::SignatureVerification)?;
                let key = id_token
                    .signing_key(&verifier)
                    .map_err(openidconnect::ClaimsVerificationError::SignatureVerification)?;
                let actual = AccessTokenHash::from_token(answer.access_token(), alg, key)
                    .map_err(|e| openidconnect::ClaimsVerificationError::Other(format!("at_hash: {e}")))?;
                if actual != *expected {
                    return Err(openidconnect::ClaimsVerificationError::Other("at_hash does not match".into()));
                }
            }
            Ok(claims)
        };
        let claims = match check(&client) {
            Ok(claims) => claims,
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                // Perhaps the provider rotated its keys since they were fetched: fetch them again
                // (at most once a minute).
                let client = provider.client(provider.metadata(http, self.clock.now(), true).await?)?;
                check(&client).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?
            }
            Err(e) => return Err(OidcError::InvalidIdToken(e.to_string()).into()),
        };
        let now = self.clock.now();
        Ok(Verified {
            issuer: provider.cfg.issuer.clone(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            auth_time: claims.auth_time(),
            access_token: SecretString::from(answer.access_token().secret().to_owned()),
            refresh_token: answer.refresh_token().map(|t| SecretString::from(t.secret().to_owned())),
            expires_at: answer.expires_in().and_then(|d| Duration::from_std(d).ok()).map(|d| now + d),
        })
    }

    async fn record_refusal(&self, provider: &str, err: &AuthError, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let reason = match err {
            AuthError::Oidc(OidcError::CodeRejected) => "code_rejected",
            AuthError::Oidc(OidcError::InvalidIdToken(_)) => "invalid_id_token",
            AuthError::Oidc(OidcError::ProviderUnavailable(_)) => "provider_unavailable",
            _ => "other",
        };
        self.record_event(
            &txn,
            events::OIDC_REFUSED,
            None,
            meta,
            serde_json::json!({"provider": provider, "reason": reason}),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Stores the provider's tokens, sealed and bound to the identity.
    async fn keep_tokens(
        &self,
        txn: &DatabaseTransaction,
        identity: Uuid,
        verified: &Verified,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let access = self.seal_with_vault_key(
            &aad(AAD_ACCESS, identity.as_bytes()),
            verified.access_token.expose_secret().as_bytes(),
        )?;
        let refresh = verified
            .refresh_token
            .as_ref()
            .map(|t| self.seal_with_vault_key(&aad(AAD_REFRESH, identity.as_bytes()), t.expose_secret().as_bytes()))
            .transpose()?;
        txn.execute(stmt(
            txn,
            "UPDATE user_identities SET access_token_ciphertext = $2,
                    refresh_token_ciphertext = COALESCE($3, refresh_token_ciphertext),
                    access_expires_at = $4, last_sign_in_at = $5, email = COALESCE($6, email)
              WHERE id = $1",
            vec![
                identity.into(),
                access.into(),
                refresh.into(),
                verified.expires_at.into(),
                now.into(),
                verified.email.clone().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    async fn insert_identity(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        provider: &str,
        verified: &Verified,
        now: DateTime<Utc>,
    ) -> Result<Uuid, AuthError> {
        let id = Uuid::new_v4();
        txn.execute(stmt(
            txn,
            "INSERT INTO user_identities (id, user_id, provider, issuer, subject, email, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                id.into(),
                user.into(),
                provider.into(),
                verified.issuer.clone().into(),
                verified.subject.clone().into(),
                verified.email.clone().into(),
                now.into(),
            ],
        ))
        .await?;
        self.keep_tokens(txn, id, verified, now).await?;
        Ok(id)
    }

    /// The account rules of a provider sign-in, in one transaction:
    /// - a known identity signs in its account;
    /// - otherwise the provider must say the address is verified;
    /// - an account with that address whose address Rampart never verified is taken over by
    ///   the provider's verified owner: its password (set by whoever signed up, perhaps a
    ///   squatter) is cleared and the address marked verified;
    /// - an account with that address already verified is not linked silently: its owner signs
    ///   in and links the provider ([`OidcError::AccountExists`]);
    /// - otherwise a new account, without a password, when sign-up is open.
    ///
    /// Two first sign-ins of one identity at once: on SQLite the second waits for the first's
    /// write lock, then finds what it created; on PostgreSQL both find no identity and both
    /// create it, and the one whose commit comes second fails whole on the unique address or
    /// identity and is settled again, now finding the first's.
    async fn settle_sign_in(
        &self,
        cfg: &ProviderConfig,
        verified: &Verified,
        meta: &RequestMeta,
    ) -> Result<Uuid, AuthError> {
        let mut attempt = 1;
        loop {
            match self.settle_sign_in_once(cfg, verified, meta).await {
                Err(AuthError::Db(err) | AuthError::Audit(audit::AuditError::Db(err)))
                    if attempt < SETTLE_ATTEMPTS && storage::is_unique_violation(&err) =>
                {
                    attempt += 1;
                }
                settled => return settled,
            }
        }
    }

    /// One run of [`Self::settle_sign_in`]'s transaction, ended by its outcome.
    async fn settle_sign_in_once(
        &self,
        cfg: &ProviderConfig,
        verified: &Verified,
        meta: &RequestMeta,
    ) -> Result<Uuid, AuthError> {
        let txn = self.db.begin_write().await?;
        let result = self.sign_in_account(&txn, cfg, verified, meta).await;
        let result = storage::settle(txn, result).await;
        if let Err(err @ AuthError::Oidc(OidcError::EmailUnverified)) = &result {
            self.record_refusal(cfg.name.as_str(), err, meta).await?;
        }
        result
    }

    /// The account a provider sign-in settles on, found or made in `txn` (a write transaction: on
    /// SQLite it already holds the write lock, so a concurrent sign-in queues behind it).
    async fn sign_in_account(
        &self,
        txn: &DatabaseTransaction,
        cfg: &ProviderConfig,
        verified: &Verified,
        meta: &RequestMeta,
    ) -> Result<Uuid, AuthError> {
        let provider = cfg.name.as_str();
        let now = self.clock.now();
        // The account with the provider's address is read before the identity. On PostgreSQL
        // each statement sees every commit made before it began, so a concurrent first sign-in
        // that commits between the two reads shows its identity to the second one; read the
        // other way round, it would show its account (verified) but not its identity, and the
        // sign-in would be refused as the address of someone else's account.
        let by_email = match verified.email.as_deref().map(EmailAddress::parse) {
            Some(Ok(email)) => {
                txn.query_one(stmt(
                    txn,
                    "SELECT id, status, email_verified_at FROM users WHERE email = $1",
                    vec![email.as_str().into()],
                ))
                .await?
            }
            _ => None,
        };
        let known = txn
            .query_one(stmt(
                txn,
                "SELECT i.id, i.user_id, u.status FROM user_identities i JOIN users u ON u.id = i.user_id
                  WHERE i.issuer = $1 AND i.subject = $2",
                vec![verified.issuer.clone().into(), verified.subject.clone().into()],
            ))
            .await?;
        if let Some(row) = known {
            let status: String = row.try_get("", "status")?;
            if status != "active" {
                return Err(AuthError::Unauthenticated);
            }
            self.keep_tokens(txn, row.try_get("", "id")?, verified, now).await?;
            return Ok(row.try_get("", "user_id")?);
        }
        if !cfg.trust_email {
            return Err(OidcError::EmailUntrusted.into());
        }
        let email = match (&verified.email, verified.email_verified) {
            (Some(email), true) => EmailAddress::parse(email)?,
            _ => return Err(OidcError::EmailUnverified.into()),
        };
        let mut cleared = false;
        let user = match by_email {
            Some(row) => {
                let user: Uuid = row.try_get("", "id")?;
                let status: String = row.try_get("", "status")?;
                let verified_at: Option<DateTime<Utc>> = row.try_get("", "email_verified_at")?;
                if status != "active" {
                    return Err(AuthError::Unauthenticated);
                }
                if verified_at.is_some() {
                    return Err(OidcError::AccountExists.into());
                }
                txn.execute(stmt(
                    txn,
                    "UPDATE users SET password_hash = NULL, email_verified_at = $2, failed_signins = 0, lockouts = 0,
                            locked_until = NULL, updated_at = $2 WHERE id = $1",
                    vec![user.into(), now.into()],
                ))
                .await?;
                // Links mailed for the unverified account stop working with its password.
                txn.execute(stmt(txn, "DELETE FROM one_time_tokens WHERE user_id = $1", vec![user.into()])).await?;
                // Every credential opened with the cleared password ends with it: refresh tokens
                // here, access tokens and sessions by the generation (and the loop below).
                let _ending = self.end_credentials_in(txn, user, None).await?;
                self.record_event(
                    txn,
                    events::OIDC_UNVERIFIED_PASSWORD_CLEARED,
                    Some(user),
                    meta,
                    serde_json::json!({"provider": provider}),
                )
                .await?;
                cleared = true;
                user
            }
            None => {
                if self.settings.signup != SignupMode::Open {
                    return Err(AuthError::SignupClosed);
                }
                let user = Uuid::new_v4();
                txn.execute(stmt(
                    txn,
                    "INSERT INTO users (id, email, email_verified_at, password_hash, status, failed_signins, lockouts, created_at, updated_at)
                     VALUES ($1, $2, $3, NULL, 'active', 0, 0, $3, $3)",
                    vec![user.into(), email.as_str().into(), now.into()],
                ))
                .await?;
                self.record_event(
                    txn,
                    events::OIDC_SIGNUP,
                    Some(user),
                    meta,
                    serde_json::json!({"provider": provider}),
                )
                .await?;
                user
            }
        };
        self.insert_identity(txn, user, provider, verified, now).await?;
        if cleared {
            // Sessions opened with the cleared password (none should exist while unverified,
            // but the rule does not rest on that) end with it, before the takeover commits: a
            // store failure leaves nothing half done.
            for (hash, _) in self.kv.user_sessions(user).await? {
                self.kv.delete_session(&hash, user).await?;
            }
        }
        Ok(user)
    }

    async fn settle_link(
        &self,
        provider: &str,
        user: Uuid,
        verified: &Verified,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let txn = self.db.begin_write().await?;
        let known = txn
            .query_one(stmt(
                &txn,
                "SELECT id, user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
                vec![verified.issuer.clone().into(), verified.subject.clone().into()],
            ))
            .await?;
        match known {
            Some(row) if row.try_get::<Uuid>("", "user_id")? != user => return Err(OidcError::IdentityInUse.into()),
            Some(row) => self.keep_tokens(&txn, row.try_get("", "id")?, verified, now).await?,
            None => {
                self.insert_identity(&txn, user, provider, verified, now).await?;
            }
        }
        self.record_method_change(&txn, user, provider, true, meta).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn settle_reauth(
        &self,
        provider: &str,
        user: Uuid,
        session: Option<Uuid>,
        verified: &Verified,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let txn = self.db.begin_write().await?;
        let row = txn
            .query_one(stmt(
                &txn,
                "SELECT id FROM user_identities WHERE issuer = $1 AND subject = $2 AND user_id = $3",
                vec![verified.issuer.clone().into(), verified.subject.clone().into(), user.into()],
            ))
            .await?
            .ok_or(OidcError::IdentityMismatch)?;
        self.keep_tokens(&txn, row.try_get("", "id")?, verified, now).await?;
        let authentication = Authentication::new(verified.auth_time.map_or(now, |t| t.min(now)), &[amr::FEDERATED]);
        let detail = serde_json::json!({"amr": authentication.amr, "provider": provider});
        self.record_event(&txn, crate::stepup::REAUTHENTICATED, Some(user), meta, detail).await?;
        txn.commit().await?;
        if let Some(session) = session {
            if let Some(hash) = self.session_hash(user, session).await? {
                self.stamp_session(&hash, &authentication).await?;
            }
            // A bearer client's family: its next refresh carries the new authentication.
            self.stamp_family_tokens(user, session, &authentication).await?;
        }
        Ok(())
    }

    /// A native client exchanges its code and PKCE verifier for tokens (or the second-factor
    /// challenge that completes them).
    pub async fn oidc_native_token(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        meta: &RequestMeta,
    ) -> Result<SignIn<TokenPair>, AuthError> {
        let now = self.clock.now();
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "DELETE FROM oidc_native_codes WHERE code_hash = $1 RETURNING user_id, challenge, redirect_uri, auth_time, expires_at",
                vec![self.tokens.hash(NATIVE_CODE_PURPOSE, code).into()],
            ))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let expires: DateTime<Utc> = row.try_get("", "expires_at")?;
        let challenge: String = row.try_get("", "challenge")?;
        let expected_redirect: String = row.try_get("", "redirect_uri")?;
        // RFC 6749 §4.1.3: the same redirect URI as the request; RFC 7636 §4.6: the verifier.
        if expires <= now || expected_redirect != redirect_uri || !verifier_matches(code_verifier, &challenge) {
            return Err(AuthError::InvalidToken);
        }
        let user: Uuid = row.try_get("", "user_id")?;
        self.ensure_active(user).await?;
        if let Some(challenge) = self.challenge_if_enrolled(user, Flow::Token, amr::FEDERATED).await? {
            return Ok(SignIn::SecondFactor(challenge));
        }
        let at: Option<DateTime<Utc>> = row.try_get("", "auth_time")?;
        self.finish_password_grant(user, meta, &[amr::FEDERATED], at).await.map(SignIn::Done)
    }

    /// The account's provider identities.
    pub async fn identities(&self, user: Uuid) -> Result<Vec<IdentityView>, AuthError> {
        let rows = self
            .db
            .conn()
            .query_all(stmt(
                self.db.conn(),
                "SELECT id, provider, email, created_at, last_sign_in_at FROM user_identities WHERE user_id = $1 ORDER BY created_at",
                vec![user.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(IdentityView {
                    id: r.try_get("", "id")?,
                    provider: r.try_get("", "provider")?,
                    email: r.try_get("", "email")?,
                    created_at: r.try_get("", "created_at")?,
                    last_sign_in_at: r.try_get("", "last_sign_in_at")?,
                })
            })
            .collect()
    }

    /// Unlinks an identity (the caller has re-authenticated recently). An account keeps at least
    /// one way to sign in: its password or another identity.
    pub async fn unlink_identity(&self, user: Uuid, identity: Uuid, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        // Locks the account's row so two unlinks cannot each leave the other as the last way in.
        let password: Option<String> = txn
            .query_one(stmt(
                &txn,
                &format!(
                    "SELECT password_hash FROM users WHERE id = $1{}",
                    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres { " FOR UPDATE" } else { "" }
                ),
                vec![user.into()],
            ))
            .await?
            .ok_or(AuthError::Unauthenticated)?
            .try_get("", "password_hash")?;
        let others = txn
            .query_one(stmt(
                &txn,
                "SELECT COUNT(*) AS n FROM user_identities WHERE user_id = $1 AND id <> $2",
                vec![user.into(), identity.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let provider = txn
            .query_one(stmt(
                &txn,
                "DELETE FROM user_identities WHERE id = $1 AND user_id = $2 RETURNING provider",
                vec![identity.into(), user.into()],
            ))
            .await?
            .ok_or(OidcError::IdentityNotFound)?
            .try_get::<String>("", "provider")?;
        if password.is_none() && others == 0 {
            txn.rollback().await?;
            return Err(OidcError::LastSignInMethod.into());
        }
        self.record_method_change(&txn, user, &provider, false, meta).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A provider's stored access token for `identity`, opened (for server-side calls that act
    /// for the user).
    pub async fn provider_access_token(&self, user: Uuid, identity: Uuid) -> Result<Option<SecretString>, AuthError> {
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT access_token_ciphertext FROM user_identities WHERE id = $1 AND user_id = $2",
                vec![identity.into(), user.into()],
            ))
            .await?;
        let Some(sealed) =
            row.map(|r| r.try_get::<Option<String>>("", "access_token_ciphertext")).transpose()?.flatten()
        else {
            return Ok(None);
        };
        Ok(Some(SecretString::from(self.open_text(&aad(AAD_ACCESS, identity.as_bytes()), &sealed)?)))
    }

    /// The store key of `user`'s session `id`, if it is still live.
    async fn session_hash(&self, user: Uuid, id: Uuid) -> Result<Option<String>, AuthError> {
        Ok(self.kv.user_sessions(user).await?.into_iter().find(|(_, record)| record.id == id).map(|(hash, _)| hash))
    }

    /// Refuses a flow whose session (or token family) ended since it began.
    async fn require_live(&self, user: Uuid, session: Option<Uuid>) -> Result<(), AuthError> {
        let Some(session) = session else { return Err(AuthError::Unauthenticated) };
        if self.session_hash(user, session).await?.is_some() {
            return Ok(());
        }
        let family = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT 1 AS one FROM refresh_tokens
                  WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $3",
                vec![session.into(), user.into(), self.clock.now().into()],
            ))
            .await?;
        family.map(|_| ()).ok_or(AuthError::Unauthenticated)
    }

    /// Re-authentication through a provider is for accounts with no local factor: one with a
    /// password or a second factor re-authenticates with those, so a provider's session alone
    /// never stands in for them.
    async fn refuse_if_local_factors(&self, user: Uuid) -> Result<(), AuthError> {
        let factors = self.local_factors(user).await?;
        if factors.has_password || factors.has_mfa {
            return Err(OidcError::ReauthenticateLocally.into());
        }
        Ok(())
    }

    /// Records that an identity was linked (`added`) or unlinked, and mails the account's owner
    /// (OWASP ASVS 5.0 V6.3.7: notify users of changes to their authentication details).
    async fn record_method_change(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        provider: &str,
        added: bool,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        let (event, subject, body) = if added {
            (
                events::IDENTITY_LINKED,
                "A sign-in method was added to your account",
                format!("Your account can now be signed in to through {provider}."),
            )
        } else {
            (
                events::IDENTITY_UNLINKED,
                "A sign-in method was removed from your account",
                format!("Your account can no longer be signed in to through {provider}."),
            )
        };
        self.record_event(txn, event, Some(user), meta, serde_json::json!({"provider": provider})).await?;
        let email: String = txn
            .query_one(stmt(txn, "SELECT email FROM users WHERE id = $1", vec![user.into()]))
            .await?
            .ok_or(AuthError::Unauthenticated)?
            .try_get("", "email")?;
        let body =
            format!("{body}\nIf this was not you, reset your password and review your account's sign-in methods.");
        self.mail(txn, &email, subject, body).await
    }

    /// Deletes flows and native codes past their expiry.
    pub(crate) async fn purge_oidc(&self, now: DateTime<Utc>) -> Result<u64, AuthError> {
        let conn = self.db.conn();
        let a = conn.execute(stmt(conn, "DELETE FROM oidc_flows WHERE expires_at <= $1", vec![now.into()])).await?;
        let b =
            conn.execute(stmt(conn, "DELETE FROM oidc_native_codes WHERE expires_at <= $1", vec![now.into()])).await?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}

/// The browser-binding cookie's name: `__Host-` (this host, `Path=/`, `Secure`), sent on the
/// provider's top-level redirect back (`SameSite=Lax`), never readable by scripts.
pub const BROWSER_COOKIE: &str = "__Host-rampart_oidc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_redirects_are_loopback_ip_literals_or_private_use_schemes() {
        for ok in ["http://127.0.0.1:53123/callback", "http://[::1]:8080/cb", "com.example.app:/oauth2redirect"] {
            assert!(native_redirect_ok(ok), "{ok}");
        }
        for bad in [
            "http://localhost:8080/cb",
            "https://127.0.0.1/cb",
            "http://evil.example/cb",
            "http://192.168.1.2:80/cb",
            "myapp:/cb",
            "javascript:alert(1)",
            "http://127.0.0.1:1/cb#frag",
            "http://user@127.0.0.1:1/cb",
            "not a url",
        ] {
            assert!(!native_redirect_ok(bad), "{bad}");
        }
    }

    #[test]
    fn the_pkce_verifier_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(challenge_ok(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", challenge));
        assert!(!verifier_matches("short", challenge));
    }

    #[test]
    fn a_provider_name_must_fit_a_url_segment() {
        let cfg = |name: &str| ProviderConfig {
            name: name.into(),
            issuer: GOOGLE_ISSUER.into(),
            client_id: "id".into(),
            client_secret: SecretString::from("secret"),
            scopes: vec![],
            redirect_uri: "https://api.example.com/api/v1/auth/oidc/google/callback".into(),
            kind: ProviderKind::OpenIdConnect,
            trust_email: true,
        };
        assert!(cfg("google").validate().is_ok());
        assert!(cfg("Google").validate().is_err());
        assert!(cfg("a/b").validate().is_err());
        assert!(cfg("").validate().is_err());
        let mut no_secret = cfg("google");
        no_secret.client_secret = SecretString::from("");
        assert!(no_secret.validate().is_err());
    }
}
