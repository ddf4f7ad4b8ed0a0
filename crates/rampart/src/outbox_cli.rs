//! `rampart outbox list | retry | cancel`: the operators' view of durable side effects. Payloads
//! are sealed and never shown.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// The newest actions: id, kind, status, attempts, when due, last error.
    List {
        /// Only actions with this status: pending, running, done, dead or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 1,000).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per action instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead or cancelled action back in the queue, due now, with fresh attempts.
    Retry { id: ids::ActionId },
    /// Cancel a pending action so no worker runs it.
    Cancel { id: ids::ActionId },
}

pub async fn run(cfg: &Config, command: OutboxCommand) -> anyhow::Result<()> {
    let db = storage::Db::connect(&cfg.database_url(), 2).await.context("connecting to the database")?;
    db.ensure_schema_current().await?;
    let now = storage::Clock::now(&storage::SystemClock);
    let mut out = std::io::stdout().lock();
    let result = async {
        match command {
            OutboxCommand::List { status, limit, json } => {
                if let Some(s) = status.as_deref() {
                    anyhow::ensure!(
                        scheduler::STATUSES.contains(&s),
                        "--status is one of {}",
                        scheduler::STATUSES.join(", ")
                    );
                }
                for a in scheduler::list(db.conn(), status.as_deref(), limit).await? {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&a)?)?;
                    } else {
                        writeln!(
                            out,
                            "{} {} {} attempts {}/{} due {}{}",
                            a.id,
                            a.kind,
                            a.status,
                            a.attempts,
                            a.max_attempts,
                            a.run_at.to_rfc3339(),
                            a.last_error.map(|e| format!(" last error: {e}")).unwrap_or_default()
                        )?;
                    }
                }
                Ok(())
            }
            OutboxCommand::Retry { id } => {
                anyhow::ensure!(
                    scheduler::retry(db.conn(), id, now).await?,
                    "action {id} is not dead or cancelled (or does not exist)"
                );
                writeln!(out, "action {id} is pending again, due now")?;
                Ok(())
            }
            OutboxCommand::Cancel { id } => {
                anyhow::ensure!(
                    scheduler::cancel(db.conn(), id, now).await?,
                    "action {id} is not pending (or does not exist); a running action cannot be cancelled"
                );
                writeln!(out, "action {id} is cancelled")?;
                Ok(())
            }
        }
    }
    .await;
    db.close().await?;
    result
}
