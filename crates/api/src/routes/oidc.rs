//! Sign-in through OpenID Connect providers (browser and native clients), the account's linked
//! identities, and step-up re-authentication.

use crate::codes::ErrorCode;
use chrono::{DateTime, Utc};
use ids::IdentityId;
use poem::{
    web::cookie::{CookieJar, SameSite},
    Request,
};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use secrecy::ExposeSecret;

use super::auth::{meta, set_session_cookies, throttle, SecondFactorRequired, TokenGrantResponse, TokenResponse};
use super::{ApiTags, NoContent};
use crate::{
    error::{ApiError, OrApiError},
    principal::Auth,
    AppState,
};

pub(crate) struct OidcApi;

/// Where to send the user to sign in at the provider.
#[derive(Debug, Object)]
struct AuthorizationStarted {
    /// The provider's authorization URL (with `state`, `nonce` and the PKCE challenge).
    authorization_url: String,
    /// Seconds the flow may take before its state expires.
    expires_in: i64,
}

/// The configured providers.
#[derive(Debug, Object)]
struct ProviderList {
    /// Names to use in `/api/v1/auth/oidc/{provider}/…`.
    providers: Vec<String>,
}

/// A native or desktop client's request (RFC 8252): it proves at the end, with the verifier of
/// its own PKCE challenge, that it is the client that began.
#[derive(Debug, Object)]
#[oai(example)]
struct NativeStart {
    /// A loopback redirect (`http://127.0.0.1:{port}/…` or `http://[::1]:{port}/…`) or a
    /// private-use scheme in reverse domain name form (`com.example.app:/callback`).
    redirect_uri: String,
    /// `BASE64URL(SHA256(code_verifier))` (RFC 7636 §4.2): 43 base64url characters.
    #[oai(validator(min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]*$"))]
    code_challenge: String,
    /// Only `S256`.
    #[oai(validator(pattern = r"^S256$"))]
    code_challenge_method: String,
    /// Returned unchanged with the code; check it (RFC 6749 §10.12). 1 to 512 visible ASCII
    /// characters.
    #[oai(validator(min_length = 1, max_length = 512, pattern = r"^[\x21-\x7E]*$"))]
    state: String,
}

impl poem_openapi::types::Example for NativeStart {
    fn example() -> Self {
        NativeStart {
            redirect_uri: "http://127.0.0.1:53682/callback".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            code_challenge_method: "S256".into(),
            state: "af0ifjsldkj".into(),
        }
    }
}

/// A native client's code exchange.
#[derive(Object)]
#[oai(example)]
struct NativeToken {
    #[oai(write_only)]
    code: String,
    /// 43 to 128 unreserved characters (RFC 7636 §4.1).
    #[oai(write_only, validator(min_length = 43, max_length = 128, pattern = r"^[A-Za-z0-9._~-]*$"))]
    code_verifier: String,
    /// The `redirect_uri` the flow was begun with.
    redirect_uri: String,
}

impl poem_openapi::types::Example for NativeToken {
    fn example() -> Self {
        NativeToken {
            code: "SplxlOBeZQQYbYS6WxSbIA".into(),
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            redirect_uri: "http://127.0.0.1:53682/callback".into(),
        }
    }
}

impl std::fmt::Debug for NativeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeToken").field("redirect_uri", &self.redirect_uri).finish_non_exhaustive()
    }
}

/// An identity at a provider linked to the account.
#[derive(Debug, Object)]
struct IdentityBody {
    id: IdentityId,
    provider: String,
    /// The address the provider gave, if any.
    email: Option<String>,
    created_at: DateTime<Utc>,
    last_sign_in_at: Option<DateTime<Utc>>,
}

/// Re-authentication with the account's local factors: the password when it has one, and a
/// second factor when it has one.
#[derive(Object)]
#[oai(example)]
struct Reauthenticate {
    #[oai(write_only)]
    password: Option<String>,
    /// A current TOTP code.
    #[oai(write_only)]
    code: Option<String>,
    /// Or one of the recovery codes.
    #[oai(write_only)]
    recovery_code: Option<String>,
}

impl poem_openapi::types::Example for Reauthenticate {
    fn example() -> Self {
        Reauthenticate {
            password: Some("correct horse battery staple".into()),
            code: Some("492039".into()),
            recovery_code: None,
        }
    }
}

impl std::fmt::Debug for Reauthenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reauthenticate([REDACTED])")
    }
}

/// A fresh authentication.
#[derive(Debug, Object)]
struct Reauthenticated {
    authenticated_at: DateTime<Utc>,
    /// How (RFC 8176 values: `pwd`, `otp`, `fed`).
    amr: Vec<String>,
    /// Seconds it counts for sensitive actions.
    valid_for: i64,
    /// For bearer clients: an access token that carries the new authentication (the current
    /// one does not); the refresh token's next uses carry it too.
    access_token: Option<String>,
    expires_in: Option<i64>,
}

#[derive(ApiResponse)]
enum Redirect {
    /// Done: continue at `Location` (the application, or the native client's redirect URI with
    /// its `code` and `state`).
    #[oai(status = 303)]
    SeeOther(#[oai(header = "Location")] String),
}

/// The cookie that binds a browser flow to this browser: HttpOnly, `__Host-`, and `Lax` so the
/// provider's top-level redirect back carries it; it lives as long as the flow.
fn set_binding(jar: &CookieJar, binding: &secrecy::SecretString) {
    let mut c = super::auth::cookie(auth::oidc::BROWSER_COOKIE, binding.expose_secret(), true);
    c.set_same_site(SameSite::Lax);
    c.set_max_age(std::time::Duration::from_secs(auth::oidc::FLOW_TTL.num_seconds().unsigned_abs()));
    jar.add(c);
}

fn clear_binding(jar: &CookieJar) {
    let mut c = super::auth::cookie(auth::oidc::BROWSER_COOKIE, "", true);
    c.set_same_site(SameSite::Lax);
    c.set_max_age(std::time::Duration::ZERO);
    jar.add(c);
}

fn started(jar: &CookieJar, started: auth::oidc::Started) -> Json<AuthorizationStarted> {
    if let Some(binding) = &started.browser_binding {
        set_binding(jar, binding);
    }
    Json(AuthorizationStarted { authorization_url: started.authorization_url, expires_in: started.expires_in })
}

/// A provider's own error code, reduced to what is safe to echo.
fn provider_error_code(error: &str) -> String {
    error.chars().filter(|c| c.is_ascii_lowercase() || *c == '_').take(64).collect()
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Auth")]
impl OidcApi {
    /// The identity providers one can sign in with.
    #[oai(path = "/auth/oidc/providers", method = "get", operation_id = "listIdentityProviders")]
    async fn providers(&self, state: poem::web::Data<&AppState>) -> Json<ProviderList> {
        Json(ProviderList { providers: state.auth.oidc_providers() })
    }

    /// Begin signing in (or up) with a provider in this browser: sets the flow's binding cookie
    /// and answers the provider URL to navigate to. The provider sends the browser back to
    /// `/api/v1/auth/oidc/{provider}/callback`.
    #[oai(path = "/auth/oidc/:provider/start", method = "post", operation_id = "startOidcSignIn")]
    async fn start(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        provider: Path<String>,
    ) -> poem::Result<Json<AuthorizationStarted>> {
        throttle(&state, req, None).await?;
        let flow = state.auth.oidc_start(&provider, auth::oidc::Purpose::SignIn).await.api()?;
        Ok(started(jar, flow))
    }

    /// Begin a native or desktop client's sign-in (RFC 8252). The client opens the answered URL
    /// in the system browser; it gets back a one-minute `code` at its redirect URI, which only it
    /// can exchange (with its PKCE verifier) at `/api/v1/auth/oidc/native/token`.
    #[oai(path = "/auth/oidc/:provider/native/start", method = "post", operation_id = "startNativeOidcSignIn")]
    async fn native_start(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        provider: Path<String>,
        body: Json<NativeStart>,
    ) -> poem::Result<Json<AuthorizationStarted>> {
        throttle(&state, req, None).await?;
        if body.code_challenge_method != "S256" {
            return Err(ApiError::new(
                ErrorCode::InvalidNativeRequest,
                "code_challenge_method must be S256 (RFC 7636 §4.2; `plain` is not accepted).",
            )
            .into());
        }
        let body = body.0;
        let purpose = auth::oidc::Purpose::Native {
            redirect_uri: body.redirect_uri,
            code_challenge: body.code_challenge,
            state: body.state,
        };
        let flow = state.auth.oidc_start(&provider, purpose).await.api()?;
        Ok(started(jar, flow))
    }

    /// Where the provider sends the browser back. Completes the flow the `state` names — once,
    /// within ten minutes, in the browser that began it — and continues with 303 to the
    /// application: signed in (session cookies set), or at `/auth/mfa#challenge=…` when the
    /// account has a second factor; for native clients, to their redirect URI with `code` and
    /// `state`.
    #[oai(path = "/auth/oidc/:provider/callback", method = "get", operation_id = "completeOidcSignIn")]
    #[allow(clippy::too_many_arguments)]
    async fn callback(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        provider: Path<String>,
        code: Query<Option<String>>,
        #[oai(name = "state")] flow_state: Query<Option<String>>,
        /// The provider naming itself (RFC 9207); checked when present.
        iss: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> poem::Result<Redirect> {
        throttle(&state, req, None).await?;
        let binding = jar.get(auth::oidc::BROWSER_COOKIE).map(|c| c.value_str().to_owned());
        clear_binding(jar);
        if let Some(error) = error.0 {
            return Err(ApiError::new(
                ErrorCode::ProviderRefused,
                format!("The identity provider ended the sign-in: {}.", provider_error_code(&error)),
            )
            .into());
        }
        let (Some(code), Some(flow_state)) = (code.0, flow_state.0) else {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "The callback needs `code` and `state`.").into());
        };
        let outcome = state
            .auth
            .oidc_callback(&provider, &code, &flow_state, iss.as_deref(), binding.as_deref(), &meta(req))
            .await
            .api()?;
        let app = state.auth.link_base_url().trim_end_matches('/').to_owned();
        let location = match outcome {
            auth::oidc::Completed::SignedIn(auth::mfa::SignIn::Done(session)) => {
                set_session_cookies(jar, &state, &session);
                format!("{app}/")
            }
            auth::oidc::Completed::SignedIn(auth::mfa::SignIn::SecondFactor(challenge)) => {
                // In the fragment: never sent to a server, never in a log.
                format!("{app}/auth/mfa#challenge={}", challenge.token.expose_secret())
            }
            auth::oidc::Completed::Native { redirect } => redirect.to_string(),
            auth::oidc::Completed::Linked { .. } => format!("{app}/settings/identities#linked={}", provider.0),
            auth::oidc::Completed::Reauthenticated { .. } => format!("{app}/#reauthenticated"),
        };
        Ok(Redirect::SeeOther(location))
    }

    /// A native client exchanges its one-minute code and PKCE verifier for tokens; an account
    /// with a second factor answers 202 with a challenge for `/api/v1/auth/token/mfa`.
    #[oai(path = "/auth/oidc/native/token", method = "post", operation_id = "exchangeNativeOidcCode")]
    async fn native_token(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<NativeToken>,
    ) -> poem::Result<TokenGrantResponse> {
        throttle(&state, req, None).await?;
        match state
            .auth
            .oidc_native_token(&body.code, &body.code_verifier, &body.redirect_uri, &meta(req))
            .await
            .api()?
        {
            auth::mfa::SignIn::Done(pair) => Ok(TokenGrantResponse::Tokens(Json(TokenResponse::from(pair)))),
            auth::mfa::SignIn::SecondFactor(challenge) => {
                Ok(TokenGrantResponse::SecondFactor(Json(SecondFactorRequired::from(challenge))))
            }
        }
    }

    /// The provider identities linked to this account.
    #[oai(path = "/me/identities", method = "get", operation_id = "listIdentities")]
    async fn identities(&self, state: poem::web::Data<&AppState>, auth: Auth) -> poem::Result<Json<Vec<IdentityBody>>> {
        let list = state.auth.identities(auth.principal().user_id).await.api()?;
        Ok(Json(
            list.into_iter()
                .map(|i| IdentityBody {
                    id: i.id,
                    provider: i.provider,
                    email: i.email,
                    created_at: i.created_at,
                    last_sign_in_at: i.last_sign_in_at,
                })
                .collect(),
        ))
    }

    /// Link an identity at a provider to this account (needs a recent authentication): answers
    /// the provider URL, where the user signs in afresh; the callback links it.
    #[oai(path = "/me/identities/:provider/link", method = "post", operation_id = "linkIdentity")]
    async fn link(
        &self,
        state: poem::web::Data<&AppState>,
        jar: &CookieJar,
        auth: Auth,
        provider: Path<String>,
    ) -> poem::Result<Json<AuthorizationStarted>> {
        let principal = auth.principal();
        principal.require_recent(&state)?;
        let purpose = auth::oidc::Purpose::Link { user: principal.user_id, session: principal.session_id };
        let flow = state.auth.oidc_start(&provider, purpose).await.api()?;
        Ok(started(jar, flow))
    }

    /// Unlink an identity (needs a recent authentication). The account keeps at least one way to
    /// sign in: 409 `last_sign_in_method` otherwise.
    #[oai(path = "/me/identities/:id", method = "delete", operation_id = "unlinkIdentity")]
    async fn unlink(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        id: Path<IdentityId>,
    ) -> poem::Result<NoContent> {
        let principal = auth.principal();
        principal.require_recent(&state)?;
        state.auth.unlink_identity(principal.user_id, id.0, &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// Re-authenticate for sensitive actions with the password and, when the account has one,
    /// the second factor. The authentication counts for five minutes. An account with neither
    /// answers 409 `reauthenticate_with_provider`: use `/api/v1/me/reauthenticate/oidc/{provider}`.
    #[oai(path = "/me/reauthenticate", method = "post", operation_id = "reauthenticate")]
    async fn reauthenticate(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<Reauthenticate>,
    ) -> poem::Result<Json<Reauthenticated>> {
        let principal = auth.principal();
        throttle(&state, req, Some(&principal.user.email)).await?;
        let factor = match (&body.code, &body.recovery_code) {
            (Some(code), None) => Some(auth::mfa::Factor::Totp(code)),
            (None, Some(code)) => Some(auth::mfa::Factor::RecoveryCode(code)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(
                    ApiError::new(ErrorCode::InvalidRequest, "Send at most one of `code` and `recovery_code`.").into()
                )
            }
        };
        let fresh = state
            .auth
            .reauthenticate(principal.user_id, body.password.as_deref(), factor.as_ref(), &meta(req))
            .await
            .api()?;
        let (access_token, expires_in) = match &principal.session {
            Some(session) => {
                state.auth.stamp_session(&session.token_hash, &fresh).await.api()?;
                (None, None)
            }
            None => {
                let (token, ttl) = state
                    .auth
                    .stamp_family(principal.user_id, ids::FamilyId(principal.session_id.0), &fresh)
                    .await
                    .api()?;
                (Some(token.expose_secret().to_owned()), Some(ttl))
            }
        };
        Ok(Json(Reauthenticated {
            authenticated_at: fresh.at,
            amr: fresh.amr,
            valid_for: auth::STEP_UP_MAX_AGE.num_seconds(),
            access_token,
            expires_in,
        }))
    }

    /// Re-authenticate through a linked provider, for accounts without a password or second
    /// factor (others answer 409 `reauthenticate_locally`): answers the provider URL, where the
    /// user must sign in afresh; the callback stamps this session.
    #[oai(path = "/me/reauthenticate/oidc/:provider", method = "post", operation_id = "reauthenticateWithProvider")]
    async fn reauthenticate_oidc(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        auth: Auth,
        provider: Path<String>,
    ) -> poem::Result<Json<AuthorizationStarted>> {
        let principal = auth.principal();
        throttle(&state, req, Some(&principal.user.email)).await?;
        let purpose = auth::oidc::Purpose::Reauth { user: principal.user_id, session: principal.session_id };
        let flow = state.auth.oidc_start(&provider, purpose).await.api()?;
        Ok(started(jar, flow))
    }
}
