//! Inbound webhooks: the public delivery endpoint (signature checked before anything runs) and
//! the administration of a workspace's sources (`webhooks.manage`). Secrets are write-only.

use crate::codes::ErrorCode;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ids::{SourceId, WorkspaceId};
use poem::Request;
use poem_openapi::{
    param::Path,
    payload::{Binary, Json},
    Enum, Object, OpenApi,
};
use secrecy::SecretString;
use webhooks::inbound::{self, Kind, ReceiveError, Received, Settings, SourceSecrets};

use super::scope::scoped;
use super::{ApiTags, Created, NoContent};
use crate::{error::ApiError, principal::WorkspaceAuth, AppState};

pub(crate) struct WebhooksApi;

/// A signing scheme.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
enum KindName {
    /// `Stripe-Signature: t=…,v1=…` (HMAC-SHA256, 300 s tolerance).
    Stripe,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`, `whsec_` secrets).
    Standard,
    /// `X-Twilio-Signature` (HMAC-SHA1 over the configured URL and the parameters).
    Twilio,
    /// HMAC-SHA256 in a configurable header (hex or base64, optional prefix and timestamp).
    Generic,
}

impl From<KindName> for Kind {
    fn from(k: KindName) -> Kind {
        match k {
            KindName::Stripe => Kind::Stripe,
            KindName::Standard => Kind::Standard,
            KindName::Twilio => Kind::Twilio,
            KindName::Generic => Kind::Generic,
        }
    }
}

impl From<Kind> for KindName {
    fn from(k: Kind) -> KindName {
        match k {
            Kind::Stripe => KindName::Stripe,
            Kind::Standard => KindName::Standard,
            Kind::Twilio => KindName::Twilio,
            Kind::Generic => KindName::Generic,
        }
    }
}

/// Non-secret settings of a source.
#[derive(Debug, Clone, Object, Default)]
struct SettingsBody {
    /// Twilio: the exact https URL configured at Twilio.
    url: Option<String>,
    /// Generic: the signature header (1 to 64 letters, digits, `-` and `_`).
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]*$"))]
    signature_header: Option<String>,
    /// Generic: `hex` (default) or `base64`.
    #[oai(validator(pattern = r"^(?:hex|base64)$"))]
    encoding: Option<String>,
    /// Generic: a prefix before the signature, such as `sha256=`: at most 32 bytes, without
    /// control characters; the schema states 32 characters of ASCII, or 8 of any kind (a
    /// character takes up to 4 bytes).
    #[oai(validator(max_length = 32, pattern = r"^(?:[\x20-\x7E]*|[^\x00-\x1F\x7F-\x9F]{0,8})$"))]
    prefix: Option<String>,
    /// Generic: a unix-timestamp header, signed as `{timestamp}.{body}`, 300 s tolerance. The
    /// event id is the SHA-256 of what is signed (timestamp and body). 1 to 64 letters, digits,
    /// `-` and `_`.
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]*$"))]
    timestamp_header: Option<String>,
}

impl From<SettingsBody> for Settings {
    fn from(s: SettingsBody) -> Settings {
        Settings {
            url: s.url,
            signature_header: s.signature_header,
            encoding: s.encoding,
            prefix: s.prefix,
            timestamp_header: s.timestamp_header,
        }
    }
}

impl From<Settings> for SettingsBody {
    fn from(s: Settings) -> SettingsBody {
        SettingsBody {
            url: s.url,
            signature_header: s.signature_header,
            encoding: s.encoding,
            prefix: s.prefix,
            timestamp_header: s.timestamp_header,
        }
    }
}

/// A source, without its secrets.
#[derive(Debug, Object)]
struct SourceBody {
    id: SourceId,
    workspace_id: WorkspaceId,
    kind: KindName,
    name: String,
    settings: SettingsBody,
    /// Where the sender delivers: `POST` this path on the public URL.
    delivery_path: String,
    /// Secrets configured (0: every delivery is refused with 500 until one is set).
    secrets: u64,
    accepted: i64,
    signature_failures: i64,
    last_failure_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<inbound::Source> for SourceBody {
    fn from(s: inbound::Source) -> Self {
        SourceBody {
            delivery_path: format!("/api/v1/inbound/{}/{}", s.tenant, s.id),
            id: s.id,
            workspace_id: s.tenant,
            kind: s.kind.into(),
            name: s.name,
            settings: s.settings.into(),
            secrets: s.secrets as u64,
            accepted: s.accepted,
            signature_failures: s.signature_failures,
            last_failure_at: s.last_failure_at,
            created_at: s.created_at,
        }
    }
}

/// A new source.
#[derive(Object)]
#[oai(example)]
struct NewSourceBody {
    kind: KindName,
    /// 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
    #[oai(default)]
    settings: SettingsBody,
    /// 1 to 5 signing secrets (write-only), newest first; may be set later; each one the scheme can use and at
    /// most 1024 bytes; the schema states 1024 characters of ASCII, or 256 of any kind (a
    /// character takes up to 4 bytes).
    #[oai(
        write_only,
        validator(min_items = 1, max_items = 5, max_length = 1024, pattern = r"^(?:[\x00-\x7F]*|[\s\S]{0,256})$")
    )]
    secrets: Option<Vec<String>>,
}

impl poem_openapi::types::Example for NewSourceBody {
    fn example() -> Self {
        NewSourceBody {
            kind: KindName::Stripe,
            name: "Stripe payments".into(),
            settings: SettingsBody::default(),
            secrets: Some(vec!["whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH".into()]),
        }
    }
}

impl std::fmt::Debug for NewSourceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never print.
        f.debug_struct("NewSourceBody")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// New secrets for a source (write-only).
#[derive(Object)]
#[oai(example)]
struct SecretsBody {
    /// 1 to 5 signing secrets (write-only), newest first, each one the scheme can use and at
    /// most 1024 bytes; the schema states 1024 characters of ASCII, or 256 of any kind (a
    /// character takes up to 4 bytes).
    #[oai(
        write_only,
        validator(min_items = 1, max_items = 5, max_length = 1024, pattern = r"^(?:[\x00-\x7F]*|[\s\S]{0,256})$")
    )]
    secrets: Vec<String>,
    /// Keep the secrets already configured after these (while the sender rotates).
    #[oai(default)]
    keep_previous: bool,
}

impl poem_openapi::types::Example for SecretsBody {
    fn example() -> Self {
        SecretsBody { secrets: vec!["whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH".into()], keep_previous: true }
    }
}

impl std::fmt::Debug for SecretsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never print.
        f.debug_struct("SecretsBody").field("keep_previous", &self.keep_previous).finish_non_exhaustive()
    }
}

/// The answer to a delivery.
#[derive(Debug, Object)]
struct DeliveryBody {
    /// `accepted`, or `duplicate` for an event already processed.
    status: String,
    event_id: String,
}

fn secrets_of(list: Vec<String>) -> SourceSecrets {
    SourceSecrets(list.into_iter().map(SecretString::from).collect())
}

#[OpenApi(prefix_path = "/api/v1")]
impl WebhooksApi {
    /// Receive a webhook delivery (public: the signature is the authentication). Verified before
    /// anything runs: a missing, malformed, stale, future or wrong signature is 401; a source
    /// without secrets is 500 and processes nothing. An event already received is acknowledged
    /// with 200 `duplicate` and not processed again.
    #[oai(
        path = "/inbound/:workspace_id/:source_id",
        method = "post",
        operation_id = "receiveWebhook",
        tag = "ApiTags::Webhooks"
    )]
    async fn receive(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        workspace_id: Path<WorkspaceId>,
        source_id: Path<SourceId>,
        body: Binary<Vec<u8>>,
    ) -> poem::Result<Json<DeliveryBody>> {
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
            .collect();
        // The raw query string: Twilio signs the URL it requested, query included.
        let delivery = inbound::Delivery { headers, query: req.uri().query().map(str::to_owned), body: body.0 };
        let tenant = workspace_id.0;
        match state.inbox.receive(&state.db, &state.vault, tenant, source_id.0, delivery, state.auth.now()).await {
            Ok((_, Received::Accepted { event_id })) => Ok(Json(DeliveryBody { status: "accepted".into(), event_id })),
            Ok((_, Received::Duplicate { event_id })) => {
                Ok(Json(DeliveryBody { status: "duplicate".into(), event_id }))
            }
            Err(ReceiveError::NotFound) => Err(ApiError::new(ErrorCode::NotFound, "Not found.").into()),
            Err(ReceiveError::Verify(_, err)) if err.is_configuration_error() => {
                tracing::error!(workspace.id = %workspace_id.0, source.id = %source_id.0, "webhook source has no secret configured: delivery refused");
                let code = crate::error::domain_code(err.code(), ErrorCode::WebhookSecretMissing);
                Err(ApiError::new(code, "This source has no signing secret configured.").into())
            }
            Err(ReceiveError::Verify(kind, err)) => {
                metrics::counter!(webhooks::SIGNATURE_FAILURES_METRIC, "source" => kind.as_str()).increment(1);
                tracing::warn!(workspace.id = %workspace_id.0, source.id = %source_id.0, code = err.code(), "webhook signature refused");
                Err(ApiError::new(
                    crate::error::domain_code(err.code(), ErrorCode::WebhookSignatureMismatch),
                    err.to_string(),
                )
                .into())
            }
            Err(ReceiveError::Tenancy(err)) => Err(ApiError::from(err).into()),
        }
    }

    /// The workspace's webhook sources (`webhooks.manage`), without secrets.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-sources",
        method = "get",
        operation_id = "listWebhookSources",
        tag = "ApiTags::Webhooks"
    )]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<SourceBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| inbound::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Add a webhook source (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-sources",
        method = "post",
        operation_id = "createWebhookSource",
        tag = "ApiTags::Webhooks"
    )]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewSourceBody>,
    ) -> poem::Result<Created<SourceBody>> {
        let Json(body) = body;
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            inbound::create(
                tx,
                &state.vault,
                body.kind.into(),
                &body.name,
                body.settings.clone().into(),
                body.secrets.clone().map(secrets_of),
                state.auth.now(),
            )
            .await
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// Replace a source's secrets (`webhooks.manage`), optionally keeping the previous ones.
    #[oai(
        path = "/workspaces/:workspace_id/webhook-sources/:source_id/secrets",
        method = "put",
        operation_id = "setWebhookSourceSecrets",
        tag = "ApiTags::Webhooks"
    )]
    async fn set_secrets(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        source_id: Path<SourceId>,
        body: Json<SecretsBody>,
    ) -> poem::Result<Json<SourceBody>> {
        let Json(body) = body;
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            inbound::set_secrets(
                tx,
                &state.vault,
                source_id.0,
                secrets_of(body.secrets.clone()),
                body.keep_previous,
                state.auth.now(),
            )
            .await
        });
        Ok(Json(result?.into()))
    }

    /// Delete a webhook source and its inbox (`webhooks.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/webhook-sources/:source_id",
        method = "delete",
        operation_id = "deleteWebhookSource",
        tag = "ApiTags::Webhooks"
    )]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        source_id: Path<SourceId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            inbound::delete(tx, source_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }
}
