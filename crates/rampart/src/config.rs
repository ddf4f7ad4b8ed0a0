//! Typed, layered configuration: defaults, then a TOML file, then `RAMPART__SECTION__KEY`
//! environment variables (plus the conventional `RAMPART_ENV`, `DATABASE_URL` and `REDIS_URL`).
//! This is the only place in Rampart that reads the environment.

use std::path::{Path, PathBuf};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Deployment mode. Production refuses every insecure default.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
    /// Like development, and lets tests use test-only conveniences.
    Test,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default; what log pipelines expect).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing-subscriber` filter, e.g. `info` or `info,sqlx=warn`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Json, filter: "info".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL. Required in production so replicas share sessions and limits.
    pub url: Option<SecretString>,
    /// Prefix of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Connect and command timeout in milliseconds (default 250): while Redis is unreachable, a
    /// request that needs it is answered 503 within about this long.
    pub timeout_ms: u64,
    /// After a failure, how long requests that need Redis are answered 503 at once before one
    /// tries again, in milliseconds (default 1000).
    pub circuit_open_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: None, key_prefix: "rampart:".into(), timeout_ms: 250, circuit_open_ms: 1000 }
    }
}

impl RedisConfig {
    pub fn settings(&self) -> auth::store::RedisSettings {
        auth::store::RedisSettings {
            timeout: std::time::Duration::from_millis(self.timeout_ms.max(1)),
            open_for: std::time::Duration::from_millis(self.circuit_open_ms.max(1)),
        }
    }
}

/// Account and sign-in settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `open`, `invite_only` or `closed`.
    pub signup: auth::SignupMode,
    /// bcrypt work factor: 12 by default, never below 10 (OWASP Password Storage Cheat Sheet).
    pub bcrypt_cost: u32,
    /// Password hashes computed at once; further sign-ins wait their turn. Default: CPU count.
    pub hash_concurrency: Option<usize>,
    /// Base URL of links in e-mails (the web app). Default: `http.public_url`.
    pub link_base_url: Option<String>,
    /// Access-token lifetime in seconds (default 900, at most 3600).
    pub access_token_ttl_secs: i64,
    /// Sign-in, sign-up, reset and verification attempts per minute, per client address and per
    /// account (default 10; 0 disables and is refused in production).
    pub attempts_per_minute: u64,
    /// Workspaces one user may create per hour (default 10; 0 disables).
    pub workspace_creations_per_hour: u64,
    /// Redirect URIs of the native and desktop clients allowed to sign in through a provider
    /// (`http://127.0.0.1/callback` matches any port; `com.example.app:/oauth2redirect`).
    pub native_redirect_uris: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            signup: auth::SignupMode::Open,
            bcrypt_cost: auth::password::DEFAULT_BCRYPT_COST,
            hash_concurrency: None,
            link_base_url: None,
            access_token_ttl_secs: 900,
            attempts_per_minute: 10,
            workspace_creations_per_hour: 10,
            native_redirect_uris: Vec::new(),
        }
    }
}

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// SMTP relay, e.g. `smtps://user:pass@smtp.example.com`. Without it (development only) mail
    /// is appended to `<data_dir>/mail.log`.
    pub smtp_url: Option<SecretString>,
    /// Sender address.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig { smtp_url: None, from: "Rampart <no-reply@localhost>".into() }
    }
}

/// Secret keys, each 32 bytes written as 64 hex characters (`openssl rand -hex 32`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub token_hmac_key: Option<SecretString>,
    pub vault_key: Option<SecretString>,
    pub password_pepper: Option<SecretString>,
    /// The access-token signing key: `kid:base64(PKCS#8 Ed25519)`.
    pub jwt_signing_key: Option<SecretString>,
    /// Keys being rotated out, same form; their tokens keep verifying until they expire.
    pub jwt_previous_keys: Vec<SecretString>,
    /// Earlier `vault_key`s: they still unwrap data keys until `rampart keys rewrap` has moved
    /// every data key to the current `vault_key`; remove them after that.
    pub vault_previous_keys: Vec<SecretString>,
    /// Keys brought by tenants (bring your own key), by workspace id: that workspace's data keys
    /// are wrapped by its own key alone. Removing one makes that workspace's sealed data
    /// unreadable, in backups too.
    pub tenant_vault_keys: std::collections::BTreeMap<uuid::Uuid, SecretString>,
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days an audit event is kept before `rampart audit purge` may remove it; at least 365.
    pub retention_days: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: audit::MIN_RETENTION_DAYS }
    }
}

/// The whole configuration, validated once at start-up and then split per crate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub env: Environment,
    /// Where the embedded store and generated development keys live.
    pub data_dir: PathBuf,
    pub http: api::HttpConfig,
    pub security_txt: api::SecurityTxtConfig,
    pub database: storage::DatabaseConfig,
    pub redis: RedisConfig,
    pub secrets: SecretsConfig,
    pub auth: AuthConfig,
    pub mail: MailConfig,
    pub audit: AuditConfig,
    pub outbox: OutboxConfig,
    pub egress: EgressConfig,
    /// OpenID Connect providers to sign in with, by the name in their URLs
    /// (`/api/v1/auth/oidc/{name}/…`): `[oidc.google]` needs only `client_id` and
    /// `client_secret`; any other name needs its `issuer` too.
    pub oidc: std::collections::BTreeMap<String, OidcProviderConfig>,
    pub log: LogConfig,
}

/// One OpenID Connect provider. Register `{public_url}/api/v1/auth/oidc/{name}/callback` as its
/// redirect URI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The issuer (its discovery document is `{issuer}/.well-known/openid-configuration`);
    /// defaults to `https://accounts.google.com` for the provider named `google`.
    pub issuer: Option<String>,
    pub client_id: String,
    /// Keep it out of files: `RAMPART__OIDC__<NAME>__CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// Scopes beyond `openid`; default `["email", "profile"]`, which read the profile only
    /// (`github`: `["read:user", "user:email"]`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `oidc` (default; `github`: `oauth2`), or `oauth2` for a plain OAuth 2.0 provider with a
    /// user-info endpoint.
    pub kind: Option<String>,
    /// For `oauth2`: the endpoints (GitHub's are the defaults of the provider named `github`).
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub emails_url: Option<String>,
    /// The user-info member naming the user (default `id`).
    pub subject_field: Option<String>,
    /// Take this provider's "verified" for an address, to create or take over accounts by it.
    /// Default: true for `google` and `github`, false for any other: set it only for providers
    /// that verify every address they vouch for.
    pub trust_email: Option<bool>,
}

/// The outbox workers (in `rampart serve` and in each `rampart worker`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Seconds a claimed action stays with its worker before another may take it over; at least
    /// 3. A live worker renews its claims every third of this while their handlers run, so it
    /// bounds only how long a killed worker's actions wait.
    pub lease_secs: i64,
    /// Milliseconds between passes over due actions.
    pub poll_interval_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { lease_secs: scheduler::LEASE.num_seconds(), poll_interval_ms: 1000 }
    }
}

/// Outbound requests (connection tests, webhook deliveries).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Exact loopback addresses (`127.0.0.1:port`) let through the private-address refusal, and
    /// with them plain http: only with `env = "test"`, for a test's local receiver; refused in
    /// any other environment.
    pub test_exceptions: Vec<std::net::SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            env: Environment::default(),
            data_dir: PathBuf::from("rampart-data"),
            http: api::HttpConfig::default(),
            security_txt: api::SecurityTxtConfig::default(),
            database: storage::DatabaseConfig::default(),
            redis: RedisConfig::default(),
            secrets: SecretsConfig::default(),
            auth: AuthConfig::default(),
            mail: MailConfig::default(),
            audit: AuditConfig::default(),
            outbox: OutboxConfig::default(),
            egress: EgressConfig::default(),
            oidc: std::collections::BTreeMap::new(),
            log: LogConfig::default(),
        }
    }
}

/// The layered sources. `file` is an explicit `--config` path (which must exist); without it
/// `rampart.toml` in the working directory is read when present.
pub fn figment(file: Option<&Path>) -> Figment {
    let figment = Figment::new();
    let figment = match file {
        Some(path) => figment.merge(Toml::file_exact(path)),
        None => figment.merge(Toml::file("rampart.toml")),
    };
    figment
        .merge(Env::prefixed("RAMPART__").split("__"))
        .merge(Env::raw().only(&["RAMPART_ENV"]).map(|_| "env".into()))
        .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
        .merge(Env::raw().only(&["DATABASE_MIGRATE_URL"]).map(|_| "database.migrate_url".into()))
        .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
}

pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
    figment(file).extract().map_err(Box::new)
}

impl Config {
    /// Every problem with the configuration, each naming the setting to fix. Production adds the
    /// refusals of insecure defaults: development keys, missing secrets, no Redis, not PostgreSQL.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let prod = self.env == Environment::Production;
        if !self.egress.test_exceptions.is_empty() && self.env != Environment::Test {
            problems.push("egress.test_exceptions is for tests only (env = \"test\"): remove it".into());
        }
        if self.egress.test_exceptions.iter().any(|a| !a.ip().is_loopback() || a.port() == 0) {
            problems.push("egress.test_exceptions must be loopback addresses with their exact port".into());
        }
        if self.outbox.lease_secs < scheduler::MIN_LEASE.num_seconds() {
            problems.push(format!(
                "outbox.lease_secs must be at least {} (workers renew their claims every third of the lease)",
                scheduler::MIN_LEASE.num_seconds()
            ));
        }
        for (name, provider) in &self.oidc {
            if let Err(problem) = self.oidc_provider(name, provider).validate() {
                problems.push(format!("oidc.{name}: {problem}"));
            }
            let oauth2 = provider.kind.as_deref().map_or(name == "github", |kind| kind == "oauth2");
            if !matches!(provider.kind.as_deref(), None | Some("oidc") | Some("oauth2")) {
                problems.push(format!("oidc.{name}.kind must be `oidc` or `oauth2`"));
            }
            if !oauth2 && provider.issuer.is_none() && name != "google" {
                problems.push(format!("oidc.{name}.issuer is required (only `google` has a default)"));
            }
            if oauth2
                && name != "github"
                && [&provider.authorization_url, &provider.token_url, &provider.userinfo_url]
                    .iter()
                    .any(|u| u.is_none())
            {
                problems.push(format!(
                    "oidc.{name}: an `oauth2` provider needs authorization_url, token_url and userinfo_url"
                ));
            }
            if provider.issuer.as_deref().is_some_and(|i| !i.starts_with("https://")) && self.env != Environment::Test {
                problems.push(format!("oidc.{name}.issuer must be an https URL"));
            }
        }
        if self.outbox.poll_interval_ms == 0 {
            problems.push("outbox.poll_interval_ms must be at least 1".into());
        }

        match &self.database.url {
            Some(url) => match storage::Backend::from_url(url.expose_secret()) {
                Ok(storage::Backend::Postgres) => {}
                Ok(storage::Backend::Sqlite) if prod => problems.push(
                    "database.url: production needs PostgreSQL (postgres://…), not SQLite; set RAMPART__DATABASE__URL or DATABASE_URL".into(),
                ),
                Ok(storage::Backend::Sqlite) => {}
                Err(err) => problems.push(format!("database.url: {err}")),
            },
            None if prod => problems.push(
                "database.url is missing: production needs a PostgreSQL URL for the runtime role (RAMPART__DATABASE__URL or DATABASE_URL)".into(),
            ),
            None => {}
        }
        if prod && self.redis.url.is_none() {
            problems.push("redis.url is missing: production needs Redis so replicas share sessions and rate limits (RAMPART__REDIS__URL or REDIS_URL)".into());
        }
        for (name, value) in [
            ("token_hmac_key", &self.secrets.token_hmac_key),
            ("vault_key", &self.secrets.vault_key),
            ("password_pepper", &self.secrets.password_pepper),
        ] {
            match value {
                Some(v) => {
                    if let Err(err) = crypto_vault::KeyMaterial::from_hex(v.expose_secret()) {
                        problems.push(format!("secrets.{name}: {err}; generate one with `openssl rand -hex 32`"));
                    }
                }
                None if prod => problems.push(format!(
                    "secrets.{name} is missing: production never uses generated development keys; set RAMPART__SECRETS__{} to 64 hex characters (`openssl rand -hex 32`)",
                    name.to_uppercase()
                )),
                None => {}
            }
        }
        match &self.secrets.jwt_signing_key {
            Some(key) => {
                if let Err(err) = parse_jwt_key(key.expose_secret()) {
                    problems.push(format!("secrets.jwt_signing_key: {err}"));
                }
            }
            None if prod => problems.push(
                "secrets.jwt_signing_key is missing: set RAMPART__SECRETS__JWT_SIGNING_KEY to `kid:base64(PKCS#8 Ed25519)` (`rampart keys generate` prints a full set)".into(),
            ),
            None => {}
        }
        for key in &self.secrets.jwt_previous_keys {
            if let Err(err) = parse_jwt_key(key.expose_secret()) {
                problems.push(format!("secrets.jwt_previous_keys: {err}"));
            }
        }
        for key in &self.secrets.vault_previous_keys {
            if let Err(err) = crypto_vault::KeyMaterial::from_hex(key.expose_secret()) {
                problems.push(format!("secrets.vault_previous_keys: {err}"));
            }
        }
        for (tenant, key) in &self.secrets.tenant_vault_keys {
            if let Err(err) = crypto_vault::KeyMaterial::from_hex(key.expose_secret()) {
                problems.push(format!("secrets.tenant_vault_keys.{tenant}: {err}"));
            }
        }
        if self.auth.bcrypt_cost < auth::password::MIN_BCRYPT_COST || self.auth.bcrypt_cost > 16 {
            problems.push(format!(
                "auth.bcrypt_cost must be between {} and 16 (OWASP: at least 10)",
                auth::password::MIN_BCRYPT_COST
            ));
        }
        if prod && (self.auth.attempts_per_minute == 0 || self.http.rate_limit_per_client_per_sec == 0) {
            problems.push(
                "auth.attempts_per_minute and http.rate_limit_per_client_per_sec must not be 0 in production".into(),
            );
        }
        if self.audit.retention_days < audit::MIN_RETENTION_DAYS {
            problems.push(format!(
                "audit.retention_days must be at least {} (audit events are kept at least a year)",
                audit::MIN_RETENTION_DAYS
            ));
        }
        if prod && self.mail.smtp_url.is_none() {
            problems.push("mail.smtp_url is missing: production sends verification and reset mail over SMTP (RAMPART__MAIL__SMTP_URL)".into());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!("mail.from: `{}` is not a valid sender address", self.mail.from));
        }
        for origin in &self.http.cors_allowed_origins {
            let ok = url::Url::parse(origin)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/" && u.query().is_none())
                .unwrap_or(false);
            if !ok || origin.ends_with('/') {
                problems.push(format!(
                    "http.cors_allowed_origins: `{origin}` is not an origin (scheme://host[:port], no path, no wildcard)"
                ));
            }
        }
        match &self.http.public_url {
            Some(url) if prod && url.scheme() != "https" => {
                problems.push("http.public_url must be https in production".into());
            }
            None if prod => problems.push(
                "http.public_url is missing: production needs the public https base URL (used for security.txt Canonical and links)".into(),
            ),
            _ => {}
        }
        for contact in &self.security_txt.contact {
            if !(contact.starts_with("mailto:") || contact.starts_with("tel:") || contact.starts_with("https://")) {
                problems.push(format!(
                    "security_txt.contact: `{contact}` must be a mailto:, tel: or https:// URI (RFC 9116 §2.5.3)"
                ));
            }
        }
        if let Some(policy) = &self.security_txt.policy {
            if !policy.starts_with("https://") {
                problems.push(format!("security_txt.policy: `{policy}` must be an https:// URI (RFC 9116 §2.5.7)"));
            }
        }
        if prod && self.security_txt.contact.is_empty() {
            problems.push("security_txt.contact is missing: RFC 9116 requires at least one Contact (e.g. mailto:security@example.com)".into());
        }
        if prod && self.security_txt.policy.is_none() {
            problems.push("security_txt.policy is missing: production publishes its disclosure policy URL".into());
        }
        if self.http.body_limit_bytes == 0 {
            problems.push("http.body_limit_bytes must be greater than 0".into());
        }
        problems
    }

    /// The runtime database URL: the configured one, or the embedded SQLite file.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!("sqlite://{}?mode=rwc", self.data_dir.join("rampart.db").display())),
        }
    }

    /// The base URL clients use; defaults to the listen address over http (development only).
    fn oidc_provider(&self, name: &str, provider: &OidcProviderConfig) -> auth::oidc::ProviderConfig {
        let github = name == "github";
        let oauth2 = provider.kind.as_deref().map_or(github, |kind| kind == "oauth2");
        let kind = if oauth2 {
            let preset = auth::oidc::OAuth2Endpoints::github();
            let pick = |value: &Option<String>, default: String| {
                value.clone().unwrap_or_else(|| if github { default } else { String::new() })
            };
            auth::oidc::ProviderKind::OAuth2(auth::oidc::OAuth2Endpoints {
                authorization_url: pick(&provider.authorization_url, preset.authorization_url),
                token_url: pick(&provider.token_url, preset.token_url),
                userinfo_url: pick(&provider.userinfo_url, preset.userinfo_url),
                emails_url: provider.emails_url.clone().or(if github { preset.emails_url } else { None }),
                subject_field: provider.subject_field.clone().unwrap_or(preset.subject_field),
            })
        } else {
            auth::oidc::ProviderKind::OpenIdConnect
        };
        let scopes = match (provider.scopes.is_empty(), github) {
            (true, true) => vec!["read:user".into(), "user:email".into()],
            _ => provider.scopes.clone(),
        };
        auth::oidc::ProviderConfig {
            name: name.to_owned(),
            issuer: provider.issuer.clone().unwrap_or_else(|| match oauth2 {
                true => provider.token_url.clone().unwrap_or_else(|| "https://github.com".into()),
                false => auth::oidc::GOOGLE_ISSUER.to_owned(),
            }),
            client_id: provider.client_id.clone(),
            client_secret: provider.client_secret.clone().unwrap_or_else(|| SecretString::from("")),
            scopes,
            redirect_uri: format!("{}/api/v1/auth/oidc/{name}/callback", self.public_url()),
            kind,
            trust_email: provider.trust_email.unwrap_or(name == "google" || github),
        }
    }

    /// The identity providers as the auth crate takes them.
    pub fn oidc_providers(&self) -> Vec<auth::oidc::ProviderConfig> {
        self.oidc.iter().map(|(name, provider)| self.oidc_provider(name, provider)).collect()
    }

    pub fn public_url(&self) -> String {
        match &self.http.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.http.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.http.listen)
            }
        }
    }
}

// figment::Jail fixes the closure's (large) error type.
/// Parses `kid:base64(PKCS#8)`.
pub fn parse_jwt_key(text: &str) -> anyhow::Result<auth::jwt::SigningKey> {
    let (kid, der) =
        text.trim().split_once(':').ok_or_else(|| anyhow::anyhow!("expected `kid:base64(PKCS#8 Ed25519)`"))?;
    if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        anyhow::bail!("the key id must be letters, digits, `-` or `_`");
    }
    Ok(auth::jwt::SigningKey::from_pkcs8_base64(kid, der)?)
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
pub(crate) mod tests {
    use super::*;
    use figment::Jail;

    pub(crate) const KEY_A: &str = "4f1c2a9e8b7d6c5a4f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a2918f0e1";
    pub(crate) const KEY_B: &str = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";

    #[test]
    fn defaults_run_on_embedded_sqlite_on_localhost() {
        Jail::expect_with(|_jail| {
            let cfg = load(None).unwrap();
            assert_eq!(cfg.env, Environment::Development);
            assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8080");
            assert!(cfg.database_url().expose_secret().starts_with("sqlite://"));
            assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("rampart.toml", "[http]\nlisten = \"127.0.0.1:9000\"\nrequest_timeout_secs = 5\n")?;
            jail.set_env("RAMPART__HTTP__LISTEN", "127.0.0.1:9100");
            jail.set_env("DATABASE_URL", "postgres://app@db/rampart");
            let cfg = load(None).unwrap();
            assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(cfg.http.request_timeout_secs, 5);
            assert_eq!(cfg.database_url().expose_secret(), "postgres://app@db/rampart");
            Ok(())
        });
    }

    #[test]
    fn unknown_settings_are_rejected_rather_than_ignored() {
        Jail::expect_with(|jail| {
            jail.create_file("rampart.toml", "[http]\nlistne = \"127.0.0.1:9000\"\n")?;
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("listne"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn production_refuses_to_start_without_real_secrets_and_names_each_one() {
        Jail::expect_with(|jail| {
            jail.set_env("RAMPART_ENV", "production");
            let problems = load(None).unwrap().problems().join("\n");
            for needle in [
                "database.url",
                "redis.url",
                "secrets.token_hmac_key",
                "secrets.vault_key",
                "secrets.password_pepper",
                "secrets.jwt_signing_key",
                "mail.smtp_url",
                "http.public_url",
                "security_txt.contact",
                "security_txt.policy",
            ] {
                assert!(problems.contains(needle), "missing `{needle}` in:\n{problems}");
            }
            Ok(())
        });
    }

    #[test]
    fn production_refuses_sqlite_and_weak_keys() {
        Jail::expect_with(|jail| {
            jail.set_env("RAMPART_ENV", "production");
            jail.set_env("DATABASE_URL", "sqlite://x.db");
            jail.set_env("RAMPART__SECRETS__TOKEN_HMAC_KEY", "ab".repeat(32));
            jail.set_env("RAMPART__SECRETS__VAULT_KEY", "short");
            let problems = load(None).unwrap().problems().join("\n");
            assert!(problems.contains("needs PostgreSQL"), "{problems}");
            assert!(problems.contains("secrets.token_hmac_key: key has too little variety"), "{problems}");
            assert!(problems.contains("secrets.vault_key: key must be 32 bytes"), "{problems}");
            assert!(!problems.contains("short"), "a secret value must never be echoed: {problems}");
            Ok(())
        });
    }

    #[test]
    fn wildcard_and_malformed_cors_origins_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "RAMPART__HTTP__CORS_ALLOWED_ORIGINS",
                "[\"*\", \"https://app.example.com/path\", \"https://ok.example.com\"]",
            );
            let problems = load(None).unwrap().problems();
            assert_eq!(problems.len(), 2, "{problems:?}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_are_read_from_the_file_and_the_environment() {
        Jail::expect_with(|jail| {
            assert!(load(None).unwrap().http.trusted_proxies.is_empty(), "no proxy is trusted by default");
            jail.create_file("rampart.toml", "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.10\"]\n")?;
            let cfg = load(None).unwrap();
            assert!(cfg.http.trusted_proxies.contains("10.20.30.40".parse().unwrap()));
            assert!(cfg.http.trusted_proxies.contains("192.0.2.10".parse().unwrap()));
            assert!(!cfg.http.trusted_proxies.contains("192.0.2.11".parse().unwrap()));
            jail.set_env("RAMPART__HTTP__TRUSTED_PROXIES", "[\"2001:db8::/32\"]");
            let cfg = load(None).unwrap();
            assert!(!cfg.http.trusted_proxies.contains("10.20.30.40".parse().unwrap()), "the environment wins");
            assert!(cfg.http.trusted_proxies.contains("2001:db8::1".parse().unwrap()));
            Ok(())
        });
    }

    #[test]
    fn an_invalid_trusted_proxy_range_stops_start_up_naming_the_setting_and_the_entry() {
        for (entry, reason) in [
            ("10.0.0.0/33", "is not a CIDR range"),
            ("lb.internal", "is not an IP address"),
            ("10.0.0.1/8", "has host bits set"),
            ("0.0.0.0/0", "trusts every address"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("RAMPART__HTTP__TRUSTED_PROXIES", format!("[\"127.0.0.1\", \"{entry}\"]"));
                let err = load(None).unwrap_err().to_string();
                // The key as figment names it: `HTTP.TRUSTED_PROXIES` from the environment.
                let names_key = err.to_lowercase().contains("http.trusted_proxies");
                assert!(names_key && err.contains(&format!("`{entry}`")) && err.contains(reason), "{err}");
                Ok(())
            });
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        Jail::expect_with(|jail| {
            jail.set_env("RAMPART__SECRETS__VAULT_KEY", KEY_B);
            jail.set_env("DATABASE_URL", "postgres://app:hunter2@db/rampart");
            let printed = format!("{:?}", load(None).unwrap());
            assert!(!printed.contains(KEY_B), "{printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
            Ok(())
        });
    }
}
