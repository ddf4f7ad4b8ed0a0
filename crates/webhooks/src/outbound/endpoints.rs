//! A workspace's endpoints: registering, listing, changing, disabling and deleting them, and their
//! health (failures counted since the last success).

use chrono::{DateTime, Utc};
use crypto_vault::Vault;
use ids::{EndpointId, WorkspaceId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use secrecy::{ExposeSecret, SecretString};
use tenancy::{secrets, TenancyError, TenantTx};

use super::screen::check_url;
use super::secrets::{seal_secrets, StoredSecret};
use crate::standard;

/// Endpoints a workspace may register.
pub const MAX_ENDPOINTS: i64 = 20;

/// Event types an endpoint can subscribe to; [`ALL_EVENTS`] subscribes to every one.
pub const EVENT_TYPES: &[&str] = &["project.created", "project.updated", "project.deleted", "webhook.test"];

/// The subscription to every event type.
pub const ALL_EVENTS: &str = "*";

/// An endpoint as its workspace's administrators see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant: WorkspaceId,
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
pub(super) const FROM: &str = "webhook_endpoints e LEFT JOIN webhook_endpoint_health h ON h.endpoint_id = e.id";

fn from_row(row: &QueryResult, now: DateTime<Utc>) -> Result<Endpoint, TenancyError> {
    let id: EndpointId = row.try_get("", "id")?;
    let types: String = row.try_get("", "event_types")?;
    let expiries: String = row.try_get("", "overlap_ends")?;
    let expiries: Vec<DateTime<Utc>> = serde_json::from_str(&expiries)
        .map_err(|_| TenancyError::Internal("endpoint secret expiries are not JSON".into()))?;
    Ok(Endpoint {
        id,
        tenant: row.try_get("", "tenant_id")?,
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
    let id = EndpointId::new_random();
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
pub(super) fn origin(url: &str) -> String {
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
pub async fn get(tx: &TenantTx, id: EndpointId, now: DateTime<Utc>) -> Result<Endpoint, TenancyError> {
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
    id: EndpointId,
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

pub(super) async fn set_health(
    tx: &TenantTx,
    id: EndpointId,
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

pub(super) async fn disable(
    tx: &TenantTx,
    id: EndpointId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
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
pub async fn delete(tx: &TenantTx, id: EndpointId, now: DateTime<Utc>) -> Result<(), TenancyError> {
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
