//! Races: the same request from several clients at the same moment, through HTTP, on SQLite (one
//! writer at a time) and on PostgreSQL at READ COMMITTED as the runtime role, with Redis. Two
//! valid requests that collide — on a unique constraint, a conditional update, a count checked
//! before an insert — never get a 5xx; each place answers as decided for it: both succeed where
//! the operation is idempotent, one wins and the others get a stable 4xx where it is single use
//! or a real conflict, and a sign-up of a taken address looks exactly like the first (no user
//! enumeration). Afterwards the state read back through the API is the one a sequence of the
//! same requests would leave.
//!
//! Collision places not repeated here: concurrent uses of one password-reset token
//! (`identity.rs`), copies of one inbound webhook event (`webhooks.rs`), two first sign-ins of
//! one provider identity (`oidc.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use testkit::receiver::Receiver;
use testkit::{backend_tests, mails_to, unique_email, Backend, TestApp, TestUser, TEST_PASSWORD};

/// How many clients send the same request at once.
const COPIES: usize = 8;

/// The server with the per-client and authentication throttles off: every copy of a race comes
/// from one loopback address within a second (the throttles have their own tests).
async fn app(backend: Backend) -> TestApp {
    app_adjusted(backend, |_| {}).await
}

async fn app_adjusted(backend: Backend, adjust: impl FnOnce(&mut api::AppState)) -> TestApp {
    testkit::spawn_app_adjusted(
        backend,
        auth::SignupMode::Open,
        |http| http.rate_limit_per_client_per_sec = 100_000,
        |state| {
            state.auth_attempts_per_minute = 0;
            adjust(state);
        },
    )
    .await
}

/// One answer: its status and JSON body (`null` when there is none).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    /// The stable error code of a 4xx or 5xx, `""` for a success.
    fn code(&self) -> &str {
        if self.status >= 400 {
            self.body["code"].as_str().unwrap_or("?")
        } else {
            ""
        }
    }
}

/// Sends every request at the same moment, each from its own task (so both runtime threads and
/// separate connections carry them), and checks that none was answered with a server error. The
/// answers come in the order of the requests.
async fn at_once(requests: Vec<RequestBuilder>) -> Vec<Answer> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let resp = request.send().await.expect("an answer");
            let status = resp.status().as_u16();
            (i, Answer { status, body: resp.json().await.unwrap_or(Value::Null) })
        });
    }
    let mut answers = tasks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    let answers: Vec<Answer> = answers.into_iter().map(|(_, a)| a).collect();
    assert!(answers.iter().all(|a| a.status < 500), "a collision is never a server error: {answers:#?}");
    answers
}

/// [`COPIES`] of one request.
fn copies(request: impl Fn() -> RequestBuilder) -> Vec<RequestBuilder> {
    (0..COPIES).map(|_| request()).collect()
}

/// How many answers had each (status, code).
fn tally(answers: &[Answer]) -> BTreeMap<(u16, String), usize> {
    let mut tally = BTreeMap::new();
    for a in answers {
        *tally.entry((a.status, a.code().to_owned())).or_insert(0) += 1;
    }
    tally
}

/// The tally a test expects: (status, code, how many).
fn expected(outcomes: &[(u16, &str, usize)]) -> BTreeMap<(u16, String), usize> {
    outcomes.iter().filter(|(_, _, n)| *n > 0).map(|(s, c, n)| ((*s, (*c).to_owned()), *n)).collect()
}

fn post(app: &TestApp, path: &str, body: Value) -> RequestBuilder {
    app.client.post(app.url(path)).json(&body)
}

fn as_user(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> RequestBuilder {
    let request = app.call(user, method, path);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
}

async fn ok(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, body) = app.json(user, method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {body}");
    body
}

/// The actions of `category` in the workspace's audit trail, newest first.
async fn audit_actions(app: &TestApp, owner: &TestUser, ws: &str, category: &str) -> Vec<String> {
    let path = format!("/api/v1/workspaces/{ws}/audit-events?category={category}&limit=200");
    let page = ok(app, owner, Method::GET, &path, None).await;
    page["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

fn occurrences(actions: &[String], action: &str) -> usize {
    actions.iter().filter(|a| *a == action).count()
}

/// The token in the newest mail to `to` whose subject contains `subject`.
fn mailed_token(to: &str, subject: &str) -> String {
    let mail = mails_to(to).into_iter().rev().find(|m| m.subject.contains(subject)).expect("the mail");
    mail.link_token().expect("a token in the link")
}

/// Invites `email` to `ws` with `role`; the token from the invitation mail.
async fn invite(app: &TestApp, inviter: &TestUser, ws: &str, email: &str, role: &str) -> String {
    let path = format!("/api/v1/workspaces/{ws}/invitations");
    ok(app, inviter, Method::POST, &path, Some(json!({"email": email, "role": role}))).await;
    app.run_outbox().await;
    // The newest invitation mail for this role (an address may hold several invitations).
    let mail = mails_to(email)
        .into_iter()
        .rev()
        .find(|m| m.subject.contains("invited") && m.body.contains(&format!(" as {role}.")))
        .expect("an invitation mail");
    mail.link_token().expect("a token in the invitation link")
}

async fn members(app: &TestApp, owner: &TestUser, ws: &str) -> Vec<Value> {
    ok(app, owner, Method::GET, &format!("/api/v1/workspaces/{ws}/members"), None).await.as_array().unwrap().clone()
}

// Identity.

/// `users.email` is unique. Sign-up answers alike whether or not the address has an account
/// (OWASP ASVS 5.0 V6.3.8): a sign-up that loses the race for the address is the "already has an
/// account" case — 202, and the owner is mailed a notice — never a 409 that would reveal it.
async fn eight_sign_ups_of_one_address_at_once_all_answer_202_and_make_one_account(backend: Backend) {
    let app = app(backend).await;
    let email = unique_email();
    let answers =
        at_once(copies(|| post(&app, "/api/v1/auth/signup", json!({"email": email, "password": TEST_PASSWORD})))).await;
    assert_eq!(tally(&answers), expected(&[(202, "", COPIES)]), "{answers:#?}");
    assert!(answers.iter().all(|a| a.body == json!({"status": "accepted"})), "{answers:#?}");

    app.run_outbox().await;
    let mails = mails_to(&email);
    let confirm = mails.iter().filter(|m| m.subject.contains("Confirm")).count();
    let notices = mails.iter().filter(|m| m.subject.contains("tried to sign up")).count();
    assert_eq!((confirm, notices), (1, COPIES - 1), "one account, the rest told it exists: {mails:#?}");
    let token = mailed_token(&email, "Confirm");
    assert_eq!(post(&app, "/api/v1/auth/verify-email", json!({"token": token})).send().await.unwrap().status(), 204);
    let resp =
        post(&app, "/api/v1/auth/token", json!({"email": email, "password": TEST_PASSWORD})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let pair: Value = resp.json().await.unwrap();
    let me: Value = app
        .client
        .get(app.url("/api/v1/me"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
    let events: Value = app
        .client
        .get(app.url("/api/v1/me/security-events?limit=200"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.signup")
        .map(|e| e["payload"]["detail"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "created").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "address_in_use").count(), COPIES - 1, "{outcomes:?}");
}

/// One-time tokens are consumed by one conditional update: the link verifies once, the other
/// uses are `invalid_token`, as a second use after it would be.
async fn eight_uses_of_one_verification_link_at_once_verify_once_and_refuse_the_rest(backend: Backend) {
    let app = app(backend).await;
    let email = unique_email();
    let signup = post(&app, "/api/v1/auth/signup", json!({"email": email, "password": TEST_PASSWORD}));
    assert_eq!(signup.send().await.unwrap().status(), 202);
    app.run_outbox().await;
    let token = mailed_token(&email, "Confirm");
    let answers = at_once(copies(|| post(&app, "/api/v1/auth/verify-email", json!({"token": token})))).await;
    assert_eq!(tally(&answers), expected(&[(204, "", 1), (400, "invalid_token", COPIES - 1)]), "{answers:#?}");
    let resp =
        post(&app, "/api/v1/auth/token", json!({"email": email, "password": TEST_PASSWORD})).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the address is verified");
    let pair: Value = resp.json().await.unwrap();
    let events: Value = app
        .client
        .get(app.url("/api/v1/me/security-events?limit=200"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verified = events["events"].as_array().unwrap().iter().filter(|e| e["action"] == "auth.email_verified");
    assert_eq!(verified.count(), 1, "{events}");
}

/// Refresh tokens rotate; a used one presented again within the reuse grace
/// (`auth::service::REFRESH_REUSE_GRACE`, 10 s: RFC 9700 §4.14.2, the same client racing itself)
/// gets a fresh pair of the same family. So every concurrent presentation gets a pair, and once
/// the grace is over a late presentation is reuse: the whole family, every successor included,
/// is revoked.
async fn eight_refreshes_with_one_token_at_once_each_get_a_pair_of_its_family_until_reuse_revokes_them_all(
    backend: Backend,
) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let refresh = || post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": user.refresh_token}));
    let answers = at_once(copies(refresh)).await;
    assert_eq!(tally(&answers), expected(&[(200, "", COPIES)]), "{answers:#?}");
    let mut successors: Vec<String> =
        answers.iter().map(|a| a.body["refresh_token"].as_str().unwrap().to_owned()).collect();
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), COPIES, "each answer is a new pair");
    assert!(!successors.contains(&user.refresh_token));
    for a in &answers {
        let me = app.client.get(app.url("/api/v1/me")).bearer_auth(a.body["access_token"].as_str().unwrap());
        assert_eq!(me.send().await.unwrap().status(), 200);
    }

    app.clock.advance(chrono::Duration::seconds(11));
    let late = refresh().send().await.unwrap();
    assert_eq!(late.status(), 401);
    assert_eq!(late.json::<Value>().await.unwrap()["code"], "refresh_token_reused");
    let answers = at_once(
        successors
            .iter()
            .map(|token| post(&app, "/api/v1/auth/token/refresh", json!({"refresh_token": token})))
            .collect(),
    )
    .await;
    assert_eq!(
        tally(&answers),
        expected(&[(401, "token_family_ended", COPIES)]),
        "the family is revoked: {answers:#?}"
    );
}

/// Ending a session that another request is ending too: one ends it, the others find nothing to
/// end — as a second request after it would.
async fn revoking_one_session_from_eight_requests_at_once_ends_it_once_and_the_rest_find_nothing(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let resp = post(&app, "/api/v1/auth/signin", json!({"email": user.email, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = testkit::session_cookie(&resp).expect("a session cookie");
    let session = resp.json::<Value>().await.unwrap()["session"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/auth/sessions/{session}");
    let answers = at_once(copies(|| as_user(&app, &user, Method::DELETE, &path, None))).await;
    assert_eq!(tally(&answers), expected(&[(204, "", 1), (404, "not_found", COPIES - 1)]), "{answers:#?}");
    let listed = ok(&app, &user, Method::GET, "/api/v1/auth/sessions", None).await;
    assert!(listed.as_array().unwrap().iter().all(|s| s["id"] != session.as_str()), "{listed}");
    let me = app.client.get(app.url("/api/v1/me")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(me.status(), 401, "the session ended");
    let events = ok(&app, &user, Method::GET, "/api/v1/me/security-events?limit=200", None).await;
    let revoked = events["events"].as_array().unwrap().iter().filter(|e| e["action"] == "auth.session_revoked");
    assert_eq!(revoked.count(), 1, "{events}");
}

/// `user_totp` has one row per user and confirming it is single use: of eight confirmations with
/// one code, one enables the factor and answers the recovery codes, which are then the live
/// ones; the others are `mfa_already_enabled`, as after it.
async fn eight_confirmations_of_one_totp_code_at_once_enable_the_factor_once_with_working_recovery_codes(
    backend: Backend,
) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let enrolment = ok(&app, &user, Method::POST, "/api/v1/me/mfa/totp", None).await;
    let code = app.totp_code(enrolment["secret"].as_str().unwrap());
    let answers = at_once(copies(|| {
        as_user(&app, &user, Method::POST, "/api/v1/me/mfa/totp/confirm", Some(json!({"code": code})))
    }))
    .await;
    assert_eq!(tally(&answers), expected(&[(200, "", 1), (409, "mfa_already_enabled", COPIES - 1)]), "{answers:#?}");
    let winner = answers.iter().find(|a| a.status == 200).unwrap();
    let recovery = winner.body["recovery_codes"][0].as_str().unwrap();
    let resp = post(&app, "/api/v1/auth/token", json!({"email": user.email, "password": TEST_PASSWORD}));
    let step: Value = resp.send().await.unwrap().json().await.unwrap();
    let challenge = step["challenge"].as_str().expect("a second factor is asked for");
    let resp = post(&app, "/api/v1/auth/token/mfa", json!({"challenge": challenge, "recovery_code": recovery}));
    assert_eq!(resp.send().await.unwrap().status(), 200, "the codes the winner was shown work");
}

// Workspaces, members, roles, invitations and grants.

/// Invitations are single use, even for the invited account itself (`tenancy::invitations`,
/// and the single-use checks of `tenancy.rs`): one acceptance joins, the other copies are the
/// same `invalid_token` as a later second use.
async fn eight_acceptances_of_one_invitation_at_once_join_once_and_refuse_the_rest_as_used(backend: Backend) {
    let app = app(backend).await;
    let (owner, invitee) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&owner, "Invited").await;
    let token = invite(&app, &owner, &ws, &invitee.email, "Member").await;
    let accept = json!({"workspace_id": ws, "token": token});
    let answers =
        at_once(copies(|| as_user(&app, &invitee, Method::POST, "/api/v1/invitations/accept", Some(accept.clone()))))
            .await;
    assert_eq!(tally(&answers), expected(&[(200, "", 1), (400, "invalid_token", COPIES - 1)]), "{answers:#?}");
    let joined: Vec<Value> =
        members(&app, &owner, &ws).await.into_iter().filter(|m| m["user_id"] == invitee.id.to_string()).collect();
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["role"], "Member");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "invitation.accepted"), 1);
}

/// `memberships` has one row per (workspace, user): two invitations of one address accepted at
/// once make one membership; the other acceptance is a 409 `conflict` and its invitation stays
/// pending, as it would after the first.
async fn two_invitations_of_one_address_accepted_at_once_make_one_membership(backend: Backend) {
    let app = app(backend).await;
    let (owner, invitee) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&owner, "Twice invited").await;
    let as_member = invite(&app, &owner, &ws, &invitee.email, "Member").await;
    let as_manager = invite(&app, &owner, &ws, &invitee.email, "Manager").await;
    let answers = at_once(
        [as_member, as_manager]
            .iter()
            .map(|token| {
                let body = json!({"workspace_id": ws, "token": token});
                as_user(&app, &invitee, Method::POST, "/api/v1/invitations/accept", Some(body))
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&answers), expected(&[(200, "", 1), (409, "conflict", 1)]), "{answers:#?}");
    let role = answers.iter().find(|a| a.status == 200).unwrap().body["role"].clone();
    let joined: Vec<Value> =
        members(&app, &owner, &ws).await.into_iter().filter(|m| m["user_id"] == invitee.id.to_string()).collect();
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["role"], role);
    let pending = ok(&app, &owner, Method::GET, &format!("/api/v1/workspaces/{ws}/invitations"), None).await;
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1, "the losing invitation is still pending: {pending:?}");
    assert_ne!(pending[0]["role"], role);
}

/// Custom role names are unique per workspace, case-insensitively (`roles_tenant_name`): one
/// creation wins, the others are a 409 `conflict`, as a later duplicate is.
async fn eight_roles_of_one_name_at_once_create_one_and_answer_the_rest_409_conflict(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Roles").await;
    let path = format!("/api/v1/workspaces/{ws}/roles");
    let names = ["Auditor", "auditor", "AUDITOR", "AuDiToR", "Auditor", "auditor", "AUDITOR", "aUDITOR"];
    let answers = at_once(
        names
            .iter()
            .map(|name| {
                let role = json!({"name": name, "level": 30, "permissions": ["audit.read"]});
                as_user(&app, &owner, Method::POST, &path, Some(role))
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&answers), expected(&[(201, "", 1), (409, "conflict", COPIES - 1)]), "{answers:#?}");
    let roles = ok(&app, &owner, Method::GET, &path, None).await;
    let auditors =
        roles.as_array().unwrap().iter().filter(|r| r["name"].as_str().unwrap().eq_ignore_ascii_case("auditor"));
    assert_eq!(auditors.count(), 1, "{roles}");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "role.created"), 1);
}

/// Giving a member the role they are being given by a concurrent request is no conflict: every
/// copy answers the role, and the change is recorded once. Removing them from eight requests
/// removes them once; the others find no such member (404), as a removal after it would.
async fn eight_identical_role_changes_all_succeed_and_eight_removals_remove_the_member_once(backend: Backend) {
    let app = app(backend).await;
    let (owner, member) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&owner, "Team").await;
    app.join(&owner, &member, &ws, "Member").await;
    let path = format!("/api/v1/workspaces/{ws}/members/{}", member.id);
    let answers =
        at_once(copies(|| as_user(&app, &owner, Method::PATCH, &path, Some(json!({"role": "Manager"}))))).await;
    assert_eq!(tally(&answers), expected(&[(200, "", COPIES)]), "{answers:#?}");
    assert!(answers.iter().all(|a| a.body["name"] == "Manager"), "{answers:#?}");
    let listed = members(&app, &owner, &ws).await;
    assert!(listed.iter().any(|m| m["user_id"] == member.id.to_string() && m["role"] == "Manager"), "{listed:?}");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "member.role_changed"), 1);

    let answers = at_once(copies(|| as_user(&app, &owner, Method::DELETE, &path, None))).await;
    assert_eq!(tally(&answers), expected(&[(204, "", 1), (404, "not_found", COPIES - 1)]), "{answers:#?}");
    assert!(members(&app, &owner, &ws).await.iter().all(|m| m["user_id"] != member.id.to_string()));
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "member.removed"), 1);
}

/// The last-owner rule holds under a race: two owners demoting each other at once leave exactly
/// one owner; the loser is refused (`last_owner`, or `forbidden` when it already lost its own
/// role before its request began).
async fn two_owners_demoting_each_other_at_once_leave_the_workspace_one_owner(backend: Backend) {
    let app = app(backend).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let ws = app.workspace(&alice, "Two owners").await;
    app.join(&alice, &bob, &ws, "Owner").await;
    let demote = |actor: &TestUser, target: &TestUser| {
        let path = format!("/api/v1/workspaces/{ws}/members/{}", target.id);
        as_user(&app, actor, Method::PATCH, &path, Some(json!({"role": "Member"})))
    };
    let answers = at_once(vec![demote(&alice, &bob), demote(&bob, &alice)]).await;
    let refused = tally(&answers).get(&(409, "last_owner".to_owned())).copied().unwrap_or(0)
        + tally(&answers).get(&(403, "forbidden".to_owned())).copied().unwrap_or(0);
    assert_eq!((answers.iter().filter(|a| a.status == 200).count(), refused), (1, 1), "{answers:#?}");
    let owner = if answers[0].status == 200 { &alice } else { &bob };
    let owners: Vec<Value> = members(&app, owner, &ws).await.into_iter().filter(|m| m["role"] == "Owner").collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0]["user_id"], owner.id.to_string());
}

/// Grants have no unique constraint; creating the grant that already exists (same grantee, same
/// permission, not revoked) is idempotent: every copy answers the one grant, so revoking it
/// really ends the access. Revoking it from eight requests revokes it once; the others find no
/// grant to revoke (404), as a revocation after it would.
async fn eight_identical_grants_at_once_make_one_grant_and_eight_revocations_revoke_it_once(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Granting").await;
    let grantee = app.workspace(&owner, "Grantee").await;
    let path = format!("/api/v1/workspaces/{ws}/grants");
    let grant = json!({"grantee_workspace_id": grantee, "permission": "projects.read"});
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &path, Some(grant.clone())))).await;
    assert_eq!(tally(&answers), expected(&[(201, "", COPIES)]), "{answers:#?}");
    let id = answers[0].body["id"].as_str().unwrap().to_owned();
    assert!(answers.iter().all(|a| a.body["id"] == id.as_str()), "every copy answers the one grant: {answers:#?}");
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "grant.created"), 1);

    let revoke = format!("{path}/{id}");
    let answers = at_once(copies(|| as_user(&app, &owner, Method::DELETE, &revoke, None))).await;
    assert_eq!(tally(&answers), expected(&[(204, "", 1), (404, "not_found", COPIES - 1)]), "{answers:#?}");
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "membership").await, "grant.revoked"), 1);
}

/// Project names are not unique: eight creations of one name make eight projects. Deleting one
/// project, or one workspace, from eight requests deletes it once; the others find nothing (404).
async fn projects_of_one_name_are_all_created_and_a_project_or_workspace_deleted_at_once_goes_once(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Projects").await;
    let path = format!("/api/v1/workspaces/{ws}/projects");
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &path, Some(json!({"name": "Apollo"}))))).await;
    assert_eq!(tally(&answers), expected(&[(201, "", COPIES)]), "{answers:#?}");
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), COPIES);

    let one = format!("{path}/{}", answers[0].body["id"].as_str().unwrap());
    let answers = at_once(copies(|| as_user(&app, &owner, Method::DELETE, &one, None))).await;
    assert_eq!(tally(&answers), expected(&[(204, "", 1), (404, "not_found", COPIES - 1)]), "{answers:#?}");
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), COPIES - 1);

    let workspace = format!("/api/v1/workspaces/{ws}");
    let answers = at_once(copies(|| as_user(&app, &owner, Method::DELETE, &workspace, None))).await;
    assert_eq!(tally(&answers), expected(&[(200, "", 1), (404, "not_found", COPIES - 1)]), "{answers:#?}");
    assert_eq!(app.json(&owner, Method::GET, &workspace, None).await.0, 404);
    let mine = ok(&app, &owner, Method::GET, "/api/v1/workspaces", None).await;
    assert!(mine.as_array().unwrap().iter().all(|w| w["id"] != ws.as_str()), "{mine}");
}

/// Activity is de-duplicated against the user's stored records: eight captures of one content at
/// once store it once; the others are dropped at the de-duplication stage, as a later copy is.
async fn eight_identical_activity_captures_at_once_store_the_content_once(backend: Backend) {
    let app = app(backend).await;
    let user = app.new_user().await;
    let ws = app.workspace(&user, "Activity").await;
    let path = format!("/api/v1/workspaces/{ws}/activity");
    let capture = json!({"app": "editor", "title": "draft", "body": "the same words, captured eight times"});
    let answers = at_once(copies(|| as_user(&app, &user, Method::POST, &path, Some(capture.clone())))).await;
    assert_eq!(tally(&answers), expected(&[(201, "", 1), (200, "", COPIES - 1)]), "{answers:#?}");
    assert!(answers.iter().all(|a| a.body["stored"] == (a.status == 201)), "{answers:#?}");
    let listed = ok(&app, &user, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

// Keys, sealed secrets and webhooks.

/// A workspace's first data key (`tenant_keys`, one row per tenant, purpose and version) is made
/// by its first sealed write: eight sources created at once in a new workspace share one key, and
/// every source's sealed secret opens (each accepts a delivery signed with it).
async fn eight_webhook_sources_created_at_once_in_a_new_workspace_share_its_first_data_key(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Sealed").await;
    let secrets: Vec<webhooks::standard::Secret> =
        (0..COPIES).map(|_| webhooks::standard::Secret::generate(&mut rand::rngs::OsRng)).collect();
    let path = format!("/api/v1/workspaces/{ws}/webhook-sources");
    let answers = at_once(
        secrets
            .iter()
            .enumerate()
            .map(|(n, secret)| {
                let whsec = secrecy::ExposeSecret::expose_secret(&secret.to_whsec()).to_owned();
                let source = json!({"kind": "standard", "name": format!("Source {n}"), "secrets": [whsec]});
                as_user(&app, &owner, Method::POST, &path, Some(source))
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&answers), expected(&[(201, "", COPIES)]), "{answers:#?}");
    let t = testkit::storage::Clock::now(app.clock.as_ref());
    for (answer, secret) in answers.iter().zip(&secrets) {
        let id = webhooks::standard::MessageId::parse("msg_first_key").unwrap();
        let body = br#"{"type":"user.created"}"#;
        let signature = webhooks::standard::sign(std::slice::from_ref(secret), &id, t, body).unwrap();
        let resp = app
            .client
            .post(app.url(answer.body["delivery_path"].as_str().unwrap()))
            .header("content-type", "application/json")
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", t.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the source's sealed secret opens");
        assert_eq!(resp.json::<Value>().await.unwrap()["status"], "accepted");
    }
}

/// API key names are not unique, but a workspace holds at most `auth::api_keys::MAX_KEYS` (100)
/// keys: eight creations at once with four places left make four keys and four
/// `too_many_api_keys`, never 104 keys.
async fn eight_api_keys_at_once_never_take_a_workspace_past_its_cap(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Keys").await;
    let path = format!("/api/v1/workspaces/{ws}/api-keys");
    let cap = usize::try_from(auth::api_keys::MAX_KEYS).unwrap();
    for n in 0..cap - COPIES / 2 {
        let key = json!({"name": format!("seed {n}"), "scopes": ["projects.read"]});
        ok(&app, &owner, Method::POST, &path, Some(key)).await;
    }
    let key = json!({"name": "ci", "scopes": ["projects.read"]});
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &path, Some(key.clone())))).await;
    assert_eq!(
        tally(&answers),
        expected(&[(201, "", COPIES / 2), (400, "too_many_api_keys", COPIES / 2)]),
        "{answers:#?}"
    );
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), cap);
}

/// Revoking a key is idempotent (`auth::api_keys::revoke` answers a revoked key as it is): eight
/// revocations at once all answer the revoked key, and the revocation is recorded once.
async fn revoking_one_api_key_from_eight_requests_at_once_revokes_it_once(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Revoked key").await;
    let made = ok(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/workspaces/{ws}/api-keys"),
        Some(json!({"name": "ci", "scopes": ["projects.read"]})),
    )
    .await;
    let key = made["key"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/workspaces/{ws}/api-keys/{}/revoke", made["api_key"]["id"].as_str().unwrap());
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &path, None))).await;
    assert_eq!(tally(&answers), expected(&[(200, "", COPIES)]), "{answers:#?}");
    let revoked_at = answers[0].body["revoked_at"].as_str().expect("revoked").to_owned();
    assert!(answers.iter().all(|a| a.body["revoked_at"] == revoked_at.as_str()), "{answers:#?}");
    let refused = app
        .client
        .get(app.url(&format!("/api/v1/workspaces/{ws}/projects")))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a revoked key is refused");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "secret").await, "api_key.revoked"), 1);
}

/// A workspace has at most `webhooks::outbound::MAX_ENDPOINTS` (20) endpoints: eight
/// registrations at once with four places left make four endpoints and four
/// `too_many_endpoints`.
async fn eight_webhook_endpoints_at_once_never_take_a_workspace_past_its_cap(backend: Backend) {
    let app = app(backend).await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Endpoints").await;
    let path = format!("/api/v1/workspaces/{ws}/webhook-endpoints");
    let cap = usize::try_from(webhooks::outbound::MAX_ENDPOINTS).unwrap();
    let endpoint =
        |n: usize| json!({"url": format!("https://hooks.example.com/{n}"), "description": "", "event_types": ["*"]});
    for n in 0..cap - COPIES / 2 {
        ok(&app, &owner, Method::POST, &path, Some(endpoint(n))).await;
    }
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &path, Some(endpoint(cap))))).await;
    assert_eq!(
        tally(&answers),
        expected(&[(201, "", COPIES / 2), (400, "too_many_endpoints", COPIES / 2)]),
        "{answers:#?}"
    );
    let listed = ok(&app, &owner, Method::GET, &path, None).await;
    assert_eq!(listed.as_array().unwrap().len(), cap);
}

/// A replay queues one more attempt of a finished delivery; a delivery already queued again is
/// `delivery_pending`. Eight replays at once queue one attempt: the receiver gets the message
/// once more, not eight times.
async fn replaying_one_delivery_from_eight_requests_at_once_sends_it_once_more(backend: Backend) {
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    let app = app_adjusted(backend, move |state| {
        state.egress = api::Egress { resolver: Arc::new(egress::SystemResolver), exceptions: vec![addr] };
    })
    .await;
    let owner = app.new_user().await;
    let ws = app.workspace(&owner, "Replays").await;
    let made = ok(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/workspaces/{ws}/webhook-endpoints"),
        Some(json!({"url": receiver.url("/hook"), "description": "", "event_types": ["*"]})),
    )
    .await;
    let endpoint = made["endpoint"]["id"].as_str().unwrap();
    let test = format!("/api/v1/workspaces/{ws}/webhook-endpoints/{endpoint}/test");
    let delivery = ok(&app, &owner, Method::POST, &test, None).await["id"].as_str().unwrap().to_owned();
    app.run_outbox().await;
    assert_eq!(receiver.hooks().len(), 1);

    let replay = format!("/api/v1/workspaces/{ws}/webhook-deliveries/{delivery}/replay");
    let answers = at_once(copies(|| as_user(&app, &owner, Method::POST, &replay, None))).await;
    assert_eq!(tally(&answers), expected(&[(200, "", 1), (409, "delivery_pending", COPIES - 1)]), "{answers:#?}");
    app.run_outbox().await;
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2, "sent once more: {hooks:?}");
    let found =
        ok(&app, &owner, Method::GET, &format!("/api/v1/workspaces/{ws}/webhook-deliveries/{delivery}"), None).await;
    assert_eq!(found["delivery"]["status"], "delivered", "{found}");
    assert_eq!(found["attempts"].as_array().unwrap().len(), 2, "{found}");
    assert_eq!(occurrences(&audit_actions(&app, &owner, &ws, "webhook").await, "webhook_delivery.replayed"), 1);
}

backend_tests!(
    eight_sign_ups_of_one_address_at_once_all_answer_202_and_make_one_account,
    eight_uses_of_one_verification_link_at_once_verify_once_and_refuse_the_rest,
    eight_refreshes_with_one_token_at_once_each_get_a_pair_of_its_family_until_reuse_revokes_them_all,
    revoking_one_session_from_eight_requests_at_once_ends_it_once_and_the_rest_find_nothing,
    eight_confirmations_of_one_totp_code_at_once_enable_the_factor_once_with_working_recovery_codes,
    eight_acceptances_of_one_invitation_at_once_join_once_and_refuse_the_rest_as_used,
    two_invitations_of_one_address_accepted_at_once_make_one_membership,
    eight_roles_of_one_name_at_once_create_one_and_answer_the_rest_409_conflict,
    eight_identical_role_changes_all_succeed_and_eight_removals_remove_the_member_once,
    two_owners_demoting_each_other_at_once_leave_the_workspace_one_owner,
    eight_identical_grants_at_once_make_one_grant_and_eight_revocations_revoke_it_once,
    projects_of_one_name_are_all_created_and_a_project_or_workspace_deleted_at_once_goes_once,
    eight_identical_activity_captures_at_once_store_the_content_once,
    eight_webhook_sources_created_at_once_in_a_new_workspace_share_its_first_data_key,
    eight_api_keys_at_once_never_take_a_workspace_past_its_cap,
    revoking_one_api_key_from_eight_requests_at_once_revokes_it_once,
    eight_webhook_endpoints_at_once_never_take_a_workspace_past_its_cap,
    replaying_one_delivery_from_eight_requests_at_once_sends_it_once_more,
);
