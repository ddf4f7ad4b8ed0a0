//! Sign-up, e-mail verification, sign-in and sign-out, password change and reset, sessions, and
//! the current user.

use crate::codes::ErrorCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ids::{FamilyId, SessionId, UserId};
use poem::{
    web::cookie::{Cookie, CookieJar, SameSite},
    Request,
};
use poem_openapi::{param::Path, payload::Json, ApiResponse, Enum, Object, OpenApi};
use secrecy::ExposeSecret;

use super::{ApiTags, NoContent};
use crate::{
    csrf,
    error::{ApiError, OrApiError},
    principal::{Auth, CookieAuth, CSRF_COOKIE, SESSION_COOKIE},
    AppState,
};

pub(crate) struct AuthApi;

/// E-mail and password.
#[derive(Debug, Object)]
#[oai(example)]
struct Credentials {
    /// The account's e-mail address: at most 254 bytes once trimmed and lower-cased (RFC 5321 §4.5.3.1); the schema states
    /// 254 characters of ASCII, or 63 characters of any kind (a character takes up to 4 bytes).
    #[oai(validator(max_length = 254, pattern = r"^(?:[\x00-\x7F]*|[\s\S]{0,63})$"))]
    email: String,
    /// The password (never logged).
    #[oai(write_only)]
    password: String,
}

impl poem_openapi::types::Example for Credentials {
    fn example() -> Self {
        Credentials { email: "jane.doe@example.com".into(), password: "correct horse battery staple".into() }
    }
}

/// Accepted for processing; the outcome arrives by e-mail.
#[derive(Debug, Object)]
struct Accepted {
    /// `accepted`.
    status: String,
}

/// A one-time token from an e-mailed link.
#[derive(Debug, Object)]
#[oai(example)]
struct OneTimeToken {
    #[oai(write_only)]
    token: String,
}

impl poem_openapi::types::Example for OneTimeToken {
    fn example() -> Self {
        OneTimeToken { token: "kq3VYh1xT0m8cFz2Jw6rLp9sNd4bGa7uEi5oHt0yXv".into() }
    }
}

/// A user.
#[derive(Debug, Object)]
struct UserBody {
    id: UserId,
    email: String,
    email_verified: bool,
    created_at: DateTime<Utc>,
}

impl From<auth::service::UserView> for UserBody {
    fn from(u: auth::service::UserView) -> Self {
        UserBody { id: u.id, email: u.email, email_verified: u.email_verified, created_at: u.created_at }
    }
}

/// What kind of credential a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
enum SessionKind {
    /// A browser session (the session cookie).
    BrowserSession,
    /// An API client's token family (a refresh token and its access tokens).
    TokenFamily,
}

/// A session: a browser session or an API client's token family (never a token).
#[derive(Debug, Object)]
struct SessionBody {
    /// The session's id, or the token family's (the access tokens' `sid`).
    id: SessionId,
    kind: SessionKind,
    created_at: DateTime<Utc>,
    /// The last sliding refresh of a browser session; the last token refresh of a family.
    last_refreshed_at: DateTime<Utc>,
    idle_expires_at: DateTime<Utc>,
    absolute_expires_at: DateTime<Utc>,
    user_agent: Option<String>,
    /// The client address it was last used from.
    ip: Option<String>,
    /// True for the session making this request.
    current: bool,
}

fn session_body(c: auth::Credential, current: Option<SessionId>) -> SessionBody {
    SessionBody {
        current: Some(c.id) == current,
        id: c.id,
        kind: match c.kind {
            auth::CredentialKind::BrowserSession => SessionKind::BrowserSession,
            auth::CredentialKind::TokenFamily => SessionKind::TokenFamily,
        },
        created_at: c.created_at,
        last_refreshed_at: c.last_used_at,
        idle_expires_at: c.idle_expires_at,
        absolute_expires_at: c.absolute_expires_at,
        user_agent: c.user_agent,
        ip: c.ip,
    }
}

/// A new browser session. The session token is only in the `__Host-rampart_session` cookie
/// (HttpOnly); send `csrf_token` as `X-CSRF-Token` on state-changing requests.
#[derive(Debug, Object)]
pub(super) struct SignedIn {
    user: UserBody,
    session: SessionBody,
    csrf_token: String,
}

/// Password change.
#[derive(Debug, Object)]
#[oai(example)]
struct ChangePassword {
    #[oai(write_only)]
    current_password: String,
    /// 15 to 128 characters once normalised to NFKC (NIST SP 800-63B-4 §3.1.1.2), not a common or
    /// breached password, not built on the e-mail address.
    #[oai(write_only, validator(min_length = 15, max_length = 128))]
    new_password: String,
}

impl poem_openapi::types::Example for ChangePassword {
    fn example() -> Self {
        ChangePassword {
            current_password: "correct horse battery staple".into(),
            new_password: "violet ocean ladder lantern".into(),
        }
    }
}

/// A reset request.
#[derive(Debug, Object)]
#[oai(example)]
struct ResetRequest {
    /// At most 254 bytes once trimmed and lower-cased (RFC 5321 §4.5.3.1); the schema states
    /// 254 characters of ASCII, or 63 characters of any kind (a character takes up to 4 bytes).
    #[oai(validator(max_length = 254, pattern = r"^(?:[\x00-\x7F]*|[\s\S]{0,63})$"))]
    email: String,
}

impl poem_openapi::types::Example for ResetRequest {
    fn example() -> Self {
        ResetRequest { email: "jane.doe@example.com".into() }
    }
}

/// A reset confirmation.
#[derive(Debug, Object)]
#[oai(example)]
struct ResetConfirm {
    #[oai(write_only)]
    token: String,
    /// 15 to 128 characters once normalised to NFKC (NIST SP 800-63B-4 §3.1.1.2), not a common or
    /// breached password, not built on the e-mail address.
    #[oai(write_only, validator(min_length = 15, max_length = 128))]
    new_password: String,
}

impl poem_openapi::types::Example for ResetConfirm {
    fn example() -> Self {
        ResetConfirm {
            token: "kq3VYh1xT0m8cFz2Jw6rLp9sNd4bGa7uEi5oHt0yXv".into(),
            new_password: "violet ocean ladder lantern".into(),
        }
    }
}

/// How many sessions ended, of each kind.
#[derive(Debug, Object)]
pub(super) struct Revoked {
    /// Browser sessions and token families together.
    revoked: u64,
    /// Browser sessions ended.
    sessions: u64,
    /// Token families ended (their refresh tokens at once, their access tokens on next use).
    token_families: u64,
}

impl From<auth::Ended> for Revoked {
    fn from(e: auth::Ended) -> Revoked {
        Revoked { revoked: e.total() as u64, sessions: e.sessions as u64, token_families: e.token_families as u64 }
    }
}

/// Tokens for an API client (OAuth 2.0 token response shape, RFC 6749 §5.1).
#[derive(Debug, Object)]
pub(super) struct TokenResponse {
    /// A JWT (EdDSA), valid `expires_in` seconds; send as `Authorization: Bearer …`.
    access_token: String,
    /// `Bearer`.
    token_type: String,
    expires_in: i64,
    /// Single use: exchange it at `/api/v1/auth/token/refresh` for a new pair.
    refresh_token: String,
}

impl From<auth::service::TokenPair> for TokenResponse {
    fn from(p: auth::service::TokenPair) -> Self {
        TokenResponse {
            access_token: p.access_token.expose_secret().to_owned(),
            token_type: "Bearer".into(),
            expires_in: p.expires_in,
            refresh_token: p.refresh_token.expose_secret().to_owned(),
        }
    }
}

/// A refresh token.
#[derive(Debug, Object)]
#[oai(example)]
struct RefreshRequest {
    #[oai(write_only)]
    refresh_token: String,
}

impl poem_openapi::types::Example for RefreshRequest {
    fn example() -> Self {
        RefreshRequest { refresh_token: "rt_8Hn2Qw5Zk1Lp7Vx3Cy9Bm4Td6Fs0Gj2Rh5Nq8Wa1E".into() }
    }
}

/// The step between the password and the second factor.
#[derive(Debug, Object)]
pub(super) struct SecondFactorRequired {
    /// `mfa_required`.
    status: String,
    /// Present it with a code at `/api/v1/auth/signin/mfa` (browser sign-in) or
    /// `/api/v1/auth/token/mfa` (API clients): single use, `expires_in` seconds, five attempts.
    #[oai(read_only)]
    challenge: String,
    expires_in: i64,
}

impl From<auth::mfa::Challenge> for SecondFactorRequired {
    fn from(c: auth::mfa::Challenge) -> Self {
        SecondFactorRequired {
            status: "mfa_required".into(),
            challenge: c.token.expose_secret().to_owned(),
            expires_in: c.expires_in,
        }
    }
}

#[derive(ApiResponse)]
pub(super) enum SignInResponse {
    /// Signed in.
    #[oai(status = 200)]
    SignedIn(Json<SignedIn>),
    /// The password was right; the account has a second factor: complete with the challenge.
    #[oai(status = 202)]
    SecondFactor(Json<SecondFactorRequired>),
}

#[derive(ApiResponse)]
pub(super) enum TokenGrantResponse {
    /// Tokens issued.
    #[oai(status = 200)]
    Tokens(Json<TokenResponse>),
    /// The password was right; the account has a second factor: complete with the challenge.
    #[oai(status = 202)]
    SecondFactor(Json<SecondFactorRequired>),
}

/// A second factor: a current TOTP code, or one of the recovery codes.
#[derive(Object)]
#[oai(example)]
pub(super) struct FactorBody {
    /// Six digits from the authenticator app.
    #[oai(write_only)]
    code: Option<String>,
    /// One of the ten recovery codes (each works once).
    #[oai(write_only)]
    recovery_code: Option<String>,
}

impl poem_openapi::types::Example for FactorBody {
    fn example() -> Self {
        FactorBody { code: Some("492039".into()), recovery_code: None }
    }
}

impl std::fmt::Debug for FactorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorBody([REDACTED])")
    }
}

impl FactorBody {
    pub(super) fn factor(&self) -> poem::Result<auth::mfa::Factor<'_>> {
        match (&self.code, &self.recovery_code) {
            (Some(code), None) => Ok(auth::mfa::Factor::Totp(code)),
            (None, Some(code)) => Ok(auth::mfa::Factor::RecoveryCode(code)),
            _ => {
                Err(ApiError::new(ErrorCode::InvalidRequest, "Send exactly one of `code` and `recovery_code`.").into())
            }
        }
    }
}

/// The challenge from the password step, with a second factor.
#[derive(Object)]
#[oai(example)]
struct CompleteSignIn {
    #[oai(write_only)]
    challenge: String,
    #[oai(flatten)]
    factor: FactorBody,
}

impl poem_openapi::types::Example for CompleteSignIn {
    fn example() -> Self {
        CompleteSignIn {
            challenge: "mfa_4Jt8Pz2Lq6Wx0Nc3Vb7Hk5Sd9Ry1Ge4Uf8Ma2Oi".into(),
            factor: FactorBody { code: Some("492039".into()), recovery_code: None },
        }
    }
}

impl std::fmt::Debug for CompleteSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompleteSignIn([REDACTED])")
    }
}

/// A TOTP factor being set up, shown once.
#[derive(Object)]
struct TotpEnrolment {
    /// The secret in base32 (RFC 4648), for manual entry.
    #[oai(read_only)]
    secret: String,
    /// `otpauth://totp/…`: render it as a QR code for the authenticator app.
    #[oai(read_only)]
    otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment([REDACTED])")
    }
}

/// A code from the authenticator app.
#[derive(Object)]
#[oai(example)]
struct TotpCode {
    #[oai(write_only)]
    code: String,
}

impl poem_openapi::types::Example for TotpCode {
    fn example() -> Self {
        TotpCode { code: "492039".into() }
    }
}

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode([REDACTED])")
    }
}

/// Ten single-use recovery codes, shown once: keep them somewhere safe.
#[derive(Object)]
struct RecoveryCodes {
    #[oai(read_only)]
    recovery_codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCodes([REDACTED])")
    }
}

fn recovery_body(codes: Vec<secrecy::SecretString>) -> RecoveryCodes {
    RecoveryCodes { recovery_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect() }
}

/// Whether the account has a second factor.
#[derive(Debug, Object)]
struct MfaStatus {
    enabled: bool,
}

#[derive(ApiResponse)]
enum AcceptedResponse {
    /// Accepted; the same answer whether or not an account exists.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

/// Sign-in, sign-up, reset and verification are throttled per client address and per account
/// over this window (`http.auth_attempts_per_minute`, default 10).
const AUTH_WINDOW: Duration = Duration::from_secs(60);

pub(crate) fn meta(req: &Request) -> auth::RequestMeta {
    auth::RequestMeta {
        ip: crate::middleware::client_ip(req),
        user_agent: req.header("user-agent").map(|ua| ua.chars().take(256).collect()),
        request_id: Some(crate::error::current_request_id()),
    }
}

pub(super) async fn throttle(state: &AppState, req: &Request, account: Option<&str>) -> poem::Result<()> {
    let ip = crate::middleware::client_ip(req).unwrap_or_else(|| "unknown".into());
    let mut keys = vec![format!("auth:ip:{ip}")];
    if let Some(account) = account {
        // Keyed hash: the counter key does not store the address in clear.
        keys.push(format!("auth:acct:{}", state.auth.tokens().hash("throttle", &account.trim().to_lowercase())));
    }
    if state.auth_attempts_per_minute == 0 {
        return Ok(());
    }
    for key in keys {
        let decision = state.auth.kv().hit_or_local(&key, state.auth_attempts_per_minute, AUTH_WINDOW).await.api()?;
        if !decision.allowed {
            return Err(ApiError::rate_limited(decision.retry_after_secs).into());
        }
    }
    Ok(())
}

pub(super) fn cookie(name: &str, value: &str, http_only: bool) -> Cookie {
    let mut c = Cookie::new_with_str(name, value);
    c.set_path("/");
    c.set_secure(true);
    c.set_http_only(http_only);
    // Strict: never sent on cross-site requests (OWASP Session Management Cheat Sheet). No
    // Max-Age: a browser-session cookie; the server enforces the idle and absolute limits.
    c.set_same_site(SameSite::Strict);
    c
}

pub(super) fn set_session_cookies(jar: &CookieJar, state: &AppState, session: &auth::service::NewSession) -> String {
    let csrf = csrf::issue(state.auth.tokens(), session.record.id);
    jar.add(cookie(SESSION_COOKIE, session.token.expose_secret(), true));
    jar.add(cookie(CSRF_COOKIE, &csrf, false));
    csrf
}

/// Sets the cookies of a new session and describes it to the client.
pub(super) async fn signed_in(
    state: &AppState,
    jar: &CookieJar,
    session: auth::service::NewSession,
) -> poem::Result<Json<SignedIn>> {
    let csrf_token = set_session_cookies(jar, state, &session);
    let user = state.auth.me(session.record.user_id).await.api()?;
    Ok(Json(SignedIn {
        user: user.into(),
        session: session_body(session.record.clone().into(), Some(session.record.id)),
        csrf_token,
    }))
}

fn clear_session_cookies(jar: &CookieJar) {
    for (name, http_only) in [(SESSION_COOKIE, true), (CSRF_COOKIE, false)] {
        let mut c = cookie(name, "", http_only);
        c.set_max_age(std::time::Duration::ZERO);
        jar.add(c);
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account; a verification link is e-mailed (valid 24 h). The answer is the same
    /// whether or not the address already has an account.
    #[oai(path = "/auth/signup", method = "post", operation_id = "signUp")]
    async fn sign_up(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<Credentials>,
    ) -> poem::Result<AcceptedResponse> {
        throttle(&state, req, Some(&body.email)).await?;
        state.auth.sign_up(&body.email, &body.password, &meta(req)).await.api()?;
        Ok(AcceptedResponse::Accepted(Json(Accepted { status: "accepted".into() })))
    }

    /// Confirm an e-mail address with the token from the link.
    #[oai(path = "/auth/verify-email", method = "post", operation_id = "verifyEmail")]
    async fn verify_email(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<OneTimeToken>,
    ) -> poem::Result<NoContent> {
        throttle(&state, req, None).await?;
        state.auth.verify_email(&body.token, &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// Sign in with e-mail and password; opens a browser session (a new token every time). An
    /// account with a second factor answers 202 with a challenge to complete at
    /// `/api/v1/auth/signin/mfa`.
    #[oai(path = "/auth/signin", method = "post", operation_id = "signIn")]
    async fn sign_in(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        body: Json<Credentials>,
    ) -> poem::Result<SignInResponse> {
        throttle(&state, req, Some(&body.email)).await?;
        let previous = jar.get(SESSION_COOKIE).map(|c| c.value_str().to_owned());
        match state.auth.sign_in(&body.email, &body.password, previous.as_deref(), &meta(req)).await.api()? {
            auth::mfa::SignIn::Done(session) => Ok(SignInResponse::SignedIn(signed_in(&state, jar, session).await?)),
            auth::mfa::SignIn::SecondFactor(challenge) => Ok(SignInResponse::SecondFactor(Json(challenge.into()))),
        }
    }

    /// Complete a browser sign-in with the second factor: a TOTP code or a recovery code.
    #[oai(path = "/auth/signin/mfa", method = "post", operation_id = "completeSignIn")]
    async fn complete_sign_in(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        body: Json<CompleteSignIn>,
    ) -> poem::Result<Json<SignedIn>> {
        throttle(&state, req, None).await?;
        let session = state.auth.complete_sign_in(&body.challenge, &body.factor.factor()?, &meta(req)).await.api()?;
        signed_in(&state, jar, session).await
    }

    /// Exchange e-mail and password for an access token and a refresh token (API clients). An
    /// account with a second factor answers 202 with a challenge to complete at
    /// `/api/v1/auth/token/mfa`.
    #[oai(path = "/auth/token", method = "post", operation_id = "issueToken")]
    async fn token(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<Credentials>,
    ) -> poem::Result<TokenGrantResponse> {
        throttle(&state, req, Some(&body.email)).await?;
        match state.auth.password_grant(&body.email, &body.password, &meta(req)).await.api()? {
            auth::mfa::SignIn::Done(pair) => Ok(TokenGrantResponse::Tokens(Json(pair.into()))),
            auth::mfa::SignIn::SecondFactor(challenge) => Ok(TokenGrantResponse::SecondFactor(Json(challenge.into()))),
        }
    }

    /// Complete an API client's password grant with the second factor.
    #[oai(path = "/auth/token/mfa", method = "post", operation_id = "completeTokenGrant")]
    async fn complete_token(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<CompleteSignIn>,
    ) -> poem::Result<Json<TokenResponse>> {
        throttle(&state, req, None).await?;
        let pair =
            state.auth.complete_password_grant(&body.challenge, &body.factor.factor()?, &meta(req)).await.api()?;
        Ok(Json(pair.into()))
    }

    /// Whether my account has a second factor.
    #[oai(path = "/me/mfa", method = "get", operation_id = "mfaStatus")]
    async fn mfa_status(&self, state: poem::web::Data<&AppState>, auth: Auth) -> poem::Result<Json<MfaStatus>> {
        Ok(Json(MfaStatus { enabled: state.auth.mfa_enabled(auth.principal().user_id).await.api()? }))
    }

    /// Start setting up TOTP (needs a recent authentication): the secret and `otpauth://` URI,
    /// shown once. It counts only after `/api/v1/me/mfa/totp/confirm` with a first code.
    #[oai(path = "/me/mfa/totp", method = "post", operation_id = "enrolTotp")]
    async fn enrol_totp(&self, state: poem::web::Data<&AppState>, auth: Auth) -> poem::Result<Json<TotpEnrolment>> {
        // A stolen session must not bind the attacker's authenticator to the account.
        auth.principal().require_recent(&state)?;
        let enrolment = state.auth.totp_enrol(auth.principal().user_id).await.api()?;
        Ok(Json(TotpEnrolment {
            secret: enrolment.secret.expose_secret().to_owned(),
            otpauth_uri: enrolment.uri.expose_secret().to_owned(),
        }))
    }

    /// Confirm TOTP with a first code: from now on sign-in asks for a second factor. Answers the
    /// ten recovery codes, shown once.
    #[oai(path = "/me/mfa/totp/confirm", method = "post", operation_id = "confirmTotp")]
    async fn confirm_totp(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<TotpCode>,
    ) -> poem::Result<Json<RecoveryCodes>> {
        throttle(&state, req, None).await?;
        let codes = state.auth.totp_confirm(auth.principal().user_id, &body.code, &meta(req)).await.api()?;
        Ok(Json(recovery_body(codes)))
    }

    /// New recovery codes (the old ones stop working), after a current second factor.
    #[oai(path = "/me/mfa/recovery-codes", method = "post", operation_id = "regenerateRecoveryCodes")]
    async fn regenerate_recovery_codes(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<FactorBody>,
    ) -> poem::Result<Json<RecoveryCodes>> {
        throttle(&state, req, None).await?;
        let codes =
            state.auth.regenerate_recovery_codes(auth.principal().user_id, &body.factor()?, &meta(req)).await.api()?;
        Ok(Json(recovery_body(codes)))
    }

    /// Turn the second factor off (needs a recent authentication), after a current second factor.
    #[oai(path = "/me/mfa/disable", method = "post", operation_id = "disableMfa")]
    async fn disable_mfa(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<FactorBody>,
    ) -> poem::Result<NoContent> {
        auth.principal().require_recent(&state)?;
        throttle(&state, req, None).await?;
        state.auth.mfa_disable(auth.principal().user_id, &body.factor()?, &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// Rotate a refresh token: the old one stops working. Presenting a used refresh token again
    /// (after a 10-second grace for concurrent clients) revokes the whole token family.
    #[oai(path = "/auth/token/refresh", method = "post", operation_id = "refreshToken")]
    async fn refresh(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> poem::Result<Json<TokenResponse>> {
        throttle(&state, req, None).await?;
        Ok(Json(state.auth.refresh(&body.refresh_token, &meta(req)).await.api()?.into()))
    }

    /// Revoke the token family of the presented access token (sign-out for API clients).
    #[oai(path = "/auth/token/revoke", method = "post", operation_id = "revokeToken")]
    async fn revoke_token(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: crate::principal::BearerAuth,
    ) -> poem::Result<NoContent> {
        throttle(&state, req, None).await?;
        // A bearer token's session is its token family.
        state.auth.revoke_family(auth.0.user_id, FamilyId(auth.0.session_id.0), &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// End the current browser session.
    #[oai(path = "/auth/signout", method = "post", operation_id = "signOut")]
    async fn sign_out(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        auth: CookieAuth,
    ) -> poem::Result<NoContent> {
        throttle(&state, req, None).await?;
        if let Some(session) = &auth.0.session {
            state.auth.sign_out(session, &meta(req)).await.api()?;
        }
        clear_session_cookies(jar);
        Ok(NoContent::Done)
    }

    /// The signed-in user.
    #[oai(path = "/me", method = "get", operation_id = "me")]
    async fn me(&self, auth: Auth) -> poem::Result<Json<UserBody>> {
        Ok(Json(auth.principal().user.clone().into()))
    }

    /// Change the password (needs a recent authentication, and the current password). Every
    /// other session ends; this one gets a fresh token.
    #[oai(path = "/auth/password/change", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        auth: CookieAuth,
        body: Json<ChangePassword>,
    ) -> poem::Result<Json<SignedIn>> {
        let Some(current) = &auth.0.session else {
            return Err(ApiError::from(auth::AuthError::Unauthenticated).into());
        };
        auth.0.require_recent(&state)?;
        throttle(&state, req, None).await?;
        let session =
            state.auth.change_password(current, &body.current_password, &body.new_password, &meta(req)).await.api()?;
        signed_in(&state, jar, session).await
    }

    /// Ask for a password-reset link (valid 1 h, single use). The answer is the same whether
    /// or not the address has an account.
    #[oai(path = "/auth/password/reset", method = "post", operation_id = "requestPasswordReset")]
    async fn request_reset(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<ResetRequest>,
    ) -> poem::Result<AcceptedResponse> {
        throttle(&state, req, Some(&body.email)).await?;
        state.auth.request_password_reset(&body.email, &meta(req)).await.api()?;
        Ok(AcceptedResponse::Accepted(Json(Accepted { status: "accepted".into() })))
    }

    /// Set a new password with the token from the reset link. Every session ends.
    #[oai(path = "/auth/password/reset/confirm", method = "post", operation_id = "confirmPasswordReset")]
    async fn confirm_reset(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        body: Json<ResetConfirm>,
    ) -> poem::Result<NoContent> {
        throttle(&state, req, None).await?;
        state.auth.reset_password(&body.token, &body.new_password, &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// My live sessions: browser sessions and API clients' token families (device, created,
    /// last used, from where; never a token).
    #[oai(path = "/auth/sessions", method = "get", operation_id = "listSessions")]
    async fn sessions(&self, state: poem::web::Data<&AppState>, auth: Auth) -> poem::Result<Json<Vec<SessionBody>>> {
        let p = auth.principal();
        let list = state.auth.list_sessions(p.user_id).await.api()?;
        Ok(Json(list.into_iter().map(|r| session_body(r, Some(p.session_id))).collect()))
    }

    /// End one of my sessions: a browser session, or a token family (its refresh token at once,
    /// its access tokens on their next request).
    #[oai(path = "/auth/sessions/:id", method = "delete", operation_id = "revokeSession")]
    async fn revoke_one(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        id: Path<SessionId>,
    ) -> poem::Result<NoContent> {
        throttle(&state, req, None).await?;
        state.auth.revoke_sessions(auth.principal().user_id, auth::Revoke::One(id.0), &meta(req)).await.api()?;
        Ok(NoContent::Done)
    }

    /// End every session but this one.
    #[oai(path = "/auth/sessions/revoke-others", method = "post", operation_id = "revokeOtherSessions")]
    async fn revoke_others(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
    ) -> poem::Result<Json<Revoked>> {
        throttle(&state, req, None).await?;
        let p = auth.principal();
        let ended =
            state.auth.revoke_sessions(p.user_id, auth::Revoke::AllExcept(p.session_id), &meta(req)).await.api()?;
        Ok(Json(ended.into()))
    }

    /// End every session, this one included.
    #[oai(path = "/auth/sessions/revoke-all", method = "post", operation_id = "revokeAllSessions")]
    async fn revoke_all(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        jar: &CookieJar,
        auth: Auth,
    ) -> poem::Result<Json<Revoked>> {
        throttle(&state, req, None).await?;
        let ended = state.auth.revoke_sessions(auth.principal().user_id, auth::Revoke::All, &meta(req)).await.api()?;
        clear_session_cookies(jar);
        Ok(Json(ended.into()))
    }
}
