//! `rampart audit`: verify the hash chains and purge what is past retention. Both read every
//! chain, so on PostgreSQL they connect as the owner role (`database.migrate_url`) and act as the
//! `rampart_audit` role; the server's runtime role can do neither.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every link of every chain (or one) and name the first broken link. Exits 1 when
    /// a chain is broken. Keep the printed head hashes outside the database: a later run that
    /// shows a different hash for the same position means the chain was rewritten.
    Verify {
        /// Only this chain: a workspace id, or 00000000-0000-0000-0000-000000000000 for the
        /// platform chain.
        #[arg(long)]
        chain: Option<Uuid>,
        /// One JSON object per chain instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove events older than `audit.retention_days` (at least 365), oldest first; each purge
    /// is recorded in the chain it shortened. Run it daily (cron, a Kubernetes CronJob).
    Purge,
}

/// A connection that may read every chain (and act as the key operators' role).
pub(crate) async fn connect(cfg: &Config) -> anyhow::Result<storage::Db> {
    let url = match (&cfg.database.migrate_url, &cfg.database.url) {
        (Some(owner), _) => owner.clone(),
        (None, Some(url)) if storage::Backend::from_url(url.expose_secret())? == storage::Backend::Postgres => {
            anyhow::bail!("database.migrate_url is missing: on PostgreSQL the audit commands connect as the owner role (a member of rampart_audit), never as the runtime role")
        }
        (None, _) => cfg.database_url(),
    };
    storage::Db::connect(&url, 2).await.context("connecting to the database")
}

pub async fn run(cfg: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let db = connect(cfg).await?;
    db.ensure_schema_current().await?;
    let result = match command {
        AuditCommand::Verify { chain, json } => verify(&db, chain, json).await,
        AuditCommand::Purge => purge(&db, cfg.audit.retention_days).await,
    };
    db.close().await?;
    result
}

async fn verify(db: &storage::Db, only: Option<Uuid>, json: bool) -> anyhow::Result<()> {
    let txn = audit::begin_auditor(db.conn()).await?;
    let chains = match only {
        Some(chain) => vec![chain],
        None => audit::chains(&txn).await?,
    };
    let mut out = std::io::stdout().lock();
    let mut broken = 0usize;
    for chain in &chains {
        let v = audit::verify(&txn, *chain).await?;
        if json {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            let name = if *chain == audit::PLATFORM_CHAIN { format!("{chain} (platform)") } else { chain.to_string() };
            match (&v.broken, &v.head) {
                (Some(b), _) => writeln!(
                    out,
                    "chain {name}: BROKEN at event {}{}: {}",
                    b.seq,
                    b.id.map(|id| format!(" ({id})")).unwrap_or_default(),
                    b.reason
                )?,
                (None, Some((seq, hash))) => {
                    writeln!(out, "chain {name}: {} events intact; head {seq} {hash}", v.events)?
                }
                (None, None) => writeln!(out, "chain {name}: no events")?,
            }
        }
        broken += usize::from(!v.is_intact());
    }
    txn.commit().await?;
    if broken > 0 {
        anyhow::bail!("{broken} of {} audit chains are broken", chains.len());
    }
    if !json {
        writeln!(out, "{} audit chains verified", chains.len())?;
    }
    Ok(())
}

async fn purge(db: &storage::Db, retention_days: i64) -> anyhow::Result<()> {
    let now = storage::Clock::now(&storage::SystemClock);
    let report = audit::purge(db.conn(), retention_days, now).await?;
    let mut out = std::io::stdout().lock();
    for (chain, deleted) in &report.chains {
        writeln!(
            out,
            "chain {chain}: {deleted} events older than {retention_days} days removed (recorded in the chain)"
        )?;
    }
    writeln!(out, "{} chains purged", report.chains.len())?;
    tracing::info!(audit.chains_purged = report.chains.len(), retention_days, "audit retention purge");
    Ok(())
}
