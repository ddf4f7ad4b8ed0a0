//! Outbound webhooks through HTTP, on SQLite and on PostgreSQL as the runtime role: project
//! events reach a real loopback receiver signed per Standard Webhooks and the official Python
//! library verifies them; failures are retried on the schedule, then the endpoint is disabled and
//! its owners mailed; a rotated secret signs beside the new one for 24 hours; endpoint URLs are
//! https and public, and a name that resolves to a private address is refused at delivery.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::receiver::{reference_signature, reference_verify, Receiver};
use testkit::{backend_tests, Backend, TestApp, TestUser};
use webhooks::outbound::RETRY_SCHEDULE_SECS;

/// The server, with the receiver's exact address let through the private-address refusal (and
/// with it plain http), as the tests' only exception.
async fn app_for(backend: Backend, receiver: &Receiver) -> TestApp {
    let addr = receiver.addr;
    testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |_| {},
        move |state| {
            state.egress = api::Egress { resolver: Arc::new(egress::SystemResolver), exceptions: vec![addr] };
        },
    )
    .await
}

async fn workspace(app: &TestApp, owner: &TestUser) -> String {
    let (status, ws) = app.json(owner, Method::POST, "/api/v1/workspaces", Some(json!({"name": "Hooks"}))).await;
    assert_eq!(status, 201, "{ws}");
    ws["id"].as_str().unwrap().to_owned()
}

/// Registers an endpoint; its id and the secret shown once.
async fn endpoint(app: &TestApp, owner: &TestUser, ws: &str, url: &str, types: Value) -> (String, String) {
    let (status, made) = app
        .json(
            owner,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/webhook-endpoints"),
            Some(json!({"url": url, "description": "CRM sync", "event_types": types})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "a Standard Webhooks secret");
    (made["endpoint"]["id"].as_str().unwrap().to_owned(), secret)
}

async fn send_test(app: &TestApp, owner: &TestUser, ws: &str, ep: &str) -> String {
    let (status, delivery) =
        app.json(owner, Method::POST, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}/test"), None).await;
    assert_eq!(status, 201, "{delivery}");
    assert_eq!(delivery["status"], "pending");
    delivery["id"].as_str().unwrap().to_owned()
}

async fn delivery(app: &TestApp, owner: &TestUser, ws: &str, id: &str) -> Value {
    let (status, found) =
        app.json(owner, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-deliveries/{id}"), None).await;
    assert_eq!(status, 200, "{found}");
    found
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn project_events_reach_subscribed_endpoints_signed_so_the_reference_library_verifies_them(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice).await;
    let (ep, secret) =
        endpoint(&app, &alice, &ws, &receiver.url("/hook"), json!(["project.created", "project.deleted"])).await;
    let (other, other_secret) = endpoint(&app, &alice, &ws, &receiver.url("/other"), json!(["project.updated"])).await;

    let (status, project) = app
        .json(
            &alice,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/projects"),
            Some(json!({"name": "Apollo", "description": "moon"})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    app.run_outbox().await;
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "only the endpoint subscribed to project.created: {hooks:?}");
    let hook = &hooks[0];
    assert_eq!((hook.method.as_str(), hook.path.as_str()), ("POST", "/hook"));
    assert_eq!(hook.header("content-type"), "application/json");
    assert!(hook.header("webhook-id").starts_with("msg_"));
    reference_verify(&secret, hook).expect("the official library verifies the delivery");
    assert!(reference_verify(&other_secret, hook).is_err(), "another endpoint's secret does not verify it");
    let mut tampered = hook.clone();
    tampered.body = hook.body.iter().map(|b| if *b == b'A' { b'B' } else { *b }).collect();
    assert!(reference_verify(&secret, &tampered).is_err(), "a changed body does not verify");
    let event: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(event["type"], "project.created");
    assert_eq!(event["data"]["name"], "Apollo");
    assert_eq!(event["data"]["id"], project["id"]);
    assert_eq!(event["data"]["workspace_id"], ws.as_str());
    assert!(event["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (status, list) = app
        .json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}/deliveries"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "delivered");
    assert_eq!(list[0]["message_id"], hook.header("webhook-id"));
    let found = delivery(&app, &alice, &ws, list[0]["id"].as_str().unwrap()).await;
    let attempts = found["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{found}");
    assert_eq!(attempts[0]["cause"], "scheduled");
    assert_eq!(attempts[0]["outcome"], "ok");
    assert_eq!(attempts[0]["response_status"], 200);

    let pid = project["id"].as_str().unwrap();
    let path = format!("/api/v1/workspaces/{ws}/projects/{pid}");
    let (status, _) = app.json(&alice, Method::PATCH, &path, Some(json!({"name": "Artemis"}))).await;
    assert_eq!(status, 200);
    let (status, _) = app.json(&alice, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    app.run_outbox().await;
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    let by_path = |p: &str| hooks.iter().filter(|h| h.path == p).cloned().collect::<Vec<_>>();
    let updated = by_path("/other");
    assert_eq!(updated.len(), 1);
    reference_verify(&other_secret, &updated[0]).expect("the second endpoint's own secret verifies its delivery");
    let updated: Value = serde_json::from_slice(&updated[0].body).unwrap();
    assert_eq!(
        (updated["type"].as_str(), updated["data"]["name"].as_str()),
        (Some("project.updated"), Some("Artemis"))
    );
    let deleted: Value = serde_json::from_slice(&by_path("/hook")[1].body).unwrap();
    assert_eq!(deleted["type"], "project.deleted");

    // The secret is shown once: never in a listing, a read or the audit trail.
    let (_, listed) = app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints"), None).await;
    let (_, one) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{other}"), None).await;
    let (_, trail) = app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/audit-events"), None).await;
    for text in [listed.to_string(), one.to_string(), trail.to_string()] {
        assert!(!text.contains(&secret) && !text.contains(&other_secret) && !text.contains("whsec_"), "{text}");
    }
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(one["signing_secrets"], 1);

    // Another workspace's owner sees none of it.
    let mallory = app.new_user().await;
    for path in [
        format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"),
        format!("/api/v1/workspaces/{ws}/webhook-deliveries/{}", list[0]["id"].as_str().unwrap()),
    ] {
        let (status, _) = app.json(&mallory, Method::GET, &path, None).await;
        assert_eq!(status, 404, "{path}");
    }
}

async fn a_failing_endpoint_is_retried_on_the_schedule_then_disabled_and_its_owners_told(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice).await;
    let (ep, _) = endpoint(&app, &alice, &ws, &receiver.url("/hook/path-token-8f2c"), json!(["*"])).await;
    receiver.answer(503);
    let id = send_test(&app, &alice, &ws, &ep).await;
    let (status, refused) =
        app.json(&alice, Method::POST, &format!("/api/v1/workspaces/{ws}/webhook-deliveries/{id}/replay"), None).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("delivery_pending")), "{refused}");
    app.run_outbox().await;
    assert_eq!(receiver.hooks().len(), 1);
    let first = delivery(&app, &alice, &ws, &id).await;
    assert_eq!(first["delivery"]["status"], "pending");
    assert_eq!(
        at(&first["delivery"]["next_attempt_at"]) - at(&first["delivery"]["last_attempt_at"]),
        Duration::seconds(RETRY_SCHEDULE_SECS[0])
    );

    for (i, wait) in RETRY_SCHEDULE_SECS.iter().enumerate() {
        app.clock.advance(Duration::seconds(wait - 1));
        app.run_outbox().await;
        assert_eq!(receiver.hooks().len(), i + 1, "retry {} is not sent before its time", i + 1);
        app.clock.advance(Duration::seconds(1));
        app.run_outbox().await;
        assert_eq!(receiver.hooks().len(), i + 2, "retry {} is sent after {wait} s", i + 1);
    }
    let hooks = receiver.hooks();
    assert!(hooks.iter().all(|h| h.header("webhook-id") == hooks[0].header("webhook-id") && h.body == hooks[0].body));

    let alice = app.renew(&alice).await;
    let last = delivery(&app, &alice, &ws, &id).await;
    assert_eq!(last["delivery"]["status"], "failed", "{last}");
    assert_eq!(last["delivery"]["attempts"], 8);
    let attempts = last["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 8);
    assert!(attempts.iter().all(|a| a["outcome"] == "http_status" && a["response_status"] == 503), "{last}");
    let (_, disabled) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"), None).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    assert_eq!(disabled["consecutive_failures"], 8);
    assert!(disabled["disabled_reason"].as_str().unwrap().contains("8 attempts failed"), "{disabled}");
    let mails = testkit::mails_to(&alice.email);
    let told = mails.iter().find(|m| m.subject == "Webhook endpoint disabled in Hooks").expect("the owner is told");
    assert!(told.body.contains(&ep) && told.body.contains(&format!("http://{}", receiver.addr)), "{}", told.body);
    assert!(!told.body.contains("path-token-8f2c"), "the mail names the origin only: {}", told.body);
    let (_, trail) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/audit-events?category=webhook"), None).await;
    assert!(trail.to_string().contains("webhook_endpoint.disabled"), "{trail}");

    // A disabled endpoint receives nothing, and nothing is replayed to it.
    let (status, _) = app
        .json(
            &alice,
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/projects"),
            Some(json!({"name": "Quiet", "description": ""})),
        )
        .await;
    assert_eq!(status, 201);
    app.run_outbox().await;
    assert_eq!(receiver.hooks().len(), 8);
    let replay = format!("/api/v1/workspaces/{ws}/webhook-deliveries/{id}/replay");
    let (status, refused) = app.json(&alice, Method::POST, &replay, None).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("endpoint_disabled")), "{refused}");

    // Re-enabled, a replay sends the same message once more.
    let (status, enabled) = app
        .json(
            &alice,
            Method::PATCH,
            &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!((enabled["enabled"].as_bool(), enabled["consecutive_failures"].as_i64()), (Some(true), Some(0)));
    receiver.answer(204);
    let (status, replayed) = app.json(&alice, Method::POST, &replay, None).await;
    assert_eq!(status, 200, "{replayed}");
    app.run_outbox().await;
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 9);
    assert_eq!(hooks[8].header("webhook-id"), hooks[0].header("webhook-id"));
    assert_eq!(hooks[8].body, hooks[0].body);
    let done = delivery(&app, &alice, &ws, &id).await;
    assert_eq!(done["delivery"]["status"], "delivered");
    assert_eq!(done["attempts"][8]["cause"], "replay");
    assert_eq!(done["attempts"][8]["response_status"], 204);
}

async fn an_endpoint_that_answers_410_gone_is_disabled_at_once(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice).await;
    let (ep, _) = endpoint(&app, &alice, &ws, &receiver.url("/gone"), json!(["webhook.test"])).await;
    receiver.answer(410);
    let id = send_test(&app, &alice, &ws, &ep).await;
    app.run_outbox().await;
    app.clock.advance(Duration::seconds(RETRY_SCHEDULE_SECS[0] + 1));
    app.run_outbox().await;
    assert_eq!(receiver.hooks().len(), 1, "no retry after 410");
    let found = delivery(&app, &alice, &ws, &id).await;
    assert_eq!(found["delivery"]["status"], "failed");
    let (_, gone) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"), None).await;
    assert_eq!(gone["enabled"], false);
    assert!(gone["disabled_reason"].as_str().unwrap().contains("410"), "{gone}");
}

async fn a_rotated_secret_keeps_signing_beside_the_new_one_for_24_hours(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice).await;
    let (ep, old) = endpoint(&app, &alice, &ws, &receiver.url("/hook"), json!(["*"])).await;
    let (status, rotated) = app
        .json(&alice, Method::POST, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}/rotate-secret"), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let now = testkit::storage::Clock::now(app.clock.as_ref());
    assert_eq!(at(&rotated["previous_signs_until"]), now + Duration::hours(24));
    let (_, during) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"), None).await;
    assert_eq!(during["signing_secrets"], 2, "the old secret signs beside the new one: {during}");

    send_test(&app, &alice, &ws, &ep).await;
    app.run_outbox().await;
    let hook = receiver.wait_for(1).await.remove(0);
    let signatures: Vec<&str> = hook.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures, [reference_signature(&new, &hook), reference_signature(&old, &hook)]);
    reference_verify(&new, &hook).expect("the new secret verifies");
    reference_verify(&old, &hook).expect("the old secret still verifies during the overlap");

    app.clock.advance(Duration::hours(24) + Duration::seconds(1));
    let alice = app.renew(&alice).await;
    send_test(&app, &alice, &ws, &ep).await;
    app.run_outbox().await;
    let later = receiver.wait_for(2).await.remove(1);
    assert_eq!(later.header("webhook-signature"), reference_signature(&new, &later), "only the new secret signs");
    let (_, one) =
        app.json(&alice, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-endpoints/{ep}"), None).await;
    assert_eq!(one["signing_secrets"], 1);
}

async fn endpoint_urls_must_be_https_and_public_and_a_name_repointed_privately_is_refused_at_delivery(
    backend: Backend,
) {
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    // The name answers a public address when the endpoint is created (judged then), and the
    // loopback trap afterwards (DNS rebinding): the delivery judges the answer it gets.
    let resolver = Arc::new(Repointable(std::sync::Mutex::new("93.184.215.14:443".parse().unwrap())));
    let app = testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |_| {},
        |state| {
            state.egress = api::Egress { resolver: resolver.clone(), exceptions: Vec::new() };
        },
    )
    .await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice).await;
    let base = format!("/api/v1/workspaces/{ws}/webhook-endpoints");
    let refused = [
        ("http://hooks.customer.test/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("https://127.0.0.1/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("https://[::1]/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("https://localhost/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("https://169.254.169.254/latest/meta-data", json!(["*"]), 400, "invalid_endpoint_url"),
        ("https://user:pw@hooks.customer.test/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("ftp://hooks.customer.test/h", json!(["*"]), 400, "invalid_endpoint_url"),
        ("not a url", json!(["*"]), 400, "invalid_endpoint_url"),
        // The catalogue of event types is in the description: refused before the handler.
        ("https://hooks.customer.test/h", json!(["project.exploded"]), 422, "invalid_value"),
        ("https://hooks.customer.test/h", json!([]), 422, "invalid_value"),
    ];
    for (url, types, status_wanted, code) in refused {
        let (status, body) =
            app.json(&alice, Method::POST, &base, Some(json!({"url": url, "event_types": types}))).await;
        assert_eq!((status, body["code"].as_str()), (status_wanted, Some(code)), "{url}: {body}");
    }
    let (status, listed) = app.json(&alice, Method::GET, &base, None).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(0)), "nothing was half-created");

    let (ep, _) = endpoint(&app, &alice, &ws, "https://hooks.customer.test/h", json!(["*"])).await;
    *resolver.0.lock().unwrap() = trap.local_addr().unwrap();
    let id = send_test(&app, &alice, &ws, &ep).await;
    app.run_outbox().await;
    let found = delivery(&app, &alice, &ws, &id).await;
    assert_eq!(found["attempts"][0]["outcome"], "egress_forbidden_address", "{found}");
    assert_eq!(found["delivery"]["status"], "pending", "retried on the schedule like any failure");
    assert_eq!(trap.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing connected");
}

/// A resolver whose one answer the test changes.
struct Repointable(std::sync::Mutex<std::net::SocketAddr>);

impl egress::Resolver for Repointable {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> egress::BoxFuture<'a, std::io::Result<Vec<std::net::SocketAddr>>> {
        let answer = *self.0.lock().unwrap();
        Box::pin(async move { Ok(vec![answer]) })
    }
}

backend_tests!(
    project_events_reach_subscribed_endpoints_signed_so_the_reference_library_verifies_them,
    a_failing_endpoint_is_retried_on_the_schedule_then_disabled_and_its_owners_told,
    an_endpoint_that_answers_410_gone_is_disabled_at_once,
    a_rotated_secret_keeps_signing_beside_the_new_one_for_24_hours,
    endpoint_urls_must_be_https_and_public_and_a_name_repointed_privately_is_refused_at_delivery,
);
