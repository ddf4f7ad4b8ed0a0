//! The SDKs as tests: a Python client (`openapi-python-client`) and a TypeScript client
//! (`@hey-api/openapi-ts`, fetch client) generated from the committed `openapi/openapi.json`, each
//! driving the whole user journey of `openapi/examples/` alone against the real `rampart` binary.
//!
//! Generation must print no warning, and the TypeScript client and journey must type-check in
//! strict mode: a description defect that a generator or `tsc` reports, or that forces a journey
//! off its generated client, fails here. The journeys learn what only the test knows from the
//! environment: the server (`RAMPART_URL`), the SMTP sink's Maildir (`RAMPART_MAILDIR`) and a
//! loopback webhook receiver (`RAMPART_WEBHOOK_URL`). Generated code lives in temporary folders.
//! The Python journey runs on PostgreSQL + Redis, the TypeScript one on the embedded SQLite.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use testkit::receiver::Receiver;
use testkit::{Backend, TestDb};

const PYTHON_INSTALL: &str = "python3 -m pip install -r openapi/examples/python/requirements.txt";
const NPM_INSTALL: &str = "npm ci --prefix openapi/examples/typescript --no-audit --no-fund";
const NODE_INSTALL: &str = "apt-get install -y nodejs npm";
/// How long a journey may take before the test gives up on it.
const JOURNEY_DEADLINE: Duration = Duration::from_secs(300);

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

fn examples() -> PathBuf {
    root().join("openapi/examples")
}

/// The exact version `file` pins for `package` (a `name==version` or `"name": "version"` line).
fn pinned(file: &Path, package: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .find_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix(&format!("{package}=="));
            let rest = rest.or_else(|| line.strip_prefix(&format!("\"{package}\": \"")));
            rest.map(|v| v.trim_end_matches([',', '"']).to_owned())
        })
        .unwrap_or_else(|| panic!("{} pins no version of {package}", file.display()))
}

/// Both output streams of a finished command, for failure messages.
fn streams(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to the end; panics naming `what` and `install` when the program cannot start.
fn run(cmd: &mut std::process::Command, what: &str, install: &str) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{what} could not run ({e}): install it with `{install}`"))
}

/// Lines of generator output that report a warning.
fn warnings(out: &Output) -> Vec<String> {
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            lower.contains("warn") || lower.contains("will not be generated") || l.contains('🚨') || l.contains('❗')
        })
        .map(str::to_owned)
        .collect()
}

// --- Python -------------------------------------------------------------------------------------

/// The folder of the Python scripts (`ruff`, which the generator runs), checked to hold the
/// pinned generator.
fn python_scripts() -> PathBuf {
    let requirements = examples().join("python/requirements.txt");
    let want = pinned(&requirements, "openapi-python-client");
    let probe = "import importlib.metadata as m, sysconfig; \
                 print(sysconfig.get_path('scripts')); print(m.version('openapi-python-client'))";
    let out = run(std::process::Command::new("python3").args(["-c", probe]), "python3", PYTHON_INSTALL);
    assert!(out.status.success(), "openapi-python-client is not installed: run `{PYTHON_INSTALL}`\n{}", streams(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let scripts = PathBuf::from(lines.next().expect("the scripts folder"));
    let have = lines.next().expect("a version");
    assert_eq!(have, want, "openapi-python-client {have} is installed, {want} is pinned: run `{PYTHON_INSTALL}`");
    scripts
}

/// Generates the Python client into `into/rampart_client`; the generator's output.
fn generate_python(into: &Path) -> Output {
    let scripts = python_scripts();
    #[allow(clippy::disallowed_methods)] // The generator runs `ruff` from PATH.
    let path = std::env::var("PATH").unwrap_or_default();
    let out = run(
        std::process::Command::new("python3")
            .args(["-m", "openapi_python_client", "generate", "--meta", "none", "--fail-on-warning", "--path"])
            .arg(root().join("openapi/openapi.json"))
            .arg("--output-path")
            .arg(into.join("rampart_client"))
            .env("PATH", format!("{}:{path}", scripts.display())),
        "openapi-python-client",
        PYTHON_INSTALL,
    );
    assert!(
        into.join("rampart_client/__init__.py").is_file(),
        "openapi-python-client generated no client\n{}",
        streams(&out)
    );
    out
}

#[test]
fn the_python_client_generates_from_the_committed_description_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate_python(dir.path());
    let warnings = warnings(&out);
    assert!(
        out.status.success() && warnings.is_empty(),
        "openapi-python-client warned about openapi/openapi.json:\n{}\n{}",
        warnings.join("\n"),
        streams(&out)
    );
}

#[tokio::test]
async fn the_python_client_alone_drives_the_whole_journey_against_the_real_server() {
    let generated = tempfile::tempdir().unwrap();
    generate_python(generated.path());
    let stack = start(Backend::Postgres).await;
    let mut journey = tokio::process::Command::new("python3");
    journey
        .arg(examples().join("python/journey.py"))
        .env("PYTHONPATH", generated.path())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    stack.drive(journey, "python3 openapi/examples/python/journey.py").await;
}

// --- TypeScript ---------------------------------------------------------------------------------

/// `openapi/examples/typescript`, checked to hold the locked npm packages.
fn typescript_dir() -> PathBuf {
    let dir = examples().join("typescript");
    let out = run(std::process::Command::new("node").arg("--version"), "node", NODE_INSTALL);
    assert!(out.status.success(), "node does not run: install it with `{NODE_INSTALL}`");
    for package in ["@hey-api/openapi-ts", "typescript"] {
        let want = pinned(&dir.join("package.json"), package);
        let manifest = dir.join("node_modules").join(package).join("package.json");
        let have = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| json["version"].as_str().map(str::to_owned));
        assert_eq!(have.as_deref(), Some(want.as_str()), "{package} {want} is not installed: run `{NPM_INSTALL}`");
    }
    dir
}

/// A folder laid out like `openapi/examples/typescript` with the client generated into
/// `client/`: the journey, its `package.json` and `tsconfig.json`, and the locked packages.
/// Returns the folder and the generator's output.
fn generate_typescript() -> (tempfile::TempDir, Output) {
    let source = typescript_dir();
    let dir = tempfile::tempdir().unwrap();
    for file in ["journey.ts", "package.json", "tsconfig.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
    std::os::unix::fs::symlink(source.join("node_modules"), dir.path().join("node_modules")).unwrap();
    // From the examples folder, so that its `openapi-ts.config.mjs` (and the input it names) apply.
    let out = run(
        std::process::Command::new(source.join("node_modules/.bin/openapi-ts"))
            .current_dir(&source)
            .args(["--no-log-file", "--output"])
            .arg(dir.path().join("client")),
        "openapi-ts",
        NPM_INSTALL,
    );
    assert!(
        out.status.success() && dir.path().join("client/index.ts").is_file(),
        "openapi-ts generated no client from openapi/openapi.json\n{}",
        streams(&out)
    );
    (dir, out)
}

/// `tsc` from the locked packages, in `dir`.
fn tsc(dir: &Path, args: &[&str]) -> Output {
    run(std::process::Command::new(dir.join("node_modules/.bin/tsc")).current_dir(dir).args(args), "tsc", NPM_INSTALL)
}

#[test]
fn the_typescript_client_generates_without_a_warning_and_type_checks_with_the_journey_in_strict_mode() {
    let (dir, out) = generate_typescript();
    let warnings = warnings(&out);
    assert!(
        warnings.is_empty(),
        "openapi-ts warned about openapi/openapi.json:\n{}\n{}",
        warnings.join("\n"),
        streams(&out)
    );
    let checked = tsc(dir.path(), &["--noEmit", "--pretty", "false"]);
    assert!(
        checked.status.success(),
        "tsc --noEmit (strict) rejects the generated client or journey.ts:\n{}",
        streams(&checked)
    );
}

#[tokio::test]
async fn the_typescript_client_alone_drives_the_whole_journey_against_the_real_server() {
    let (dir, _) = generate_typescript();
    // Types are the other test's subject: here the journey is only transpiled, so that it runs.
    let built = tsc(dir.path(), &["--noCheck", "--pretty", "false"]);
    let script = dir.path().join("dist/journey.js");
    assert!(script.is_file(), "tsc emitted no dist/journey.js\n{}", streams(&built));
    let stack = start(Backend::Sqlite).await;
    let mut journey = tokio::process::Command::new("node");
    journey.arg(&script).current_dir(dir.path());
    stack.drive(journey, "node dist/journey.js (openapi/examples/typescript/journey.ts)").await;
}

// --- The server ---------------------------------------------------------------------------------

/// The real server with a loopback webhook receiver it may reach.
struct Stack {
    server: support::Server,
    receiver: Receiver,
    _db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

/// Starts `rampart serve` from a configuration file: test mode, the SMTP sink, the receiver as
/// the one egress exception, and limits out of the journey's way (it signs up, signs in and
/// refreshes from one address faster than the production defaults allow).
async fn start(backend: Backend) -> Stack {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (smtp, _) = testkit::smtp_sink();
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut config = format!(
        "env = \"test\"\n\
         [http]\nrate_limit_per_client_per_sec = 1000\n\
         [auth]\nbcrypt_cost = 10\nattempts_per_minute = 1000\nworkspace_creations_per_hour = 100\n\
         [mail]\nsmtp_url = {}\n\
         [outbox]\npoll_interval_ms = 20\n\
         [egress]\ntest_exceptions = [{}]\n",
        quote(&smtp),
        quote(&receiver.addr.to_string()),
    );
    let db = match backend {
        // The embedded default: no database configured at all.
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = TestDb::new(Backend::Postgres).await;
            let prefix = format!("rampart-sdk-{}:", uuid::Uuid::new_v4().simple());
            config += &format!(
                "[database]\nurl = {}\n[redis]\nurl = {}\nkey_prefix = {}\n",
                quote(db.runtime_url.expose_secret()),
                quote(&testkit::redis_url()),
                quote(&prefix),
            );
            Some(db)
        }
    };
    std::fs::write(dir.path().join("rampart.toml"), config).unwrap();
    let server = support::serve(support::rampart(dir.path())).unwrap_or_else(|(code, log)| {
        panic!("rampart serve exited with {code}:\n{log}");
    });
    Stack { server, receiver, _db: db, _dir: dir }
}

impl Stack {
    /// Runs a journey against this server and checks that its test delivery reached the
    /// receiver, signed and under the message id the client reported.
    async fn drive(&self, mut journey: tokio::process::Command, what: &str) {
        let (_, maildir) = testkit::smtp_sink();
        journey
            .env("RAMPART_URL", &self.server.base_url)
            .env("RAMPART_MAILDIR", maildir)
            .env("RAMPART_WEBHOOK_URL", self.receiver.url("/rampart-hooks"))
            .kill_on_drop(true);
        let out = tokio::time::timeout(JOURNEY_DEADLINE, journey.output())
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within {JOURNEY_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{what} could not run: {e}"));
        assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, streams(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{what} printed no JSON summary last:\n{}", streams(&out)));
        assert_eq!(summary["journey"], "done", "{summary}");
        let message_id = summary["webhook_message_id"].as_str().expect("the test delivery's message id");
        let hooks = self.receiver.wait_for(1).await;
        let hook = &hooks[0];
        assert_eq!(hook.path, "/rampart-hooks");
        assert_eq!(hook.header("webhook-id"), message_id, "the receiver got another delivery than the client made");
        assert!(hook.header("webhook-signature").starts_with("v1,"), "an unsigned delivery: {hook:?}");
    }
}
