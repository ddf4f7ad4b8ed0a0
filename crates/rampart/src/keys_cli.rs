//! `rampart keys rotate | rewrap | retire | shred`: the data keys of every tenant. They work
//! across tenants, so on PostgreSQL they connect as the owner role (`database.migrate_url`) and
//! act as the `rampart_keys` role; the server's runtime role can do none of them.

use std::io::Write as _;

use clap::Subcommand;
use tenancy::secrets::maintenance;
use uuid::Uuid;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh set of production secrets as environment lines (keep them in a secret store).
    Generate,
    /// Add a new data key version for every workspace (or one): new values are sealed with it at
    /// once; older versions keep opening what they sealed until `rewrap` has moved it.
    Rotate {
        /// Only this workspace.
        #[arg(long)]
        workspace: Option<Uuid>,
    },
    /// Re-wrap every data key under the active key-encryption key (`secrets.vault_key`) and
    /// re-encrypt every sealed value still on an older data key version, in batches, printing
    /// progress. Safe to interrupt and run again: it resumes where the data says it stopped.
    Rewrap {
        /// Values per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u64,
    },
    /// Delete data key versions older than the active one that no value uses any more, raising
    /// the minimum version that still decrypts. Run after `rewrap`.
    Retire,
    /// Delete every data key of one workspace: its sealed values can never be opened again
    /// (crypto-shredding). The deleted workspace purge does this on its own.
    Shred {
        #[arg(long)]
        workspace: Uuid,
        /// Required: there is no undo.
        #[arg(long)]
        confirm: bool,
    },
}

pub async fn run(cfg: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let keys = crate::keys::resolve(&cfg.secrets, &cfg.data_dir)?;
    let vault = keys.vault;
    let db = crate::audit_cli::connect(cfg).await?;
    db.ensure_schema_current().await?;
    let now = storage::Clock::now(&storage::SystemClock);
    let mut out = std::io::stdout().lock();
    let result = async {
        match command {
            KeysCommand::Generate => Ok(()),
            KeysCommand::Rotate { workspace } => {
                let made = maintenance::rotate(db.conn(), &vault, workspace, now).await?;
                for name in &made {
                    writeln!(
                        out,
                        "workspace {} {}: version {} is now active",
                        name.tenant, name.purpose, name.version
                    )?;
                }
                writeln!(
                    out,
                    "rotated {} data keys; run `rampart keys rewrap` to re-encrypt existing values",
                    made.len()
                )?;
                Ok(())
            }
            KeysCommand::Rewrap { batch } => {
                let report = maintenance::rewrap(db.conn(), &vault, batch, now, &mut |p| {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{}.{}: {}/{} values re-encrypted", p.table, p.column, p.done, p.total);
                })
                .await?;
                writeln!(
                    out,
                    "re-wrapped {} data keys, re-encrypted {} values",
                    report.keys_rewrapped, report.values_reencrypted
                )?;
                if !report.failed.is_empty() {
                    for (table, id) in &report.failed {
                        writeln!(out, "FAILED to open {table} row {id}")?;
                    }
                    anyhow::bail!("{} values did not open and were left as they are", report.failed.len());
                }
                Ok(())
            }
            KeysCommand::Retire => {
                let retired = maintenance::retire(db.conn(), now).await?;
                for r in &retired {
                    writeln!(
                        out,
                        "workspace {} {}: deleted versions {:?}; minimum decrypt version is now {}",
                        r.tenant, r.purpose, r.deleted, r.min_version
                    )?;
                }
                writeln!(out, "retired {} data key versions", retired.iter().map(|r| r.deleted.len()).sum::<usize>())?;
                Ok(())
            }
            KeysCommand::Shred { workspace, confirm } => {
                if !confirm {
                    anyhow::bail!("shredding cannot be undone: add --confirm");
                }
                let done = maintenance::shred(db.conn(), &vault, workspace, now).await?;
                writeln!(
                    out,
                    "workspace {workspace}: {done} data keys deleted; its sealed values can no longer be opened"
                )?;
                Ok(())
            }
        }
    }
    .await;
    db.close().await?;
    result
}
