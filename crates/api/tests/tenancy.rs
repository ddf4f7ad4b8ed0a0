//! Workspaces, roles, invitations, grants, projects and activity through HTTP, on SQLite
//! (application layer alone) and on PostgreSQL as the runtime role (application layer and forced
//! row-level security).

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{backend_tests, mails_to, storage::ConnectionTrait, Backend, TestApp, TestUser};

async fn send(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    app.json(user, method, path, body).await
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> (u16, Value) {
    send(app, user, Method::GET, path, None).await
}

async fn post(app: &TestApp, user: &TestUser, path: &str, body: Value) -> (u16, Value) {
    send(app, user, Method::POST, path, Some(body)).await
}

async fn workspace(app: &TestApp, owner: &TestUser, name: &str) -> String {
    let (status, body) = post(app, owner, "/api/v1/workspaces", json!({"name": name})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], "Owner");
    body["id"].as_str().unwrap().to_owned()
}

async fn project(app: &TestApp, user: &TestUser, ws: &str, name: &str) -> String {
    let (status, body) = post(app, user, &format!("/api/v1/workspaces/{ws}/projects"), json!({"name": name})).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// `inviter` invites `invitee` with `role`; the invitee accepts with the token from the mail.
async fn join(app: &TestApp, inviter: &TestUser, invitee: &TestUser, ws: &str, role: &str) {
    let token = invite(app, inviter, &invitee.email, ws, role).await;
    let (status, body) = accept(app, invitee, ws, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], role);
}

/// New users who joined `ws` with `roles`, in order.
async fn joined<const N: usize>(app: &TestApp, owner: &TestUser, ws: &str, roles: [&str; N]) -> [TestUser; N] {
    let mut users = Vec::new();
    for role in roles {
        let user = app.new_user().await;
        join(app, owner, &user, ws, role).await;
        users.push(user);
    }
    users.try_into().unwrap()
}

async fn invite(app: &TestApp, inviter: &TestUser, email: &str, ws: &str, role: &str) -> String {
    let path = format!("/api/v1/workspaces/{ws}/invitations");
    let (status, body) = post(app, inviter, &path, json!({"email": email, "role": role})).await;
    assert_eq!(status, 201, "{body}");
    app.run_outbox().await;
    let mail = mails_to(email).into_iter().rev().find(|m| m.subject.contains("invited")).expect("an invitation mail");
    assert!(mail.body.contains(&format!("workspace={ws}")), "{mail:?}");
    mail.link_token().expect("a token in the invitation link")
}

async fn accept(app: &TestApp, user: &TestUser, ws: &str, token: &str) -> (u16, Value) {
    post(app, user, "/api/v1/invitations/accept", json!({"workspace_id": ws, "token": token})).await
}

/// Two workspaces with an owner and a project each; B also has an activity record, a custom role,
/// a pending invitation and a grant to a third workspace, so that every tenant table holds rows of
/// B for A to try to reach.
struct World {
    app: TestApp,
    alice: TestUser,
    bob: TestUser,
    a: String,
    b: String,
    project_a: String,
    project_b: String,
    activity_b: String,
    invitation_b: String,
    grant_b: String,
}

async fn world(backend: Backend) -> World {
    // Every request here comes from one loopback address; the per-client limit has its own tests.
    let app = testkit::spawn_app_with(backend, |http| http.rate_limit_per_client_per_sec = 100_000).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let a = workspace(&app, &alice, "A").await;
    let b = workspace(&app, &bob, "B").await;
    let c = workspace(&app, &bob, "C").await;
    let project_a = project(&app, &alice, &a, "alpha").await;
    let project_b = project(&app, &bob, &b, "beta").await;
    let activity = json!({"app": "editor", "title": "draft", "body": "secret of B"});
    let (status, body) = post(&app, &bob, &format!("/api/v1/workspaces/{b}/activity"), activity).await;
    assert_eq!(status, 201, "{body}");
    let activity_b = body["activity"]["id"].as_str().unwrap().to_owned();
    let role = json!({"name": "Auditor", "level": 30, "permissions": ["audit.read"]});
    assert_eq!(post(&app, &bob, &format!("/api/v1/workspaces/{b}/roles"), role).await.0, 201);
    let invitation = json!({"email": testkit::unique_email(), "role": "Member"});
    let (status, body) = post(&app, &bob, &format!("/api/v1/workspaces/{b}/invitations"), invitation).await;
    assert_eq!(status, 201, "{body}");
    let invitation_b = body["id"].as_str().unwrap().to_owned();
    let grant = json!({"grantee_workspace_id": c, "permission": "projects.read"});
    let (status, body) = post(&app, &bob, &format!("/api/v1/workspaces/{b}/grants"), grant).await;
    assert_eq!(status, 201, "{body}");
    let grant_b = body["id"].as_str().unwrap().to_owned();
    World { app, alice, bob, a, b, project_a, project_b, activity_b, invitation_b, grant_b }
}

async fn a_principal_of_workspace_a_reaches_nothing_of_workspace_b(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, b) = (&w.app, &w.alice, &w.b);
    let (pb, act, inv, grant) = (&w.project_b, &w.activity_b, &w.invitation_b, &w.grant_b);
    let bob_id = w.bob.id;
    // Every route into B, by read, list, update and delete: all 404, none revealing existence.
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/workspaces/{b}"), None),
        (Method::PATCH, format!("/api/v1/workspaces/{b}"), Some(json!({"name": "owned"}))),
        (Method::DELETE, format!("/api/v1/workspaces/{b}"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/members"), None),
        (Method::PATCH, format!("/api/v1/workspaces/{b}/members/{bob_id}"), Some(json!({"role": "Member"}))),
        (Method::DELETE, format!("/api/v1/workspaces/{b}/members/{bob_id}"), None),
        (Method::POST, format!("/api/v1/workspaces/{b}/members/{bob_id}/sessions/revoke"), Some(json!({}))),
        (Method::GET, format!("/api/v1/workspaces/{b}/roles"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{b}/roles"),
            Some(json!({"name": "X", "level": 1, "permissions": []})),
        ),
        (Method::GET, format!("/api/v1/workspaces/{b}/invitations"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{b}/invitations"),
            Some(json!({"email": alice.email, "role": "Owner"})),
        ),
        (Method::DELETE, format!("/api/v1/workspaces/{b}/invitations/{inv}"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/grants"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{b}/grants"),
            Some(json!({"grantee_workspace_id": w.a, "permission": "projects.read"})),
        ),
        (Method::DELETE, format!("/api/v1/workspaces/{b}/grants/{grant}"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/authorization-failures"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/audit-events"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/projects"), None),
        (Method::POST, format!("/api/v1/workspaces/{b}/projects"), Some(json!({"name": "planted"}))),
        (Method::GET, format!("/api/v1/workspaces/{b}/projects/{pb}"), None),
        (Method::PATCH, format!("/api/v1/workspaces/{b}/projects/{pb}"), Some(json!({"name": "defaced"}))),
        (Method::DELETE, format!("/api/v1/workspaces/{b}/projects/{pb}"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/activity"), None),
        (Method::GET, format!("/api/v1/workspaces/{b}/activity/{act}"), None),
        (Method::DELETE, format!("/api/v1/workspaces/{b}/activity/{act}"), None),
        // B's row ids through A's own workspace.
        (Method::GET, format!("/api/v1/workspaces/{}/projects/{pb}", w.a), None),
        (Method::PATCH, format!("/api/v1/workspaces/{}/projects/{pb}", w.a), Some(json!({"name": "defaced"}))),
        (Method::DELETE, format!("/api/v1/workspaces/{}/projects/{pb}", w.a), None),
        (Method::GET, format!("/api/v1/workspaces/{}/activity/{act}", w.a), None),
        (Method::DELETE, format!("/api/v1/workspaces/{}/activity/{act}", w.a), None),
        (Method::DELETE, format!("/api/v1/workspaces/{}/invitations/{inv}", w.a), None),
        (Method::DELETE, format!("/api/v1/workspaces/{}/grants/{grant}", w.a), None),
    ];
    for (method, path, body) in attempts {
        let (status, resp) = send(app, alice, method.clone(), &path, body).await;
        assert_eq!((status, resp["code"].as_str()), (404, Some("not_found")), "{method} {path}: {resp}");
    }
    // A's own lists hold nothing of B.
    let (_, listed) = get(app, alice, &format!("/api/v1/workspaces/{}/projects", w.a)).await;
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha"]);
    let (_, mine) = get(app, alice, "/api/v1/workspaces").await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    // B is untouched.
    let bob = &w.bob;
    let (status, project) = get(app, bob, &format!("/api/v1/workspaces/{b}/projects/{pb}")).await;
    assert_eq!((status, project["name"].as_str()), (200, Some("beta")));
    let (status, _) = get(app, bob, &format!("/api/v1/workspaces/{b}/activity/{act}")).await;
    assert_eq!(status, 200);
    let (_, members) = get(app, bob, &format!("/api/v1/workspaces/{b}/members")).await;
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    let (_, invitations) = get(app, bob, &format!("/api/v1/workspaces/{b}/invitations")).await;
    assert_eq!(invitations.as_array().unwrap().len(), 1, "{invitations}");
    let (_, grants) = get(app, bob, &format!("/api/v1/workspaces/{b}/grants")).await;
    assert!(grants[0]["revoked_at"].is_null(), "{grants}");
    let (_, projects) = get(app, bob, &format!("/api/v1/workspaces/{b}/projects")).await;
    assert_eq!(projects.as_array().unwrap().len(), 1, "nothing planted: {projects}");
}

async fn roles_decide_what_each_member_may_do_with_projects(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [agent, member, manager] = joined(app, alice, a, ["Support Agent", "Member", "Manager"]).await;
    let projects = format!("/api/v1/workspaces/{a}/projects");
    let one = format!("{projects}/{}", w.project_a);

    assert_eq!(get(app, &agent, &projects).await.0, 200);
    let (status, body) = post(app, &agent, &projects, json!({"name": "nope"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");

    let mine = project(app, &member, a, "members' project").await;
    let (status, body) = send(app, &member, Method::PATCH, &one, Some(json!({"description": "edited"}))).await;
    assert_eq!((status, body["description"].as_str()), (200, Some("edited")), "{body}");
    let (status, body) = send(app, &member, Method::DELETE, &format!("{projects}/{mine}"), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");

    assert_eq!(send(app, &manager, Method::DELETE, &format!("{projects}/{mine}"), None).await.0, 204);
    assert_eq!(get(app, &manager, &format!("{projects}/{mine}")).await.0, 404);

    // List filtering by name.
    project(app, alice, a, "Quarterly report").await;
    let (_, found) = get(app, &agent, &format!("{projects}?q=QUARTER")).await;
    let names: Vec<&str> = found.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Quarterly report"]);
    let (_, none) = get(app, &agent, &format!("{projects}?q=%25")).await;
    assert_eq!(none.as_array().unwrap().len(), 0, "LIKE wildcards in q are literal: {none}");
}

async fn refused_attempts_are_recorded_with_endpoint_user_and_required_and_actual_permission(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [member] = joined(app, alice, a, ["Member"]).await;
    let path = format!("/api/v1/workspaces/{a}/projects/{}", w.project_a);
    assert_eq!(send(app, &member, Method::DELETE, &path, None).await.0, 403);
    // A stranger's attempt on A is logged, not stored in A's records (which anyone could fill).
    assert_eq!(get(app, &w.bob, &format!("/api/v1/workspaces/{a}/members")).await.0, 404);
    // The member may not read the records; the owner may.
    assert_eq!(get(app, &member, &format!("/api/v1/workspaces/{a}/authorization-failures")).await.0, 403);
    let (status, records) = get(app, alice, &format!("/api/v1/workspaces/{a}/authorization-failures")).await;
    assert_eq!(status, 200, "{records}");
    let records = records.as_array().unwrap();
    let find = |user: uuid::Uuid, endpoint: &str| {
        records.iter().find(|r| r["user_id"] == user.to_string() && r["endpoint"] == endpoint).cloned()
    };
    let refused = find(member.id, &format!("DELETE {path}")).expect("the member's refusal");
    assert_eq!(refused["required"], "projects.delete");
    assert_eq!(refused["actual"], "Member");
    assert!(refused["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(records.iter().all(|r| r["user_id"] != w.bob.id.to_string()), "{records:?}");
    // The project survived.
    assert_eq!(get(app, alice, &path).await.0, 200);
}

async fn an_invitation_link_works_once_and_only_for_the_invited_address(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let invitee = app.new_user().await;
    let forwarded_to = app.new_user().await;
    let token = invite(app, alice, &invitee.email, a, "Member").await;
    assert_eq!(token.len(), 64, "32 random bytes as hex");
    let (status, body) = accept(app, &forwarded_to, a, &token).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_token")), "{body}");
    assert_eq!(get(app, &forwarded_to, &format!("/api/v1/workspaces/{a}")).await.0, 404);
    let (status, body) = accept(app, &invitee, a, &token).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("Member")), "{body}");
    assert_eq!(accept(app, &invitee, a, &token).await.0, 400, "single use");
    let (_, ws) = get(app, &invitee, &format!("/api/v1/workspaces/{a}")).await;
    assert_eq!(ws["role"], "Member");
    // Expired after 72 hours.
    let late = app.new_user().await;
    let token = invite(app, alice, &late.email, a, "Member").await;
    app.clock.advance(chrono::Duration::hours(72) + chrono::Duration::seconds(1));
    let late = app.renew(&late).await;
    let (status, body) = accept(app, &late, a, &token).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_token")), "expired: {body}");
}

async fn nobody_invites_or_promotes_above_their_own_role_and_the_last_owner_stays(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [admin, member] = joined(app, alice, a, ["Admin", "Member"]).await;
    let invitations = format!("/api/v1/workspaces/{a}/invitations");
    let (status, body) =
        post(app, &admin, &invitations, json!({"email": testkit::unique_email(), "role": "Owner"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let role_of_member = format!("/api/v1/workspaces/{a}/members/{}", member.id);
    let (status, _) = send(app, &admin, Method::PATCH, &role_of_member, Some(json!({"role": "Owner"}))).await;
    assert_eq!(status, 403);
    let (status, body) = send(app, &admin, Method::PATCH, &role_of_member, Some(json!({"role": "Manager"}))).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Manager")), "{body}");
    let role = json!({"name": "Root", "level": 100, "permissions": ["projects.read"]});
    assert_eq!(post(app, &admin, &format!("/api/v1/workspaces/{a}/roles"), role).await.0, 403);
    let own = format!("/api/v1/workspaces/{a}/members/{}", alice.id);
    let (status, body) = send(app, alice, Method::DELETE, &own, None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")), "{body}");
    let (status, body) = send(app, alice, Method::PATCH, &own, Some(json!({"role": "Admin"}))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")), "{body}");
    assert_eq!(send(app, &admin, Method::DELETE, &own, None).await.0, 403, "an admin cannot remove an owner");
    // A member may leave.
    assert_eq!(send(app, &member, Method::DELETE, &role_of_member, None).await.0, 204);
    assert_eq!(get(app, &member, &format!("/api/v1/workspaces/{a}")).await.0, 404);
}

async fn a_cross_workspace_grant_opens_exactly_its_permission_until_revoked(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, bob) = (&w.app, &w.alice, &w.bob);
    let a_projects = format!("/api/v1/workspaces/{}/projects", w.a);
    assert_eq!(get(app, bob, &a_projects).await.0, 404, "nothing crosses without a grant");
    let grant = json!({"grantee_workspace_id": w.b, "permission": "projects.read"});
    let (status, body) = post(app, alice, &format!("/api/v1/workspaces/{}/grants", w.a), grant).await;
    assert_eq!(status, 201, "{body}");
    let grant_id = body["id"].as_str().unwrap().to_owned();
    let (status, listed) = get(app, bob, &a_projects).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["name"], "alpha");
    let (status, body) = post(app, bob, &a_projects, json!({"name": "planted"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(get(app, bob, &format!("/api/v1/workspaces/{}/members", w.a)).await.0, 403);
    assert_eq!(get(app, bob, &format!("/api/v1/workspaces/{}/activity", w.a)).await.0, 403);
    // Both sides see the grant.
    let (_, theirs) = get(app, bob, &format!("/api/v1/workspaces/{}/grants", w.b)).await;
    assert!(theirs.as_array().unwrap().iter().any(|g| g["id"] == grant_id.as_str()), "{theirs}");
    // Only a data permission may be granted.
    let wide = json!({"grantee_workspace_id": w.b, "permission": "members.remove"});
    let (status, body) = post(app, alice, &format!("/api/v1/workspaces/{}/grants", w.a), wide).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_value")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("`permission`"), "{body}");
    let path = format!("/api/v1/workspaces/{}/grants/{grant_id}", w.a);
    assert_eq!(send(app, alice, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(get(app, bob, &a_projects).await.0, 404, "revoked at once");
    let (_, recorded) = get(app, alice, &format!("/api/v1/workspaces/{}/grants", w.a)).await;
    assert_eq!(recorded[0]["revoked_by"], alice.id.to_string(), "the revocation is recorded: {recorded}");
    // A create-only grant is usable: the writer gets its row back without holding read.
    let create = json!({"grantee_workspace_id": w.b, "permission": "projects.create"});
    assert_eq!(post(app, alice, &format!("/api/v1/workspaces/{}/grants", w.a), create).await.0, 201);
    let (status, body) = post(app, bob, &a_projects, json!({"name": "from B"})).await;
    assert_eq!((status, body["name"].as_str()), (201, Some("from B")), "{body}");
    assert_eq!(get(app, bob, &a_projects).await.0, 403, "creating is not reading");
}

async fn activity_is_private_to_its_user_even_from_the_workspace_owner(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [member] = joined(app, alice, a, ["Member"]).await;
    let activity = format!("/api/v1/workspaces/{a}/activity");
    let (status, body) = post(app, &member, &activity, json!({"app": "mail", "title": "t", "body": "private"})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["activity"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["activity"]["content_hash"].as_str().unwrap().len(), 64);
    let (_, owners) = get(app, alice, &activity).await;
    assert_eq!(owners.as_array().unwrap().len(), 0, "{owners}");
    assert_eq!(get(app, alice, &format!("{activity}/{id}")).await.0, 404);
    assert_eq!(send(app, alice, Method::DELETE, &format!("{activity}/{id}"), None).await.0, 404);
    let (_, own) = get(app, &member, &activity).await;
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
}

/// Rows of `table` in workspace `tenant`, as stored.
async fn count(app: &TestApp, table: &str, tenant: &str) -> i64 {
    // The PostgreSQL superuser (RLS does not apply to it) sees what is really stored.
    let url = app.db.admin_url().map(secrecy::SecretString::from).unwrap_or_else(|| app.db.owner_url.clone());
    let db = testkit::storage::Db::connect(&url, 1).await.unwrap();
    let row = db
        .conn()
        .query_one(testkit::storage::Statement::from_sql_and_values(
            db.conn().get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = $1"),
            [uuid::Uuid::parse_str(tenant).unwrap().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn deleting_a_workspace_ends_access_at_once_and_purges_its_content_after_30_days(backend: Backend) {
    let w = world(backend).await;
    let (app, bob, b) = (&w.app, &w.bob, &w.b);
    let member = app.new_user().await;
    join(app, bob, &member, b, "Admin").await;
    assert_eq!(send(app, &member, Method::DELETE, &format!("/api/v1/workspaces/{b}"), None).await.0, 403);
    let (status, body) = send(app, bob, Method::DELETE, &format!("/api/v1/workspaces/{b}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["purge_after"].is_string());
    for user in [bob, &member] {
        assert_eq!(get(app, user, &format!("/api/v1/workspaces/{b}")).await.0, 404);
        assert_eq!(get(app, user, &format!("/api/v1/workspaces/{b}/projects")).await.0, 404);
    }
    let (_, mine) = get(app, bob, "/api/v1/workspaces").await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "only C is left: {mine}");
    app.run_outbox().await;
    assert_eq!(count(app, "projects", b).await, 1, "kept during the grace period");
    app.clock.advance(chrono::Duration::days(30) + chrono::Duration::minutes(1));
    app.run_outbox().await;
    for table in ["workspaces", "memberships", "projects", "activity", "roles", "invitations", "workspace_grants"] {
        assert_eq!(count(app, table, b).await, 0, "{table}");
    }
    assert_eq!(count(app, "projects", &w.a).await, 1, "other workspaces keep theirs");
}

async fn an_admin_ends_every_session_of_a_member_but_not_of_a_higher_role(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [admin, member] = joined(app, alice, a, ["Admin", "Member"]).await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .json(&json!({"email": member.email, "password": testkit::TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = testkit::session_cookie(&resp).expect("a session cookie");
    let me = |cookie: String| async move {
        app.client.get(app.url("/api/v1/me")).header("cookie", cookie).send().await.unwrap().status().as_u16()
    };
    assert_eq!(me(cookie.clone()).await, 200);
    let path = |user: uuid::Uuid| format!("/api/v1/workspaces/{a}/members/{user}/sessions/revoke");
    let (status, body) = post(app, &admin, &path(alice.id), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "an admin cannot end an owner's sessions");
    let (status, body) = post(app, &member, &path(admin.id), json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(app, &admin, &path(member.id), json!({})).await;
    let ended = (body["sessions"].as_u64(), body["token_families"].as_u64(), body["revoked"].as_u64());
    assert_eq!((status, ended), (200, (Some(1), Some(1), Some(2))), "the session and the token family: {body}");
    assert_eq!(me(cookie).await, 401, "the session ends on the next request");
    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/token/refresh"))
        .json(&json!({"refresh_token": member.refresh_token}))
        .send()
        .await
        .unwrap();
    let status = refreshed.status().as_u16();
    let body: Value = refreshed.json().await.unwrap();
    assert_eq!((status, body["code"].as_str()), (401, Some("token_family_ended")), "refresh tokens are revoked too");
    assert_eq!(
        app.call(&member, reqwest::Method::GET, "/api/v1/me").send().await.unwrap().status(),
        401,
        "and access tokens"
    );
}

async fn membership_changes_are_in_the_workspace_audit_trail_with_actor_and_request_id(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [member] = joined(app, alice, a, ["Member"]).await;
    let resp = app
        .call(alice, Method::PATCH, &format!("/api/v1/workspaces/{a}/members/{}", member.id))
        .header("x-request-id", "audit-req-1")
        .json(&json!({"role": "Manager"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A refused change leaves its refusal, and no change record.
    let path = format!("/api/v1/workspaces/{a}/members/{}", alice.id);
    assert_eq!(send(app, &member, Method::PATCH, &path, Some(json!({"role": "Member"}))).await.0, 403);

    let (status, page) = get(app, alice, &format!("/api/v1/workspaces/{a}/audit-events?limit=200")).await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in
        ["workspace.created", "invitation.created", "invitation.accepted", "member.role_changed", "access.denied"]
    {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| **a == "member.role_changed").count(), 1, "{actions:?}");
    let changed = events.iter().find(|e| e["action"] == "member.role_changed").unwrap();
    assert_eq!(changed["category"], "membership");
    assert_eq!(changed["actor_id"], alice.id.to_string());
    assert_eq!(changed["request_id"], "audit-req-1");
    assert_eq!(changed["payload"]["to"], "Manager");
    assert_eq!(changed["payload"]["from"], "Member");
    // Newest first, each linked to the one before.
    for pair in events.windows(2) {
        assert_eq!(pair[0]["seq"].as_i64().unwrap(), pair[1]["seq"].as_i64().unwrap() + 1);
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
    }
    assert!(page["next_before"].is_null(), "one page holds it all");

    // Filters and pages.
    let (_, denied) = get(app, alice, &format!("/api/v1/workspaces/{a}/audit-events?category=authorization")).await;
    let denied = denied["events"].as_array().unwrap().clone();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["actor_id"], member.id.to_string());
    assert_eq!(denied[0]["payload"]["required"], "members.update_role");
    let (_, first) = get(app, alice, &format!("/api/v1/workspaces/{a}/audit-events?limit=2")).await;
    let before = first["next_before"].as_i64().expect("a cursor to the next page");
    let (_, second) = get(app, alice, &format!("/api/v1/workspaces/{a}/audit-events?limit=2&before={before}")).await;
    assert_eq!(second["events"][0]["seq"].as_i64().unwrap(), before - 1);
}

async fn only_audit_readers_of_the_workspace_read_its_trail(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let [member] = joined(app, alice, a, ["Member"]).await;
    let trail = format!("/api/v1/workspaces/{a}/audit-events");
    assert_eq!(get(app, &member, &trail).await.0, 403, "a Member lacks audit.read");
    assert_eq!(get(app, &w.bob, &trail).await.0, 404, "another workspace's owner does not see it exists");
    let (status, body) = get(app, alice, &format!("{trail}?category=gossip")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_parameter")));
    // B's own trail holds none of A's events.
    let (_, b_trail) = get(app, &w.bob, &format!("/api/v1/workspaces/{}/audit-events?limit=200", w.b)).await;
    let text = b_trail.to_string();
    assert!(!text.contains(&alice.id.to_string()), "{text}");
}

async fn each_user_reads_their_own_authentication_events_and_nobody_elses(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, bob) = (&w.app, &w.alice, &w.bob);
    let (status, mine) = get(app, alice, "/api/v1/me/security-events").await;
    assert_eq!(status, 200, "{mine}");
    let events = mine["events"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["auth.signup", "auth.email_verified", "auth.signin_succeeded"] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    assert!(events.iter().all(|e| e["actor_id"] == alice.id.to_string() && e["category"] == "authentication"));
    let (_, theirs) = get(app, bob, "/api/v1/me/security-events").await;
    assert!(theirs["events"].as_array().unwrap().iter().all(|e| e["actor_id"] == bob.id.to_string()));
}

async fn bad_input_gets_a_clear_4xx_with_a_stable_code(backend: Backend) {
    let w = world(backend).await;
    let (app, alice, a) = (&w.app, &w.alice, &w.a);
    let cases = [
        (Method::POST, "/api/v1/workspaces".to_owned(), json!({"name": "  "}), 422, "invalid_value"),
        (
            Method::POST,
            format!("/api/v1/workspaces/{a}/projects"),
            json!({"name": "x".repeat(201)}),
            422,
            "invalid_value",
        ),
        (Method::POST, format!("/api/v1/workspaces/{a}/projects"), json!({"nom": "x"}), 400, "invalid_body"),
        (
            Method::POST,
            format!("/api/v1/workspaces/{a}/invitations"),
            json!({"email": "not an address", "role": "Member"}),
            400,
            "invalid_email",
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/{a}/invitations"),
            json!({"email": testkit::unique_email(), "role": "Emperor"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/{a}/roles"),
            json!({"name": "Odd", "level": 10, "permissions": ["Projects..Read"]}),
            422,
            "invalid_value",
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/{a}/roles"),
            json!({"name": "owner", "level": 10, "permissions": []}),
            409,
            "conflict",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, resp) = send(app, alice, method.clone(), &path, Some(body)).await;
        assert_eq!((got, resp["code"].as_str()), (status, Some(code)), "{method} {path}: {resp}");
    }
    assert_eq!(get(app, alice, "/api/v1/workspaces/not-a-uuid").await.0, 400);
}

// Connections: write-only secrets, read-only by default, guarded tests.

fn slack_connection(token: &str) -> Value {
    json!({"provider": "slack", "name": "Team bot", "secret": {"bot_token": token}})
}

async fn connections_keep_their_secrets_write_only_and_start_read_only(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice, "Connected").await;
    let [manager] = joined(&app, &alice, &ws, ["Manager"]).await;
    let stranger = app.new_user().await;
    let token = "xoxb-1234-5678-write-only-secret";
    let base = format!("/api/v1/workspaces/{ws}/connections");
    let (status, created) = post(&app, &alice, &base, slack_connection(token)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret_hint"], "…cret");
    assert_eq!(created["scopes"], json!(["channels:history", "channels:read", "users:read"]));
    assert_eq!(created["write_enabled"], false);
    assert!(created.get("secret").is_none());
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, listed) = get(&app, &manager, &base).await;
    assert_eq!(status, 200, "connections.read lists");
    assert_eq!(listed[0]["id"], id.as_str());
    for body in [&created, &listed] {
        assert!(!body.to_string().contains("write-only-secret"), "{body}");
    }
    // Write scopes only through the explicit call; bad input has its own codes.
    let mut with_write = slack_connection(token);
    with_write["scopes"] = json!(["channels:read", "chat:write"]);
    let (status, body) = post(&app, &alice, &base, with_write).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("write_scope_not_enabled")), "{body}");
    let (status, body) = post(
        &app,
        &alice,
        &base,
        json!({"provider": "slack", "name": "x", "secret": {"bot_token": token, "extra": "x"}}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("unknown_field")), "{body}");
    let (status, body) = post(&app, &alice, &base, json!({"provider": "s3", "name": "x", "config": {"bucket": "169.254.169.254", "region": "us-east-1"}, "secret": {"access_key_id": "a", "secret_access_key": "b"}})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_field")), "{body}");
    // connections.manage is needed to change anything; a stranger sees nothing.
    let (status, _) = post(&app, &manager, &base, slack_connection(token)).await;
    assert_eq!(status, 403);
    let (status, _) =
        send(&app, &manager, Method::PUT, &format!("{base}/{id}/scopes"), Some(json!({"scopes": ["chat:write"]})))
            .await;
    assert_eq!(status, 403);
    let (status, _) = get(&app, &stranger, &format!("{base}/{id}")).await;
    assert_eq!(status, 404);
    let (status, body) = send(
        &app,
        &alice,
        Method::PUT,
        &format!("{base}/{id}/scopes"),
        Some(json!({"scopes": ["channels:read", "chat:write"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["write_enabled"], true);
    let (status, body) = send(
        &app,
        &alice,
        Method::PUT,
        &format!("{base}/{id}/secret"),
        Some(json!({"secret": {"bot_token": "xoxb-9999-rotated-secret-abcd"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret_hint"], "…abcd");
    let (_, trail) = get(&app, &alice, &format!("/api/v1/workspaces/{ws}/audit-events?category=secret")).await;
    let actions: Vec<&str> =
        trail["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["connection.created", "connection.write_enabled", "connection.secret_rotated"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(!trail.to_string().contains("secret-abcd") && !trail.to_string().contains("write-only-secret"));
    let (status, _) = send(&app, &alice, Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = get(&app, &alice, &format!("{base}/{id}")).await;
    assert_eq!(status, 404);
}

/// The provider's name resolves (by a resolver standing in for DNS, since no DNS server for
/// slack.com can run here) to a loopback listener, or Google's token endpoint to the cloud
/// metadata address: the test is refused after resolution, nothing connects, and the outcome
/// is stored.
async fn connection_tests_refuse_provider_names_that_resolve_to_private_addresses(backend: Backend) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let trap = listener.local_addr().unwrap();
    let resolver = egress::StaticResolver::new()
        .with("slack.com", [trap])
        .with("oauth2.googleapis.com", ["169.254.169.254:443".parse().unwrap()]);
    let app = testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |_| {},
        |state| {
            state.egress = api::Egress { resolver: std::sync::Arc::new(resolver), exceptions: Vec::new() };
        },
    )
    .await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice, "Probed").await;
    let base = format!("/api/v1/workspaces/{ws}/connections");
    let (_, slack) = post(&app, &alice, &base, slack_connection("xoxb-1234-5678-probe-secret")).await;
    let (_, google) = post(
        &app,
        &alice,
        &base,
        json!({"provider": "google", "name": "Drive", "secret": {"access_token": "ya29.a0-probe-token-value"}}),
    )
    .await;
    for conn in [&slack, &google] {
        let id = conn["id"].as_str().unwrap();
        let (status, result) = post(&app, &alice, &format!("{base}/{id}/test"), json!({})).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["ok"], false);
        assert_eq!(result["outcome"], "egress_forbidden_address", "{result}");
        let (_, stored) = get(&app, &alice, &format!("{base}/{id}")).await;
        assert_eq!(stored["last_test_outcome"], "egress_forbidden_address");
    }
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected to the trap"
    );
}

async fn activity_ingestion_strips_pii_drops_what_it_must_and_reports_every_stage(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let ws = workspace(&app, &alice, "Activity").await;
    let path = format!("/api/v1/workspaces/{ws}/activity");
    let capture = |app_name: &str, title: &str, body: &str| json!({"app": app_name, "title": title, "body": body});
    let long_title = "t".repeat(300);
    let (status, stored) =
        post(&app, &alice, &path, capture("Mail", &long_title, "write to jane.doe@example.com today")).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["stored"], true);
    assert_eq!(stored["activity"]["body"], "write to [EMAIL] today");
    assert_eq!(stored["activity"]["title"].as_str().unwrap().chars().count(), 200);
    let stages: Vec<(&str, &str)> = stored["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            ("sensitive_app", "kept"),
            ("private_window", "kept"),
            ("time_window", "kept"),
            ("pii_strip", "altered"),
            ("title_cut", "altered"),
            ("text_cut", "kept"),
            ("dedup", "kept")
        ]
    );
    assert!(!stored.to_string().contains("jane.doe"), "{stored}");
    // The same content again, a sensitive application, a private window: dropped, each at its stage.
    let last_stage = |body: &Value| {
        let stages = body["stages"].as_array().unwrap();
        let last = stages.last().unwrap();
        (last["stage"].as_str().unwrap().to_owned(), last["outcome"].as_str().unwrap().to_owned())
    };
    let (status, again) =
        post(&app, &alice, &path, capture("Mail", &long_title, "write to jane.doe@example.com today")).await;
    assert_eq!((status, again["stored"].as_bool()), (200, Some(false)), "{again}");
    assert_eq!(last_stage(&again), ("dedup".to_owned(), "dropped".to_owned()));
    let (status, vault) = post(&app, &alice, &path, capture("1Password 8", "Vault", "hunter2")).await;
    assert_eq!(status, 200);
    assert_eq!(last_stage(&vault), ("sensitive_app".to_owned(), "dropped".to_owned()));
    let mut private = capture("Browser", "News", "reading");
    private["private_window"] = json!(true);
    let (status, private) = post(&app, &alice, &path, private).await;
    assert_eq!(status, 200);
    assert_eq!(last_stage(&private), ("private_window".to_owned(), "dropped".to_owned()));
    // A window that excludes the current time (one minute long, twelve hours away from now).
    let now = testkit::storage::Clock::now(app.clock.as_ref());
    let start = (now + chrono::Duration::hours(12)).format("%H:%M").to_string();
    let end = (now + chrono::Duration::hours(12) + chrono::Duration::minutes(1)).format("%H:%M").to_string();
    let all_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let windows = json!({"utc_offset_minutes": 0, "windows": [{"days": all_days, "start": start, "end": end}]});
    let windows_path = format!("/api/v1/workspaces/{ws}/activity-windows");
    let (status, set) = send(&app, &alice, Method::PUT, &windows_path, Some(windows.clone())).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(get(&app, &alice, &windows_path).await.1, windows);
    let (status, outside) = post(&app, &alice, &path, capture("Editor", "Notes", "a new note")).await;
    assert_eq!(status, 200);
    assert_eq!(last_stage(&outside), ("time_window".to_owned(), "dropped".to_owned()));
    let bad = json!({"utc_offset_minutes": 0, "windows": [{"days": ["someday"], "start": "09:00", "end": "17:00"}]});
    let (status, body) = send(&app, &alice, Method::PUT, &windows_path, Some(bad)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_value")), "{body}");
    let (_, listed) = get(&app, &alice, &path).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "only the first capture was stored: {listed}");
}

async fn pii_redact_answers_findings_in_characters_for_a_signed_in_caller_only(backend: Backend) {
    let app = testkit::spawn_app(backend).await;
    let alice = app.new_user().await;
    let text = "Café: mail jane@example.com or call +44 20 7946 0958";
    let (status, body) = post(&app, &alice, "/api/v1/pii/redact", json!({"text": text})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redacted"], "Café: mail [EMAIL] or call [PHONE_NUMBER]");
    assert_eq!(body["findings"][0], json!({"kind": "email", "start": 11, "end": 27}));
    assert_eq!(body["findings"][1]["kind"], "phone_number");
    let (status, masked) =
        post(&app, &alice, "/api/v1/pii/redact", json!({"text": "jane@example.com", "mode": "mask"})).await;
    assert_eq!(status, 200);
    assert!(!masked["redacted"].as_str().unwrap().contains("jane"), "{masked}");
    let anonymous = app.client.post(app.url("/api/v1/pii/redact")).json(&json!({"text": text})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let huge = "a".repeat(300 * 1024);
    let (status, body) = post(&app, &alice, "/api/v1/pii/redact", json!({"text": huge})).await;
    assert!(status == 422 || status == 413, "{status} {body}");
    if status == 422 {
        assert_eq!(body["code"], "invalid_value", "{body}");
    }
}

backend_tests!(
    activity_ingestion_strips_pii_drops_what_it_must_and_reports_every_stage,
    pii_redact_answers_findings_in_characters_for_a_signed_in_caller_only,
    connections_keep_their_secrets_write_only_and_start_read_only,
    connection_tests_refuse_provider_names_that_resolve_to_private_addresses,
    a_principal_of_workspace_a_reaches_nothing_of_workspace_b,
    roles_decide_what_each_member_may_do_with_projects,
    refused_attempts_are_recorded_with_endpoint_user_and_required_and_actual_permission,
    an_invitation_link_works_once_and_only_for_the_invited_address,
    nobody_invites_or_promotes_above_their_own_role_and_the_last_owner_stays,
    a_cross_workspace_grant_opens_exactly_its_permission_until_revoked,
    activity_is_private_to_its_user_even_from_the_workspace_owner,
    deleting_a_workspace_ends_access_at_once_and_purges_its_content_after_30_days,
    an_admin_ends_every_session_of_a_member_but_not_of_a_higher_role,
    bad_input_gets_a_clear_4xx_with_a_stable_code,
    membership_changes_are_in_the_workspace_audit_trail_with_actor_and_request_id,
    only_audit_readers_of_the_workspace_read_its_trail,
    each_user_reads_their_own_authentication_events_and_nobody_elses,
);
