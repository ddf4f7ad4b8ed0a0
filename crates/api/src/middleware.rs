//! Middleware applied to every request: request id, access log, security headers, the error
//! shape, the body-size limit and the request timeout.

use crate::codes::ErrorCode;
use std::{sync::Arc, time::Duration};

use poem::{
    http::{header, HeaderName, HeaderValue},
    web::headers::HeaderMapExt,
    Body, Endpoint, IntoResponse, Request, Response,
};
use tracing::Instrument;

use crate::config::TrustedProxies;
use crate::error::{error_response, into_error_response, ApiError, REQUEST_ID};
use crate::forwarded::ClientAddr;

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// CSP for API responses: nothing may be loaded or framed (OWASP REST Security Cheat Sheet).
pub(crate) const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Headers set on every response unless a route chose its own value.
///
/// `Strict-Transport-Security` is sent on every response, whatever the scheme the request came
/// in by: over TLS, through a proxy that terminated TLS, or plain. Browsers ignore it over plain
/// http (RFC 6797 §8.1), so this is never weaker than sending it for https only, and it needs no
/// `X-Forwarded-Proto`: no header a client or proxy sends can turn it off. The session cookies
/// are `Secure` unconditionally for the same reason (`routes::auth::cookie`).
#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl SecurityHeaders {
    pub(crate) fn new(hsts_max_age_secs: u64) -> SecurityHeaders {
        let fixed = |s: &'static str| HeaderValue::from_static(s);
        let hsts = HeaderValue::from_str(&format!("max-age={hsts_max_age_secs}; includeSubDomains"))
            .unwrap_or_else(|_| fixed("max-age=63072000; includeSubDomains"));
        SecurityHeaders {
            headers: vec![
                // OWASP HTTP Headers Cheat Sheet, values as recommended there.
                (header::STRICT_TRANSPORT_SECURITY, hsts),
                (header::X_FRAME_OPTIONS, fixed("DENY")),
                (header::X_CONTENT_TYPE_OPTIONS, fixed("nosniff")),
                (header::CONTENT_SECURITY_POLICY, fixed(API_CSP)),
                (header::REFERRER_POLICY, fixed("no-referrer")),
                (HeaderName::from_static("cross-origin-opener-policy"), fixed("same-origin")),
                (HeaderName::from_static("cross-origin-resource-policy"), fixed("same-origin")),
                (HeaderName::from_static("permissions-policy"), fixed("camera=(), microphone=(), geolocation=()")),
                // OWASP REST Security Cheat Sheet: API responses must not be cached by default.
                (header::CACHE_CONTROL, fixed("no-store")),
            ],
        }
    }

    fn apply(&self, resp: &mut Response) {
        let headers = resp.headers_mut();
        for (name, value) in &self.headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Accepts a client-supplied request id only when it is short and made of safe characters, so it
/// cannot inject into logs or headers; otherwise a fresh one is generated.
pub(crate) fn accept_or_generate_request_id(supplied: Option<&str>) -> String {
    match supplied {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// The outermost layer: request id, the client's address, access log, error shape and security
/// headers.
///
/// The client's address is resolved here, once per request, from the TCP peer and (for trusted
/// proxies only) the forwarding headers, and kept in the request as a [`ClientAddr`]: the
/// rate limits, the sign-in throttles and lockouts, session records, audit records and this
/// access log all read it through [`client_ip`].
pub(crate) async fn request_context<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    security: Arc<SecurityHeaders>,
    proxies: Arc<TrustedProxies>,
) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let client = req
        .remote_addr()
        .as_socket_addr()
        .map(|peer| ClientAddr(crate::forwarded::client_addr(peer.ip(), req.headers(), &proxies)));
    if let Some(client) = client {
        req.extensions_mut().insert(client);
    }
    let request_id = accept_or_generate_request_id(req.header(REQUEST_ID_HEADER));
    let method = req.method().clone();
    // Only the path is logged: query strings may carry tokens.
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request.id = %request_id);

    let mut operation = "other";
    let mut resp = REQUEST_ID
        .scope(
            request_id.clone(),
            crate::error::CREDENTIAL_FAULT.scope(Default::default(), async {
                // poem-openapi tags what it served with the operation id: a bounded metrics label.
                let resp = match ep.call(req).await {
                    Ok(resp) => {
                        let resp = resp.into_response();
                        operation = resp.data::<poem_openapi::OperationId>().map_or(operation, |op| op.0);
                        resp
                    }
                    Err(err) => {
                        operation = err.data::<poem_openapi::OperationId>().map_or(operation, |op| op.0);
                        into_error_response(err)
                    }
                };
                normalise_error_body(resp)
            }),
        )
        .instrument(span.clone())
        .await;

    security.apply(&mut resp);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    crate::metrics::observe_request(operation, method.as_str(), status, elapsed);
    let duration_ms = elapsed * 1000.0;
    let client_ip = client.map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    span.in_scope(|| {
        tracing::info!(http.method = %method, http.path = %path, http.status = status, client.ip = %client_ip, duration_ms = duration_ms, "request served")
    });
    Ok(resp)
}

/// A 4xx/5xx produced outside our handlers (a library, a panic catcher) is rewritten into the
/// error shape; headers such as `Allow` or `Retry-After` are kept.
fn normalise_error_body(resp: Response) -> Response {
    let status = resp.status();
    if status.as_u16() < 400 || is_json(&resp) {
        return resp;
    }
    let message = if status.is_server_error() {
        crate::error::OPAQUE_MESSAGE.to_owned()
    } else {
        status.canonical_reason().unwrap_or("Request refused").to_owned()
    };
    let mut shaped = error_response(ErrorCode::for_status(status), &message);
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"))
}

/// Refuses bodies larger than the limit: by `Content-Length` before reading, and while reading
/// when the length is not declared (chunked transfer).
pub(crate) async fn body_limit<E: Endpoint>(ep: Arc<E>, mut req: Request, limit: usize) -> poem::Result<Response> {
    let too_large = || ApiError::new(ErrorCode::PayloadTooLarge, format!("The request body exceeds {limit} bytes."));
    if let Some(len) = req.headers().typed_get::<poem::web::headers::ContentLength>() {
        if len.0 > limit as u64 {
            return Err(too_large().into());
        }
    } else if req.headers().contains_key(header::TRANSFER_ENCODING) {
        let bytes = req.take_body().into_bytes_limit(limit).await.map_err(|err| match err {
            poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(too_large()),
            other => poem::Error::from(other),
        })?;
        req.set_body(Body::from_bytes(bytes));
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Answers 503 when the inner endpoint takes longer than the configured timeout.
pub(crate) async fn timeout<E: Endpoint>(ep: Arc<E>, req: Request, limit: Duration) -> poem::Result<Response> {
    match tokio::time::timeout(limit, ep.call(req)).await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            Err(ApiError::new(ErrorCode::Timeout, "The request took too long and was abandoned.").into())
        }
    }
}

/// The client's address as [`request_context`] resolved it: the TCP peer, or for a peer in
/// `http.trusted_proxies` the client its forwarding headers name (see [`crate::forwarded`]).
/// Every use of the client's address goes through here; nothing else reads the peer or the
/// forwarding headers. Outside `request_context` (which every route is wrapped in) it is the
/// TCP peer, never a header.
pub(crate) fn client_ip(req: &Request) -> Option<String> {
    match req.extensions().get::<ClientAddr>() {
        Some(client) => Some(client.0.to_string()),
        None => req.remote_addr().as_socket_addr().map(|a| a.ip().to_canonical().to_string()),
    }
}

/// Headers that would let a client claim an identity. Identity comes only from credentials the
/// server verifies; these are refused (400) unless the server runs in explicit test mode.
pub(crate) const IDENTITY_HEADERS: &[&str] = &[
    "x-user-id",
    "x-user-email",
    "x-tenant-id",
    "x-workspace-id",
    "x-account-id",
    "x-auth-user",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-remote-user",
    "remote-user",
    "x-principal",
    "x-impersonate-user",
];

pub(crate) async fn reject_identity_headers<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    test_mode: bool,
) -> poem::Result<Response> {
    if !test_mode {
        if let Some(name) = IDENTITY_HEADERS.iter().find(|h| req.headers().contains_key(**h)) {
            return Err(ApiError::new(
                ErrorCode::IdentityHeaderRejected,
                format!("The `{name}` header is not accepted: identity comes from verified credentials only."),
            )
            .into());
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Per-client request budget (default 20 per second), answered with 429 and `Retry-After`.
pub(crate) async fn client_rate_limit<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    kv: auth::store::Kv,
    per_sec: u64,
) -> poem::Result<Response> {
    if per_sec > 0 {
        let ip = client_ip(&req).unwrap_or_else(|| "unknown".into());
        match kv.hit(&format!("client:{ip}"), per_sec, Duration::from_secs(1)).await {
            Ok(d) if !d.allowed => return Err(ApiError::rate_limited(d.retry_after_secs).into()),
            Ok(_) => {}
            // Fail open on a store outage for the coarse limit only; authentication throttles
            // fail closed (their errors surface as 500).
            Err(err) => tracing::warn!(error = %err, "rate-limit store unavailable"),
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Header carrying an API key (`rk_live_…`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// A key's caps as counted for this request, for the response headers.
#[derive(Debug, Clone, Copy)]
struct Quota {
    minute: auth::store::RateDecision,
    month: auth::store::RateDecision,
}

impl Quota {
    /// `X-RateLimit-*` headers for both windows, and `Retry-After` on the one exhausted (the
    /// fields of draft-ietf-httpapi-ratelimit-headers, as the common `X-` names).
    fn headers(&self, headers: &mut poem::http::HeaderMap) {
        let pairs = [
            ("x-ratelimit-limit-minute", self.minute.limit),
            ("x-ratelimit-remaining-minute", self.minute.remaining),
            ("x-ratelimit-reset-minute", self.minute.retry_after_secs),
            ("x-ratelimit-limit-month", self.month.limit),
            ("x-ratelimit-remaining-month", self.month.remaining),
            ("x-ratelimit-reset-month", self.month.retry_after_secs),
        ];
        for (name, value) in pairs {
            headers.insert(name, value.into());
        }
    }
}

/// Authenticates an `X-Api-Key` once per request and counts it against the key's caps per minute
/// and per calendar month (in Redis when configured, so every replica counts together): over
/// either cap is 429 `api_key_quota_exceeded`; an unknown, revoked or expired key is 401. Every
/// answer to a key carries the remaining quota. The key's grant is left in the request for
/// [`crate::principal::ApiKeyAuth`]; a request without the header passes untouched.
pub(crate) async fn api_keys<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let Some(presented) = req.header(API_KEY_HEADER).map(str::to_owned) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    let Some(state) = req.data::<crate::AppState>().cloned() else {
        return Err(ApiError::new(ErrorCode::Internal, "state missing").into());
    };
    let grant = state.auth.authenticate_api_key(&presented).await.map_err(|err| match err {
        auth::AuthError::Unauthenticated => {
            ApiError::new(ErrorCode::Unauthenticated, "The API key is unknown, revoked or expired.")
        }
        other => ApiError::from(other),
    })?;
    let now = state.auth.now();
    let kv = state.auth.kv();
    let month_end = {
        use chrono::Datelike as _;
        let first = now.date_naive().with_day(1).unwrap_or(now.date_naive());
        let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(first);
        next.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now)
    };
    let month_key = format!("apikey:{}:month:{}", grant.key_id, now.format("%Y-%m"));
    let until_month_end = (month_end - now).to_std().unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1));
    let counted = async {
        let minute = kv
            .hit(&format!("apikey:{}:minute", grant.key_id), u64::from(grant.per_minute), Duration::from_secs(60))
            .await?;
        let month = kv.hit(&month_key, grant.per_month, until_month_end).await?;
        Ok::<_, auth::AuthError>(Quota { minute, month })
    };
    // Caps fail closed: without the store nothing is counted, so nothing is let through.
    let quota = counted.await.map_err(ApiError::from)?;
    if !quota.minute.allowed || !quota.month.allowed {
        let wait = if quota.minute.allowed { quota.month.retry_after_secs } else { quota.minute.retry_after_secs };
        let mut resp = poem::error::ResponseError::as_response(&ApiError::new(
            ErrorCode::ApiKeyQuotaExceeded,
            format!(
                "This API key used its requests for this {}; retry in {wait} s.",
                if quota.minute.allowed { "month" } else { "minute" }
            ),
        ));
        resp.headers_mut().insert(poem::http::header::RETRY_AFTER, wait.into());
        quota.headers(resp.headers_mut());
        return Ok(resp);
    }
    req.extensions_mut().insert(grant);
    let mut resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(err) => err.into_response(),
    };
    quota.headers(resp.headers_mut());
    Ok(resp)
}

/// Refuses state-changing requests that a browser marks as cross-site (`Sec-Fetch-Site`, W3C
/// Fetch Metadata; OWASP CSRF Prevention Cheat Sheet), unless their `Origin` is on the CORS
/// allow-list. This covers what the session CSRF token cannot: requests made before a session
/// exists, such as a forged sign-in ("login CSRF"). Clients that send no Fetch Metadata (servers,
/// SDKs) are not affected.
pub(crate) async fn refuse_cross_site<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    allowed: Arc<Vec<String>>,
) -> poem::Result<Response> {
    let unsafe_method =
        !matches!(*req.method(), poem::http::Method::GET | poem::http::Method::HEAD | poem::http::Method::OPTIONS);
    if unsafe_method && req.header("sec-fetch-site") == Some("cross-site") {
        let origin_allowed = req.header("origin").is_some_and(|o| allowed.iter().any(|a| a == o));
        if !origin_allowed {
            return Err(ApiError::new(
                ErrorCode::CrossSiteRequest,
                "State-changing requests from other sites are refused.",
            )
            .into());
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_request_ids_are_kept_and_others_replaced() {
        assert_eq!(accept_or_generate_request_id(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in ["", "has space", "new\nline", "<script>", &"a".repeat(129)] {
            let got = accept_or_generate_request_id(Some(bad));
            assert_ne!(got, bad);
            assert_eq!(got.len(), 32, "a generated id is a simple uuid");
        }
        assert_eq!(accept_or_generate_request_id(None).len(), 32);
    }
}
