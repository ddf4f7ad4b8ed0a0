//! The configured providers, their discovery documents and keys (cached), and the egress client
//! every provider request goes through.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};
use secrecy::{ExposeSecret, SecretString};

use crate::core::error::OidcError;

/// Provider metadata and keys are fetched again after an hour, or for an unknown key (at most
/// once a minute, so forged tokens cannot make Rampart hammer the provider).
const METADATA_TTL: Duration = Duration::hours(1);
const METADATA_REFRESH_COOLDOWN: Duration = Duration::minutes(1);
/// Largest provider answer read (discovery, keys, tokens).
const MAX_PROVIDER_BODY: usize = 256 * 1024;
/// Google's issuer (https://accounts.google.com/.well-known/openid-configuration).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

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

/// A provider's OpenID Connect client, built from its discovery document.
pub(super) type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

pub(super) struct Provider {
    pub(super) cfg: ProviderConfig,
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

    pub(super) fn get(&self, name: &str) -> Result<(&Provider, &egress::GuardedClient), OidcError> {
        match (self.providers.get(name), &self.http) {
            (Some(provider), Some(http)) => Ok((provider, http)),
            _ => Err(OidcError::UnknownProvider),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct HttpFailure(pub(super) String);

/// One provider request through the egress client (the `openidconnect` HTTP interface).
pub(super) async fn send(
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
pub(super) struct ProviderHttp<'a>(pub(super) &'a egress::GuardedClient);

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
    pub(super) async fn metadata(
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

    pub(super) fn client(&self, metadata: CoreProviderMetadata) -> Result<OidcClient, OidcError> {
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
