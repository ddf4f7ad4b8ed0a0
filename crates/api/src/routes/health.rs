//! Liveness (`/healthz`) and readiness (`/readyz`) probes.

use crate::codes::ErrorCode;
use std::time::Duration;

use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{error::ApiError, error::ErrorBody, AppState};

pub(crate) struct HealthApi;

/// Liveness answer.
#[derive(Debug, Object)]
struct Health {
    /// Always `ok` while the process serves requests.
    status: String,
}

/// Readiness answer: each dependency's state.
#[derive(Debug, Object)]
struct Readiness {
    /// `ready`.
    status: String,
    /// `ok`.
    database: String,
    /// `ok` or `not_configured`.
    redis: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Every dependency answered.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// A dependency did not answer; `message` names it. Code `not_ready`.
    #[oai(status = 503)]
    NotReady(Json<ErrorBody>),
}

/// How long one dependency check may take before the probe reports it down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness probe: answers while the process is up, without touching dependencies.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health { status: "ok".into() })
    }

    /// Readiness probe: checks the database (reachable, schema current) and Redis when configured.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        let mut failed = Vec::new();
        let db = tokio::time::timeout(CHECK_TIMEOUT, async {
            state.db.ping().await?;
            state.db.ensure_schema_current().await
        })
        .await;
        match db {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: database check failed");
                failed.push("database");
            }
            Err(_) => {
                tracing::warn!("readiness: database check timed out");
                failed.push("database");
            }
        }
        let redis = match &state.redis {
            None => "not_configured",
            Some(conn) => {
                let mut conn = conn.clone();
                let ping =
                    tokio::time::timeout(CHECK_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
                match ping {
                    Ok(Ok(_)) => "ok",
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "readiness: redis check failed");
                        failed.push("redis");
                        "failed"
                    }
                    Err(_) => {
                        tracing::warn!("readiness: redis check timed out");
                        failed.push("redis");
                        "failed"
                    }
                }
            }
        };
        if failed.is_empty() {
            ReadyResponse::Ready(Json(Readiness { status: "ready".into(), database: "ok".into(), redis: redis.into() }))
        } else {
            let err = ApiError::new(ErrorCode::NotReady, format!("Not ready: {} unavailable.", failed.join(", ")));
            ReadyResponse::NotReady(Json(err.body()))
        }
    }
}
