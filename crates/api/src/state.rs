//! The application state built once at start-up and shared by every request.

use std::sync::Arc;

use storage::Db;

/// Everything a handler may reach. Built by the binary (or the test harness), never by handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub redis: Option<redis::aio::ConnectionManager>,
    /// The rendered `security.txt`, fixed at start-up.
    pub security_txt: Arc<str>,
    /// Keys, one per purpose; never printed.
    pub keyring: Arc<crypto_vault::Keyring>,
    /// Accounts, passwords, sessions and tokens.
    pub auth: auth::AuthService,
    /// Authentication attempts per minute per client address and per account (0 disables, for
    /// benchmarks only).
    pub auth_attempts_per_minute: u64,
    /// Workspaces one user may create per hour (0 disables): setting up workspaces is not a way
    /// to flood the platform (OWASP API4:2023, unrestricted resource consumption).
    pub workspace_creations_per_hour: u64,
    /// Envelope encryption of secrets at rest (tenants' data keys, KEKs from configuration).
    pub vault: Arc<crypto_vault::Vault>,
    /// Outbound requests of connection tests: the resolver every address is checked after.
    pub egress: Egress,
    /// The activity ingestion pipeline (its default sensitive-application and private-window
    /// lists).
    pub pipeline: Arc<pii::pipeline::Pipeline>,
    /// Inbound webhook deliveries, recorded source by source in batches.
    pub inbox: Arc<webhooks::inbound::Inbox>,
}

/// How connection tests reach providers.
#[derive(Clone)]
pub struct Egress {
    pub resolver: Arc<dyn egress::Resolver>,
    /// Exact addresses let through the private-address refusal: for tests only (empty in
    /// production; `rampart serve` has no setting for it).
    pub exceptions: Vec<std::net::SocketAddr>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("exceptions", &self.exceptions).finish_non_exhaustive()
    }
}

impl Default for Egress {
    fn default() -> Egress {
        Egress { resolver: Arc::new(egress::SystemResolver), exceptions: Vec::new() }
    }
}

/// Everything needed to build the state; shared by the binary and the test harness so both
/// assemble the server the same way.
#[derive(Debug)]
pub struct Assembly {
    pub db: Db,
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Namespace for Redis keys (one deployment per prefix).
    pub redis_prefix: String,
    /// How long a request waits for Redis, and how long the circuit stays open after a failure.
    pub redis_settings: auth::store::RedisSettings,
    pub keyring: crypto_vault::Keyring,
    pub jwt_keys: auth::jwt::JwtKeys,
    pub jwt: auth::jwt::JwtConfig,
    pub clock: Arc<dyn storage::Clock>,
    pub settings: auth::AuthSettings,
    pub bcrypt_cost: u32,
    /// Concurrent password hashes; the rest wait (keeps a sign-in flood off the async workers).
    pub hash_concurrency: usize,
    pub security_txt: String,
    pub auth_attempts_per_minute: u64,
    pub workspace_creations_per_hour: u64,
    pub vault: crypto_vault::Vault,
    pub egress: Egress,
    /// OpenID Connect providers to sign in with.
    pub oidc: Vec<auth::oidc::ProviderConfig>,
}

impl AppState {
    pub fn assemble(a: Assembly) -> Result<AppState, auth::AuthError> {
        let kv = match &a.redis {
            Some(conn) => auth::store::Kv::redis(conn.clone(), &a.redis_prefix, a.redis_settings),
            None => auth::store::Kv::memory_with_clock(a.clock.clone()),
        };
        let access = auth::AccessTokens::new(a.jwt_keys, a.jwt, a.clock.clone())?;
        let oidc = if a.oidc.is_empty() {
            auth::oidc::Providers::none()
        } else {
            let http = egress::GuardedClient::new(
                auth::oidc::provider_policy(&a.egress.exceptions),
                a.egress.resolver.clone(),
            )
            .map_err(|e| auth::AuthError::Internal(format!("identity provider client: {e}")))?;
            auth::oidc::Providers::new(a.oidc, http).map_err(auth::AuthError::Internal)?
        };
        let auth = auth::AuthService::new(auth::service::AuthParts {
            db: a.db.clone(),
            kv,
            hasher: auth::password::PasswordHasher::new(
                a.bcrypt_cost,
                a.keyring.password_pepper.clone(),
                a.hash_concurrency,
            ),
            tokens: auth::token::TokenHasher::new(&a.keyring.token_hmac),
            outbox_key: a.keyring.vault_kek.clone(),
            previous_keys: a.keyring.vault_previous.clone(),
            clock: a.clock,
            settings: a.settings,
            access,
            oidc,
        });
        Ok(AppState {
            db: a.db,
            redis: a.redis,
            security_txt: Arc::from(a.security_txt),
            keyring: Arc::new(a.keyring),
            auth,
            auth_attempts_per_minute: a.auth_attempts_per_minute,
            workspace_creations_per_hour: a.workspace_creations_per_hour,
            vault: Arc::new(a.vault),
            egress: a.egress,
            pipeline: Arc::new(pii::pipeline::Pipeline::new(pii::pipeline::Config::default())),
            inbox: Arc::new(webhooks::inbound::Inbox::new()),
        })
    }

    /// The outbox worker with every handler this server knows.
    pub fn worker(&self, mailer: scheduler::mail::Mailer, clock: Arc<dyn storage::Clock>) -> scheduler::Worker {
        let auth = self.auth.clone();
        let db = self.db.clone();
        let deliverer = webhooks::outbound::Deliverer::new(
            self.db.clone(),
            self.vault.clone(),
            self.keyring.vault_kek.clone(),
            webhooks::outbound::delivery_policy(&self.egress.exceptions),
            self.egress.resolver.clone(),
            clock.clone(),
        )
        .map_err(|err| err.code().to_owned());
        scheduler::Worker::new(self.db.clone(), self.keyring.vault_kek.clone(), clock)
            .with_previous_keys(self.keyring.vault_previous.clone())
            .handle(scheduler::mail::SEND_EMAIL, move |action| {
                let mailer = mailer.clone();
                async move {
                    let mail: scheduler::mail::Mail =
                        serde_json::from_value(action.payload).map_err(|e| e.to_string())?;
                    mailer.send(&mail, ids::ActionId(action.id)).await
                }
            })
            .handle(auth::service::RESET_REQUEST_ACTION, {
                let auth = auth.clone();
                move |action| {
                    let auth = auth.clone();
                    async move { auth.handle_reset_request(&action.payload).await.map_err(|e| e.to_string()) }
                }
            })
            .handle(auth::service::PURGE_ACTION, {
                let auth = auth.clone();
                move |_| {
                    let auth = auth.clone();
                    async move { auth.handle_purge().await.map(|_| ()).map_err(|e| e.to_string()) }
                }
            })
            .handle(webhooks::outbound::DELIVER_ACTION, move |action| {
                let deliverer = deliverer.clone();
                async move {
                    match deliverer {
                        Ok(deliverer) => deliverer.deliver(action).await,
                        Err(code) => Err(format!("webhook delivery client could not be built: {code}")),
                    }
                }
            })
            .handle(tenancy::workspaces::PURGE_ACTION, move |action| {
                let (db, auth) = (db.clone(), auth.clone());
                async move { tenancy::workspaces::run_purge_action(&db, &action.payload, auth.now()).await }
            })
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.backend())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}
