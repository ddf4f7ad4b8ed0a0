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

/// Concurrent keep-alive connections the load generator opens.
const CONNECTIONS: usize = 32;

pub fn build_and_run(seconds: u64) -> anyhow::Result<()> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "rampart", "-p", "xtask"]))?;
    let exe = release_dir().join("xtask");
    crate::run(Command::new(exe).args(["bench-run", "--seconds", &seconds.to_string()]))
}

fn release_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    target.join("release")
}

#[derive(Debug, Clone, Serialize)]
struct Measurement {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    subject: String,
    baseline: String,
    subject_result: Measurement,
    baseline_result: Measurement,
    /// subject / baseline throughput.
    ratio: f64,
    target: String,
}

#[derive(Debug, Serialize)]
struct Report {
    generated_at: String,
    machine: String,
    seconds_per_run: u64,
    connections: usize,
    entries: Vec<Entry>,
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

pub fn run(seconds: u64) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?.parent().context("exe dir")?.to_path_buf();
    let data = tempfile::tempdir()?;

    let hello_addr = free_addr()?;
    let _hello = Guard(
        Command::new(exe_dir.join("xtask"))
            .args(["hello-server", "--port", &hello_addr.port().to_string()])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let rampart_addr = free_addr()?;
    let log = std::fs::File::create(data.path().join("rampart.log"))?;
    let _rampart = Guard(
        Command::new(exe_dir.join("rampart"))
            .args(["serve", "--listen", &rampart_addr.to_string()])
            .env("RAMPART__DATA_DIR", data.path().join("data"))
            // Every request comes from loopback: lift the per-client limits so they do not cap
            // the measurement (production refuses 0).
            .env("RAMPART__HTTP__RATE_LIMIT_PER_CLIENT_PER_SEC", "0")
            .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );

    // The generator gets one worker thread; the server under test keeps the rest of the machine.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let duration = Duration::from_secs(seconds);
    let mail_log = data.path().join("data").join("mail.log");
    let mut entries = Vec::new();
    rt.block_on(async {
        wait_until_up(hello_addr, "/").await?;
        wait_until_up(rampart_addr, "/healthz").await?;
        let token = prepare_user(rampart_addr, &mail_log).await?;
        let me = Spec { bearer: Some(token), ..Spec::get("/api/v1/me") };
        let login = Spec {
            method: hyper::Method::POST,
            path: "/api/v1/auth/token".into(),
            body: Some(
                serde_json::json!({"email": "bench@example.com", "password": "violet ocean ladder 2026"}).to_string(),
            ),
            bearer: None,
        };

        // Alternate subject and baseline twice and keep each one's best run, so a noisy moment
        // hurts neither side alone.
        let mut hello_runs = Vec::new();
        let mut health_runs = Vec::new();
        let mut me_runs = Vec::new();
        for _ in 0..2 {
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

        // Sign-ins against a raw bcrypt loop at the same cost on the same cores.
        let logins = load(rampart_addr, login.clone(), 8, duration).await?;
        let raw = tokio::task::spawn_blocking(move || bcrypt_baseline(12, duration)).await??;
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

        // p99 of /me while a sign-in flood saturates the password hasher, against idle.
        let idle = load(rampart_addr, me.clone(), 4, duration).await?;
        let flood = tokio::spawn(load(rampart_addr, login, 16, duration + Duration::from_secs(1)));
        let busy = load(rampart_addr, me, 4, duration).await?;
        flood.await??;
        entries.push(entry(
            "GET /api/v1/me p99 during a sign-in flood",
            "/me p99 with 16 connections signing in meanwhile",
            "/me p99 idle (same 4 connections)",
            &busy,
            &idle,
            "<= 1.5x",
            busy.p99_ms / idle.p99_ms.max(f64::MIN_POSITIVE),
        ));
        anyhow::Ok(())
    })?;

    let report = Report {
        generated_at: chrono::Utc::now().to_rfc3339(),
        machine: machine_description(),
        seconds_per_run: seconds,
        connections: CONNECTIONS,
        entries,
    };
    write_report(&report, Path::new("bench-report"))
}

fn entry(
    name: &str,
    subject: &str,
    baseline: &str,
    s: &Measurement,
    b: &Measurement,
    target: &str,
    ratio: f64,
) -> Entry {
    Entry {
        name: name.into(),
        subject: subject.into(),
        baseline: baseline.into(),
        subject_result: s.clone(),
        baseline_result: b.clone(),
        ratio,
        target: target.into(),
    }
}

fn best(runs: Vec<Measurement>) -> Measurement {
    runs.into_iter().max_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec)).expect("at least one run")
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
        "# Rampart benchmark report\n\n{} — {}; {} connections, {} s per run, best of 2 alternating runs.\n\n",
        report.generated_at, report.machine, report.connections, report.seconds_per_run
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

/// One kind of request the load generator sends.
#[derive(Debug, Clone)]
struct Spec {
    method: hyper::Method,
    path: String,
    body: Option<String>,
    bearer: Option<String>,
}

impl Spec {
    fn get(path: &str) -> Spec {
        Spec { method: hyper::Method::GET, path: path.to_owned(), body: None, bearer: None }
    }

    fn request(&self, addr: SocketAddr) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let mut req = hyper::Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header("host", addr.to_string());
        if let Some(token) = &self.bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match &self.body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(b.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        Ok(req.body(body)?)
    }
}

/// Closed-loop load: `connections` keep-alive connections each sending requests back to back for
/// `duration` after a one-second warm-up.
async fn load(addr: SocketAddr, spec: Spec, connections: usize, duration: Duration) -> anyhow::Result<Measurement> {
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let resp = sender.send_request(spec.request(addr)?).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                let done = Instant::now();
                // Throughput counts completions inside the window, so slow requests that straddle
                // its edges are not lost.
                if done >= measure_from && done <= end {
                    if ok {
                        latencies.push(done - now);
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, err) = t.await??;
        all.extend(lat);
        errors += err;
    }
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[idx].as_secs_f64() * 1000.0
    };
    Ok(Measurement {
        requests_per_sec: all.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}

/// Sends one request and returns status and body.
async fn call(addr: SocketAddr, spec: &Spec) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(spec.request(addr)?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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

pub fn hello_server(port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
