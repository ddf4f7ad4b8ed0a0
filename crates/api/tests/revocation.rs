//! Revocation reaches every credential: after each event that ends a user's credentials, the old
//! browser session, the old refresh token and an access token issued before it are all refused
//! on their next use, while the caller's own new credentials work. On SQLite with in-process
//! stores and on PostgreSQL (runtime role) with Redis sessions.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, mails_to, Backend, TestApp, TEST_PASSWORD};

/// A server whose request and sign-in limits do not get in the way of one user holding many
/// credentials (the limits have tests of their own).
async fn app(backend: Backend) -> TestApp {
    let lenient = |http: &mut testkit::api::HttpConfig| http.rate_limit_per_client_per_sec = 1_000;
    testkit::spawn_app_adjusted(backend, testkit::auth::SignupMode::Open, lenient, |state| {
        state.auth_attempts_per_minute = 1_000;
    })
    .await
}

use testkit::BrowserSession as Browser;

/// An API client's tokens.
#[derive(Debug, Clone)]
struct Client {
    access: String,
    refresh: String,
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).json(&body).send().await.unwrap()
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn browser(app: &TestApp, email: &str, password: &str) -> Browser {
    app.browser_sign_in(email, password).await
}

async fn client(app: &TestApp, email: &str, password: &str) -> Client {
    let (status, body) =
        answer(post(app, "/api/v1/auth/token", json!({"email": email, "password": password})).await).await;
    assert_eq!(status, 200, "{body}");
    Client {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
    }
}

/// `GET /me` with the session cookie: the status.
async fn me_by_cookie(app: &TestApp, b: &Browser) -> u16 {
    app.client.get(app.url("/api/v1/me")).header("cookie", &b.cookie).send().await.unwrap().status().as_u16()
}

/// `GET /me` with the access token: the status.
async fn me_by_bearer(app: &TestApp, access: &str) -> u16 {
    app.client.get(app.url("/api/v1/me")).bearer_auth(access).send().await.unwrap().status().as_u16()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    answer(post(app, "/api/v1/auth/token/refresh", json!({"refresh_token": refresh_token})).await).await
}

/// A state-changing request with the session cookie and its CSRF token.
async fn cookie_post(app: &TestApp, b: &Browser, path: &str, body: Value) -> (u16, Value) {
    let req = app.client.post(app.url(path)).header("cookie", &b.cookie).header("x-csrf-token", &b.csrf).json(&body);
    answer(req.send().await.unwrap()).await
}

async fn bearer(app: &TestApp, access: &str, method: Method, path: &str) -> (u16, Value) {
    answer(app.client.request(method, app.url(path)).bearer_auth(access).send().await.unwrap()).await
}

/// Everything a user holds before the event: a browser session and an API client, both used once.
struct Holdings {
    browser: Browser,
    client: Client,
}

async fn holdings(app: &TestApp, email: &str) -> Holdings {
    let held =
        Holdings { browser: browser(app, email, TEST_PASSWORD).await, client: client(app, email, TEST_PASSWORD).await };
    assert_eq!(me_by_cookie(app, &held.browser).await, 200);
    assert_eq!(me_by_bearer(app, &held.client.access).await, 200);
    held
}

/// After the event, nothing held before it works: the session, the access token (on its very
/// next request), and the refresh token (401, its family ended).
async fn assert_all_ended(app: &TestApp, held: &Holdings, event: &str) {
    assert_eq!(me_by_cookie(app, &held.browser).await, 401, "{event}: the browser session ended");
    assert_eq!(me_by_bearer(app, &held.client.access).await, 401, "{event}: the access token stopped at once");
    let (status, body) = refresh(app, &held.client.refresh).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_family_ended")), "{event}: {body}");
}

async fn a_password_reset_ends_every_session_token_family_and_access_token(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    assert_eq!(post(&app, "/api/v1/auth/password/reset", json!({"email": user.email})).await.status(), 202);
    app.run_outbox().await;
    let mail = mails_to(&user.email).into_iter().rev().find(|m| m.subject.contains("Reset")).expect("a reset mail");
    let new_password = "copper meadow whistle 9";
    let body = json!({"token": mail.link_token().unwrap(), "new_password": new_password});
    assert_eq!(post(&app, "/api/v1/auth/password/reset/confirm", body).await.status(), 204);

    assert_all_ended(&app, &held, "password reset").await;
    // New credentials work at once.
    let fresh = client(&app, &user.email, new_password).await;
    assert_eq!(me_by_bearer(&app, &fresh.access).await, 200);
    let (status, _) = refresh(&app, &fresh.refresh).await;
    assert_eq!(status, 200, "a family begun after the reset refreshes");
}

async fn a_password_change_ends_every_other_credential_and_the_new_session_works(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    let current = browser(&app, &user.email, TEST_PASSWORD).await;
    let new_password = "granite harbour lantern 7";
    let resp = app
        .client
        .post(app.url("/api/v1/auth/password/change"))
        .header("cookie", &current.cookie)
        .header("x-csrf-token", &current.csrf)
        .json(&json!({"current_password": TEST_PASSWORD, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rotated =
        Browser { cookie: testkit::session_cookie(&resp).expect("a fresh session cookie"), ..current.clone() };

    assert_all_ended(&app, &held, "password change").await;
    assert_eq!(me_by_cookie(&app, &current).await, 401, "the old token of the changing session is gone");
    assert_eq!(me_by_cookie(&app, &rotated).await, 200, "the session it was replaced by works");
    let (status, list) = answer(
        app.client.get(app.url("/api/v1/auth/sessions")).header("cookie", &rotated.cookie).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "only the new session is left: {list}");
}

async fn revoke_all_by_bearer_or_by_cookie_ends_both_kinds_and_counts_each(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    for by_cookie in [false, true] {
        let held = holdings(&app, &user.email).await;
        let other = client(&app, &user.email, TEST_PASSWORD).await;
        let (status, counts) = if by_cookie {
            cookie_post(&app, &held.browser, "/api/v1/auth/sessions/revoke-all", json!({})).await
        } else {
            bearer(&app, &held.client.access, Method::POST, "/api/v1/auth/sessions/revoke-all").await
        };
        assert_eq!(status, 200, "{counts}");
        // The setup's own first family (from new_user) is ended in the first round only.
        let families = if by_cookie { 2 } else { 3 };
        assert_eq!(
            (counts["sessions"].as_u64(), counts["token_families"].as_u64(), counts["revoked"].as_u64()),
            (Some(1), Some(families), Some(1 + families)),
            "by cookie: {by_cookie}: {counts}"
        );
        assert_all_ended(&app, &held, "revoke-all").await;
        assert_eq!(me_by_bearer(&app, &other.access).await, 401);
        let (status, _) = refresh(&app, &other.refresh).await;
        assert_eq!(status, 401);
    }
    assert_eq!(me_by_bearer(&app, &user.token).await, 401, "the setup's token ended in the first round");
}

async fn revoke_others_by_cookie_keeps_exactly_the_current_session(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    let current = browser(&app, &user.email, TEST_PASSWORD).await;
    let (status, counts) = cookie_post(&app, &current, "/api/v1/auth/sessions/revoke-others", json!({})).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!((counts["sessions"].as_u64(), counts["token_families"].as_u64()), (Some(1), Some(2)), "{counts}");
    assert_all_ended(&app, &held, "revoke-others").await;
    assert_eq!(me_by_cookie(&app, &current).await, 200, "the current session is kept");
    let (_, list) = answer(
        app.client.get(app.url("/api/v1/auth/sessions")).header("cookie", &current.cookie).send().await.unwrap(),
    )
    .await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, vec![current.id.as_str()], "exactly the current session is left: {list}");
}

async fn revoke_others_by_bearer_keeps_exactly_the_current_token_family(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    let current = client(&app, &user.email, TEST_PASSWORD).await;
    let (status, counts) = bearer(&app, &current.access, Method::POST, "/api/v1/auth/sessions/revoke-others").await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!((counts["sessions"].as_u64(), counts["token_families"].as_u64()), (Some(1), Some(2)), "{counts}");
    assert_all_ended(&app, &held, "revoke-others by bearer").await;
    // The kept family's refresh token goes on; the access token it brings works. (The access
    // token that made the request was issued before the event, so it is refused like every
    // other: a bearer client refreshes once.)
    assert_eq!(me_by_bearer(&app, &current.access).await, 401);
    let (status, pair) = refresh(&app, &current.refresh).await;
    assert_eq!(status, 200, "the current family is kept: {pair}");
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(me_by_bearer(&app, access).await, 200);
    let (_, list) = bearer(&app, access, Method::GET, "/api/v1/auth/sessions").await;
    let kinds: Vec<(&str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("token_family", true)], "{list}");
}

async fn ending_one_token_family_stops_its_access_tokens_at_once(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    // Signing out an API client.
    let signed_out = client(&app, &user.email, TEST_PASSWORD).await;
    let (status, _) = bearer(&app, &signed_out.access, Method::POST, "/api/v1/auth/token/revoke").await;
    assert_eq!(status, 204);
    assert_eq!(me_by_bearer(&app, &signed_out.access).await, 401, "not at its expiry: now");
    assert_eq!(refresh(&app, &signed_out.refresh).await.1["code"], "token_family_ended");
    // Reuse detection: the thief's and the victim's access tokens of that family stop.
    let victim = client(&app, &user.email, TEST_PASSWORD).await;
    let (status, rotated) = refresh(&app, &victim.refresh).await;
    assert_eq!(status, 200);
    let successor = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me_by_bearer(&app, &successor).await, 200);
    app.clock.advance(auth_grace() + chrono::Duration::seconds(1));
    let (status, body) = refresh(&app, &victim.refresh).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("refresh_token_reused")));
    assert_eq!(me_by_bearer(&app, &successor).await, 401, "the family's access tokens end with it");
    // Other credentials of the user are untouched by either.
    assert_eq!(me_by_bearer(&app, &user.token).await, 200);
    // The record of each ended family outlives its longest token (an hour's exchange and
    // leeway), then the purge removes it.
    let marks = "SELECT COUNT(*) AS n FROM revoked_families";
    assert_eq!(count(&app, marks).await, 2);
    app.clock.advance(chrono::Duration::minutes(64));
    app.state.auth.purge_expired().await.unwrap();
    assert_eq!(count(&app, marks).await, 2, "kept while a token of the family could live");
    app.clock.advance(chrono::Duration::minutes(1));
    app.state.auth.purge_expired().await.unwrap();
    assert_eq!(count(&app, marks).await, 0);
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    use testkit::storage::ConnectionTrait as _;
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let stmt = testkit::storage::Statement::from_string(owner.conn().get_database_backend(), sql.to_owned());
    owner.conn().query_one(stmt).await.unwrap().unwrap().try_get("", "n").unwrap()
}

fn auth_grace() -> chrono::Duration {
    testkit::auth::service::REFRESH_REUSE_GRACE
}

async fn sessions_list_browser_sessions_and_token_families_and_either_ends_by_id(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    let (status, list) = bearer(&app, &user.token, Method::GET, "/api/v1/auth/sessions").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    let kinds = |kind: &str| list.iter().filter(|s| s["kind"] == kind).count();
    assert_eq!((kinds("browser_session"), kinds("token_family")), (1, 2), "{list:?}");
    let text = serde_json::to_string(&list).unwrap();
    for secret in [&held.client.refresh, &held.client.access, &user.refresh_token] {
        assert!(!text.contains(secret.as_str()), "a listing never shows a token");
    }
    for s in &list {
        for field in ["id", "created_at", "last_refreshed_at", "idle_expires_at", "absolute_expires_at"] {
            assert!(!s[field].is_null(), "{field} in {s}");
        }
        // The caller's family was made without HTTP by the test kit; the others over HTTP.
        if s["current"] == false {
            assert_eq!(s["ip"], "127.0.0.1", "from where: {s}");
        }
    }
    let current = list.iter().filter(|s| s["current"] == true).count();
    assert_eq!(current, 1, "the calling family is marked current");

    // Ending the other family by id: its refresh token and its access token stop.
    let other = list
        .iter()
        .find(|s| s["kind"] == "token_family" && s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, _) = bearer(&app, &user.token, Method::DELETE, &format!("/api/v1/auth/sessions/{other}")).await;
    assert_eq!(status, 204);
    assert_eq!(me_by_bearer(&app, &held.client.access).await, 401);
    assert_eq!(refresh(&app, &held.client.refresh).await.0, 401);
    // Ending the browser session by id.
    let path = format!("/api/v1/auth/sessions/{}", held.browser.id);
    assert_eq!(bearer(&app, &user.token, Method::DELETE, &path).await.0, 204);
    assert_eq!(me_by_cookie(&app, &held.browser).await, 401);
    assert_eq!(bearer(&app, &user.token, Method::DELETE, &path).await.0, 404, "already ended");
    assert_eq!(me_by_bearer(&app, &user.token).await, 200, "the caller's own family is untouched");
}

async fn a_workspace_admin_ending_a_members_sessions_ends_tokens_too(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let member = app.new_user().await;
    let ws = app.workspace(&owner, "revocation").await;
    app.join(&owner, &member, &ws, "member").await;
    let held = holdings(&app, &member.email).await;
    let path = format!("/api/v1/workspaces/{ws}/members/{}/sessions/revoke", member.id);
    let (status, counts) = app.json(&owner, Method::POST, &path, None).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!((counts["sessions"].as_u64(), counts["token_families"].as_u64()), (Some(1), Some(2)), "{counts}");
    assert_all_ended(&app, &held, "an administrator's revocation").await;
    assert_eq!(me_by_bearer(&app, &member.token).await, 401);
    assert_eq!(me_by_bearer(&app, &owner.token).await, 200, "the administrator is untouched");
}

async fn suspension_ends_every_credential_and_reinstatement_revives_none(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let held = holdings(&app, &user.email).await;
    let meta = testkit::auth::RequestMeta::default();
    assert_eq!(app.state.auth.set_suspended(ids::UserId(user.id), true, &meta).await.unwrap(), Some(true));
    assert_eq!(me_by_bearer(&app, &held.client.access).await, 401);
    let refused = post(&app, "/api/v1/auth/token", json!({"email": user.email, "password": TEST_PASSWORD})).await;
    assert_eq!(refused.status(), 401, "a suspended user cannot sign in");
    assert_eq!(app.state.auth.set_suspended(ids::UserId(user.id), true, &meta).await.unwrap(), Some(false), "already");
    assert_eq!(app.state.auth.set_suspended(ids::UserId(user.id), false, &meta).await.unwrap(), Some(true));
    assert_all_ended(&app, &held, "suspension, then reinstatement").await;
    let fresh = client(&app, &user.email, TEST_PASSWORD).await;
    assert_eq!(me_by_bearer(&app, &fresh.access).await, 200, "the reinstated user signs in again");
    let unknown = ids::UserId::new_random();
    assert_eq!(app.state.auth.set_suspended(unknown, true, &meta).await.unwrap(), None);
}

async fn a_refresh_racing_a_revoke_all_never_yields_tokens_that_outlive_it(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    for round in 0..6 {
        let held = holdings(&app, &user.email).await;
        let (rotated, revoked) = tokio::join!(
            refresh(&app, &held.client.refresh),
            cookie_post(&app, &held.browser, "/api/v1/auth/sessions/revoke-all", json!({})),
        );
        assert_eq!(revoked.0, 200, "round {round}: {}", revoked.1);
        // Whichever came first, what the refresh produced (if anything) is ended too.
        if rotated.0 == 200 {
            let access = rotated.1["access_token"].as_str().unwrap();
            assert_eq!(me_by_bearer(&app, access).await, 401, "round {round}: the racing access token");
            let again = refresh(&app, rotated.1["refresh_token"].as_str().unwrap()).await;
            assert_eq!(again.0, 401, "round {round}: the racing refresh token: {}", again.1);
        } else {
            assert_eq!(rotated.0, 401, "round {round}: {}", rotated.1);
        }
        assert_all_ended(&app, &held, "revoke-all racing a refresh").await;
    }
}

backend_tests!(
    a_password_reset_ends_every_session_token_family_and_access_token,
    a_password_change_ends_every_other_credential_and_the_new_session_works,
    revoke_all_by_bearer_or_by_cookie_ends_both_kinds_and_counts_each,
    revoke_others_by_cookie_keeps_exactly_the_current_session,
    revoke_others_by_bearer_keeps_exactly_the_current_token_family,
    ending_one_token_family_stops_its_access_tokens_at_once,
    sessions_list_browser_sessions_and_token_families_and_either_ends_by_id,
    a_workspace_admin_ending_a_members_sessions_ends_tokens_too,
    suspension_ends_every_credential_and_reinstatement_revives_none,
    a_refresh_racing_a_revoke_all_never_yields_tokens_that_outlive_it,
);

/// Redis holds nothing for ever: the per-user session index lives as long as its newest session
/// can (30 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_per_user_session_index_in_redis_expires_with_its_newest_session() {
    let app = app(Backend::Postgres).await;
    let user = app.new_user().await;
    let _browser = browser(&app, &user.email, TEST_PASSWORD).await;
    let client = redis::Client::open(testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("*usess:{}", user.id);
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    let absolute = testkit::auth::service::SESSION_ABSOLUTE.num_seconds();
    assert!(ttl > absolute - 60 && ttl <= absolute, "the index expires with its newest session: {ttl}");
}
