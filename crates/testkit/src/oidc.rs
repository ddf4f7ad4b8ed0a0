//! A real OpenID Connect provider for the sign-in tests, and a browser to walk its flow.
//!
//! [`OidcProvider::start`] runs `oidc/provider.mjs`: the certified `oidc-provider` npm package
//! on 127.0.0.1 and a free port, with the clients the test registers, PKCE S256 required and
//! RS256 ID tokens. It has no login page: the account to sign in as is the `login_hint` that
//! [`OidcProvider::authorize`] puts in the authorization URL, and consent is given at once.
//! Accounts are added with [`OidcProvider::add_account`]; [`OidcProvider::advertise_foreign_keys`]
//! makes its JWKS show another key than the one it signs with.
//!
//! The npm dependencies are installed with `npm ci --prefix crates/testkit/oidc`. The provider
//! exits with the test: it is killed on drop and also quits when its stdin, held here, closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use url::Url;

const NOT_INSTALLED: &str =
    "the OpenID Connect provider of the tests is not installed: run `npm ci --prefix crates/testkit/oidc`";
/// Overrides the script's path, for running this module outside the testkit crate.
const SCRIPT_ENV: &str = "RAMPART_OIDC_PROVIDER_SCRIPT";
/// How long the provider may take to print its READY line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects [`OidcProvider::authorize`] follows before giving up.
const MAX_HOPS: usize = 20;
/// How much of the provider's stderr is kept for panic messages.
const STDERR_KEEP: usize = 16 * 1024;

/// A client registered at the provider when it starts.
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// The running provider (a `node` child process); it stops when dropped. Its npm dependencies
/// must be installed in `crates/testkit/oidc` (`npm ci --prefix crates/testkit/oidc`).
pub struct OidcProvider {
    _child: Child,
    /// Held open: the provider exits when its stdin closes, even if this process is killed.
    _stdin: ChildStdin,
    issuer: String,
    addr: SocketAddr,
    http: reqwest::Client,
    /// The tail of the provider's stderr, shown when something fails.
    stderr: Arc<Mutex<String>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// `oidc/provider.mjs` of this crate, or the path in `RAMPART_OIDC_PROVIDER_SCRIPT` when set
/// (for a scratch crate that includes this file, whose `CARGO_MANIFEST_DIR` is elsewhere).
#[allow(clippy::disallowed_methods)] // A harness variable: the tests' configuration.
fn provider_script() -> PathBuf {
    std::env::var_os(SCRIPT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/oidc/provider.mjs")))
}

impl OidcProvider {
    /// Starts the provider with `clients` and waits until it listens (at most 30 s).
    /// Panics when the npm dependencies are missing, `node` cannot run, or it does not start.
    pub async fn start(clients: &[OidcClient]) -> OidcProvider {
        let script = provider_script();
        let dir = script.parent().expect("the provider script has a parent directory");
        if !script.is_file() || !dir.join("node_modules/oidc-provider/package.json").is_file() {
            panic!("{NOT_INSTALLED} (looked for {} and its node_modules)", script.display());
        }
        let clients: Vec<_> = clients
            .iter()
            .map(|c| {
                serde_json::json!({
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "redirect_uris": c.redirect_uris,
                })
            })
            .collect();
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(dir)
            .env("OIDC_CLIENTS", serde_json::Value::Array(clients).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run `node {}` (is Node.js installed?): {e}", script.display()));
        let stdin = child.stdin.take().expect("the provider's stdin is piped");
        let stdout = child.stdout.take().expect("the provider's stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("the provider's stderr is piped");

        // Drain stderr all along (a full pipe would block the provider), keeping the tail.
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_task = tokio::spawn({
            let stderr = stderr.clone();
            async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stderr_pipe.read(&mut buf).await {
                    let mut kept = stderr.lock().expect("stderr buffer lock");
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if kept.len() > STDERR_KEEP {
                        let mut cut = kept.len() - STDERR_KEEP;
                        while !kept.is_char_boundary(cut) {
                            cut += 1;
                        }
                        kept.drain(..cut);
                    }
                }
            }
        });

        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return Some(issuer.trim().to_owned());
                }
            }
            None
        })
        .await;
        let issuer = match ready {
            Ok(Some(issuer)) => issuer,
            failed => {
                let why = if failed.is_err() { "did not get ready within 30 s" } else { "exited before it was ready" };
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), stderr_task).await;
                let stderr = stderr.lock().expect("stderr buffer lock").clone();
                panic!("the OpenID Connect provider ({}) {why}; its stderr:\n{stderr}", script.display());
            }
        };
        // Nothing more is expected on stdout, but keep it drained too.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let url = Url::parse(&issuer).unwrap_or_else(|e| panic!("the provider announced a bad issuer {issuer:?}: {e}"));
        let addr = url
            .socket_addrs(|| None)
            .ok()
            .and_then(|addrs| addrs.into_iter().next())
            .unwrap_or_else(|| panic!("the provider's issuer {issuer:?} has no socket address"));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the provider's HTTP client");
        OidcProvider { _child: child, _stdin: stdin, issuer, addr, http, stderr }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash); discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the provider listens: 127.0.0.1 and its port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds (or replaces) an account the browser can sign in as, by `sub`. Its `name` claim is `sub`.
    pub async fn add_account(&self, sub: &str, email: &str, email_verified: bool) {
        let body = serde_json::json!({ "sub": sub, "email": email, "email_verified": email_verified, "name": sub });
        self.admin("/__test/accounts", body).await;
    }

    /// While `on`, the advertised JWKS (`jwks_uri`) holds only a key the provider does not sign
    /// with, so its ID tokens look signed by another key.
    pub async fn advertise_foreign_keys(&self, on: bool) {
        self.admin("/__test/foreign-jwks", serde_json::json!({ "on": on })).await;
    }

    async fn admin(&self, path: &str, body: serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} to the OpenID Connect provider: {e}"));
        let status = resp.status();
        if status != reqwest::StatusCode::NO_CONTENT {
            let body = resp.text().await.unwrap_or_default();
            panic!("POST {path} to the OpenID Connect provider answered {status}: {body}{}", self.stderr_tail());
        }
    }

    /// Plays the browser: GETs `authorization_url` (on this provider) with `login_hint` set to
    /// the account to sign in as, follows the redirects through the interaction with a fresh
    /// cookie jar (so each call is a new browser with no session), and returns the first
    /// redirect that leaves the issuer's origin: the client's redirect_uri with `code` and
    /// `state`, or with `error` and `state`.
    ///
    /// Panics if a response is neither a redirect nor that last one (status and body shown),
    /// or after 20 redirects.
    pub async fn authorize(&self, authorization_url: &str, login_hint: &str) -> Url {
        let issuer = Url::parse(&self.issuer).expect("the issuer is a URL");
        let mut url = Url::parse(authorization_url)
            .unwrap_or_else(|e| panic!("authorize: {authorization_url:?} is not a URL: {e}"));
        assert!(
            url.origin() == issuer.origin(),
            "authorize: {authorization_url} is not on the provider's issuer {}",
            self.issuer
        );
        let query: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "login_hint")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(query).append_pair("login_hint", login_hint);

        let mut jar = CookieJar::default();
        for _ in 0..MAX_HOPS {
            let mut request = self.http.get(url.clone());
            if let Some(cookies) = jar.header_for(&url) {
                request = request.header(COOKIE, cookies);
            }
            let resp = request.send().await.unwrap_or_else(|e| panic!("authorize: GET {url}: {e}"));
            jar.store(&url, resp.headers());
            let status = resp.status();
            let location = resp.headers().get(LOCATION).map(|l| l.to_str().map(str::to_owned));
            let location = match (status.is_redirection(), location) {
                (true, Some(Ok(location))) => location,
                _ => {
                    let mut body = resp.text().await.unwrap_or_default();
                    body.truncate(body.char_indices().nth(4000).map_or(body.len(), |(i, _)| i));
                    panic!(
                        "authorize: GET {url} answered {status} instead of a redirect:\n{body}{}",
                        self.stderr_tail()
                    );
                }
            };
            let next = url.join(&location).unwrap_or_else(|e| panic!("authorize: bad Location {location:?}: {e}"));
            if next.origin() != issuer.origin() {
                return next;
            }
            url = next;
        }
        panic!("authorize: more than {MAX_HOPS} redirects, the last to {url}{}", self.stderr_tail());
    }

    fn stderr_tail(&self) -> String {
        let stderr = self.stderr.lock().expect("stderr buffer lock");
        if stderr.is_empty() {
            String::new()
        } else {
            format!("\n--- the provider's stderr ---\n{stderr}")
        }
    }
}

/// The little of a browser's cookie store that the provider needs (one host, plain http):
/// name → (value, path), honouring deletion by `Max-Age<=0` or a past `Expires`.
#[derive(Default)]
struct CookieJar {
    cookies: HashMap<String, (String, String)>,
}

impl CookieJar {
    fn store(&mut self, url: &Url, headers: &HeaderMap) {
        for header in headers.get_all(SET_COOKIE) {
            let Ok(header) = header.to_str() else { continue };
            let mut parts = header.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { continue };
            // RFC 6265 default path: the request path up to its last '/'.
            let mut path = url.path()[..url.path().rfind('/').unwrap_or(0).max(1)].to_owned();
            let mut expired = false;
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" if val.starts_with('/') => path = val.to_owned(),
                    "max-age" => expired |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                    "expires" => expired |= http_date_is_past(val),
                    _ => {}
                }
            }
            if expired {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), (value.to_owned(), path));
            }
        }
    }

    /// The `Cookie` header for a request to `url`: the cookies whose path covers its path.
    fn header_for(&self, url: &Url) -> Option<String> {
        let request_path = url.path();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, (_, path))| {
                request_path == path
                    || (request_path.starts_with(path.as_str())
                        && (path.ends_with('/') || request_path[path.len()..].starts_with('/')))
            })
            .map(|(name, (value, _))| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

/// Whether an IMF-fixdate (`Thu, 01 Jan 1970 00:00:00 GMT`, what the provider's cookie library
/// writes) is in the past. Anything unreadable counts as not past.
fn http_date_is_past(date: &str) -> bool {
    let fields: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, _] = fields[..] else { return false };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let Some(month) = months.iter().position(|m| m.eq_ignore_ascii_case(month)) else { return false };
    let hms: Vec<i64> = time.split(':').filter_map(|n| n.parse().ok()).collect();
    let (Ok(day), Ok(year), &[h, m, s]) = (day.parse::<i64>(), year.parse::<i64>(), &hms[..]) else { return false };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, mo) = if month < 2 { (year - 1, month as i64 + 10) } else { (year, month as i64 - 2) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let when = days * 86_400 + h * 3600 + m * 60 + s;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    when <= now
}
