//! `GET /metrics`: the Prometheus exposition for a scraper holding the metrics token.

use poem::{http::header, web::Data, IntoResponse, Request, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::codes::ErrorCode;
use crate::metrics::{handle, OUTBOX_DEAD, OUTBOX_DUE, OUTBOX_LAG};
use crate::{error::ApiError, AppState};

/// The configured scrape token.
#[derive(Clone)]
pub(crate) struct MetricsToken(pub Option<secrecy::SecretString>);

/// `GET /metrics`: the exposition text for a scraper with the token.
#[poem::handler]
pub(crate) async fn endpoint(
    req: &Request,
    state: Data<&AppState>,
    token: Data<&MetricsToken>,
) -> poem::Result<Response> {
    let Some(expected) = token.0 .0.as_ref() else {
        return Err(ApiError::new(ErrorCode::NotFound, "Not found.").into());
    };
    let presented = req.header(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    // Compare digests in constant time, so neither content nor length leaks through timing.
    let ok: bool = subtle::ConstantTimeEq::ct_eq(
        Sha256::digest(presented.as_bytes()).as_slice(),
        Sha256::digest(expected.expose_secret().as_bytes()).as_slice(),
    )
    .into();
    if !ok {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "A metrics token is required.").into());
    }
    let Some(handle) = handle() else {
        return Err(ApiError::new(ErrorCode::NotFound, "Not found.").into());
    };
    let now = state.auth.now();
    match scheduler::stats(state.db.conn(), now).await {
        Ok(stats) => {
            metrics::gauge!(OUTBOX_DUE).set(stats.due as f64);
            metrics::gauge!(OUTBOX_LAG).set(stats.lag_secs);
            metrics::gauge!(OUTBOX_DEAD).set(stats.dead as f64);
        }
        Err(err) => tracing::warn!(error = %err, "outbox statistics unavailable for /metrics"),
    }
    handle.run_upkeep();
    Ok(handle.render().with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response())
}
