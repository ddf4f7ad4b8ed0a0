//! `cargo xtask`: the project's automation. `test` runs every test against SQLite and against
//! throwaway PostgreSQL and Redis servers; `openapi` regenerates the committed API description;
//! `bench` measures the server against baselines run side by side; `security-gate` fails the
//! build on a missing policy, a vulnerable dependency or a drifted API description.
//! It must never hold product logic: no shipped crate depends on it.

// A command-line tool: standard output is its interface.
#![allow(clippy::print_stdout)]
// Automation reads cargo's and the harness's variables; it is not part of the product.
#![allow(clippy::disallowed_methods)]

mod bench;
mod bench_audit;
mod bench_measure;
mod bench_vault;
mod bench_webhooks;
mod gate;
mod services;

use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Rampart project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole test suite. Starts throwaway PostgreSQL and Redis from the machine's own
    /// binaries unless RAMPART_TEST_DATABASE_URL / RAMPART_TEST_REDIS_URL are set.
    Test {
        /// Extra arguments passed to `cargo nextest run` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate `openapi/openapi.json` from the code (or, with --check, fail when it differs).
    Openapi {
        #[arg(long)]
        check: bool,
    },
    /// Check RLS coverage, secrets at rest, dependencies, the API surface and the architecture,
    /// and write the SBOM. Prints every violation with its fix; exits non-zero on any.
    SecurityGate {
        /// A local copy of the RustSec advisory database (default: RAMPART_ADVISORY_DB, else
        /// `shared/advisory-db` or `advisory-db` beside the workspace).
        #[arg(long)]
        advisory_db: Option<std::path::PathBuf>,
        /// No network: skip the yanked-crate check (it needs cargo to refresh its index).
        #[arg(long)]
        offline: bool,
        /// Where to write the CycloneDX bill of materials of the `rampart` binary.
        #[arg(long)]
        sbom: Option<std::path::PathBuf>,
    },
    /// Check the sources' shape: no module import cycle inside a crate, a crate root that says
    /// what the crate owns and must never do, no bare `Uuid` where an entity id belongs.
    Tidy {
        /// Rewrite the debt list (`xtask/gate/tidy-debt.txt`) from the tree, after removing debt.
        #[arg(long)]
        write_debt: bool,
    },
    /// Build release binaries and measure the server against baselines in the same run.
    Bench {
        /// Seconds of measurement per subject.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Measure only these groups (comma-separated): pii, vault, auth, projects, rls, audit,
        /// rewrap, inbound, outbox. All of them when absent.
        #[arg(long)]
        only: Option<String>,
    },
    /// (internal) The measuring half of `bench`, run from the release build.
    #[command(hide = true)]
    BenchRun {
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        only: Option<String>,
    },
    /// (internal) A bare hyper hello-world server: the baseline for HTTP throughput.
    #[command(hide = true)]
    HelloServer {
        #[arg(long)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::SecurityGate { advisory_db, offline, sbom } => {
            let env = std::env::var_os("RAMPART_ADVISORY_DB").map(std::path::PathBuf::from);
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let opts = gate::Options {
                advisory_db: gate::default_advisory_db(&root, advisory_db, env),
                offline,
                sbom: sbom.unwrap_or_else(|| target.join("sbom/rampart.cdx.json")),
            };
            gate::run(&root, &opts)
        }
        Cmd::Tidy { write_debt } => gate::run_tidy(&root, write_debt),
        Cmd::Test { args } => test(&args),
        Cmd::Openapi { check } => openapi(check),
        Cmd::Bench { seconds, only } => bench::build_and_run(seconds, only.as_deref()),
        Cmd::BenchRun { seconds, only } => bench::run(seconds, bench::Groups::parse(only.as_deref())?),
        Cmd::HelloServer { port } => bench::hello_server(port),
    }
}

/// The workspace this run belongs to, found at run time: `cargo run` sets `CARGO_MANIFEST_DIR`
/// for the process; a re-executed release binary inherits the directory it was started in. The
/// compile-time path is never used, because a shared build cache may hold a binary built from
/// another checkout.
fn workspace_root() -> std::path::PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => std::path::PathBuf::from(dir).parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
        None => std::env::current_dir().unwrap_or_default(),
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let pg = match std::env::var("RAMPART_TEST_DATABASE_URL") {
        Ok(url) => {
            println!("xtask: using PostgreSQL from RAMPART_TEST_DATABASE_URL");
            services::Service::External(url)
        }
        Err(_) => services::start_postgres()?,
    };
    let redis = match std::env::var("RAMPART_TEST_REDIS_URL") {
        Ok(url) => {
            println!("xtask: using Redis from RAMPART_TEST_REDIS_URL");
            services::Service::External(url)
        }
        Err(_) => services::start_redis()?,
    };
    let smtp = services::start_smtp()?;
    let maildir = smtp.maildir().map(|p| p.display().to_string()).unwrap_or_default();
    let envs = [
        ("RAMPART_TEST_DATABASE_URL", pg.url()),
        ("RAMPART_TEST_REDIS_URL", redis.url()),
        ("RAMPART_TEST_SMTP_URL", smtp.url()),
        ("RAMPART_TEST_MAILDIR", maildir),
    ];

    if !has_nextest() {
        bail!("cargo-nextest is required: install it with `cargo install --locked cargo-nextest`");
    }
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]).args(args).envs(envs.clone());
    let result = run(&mut cmd);
    print_suite_durations();
    if result.is_ok() && args.is_empty() {
        summarise_by_backend(&envs)?;
    }
    drop(smtp);
    drop(redis);
    drop(pg);
    result
}

/// Prints the time spent in each test binary, slowest first, from nextest's JUnit report
/// (`.config/nextest.toml`), so a suite that grows slow shows in every run's log.
fn print_suite_durations() {
    // nextest keeps its store under the workspace's `target/` or the configured target directory.
    let newest = [std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from), Some("target".into())]
        .into_iter()
        .flatten()
        .map(|dir| dir.join("nextest/default/junit.xml"))
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .max();
    let Some(Ok(report)) = newest.map(|(_, path)| std::fs::read_to_string(path)) else {
        println!("xtask: no JUnit report, so no per-suite durations");
        return;
    };
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[start..].split('"').next()?.to_owned())
    };
    let mut suites: Vec<(String, usize, f64)> = Vec::new();
    for tag in report.split('<').filter(|t| t.starts_with("testcase ")) {
        let (Some(suite), Some(time)) = (attr(tag, "classname"), attr(tag, "time")) else { continue };
        let time: f64 = time.parse().unwrap_or(0.0);
        match suites.iter_mut().find(|(name, _, _)| *name == suite) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += time;
            }
            None => suites.push((suite, 1, time)),
        }
    }
    suites.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("xtask: time per suite (sum of its tests' durations):");
    for (suite, tests, secs) in suites {
        println!("xtask:   {secs:>8.1} s  {tests:>4} tests  {suite}");
    }
}

/// Prints how many tests ran on each store, so a run that quietly lost its PostgreSQL tests shows.
fn summarise_by_backend(envs: &[(&str, String)]) -> anyhow::Result<()> {
    let out = cargo()
        .args(["nextest", "list", "--workspace", "--message-format", "json"])
        .envs(envs.iter().cloned())
        .output()?;
    if !out.status.success() {
        bail!("cargo nextest list failed");
    }
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (mut pg, mut sqlite, mut other) = (0, 0, 0);
    if let Some(suites) = listing["rust-suites"].as_object() {
        for suite in suites.values() {
            let Some(cases) = suite["testcases"].as_object() else {
                continue;
            };
            for name in cases.keys() {
                if name.contains("postgres") {
                    pg += 1;
                } else if name.contains("sqlite") {
                    sqlite += 1;
                } else {
                    other += 1;
                }
            }
        }
    }
    println!("xtask: tests by store: {pg} on PostgreSQL + Redis (runtime role), {sqlite} on SQLite, {other} without a database");
    if pg == 0 {
        bail!("no PostgreSQL tests ran");
    }
    Ok(())
}

/// The API description as the code generates it (`rampart openapi`).
pub(crate) fn generate_openapi() -> anyhow::Result<Vec<u8>> {
    let out = cargo().args(["run", "--quiet", "-p", "rampart", "--", "openapi"]).output()?;
    if !out.status.success() {
        bail!("rampart openapi failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn openapi(check: bool) -> anyhow::Result<()> {
    let generated = generate_openapi()?;
    let path = std::path::Path::new("openapi/openapi.json");
    if check {
        let committed = std::fs::read(path).unwrap_or_default();
        if committed != generated {
            bail!("openapi/openapi.json is out of date: run `cargo xtask openapi` and commit the result");
        }
        println!("openapi/openapi.json matches the code");
    } else {
        std::fs::write(path, &generated)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
