//! Token exchange (modelled on RFC 8693): a user's credential becomes a short-lived access token
//! bound to one workspace, that user and that session, optionally narrowed to some of the user's
//! permissions there, for an agent or a tool to act with. It is refused on any other workspace
//! and on every route outside workspaces, ends with its session, and is checked again on every
//! request: suspension, credential generation, revocation, membership, role and scope.

use crate::codes::ErrorCode;
use ids::WorkspaceId;
use poem::Request;
use poem_openapi::{param::Path, payload::Json, Object, OpenApi};
use secrecy::ExposeSecret;

use super::{scope::scoped, ApiTags};
use crate::{error::ApiError, principal::Auth, AppState};

/// How long an exchanged token lives unless asked, and at most (NIST SP 800-63B §7.1: bearer
/// assertions short-lived; the agents' promise is "short-lived, re-checked per request").
pub(crate) const DEFAULT_TTL_SECS: i64 = 300;
pub(crate) const MAX_TTL_SECS: i64 = 3_600;

/// What to exchange the caller's credential for.
#[derive(Debug, Object)]
#[oai(example)]
struct ExchangeRequest {
    /// Permissions to narrow the token to, space-separated (RFC 8693 §2.1 `scope`); each must be
    /// one the caller holds in the workspace. Absent: the caller's own, as they are at each use.
    scope: Option<String>,
    /// Seconds the token lives: 1 to 3600, default 300.
    #[oai(validator(minimum(value = "1"), maximum(value = "3600")))]
    expires_in: Option<i64>,
}

impl poem_openapi::types::Example for ExchangeRequest {
    fn example() -> Self {
        ExchangeRequest { scope: Some("projects.read".into()), expires_in: Some(300) }
    }
}

/// The token (RFC 8693 §2.2.1 response shape).
#[derive(Debug, Object)]
struct ExchangedToken {
    access_token: String,
    /// Always `urn:ietf:params:oauth:token-type:access_token`.
    issued_token_type: String,
    /// Always `Bearer`.
    token_type: String,
    expires_in: i64,
    /// The permissions it is narrowed to, when it is.
    scope: Option<String>,
    /// The one workspace it acts in.
    workspace_id: WorkspaceId,
}

pub(crate) struct WorkspaceTokensApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Workspaces")]
impl WorkspaceTokensApi {
    /// Exchange my credential for a short-lived token bound to this workspace, this session and
    /// (optionally) some of my permissions here. It works only on this workspace's routes and
    /// ends with my session.
    #[oai(path = "/workspaces/:workspace_id/tokens", method = "post", operation_id = "exchangeWorkspaceToken")]
    async fn exchange(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<ExchangeRequest>,
    ) -> poem::Result<Json<ExchangedToken>> {
        let p = auth.principal();
        let scopes = parse_scope(body.scope.as_deref())?;
        // Membership, and each narrowed permission held by the caller here.
        scoped!(state, req, p, workspace_id.0, |tx| {
            tx.require_access()?;
            scopes.iter().flatten().try_for_each(|perm| tx.require(perm).map(|_| ()))
        })?;
        let text = scopes.map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
        let ttl = chrono::Duration::seconds(body.expires_in.unwrap_or(DEFAULT_TTL_SECS).clamp(1, MAX_TTL_SECS));
        let (token, expires_in) = state
            .auth
            .exchange_for_workspace(
                &p.user,
                p.session_id,
                p.authentication.as_ref(),
                workspace_id.0,
                text.clone(),
                ttl,
                &super::auth::meta(req),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Json(ExchangedToken {
            access_token: token.expose_secret().to_owned(),
            issued_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            token_type: "Bearer".into(),
            expires_in,
            scope: text,
            workspace_id: workspace_id.0,
        }))
    }
}

/// The permissions of a `scope` parameter; 400 `invalid_scope` for an empty one or one naming a
/// permission outside the catalogue.
fn parse_scope(scope: Option<&str>) -> Result<Option<Vec<rbac::Permission>>, ApiError> {
    let Some(scope) = scope else { return Ok(None) };
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidScope,
            "scope is a space-separated list of permissions, such as `projects.read projects.write`.",
        )
    };
    let perms = scope.split_whitespace().map(rbac::Permission::parse).collect::<Result<Vec<_>, _>>();
    match perms {
        Ok(perms) if !perms.is_empty() && perms.iter().all(rbac::Permission::is_known) => Ok(Some(perms)),
        _ => Err(invalid()),
    }
}
