//! The service other crates call: [`AuthService`], a façade over the flows. It holds the core the
//! flows run over and the OpenID Connect providers, and each of its methods hands one request to
//! one flow module (`crate::flows`). It owns no flow itself; no flow depends on it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crypto_vault::KeyMaterial;
use ids::{FamilyId, IdentityId, SessionId, UserId, WorkspaceId};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use storage::{Clock, Db};

pub use crate::core::accounts::UserView;
use crate::core::context::Core;
use crate::core::error::AuthError;
pub use crate::core::events;
pub use crate::core::families::{TokenPair, REFRESH_REUSE_GRACE, REFRESH_TTL};
use crate::core::jwt::AccessClaims;
pub use crate::core::lockout::{LOCKOUT_BASE, LOCKOUT_MAX, LOCKOUT_THRESHOLD};
use crate::core::revocation::Ended;
pub use crate::core::sessions::{NewSession, SessionPrincipal, SESSION_ABSOLUTE, SESSION_IDLE, SESSION_REFRESH};
pub use crate::core::settings::{AuthSettings, RequestMeta, SignupMode};
use crate::core::{
    access::AccessTokens, authentication::Authentication, password::PasswordHasher, store::Kv, token::TokenHasher,
};
use crate::flows::operator::Account;
pub use crate::flows::purge::{PURGE_ACTION, PURGE_EVERY};
pub use crate::flows::reset::{RESET_PASSWORD_TTL, RESET_REQUEST_ACTION};
use crate::flows::sessions::Credential;
pub use crate::flows::sessions::Revoke;
pub use crate::flows::signup::VERIFY_EMAIL_TTL;
use crate::flows::{
    self,
    mfa::{Enrolment, Factor, SignIn},
    oidc::{Completed, IdentityView, Providers, Purpose, Started},
};

/// What an [`AuthService`] is built from.
#[derive(Debug)]
pub struct AuthParts {
    pub db: Db,
    pub kv: Kv,
    pub hasher: PasswordHasher,
    pub tokens: TokenHasher,
    /// Seals outbox payloads (they may carry one-time links) and TOTP secrets.
    pub outbox_key: KeyMaterial,
    /// Earlier vault keys (`secrets.vault_previous_keys`): TOTP secrets sealed under them still
    /// open, and are sealed again under `outbox_key` at their next use.
    pub previous_keys: Vec<KeyMaterial>,
    pub clock: Arc<dyn Clock>,
    pub settings: AuthSettings,
    pub access: AccessTokens,
    /// OpenID Connect providers (none: the OIDC routes answer 404).
    pub oidc: Providers,
}

/// The flows, over the database, the session store and the outbox.
#[derive(Clone)]
pub struct AuthService {
    core: Core,
    oidc: Providers,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("kv", &self.core.kv)
            .field("settings", &self.core.settings)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    pub fn new(parts: AuthParts) -> AuthService {
        let AuthParts { db, kv, hasher, tokens, outbox_key, previous_keys, clock, settings, access, oidc } = parts;
        let core = Core { db, kv, hasher, tokens, outbox_key, previous_keys, clock, settings, access };
        AuthService { core, oidc }
    }

    pub fn access_tokens(&self) -> &AccessTokens {
        &self.core.access
    }

    pub fn kv(&self) -> &Kv {
        &self.core.kv
    }

    pub fn tokens(&self) -> &TokenHasher {
        &self.core.tokens
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.core.now()
    }

    /// The public base URL that links in mail point to.
    pub fn link_base_url(&self) -> &str {
        &self.core.settings.link_base_url
    }

    pub fn oidc_providers(&self) -> Vec<String> {
        self.oidc.names()
    }

    /// Queues a mail in the caller's transaction (the outbox), so it is sent only if that
    /// transaction commits.
    pub async fn enqueue_mail<C: ConnectionTrait>(
        &self,
        conn: &C,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), AuthError> {
        self.core.mail(conn, to, subject, body).await
    }

    /// The live API key `presented` names, or [`AuthError::Unauthenticated`] (unknown, malformed,
    /// revoked, expired, or its workspace deleted: all alike).
    pub async fn authenticate_api_key(&self, presented: &str) -> Result<flows::api_keys::KeyGrant, AuthError> {
        flows::api_keys::authenticate(&self.core.db, &self.core.tokens, presented, self.now()).await
    }

    /// Creates an account and mails a verification link. For an address that already has an
    /// account it mails a notice instead and answers the same way, after the same work.
    pub async fn sign_up(&self, email: &str, password: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::signup::sign_up(&self.core, email, password, meta).await
    }

    /// Consumes a verification token and marks the address verified.
    pub async fn verify_email(&self, token: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::signup::verify_email(&self.core, token, meta).await
    }

    /// Checks the password (with lockout) and opens a new session — or, when the account has a
    /// second factor, answers with the challenge to complete it ([`AuthService::complete_sign_in`]).
    /// `previous` is the session the client presented, if any: it is revoked so a planted session
    /// id cannot be upgraded (OWASP Session Management: renew the id on authentication).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        previous: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<SignIn<NewSession>, AuthError> {
        flows::signin::sign_in(&self.core, email, password, previous, meta).await
    }

    /// Password grant for API clients: a new token family — or, when the account has a second
    /// factor, the challenge to complete it ([`AuthService::complete_password_grant`]).
    pub async fn password_grant(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<SignIn<TokenPair>, AuthError> {
        flows::signin::password_grant(&self.core, email, password, meta).await
    }

    /// Verifies e-mail and password, applying lockout; the same answer for every failure.
    pub async fn check_password(&self, email: &str, password: &str, meta: &RequestMeta) -> Result<UserId, AuthError> {
        self.core.check_password(email, password, meta).await.map(UserId)
    }

    /// Changes the password after checking the current one; every other session ends and the
    /// current one is replaced by a fresh token (rotation on an authentication event).
    pub async fn change_password(
        &self,
        principal: &SessionPrincipal,
        current: &str,
        new: &str,
        meta: &RequestMeta,
    ) -> Result<NewSession, AuthError> {
        flows::reset::change_password(&self.core, principal, current, new, meta).await
    }

    /// Queues a reset for `email`. The answer and the request's work are the same whether or not
    /// the account exists: the lookup happens later, in the outbox worker.
    pub async fn request_password_reset(&self, email: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::reset::request_password_reset(&self.core, email, meta).await
    }

    /// The outbox handler of [`RESET_REQUEST_ACTION`]: if the account exists, issue a token and
    /// mail the link, in one transaction.
    pub async fn handle_reset_request(&self, payload: &serde_json::Value) -> Result<(), AuthError> {
        flows::reset::handle_reset_request(&self.core, payload).await
    }

    /// Sets a new password with a reset token (single use), verifies the address (the mail
    /// proved it), clears any lockout and ends every session.
    pub async fn reset_password(&self, token: &str, new: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::reset::reset_password(&self.core, token, new, meta).await
    }

    /// Rotates a refresh token. Reuse after the grace window revokes the family; a token of an
    /// older credential generation (a password reset, revoke-all, … since) is refused.
    pub async fn refresh(&self, refresh_token: &str, meta: &RequestMeta) -> Result<TokenPair, AuthError> {
        flows::refresh::refresh(&self.core, refresh_token, meta).await
    }

    /// Resolves a session token for one request: expired sessions and inactive users are refused
    /// here, on every request (suspension is effective on the next request).
    pub async fn authenticate_session(&self, token: &str) -> Result<SessionPrincipal, AuthError> {
        flows::sessions::authenticate_session(&self.core, token).await
    }

    /// The claims and user of a bearer access token, if it still authenticates: valid signature
    /// and times, an active user of the same credential generation, a family not revoked.
    pub async fn authenticate_access(&self, token: &str) -> Result<(AccessClaims, UserView), AuthError> {
        flows::sessions::authenticate_access(&self.core, token).await
    }

    /// Refuses users who are suspended or deleted.
    pub async fn ensure_active(&self, user: UserId) -> Result<(), AuthError> {
        self.core.ensure_active(user).await
    }

    /// The active user `user`: the read every authenticated request makes. On an SQLite file it
    /// runs in place (no hand-off to the driver's thread); the pool answers when it cannot.
    pub async fn me(&self, user: UserId) -> Result<UserView, AuthError> {
        self.core.me(user).await
    }

    /// Ends the presented session.
    pub async fn sign_out(&self, principal: &SessionPrincipal, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::sessions::sign_out(&self.core, principal, meta).await
    }

    /// The user's live credentials, browser sessions and token families alike, newest first.
    pub async fn list_sessions(&self, user: UserId) -> Result<Vec<Credential>, AuthError> {
        flows::sessions::list_sessions(&self.core, user.0).await
    }

    /// Ends credentials of `user`: one (a session or a token family, by id), or all (optionally
    /// keeping the caller's own). Ending all raises the credential generation: every access token
    /// issued before stops on its next request, the kept credential excepted (a kept token
    /// family keeps its refresh token; its next refresh brings an access token of the new
    /// generation).
    pub async fn revoke_sessions(&self, user: UserId, which: Revoke, meta: &RequestMeta) -> Result<Ended, AuthError> {
        flows::sessions::revoke_sessions(&self.core, user.0, which, meta).await
    }

    /// Ends one token family (sign-out for API clients): its refresh tokens and, at once, its
    /// access tokens.
    pub async fn revoke_family(&self, user: UserId, family: FamilyId, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::sessions::revoke_family(&self.core, user.0, family.0, meta).await
    }

    /// Ends every browser session and every token family of `user` on behalf of a workspace
    /// administrator (`admin`, recorded as the actor in the event); their access tokens stop on
    /// their next request.
    pub async fn revoke_all_by_admin(
        &self,
        user: UserId,
        admin: UserId,
        workspace: WorkspaceId,
        meta: &RequestMeta,
    ) -> Result<Ended, AuthError> {
        flows::sessions::revoke_all_by_admin(&self.core, user.0, admin.0, workspace.0, meta).await
    }

    /// Exchanges the caller's credential (session or token family `sid`) for an access token
    /// bound to `workspace` and, when given, narrowed to `scope` (RFC 8693 token exchange). It
    /// lives `ttl`, carries the caller's authentication and generation, and ends with its
    /// session: every check of a sign-in's access token applies to it on each request, and the
    /// workspace's own (membership, role, scope) on each workspace request.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange_for_workspace(
        &self,
        user: &UserView,
        sid: SessionId,
        authentication: Option<&Authentication>,
        workspace: WorkspaceId,
        scope: Option<String>,
        ttl: chrono::Duration,
        meta: &RequestMeta,
    ) -> Result<(secrecy::SecretString, i64), AuthError> {
        flows::sessions::exchange_for_workspace(&self.core, user, sid.0, authentication, workspace.0, scope, ttl, meta)
            .await
    }

    /// Whether `user` has a confirmed second factor.
    pub async fn mfa_enabled(&self, user: UserId) -> Result<bool, AuthError> {
        self.core.mfa_enabled(user.0).await
    }

    /// Starts setting up TOTP: a new secret, shown once. Replaces an unconfirmed one; a confirmed
    /// factor must be disabled first.
    pub async fn totp_enrol(&self, user: UserId) -> Result<Enrolment, AuthError> {
        flows::mfa::totp_enrol(&self.core, user.0).await
    }

    /// Confirms the factor being set up with a first code; returns the ten recovery codes, shown
    /// once.
    pub async fn totp_confirm(
        &self,
        user: UserId,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, AuthError> {
        flows::mfa::totp_confirm(&self.core, user.0, code, meta).await
    }

    /// New recovery codes (the old ones stop working), after a current second factor.
    pub async fn regenerate_recovery_codes(
        &self,
        user: UserId,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, AuthError> {
        flows::mfa::regenerate_recovery_codes(&self.core, user.0, factor, meta).await
    }

    /// Turns the second factor off, after a current second factor (step-up).
    pub async fn mfa_disable(&self, user: UserId, factor: &Factor<'_>, meta: &RequestMeta) -> Result<(), AuthError> {
        flows::mfa::mfa_disable(&self.core, user.0, factor, meta).await
    }

    /// Completes a browser sign-in with its second factor: a new session.
    pub async fn complete_sign_in(
        &self,
        challenge: &str,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<NewSession, AuthError> {
        flows::mfa::complete_sign_in(&self.core, challenge, factor, meta).await
    }

    /// Completes an API client's password grant with its second factor: a new token family.
    pub async fn complete_password_grant(
        &self,
        challenge: &str,
        factor: &Factor<'_>,
        meta: &RequestMeta,
    ) -> Result<TokenPair, AuthError> {
        flows::mfa::complete_password_grant(&self.core, challenge, factor, meta).await
    }

    /// Re-authenticates a signed-in user with every local factor the account has: the password
    /// when it has one, and the second factor when it has one. An account with neither (it signs
    /// in only through a provider) re-authenticates through that provider instead
    /// ([`AuthError::ReauthenticateWithProvider`]). Wrong passwords count towards the lockout
    /// like sign-in attempts; TOTP codes are accepted at most once.
    pub async fn reauthenticate(
        &self,
        user: UserId,
        password: Option<&str>,
        factor: Option<&Factor<'_>>,
        meta: &RequestMeta,
    ) -> Result<Authentication, AuthError> {
        flows::stepup::reauthenticate(&self.core, user.0, password, factor, meta).await
    }

    /// Stamps a browser session with a fresh authentication.
    pub async fn stamp_session(&self, token_hash: &str, authentication: &Authentication) -> Result<(), AuthError> {
        self.core.stamp_session(token_hash, authentication).await
    }

    /// Stamps an API client's token family with a fresh authentication (its next refreshes keep
    /// it) and issues an access token that carries it.
    pub async fn stamp_family(
        &self,
        user: UserId,
        family: FamilyId,
        authentication: &Authentication,
    ) -> Result<(secrecy::SecretString, i64), AuthError> {
        flows::stepup::stamp_family(&self.core, user.0, family.0, authentication).await
    }

    /// Begins a flow at `provider`: the authorization URL to send the user to.
    pub async fn oidc_start(&self, provider: &str, purpose: Purpose) -> Result<Started, AuthError> {
        flows::oidc::start(&self.core, &self.oidc, provider, purpose).await
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
        flows::oidc::callback(&self.core, &self.oidc, provider_name, code, state, issuer, browser, meta).await
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
        flows::oidc::native_token(&self.core, code, code_verifier, redirect_uri, meta).await
    }

    /// The account's provider identities.
    pub async fn identities(&self, user: UserId) -> Result<Vec<IdentityView>, AuthError> {
        flows::oidc::identities(&self.core, user.0).await
    }

    /// Unlinks an identity (the caller has re-authenticated recently). An account keeps at least
    /// one way to sign in: its password or another identity.
    pub async fn unlink_identity(
        &self,
        user: UserId,
        identity: IdentityId,
        meta: &RequestMeta,
    ) -> Result<(), AuthError> {
        flows::oidc::unlink_identity(&self.core, user.0, identity.0, meta).await
    }

    /// A provider's stored access token for `identity`, opened (for server-side calls that act
    /// for the user).
    pub async fn provider_access_token(
        &self,
        user: UserId,
        identity: IdentityId,
    ) -> Result<Option<SecretString>, AuthError> {
        flows::oidc::provider_access_token(&self.core, user.0, identity.0).await
    }

    /// The newest accounts (at most `limit`), optionally only those with `status`.
    pub async fn list_accounts(&self, status: Option<&str>, limit: u64) -> Result<Vec<Account>, AuthError> {
        flows::operator::list_accounts(&self.core, status, limit).await
    }

    /// The id of the account with address `email`.
    pub async fn account_id(&self, email: &str) -> Result<Option<UserId>, AuthError> {
        Ok(flows::operator::account_id(&self.core, email).await?.map(UserId))
    }

    /// Suspends (`suspend`) or reinstates `user` for an operator. Suspension ends every
    /// credential, so reinstating never revives one. `Some(false)` when the user was already so,
    /// `None` when there is no such user.
    pub async fn set_suspended(
        &self,
        user: UserId,
        suspend: bool,
        meta: &RequestMeta,
    ) -> Result<Option<bool>, AuthError> {
        flows::operator::set_suspended(&self.core, user.0, suspend, meta).await
    }

    /// The purge job's outbox handler: purge, then schedule the next run.
    pub async fn handle_purge(&self) -> Result<u64, AuthError> {
        flows::purge::handle_purge(&self.core).await
    }

    /// Makes sure a purge is scheduled (called at start-up).
    pub async fn schedule_purge(&self) -> Result<(), AuthError> {
        flows::purge::schedule_purge(&self.core).await
    }

    /// Deletes expired and used one-time tokens, expired refresh tokens, expired and used MFA
    /// challenges, finished OIDC flows, outbox actions finished more than
    /// [`scheduler::FINISHED_RETENTION`] ago and (in process memory) expired sessions; Redis
    /// expires its own keys, the per-user session index with its newest session.
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        flows::purge::purge_expired(&self.core).await
    }
}
