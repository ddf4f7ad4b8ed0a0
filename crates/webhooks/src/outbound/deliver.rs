//! The outbox handler: one attempt at a delivery, read in one short transaction, signed and sent
//! outside any transaction, and recorded in a second one that queues the next attempt or, after
//! the last, disables the endpoint and tells its owners.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crypto_vault::{KeyMaterial, Vault};
use ids::{DeliveryId, EndpointId, UserId};
use sea_orm::ConnectionTrait;
use tenancy::{TenancyError, TenantTx};
use uuid::Uuid;

use super::endpoints::{disable, origin, set_health};
use super::history::message_id;
use super::schedule::{enqueue_attempt, retry_at, ActionPayload, ATTEMPTS};
use super::secrets::{open_secrets, signing_at};
use crate::standard;

/// Runs delivery attempts for the outbox (register [`Deliverer::deliver`] for
/// [`DELIVER_ACTION`](super::DELIVER_ACTION)).
#[derive(Clone)]
pub struct Deliverer {
    db: tenancy::Db,
    vault: Arc<Vault>,
    outbox_key: KeyMaterial,
    client: egress::GuardedClient,
    clock: Arc<dyn storage::Clock>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("policy", self.client.policy()).finish_non_exhaustive()
    }
}

/// What a delivery attempt found before sending.
enum Prepared {
    /// Nothing to send (the delivery is gone, done, or its endpoint disabled).
    Nothing,
    Send(Attempting),
}

/// A delivery about to be attempted, as read before sending.
struct Attempting {
    delivery: DeliveryId,
    cause: String,
    endpoint: EndpointId,
    url: String,
    body: String,
    secrets: Vec<standard::Secret>,
    /// Attempts recorded so far (the claim the outcome is recorded against).
    attempts: i32,
    created_at: DateTime<Utc>,
}

/// The outcome of one request.
struct Outcome {
    status: Option<u16>,
    code: String,
    retry_after: Option<i64>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == "ok"
    }
}

impl Deliverer {
    pub fn new(
        db: tenancy::Db,
        vault: Arc<Vault>,
        outbox_key: KeyMaterial,
        policy: egress::EgressPolicy,
        resolver: Arc<dyn egress::Resolver>,
        clock: Arc<dyn storage::Clock>,
    ) -> Result<Deliverer, egress::EgressError> {
        Ok(Deliverer { db, vault, outbox_key, client: egress::GuardedClient::new(policy, resolver)?, clock })
    }

    /// One attempt: `Err` only when the database failed (the outbox then retries the action);
    /// a failed request is recorded and retried on the delivery's own schedule.
    pub async fn deliver(&self, action: scheduler::Action) -> Result<(), String> {
        let payload: ActionPayload = serde_json::from_value(action.payload).map_err(|e| e.to_string())?;
        let tenant = payload.tenant;
        let prepared = {
            let tx =
                TenantTx::begin_claiming(&self.db, tenant, UserId(Uuid::nil())).await.map_err(|e| e.to_string())?;
            let result = self.prepare(&tx, payload.delivery, &payload.cause).await;
            tx.settle(result).await.map_err(|e| e.to_string())?
        };
        let Prepared::Send(attempting) = prepared else {
            return Ok(());
        };
        let started = self.clock.now();
        let outcome = self.send(&attempting, started).await;
        let finished = self.clock.now();
        let tx = TenantTx::begin_claiming(&self.db, tenant, UserId(Uuid::nil())).await.map_err(|e| e.to_string())?;
        let recorded = self.record(&tx, &attempting, &outcome, started, finished).await;
        tx.settle(recorded).await.map_err(|e| e.to_string())
    }

    async fn prepare(&self, tx: &TenantTx, delivery: DeliveryId, cause: &str) -> Result<Prepared, TenancyError> {
        let row = tx
            .conn()
            .query_one(tx.statement(
                "SELECT d.status, d.attempts, d.payload, d.created_at, e.id AS endpoint_id, e.url, e.secrets_ciphertext, h.disabled_at
                   FROM webhook_deliveries d
                   JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.tenant_id = d.tenant_id
                   JOIN workspaces w ON w.id = d.tenant_id
                   LEFT JOIN webhook_endpoint_health h ON h.endpoint_id = e.id
                  WHERE d.tenant_id = $1 AND d.id = $2 AND w.deleted_at IS NULL",
                vec![tx.tenant().0.into(), delivery.into()],
            ))
            .await?;
        let Some(row) = row else { return Ok(Prepared::Nothing) };
        let status: String = row.try_get("", "status")?;
        // An action run again after its worker died may find its attempt already recorded.
        if status != "pending" {
            return Ok(Prepared::Nothing);
        }
        let disabled: Option<DateTime<Utc>> = row.try_get("", "disabled_at")?;
        if disabled.is_some() {
            tx.conn()
                .execute(tx.statement(
                    "UPDATE webhook_deliveries SET status = 'skipped', next_attempt_at = NULL WHERE tenant_id = $1 AND id = $2",
                    vec![tx.tenant().0.into(), delivery.into()],
                ))
                .await?;
            tracing::info!(delivery.id = %delivery, cause, "webhook endpoint is disabled; delivery skipped");
            return Ok(Prepared::Nothing);
        }
        let endpoint: EndpointId = row.try_get("", "endpoint_id")?;
        let sealed: Vec<u8> = row.try_get("", "secrets_ciphertext")?;
        let now = self.clock.now();
        let stored = open_secrets(tx, &self.vault, endpoint, &sealed).await?;
        let secrets = signing_at(&stored, now)
            .map(|s| standard::Secret::parse(&s.secret))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TenancyError::Internal("a stored endpoint secret does not parse".into()))?;
        Ok(Prepared::Send(Attempting {
            delivery,
            cause: cause.to_owned(),
            endpoint,
            url: row.try_get("", "url")?,
            body: row.try_get("", "payload")?,
            secrets,
            attempts: row.try_get("", "attempts")?,
            created_at: row.try_get("", "created_at")?,
        }))
    }

    async fn send(&self, a: &Attempting, now: DateTime<Utc>) -> Outcome {
        let failed = |code: &str| Outcome { status: None, code: code.to_owned(), retry_after: None };
        let Ok(parsed) = reqwest::Url::parse(&a.url) else { return failed("invalid_endpoint_url") };
        let Ok(id) = standard::MessageId::parse(&message_id(a.delivery)) else { return failed("invalid_message_id") };
        let Ok(signature) = standard::sign(&a.secrets, &id, now, a.body.as_bytes()) else {
            return failed("no_signing_secret");
        };
        let mut request = reqwest::Request::new(reqwest::Method::POST, parsed);
        let headers = request.headers_mut();
        let pairs = [
            (standard::ID_HEADER, id.as_str().to_owned()),
            (standard::TIMESTAMP_HEADER, now.timestamp().to_string()),
            (standard::SIGNATURE_HEADER, signature),
            ("content-type", "application/json".to_owned()),
            ("user-agent", concat!("Rampart-Webhooks/", env!("CARGO_PKG_VERSION")).to_owned()),
        ];
        for (name, value) in pairs {
            match reqwest::header::HeaderValue::from_str(&value) {
                Ok(v) => {
                    headers.insert(name, v);
                }
                Err(_) => return failed("invalid_header"),
            }
        }
        *request.body_mut() = Some(a.body.clone().into());
        match self.client.send(request).await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .filter(|s| *s > 0);
                let code = if status.is_success() { "ok" } else { "http_status" };
                Outcome { status: Some(status.as_u16()), code: code.to_owned(), retry_after }
            }
            Err(err) => failed(err.code()),
        }
    }

    async fn record(
        &self,
        tx: &TenantTx,
        a: &Attempting,
        outcome: &Outcome,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), TenancyError> {
        let (delivery, cause, attempts, endpoint) = (a.delivery, a.cause.as_str(), a.attempts, a.endpoint);
        let attempt = attempts + 1;
        let retry = cause == "scheduled" && !outcome.ok() && attempt < ATTEMPTS && outcome.status != Some(410);
        let next = retry.then(|| retry_at(attempts, outcome.retry_after, now));
        let status = if outcome.ok() {
            "delivered"
        } else if next.is_some() {
            "pending"
        } else {
            "failed"
        };
        if !claim(tx, a, status, next, now).await? {
            tracing::warn!(delivery.id = %delivery, attempt, "delivery attempt was already recorded; this outcome is dropped");
            return Ok(());
        }
        log_attempt(tx, a, outcome, started, now).await?;
        if outcome.ok() {
            set_health(
                tx,
                endpoint,
                "consecutive_failures = 0, failing_since = NULL, last_success_at = $1",
                vec![now.into()],
            )
            .await?;
            return Ok(());
        }
        let last_success = count_failure(tx, endpoint, started).await?;
        if let Some(at) = next {
            enqueue_attempt(tx, &self.outbox_key, delivery, "scheduled", at, now).await?;
            tracing::info!(delivery.id = %delivery, attempt, code = %outcome.code, next_attempt_at = %at, "webhook delivery failed; retry scheduled");
            return Ok(());
        }
        let reason = disable_reason(a, outcome, last_success, now);
        tracing::warn!(delivery.id = %delivery, attempt, code = %outcome.code, "webhook delivery failed its last attempt");
        if let Some(reason) = reason {
            disable(tx, endpoint, &reason, now).await?;
            self.tell_owners(tx, endpoint, &a.url, &reason, now).await?;
        }
        Ok(())
    }

    /// Queues a mail to each owner of the workspace naming the endpoint (its origin only: a path
    /// may carry a token) and why it was disabled.
    async fn tell_owners(
        &self,
        tx: &TenantTx,
        endpoint: EndpointId,
        url: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TenancyError> {
        let rows = tx
            .conn()
            .query_all(tx.statement(
                "SELECT u.email, w.name FROM memberships m JOIN users u ON u.id = m.user_id JOIN workspaces w ON w.id = m.tenant_id
                  WHERE m.tenant_id = $1 AND m.role = $2 ORDER BY u.email",
                vec![tx.tenant().0.into(), rbac::OWNER_ROLE.into()],
            ))
            .await?;
        for row in rows {
            let email: String = row.try_get("", "email")?;
            let workspace: String = row.try_get("", "name")?;
            let mail = scheduler::mail::Mail {
                to: email,
                subject: format!("Webhook endpoint disabled in {workspace}"),
                body: format!(
                    "The webhook endpoint {endpoint} ({}) in the workspace \"{workspace}\" was disabled: {reason}.\n\n\
                     No further events are sent to it. Once it answers again, enable it in the workspace's webhook settings \
                     and replay the deliveries it missed.\n",
                    origin(url)
                ),
            };
            let payload = serde_json::to_value(&mail).map_err(|e| TenancyError::Internal(e.to_string()))?;
            scheduler::enqueue(tx.conn(), &self.outbox_key, scheduler::mail::SEND_EMAIL, &payload, now, now)
                .await
                .map_err(|e| TenancyError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

/// Records attempt `a.attempts + 1` on the delivery with its new `status` and next attempt;
/// `false` when that attempt was recorded already.
async fn claim(
    tx: &TenantTx,
    a: &Attempting,
    status: &str,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, TenancyError> {
    let (delivery, attempts) = (a.delivery, a.attempts);
    let attempt = attempts + 1;
    // The attempt count is the claim: a second worker running the same attempt (its first
    // one died after sending) records nothing and queues nothing.
    let updated = tx
        .conn()
        .execute(tx.statement(
            "UPDATE webhook_deliveries SET attempts = $1, status = $2, last_attempt_at = $3, next_attempt_at = $4,
                    delivered_at = CASE WHEN $2 = 'delivered' THEN $3 ELSE delivered_at END
              WHERE tenant_id = $5 AND id = $6 AND attempts = $7 AND status = 'pending'",
            vec![
                attempt.into(),
                status.into(),
                now.into(),
                next.into(),
                tx.tenant().0.into(),
                delivery.into(),
                attempts.into(),
            ],
        ))
        .await?;
    Ok(updated.rows_affected() != 0)
}

/// Adds the attempt, its answer and how long it took to the delivery's attempts.
async fn log_attempt(
    tx: &TenantTx,
    a: &Attempting,
    outcome: &Outcome,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let (delivery, cause, attempt) = (a.delivery, a.cause.as_str(), a.attempts + 1);
    let duration_ms = i32::try_from((now - started).num_milliseconds().max(0)).unwrap_or(i32::MAX);
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_attempts (id, tenant_id, delivery_id, attempt, cause, started_at, duration_ms, response_status, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                Uuid::new_v4().into(),
                tx.tenant().0.into(),
                delivery.into(),
                attempt.into(),
                cause.into(),
                started.into(),
                duration_ms.into(),
                outcome.status.map(i32::from).into(),
                outcome.code.clone().into(),
            ],
        ))
        .await?;
    Ok(())
}

/// Counts a failed attempt, started at `started`, on the endpoint's health; when the endpoint
/// last received a delivery.
async fn count_failure(
    tx: &TenantTx,
    endpoint: EndpointId,
    started: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, TenancyError> {
    let last_success: Option<DateTime<Utc>> = tx
        .conn()
        .query_one(tx.statement(
            "UPDATE webhook_endpoint_health
                SET consecutive_failures = consecutive_failures + 1, failing_since = COALESCE(failing_since, $1)
              WHERE tenant_id = $2 AND endpoint_id = $3
              RETURNING last_success_at",
            vec![started.into(), tx.tenant().0.into(), endpoint.into()],
        ))
        .await?
        .map(|r| r.try_get("", "last_success_at"))
        .transpose()?
        .flatten();
    Ok(last_success)
}

/// Why the last attempt of a delivery, failed with `outcome`, disables its endpoint: `None` when
/// it does not.
fn disable_reason(
    a: &Attempting,
    outcome: &Outcome,
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    if outcome.status == Some(410) {
        Some("the endpoint answered 410 Gone".to_owned())
    } else if a.cause == "scheduled" {
        // Disabled only when nothing reached the endpoint since this delivery began: one
        // flaky delivery among successful ones does not turn the endpoint off.
        last_success.is_none_or(|at| at < a.created_at).then(|| {
            format!(
                "{ATTEMPTS} attempts failed over {} hours with no successful delivery",
                (now - a.created_at).num_hours()
            )
        })
    } else {
        None
    }
}
