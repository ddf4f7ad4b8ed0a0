//! A loopback HTTP receiver for outbound webhook tests: it records every request it is sent and
//! answers with the status the test chose, and can hold requests unanswered until released.
//! Tests wait for requests through [`Receiver::wait_for`], never by sleeping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Hook {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }
}

struct Shared {
    hooks: Mutex<Vec<Hook>>,
    status: AtomicU16,
    /// Requests with this index or later wait for `release` before they are answered.
    hold_from: AtomicUsize,
    arrived: tokio::sync::Notify,
    release: tokio::sync::watch::Sender<bool>,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long [`Receiver::wait_for`] waits before failing the test.
const WAIT: Duration = Duration::from_secs(60);

impl Receiver {
    /// Listens on 127.0.0.1 and a free port, answering 200.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (release, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            hooks: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            hold_from: AtomicUsize::new(usize::MAX),
            arrived: tokio::sync::Notify::new(),
            release,
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        Receiver { addr, shared, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status every later request is answered with.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Requests from the `n`-th on (0-based) are recorded at once but answered only after
    /// [`Receiver::release`].
    pub fn hold_from(&self, n: usize) {
        self.shared.hold_from.store(n, Ordering::SeqCst);
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        self.shared.hold_from.store(usize::MAX, Ordering::SeqCst);
        let _ = self.shared.release.send(true);
    }

    /// Every request so far, in arrival order.
    pub fn hooks(&self) -> Vec<Hook> {
        self.shared.hooks.lock().expect("receiver lock").clone()
    }

    /// Waits until at least `n` requests arrived (failing the test after a minute); all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Hook> {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.shared.arrived.notified();
                let hooks = self.hooks();
                if hooks.len() >= n {
                    return hooks;
                }
                notified.await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("the receiver got {} of {n} requests within {WAIT:?}", self.hooks().len()))
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(hook) = read_request(&mut stream).await else { return };
    let index = {
        let mut hooks = shared.hooks.lock().expect("receiver lock");
        hooks.push(hook);
        hooks.len() - 1
    };
    shared.arrived.notify_waiters();
    if index >= shared.hold_from.load(Ordering::SeqCst) {
        let mut release = shared.release.subscribe();
        let _ = release.wait_for(|released| *released).await;
    }
    let status = shared.status.load(Ordering::SeqCst);
    let reply = format!("HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Hook> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Hook { method, path, headers, body })
}

const PYTHON_HINT: &str =
    "install the Standard Webhooks reference library with `python3 -m pip install standardwebhooks`";

/// Verifies `hook` with the reference Python library (`standardwebhooks`, `Webhook.verify`),
/// which also checks the timestamp against the real clock: `Ok` or the library's refusal.
pub fn reference_verify(secret: &str, hook: &Hook) -> Result<(), String> {
    const SCRIPT: &str = r#"
import os, sys
from standardwebhooks import Webhook, WebhookVerificationError
body = sys.stdin.buffer.read().decode("utf-8")
headers = {k: os.environ["WH_" + k.replace("-", "_").upper()] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
try:
    Webhook(os.environ["WH_SECRET"]).verify(body, headers)
except WebhookVerificationError as error:
    print(error)
    sys.exit(3)
"#;
    let env = [
        ("WH_SECRET", secret),
        ("WH_WEBHOOK_ID", hook.header("webhook-id")),
        ("WH_WEBHOOK_TIMESTAMP", hook.header("webhook-timestamp")),
        ("WH_WEBHOOK_SIGNATURE", hook.header("webhook-signature")),
    ];
    let out = python(SCRIPT, &env, &hook.body);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The reference library's signature (`Webhook.sign`, `v1,<base64>`) of `hook`'s id, timestamp
/// and body under `secret`: for checking deliveries whose timestamp the test clock moved away from
/// the real one.
pub fn reference_signature(secret: &str, hook: &Hook) -> String {
    const SCRIPT: &str = r#"
import os, sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
body = sys.stdin.buffer.read().decode("utf-8")
timestamp = datetime.fromtimestamp(int(os.environ["WH_TIMESTAMP"]), tz=timezone.utc)
print(Webhook(os.environ["WH_SECRET"]).sign(os.environ["WH_ID"], timestamp, body))
"#;
    let env = [
        ("WH_SECRET", secret),
        ("WH_ID", hook.header("webhook-id")),
        ("WH_TIMESTAMP", hook.header("webhook-timestamp")),
    ];
    let out = python(SCRIPT, &env, &hook.body);
    assert!(out.status.success(), "reference signing failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
}

fn python(script: &str, env: &[(&str, &str)], stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 could not be started ({e}): {PYTHON_HINT}"));
    child.stdin.take().expect("stdin").write_all(stdin).expect("writing the body");
    let out = child.wait_with_output().expect("python3 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No module named 'standardwebhooks'"), "{PYTHON_HINT}");
    out
}
