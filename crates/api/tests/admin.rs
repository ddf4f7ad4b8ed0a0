//! Platform administration through HTTP, on both stores: only a platform Admin reads and steers
//! the outbox; payloads are never shown; retry and cancel follow the action's state.

use reqwest::Method;
use serde_json::Value;
use testkit::{backend_tests, storage::ConnectionTrait, Backend};

async fn only_a_platform_admin_lists_retries_and_cancels_outbox_actions(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let user = app.new_user().await;
    let admin = app.new_user().await;
    let now = testkit::storage::Clock::now(app.clock.as_ref());
    let payload = serde_json::json!({"secret": "outbox-admin-secret"});
    let key = &app.state.keyring.vault_kek;
    let later = now + chrono::Duration::days(1);
    let id = scheduler::enqueue(app.state.db.conn(), key, "test.later", &payload, later, now).await.unwrap();

    let status = |resp: reqwest::Response| resp.status().as_u16();
    assert_eq!(status(app.call(&user, Method::GET, "/api/v1/admin/outbox").send().await.unwrap()), 403);
    let cancel = format!("/api/v1/admin/outbox/{id}/cancel");
    assert_eq!(status(app.call(&user, Method::POST, &cancel).send().await.unwrap()), 403);

    let promote = || {
        testkit::storage::Statement::from_sql_and_values(
            app.state.db.conn().get_database_backend(),
            "UPDATE users SET platform_level = 80 WHERE email = $1",
            [admin.email.clone().into()],
        )
    };
    if backend == Backend::Postgres {
        // The server's own role cannot raise a platform level, whatever SQL reaches it: neither
        // on an existing account nor on one it creates.
        let refused = app.state.db.conn().execute(promote()).await.unwrap_err().to_string();
        assert!(refused.contains("permission denied"), "{refused}");
        let born_admin = testkit::storage::Statement::from_sql_and_values(
            testkit::storage::DatabaseBackend::Postgres,
            "INSERT INTO users (id, email, status, failed_signins, lockouts, platform_level, created_at, updated_at)
             VALUES ($1, $2, 'active', 0, 0, 80, $3, $3)",
            [uuid::Uuid::new_v4().into(), testkit::unique_email().into(), now.into()],
        );
        let refused = app.state.db.conn().execute(born_admin).await.unwrap_err().to_string();
        assert!(refused.contains("permission denied"), "{refused}");
    }
    // An operator does, as the owner role.
    let owner = testkit::storage::Db::connect(&app.db.owner_url, 1).await.unwrap();
    assert_eq!(owner.conn().execute(promote()).await.unwrap().rows_affected(), 1);
    owner.close().await.unwrap();
    let listed: Value = app
        .call(&admin, Method::GET, "/api/v1/admin/outbox?status=pending")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = listed.as_array().unwrap().iter().find(|a| a["id"] == id.to_string()).expect("listed");
    assert_eq!((row["kind"].as_str(), row["status"].as_str()), (Some("test.later"), Some("pending")));
    assert!(!listed.to_string().contains("outbox-admin-secret"));
    assert_eq!(status(app.call(&admin, Method::GET, "/api/v1/admin/outbox?status=asleep").send().await.unwrap()), 400);

    assert_eq!(status(app.call(&admin, Method::POST, &cancel).send().await.unwrap()), 204);
    assert_eq!(
        status(app.call(&admin, Method::POST, &cancel).send().await.unwrap()),
        409,
        "only pending actions cancel"
    );
    let retry = format!("/api/v1/admin/outbox/{id}/retry");
    assert_eq!(status(app.call(&admin, Method::POST, &retry).send().await.unwrap()), 204);
    assert_eq!(
        status(app.call(&admin, Method::POST, &retry).send().await.unwrap()),
        409,
        "a pending action is not retried"
    );
    let after = scheduler::list(app.state.db.conn(), Some("pending"), 100).await.unwrap();
    assert!(
        after.iter().any(|a| a.id == id && a.run_at <= testkit::storage::Clock::now(app.clock.as_ref())),
        "due again now"
    );
}

backend_tests!(only_a_platform_admin_lists_retries_and_cancels_outbox_actions);
