//! Turning a request into a principal: the session cookie (with its CSRF check) or a bearer
//! token, declared as OpenAPI security schemes so a handler without one does not compile.

use crate::codes::ErrorCode;
use poem::{http::Method, Request};
use poem_openapi::{
    auth::{ApiKey, Bearer},
    SecurityScheme,
};

use crate::{error::ApiError, AppState};

/// Name of the session cookie. `__Host-` binds it to this host, `Path=/`, `Secure`, no `Domain`
/// (OWASP Session Management Cheat Sheet, "Cookie prefixes").
pub const SESSION_COOKIE: &str = "__Host-rampart_session";
/// Name of the readable cookie that carries the CSRF token for browser code.
pub const CSRF_COOKIE: &str = "__Host-rampart_csrf";
/// Header in which state-changing cookie-authenticated requests must echo the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: ids::UserId,
    /// The active user, read on this request.
    pub user: auth::service::UserView,
    /// The session (cookie) or token family (bearer) the request authenticated with.
    pub session_id: ids::SessionId,
    /// Present for cookie sessions: the stored hash, to end this very session.
    pub session: Option<auth::SessionPrincipal>,
    /// Present for API keys: the one workspace and the scopes the key acts within.
    pub api_key: Option<auth::api_keys::KeyGrant>,
    /// When and how the user last authenticated (the session's record or the token's `auth_time`
    /// and `amr`); `None` for API keys, which never authenticate a person.
    pub authentication: Option<auth::Authentication>,
    /// Present for a token made by exchange: the one workspace it acts in, and the permissions
    /// it is narrowed to (`None`: the user's own there).
    pub binding: Option<Binding>,
}

/// What a workspace-bound token may do.
#[derive(Debug, Clone)]
pub struct Binding {
    pub workspace: ids::WorkspaceId,
    pub scopes: Option<Vec<rbac::Permission>>,
}

impl Principal {
    /// Refuses with 401 `insufficient_user_authentication` unless the user authenticated within
    /// [`auth::STEP_UP_MAX_AGE`]: the guard of sensitive actions. API keys never pass.
    pub fn require_recent(&self, state: &AppState) -> Result<(), ApiError> {
        match &self.authentication {
            Some(a) if self.api_key.is_none() && a.is_recent(state.auth.now()) => Ok(()),
            _ => Err(ApiError::step_up(auth::STEP_UP_MAX_AGE.num_seconds())),
        }
    }

    /// The sign-in behind this request included a second factor.
    pub fn has_second_factor(&self) -> bool {
        self.authentication.as_ref().is_some_and(auth::Authentication::has_second_factor)
    }
}

/// Browser sessions: the session cookie.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "api_key", key_name = "__Host-rampart_session", key_in = "cookie", checker = "check_cookie")]
pub struct CookieAuth(pub Principal);

/// API clients: a short-lived JWT access token.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

/// Either credential. Bearer is tried first; cookie errors (such as a missing CSRF token) win
/// when both fail, since they say more.
#[derive(Debug, SecurityScheme)]
pub enum Auth {
    Bearer(BearerAuth),
    Cookie(CookieAuth),
}

impl Auth {
    pub fn principal(&self) -> &Principal {
        match self {
            Auth::Bearer(BearerAuth(p)) | Auth::Cookie(CookieAuth(p)) => p,
        }
    }
}

/// Programs acting in one workspace: an API key (`rk_live_…`) in the `X-Api-Key` header. Its
/// requests are limited to the key's scopes, its creator's role and its caps.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-Api-Key", key_in = "header", checker = "check_api_key")]
pub struct ApiKeyAuth(pub Principal);

/// Agents acting in one workspace for a user: a short-lived JWT made by
/// `POST /workspaces/{workspace_id}/tokens`, bound to that workspace (and its scope).
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bound_bearer")]
pub struct WorkspaceTokenAuth(pub Principal);

/// The credentials of workspace routes: a user's (bearer or cookie), a workspace-bound token's
/// or an API key's.
#[derive(Debug, SecurityScheme)]
pub enum WorkspaceAuth {
    Bearer(BearerAuth),
    Cookie(CookieAuth),
    WorkspaceToken(WorkspaceTokenAuth),
    ApiKey(ApiKeyAuth),
}

impl WorkspaceAuth {
    pub fn principal(&self) -> &Principal {
        match self {
            WorkspaceAuth::Bearer(BearerAuth(p))
            | WorkspaceAuth::Cookie(CookieAuth(p))
            | WorkspaceAuth::WorkspaceToken(WorkspaceTokenAuth(p))
            | WorkspaceAuth::ApiKey(ApiKeyAuth(p)) => p,
        }
    }
}

fn state(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| poem::Error::from_string("state missing", poem::http::StatusCode::INTERNAL_SERVER_ERROR))
}

fn unauthenticated() -> poem::Error {
    ApiError::new(ErrorCode::Unauthenticated, "Sign in first.").into()
}

/// A credential that does not authenticate is 401. A store that could not say whether it does
/// answers for itself (503 when it was busy or unreachable), never 401: the credential may be
/// valid, and a client told to sign in again would throw it away.
fn refusal(err: auth::AuthError) -> poem::Error {
    use auth::AuthError as E;
    match err {
        E::Unavailable { .. } | E::Store(_) | E::Db(_) | E::Audit(_) | E::Outbox(_) | E::Internal(_) => {
            crate::error::note_credential_fault(ApiError::from(err)).into()
        }
        _ => unauthenticated(),
    }
}

async fn check_cookie(req: &Request, key: ApiKey) -> poem::Result<Principal> {
    let state = state(req)?;
    let session = state.auth.authenticate_session(&key.key).await.map_err(refusal)?;
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let header = req.header(CSRF_HEADER).unwrap_or_default();
        if !crate::csrf::verify(state.auth.tokens(), session.session.id, header) {
            return Err(ApiError::new(
                ErrorCode::CsrfFailed,
                "State-changing requests with a session cookie must send the CSRF token in the X-CSRF-Token header.",
            )
            .into());
        }
    }
    Ok(Principal {
        user_id: session.user_id,
        user: session.user.clone(),
        session_id: session.session.id,
        authentication: session.session.authentication(),
        session: Some(session),
        api_key: None,
        binding: None,
    })
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    // A workspace-bound token acts only on its workspace's routes.
    bearer_principal(req, &bearer, false).await
}

async fn check_bound_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    bearer_principal(req, &bearer, true).await
}

/// The principal of a bearer access token that is workspace-bound (`bound`) or not. The kind is
/// told from the verified claims (cached by digest) before the per-request read, so a token tried
/// against both schemes of a workspace route reads the database once.
async fn bearer_principal(req: &Request, bearer: &Bearer, bound: bool) -> poem::Result<Principal> {
    let state = state(req)?;
    let signed = state.auth.access_tokens().verify_access(&bearer.token).map_err(|_| unauthenticated())?;
    if signed.ws.is_some() != bound {
        return Err(unauthenticated());
    }
    // Suspension, revocation and a credential-ending event (password change or reset, revoke-all)
    // take effect on the very next request, not at token expiry.
    let (claims, user) = state.auth.authenticate_access(&bearer.token).await.map_err(refusal)?;
    let authentication = claims
        .auth_time
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|at| auth::Authentication { at, amr: claims.amr.clone() });
    let binding = match claims.ws {
        Some(workspace) => {
            let scopes = match &claims.scope {
                Some(scope) => Some(
                    scope
                        .split_whitespace()
                        .map(rbac::Permission::parse)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| unauthenticated())?,
                ),
                None => None,
            };
            Some(Binding { workspace, scopes })
        }
        None => None,
    };
    Ok(Principal {
        user_id: claims.sub,
        user,
        session_id: claims.sid,
        session: None,
        api_key: None,
        authentication,
        binding,
    })
}

/// The key was authenticated and counted by [`crate::middleware::api_keys`]; this turns its grant
/// into a principal acting as the key's creator (whose suspension ends the key at once).
async fn check_api_key(req: &Request, _key: ApiKey) -> poem::Result<Principal> {
    let state = state(req)?;
    let grant = req.extensions().get::<auth::api_keys::KeyGrant>().cloned().ok_or_else(unauthenticated)?;
    let user = state.auth.me(grant.user).await.map_err(refusal)?;
    Ok(Principal {
        user_id: grant.user,
        user,
        // An API key is its own credential: its id stands where a session's would.
        session_id: ids::SessionId(grant.key_id.0),
        session: None,
        api_key: Some(grant),
        authentication: None,
        binding: None,
    })
}
