//! The HTTP basics every response carries, proven against the real server on port 0, on SQLite and
//! on PostgreSQL (runtime role) + Redis.

use testkit::{backend_tests, spawn_app, spawn_app_with, storage::ConnectionTrait, Backend};

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
];

fn assert_security_headers(resp: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(resp.headers().get(*name).and_then(|v| v.to_str().ok()), Some(*value), "header {name}");
    }
    let csp = resp.headers().get("content-security-policy").expect("CSP header").to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(resp.headers().contains_key("x-request-id"));
}

async fn assert_error_shape(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_security_headers(&resp);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: serde_json::Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "exactly code, message, request_id: {body}");
    body
}

async fn healthz_answers_ok_with_every_security_header(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    assert_security_headers(&resp);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

async fn readyz_checks_the_database_and_redis_when_configured(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    let expected_redis = match backend {
        Backend::Postgres => "ok",
        Backend::Sqlite => "not_configured",
    };
    assert_eq!(body["redis"], expected_redis);
}

async fn readyz_answers_503_when_the_schema_is_behind_the_binary(backend: Backend) {
    let app = spawn_app(backend).await;
    // Remove the record of the last migration behind the server's back, as the owner.
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    owner.conn().execute_unprepared("DELETE FROM rampart_migrations").await.unwrap();
    let resp = app.get("/readyz").await;
    let body = assert_error_shape(resp, 503, "not_ready").await;
    assert!(body["message"].as_str().unwrap().contains("database"), "{body}");
}

async fn an_unknown_path_is_a_404_in_the_error_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_error_shape(app.get("/no/such/thing").await, 404, "not_found").await;
}

async fn a_wrong_method_is_a_405_in_the_error_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_error_shape(resp, 405, "method_not_allowed").await;
}

async fn a_body_over_the_limit_is_a_413_before_it_is_read(backend: Backend) {
    let app = spawn_app_with(backend, |http| http.body_limit_bytes = 1024).await;
    let resp = app.client.post(app.url("/healthz")).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_error_shape(resp, 413, "payload_too_large").await;
}

async fn a_chunked_body_over_the_limit_is_a_413(backend: Backend) {
    let app = spawn_app_with(backend, |http| http.body_limit_bytes = 1024).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b'x'; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let resp = app.client.post(app.url("/healthz")).body(body).send().await.unwrap();
    assert_error_shape(resp, 413, "payload_too_large").await;
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(chunks.into_iter())
}

async fn a_well_formed_request_id_is_echoed_and_a_hostile_one_replaced(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.client.get(app.url("/healthz")).header("x-request-id", "trace-42.abc").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-42.abc");
    let resp = app.client.get(app.url("/nope")).header("x-request-id", "evil\"}{injected").send().await.unwrap();
    let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(echoed, "evil\"}{injected");
    let body = assert_error_shape(resp, 404, "not_found").await;
    assert_eq!(body["request_id"], echoed.as_str());
}

async fn security_txt_follows_rfc_9116(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/.well-known/security.txt").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let text = resp.text().await.unwrap();
    let fields: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("every field is `Name: value`");
            (name.to_ascii_lowercase(), value.to_owned())
        })
        .collect();
    let count = |name: &str| fields.iter().filter(|(n, _)| n == name).count();
    let value = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert!(count("contact") >= 1, "{text}");
    assert_eq!(count("expires"), 1, "{text}");
    assert_eq!(count("preferred-languages"), 1, "{text}");
    assert!(count("policy") >= 1 && value("policy").starts_with("https://"), "{text}");
    assert!(value("canonical").ends_with("/.well-known/security.txt"), "{text}");
    let expires = chrono::DateTime::parse_from_rfc3339(&value("expires")).expect("RFC 3339 Expires");
    let now = testkit::storage::Clock::now(&testkit::storage::SystemClock);
    assert!(expires > now, "Expires must be in the future: {text}");
    assert!(expires < now + chrono::Duration::days(366), "RFC 9116 recommends less than a year: {text}");
}

async fn an_allowed_origin_gets_cors_headers_and_another_does_not(backend: Backend) {
    let app = spawn_app_with(backend, |http| http.cors_allowed_origins = vec!["https://app.example.com".into()]).await;
    let resp = app.client.get(app.url("/healthz")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com");
    let resp = app.client.get(app.url("/healthz")).header("origin", "https://evil.example.net").send().await.unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert_error_shape(resp, 403, "forbidden").await;
}

async fn without_an_allow_list_no_origin_gets_cors_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.client.get(app.url("/healthz")).header("origin", "https://evil.example.net").send().await.unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
}

async fn docs_and_the_api_description_are_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let served: serde_json::Value = resp.json().await.unwrap();
    let generated: serde_json::Value = serde_json::from_str(&api::openapi_json()).unwrap();
    assert_eq!(served, generated);
    let resp = app.get("/docs").await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(resp.text().await.unwrap().contains("<html"));
}

/// A browser-style cross-site sign-in from `origin`.
async fn cross_site_sign_in(app: &testkit::TestApp, origin: &str) -> reqwest::Response {
    let body = serde_json::json!({"email": "someone@example.com", "password": "irrelevant but long enough"});
    app.client
        .post(app.url("/api/v1/auth/signin"))
        .header("sec-fetch-site", "cross-site")
        .header("origin", origin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn cross_site_state_changes_from_browsers_are_refused(backend: Backend) {
    let same_origin_only = spawn_app(backend).await;
    let forged = cross_site_sign_in(&same_origin_only, "https://evil.example.net").await;
    assert_error_shape(forged, 403, "cross_site_request").await;
    // The same request from an allowed origin reaches the handler (and fails on the credentials).
    let app = spawn_app_with(backend, |http| http.cors_allowed_origins = vec!["https://app.example.com".into()]).await;
    let allowed = cross_site_sign_in(&app, "https://app.example.com").await;
    assert_eq!(allowed.status(), 401);
}

backend_tests!(
    cross_site_state_changes_from_browsers_are_refused,
    healthz_answers_ok_with_every_security_header,
    readyz_checks_the_database_and_redis_when_configured,
    readyz_answers_503_when_the_schema_is_behind_the_binary,
    an_unknown_path_is_a_404_in_the_error_shape,
    a_wrong_method_is_a_405_in_the_error_shape,
    a_body_over_the_limit_is_a_413_before_it_is_read,
    a_chunked_body_over_the_limit_is_a_413,
    a_well_formed_request_id_is_echoed_and_a_hostile_one_replaced,
    security_txt_follows_rfc_9116,
    an_allowed_origin_gets_cors_headers_and_another_does_not,
    without_an_allow_list_no_origin_gets_cors_headers,
    docs_and_the_api_description_are_served,
);
