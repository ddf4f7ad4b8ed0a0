//! `cargo xtask bench`: release builds, subjects and baselines measured side by side in one run,
//! reported as ratios (markdown and JSON under `bench-report/`). Never used as a test assertion.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::bench_measure::{best, call, entry, load, summarise, Entry, Measurement, Spec, CONNECTIONS, ROUNDS};

#[path = "bench_pii.rs"]
mod bench_pii;

pub fn build_and_run(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    Groups::parse(only)?;
    crate::run(crate::cargo().args(["build", "--release", "-p", "rampart", "-p", "xtask"]))?;
    let exe = release_dir().join("xtask");
    let mut cmd = Command::new(exe);
    cmd.args(["bench-run", "--seconds", &seconds.to_string()]);
    if let Some(only) = only {
        cmd.args(["--only", only]);
    }
    crate::run(&mut cmd)
}

/// The groups of measurements a run takes (`--only`); a partial run's report says which.
#[derive(Debug, Clone)]
pub(crate) struct Groups(Option<Vec<String>>);

impl Groups {
    const ALL: [&'static str; 9] = ["pii", "vault", "auth", "projects", "rls", "audit", "rewrap", "inbound", "outbox"];

    pub(crate) fn parse(only: Option<&str>) -> anyhow::Result<Groups> {
        let Some(only) = only else { return Ok(Groups(None)) };
        let names: Vec<String> = only.split(',').map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        if let Some(bad) = names.iter().find(|g| !Self::ALL.contains(&g.as_str())) {
            bail!("unknown bench group `{bad}`; the groups are {}", Self::ALL.join(", "));
        }
        Ok(Groups(Some(names)))
    }

    pub(crate) fn has(&self, group: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.iter().any(|g| g == group))
    }

    fn any(&self, groups: &[&str]) -> bool {
        groups.iter().any(|g| self.has(g))
    }

    fn describe(&self) -> String {
        match &self.0 {
            None => "all groups".into(),
            Some(names) => format!("only {}", names.join(", ")),
        }
    }
}

fn release_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    target.join("release")
}

#[derive(Debug, Serialize)]
struct Report {
    generated_at: String,
    machine: String,
    seconds_per_run: u64,
    connections: usize,
    entries: Vec<Entry>,
    /// Which groups were measured.
    groups: String,
    pii: Option<bench_pii::PiiReport>,
}

/// Kills a child process when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub fn run(seconds: u64, groups: Groups) -> anyhow::Result<()> {
    // CPU-bound and single-threaded: measured before the servers start.
    let pii = if groups.has("pii") { Some(bench_pii::run(seconds)?) } else { None };
    let vault_crypto = if groups.has("vault") { crate::bench_vault::crypto_entries(seconds)? } else { Vec::new() };
    let exe_dir = std::env::current_exe()?.parent().context("exe dir")?.to_path_buf();
    let data = tempfile::tempdir()?;

    let hello_addr = free_addr()?;
    let _hello = Guard(
        Command::new(exe_dir.join("xtask"))
            .args(["hello-server", "--port", &hello_addr.port().to_string()])
            .stdout(Stdio::null())
            .spawn()?,
    );
    // The generator gets one worker thread; the server under test keeps the rest of the machine.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let duration = Duration::from_secs(seconds);
    let mut entries = Vec::new();
    rt.block_on(wait_until_up(hello_addr, "/"))?;
    if groups.has("auth") {
        entries.extend(auth_entries(&rt, &exe_dir, data.path(), hello_addr, duration)?);
    }
    if groups.any(&["projects", "rls", "audit", "rewrap", "inbound", "outbox"]) {
        entries.extend(tenancy_entries(&rt, &exe_dir, hello_addr, duration, &groups)?);
    }
    entries.extend(vault_crypto);

    let report = Report {
        generated_at: chrono::Utc::now().to_rfc3339(),
        machine: machine_description(),
        seconds_per_run: seconds,
        connections: CONNECTIONS,
        entries,
        groups: groups.describe(),
        pii,
    };
    write_report(&report, Path::new("bench-report"))
}

/// Sign-in and `/me` entries, on `rampart serve` with the embedded SQLite default.
fn auth_entries(
    rt: &tokio::runtime::Runtime,
    exe_dir: &Path,
    data: &Path,
    hello_addr: SocketAddr,
    duration: Duration,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let rampart_addr = free_addr()?;
    let log = std::fs::File::create(data.join("rampart.log"))?;
    let _rampart = Guard(
        Command::new(exe_dir.join("rampart"))
            .args(["serve", "--listen", &rampart_addr.to_string()])
            .env("RAMPART__DATA_DIR", data.join("data"))
            // Every request comes from loopback: lift the per-client limits so they do not cap
            // the measurement (production refuses 0).
            .env("RAMPART__HTTP__RATE_LIMIT_PER_CLIENT_PER_SEC", "0")
            .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );

    let mail_log = data.join("data").join("mail.log");
    rt.block_on(async {
        wait_until_up(rampart_addr, "/healthz").await?;
        let token = prepare_user(rampart_addr, &mail_log).await?;
        let me = Spec { bearer: Some(token.clone()), ..Spec::get("/api/v1/me") };
        let login = Spec {
            method: hyper::Method::POST,
            path: "/api/v1/auth/token".into(),
            body: Some(
                serde_json::json!({"email": "bench@example.com", "password": "violet ocean ladder 2026"}).to_string(),
            ),
            bearer: None,
        };

        // Alternate subject and baseline ROUNDS times and keep each one's best run, so a noisy
        // moment hurts neither side alone.
        let mut hello_runs = Vec::new();
        let mut health_runs = Vec::new();
        let mut me_runs = Vec::new();
        for _ in 0..ROUNDS {
            hello_runs.push(load(hello_addr, Spec::get("/"), CONNECTIONS, duration).await?);
            health_runs.push(load(rampart_addr, Spec::get("/healthz"), CONNECTIONS, duration).await?);
            me_runs.push(load(rampart_addr, me.clone(), CONNECTIONS, duration).await?);
        }
        let (hello, health, me_best) = (best(hello_runs), best(health_runs), best(me_runs));
        entries.push(entry(
            "GET /healthz throughput",
            "rampart serve (embedded SQLite, full middleware, JSON access log)",
            "bare hyper hello-world",
            &health,
            &hello,
            "report only",
            health.requests_per_sec / hello.requests_per_sec,
        ));
        entries.push(entry(
            "authenticated GET /api/v1/me throughput",
            "GET /api/v1/me with a bearer JWT (verify + per-request user status read)",
            "GET /healthz on the same server",
            &me_best,
            &health,
            ">= 0.75x",
            me_best.requests_per_sec / health.requests_per_sec,
        ));

        // Sign-ins against a raw bcrypt loop at the same cost on the same cores. At about eight
        // a second, a window of a few seconds holds too few completions to compare closely, so
        // both sides get three times the window.
        let window = duration * 3;
        let logins = load(rampart_addr, login.clone(), 8, window).await?;
        let raw = tokio::task::spawn_blocking(move || bcrypt_baseline(12, window)).await??;
        let raw_m = Measurement { requests_per_sec: raw, p50_ms: 0.0, p99_ms: 0.0, errors: 0 };
        entries.push(entry(
            "sign-ins per second (POST /api/v1/auth/token, bcrypt cost 12)",
            "token issue: e-mail lookup, bcrypt verify, refresh token insert, JWT",
            "raw bcrypt::verify loop, cost 12, one thread per core",
            &logins,
            &raw_m,
            ">= 0.9x",
            logins.requests_per_sec / raw,
        ));

        // p99 of /me while a sign-in flood saturates the password hasher, against idle: alternated
        // like the throughput runs, each side's lowest p99 kept.
        let (mut idle_runs, mut busy_runs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            idle_runs.push(load(rampart_addr, me.clone(), 4, duration).await?);
            let flood = tokio::spawn(load(rampart_addr, login.clone(), 16, duration + Duration::from_secs(1)));
            busy_runs.push(load(rampart_addr, me.clone(), 4, duration).await?);
            flood.await??;
        }
        let (idle, busy) = (lowest_p99(idle_runs), lowest_p99(busy_runs));
        entries.push(entry(
            "GET /api/v1/me p99 during a sign-in flood",
            "/me p99 with 16 connections signing in meanwhile",
            "/me p99 idle (same 4 connections)",
            &busy,
            &idle,
            "<= 1.5x",
            busy.p99_ms / idle.p99_ms.max(f64::MIN_POSITIVE),
        ));

        entries.extend(embedded_writes(rampart_addr, &token, duration).await?);
        anyhow::Ok(())
    })?;
    Ok(entries)
}

/// What the embedded default sustains for writes: project creations (one audited transaction
/// each, through the single SQLite writer) by 1, 4 and 16 concurrent clients, each against the
/// one-client rate. Errors count every non-2xx answer; the README quotes these numbers.
async fn embedded_writes(addr: SocketAddr, token: &str, duration: Duration) -> anyhow::Result<Vec<Entry>> {
    let made = Spec {
        method: hyper::Method::POST,
        path: "/api/v1/workspaces".into(),
        body: Some(serde_json::json!({"name": "Bench writes"}).to_string()),
        bearer: Some(token.to_owned()),
    };
    let (status, body) = call(addr, &made).await?;
    if status != 201 {
        bail!("workspace creation answered {status}: {body}");
    }
    let ws: serde_json::Value = serde_json::from_str(&body)?;
    let create = Spec {
        method: hyper::Method::POST,
        path: format!("/api/v1/workspaces/{}/projects", ws["id"].as_str().context("a workspace id")?),
        body: Some(serde_json::json!({"name": "Bench project", "description": "written by the bench"}).to_string()),
        bearer: Some(token.to_owned()),
    };
    let mut runs = Vec::new();
    for clients in [1, 4, 16] {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            rounds.push(load(addr, create.clone(), clients, duration).await?);
        }
        runs.push((clients, best(rounds)));
    }
    let single = runs[0].1.clone();
    Ok(runs
        .iter()
        .map(|(clients, m)| {
            entry(
                &format!("embedded SQLite writes, {clients} client(s) (POST /projects): {} non-2xx", m.errors),
                &format!("{clients} concurrent client(s) creating projects"),
                "the same writes by 1 client",
                m,
                &single,
                "report only",
                m.requests_per_sec / single.requests_per_sec.max(f64::MIN_POSITIVE),
            )
        })
        .collect())
}

/// The run with the lowest p99: the best of a latency measurement.
fn lowest_p99(runs: Vec<Measurement>) -> Measurement {
    runs.into_iter().min_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms)).expect("at least one run")
}

fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

fn write_report(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    let mut md = format!(
        "# Rampart benchmark report\n\n{} — {}; {} connections, {} s per run, best of {ROUNDS} alternating runs; {}.\n\n",
        report.generated_at, report.machine, report.connections, report.seconds_per_run, report.groups
    );
    md.push_str("| measurement | subject req/s | baseline req/s | ratio | subject p99 ms | baseline p99 ms | target |\n|---|---|---|---|---|---|---|\n");
    for e in &report.entries {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.2} | {} |\n",
            e.name,
            e.subject_result.requests_per_sec,
            e.baseline_result.requests_per_sec,
            e.ratio,
            e.subject_result.p99_ms,
            e.baseline_result.p99_ms,
            e.target
        ));
    }
    for e in &report.entries {
        md.push_str(&format!("\n- **{}**: subject = {}; baseline = {}.", e.name, e.subject, e.baseline));
    }
    md.push('\n');
    if let Some(pii) = &report.pii {
        md.push_str(&bench_pii::markdown(pii));
    }
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    println!("(written to {}/report.md and report.json)", dir.display());
    Ok(())
}

async fn wait_until_up(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = call(addr, &Spec::get(path)).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}{path} did not come up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw bcrypt verifications per second on every core, at the server's cost: the baseline for
/// sign-in throughput.
fn bcrypt_baseline(cost: u32, duration: Duration) -> anyhow::Result<f64> {
    let hash = bcrypt::hash("0123456789abcdef0123456789abcdef0123456789a=", cost)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let end = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let hash = hash.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < end {
                    if bcrypt::verify("0123456789abcdef0123456789abcdef0123456789a=", &hash).unwrap_or(false) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Ok(total as f64 / duration.as_secs_f64())
}

/// Signs a user up, follows the verification link from the file mailer, and returns a bearer
/// token.
async fn prepare_user(addr: SocketAddr, mail_log: &Path) -> anyhow::Result<String> {
    let creds = serde_json::json!({"email": "bench@example.com", "password": "violet ocean ladder 2026"}).to_string();
    let signup = Spec {
        method: hyper::Method::POST,
        path: "/api/v1/auth/signup".into(),
        body: Some(creds.clone()),
        bearer: None,
    };
    let (status, _) = call(addr, &signup).await?;
    if status != 202 {
        bail!("sign-up answered {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        let text = std::fs::read_to_string(mail_log).unwrap_or_default().replace("=\r\n", "").replace("=3D", "=");
        if let Some(i) = text.find("#token=") {
            break text[i + 7..].chars().take_while(char::is_ascii_hexdigit).collect::<String>();
        }
        if Instant::now() > deadline {
            bail!("no verification mail in {}", mail_log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let verify = Spec {
        method: hyper::Method::POST,
        path: "/api/v1/auth/verify-email".into(),
        body: Some(serde_json::json!({"token": token}).to_string()),
        bearer: None,
    };
    let (status, _) = call(addr, &verify).await?;
    if status != 204 {
        bail!("verification answered {status}");
    }
    let issue =
        Spec { method: hyper::Method::POST, path: "/api/v1/auth/token".into(), body: Some(creds), bearer: None };
    let (status, body) = call(addr, &issue).await?;
    if status != 200 {
        bail!("token answered {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["access_token"].as_str().map(str::to_owned).context("no access token")
}

/// The example list query, exactly as `tenancy::projects::list` sends it.
const LIST_PROJECTS: &str = "SELECT id, tenant_id, name, description, created_by, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2";

/// The access lookup `app_enter` makes for a member (it looks at grants only when there is no
/// membership), written out with the same explicit filters, for a role that bypasses RLS.
const ACCESS_EXPLICIT: &str = "SELECT 'membership' AS via, r.name AS role, r.level, r.permissions
      FROM memberships m
      JOIN workspaces w ON w.id = m.tenant_id AND w.deleted_at IS NULL
      JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
     WHERE m.tenant_id = $1 AND m.user_id = $2";

/// How a direct-SQL load task reads the list.
#[derive(Debug, Clone, Copy)]
enum SqlShape {
    /// The list query alone (autocommit).
    Direct,
    /// BEGIN; app_enter (context + access); list; COMMIT — as the runtime role, under RLS.
    TenantTx,
    /// BEGIN; access lookup with explicit WHERE; list with explicit WHERE; COMMIT — as a role
    /// that bypasses RLS.
    ExplicitWhere,
}

/// Closed-loop load straight against PostgreSQL: `connections` pooled connections running
/// `shape` back to back.
async fn sql_load(
    url: &str,
    shape: SqlShape,
    tenant: uuid::Uuid,
    user: uuid::Uuid,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    use sea_orm::{ConnectionTrait, DatabaseBackend::Postgres, Statement, TransactionTrait};
    let db = storage::Db::connect(&secrecy::SecretString::from(url.to_owned()), connections as u32).await?;
    let list = move || Statement::from_sql_and_values(Postgres, LIST_PROJECTS, [tenant.into(), 20i64.into()]);
    let warmup = Duration::from_secs(1);
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let conn = db.conn().clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let start = Instant::now();
                let rows = match shape {
                    SqlShape::Direct => conn.query_all(list()).await?,
                    SqlShape::TenantTx | SqlShape::ExplicitWhere => {
                        let txn = conn.begin().await?;
                        let (sql, values) = match shape {
                            SqlShape::TenantTx => (
                                "SELECT via, role, level, permissions FROM app_enter($1, $2, false)",
                                [tenant.into(), user.into()],
                            ),
                            _ => (ACCESS_EXPLICIT, [tenant.into(), user.into()]),
                        };
                        let access = txn.query_all(Statement::from_sql_and_values(Postgres, sql, values)).await?;
                        anyhow::ensure!(access.len() == 1, "no access row");
                        let rows = txn.query_all(list()).await?;
                        txn.commit().await?;
                        rows
                    }
                };
                anyhow::ensure!(rows.len() == 20, "expected 20 projects, got {}", rows.len());
                let done = Instant::now();
                if done >= measure_from && done <= end {
                    latencies.push(done - start);
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    db.close().await?;
    Ok(summarise(all, 0, duration))
}

/// The tenancy entries. The server runs on a throwaway PostgreSQL as the runtime role (forced
/// RLS, `NOBYPASSRLS`), and lists 20 projects; baselines are the same SQL sent directly. Then
/// inbound webhooks against it (`hello` is the hello-world server), and, once it has stopped,
/// the outbox.
fn tenancy_entries(
    rt: &tokio::runtime::Runtime,
    exe_dir: &Path,
    hello: SocketAddr,
    duration: Duration,
    groups: &Groups,
) -> anyhow::Result<Vec<Entry>> {
    let pg = crate::services::start_postgres()?;
    let admin_url = pg.url();
    let host = admin_url.trim_start_matches("postgres://postgres@").trim_end_matches("/postgres").to_owned();
    let owner_url = format!("postgres://rampart_owner@{host}/rampart_bench");
    let app_url = format!("postgres://rampart_app@{host}/rampart_bench");
    let superuser_url = format!("postgres://postgres@{host}/rampart_bench");
    rt.block_on(async {
        use sea_orm::ConnectionTrait;
        let admin = storage::Db::connect(&secrecy::SecretString::from(admin_url.clone()), 1).await?;
        admin.conn().execute_unprepared(include_str!("../../deploy/postgres/bootstrap-roles.sql")).await?;
        admin.conn().execute_unprepared("CREATE DATABASE rampart_bench OWNER rampart_owner").await?;
        let owner = storage::Db::connect(&secrecy::SecretString::from(owner_url.clone()), 1).await?;
        storage::migrate(owner.conn()).await?;
        owner.close().await?;
        anyhow::Ok(())
    })?;

    let data = tempfile::tempdir()?;
    let addr = free_addr()?;
    let log = std::fs::File::create(data.path().join("rampart-pg.log"))?;
    let server = Guard(
        Command::new(exe_dir.join("rampart"))
            .args(["serve", "--listen", &addr.to_string()])
            .env("RAMPART__DATA_DIR", data.path().join("data"))
            .env("DATABASE_URL", &app_url)
            .env("RAMPART__HTTP__RATE_LIMIT_PER_CLIENT_PER_SEC", "0")
            .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let mail_log = data.path().join("data").join("mail.log");
    let mut entries = rt.block_on(async {
        wait_until_up(addr, "/healthz").await?;
        let token = prepare_user(addr, &mail_log).await?;
        let as_user = |method: hyper::Method, path: String, body: Option<serde_json::Value>| Spec {
            method,
            path,
            body: body.map(|b| b.to_string()),
            bearer: Some(token.clone()),
        };
        let (_, me) = call(addr, &as_user(hyper::Method::GET, "/api/v1/me".into(), None)).await?;
        let user: uuid::Uuid =
            serde_json::from_str::<serde_json::Value>(&me)?["id"].as_str().context("no user id")?.parse()?;
        let create =
            as_user(hyper::Method::POST, "/api/v1/workspaces".into(), Some(serde_json::json!({"name": "bench"})));
        let (status, body) = call(addr, &create).await?;
        anyhow::ensure!(status == 201, "workspace: {status} {body}");
        let ws: uuid::Uuid =
            serde_json::from_str::<serde_json::Value>(&body)?["id"].as_str().context("no workspace id")?.parse()?;
        for i in 0..20 {
            let path = format!("/api/v1/workspaces/{ws}/projects");
            let new = as_user(hyper::Method::POST, path, Some(serde_json::json!({"name": format!("project {i}")})));
            let (status, body) = call(addr, &new).await?;
            anyhow::ensure!(status == 201, "project: {status} {body}");
        }
        let list = as_user(hyper::Method::GET, format!("/api/v1/workspaces/{ws}/projects?limit=20"), None);
        let (status, body) = call(addr, &list).await?;
        anyhow::ensure!(status == 200 && body.matches("\"id\"").count() == 20, "list: {status} {body}");

        let mut entries = Vec::new();
        if groups.has("projects") {
            let (mut api_runs, mut sql_runs) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                api_runs.push(load(addr, list.clone(), CONNECTIONS, duration).await?);
                sql_runs.push(sql_load(&superuser_url, SqlShape::Direct, ws, user, CONNECTIONS, duration).await?);
            }
            let (api, sql) = (best(api_runs), best(sql_runs));
            entries.push(entry(
                "authenticated GET of 20 projects (PostgreSQL, runtime role)",
                "GET /api/v1/workspaces/{id}/projects: JWT, user read, BEGIN, app_enter, list, COMMIT",
                "the list query sent directly to PostgreSQL",
                &api,
                &sql,
                ">= 0.5x",
                api.requests_per_sec / sql.requests_per_sec,
            ));
        }
        if groups.has("rls") {
            let (mut rls_runs, mut plain_runs) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                rls_runs.push(sql_load(&app_url, SqlShape::TenantTx, ws, user, 4, duration).await?);
                plain_runs.push(sql_load(&superuser_url, SqlShape::ExplicitWhere, ws, user, 4, duration).await?);
            }
            let (rls, plain) = (best(rls_runs), best(plain_runs));
            entries.push(entry(
                "RLS + tenant context cost (latency p50, 4 connections)",
                "runtime role under forced RLS: BEGIN; app_enter (set_config + access); list; COMMIT",
                "superuser (bypasses RLS): BEGIN; the same access lookup and list, filtered only by their explicit WHERE; COMMIT",
                &rls,
                &plain,
                "<= 1.10x (latency)",
                rls.p50_ms / plain.p50_ms.max(f64::MIN_POSITIVE),
            ));
        }
        if groups.has("audit") {
            entries.extend(crate::bench_audit::entries(&superuser_url, &owner_url, &app_url, duration).await?);
        }
        if groups.has("rewrap") {
            entries.extend(crate::bench_vault::rewrap_entries(&owner_url, &app_url).await?);
        }
        if groups.has("inbound") {
            entries.extend(crate::bench_webhooks::inbound_entries(addr, hello, &token, ws, duration).await?);
        }
        anyhow::Ok(entries)
    })?;
    // The server's own outbox worker would claim the bench's actions: it stops first.
    drop(server);
    if groups.has("outbox") {
        entries.extend(rt.block_on(crate::bench_webhooks::outbox_entries(&superuser_url, &app_url, duration))?);
    }
    Ok(entries)
}

pub fn hello_server(port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                // Reads the whole body, so a POST baseline pays for receiving what it was sent.
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
