//! The authorization-code flow: its start (state, nonce and PKCE, kept in `oidc_flows`; the
//! browser binding cookie) and its callback, which ends in a sign-in, a native client's code, a
//! linked identity or a re-authentication.

use chrono::{DateTime, Duration, Utc};
use ids::{SessionId, UserId};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, Scope};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::exchange::{authenticated_afresh, exchange, oauth2_client, Verified};
use super::guards::{refuse_if_local_factors, require_live};
use super::native::{
    challenge_ok, native_redirect_ok, native_redirect_registered, NATIVE_CODE_PURPOSE, NATIVE_CODE_TTL,
};
use super::providers::{Provider, ProviderConfig, ProviderKind, Providers};
use super::sealed::{aad, open_text, AAD_NONCE, AAD_VERIFIER};
use super::settle::{record_refusal, settle_link, settle_reauth, settle_sign_in};
use crate::core::authentication::amr;
use crate::core::context::{stmt, Core};
use crate::core::error::{AuthError, OidcError};
use crate::core::factors::{Flow, SignIn};
use crate::core::sessions::NewSession;
use crate::core::settings::{AuthSettings, RequestMeta};
use crate::core::token;

/// An authorization request may take ten minutes between its start and its callback
/// (RFC 6749 §4.1.2 recommends codes live at most ten minutes; the state is held to the same).
pub const FLOW_TTL: Duration = Duration::minutes(10);
const STATE_PURPOSE: &str = "oidc_state";
const BROWSER_PURPOSE: &str = "oidc_browser";
/// The browser-binding cookie's name: `__Host-` (this host, `Path=/`, `Secure`), sent on the
/// provider's top-level redirect back (`SameSite=Lax`), never readable by scripts.
pub const BROWSER_COOKIE: &str = "__Host-rampart_oidc";

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
    Link { user: UserId, session: SessionId },
    /// A signed-in user re-authenticates with the provider (accounts without local factors).
    Reauth { user: UserId, session: SessionId },
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
        user: UserId,
    },
    Reauthenticated {
        user: UserId,
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

/// Begins a flow at `provider`: the authorization URL to send the user to.
pub(crate) async fn start(
    core: &Core,
    providers: &Providers,
    provider: &str,
    purpose: Purpose,
) -> Result<Started, AuthError> {
    let (provider, http) = providers.get(provider)?;
    check_native_request(&core.settings, &purpose)?;
    if let Purpose::Reauth { user, .. } = &purpose {
        refuse_if_local_factors(core, user.0).await?;
    }
    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = match &provider.cfg.kind {
        ProviderKind::OpenIdConnect => oidc_authorization(core, provider, http, &purpose, pkce_challenge).await?,
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
    let state_hash = core.tokens.hash(STATE_PURPOSE, state.secret());
    let browser = match purpose {
        Purpose::Native { .. } => None,
        _ => Some(token::generate()),
    };
    let now = core.clock.now();

    let (user, session, native) = match &purpose {
        Purpose::SignIn => (None, None, None),
        Purpose::Native { redirect_uri, code_challenge, state } => {
            (None, None, Some((redirect_uri, code_challenge, state)))
        }
        Purpose::Link { user, session } => (Some(user.0), Some(session.0), None),
        Purpose::Reauth { user, session } => (Some(user.0), Some(session.0), None),
    };
    core.db
        .conn()
        .execute(stmt(
            core.db.conn(),
            "INSERT INTO oidc_flows (state_hash, provider, purpose, browser_hash, user_id, session_id, nonce_ciphertext,
                                     verifier_ciphertext, native_redirect_uri, native_challenge, native_state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            vec![
                state_hash.clone().into(),
                provider.cfg.name.clone().into(),
                purpose.as_str().into(),
                browser.as_ref().map(|b| core.tokens.hash(BROWSER_PURPOSE, b)).into(),
                user.into(),
                session.into(),
                core.seal_with_vault_key(&aad(AAD_NONCE, state_hash.as_bytes()), nonce.secret().as_bytes())?.into(),
                core.seal_with_vault_key(&aad(AAD_VERIFIER, state_hash.as_bytes()), pkce_verifier.secret().as_bytes())?.into(),
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
    core: &Core,
    provider: &Provider,
    http: &egress::GuardedClient,
    purpose: &Purpose,
    pkce_challenge: PkceCodeChallenge,
) -> Result<(url::Url, CsrfToken, Nonce), AuthError> {
    let client = provider.client(provider.metadata(http, core.clock.now(), false).await?)?;
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
#[allow(clippy::too_many_arguments)]
pub(crate) async fn callback(
    core: &Core,
    providers: &Providers,
    provider_name: &str,
    code: &str,
    state: &str,
    issuer: Option<&str>,
    browser: Option<&str>,
    meta: &RequestMeta,
) -> Result<Completed, AuthError> {
    let (provider, http) = providers.get(provider_name)?;
    // RFC 9207: a provider that names itself in the answer must name itself.
    if issuer.is_some_and(|iss| iss.trim_end_matches('/') != provider.cfg.issuer.trim_end_matches('/')) {
        return Err(OidcError::IssuerMismatch.into());
    }
    let now = core.clock.now();
    let (flow, nonce, verifier) = take_flow(core, provider_name, state, browser, now).await?;
    let verified = match exchange(core, provider, http, code, nonce, verifier).await {
        Ok(verified) => verified,
        Err(err) => {
            record_refusal(core, provider_name, &err, meta).await?;
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
        "sign_in" => complete_sign_in(core, &provider.cfg, &verified, authenticated_at, meta).await?,
        "native" => complete_native(core, &provider.cfg, &verified, &flow, authenticated_at, now, meta).await?,
        "link" => complete_link(core, provider_name, &provider.cfg, &verified, &flow, flow_user, began, meta).await?,
        "reauth" => complete_reauth(core, provider_name, &verified, &flow, flow_user, began, meta).await?,
        other => return Err(AuthError::Internal(format!("unknown flow purpose {other:?}"))),
    };
    Ok(outcome)
}

/// Takes the flow `state` names at `provider` (deleting its row is what makes the state single
/// use, also when two callbacks race), checks its expiry and browser binding, and opens its
/// nonce and PKCE verifier.
async fn take_flow(
    core: &Core,
    provider_name: &str,
    state: &str,
    browser: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(sea_orm::QueryResult, String, String), AuthError> {
    let state_hash = core.tokens.hash(STATE_PURPOSE, state);
    // Deleting the row is what makes the state single use, also when two callbacks race.
    let flow = core
        .db
        .conn()
        .query_one(stmt(
            core.db.conn(),
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
            bool::from(core.tokens.hash(BROWSER_PURPOSE, cookie).as_bytes().ct_eq(expected.as_bytes()))
        }
        (Some(_), None) => false,
    };
    if expires <= now || !browser_ok {
        return Err(OidcError::InvalidState.into());
    }
    let nonce =
        open_text(core, &aad(AAD_NONCE, state_hash.as_bytes()), &flow.try_get::<String>("", "nonce_ciphertext")?)?;
    let verifier = open_text(
        core,
        &aad(AAD_VERIFIER, state_hash.as_bytes()),
        &flow.try_get::<String>("", "verifier_ciphertext")?,
    )?;
    Ok((flow, nonce, verifier))
}

/// A browser's provider sign-in: a session, or the second-factor challenge that completes it.
async fn complete_sign_in(
    core: &Core,
    cfg: &ProviderConfig,
    verified: &Verified,
    authenticated_at: Option<DateTime<Utc>>,
    meta: &RequestMeta,
) -> Result<Completed, AuthError> {
    let user = settle_sign_in(core, cfg, verified, meta).await?;
    Ok(match core.challenge_if_enrolled(user, Flow::Session, amr::FEDERATED).await? {
        Some(challenge) => Completed::SignedIn(SignIn::SecondFactor(challenge)),
        None => Completed::SignedIn(SignIn::Done(
            core.finish_sign_in(user, meta, &[amr::FEDERATED], authenticated_at).await?,
        )),
    })
}

/// A native client's provider sign-in: its redirect with a one-minute code and its state.
async fn complete_native(
    core: &Core,
    cfg: &ProviderConfig,
    verified: &Verified,
    flow: &sea_orm::QueryResult,
    authenticated_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    meta: &RequestMeta,
) -> Result<Completed, AuthError> {
    let user = settle_sign_in(core, cfg, verified, meta).await?;
    let redirect_uri: String = flow.try_get::<Option<String>>("", "native_redirect_uri")?.unwrap_or_default();
    let challenge: String = flow.try_get::<Option<String>>("", "native_challenge")?.unwrap_or_default();
    let client_state: String = flow.try_get::<Option<String>>("", "native_state")?.unwrap_or_default();
    let code = token::generate();
    core.db
            .conn()
            .execute(stmt(
                core.db.conn(),
                "INSERT INTO oidc_native_codes (code_hash, user_id, challenge, redirect_uri, amr, auth_time, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    core.tokens.hash(NATIVE_CODE_PURPOSE, &code).into(),
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
    Ok(Completed::Native { redirect })
}

/// A signed-in user's link of a provider identity, if the session that began it is still live.
#[allow(clippy::too_many_arguments)]
async fn complete_link(
    core: &Core,
    provider_name: &str,
    cfg: &ProviderConfig,
    verified: &Verified,
    flow: &sea_orm::QueryResult,
    flow_user: Option<Uuid>,
    began: DateTime<Utc>,
    meta: &RequestMeta,
) -> Result<Completed, AuthError> {
    let user = flow_user.ok_or_else(|| AuthError::Internal("link flow without its user".into()))?;
    let session: Option<Uuid> = flow.try_get("", "session_id")?;
    // A sign-out, password change or revocation since the start cancels the link.
    require_live(core, user, session).await?;
    if matches!(cfg.kind, ProviderKind::OpenIdConnect) {
        authenticated_afresh(verified, began)?;
    }
    settle_link(core, provider_name, user, verified, meta).await?;
    Ok(Completed::Linked { user: UserId(user) })
}

/// A signed-in user's re-authentication through the provider (accounts without local factors).
async fn complete_reauth(
    core: &Core,
    provider_name: &str,
    verified: &Verified,
    flow: &sea_orm::QueryResult,
    flow_user: Option<Uuid>,
    began: DateTime<Utc>,
    meta: &RequestMeta,
) -> Result<Completed, AuthError> {
    let user = flow_user.ok_or_else(|| AuthError::Internal("re-authentication flow without its user".into()))?;
    let session: Option<Uuid> = flow.try_get("", "session_id")?;
    require_live(core, user, session).await?;
    refuse_if_local_factors(core, user).await?;
    authenticated_afresh(verified, began)?;
    settle_reauth(core, provider_name, user, session, verified, meta).await?;
    Ok(Completed::Reauthenticated { user: UserId(user) })
}

/// Refuses a native client's request that names an unregistered or unsafe redirect, or a
/// malformed challenge or state.
fn check_native_request(settings: &AuthSettings, purpose: &Purpose) -> Result<(), AuthError> {
    if let Purpose::Native { redirect_uri, code_challenge, state } = purpose {
        if !native_redirect_ok(redirect_uri) {
            return Err(OidcError::InvalidNativeRequest(
                "redirect_uri must be a loopback http URL (http://127.0.0.1:PORT/…) or a private-use scheme",
            )
            .into());
        }
        // Only registered clients: otherwise anyone could send a victim's code to whatever
        // listens on some port or claims some scheme (RFC 8252 §8.6).
        if !native_redirect_registered(redirect_uri, &settings.native_redirect_uris) {
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
    Ok(())
}
