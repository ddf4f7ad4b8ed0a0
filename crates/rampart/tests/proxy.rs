//! Clients behind a real reverse proxy: Debian's nginx in front of the real `rampart` binary,
//! which trusts nginx's address (127.0.0.1/32) and nothing else (`http.trusted_proxies`).
//!
//! Every address on the loopback network is 127.x, so clients are told apart by the local
//! address they connect from (127.0.0.2, 127.0.0.3, …; the whole of 127.0.0.0/8 is loopback on
//! Linux). nginx appends the address it saw to whatever the client sent (`X-Forwarded-For` on
//! one port, `Forwarded` on the other), and every client also sends a forged value of its own, so
//! a server that read the list from the left, or believed it from anyone, fails these tests.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::services::Nginx;

const PASSWORD: &str = "violet ocean ladder 42";
/// How long the test waits for a verification mail before failing.
const MAIL_DEADLINE: Duration = Duration::from_secs(60);

/// A `rampart serve` trusting only 127.0.0.1, with `attempts` sign-in attempts per address and
/// per account a minute, and an nginx in front of it.
struct Stack {
    server: support::Server,
    nginx: Nginx,
    _dir: tempfile::TempDir,
}

fn start(attempts: u32) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, _) = testkit::smtp_sink();
    let mut cmd = support::rampart(dir.path());
    cmd.env("RAMPART_ENV", "test")
        .env("RAMPART__AUTH__BCRYPT_COST", "10")
        .env("RAMPART__AUTH__ATTEMPTS_PER_MINUTE", attempts.to_string())
        // The coarse per-second limit is keyed the same way; out of the way here so that only
        // the per-minute sign-in throttle, with no timing in it, decides.
        .env("RAMPART__HTTP__RATE_LIMIT_PER_CLIENT_PER_SEC", "1000")
        .env("RAMPART__HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")
        .env("RAMPART__MAIL__SMTP_URL", smtp)
        .env("RAMPART__OUTBOX__POLL_INTERVAL_MS", "20");
    let server = support::serve(cmd).expect("rampart serve starts");
    let upstream = server.base_url.trim_start_matches("http://").parse().expect("the server's address");
    let nginx = Nginx::reverse_proxy(upstream);
    Stack { server, nginx, _dir: dir }
}

/// An HTTP client whose connections come from `local` (a loopback address).
fn client_from(local: &str) -> Client {
    let local: IpAddr = local.parse().unwrap();
    Client::builder().local_address(local).build().unwrap()
}

/// A password grant for an account that does not exist, with `forged` headers added: 401 while
/// the address has attempts left, 429 after.
async fn attempt(client: &Client, base: &str, forged: &[(&str, String)]) -> StatusCode {
    let mut req = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"email": testkit::unique_email(), "password": PASSWORD}));
    for (name, value) in forged {
        req = req.header(*name, value);
    }
    req.send().await.expect("an answer").status()
}

/// A different forged address for each call, so a server believing it would count each request
/// in a fresh bucket.
fn forged(n: usize) -> String {
    format!("198.51.100.{}", n + 1)
}

#[tokio::test]
async fn two_clients_behind_nginx_are_throttled_each_by_their_own_address() {
    const ATTEMPTS: usize = 3;
    let stack = start(ATTEMPTS as u32);
    for (base, header, first, second) in [
        (stack.nginx.url(), "x-forwarded-for", "127.0.0.2", "127.0.0.3"),
        (stack.nginx.forwarded_url(), "forwarded", "127.0.0.4", "127.0.0.5"),
    ] {
        let (first_client, second_client) = (client_from(first), client_from(second));
        let forge = |n| {
            let value = if header == "forwarded" { format!("for={}", forged(n)) } else { forged(n) };
            vec![(header, value)]
        };
        for n in 0..ATTEMPTS {
            let status = attempt(&first_client, &base, &forge(n)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{first} via {header}, attempt {n}");
        }
        let status = attempt(&first_client, &base, &forge(ATTEMPTS)).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{first} used its attempts; forged {header} values must not give it fresh buckets\n{}",
            stack.nginx.access_log()
        );
        // Behind the same proxy, another client has a bucket of its own, even when it claims
        // to be the first one.
        let claim = if header == "forwarded" { format!("for={first}") } else { first.to_owned() };
        let status = attempt(&second_client, &base, &[(header, claim)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{second} via {header} shares no bucket with {first}");
    }
}

#[tokio::test]
async fn a_direct_client_forging_forwarding_headers_is_throttled_by_its_own_address() {
    const ATTEMPTS: usize = 3;
    let stack = start(ATTEMPTS as u32);
    let direct = client_from("127.0.0.6");
    let both = |n| {
        vec![
            ("x-forwarded-for", forged(n)),
            ("forwarded", format!("for={}", forged(n))),
            // The trusted proxy's own address, the client another client's: neither believed.
            ("x-forwarded-for", "127.0.0.1".to_owned()),
        ]
    };
    for n in 0..ATTEMPTS {
        assert_eq!(attempt(&direct, &stack.server.base_url, &both(n)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attempt(&direct, &stack.server.base_url, &both(ATTEMPTS)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted peer's forwarding headers are ignored: its own address is counted"
    );
    // Its forged headers did not spend anyone else's attempts either: nginx's clients still pass.
    let behind = client_from("127.0.0.7");
    assert_eq!(attempt(&behind, &stack.nginx.url(), &[]).await, StatusCode::UNAUTHORIZED);
}

/// The one mail to `to`, waiting for the server's outbox to send it (polled, with a deadline).
async fn mail_to(to: &str) -> testkit::ReceivedMail {
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    loop {
        poll.tick().await;
        if let Some(mail) = testkit::mails_to(to).pop() {
            return mail;
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail to {to} within {MAIL_DEADLINE:?}");
    }
}

async fn post(client: &Client, url: String, body: Value, forged: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = client.post(url).json(&body);
    for (name, value) in forged {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("an answer");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sign_ins_through_nginx_are_audited_and_logged_with_the_clients_address() {
    let stack = start(10);
    let email = testkit::unique_email();
    let creds = json!({"email": email, "password": PASSWORD});
    let xff = [("x-forwarded-for", "198.51.100.77")];

    // Sign up, verify and sign in through nginx's X-Forwarded-For port from 127.0.0.8.
    let via_xff = client_from("127.0.0.8");
    let base = stack.nginx.url();
    let (status, _) = post(&via_xff, format!("{base}/api/v1/auth/signup"), creds.clone(), &xff).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = mail_to(&email).await.link_token().expect("a token in the verification link");
    let (status, _) = post(&via_xff, format!("{base}/api/v1/auth/verify-email"), json!({"token": token}), &xff).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, grant) = post(&via_xff, format!("{base}/api/v1/auth/token"), creds.clone(), &xff).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let access = grant["access_token"].as_str().unwrap().to_owned();

    // Again through the Forwarded port from 127.0.0.9, and directly from 127.0.0.10 (an
    // untrusted peer) claiming to be someone else in both headers.
    let forwarded = [("forwarded", "for=198.51.100.78")];
    let url = format!("{}/api/v1/auth/token", stack.nginx.forwarded_url());
    let (status, _) = post(&client_from("127.0.0.9"), url, creds.clone(), &forwarded).await;
    assert_eq!(status, StatusCode::OK);
    let both = [("x-forwarded-for", "198.51.100.79"), ("forwarded", "for=198.51.100.79")];
    let url = format!("{}/api/v1/auth/token", stack.server.base_url);
    let (status, _) = post(&client_from("127.0.0.10"), url, creds.clone(), &both).await;
    assert_eq!(status, StatusCode::OK);

    // The account's own security events name each client, oldest first.
    let resp =
        via_xff.get(format!("{base}/api/v1/me/security-events")).bearer_auth(&access).send().await.expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let page: Value = resp.json().await.unwrap();
    let mut events: Vec<(String, String)> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or("").to_owned(), e["payload"]["ip"].as_str().unwrap_or("").to_owned()))
        .collect();
    events.reverse();
    let expected: Vec<(String, String)> = [
        ("auth.signup", "127.0.0.8"),
        ("auth.email_verified", "127.0.0.8"),
        ("auth.signin_succeeded", "127.0.0.8"),
        ("auth.signin_succeeded", "127.0.0.9"),
        ("auth.signin_succeeded", "127.0.0.10"),
    ]
    .iter()
    .map(|(a, ip)| ((*a).to_owned(), (*ip).to_owned()))
    .collect();
    assert_eq!(events, expected, "{page:#}");

    // The access log names the client too, never the proxy.
    let (_, log) = stack.server.stop();
    let served: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == "request served")
        .collect();
    let ips: Vec<&str> = served.iter().filter_map(|event| event["client.ip"].as_str()).collect();
    assert_eq!(ips.len(), served.len(), "every access log line names its client: {log}");
    for ip in ["127.0.0.8", "127.0.0.9", "127.0.0.10"] {
        assert!(ips.contains(&ip), "{ip} in the access log: {ips:?}");
    }
    assert!(!ips.iter().any(|ip| *ip == "127.0.0.1" || ip.starts_with("198.51.100.")), "{ips:?}");
}
