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
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
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
/// Provider metadata and keys are fetched again after an hour, or at once for an unknown key.
const METADATA_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Largest provider answer read (discovery, keys, tokens).
const MAX_PROVIDER_BODY: usize = 256 * 1024;
/// Google's issuer (https://accounts.google.com/.well-known/openid-configuration).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

const STATE_PURPOSE: &str = "oidc_state";
const BROWSER_PURPOSE: &str = "oidc_browser";
const NATIVE_CODE_PURPOSE: &str = "oidc_native_code";

/// Provider requests: any public host (the operator names the providers; Google's endpoints span
/// several domains), never a private address, https only, no redirects followed (the
/// `openidconnect` guidance against SSRF), a 10 s deadline. `exceptions` are loopback addresses
/// for tests only.
pub fn provider_policy(exceptions: &[std::net::SocketAddr]) -> egress::EgressPolicy {
    let mut policy = egress::EgressPolicy::public_internet();
    policy.timeout = std::time::Duration::from_secs(10);
    policy.max_redirects = 0;
    for addr in exceptions {
        policy = policy.with_exception(*addr);
    }
    policy.require_https = exceptions.is_empty();
    policy
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
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
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
        IssuerUrl::new(self.issuer.clone()).map_err(|e| format!("provider {}: issuer: {e}", self.name))?;
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
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
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
    async fn metadata(&self, http: &egress::GuardedClient, fresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref() {
            if !fresh && at.elapsed() < METADATA_TTL {
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
        *cached = Some((Instant::now(), metadata.clone()));
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
    /// A signed-in user links an identity at the provider to their account.
    Link { user: Uuid },
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
#[derive(Debug)]
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

/// RFC 8252 §7.3 (loopback IP, any port; `localhost` is not recommended, §8.3) or §7.1 (a
/// private-use scheme in reverse domain name form, such as `com.example.app:/callback`).
fn native_redirect_ok(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
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

    fn seal_for(&self, aad: &[u8], value: &str) -> Result<String, AuthError> {
        crypto_vault::seal(&self.outbox_key, aad, value.as_bytes()).map_err(|e| AuthError::Internal(e.to_string()))
    }

    fn open_for(&self, aad: &[u8], sealed: &str) -> Result<String, AuthError> {
        std::iter::once(&self.outbox_key)
            .chain(self.previous_keys.iter())
            .find_map(|key| crypto_vault::open(key, aad, sealed).ok())
            .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
            .ok_or_else(|| AuthError::Internal("a sealed sign-in value opens with no configured vault key".into()))
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
            if !challenge_ok(code_challenge) {
                return Err(OidcError::InvalidNativeRequest("code_challenge must be an S256 challenge").into());
            }
            if state.is_empty() || state.len() > 512 || !state.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(OidcError::InvalidNativeRequest("state must be 1-512 visible ASCII characters").into());
            }
        }
        let client = provider.client(provider.metadata(http, false).await?)?;
        let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(pkce_challenge);
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
        let (url, state, nonce) = request.url();
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
            Purpose::Link { user } => (Some(*user), None, None),
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
                    self.seal_for(state_hash.as_bytes(), nonce.secret())?.into(),
                    self.seal_for(state_hash.as_bytes(), pkce_verifier.secret())?.into(),
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

    /// The provider's redirect back: `code` and `state`, and the browser's binding cookie.
    pub async fn oidc_callback(
        &self,
        provider_name: &str,
        code: &str,
        state: &str,
        browser: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Completed, AuthError> {
        let (provider, http) = self.oidc.get(provider_name)?;
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
                            native_redirect_uri, native_challenge, native_state, expires_at",
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
        let nonce = self.open_for(state_hash.as_bytes(), &flow.try_get::<String>("", "nonce_ciphertext")?)?;
        let verifier = self.open_for(state_hash.as_bytes(), &flow.try_get::<String>("", "verifier_ciphertext")?)?;
        let verified = match self.exchange(provider, http, code, nonce, verifier).await {
            Ok(verified) => verified,
            Err(err) => {
                self.record_refusal(provider_name, &err, meta).await?;
                return Err(err);
            }
        };
        let purpose: String = flow.try_get("", "purpose")?;
        let flow_user: Option<Uuid> = flow.try_get("", "user_id")?;
        let outcome = match purpose.as_str() {
            "sign_in" => {
                let user = self.settle_sign_in(provider_name, &verified, meta).await?;
                match self.challenge_if_enrolled(user, Flow::Session, amr::FEDERATED).await? {
                    Some(challenge) => Completed::SignedIn(SignIn::SecondFactor(challenge)),
                    None => {
                        Completed::SignedIn(SignIn::Done(self.finish_sign_in(user, meta, &[amr::FEDERATED]).await?))
                    }
                }
            }
            "native" => {
                let user = self.settle_sign_in(provider_name, &verified, meta).await?;
                let redirect_uri: String =
                    flow.try_get::<Option<String>>("", "native_redirect_uri")?.unwrap_or_default();
                let challenge: String = flow.try_get::<Option<String>>("", "native_challenge")?.unwrap_or_default();
                let client_state: String = flow.try_get::<Option<String>>("", "native_state")?.unwrap_or_default();
                let code = token::generate();
                self.db
                    .conn()
                    .execute(stmt(
                        self.db.conn(),
                        "INSERT INTO oidc_native_codes (code_hash, user_id, challenge, redirect_uri, amr, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                        vec![
                            self.tokens.hash(NATIVE_CODE_PURPOSE, &code).into(),
                            user.into(),
                            challenge.into(),
                            redirect_uri.clone().into(),
                            amr::FEDERATED.into(),
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
                self.settle_link(provider_name, user, &verified, meta).await?;
                Completed::Linked { user }
            }
            "reauth" => {
                let user =
                    flow_user.ok_or_else(|| AuthError::Internal("re-authentication flow without its user".into()))?;
                let session: Option<Uuid> = flow.try_get("", "session_id")?;
                self.settle_reauth(provider_name, user, session, &verified, meta).await?;
                Completed::Reauthenticated { user }
            }
            other => return Err(AuthError::Internal(format!("unknown flow purpose {other:?}"))),
        };
        Ok(outcome)
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token.
    async fn exchange(
        &self,
        provider: &Provider,
        http: &egress::GuardedClient,
        code: &str,
        nonce: String,
        verifier: String,
    ) -> Result<Verified, AuthError> {
        let client = provider.client(provider.metadata(http, false).await?)?;
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
        let check = |client: &CoreClient<_, _, _, _, _, _>| -> Result<_, openidconnect::ClaimsVerificationError> {
            let verifier = client.id_token_verifier();
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
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps the provider rotated its keys since they were fetched: fetch them once.
                let client = provider.client(provider.metadata(http, true).await?)?;
                check(&client).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?
            }
            Err(e) => return Err(OidcError::InvalidIdToken(e.to_string()).into()),
        };
        let now = self.clock.now();
        Ok(Verified {
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
        let txn = self.db.conn().begin().await?;
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
        let aad = identity.as_bytes();
        let access = self.seal_for(aad, verified.access_token.expose_secret())?;
        let refresh = verified.refresh_token.as_ref().map(|t| self.seal_for(aad, t.expose_secret())).transpose()?;
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
            "INSERT INTO user_identities (id, user_id, provider, subject, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![id.into(), user.into(), provider.into(), verified.subject.clone().into(), verified.email.clone().into(), now.into()],
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
    async fn settle_sign_in(&self, provider: &str, verified: &Verified, meta: &RequestMeta) -> Result<Uuid, AuthError> {
        let now = self.clock.now();
        let txn = self.db.conn().begin().await?;
        let known = txn
            .query_one(stmt(
                &txn,
                "SELECT i.id, i.user_id, u.status FROM user_identities i JOIN users u ON u.id = i.user_id
                  WHERE i.provider = $1 AND i.subject = $2",
                vec![provider.into(), verified.subject.clone().into()],
            ))
            .await?;
        if let Some(row) = known {
            let status: String = row.try_get("", "status")?;
            if status != "active" {
                return Err(AuthError::Unauthenticated);
            }
            self.keep_tokens(&txn, row.try_get("", "id")?, verified, now).await?;
            txn.commit().await?;
            return Ok(row.try_get("", "user_id")?);
        }
        let email = match (&verified.email, verified.email_verified) {
            (Some(email), true) => EmailAddress::parse(email)?,
            _ => {
                txn.rollback().await?;
                self.record_refusal(provider, &AuthError::Oidc(OidcError::EmailUnverified), meta).await?;
                return Err(OidcError::EmailUnverified.into());
            }
        };
        let existing = txn
            .query_one(stmt(
                &txn,
                "SELECT id, status, email_verified_at FROM users WHERE email = $1",
                vec![email.as_str().into()],
            ))
            .await?;
        let mut cleared = false;
        let user = match existing {
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
                    &txn,
                    "UPDATE users SET password_hash = NULL, email_verified_at = $2, failed_signins = 0, lockouts = 0,
                            locked_until = NULL, updated_at = $2 WHERE id = $1",
                    vec![user.into(), now.into()],
                ))
                .await?;
                // Links mailed for the unverified account stop working with its password.
                txn.execute(stmt(&txn, "DELETE FROM one_time_tokens WHERE user_id = $1", vec![user.into()])).await?;
                txn.execute(stmt(
                    &txn,
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                    vec![user.into(), now.into()],
                ))
                .await?;
                self.record_event(
                    &txn,
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
                    &txn,
                    "INSERT INTO users (id, email, email_verified_at, password_hash, status, failed_signins, lockouts, created_at, updated_at)
                     VALUES ($1, $2, $3, NULL, 'active', 0, 0, $3, $3)",
                    vec![user.into(), email.as_str().into(), now.into()],
                ))
                .await?;
                self.record_event(
                    &txn,
                    events::OIDC_SIGNUP,
                    Some(user),
                    meta,
                    serde_json::json!({"provider": provider}),
                )
                .await?;
                user
            }
        };
        self.insert_identity(&txn, user, provider, verified, now).await?;
        txn.commit().await?;
        if cleared {
            // Sessions opened with the cleared password (none should exist while unverified,
            // but the rule does not rest on that) end with it.
            self.revoke_sessions(user, crate::Revoke::All, meta).await?;
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
        let txn = self.db.conn().begin().await?;
        let known = txn
            .query_one(stmt(
                &txn,
                "SELECT id, user_id FROM user_identities WHERE provider = $1 AND subject = $2",
                vec![provider.into(), verified.subject.clone().into()],
            ))
            .await?;
        match known {
            Some(row) if row.try_get::<Uuid>("", "user_id")? != user => return Err(OidcError::IdentityInUse.into()),
            Some(row) => self.keep_tokens(&txn, row.try_get("", "id")?, verified, now).await?,
            None => {
                self.insert_identity(&txn, user, provider, verified, now).await?;
            }
        }
        self.record_event(&txn, events::IDENTITY_LINKED, Some(user), meta, serde_json::json!({"provider": provider}))
            .await?;
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
        let txn = self.db.conn().begin().await?;
        let row = txn
            .query_one(stmt(
                &txn,
                "SELECT id FROM user_identities WHERE provider = $1 AND subject = $2 AND user_id = $3",
                vec![provider.into(), verified.subject.clone().into(), user.into()],
            ))
            .await?
            .ok_or(OidcError::IdentityMismatch)?;
        // The provider was asked to authenticate the user afresh (`max_age=0`); its word on when
        // it did must agree.
        let fresh = verified.auth_time.is_some_and(|t| Authentication::new(t, &[]).is_recent(now));
        if !fresh {
            return Err(OidcError::InvalidIdToken("the provider did not authenticate the user afresh".into()).into());
        }
        self.keep_tokens(&txn, row.try_get("", "id")?, verified, now).await?;
        let authentication = Authentication::new(now, &[amr::FEDERATED]);
        self.record_event(&txn, "reauthenticated", Some(user), meta, serde_json::json!({"amr": authentication.amr}))
            .await?;
        txn.commit().await?;
        if let Some(session) = session {
            for (hash, record) in self.kv.user_sessions(user).await? {
                if record.id == session {
                    self.stamp_session(&hash, &authentication).await?;
                }
            }
            self.db
                .conn()
                .execute(stmt(
                    self.db.conn(),
                    "UPDATE refresh_tokens SET auth_time = $3, amr = $4
                      WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL AND used_at IS NULL",
                    vec![session.into(), user.into(), now.into(), authentication.amr_text().into()],
                ))
                .await?;
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
                "DELETE FROM oidc_native_codes WHERE code_hash = $1 RETURNING user_id, challenge, redirect_uri, expires_at",
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
        self.finish_password_grant(user, meta, &[amr::FEDERATED]).await.map(SignIn::Done)
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
        let txn = self.db.conn().begin().await?;
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
        self.record_event(&txn, events::IDENTITY_UNLINKED, Some(user), meta, serde_json::json!({"provider": provider}))
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A provider's stored access token for `identity`, opened (for server-side calls that act
    /// for the user).
    pub async fn provider_access_token(&self, identity: Uuid) -> Result<Option<SecretString>, AuthError> {
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT access_token_ciphertext FROM user_identities WHERE id = $1",
                vec![identity.into()],
            ))
            .await?;
        let Some(sealed) =
            row.map(|r| r.try_get::<Option<String>>("", "access_token_ciphertext")).transpose()?.flatten()
        else {
            return Ok(None);
        };
        Ok(Some(SecretString::from(self.open_for(identity.as_bytes(), &sealed)?)))
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
