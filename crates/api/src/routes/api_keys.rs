//! API keys of a workspace (`api_keys.manage`): created with a name, scopes, an optional expiry
//! and caps, shown once; listed by prefix and last use; revoked at once. Keys cannot manage keys:
//! these routes take a user's credentials only.

use chrono::{DateTime, Utc};
use ids::{ApiKeyId, UserId, WorkspaceId};
use poem::Request;
use poem_openapi::{param::Path, payload::Json, Object, OpenApi};
use secrecy::ExposeSecret;

use super::scope::scoped;
use super::{ApiTags, Created};
use crate::{principal::Auth, AppState};

pub(crate) struct ApiKeysApi;

/// A key, without the key itself.
#[derive(Debug, Object)]
struct ApiKeyBody {
    id: ApiKeyId,
    workspace_id: WorkspaceId,
    name: String,
    /// `rk_live_` and the key's first random characters.
    prefix: String,
    scopes: Vec<String>,
    /// Requests allowed per minute and per calendar month (UTC); more are answered 429.
    per_minute: u32,
    per_month: u64,
    created_by: UserId,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// To the minute.
    last_used_at: Option<DateTime<Utc>>,
}

impl From<auth::api_keys::ApiKey> for ApiKeyBody {
    fn from(k: auth::api_keys::ApiKey) -> Self {
        ApiKeyBody {
            id: k.id,
            workspace_id: k.tenant,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            per_minute: k.per_minute,
            per_month: k.per_month,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A new key.
#[derive(Debug, Object)]
#[oai(example)]
struct NewApiKeyBody {
    /// 1 to 100 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
    /// 1 to 32 permissions (`projects.read`, `projects.*`, …; at most 64 characters each), each
    /// one your own role grants.
    #[oai(validator(min_items = 1, max_items = 32, max_length = 64, pattern = r"^[a-z0-9_]+\.(?:\*|[a-z0-9_]+)$"))]
    scopes: Vec<String>,
    /// In the future.
    expires_at: Option<DateTime<Utc>>,
    /// Default 600 (1 to 60,000).
    #[oai(validator(minimum(value = "1"), maximum(value = "60000")))]
    per_minute: Option<u32>,
    /// Default 1,000,000 (1 to 1,000,000,000).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))]
    per_month: Option<u64>,
}

impl poem_openapi::types::Example for NewApiKeyBody {
    fn example() -> Self {
        NewApiKeyBody {
            name: "CI deploys".into(),
            scopes: vec!["projects.read".into(), "projects.update".into()],
            expires_at: None,
            per_minute: Some(600),
            per_month: Some(1_000_000),
        }
    }
}

/// A new key with its secret, shown this once.
#[derive(Object)]
struct ApiKeyWithSecretBody {
    api_key: ApiKeyBody,
    /// Send it as `X-Api-Key`. Stored only as a keyed hash: it cannot be shown again.
    #[oai(read_only)]
    key: String,
}

impl std::fmt::Debug for ApiKeyWithSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyWithSecretBody").field("api_key", &self.api_key).finish_non_exhaustive()
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Workspaces")]
impl ApiKeysApi {
    /// The workspace's API keys, newest first (`api_keys.manage`).
    #[oai(path = "/workspaces/:workspace_id/api-keys", method = "get", operation_id = "listApiKeys")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<ApiKeyBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| auth::api_keys::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Create an API key (`api_keys.manage`; members only; needs a recent authentication). Its
    /// scopes must be permissions your role grants, and it never does more than your role does
    /// when it is used. The answer carries the key, shown this once.
    #[oai(path = "/workspaces/:workspace_id/api-keys", method = "post", operation_id = "createApiKey")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewApiKeyBody>,
    ) -> poem::Result<Created<ApiKeyWithSecretBody>> {
        auth.principal().require_recent(&state)?;
        let Json(body) = body;
        let (key, secret) = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let new = auth::api_keys::NewKey {
                name: body.name.clone(),
                scopes: body.scopes.clone(),
                expires_at: body.expires_at,
                per_minute: body.per_minute,
                per_month: body.per_month,
            };
            auth::api_keys::create(tx, state.auth.tokens(), new, state.auth.now()).await
        })?;
        Ok(Created::Created(Json(ApiKeyWithSecretBody { api_key: key.into(), key: secret.expose_secret().to_owned() })))
    }

    /// Revoke an API key (`api_keys.manage`): its next request is refused.
    #[oai(path = "/workspaces/:workspace_id/api-keys/:key_id/revoke", method = "post", operation_id = "revokeApiKey")]
    async fn revoke(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        key_id: Path<ApiKeyId>,
    ) -> poem::Result<Json<ApiKeyBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            auth::api_keys::revoke(tx, key_id.0, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }
}
