//! Token exchange for agents: a user's credential becomes a short-lived token bound to one
//! workspace, that user and that session, optionally narrowed; refused anywhere else, ended with
//! its session, and re-checked on every request. On both stores (PostgreSQL: runtime role and
//! Redis).

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser, TEST_PASSWORD};

async fn exchange(app: &TestApp, caller: &TestUser, ws: &str, body: Value) -> (u16, Value) {
    app.json(caller, Method::POST, &format!("/api/v1/workspaces/{ws}/tokens"), Some(body)).await
}

async fn with(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn projects(ws: &str) -> String {
    format!("/api/v1/workspaces/{ws}/projects")
}

async fn an_exchanged_token_acts_only_in_its_workspace_and_only_on_workspace_routes(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let (ours, other) = (app.workspace(&owner, "bound").await, app.workspace(&owner, "elsewhere").await);
    let (status, issued) = exchange(&app, &owner, &ours, json!({})).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!((issued["expires_in"].as_i64(), issued["workspace_id"].as_str()), (Some(300), Some(ours.as_str())));
    let token = issued["access_token"].as_str().unwrap();

    let (status, made) = with(&app, token, Method::POST, &projects(&ours), Some(json!({"name": "by an agent"}))).await;
    assert_eq!(status, 201, "the user's own permissions in the bound workspace: {made}");
    assert_eq!(with(&app, token, Method::GET, &projects(&ours), None).await.0, 200);
    assert_eq!(
        with(&app, token, Method::GET, &projects(&other), None).await.0,
        404,
        "another workspace does not exist"
    );
    for (method, path) in [
        (Method::GET, "/api/v1/me".to_owned()),
        (Method::GET, "/api/v1/auth/sessions".to_owned()),
        (Method::POST, "/api/v1/auth/sessions/revoke-all".to_owned()),
        (Method::POST, "/api/v1/workspaces".to_owned()),
        (Method::POST, format!("/api/v1/workspaces/{ours}/tokens")),
    ] {
        let (status, body) = with(&app, token, method, &path, Some(json!({"name": "x"}))).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{path}");
    }
}

async fn a_narrowed_token_does_only_what_its_scope_allows_and_never_more_than_its_user(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let (owner, member) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&owner, "narrow").await;
    app.join(&owner, &member, &ws, "member").await;
    let (status, issued) = exchange(&app, &owner, &ws, json!({"scope": "projects.read", "expires_in": 120})).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!((issued["scope"].as_str(), issued["expires_in"].as_i64()), (Some("projects.read"), Some(120)));
    let token = issued["access_token"].as_str().unwrap();
    assert_eq!(with(&app, token, Method::GET, &projects(&ws), None).await.0, 200);
    let (status, refused) = with(&app, token, Method::POST, &projects(&ws), Some(json!({"name": "no"}))).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")), "{refused}");

    // A member cannot obtain what their role does not grant.
    let (status, body) = exchange(&app, &member, &ws, json!({"scope": "projects.read api_keys.manage"})).await;
    assert_eq!(status, 403, "{body}");
    for (bad, refusal) in [
        (json!({"scope": "projects.fly"}), (400, "invalid_scope")),
        (json!({"scope": "  "}), (400, "invalid_scope")),
        // Out of the bounds the description states: refused before the handler runs.
        (json!({"expires_in": 0}), (422, "invalid_value")),
        (json!({"expires_in": 3601}), (422, "invalid_value")),
    ] {
        let (status, body) = exchange(&app, &member, &ws, bad.clone()).await;
        assert_eq!((status, body["code"].as_str().unwrap_or_default()), refusal, "{bad}: {body}");
    }
    let (status, body) = exchange(&app, &member, &ws, json!({"expires_in": 3600})).await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(3600)), "an hour at most: {body}");
    // Not a member: the workspace does not exist for them.
    let stranger = app.new_user().await;
    assert_eq!(exchange(&app, &stranger, &ws, json!({})).await.0, 404);
}

async fn an_exchanged_token_ends_at_its_expiry_with_its_session_and_with_membership_or_suspension(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let (owner, member) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&owner, "ending").await;
    app.join(&owner, &member, &ws, "member").await;
    let mint = |caller: TestUser, ttl: i64| {
        let (app, ws) = (&app, ws.clone());
        async move {
            let (status, issued) = exchange(app, &caller, &ws, json!({"expires_in": ttl})).await;
            assert_eq!(status, 200, "{issued}");
            issued["access_token"].as_str().unwrap().to_owned()
        }
    };
    // Expiry: one second before (with the 30 s leeway) it works, at it it does not.
    let short = mint(member.clone(), 60).await;
    app.clock.advance(chrono::Duration::seconds(60 + 30 - 1));
    assert_eq!(with(&app, &short, Method::GET, &projects(&ws), None).await.0, 200);
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(with(&app, &short, Method::GET, &projects(&ws), None).await.0, 401);
    let member = app.renew(&member).await;

    // Its token family signed out: it ends at once.
    let from_family = mint(member.clone(), 600).await;
    assert_eq!(with(&app, &from_family, Method::GET, &projects(&ws), None).await.0, 200);
    assert_eq!(app.json(&member, Method::POST, "/api/v1/auth/token/revoke", None).await.0, 204);
    assert_eq!(with(&app, &from_family, Method::GET, &projects(&ws), None).await.0, 401, "ended with its family");

    // Its browser session signed out: it ends at once.
    let testkit::BrowserSession { cookie, csrf, .. } = app.browser_sign_in(&member.email, TEST_PASSWORD).await;
    let post = |path: String| app.client.post(app.url(&path)).header("cookie", &cookie).header("x-csrf-token", &csrf);
    let issued: Value =
        post(format!("/api/v1/workspaces/{ws}/tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let from_session = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(with(&app, &from_session, Method::GET, &projects(&ws), None).await.0, 200);
    assert_eq!(post("/api/v1/auth/signout".into()).send().await.unwrap().status(), 204);
    assert_eq!(with(&app, &from_session, Method::GET, &projects(&ws), None).await.0, 401, "ended with its session");

    // Removed from the workspace: refused there on the next request.
    let member = app.renew(&member).await;
    let token = mint(member.clone(), 600).await;
    let path = format!("/api/v1/workspaces/{ws}/members/{}", member.id);
    assert_eq!(app.json(&owner, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(with(&app, &token, Method::GET, &projects(&ws), None).await.0, 404, "no longer a member");

    // The owner suspended: refused on the next request.
    let token = mint(owner.clone(), 600).await;
    assert_eq!(with(&app, &token, Method::GET, &projects(&ws), None).await.0, 200);
    let meta = testkit::auth::RequestMeta::default();
    assert_eq!(app.state.auth.set_suspended(ids::UserId(owner.id), true, &meta).await.unwrap(), Some(true));
    assert_eq!(with(&app, &token, Method::GET, &projects(&ws), None).await.0, 401, "suspended");
}

backend_tests!(
    an_exchanged_token_acts_only_in_its_workspace_and_only_on_workspace_routes,
    a_narrowed_token_does_only_what_its_scope_allows_and_never_more_than_its_user,
    an_exchanged_token_ends_at_its_expiry_with_its_session_and_with_membership_or_suspension,
);
