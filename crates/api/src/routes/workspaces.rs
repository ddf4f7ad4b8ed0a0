//! Workspaces (the tenants), their members, roles, invitations, cross-workspace grants and
//! authorization-failure records. Every handler works through a [`Scope`]: one transaction with
//! the caller's tenant context, the permission checked in code here and again by PostgreSQL's
//! write policies.

use crate::codes::ErrorCode;
use chrono::{DateTime, Utc};
use ids::{GrantId, InvitationId, UserId, WorkspaceId};
use poem::Request;
use poem_openapi::{param::Path, param::Query, payload::Json, Object, OpenApi};
use tenancy::{authz, grants, invitations, members, roles, workspaces};
use uuid::Uuid;

use super::scope::scoped;
use super::{ApiTags, Created, NoContent};
use crate::{
    error::{ApiError, OrApiError},
    principal::Auth,
    AppState,
};

pub(crate) struct WorkspacesApi;

/// Keyed-hash purpose of invitation tokens.
const INVITATION_PURPOSE: &str = "invitation";

/// A workspace, with the caller's role in it.
#[derive(Debug, Object)]
struct WorkspaceBody {
    id: WorkspaceId,
    name: String,
    /// The caller's role (`Grant` when reached only through a cross-workspace grant).
    role: String,
    created_at: DateTime<Utc>,
    /// Members reach the workspace only from a sign-in that included a second factor.
    require_mfa: bool,
}

impl From<workspaces::Workspace> for WorkspaceBody {
    fn from(w: workspaces::Workspace) -> Self {
        WorkspaceBody { id: w.id, name: w.name, role: w.role, created_at: w.created_at, require_mfa: w.require_mfa }
    }
}

/// Whether members must sign in with a second factor.
#[derive(Debug, Object)]
#[oai(example)]
struct MfaRequirement {
    required: bool,
}

impl poem_openapi::types::Example for MfaRequirement {
    fn example() -> Self {
        MfaRequirement { required: true }
    }
}

/// A workspace name (1 to 200 characters).
#[derive(Debug, Object)]
#[oai(example)]
struct WorkspaceName {
    /// 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
}

impl poem_openapi::types::Example for WorkspaceName {
    fn example() -> Self {
        WorkspaceName { name: "Acme Research".into() }
    }
}

/// A deleted workspace: nobody reaches it any more; its content is purged at `purge_after`.
#[derive(Debug, Object)]
struct Deleted {
    purge_after: DateTime<Utc>,
}

/// A member.
#[derive(Debug, Object)]
struct MemberBody {
    user_id: UserId,
    email: String,
    role: String,
    joined_at: DateTime<Utc>,
}

impl From<members::Member> for MemberBody {
    fn from(m: members::Member) -> Self {
        MemberBody { user_id: m.user_id, email: m.email, role: m.role, joined_at: m.joined_at }
    }
}

/// A role to give.
#[derive(Debug, Object)]
#[oai(example)]
struct RoleName {
    /// The name of a built-in role (such as `Member`) or of one of the workspace's custom roles.
    role: String,
}

impl poem_openapi::types::Example for RoleName {
    fn example() -> Self {
        RoleName { role: "Member".into() }
    }
}

/// A role: built-in or custom to this workspace.
#[derive(Debug, Object)]
struct RoleBody {
    name: String,
    /// 0 to 100; nobody grants a role above their own level.
    level: u8,
    /// `resource.action` (or `resource.*`) permissions.
    permissions: Vec<String>,
    builtin: bool,
}

impl From<rbac::Role> for RoleBody {
    fn from(r: rbac::Role) -> Self {
        RoleBody {
            permissions: r.permissions.iter().map(ToString::to_string).collect(),
            name: r.name,
            level: r.level,
            builtin: r.builtin,
        }
    }
}

/// A new custom role.
#[derive(Debug, Object)]
#[oai(example)]
struct NewRole {
    /// 1 to 64 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
    /// 0 to 100, at most my own role's.
    #[oai(validator(maximum(value = "100")))]
    level: u8,
    /// Permissions (`resource.action` or `resource.*`, lower case, at most 64 characters each),
    /// each one I hold.
    #[oai(validator(max_length = 64, pattern = r"^[a-z0-9_]+\.(?:\*|[a-z0-9_]+)$"))]
    permissions: Vec<String>,
}

impl poem_openapi::types::Example for NewRole {
    fn example() -> Self {
        NewRole {
            name: "Editor".into(),
            level: 20,
            permissions: vec!["projects.read".into(), "projects.update".into()],
        }
    }
}

/// An invitation (never its token).
#[derive(Debug, Object)]
struct InvitationBody {
    id: InvitationId,
    email: String,
    role: String,
    invited_by: UserId,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<invitations::Invitation> for InvitationBody {
    fn from(i: invitations::Invitation) -> Self {
        InvitationBody {
            id: i.id,
            email: i.email,
            role: i.role,
            invited_by: i.invited_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// Whom to invite, with which role.
#[derive(Debug, Object)]
#[oai(example)]
struct NewInvitation {
    /// At most 254 bytes once trimmed and lower-cased (RFC 5321 §4.5.3.1); the schema states
    /// 254 characters of ASCII, or 63 characters of any kind (a character takes up to 4 bytes).
    #[oai(validator(max_length = 254, pattern = r"^(?:[\x00-\x7F]*|[\s\S]{0,63})$"))]
    email: String,
    /// A role I could grant.
    role: String,
}

impl poem_openapi::types::Example for NewInvitation {
    fn example() -> Self {
        NewInvitation { email: "jane.doe@example.com".into(), role: "Member".into() }
    }
}

/// The workspace and token from an invitation link.
#[derive(Debug, Object)]
#[oai(example)]
struct AcceptInvitation {
    workspace_id: WorkspaceId,
    #[oai(write_only)]
    token: String,
}

impl poem_openapi::types::Example for AcceptInvitation {
    fn example() -> Self {
        AcceptInvitation {
            workspace_id: WorkspaceId(Uuid::from_u128(0x0192_3f5e_7c1a_7b2e_9d4f_5a6b_7c8d_9e0f)),
            token: "kq3VYh1xT0m8cFz2Jw6rLp9sNd4bGa7uEi5oHt0yXv".into(),
        }
    }
}

/// A cross-workspace grant.
#[derive(Debug, Object)]
struct GrantBody {
    id: GrantId,
    /// The workspace whose data the grant opens.
    granting_workspace_id: WorkspaceId,
    /// The workspace whose members hold the permission.
    grantee_workspace_id: WorkspaceId,
    permission: String,
    created_by: UserId,
    created_at: DateTime<Utc>,
    revoked_by: Option<UserId>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<grants::Grant> for GrantBody {
    fn from(g: grants::Grant) -> Self {
        GrantBody {
            id: g.id,
            granting_workspace_id: g.granting_workspace,
            grantee_workspace_id: g.grantee_workspace,
            permission: g.permission,
            created_by: g.created_by,
            created_at: g.created_at,
            revoked_by: g.revoked_by,
            revoked_at: g.revoked_at,
        }
    }
}

/// A grant to make.
#[derive(Debug, Object)]
#[oai(example)]
struct NewGrant {
    grantee_workspace_id: WorkspaceId,
    /// One of `projects.read`, `projects.create`, `projects.update`, `projects.delete`.
    #[oai(validator(pattern = r"^projects\.(?:read|create|update|delete)$"))]
    permission: String,
}

impl poem_openapi::types::Example for NewGrant {
    fn example() -> Self {
        NewGrant {
            grantee_workspace_id: WorkspaceId(Uuid::from_u128(0x0192_3f5e_7c1a_7b2e_9d4f_5a6b_7c8d_9e0f)),
            permission: "projects.read".into(),
        }
    }
}

/// A refused attempt.
#[derive(Debug, Object)]
struct AuthzFailureBody {
    id: Uuid,
    user_id: UserId,
    /// Method and path.
    endpoint: String,
    /// The permission, level or membership that was required.
    required: String,
    /// What the user had.
    actual: String,
    request_id: String,
    occurred_at: DateTime<Utc>,
}

impl From<authz::AuthzFailure> for AuthzFailureBody {
    fn from(f: authz::AuthzFailure) -> Self {
        AuthzFailureBody {
            id: f.id,
            user_id: f.user_id,
            endpoint: f.endpoint,
            required: f.required,
            actual: f.actual,
            request_id: f.request_id,
            occurred_at: f.occurred_at,
        }
    }
}

/// Counts a workspace creation by `user` against the hourly limit; 429 with `Retry-After` over it.
async fn limit_creations(state: &AppState, user: UserId) -> poem::Result<()> {
    let limit = state.workspace_creations_per_hour;
    if limit == 0 {
        return Ok(());
    }
    let window = std::time::Duration::from_secs(3600);
    let decision = state.auth.kv().hit(&format!("ws-create:{user}"), limit, window).await.api()?;
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::rate_limited(decision.retry_after_secs).into())
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Workspaces")]
impl WorkspacesApi {
    /// The workspaces I belong to.
    #[oai(path = "/workspaces", method = "get", operation_id = "listWorkspaces")]
    async fn list(&self, state: poem::web::Data<&AppState>, auth: Auth) -> poem::Result<Json<Vec<WorkspaceBody>>> {
        let mine = workspaces::list_mine(&state.db, auth.principal().user_id).await.api()?;
        Ok(Json(mine.into_iter().map(Into::into).collect()))
    }

    /// Create a workspace; I become its Owner.
    #[oai(path = "/workspaces", method = "post", operation_id = "createWorkspace")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: Auth,
        body: Json<WorkspaceName>,
    ) -> poem::Result<Created<WorkspaceBody>> {
        limit_creations(&state, auth.principal().user_id).await?;
        let ws = workspaces::create(&state.db, auth.principal().user_id, &body.name, state.auth.now()).await.api()?;
        Ok(Created::Created(Json(ws.into())))
    }

    /// One workspace I can reach.
    #[oai(path = "/workspaces/:workspace_id", method = "get", operation_id = "getWorkspace")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<WorkspaceBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| workspaces::get(tx).await);
        Ok(Json(result?.into()))
    }

    /// Rename a workspace (`workspace.update`).
    #[oai(path = "/workspaces/:workspace_id", method = "patch", operation_id = "renameWorkspace")]
    async fn rename(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<WorkspaceName>,
    ) -> poem::Result<Json<WorkspaceBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            workspaces::rename(tx, &body.name, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Require a second factor of every member (`workspace.update`; needs a recent
    /// authentication). Members whose session did not include a second factor are refused with
    /// 403 `workspace_requires_mfa` until they set one up and sign in with it, and API keys until
    /// their creator has set one up. Turning it on needs a sign-in with a second factor yourself (409
    /// `mfa_required_first`), so an administrator cannot lock themselves out.
    #[oai(
        path = "/workspaces/:workspace_id/mfa-requirement",
        method = "put",
        operation_id = "setWorkspaceMfaRequirement"
    )]
    async fn set_mfa_requirement(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<MfaRequirement>,
    ) -> poem::Result<Json<WorkspaceBody>> {
        let principal = auth.principal();
        principal.require_recent(&state)?;
        if body.required && !principal.has_second_factor() {
            return Err(ApiError::new(
                ErrorCode::MfaRequiredFirst,
                "Set up a second factor and sign in with it before requiring one of every member.",
            )
            .into());
        }
        let result = scoped!(state, req, principal, workspace_id.0, |tx| {
            workspaces::set_require_mfa(tx, body.required, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Delete a workspace (`workspace.delete`; needs a recent authentication): access ends at once; the content is purged 30
    /// days later by a background job.
    #[oai(path = "/workspaces/:workspace_id", method = "delete", operation_id = "deleteWorkspace")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Deleted>> {
        auth.principal().require_recent(&state)?;
        let now = state.auth.now();
        let purge_after = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            workspaces::delete(tx, &state.keyring.vault_kek, now).await
        })?;
        Ok(Json(Deleted { purge_after }))
    }

    /// The members (`members.read`).
    #[oai(path = "/workspaces/:workspace_id/members", method = "get", operation_id = "listMembers")]
    async fn members(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<MemberBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| members::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Change a member's role (`members.update_role`; only roles I could grant, never leaving the
    /// workspace without an owner).
    #[oai(path = "/workspaces/:workspace_id/members/:user_id", method = "patch", operation_id = "changeMemberRole")]
    async fn change_role(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        user_id: Path<UserId>,
        body: Json<RoleName>,
    ) -> poem::Result<Json<RoleBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            members::change_role(tx, user_id.0, &body.role, state.auth.now()).await
        });
        Ok(Json(result?.into()))
    }

    /// Remove a member (`members.remove`), or leave (my own id). The last owner can do neither.
    #[oai(path = "/workspaces/:workspace_id/members/:user_id", method = "delete", operation_id = "removeMember")]
    async fn remove(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        user_id: Path<UserId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            members::remove(tx, user_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }

    /// End every session and refresh token of a member (`sessions.revoke`, and a level at least
    /// the member's).
    #[oai(
        path = "/workspaces/:workspace_id/members/:user_id/sessions/revoke",
        method = "post",
        operation_id = "revokeMemberSessions"
    )]
    async fn revoke_member_sessions(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        user_id: Path<UserId>,
    ) -> poem::Result<Json<super::auth::Revoked>> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            members::check_may_revoke_sessions(tx, user_id.0).await
        })?;
        let meta = super::auth::meta(req);
        let ended =
            state.auth.revoke_all_by_admin(user_id.0, auth.principal().user_id, workspace_id.0, &meta).await.api()?;
        Ok(Json(ended.into()))
    }

    /// The built-in roles and this workspace's custom roles.
    #[oai(path = "/workspaces/:workspace_id/roles", method = "get", operation_id = "listRoles")]
    async fn roles(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<RoleBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| roles::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Create a custom role (`roles.manage`; at most my level, only permissions I hold).
    #[oai(path = "/workspaces/:workspace_id/roles", method = "post", operation_id = "createRole")]
    async fn create_role(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewRole>,
    ) -> poem::Result<Created<RoleBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            roles::create(tx, &body.name, body.level, &body.permissions, state.auth.now()).await
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// Invite someone by e-mail (`members.invite`, with a role I could grant). The link is valid
    /// 72 h, once, and only for a user signed in with that address.
    #[oai(path = "/workspaces/:workspace_id/invitations", method = "post", operation_id = "invite")]
    async fn invite(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewInvitation>,
    ) -> poem::Result<Created<InvitationBody>> {
        let email = auth::email::EmailAddress::parse(&body.email).api()?;
        let token = auth::token::generate();
        let hash = state.auth.tokens().hash(INVITATION_PURPOSE, &token);
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let invitation = invitations::create(tx, email.as_str(), &body.role, &hash, state.auth.now()).await?;
            let link =
                format!("{}/invitations/accept#token={token}&workspace={}", state.auth.link_base_url(), workspace_id.0);
            let body = format!(
                "You have been invited to a workspace on Rampart as {}.\n\nAccept within 72 hours, signed in as {}:\n{link}\n\nIf you did not expect this, ignore this message.",
                invitation.role, invitation.email
            );
            state
                .auth
                .enqueue_mail(tx.conn(), &invitation.email, "You are invited to a workspace", body)
                .await
                .map_err(|e| tenancy::TenancyError::Internal(e.to_string()))?;
            Ok(invitation)
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// Pending invitations (`members.invite`).
    #[oai(path = "/workspaces/:workspace_id/invitations", method = "get", operation_id = "listInvitations")]
    async fn invitations(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<InvitationBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            invitations::list_pending(tx, state.auth.now()).await
        });
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Withdraw a pending invitation (`members.invite`).
    #[oai(
        path = "/workspaces/:workspace_id/invitations/:invitation_id",
        method = "delete",
        operation_id = "revokeInvitation"
    )]
    async fn revoke_invitation(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        invitation_id: Path<InvitationId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            invitations::revoke(tx, invitation_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }

    /// Accept an invitation with the workspace and token from its link, signed in as the invited
    /// address. Used, withdrawn, expired, unknown or someone else's: the same `invalid_token`.
    #[oai(path = "/invitations/accept", method = "post", operation_id = "acceptInvitation")]
    async fn accept(
        &self,
        state: poem::web::Data<&AppState>,
        auth: Auth,
        body: Json<AcceptInvitation>,
    ) -> poem::Result<Json<MemberBody>> {
        let p = auth.principal();
        let hash = state.auth.tokens().hash(INVITATION_PURPOSE, body.token.trim());
        let (tenant, user) = (body.workspace_id, p.user_id);
        match invitations::accept(&state.db, tenant, user, &hash, &p.user.email, state.auth.now()).await {
            Ok(member) => Ok(Json(member.into())),
            Err(tenancy::TenancyError::NotFound) => Err(crate::error::ApiError::new(
                ErrorCode::InvalidToken,
                "This invitation is not valid for this account: it may be used, withdrawn or expired.",
            )
            .into()),
            Err(e) => Err(crate::error::ApiError::from(e).into()),
        }
    }

    /// Grants made by this workspace and to it.
    #[oai(path = "/workspaces/:workspace_id/grants", method = "get", operation_id = "listGrants")]
    async fn grants(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<Vec<GrantBody>>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| grants::list(tx).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }

    /// Let the members of another workspace hold one data permission here (`grants.manage`, and
    /// I must hold the permission myself).
    #[oai(path = "/workspaces/:workspace_id/grants", method = "post", operation_id = "createGrant")]
    async fn create_grant(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewGrant>,
    ) -> poem::Result<Created<GrantBody>> {
        let result = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            grants::create(tx, body.grantee_workspace_id, &body.permission, state.auth.now()).await
        });
        Ok(Created::Created(Json(result?.into())))
    }

    /// Revoke a grant (`grants.manage`); the record stays.
    #[oai(path = "/workspaces/:workspace_id/grants/:grant_id", method = "delete", operation_id = "revokeGrant")]
    async fn revoke_grant(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        grant_id: Path<GrantId>,
    ) -> poem::Result<NoContent> {
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            grants::revoke(tx, grant_id.0, state.auth.now()).await
        })?;
        Ok(NoContent::Done)
    }

    /// Refused attempts in this workspace, newest first (`audit.read`).
    #[oai(
        path = "/workspaces/:workspace_id/authorization-failures",
        method = "get",
        operation_id = "listAuthorizationFailures"
    )]
    async fn authz_failures(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: Auth,
        workspace_id: Path<WorkspaceId>,
        /// At most this many (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<Vec<AuthzFailureBody>>> {
        let result =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| authz::list(tx, limit.0.unwrap_or(50)).await);
        Ok(Json(result?.into_iter().map(Into::into).collect()))
    }
}
