//! Security observability through HTTP: the Prometheus endpoint behind its scrape token, the
//! counters the alert rules read, and the alert rules themselves proven with `promtool`.

use serde_json::json;
use testkit::{backend_tests, spawn_app_with, Backend, TestApp};

const TOKEN: &str = "scrape-token-for-tests-only-0123456789";

async fn app_with_metrics(backend: Backend) -> TestApp {
    spawn_app_with(backend, |http| http.metrics_token = Some(TOKEN.to_owned().into())).await
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    resp.text().await.unwrap()
}

/// The value of the first sample whose line starts with `name{` and contains every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn the_metrics_endpoint_answers_only_the_scrape_token(backend: Backend) {
    let app = app_with_metrics(backend).await;
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");
    let wrong = app.client.get(app.url("/metrics")).bearer_auth("scrape-token-for-tests-only-0123456788").send().await;
    assert_eq!(wrong.unwrap().status(), 401);
    let user = app.new_user().await;
    let forged = app.client.get(app.url("/metrics")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(forged.status(), 401, "a user's access token is not a scrape token");
    scrape(&app).await;

    let plain = testkit::spawn_app(backend).await;
    let resp = plain.client.get(plain.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 404, "without a configured token there is no metrics route");
}

async fn requests_sign_in_failures_and_the_outbox_are_counted(backend: Backend) {
    let app = app_with_metrics(backend).await;
    let user = app.new_user().await;
    let before = scrape(&app).await;
    let me = |t: &str| sample(t, "rampart_http_requests_total", &["operation=\"me\"", "status=\"200\""]).unwrap_or(0.0);
    let failures = |t: &str| sample(t, "rampart_auth_failures_total", &["reason=\"wrong_password\""]).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(app.call(&user, reqwest::Method::GET, "/api/v1/me").send().await.unwrap().status(), 200);
    }
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .json(&json!({"email": user.email, "password": "not the password at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let after = scrape(&app).await;
    // Other tests in this process may add to the same counters, never subtract.
    assert!(me(&after) - me(&before) >= 3.0, "{after}");
    assert!(failures(&after) - failures(&before) >= 1.0, "{after}");
    assert!(sample(&after, "rampart_http_request_duration_seconds_bucket", &["operation=\"me\""]).is_some(), "{after}");
    for gauge in ["rampart_outbox_due_actions", "rampart_outbox_lag_seconds", "rampart_outbox_dead_actions"] {
        assert!(sample(&after, gauge, &[]).is_some(), "{gauge} missing from {after}");
    }
    assert!(sample(&after, "rampart_rate_limited_total", &[]).is_some(), "{after}");
}

backend_tests!(
    the_metrics_endpoint_answers_only_the_scrape_token,
    requests_sign_in_failures_and_the_outbox_are_counted,
);

#[allow(clippy::disallowed_methods)] // Cargo and nextest set the manifest directory at run time.
fn deploy_dir() -> std::path::PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo");
    std::path::Path::new(&manifest).join("../../deploy/prometheus")
}

#[test]
fn the_alert_rules_are_valid_and_fire_on_the_series_they_watch() {
    let dir = deploy_dir();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(&dir)
        .output()
        .expect("promtool is needed to test the alert rules: apt-get install -y prometheus");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_metric_the_alert_rules_read_is_one_the_server_exports() {
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.yaml")).unwrap();
    let exported = [
        api::metrics::HTTP_REQUESTS,
        api::metrics::RATE_LIMITED,
        api::metrics::OUTBOX_LAG,
        api::metrics::OUTBOX_DEAD,
        testkit::auth::metrics::AUTH_FAILURES,
        webhooks::SIGNATURE_FAILURES_METRIC,
    ];
    let mut read = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("rampart_") && word.len() > "rampart_".len() {
            assert!(exported.contains(&word), "alerts.yaml reads {word}, which the server does not export");
            read += 1;
        }
    }
    assert!(read >= 6, "the rules read the exported metrics");
}
