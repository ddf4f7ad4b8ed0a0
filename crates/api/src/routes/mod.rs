//! Route table, OpenAPI service and the documentation page.

mod health;
mod well_known;

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use poem::{
    endpoint::make_sync,
    http::{header, Method},
    middleware::{CatchPanic, Cors, SetHeader},
    web::Html,
    endpoint::BoxEndpoint, EndpointExt, IntoEndpoint, Route,
};
use poem_openapi::{OpenApiService, Tags};
use sha2::{Digest, Sha256};

pub use well_known::render_security_txt;

use crate::{
    middleware::{self, SecurityHeaders, REQUEST_ID_HEADER},
    AppState, HttpConfig,
};

/// Groups of operations in the API description.
#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Liveness and readiness probes.
    Health,
    /// Well-known URIs (RFC 8615).
    WellKnown,
}

fn service() -> OpenApiService<(health::HealthApi, well_known::WellKnownApi), ()> {
    OpenApiService::new((health::HealthApi, well_known::WellKnownApi), "Rampart API", env!("CARGO_PKG_VERSION"))
        .description(
            "Rampart: a secure-by-default multi-tenant SaaS backend. Every error response has the \
             shape `{code, message, request_id}`; `code` is stable and safe to branch on.",
        )
        .license("Apache-2.0")
}

/// The API description as pretty JSON, exactly as committed under `openapi/`.
pub fn openapi_json() -> String {
    service().spec()
}

/// Builds the whole HTTP application around `state`.
pub fn build_app(state: AppState, http: &HttpConfig) -> BoxEndpoint<'static> {
    let api = service();
    let docs_html = api.scalar_html();
    let docs_csp = docs_csp(&docs_html);
    let docs = make_sync(move |_| Html(docs_html.clone()))
        .with(SetHeader::new().overriding(header::CONTENT_SECURITY_POLICY, docs_csp));

    let route = Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .at("/docs", docs)
        .nest("/", api.into_endpoint())
        .data(state)
        .with(CatchPanic::new());

    let limit = http.body_limit_bytes;
    let route = route.around(move |ep, req| middleware::body_limit(ep, req, limit));
    let timeout = Duration::from_secs(http.request_timeout_secs.max(1));
    let route = route.around(move |ep, req| middleware::timeout(ep, req, timeout));

    let route: BoxEndpoint<'static> = if http.cors_allowed_origins.is_empty() {
        route.boxed()
    } else {
        // An explicit allow-list only; poem's `Cors` with no origins would allow every origin.
        route
            .with(
                Cors::new()
                    .allow_origins(http.cors_allowed_origins.iter().map(String::as_str))
                    .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
                    .allow_headers(["content-type", "authorization", "x-csrf-token", REQUEST_ID_HEADER])
                    .expose_headers([REQUEST_ID_HEADER, "retry-after"])
                    .allow_credentials(true)
                    .max_age(600),
            )
            .boxed()
    };

    let security = Arc::new(SecurityHeaders::new(http.hsts_max_age_secs));
    route.around(move |ep, req| middleware::request_context(ep, req, security.clone())).boxed()
}

/// CSP for the documentation page: its inline scripts are allowed by hash only.
fn docs_csp(html: &str) -> String {
    let hashes: Vec<String> = inline_scripts(html)
        .map(|script| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()))))
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hashes.join(" ")
    )
}

/// Bodies of executable inline `<script>` elements (JSON data blocks are not executed).
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script").skip(1).filter_map(|rest| {
        let (attrs, after) = rest.split_once('>')?;
        if attrs.contains("application/json") || attrs.contains("src=") {
            return None;
        }
        after.split_once("</script>").map(|(body, _)| body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_page_scripts_are_allowed_by_hash_not_by_unsafe_inline() {
        let html = service().scalar_html();
        let csp = docs_csp(&html);
        assert_eq!(inline_scripts(&html).count(), 1, "the page has one executable inline script");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("script-src 'unsafe-inline'"), "{csp}");
    }
}
