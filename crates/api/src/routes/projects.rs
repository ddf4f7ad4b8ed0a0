//! The example domain: projects (workspace data, role-based CRUD with list filtering) and
//! activity (records private to their user, even from the workspace's owners).

use chrono::{DateTime, Utc};
use ids::{ActivityId, ProjectId, UserId, WorkspaceId};
use poem::Request;
use poem_openapi::{param::Path, param::Query, payload::Json, Object, OpenApi};
use tenancy::{activity, projects};

use super::scope::scoped;
use super::{ApiTags, Created, NoContent};
use crate::{principal::WorkspaceAuth, AppState};

pub(crate) struct ProjectsApi;

/// A project.
#[derive(Debug, Object)]
struct ProjectBody {
    id: ProjectId,
    workspace_id: WorkspaceId,
    name: String,
    description: String,
    created_by: UserId,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<projects::Project> for ProjectBody {
    fn from(p: projects::Project) -> Self {
        ProjectBody {
            id: p.id,
            workspace_id: p.tenant,
            name: p.name,
            description: p.description,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A new project.
#[derive(Debug, Object)]
#[oai(example)]
struct NewProject {
    /// 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: String,
    /// At most 2000 characters.
    #[oai(default, validator(max_length = 2000))]
    description: String,
}

impl poem_openapi::types::Example for NewProject {
    fn example() -> Self {
        NewProject { name: "Website redesign".into(), description: "The 2025 marketing site.".into() }
    }
}

/// Changes to a project; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(example)]
struct ProjectPatch {
    /// 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    name: Option<String>,
    /// At most 2000 characters.
    #[oai(validator(max_length = 2000))]
    description: Option<String>,
}

impl poem_openapi::types::Example for ProjectPatch {
    fn example() -> Self {
        ProjectPatch { name: Some("Website relaunch".into()), description: None }
    }
}

/// An activity record.
#[derive(Debug, Object)]
struct ActivityBody {
    id: ActivityId,
    app: String,
    title: String,
    body: String,
    /// The ingestion pipeline's content hash (SHA-256 over the cleaned app, title and body), hex.
    content_hash: String,
    occurred_at: DateTime<Utc>,
}

impl From<activity::Activity> for ActivityBody {
    fn from(a: activity::Activity) -> Self {
        ActivityBody {
            id: a.id,
            app: a.app,
            title: a.title,
            body: a.body,
            content_hash: a.content_hash,
            occurred_at: a.occurred_at,
        }
    }
}

/// A captured activity. It is stored only if it passes the ingestion pipeline, stripped of
/// personal data and secrets, with the title cut to 200 and the body to 5,000 characters.
#[derive(Debug, Object)]
#[oai(example)]
struct NewActivity {
    /// The application: 1 to 200 characters, not blank, without control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
    ))]
    app: String,
    /// Without control characters (cut to 200 characters when stored).
    #[oai(validator(pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"))]
    title: String,
    /// At most 16 KiB of UTF-8. The schema states 4096 characters, the most that always fit
    /// in 16 KiB (a character takes up to 4 bytes).
    #[oai(validator(max_length = 4096))]
    body: String,
    /// Whether the capturing client saw a private or incognito window (never stored).
    #[oai(default)]
    private_window: bool,
}

impl poem_openapi::types::Example for NewActivity {
    fn example() -> Self {
        NewActivity {
            app: "Editor".into(),
            title: "Quarterly report draft".into(),
            body: "Outlined the revenue section and the hiring plan.".into(),
            private_window: false,
        }
    }
}

/// What one pipeline stage did (never the content).
#[derive(Debug, Object)]
struct StageBody {
    /// `sensitive_app`, `private_window`, `time_window`, `pii_strip`, `title_cut`, `text_cut`, `dedup`.
    stage: String,
    /// `kept`, `altered` or `dropped`.
    outcome: String,
    detail: Option<String>,
}

/// The outcome of ingesting one activity.
#[derive(Debug, Object)]
struct IngestedBody {
    /// Whether the record was stored.
    stored: bool,
    /// The stored record, as cleaned by the pipeline.
    activity: Option<ActivityBody>,
    /// Every stage that ran, in order; the last one of a dropped record says why.
    stages: Vec<StageBody>,
}

fn stage_body(r: pii::pipeline::StageReport) -> StageBody {
    use pii::pipeline::{Outcome, Stage};
    let stage = match r.stage {
        Stage::SensitiveApp => "sensitive_app",
        Stage::PrivateWindow => "private_window",
        Stage::TimeWindow => "time_window",
        Stage::PiiStrip => "pii_strip",
        Stage::TitleCut => "title_cut",
        Stage::TextCut => "text_cut",
        Stage::Dedup => "dedup",
    };
    let (outcome, detail) = match r.outcome {
        Outcome::Kept => ("kept", None),
        Outcome::Altered(d) => ("altered", Some(d)),
        Outcome::Dropped(d) => ("dropped", Some(d)),
    };
    StageBody { stage: stage.into(), outcome: outcome.into(), detail }
}

/// Activity ingestion answers 201 when the record was stored and 200 when a stage dropped it.
#[derive(poem_openapi::ApiResponse)]
enum IngestResponse {
    /// Stored.
    #[oai(status = 201)]
    Stored(Json<IngestedBody>),
    /// Dropped by a stage (nothing stored).
    #[oai(status = 200)]
    Dropped(Json<IngestedBody>),
}

/// One allowed capture window.
#[derive(Debug, Object)]
struct WindowBody {
    /// `mon` … `sun`; at least one.
    #[oai(validator(min_items = 1, pattern = r"^(?:mon|tue|wed|thu|fri|sat|sun)$"))]
    days: Vec<String>,
    /// `HH:MM`, local time.
    #[oai(validator(pattern = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"))]
    start: String,
    /// `HH:MM`, local time, exclusive; not after `start` means past midnight.
    #[oai(validator(pattern = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"))]
    end: String,
}

/// My allowed activity capture windows in a workspace; none means always.
#[derive(Debug, Object)]
#[oai(example)]
struct WindowsBody {
    /// My offset from UTC in minutes (-840 to 840).
    #[oai(validator(minimum(value = "-840"), maximum(value = "840")))]
    utc_offset_minutes: i32,
    /// At most 20.
    #[oai(validator(max_items = 20))]
    windows: Vec<WindowBody>,
}

impl poem_openapi::types::Example for WindowsBody {
    fn example() -> Self {
        let weekdays = ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec();
        WindowsBody {
            utc_offset_minutes: 60,
            windows: vec![WindowBody { days: weekdays, start: "09:00".into(), end: "17:30".into() }],
        }
    }
}

impl From<activity::Windows> for WindowsBody {
    fn from(w: activity::Windows) -> Self {
        WindowsBody {
            utc_offset_minutes: w.utc_offset_minutes,
            windows: w.windows.into_iter().map(|w| WindowBody { days: w.days, start: w.start, end: w.end }).collect(),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl ProjectsApi {
    /// The newest projects (`projects.read`), optionally those whose name contains `q`.
    #[oai(
        path = "/workspaces/:workspace_id/projects",
        method = "get",
        operation_id = "listProjects",
        tag = "ApiTags::Projects"
    )]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        /// Case-insensitive substring of the name.
        q: Query<Option<String>>,
        /// At most this many (1 to 200, default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<Vec<ProjectBody>>> {
        let (q, limit) = (q.0.as_deref(), limit.0.unwrap_or(20));
        let found = scoped!(state, req, auth.principal(), workspace_id.0, |tx| { projects::list(tx, limit, q).await });
        Ok(Json(found?.into_iter().map(Into::into).collect()))
    }

    /// Create a project (`projects.create`).
    #[oai(
        path = "/workspaces/:workspace_id/projects",
        method = "post",
        operation_id = "createProject",
        tag = "ApiTags::Projects"
    )]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewProject>,
    ) -> poem::Result<Created<ProjectBody>> {
        let created = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let project = projects::create(tx, &body.name, &body.description, state.auth.now()).await?;
            emitted(tx, &state, "project.created", project).await
        });
        Ok(Created::Created(Json(created?.into())))
    }

    /// One project (`projects.read`).
    #[oai(
        path = "/workspaces/:workspace_id/projects/:project_id",
        method = "get",
        operation_id = "getProject",
        tag = "ApiTags::Projects"
    )]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        project_id: Path<ProjectId>,
    ) -> poem::Result<Json<ProjectBody>> {
        let project_id = project_id.0;
        let found = scoped!(state, req, auth.principal(), workspace_id.0, |tx| projects::get(tx, project_id).await);
        Ok(Json(found?.into()))
    }

    /// Change a project (`projects.update`).
    #[oai(
        path = "/workspaces/:workspace_id/projects/:project_id",
        method = "patch",
        operation_id = "updateProject",
        tag = "ApiTags::Projects"
    )]
    async fn update(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        project_id: Path<ProjectId>,
        body: Json<ProjectPatch>,
    ) -> poem::Result<Json<ProjectBody>> {
        let (name, description, project_id) = (body.name.as_deref(), body.description.as_deref(), project_id.0);
        let updated = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            let project = projects::update(tx, project_id, name, description, state.auth.now()).await?;
            emitted(tx, &state, "project.updated", project).await
        });
        Ok(Json(updated?.into()))
    }

    /// Delete a project (`projects.delete`).
    #[oai(
        path = "/workspaces/:workspace_id/projects/:project_id",
        method = "delete",
        operation_id = "deleteProject",
        tag = "ApiTags::Projects"
    )]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        project_id: Path<ProjectId>,
    ) -> poem::Result<NoContent> {
        let (workspace_id, project_id) = (workspace_id.0, project_id.0);
        scoped!(state, req, auth.principal(), workspace_id, |tx| {
            projects::delete(tx, project_id).await?;
            let data = serde_json::json!({ "id": project_id, "workspace_id": workspace_id });
            webhooks::outbound::emit(tx, &state.keyring.vault_kek, "project.deleted", &data, state.auth.now()).await?;
            Ok(())
        })?;
        Ok(NoContent::Done)
    }

    /// My newest activity records in this workspace (mine only; nobody else's, whatever their role).
    #[oai(
        path = "/workspaces/:workspace_id/activity",
        method = "get",
        operation_id = "listActivity",
        tag = "ApiTags::Activity"
    )]
    async fn list_activity(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        /// At most this many (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> poem::Result<Json<Vec<ActivityBody>>> {
        let limit = limit.0.unwrap_or(50);
        let found = scoped!(state, req, auth.principal(), workspace_id.0, |tx| activity::list_own(tx, limit).await);
        Ok(Json(found?.into_iter().map(Into::into).collect()))
    }

    /// Record activity of mine, through the ingestion pipeline: sensitive applications, private
    /// windows and captures outside my allowed windows are dropped; personal data and secrets are
    /// stripped; the title is cut to 200 and the body to 5,000 characters; content identical to a
    /// stored record is dropped. Each stage is reported.
    #[oai(
        path = "/workspaces/:workspace_id/activity",
        method = "post",
        operation_id = "recordActivity",
        tag = "ApiTags::Activity"
    )]
    async fn record_activity(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<NewActivity>,
    ) -> poem::Result<IngestResponse> {
        let Json(body) = body;
        let new = activity::NewActivity {
            app: body.app,
            title: body.title,
            body: body.body,
            private_window: body.private_window,
        };
        let ingested = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            activity::record(tx, &state.pipeline, new.clone(), state.auth.now()).await
        })?;
        let stored = ingested.activity.is_some();
        let body = IngestedBody {
            stored,
            activity: ingested.activity.map(Into::into),
            stages: ingested.stages.into_iter().map(stage_body).collect(),
        };
        Ok(if stored { IngestResponse::Stored(Json(body)) } else { IngestResponse::Dropped(Json(body)) })
    }

    /// My allowed activity capture windows in this workspace.
    #[oai(
        path = "/workspaces/:workspace_id/activity-windows",
        method = "get",
        operation_id = "getActivityWindows",
        tag = "ApiTags::Activity"
    )]
    async fn get_windows(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
    ) -> poem::Result<Json<WindowsBody>> {
        let found = scoped!(state, req, auth.principal(), workspace_id.0, |tx| activity::get_windows(tx).await);
        Ok(Json(found?.into()))
    }

    /// Set my allowed activity capture windows in this workspace (at most 20; none means always).
    #[oai(
        path = "/workspaces/:workspace_id/activity-windows",
        method = "put",
        operation_id = "setActivityWindows",
        tag = "ApiTags::Activity"
    )]
    async fn set_windows(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        body: Json<WindowsBody>,
    ) -> poem::Result<Json<WindowsBody>> {
        let Json(body) = body;
        let windows = activity::Windows {
            utc_offset_minutes: body.utc_offset_minutes,
            windows: body
                .windows
                .into_iter()
                .map(|w| activity::WindowSpec { days: w.days, start: w.start, end: w.end })
                .collect(),
        };
        let set = scoped!(state, req, auth.principal(), workspace_id.0, |tx| {
            activity::set_windows(tx, windows.clone(), state.auth.now()).await
        });
        Ok(Json(set?.into()))
    }

    /// One of my activity records.
    #[oai(
        path = "/workspaces/:workspace_id/activity/:activity_id",
        method = "get",
        operation_id = "getActivity",
        tag = "ApiTags::Activity"
    )]
    async fn get_activity(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        activity_id: Path<ActivityId>,
    ) -> poem::Result<Json<ActivityBody>> {
        let activity_id = activity_id.0;
        let found =
            scoped!(state, req, auth.principal(), workspace_id.0, |tx| activity::get_own(tx, activity_id).await);
        Ok(Json(found?.into()))
    }

    /// Delete one of my activity records.
    #[oai(
        path = "/workspaces/:workspace_id/activity/:activity_id",
        method = "delete",
        operation_id = "deleteActivity",
        tag = "ApiTags::Activity"
    )]
    async fn delete_activity(
        &self,
        state: poem::web::Data<&AppState>,
        req: &Request,
        auth: WorkspaceAuth,
        workspace_id: Path<WorkspaceId>,
        activity_id: Path<ActivityId>,
    ) -> poem::Result<NoContent> {
        let activity_id = activity_id.0;
        scoped!(state, req, auth.principal(), workspace_id.0, |tx| activity::delete_own(tx, activity_id).await)?;
        Ok(NoContent::Done)
    }
}

/// Emits the project event `event_type` to the workspace's subscribed webhook endpoints, in the
/// request's transaction, when the change succeeded.
async fn emitted(
    tx: &tenancy::TenantTx,
    state: &AppState,
    event_type: &str,
    project: projects::Project,
) -> Result<projects::Project, tenancy::TenancyError> {
    let data = serde_json::json!({
        "id": project.id,
        "workspace_id": project.tenant.0,
        "name": project.name,
        "description": project.description,
        "updated_at": project.updated_at,
    });
    webhooks::outbound::emit(tx, &state.keyring.vault_kek, event_type, &data, state.auth.now()).await?;
    Ok(project)
}
