//! The crypto vault's part of `cargo xtask bench`: seal + open of a 256-byte secret through the
//! envelope (`crypto_vault::DataKey`, a cached data key) side by side with the raw `aes-gcm`
//! crate on the same data, and the throughput of `rampart keys rewrap` (re-encrypting sealed
//! connection secrets under a rotated data key) on PostgreSQL beside the same batches rewriting
//! each value unchanged.

use std::time::{Duration, Instant};

use aes_gcm::{
    aead::{Aead, KeyInit},
    Aes256Gcm, Nonce,
};
use sea_orm::{ConnectionTrait, Statement};

use crate::bench_measure::{entry, Entry, Measurement};

const SECRET_LEN: usize = 256;

/// Per-operation latencies measured for about `budget`, as a [`Measurement`] (operations/s).
fn measure(budget: Duration, mut op: impl FnMut()) -> Measurement {
    let mut times = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..256 {
            let t = Instant::now();
            op();
            times.push(t.elapsed());
        }
    }
    let total = start.elapsed();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    Measurement {
        requests_per_sec: times.len() as f64 / total.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        errors: 0,
    }
}

/// Seal + open of a 256-byte secret: the envelope vs the raw crate, alternating, best of ROUNDS.
pub(crate) fn crypto_entries(seconds: u64) -> anyhow::Result<Vec<Entry>> {
    let budget = Duration::from_secs(seconds.clamp(1, 10));
    let material = crypto_vault::KeyMaterial::generate();
    let tenant = uuid::Uuid::new_v4();
    let key = crypto_vault::DataKey::new(tenant, crypto_vault::Purpose::IntegrationTokens, 1, &material)?;
    let place =
        crypto_vault::Place { tenant, table: "connections", column: "secret_ciphertext", row: uuid::Uuid::new_v4() };
    let raw = Aes256Gcm::new_from_slice(material.expose()).map_err(|_| anyhow::anyhow!("key length"))?;
    let secret = [0x42u8; SECRET_LEN];
    let mut failures = 0u64;
    let (mut subject, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..crate::bench_measure::ROUNDS {
        subject.push(measure(budget, || {
            let sealed = key.seal(&place, &secret);
            let ok = sealed.and_then(|s| key.open(&place, &s)).is_ok_and(|p| p.len() == SECRET_LEN);
            failures += u64::from(!ok);
        }));
        baseline.push(measure(budget, || {
            let mut nonce = [0u8; 12];
            rand::Rng::fill(&mut rand::rngs::OsRng, &mut nonce);
            let sealed = raw.encrypt(Nonce::from_slice(&nonce), secret.as_slice());
            let ok = sealed
                .and_then(|s| raw.decrypt(Nonce::from_slice(&nonce), s.as_slice()))
                .is_ok_and(|p| p.len() == SECRET_LEN);
            failures += u64::from(!ok);
        }));
    }
    anyhow::ensure!(failures == 0, "{failures} seal/open round trips failed");
    let (s, b) = (crate::bench_measure::best(subject), crate::bench_measure::best(baseline));
    Ok(vec![entry(
        "seal + open of a 256-byte secret (one thread)",
        "crypto_vault::DataKey::seal then open: envelope header, AAD of (tenant, table, column, row), random nonce, AES-256-GCM",
        "the aes-gcm crate: encrypt then decrypt of the same 256 bytes with a random nonce, no envelope",
        &s,
        &b,
        ">= 0.8x",
        s.requests_per_sec / b.requests_per_sec.max(f64::MIN_POSITIVE),
    )])
}

/// Tenants and connections each sealed before the rewrap is measured.
const TENANTS: usize = 5;
const PER_TENANT: usize = 200;

/// `keys rewrap` throughput: rows re-encrypted per second after a rotation, batches of 500, as the
/// key operators' role; beside the same batches reading and rewriting each value unchanged.
pub(crate) async fn rewrap_entries(owner_url: &str, app_url: &str) -> anyhow::Result<Vec<Entry>> {
    let app = storage::Db::connect(&secrecy::SecretString::from(app_url.to_owned()), 4).await?;
    let owner = storage::Db::connect(&secrecy::SecretString::from(owner_url.to_owned()), 2).await?;
    let kek = crypto_vault::KeyMaterial::generate();
    let vault = crypto_vault::Vault::new(std::sync::Arc::new(crypto_vault::LocalKeyProvider::new(&kek, &[])?));
    let now = storage::Clock::now(&storage::SystemClock);
    let backend = app.conn().get_database_backend();
    for _ in 0..TENANTS {
        let user = tenancy::UserId(uuid::Uuid::new_v4());
        app.conn()
            .execute(Statement::from_sql_and_values(
                backend,
                "INSERT INTO users (id, email, status, failed_signins, lockouts, created_at, updated_at) VALUES ($1, $2, 'active', 0, 0, $3, $3)",
                [user.0.into(), format!("bench-{}@example.com", user.0).into(), now.into()],
            ))
            .await?;
        let ws = tenancy::workspaces::create(&app, user, "bench vault", now).await?.id;
        let tx = tenancy::TenantTx::begin(&app, ws, user).await?;
        for i in 0..PER_TENANT {
            let token = format!("xoxb-bench-{i}-{}", "x".repeat(40));
            let secret = tenancy::connections::SecretFields([("bot_token".to_owned(), token.into())].into());
            let new = tenancy::connections::NewConnection {
                provider: tenancy::connections::Provider::Slack,
                name: format!("bot {i}"),
                config: Default::default(),
                secret,
                scopes: None,
            };
            tenancy::connections::create(&tx, &vault, &new, now).await?;
        }
        tx.commit().await?;
    }
    let rows = (TENANTS * PER_TENANT) as f64;

    // Baseline: the same batches, each value read and written back unchanged.
    let start = Instant::now();
    let mut after = uuid::Uuid::nil();
    loop {
        let txn = tenancy::secrets::maintenance::begin(owner.conn()).await?;
        let batch = txn
            .query_all(Statement::from_sql_and_values(
                backend,
                "SELECT id, secret_ciphertext FROM connections WHERE id > $1 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                [after.into()],
            ))
            .await?;
        for row in &batch {
            let id: uuid::Uuid = row.try_get("", "id")?;
            let value: Vec<u8> = row.try_get("", "secret_ciphertext")?;
            txn.execute(Statement::from_sql_and_values(
                backend,
                "UPDATE connections SET secret_ciphertext = $1, ciphertext_version = ciphertext_version WHERE id = $2",
                [value.into(), id.into()],
            ))
            .await?;
            after = id;
        }
        txn.commit().await?;
        if batch.is_empty() {
            break;
        }
    }
    let plain = start.elapsed();

    tenancy::secrets::maintenance::rotate(owner.conn(), &vault, None, now).await?;
    let start = Instant::now();
    let report = tenancy::secrets::maintenance::rewrap(owner.conn(), &vault, 500, now, &mut |_| {}).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        report.values_reencrypted as f64 == rows && report.failed.is_empty(),
        "rewrap re-encrypted {} of {rows} values ({} failed)",
        report.values_reencrypted,
        report.failed.len()
    );
    app.close().await?;
    owner.close().await?;
    let per_sec = |d: Duration| Measurement {
        requests_per_sec: rows / d.as_secs_f64(),
        p50_ms: d.as_secs_f64() * 1000.0,
        p99_ms: d.as_secs_f64() * 1000.0,
        errors: 0,
    };
    let (s, b) = (per_sec(elapsed), per_sec(plain));
    Ok(vec![entry(
        "keys rewrap throughput (rows per second; latency columns = whole run)",
        "tenancy::secrets::maintenance::rewrap after a rotation: 1,000 sealed connection secrets of 5 tenants, batches of 500, open + seal + UPDATE each",
        "the same batches as the key operators' role rewriting each value unchanged (no cryptography)",
        &s,
        &b,
        "report only",
        s.requests_per_sec / b.requests_per_sec.max(f64::MIN_POSITIVE),
    )])
}
