//! Every credential lifetime at its edge, through HTTP, on SQLite and on PostgreSQL + Redis, with
//! the injected clock moved instead of waiting: one second before the limit the credential still
//! works, at the limit it is refused with its stable code.
//!
//! The limits (`auth::service`, `auth::mfa`, `auth::oidc`, `auth::jwt`): a session ends after
//! 7 days without use (ASVS 5.0 V7.3.1), its idle deadline moves at most once per 24 hours of use,
//! and no session outlives 30 days however busy (ASVS 5.0 V7.3.2; NIST SP 800-63B §4.1.3, AAL1);
//! refresh tokens live 30 days; password-reset links one hour (OWASP Forgot Password Cheat Sheet);
//! verification links 24 hours; second-factor challenges five minutes; provider sign-in state ten
//! minutes (RFC 9700 §2.1.1 keeps it short-lived); access tokens 15 minutes, plus a 30-second
//! leeway for clock skew (RFC 7519 §4.1.4).

use chrono::{DateTime, Duration, Utc};
use reqwest::{header, Method};
use serde_json::{json, Value};
use testkit::oidc::{OidcClient, OidcProvider};
use testkit::storage::Clock as _;
use testkit::{backend_tests, mails_to, unique_email, Backend, TestApp, TestUser, TEST_PASSWORD};

/// A second: how far before a limit a credential must still work.
fn second() -> Duration {
    Duration::seconds(1)
}

/// The server with the per-address throttles lifted: these tests sign in many times.
async fn app(backend: Backend) -> TestApp {
    testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |http| http.rate_limit_per_client_per_sec = 100_000,
        |state| state.auth_attempts_per_minute = 10_000,
    )
    .await
}

/// The server's time.
fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

/// Moves the server's clock forward to `at` exactly.
fn travel_to(app: &TestApp, at: DateTime<Utc>) {
    let by = at - now(app);
    assert!(by >= Duration::zero(), "the clock only moves forward (to {at} from {})", now(app));
    app.clock.advance(by);
    assert_eq!(now(app), at);
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}")).parse().unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let resp = app.client.post(app.url(path)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The status and the stable code of an answer.
fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["code"].as_str().unwrap_or_default())
}

/// The link token of the last mail to `email` whose subject contains `subject`.
fn mailed_token(email: &str, subject: &str) -> String {
    let mail = mails_to(email).into_iter().rev().find(|m| m.subject.contains(subject));
    mail.and_then(|m| m.link_token()).unwrap_or_else(|| panic!("no {subject} link mailed to {email}"))
}

/// Signs up `email` and returns the token of its verification link, unused.
async fn sign_up(app: &TestApp, email: &str) -> String {
    let (status, body) = post(app, "/api/v1/auth/signup", json!({"email": email, "password": TEST_PASSWORD})).await;
    assert_eq!(status, 202, "{body}");
    app.run_outbox().await;
    mailed_token(email, "Confirm")
}

/// A verified account's address.
async fn verified(app: &TestApp) -> String {
    let email = unique_email();
    let token = sign_up(app, &email).await;
    let (status, body) = post(app, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(status, 204, "{body}");
    email
}

/// A browser session: its cookie and what the sign-in said about it.
struct Session {
    cookie: String,
    body: Value,
}

async fn sign_in(app: &TestApp, email: &str) -> Session {
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .json(&json!({"email": email, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-rampart_session="))
        .expect("a session cookie");
    Session { cookie, body: resp.json().await.unwrap() }
}

/// `GET /api/v1/me` with the session: the status and the stable code when refused.
async fn me(app: &TestApp, session: &Session) -> (u16, String) {
    let resp = app.client.get(app.url("/api/v1/me")).header(header::COOKIE, &session.cookie).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// The session's own record as `GET /api/v1/auth/sessions` lists it (a request in its own right).
async fn own_record(app: &TestApp, session: &Session) -> Value {
    let resp =
        app.client.get(app.url("/api/v1/auth/sessions")).header(header::COOKIE, &session.cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let list: Vec<Value> = resp.json().await.unwrap();
    list.into_iter().find(|s| s["current"] == true).expect("the current session is listed")
}

fn ok() -> (u16, String) {
    (200, String::new())
}

fn refused() -> (u16, String) {
    (401, "unauthenticated".to_owned())
}

async fn a_session_unused_for_seven_days_ends_and_one_used_a_second_before_lives_on(backend: Backend) {
    let app = app(backend).await;
    let email = verified(&app).await;
    let (used, unused) = (sign_in(&app, &email).await, sign_in(&app, &email).await);
    let t0 = now(&app);
    assert_eq!(instant(&unused.body["session"]["idle_expires_at"]), t0 + auth::service::SESSION_IDLE);
    assert_eq!(auth::service::SESSION_IDLE, Duration::days(7));

    travel_to(&app, t0 + Duration::days(7) - second());
    assert_eq!(me(&app, &used).await, ok(), "a second before its idle deadline a session works");
    travel_to(&app, t0 + Duration::days(7));
    assert_eq!(me(&app, &unused).await, refused(), "seven days without use end a session");
    assert_eq!(me(&app, &used).await, ok(), "the use a second before moved the deadline");
    // Refused once, gone: the clock going no further, it stays refused.
    assert_eq!(me(&app, &unused).await, refused());
}

async fn a_request_a_day_after_the_last_extension_moves_the_idle_deadline_and_an_earlier_one_does_not(
    backend: Backend,
) {
    let app = app(backend).await;
    let email = verified(&app).await;
    let early = sign_in(&app, &email).await;
    let (slid, slid_too) = (sign_in(&app, &email).await, sign_in(&app, &email).await);
    let t0 = now(&app);
    assert_eq!(auth::service::SESSION_REFRESH, Duration::hours(24));

    // Within the day: used, but the deadline stays (no write on every request).
    travel_to(&app, t0 + Duration::hours(24) - second());
    let record = own_record(&app, &early).await;
    assert_eq!(instant(&record["idle_expires_at"]), t0 + Duration::days(7), "{record}");
    assert_eq!(instant(&record["last_refreshed_at"]), t0, "{record}");

    // A day after: the deadline moves to seven days from this request.
    travel_to(&app, t0 + Duration::hours(24));
    let record = own_record(&app, &slid).await;
    assert_eq!(instant(&record["idle_expires_at"]), t0 + Duration::days(8), "{record}");
    assert_eq!(instant(&record["last_refreshed_at"]), t0 + Duration::hours(24), "{record}");
    assert_eq!(me(&app, &slid_too).await, ok());

    travel_to(&app, t0 + Duration::days(7));
    assert_eq!(me(&app, &early).await, refused(), "a use within the first day did not extend the session");
    travel_to(&app, t0 + Duration::days(8) - second());
    assert_eq!(me(&app, &slid).await, ok(), "the extended session works up to its new deadline");
    travel_to(&app, t0 + Duration::days(8));
    assert_eq!(me(&app, &slid_too).await, refused(), "and not at it");
}

async fn constant_activity_keeps_a_session_for_thirty_days_and_not_a_second_longer(backend: Backend) {
    let app = app(backend).await;
    let email = verified(&app).await;
    let busy = sign_in(&app, &email).await;
    let t0 = now(&app);
    let absolute = instant(&busy.body["session"]["absolute_expires_at"]);
    assert_eq!(absolute, t0 + Duration::days(30));
    assert_eq!(auth::service::SESSION_ABSOLUTE, Duration::days(30));

    // A request every day, each one moving the idle deadline.
    for day in 1..30 {
        travel_to(&app, t0 + Duration::days(day));
        let record = own_record(&app, &busy).await;
        let idle = instant(&record["idle_expires_at"]);
        assert_eq!(idle, (t0 + Duration::days(day + 7)).min(absolute), "day {day}: {record}");
    }
    travel_to(&app, t0 + Duration::days(30) - second());
    assert_eq!(me(&app, &busy).await, ok(), "a second before thirty days");
    travel_to(&app, t0 + Duration::days(30));
    assert_eq!(me(&app, &busy).await, refused(), "thirty days end a session, however busy");
}

/// `POST /api/v1/auth/token`: a fresh token pair.
async fn token_pair(app: &TestApp, email: &str) -> Value {
    let (status, pair) = post(app, "/api/v1/auth/token", json!({"email": email, "password": TEST_PASSWORD})).await;
    assert_eq!(status, 200, "{pair}");
    pair
}

async fn refresh(app: &TestApp, pair: &Value) -> (u16, Value) {
    post(app, "/api/v1/auth/token/refresh", json!({"refresh_token": pair["refresh_token"]})).await
}

async fn a_refresh_token_family_works_until_a_second_before_thirty_days_and_not_at_thirty_days_however_rotated(
    backend: Backend,
) {
    let app = app(backend).await;
    let email = verified(&app).await;
    let (kept, late) = (token_pair(&app, &email).await, token_pair(&app, &email).await);
    let t0 = now(&app);
    assert_eq!(auth::service::REFRESH_TTL, Duration::days(30));

    travel_to(&app, t0 + Duration::days(30) - second());
    let answer = refresh(&app, &kept).await;
    assert_eq!(answer.0, 200, "a second before thirty days: {}", answer.1);
    assert!(answer.1["access_token"].is_string() && answer.1["refresh_token"] != kept["refresh_token"]);
    travel_to(&app, t0 + Duration::days(30));
    assert_eq!(code(&refresh(&app, &late).await), (400, "invalid_token"), "a refresh token lives thirty days");
    // The limit runs from the family's first sign-in: the token rotated a second ago ends too.
    let rotated = refresh(&app, &answer.1).await;
    assert_eq!(code(&rotated), (400, "invalid_token"), "a rotation does not extend the family: {}", rotated.1);
}

async fn bearer_me(app: &TestApp, token: &str) -> (u16, String) {
    let resp = app.client.get(app.url("/api/v1/me")).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn an_access_token_works_for_fifteen_minutes_and_its_thirty_second_leeway_and_not_a_second_longer(
    backend: Backend,
) {
    let app = app(backend).await;
    let email = verified(&app).await;
    let pair = token_pair(&app, &email).await;
    let t0 = now(&app);
    let config = auth::jwt::JwtConfig::default();
    assert_eq!((config.access_ttl, config.leeway), (Duration::minutes(15), Duration::seconds(30)));
    assert_eq!(pair["expires_in"], 900, "{pair}");
    let token = pair["access_token"].as_str().unwrap();

    // `exp` counts whole seconds from the second the token was issued in (RFC 7519 §2,
    // NumericDate), so that second is where the lifetime starts.
    let issued = t0 - Duration::nanoseconds(i64::from(t0.timestamp_subsec_nanos()));
    let limit = issued + config.access_ttl + config.leeway;
    travel_to(&app, limit - second());
    assert_eq!(bearer_me(&app, token).await, ok(), "within the lifetime and its leeway");
    travel_to(&app, limit);
    // Refused as a token that never was one is (the bearer scheme's 401 and its stable code).
    let expired = bearer_me(&app, token).await;
    assert_eq!(expired.0, 401, "fifteen minutes and thirty seconds end an access token: {expired:?}");
    assert_eq!(expired, bearer_me(&app, "not.a.token").await);
}

async fn a_password_reset_link_works_until_a_second_before_an_hour_and_not_at_an_hour(backend: Backend) {
    let app = app(backend).await;
    let (prompt, late) = (verified(&app).await, verified(&app).await);
    for email in [&prompt, &late] {
        assert_eq!(post(&app, "/api/v1/auth/password/reset", json!({"email": email})).await.0, 202);
    }
    // The links are made when the outbox runs the requests.
    app.run_outbox().await;
    let t0 = now(&app);
    let (prompt_token, late_token) = (mailed_token(&prompt, "Reset"), mailed_token(&late, "Reset"));
    assert_eq!(auth::service::RESET_PASSWORD_TTL, Duration::hours(1));

    let confirm = |token: String| {
        post(
            &app,
            "/api/v1/auth/password/reset/confirm",
            json!({"token": token, "new_password": "granite harbour lantern 7"}),
        )
    };
    travel_to(&app, t0 + Duration::hours(1) - second());
    let answer = confirm(prompt_token).await;
    assert_eq!(answer.0, 204, "a second before the hour: {}", answer.1);
    travel_to(&app, t0 + Duration::hours(1));
    assert_eq!(code(&confirm(late_token).await), (400, "invalid_token"), "a reset link lives one hour");
    // The refused link changed nothing: the old password still signs in.
    assert_eq!(post(&app, "/api/v1/auth/token", json!({"email": late, "password": TEST_PASSWORD})).await.0, 200);
}

async fn an_email_verification_link_works_until_a_second_before_a_day_and_not_at_a_day(backend: Backend) {
    let app = app(backend).await;
    let (prompt, late) = (unique_email(), unique_email());
    let prompt_token = sign_up(&app, &prompt).await;
    let late_token = sign_up(&app, &late).await;
    let t0 = now(&app);
    assert_eq!(auth::service::VERIFY_EMAIL_TTL, Duration::hours(24));

    travel_to(&app, t0 + Duration::hours(24) - second());
    let answer = post(&app, "/api/v1/auth/verify-email", json!({"token": prompt_token})).await;
    assert_eq!(answer.0, 204, "a second before the day: {}", answer.1);
    travel_to(&app, t0 + Duration::hours(24));
    let answer = post(&app, "/api/v1/auth/verify-email", json!({"token": late_token})).await;
    assert_eq!(code(&answer), (400, "invalid_token"), "a verification link lives 24 hours");
    // The late address stays unverified: its password does not sign in.
    let (status, _) = post(&app, "/api/v1/auth/token", json!({"email": late, "password": TEST_PASSWORD})).await;
    assert_ne!(status, 200);
}

/// Sets TOTP up for `user` (confirmed with a code from the reference generator); its recovery
/// codes.
async fn enrol(app: &TestApp, user: &TestUser) -> Vec<String> {
    let (status, enrolment) = app.json(user, Method::POST, "/api/v1/me/mfa/totp", None).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap();
    let confirm = json!({"code": app.totp_code(secret)});
    let (status, confirmed) = app.json(user, Method::POST, "/api/v1/me/mfa/totp/confirm", Some(confirm)).await;
    assert_eq!(status, 200, "{confirmed}");
    confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

async fn an_mfa_challenge_works_until_a_second_before_five_minutes_and_not_at_five_minutes(backend: Backend) {
    let app = app(backend).await;
    let alice = app.new_user().await;
    let recovery = enrol(&app, &alice).await;
    let mut challenges = Vec::new();
    for _ in 0..2 {
        let (status, step) =
            post(&app, "/api/v1/auth/token", json!({"email": alice.email, "password": TEST_PASSWORD})).await;
        assert_eq!((status, &step["status"]), (202, &json!("mfa_required")), "{step}");
        assert_eq!(step["expires_in"], auth::mfa::CHALLENGE_TTL.num_seconds());
        challenges.push(step["challenge"].as_str().unwrap().to_owned());
    }
    let t0 = now(&app);
    assert_eq!(auth::mfa::CHALLENGE_TTL, Duration::minutes(5));

    // Recovery codes answer both: each is fresh, so only the challenge's age decides.
    travel_to(&app, t0 + Duration::minutes(5) - second());
    let answer =
        post(&app, "/api/v1/auth/token/mfa", json!({"challenge": challenges[0], "recovery_code": recovery[0]})).await;
    assert_eq!(answer.0, 200, "a second before five minutes: {}", answer.1);
    travel_to(&app, t0 + Duration::minutes(5));
    let answer =
        post(&app, "/api/v1/auth/token/mfa", json!({"challenge": challenges[1], "recovery_code": recovery[1]})).await;
    assert_eq!(code(&answer), (400, "invalid_token"), "a challenge lives five minutes");
}

const PROVIDER: &str = "test";
const CLIENT_ID: &str = "rampart-web";
const CLIENT_SECRET: &str = "a-client-secret-for-tests-only";
const REDIRECT: &str = "https://app.rampart.test/api/v1/auth/oidc/test/callback";

/// `POST …/start`: the authorization URL and the browser-binding cookie.
async fn start_flow(app: &TestApp) -> (String, String) {
    let resp = app.client.post(app.url(&format!("/api/v1/auth/oidc/{PROVIDER}/start"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let binding = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.strip_prefix(&format!("{}=", auth::oidc::BROWSER_COOKIE)))
        .map(str::to_owned)
        .next()
        .expect("a binding cookie");
    let started: Value = resp.json().await.unwrap();
    assert_eq!(started["expires_in"], auth::oidc::FLOW_TTL.num_seconds());
    (started["authorization_url"].as_str().unwrap().to_owned(), binding)
}

/// The browser arriving back at Rampart with the provider's answer.
async fn callback(app: &TestApp, back: &url::Url, binding: &str) -> (u16, Value) {
    let resp = app
        .client
        .get(app.url(&format!("{}?{}", back.path(), back.query().unwrap())))
        .header(header::COOKIE, format!("{}={binding}", auth::oidc::BROWSER_COOKIE))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn a_provider_sign_in_state_works_until_a_second_before_ten_minutes_and_not_at_ten_minutes(backend: Backend) {
    let provider = OidcProvider::start(&[OidcClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
    }])
    .await;
    let extras = testkit::Extras {
        oidc: vec![auth::oidc::ProviderConfig {
            name: PROVIDER.into(),
            issuer: provider.issuer().into(),
            client_id: CLIENT_ID.into(),
            client_secret: secrecy::SecretString::from(CLIENT_SECRET),
            scopes: Vec::new(),
            redirect_uri: REDIRECT.into(),
            kind: auth::oidc::ProviderKind::OpenIdConnect,
            trust_email: true,
        }],
        egress_exceptions: vec![provider.addr()],
    };
    let app = testkit::spawn_app_extended(backend, auth::SignupMode::Open, |_| {}, |_| {}, extras).await;
    provider.add_account("sub-lifetimes", &unique_email(), true).await;

    // Two flows begun at the same instant, both answered by the provider at once.
    let mut flows = Vec::new();
    for _ in 0..2 {
        let (url, binding) = start_flow(&app).await;
        flows.push((provider.authorize(&url, "sub-lifetimes").await, binding));
    }
    let t0 = now(&app);
    assert_eq!(auth::oidc::FLOW_TTL, Duration::minutes(10));

    travel_to(&app, t0 + Duration::minutes(10) - second());
    let answer = callback(&app, &flows[0].0, &flows[0].1).await;
    assert_eq!(answer.0, 303, "a second before ten minutes: {}", answer.1);
    travel_to(&app, t0 + Duration::minutes(10));
    let answer = callback(&app, &flows[1].0, &flows[1].1).await;
    assert_eq!(code(&answer), (400, "invalid_oidc_state"), "a sign-in state lives ten minutes");
}

backend_tests!(
    a_session_unused_for_seven_days_ends_and_one_used_a_second_before_lives_on,
    a_request_a_day_after_the_last_extension_moves_the_idle_deadline_and_an_earlier_one_does_not,
    constant_activity_keeps_a_session_for_thirty_days_and_not_a_second_longer,
    a_refresh_token_family_works_until_a_second_before_thirty_days_and_not_at_thirty_days_however_rotated,
    an_access_token_works_for_fifteen_minutes_and_its_thirty_second_leeway_and_not_a_second_longer,
    a_password_reset_link_works_until_a_second_before_an_hour_and_not_at_an_hour,
    an_email_verification_link_works_until_a_second_before_a_day_and_not_at_a_day,
    an_mfa_challenge_works_until_a_second_before_five_minutes_and_not_at_five_minutes,
    a_provider_sign_in_state_works_until_a_second_before_ten_minutes_and_not_at_ten_minutes,
);
