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
use http_body_util::{BodyExt, Empty, Full};
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );

    // The generator gets one worker thread; the server under test keeps the rest of the machine.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let duration = Duration::from_secs(seconds);
    let (hello, rampart) = rt.block_on(async {
        wait_until_up(hello_addr, "/").await?;
        wait_until_up(rampart_addr, "/healthz").await?;
        // Alternate subject and baseline twice and keep each one's best run, so a noisy moment
        // hurts neither side alone.
        let mut hello_runs = Vec::new();
        let mut rampart_runs = Vec::new();
        for _ in 0..2 {
            hello_runs.push(load(hello_addr, "/", duration).await?);
            rampart_runs.push(load(rampart_addr, "/healthz", duration).await?);
        }
        anyhow::Ok((best(hello_runs), best(rampart_runs)))
    })?;

    let entries = vec![Entry {
        name: "GET /healthz throughput".into(),
        subject: "rampart serve (embedded SQLite, full middleware stack, JSON access log)".into(),
        baseline: "bare hyper hello-world, same machine, same load".into(),
        ratio: rampart.requests_per_sec / hello.requests_per_sec,
        subject_result: rampart,
        baseline_result: hello,
        target: "report only (foundation)".into(),
    }];
    let report = Report {
        generated_at: chrono::Utc::now().to_rfc3339(),
        machine: machine_description(),
        seconds_per_run: seconds,
        connections: CONNECTIONS,
        entries,
    };
    write_report(&report, Path::new("bench-report"))
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

async fn get_once(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", addr.to_string()).body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

async fn wait_until_up(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(200) = get_once(addr, path).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}{path} did not come up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Closed-loop load: `CONNECTIONS` keep-alive connections each sending requests back to back for
/// `duration` after a one-second warm-up.
async fn load(addr: SocketAddr, path: &'static str, duration: Duration) -> anyhow::Result<Measurement> {
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
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
                let req = hyper::Request::get(path).header("host", addr.to_string()).body(Empty::<Bytes>::new())?;
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                let done = Instant::now();
                if now >= measure_from && done <= end {
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
