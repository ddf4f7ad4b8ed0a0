//! Accounts, sessions and tokens through HTTP, on SQLite and on PostgreSQL (runtime role) + Redis,
//! with mail read back from a real SMTP sink.

use base64::Engine as _;
use serde_json::{json, Value};
use testkit::{backend_tests, mails_to, spawn_app, storage::ConnectionTrait, unique_email, Backend, TestApp};

const PASSWORD: &str = "violet ocean ladder 42";

/// A browser session as a client holds it.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
    id: String,
}

fn cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).json(&body).send().await.unwrap()
}

async fn post_with(app: &TestApp, path: &str, session: &Session, csrf: bool, body: Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).header("cookie", &session.cookie).json(&body);
    if csrf {
        req = req.header("x-csrf-token", &session.csrf);
    }
    req.send().await.unwrap()
}

async fn get_with(app: &TestApp, path: &str, session: &Session) -> reqwest::Response {
    app.client.get(app.url(path)).header("cookie", &session.cookie).send().await.unwrap()
}

async fn code_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Signs up `email`, follows the mailed link, and returns the verification mail.
async fn sign_up_verified(app: &TestApp, email: &str) {
    let resp = post(app, "/api/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 202);
    app.run_outbox().await;
    let mail = mails_to(email).pop().expect("a verification mail");
    assert!(mail.subject.contains("Confirm"), "{mail:?}");
    let token = mail.link_token().expect("a token in the link");
    assert_eq!(token.len(), 64, "32 random bytes as hex");
    let resp = post(app, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(resp.status(), 204);
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Session {
    let resp = post(app, "/api/v1/auth/signin", json!({"email": email, "password": password})).await;
    assert_eq!(resp.status(), 200, "sign-in failed");
    let session_cookie =
        cookies(&resp).into_iter().find(|c| c.starts_with("__Host-rampart_session=")).expect("session cookie");
    let value = session_cookie.split(';').next().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    Session {
        cookie: value,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        id: body["session"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn token_pair(app: &TestApp, email: &str) -> Value {
    let resp = post(app, "/api/v1/auth/token", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn me_with_bearer(app: &TestApp, token: &str) -> u16 {
    app.client.get(app.url("/api/v1/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn set_status(app: &TestApp, email: &str, status: &str) {
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    owner
        .conn()
        .execute_unprepared(&format!("UPDATE users SET status = '{status}' WHERE email = '{email}'"))
        .await
        .unwrap();
}

async fn sign_up_verify_and_sign_in_with_a_secure_host_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let resp = post(&app, "/api/v1/auth/signin", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    let set = cookies(&resp);
    let session = set.iter().find(|c| c.starts_with("__Host-rampart_session=")).expect("session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{attr} missing in {session}");
    }
    assert!(!session.to_lowercase().contains("domain="), "__Host- cookies carry no Domain: {session}");
    let token = session.split(';').next().unwrap().trim_start_matches("__Host-rampart_session=");
    assert_eq!(token.len(), 64, "256-bit session token");
    let csrf = set.iter().find(|c| c.starts_with("__Host-rampart_csrf=")).expect("csrf cookie");
    assert!(!csrf.contains("HttpOnly"), "browser code must read the CSRF cookie");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["email"], email.as_str());
    assert_eq!(body["user"]["email_verified"], true);
}

async fn signing_in_before_verifying_the_address_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    post(&app, "/api/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
    let resp = post(&app, "/api/v1/auth/signin", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(code_of(resp).await, (403, "email_not_verified".into()));
}

async fn sign_up_answers_alike_for_a_taken_address_and_mails_its_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let resp = post(&app, "/api/v1/auth/signup", json!({"email": email, "password": "another long passphrase"})).await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"status": "accepted"}));
    app.run_outbox().await;
    let last = mails_to(&email).pop().unwrap();
    assert!(last.subject.contains("tried to sign up"), "{last:?}");
    // The original password still works: nothing was overwritten.
    sign_in(&app, &email, PASSWORD).await;
}

async fn weak_passwords_and_bad_addresses_get_stable_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    for (email, password, code) in [
        (unique_email(), "short".to_owned(), "weak_password"),
        (unique_email(), "passwordpassword".to_owned(), "weak_password"),
        ("not-an-address".to_owned(), PASSWORD.to_owned(), "invalid_email"),
    ] {
        let resp = post(&app, "/api/v1/auth/signup", json!({"email": email, "password": password})).await;
        assert_eq!(code_of(resp).await, (400, code.to_owned()));
    }
}

async fn a_cookie_request_without_a_valid_csrf_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let a = sign_in(&app, &email, PASSWORD).await;
    let b = sign_in(&app, &email, PASSWORD).await;
    let missing = post_with(&app, "/api/v1/auth/sessions/revoke-others", &a, false, json!({})).await;
    assert_eq!(code_of(missing).await, (403, "csrf_failed".into()));
    let foreign = Session { csrf: b.csrf.clone(), ..a.clone() };
    let resp = post_with(&app, "/api/v1/auth/sessions/revoke-others", &foreign, true, json!({})).await;
    assert_eq!(code_of(resp).await, (403, "csrf_failed".into()), "a token from session B is refused in session A");
    let flipped = if a.csrf.starts_with('0') { '1' } else { '0' };
    let tampered = Session { csrf: format!("{flipped}{}", &a.csrf[1..]), ..a.clone() };
    let resp = post_with(&app, "/api/v1/auth/sessions/revoke-others", &tampered, true, json!({})).await;
    assert_eq!(code_of(resp).await, (403, "csrf_failed".into()));
    // Safe methods need no token; the right token works.
    assert_eq!(get_with(&app, "/api/v1/me", &a).await.status(), 200);
    let ok = post_with(&app, "/api/v1/auth/sessions/revoke-others", &a, true, json!({})).await;
    assert_eq!(ok.status(), 200);
}

async fn sign_out_ends_the_session_on_the_next_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let s = sign_in(&app, &email, PASSWORD).await;
    assert_eq!(get_with(&app, "/api/v1/me", &s).await.status(), 200);
    assert_eq!(post_with(&app, "/api/v1/auth/signout", &s, true, json!({})).await.status(), 204);
    assert_eq!(code_of(get_with(&app, "/api/v1/me", &s).await).await, (401, "unauthenticated".into()));
}

async fn a_revoked_session_is_rejected_immediately_and_lists_never_show_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let a = sign_in(&app, &email, PASSWORD).await;
    let b = sign_in(&app, &email, PASSWORD).await;
    let resp = get_with(&app, "/api/v1/auth/sessions", &a).await;
    let text = resp.text().await.unwrap();
    let token_a = a.cookie.split('=').nth(1).unwrap();
    assert!(!text.contains(token_a), "session lists never contain tokens");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/auth/sessions/{}", b.id)))
        .header("cookie", &a.cookie)
        .header("x-csrf-token", &a.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(get_with(&app, "/api/v1/me", &b).await.status(), 401);
    assert_eq!(get_with(&app, "/api/v1/me", &a).await.status(), 200);
}

async fn a_password_change_revokes_every_other_session_and_rotates_this_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let a = sign_in(&app, &email, PASSWORD).await;
    let b = sign_in(&app, &email, PASSWORD).await;
    let new_password = "granite harbour lantern 7";
    let resp = post_with(
        &app,
        "/api/v1/auth/password/change",
        &a,
        true,
        json!({"current_password": PASSWORD, "new_password": new_password}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rotated = cookies(&resp).into_iter().find(|c| c.starts_with("__Host-rampart_session=")).unwrap();
    let rotated = Session { cookie: rotated.split(';').next().unwrap().to_owned(), ..a.clone() };
    assert_ne!(rotated.cookie, a.cookie, "the current session gets a new token");
    assert_eq!(get_with(&app, "/api/v1/me", &a).await.status(), 401, "old token of this session is gone");
    assert_eq!(get_with(&app, "/api/v1/me", &b).await.status(), 401, "other sessions are revoked");
    assert_eq!(get_with(&app, "/api/v1/me", &rotated).await.status(), 200);
    let old = post(&app, "/api/v1/auth/signin", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(code_of(old).await, (401, "invalid_credentials".into()));
}

async fn a_reset_link_works_once_and_ends_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let s = sign_in(&app, &email, PASSWORD).await;
    assert_eq!(post(&app, "/api/v1/auth/password/reset", json!({"email": email})).await.status(), 202);
    app.run_outbox().await;
    let mail = mails_to(&email).into_iter().rev().find(|m| m.subject.contains("Reset")).expect("reset mail");
    let token = mail.link_token().unwrap();
    let new_password = "copper meadow whistle 9";
    let first =
        post(&app, "/api/v1/auth/password/reset/confirm", json!({"token": token, "new_password": new_password})).await;
    assert_eq!(first.status(), 204);
    let again = post(
        &app,
        "/api/v1/auth/password/reset/confirm",
        json!({"token": token, "new_password": "another fine passphrase"}),
    )
    .await;
    assert_eq!(code_of(again).await, (400, "invalid_token".into()));
    assert_eq!(get_with(&app, "/api/v1/me", &s).await.status(), 401);
    sign_in(&app, &email, new_password).await;
}

async fn concurrent_uses_of_one_reset_token_have_exactly_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    post(&app, "/api/v1/auth/password/reset", json!({"email": email})).await;
    app.run_outbox().await;
    let token = mails_to(&email).into_iter().rev().find(|m| m.subject.contains("Reset")).unwrap().link_token().unwrap();
    // Four clients race on separate tasks (and runtime threads).
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/auth/password/reset/confirm"));
        let body = json!({"token": token, "new_password": format!("parallel universe number {i}")});
        attempts.spawn(async move { client.post(url).json(&body).send().await.unwrap().status().as_u16() });
    }
    let statuses: Vec<u16> = attempts.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3, "{statuses:?}");
}

async fn a_reset_for_an_unknown_address_answers_alike_and_mails_nobody(backend: Backend) {
    let app = spawn_app(backend).await;
    let nobody = unique_email();
    let resp = post(&app, "/api/v1/auth/password/reset", json!({"email": nobody})).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "accepted"}));
    let report = app.run_outbox().await;
    assert_eq!(report.done, 1, "the request was processed");
    assert!(mails_to(&nobody).is_empty());
}

async fn suspension_takes_effect_on_the_next_request_for_sessions_and_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let s = sign_in(&app, &email, PASSWORD).await;
    let pair = token_pair(&app, &email).await;
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(me_with_bearer(&app, access).await, 200);
    set_status(&app, &email, "suspended").await;
    assert_eq!(get_with(&app, "/api/v1/me", &s).await.status(), 401);
    assert_eq!(me_with_bearer(&app, access).await, 401);
    let refresh = post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(refresh.status(), 401);
}

async fn refresh_tokens_rotate_and_a_late_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let first = token_pair(&app, &email).await;
    let second: Value = post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": first["refresh_token"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // Within the grace window a concurrent client may present the old token again.
    let racing = post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(racing.status(), 200);
    app.clock.advance(chrono::Duration::seconds(11));
    let stolen = post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(code_of(stolen).await, (401, "refresh_token_reused".into()));
    // The whole family is revoked, including the legitimate successor.
    let legit = post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": second["refresh_token"]})).await;
    assert_eq!(code_of(legit).await, (401, "token_family_ended".into()));
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

async fn forged_and_expired_access_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let pair = token_pair(&app, &email).await;
    let real = pair["access_token"].as_str().unwrap().to_owned();
    let payload = real.split('.').nth(1).unwrap().to_owned();
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    let kid = key["kid"].as_str().unwrap();
    // alg: none with an empty signature.
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#));
    assert_eq!(me_with_bearer(&app, &none).await, 401);
    // HS256 keyed with the published public key (key confusion).
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let header = b64(format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#).as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public), signing_input.as_bytes());
    let confused = format!("{signing_input}.{}", b64(mac.as_ref()));
    assert_eq!(me_with_bearer(&app, &confused).await, 401);
    // Tampered payload keeps the real signature.
    let mut claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap();
    claims["aud"] = json!("someone-else");
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert_eq!(me_with_bearer(&app, &tampered).await, 401);
    // The real token works until it expires (15 minutes, 30 s leeway).
    assert_eq!(me_with_bearer(&app, &real).await, 200);
    app.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(me_with_bearer(&app, &real).await, 401);
}

async fn identity_headers_from_clients_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for header in ["x-user-id", "x-tenant-id", "x-forwarded-user"] {
        let resp = app.client.get(app.url("/healthz")).header(header, "42").send().await.unwrap();
        assert_eq!(code_of(resp).await, (400, "identity_header_rejected".into()), "{header}");
    }
}

async fn sign_in_attempts_are_limited_per_minute_with_retry_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    let mut last = None;
    for _ in 0..11 {
        last =
            Some(post(&app, "/api/v1/auth/signin", json!({"email": email, "password": "wrong but long enough"})).await);
    }
    let resp = last.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(code_of(resp).await.1, "rate_limited");
}

async fn repeated_failures_lock_the_account_for_a_while_and_say_so_by_mail(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    for _ in 0..5 {
        let resp =
            post(&app, "/api/v1/auth/signin", json!({"email": email, "password": "wrong but long enough"})).await;
        assert_eq!(code_of(resp).await, (401, "invalid_credentials".into()));
    }
    // Locked: even the right password answers like a wrong one.
    let resp = post(&app, "/api/v1/auth/signin", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(code_of(resp).await, (401, "invalid_credentials".into()));
    app.run_outbox().await;
    assert!(mails_to(&email).iter().any(|m| m.subject.contains("locked")));
    // The lock expires by itself.
    app.clock.advance(chrono::Duration::minutes(16));
    sign_in(&app, &email, PASSWORD).await;
}

async fn tokens_are_stored_only_as_hashes(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let s = sign_in(&app, &email, PASSWORD).await;
    let pair = token_pair(&app, &email).await;
    let session_token = s.cookie.split('=').nth(1).unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let backend_db = owner.conn().get_database_backend();
    for (table, column) in [
        ("refresh_tokens", "token_hash"),
        ("one_time_tokens", "token_hash"),
        ("scheduled_actions", "payload_ciphertext"),
    ] {
        let rows = owner
            .conn()
            .query_all(testkit::storage::Statement::from_string(
                backend_db,
                format!("SELECT {column} AS v FROM {table}"),
            ))
            .await
            .unwrap();
        for row in rows {
            let v: String = row.try_get("", "v").unwrap();
            assert!(!v.contains(&refresh) && !v.contains(&session_token), "{table}.{column} holds a token");
        }
    }
    if backend == Backend::Postgres {
        let client = redis::Client::open(testkit::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        assert!(!keys.is_empty());
        assert!(keys.iter().all(|k| !k.contains(&session_token)), "Redis keys hold only hashes");
    }
}

async fn the_jwks_document_publishes_the_signing_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "never the private part");
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let backend_db = owner.conn().get_database_backend();
    let row = owner
        .conn()
        .query_one(testkit::storage::Statement::from_string(backend_db, sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn the_purge_job_removes_expired_tokens_and_reschedules_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    token_pair(&app, &email).await;
    post(&app, "/api/v1/auth/password/reset", json!({"email": email})).await;
    app.run_outbox().await;
    assert!(count(&app, "SELECT COUNT(*) AS n FROM one_time_tokens").await >= 2);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM refresh_tokens").await, 1);
    app.clock.advance(chrono::Duration::days(31));
    app.state.auth.schedule_purge().await.unwrap();
    app.state.auth.schedule_purge().await.unwrap(); // idempotent: still one pending purge
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM scheduled_actions WHERE kind = 'auth_purge_expired' AND status = 'pending'"
        )
        .await,
        1
    );
    let report = app.run_outbox().await;
    assert_eq!(report.done, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM one_time_tokens").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM refresh_tokens").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM scheduled_actions WHERE kind = 'auth_purge_expired' AND status = 'pending'"
        )
        .await,
        1,
        "the next run is scheduled"
    );
}

async fn authentication_events_are_recorded_with_ip_agent_and_request_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    sign_up_verified(&app, &email).await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .header("user-agent", "event-test/1.0")
        .header("x-request-id", "evt-123")
        .json(&json!({"email": email, "password": "wrong but long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let n = count(
        &app,
        "SELECT COUNT(*) AS n FROM audit_events WHERE category = 'authentication' AND action = 'auth.signin_failed'
           AND payload LIKE '%\"ip\":\"127.0.0.1\"%' AND payload LIKE '%\"user_agent\":\"event-test/1.0\"%'
           AND request_id = 'evt-123' AND actor_id IS NOT NULL",
    )
    .await;
    assert_eq!(n, 1);
    let leaked = count(&app, "SELECT COUNT(*) AS n FROM audit_events WHERE payload LIKE '%wrong but long%'").await;
    assert_eq!(leaked, 0, "events never hold secrets");
}

async fn closed_and_invite_only_servers_refuse_public_sign_up(backend: Backend) {
    for mode in [testkit::auth::SignupMode::Closed, testkit::auth::SignupMode::InviteOnly] {
        let app = testkit::spawn_app_with_signup(backend, mode, |_| {}).await;
        let email = unique_email();
        let resp = post(&app, "/api/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(code_of(resp).await, (403, "signup_closed".into()), "{mode:?}");
        assert_eq!(app.run_outbox().await.done, 0, "nothing was queued");
    }
}

backend_tests!(
    closed_and_invite_only_servers_refuse_public_sign_up,
    the_purge_job_removes_expired_tokens_and_reschedules_itself,
    authentication_events_are_recorded_with_ip_agent_and_request_id,
    sign_up_verify_and_sign_in_with_a_secure_host_cookie,
    signing_in_before_verifying_the_address_is_refused,
    sign_up_answers_alike_for_a_taken_address_and_mails_its_owner,
    weak_passwords_and_bad_addresses_get_stable_codes,
    a_cookie_request_without_a_valid_csrf_token_is_refused,
    sign_out_ends_the_session_on_the_next_request,
    a_revoked_session_is_rejected_immediately_and_lists_never_show_tokens,
    a_password_change_revokes_every_other_session_and_rotates_this_one,
    a_reset_link_works_once_and_ends_every_session,
    concurrent_uses_of_one_reset_token_have_exactly_one_winner,
    a_reset_for_an_unknown_address_answers_alike_and_mails_nobody,
    suspension_takes_effect_on_the_next_request_for_sessions_and_tokens,
    refresh_tokens_rotate_and_a_late_reuse_revokes_the_family,
    forged_and_expired_access_tokens_are_refused,
    identity_headers_from_clients_are_refused,
    sign_in_attempts_are_limited_per_minute_with_retry_after,
    repeated_failures_lock_the_account_for_a_while_and_say_so_by_mail,
    tokens_are_stored_only_as_hashes,
    the_jwks_document_publishes_the_signing_key,
);
