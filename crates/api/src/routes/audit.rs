//! The audit trail as its readers see it: a workspace's chain (`audit.read`, members only) and
//! each user's own authentication events. Read-only: nothing in the API writes or edits events
//! except by doing the thing they record.

use crate::codes::ErrorCode;
use chrono::{DateTime, Utc};
use ids::WorkspaceId;
use poem::Request;
use poem_openapi::{param::Path, param::Query, payload::Json, Object, OpenApi};
use tenancy::{authz, UserId};
use uuid::Uuid;

use super::scope::scoped;
use super::ApiTags;
use crate::{
    error::{ApiError, OrApiError},
    principal::{Auth, WorkspaceAuth},
    AppState,
};

pub(crate) struct AuditApi;

/// One event of a chain, with the links that make the chain tamper-evident.
#[derive(Debug, Object)]
struct AuditEventBody {
    id: Uuid,
    /// Position in the chain, from 1.
    seq: i64,
    occurred_at: DateTime<Utc>,
    /// `authentication`, `authorization`, `membership`, `workspace`, `webhook`, `llm_usage`,
    /// `action`, `data_sync`, `secret`, `privacy` or `retention`.
    category: String,
    /// What happened, such as `member.role_changed`.
    action: String,
    /// Who did it, when a user did.
    actor_id: Option<Uuid>,
    request_id: Option<String>,
    /// Details (never a secret value).
    payload: serde_json::Value,
    /// SHA-256 of the previous event (64 zeros for the first).
    prev_hash: String,
    /// SHA-256 of this event (`rampart audit verify` recomputes it).
    hash: String,
}

impl From<audit::Event> for AuditEventBody {
    fn from(e: audit::Event) -> Self {
        AuditEventBody {
            id: e.id,
            seq: e.seq,
            occurred_at: e.occurred_at,
            category: e.category,
            action: e.action,
            actor_id: e.actor,
            request_id: e.request_id,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Object)]
struct AuditPage {
    events: Vec<AuditEventBody>,
    /// Pass as `before` for the next page; absent on the last page.
    next_before: Option<i64>,
}

fn page(events: Vec<audit::Event>, limit: u64) -> AuditPage {
    let next_before = if events.len() as u64 == limit { events.last().map(|e| e.seq) } else { None };
    AuditPage { events: events.into_iter().map(Into::into).collect(), next_before }
}

fn filter(
    category: Option<String>,
    actor: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    before: Option<i64>,
) -> poem::Result<audit::Filter> {
    let category = match category {
        None => None,
        Some(name) => Some(
            audit::Category::parse(&name)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "Unknown audit category."))?,
        ),
    };
    Ok(audit::Filter { category, actor, since, until, before_seq: before })
}

fn limit(limit: Option<u64>) -> u64 {
    limit.unwrap_or(50).clamp(1, audit::MAX_PAGE)
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// The workspace's audit trail, newest first (`audit.read`). Filter by category, actor and
    /// time; page with `before`.
    #[oai(path = "/workspaces/:workspace_id/audit-events", method = "get", operation_id = "listAuditEvents")]
    #[allow(clippy::too_many_arguments)] // One parameter per documented query field.
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        /// Only this category: `authentication`, `authorization`, `membership`, `workspace`,
        /// `webhook`, `llm_usage`, `action`, `data_sync`, `secret`, `privacy` or `retention`.
        #[oai(validator(
            pattern = r"^(?:authentication|authorization|membership|workspace|webhook|llm_usage|action|data_sync|secret|privacy|retention)$"
        ))]
        category: Query<Option<String>>,
        /// Only events by this user.
        actor: Query<Option<UserId>>,
        /// Only events at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Only events before this time.
        until: Query<Option<DateTime<Utc>>>,
        /// Only events before this position (the previous page's `next_before`).
        before: Query<Option<i64>>,
        /// At most this many (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<AuditPage>> {
        let filter = filter(category.0, actor.0.map(Uuid::from), since.0, until.0, before.0)?;
        let limit = self::limit(limit.0);
        let result =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| authz::audit_log(tx, &filter, limit).await);
        Ok(Json(page(result?, limit)))
    }

    /// My own authentication events (sign-ins, failures, password changes, sessions), newest
    /// first.
    #[oai(path = "/me/security-events", method = "get", operation_id = "listMySecurityEvents")]
    async fn mine(
        &self,
        state: poem::web::Data<&AppState>,
        auth: Auth,
        /// Only events before this position (the previous page's `next_before`).
        before: Query<Option<i64>>,
        /// At most this many (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<AuditPage>> {
        let filter = audit::Filter { before_seq: before.0, ..Default::default() };
        let limit = self::limit(limit.0);
        let events = authz::own_platform_events(&state.db, auth.principal().user_id, &filter, limit).await.api()?;
        Ok(Json(page(events, limit)))
    }
}
