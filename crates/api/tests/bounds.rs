//! The bounds the published description states are the ones the server holds: a value just inside
//! each is accepted, one just outside is refused with 422 `invalid_value` naming the field before
//! any handler runs, and a value of another JSON type is refused, never converted.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, Backend, TestApp, TestUser};

/// Sends `body` and checks the answer: `Ok(status)` expects that status, `Err(field)` a 422
/// `invalid_value` whose message names `field`.
async fn check(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Value, expected: Result<u16, &str>) {
    let (status, answer) = app.json(user, method.clone(), path, Some(body.clone())).await;
    match expected {
        Ok(want) => assert_eq!(status, want, "{method} {path} {body}: {answer}"),
        Err(field) => {
            assert_eq!(status, 422, "{method} {path} {body}: {answer}");
            assert_eq!(answer["code"], "invalid_value", "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("`{field}`")), "the message names `{field}`: {answer}");
        }
    }
}

async fn names_are_held_to_their_stated_length_and_shape(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Bounds").await;
    let projects = format!("/api/v1/workspaces/{ws}/projects");
    let roles = format!("/api/v1/workspaces/{ws}/roles");
    let p = |name: Value| json!({ "name": name });
    let cases: Vec<(Method, &str, Value, Result<u16, &str>)> = vec![
        (Method::POST, "/api/v1/workspaces", p(json!("w".repeat(200))), Ok(201)),
        (Method::POST, "/api/v1/workspaces", p(json!("w".repeat(201))), Err("name")),
        (Method::POST, "/api/v1/workspaces", p(json!("")), Err("name")),
        (Method::POST, "/api/v1/workspaces", p(json!(" \u{3000}\u{a0} ")), Err("name")),
        (Method::POST, "/api/v1/workspaces", p(json!("tab\there")), Err("name")),
        (Method::POST, "/api/v1/workspaces", p(json!("c1\u{85}control")), Err("name")),
        (Method::POST, &projects, p(json!("é".repeat(200))), Ok(201)),
        (Method::POST, &projects, p(json!("é".repeat(201))), Err("name")),
        (Method::POST, &projects, json!({"name": "Docs", "description": "d".repeat(2000)}), Ok(201)),
        (Method::POST, &projects, json!({"name": "Docs", "description": "d".repeat(2001)}), Err("description")),
        (Method::POST, &roles, json!({"name": "r".repeat(64), "level": 10, "permissions": []}), Ok(201)),
        (Method::POST, &roles, json!({"name": "r".repeat(65), "level": 10, "permissions": []}), Err("name")),
        (Method::POST, &roles, json!({"name": "Lead", "level": 101, "permissions": []}), Err("level")),
        (
            Method::POST,
            &roles,
            json!({"name": "Odd", "level": 10, "permissions": ["Projects..Read"]}),
            Err("permissions.0"),
        ),
    ];
    for (method, path, body, expected) in cases {
        check(&app, &alice, method, path, body, expected).await;
    }
}

async fn numbers_and_lists_are_held_to_their_stated_ranges(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Ranges").await;
    let keys = format!("/api/v1/workspaces/{ws}/api-keys");
    let windows = format!("/api/v1/workspaces/{ws}/activity-windows");
    let key = |per_minute: u64, scopes: usize| json!({"name": "ci", "scopes": vec!["projects.read"; scopes], "per_minute": per_minute});
    let window = json!({"days": ["mon"], "start": "09:00", "end": "17:00"});
    let cases: Vec<(Method, &str, Value, Result<u16, &str>)> = vec![
        (Method::POST, &keys, key(60_000, 32), Ok(201)),
        (Method::POST, &keys, key(60_001, 1), Err("per_minute")),
        (Method::POST, &keys, key(0, 1), Err("per_minute")),
        (Method::POST, &keys, key(600, 33), Err("scopes")),
        (Method::POST, &keys, key(600, 0), Err("scopes")),
        (Method::POST, &keys, json!({"name": "k".repeat(101), "scopes": ["projects.read"]}), Err("name")),
        (Method::PUT, &windows, json!({"utc_offset_minutes": 840, "windows": vec![window.clone(); 20]}), Ok(200)),
        (Method::PUT, &windows, json!({"utc_offset_minutes": 841, "windows": []}), Err("utc_offset_minutes")),
        (Method::PUT, &windows, json!({"utc_offset_minutes": -841, "windows": []}), Err("utc_offset_minutes")),
        (Method::PUT, &windows, json!({"utc_offset_minutes": 0, "windows": vec![window; 21]}), Err("windows")),
        (
            Method::PUT,
            &windows,
            json!({"utc_offset_minutes": 0, "windows": [{"days": ["mon"], "start": "24:00", "end": "17:00"}]}),
            Err("windows.0.start"),
        ),
        (
            Method::PUT,
            &windows,
            json!({"utc_offset_minutes": 0, "windows": [{"days": ["monday"], "start": "09:00", "end": "17:00"}]}),
            Err("windows.0.days.0"),
        ),
    ];
    for (method, path, body, expected) in cases {
        check(&app, &alice, method, path, body, expected).await;
    }
    let limit = |n: u32| format!("/api/v1/workspaces/{ws}/projects?limit={n}");
    for (path, status) in [(limit(1), 200), (limit(200), 200), (limit(0), 400), (limit(201), 400)] {
        let (got, body) = app.json(&alice, Method::GET, &path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        if status == 400 {
            assert_eq!(body["code"], "invalid_parameter", "{body}");
        }
    }
}

async fn a_name_of_another_json_type_is_refused_not_converted(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = app.workspace(&alice, "Types").await;
    let paths = [
        (Method::POST, "/api/v1/workspaces".to_owned(), json!({})),
        (Method::POST, format!("/api/v1/workspaces/{ws}/projects"), json!({})),
        (Method::POST, format!("/api/v1/workspaces/{ws}/roles"), json!({"level": 10, "permissions": []})),
        (Method::POST, format!("/api/v1/workspaces/{ws}/activity"), json!({"title": "t", "body": "b"})),
    ];
    for (method, path, rest) in paths {
        for name in [json!(123), json!(false)] {
            let mut body = rest.clone();
            let key = if path.ends_with("/activity") { "app" } else { "name" };
            body[key] = name;
            check(&app, &alice, method.clone(), &path, body, Err(key)).await;
        }
    }
}

backend_tests!(
    names_are_held_to_their_stated_length_and_shape,
    numbers_and_lists_are_held_to_their_stated_ranges,
    a_name_of_another_json_type_is_refused_not_converted,
);
