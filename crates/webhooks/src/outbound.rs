//! Outbound webhooks of a workspace: endpoints (an https URL, the event types it subscribes to,
//! Standard Webhooks secrets sealed with the workspace's data key), each event's delivery to each
//! subscribed endpoint, and every attempt at it.
//!
//! An event is emitted in the transaction of the change it reports ([`emit`]): a delivery row and
//! an outbox action per subscribed endpoint, so both commit with the change or neither does. The
//! outbox runs [`Deliverer::deliver`] for each attempt: a short transaction reads the delivery
//! and opens the secrets, the request is signed per Standard Webhooks and sent through the
//! SSRF-guarded egress client outside any transaction, and a second transaction records the
//! attempt and, after a failure, queues the next attempt on [`RETRY_SCHEDULE_SECS`]. An endpoint
//! whose delivery fails its last attempt with no success since that delivery began, or that
//! answers 410 Gone, is disabled and its owners are told by mail.

use std::{net::SocketAddr, sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use crypto_vault::{KeyMaterial, Place, Purpose, Vault};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tenancy::{secrets, TenancyError, TenantId, TenantTx, UserId};
use uuid::Uuid;

use crate::standard;

/// The outbox action kind of one delivery attempt.
pub const DELIVER_ACTION: &str = "webhook_deliver";

/// Waits before each retry after a failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h —
/// the Standard Webhooks specification's recommended schedule ("immediately, 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, …"), cut at eight attempts, about 27.6 hours in all.
pub const RETRY_SCHEDULE_SECS: [i64; 7] = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];

/// Attempts a delivery gets: the first and one per [`RETRY_SCHEDULE_SECS`] entry.
pub const ATTEMPTS: i32 = RETRY_SCHEDULE_SECS.len() as i32 + 1;

/// How long a rotated-out secret keeps signing beside the new one, so receivers can switch over.
pub const SECRET_OVERLAP_SECS: i64 = 24 * 3600;

/// Deadline of one delivery request (Standard Webhooks recommends 15–30 s).
pub const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// Secrets an endpoint signs with at most (the current one and those still overlapping).
pub const MAX_SIGNING_SECRETS: usize = 3;

/// Endpoints a workspace may register.
pub const MAX_ENDPOINTS: i64 = 20;

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A `Retry-After` longer than this is not waited for (the schedule's longest step).
const MAX_RETRY_AFTER_SECS: i64 = 10 * 3600;

/// Event types an endpoint can subscribe to; [`ALL_EVENTS`] subscribes to every one.
pub const EVENT_TYPES: &[&str] = &["project.created", "project.updated", "project.deleted", "webhook.test"];

/// The subscription to every event type.
pub const ALL_EVENTS: &str = "*";

/// The test event sent by [`send_test`].
pub const TEST_EVENT: &str = "webhook.test";

/// The egress policy of deliveries: any public host name over https, no redirects (a `POST`
/// that is redirected is a failed delivery, never re-sent elsewhere), [`REQUEST_TIMEOUT`].
/// `exceptions` (tests only) let a loopback receiver through and with it plain http.
pub fn delivery_policy(exceptions: &[SocketAddr]) -> egress::EgressPolicy {
    egress::EgressPolicy {
        timeout: REQUEST_TIMEOUT,
        max_redirects: 0,
        standard_ports_only: true,
        ..egress::EgressPolicy::public_internet()
    }
    .with_test_exceptions(exceptions)
}

/// How long the creation-time screen waits for DNS before judging the URL at delivery only.
pub const SCREEN_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Judges an endpoint URL as far as it can be judged when it is created or changed, before any
/// transaction opens: everything [`check_url`] refuses, and a host name that resolves now into
/// forbidden ranges (private, loopback, link-local, metadata: [`egress::is_forbidden_ip`]).
/// A name that does not resolve now (or not within [`SCREEN_RESOLVE_TIMEOUT`]) is accepted: it
/// is judged again at every delivery, on the addresses it resolves to then, which is what
/// protects against a name repointed later (DNS rebinding).
pub async fn screen_url(
    policy: &egress::EgressPolicy,
    resolver: &dyn egress::Resolver,
    url: &str,
) -> Result<(), TenancyError> {
    let checked = check_url(policy, url)?;
    let Ok(parsed) = url::Url::parse(&checked) else { return Ok(()) };
    let (Some(url::Host::Domain(host)), Some(port)) = (parsed.host(), parsed.port_or_known_default()) else {
        return Ok(());
    };
    let resolved = tokio::time::timeout(SCREEN_RESOLVE_TIMEOUT, resolver.resolve(host, port)).await;
    let Ok(Ok(addrs)) = resolved else { return Ok(()) };
    let forbidden = |a: &SocketAddr| egress::is_forbidden_ip(a.ip()) && !policy.is_exception(a.ip(), a.port());
    if addrs.iter().any(forbidden) {
        return Err(TenancyError::Rejected {
            code: "invalid_endpoint_url",
            message: "the endpoint URL's host resolves to a private or reserved address",
        });
    }
    Ok(())
}

/// An endpoint as its workspace's administrators see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant: TenantId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// Secrets signing each delivery now (2 while a rotated-out one overlaps).
    pub signing_secrets: usize,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Set while the endpoint receives nothing.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `true` re-enables a disabled endpoint (and forgets its failures), `false` disables it.
    pub enabled: Option<bool>,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The `webhook-id` header: the same for every attempt and replay (receivers de-duplicate on
    /// it).
    pub message_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `skipped` (the endpoint was disabled).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: i32,
    /// `scheduled` or `replay`.
    pub cause: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    /// `ok`, `http_status` (a non-2xx answer) or an egress code such as `egress_timeout`.
    pub outcome: String,
}

const TABLE: &str = "webhook_endpoints";
const SECRETS_COLUMN: &str = "secrets_ciphertext";

/// An endpoint's secrets as sealed: newest first, each with the time it stops signing.
#[derive(Serialize, Deserialize)]
struct StoredSecret {
    secret: String,
    expires_at: Option<DateTime<Utc>>,
}

impl Drop for StoredSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// The `webhook-id` of a delivery (no `.`, as the specification asks).
pub fn message_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

fn place(tenant: TenantId, endpoint: Uuid) -> Place<'static> {
    Place { tenant: tenant.0, table: TABLE, column: SECRETS_COLUMN, row: endpoint }
}

async fn seal_secrets(
    tx: &TenantTx,
    vault: &Vault,
    endpoint: Uuid,
    list: &[StoredSecret],
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, u32), TenancyError> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(list).map_err(|e| TenancyError::Internal(e.to_string()))?);
    secrets::seal(tx, vault, Purpose::IntegrationTokens, &place(tx.tenant(), endpoint), &json, now).await
}

async fn open_secrets(
    tx: &TenantTx,
    vault: &Vault,
    endpoint: Uuid,
    sealed: &[u8],
) -> Result<Vec<StoredSecret>, TenancyError> {
    let bytes = secrets::open(tx, vault, &place(tx.tenant(), endpoint), sealed).await?;
    serde_json::from_slice(&bytes).map_err(|_| TenancyError::Internal("sealed endpoint secrets are not JSON".into()))
}

fn signing_at(list: &[StoredSecret], now: DateTime<Utc>) -> impl Iterator<Item = &StoredSecret> {
    list.iter().filter(move |s| s.expires_at.is_none_or(|at| at > now))
}

fn check_url(policy: &egress::EgressPolicy, url: &str) -> Result<String, TenancyError> {
    let bad = |message| TenancyError::Rejected { code: "invalid_endpoint_url", message };
    if url.len() > MAX_URL_LEN {
        return Err(bad("the endpoint URL is longer than 2,048 characters"));
    }
    // The URL parser silently drops leading and trailing control characters: refused instead,
    // so what is stored is what was sent.
    if url.chars().any(char::is_control) {
        return Err(bad("the endpoint URL holds a control character"));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|_| bad("the endpoint URL is not a URL"))?;
    if parsed.fragment().is_some() {
        return Err(bad("the endpoint URL has a fragment"));
    }
    policy.check_url(&parsed).map_err(|err| match err.code() {
        "egress_scheme_not_allowed" => bad("the endpoint URL must be https"),
        "egress_userinfo_not_allowed" => bad("the endpoint URL must not carry a user name or password"),
        "egress_forbidden_address" => bad("the endpoint URL names a private or reserved address"),
        "egress_port_not_allowed" => bad("the endpoint URL must use the standard https port (443)"),
        _ => bad("the endpoint URL must name a public host (IP addresses, localhost, metadata and private-use names are refused)"),
    })?;
    Ok(parsed.to_string())
}

fn check_event_types(types: &[String]) -> Result<Vec<String>, TenancyError> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let t = t.trim();
        if t != ALL_EVENTS && !EVENT_TYPES.contains(&t) {
            return Err(TenancyError::Rejected {
                code: "unknown_event_type",
                message: "an event type this server does not emit (see EVENT_TYPES, or \"*\")",
            });
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    if out.is_empty() {
        return Err(TenancyError::Rejected {
            code: "unknown_event_type",
            message: "subscribe to at least one event type",
        });
    }
    Ok(out)
}

fn check_description(description: &str) -> Result<String, TenancyError> {
    let description = description.trim();
    if description.chars().count() > 500 || description.chars().any(char::is_control) {
        return Err(TenancyError::Invalid("description is at most 500 characters without control characters"));
    }
    Ok(description.to_owned())
}

const COLUMNS: &str = "e.id, e.tenant_id, e.url, e.description, e.event_types, e.overlap_ends, e.created_at,
    COALESCE(h.consecutive_failures, 0) AS consecutive_failures, h.failing_since, h.last_success_at,
    h.disabled_at, h.disabled_reason";
const FROM: &str = "webhook_endpoints e LEFT JOIN webhook_endpoint_health h ON h.endpoint_id = e.id";

fn from_row(row: &QueryResult, now: DateTime<Utc>) -> Result<Endpoint, TenancyError> {
    let id: Uuid = row.try_get("", "id")?;
    let types: String = row.try_get("", "event_types")?;
    let expiries: String = row.try_get("", "overlap_ends")?;
    let expiries: Vec<DateTime<Utc>> = serde_json::from_str(&expiries)
        .map_err(|_| TenancyError::Internal("endpoint secret expiries are not JSON".into()))?;
    Ok(Endpoint {
        id,
        tenant: TenantId(row.try_get("", "tenant_id")?),
        url: row.try_get("", "url")?,
        description: row.try_get("", "description")?,
        event_types: serde_json::from_str(&types)
            .map_err(|_| TenancyError::Internal("endpoint event types are not JSON".into()))?,
        // The current secret, and each rotated-out one until its expiry.
        signing_secrets: 1 + expiries.iter().filter(|at| **at > now).count(),
        consecutive_failures: row.try_get("", "consecutive_failures")?,
        failing_since: row.try_get("", "failing_since")?,
        last_success_at: row.try_get("", "last_success_at")?,
        disabled_at: row.try_get("", "disabled_at")?,
        disabled_reason: row.try_get("", "disabled_reason")?,
        created_at: row.try_get("", "created_at")?,
    })
}

/// Registers an endpoint (`webhooks.manage`) with a new `whsec_` secret, returned once: it is
/// stored only sealed and never shown again (rotate to get a new one).
pub async fn create(
    tx: &TenantTx,
    vault: &Vault,
    policy: &egress::EgressPolicy,
    url: &str,
    description: &str,
    event_types: &[String],
    now: DateTime<Utc>,
) -> Result<(Endpoint, SecretString), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let url = check_url(policy, url)?;
    let description = check_description(description)?;
    let event_types = check_event_types(event_types)?;
    // The cap is counted, then kept: concurrent registrations in one workspace take turns, so
    // each counts the endpoints made before it.
    tx.take_turn("webhook_endpoints").await?;
    let count =
        tx.conn()
            .query_one(tx.statement(
                "SELECT COUNT(*) AS n FROM webhook_endpoints WHERE tenant_id = $1",
                vec![tx.tenant().0.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
    if count >= MAX_ENDPOINTS {
        return Err(TenancyError::Rejected {
            code: "too_many_endpoints",
            message: "a workspace has at most 20 endpoints",
        });
    }
    let id = Uuid::new_v4();
    let secret = standard::Secret::generate(&mut rand::rngs::OsRng).to_whsec();
    let stored = [StoredSecret { secret: secret.expose_secret().to_owned(), expires_at: None }];
    let (sealed, version) = seal_secrets(tx, vault, id, &stored, now).await?;
    let types_json = serde_json::to_string(&event_types).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secrets_ciphertext, ciphertext_version, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            vec![
                id.into(),
                tx.tenant().0.into(),
                url.clone().into(),
                description.into(),
                types_json.into(),
                sealed.into(),
                secrets::version_value(version),
                tx.user().0.into(),
                now.into(),
            ],
        ))
        .await?;
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_endpoint_health (endpoint_id, tenant_id) VALUES ($1, $2)",
            vec![id.into(), tx.tenant().0.into()],
        ))
        .await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_endpoint.created",
        serde_json::json!({ "endpoint_id": id, "origin": origin(&url), "event_types": event_types }),
        now,
    )
    .await?;
    Ok((get(tx, id, now).await?, secret))
}

/// Scheme, host and port of a URL: what audit events and mail name (a path may hold a token).
fn origin(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

/// The workspace's endpoints (`webhooks.manage`).
pub async fn list(tx: &TenantTx, now: DateTime<Utc>) -> Result<Vec<Endpoint>, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.tenant_id = $1 ORDER BY e.created_at, e.id"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(|row| from_row(row, now)).collect()
}

/// One endpoint (`webhooks.manage`).
pub async fn get(tx: &TenantTx, id: Uuid, now: DateTime<Utc>) -> Result<Endpoint, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(tx.statement(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.tenant_id = $1 AND e.id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row, now)
}

/// Changes an endpoint (`webhooks.manage`). Re-enabling forgets its failures.
pub async fn update(
    tx: &TenantTx,
    policy: &egress::EgressPolicy,
    id: Uuid,
    change: EndpointChange,
    now: DateTime<Utc>,
) -> Result<Endpoint, TenancyError> {
    let before = get(tx, id, now).await?;
    let url = change.url.as_deref().map(|u| check_url(policy, u)).transpose()?;
    let description = change.description.as_deref().map(check_description).transpose()?;
    let types = change.event_types.as_deref().map(check_event_types).transpose()?;
    let types_json =
        types.as_ref().map(serde_json::to_string).transpose().map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(tx.statement(
            "UPDATE webhook_endpoints SET url = COALESCE($1, url), description = COALESCE($2, description),
                    event_types = COALESCE($3, event_types), updated_at = $4
              WHERE tenant_id = $5 AND id = $6",
            vec![
                url.clone().into(),
                description.into(),
                types_json.into(),
                now.into(),
                tx.tenant().0.into(),
                id.into(),
            ],
        ))
        .await?;
    match change.enabled {
        Some(true) if before.disabled_at.is_some() => {
            set_health(
                tx,
                id,
                "consecutive_failures = 0, failing_since = NULL, disabled_at = NULL, disabled_reason = NULL",
                vec![],
            )
            .await?;
            tx.record(
                audit::Category::Webhook,
                "webhook_endpoint.enabled",
                serde_json::json!({ "endpoint_id": id }),
                now,
            )
            .await?;
        }
        Some(false) if before.disabled_at.is_none() => {
            disable(tx, id, "disabled by an administrator", now).await?;
        }
        _ => {}
    }
    tx.record(
        audit::Category::Webhook,
        "webhook_endpoint.updated",
        serde_json::json!({
            "endpoint_id": id,
            "origin": url.as_deref().map(origin),
            "event_types": types,
        }),
        now,
    )
    .await?;
    get(tx, id, now).await
}

async fn set_health(
    tx: &TenantTx,
    id: Uuid,
    assignments: &str,
    mut values: Vec<sea_orm::Value>,
) -> Result<(), TenancyError> {
    let n = values.len();
    values.push(tx.tenant().0.into());
    values.push(id.into());
    tx.conn()
        .execute(tx.statement(
            &format!(
                "UPDATE webhook_endpoint_health SET {assignments} WHERE tenant_id = ${} AND endpoint_id = ${}",
                n + 1,
                n + 2
            ),
            values,
        ))
        .await?;
    Ok(())
}

async fn disable(tx: &TenantTx, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<(), TenancyError> {
    set_health(tx, id, "disabled_at = $1, disabled_reason = $2", vec![now.into(), reason.into()]).await?;
    // Queued attempts find the endpoint disabled and skip; nothing else is sent.
    tx.record(
        audit::Category::Webhook,
        "webhook_endpoint.disabled",
        serde_json::json!({ "endpoint_id": id, "reason": reason }),
        now,
    )
    .await
}

/// Deletes an endpoint with its deliveries and attempts (`webhooks.manage`).
pub async fn delete(tx: &TenantTx, id: Uuid, now: DateTime<Utc>) -> Result<(), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let done = tx
        .conn()
        .execute(tx.statement(
            "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    tx.record(audit::Category::Webhook, "webhook_endpoint.deleted", serde_json::json!({ "endpoint_id": id }), now).await
}

/// Rotates the signing secret (`webhooks.manage`): a new `whsec_` secret, returned once, signs
/// from now on; the previous ones keep signing beside it for [`SECRET_OVERLAP_SECS`] (never
/// longer than they already would), so a receiver can switch secrets without dropping a
/// delivery. Returns the new secret and when the previous one stops signing.
pub async fn rotate_secret(
    tx: &TenantTx,
    vault: &Vault,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(SecretString, DateTime<Utc>), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let row = tx
        .conn()
        .query_one(tx.statement(
            "SELECT secrets_ciphertext FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    let sealed: Vec<u8> = row.try_get("", "secrets_ciphertext")?;
    let overlap_end = now + Duration::seconds(SECRET_OVERLAP_SECS);
    let mut list = open_secrets(tx, vault, id, &sealed).await?;
    list.retain(|s| s.expires_at.is_none_or(|at| at > now));
    for s in &mut list {
        s.expires_at = Some(s.expires_at.map_or(overlap_end, |at| at.min(overlap_end)));
    }
    let secret = standard::Secret::generate(&mut rand::rngs::OsRng).to_whsec();
    list.insert(0, StoredSecret { secret: secret.expose_secret().to_owned(), expires_at: None });
    // Rotating again and again within the overlap keeps only the newest few signing.
    list.truncate(MAX_SIGNING_SECRETS);
    let (sealed, version) = seal_secrets(tx, vault, id, &list, now).await?;
    let expiries: Vec<DateTime<Utc>> = list.iter().filter_map(|s| s.expires_at).collect();
    let expiries = serde_json::to_string(&expiries).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(tx.statement(
            "UPDATE webhook_endpoints SET secrets_ciphertext = $1, ciphertext_version = $2, overlap_ends = $3, updated_at = $4
              WHERE tenant_id = $5 AND id = $6",
            vec![
                sealed.into(),
                secrets::version_value(version),
                expiries.into(),
                now.into(),
                tx.tenant().0.into(),
                id.into(),
            ],
        ))
        .await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_endpoint.secret_rotated",
        serde_json::json!({ "endpoint_id": id, "previous_signs_until": overlap_end }),
        now,
    )
    .await?;
    Ok((secret, overlap_end))
}

/// The delivery's body: `{type, timestamp, data}` as Standard Webhooks recommends.
fn event_body(event_type: &str, data: &serde_json::Value, now: DateTime<Utc>) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": data,
    })
    .to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct ActionPayload {
    tenant: Uuid,
    delivery: Uuid,
    cause: String,
}

async fn enqueue_attempt(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    delivery: Uuid,
    cause: &str,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let payload = serde_json::to_value(ActionPayload { tenant: tx.tenant().0, delivery, cause: cause.to_owned() })
        .map_err(|e| TenancyError::Internal(e.to_string()))?;
    scheduler::enqueue(tx.conn(), outbox_key, DELIVER_ACTION, &payload, run_at, now)
        .await
        .map_err(|e| TenancyError::Internal(e.to_string()))?;
    Ok(())
}

async fn insert_delivery(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    endpoint: Uuid,
    event_type: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, TenancyError> {
    let id = Uuid::new_v4();
    tx.conn()
        .execute(tx.statement(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
            vec![id.into(), tx.tenant().0.into(), endpoint.into(), event_type.into(), body.into(), now.into()],
        ))
        .await?;
    enqueue_attempt(tx, outbox_key, id, "scheduled", now, now).await?;
    Ok(id)
}

/// Emits `event_type` with `data` to every enabled endpoint of the transaction's workspace that
/// subscribes to it: one delivery and one outbox action each, in this transaction, so they exist
/// exactly when the change they report commits. Returns the deliveries' ids.
pub async fn emit(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    event_type: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, TenancyError> {
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!("SELECT e.id, e.event_types FROM {FROM} WHERE e.tenant_id = $1 AND h.disabled_at IS NULL"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    let body = event_body(event_type, data, now);
    let mut out = Vec::new();
    for row in rows {
        let types: String = row.try_get("", "event_types")?;
        let types: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
        if types.iter().any(|t| t == event_type || t == ALL_EVENTS) {
            out.push(insert_delivery(tx, outbox_key, row.try_get("", "id")?, event_type, &body, now).await?);
        }
    }
    Ok(out)
}

/// Sends the test event to one endpoint, subscribed or not (`webhooks.manage`).
pub async fn send_test(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Delivery, TenancyError> {
    let endpoint = get(tx, id, now).await?;
    if endpoint.disabled_at.is_some() {
        return Err(TenancyError::StateConflict {
            code: "endpoint_disabled",
            message: "the endpoint is disabled; enable it first",
        });
    }
    let body = event_body(TEST_EVENT, &serde_json::json!({ "endpoint_id": id }), now);
    let delivery = insert_delivery(tx, outbox_key, id, TEST_EVENT, &body, now).await?;
    get_delivery(tx, delivery).await
}

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, event_type, status, attempts, next_attempt_at, last_attempt_at, delivered_at, created_at";

fn delivery_from_row(row: &QueryResult) -> Result<Delivery, TenancyError> {
    let id: Uuid = row.try_get("", "id")?;
    Ok(Delivery {
        id,
        endpoint_id: row.try_get("", "endpoint_id")?,
        message_id: message_id(id),
        event_type: row.try_get("", "event_type")?,
        status: row.try_get("", "status")?,
        attempts: row.try_get("", "attempts")?,
        next_attempt_at: row.try_get("", "next_attempt_at")?,
        last_attempt_at: row.try_get("", "last_attempt_at")?,
        delivered_at: row.try_get("", "delivered_at")?,
        created_at: row.try_get("", "created_at")?,
    })
}

async fn get_delivery(tx: &TenantTx, id: Uuid) -> Result<Delivery, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    delivery_from_row(&row)
}

/// An endpoint's newest `limit` deliveries (1 to 200), newest first (`webhooks.manage`).
pub async fn deliveries(tx: &TenantTx, endpoint: Uuid, limit: u64) -> Result<Vec<Delivery>, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let exists = tx
        .conn()
        .query_one(tx.statement(
            "SELECT 1 AS one FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
            vec![tx.tenant().0.into(), endpoint.into()],
        ))
        .await?;
    if exists.is_none() {
        return Err(TenancyError::NotFound);
    }
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2
                  ORDER BY created_at DESC, id LIMIT $3"
            ),
            vec![tx.tenant().0.into(), endpoint.into(), i64::try_from(limit.clamp(1, 200)).unwrap_or(200).into()],
        ))
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// A delivery and its attempts, oldest first (`webhooks.manage`).
pub async fn attempts(tx: &TenantTx, delivery: Uuid) -> Result<(Delivery, Vec<Attempt>), TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let found = get_delivery(tx, delivery).await?;
    let rows = tx
        .conn()
        .query_all(tx.statement(
            "SELECT attempt, cause, started_at, duration_ms, response_status, outcome FROM webhook_attempts
              WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt",
            vec![tx.tenant().0.into(), delivery.into()],
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(Attempt {
                attempt: r.try_get("", "attempt")?,
                cause: r.try_get("", "cause")?,
                started_at: r.try_get("", "started_at")?,
                duration_ms: r.try_get("", "duration_ms")?,
                response_status: r.try_get("", "response_status")?,
                outcome: r.try_get("", "outcome")?,
            })
        })
        .collect::<Result<Vec<_>, TenancyError>>()?;
    Ok((found, list))
}

/// A replay of a delivery that is still pending (being retried, or already queued again).
fn still_pending() -> TenancyError {
    TenancyError::StateConflict {
        code: "delivery_pending",
        message: "the delivery is still being retried on its schedule",
    }
}

/// Sends a delivery again, once, now, with the same `webhook-id` and body (`webhooks.manage`). A
/// delivery still on its schedule cannot be replayed (it is being retried); neither can one whose
/// endpoint is disabled.
pub async fn replay(
    tx: &TenantTx,
    outbox_key: &KeyMaterial,
    delivery: Uuid,
    now: DateTime<Utc>,
) -> Result<Delivery, TenancyError> {
    tx.require_member(&Permission::WEBHOOKS_MANAGE)?;
    let found = get_delivery(tx, delivery).await?;
    if found.status == "pending" {
        return Err(still_pending());
    }
    let disabled = tx
        .conn()
        .query_one(tx.statement(
            "SELECT disabled_at FROM webhook_endpoint_health WHERE tenant_id = $1 AND endpoint_id = $2",
            vec![tx.tenant().0.into(), found.endpoint_id.into()],
        ))
        .await?
        .map(|r| r.try_get::<Option<DateTime<Utc>>>("", "disabled_at"))
        .transpose()?
        .flatten();
    if disabled.is_some() {
        return Err(TenancyError::StateConflict {
            code: "endpoint_disabled",
            message: "the endpoint is disabled; enable it first",
        });
    }
    // Only if it is not pending yet: of concurrent replays one queues the attempt, the others
    // find it pending as a replay after it would, and the receiver gets the message once more.
    let queued = tx
        .conn()
        .execute(tx.statement(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1
              WHERE tenant_id = $2 AND id = $3 AND status <> 'pending'",
            vec![now.into(), tx.tenant().0.into(), delivery.into()],
        ))
        .await?;
    if queued.rows_affected() == 0 {
        return Err(still_pending());
    }
    enqueue_attempt(tx, outbox_key, delivery, "replay", now, now).await?;
    tx.record(
        audit::Category::Webhook,
        "webhook_delivery.replayed",
        serde_json::json!({ "delivery_id": delivery, "endpoint_id": found.endpoint_id }),
        now,
    )
    .await?;
    get_delivery(tx, delivery).await
}

/// Runs delivery attempts for the outbox (register [`Deliverer::deliver`] for
/// [`DELIVER_ACTION`]).
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
    delivery: Uuid,
    cause: String,
    endpoint: Uuid,
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
        let tenant = TenantId(payload.tenant);
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

    async fn prepare(&self, tx: &TenantTx, delivery: Uuid, cause: &str) -> Result<Prepared, TenancyError> {
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
        let endpoint: Uuid = row.try_get("", "endpoint_id")?;
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
        let next = retry.then(|| {
            let wait = RETRY_SCHEDULE_SECS[usize::try_from(attempts).unwrap_or(0).min(RETRY_SCHEDULE_SECS.len() - 1)];
            let wait = outcome.retry_after.map_or(wait, |r| wait.max(r.min(MAX_RETRY_AFTER_SECS)));
            now + Duration::seconds(wait)
        });
        let status = if outcome.ok() {
            "delivered"
        } else if next.is_some() {
            "pending"
        } else {
            "failed"
        };
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
        if updated.rows_affected() == 0 {
            tracing::warn!(delivery.id = %delivery, attempt, "delivery attempt was already recorded; this outcome is dropped");
            return Ok(());
        }
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
        if let Some(at) = next {
            enqueue_attempt(tx, &self.outbox_key, delivery, "scheduled", at, now).await?;
            tracing::info!(delivery.id = %delivery, attempt, code = %outcome.code, next_attempt_at = %at, "webhook delivery failed; retry scheduled");
            return Ok(());
        }
        let reason = if outcome.status == Some(410) {
            Some("the endpoint answered 410 Gone".to_owned())
        } else if cause == "scheduled" {
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
        };
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
        endpoint: Uuid,
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
