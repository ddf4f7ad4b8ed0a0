//! Inbound webhooks and the outbox on PostgreSQL: signed Standard Webhooks deliveries verified and
//! persisted per second by `rampart serve` beside the same requests to a server that does
//! nothing; outbox actions completed per second by four in-process `scheduler::Worker`s beside
//! the worker's own claim and finish statements sent bare; and how long an action waits between
//! its enqueue and its handler's start under the worker's poll loop.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sea_orm::{ConnectionTrait, DatabaseBackend::Postgres, Statement, TransactionTrait};
use secrecy::ExposeSecret as _;
use webhooks::standard::{MessageId, Secret};

use crate::bench_measure::{best, call, entry, summarise, Entry, Measurement, Spec, CONNECTIONS};

/// Padding that brings each delivery's JSON body to about 300 bytes.
const BODY_PAD: usize = 240;

/// One freshly signed Standard Webhooks delivery: a unique `webhook-id`, the current time.
fn signed_request(
    addr: SocketAddr,
    path: &str,
    secret: &Secret,
    id: &str,
    seq: u64,
) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let body = format!(r#"{{"type":"bench.event","seq":{seq:012},"data":"{}"}}"#, "x".repeat(BODY_PAD));
    let now = storage::Clock::now(&storage::SystemClock);
    let signature =
        webhooks::standard::sign(std::slice::from_ref(secret), &MessageId::parse(id)?, now, body.as_bytes())?;
    Ok(hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", now.timestamp().to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(body)))?)
}

/// Closed-loop load like `bench::load`, but every request is signed afresh with its own id. A
/// completion counts when the answer is 200 and its body contains `expect`; anything else is an
/// error.
async fn signed_load(
    addr: SocketAddr,
    path: &str,
    secret: &Secret,
    expect: &'static str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let warmup = Duration::from_secs(1);
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    // Ids stay unique across runs against the same source.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (path, secret, run) = (path.to_owned(), secret.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                n += 1;
                let req = signed_request(addr, &path, &secret, &format!("msg_{run}_{c}_{n}"), n)?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                let ok = status == hyper::StatusCode::OK && String::from_utf8_lossy(&body).contains(expect);
                let done = Instant::now();
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

/// Inbound deliveries per second to the PostgreSQL server `addr` (as the runtime role), against
/// the same signed requests to the hello-world server `hello`. `token` manages workspace `ws`.
pub(crate) async fn inbound_entries(
    addr: SocketAddr,
    hello: SocketAddr,
    token: &str,
    ws: uuid::Uuid,
    duration: Duration,
) -> anyhow::Result<Vec<Entry>> {
    let secret = Secret::generate(&mut rand::rngs::OsRng);
    let create = Spec {
        method: hyper::Method::POST,
        path: format!("/api/v1/workspaces/{ws}/webhook-sources"),
        body: Some(
            serde_json::json!({"kind": "standard", "name": "bench", "secrets": [secret.to_whsec().expose_secret()]})
                .to_string(),
        ),
        bearer: Some(token.to_owned()),
    };
    let (status, body) = call(addr, &create).await?;
    anyhow::ensure!(status == 201, "webhook source: {status} {body}");
    let path = serde_json::from_str::<serde_json::Value>(&body)?["delivery_path"]
        .as_str()
        .context("no delivery_path")?
        .to_owned();

    // One delivery first, so a refusal names its reason instead of showing as a count of errors.
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let id = format!("msg_probe_{}", uuid::Uuid::new_v4().simple());
    let resp = sender.send_request(signed_request(addr, &path, &secret, &id, 0)?).await?;
    let status = resp.status().as_u16();
    let answer = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    anyhow::ensure!(status == 200 && answer.contains(r#""status":"accepted""#), "signed delivery: {status} {answer}");

    let (mut subject, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..crate::bench_measure::ROUNDS {
        subject.push(signed_load(addr, &path, &secret, r#""status":"accepted""#, CONNECTIONS, duration).await?);
        baseline.push(signed_load(hello, &path, &secret, r#""status":"ok""#, CONNECTIONS, duration).await?);
    }
    let (s, b) = (best(subject), best(baseline));
    Ok(vec![entry(
        "inbound webhook verified + persisted events/s (PostgreSQL)",
        &format!(
            "POST /api/v1/inbound/{{workspace}}/{{source}} on rampart serve (PostgreSQL, runtime role), {CONNECTIONS} connections, each request a freshly signed Standard Webhooks delivery with its own webhook-id (~300-byte JSON), recorded source by source in batches (the deliveries waiting when a batch starts, up to 64, share one tenant transaction: read the source and its sealed secret once, open it, verify each, insert them into the inbox in one statement, append their audit events at commit; one source: every delivery shares one audit chain head); only 200 \"accepted\" counts"
        ),
        "the same freshly signed requests (same generator, headers and body size) POSTed to the xtask hello-server, a bare hyper server that reads the body and answers 200 {\"status\":\"ok\"}: no verification, no database",
        &s,
        &b,
        ">= 2,000/s",
        s.requests_per_sec / b.requests_per_sec.max(f64::MIN_POSITIVE),
    )])
}

/// The outbox's no-op action kind.
const KIND: &str = "bench_noop";
/// Workers (and connections of the bare-SQL baseline) draining the queue together.
const WORKERS: usize = 4;

/// `Worker::claim`'s statement on PostgreSQL, batch of 32 (the worker's).
const CLAIM: &str = "UPDATE scheduled_actions SET status = 'running', locked_until = $2, attempts = attempts + 1
              WHERE id IN (SELECT id FROM scheduled_actions
                            WHERE (status = 'pending' AND run_at <= $1) OR (status = 'running' AND locked_until < $1)
                            ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING id, kind, payload_ciphertext, attempts, max_attempts";
/// `Worker::finish`'s statement.
const FINISH: &str = "UPDATE scheduled_actions
                    SET status = $2, last_error = $3, locked_until = NULL, completed_at = $4, run_at = COALESCE($5, run_at)
                  WHERE id = $1 AND status = 'running' AND attempts = $6";

async fn db(url: &str, connections: u32) -> anyhow::Result<storage::Db> {
    Ok(storage::Db::connect(&secrecy::SecretString::from(url.to_owned()), connections).await?)
}

/// Empties the outbox (as the superuser), so a run claims only its own rows.
async fn clear(superuser: &storage::Db) -> anyhow::Result<()> {
    superuser.conn().execute_unprepared("DELETE FROM scheduled_actions").await?;
    Ok(())
}

/// Queues `n` due no-op actions as the runtime role, in transactions of 500 over `WORKERS`
/// connections.
async fn fill(app_url: &str, key: &crypto_vault::KeyMaterial, n: usize) -> anyhow::Result<()> {
    let app = db(app_url, WORKERS as u32).await?;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (conn, key) = (app.conn().clone(), key.clone());
        let share = n / WORKERS + usize::from(w < n % WORKERS);
        tasks.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 {
                let now = storage::Clock::now(&storage::SystemClock);
                let txn = conn.begin().await?;
                for _ in 0..left.min(500) {
                    scheduler::enqueue(&txn, &key, KIND, &serde_json::json!({}), now, now).await?;
                }
                txn.commit().await?;
                left -= left.min(500);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    app.close().await?;
    Ok(())
}

/// Rows of the bench kind in `status`.
async fn count(superuser: &storage::Db, status: &str) -> anyhow::Result<u64> {
    let row = superuser
        .conn()
        .query_one(Statement::from_sql_and_values(
            Postgres,
            "SELECT COUNT(*) AS n FROM scheduled_actions WHERE kind = $1 AND status = $2",
            [KIND.into(), status.into()],
        ))
        .await?
        .context("no count")?;
    Ok(u64::try_from(row.try_get::<i64>("", "n")?).unwrap_or(0))
}

/// `n` actions over `elapsed`; the latency columns hold the whole run.
fn drained(n: usize, elapsed: Duration, errors: u64) -> Measurement {
    Measurement {
        requests_per_sec: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: elapsed.as_secs_f64() * 1000.0,
        p99_ms: elapsed.as_secs_f64() * 1000.0,
        errors,
    }
}

/// Four `scheduler::Worker`s, each with its own pool of two runtime-role connections, calling
/// `run_due` until the queue of `n` actions is empty.
async fn workers_drain(superuser: &storage::Db, app_url: &str, n: usize) -> anyhow::Result<Measurement> {
    clear(superuser).await?;
    let key = crypto_vault::KeyMaterial::generate();
    fill(app_url, &key, n).await?;
    let mut pools = Vec::new();
    for _ in 0..WORKERS {
        pools.push(db(app_url, 2).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for pool in &pools {
        let worker = scheduler::Worker::new(pool.clone(), key.clone(), Arc::new(storage::SystemClock))
            .handle(KIND, |_| async { Ok(()) });
        tasks.push(tokio::spawn(async move { worker.run_due().await }));
    }
    let mut failed = 0u64;
    for t in tasks {
        let report = t.await??;
        failed += (report.retried + report.dead) as u64;
    }
    let elapsed = start.elapsed();
    for pool in pools {
        pool.close().await?;
    }
    let done = count(superuser, "done").await?;
    Ok(drained(n, elapsed, failed + (n as u64).saturating_sub(done)))
}

/// The baseline: `WORKERS` connections sending the worker's claim and finish statements bare (no
/// payload opened, no handler), until the queue of `n` actions is empty.
async fn sql_drain(superuser: &storage::Db, app_url: &str, n: usize) -> anyhow::Result<Measurement> {
    clear(superuser).await?;
    fill(app_url, &crypto_vault::KeyMaterial::generate(), n).await?;
    let mut pools = Vec::new();
    for _ in 0..WORKERS {
        pools.push(db(app_url, 2).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for pool in &pools {
        let conn = pool.conn().clone();
        tasks.push(tokio::spawn(async move {
            let mut lost = 0u64;
            loop {
                let now = storage::Clock::now(&storage::SystemClock);
                let claimed = conn
                    .query_all(Statement::from_sql_and_values(
                        Postgres,
                        CLAIM,
                        [now.into(), (now + scheduler::LEASE).into(), 32u64.into()],
                    ))
                    .await?;
                if claimed.is_empty() {
                    return anyhow::Ok(lost);
                }
                for row in claimed {
                    let id: uuid::Uuid = row.try_get("", "id")?;
                    let attempt: i32 = row.try_get("", "attempts")?;
                    let now = storage::Clock::now(&storage::SystemClock);
                    let done = conn
                        .execute(Statement::from_sql_and_values(
                            Postgres,
                            FINISH,
                            [
                                id.into(),
                                "done".into(),
                                None::<String>.into(),
                                Some(now).into(),
                                None::<chrono::DateTime<chrono::Utc>>.into(),
                                attempt.into(),
                            ],
                        ))
                        .await?;
                    lost += u64::from(done.rows_affected() != 1);
                }
            }
        }));
    }
    let mut lost = 0u64;
    for t in tasks {
        lost += t.await??;
    }
    let elapsed = start.elapsed();
    for pool in pools {
        pool.close().await?;
    }
    let done = count(superuser, "done").await?;
    Ok(drained(n, elapsed, lost + (n as u64).saturating_sub(done)))
}

/// One `Worker::run` loop at `interval`; `actions` single actions enqueued one at a time with random
/// gaps over about `duration`. Each latency runs from just before the enqueue's INSERT to the
/// handler's start; the throughput field is the enqueue rate.
async fn start_latency(
    superuser: &storage::Db,
    app_url: &str,
    interval: Duration,
    actions: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    clear(superuser).await?;
    let key = crypto_vault::KeyMaterial::generate();
    let started: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let seen = started.clone();
    let pool = db(app_url, 2).await?;
    let worker = scheduler::Worker::new(pool.clone(), key.clone(), Arc::new(storage::SystemClock)).handle(
        KIND,
        move |action: scheduler::Action| {
            let at = Instant::now();
            if let Ok(mut map) = seen.lock() {
                map.insert(action.id, at);
            }
            async { Ok(()) }
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(worker.run(interval, stopped));
    let enqueuer = db(app_url, 1).await?;
    let max_gap_us = (2 * duration.as_micros() / actions.max(1) as u128) as u64;
    let mut queued = Vec::with_capacity(actions);
    let began = Instant::now();
    for _ in 0..actions {
        let gap = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=max_gap_us);
        tokio::time::sleep(Duration::from_micros(gap)).await;
        let at = Instant::now();
        let now = storage::Clock::now(&storage::SystemClock);
        let id = scheduler::enqueue(enqueuer.conn(), &key, KIND, &serde_json::json!({}), now, now).await?;
        queued.push((id, at));
    }
    let enqueue_time = began.elapsed();
    let deadline = Instant::now() + interval + Duration::from_secs(10);
    loop {
        let all_started = started.lock().map(|m| queued.iter().all(|(id, _)| m.contains_key(&id.0))).unwrap_or(false);
        if all_started || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    looping.await?;
    enqueuer.close().await?;
    pool.close().await?;
    let map = started.lock().map_err(|_| anyhow::anyhow!("start map poisoned"))?;
    let mut latencies = Vec::with_capacity(actions);
    let mut missing = 0u64;
    for (id, at) in &queued {
        match map.get(&id.0) {
            Some(start) => latencies.push(start.saturating_duration_since(*at)),
            None => missing += 1,
        }
    }
    Ok(summarise(latencies, missing, enqueue_time))
}

/// What a poller at `interval` that costs nothing would show: a wait uniform on `[0, interval]`.
fn ideal_poller(interval: Duration) -> Measurement {
    let ms = interval.as_secs_f64() * 1000.0;
    Measurement { requests_per_sec: 1000.0 / ms, p50_ms: ms * 0.5, p99_ms: ms * 0.99, errors: 0 }
}

/// The outbox entries, on the tenancy bench's database with no `rampart serve` running (its own
/// worker would claim the bench's actions).
pub(crate) async fn outbox_entries(
    superuser_url: &str,
    app_url: &str,
    duration: Duration,
) -> anyhow::Result<Vec<Entry>> {
    let superuser = db(superuser_url, 1).await?;
    // Enough actions for about `duration` at the ~10,000 per second two cores manage.
    let n = (10_000 * duration.as_secs() as usize).max(10_000);
    let (mut subject, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..crate::bench_measure::ROUNDS {
        subject.push(workers_drain(&superuser, app_url, n).await?);
        baseline.push(sql_drain(&superuser, app_url, n).await?);
    }
    let (s, b) = (best(subject), best(baseline));
    let mut out = vec![entry(
        "outbox actions/s completed by 4 workers (PostgreSQL; latency columns = whole run)",
        &format!(
            "{n} queued no-op actions (sealed payloads) drained by 4 in-process scheduler::Worker::run_due, each with its own 2-connection runtime-role pool: claim 32 with FOR UPDATE SKIP LOCKED and a 60 s lease, open each payload, run the handler, finish each row"
        ),
        &format!(
            "{n} fresh rows drained by 4 runtime-role connections sending the worker's claim statement (LIMIT 32, FOR UPDATE SKIP LOCKED) and its per-row finish UPDATE bare: no payload opened, no handler"
        ),
        &s,
        &b,
        ">= 0.8x",
        s.requests_per_sec / b.requests_per_sec.max(f64::MIN_POSITIVE),
    )];

    const ACTIONS: usize = 200;
    for interval_ms in [1000u64, 50] {
        let interval = Duration::from_millis(interval_ms);
        let s = start_latency(&superuser, app_url, interval, ACTIONS, duration).await?;
        let b = ideal_poller(interval);
        let name = if interval_ms == 1000 {
            "outbox enqueue-to-start latency (PostgreSQL)".to_owned()
        } else {
            format!("outbox enqueue-to-start latency, {interval_ms} ms poll (PostgreSQL)")
        };
        out.push(entry(
            &name,
            &format!(
                "one scheduler::Worker::run loop polling every {interval_ms} ms{}; {ACTIONS} single no-op actions enqueued one at a time (autocommit) at random gaps over about {} s; latency = handler start − just before the enqueue's INSERT: p50 {:.1} ms, p99 {:.1} ms; throughput column = enqueue rate; ratio = p50 / baseline p50",
                if interval_ms == 1000 { " (the server's default)" } else { "" },
                duration.as_secs(),
                s.p50_ms,
                s.p99_ms
            ),
            &format!(
                "not measured: a poller every {interval_ms} ms that costs nothing, so the wait is uniform on [0, {interval_ms}] ms (p50 {:.1} ms, p99 {:.1} ms; throughput column = polls per second)",
                b.p50_ms, b.p99_ms
            ),
            &s,
            &b,
            "report only",
            s.p50_ms / b.p50_ms.max(f64::MIN_POSITIVE),
        ));
    }
    superuser.close().await?;
    Ok(out)
}
