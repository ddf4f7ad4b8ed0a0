//! The guarded client against real loopback listeners: refused requests never reach a socket,
//! redirects are checked hop by hop, and allowed requests, timeouts and transport errors come
//! back as the specific error. Answers for host names come from a `StaticResolver`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress::{EgressError, EgressPolicy, GuardedClient, StaticResolver};
use reqwest::{Method, Request, Url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback HTTP/1.1 server that answers each request with `respond(path)` and counts them.
struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Server {
    async fn start(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let Some(target) = read_request_target(&mut stream).await else { return };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(respond(&target).as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server { addr, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn url(&self, path: &str) -> Url {
        url(&format!("http://{}{path}", self.addr))
    }
}

/// Reads one request head and returns its target (path and query).
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    head.lines().next()?.split(' ').nth(1).map(str::to_owned)
}

fn found(location: &str) -> String {
    format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// A listener that never accepts. The kernel would still complete a handshake into its backlog,
/// so a connection attempt, had there been one, is visible to a non-blocking `accept`.
struct Untouched(std::net::TcpListener);

impl Untouched {
    fn bind() -> Untouched {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Untouched(listener)
    }

    fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }

    fn assert_accepted_nothing(&self) {
        match self.0.accept() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept failed: {err}"),
            Ok((_, peer)) => panic!("a connection from {peer} reached a listener it must not reach"),
        }
    }
}

/// A server that accepts connections, reads nothing and never answers.
async fn never_answers() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// The test policy: `allowed.test` and its subdomains, one exception (so plain http is allowed),
/// and a short deadline so that a wrong connection fails the test quickly instead of hanging.
fn test_policy(exception: SocketAddr) -> EgressPolicy {
    let mut policy = EgressPolicy::for_domains(&["allowed.test"]).with_exception(exception);
    policy.require_https = false;
    policy.timeout = Duration::from_secs(3);
    policy
}

fn client(policy: EgressPolicy, resolver: StaticResolver) -> GuardedClient {
    GuardedClient::new(policy, Arc::new(resolver)).unwrap()
}

#[track_caller]
fn assert_refused(result: Result<reqwest::Response, EgressError>, code: &str) -> EgressError {
    match result {
        Ok(response) => panic!("expected {code}, got a response: {}", response.status()),
        Err(err) => {
            assert_eq!(err.code(), code, "{err}");
            err
        }
    }
}

/// The error and every cause, as one string.
fn whole_chain(err: &EgressError) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(current) = cause {
        text.push_str(" / ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[tokio::test]
async fn requests_to_loopback_and_the_metadata_address_are_refused_before_any_connection() {
    let target = Untouched::bind();
    let port = target.addr().port();
    let plain = client(test_policy(Untouched::bind().addr()), StaticResolver::new());
    let production = client(EgressPolicy::for_domains(&["allowed.test"]), StaticResolver::new());

    assert_refused(plain.get(url(&format!("http://127.0.0.1:{port}/"))).await, "egress_forbidden_address");
    assert_refused(plain.get(url("http://169.254.169.254/latest/meta-data/")).await, "egress_forbidden_address");
    assert_refused(production.get(url(&format!("https://127.0.0.1:{port}/"))).await, "egress_forbidden_address");
    assert_refused(production.get(url("https://169.254.169.254/latest/meta-data/")).await, "egress_forbidden_address");
    assert_refused(production.get(url(&format!("http://127.0.0.1:{port}/"))).await, "egress_scheme_not_allowed");
    target.assert_accepted_nothing();
}

#[tokio::test]
async fn loopback_addresses_in_other_spellings_are_refused_before_any_connection() {
    let target = Untouched::bind();
    let port = target.addr().port();
    let plain = client(test_policy(Untouched::bind().addr()), StaticResolver::new());
    for host in
        ["2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "127.1", "0", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]"]
    {
        let result = plain.get(url(&format!("http://{host}:{port}/"))).await;
        assert_refused(result, "egress_forbidden_address");
    }
    target.assert_accepted_nothing();
}

#[tokio::test]
async fn an_allowed_name_that_resolves_only_to_private_addresses_is_refused() {
    let loopback = Untouched::bind();
    let resolver = StaticResolver::new()
        .with("db.allowed.test", ["10.0.0.5:0".parse().unwrap()])
        .with("lo.allowed.test", [loopback.addr()])
        .with("meta.allowed.test", ["169.254.169.254:0".parse().unwrap(), "[fd00::1]:0".parse().unwrap()]);
    let plain = client(test_policy(Untouched::bind().addr()), resolver.clone());
    let production = client(EgressPolicy::for_domains(&["allowed.test"]), resolver);

    assert_refused(plain.get(url("http://db.allowed.test/")).await, "egress_forbidden_address");
    assert_refused(plain.get(url("http://lo.allowed.test/")).await, "egress_forbidden_address");
    assert_refused(production.get(url("https://db.allowed.test/")).await, "egress_forbidden_address");
    assert_refused(
        production.get(url("https://meta.allowed.test/latest/meta-data/")).await,
        "egress_forbidden_address",
    );
    loopback.assert_accepted_nothing();
}

#[tokio::test]
async fn a_mixed_answer_connects_only_to_the_allowed_address() {
    let private = Untouched::bind();
    let server = Server::start(|_| ok("hello")).await;
    // The forbidden addresses come first: a connector given them would try them first.
    let resolver =
        StaticResolver::new().with("mixed.allowed.test", [private.addr(), "10.0.0.5:0".parse().unwrap(), server.addr]);
    let plain = client(test_policy(server.addr), resolver);

    let response = plain.get(url("http://mixed.allowed.test/")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
    assert_eq!(server.requests(), 1);
    private.assert_accepted_nothing();
}

#[tokio::test]
async fn an_exception_server_answering_200_is_reached() {
    let server = Server::start(|target| ok(&format!("you asked for {target}"))).await;
    let plain = client(test_policy(server.addr), StaticResolver::new());

    let response = plain.get(server.url("/ok?x=1")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "you asked for /ok?x=1");
    assert_eq!(server.requests(), 1);
}

/// The redirecting test server: each path answers 302 to one kind of target.
async fn redirector(loopback: SocketAddr) -> Server {
    Server::start(move |target| match target {
        "/to-metadata" => found("http://169.254.169.254/latest/meta-data/"),
        "/to-loopback" => found(&format!("http://127.0.0.1:{}/", loopback.port())),
        "/to-internal" => found("http://internal.allowed.test/"),
        "/to-foreign" => found("http://evil.example/"),
        "/to-gopher" => found("gopher://internal.allowed.test:11211/_stats"),
        "/to-credentials" => found("http://user:secret@internal.allowed.test/"),
        "/to-ok" => found("/ok"),
        "/ok" => ok("hello"),
        // A loop that never ends by itself.
        _ => found("/loop"),
    })
    .await
}

fn redirect_client(server: &Server) -> GuardedClient {
    let resolver = StaticResolver::new().with("internal.allowed.test", ["10.1.2.3:0".parse().unwrap()]);
    client(test_policy(server.addr), resolver)
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_refused() {
    let server = redirector(Untouched::bind().addr()).await;
    let result = redirect_client(&server).get(server.url("/to-metadata")).await;
    assert_refused(result, "egress_forbidden_address");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_redirect_to_another_loopback_port_is_refused_and_never_connects() {
    let other = Untouched::bind();
    let server = redirector(other.addr()).await;
    let result = redirect_client(&server).get(server.url("/to-loopback")).await;
    assert_refused(result, "egress_forbidden_address");
    other.assert_accepted_nothing();
}

#[tokio::test]
async fn a_redirect_to_an_allowed_name_that_resolves_privately_is_refused() {
    let server = redirector(Untouched::bind().addr()).await;
    let result = redirect_client(&server).get(server.url("/to-internal")).await;
    // The refusal comes from the DNS hook, from inside the connector, and still surfaces as itself.
    assert_refused(result, "egress_forbidden_address");
}

#[tokio::test]
async fn a_redirect_off_the_allow_list_or_the_http_schemes_or_with_credentials_is_refused() {
    let server = redirector(Untouched::bind().addr()).await;
    let guarded = redirect_client(&server);
    assert_refused(guarded.get(server.url("/to-foreign")).await, "egress_domain_not_allowed");
    assert_refused(guarded.get(server.url("/to-gopher")).await, "egress_scheme_not_allowed");
    let err = assert_refused(guarded.get(server.url("/to-credentials")).await, "egress_userinfo_not_allowed");
    assert!(!whole_chain(&err).contains("secret"), "{}", whole_chain(&err));
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_hop_limit() {
    let server = redirector(Untouched::bind().addr()).await;
    let err = assert_refused(redirect_client(&server).get(server.url("/loop")).await, "egress_too_many_redirects");
    assert!(matches!(err, EgressError::TooManyRedirects { max: 5 }), "{err:?}");
    // The first request and five followed redirects.
    assert_eq!(server.requests(), 6);

    let mut strict = test_policy(server.addr);
    strict.max_redirects = 1;
    let result = client(strict, StaticResolver::new()).get(server.url("/loop")).await;
    assert_refused(result, "egress_too_many_redirects");
    assert_eq!(server.requests(), 6 + 2);
}

#[tokio::test]
async fn an_allowed_redirect_is_followed_to_its_answer() {
    let server = redirector(Untouched::bind().addr()).await;
    let response = redirect_client(&server).get(server.url("/to-ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/ok");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_with_the_policys_timeout() {
    let (addr, accepted) = never_answers().await;
    let mut policy = test_policy(addr);
    policy.timeout = Duration::from_millis(300);
    let guarded = client(policy, StaticResolver::new());
    let silent = url(&format!("http://{addr}/slow?token=secret"));

    let started = Instant::now();
    let err = assert_refused(guarded.get(silent.clone()).await, "egress_timeout");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.to_string(), format!("outbound request to http://{addr} timed out"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the request connected and then waited");

    // A longer timeout on the request itself is shortened to the policy's.
    let mut request = Request::new(Method::GET, silent);
    *request.timeout_mut() = Some(Duration::from_secs(20));
    let started = Instant::now();
    assert_refused(guarded.send(request).await, "egress_timeout");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_url_with_credentials_is_refused_without_echoing_them() {
    let server = Server::start(|_| ok("hello")).await;
    let plain = client(test_policy(server.addr), StaticResolver::new());
    let with_credentials = url(&format!("http://admin:hunter2@{}/ok", server.addr));

    let err = assert_refused(plain.get(with_credentials).await, "egress_userinfo_not_allowed");
    let text = whole_chain(&err);
    assert!(!text.contains("hunter2") && !text.contains("admin"), "{text}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_host_name_with_an_explicit_port_is_refused_while_exceptions_exist() {
    let other = Untouched::bind();
    let server = Server::start(|_| ok("hello")).await;
    let resolver = StaticResolver::new().with("api.allowed.test", [server.addr]);
    let plain = client(test_policy(server.addr), resolver);

    // The connector would replace the checked port with the URL's: refused before connecting.
    let result = plain.get(url(&format!("http://api.allowed.test:{}/", other.addr().port()))).await;
    assert_refused(result, "egress_forbidden_address");
    other.assert_accepted_nothing();

    // Without a port in the URL the answer's port is used, which is the exception's.
    let response = plain.get(url("http://api.allowed.test/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn transport_errors_name_the_origin_but_not_the_path_or_query() {
    let server = Server::start(|_| "this is not HTTP\r\n\r\n".to_owned()).await;
    let plain = client(test_policy(server.addr), StaticResolver::new());

    let err = assert_refused(plain.get(server.url("/garbage?token=secret")).await, "egress_transport");
    let text = whole_chain(&err);
    assert!(text.starts_with(&format!("outbound request to http://{} failed", server.addr)), "{text}");
    assert!(!text.contains("secret") && !text.contains("garbage"), "{text}");
    assert_eq!(server.requests(), 1);
}
