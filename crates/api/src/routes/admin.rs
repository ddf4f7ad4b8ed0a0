//! Platform administration (platform level Admin or above, `rbac::PlatformLevel::ADMIN`): the
//! outbox's actions — list, retry a dead or cancelled one, cancel a pending one. Every change is
//! recorded in the platform audit chain with its actor.

use crate::codes::ErrorCode;
use chrono::{DateTime, Utc};
use ids::ActionId;
use poem::Request;
use poem_openapi::{param::Path, param::Query, payload::Json, Object, OpenApi};

use super::{ApiTags, NoContent};
use crate::{error::ApiError, principal::Auth, AppState};

pub(crate) struct AdminApi;

/// An outbox action, never its payload.
#[derive(Debug, Object)]
struct ActionBody {
    id: ActionId,
    kind: String,
    /// `pending`, `running`, `done`, `dead` or `cancelled`.
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl From<scheduler::ActionInfo> for ActionBody {
    fn from(a: scheduler::ActionInfo) -> Self {
        ActionBody {
            id: a.id,
            kind: a.kind,
            status: a.status,
            attempts: a.attempts,
            max_attempts: a.max_attempts,
            run_at: a.run_at,
            last_error: a.last_error,
            created_at: a.created_at,
            completed_at: a.completed_at,
        }
    }
}

fn require_admin(auth: &Auth) -> poem::Result<()> {
    if auth.principal().user.platform_level >= rbac::PlatformLevel::ADMIN.value() {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::Forbidden, "This needs the platform level Admin or above.").into())
}

fn backend_error(err: scheduler::OutboxError) -> poem::Error {
    ApiError::backend(&err, "outbox administration failed").into()
}

/// What can fail while changing an action and recording the change.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("outbox: {0}")]
    Outbox(#[source] scheduler::OutboxError),
    #[error("database: {0}")]
    Db(#[source] storage::DbErr),
    #[error("audit trail: {0}")]
    Audit(#[source] audit::AuditError),
}

impl From<scheduler::OutboxError> for AdminError {
    fn from(err: scheduler::OutboxError) -> Self {
        AdminError::Outbox(err)
    }
}

impl From<storage::DbErr> for AdminError {
    fn from(err: storage::DbErr) -> Self {
        AdminError::Db(err)
    }
}

/// A busy or unreachable store is 503 with `Retry-After`, like everywhere else; the rest is the
/// opaque 500 with its cause logged.
fn internal(err: AdminError) -> poem::Error {
    ApiError::backend(&err, "outbox administration failed").into()
}

/// Runs `change` (retry or cancel) and records it in the platform chain, in one transaction.
async fn change(
    state: &AppState,
    auth: &Auth,
    action: &'static str,
    id: ActionId,
    refused: &'static str,
) -> poem::Result<NoContent> {
    let now = state.auth.now();
    let txn = state.db.begin_write().await.map_err(|e| internal(AdminError::Db(e)))?;
    let work = async {
        let changed = match action {
            "outbox.retried" => scheduler::retry(&txn, id, now).await?,
            _ => scheduler::cancel(&txn, id, now).await?,
        };
        if changed {
            let event = audit::NewEvent::new(audit::Category::Action, action, serde_json::json!({ "action_id": id }))
                .by(Some(auth.principal().user_id.0))
                .request(Some(crate::error::current_request_id()));
            audit::append(&txn, audit::PLATFORM_CHAIN, &event, now).await.map_err(AdminError::Audit)?;
        }
        Ok::<bool, AdminError>(changed)
    }
    .await;
    // Nothing changed (wrong state) rolls back like a failure would; it commits nothing either way.
    match storage::settle(txn, work).await {
        Ok(true) => Ok(NoContent::Done),
        Ok(false) => Err(ApiError::new(ErrorCode::Conflict, refused).into()),
        Err(err) => Err(internal(err)),
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl AdminApi {
    /// The newest outbox actions (platform Admin), optionally of one status.
    #[oai(path = "/admin/outbox", method = "get", operation_id = "listOutboxActions", tag = "ApiTags::Admin")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        auth: Auth,
        /// `pending`, `running`, `done`, `dead` or `cancelled`.
        #[oai(validator(pattern = r"^(?:pending|running|done|dead|cancelled)$"))]
        status: Query<Option<String>>,
        /// At most this many (1 to 1,000, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<Vec<ActionBody>>> {
        require_admin(&auth)?;
        if let Some(s) = status.0.as_deref() {
            if !scheduler::STATUSES.contains(&s) {
                return Err(ApiError::new(ErrorCode::InvalidRequest, "unknown status").into());
            }
        }
        let actions = scheduler::list(state.db.conn(), status.0.as_deref(), limit.0.unwrap_or(50))
            .await
            .map_err(backend_error)?;
        Ok(Json(actions.into_iter().map(Into::into).collect()))
    }

    /// Put a dead or cancelled action back in the queue, due now (platform Admin).
    #[oai(
        path = "/admin/outbox/:action_id/retry",
        method = "post",
        operation_id = "retryOutboxAction",
        tag = "ApiTags::Admin"
    )]
    async fn retry(
        &self,
        state: poem::web::Data<&AppState>,
        _req: &Request,
        auth: Auth,
        action_id: Path<ActionId>,
    ) -> poem::Result<NoContent> {
        require_admin(&auth)?;
        change(&state, &auth, "outbox.retried", action_id.0, "Only a dead or cancelled action can be retried.").await
    }

    /// Cancel a pending action so no worker runs it (platform Admin).
    #[oai(
        path = "/admin/outbox/:action_id/cancel",
        method = "post",
        operation_id = "cancelOutboxAction",
        tag = "ApiTags::Admin"
    )]
    async fn cancel(
        &self,
        state: poem::web::Data<&AppState>,
        _req: &Request,
        auth: Auth,
        action_id: Path<ActionId>,
    ) -> poem::Result<NoContent> {
        require_admin(&auth)?;
        change(&state, &auth, "outbox.cancelled", action_id.0, "Only a pending action can be cancelled.").await
    }
}
