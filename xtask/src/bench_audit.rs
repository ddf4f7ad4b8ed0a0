//! Audit-trail measurements on PostgreSQL: appends per second with the hash chain on (the real
//! `audit_events`, chained by its trigger under the head row lock) against the same table shape
//! without the chain, both as the runtime role under RLS; and verification speed against reading
//! the same rows without hashing.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseBackend::Postgres, Statement, TransactionTrait};

use crate::bench_measure::{entry, summarise, Entry, Measurement};

/// A table with `audit_events`' columns, indexes and row policy, but no chaining trigger.
const UNCHAINED: &str = "
    CREATE TABLE bench_audit_unchained (LIKE audit_events INCLUDING ALL);
    ALTER TABLE bench_audit_unchained ENABLE ROW LEVEL SECURITY;
    ALTER TABLE bench_audit_unchained FORCE ROW LEVEL SECURITY;
    CREATE POLICY bench_insert ON bench_audit_unchained FOR INSERT
        WITH CHECK (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid);
    GRANT INSERT ON bench_audit_unchained TO rampart_runtime;
    CREATE SEQUENCE bench_audit_seq;
    GRANT USAGE ON SEQUENCE bench_audit_seq TO rampart_runtime;";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    On,
    Off,
}

/// One writer per entry of `tenants`, each appending to that tenant's chain (give one tenant
/// several times to make writers share a chain): BEGIN; set the tenant context; one event;
/// COMMIT — what a request that changes something adds.
async fn append_load(
    url: &str,
    chain: Chain,
    tenants: &[uuid::Uuid],
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let db = storage::Db::connect(&secrecy::SecretString::from(url.to_owned()), tenants.len() as u32).await?;
    let warmup = Duration::from_secs(1);
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for &tenant in tenants {
        let conn = db.conn().clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                let start = Instant::now();
                let txn = conn.begin().await?;
                txn.execute(Statement::from_sql_and_values(
                    Postgres,
                    "SELECT set_config('app.tenant_id', $1, true)",
                    [tenant.to_string().into()],
                ))
                .await?;
                let event = audit::NewEvent::new(
                    audit::Category::Membership,
                    "member.role_changed",
                    serde_json::json!({ "member": tenant, "from": "Member", "to": "Manager", "n": n }),
                )
                .by(Some(tenant))
                .request(Some(format!("bench-{n}")));
                match chain {
                    Chain::On => {
                        audit::append(&txn, tenant, &event, storage::Clock::now(&storage::SystemClock)).await?;
                    }
                    Chain::Off => {
                        // What `audit::append` does before its insert, so only the chain differs.
                        let mut payload = event.payload.clone();
                        audit::scrub_value(&mut payload);
                        txn.execute(Statement::from_sql_and_values(
                            Postgres,
                            "INSERT INTO bench_audit_unchained (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash)
                             VALUES ($1, $2, nextval('bench_audit_seq'), $3, $4, $5, $6, $7, $8, '', '')",
                            [
                                uuid::Uuid::new_v4().into(),
                                tenant.into(),
                                storage::Clock::now(&storage::SystemClock).into(),
                                event.category.as_str().into(),
                                event.action.clone().into(),
                                event.actor.into(),
                                event.request_id.clone().into(),
                                payload.to_string().into(),
                            ],
                        ))
                        .await?;
                    }
                }
                txn.commit().await?;
                n += 1;
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

/// Events per second through `audit::verify` (recomputing every link) against reading the same
/// rows in the same pages without hashing.
async fn verify_speed(owner_url: &str, chains: &[uuid::Uuid]) -> anyhow::Result<(Measurement, Measurement)> {
    let db = storage::Db::connect(&secrecy::SecretString::from(owner_url.to_owned()), 1).await?;
    let txn = audit::begin_auditor(db.conn()).await?;
    let started = Instant::now();
    let mut events = 0u64;
    for chain in chains {
        let v = audit::verify(&txn, *chain).await?;
        anyhow::ensure!(v.is_intact(), "bench chain {chain} is broken: {:?}", v.broken);
        events += v.events;
    }
    let verify_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut read = 0u64;
    for chain in chains {
        let mut after = i64::MIN;
        loop {
            let rows = txn
                .query_all(Statement::from_sql_and_values(
                    Postgres,
                    "SELECT id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash
                       FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT 2000",
                    [(*chain).into(), after.into()],
                ))
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("", "seq")?;
            read += rows.len() as u64;
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    txn.commit().await?;
    db.close().await?;
    let rate =
        |n: u64, s: f64| Measurement { requests_per_sec: n as f64 / s.max(1e-9), p50_ms: 0.0, p99_ms: 0.0, errors: 0 };
    Ok((rate(events, verify_secs), rate(read, read_secs)))
}

/// The audit entries, on the tenancy bench's PostgreSQL database.
pub(crate) async fn entries(
    superuser_url: &str,
    owner_url: &str,
    app_url: &str,
    duration: Duration,
) -> anyhow::Result<Vec<Entry>> {
    let admin = storage::Db::connect(&secrecy::SecretString::from(superuser_url.to_owned()), 1).await?;
    admin.conn().execute_unprepared(UNCHAINED).await?;
    admin.close().await?;
    let (mut on_runs, mut off_runs, mut chains) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..crate::bench_measure::ROUNDS {
        let tenants: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
        on_runs.push(append_load(app_url, Chain::On, &tenants, duration).await?);
        off_runs.push(append_load(app_url, Chain::Off, &tenants, duration).await?);
        chains.extend(tenants);
    }
    let (on, off) = (crate::bench_measure::best(on_runs), crate::bench_measure::best(off_runs));
    let mut out = vec![entry(
        "audit appends per second, hash chain on vs off (4 connections, one tenant each)",
        "runtime role: BEGIN; tenant context; INSERT into audit_events (chained by trigger under the head lock); COMMIT",
        "the same transaction and event (payload scrubbed as audit::append does) inserted into a copy of audit_events without the chain (same columns, indexes, RLS)",
        &on,
        &off,
        ">= 0.8x",
        on.requests_per_sec / off.requests_per_sec.max(f64::MIN_POSITIVE),
    )];
    // One tenant, four writers: the head row lock serialises them; the worst case for one chain.
    let single = append_load(app_url, Chain::On, &[uuid::Uuid::new_v4(); 4], duration).await?;
    out.push(entry(
        "audit appends per second, 4 connections writing one tenant's chain",
        "runtime role, one chain (writers wait on its head row lock)",
        "4 connections, one chain each (the entry above)",
        &single,
        &on,
        "report only",
        single.requests_per_sec / on.requests_per_sec.max(f64::MIN_POSITIVE),
    ));
    let (verify, read) = verify_speed(owner_url, &chains).await?;
    out.push(entry(
        "audit verification speed (events per second)",
        "audit::verify: read in pages of 2,000 and recompute every link (SHA-256)",
        "reading the same rows in the same pages without hashing",
        &verify,
        &read,
        "report only",
        verify.requests_per_sec / read.requests_per_sec.max(f64::MIN_POSITIVE),
    ));
    Ok(out)
}
