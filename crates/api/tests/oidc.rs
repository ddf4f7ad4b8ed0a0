//! Sign-in through OpenID Connect against a real provider (the certified `oidc-provider` npm
//! package, run locally by `testkit::oidc`), on SQLite and on PostgreSQL: the browser flow and
//! its refusals (tampered, replayed or foreign state, wrong nonce, a token signed by another
//! key, an unverified address), the account rules (new accounts, the takeover of an unverified
//! password account, no silent linking to a verified one), a restart in the middle of a flow,
//! native clients bound by their own PKCE challenge, linking and unlinking after a recent
//! authentication, and provider tokens kept sealed.

use base64::Engine as _;
use chrono::Duration;
use reqwest::{header, Method};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::oidc::{OidcClient, OidcProvider};
use testkit::{backend_tests, Backend, TestApp, TEST_PASSWORD};

const PROVIDER: &str = "test";
const CLIENT_ID: &str = "rampart-web";
const CLIENT_SECRET: &str = "a-client-secret-for-tests-only";
/// The public URL Rampart's callbacks are registered under; the test carries the provider's
/// answer to the server.
const APP: &str = "https://app.rampart.test";
/// Rampart's callback for the provider named `test`, as registered there.
const REDIRECT: &str = "https://app.rampart.test/api/v1/auth/oidc/test/callback";

/// The same provider seen two more ways: through plain OAuth 2.0 and its user-info endpoint
/// (GitHub-style), and as a provider whose word on addresses is not trusted.
fn more_providers(issuer: &str) -> Vec<auth::oidc::ProviderConfig> {
    let base = |name: &str| auth::oidc::ProviderConfig {
        name: name.into(),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secrecy::SecretString::from(CLIENT_SECRET),
        scopes: Vec::new(),
        redirect_uri: format!("{APP}/api/v1/auth/oidc/{name}/callback"),
        kind: auth::oidc::ProviderKind::OpenIdConnect,
        trust_email: true,
    };
    let plain = auth::oidc::ProviderConfig {
        // oidc-provider answers user info only within the `openid` scope.
        scopes: vec!["openid".into(), "email".into()],
        kind: auth::oidc::ProviderKind::OAuth2(auth::oidc::OAuth2Endpoints {
            authorization_url: format!("{issuer}/auth"),
            token_url: format!("{issuer}/token"),
            userinfo_url: format!("{issuer}/me"),
            emails_url: None,
            subject_field: "sub".into(),
        }),
        ..base("plain")
    };
    vec![plain, auth::oidc::ProviderConfig { trust_email: false, ..base("untrusted") }]
}

struct Setup {
    app: TestApp,
    provider: OidcProvider,
    extras: testkit::Extras,
}

async fn setup(backend: Backend) -> Setup {
    let provider = OidcProvider::start(&[OidcClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: ["test", "plain", "untrusted"]
            .iter()
            .map(|name| format!("{APP}/api/v1/auth/oidc/{name}/callback"))
            .collect(),
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
        }]
        .into_iter()
        .chain(more_providers(provider.issuer()))
        .collect(),
        egress_exceptions: vec![provider.addr()],
    };
    let app = testkit::spawn_app_extended(
        backend,
        auth::SignupMode::Open,
        |http| http.rate_limit_per_client_per_sec = 100_000,
        |state| state.auth_attempts_per_minute = 10_000,
        extras.clone(),
    )
    .await;
    Setup { app, provider, extras }
}

fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (n, value) = pair.split_once('=')?;
        (n == name && !value.is_empty()).then(|| value.to_owned())
    })
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get(header::LOCATION).expect("a Location").to_str().unwrap().to_owned()
}

async fn body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST …/start`: the authorization URL and the browser-binding cookie.
async fn start(app: &TestApp) -> (String, String) {
    start_at(app, PROVIDER).await
}

async fn start_at(app: &TestApp, provider: &str) -> (String, String) {
    let resp = app.client.post(app.url(&format!("/api/v1/auth/oidc/{provider}/start"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).expect("a binding cookie");
    let (_, started) = body(resp).await;
    assert_eq!(started["expires_in"], 600);
    (started["authorization_url"].as_str().unwrap().to_owned(), binding)
}

/// The browser arriving back at Rampart with the provider's answer (`redirect`'s query).
async fn callback(app: &TestApp, redirect: &url::Url, binding: Option<&str>) -> reqwest::Response {
    assert!(redirect.as_str().starts_with(APP), "the provider sent the browser to {redirect}");
    let mut req = app.client.get(app.url(&format!("{}?{}", redirect.path(), redirect.query().unwrap())));
    if let Some(binding) = binding {
        req = req.header(header::COOKIE, format!("{}={binding}", auth::oidc::BROWSER_COOKIE));
    }
    req.send().await.unwrap()
}

/// A whole browser sign-in as `sub`: the callback's answer.
async fn sign_in(s: &Setup, sub: &str) -> reqwest::Response {
    sign_in_at(s, PROVIDER, sub).await
}

async fn sign_in_at(s: &Setup, provider: &str, sub: &str) -> reqwest::Response {
    let (url, binding) = start_at(&s.app, provider).await;
    let back = s.provider.authorize(&url, sub).await;
    callback(&s.app, &back, Some(&binding)).await
}

/// The user behind a session cookie.
async fn me(app: &TestApp, session: &str) -> (u16, Value) {
    body(
        app.client
            .get(app.url("/api/v1/me"))
            .header(header::COOKIE, format!("__Host-rampart_session={session}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// One text column of one row, read as the owner role.
async fn owner_text(app: &TestApp, sql: &str) -> Option<String> {
    use testkit::storage::ConnectionTrait as _;
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let backend = owner.conn().get_database_backend();
    let row = owner.conn().query_one(testkit::storage::Statement::from_string(backend, sql.to_owned())).await.unwrap();
    row.map(|r| r.try_get_by_index::<String>(0).unwrap())
}

async fn users_with(app: &TestApp, email: &str) -> usize {
    owner_text(app, &format!("SELECT email FROM users WHERE email = '{email}'")).await.into_iter().count()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs).append_pair(name, value);
    url.to_string()
}

async fn a_first_sign_in_creates_a_passwordless_verified_account_and_the_next_finds_it(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-ada", &email, true).await;
    // By default only the profile is asked for (read-only), with PKCE S256 and a nonce.
    let (url, _) = start(&s.app).await;
    let url = url::Url::parse(&url).unwrap();
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("scope").as_deref(), Some("openid email profile"));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("nonce").is_some_and(|n| n.len() >= 16) && param("state").is_some_and(|s| s.len() >= 16));
    let first = sign_in(&s, "sub-ada").await;
    assert_eq!(first.status(), 303);
    assert_eq!(location(&first), "https://app.example.com/");
    let session = cookie(&first, "__Host-rampart_session").expect("a session cookie");
    let (status, user) = me(&s.app, &session).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!((user["email"].as_str(), user["email_verified"].as_bool()), (Some(email.as_str()), Some(true)));

    let again = sign_in(&s, "sub-ada").await;
    assert_eq!(again.status(), 303);
    let (_, same) = me(&s.app, &cookie(&again, "__Host-rampart_session").unwrap()).await;
    assert_eq!(same["id"], user["id"], "the identity signs in the account it created");
    assert_ne!(cookie(&again, "__Host-rampart_session"), Some(session), "a new session every sign-in");

    // An account made by a provider has no password: the password form never signs it in.
    for password in ["", TEST_PASSWORD, "anything at all 123"] {
        let resp = s
            .app
            .client
            .post(s.app.url("/api/v1/auth/signin"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let (status, refused) = body(resp).await;
        assert_eq!((status, refused["code"].as_str()), (401, Some("invalid_credentials")), "{refused}");
    }
}

async fn two_first_sign_ins_of_one_identity_at_once_both_succeed_into_one_account(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-twin", &email, true).await;
    // Two browsers finish at the provider, then both arrive back at the same moment: each finds
    // no account yet and creates one; the second to commit must settle into the first's.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (url, binding) = start(&s.app).await;
        answers.push((s.provider.authorize(&url, "sub-twin").await, binding));
    }
    let (first, second) = tokio::join!(
        callback(&s.app, &answers[0].0, Some(&answers[0].1)),
        callback(&s.app, &answers[1].0, Some(&answers[1].1)),
    );
    let mut ids = Vec::new();
    for resp in [first, second] {
        assert_eq!(resp.status(), 303, "each sign-in completes");
        let (status, user) = me(&s.app, &cookie(&resp, "__Host-rampart_session").expect("a session cookie")).await;
        assert_eq!((status, user["email"].as_str()), (200, Some(email.as_str())), "{user}");
        ids.push(user["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "both sessions belong to one account");
    let accounts =
        owner_text(&s.app, &format!("SELECT CAST(COUNT(*) AS TEXT) FROM users WHERE email = '{email}'")).await;
    let identities =
        owner_text(&s.app, &format!("SELECT CAST(COUNT(*) AS TEXT) FROM user_identities WHERE email = '{email}'"))
            .await;
    assert_eq!((accounts.as_deref(), identities.as_deref()), (Some("1"), Some("1")), "one account, linked once");
}

async fn a_tampered_a_replayed_or_another_browsers_state_is_refused(backend: Backend) {
    let s = setup(backend).await;
    s.provider.add_account("sub-bo", &testkit::unique_email(), true).await;

    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-bo").await;
    let state = back.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let tampered = url::Url::parse(&with_param(back.as_str(), "state", &format!("{state}x"))).unwrap();
    let (status, refused) = body(callback(&s.app, &tampered, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_oidc_state")), "{refused}");

    // Another browser (no binding cookie, or another flow's) cannot complete this flow; the
    // attempt spends the state, so the rightful browser must start again.
    let (url, _) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-bo").await;
    let (status, refused) = body(callback(&s.app, &back, None).await).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_oidc_state")), "{refused}");
    let (url, _) = start(&s.app).await;
    let (_, other_binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-bo").await;
    let (status, refused) = body(callback(&s.app, &back, Some(&other_binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_oidc_state")), "{refused}");

    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-bo").await;
    assert_eq!(callback(&s.app, &back, Some(&binding)).await.status(), 303);
    let (status, replayed) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, replayed["code"].as_str()), (400, Some("invalid_oidc_state")), "a state works once");

    // Ten minutes later a state has expired.
    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-bo").await;
    s.app.clock.advance(Duration::minutes(10));
    let (status, expired) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, expired["code"].as_str()), (400, Some("invalid_oidc_state")), "{expired}");
}

async fn an_id_token_with_another_nonce_or_signed_by_another_key_is_refused(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-cy", &email, true).await;

    // The provider signs with its key while its JWKS shows only another one. Rampart fetches
    // the keys again once for a key it does not hold, and still finds none that verifies.
    s.provider.advertise_foreign_keys(true).await;
    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-cy").await;
    let (status, refused) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("invalid_id_token")), "{refused}");
    assert_eq!(users_with(&s.app, &email).await, 0, "no account was created");

    // The real keys again (as after a rotation): the token names a key the cached set lacks,
    // so the keys are fetched again — at most once a minute, so forged tokens cannot make the
    // server hammer the provider — and the sign-in works.
    s.provider.advertise_foreign_keys(false).await;
    assert_eq!(sign_in(&s, "sub-cy").await.status(), 401, "within the minute the cached keys stand");
    s.app.clock.advance(Duration::seconds(61));
    assert_eq!(sign_in(&s, "sub-cy").await.status(), 303);

    // The provider echoes whatever nonce the authorization request carried.
    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&with_param(&url, "nonce", "not-the-flows-nonce"), "sub-cy").await;
    let (status, refused) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("invalid_id_token")), "{refused}");
}

async fn an_address_the_provider_has_not_verified_is_not_taken(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-dee", &email, false).await;
    let (status, refused) = body(sign_in(&s, "sub-dee").await).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("provider_email_unverified")), "{refused}");
    assert_eq!(users_with(&s.app, &email).await, 0, "no account was created");
}

async fn signing_in_to_an_unverified_password_account_clears_the_squatters_password(backend: Backend) {
    let s = setup(backend).await;
    let meta = auth::RequestMeta::default();
    // Someone signed up with the address but never confirmed it (a squatter cannot).
    let email = testkit::unique_email();
    s.app.state.auth.sign_up(&email, TEST_PASSWORD, &meta).await.unwrap();
    s.provider.add_account("sub-eve-owner", &email, true).await;
    let signed_in = sign_in(&s, "sub-eve-owner").await;
    assert_eq!(signed_in.status(), 303);
    let (_, user) = me(&s.app, &cookie(&signed_in, "__Host-rampart_session").unwrap()).await;
    assert_eq!((user["email"].as_str(), user["email_verified"].as_bool()), (Some(email.as_str()), Some(true)));
    let refused = s.app.state.auth.password_grant(&email, TEST_PASSWORD, &meta).await;
    assert!(
        matches!(refused, Err(auth::AuthError::InvalidCredentials)),
        "the squatter's password stopped working: {refused:?}"
    );

    // A verified account is never linked without its owner: they sign in and link it.
    let owner = s.app.new_user().await;
    s.provider.add_account("sub-owner-elsewhere", &owner.email, true).await;
    let (status, refused) = body(sign_in(&s, "sub-owner-elsewhere").await).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("account_exists")), "{refused}");
    s.app
        .state
        .auth
        .password_grant(&owner.email, TEST_PASSWORD, &meta)
        .await
        .expect("the owner's password still works");
}

async fn a_flow_begun_before_a_restart_completes_on_the_new_server(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-fay", &email, true).await;
    let (url, binding) = start(&s.app).await;
    let back = s.provider.authorize(&url, "sub-fay").await;
    // A new process over the same database and keys: nothing of the flow is in memory.
    let restarted = testkit::app_state_extended(
        &s.app.db,
        s.app.clock.clone(),
        auth::SignupMode::Open,
        testkit::same_keys(&s.app.state),
        s.extras.clone(),
    )
    .await;
    let param = |name: &str| back.query_pairs().find(|(k, _)| k == name).unwrap().1.into_owned();
    let done = restarted
        .auth
        .oidc_callback(
            PROVIDER,
            &param("code"),
            &param("state"),
            Some(&param("iss")),
            Some(&binding),
            &auth::RequestMeta::default(),
        )
        .await
        .expect("the new server completes the flow");
    let auth::oidc::Completed::SignedIn(auth::mfa::SignIn::Done(session)) = done else {
        panic!("a signed-in session: {done:?}");
    };
    let user = restarted.auth.me(session.record.user_id).await.unwrap();
    assert_eq!(user.email, email);
}

fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

const NATIVE_REDIRECT: &str = "http://127.0.0.1:53123/callback";

async fn native_begin(app: &TestApp, redirect: &str, challenge: &str) -> (u16, Value) {
    let body_json = json!({"redirect_uri": redirect, "code_challenge": challenge,
                           "code_challenge_method": "S256", "state": "client-state-1"});
    body(app.client.post(app.url("/api/v1/auth/oidc/test/native/start")).json(&body_json).send().await.unwrap()).await
}

async fn native_exchange(app: &TestApp, code: &str, verifier: &str) -> (u16, Value) {
    let body_json = json!({"code": code, "code_verifier": verifier, "redirect_uri": NATIVE_REDIRECT});
    body(app.client.post(app.url("/api/v1/auth/oidc/native/token")).json(&body_json).send().await.unwrap()).await
}

/// A native flow up to the code the client receives at its loopback redirect.
async fn native_code(s: &Setup, sub: &str, challenge: &str) -> String {
    let (status, started) = native_begin(&s.app, NATIVE_REDIRECT, challenge).await;
    assert_eq!(status, 200, "{started}");
    let back = s.provider.authorize(started["authorization_url"].as_str().unwrap(), sub).await;
    // The system browser carries no binding cookie: the client's PKCE challenge binds the flow.
    let resp = callback(&s.app, &back, None).await;
    assert_eq!(resp.status(), 303);
    let to = url::Url::parse(&location(&resp)).unwrap();
    assert!(to.as_str().starts_with(NATIVE_REDIRECT), "{to}");
    let param = |name: &str| to.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("state").as_deref(), Some("client-state-1"));
    param("code").expect("a code")
}

async fn a_native_client_finishes_at_its_loopback_redirect_and_only_its_verifier_redeems_the_code(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-gil", &email, true).await;
    for bad in ["https://evil.example/cb", "http://localhost:53123/callback", "http://10.0.0.1:53123/cb"] {
        let (status, refused) = native_begin(&s.app, bad, &pkce().1).await;
        assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_native_request")), "{bad}: {refused}");
    }

    let (verifier, challenge) = pkce();
    let code = native_code(&s, "sub-gil", &challenge).await;
    let (status, refused) = native_exchange(&s.app, &code, &pkce().0).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_token")), "another client's verifier");
    let (status, _) = native_exchange(&s.app, &code, &verifier).await;
    assert_eq!(status, 400, "the code was spent by the failed attempt");

    let (verifier, challenge) = pkce();
    let code = native_code(&s, "sub-gil", &challenge).await;
    let (status, tokens) = native_exchange(&s.app, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let resp = s
        .app
        .client
        .get(s.app.url("/api/v1/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (_, user) = body(resp).await;
    assert_eq!(user["email"].as_str(), Some(email.as_str()));
    let (status, _) = native_exchange(&s.app, &code, &verifier).await;
    assert_eq!(status, 400, "a code works once");
}

async fn linking_and_unlinking_need_a_recent_authentication_and_keep_a_way_to_sign_in(backend: Backend) {
    let s = setup(backend).await;
    let alice = s.app.new_user().await;
    s.provider.add_account("sub-alice-elsewhere", &testkit::unique_email(), true).await;
    let resp = s.app.call(&alice, Method::POST, "/api/v1/me/identities/test/link").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
    let (_, started) = body(resp).await;
    let url = started["authorization_url"].as_str().unwrap();
    assert!(url.contains("prompt=login") && url.contains("max_age=0"), "the provider must authenticate afresh: {url}");
    let back = s.provider.authorize(url, "sub-alice-elsewhere").await;
    let resp = callback(&s.app, &back, Some(&binding)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "https://app.example.com/settings/identities#linked=test");
    let (_, identities) = s.app.json(&alice, Method::GET, "/api/v1/me/identities", None).await;
    assert_eq!(identities.as_array().unwrap().len(), 1, "{identities}");
    let identity = identities[0]["id"].as_str().unwrap().to_owned();

    // The linked identity now signs in to alice's account.
    let (_, user) =
        me(&s.app, &cookie(&sign_in(&s, "sub-alice-elsewhere").await, "__Host-rampart_session").unwrap()).await;
    assert_eq!(user["id"].as_str(), Some(alice.id.to_string().as_str()));

    // The provider's access token is kept sealed, and opens to one the provider honours.
    let identity_id = identity.parse().unwrap();
    let token =
        s.app.state.auth.provider_access_token(ids::UserId(alice.id), identity_id).await.unwrap().expect("a token");
    assert!(
        s.app.state.auth.provider_access_token(ids::UserId::new_random(), identity_id).await.unwrap().is_none(),
        "only its owner's"
    );
    let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
    let stored =
        owner_text(&s.app, "SELECT access_token_ciphertext FROM user_identities WHERE subject = 'sub-alice-elsewhere'")
            .await
            .expect("a stored token");
    assert!(!stored.contains(&token), "stored sealed, never in clear");
    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", s.provider.issuer()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info: Value = reqwest::Client::new()
        .get(discovery["userinfo_endpoint"].as_str().unwrap())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "sub-alice-elsewhere");

    // Six minutes on, unlinking needs a fresh authentication.
    s.app.clock.advance(Duration::minutes(6));
    let alice = s.app.renew(&alice).await;
    s.app.clock.advance(Duration::minutes(6));
    let resp = s.app.call(&alice, Method::DELETE, &format!("/api/v1/me/identities/{identity}")).send().await.unwrap();
    assert!(resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("max_age=300"));
    let (status, refused) = body(resp).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("insufficient_user_authentication")), "{refused}");
    let (status, fresh) =
        s.app.json(&alice, Method::POST, "/api/v1/me/reauthenticate", Some(json!({"password": TEST_PASSWORD}))).await;
    assert_eq!(status, 200, "{fresh}");
    let alice = testkit::TestUser { token: fresh["access_token"].as_str().unwrap().to_owned(), ..alice };
    let (status, _) = s.app.json(&alice, Method::DELETE, &format!("/api/v1/me/identities/{identity}"), None).await;
    assert_eq!(status, 204);

    // An account made by a provider cannot drop its only way in.
    s.provider.add_account("sub-only", &testkit::unique_email(), true).await;
    let session = cookie(&sign_in(&s, "sub-only").await, "__Host-rampart_session").unwrap();
    let csrf_resp = s
        .app
        .client
        .get(s.app.url("/api/v1/me/identities"))
        .header(header::COOKIE, format!("__Host-rampart_session={session}"))
        .send()
        .await
        .unwrap();
    let (_, list) = body(csrf_resp).await;
    let only = list[0]["id"].as_str().unwrap().to_owned();
    let user = s.app.state.auth.authenticate_session(&session).await.unwrap();
    let refused =
        s.app.state.auth.unlink_identity(user.user_id, only.parse().unwrap(), &auth::RequestMeta::default()).await;
    assert!(matches!(refused, Err(auth::AuthError::Oidc(auth::oidc::OidcError::LastSignInMethod))), "{refused:?}");
}

/// A browser session from a provider sign-in: its session and CSRF cookies.
struct Browser {
    session: String,
    csrf: String,
}

impl Browser {
    fn from(resp: &reqwest::Response) -> Browser {
        Browser {
            session: cookie(resp, "__Host-rampart_session").expect("a session cookie"),
            csrf: cookie(resp, "__Host-rampart_csrf").expect("a CSRF cookie"),
        }
    }

    /// A state-changing request with the session cookie and its CSRF token.
    async fn post(&self, app: &TestApp, path: &str, body: Value) -> reqwest::Response {
        app.client
            .post(app.url(path))
            .header(header::COOKIE, format!("__Host-rampart_session={}", self.session))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

async fn an_account_with_a_second_factor_completes_a_provider_sign_in_with_it(backend: Backend) {
    let s = setup(backend).await;
    s.provider.add_account("sub-hal", &testkit::unique_email(), true).await;
    let browser = Browser::from(&sign_in(&s, "sub-hal").await);
    let (status, enrolment) = body(browser.post(&s.app, "/api/v1/me/mfa/totp", json!({})).await).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let confirm = json!({"code": s.app.totp_code(&secret)});
    assert_eq!(browser.post(&s.app, "/api/v1/me/mfa/totp/confirm", confirm).await.status(), 200);

    // The provider's word is the first factor only.
    let resp = sign_in(&s, "sub-hal").await;
    assert_eq!(resp.status(), 303);
    assert!(cookie(&resp, "__Host-rampart_session").is_none(), "no session before the second factor");
    let to = location(&resp);
    let challenge = to.strip_prefix("https://app.example.com/auth/mfa#challenge=").expect("the MFA page").to_owned();
    s.app.clock.advance(Duration::seconds(30));
    let resp = s
        .app
        .client
        .post(s.app.url("/api/v1/auth/signin/mfa"))
        .json(&json!({"challenge": challenge, "code": s.app.totp_code(&secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let session = cookie(&resp, "__Host-rampart_session").unwrap();
    let record = s.app.state.auth.authenticate_session(&session).await.unwrap().session;
    assert_eq!(record.amr, ["fed", "otp"], "the session says both factors");
}

async fn an_account_without_a_password_re_authenticates_through_its_provider(backend: Backend) {
    let s = setup(backend).await;
    s.provider.add_account("sub-ivy", &testkit::unique_email(), true).await;
    s.provider.add_account("sub-not-ivy", &testkit::unique_email(), true).await;
    let browser = Browser::from(&sign_in(&s, "sub-ivy").await);
    // The session was authenticated ten minutes ago.
    let hash = s.app.state.auth.authenticate_session(&browser.session).await.unwrap().token_hash;
    let mut record = s.app.state.auth.kv().get_session(&hash).await.unwrap().unwrap();
    record.authenticated_at = Some(testkit::storage::Clock::now(s.app.clock.as_ref()) - Duration::minutes(10));
    s.app
        .state
        .auth
        .kv()
        .put_session(&hash, &record, testkit::storage::Clock::now(s.app.clock.as_ref()))
        .await
        .unwrap();

    let (status, refused) = body(browser.post(&s.app, "/api/v1/me/identities/test/link", json!({})).await).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("insufficient_user_authentication")), "{refused}");
    let (status, refused) = body(browser.post(&s.app, "/api/v1/me/reauthenticate", json!({})).await).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("reauthenticate_with_provider")), "{refused}");

    let reauth = |sub: &'static str| {
        let (s, browser) = (&s, &browser);
        async move {
            let resp = browser.post(&s.app, "/api/v1/me/reauthenticate/oidc/test", json!({})).await;
            assert_eq!(resp.status(), 200);
            let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
            let (_, started) = body(resp).await;
            let url = started["authorization_url"].as_str().unwrap().to_owned();
            assert!(url.contains("prompt=login") && url.contains("max_age=0"), "{url}");
            let back = s.provider.authorize(&url, sub).await;
            callback(&s.app, &back, Some(&binding)).await
        }
    };
    // Another identity at the provider is not this account's.
    let (status, refused) = body(reauth("sub-not-ivy").await).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("identity_mismatch")), "{refused}");
    let resp = reauth("sub-ivy").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "https://app.example.com/#reauthenticated");
    let resp = browser.post(&s.app, "/api/v1/me/identities/test/link", json!({})).await;
    assert_eq!(resp.status(), 200, "the session is recent again");

    // Linking an identity that already belongs to another account is refused.
    let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
    let (_, started) = body(resp).await;
    let back = s.provider.authorize(started["authorization_url"].as_str().unwrap(), "sub-not-ivy").await;
    assert_eq!(callback(&s.app, &back, Some(&binding)).await.status(), 303, "sub-not-ivy is free: linked");
    s.provider.add_account("sub-jo", &testkit::unique_email(), true).await;
    assert_eq!(sign_in(&s, "sub-jo").await.status(), 303, "sub-jo has an account of its own");
    let resp = browser.post(&s.app, "/api/v1/me/identities/test/link", json!({})).await;
    let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
    let (_, started) = body(resp).await;
    let back = s.provider.authorize(started["authorization_url"].as_str().unwrap(), "sub-jo").await;
    let (status, refused) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("identity_in_use")), "{refused}");
}

async fn a_plain_oauth2_provider_names_the_user_through_its_user_info_endpoint(backend: Backend) {
    let s = setup(backend).await;
    let email = testkit::unique_email();
    s.provider.add_account("sub-kit", &email, true).await;
    let first = sign_in_at(&s, "plain", "sub-kit").await;
    assert_eq!(first.status(), 303);
    let (_, user) = me(&s.app, &cookie(&first, "__Host-rampart_session").unwrap()).await;
    assert_eq!((user["email"].as_str(), user["email_verified"].as_bool()), (Some(email.as_str()), Some(true)));
    let again = sign_in_at(&s, "plain", "sub-kit").await;
    let (_, same) = me(&s.app, &cookie(&again, "__Host-rampart_session").unwrap()).await;
    assert_eq!(same["id"], user["id"]);
    // No ID token says when the user authenticated: the sign-in never counts as recent.
    let session = s.app.state.auth.authenticate_session(&cookie(&again, "__Host-rampart_session").unwrap()).await;
    assert_eq!(session.unwrap().session.authenticated_at, None);

    let unverified = testkit::unique_email();
    s.provider.add_account("sub-kit-unverified", &unverified, false).await;
    let (status, refused) = body(sign_in_at(&s, "plain", "sub-kit-unverified").await).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("provider_email_unverified")), "{refused}");
}

async fn a_provider_whose_addresses_are_not_trusted_signs_in_only_to_accounts_that_linked_it(backend: Backend) {
    let s = setup(backend).await;
    let alice = s.app.new_user().await;
    // The untrusted provider vouches for alice's address: that takes nothing of hers.
    s.provider.add_account("sub-mallory", &alice.email, true).await;
    let (status, refused) = body(sign_in_at(&s, "untrusted", "sub-mallory").await).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("provider_email_untrusted")), "{refused}");

    s.provider.add_account("sub-alice-untrusted", &testkit::unique_email(), true).await;
    let resp = s.app.call(&alice, Method::POST, "/api/v1/me/identities/untrusted/link").send().await.unwrap();
    let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
    let (_, started) = body(resp).await;
    let back = s.provider.authorize(started["authorization_url"].as_str().unwrap(), "sub-alice-untrusted").await;
    assert_eq!(callback(&s.app, &back, Some(&binding)).await.status(), 303);
    let signed_in = sign_in_at(&s, "untrusted", "sub-alice-untrusted").await;
    let (_, user) = me(&s.app, &cookie(&signed_in, "__Host-rampart_session").unwrap()).await;
    assert_eq!(user["id"].as_str(), Some(alice.id.to_string().as_str()), "a linked identity signs in");
    // Linking and unlinking were mailed to alice.
    s.app.run_outbox().await;
    let subjects: Vec<String> = testkit::mails_to(&alice.email).into_iter().map(|m| m.subject).collect();
    assert!(subjects.iter().any(|s| s == "A sign-in method was added to your account"), "{subjects:?}");
}

async fn a_link_cannot_outlive_its_session_nor_an_answer_name_another_issuer(backend: Backend) {
    let s = setup(backend).await;
    let alice = s.app.new_user().await;
    s.provider.add_account("sub-nan", &testkit::unique_email(), true).await;
    let link = |alice: testkit::TestUser| {
        let s = &s;
        async move {
            let resp = s.app.call(&alice, Method::POST, "/api/v1/me/identities/test/link").send().await.unwrap();
            let binding = cookie(&resp, auth::oidc::BROWSER_COOKIE).unwrap();
            let (_, started) = body(resp).await;
            (s.provider.authorize(started["authorization_url"].as_str().unwrap(), "sub-nan").await, binding)
        }
    };
    // Alice signs out of the token family the link began from: the link no longer completes.
    let (back, binding) = link(alice.clone()).await;
    let (status, _) = s.app.json(&alice, Method::POST, "/api/v1/auth/token/revoke", None).await;
    assert_eq!(status, 204);
    let (status, refused) = body(callback(&s.app, &back, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("unauthenticated")), "{refused}");
    let (_, identities) = s.app.json(&s.app.renew(&alice).await, Method::GET, "/api/v1/me/identities", None).await;
    assert_eq!(identities, json!([]), "nothing was linked");

    // RFC 9207: an answer naming another issuer is refused.
    let alice = s.app.renew(&alice).await;
    let (back, binding) = link(alice.clone()).await;
    let forged = url::Url::parse(&with_param(back.as_str(), "iss", "https://evil.example")).unwrap();
    let (status, refused) = body(callback(&s.app, &forged, Some(&binding)).await).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("oidc_issuer_mismatch")), "{refused}");

    // An account with a password re-authenticates with it, never through a provider alone.
    let alice = s.app.renew(&alice).await;
    let (status, refused) = s.app.json(&alice, Method::POST, "/api/v1/me/reauthenticate/oidc/test", None).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("reauthenticate_locally")), "{refused}");

    // A native client must be one the server knows (here `http://127.0.0.1/callback`).
    let (status, refused) = native_begin(&s.app, "http://127.0.0.1:53123/elsewhere", &pkce().1).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_native_request")), "{refused}");
}

async fn the_purge_job_removes_sign_in_flows_once_expired_and_finished_ones_are_gone_already(backend: Backend) {
    let s = setup(backend).await;
    s.provider.add_account("sub-purge", &testkit::unique_email(), true).await;
    let flows = "SELECT CAST(COUNT(*) AS TEXT) FROM oidc_flows";
    let (abandoned, _) = start(&s.app).await;
    let (url, binding) = start(&s.app).await;
    assert_eq!(owner_text(&s.app, flows).await.as_deref(), Some("2"));
    let back = s.provider.authorize(&url, "sub-purge").await;
    assert_eq!(callback(&s.app, &back, Some(&binding)).await.status(), 303);
    assert_eq!(owner_text(&s.app, flows).await.as_deref(), Some("1"), "a finished flow is deleted as it completes");
    s.app.state.auth.purge_expired().await.unwrap();
    assert_eq!(owner_text(&s.app, flows).await.as_deref(), Some("1"), "a live flow stays: {abandoned}");
    s.app.clock.advance(Duration::minutes(10));
    s.app.state.auth.purge_expired().await.unwrap();
    assert_eq!(owner_text(&s.app, flows).await.as_deref(), Some("0"), "an abandoned flow goes once expired");
}

backend_tests!(
    the_purge_job_removes_sign_in_flows_once_expired_and_finished_ones_are_gone_already,
    a_plain_oauth2_provider_names_the_user_through_its_user_info_endpoint,
    a_provider_whose_addresses_are_not_trusted_signs_in_only_to_accounts_that_linked_it,
    a_link_cannot_outlive_its_session_nor_an_answer_name_another_issuer,
    an_account_with_a_second_factor_completes_a_provider_sign_in_with_it,
    an_account_without_a_password_re_authenticates_through_its_provider,
    a_first_sign_in_creates_a_passwordless_verified_account_and_the_next_finds_it,
    two_first_sign_ins_of_one_identity_at_once_both_succeed_into_one_account,
    a_tampered_a_replayed_or_another_browsers_state_is_refused,
    an_id_token_with_another_nonce_or_signed_by_another_key_is_refused,
    an_address_the_provider_has_not_verified_is_not_taken,
    signing_in_to_an_unverified_password_account_clears_the_squatters_password,
    a_flow_begun_before_a_restart_completes_on_the_new_server,
    a_native_client_finishes_at_its_loopback_redirect_and_only_its_verifier_redeems_the_code,
    linking_and_unlinking_need_a_recent_authentication_and_keep_a_way_to_sign_in,
);
