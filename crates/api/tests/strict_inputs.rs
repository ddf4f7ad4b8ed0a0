//! Strict inputs over HTTP: no JSON type is coerced, `null` only where the description allows
//! it, a key named twice or a second `Authorization` header is ambiguous and refused, control
//! characters in the target are refused, 405 names what is allowed, the HTTP parser's own
//! refusals come in the JSON error shape, and a webhook endpoint URL is judged when it is
//! created as far as it can be then. Every refusal changes nothing.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TEST_PASSWORD};

async fn body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn project_names(app: &TestApp, user: &testkit::TestUser, ws: &str) -> Vec<String> {
    let (status, list) = app.json(user, Method::GET, &format!("/api/v1/workspaces/{ws}/projects"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

async fn numbers_and_booleans_are_never_coerced_into_strings(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let user = app.new_user().await;
    let ws = app.workspace(&user, "Strict").await;
    for name in [json!(123), json!(false), json!(["a"]), json!({"a": 1})] {
        let (status, refused) = app
            .json(&user, Method::POST, &format!("/api/v1/workspaces/{ws}/projects"), Some(json!({"name": name})))
            .await;
        assert_eq!((status, refused["code"].as_str()), (422, Some("invalid_value")), "{name}: {refused}");
        assert!(refused["message"].as_str().unwrap().contains("`name`"), "the field is named: {refused}");
    }
    let (status, refused) = app.json(&user, Method::POST, "/api/v1/workspaces", Some(json!({"name": 7}))).await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("invalid_value")), "{refused}");
    assert!(project_names(&app, &user, &ws).await.is_empty(), "nothing was created");
    // `null` where the description has no `nullable`: refused, not taken as the default.
    let (status, refused) =
        app.json(&user, Method::POST, "/api/v1/pii/redact", Some(json!({"text": "a@example.com", "mode": null}))).await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("invalid_value")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`mode`"), "{refused}");
    // The same bodies with the declared types are taken.
    let (status, created) =
        app.json(&user, Method::POST, &format!("/api/v1/workspaces/{ws}/projects"), Some(json!({"name": "123"}))).await;
    assert_eq!(status, 201, "{created}");
}

async fn a_key_named_twice_is_refused_even_where_it_would_pick_the_account(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let victim = app.new_user().await;
    let attacker = app.new_user().await;
    let raw =
        format!(r#"{{"email": "{}", "password": "{TEST_PASSWORD}", "email": "{}"}}"#, attacker.email, victim.email);
    let resp = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    let (status, refused) = body(resp).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("duplicate_key")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`email`"), "{refused}");
    // Nested objects too.
    let ws = app.workspace(&victim, "Nested").await;
    let resp = app
        .call(&victim, Method::PUT, &format!("/api/v1/workspaces/{ws}/activity-windows"))
        .header("content-type", "application/json")
        .body(r#"{"utc_offset_minutes": 0, "windows": [{"days": ["mon"], "start": "09:00", "start": "00:00", "end": "17:00"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(body(resp).await.1["code"], "duplicate_key");
}

async fn a_second_authorization_header_is_refused_whichever_comes_first(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let user = app.new_user().await;
    for pair in [
        [format!("Bearer {}", user.token), "Bearer forged".to_owned()],
        ["Bearer forged".to_owned(), format!("Bearer {}", user.token)],
    ] {
        let resp = app
            .client
            .get(app.url("/api/v1/me"))
            .header("authorization", &pair[0])
            .header("authorization", &pair[1])
            .send()
            .await
            .unwrap();
        let (status, refused) = body(resp).await;
        assert_eq!((status, refused["code"].as_str()), (400, Some("ambiguous_credentials")), "{refused}");
    }
    let (status, _) = app.json(&user, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, 200, "one header is fine");
}

async fn control_characters_in_filters_and_paths_are_refused(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let user = app.new_user().await;
    let ws = app.workspace(&user, "Filters").await;
    let (status, _) = app
        .json(&user, Method::POST, &format!("/api/v1/workspaces/{ws}/projects"), Some(json!({"name": "Alpha"})))
        .await;
    assert_eq!(status, 201);
    for target in [
        format!("/api/v1/workspaces/{ws}/projects?q=%00"),
        format!("/api/v1/workspaces/{ws}/projects?q=Al%0Apha"),
        format!("/api/v1/workspaces/{ws}/projects?q=%7F"),
        format!("/api/v1/workspaces/{ws}%00/projects"),
        format!("/api/v1/workspaces/{ws}/projects?q=%FF"),
    ] {
        let (status, refused) = app.json(&user, Method::GET, &target, None).await;
        assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_parameter")), "{target}: {refused}");
    }
    let (status, found) = app.json(&user, Method::GET, &format!("/api/v1/workspaces/{ws}/projects?q=lph"), None).await;
    assert_eq!((status, found.as_array().map(Vec::len)), (200, Some(1)), "{found}");
}

async fn a_method_a_path_does_not_answer_is_405_with_allow_in_the_error_shape(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let user = app.new_user().await;
    let resp = app.call(&user, Method::DELETE, "/api/v1/workspaces").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
    let mut methods: Vec<&str> = allow.split(", ").collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "HEAD", "POST"], "{allow}");
    let (_, refused) = body(resp).await;
    assert_eq!(refused["code"], "method_not_allowed");
    let resp = app.client.post(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
}

/// Sends raw bytes and reads the whole answer (the server closes after a parser refusal), off
/// the runtime's workers.
async fn raw_exchange(app: &TestApp, request: Vec<u8>) -> (u16, String, Value) {
    let base = app.base_url.clone();
    tokio::task::spawn_blocking(move || exchange_blocking(&base, &request)).await.unwrap()
}

fn exchange_blocking(base_url: &str, request: &[u8]) -> (u16, String, Value) {
    let addr = base_url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before it has read everything: a failed write is fine.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn the_http_parsers_refusals_come_in_the_json_error_shape(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_target = format!("/{}", "a".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("a NUL in a header", b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: a\0b\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            "a control character in Content-Type",
            b"POST /api/v1/auth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/\x01json\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
            400,
            "bad_request",
        ),
        ("a malformed request line", b"GET /healthz HTTP/9\r\n\r\n".to_vec(), 400, "bad_request"),
        ("too many headers", format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n").into_bytes(), 431, "headers_too_large"),
        ("a target too long", format!("GET {long_target} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes(), 414, "uri_too_long"),
    ];
    for (what, request, status, code) in cases {
        let (got, head, refused) = raw_exchange(&app, request).await;
        assert_eq!(got, status, "{what}: {head}");
        assert!(head.contains("content-type: application/json"), "{what}: {head}");
        assert_eq!(refused["code"], code, "{what}: {refused}");
        assert!(refused["request_id"].as_str().is_some_and(|id| head.contains(id)), "{what}: {head} {refused}");
    }
    // Invalid UTF-8 in the target, raw: refused (by the parser or the contract) in the shape.
    let (status, _, refused) = raw_exchange(&app, b"GET /api/v1/\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n".to_vec()).await;
    assert_eq!(status, 400);
    assert!(refused["code"].as_str().is_some(), "{refused}");
}

async fn endpoint_urls_that_can_be_judged_at_creation_are_refused_then(backend: Backend) {
    let resolver = egress::StaticResolver::new()
        .with("hooks.private.test", ["10.0.0.5:443".parse().unwrap()])
        .with("hooks.public.test", ["93.184.215.14:443".parse().unwrap()]);
    let app = testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |_| {},
        |state| state.egress = api::Egress { resolver: Arc::new(resolver), exceptions: Vec::new() },
    )
    .await;
    let user = app.new_user().await;
    let ws = app.workspace(&user, "Hooks").await;
    let create = |url: &str| json!({"url": url, "event_types": ["*"]});
    let path = format!("/api/v1/workspaces/{ws}/webhook-endpoints");
    for url in [
        "https://10.1.2.3/hook",
        "https://[fd00::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://instance-data/latest/",
        "https://printer.local/hook",
        "https://intranet/hook",
        "https://hooks.public.test:8443/hook",
        "https://hooks.private.test/hook",
    ] {
        let (status, refused) = app.json(&user, Method::POST, &path, Some(create(url))).await;
        assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_endpoint_url")), "{url:?}: {refused}");
    }
    // A URL ending in NUL is not stored without it: the description's pattern refuses it.
    let (status, refused) =
        app.json(&user, Method::POST, &path, Some(create("https://hooks.public.test/hook\u{0}"))).await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("invalid_value")), "{refused}");
    let (status, list) = app.json(&user, Method::GET, &path, None).await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(0)), "nothing stored: {list}");
    // A public answer, or no answer at all (judged again at every delivery): accepted.
    for url in ["https://hooks.public.test/hook", "https://does-not-resolve.example/hook"] {
        let (status, created) = app.json(&user, Method::POST, &path, Some(create(url))).await;
        assert_eq!(status, 201, "{url}: {created}");
        assert_eq!(created["endpoint"]["url"], url);
    }
    // A change of URL is judged the same way.
    let (_, list) = app.json(&user, Method::GET, &path, None).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let (status, refused) = app
        .json(&user, Method::PATCH, &format!("{path}/{id}"), Some(json!({"url": "https://hooks.private.test/x"})))
        .await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_endpoint_url")), "{refused}");
}

backend_tests!(
    numbers_and_booleans_are_never_coerced_into_strings,
    a_key_named_twice_is_refused_even_where_it_would_pick_the_account,
    a_second_authorization_header_is_refused_whichever_comes_first,
    control_characters_in_filters_and_paths_are_refused,
    a_method_a_path_does_not_answer_is_405_with_allow_in_the_error_shape,
    the_http_parsers_refusals_come_in_the_json_error_shape,
    endpoint_urls_that_can_be_judged_at_creation_are_refused_then,
);
