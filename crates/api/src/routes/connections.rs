//! Workspace connections to external providers. Secret fields are write-only: accepted on create
//! and rotate, sealed at once, never answered (the list shows a hint of the last characters).
//! "Test" opens the secret in one short transaction, probes the provider outside any transaction
//! through the SSRF-guarded egress client, and records the outcome in a second one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ids::{ConnectionId, UserId, WorkspaceId};
use poem::Request;
use poem_openapi::{param::Path, payload::Json, Enum, Object, OpenApi};
use secrecy::SecretString;
use tenancy::connections::{self, Provider, SecretFields};

use super::scope::scoped;
use super::{ApiTags, Created, NoContent};
use crate::{principal::WorkspaceAuth, AppState};

pub(crate) struct ConnectionsApi;

/// An external provider.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
enum ProviderName {
    S3,
    R2,
    Gcs,
    Firebase,
    Slack,
    Google,
}

impl From<ProviderName> for Provider {
    fn from(p: ProviderName) -> Provider {
        match p {
            ProviderName::S3 => Provider::S3,
            ProviderName::R2 => Provider::R2,
            ProviderName::Gcs => Provider::Gcs,
            ProviderName::Firebase => Provider::Firebase,
            ProviderName::Slack => Provider::Slack,
            ProviderName::Google => Provider::Google,
        }
    }
}

impl From<Provider> for ProviderName {
    fn from(p: Provider) -> ProviderName {
        match p {
            Provider::S3 => ProviderName::S3,
            Provider::R2 => ProviderName::R2,
            Provider::Gcs => ProviderName::Gcs,
            Provider::Firebase => ProviderName::Firebase,
            Provider::Slack => ProviderName::Slack,
            Provider::Google => ProviderName::Google,
        }
    }
}

/// A connection, without its secret.
#[derive(Debug, Object)]
struct ConnectionBody {
    id: ConnectionId,
    workspace_id: WorkspaceId,
    provider: ProviderName,
    name: String,
    /// Non-secret settings (bucket, region, account, project).
    config: BTreeMap<String, String>,
    /// The secret's last characters (at most four), for recognising it; never the secret.
    secret_hint: String,
    scopes: Vec<String>,
    /// Whether a write scope is enabled (only through `PUT …/scopes`).
    write_enabled: bool,
    /// Object-storage connections: the prefix every object path of this workspace starts with.
    path_prefix: Option<String>,
    created_by: UserId,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    secret_rotated_at: DateTime<Utc>,
    last_tested_at: Option<DateTime<Utc>>,
    /// `ok`, or the stable code of the last test's failure.
    last_test_outcome: Option<String>,
}

impl From<connections::Connection> for ConnectionBody {
    fn from(c: connections::Connection) -> Self {
        ConnectionBody {
            id: c.id,
            workspace_id: c.tenant,
            provider: c.provider.into(),
            name: c.name,
            config: c.config,
            secret_hint: c.secret_hint,
            scopes: c.scopes,
            write_enabled: c.write_enabled,
            path_prefix: c.path_prefix,
            created_by: c.created_by,
            created_at: c.created_at,
            updated_at: c.updated_at,
            secret_rotated_at: c.secret_rotated_at,
            last_tested_at: c.last_tested_at,
            last_test_outcome: c.last_test_outcome,
        }
    }
}

/// A new connection.
#[derive(Object)]
#[oai(example)]
struct NewConnectionBody {
    provider: ProviderName,
    /// 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
    /// Settings by provider: s3 `bucket`, `region`; r2 `account_id`, `bucket`; gcs `bucket`;
    /// firebase `project_id`, `bucket`; slack and google none. Every value is 3 to 63 lower-case
    /// letters, digits, `.`, `_` or `-` (each setting has its own, narrower rule).
    #[oai(default, validator(max_properties = 2, min_length = 3, max_length = 63, pattern = r"^[a-z0-9._-]*$"))]
    config: BTreeMap<String, String>,
    /// Secret fields by provider (write-only): s3 and r2 `access_key_id`, `secret_access_key`;
    /// gcs and firebase `service_account_json`; slack `bot_token`; google `access_token` and
    /// optionally `refresh_token`.
    /// Each at most 16 KiB of UTF-8 without NUL; the schema states 4096 characters, the most
    /// that always fit in 16 KiB (a character takes up to 4 bytes).
    #[oai(write_only, validator(max_properties = 2, max_length = 4096, pattern = r"^[^\x00]*$"))]
    secret: BTreeMap<String, String>,
    /// Read scopes to hold (default: all of the provider's read scopes). Write scopes are refused
    /// here (`write_scope_not_enabled`): enable them with `PUT …/scopes`.
    scopes: Option<Vec<String>>,
}

impl poem_openapi::types::Example for NewConnectionBody {
    fn example() -> Self {
        NewConnectionBody {
            provider: ProviderName::S3,
            name: "Reports bucket".into(),
            config: BTreeMap::from([("bucket".into(), "acme-reports".into()), ("region".into(), "eu-west-1".into())]),
            secret: BTreeMap::from([
                ("access_key_id".into(), "AKIAIOSFODNN7EXAMPLE".into()),
                ("secret_access_key".into(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            ]),
            scopes: None,
        }
    }
}

impl std::fmt::Debug for NewConnectionBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never print.
        f.debug_struct("NewConnectionBody")
            .field("provider", &self.provider)
            .field("name", &self.name)
            .field("config", &self.config)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// New secret fields for a connection (write-only).
#[derive(Object)]
#[oai(example)]
struct SecretBody {
    /// The provider's secret fields, each at most 16 KiB of UTF-8 without NUL; the schema
    /// states 4096 characters, the most that always fit in 16 KiB.
    #[oai(write_only, validator(max_properties = 2, max_length = 4096, pattern = r"^[^\x00]*$"))]
    secret: BTreeMap<String, String>,
}

impl poem_openapi::types::Example for SecretBody {
    fn example() -> Self {
        SecretBody {
            secret: BTreeMap::from([
                ("access_key_id".into(), "AKIAIOSFODNN7EXAMPLE".into()),
                ("secret_access_key".into(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            ]),
        }
    }
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never print.
        f.debug_struct("SecretBody").finish_non_exhaustive()
    }
}

/// The scopes a connection holds; write scopes included here are enabled, and recorded.
#[derive(Debug, Object)]
#[oai(example)]
struct ScopesBody {
    scopes: Vec<String>,
}

impl poem_openapi::types::Example for ScopesBody {
    fn example() -> Self {
        ScopesBody { scopes: vec!["objects.list".into(), "objects.read".into(), "objects.write".into()] }
    }
}

/// The outcome of a connection test.
#[derive(Debug, Object)]
struct TestResultBody {
    ok: bool,
    /// `ok`, or a stable code: `egress_forbidden_address`, `egress_domain_not_allowed`,
    /// `egress_timeout`, `provider_rejected`, …
    outcome: String,
    tested_at: DateTime<Utc>,
}

fn secret_fields(map: BTreeMap<String, String>) -> SecretFields {
    SecretFields(map.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect())
}

#[OpenApi(prefix_path = "/api/v1")]
impl ConnectionsApi {
    /// The workspace's connections (`connections.read`), without secrets.
    #[oai(
        path = "/workspaces/:workspace_id/connections",
        method = "get",
        operation_id = "listConnections",
        tag = "ApiTags::Connections"
    )]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<ConnectionBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| connections::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Create a connection (`connections.manage`); it starts with read scopes only.
    #[oai(
        path = "/workspaces/:workspace_id/connections",
        method = "post",
        operation_id = "createConnection",
        tag = "ApiTags::Connections"
    )]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewConnectionBody>,
    ) -> poem::Result<Created<ConnectionBody>> {
        let Json(body) = body;
        let new = connections::NewConnection {
            provider: body.provider.into(),
            name: body.name,
            config: body.config,
            secret: secret_fields(body.secret),
            scopes: body.scopes,
        };
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::create(tx, &state.vault, &new, state.auth.now()).await
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// One connection (`connections.read`), without its secret.
    #[oai(
        path = "/workspaces/:workspace_id/connections/:connection_id",
        method = "get",
        operation_id = "getConnection",
        tag = "ApiTags::Connections"
    )]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        connection_id: Path<ConnectionId>,
    ) -> poem::Result<Json<ConnectionBody>> {
        let result =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| connections::get(tx, connection_id.0).await);
        Ok(Json(result?.into()))
    }

    /// Replace a connection's secret fields (`connections.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/connections/:connection_id/secret",
        method = "put",
        operation_id = "rotateConnectionSecret",
        tag = "ApiTags::Connections"
    )]
    async fn rotate(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        connection_id: Path<ConnectionId>,
        body: Json<SecretBody>,
    ) -> poem::Result<Json<ConnectionBody>> {
        let secret = secret_fields(body.0.secret);
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::rotate_secret(tx, &state.vault, connection_id.0, &secret, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Set a connection's scopes (`connections.manage`): the only way to enable write scopes.
    #[oai(
        path = "/workspaces/:workspace_id/connections/:connection_id/scopes",
        method = "put",
        operation_id = "setConnectionScopes",
        tag = "ApiTags::Connections"
    )]
    async fn scopes(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        connection_id: Path<ConnectionId>,
        body: Json<ScopesBody>,
    ) -> poem::Result<Json<ConnectionBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::set_scopes(tx, connection_id.0, &body.scopes, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Delete a connection and its sealed secret (`connections.manage`).
    #[oai(
        path = "/workspaces/:workspace_id/connections/:connection_id",
        method = "delete",
        operation_id = "deleteConnection",
        tag = "ApiTags::Connections"
    )]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        connection_id: Path<ConnectionId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::delete(tx, connection_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }

    /// Test a connection (`connections.manage`): one authenticated request to the provider's own
    /// domains only, never to a private, loopback or link-local address (checked after DNS
    /// resolution and on every redirect), within 30 seconds. The outcome is stored and recorded.
    #[oai(
        path = "/workspaces/:workspace_id/connections/:connection_id/test",
        method = "post",
        operation_id = "testConnection",
        tag = "ApiTags::Connections"
    )]
    async fn test(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        connection_id: Path<ConnectionId>,
    ) -> poem::Result<Json<TestResultBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::open_for_test(tx, &state.vault, connection_id.0).await
        });
        let opened = result?;
        // No transaction is open while the provider answers (up to 30 s).
        let (resolver, exceptions) = (state.egress.resolver.clone(), &state.egress.exceptions);
        let outcome = match connectors::probe(&opened, resolver, exceptions, state.auth.now()).await {
            Ok(()) => "ok".to_owned(),
            Err(code) => code,
        };
        drop(opened);
        let tested_at = state.auth.now();
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            connections::record_test(tx, connection_id.0, &outcome, tested_at).await
        })?;
        Ok(Json(TestResultBody { ok: outcome == "ok", outcome, tested_at }))
    }
}
