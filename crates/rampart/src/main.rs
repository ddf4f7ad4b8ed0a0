//! `rampart`: the server binary. Parses the command line, loads and validates configuration, and
//! runs `serve`, `worker`, `migrate`, `openapi`, `keys`, `audit`, `outbox`, `users` or `pii scan`.
//! It must never hold business logic: it builds an `AppState` and hands it to `api`.

mod audit_cli;
mod config;
mod keys;
mod keys_cli;
mod log_scrub;
mod outbox_cli;
mod pii_cli;
mod users_cli;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::config::{Config, Environment, LogFormat};

/// Rampart: a secure-by-default multi-tenant SaaS backend.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Without it, `rampart.toml` in the working directory is read
    /// when present. Environment variables `RAMPART__SECTION__KEY` override the file.
    #[arg(long, global = true, env = "RAMPART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (embedded SQLite unless a database URL is configured).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run outbox workers only (no HTTP): durable side effects such as mail and webhook
    /// deliveries, shared with every other worker and server through the database.
    Worker,
    /// Apply pending schema migrations (PostgreSQL: as the owner role from `database.migrate_url`).
    Migrate,
    /// Exit 0 when the local server answers `GET /healthz` with 200 (for container health checks;
    /// plain HTTP on the configured listen address).
    Healthcheck,
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: keys_cli::KeysCommand,
    },
    /// The audit trail: verify the hash chains, purge what is past retention.
    Audit {
        #[command(subcommand)]
        command: audit_cli::AuditCommand,
    },
    /// Durable side effects: list, retry dead or cancelled actions, cancel pending ones.
    Outbox {
        #[command(subcommand)]
        command: outbox_cli::OutboxCommand,
    },
    /// Accounts: list, suspend, reinstate.
    Users {
        #[command(subcommand)]
        command: users_cli::UsersCommand,
    },
    /// Personal data and secrets.
    Pii {
        #[command(subcommand)]
        command: PiiCommand,
    },
    /// Print the OpenAPI description of the HTTP API.
    Openapi {
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PiiCommand {
    /// Read JSON lines {"id", "text"} on stdin; write {"id", "findings", "redacted"} per line.
    Scan,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Keys { command: keys_cli::KeysCommand::Generate } = &cli.command {
        return report(keys::generate_env().map(|env| {
            use std::io::Write;
            let _ = std::io::stdout().write_all(env.as_bytes());
        }));
    }
    if let Command::Pii { command: PiiCommand::Scan } = &cli.command {
        return pii_cli::run();
    }
    if let Command::Openapi { output } = &cli.command {
        return report(write_openapi(output.as_deref()));
    }
    let mut cfg = match config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(err) => {
            eprintln!("rampart: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve { listen: Some(addr) } = &cli.command {
        cfg.http.listen = *addr;
    }
    let _log_guard = init_logging(&cfg);
    let problems = cfg.problems();
    if !problems.is_empty() {
        let mode = if cfg.env == Environment::Production { " in production" } else { "" };
        eprintln!("rampart: refusing to start{mode}; fix the configuration:");
        for p in &problems {
            eprintln!("  - {p}");
        }
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => return report(Err(err.into())),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => serve(cfg).await,
            Command::Worker => worker(cfg).await,
            Command::Migrate => migrate(cfg).await,
            Command::Healthcheck => healthcheck(&cfg).await,
            Command::Audit { command } => audit_cli::run(&cfg, command).await,
            Command::Keys { command } => keys_cli::run(&cfg, command).await,
            Command::Outbox { command } => outbox_cli::run(&cfg, command).await,
            Command::Users { command } => users_cli::run(&cfg, command).await,
            Command::Openapi { .. } | Command::Pii { .. } => Ok(()),
        }
    });
    report(result)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "rampart stopped with an error");
            eprintln!("rampart: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_openapi(output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut json = api::openapi_json();
    json.push('\n');
    match output {
        Some(path) => std::fs::write(path, json).with_context(|| format!("writing {}", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(json.as_bytes())?;
            Ok(())
        }
    }
}

/// Structured logs on stderr through a background writer, so a request never waits on the log
/// pipe; every field value passes the PII and secret scrubber first (`log_scrub`: JSON lines
/// value by value in the writer, text lines in the field formatter). Not lossy: when the buffer is
/// full, writers wait rather than drop lines. The guard flushes on drop; keep it alive for the
/// life of the process.
fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match cfg.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(log_scrub::Scrubbing(writer))
            .try_init(),
        LogFormat::Text => builder.fmt_fields(log_scrub::ScrubbedFields).with_writer(writer).try_init(),
    };
    guard
}

fn ensure_data_dir(cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

async fn migrate(cfg: Config) -> anyhow::Result<()> {
    let url = match (&cfg.database.migrate_url, &cfg.database.url) {
        (Some(owner), _) => owner.clone(),
        (None, Some(url)) if storage::Backend::from_url(url.expose_secret())? == storage::Backend::Postgres => {
            anyhow::bail!("database.migrate_url is missing: PostgreSQL migrations run as the owner role, not the runtime role (RAMPART__DATABASE__MIGRATE_URL or DATABASE_MIGRATE_URL)")
        }
        (None, _) => {
            ensure_data_dir(&cfg)?;
            cfg.database_url()
        }
    };
    let db = storage::Db::connect(&url, 2).await.context("connecting to the database")?;
    let applied = storage::migrate(db.conn()).await.context("migrating")?;
    tracing::info!(backend = db.backend().name(), applied = ?applied, "database migrated");
    db.close().await?;
    Ok(())
}

/// The state `serve` and `worker` share: database (migrated on SQLite, checked on PostgreSQL),
/// Redis, keys, mail and every service, exactly as the server runs them.
async fn assemble(cfg: &Config) -> anyhow::Result<(api::AppState, scheduler::mail::Mailer, Arc<dyn storage::Clock>)> {
    ensure_data_dir(cfg)?;
    let keys = keys::resolve(&cfg.secrets, &cfg.data_dir)?;
    let db = storage::Db::connect(&cfg.database_url(), cfg.database.max_connections)
        .await
        .context("connecting to the database")?;
    match db.backend() {
        storage::Backend::Sqlite => {
            let applied = storage::migrate(db.conn()).await.context("migrating the embedded database")?;
            tracing::warn!(data_dir = %cfg.data_dir.display(), applied = ?applied, "running on the embedded SQLite store: no row-level security, single node only");
        }
        storage::Backend::Postgres => {
            let role = storage::check_runtime_role(&db).await?;
            db.ensure_schema_current().await?;
            tracing::info!(role = ?role, "PostgreSQL runtime role checked: cannot bypass row-level security");
        }
    }
    let redis = match &cfg.redis.url {
        Some(url) => {
            let client = redis::Client::open(url.expose_secret()).context("redis.url is not a valid Redis URL")?;
            Some(auth::store::connect_redis(client, cfg.redis.settings()).await.context("connecting to Redis")?)
        }
        None => None,
    };
    let clock: Arc<dyn storage::Clock> = Arc::new(storage::SystemClock);
    let now = clock.now();
    let expires = cfg
        .security_txt
        .expires
        .unwrap_or(now + chrono::Duration::days(i64::from(cfg.security_txt.expires_after_days)));
    let canonical = format!("{}/.well-known/security.txt", cfg.public_url());
    let mut security_txt_cfg = cfg.security_txt.clone();
    if security_txt_cfg.contact.is_empty() {
        // Development only: production refuses to start without a real contact.
        security_txt_cfg.contact.push("mailto:security@localhost".into());
        tracing::warn!("security_txt.contact is not set; publishing a localhost placeholder");
    }
    let security_txt = api::render_security_txt(&security_txt_cfg, &canonical, expires);
    let mailer = match &cfg.mail.smtp_url {
        Some(url) => scheduler::mail::Mailer::smtp(url.expose_secret(), &cfg.mail.from)?,
        None => {
            let path = cfg.data_dir.join("mail.log");
            tracing::warn!(path = %path.display(), "mail.smtp_url is not set; outgoing mail is appended to a local file");
            scheduler::mail::Mailer::file(path, &cfg.mail.from)?
        }
    };
    let jwt = auth::jwt::JwtConfig {
        issuer: cfg.public_url(),
        access_ttl: chrono::Duration::seconds(cfg.auth.access_token_ttl_secs),
        ..auth::jwt::JwtConfig::default()
    };
    let state = api::AppState::assemble(api::Assembly {
        db,
        redis,
        redis_prefix: cfg.redis.key_prefix.clone(),
        redis_settings: cfg.redis.settings(),
        keyring: keys.keyring,
        jwt_keys: keys.jwt,
        jwt,
        clock: clock.clone(),
        settings: auth::AuthSettings {
            signup: cfg.auth.signup,
            link_base_url: cfg.auth.link_base_url.clone().unwrap_or_else(|| cfg.public_url()),
            native_redirect_uris: cfg.auth.native_redirect_uris.clone(),
        },
        bcrypt_cost: cfg.auth.bcrypt_cost,
        hash_concurrency: cfg
            .auth
            .hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        security_txt,
        auth_attempts_per_minute: cfg.auth.attempts_per_minute,
        workspace_creations_per_hour: cfg.auth.workspace_creations_per_hour,
        vault: keys.vault,
        egress: api::Egress { exceptions: cfg.egress.test_exceptions.clone(), ..api::Egress::default() },
        oidc: cfg.oidc_providers(),
    })?;
    state.auth.schedule_purge().await.context("scheduling the purge job")?;
    Ok((state, mailer, clock))
}

/// The outbox worker of this configuration.
fn outbox_worker(
    cfg: &Config,
    state: &api::AppState,
    mailer: scheduler::mail::Mailer,
    clock: Arc<dyn storage::Clock>,
) -> scheduler::Worker {
    state.worker(mailer, clock).with_lease(chrono::Duration::seconds(cfg.outbox.lease_secs))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let (state, mailer, clock) = assemble(&cfg).await?;
    let (stop_worker, worker_stop) = tokio::sync::watch::channel(false);
    let worker = outbox_worker(&cfg, &state, mailer, clock);
    // The outbox loop is the one task spawned here: it only claims rows, so whatever it was doing
    // when the process stops is taken over by another worker once the lease passes.
    let worker_task =
        tokio::spawn(worker.run(std::time::Duration::from_millis(cfg.outbox.poll_interval_ms), worker_stop));

    let mut http = cfg.http.clone();
    http.test_mode = cfg.env == Environment::Test;
    let app = api::build_app(state, &http);
    // The TLS files are read and checked here, and again on SIGHUP (`api::server`).
    let bound = api::server::Bound::bind(cfg.http.listen, cfg.http.tls.clone())
        .await
        .with_context(|| format!("binding {}", cfg.http.listen))?;
    let scheme = if bound.is_tls() { "https" } else { "http" };
    tracing::info!(address = %bound.local_addr(), env = ?cfg.env, "rampart listening on {scheme}://{}", bound.local_addr());
    bound.serve(app, shutdown_signal()).await?;
    let _ = stop_worker.send(true);
    let _ = worker_task.await;
    tracing::info!("rampart stopped");
    Ok(())
}

/// A worker process: the outbox loop alone, until SIGTERM or Ctrl-C, after which the pass under
/// way finishes. Run as many as needed beside the servers; they share the work through the
/// claims in the database.
async fn worker(cfg: Config) -> anyhow::Result<()> {
    let (state, mailer, clock) = assemble(&cfg).await?;
    let worker = outbox_worker(&cfg, &state, mailer, clock);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tracing::info!(lease_secs = cfg.outbox.lease_secs, "rampart worker running");
    let interval = std::time::Duration::from_millis(cfg.outbox.poll_interval_ms);
    let run = worker.run(interval, stopped);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => {}
        () = shutdown_signal() => {
            let _ = stop.send(true);
            run.await;
        }
    }
    tracing::info!("rampart worker stopped");
    Ok(())
}

async fn healthcheck(cfg: &Config) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = cfg.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => anyhow::bail!("{addr}/healthz did not answer 200"),
        Ok(Err(err)) => Err(err.context(format!("probing {addr}"))),
        Err(_) => anyhow::bail!("{addr}/healthz did not answer within 5 s"),
    }
}

/// Resolves on Ctrl-C or SIGTERM, so in-flight requests can finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
