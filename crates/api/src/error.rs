//! The single error shape, `{code, message, request_id}`, and the mapping from every failure to a
//! stable code. Unexpected errors are logged once with their cause and answered with an opaque 500.

use poem::{http::StatusCode, IntoResponse, Response};
use poem_openapi::Object;

pub use crate::codes::ErrorCode;

tokio::task_local! {
    /// The id of the request being served, set by the request-context middleware.
    pub(crate) static REQUEST_ID: String;
}

tokio::task_local! {
    /// A backend failure met while checking a credential, kept for the request. When several
    /// security schemes are tried, the last one's refusal is what comes back (a missing cookie,
    /// say); this answer wins over such a 401: a store that could not answer is never a 401 for
    /// a credential that may well be valid.
    pub(crate) static CREDENTIAL_FAULT: std::sync::Mutex<Option<ApiError>>;
}

/// Keeps `err` as the request's credential fault (see [`CREDENTIAL_FAULT`]) and returns it.
pub(crate) fn note_credential_fault(err: ApiError) -> ApiError {
    let _ = CREDENTIAL_FAULT.try_with(|slot| {
        *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err.clone());
    });
    err
}

/// The id of the current request, or `"-"` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "-".to_owned())
}

/// Body of every 4xx and 5xx response.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable error code (for example `not_found`, `invalid_body`).
    pub code: String,
    /// Human-readable explanation. Never contains secrets or internal details.
    pub message: String,
    /// The request id, also sent as the `X-Request-Id` header; quote it when reporting a problem.
    pub request_id: String,
}

/// An error a handler chooses to return, with its status and stable code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge (step-up: RFC 9470 §3).
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), retry_after: None, challenge: None }
    }

    /// The status the code is answered with.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 401 `insufficient_user_authentication`: the action needs an authentication within the
    /// last `max_age` seconds; re-authenticate at `POST /api/v1/me/reauthenticate` and retry
    /// (RFC 9470 §3: the error code and the `max_age` challenge parameter).
    pub fn step_up(max_age_secs: i64) -> ApiError {
        ApiError {
            challenge: Some(format!(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"A more recent authentication is required\", max_age={max_age_secs}"
            )),
            ..ApiError::new(ErrorCode::InsufficientUserAuthentication, format!(
                    "This action needs an authentication within the last {} minutes: re-authenticate at POST /api/v1/me/reauthenticate, then retry.",
                    max_age_secs / 60
                ),
            )
        }
    }

    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        crate::metrics::rate_limited();
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(ErrorCode::RateLimited, format!("Too many requests; retry in {retry_after_secs} s."))
        }
    }

    /// 503 with `Retry-After` (RFC 9110 §15.6.4): the store was busy or out of reach, the
    /// request's transaction rolled back, and the same request may succeed in a moment.
    pub fn unavailable(fault: storage::Fault) -> ApiError {
        let (code, message) = match fault {
            storage::Fault::Contention => (
                ErrorCode::StorageBusy,
                "The data store was busy with other writes; nothing was changed. Retry shortly.",
            ),
            storage::Fault::Unavailable => (
                ErrorCode::StorageUnavailable,
                "The data store could not be reached; nothing was changed. Retry shortly.",
            ),
        };
        ApiError { retry_after: Some(1), ..ApiError::new(code, message) }
    }

    /// A backend failure under `context`: 503 when a database error in its cause chain is a
    /// [`storage::Fault`], 409 when it is a unique violation (a concurrent request created the
    /// same thing first), else the opaque 500. The cause is logged either way.
    pub fn backend(err: &(dyn std::error::Error + 'static), context: &'static str) -> ApiError {
        let db = std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref::<storage::DbErr>());
        if let Some(db) = db {
            if let Some(fault) = storage::fault(db) {
                tracing::warn!(error = %err, fault = ?fault, "{context}: answered 503");
                return ApiError::unavailable(fault);
            }
            if storage::is_unique_violation(db) {
                tracing::info!(error = %err, "{context}: concurrent duplicate answered 409");
                return ApiError::new(
                    ErrorCode::Conflict,
                    "A concurrent request created the same resource first; reload and retry.",
                );
            }
        }
        tracing::error!(error = %err, "{context}");
        ApiError::new(ErrorCode::Internal, OPAQUE_MESSAGE)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            request_id: current_request_id(),
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.code.status()
    }

    fn as_response(&self) -> Response {
        let mut resp = error_response(self.code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(poem::http::header::RETRY_AFTER, secs.into());
        }
        if let Some(challenge) = self.challenge.as_deref().and_then(|c| poem::http::HeaderValue::from_str(c).ok()) {
            resp.headers_mut().insert(poem::http::header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(err: auth::AuthError) -> ApiError {
        use auth::AuthError as E;
        let code = match &err {
            E::InvalidEmail => ErrorCode::InvalidEmail,
            E::WeakPassword(_) => ErrorCode::WeakPassword,
            E::InvalidCredentials => ErrorCode::InvalidCredentials,
            E::EmailNotVerified => ErrorCode::EmailNotVerified,
            E::InvalidToken => ErrorCode::InvalidToken,
            E::Unauthenticated => ErrorCode::Unauthenticated,
            E::SignupClosed => ErrorCode::SignupClosed,
            E::SessionNotFound => ErrorCode::NotFound,
            E::RefreshTokenReused => ErrorCode::RefreshTokenReused,
            E::TokenFamilyEnded => ErrorCode::TokenFamilyEnded,
            E::Jwt(_) => ErrorCode::Unauthenticated,
            E::RateLimited { retry_after_secs } => return ApiError::rate_limited(*retry_after_secs),
            E::Unavailable { retry_after_secs } => {
                return ApiError {
                    retry_after: Some(*retry_after_secs),
                    ..ApiError::new(
                        ErrorCode::SessionStoreUnavailable,
                        "The session store could not be reached; nothing was changed. Retry shortly.",
                    )
                }
            }
            E::InvalidCode => ErrorCode::InvalidCode,
            E::MfaAlreadyEnabled => ErrorCode::MfaAlreadyEnabled,
            E::ReauthenticateWithProvider => ErrorCode::ReauthenticateWithProvider,
            E::Oidc(oidc) => {
                use auth::oidc::OidcError as O;
                match oidc {
                    O::UnknownProvider => ErrorCode::UnknownProvider,
                    O::InvalidState => ErrorCode::InvalidOidcState,
                    O::ProviderUnavailable(_) => {
                        tracing::warn!(error = %err, "identity provider failure");
                        return ApiError::new(
                            ErrorCode::ProviderUnavailable,
                            "The identity provider could not be reached or answered wrongly.",
                        );
                    }
                    O::CodeRejected => ErrorCode::OidcCodeRejected,
                    O::InvalidIdToken(_) => {
                        tracing::warn!(error = %err, "ID token refused");
                        return ApiError::new(
                            ErrorCode::InvalidIdToken,
                            "The identity provider's ID token failed verification.",
                        );
                    }
                    O::EmailUnverified => ErrorCode::ProviderEmailUnverified,
                    O::AccountExists => ErrorCode::AccountExists,
                    O::IdentityInUse => ErrorCode::IdentityInUse,
                    O::IdentityMismatch => ErrorCode::IdentityMismatch,
                    O::LastSignInMethod => ErrorCode::LastSignInMethod,
                    O::IdentityNotFound => ErrorCode::NotFound,
                    O::InvalidNativeRequest(_) => ErrorCode::InvalidNativeRequest,
                    O::EmailUntrusted => ErrorCode::ProviderEmailUntrusted,
                    O::ReauthenticateLocally => ErrorCode::ReauthenticateLocally,
                    O::IssuerMismatch => ErrorCode::OidcIssuerMismatch,
                }
            }
            E::Store(_) | E::Db(_) | E::Audit(_) | E::Outbox(_) | E::Internal(_) => {
                return ApiError::backend(&err, "authentication backend failure");
            }
        };
        ApiError::new(code, err.to_string())
    }
}

impl From<tenancy::TenancyError> for ApiError {
    fn from(err: tenancy::TenancyError) -> ApiError {
        use rbac::RbacError as R;
        use tenancy::TenancyError as E;
        let code = match &err {
            // Another tenant's row, or a workspace one cannot reach: its existence is not revealed.
            E::NotFound => return ApiError::new(ErrorCode::NotFound, "Not found."),
            E::Invalid(_) => ErrorCode::InvalidRequest,
            E::Conflict(_) => ErrorCode::Conflict,
            E::Forbidden(R::InvalidPermission(_) | R::UnknownPermission(_) | R::UnknownRole(_)) => {
                ErrorCode::InvalidPermission
            }
            E::Forbidden(R::LastOwner) => ErrorCode::LastOwner,
            E::Forbidden(_) => ErrorCode::Forbidden,
            E::Rejected { code, .. } => domain_code(code, ErrorCode::InvalidRequest),
            E::StateConflict { code, .. } => domain_code(code, ErrorCode::Conflict),
            E::Db(_) | E::Audit(_) | E::Vault(_) | E::Internal(_) => {
                return ApiError::backend(&err, "tenant data backend failure");
            }
        };
        ApiError::new(code, err.to_string())
    }
}

/// The table's entry for a code a domain crate chose; a code missing from the table (a test
/// forbids it) is answered as `fallback`.
pub(crate) fn domain_code(wire: &str, fallback: ErrorCode) -> ErrorCode {
    ErrorCode::from_wire(wire).unwrap_or_else(|| {
        tracing::error!(error.code = wire, "a domain error code is missing from the error table");
        fallback
    })
}

/// `?` for domain results inside handlers: maps the domain error through [`ApiError`].
pub(crate) trait OrApiError<T> {
    fn api(self) -> poem::Result<T>;
}

impl<T> OrApiError<T> for Result<T, auth::AuthError> {
    fn api(self) -> poem::Result<T> {
        self.map_err(|e| poem::Error::from(ApiError::from(e)))
    }
}

impl<T> OrApiError<T> for Result<T, tenancy::TenancyError> {
    fn api(self) -> poem::Result<T> {
        self.map_err(|e| poem::Error::from(ApiError::from(e)))
    }
}

/// Builds the JSON error response for the current request.
pub(crate) fn error_response(code: ErrorCode, message: &str) -> Response {
    let status = code.status();
    let body =
        ErrorBody { code: code.as_str().to_owned(), message: message.to_owned(), request_id: current_request_id() };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
    Response::builder().status(status).content_type("application/json; charset=utf-8").body(json)
}

/// Message used for every 5xx that is not an [`ApiError`]: the cause goes to the log, not the client
/// (OWASP Error Handling Cheat Sheet).
pub(crate) const OPAQUE_MESSAGE: &str = "An internal error occurred. Quote the request id when reporting it.";

/// Turns any error that reached the top of the stack into the error shape.
pub(crate) fn into_error_response(err: poem::Error) -> Response {
    if err.status() == StatusCode::UNAUTHORIZED {
        let fault = CREDENTIAL_FAULT
            .try_with(|slot| slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take())
            .ok()
            .flatten();
        if let Some(fault) = fault {
            return fault.as_response_with_log();
        }
    }
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.as_response_with_log();
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, error.debug = ?err, "unhandled error");
        return error_response(ErrorCode::for_status(status), OPAQUE_MESSAGE);
    }
    let code = if err.is::<poem_openapi::error::ParseRequestPayloadError>() {
        ErrorCode::InvalidBody
    } else if err.is::<poem_openapi::error::ParseParamError>() || err.is::<poem_openapi::error::ParsePathError>() {
        ErrorCode::InvalidParameter
    } else if err.is::<poem_openapi::error::ContentTypeError>() {
        ErrorCode::UnsupportedMediaType
    } else {
        ErrorCode::for_status(status)
    };
    let message = match status.as_u16() {
        401 => "Sign in first.".to_owned(),
        404 => "No such resource.".to_owned(),
        405 => "This method is not allowed on this resource.".to_owned(),
        _ => err.to_string(),
    };
    error_response(code, &message).into_response()
}

impl ApiError {
    fn as_response_with_log(&self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error.code = self.code.as_str(), error = %self.message, "server error");
        }
        poem::error::ResponseError::as_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_opaque() {
        let err = poem::Error::from_string(
            "connection to 10.0.0.5 refused: password authentication failed",
            StatusCode::INTERNAL_SERVER_ERROR,
        );
        let resp = into_error_response(err);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(resp);
        assert!(body.contains("\"code\":\"internal\""), "{body}");
        assert!(!body.contains("10.0.0.5"), "{body}");
        assert!(!body.contains("password"), "{body}");
    }

    fn futures_body(resp: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { resp.into_body().into_string().await.unwrap() })
    }
}
