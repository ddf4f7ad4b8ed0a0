//! The callback's exchange: the authorization code (with the PKCE verifier) for tokens, and who
//! the user is — from a verified ID token (OpenID Connect) or the user-info endpoint (OAuth 2.0).

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::CoreClient;
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, Nonce, OAuth2TokenResponse, PkceCodeVerifier,
    RedirectUrl, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};

use super::providers::{send, OAuth2Endpoints, OidcClient, Provider, ProviderConfig, ProviderHttp, ProviderKind};
use crate::core::context::Core;
use crate::core::error::{AuthError, OidcError};

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

/// What the verified ID token and the token answer said.
pub(super) struct Verified {
    /// Whose subject it is: the issuer (OpenID Connect) or the token endpoint's origin (OAuth 2.0).
    pub(super) issuer: String,
    pub(super) subject: String,
    pub(super) email: Option<String>,
    pub(super) email_verified: bool,
    pub(super) auth_time: Option<DateTime<Utc>>,
    pub(super) access_token: SecretString,
    pub(super) refresh_token: Option<SecretString>,
    pub(super) expires_at: Option<DateTime<Utc>>,
}

pub(super) type OAuth2Client = oauth2::basic::BasicClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
>;

pub(super) fn oauth2_client(cfg: &ProviderConfig, endpoints: &OAuth2Endpoints) -> Result<OAuth2Client, OidcError> {
    let bad = |e: url::ParseError| OidcError::ProviderUnavailable(e.to_string());
    Ok(oauth2::basic::BasicClient::new(ClientId::new(cfg.client_id.clone()))
        .set_client_secret(ClientSecret::new(cfg.client_secret.expose_secret().to_owned()))
        .set_auth_uri(openidconnect::AuthUrl::new(endpoints.authorization_url.clone()).map_err(bad)?)
        .set_token_uri(openidconnect::TokenUrl::new(endpoints.token_url.clone()).map_err(bad)?)
        .set_redirect_uri(RedirectUrl::new(cfg.redirect_uri.clone()).map_err(bad)?))
}

/// `scheme://host[:port]` of a URL: whose subjects a plain OAuth 2.0 provider's are.
pub(super) fn origin(url: &str) -> String {
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
pub(super) fn authenticated_afresh(verified: &Verified, began: DateTime<Utc>) -> Result<(), OidcError> {
    match verified.auth_time {
        Some(at) if at + ID_TOKEN_LEEWAY >= began => Ok(()),
        _ => Err(OidcError::InvalidIdToken("the provider did not authenticate the user afresh".into())),
    }
}

/// Exchanges the code (with the PKCE verifier) and learns who the user is.
pub(super) async fn exchange(
    core: &Core,
    provider: &Provider,
    http: &egress::GuardedClient,
    code: &str,
    nonce: String,
    verifier: String,
) -> Result<Verified, AuthError> {
    match &provider.cfg.kind {
        ProviderKind::OpenIdConnect => exchange_oidc(core, provider, http, code, nonce, verifier).await,
        ProviderKind::OAuth2(endpoints) => exchange_oauth2(core, &provider.cfg, endpoints, http, code, verifier).await,
    }
}

/// Plain OAuth 2.0: the token answer, then the user-info endpoint (and the address list) read
/// with the access token.
pub(super) async fn exchange_oauth2(
    core: &Core,
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
    let now = core.clock.now();
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
pub(super) async fn exchange_oidc(
    core: &Core,
    provider: &Provider,
    http: &egress::GuardedClient,
    code: &str,
    nonce: String,
    verifier: String,
) -> Result<Verified, AuthError> {
    let client = provider.client(provider.metadata(http, core.clock.now(), false).await?)?;
    let answer = request_tokens(&client, http, code, verifier).await?;
    let id_token = answer.id_token().ok_or_else(|| OidcError::InvalidIdToken("no ID token in the answer".into()))?;
    let nonce = Nonce::new(nonce);
    let clock = core.clock.clone();
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
            let alg = id_token.signing_alg().map_err(openidconnect::ClaimsVerificationError::SignatureVerification)?;
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
            let client = provider.client(provider.metadata(http, core.clock.now(), true).await?)?;
            check(&client).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?
        }
        Err(e) => return Err(OidcError::InvalidIdToken(e.to_string()).into()),
    };
    let now = core.clock.now();
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

/// The token endpoint's answer for `code` and its PKCE verifier.
async fn request_tokens(
    client: &OidcClient,
    http: &egress::GuardedClient,
    code: &str,
    verifier: String,
) -> Result<openidconnect::core::CoreTokenResponse, AuthError> {
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
    Ok(answer)
}
