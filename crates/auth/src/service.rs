//! The authentication flows: sign-up, e-mail verification, sign-in with lockout, sessions,
//! password change and reset. Each flow that changes the database runs in one transaction and
//! sends mail through the outbox in that same transaction.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crypto_vault::KeyMaterial;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};
use storage::{Clock, Db};
use uuid::Uuid;

use crate::mfa::{Flow, SignIn};
use crate::stepup::{amr, Authentication};
use crate::{
    access::AccessTokens,
    email::EmailAddress,
    password::{Password, PasswordHasher},
    store::{Kv, SessionRecord},
    token::{self, TokenHasher},
    AuthError,
};

/// E-mail verification links live 24 hours (the seeds' promise).
pub const VERIFY_EMAIL_TTL: Duration = Duration::hours(24);
/// Password-reset links live 1 hour and work once (OWASP Forgot Password Cheat Sheet: short
/// expiry, single use).
pub const RESET_PASSWORD_TTL: Duration = Duration::hours(1);
/// A session's idle deadline slides forward at most once per 24 hours of use.
pub const SESSION_REFRESH: Duration = Duration::hours(24);
/// Sessions unused for 7 days end (ASVS 5.0 V7.3.1: idle timeout by risk analysis).
pub const SESSION_IDLE: Duration = Duration::days(7);
/// No session outlives 30 days (ASVS 5.0 V7.3.2: absolute timeout; NIST SP 800-63B AAL1 ≤ 30 days).
pub const SESSION_ABSOLUTE: Duration = Duration::days(30);
/// Consecutive failed sign-ins that lock an account (NIST SP 800-63B §5.2.2 allows at most 100).
pub const LOCKOUT_THRESHOLD: i32 = 5;
/// First lock lasts 15 minutes, doubling per further lock, never more than a day: an attacker can
/// delay a victim, never lock them out for good.
pub const LOCKOUT_BASE: Duration = Duration::minutes(15);
pub const LOCKOUT_MAX: Duration = Duration::hours(24);

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    #[default]
    Open,
    /// Only through an invitation (workspace invitations create accounts).
    InviteOnly,
    Closed,
}

/// Settings of the auth flows.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub signup: SignupMode,
    /// Base of links in mails, e.g. `https://app.example.com` (never taken from a request's Host
    /// header: OWASP Forgot Password Cheat Sheet).
    pub link_base_url: String,
    /// Redirect URIs of the native and desktop clients that may sign in through a provider
    /// (RFC 8252: loopback ones match on any port). Empty: no native client may.
    pub native_redirect_uris: Vec<String>,
}

/// Facts about the request, recorded with authentication events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    /// Standing across the whole platform (`rbac::PlatformLevel`'s value: 100 super admin …
    /// 20 viewer), read with the user on every request.
    pub platform_level: u8,
    /// Raised by every event that ends the user's credentials; a session or token of an older
    /// generation is refused (read in the same per-request query, at no extra cost).
    pub credential_generation: i64,
}

/// A session just created: the token goes to the client once and is never stored.
#[derive(Debug)]
pub struct NewSession {
    pub token: secrecy::SecretString,
    pub record: SessionRecord,
}

/// An authenticated session, as resolved for one request.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    pub user_id: Uuid,
    /// The user, read on this request (so a suspension is seen at once).
    pub user: UserView,
    pub session: SessionRecord,
    pub token_hash: String,
}

/// Kinds of recorded authentication events.
pub mod events {
    pub const SIGNUP: &str = "signup";
    pub const EMAIL_VERIFIED: &str = "email_verified";
    pub const SIGNIN_SUCCEEDED: &str = "signin_succeeded";
    pub const SIGNIN_FAILED: &str = "signin_failed";
    pub const LOCKOUT: &str = "lockout";
    pub const SIGNOUT: &str = "signout";
    pub const SESSION_REVOKED: &str = "session_revoked";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const PASSWORD_RESET_REQUESTED: &str = "password_reset_requested";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const TOKEN_REFRESHED: &str = "token_refreshed";
    pub const REFRESH_REUSE_DETECTED: &str = "refresh_token_reuse_detected";
    pub const SESSIONS_REVOKED_BY_ADMIN: &str = "sessions_revoked_by_admin";
    pub const USER_SUSPENDED: &str = "user_suspended";
    pub const USER_REINSTATED: &str = "user_reinstated";
    pub const TOKEN_EXCHANGED: &str = "token_exchanged";
}

const SESSION_PURPOSE: &str = "session";
const VERIFY_PURPOSE: &str = "verify_email";
const RESET_PURPOSE: &str = "reset_password";
/// Outbox action of the purge job, which reschedules itself every hour.
pub const PURGE_ACTION: &str = "auth_purge_expired";
pub const PURGE_EVERY: Duration = Duration::hours(1);

/// Outbox action that looks the account up and, only if it exists, mails a reset link; queued
/// for every request so existing and unknown addresses take the same path.
pub const RESET_REQUEST_ACTION: &str = "password_reset_request";

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
    pub oidc: crate::oidc::Providers,
}

/// The flows, over the database, the session store and the outbox.
#[derive(Clone)]
pub struct AuthService {
    pub(crate) db: Db,
    pub(crate) kv: Kv,
    hasher: PasswordHasher,
    pub(crate) tokens: TokenHasher,
    pub(crate) outbox_key: KeyMaterial,
    pub(crate) previous_keys: Vec<KeyMaterial>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: AuthSettings,
    pub(crate) access: AccessTokens,
    pub(crate) oidc: crate::oidc::Providers,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").field("kv", &self.kv).field("settings", &self.settings).finish_non_exhaustive()
    }
}

pub(crate) fn stmt<C: ConnectionTrait>(conn: &C, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

impl AuthService {
    pub fn new(parts: AuthParts) -> AuthService {
        let AuthParts { db, kv, hasher, tokens, outbox_key, previous_keys, clock, settings, access, oidc } = parts;
        AuthService { db, kv, hasher, tokens, outbox_key, previous_keys, clock, settings, access, oidc }
    }

    pub fn access_tokens(&self) -> &AccessTokens {
        &self.access
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub fn tokens(&self) -> &TokenHasher {
        &self.tokens
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The live API key `presented` names, or [`AuthError::Unauthenticated`] (unknown, malformed,
    /// revoked, expired, or its workspace deleted: all alike).
    pub async fn authenticate_api_key(&self, presented: &str) -> Result<crate::api_keys::KeyGrant, AuthError> {
        crate::api_keys::authenticate(&self.db, &self.tokens, presented, self.now()).await
    }

    /// Seals `plain` with the server's vault key, bound to `aad` (TOTP secrets, sign-in flows,
    /// provider tokens: values of accounts, which belong to no tenant).
    pub(crate) fn seal_with_vault_key(&self, aad: &[u8], plain: &[u8]) -> Result<String, AuthError> {
        crypto_vault::seal(&self.outbox_key, aad, plain).map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Opens what [`AuthService::seal_with_vault_key`] sealed, with the current vault key or an
    /// earlier one (`secrets.vault_previous_keys`); `true` when an earlier one opened it, so the
    /// caller seals it again under the current key.
    pub(crate) fn open_with_vault_keys(
        &self,
        aad: &[u8],
        sealed: &str,
    ) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool), AuthError> {
        if let Ok(plain) = crypto_vault::open(&self.outbox_key, aad, sealed) {
            return Ok((plain, false));
        }
        self.previous_keys
            .iter()
            .find_map(|key| crypto_vault::open(key, aad, sealed).ok())
            .map(|plain| (plain, true))
            .ok_or_else(|| AuthError::Internal("a sealed value opens with no configured vault key".into()))
    }

    pub(crate) async fn record_event<C: ConnectionTrait>(
        &self,
        conn: &C,
        kind: &str,
        user: Option<Uuid>,
        meta: &RequestMeta,
        detail: serde_json::Value,
    ) -> Result<(), AuthError> {
        // Network details are part of the security record (ASVS 5.0 V16.2.1: who, where, when);
        // the secret parts of a request never are.
        let payload = serde_json::json!({ "ip": meta.ip, "user_agent": meta.user_agent, "detail": detail });
        let event = audit::NewEvent::new(audit::Category::Authentication, format!("auth.{kind}"), payload)
            .by(user)
            .request(meta.request_id.clone());
        audit::append(conn, audit::PLATFORM_CHAIN, &event, self.clock.now()).await?;
        if kind == events::SIGNIN_FAILED {
            crate::metrics::signin_failed(event.payload["detail"]["reason"].as_str().unwrap_or("other"));
        }
        tracing::info!(auth.event = kind, user.id = ?user, "authentication event");
        Ok(())
    }

    pub(crate) async fn mail<C: ConnectionTrait>(
        &self,
        conn: &C,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), AuthError> {
        let mail = scheduler::mail::Mail { to: to.to_owned(), subject: subject.to_owned(), body };
        let payload = serde_json::to_value(&mail).map_err(|e| AuthError::Internal(e.to_string()))?;
        let now = self.clock.now();
        scheduler::enqueue(conn, &self.outbox_key, scheduler::mail::SEND_EMAIL, &payload, now, now).await?;
        Ok(())
    }

    async fn issue_one_time_token<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        purpose: &str,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let token = token::generate();
        let now = self.clock.now();
        conn.execute(stmt(
            conn,
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![self.tokens.hash(purpose, &token).into(), user.into(), purpose.into(), (now + ttl).into(), now.into()],
        ))
        .await?;
        Ok(token)
    }

    /// Marks a one-time token used and returns its user. Atomic: of two concurrent uses, exactly
    /// one updates the row.
    async fn consume_one_time_token(
        &self,
        txn: &DatabaseTransaction,
        purpose: &str,
        token: &str,
    ) -> Result<Uuid, AuthError> {
        let hash = self.tokens.hash(purpose, token);
        let now = self.clock.now();
        let row = txn
            .query_one(stmt(
                txn,
                "UPDATE one_time_tokens SET consumed_at = $1
                  WHERE token_hash = $2 AND purpose = $3 AND consumed_at IS NULL AND expires_at > $1
                  RETURNING user_id",
                vec![now.into(), hash.into(), purpose.into()],
            ))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        Ok(row.try_get("", "user_id")?)
    }

    /// Creates an account and mails a verification link. For an address that already has an
    /// account it mails a notice instead and answers the same way, after the same work.
    pub async fn sign_up(&self, email: &str, password: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        if self.settings.signup != SignupMode::Open {
            return Err(AuthError::SignupClosed);
        }
        let email = EmailAddress::parse(email)?;
        let password = Password::parse_new(password, &[email.as_str(), email.local_part(), "rampart"])?;
        // Hashed before the transaction opens, for both outcomes alike (the same work whether or
        // not the address has an account), so no transaction waits on bcrypt: on SQLite a write
        // transaction held open that long makes concurrent writers fail.
        let hash = self.hasher.hash(&password).await?;
        let txn = self.db.begin_write().await?;
        let id = Uuid::new_v4();
        let now = self.clock.now();
        // Claims the address in one statement. ON CONFLICT waits for a concurrent sign-up of the
        // same address to commit and then inserts nothing, so the sign-up that loses the race
        // takes the taken-address path below and answers exactly as the first did — never a
        // conflict that would tell the account exists (OWASP ASVS 5.0 V6.3.8).
        let created = txn
            .query_one(stmt(
                &txn,
                "INSERT INTO users (id, email, password_hash, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, $3, 'active', 0, 0, $4, $4)
                 ON CONFLICT (email) DO NOTHING RETURNING id",
                vec![id.into(), email.as_str().into(), hash.into(), now.into()],
            ))
            .await?
            .is_some();
        if !created {
            let row = txn
                .query_one(stmt(&txn, "SELECT id FROM users WHERE email = $1", vec![email.as_str().into()]))
                .await?
                .ok_or_else(|| AuthError::Internal("the account holding the address is gone".into()))?;
            let user: Uuid = row.try_get("", "id")?;
            self.mail(
                &txn,
                email.as_str(),
                "Someone tried to sign up with your address",
                format!(
                    "Someone (perhaps you) tried to create an account with this address, which already has one.\n\
                     If it was you, sign in or reset your password at {}/auth/reset-password.\n\
                     If not, you can ignore this message.",
                    self.settings.link_base_url
                ),
            )
            .await?;
            self.record_event(&txn, events::SIGNUP, Some(user), meta, serde_json::json!({"outcome": "address_in_use"}))
                .await?;
            txn.commit().await?;
            return Ok(());
        }
        let token = self.issue_one_time_token(&txn, id, VERIFY_PURPOSE, VERIFY_EMAIL_TTL).await?;
        self.mail(
            &txn,
            email.as_str(),
            "Confirm your e-mail address",
            format!(
                "Confirm your address by opening this link within 24 hours:\n\n{}/auth/verify-email#token={token}\n",
                self.settings.link_base_url
            ),
        )
        .await?;
        self.record_event(&txn, events::SIGNUP, Some(id), meta, serde_json::json!({"outcome": "created"})).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Consumes a verification token and marks the address verified.
    pub async fn verify_email(&self, token: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let user = self.consume_one_time_token(&txn, VERIFY_PURPOSE, token).await?;
        let now = self.clock.now();
        txn.execute(stmt(
            &txn,
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1), updated_at = $1 WHERE id = $2",
            vec![now.into(), user.into()],
        ))
        .await?;
        self.record_event(&txn, events::EMAIL_VERIFIED, Some(user), meta, serde_json::json!({})).await?;
        txn.commit().await?;
        Ok(())
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
        let user = self.check_password(email, password, meta).await?;
        if let Some(old) = previous {
            let hash = self.tokens.hash(SESSION_PURPOSE, old);
            if let Some(record) = self.kv.get_session(&hash).await? {
                self.kv.delete_session(&hash, record.user_id).await?;
            }
        }
        if let Some(challenge) = self.challenge_if_enrolled(user, Flow::Session, amr::PASSWORD).await? {
            return Ok(SignIn::SecondFactor(challenge));
        }
        let now = self.clock.now();
        self.finish_sign_in(user, meta, &[amr::PASSWORD], Some(now)).await.map(SignIn::Done)
    }

    /// Opens the session of a user who passed every factor (`methods`, RFC 8176 values) and
    /// records the sign-in. `at` is when they authenticated: now for a factor checked here, the
    /// provider's `auth_time` for a provider's sign-in (`None` when it did not say, so a silent
    /// single sign-on never counts as a recent authentication).
    pub(crate) async fn finish_sign_in(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        methods: &[&str],
        at: Option<DateTime<Utc>>,
    ) -> Result<NewSession, AuthError> {
        let session = self.open_session(user, meta, at, methods).await?;
        let txn = self.db.begin_write().await?;
        self.record_event(
            &txn,
            events::SIGNIN_SUCCEEDED,
            Some(user),
            meta,
            serde_json::json!({"session": session.record.id, "amr": methods}),
        )
        .await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Verifies e-mail and password, applying lockout; the same answer for every failure.
    pub async fn check_password(&self, email: &str, password: &str, meta: &RequestMeta) -> Result<Uuid, AuthError> {
        let password = Password::for_verification(password);
        let Ok(email) = EmailAddress::parse(email) else {
            self.hasher.burn().await?;
            return Err(AuthError::InvalidCredentials);
        };
        let row = self
            .db
            .conn()
            .query_one(stmt(
                self.db.conn(),
                "SELECT id, password_hash, status, email_verified_at, locked_until, failed_signins, lockouts FROM users WHERE email = $1",
                vec![email.as_str().into()],
            ))
            .await?;
        let Some(row) = row else {
            self.hasher.verify(&password, None).await?;
            let txn = self.db.begin_write().await?;
            self.record_event(
                &txn,
                events::SIGNIN_FAILED,
                None,
                meta,
                serde_json::json!({"reason": "unknown_account"}),
            )
            .await?;
            txn.commit().await?;
            return Err(AuthError::InvalidCredentials);
        };
        let id: Uuid = row.try_get("", "id")?;
        let stored: Option<String> = row.try_get("", "password_hash")?;
        let status: String = row.try_get("", "status")?;
        let verified: Option<DateTime<Utc>> = row.try_get("", "email_verified_at")?;
        let locked_until: Option<DateTime<Utc>> = row.try_get("", "locked_until")?;
        let now = self.clock.now();
        let ok = self.hasher.verify(&password, stored.as_deref()).await?;
        let locked = locked_until.is_some_and(|t| t > now);
        if ok && !locked && status == "active" {
            if verified.is_none() {
                return Err(AuthError::EmailNotVerified);
            }
            self.db
                .conn()
                .execute(stmt(
                    self.db.conn(),
                    "UPDATE users SET failed_signins = 0, lockouts = 0, locked_until = NULL WHERE id = $1",
                    vec![id.into()],
                ))
                .await?;
            return Ok(id);
        }
        let reason = if locked {
            "locked"
        } else if status != "active" {
            "inactive"
        } else {
            "wrong_password"
        };
        let txn = self.db.begin_write().await?;
        if !locked && status == "active" {
            // Count the failure atomically; the update that reaches the threshold locks.
            let row = txn
                .query_one(stmt(
                    &txn,
                    "UPDATE users SET failed_signins = failed_signins + 1 WHERE id = $1 RETURNING failed_signins, lockouts",
                    vec![id.into()],
                ))
                .await?;
            if let Some(row) = row {
                let failed: i32 = row.try_get("", "failed_signins")?;
                let lockouts: i32 = row.try_get("", "lockouts")?;
                if failed >= LOCKOUT_THRESHOLD {
                    let duration = (LOCKOUT_BASE * 2i32.pow(lockouts.clamp(0, 10) as u32)).min(LOCKOUT_MAX);
                    let until = now + duration;
                    txn.execute(stmt(
                        &txn,
                        "UPDATE users SET failed_signins = 0, lockouts = lockouts + 1, locked_until = $2 WHERE id = $1",
                        vec![id.into(), until.into()],
                    ))
                    .await?;
                    self.mail(
                        &txn,
                        email.as_str(),
                        "Your account was locked after failed sign-ins",
                        format!(
                            "After {LOCKOUT_THRESHOLD} failed sign-in attempts your account is locked until {} (UTC).\n\
                             If this was not you, consider resetting your password at {}/auth/reset-password.",
                            until.format("%Y-%m-%d %H:%M"),
                            self.settings.link_base_url
                        ),
                    )
                    .await?;
                    self.record_event(
                        &txn,
                        events::LOCKOUT,
                        Some(id),
                        meta,
                        serde_json::json!({"minutes": duration.num_minutes()}),
                    )
                    .await?;
                }
            }
        }
        self.record_event(&txn, events::SIGNIN_FAILED, Some(id), meta, serde_json::json!({"reason": reason})).await?;
        txn.commit().await?;
        Err(AuthError::InvalidCredentials)
    }

    async fn open_session(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        at: Option<DateTime<Utc>>,
        methods: &[&str],
    ) -> Result<NewSession, AuthError> {
        let token = token::generate();
        let generation = Self::active_generation_on(self.db.conn(), user).await?;
        let now = self.clock.now();
        let record = SessionRecord {
            id: Uuid::new_v4(),
            user_id: user,
            created_at: now,
            last_refreshed_at: now,
            idle_expires_at: now + SESSION_IDLE,
            absolute_expires_at: now + SESSION_ABSOLUTE,
            user_agent: meta.user_agent.clone().map(|ua| ua.chars().take(256).collect()),
            ip: meta.ip.clone(),
            authenticated_at: at,
            amr: methods.iter().map(|m| (*m).to_owned()).collect(),
            generation,
        };
        self.kv.put_session(&self.tokens.hash(SESSION_PURPOSE, &token), &record, now).await?;
        Ok(NewSession { token: secrecy::SecretString::from(token), record })
    }

    /// Resolves a session token for one request: expired sessions and inactive users are refused
    /// here, on every request (suspension is effective on the next request).
    pub async fn authenticate_session(&self, token: &str) -> Result<SessionPrincipal, AuthError> {
        let hash = self.tokens.hash(SESSION_PURPOSE, token);
        let mut record = self.kv.get_session(&hash).await?.ok_or(AuthError::Unauthenticated)?;
        let now = self.clock.now();
        if now >= record.idle_expires_at || now >= record.absolute_expires_at {
            self.kv.delete_session(&hash, record.user_id).await?;
            return Err(AuthError::Unauthenticated);
        }
        let user = self.me(record.user_id).await?;
        if record.generation != user.credential_generation {
            // Opened before an event that ended the user's credentials (and missed by its
            // deletion, say while the store was unreachable): ended now.
            self.kv.delete_session(&hash, record.user_id).await?;
            return Err(AuthError::Unauthenticated);
        }
        if now - record.last_refreshed_at >= SESSION_REFRESH {
            record.last_refreshed_at = now;
            record.idle_expires_at = (now + SESSION_IDLE).min(record.absolute_expires_at);
            // Never recreates a session a concurrent sign-out just ended.
            if !self.kv.replace_session(&hash, &record, now).await? {
                return Err(AuthError::Unauthenticated);
            }
        }
        Ok(SessionPrincipal { user_id: record.user_id, user, session: record, token_hash: hash })
    }

    /// Refuses users who are suspended or deleted.
    pub async fn ensure_active(&self, user: Uuid) -> Result<(), AuthError> {
        Self::active_generation_on(self.db.conn(), user).await.map(|_| ())
    }

    /// The credential generation of `user` if active (read on `conn`); refused otherwise.
    pub(crate) async fn active_generation_on<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<i64, AuthError> {
        let row = conn
            .query_one(stmt(conn, "SELECT status, credential_generation FROM users WHERE id = $1", vec![user.into()]))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        match row.try_get::<String>("", "status")?.as_str() {
            "active" => Ok(row.try_get("", "credential_generation")?),
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// The active user `user`: the read every authenticated request makes. On an SQLite file it
    /// runs in place (no hand-off to the driver's thread); the pool answers when it cannot.
    pub async fn me(&self, user: Uuid) -> Result<UserView, AuthError> {
        self.active_user(user, Uuid::nil()).await.map(|(view, _)| view)
    }

    /// [`AuthService::me`], and in the same query whether token family (or session) `family`
    /// was ended one by one ([`AuthService::mark_family_revoked`]).
    pub(crate) async fn active_user(&self, user: Uuid, family: Uuid) -> Result<(UserView, bool), AuthError> {
        // SQLite numbers `$n` parameters in their order of appearance: `$1` comes first.
        const ACTIVE_USER: &str = "SELECT email, email_verified_at, created_at, platform_level, credential_generation,
                EXISTS (SELECT 1 FROM revoked_families WHERE family_id = $1) AS family_revoked
           FROM users WHERE id = $2 AND status = 'active'";
        let level = |raw: i64| u8::try_from(raw.clamp(0, 100)).unwrap_or(0);
        let inline = self.db.inline_reader().and_then(|reader| {
            reader.query_row(ACTIVE_USER, [family.as_bytes().as_slice(), user.as_bytes().as_slice()], |row| {
                let view = UserView {
                    id: user,
                    email: row.get(0)?,
                    email_verified: row.get::<_, Option<String>>(1)?.is_some(),
                    created_at: row.get(2)?,
                    platform_level: level(row.get(3)?),
                    credential_generation: row.get(4)?,
                };
                Ok((view, row.get::<_, bool>(5)?))
            })
        });
        if let Some(found) = inline {
            return found.ok_or(AuthError::Unauthenticated);
        }
        let row = self
            .db
            .conn()
            .query_one(stmt(self.db.conn(), ACTIVE_USER, vec![family.into(), user.into()]))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let view = UserView {
            id: user,
            email: row.try_get("", "email")?,
            email_verified: row.try_get::<Option<DateTime<Utc>>>("", "email_verified_at")?.is_some(),
            created_at: row.try_get("", "created_at")?,
            platform_level: level(row.try_get::<i16>("", "platform_level")?.into()),
            credential_generation: row.try_get("", "credential_generation")?,
        };
        Ok((view, row.try_get("", "family_revoked")?))
    }

    /// Ends the presented session.
    pub async fn sign_out(&self, principal: &SessionPrincipal, meta: &RequestMeta) -> Result<(), AuthError> {
        self.kv.delete_session(&principal.token_hash, principal.user_id).await?;
        let txn = self.db.begin_write().await?;
        // Tokens exchanged from this session end with it.
        self.mark_family_revoked(&txn, principal.user_id, principal.session.id).await?;
        self.record_event(
            &txn,
            events::SIGNOUT,
            Some(principal.user_id),
            meta,
            serde_json::json!({"session": principal.session.id}),
        )
        .await?;
        txn.commit().await?;
        Ok(())
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
        let me = self.me(principal.user_id).await?;
        self.check_password(&me.email, current, meta).await?;
        let email = EmailAddress::parse(&me.email)?;
        let password = Password::parse_new(new, &[email.as_str(), email.local_part(), "rampart"])?;
        let hash = self.hasher.hash(&password).await?;
        let txn = self.db.begin_write().await?;
        let now = self.clock.now();
        txn.execute(stmt(
            &txn,
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
            vec![hash.into(), now.into(), principal.user_id.into()],
        ))
        .await?;
        self.mail(&txn, &me.email, "Your password was changed", "Your password was just changed and your other sessions were signed out. If this was not you, reset your password now.".into())
            .await?;
        let ending = self.end_credentials_in(&txn, principal.user_id, None).await?;
        self.record_event(&txn, events::PASSWORD_CHANGED, Some(principal.user_id), meta, serde_json::json!({})).await?;
        txn.commit().await?;
        self.finish_ending(ending).await?;
        // The new session keeps the authentication of the one it replaces.
        let methods: Vec<&str> = principal.session.amr.iter().map(String::as_str).collect();
        self.open_session(principal.user_id, meta, principal.session.authenticated_at, &methods).await
    }

    /// Queues a reset for `email`. The answer and the request's work are the same whether or not
    /// the account exists: the lookup happens later, in the outbox worker.
    pub async fn request_password_reset(&self, email: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        let email = EmailAddress::parse(email)?;
        let txn = self.db.begin_write().await?;
        let now = self.clock.now();
        scheduler::enqueue(
            &txn,
            &self.outbox_key,
            RESET_REQUEST_ACTION,
            &serde_json::json!({"email": email.as_str()}),
            now,
            now,
        )
        .await?;
        self.record_event(&txn, events::PASSWORD_RESET_REQUESTED, None, meta, serde_json::json!({})).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The outbox handler of [`RESET_REQUEST_ACTION`]: if the account exists, issue a token and
    /// mail the link, in one transaction.
    pub async fn handle_reset_request(&self, payload: &serde_json::Value) -> Result<(), AuthError> {
        let Some(email) = payload.get("email").and_then(|e| e.as_str()) else {
            return Ok(());
        };
        let txn = self.db.begin_write().await?;
        let row = txn
            .query_one(stmt(&txn, "SELECT id FROM users WHERE email = $1 AND status = 'active'", vec![email.into()]))
            .await?;
        if let Some(row) = row {
            let user: Uuid = row.try_get("", "id")?;
            let token = self.issue_one_time_token(&txn, user, RESET_PURPOSE, RESET_PASSWORD_TTL).await?;
            self.mail(
                &txn,
                email,
                "Reset your password",
                format!(
                    "Reset your password with this link within one hour (it works once):\n\n{}/auth/reset-password#token={token}\n\n\
                     If you did not ask for this, ignore this message; your password is unchanged.",
                    self.settings.link_base_url
                ),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Sets a new password with a reset token (single use), verifies the address (the mail
    /// proved it), clears any lockout and ends every session.
    pub async fn reset_password(&self, token: &str, new: &str, meta: &RequestMeta) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let user = self.consume_one_time_token(&txn, RESET_PURPOSE, token).await?;
        let row = txn
            .query_one(stmt(&txn, "SELECT email FROM users WHERE id = $1", vec![user.into()]))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let email = EmailAddress::parse(&row.try_get::<String>("", "email")?)?;
        let password = Password::parse_new(new, &[email.as_str(), email.local_part(), "rampart"])?;
        let hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        txn.execute(stmt(
            &txn,
            "UPDATE users SET password_hash = $1, email_verified_at = COALESCE(email_verified_at, $2), failed_signins = 0, locked_until = NULL, updated_at = $2 WHERE id = $3",
            vec![hash.into(), now.into(), user.into()],
        ))
        .await?;
        self.mail(
            &txn,
            email.as_str(),
            "Your password was reset",
            "Your password was reset and every session was signed out. If this was not you, contact support.".into(),
        )
        .await?;
        let ending = self.end_credentials_in(&txn, user, None).await?;
        self.record_event(&txn, events::PASSWORD_RESET, Some(user), meta, serde_json::json!({})).await?;
        txn.commit().await?;
        self.finish_ending(ending).await?;
        Ok(())
    }

    /// The purge job's outbox handler: purge, then schedule the next run.
    pub async fn handle_purge(&self) -> Result<u64, AuthError> {
        let purged = self.purge_expired().await?;
        let now = self.clock.now();
        scheduler::enqueue(
            self.db.conn(),
            &self.outbox_key,
            PURGE_ACTION,
            &serde_json::json!({}),
            now + PURGE_EVERY,
            now,
        )
        .await?;
        tracing::info!(purged, "purged expired tokens and sessions");
        Ok(purged)
    }

    /// Makes sure a purge is scheduled (called at start-up).
    pub async fn schedule_purge(&self) -> Result<(), AuthError> {
        let now = self.clock.now();
        scheduler::ensure_pending(self.db.conn(), &self.outbox_key, PURGE_ACTION, now, now).await?;
        Ok(())
    }

    /// Deletes expired and used one-time tokens, expired refresh tokens, expired and used MFA
    /// challenges, finished OIDC flows, outbox actions finished more than
    /// [`scheduler::FINISHED_RETENTION`] ago and (in process memory) expired sessions; Redis
    /// expires its own keys, the per-user session index with its newest session.
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        let now = self.clock.now();
        let sessions = self.kv.prune_sessions(now)? as u64;
        let conn = self.db.conn();
        let a = conn
            .execute(stmt(
                conn,
                "DELETE FROM one_time_tokens WHERE expires_at <= $1 OR consumed_at IS NOT NULL",
                vec![now.into()],
            ))
            .await?
            .rows_affected();
        let b = conn
            .execute(stmt(conn, "DELETE FROM refresh_tokens WHERE expires_at <= $1", vec![now.into()]))
            .await?
            .rows_affected();
        let c = self.purge_oidc(now).await?;
        // Second-factor challenges, once used or expired, prove nothing more.
        let d = conn
            .execute(stmt(
                conn,
                "DELETE FROM mfa_challenges WHERE expires_at <= $1 OR used_at IS NOT NULL",
                vec![now.into()],
            ))
            .await?
            .rows_affected();
        let e = scheduler::purge_finished(conn, now).await?;
        let f = conn
            .execute(stmt(conn, "DELETE FROM revoked_families WHERE until <= $1", vec![now.into()]))
            .await?
            .rows_affected();
        Ok(a + b + c + d + e + f + sessions)
    }
}

/// A refresh token lives 30 days (the session's absolute limit) and is single use: each use
/// returns a new one in the same family.
pub const REFRESH_TTL: Duration = Duration::days(30);
/// A refresh token presented again within this window after its first use is treated as the
/// same client racing itself (two tabs, a retry after a lost response) and gets a fresh pair;
/// later reuse is theft and revokes the whole family (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
pub const REFRESH_REUSE_GRACE: Duration = Duration::seconds(10);
const REFRESH_PURPOSE: &str = "refresh";

/// Tokens for an API client.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: secrecy::SecretString,
    pub refresh_token: secrecy::SecretString,
    pub expires_in: i64,
    pub family: Uuid,
}

/// The token family a new refresh token joins: its id, when it began (its absolute limit runs
/// from there), the credential generation it belongs to and the authentication it carries.
#[derive(Debug, Clone)]
struct FamilyTurn {
    family: Uuid,
    began: DateTime<Utc>,
    generation: i64,
    authentication: Option<Authentication>,
}

impl FamilyTurn {
    /// The turn of the refresh token in `row` (selected with [`FAMILY_COLUMNS`]).
    fn from_row(row: &sea_orm::QueryResult) -> Result<FamilyTurn, AuthError> {
        Ok(FamilyTurn {
            family: row.try_get("", "family_id")?,
            began: row.try_get("", "began")?,
            generation: row.try_get("", "generation")?,
            authentication: Authentication::from_stored(row.try_get("", "auth_time")?, row.try_get("", "amr")?),
        })
    }
}

/// The columns [`FamilyTurn::from_row`] reads, and the owner.
const FAMILY_COLUMNS: &str =
    "family_id, user_id, generation, COALESCE(family_created_at, created_at) AS began, auth_time, amr";

impl AuthService {
    async fn issue_pair<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: Uuid,
        turn: &FamilyTurn,
        meta: &RequestMeta,
    ) -> Result<TokenPair, AuthError> {
        let refresh = token::generate();
        let now = self.clock.now();
        let authentication = turn.authentication.as_ref();
        conn.execute(stmt(
            conn,
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at, auth_time, amr,
                                         generation, family_created_at, ip, user_agent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                self.tokens.hash(REFRESH_PURPOSE, &refresh).into(),
                turn.family.into(),
                user.into(),
                now.into(),
                // A family ends 30 days after its sign-in however often it is refreshed, as a
                // browser session does (SESSION_ABSOLUTE).
                (turn.began + REFRESH_TTL).into(),
                authentication.map(|a| a.at).into(),
                authentication.map(Authentication::amr_text).into(),
                turn.generation.into(),
                turn.began.into(),
                meta.ip.clone().into(),
                meta.user_agent.as_ref().map(|ua| ua.chars().take(256).collect::<String>()).into(),
            ],
        ))
        .await?;
        let holder = crate::jwt::Holder::signed_in(user, turn.family, turn.generation);
        let (access, _) = self.access.issue_authenticated(holder, authentication)?;
        Ok(TokenPair {
            access_token: secrecy::SecretString::from(access),
            refresh_token: secrecy::SecretString::from(refresh),
            expires_in: self.access.ttl_secs(),
            family: turn.family,
        })
    }

    /// Password grant for API clients: a new token family — or, when the account has a second
    /// factor, the challenge to complete it ([`AuthService::complete_password_grant`]).
    pub async fn password_grant(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<SignIn<TokenPair>, AuthError> {
        let user = self.check_password(email, password, meta).await?;
        if let Some(challenge) = self.challenge_if_enrolled(user, Flow::Token, amr::PASSWORD).await? {
            return Ok(SignIn::SecondFactor(challenge));
        }
        let now = self.clock.now();
        self.finish_password_grant(user, meta, &[amr::PASSWORD], Some(now)).await.map(SignIn::Done)
    }

    /// Issues the token family of a user who passed every factor (`methods`, RFC 8176 values),
    /// and records the sign-in; `at` as for [`AuthService::finish_sign_in`].
    pub(crate) async fn finish_password_grant(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        methods: &[&str],
        at: Option<DateTime<Utc>>,
    ) -> Result<TokenPair, AuthError> {
        let txn = self.db.begin_write().await?;
        let turn = FamilyTurn {
            family: Uuid::new_v4(),
            began: self.clock.now(),
            generation: Self::active_generation_on(&txn, user).await?,
            authentication: at.map(|at| Authentication::new(at, methods)),
        };
        let pair = self.issue_pair(&txn, user, &turn, meta).await?;
        self.record_event(
            &txn,
            events::SIGNIN_SUCCEEDED,
            Some(user),
            meta,
            serde_json::json!({"token_family": pair.family, "amr": methods}),
        )
        .await?;
        txn.commit().await?;
        Ok(pair)
    }

    /// Rotates a refresh token. Reuse after the grace window revokes the family; a token of an
    /// older credential generation (a password reset, revoke-all, … since) is refused.
    pub async fn refresh(&self, refresh_token: &str, meta: &RequestMeta) -> Result<TokenPair, AuthError> {
        let hash = self.tokens.hash(REFRESH_PURPOSE, refresh_token);
        let now = self.clock.now();
        let txn = self.db.begin_write().await?;
        let claimed = txn
            .query_one(stmt(
                &txn,
                &format!(
                    "UPDATE refresh_tokens SET used_at = $1
                      WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
                      RETURNING {FAMILY_COLUMNS}"
                ),
                vec![now.into(), hash.clone().into()],
            ))
            .await?;
        let (turn, user) = match claimed {
            Some(row) => (FamilyTurn::from_row(&row)?, row.try_get::<Uuid>("", "user_id")?),
            None => {
                let row = txn
                    .query_one(stmt(
                        &txn,
                        &format!(
                            "SELECT {FAMILY_COLUMNS}, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1"
                        ),
                        vec![hash.into()],
                    ))
                    .await?
                    .ok_or(AuthError::InvalidToken)?;
                let turn = FamilyTurn::from_row(&row)?;
                let user: Uuid = row.try_get("", "user_id")?;
                let used_at: Option<DateTime<Utc>> = row.try_get("", "used_at")?;
                let revoked: Option<DateTime<Utc>> = row.try_get("", "revoked_at")?;
                let expires: DateTime<Utc> = row.try_get("", "expires_at")?;
                match used_at {
                    Some(used) if revoked.is_none() && expires > now && now - used <= REFRESH_REUSE_GRACE => {
                        (turn, user)
                    }
                    Some(_) if revoked.is_none() => {
                        self.end_family(&txn, user, turn.family).await?;
                        // The thief's (or the victim's) access tokens end with the family.
                        self.mark_family_revoked(&txn, user, turn.family).await?;
                        self.record_event(
                            &txn,
                            events::REFRESH_REUSE_DETECTED,
                            Some(user),
                            meta,
                            serde_json::json!({"token_family": turn.family}),
                        )
                        .await?;
                        txn.commit().await?;
                        return Err(AuthError::RefreshTokenReused);
                    }
                    _ if revoked.is_some() => return Err(AuthError::TokenFamilyEnded),
                    _ => return Err(AuthError::InvalidToken),
                }
            }
        };
        // On the transaction's own connection: waiting for a second pooled connection while
        // holding one starves the pool when as many refreshes as connections arrive at once.
        if Self::active_generation_on(&txn, user).await? != turn.generation {
            return Err(AuthError::TokenFamilyEnded);
        }
        let pair = self.issue_pair(&txn, user, &turn, meta).await?;
        self.record_event(
            &txn,
            events::TOKEN_REFRESHED,
            Some(user),
            meta,
            serde_json::json!({"token_family": turn.family}),
        )
        .await?;
        txn.commit().await?;
        Ok(pair)
    }
}

impl AuthService {
    /// Queues a mail in the caller's transaction (the outbox), so it is sent only if that
    /// transaction commits.
    pub async fn enqueue_mail<C: ConnectionTrait>(
        &self,
        conn: &C,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), AuthError> {
        self.mail(conn, to, subject, body).await
    }

    /// The public base URL that links in mail point to.
    pub fn link_base_url(&self) -> &str {
        &self.settings.link_base_url
    }
}

/// Which sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Revoke {
    One(Uuid),
    AllExcept(Uuid),
    All,
}
