//! `rampart users list | suspend | unsuspend`: the operators' side of account suspension. A
//! suspended user is refused on their next request, whatever credential they hold, and
//! suspension ends every session and token family, so reinstating revives none of them. Each
//! change is recorded in the audit trail.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// The newest accounts: id, status, e-mail.
    List {
        /// Only accounts with this status: active or suspended.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 1,000).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per account instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Suspend an account (by id or e-mail address): its every credential ends at once.
    Suspend { user: String },
    /// Reinstate a suspended account; its holder signs in again.
    Unsuspend { user: String },
}

pub async fn run(cfg: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let (state, _, _) = crate::assemble(cfg).await?;
    let auth = &state.auth;
    let mut out = std::io::stdout().lock();
    // Recorded as the actor's context in the audit trail.
    let meta =
        auth::RequestMeta { user_agent: Some("rampart users (operator command line)".into()), ..Default::default() };
    match command {
        UsersCommand::List { status, limit, json } => {
            if let Some(s) = status.as_deref() {
                anyhow::ensure!(["active", "suspended"].contains(&s), "--status is active or suspended");
            }
            anyhow::ensure!((1..=1000).contains(&limit), "--limit is between 1 and 1,000");
            for a in auth.list_accounts(status.as_deref(), limit).await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&a)?)?;
                } else {
                    writeln!(out, "{} {} {}", a.id, a.status, a.email)?;
                }
            }
        }
        UsersCommand::Suspend { user } => {
            let id = resolve(auth, &user).await?;
            let changed = auth.set_suspended(id, true, &meta).await.context("suspending")?;
            let changed = changed.with_context(|| format!("no account has the id {id}"))?;
            writeln!(
                out,
                "{}",
                if changed { "suspended; every session and token ended" } else { "already suspended" }
            )?;
        }
        UsersCommand::Unsuspend { user } => {
            let id = resolve(auth, &user).await?;
            let changed = auth.set_suspended(id, false, &meta).await.context("reinstating")?;
            let changed = changed.with_context(|| format!("no account has the id {id}"))?;
            writeln!(out, "{}", if changed { "reinstated; the user signs in again" } else { "not suspended" })?;
        }
    }
    Ok(())
}

/// The account named by `user`: an id, or an e-mail address.
async fn resolve(auth: &auth::AuthService, user: &str) -> anyhow::Result<ids::UserId> {
    if let Ok(id) = user.parse::<ids::UserId>() {
        return Ok(id);
    }
    auth.account_id(user).await?.with_context(|| format!("no account has the address {user}"))
}
