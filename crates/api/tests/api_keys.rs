//! API keys through HTTP, on SQLite and on PostgreSQL as the runtime role: a key is shown once and
//! stored hashed; it reaches only its workspace, within its scopes and its creator's current
//! role; revocation and expiry take effect on the next request; over its caps it is answered 429
//! with the remaining quota.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser};

/// A request with an API key only; its status, headers and body.
async fn with_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path)).header("x-api-key", key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a key; its id and the key shown once.
async fn key(app: &TestApp, user: &TestUser, ws: &str, body: Value) -> (String, String) {
    let (status, made) = app.json(user, Method::POST, &format!("/api/v1/workspaces/{ws}/api-keys"), Some(body)).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("rk_live_"), "{key}");
    let shown = made["api_key"]["prefix"].as_str().unwrap().strip_prefix("rk_live_").unwrap();
    assert!(shown.len() == 8 && key.rsplit('_').next().unwrap().starts_with(shown), "{made}");
    (made["api_key"]["id"].as_str().unwrap().to_owned(), key)
}

async fn a_key_acts_only_in_its_workspace_within_its_scopes_and_its_creators_current_role(backend: Backend) {
    // Many requests from one loopback client: lift the per-client limit, not the keys' own caps.
    let app = testkit::spawn_app_with(backend, |http| http.rate_limit_per_client_per_sec = 100_000).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Keys").await;
    let other = app.workspace(&alice, "Elsewhere").await;
    let projects = format!("/api/v1/workspaces/{ws}/projects");
    let (status, project) = app.json(&alice, Method::POST, &projects, Some(json!({"name": "Apollo"}))).await;
    assert_eq!(status, 201);
    let pid = project["id"].as_str().unwrap();

    let (_, read_key) = key(&app, &alice, &ws, json!({"name": "reporting", "scopes": ["projects.read"]})).await;
    let (status, _, listed) = with_key(&app, &read_key, Method::GET, &projects, None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (status, _, refused) = with_key(&app, &read_key, Method::POST, &projects, Some(json!({"name": "x"}))).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")), "outside its scopes: {refused}");
    let audit = format!("/api/v1/workspaces/{ws}/audit-events");
    let (status, _, _) = with_key(&app, &read_key, Method::GET, &audit, None).await;
    assert_eq!(status, 403, "the owner may read the trail; the key may not");
    let (status, _, _) =
        with_key(&app, &read_key, Method::GET, &format!("/api/v1/workspaces/{other}/projects"), None).await;
    assert_eq!(status, 404, "another workspace of the same owner is out of reach");
    for (method, path) in
        [(Method::GET, "/api/v1/me".to_owned()), (Method::GET, format!("/api/v1/workspaces/{ws}/api-keys"))]
    {
        let (status, _, _) = with_key(&app, &read_key, method, &path, None).await;
        assert_eq!(status, 401, "{path}: keys act on workspace data only, and never manage keys");
    }

    // The key is never stored or shown again.
    let (_, keys) = app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/api-keys"), None).await;
    assert!(!keys.to_string().contains(&read_key), "{keys}");
    assert_eq!(keys[0]["scopes"], json!(["projects.read"]));
    assert!(keys[0]["last_used_at"].is_string(), "last use is recorded: {keys}");
    let (_, trail) = app.json(&alice, Method::GET, &audit, None).await;
    assert!(!trail.to_string().contains(&read_key) && trail.to_string().contains("api_key.created"));

    // An Admin cannot mint a key for what Admins may not do; their key shrinks with their role.
    let bob = app.new_user().await;
    app.join(&alice, &bob, &ws, "Admin").await;
    let (status, refused) = app
        .json(
            &bob,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            Some(json!({"name": "too much", "scopes": ["projects.*", "workspace.delete"]})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    let (_, bobs) = key(&app, &bob, &ws, json!({"name": "sync", "scopes": ["projects.*"]})).await;
    let (status, _, _) = with_key(&app, &bobs, Method::POST, &projects, Some(json!({"name": "by key"}))).await;
    assert_eq!(status, 201);
    let member = format!("/api/v1/workspaces/{ws}/members/{}", bob.id);
    let (status, body) = app.json(&alice, Method::PATCH, &member, Some(json!({"role": "Member"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = with_key(&app, &bobs, Method::DELETE, &format!("{projects}/{pid}"), None).await;
    assert_eq!(status, 403, "a Member may not delete projects, so neither may the Member's key");
    // A Member manages neither keys nor webhook endpoints (api_keys.manage, webhooks.manage).
    for (path, body) in [
        (format!("/api/v1/workspaces/{ws}/api-keys"), json!({"name": "m", "scopes": ["projects.read"]})),
        (
            format!("/api/v1/workspaces/{ws}/webhook-endpoints"),
            json!({"url": "https://hooks.example.com/h", "event_types": ["*"]}),
        ),
    ] {
        let (status, refused) = app.json(&bob, Method::POST, &path, Some(body)).await;
        assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")), "{path}: {refused}");
    }
    let (status, _, _) = with_key(&app, &bobs, Method::GET, &projects, None).await;
    assert_eq!(status, 200);
    let (status, _) = app.json(&alice, Method::DELETE, &member, None).await;
    assert_eq!(status, 204);
    let (status, _, _) = with_key(&app, &bobs, Method::GET, &projects, None).await;
    assert_eq!(status, 404, "the creator left: the key reaches nothing");
}

async fn revocation_and_expiry_take_effect_on_the_next_request(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Keys").await;
    let projects = format!("/api/v1/workspaces/{ws}/projects");
    let (id, revoked) = key(&app, &alice, &ws, json!({"name": "ci", "scopes": ["projects.read"]})).await;
    let (status, _, _) = with_key(&app, &revoked, Method::GET, &projects, None).await;
    assert_eq!(status, 200);
    let (status, body) =
        app.json(&alice, Method::POST, &format!("/api/v1/workspaces/{ws}/api-keys/{id}/revoke"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revoked_at"].is_string());
    let (status, _, body) = with_key(&app, &revoked, Method::GET, &projects, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");

    let now = testkit::storage::Clock::now(app.clock.as_ref());
    let (_, expiring) = key(
        &app,
        &alice,
        &ws,
        json!({"name": "temp", "scopes": ["projects.read"], "expires_at": now + Duration::hours(1)}),
    )
    .await;
    let (status, _, _) = with_key(&app, &expiring, Method::GET, &projects, None).await;
    assert_eq!(status, 200);
    app.clock.advance(Duration::hours(1));
    let (status, _, _) = with_key(&app, &expiring, Method::GET, &projects, None).await;
    assert_eq!(status, 401, "expired");
    let forged = format!("{}0", &expiring[..expiring.len() - 1]);
    let (status, _, _) = with_key(&app, &forged, Method::GET, &projects, None).await;
    assert_eq!(status, 401, "a changed key is unknown");
}

async fn a_key_over_its_caps_is_answered_429_with_its_remaining_quota(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Keys").await;
    let projects = format!("/api/v1/workspaces/{ws}/projects");
    let (_, minute) =
        key(&app, &alice, &ws, json!({"name": "minute", "scopes": ["projects.read"], "per_minute": 3})).await;
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = with_key(&app, &minute, Method::GET, &projects, None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-limit-minute"], "3");
        assert_eq!(headers["x-ratelimit-remaining-minute"], remaining);
    }
    let (status, headers, body) = with_key(&app, &minute, Method::GET, &projects, None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("api_key_quota_exceeded")), "{body}");
    assert_eq!(headers["x-ratelimit-remaining-minute"], "0");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    let (_, month) = key(
        &app,
        &alice,
        &ws,
        json!({"name": "month", "scopes": ["projects.read"], "per_minute": 1000, "per_month": 2}),
    )
    .await;
    for _ in 0..2 {
        let (status, _, _) = with_key(&app, &month, Method::GET, &projects, None).await;
        assert_eq!(status, 200);
    }
    let (status, headers, body) = with_key(&app, &month, Method::GET, &projects, None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("api_key_quota_exceeded")), "{body}");
    assert_eq!(headers["x-ratelimit-limit-month"], "2");
    assert_eq!(headers["x-ratelimit-remaining-minute"], "997", "the minute window still had room");
    // Another key's quota is its own.
    let (status, _, _) = with_key(&app, &minute, Method::GET, &format!("/api/v1/workspaces/{ws}/projects"), None).await;
    assert_eq!(status, 429, "still the first key's exhausted minute");
    let (_, fresh) = key(&app, &alice, &ws, json!({"name": "fresh", "scopes": ["projects.read"]})).await;
    let (status, headers, _) = with_key(&app, &fresh, Method::GET, &projects, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-limit-minute"], "600", "the default cap");
}

backend_tests!(
    a_key_acts_only_in_its_workspace_within_its_scopes_and_its_creators_current_role,
    revocation_and_expiry_take_effect_on_the_next_request,
    a_key_over_its_caps_is_answered_429_with_its_remaining_quota,
);
