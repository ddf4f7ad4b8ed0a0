//! Route table, OpenAPI service and the documentation page.

mod admin;
mod api_keys;
mod audit;
mod auth;
mod connections;
mod health;
mod oidc;
mod pii;
mod projects;
mod scope;
mod scrape;
mod webhook_endpoints;
mod webhooks;
mod well_known;
mod workspace_tokens;
mod workspaces;

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use poem::{
    endpoint::make_sync,
    endpoint::BoxEndpoint,
    http::{header, Method},
    middleware::{CatchPanic, Cors, SetHeader},
    web::Html,
    Endpoint, EndpointExt, IntoEndpoint, Route,
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
    /// Accounts, sign-in, passwords and sessions.
    Auth,
    /// Workspaces (the tenants): members, roles, invitations, grants and refused attempts.
    Workspaces,
    /// Projects: workspace data with role-based access.
    Projects,
    /// Activity: records private to their user.
    Activity,
    /// The audit trail: append-only, hash-chained, readable by the tenant.
    Audit,
    /// Connections to external providers, with write-only secrets sealed at rest.
    Connections,
    /// Personal data and secrets: find and redact.
    Pii,
    /// Webhooks: inbound deliveries and their sources; outbound endpoints, deliveries and attempts.
    Webhooks,
    /// Platform administration (platform level Admin or above).
    Admin,
}

/// 201 with the created resource.
#[derive(poem_openapi::ApiResponse)]
pub(crate) enum Created<T: poem_openapi::types::ToJSON> {
    /// Created.
    #[oai(status = 201)]
    Created(poem_openapi::payload::Json<T>),
}

/// 204 without a body.
#[derive(poem_openapi::ApiResponse)]
pub(crate) enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

type Apis = (
    health::HealthApi,
    well_known::WellKnownApi,
    auth::AuthApi,
    oidc::OidcApi,
    workspaces::WorkspacesApi,
    workspace_tokens::WorkspaceTokensApi,
    api_keys::ApiKeysApi,
    projects::ProjectsApi,
    audit::AuditApi,
    connections::ConnectionsApi,
    pii::PiiApi,
    webhooks::WebhooksApi,
    webhook_endpoints::WebhookEndpointsApi,
    admin::AdminApi,
);

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            health::HealthApi,
            well_known::WellKnownApi,
            auth::AuthApi,
            oidc::OidcApi,
            workspaces::WorkspacesApi,
            workspace_tokens::WorkspaceTokensApi,
            api_keys::ApiKeysApi,
            projects::ProjectsApi,
            audit::AuditApi,
            connections::ConnectionsApi,
            pii::PiiApi,
            webhooks::WebhooksApi,
            webhook_endpoints::WebhookEndpointsApi,
            admin::AdminApi,
        ),
        "Rampart API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Rampart: a secure-by-default multi-tenant SaaS backend. Every error response has the \
             shape `{code, message, request_id}`; `code` is stable and safe to branch on.",
    )
    .license("Apache-2.0")
}

/// The API description as pretty JSON, exactly as committed under `openapi/`.
pub fn openapi_json() -> String {
    crate::describe::finish(&service().spec())
}

/// Builds the whole HTTP application around `state`.
pub fn build_app(state: AppState, http: &HttpConfig) -> BoxEndpoint<'static> {
    let api = service();
    let raw = api.spec();
    let published = crate::describe::finish(&raw);
    // The documentation page embeds the description: the published one, not the derive's.
    let docs_html = api.scalar_html().replace(&raw, &published);
    let contract = Arc::new(crate::contract::Contract::new(&published, &["/openapi.json", "/docs", "/metrics"]));
    let docs_csp = docs_csp(&docs_html);
    let docs = make_sync(move |_| Html(docs_html.clone()))
        .with(SetHeader::new().overriding(header::CONTENT_SECURITY_POLICY, docs_csp));

    let route = Route::new()
        .at(
            "/openapi.json",
            poem::get(make_sync(move |_| {
                poem::Response::builder().content_type("application/json; charset=utf-8").body(published.clone())
            })),
        )
        .at("/docs", docs)
        .at("/metrics", poem::get(scrape::endpoint).data(scrape::MetricsToken(http.metrics_token.clone())))
        .nest("/", api.into_endpoint())
        .with(poem::middleware::CookieJarManager::new());
    let route = route.around(move |ep, req| crate::contract::hold(ep, req, contract.clone()));
    let allowed = Arc::new(http.cors_allowed_origins.clone());
    let route = route.around(move |ep, req| middleware::refuse_cross_site(ep, req, allowed.clone()));
    let test_mode = http.test_mode;
    let route = route.around(move |ep, req| middleware::reject_identity_headers(ep, req, test_mode));
    let kv = state.auth.kv().clone();
    let per_sec = http.rate_limit_per_client_per_sec;
    let route = route.around(middleware::api_keys);
    let route = route.around(move |ep, req| middleware::client_rate_limit(ep, req, kv.clone(), per_sec)).data(state);
    with_middleware(route, http)
}

/// Wraps any endpoint in the middleware stack every response goes through.
fn with_middleware<E: Endpoint + 'static>(route: E, http: &HttpConfig) -> BoxEndpoint<'static> {
    let route = route.with(CatchPanic::new());
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
    let proxies = Arc::new(http.trusted_proxies.clone());
    route.around(move |ep, req| middleware::request_context(ep, req, security.clone(), proxies.clone())).boxed()
}

/// CSP for the documentation page: its inline scripts are allowed by hash only.
fn docs_csp(html: &str) -> String {
    let hashes: Vec<String> = inline_scripts(html)
        .into_iter()
        .map(|script| {
            format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes())))
        })
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hashes.join(" ")
    )
}

/// Bodies of executable inline `<script>` elements (JSON data blocks are not executed). Scans as
/// an HTML parser does: a script element ends at the first `</script>` after its opening tag.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(open) = rest.find("<script") {
        let after_open = &rest[open..];
        let Some(tag_end) = after_open.find('>') else {
            break;
        };
        let attrs = &after_open[..tag_end];
        let body_and_more = &after_open[tag_end + 1..];
        let Some(close) = body_and_more.find("</script>") else {
            break;
        };
        if !attrs.contains("application/json") && !attrs.contains("src=") {
            scripts.push(&body_and_more[..close]);
        }
        rest = &body_and_more[close + "</script>".len()..];
    }
    scripts
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{http::StatusCode, test::TestClient};
    use poem_openapi::{payload::Json, Object, OpenApi};

    #[derive(Object)]
    struct Probe {
        name: String,
    }

    struct ProbeApi;

    #[OpenApi]
    impl ProbeApi {
        #[oai(path = "/probe", method = "post")]
        async fn probe(&self, body: Json<Probe>) -> Json<String> {
            Json(body.0.name)
        }

        #[oai(path = "/hang", method = "get")]
        async fn hang(&self) -> Json<String> {
            std::future::pending::<()>().await;
            Json(String::new())
        }

        #[oai(path = "/panic", method = "get")]
        async fn panic(&self) -> Json<String> {
            panic!("secret detail 7f3a in a panic message")
        }
    }

    fn probe_app() -> TestClient<BoxEndpoint<'static>> {
        let http = HttpConfig { request_timeout_secs: 2, ..HttpConfig::default() };
        let svc = OpenApiService::new(ProbeApi, "probe", "1");
        TestClient::new(with_middleware(Route::new().nest("/", svc), &http))
    }

    async fn assert_error_shape(resp: poem::test::TestResponse, status: StatusCode, code: &str) -> serde_json::Value {
        resp.assert_status(status);
        resp.assert_header("x-frame-options", "DENY");
        resp.assert_header("x-content-type-options", "nosniff");
        let request_id = resp.0.headers().get("x-request-id").expect("request id header").to_str().unwrap().to_owned();
        let body: serde_json::Value = resp.0.into_body().into_json().await.expect("error body is JSON");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        assert_eq!(body["request_id"], request_id.as_str(), "{body}");
        body
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_in_the_error_shape() {
        let resp = probe_app().post("/probe").content_type("application/json").body("{\"name\": ").send().await;
        assert_error_shape(resp, StatusCode::BAD_REQUEST, "invalid_body").await;
    }

    #[tokio::test]
    async fn json_of_the_wrong_shape_is_a_400_in_the_error_shape() {
        let resp = probe_app().post("/probe").content_type("application/json").body("{\"nom\": 1}").send().await;
        assert_error_shape(resp, StatusCode::BAD_REQUEST, "invalid_body").await;
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_media_type_is_a_415_in_the_error_shape() {
        let resp = probe_app().post("/probe").content_type("text/plain").body("name").send().await;
        assert_error_shape(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }

    #[tokio::test]
    async fn a_well_formed_body_reaches_the_handler() {
        let resp = probe_app().post("/probe").content_type("application/json").body("{\"name\": \"ok\"}").send().await;
        resp.assert_status_is_ok();
        resp.assert_json("ok").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_outlives_the_timeout_is_answered_503() {
        let resp = probe_app().get("/hang").send().await;
        assert_error_shape(resp, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
    }

    #[tokio::test]
    async fn a_panicking_handler_is_an_opaque_500() {
        let resp = probe_app().get("/panic").send().await;
        let body = assert_error_shape(resp, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
        assert!(!body.to_string().contains("7f3a"), "{body}");
    }

    #[test]
    fn documentation_page_scripts_are_allowed_by_hash_not_by_unsafe_inline() {
        let html = service().scalar_html();
        let csp = docs_csp(&html);
        assert_eq!(inline_scripts(&html).len(), 1, "the page has one executable inline script");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("script-src 'unsafe-inline'"), "{csp}");
    }
}
