//! Multi-factor authentication through HTTP, on SQLite and on PostgreSQL: TOTP set up with a
//! first code, then every password sign-in takes a second step; codes come from an independent
//! generator (the `pyotp` package on PyPI) at the server's clock; a code is accepted once, a
//! recovery code once, a challenge once, for its own flow, five attempts, five minutes.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser, TEST_PASSWORD};

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let resp = app.client.post(app.url(path)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The code the reference generator (`pyotp`) computes for `secret` at the server's clock.
fn code(app: &TestApp, secret: &str) -> String {
    app.totp_code(secret)
}

/// The server with the per-address throttles lifted: these tests sign in many times a minute.
async fn app(backend: Backend) -> TestApp {
    testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |http| http.rate_limit_per_client_per_sec = 100_000,
        |state| state.auth_attempts_per_minute = 10_000,
    )
    .await
}

/// Sets TOTP up for `user`; the base32 secret and the recovery codes.
async fn enrol(app: &TestApp, user: &TestUser) -> (String, Vec<String>) {
    let (status, enrolment) = app.json(user, Method::POST, "/api/v1/me/mfa/totp", None).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let (status, wrong) =
        app.json(user, Method::POST, "/api/v1/me/mfa/totp/confirm", Some(json!({"code": "000000"}))).await;
    if code(app, &secret) != "000000" {
        assert_eq!((status, wrong["code"].as_str()), (401, Some("invalid_code")), "{wrong}");
    }
    let (status, confirmed) =
        app.json(user, Method::POST, "/api/v1/me/mfa/totp/confirm", Some(json!({"code": code(app, &secret)}))).await;
    assert_eq!(status, 200, "{confirmed}");
    let codes: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (secret, codes)
}

async fn challenge(app: &TestApp, user: &TestUser, path: &str) -> String {
    let (status, step) = post(app, path, json!({"email": user.email, "password": TEST_PASSWORD})).await;
    assert_eq!(status, 202, "{step}");
    assert_eq!(step["status"], "mfa_required");
    assert!(step.get("access_token").is_none() && step["expires_in"] == 300, "{step}");
    step["challenge"].as_str().unwrap().to_owned()
}

async fn totp_is_confirmed_by_a_first_code_then_sign_in_takes_a_second_step_each_code_once(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let (status, enrolment) = app.json(&alice, Method::POST, "/api/v1/me/mfa/totp", None).await;
    assert_eq!(status, 200);
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    let secret = enrolment["secret"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Rampart%3A") && uri.contains(&format!("secret={secret}")), "{uri}");
    assert_eq!(secret.len(), 32, "160 bits in base32");
    // Not confirmed yet: the password alone still signs in.
    let (status, _) = post(&app, "/api/v1/auth/token", json!({"email": alice.email, "password": TEST_PASSWORD})).await;
    assert_eq!(status, 200);

    let (secret, recovery) = enrol(&app, &alice).await;
    assert_eq!(recovery.len(), 10);
    let (_, status_body) = app.json(&alice, Method::GET, "/api/v1/me/mfa", None).await;
    assert_eq!(status_body["enabled"], true);
    let (status, again) = app.json(&alice, Method::POST, "/api/v1/me/mfa/totp", None).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("mfa_already_enabled")));

    // The code that confirmed the factor was used: in the same step it is refused.
    let first = challenge(&app, &alice, "/api/v1/auth/token").await;
    let used = code(&app, &secret);
    let (status, body) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": first, "code": used})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_code")), "a replayed code: {body}");
    app.clock.advance(Duration::seconds(30));
    let fresh = code(&app, &secret);
    let (status, tokens) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": first, "code": fresh})).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string() && tokens["refresh_token"].is_string());
    let (status, _) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": first, "code": fresh})).await;
    assert_eq!(status, 400, "a spent challenge is an invalid token");
    let second = challenge(&app, &alice, "/api/v1/auth/token").await;
    let (status, body) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": second, "code": fresh})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_code")), "the same code twice: {body}");

    // A token-flow challenge does not open a browser session.
    let (status, _) =
        post(&app, "/api/v1/auth/signin/mfa", json!({"challenge": second, "code": code(&app, &secret)})).await;
    assert_eq!(status, 400);

    // A recovery code signs in once, in the browser flow too.
    let browser = challenge(&app, &alice, "/api/v1/auth/signin").await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin/mfa"))
        .json(&json!({"challenge": browser, "recovery_code": recovery[0].to_uppercase()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("__Host-rampart_session=")));
    let again = challenge(&app, &alice, "/api/v1/auth/signin").await;
    let (status, body) =
        post(&app, "/api/v1/auth/signin/mfa", json!({"challenge": again, "recovery_code": recovery[0]})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_code")), "a used recovery code: {body}");
    let (status, _) =
        post(&app, "/api/v1/auth/signin/mfa", json!({"challenge": again, "recovery_code": recovery[1]})).await;
    assert_eq!(status, 200, "the challenge survives a wrong attempt");

    let (status, trail) = app.json(&alice, Method::GET, "/api/v1/me/security-events", None).await;
    assert_eq!(status, 200);
    let text = trail.to_string();
    assert!(text.contains("auth.mfa_enabled") && text.contains("auth.recovery_code_used"), "{text}");
    assert!(!text.contains(&secret) && !text.contains(&recovery[0]), "no secret in the trail");
}

async fn a_challenge_takes_five_attempts_and_five_minutes_and_disabling_needs_a_fresh_authentication_and_a_code(
    backend: Backend,
) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let (secret, _) = enrol(&app, &alice).await;
    app.clock.advance(Duration::seconds(30));
    let tried = challenge(&app, &alice, "/api/v1/auth/token").await;
    let right = code(&app, &secret);
    let wrong = if right == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        let (status, _) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": tried, "code": wrong})).await;
        assert_eq!(status, 401);
    }
    let (status, _) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": tried, "code": right})).await;
    assert_eq!(status, 400, "five wrong codes spend the challenge");
    let late = challenge(&app, &alice, "/api/v1/auth/token").await;
    app.clock.advance(Duration::seconds(301));
    let (status, _) =
        post(&app, "/api/v1/auth/token/mfa", json!({"challenge": late, "code": code(&app, &secret)})).await;
    assert_eq!(status, 400, "an expired challenge");
    let (status, _) = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": late})).await;
    assert_eq!(status, 400, "a factor is required");

    // The sign-in is over five minutes old: disabling needs a fresh authentication first, with
    // the password and the second factor both.
    app.clock.advance(Duration::seconds(30));
    let (status, stale) =
        app.json(&alice, Method::POST, "/api/v1/me/mfa/disable", Some(json!({"code": code(&app, &secret)}))).await;
    assert_eq!((status, stale["code"].as_str()), (401, Some("insufficient_user_authentication")), "{stale}");
    let (status, refused) =
        app.json(&alice, Method::POST, "/api/v1/me/reauthenticate", Some(json!({"password": TEST_PASSWORD}))).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("invalid_code")), "{refused}");
    let (status, fresh) = app
        .json(
            &alice,
            Method::POST,
            "/api/v1/me/reauthenticate",
            Some(json!({"password": TEST_PASSWORD, "code": code(&app, &secret)})),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["amr"], json!(["pwd", "otp"]));
    let alice = TestUser { token: fresh["access_token"].as_str().unwrap().to_owned(), ..alice };

    let current = code(&app, &secret);
    let wrong = if current == "000000" { "111111" } else { "000000" };
    let (status, _) = app.json(&alice, Method::POST, "/api/v1/me/mfa/disable", Some(json!({"code": wrong}))).await;
    assert_eq!(status, 401, "disabling needs a current code");
    app.clock.advance(Duration::seconds(30));
    let (status, _) =
        app.json(&alice, Method::POST, "/api/v1/me/mfa/disable", Some(json!({"code": code(&app, &secret)}))).await;
    assert_eq!(status, 204);
    let (status, _) = post(&app, "/api/v1/auth/token", json!({"email": alice.email, "password": TEST_PASSWORD})).await;
    assert_eq!(status, 200, "without a second factor the password signs in again");
}

/// A server whose vault key was rotated still opens second factors sealed under the earlier key
/// while that key is listed, and seals them again under the new one at their next use; a server
/// without the earlier key opens only what was sealed again.
async fn a_rotated_vault_key_keeps_second_factors_working_and_moves_them_to_the_new_key(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let (secret, _) = enrol(&app, &alice).await;
    let old = app.state.keyring.vault_kek.clone();
    let new = crypto_vault::KeyMaterial::generate();
    let state = |vault_previous: Vec<crypto_vault::KeyMaterial>| {
        let keyring = crypto_vault::Keyring {
            token_hmac: app.state.keyring.token_hmac.clone(),
            vault_kek: new.clone(),
            vault_previous,
            password_pepper: app.state.keyring.password_pepper.clone(),
            source: crypto_vault::KeySource::Configured,
        };
        testkit::app_state_with_keys(&app.db, app.clock.clone(), auth::SignupMode::Open, keyring)
    };
    let (rotated, new_only) = (state(vec![old]).await, state(Vec::new()).await);
    let meta = auth::RequestMeta::default();
    let sign_in = |service: auth::AuthService, code: String| {
        let (email, meta) = (alice.email.clone(), meta.clone());
        async move {
            let auth::mfa::SignIn::SecondFactor(challenge) =
                service.password_grant(&email, TEST_PASSWORD, &meta).await.unwrap()
            else {
                panic!("a second factor is required");
            };
            service
                .complete_password_grant(
                    secrecy::ExposeSecret::expose_secret(&challenge.token),
                    &auth::mfa::Factor::Totp(&code),
                    &meta,
                )
                .await
        }
    };
    app.clock.advance(Duration::seconds(30));
    let refused = sign_in(new_only.auth.clone(), code(&app, &secret)).await;
    assert!(matches!(refused, Err(auth::AuthError::Internal(_))), "the new key alone cannot open it yet: {refused:?}");
    sign_in(rotated.auth.clone(), code(&app, &secret)).await.expect("the earlier key still opens it");
    app.clock.advance(Duration::seconds(30));
    sign_in(new_only.auth.clone(), code(&app, &secret)).await.expect("sealed again under the new key at its use");
}

async fn sensitive_actions_need_an_authentication_within_five_minutes_and_a_key_never_has_one(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Step-up").await;
    let keys = format!("/api/v1/workspaces/{ws}/api-keys");
    let new_key = json!({"name": "ci", "scopes": ["projects.read", "api_keys.manage"]});
    let (status, made) = app.json(&alice, Method::POST, &keys, Some(new_key.clone())).await;
    assert_eq!(status, 201, "just signed in: {made}");

    app.clock.advance(Duration::minutes(6));
    let resp = app.call(&alice, Method::POST, &keys).json(&new_key).send().await.unwrap();
    let challenge = resp.headers()[reqwest::header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_user_authentication") && challenge.contains("max_age=300"), "{challenge}");
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["code"], "insufficient_user_authentication");
    // Every other sensitive action is refused alike.
    for (method, path, body) in [
        (Method::POST, "/api/v1/me/mfa/totp".to_owned(), None),
        (Method::PUT, format!("/api/v1/workspaces/{ws}/mfa-requirement"), Some(json!({"required": false}))),
        (Method::POST, "/api/v1/me/identities/google/link".to_owned(), None),
        (Method::DELETE, format!("/api/v1/me/identities/{}", uuid::Uuid::new_v4()), None),
        (Method::POST, "/api/v1/me/mfa/disable".to_owned(), Some(json!({"code": "000000"}))),
    ] {
        let (status, refused) = app.json(&alice, method, &path, body).await;
        assert_eq!((status, refused["code"].as_str()), (401, Some("insufficient_user_authentication")), "{path}");
    }

    // A refresh carries the sign-in's time along: it is no re-authentication.
    let (status, refreshed) =
        post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": alice.refresh_token})).await;
    assert_eq!(status, 200, "{refreshed}");
    let refreshed_user = TestUser {
        token: refreshed["access_token"].as_str().unwrap().to_owned(),
        refresh_token: refreshed["refresh_token"].as_str().unwrap().to_owned(),
        ..alice.clone()
    };
    let (status, _) = app.json(&refreshed_user, Method::POST, &keys, Some(new_key.clone())).await;
    assert_eq!(status, 401, "still the old authentication");

    let (status, wrong) = app
        .json(&refreshed_user, Method::POST, "/api/v1/me/reauthenticate", Some(json!({"password": "not it at all 9"})))
        .await;
    assert_eq!((status, wrong["code"].as_str()), (401, Some("invalid_credentials")), "{wrong}");
    let (status, fresh) = app
        .json(&refreshed_user, Method::POST, "/api/v1/me/reauthenticate", Some(json!({"password": TEST_PASSWORD})))
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!((fresh["amr"].clone(), fresh["valid_for"].clone()), (json!(["pwd"]), json!(300)));
    let stepped = TestUser { token: fresh["access_token"].as_str().unwrap().to_owned(), ..refreshed_user.clone() };
    let (status, made) = app.json(&stepped, Method::POST, &keys, Some(new_key.clone())).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    // The family keeps the new authentication across its next refresh.
    let (status, again) =
        post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": refreshed_user.refresh_token})).await;
    assert_eq!(status, 200, "{again}");
    let again = TestUser { token: again["access_token"].as_str().unwrap().to_owned(), ..alice.clone() };
    let (status, _) = app.json(&again, Method::POST, &keys, Some(new_key.clone())).await;
    assert_eq!(status, 201);

    // A key authenticates a program, never a person: it cannot pass a step-up.
    let resp = app.client.post(app.url(&keys)).header("x-api-key", &key).json(&new_key).send().await.unwrap();
    assert_eq!(resp.status(), 401, "a key cannot mint keys");

    // Deleting the workspace is sensitive too.
    app.clock.advance(Duration::minutes(6));
    let again = app.renew(&alice).await;
    app.clock.advance(Duration::minutes(6));
    let path = format!("/api/v1/workspaces/{ws}");
    let (status, refused) = app.json(&again, Method::DELETE, &path, None).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("insufficient_user_authentication")));
    let (status, fresh) =
        app.json(&again, Method::POST, "/api/v1/me/reauthenticate", Some(json!({"password": TEST_PASSWORD}))).await;
    assert_eq!(status, 200);
    let again = TestUser { token: fresh["access_token"].as_str().unwrap().to_owned(), ..again };
    let (status, _) = app.json(&again, Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
}

/// `user` signed in with the password and a TOTP code: a bearer whose sign-in had both factors.
async fn sign_in_with_code(app: &TestApp, user: &TestUser, secret: &str) -> TestUser {
    app.clock.advance(Duration::seconds(30));
    let step = challenge(app, user, "/api/v1/auth/token").await;
    let (status, tokens) =
        post(app, "/api/v1/auth/token/mfa", json!({"challenge": step, "code": code(app, secret)})).await;
    assert_eq!(status, 200, "{tokens}");
    TestUser {
        token: tokens["access_token"].as_str().unwrap().to_owned(),
        refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        ..user.clone()
    }
}

async fn a_workspace_that_requires_a_second_factor_admits_members_only_from_such_a_sign_in(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let ws = app.workspace(&alice, "Strict").await;
    app.join(&alice, &bob, &ws, "Admin").await;
    let rule = format!("/api/v1/workspaces/{ws}/mfa-requirement");
    let projects = format!("/api/v1/workspaces/{ws}/projects");
    let (status, made) = app
        .json(
            &bob,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            Some(json!({"name": "bob's", "scopes": ["projects.read"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let bobs_key = made["key"].as_str().unwrap().to_owned();
    let with_key = |key: String| {
        let app = &app;
        let path = projects.clone();
        async move { app.client.get(app.url(&path)).header("x-api-key", key).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(with_key(bobs_key.clone()).await, 200);

    let (status, refused) = app.json(&alice, Method::PUT, &rule, Some(json!({"required": true}))).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("mfa_required_first")), "{refused}");
    let (secret, _) = enrol(&app, &alice).await;
    let (status, refused) = app.json(&alice, Method::PUT, &rule, Some(json!({"required": true}))).await;
    assert_eq!(status, 409, "enrolled, but this sign-in had no second factor: {refused}");
    let alice = sign_in_with_code(&app, &alice, &secret).await;
    let (status, changed) = app.json(&alice, Method::PUT, &rule, Some(json!({"required": true}))).await;
    assert_eq!((status, changed["require_mfa"].as_bool()), (200, Some(true)), "{changed}");
    let (status, _) = app.json(&alice, Method::GET, &projects, None).await;
    assert_eq!(status, 200, "alice's sign-in had both factors");

    let (status, refused) = app.json(&bob, Method::GET, &projects, None).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("workspace_requires_mfa")), "{refused}");
    assert_eq!(with_key(bobs_key.clone()).await, 403, "a key is held while its creator has no second factor");
    let (bob_secret, _) = enrol(&app, &bob).await;
    assert_eq!(with_key(bobs_key.clone()).await, 200, "its creator set one up");
    let (status, _) = app.json(&bob, Method::GET, &projects, None).await;
    assert_eq!(status, 403, "a factor set up after this sign-in does not count for it");
    let bob = sign_in_with_code(&app, &bob, &bob_secret).await;
    let (status, _) = app.json(&bob, Method::GET, &projects, None).await;
    assert_eq!(status, 200);

    // The change is in the workspace's audit trail.
    let (_, events) = app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/audit-events"), None).await;
    let changed =
        events["events"].as_array().unwrap().iter().any(|e| e["action"] == "workspace.mfa_requirement_changed");
    assert!(changed, "{events}");
}

/// The session and CSRF cookies of a browser sign-in.
async fn browser_sign_in(app: &TestApp, user: &TestUser) -> (String, String) {
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .json(&json!({"email": user.email, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = |name: &str| {
        resp.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .expect("a cookie")
    };
    (cookie("__Host-rampart_session"), cookie("__Host-rampart_csrf"))
}

async fn a_browser_session_changes_its_password_only_after_a_recent_authentication(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let (session, csrf) = browser_sign_in(&app, &alice).await;
    let post = |path: &'static str, body: Value| {
        let (app, session, csrf) = (&app, session.clone(), csrf.clone());
        async move {
            let resp = app
                .client
                .post(app.url(path))
                .header(reqwest::header::COOKIE, format!("__Host-rampart_session={session}"))
                .header("x-csrf-token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let change = json!({"current_password": TEST_PASSWORD, "new_password": "copper kettle meadow 77"});
    app.clock.advance(Duration::minutes(6));
    let (status, refused) = post("/api/v1/auth/password/change", change.clone()).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("insufficient_user_authentication")), "{refused}");
    let (status, fresh) = post("/api/v1/me/reauthenticate", json!({"password": TEST_PASSWORD})).await;
    assert_eq!(status, 200, "{fresh}");
    assert!(fresh["access_token"].is_null(), "a browser session is stamped in place: {fresh}");
    let (status, changed) = post("/api/v1/auth/password/change", change).await;
    assert_eq!(status, 200, "{changed}");
}

/// A count from the database as its owner (past row-level security).
async fn count(app: &TestApp, sql: &str) -> i64 {
    use testkit::storage::ConnectionTrait as _;
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let stmt = testkit::storage::Statement::from_string(owner.conn().get_database_backend(), sql.to_owned());
    owner.conn().query_one(stmt).await.unwrap().unwrap().try_get("", "n").unwrap()
}

async fn the_purge_job_removes_spent_challenges_at_once_and_finished_outbox_actions_after_a_week(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let (_, recovery) = enrol(&app, &alice).await;
    let spent = challenge(&app, &alice, "/api/v1/auth/token").await;
    let (status, _) =
        post(&app, "/api/v1/auth/token/mfa", json!({"challenge": spent, "recovery_code": recovery[0]})).await;
    assert_eq!(status, 200);
    let _live = challenge(&app, &alice, "/api/v1/auth/token").await;
    let challenges = "SELECT COUNT(*) AS n FROM mfa_challenges";
    let finished = "SELECT COUNT(*) AS n FROM scheduled_actions WHERE status = 'done'";
    assert_eq!(count(&app, challenges).await, 2);
    let done_before = count(&app, finished).await;
    assert!(done_before >= 1, "the verification mail was sent through the outbox");

    app.state.auth.purge_expired().await.unwrap();
    assert_eq!(count(&app, challenges).await, 1, "the used challenge goes, the live one stays");
    assert_eq!(count(&app, finished).await, done_before, "finished actions are kept for a week");

    app.state.auth.schedule_purge().await.unwrap();
    app.clock.advance(Duration::days(7));
    app.state.auth.purge_expired().await.unwrap();
    assert_eq!(count(&app, challenges).await, 0, "the expired challenge goes");
    assert_eq!(count(&app, finished).await, 0, "a week after they finished");
    let pending = "SELECT COUNT(*) AS n FROM scheduled_actions WHERE status = 'pending'";
    assert_eq!(count(&app, pending).await, 1, "what is still to do stays");
}

backend_tests!(
    the_purge_job_removes_spent_challenges_at_once_and_finished_outbox_actions_after_a_week,
    a_browser_session_changes_its_password_only_after_a_recent_authentication,
    sensitive_actions_need_an_authentication_within_five_minutes_and_a_key_never_has_one,
    a_workspace_that_requires_a_second_factor_admits_members_only_from_such_a_sign_in,
    a_rotated_vault_key_keeps_second_factors_working_and_moves_them_to_the_new_key,
    totp_is_confirmed_by_a_first_code_then_sign_in_takes_a_second_step_each_code_once,
    a_challenge_takes_five_attempts_and_five_minutes_and_disabling_needs_a_fresh_authentication_and_a_code,
);
