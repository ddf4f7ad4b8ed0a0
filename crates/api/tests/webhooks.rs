//! Inbound webhooks through HTTP, on SQLite and on PostgreSQL as the runtime role: freshly signed
//! deliveries are accepted once; tampered, stale, future, unsigned, malformed and wrongly signed
//! ones are refused with 401 before anything runs; a source without secrets answers 500 and
//! processes nothing; eight concurrent copies of one event are processed once; many deliveries at
//! once, recorded in shared transactions, each enter the inbox and the audit chain once.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser};

async fn call(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.call(user, method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    testkit::storage::Clock::now(app.clock.as_ref())
}

/// A workspace of `owner` with one source of `kind`; its delivery path.
async fn source(app: &TestApp, owner: &TestUser, body: Value) -> (String, String) {
    let (status, ws) = call(app, owner, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Hooks"}))).await;
    assert_eq!(status, 201, "{ws}");
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (status, made) =
        call(app, owner, Method::POST, &format!("/api/v1/workspaces/{ws}/webhook-sources"), Some(body)).await;
    assert_eq!(status, 201, "{made}");
    assert!(made.get("secrets").is_some_and(|n| n.is_u64()), "only a count of secrets: {made}");
    (ws, made["delivery_path"].as_str().unwrap().to_owned())
}

async fn deliver(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    content_type: &str,
) -> (u16, Value) {
    let mut req = app.client.post(app.url(path)).header("content-type", content_type).body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn received_events(app: &TestApp, owner: &TestUser, ws: &str) -> Vec<Value> {
    let (status, page) =
        call(app, owner, Method::GET, &format!("/api/v1/workspaces/{ws}/audit-events?category=webhook"), None).await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().iter().filter(|e| e["action"] == "webhook.received").cloned().collect()
}

const METRICS_TOKEN: &str = "scrape-token-for-webhook-tests-0123456789";

async fn stripe_deliveries_are_accepted_once_and_every_bad_signature_is_a_401(backend: Backend) {
    let app = testkit::spawn_app_with(backend, |http| http.metrics_token = Some(METRICS_TOKEN.to_owned().into())).await;
    let owner = app.new_user().await;
    let secret = "whsec_rampart_test_secret";
    let (ws, path) = source(&app, &owner, json!({"kind": "stripe", "name": "Stripe", "secrets": [secret]})).await;
    let key = webhooks::stripe::SigningSecret::parse(secret).unwrap();
    let body = br#"{"id":"evt_1","type":"invoice.paid","object":"event"}"#;
    let sig = |at: chrono::DateTime<chrono::Utc>, body: &[u8]| webhooks::stripe::sign(&key, at, body).unwrap();
    let header = |v: String| vec![("stripe-signature", v)];
    let t = now(&app);

    let (status, ok) = deliver(&app, &path, &header(sig(t, body)), body, "application/json").await;
    assert_eq!(
        (status, ok["status"].as_str(), ok["event_id"].as_str()),
        (200, Some("accepted"), Some("evt_1")),
        "{ok}"
    );
    let (status, again) = deliver(&app, &path, &header(sig(t, body)), body, "application/json").await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")), "a replay is acknowledged, not processed");

    let other = webhooks::stripe::SigningSecret::parse("whsec_someone_else").unwrap();
    let refusals = [
        (
            "tampered body",
            header(sig(t, body)),
            br#"{"id":"evt_1","type":"invoice.paid","object":"evil"}"#.to_vec(),
            "webhook_signature_mismatch",
        ),
        (
            "wrong secret",
            header(webhooks::stripe::sign(&other, t, body).unwrap()),
            body.to_vec(),
            "webhook_signature_mismatch",
        ),
        ("stale", header(sig(t - chrono::Duration::seconds(301), body)), body.to_vec(), "webhook_signature_stale"),
        ("future", header(sig(t + chrono::Duration::seconds(301), body)), body.to_vec(), "webhook_signature_future"),
        ("missing header", vec![], body.to_vec(), "webhook_signature_missing"),
        ("malformed header", header("t=abc,v1=zz".into()), body.to_vec(), "webhook_signature_malformed"),
    ];
    for (case, headers, body, code) in refusals {
        let (status, err) = deliver(&app, &path, &headers, &body, "application/json").await;
        assert_eq!((status, err["code"].as_str()), (401, Some(code)), "{case}: {err}");
    }
    assert_eq!(received_events(&app, &owner, &ws).await.len(), 1, "processed exactly once");
    // Counted for the alert rules, by scheme.
    let scrape =
        app.client.get(app.url("/metrics")).bearer_auth(METRICS_TOKEN).send().await.unwrap().text().await.unwrap();
    let counted = scrape
        .lines()
        .find(|l| l.starts_with("rampart_webhook_signature_failures_total{source=\"stripe\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 6.0), "{scrape}");
    let (_, listed) = call(&app, &owner, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-sources"), None).await;
    assert_eq!(listed[0]["accepted"], 1);
    assert_eq!(listed[0]["signature_failures"], 6);
    assert!(!listed.to_string().contains("rampart_test_secret"), "{listed}");
}

async fn a_source_without_secrets_fails_closed_and_unknown_sources_are_not_found(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let (ws, path) = source(&app, &owner, json!({"kind": "standard", "name": "Unconfigured"})).await;
    let (status, err) = deliver(&app, &path, &[], b"{}", "application/json").await;
    assert_eq!((status, err["code"].as_str()), (500, Some("webhook_secret_missing")), "{err}");
    assert!(received_events(&app, &owner, &ws).await.is_empty());
    let unknown = format!("/api/v1/inbound/{ws}/{}", uuid::Uuid::new_v4());
    assert_eq!(deliver(&app, &unknown, &[], b"{}", "application/json").await.0, 404);
    let (_, other_ws) = call(&app, &owner, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Other"}))).await;
    let moved = path.replace(&ws, other_ws["id"].as_str().unwrap());
    assert_eq!(
        deliver(&app, &moved, &[], b"{}", "application/json").await.0,
        404,
        "a source answers only under its workspace"
    );
    // Only webhooks.manage administers sources.
    let stranger = app.new_user().await;
    assert_eq!(
        call(&app, &stranger, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-sources"), None).await.0,
        404
    );
}

async fn eight_concurrent_copies_of_a_standard_webhook_are_processed_once(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let secret = webhooks::standard::Secret::generate(&mut rand::rngs::OsRng);
    let whsec = secrecy::ExposeSecret::expose_secret(&secret.to_whsec()).to_owned();
    let (ws, path) = source(&app, &owner, json!({"kind": "standard", "name": "Std", "secrets": [whsec]})).await;
    let id = webhooks::standard::MessageId::parse("msg_concurrent_1").unwrap();
    let body = br#"{"type":"user.created","data":{"n":1}}"#;
    let t = now(&app);
    let signature = webhooks::standard::sign(std::slice::from_ref(&secret), &id, t, body).unwrap();
    let headers = vec![
        ("webhook-id", id.as_str().to_owned()),
        ("webhook-timestamp", t.timestamp().to_string()),
        ("webhook-signature", signature),
    ];
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut req = app.client.post(app.url(&path)).header("content-type", "application/json").body(body.to_vec());
        for (name, value) in &headers {
            req = req.header(*name, value);
        }
        copies.spawn(async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let answers = copies.join_all().await;
    let accepted = answers.iter().filter(|(s, b)| *s == 200 && b["status"] == "accepted").count();
    let duplicates = answers.iter().filter(|(s, b)| *s == 200 && b["status"] == "duplicate").count();
    assert_eq!((accepted, duplicates), (1, 7), "{answers:?}");
    let events = received_events(&app, &owner, &ws).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["payload"].to_string().contains("user.created"), "{}", events[0]);

    // Rotation: a new secret with the previous one kept; both verify, a third never did.
    let next = webhooks::standard::Secret::generate(&mut rand::rngs::OsRng);
    let next_whsec = secrecy::ExposeSecret::expose_secret(&next.to_whsec()).to_owned();
    let source_id = path.rsplit('/').next().unwrap();
    let (status, rotated) = call(
        &app,
        &owner,
        Method::PUT,
        &format!("/api/v1/workspaces/{ws}/webhook-sources/{source_id}/secrets"),
        Some(json!({"secrets": [next_whsec], "keep_previous": true})),
    )
    .await;
    assert_eq!((status, rotated["secrets"].as_u64()), (200, Some(2)), "{rotated}");
    for (n, key) in [(2, &secret), (3, &next)] {
        let id = webhooks::standard::MessageId::parse(&format!("msg_rotated_{n}")).unwrap();
        let signature = webhooks::standard::sign(std::slice::from_ref(key), &id, t, body).unwrap();
        let headers = vec![
            ("webhook-id", id.as_str().to_owned()),
            ("webhook-timestamp", t.timestamp().to_string()),
            ("webhook-signature", signature),
        ];
        let (status, ok) = deliver(&app, &path, &headers, body, "application/json").await;
        assert_eq!((status, ok["status"].as_str()), (200, Some("accepted")), "{ok}");
    }
}

/// Several deliveries arriving at one source at once are recorded together: each still enters the
/// inbox and the audit chain exactly once, copies are duplicates, bad signatures are refused and
/// counted, and the chain verifies.
async fn concurrent_deliveries_to_one_source_are_each_recorded_once_and_bad_ones_counted(backend: Backend) {
    // All 48 requests come from one address within a second: above the default per-client budget.
    let app = testkit::spawn_app_with(backend, |http| http.rate_limit_per_client_per_sec = 100_000).await;
    let owner = app.new_user().await;
    let secret = webhooks::standard::Secret::generate(&mut rand::rngs::OsRng);
    let wrong = webhooks::standard::Secret::generate(&mut rand::rngs::OsRng);
    let whsec = secrecy::ExposeSecret::expose_secret(&secret.to_whsec()).to_owned();
    let (ws, path) = source(&app, &owner, json!({"kind": "standard", "name": "Busy", "secrets": [whsec]})).await;
    let t = now(&app);
    // 32 distinct events, 8 copies of one more, 8 signed with a secret the source does not hold.
    let mut plan: Vec<(String, &webhooks::standard::Secret)> =
        (0..32).map(|n| (format!("msg_distinct_{n}"), &secret)).collect();
    plan.extend((0..8).map(|_| ("msg_copied".to_owned(), &secret)));
    plan.extend((0..8).map(|n| (format!("msg_forged_{n}"), &wrong)));
    let mut requests = tokio::task::JoinSet::new();
    for (id, key) in plan {
        let body = format!(r#"{{"type":"order.paid","id":"{id}"}}"#).into_bytes();
        let message = webhooks::standard::MessageId::parse(&id).unwrap();
        let signature = webhooks::standard::sign(std::slice::from_ref(key), &message, t, &body).unwrap();
        let req = app
            .client
            .post(app.url(&path))
            .header("content-type", "application/json")
            .header("webhook-id", id.clone())
            .header("webhook-timestamp", t.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(body);
        requests.spawn(async move {
            let resp = req.send().await.unwrap();
            (id, resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let answers = requests.join_all().await;
    let count = |status: u16, what: &str| {
        answers.iter().filter(|(_, s, b)| *s == status && (b["status"] == what || b["code"] == what)).count()
    };
    assert_eq!(count(200, "accepted"), 33, "{answers:?}");
    assert_eq!(count(200, "duplicate"), 7, "{answers:?}");
    assert_eq!(count(401, "webhook_signature_mismatch"), 8, "{answers:?}");
    for (id, status, body) in &answers {
        if *status == 200 {
            assert_eq!(body["event_id"].as_str(), Some(id.as_str()), "each answer names its own event");
        }
    }

    let events = received_events(&app, &owner, &ws).await;
    let mut ids: Vec<String> = events.iter().map(|e| e["payload"]["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((events.len(), ids.len()), (33, 33), "one audit event per accepted delivery");
    let source_id = path.rsplit('/').next().unwrap();
    let (status, listed) =
        call(&app, &owner, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-sources"), None).await;
    assert_eq!(status, 200, "{listed}");
    let shown = listed.as_array().unwrap().iter().find(|s| s["id"] == source_id).unwrap();
    assert_eq!((shown["accepted"].as_i64(), shown["signature_failures"].as_i64()), (Some(33), Some(8)), "{shown}");

    let owner_db = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    let txn = audit::begin_auditor(owner_db.conn()).await.unwrap();
    let chain = audit::verify(&txn, ws.parse().unwrap()).await.unwrap();
    txn.commit().await.unwrap();
    assert!(chain.is_intact(), "{chain:?}");
    assert!(chain.events >= 34, "the source's creation and 33 receipts at least: {chain:?}");
}

async fn twilio_form_deliveries_verify_against_the_configured_url(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let owner = app.new_user().await;
    let url = "https://hooks.example.com/twilio/sms";
    let token = "12345678901234567890123456789012";
    let (ws, path) =
        source(&app, &owner, json!({"kind": "twilio", "name": "SMS", "settings": {"url": url}, "secrets": [token]}))
            .await;
    let params = [("Body", "hello"), ("From", "+14155550100"), ("MessageSid", "SM1")];
    let signature = webhooks::twilio::sign(&webhooks::twilio::AuthToken::parse(token).unwrap(), url, &params).unwrap();
    let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let headers = vec![("x-twilio-signature", signature.clone()), ("i-twilio-idempotency-token", "idem-1".to_owned())];
    let (status, ok) = deliver(&app, &path, &headers, form.as_bytes(), "application/x-www-form-urlencoded").await;
    assert_eq!((status, ok["status"].as_str()), (200, Some("accepted")), "{ok}");
    assert!(ok["event_id"].as_str().unwrap().starts_with("sha256:"), "the id comes from signed material: {ok}");
    // A replay with a fresh unsigned idempotency header and the parameters reordered still
    // verifies, and is recognised as the same event.
    let reordered = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("MessageSid", "SM1"), ("Body", "hello"), ("From", "+14155550100")])
        .finish();
    let replay = vec![("x-twilio-signature", signature), ("i-twilio-idempotency-token", "idem-2".to_owned())];
    let (status, again) =
        deliver(&app, &path, &replay, reordered.as_bytes(), "application/x-www-form-urlencoded").await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")), "{again}");
    assert_eq!(again["event_id"], ok["event_id"]);
    let tampered = form.replace("hello", "hullo");
    let (status, _) = deliver(&app, &path, &headers, tampered.as_bytes(), "application/x-www-form-urlencoded").await;
    assert_eq!(status, 401);
    assert_eq!(received_events(&app, &owner, &ws).await.len(), 1);
    // Settings are checked: a Twilio source needs an https URL.
    let (_, ws2) = call(&app, &owner, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Bad"}))).await;
    let bad = json!({"kind": "twilio", "name": "SMS", "settings": {"url": "http://127.0.0.1/x"}, "secrets": [token]});
    let (status, err) = call(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/workspaces/{}/webhook-sources", ws2["id"].as_str().unwrap()),
        Some(bad),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_settings")), "{err}");
}

backend_tests!(
    stripe_deliveries_are_accepted_once_and_every_bad_signature_is_a_401,
    a_source_without_secrets_fails_closed_and_unknown_sources_are_not_found,
    eight_concurrent_copies_of_a_standard_webhook_are_processed_once,
    concurrent_deliveries_to_one_source_are_each_recorded_once_and_bad_ones_counted,
    twilio_form_deliveries_verify_against_the_configured_url,
);
