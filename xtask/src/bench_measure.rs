//! The measuring half shared by every bench group: the load generator, its measurements and the
//! report's entries. It knows no subject, so the groups and the runner all depend on it and it on
//! none of them.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// Concurrent keep-alive connections the load generator opens.
pub(crate) const CONNECTIONS: usize = 32;
/// Alternating runs of each subject and its baseline; each side's best run is kept, so a noisy
/// moment on this shared machine hurts neither side alone.
pub(crate) const ROUNDS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measurement {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) baseline: String,
    pub(crate) subject_result: Measurement,
    pub(crate) baseline_result: Measurement,
    /// subject / baseline throughput.
    pub(crate) ratio: f64,
    pub(crate) target: String,
}

pub(crate) fn entry(
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

pub(crate) fn best(runs: Vec<Measurement>) -> Measurement {
    runs.into_iter().max_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec)).expect("at least one run")
}

/// One kind of request the load generator sends.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) method: hyper::Method,
    pub(crate) path: String,
    pub(crate) body: Option<String>,
    pub(crate) bearer: Option<String>,
}

impl Spec {
    pub(crate) fn get(path: &str) -> Spec {
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
pub(crate) async fn load(
    addr: SocketAddr,
    spec: Spec,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
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
    Ok(summarise(all, errors, duration))
}

/// Throughput and latency percentiles of the completions inside a window of `duration`.
pub(crate) fn summarise(mut all: Vec<Duration>, errors: u64, duration: Duration) -> Measurement {
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[idx].as_secs_f64() * 1000.0
    };
    Measurement {
        requests_per_sec: all.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

/// Sends one request and returns status and body.
pub(crate) async fn call(addr: SocketAddr, spec: &Spec) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(spec.request(addr)?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
