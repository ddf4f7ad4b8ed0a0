//! Outbound webhooks: a workspace's endpoints (`webhooks.manage`), their deliveries and attempts,
//! test events and replays. Signing secrets are shown once, when created or rotated.

use chrono::{DateTime, Utc};
use ids::{DeliveryId, EndpointId, WorkspaceId};
use poem::Request;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    Object, OpenApi,
};
use secrecy::ExposeSecret;
use webhooks::outbound::{self, EndpointChange};

use super::scope::scoped;
use super::{ApiTags, Created, NoContent};
use crate::{error::OrApiError, principal::WorkspaceAuth, AppState};

pub(crate) struct WebhookEndpointsApi;

/// An endpoint, without its secrets.
#[derive(Debug, Object)]
struct WebhookEndpointBody {
    id: EndpointId,
    workspace_id: WorkspaceId,
    url: String,
    description: String,
    /// Subscribed event types, or `["*"]` for every type.
    event_types: Vec<String>,
    /// Secrets signing each delivery now: 2 while a rotated-out secret overlaps (24 h).
    signing_secrets: u64,
    /// Failed attempts in a row.
    consecutive_failures: i32,
    failing_since: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    /// False once disabled (by repeated failure, a 410 answer or an administrator).
    enabled: bool,
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<outbound::Endpoint> for WebhookEndpointBody {
    fn from(e: outbound::Endpoint) -> Self {
        WebhookEndpointBody {
            id: e.id,
            workspace_id: e.tenant,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            signing_secrets: e.signing_secrets as u64,
            consecutive_failures: e.consecutive_failures,
            failing_since: e.failing_since,
            last_success_at: e.last_success_at,
            enabled: e.disabled_at.is_none(),
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
            created_at: e.created_at,
        }
    }
}

/// A new endpoint.
#[derive(Debug, Object)]
#[oai(example)]
struct NewWebhookEndpointBody {
    /// An https URL on a public host (IP addresses, localhost and private names are refused; every
    /// delivery checks the resolved address again).
    /// At most 2048 bytes, without control characters; the schema states 2048 characters of
    /// ASCII, or 512 characters of any kind (a character takes up to 4 bytes).
    #[oai(validator(max_length = 2048, pattern = r"^(?:[\x20-\x7E]*|[^\x00-\x1F\x7F-\x9F]{0,512})$"))]
    url: String,
    /// At most 500 characters, without control characters.
    #[oai(default, validator(max_length = 500, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"))]
    description: String,
    /// Event types to receive (`project.created`, `project.updated`, `project.deleted`,
    /// `webhook.test`), or `["*"]`; at least one.
    #[oai(validator(
        min_items = 1,
        pattern = r"^(?:\*|project\.created|project\.updated|project\.deleted|webhook\.test)$"
    ))]
    event_types: Vec<String>,
}

impl poem_openapi::types::Example for NewWebhookEndpointBody {
    fn example() -> Self {
        NewWebhookEndpointBody {
            url: "https://hooks.example.com/rampart".into(),
            description: "Project changes for the CRM sync.".into(),
            event_types: vec!["project.created".into(), "project.updated".into()],
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Object)]
struct WebhookEndpointWithSecretBody {
    endpoint: WebhookEndpointBody,
    /// The Standard Webhooks secret (`whsec_…`): verify deliveries with it. Not shown again.
    #[oai(read_only)]
    secret: String,
}

impl std::fmt::Debug for WebhookEndpointWithSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never prints.
        f.debug_struct("WebhookEndpointWithSecretBody").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// Changes to an endpoint; absent fields stay.
#[derive(Debug, Object)]
#[oai(example)]
struct WebhookEndpointPatch {
    /// An https URL on a public host.
    /// At most 2048 bytes, without control characters; the schema states 2048 characters of
    /// ASCII, or 512 characters of any kind (a character takes up to 4 bytes).
    #[oai(validator(max_length = 2048, pattern = r"^(?:[\x20-\x7E]*|[^\x00-\x1F\x7F-\x9F]{0,512})$"))]
    url: Option<String>,
    /// At most 500 characters, without control characters.
    #[oai(validator(max_length = 500, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"))]
    description: Option<String>,
    /// At least one event type, or `["*"]`.
    #[oai(validator(
        min_items = 1,
        pattern = r"^(?:\*|project\.created|project\.updated|project\.deleted|webhook\.test)$"
    ))]
    event_types: Option<Vec<String>>,
    /// `true` re-enables a disabled endpoint and forgets its failures; `false` disables it.
    enabled: Option<bool>,
}

impl poem_openapi::types::Example for WebhookEndpointPatch {
    fn example() -> Self {
        WebhookEndpointPatch { url: None, description: None, event_types: None, enabled: Some(true) }
    }
}

/// A new signing secret, shown this once.
#[derive(Object)]
struct RotatedWebhookSecretBody {
    /// The new `whsec_…` secret; it signs every delivery from now on.
    #[oai(read_only)]
    secret: String,
    /// Until then the previous secret signs beside it (a second `v1,` signature).
    previous_signs_until: DateTime<Utc>,
}

impl std::fmt::Debug for RotatedWebhookSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedWebhookSecretBody")
            .field("previous_signs_until", &self.previous_signs_until)
            .finish_non_exhaustive()
    }
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Object)]
struct OutboundDeliveryBody {
    id: DeliveryId,
    endpoint_id: EndpointId,
    /// The `webhook-id` header, the same on every attempt and replay.
    message_id: String,
    event_type: String,
    /// `pending`, `delivered`, `failed` or `skipped` (the endpoint was disabled).
    status: String,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_attempt_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<outbound::Delivery> for OutboundDeliveryBody {
    fn from(d: outbound::Delivery) -> Self {
        OutboundDeliveryBody {
            id: d.id,
            endpoint_id: d.endpoint_id,
            message_id: d.message_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        }
    }
}

/// One attempt at a delivery.
#[derive(Debug, Object)]
struct DeliveryAttemptBody {
    attempt: i32,
    /// `scheduled` or `replay`.
    cause: String,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    response_status: Option<i32>,
    /// `ok`, `http_status` (a non-2xx answer) or an egress code (`egress_timeout`,
    /// `egress_forbidden_address`, `egress_too_many_redirects`, …).
    outcome: String,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Object)]
struct DeliveryAttemptsBody {
    delivery: OutboundDeliveryBody,
    attempts: Vec<DeliveryAttemptBody>,
}

fn policy(state: &AppState) -> egress::EgressPolicy {
    outbound::delivery_policy(&state.egress.exceptions)
}

#[OpenApi(prefix_path = "/api/v1")]
impl WebhookEndpointsApi {
    /// The workspace's webhook endpoints (`webhooks.manage`), without secrets.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints",
        method = "get",
        operation_id = "listWebhookEndpoints",
        tag = "ApiTags::Webhooks"
    )]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<WebhookEndpointBody>>> {
        let result =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| outbound::list(tx, state.auth.now()).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Register a webhook endpoint (`webhooks.manage`). The answer carries its signing secret,
    /// shown this once.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints",
        method = "post",
        operation_id = "createWebhookEndpoint",
        tag = "ApiTags::Webhooks"
    )]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewWebhookEndpointBody>,
    ) -> poem::Result<Created<WebhookEndpointWithSecretBody>> {
        outbound::screen_url(&policy(&state), state.egress.resolver.as_ref(), &body.url).await.api()?;
        let (endpoint, secret) = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let (vault, policy, now) = (&state.vault, &policy(&state), state.auth.now());
            outbound::create(tx, vault, policy, &body.url, &body.description, &body.event_types, now).await
        })?;
        Ok(Created::Created(Json(WebhookEndpointWithSecretBody {
            endpoint: endpoint.into(),
            secret: secret.expose_secret().to_owned(),
        })))
    }

    /// One webhook endpoint (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id",
        method = "get",
        operation_id = "getWebhookEndpoint",
        tag = "ApiTags::Webhooks"
    )]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
    ) -> poem::Result<Json<WebhookEndpointBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::get(tx, endpoint_id.0, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Change a webhook endpoint (`webhooks.manage`): its URL, description, event types, or
    /// whether it is enabled.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id",
        method = "patch",
        operation_id = "updateWebhookEndpoint",
        tag = "ApiTags::Webhooks"
    )]
    async fn update(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
        body: Json<WebhookEndpointPatch>,
    ) -> poem::Result<Json<WebhookEndpointBody>> {
        let Json(body) = body;
        if let Some(url) = &body.url {
            outbound::screen_url(&policy(&state), state.egress.resolver.as_ref(), url).await.api()?;
        }
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let change = EndpointChange {
                url: body.url.clone(),
                description: body.description.clone(),
                event_types: body.event_types.clone(),
                enabled: body.enabled,
            };
            outbound::update(tx, &policy(&state), endpoint_id.0, change, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Delete a webhook endpoint with its deliveries (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id",
        method = "delete",
        operation_id = "deleteWebhookEndpoint",
        tag = "ApiTags::Webhooks"
    )]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::delete(tx, endpoint_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }

    /// Rotate an endpoint's signing secret (`webhooks.manage`): the new secret, shown this once,
    /// signs from now on; the previous one keeps signing beside it for 24 hours.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id/rotate-secret",
        method = "post",
        operation_id = "rotateWebhookEndpointSecret",
        tag = "ApiTags::Webhooks"
    )]
    async fn rotate(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
    ) -> poem::Result<Json<RotatedWebhookSecretBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::rotate_secret(tx, &state.vault, endpoint_id.0, state.auth.now()).await
        });
        let (secret, until) = result?;
        Ok(Json(RotatedWebhookSecretBody { secret: secret.expose_secret().to_owned(), previous_signs_until: until }))
    }

    /// Send a `webhook.test` event to an endpoint now (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id/test",
        method = "post",
        operation_id = "testWebhookEndpoint",
        tag = "ApiTags::Webhooks"
    )]
    async fn test(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
    ) -> poem::Result<Created<OutboundDeliveryBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::send_test(tx, &state.keyring.vault_kek, endpoint_id.0, state.auth.now()).await
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// An endpoint's newest deliveries (`webhooks.manage`), newest first.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-endpoints/:endpoint_id/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries",
        tag = "ApiTags::Webhooks"
    )]
    async fn deliveries(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        endpoint_id: Path<EndpointId>,
        /// 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<Vec<OutboundDeliveryBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::deliveries(tx, endpoint_id.0, limit.0.unwrap_or(50)).await
        });
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// A delivery and every attempt at it (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-deliveries/:delivery_id",
        method = "get",
        operation_id = "getWebhookDelivery",
        tag = "ApiTags::Webhooks"
    )]
    async fn attempts(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        delivery_id: Path<DeliveryId>,
    ) -> poem::Result<Json<DeliveryAttemptsBody>> {
        let result =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| outbound::attempts(tx, delivery_id.0).await);
        let (delivery, attempts) = result?;
        Ok(Json(DeliveryAttemptsBody {
            delivery: delivery.into(),
            attempts: attempts
                .into_iter()
                .map(|a| DeliveryAttemptBody {
                    attempt: a.attempt,
                    cause: a.cause,
                    started_at: a.started_at,
                    duration_ms: a.duration_ms,
                    response_status: a.response_status,
                    outcome: a.outcome,
                })
                .collect(),
        }))
    }

    /// Send a delivery again, once, with the same `webhook-id` and body (`webhooks.manage`).
    /// 409 `delivery_pending` while it is still on its retry schedule, `endpoint_disabled` while
    /// its endpoint is disabled.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-deliveries/:delivery_id/replay",
        method = "post",
        operation_id = "replayWebhookDelivery",
        tag = "ApiTags::Webhooks"
    )]
    async fn replay(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        delivery_id: Path<DeliveryId>,
    ) -> poem::Result<Json<OutboundDeliveryBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            outbound::replay(tx, &state.keyring.vault_kek, delivery_id.0, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }
}
