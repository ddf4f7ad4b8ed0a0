//! Rate limits at their defaults, through HTTP: 20 requests a second per client, 10 a minute on
//! every `/auth/*` write, 10 workspace creations an hour per user; each refusal is a 429 with
//! `Retry-After`, changes nothing, and is counted in `rampart_rate_limited_total`. The in-process
//! store counts on the injected clock, so "a second later" is the test's decision, never a sleep;
//! with Redis the windows are Redis's own expiries (real time), so those tests stop at the
//! refusal. Cookie-authenticated revocations need the CSRF token.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TEST_PASSWORD};

const SCRAPE_TOKEN: &str = "scrape-token-for-limits-0123456789ab";

/// A server with the shipped authentication and workspace limits, and metrics. The per-client
/// limit stays lifted (as the test kit has it) except in its own test, so that it does not
/// answer first for the limit under test.
async fn app(backend: Backend) -> TestApp {
    app_with_client_limit(backend, 100_000).await
}

async fn app_with_client_limit(backend: Backend, per_sec: u64) -> TestApp {
    testkit::spawn_app_with(backend, |http| {
        http.rate_limit_per_client_per_sec = per_sec;
        http.metrics_token = Some(SCRAPE_TOKEN.to_owned().into());
    })
    .await
}

/// `rampart_rate_limited_total` now (0 before the first refusal of this process).
async fn refusals_counted(app: &TestApp) -> f64 {
    let resp = app.client.get(app.url("/metrics")).bearer_auth(SCRAPE_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("rampart_rate_limited_total ") || l.starts_with("rampart_rate_limited_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A 429 with the stable code and a `Retry-After` of at most `window_secs`.
async fn assert_limited(resp: reqwest::Response, window_secs: u64, what: &str) {
    assert_eq!(resp.status(), 429, "{what}");
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=window_secs).contains(&retry), "{what}: Retry-After {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twenty_first_request_in_a_second_is_refused_until_the_second_has_passed() {
    let shipped = api::HttpConfig::default().rate_limit_per_client_per_sec;
    assert_eq!(shipped, 20, "the shipped default");
    let app = app_with_client_limit(Backend::Sqlite, shipped).await;
    let user = app.new_user().await;
    let before = refusals_counted(&app).await;
    // The setup's requests counted in the second they were made; the test starts a new one.
    app.clock.advance(chrono::Duration::seconds(1));
    for n in 1..=20 {
        let resp = app.call(&user, Method::GET, "/api/v1/me").send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {n} of the second");
    }
    assert_limited(app.call(&user, Method::GET, "/api/v1/me").send().await.unwrap(), 1, "the 21st").await;
    assert_limited(app.get("/api/v1/auth/oidc/providers").await, 1, "any route, the same client").await;
    app.clock.advance(chrono::Duration::milliseconds(999));
    assert_eq!(app.call(&user, Method::GET, "/api/v1/me").send().await.unwrap().status(), 429, "still that second");
    app.clock.advance(chrono::Duration::milliseconds(1));
    assert_eq!(app.call(&user, Method::GET, "/api/v1/me").send().await.unwrap().status(), 200, "a new second");
    // The metrics scrapes are requests too, but not refused ones: three refusals, three counts.
    assert_eq!(refusals_counted(&app).await - before, 3.0);
}

/// Every `/auth/*` route that changes something, as one client would call it.
fn auth_writes(app: &TestApp, access: &str) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let post = |path: &str, body: Value| app.client.post(app.url(path)).json(&body);
    let anyone = "someone-else@example.com";
    vec![
        ("signup", post("/api/v1/auth/signup", json!({"email": anyone, "password": TEST_PASSWORD}))),
        ("verify-email", post("/api/v1/auth/verify-email", json!({"token": "0".repeat(64)}))),
        ("signin", post("/api/v1/auth/signin", json!({"email": anyone, "password": TEST_PASSWORD}))),
        ("signin/mfa", post("/api/v1/auth/signin/mfa", json!({"challenge": "x", "code": "123456"}))),
        ("token", post("/api/v1/auth/token", json!({"email": anyone, "password": TEST_PASSWORD}))),
        ("token/mfa", post("/api/v1/auth/token/mfa", json!({"challenge": "x", "code": "123456"}))),
        ("token/refresh", post("/api/v1/auth/token/refresh", json!({"refresh_token": "x"}))),
        ("token/revoke", post("/api/v1/auth/token/revoke", json!({})).bearer_auth(access)),
        ("password/reset", post("/api/v1/auth/password/reset", json!({"email": anyone}))),
        (
            "password/reset/confirm",
            post("/api/v1/auth/password/reset/confirm", json!({"token": "x", "new_password": TEST_PASSWORD})),
        ),
        ("sessions/revoke-others", post("/api/v1/auth/sessions/revoke-others", json!({})).bearer_auth(access)),
        ("sessions/revoke-all", post("/api/v1/auth/sessions/revoke-all", json!({})).bearer_auth(access)),
        (
            "DELETE sessions/{id}",
            app.client.delete(app.url(&format!("/api/v1/auth/sessions/{}", uuid::Uuid::new_v4()))).bearer_auth(access),
        ),
    ]
}

async fn every_auth_write_is_limited_to_ten_a_minute_per_client_and_each_refusal_is_counted(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let before = refusals_counted(&app).await;
    for n in 1..=10 {
        let resp = app.client.post(app.url("/api/v1/auth/token/refresh")).json(&json!({"refresh_token": "x"})).send();
        assert_eq!(resp.await.unwrap().status(), 400, "attempt {n} is answered on its merits");
    }
    let writes = auth_writes(&app, &user.token);
    let refused = writes.len();
    for (what, req) in writes {
        assert_limited(req.send().await.unwrap(), 60, what).await;
    }
    assert_eq!(refusals_counted(&app).await - before, refused as f64, "each refusal is counted once");
    // Refused writes changed nothing: the token that asked to revoke everything still works.
    assert_eq!(app.call(&user, Method::GET, "/api/v1/me").send().await.unwrap().status(), 200);
    if backend == Backend::Sqlite {
        app.clock.advance(chrono::Duration::seconds(59));
        let resp = app.client.post(app.url("/api/v1/auth/token/refresh")).json(&json!({"refresh_token": "x"}));
        assert_eq!(resp.send().await.unwrap().status(), 429, "the same minute");
        app.clock.advance(chrono::Duration::seconds(1));
        let resp = app.client.post(app.url("/api/v1/auth/token/refresh")).json(&json!({"refresh_token": "x"}));
        assert_eq!(resp.send().await.unwrap().status(), 400, "a new minute");
    }
}

async fn workspace_creation_is_limited_to_ten_an_hour_per_user(backend: Backend) {
    let app = app(backend).await;
    let (first, second) = (app.new_user().await, app.new_user().await);
    for n in 1..=10 {
        app.workspace(&first, &format!("setup {n}")).await;
    }
    let (status, body) =
        app.json(&first, Method::POST, "/api/v1/workspaces", Some(json!({"name": "one too many"}))).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    let (_, mine) = app.json(&first, Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(10), "the refused creation made nothing: {mine}");
    app.workspace(&second, "another user's first").await;
    if backend == Backend::Sqlite {
        app.clock.advance(chrono::Duration::minutes(59));
        let first = app.renew(&first).await;
        let (status, _) = app.json(&first, Method::POST, "/api/v1/workspaces", Some(json!({"name": "soon"}))).await;
        assert_eq!(status, 429, "the same hour");
        app.clock.advance(chrono::Duration::minutes(1));
        app.workspace(&app.renew(&first).await, "the next hour").await;
    }
}

async fn cookie_revocations_need_the_csrf_token_and_with_it_end_the_other_sessions(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let session = app.browser_sign_in(&user.email, TEST_PASSWORD).await;
        sessions.push((session.cookie, session.csrf));
    }
    let me = |cookie: &str| app.client.get(app.url("/api/v1/me")).header("cookie", cookie.to_owned()).send();
    let (current, csrf) = &sessions[0];
    for path in ["/api/v1/auth/sessions/revoke-others", "/api/v1/auth/sessions/revoke-all"] {
        let resp = app.client.post(app.url(path)).header("cookie", current).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path} without the token");
        let resp = app.client.post(app.url(path)).header("cookie", current).header("x-csrf-token", &sessions[1].1);
        assert_eq!(resp.send().await.unwrap().status(), 403, "{path} with another session's token");
    }
    for (cookie, _) in &sessions {
        assert_eq!(me(cookie).await.unwrap().status(), 200, "nothing ended");
    }
    let resp = app
        .client
        .post(app.url("/api/v1/auth/sessions/revoke-others"))
        .header("cookie", current)
        .header("x-csrf-token", csrf);
    assert_eq!(resp.send().await.unwrap().status(), 200);
    assert_eq!(me(current).await.unwrap().status(), 200, "the current session stays");
    for (cookie, _) in &sessions[1..] {
        assert_eq!(me(cookie).await.unwrap().status(), 401, "the others ended");
    }
    let resp = app
        .client
        .post(app.url("/api/v1/auth/sessions/revoke-all"))
        .header("cookie", current)
        .header("x-csrf-token", csrf);
    assert_eq!(resp.send().await.unwrap().status(), 200);
    assert_eq!(me(current).await.unwrap().status(), 401, "revoke-all ends this one too");
}

backend_tests!(
    every_auth_write_is_limited_to_ten_a_minute_per_client_and_each_refusal_is_counted,
    workspace_creation_is_limited_to_ten_an_hour_per_user,
    cookie_revocations_need_the_csrf_token_and_with_it_end_the_other_sessions,
);
