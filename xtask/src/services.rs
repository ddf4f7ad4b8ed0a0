//! Throwaway PostgreSQL and Redis servers for the test suite, started from the machine's own
//! binaries on free loopback ports and removed when dropped.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

const PG_INSTALL: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with `apt-get install -y postgresql` (or set RAMPART_TEST_DATABASE_URL).";
const REDIS_INSTALL: &str =
    "redis-server was not found. Install it with `apt-get install -y redis-server` (or set RAMPART_TEST_REDIS_URL).";

/// A server the suite uses; throwaway ones are stopped on drop.
pub enum Service {
    External(String),
    Postgres { url: String, bin: PathBuf, dir: tempfile::TempDir, user: Option<String> },
    Redis { url: String, child: Child },
    Smtp { url: String, maildir: tempfile::TempDir, child: Child },
}

impl Service {
    pub fn url(&self) -> String {
        match self {
            Service::External(url)
            | Service::Postgres { url, .. }
            | Service::Redis { url, .. }
            | Service::Smtp { url, .. } => url.clone(),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        match self {
            Service::External(_) => {}
            Service::Postgres { bin, dir, user, .. } => {
                let data = dir.path().join("data");
                let _ = as_user(user.as_deref(), &bin.join("pg_ctl"))
                    .args(["-D"])
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .status();
            }
            Service::Redis { child, .. } | Service::Smtp { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// PostgreSQL refuses to run as root; as root the harness runs it as the `postgres` user (or
/// `nobody`) through `runuser`.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

pub fn start_postgres() -> anyhow::Result<Service> {
    let bin = find_pg_bin().context(PG_INSTALL)?;
    let dir = tempfile::Builder::new().prefix("rampart-pg-").tempdir()?;
    let user = if is_root() {
        let user = ["postgres", "nobody"]
            .into_iter()
            .find(|u| Command::new("id").arg(u).output().map(|o| o.status.success()).unwrap_or(false))
            .context("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")?;
        crate::run(Command::new("chown").args(["-R", user]).arg(dir.path()))?;
        Some(user.to_owned())
    } else {
        None
    };
    let data = dir.path().join("data");
    let out = as_user(user.as_deref(), &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        .output()?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.path().display()
    );
    let log = dir.path().join("postgres.log");
    let status = as_user(user.as_deref(), &bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("pg_ctl start failed:\n{log}");
    }
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    println!("xtask: started throwaway PostgreSQL ({}) on 127.0.0.1:{port}", bin.display());
    Ok(Service::Postgres { url, bin, dir, user })
}

pub fn start_redis() -> anyhow::Result<Service> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(REDIS_INSTALL),
        Err(err) => return Err(err.into()),
    };
    let service = Service::Redis { url: format!("redis://127.0.0.1:{port}"), child };
    // Readiness: poll until the server answers PING (bounded to 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let mut buf = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server did not answer on port {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("xtask: started throwaway Redis on 127.0.0.1:{port}");
    Ok(service)
}

impl Service {
    /// The Maildir of an SMTP sink.
    pub fn maildir(&self) -> Option<&Path> {
        match self {
            Service::Smtp { maildir, .. } => Some(maildir.path()),
            _ => None,
        }
    }
}

const SMTP_INSTALL: &str = "The aiosmtpd SMTP sink was not found. Install it with `python3 -m pip install aiosmtpd`.";

/// A real SMTP server (aiosmtpd) that stores every message in a Maildir.
pub fn start_smtp() -> anyhow::Result<Service> {
    let ok =
        Command::new("python3").args(["-c", "import aiosmtpd"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        bail!(SMTP_INSTALL);
    }
    let port = free_port()?;
    let maildir = tempfile::Builder::new().prefix("rampart-mail-").tempdir()?;
    // aiosmtpd's Mailbox handler writes into an existing Maildir: tmp/, new/ and cur/.
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.path().join(sub))?;
    }
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let service = Service::Smtp { url: format!("smtp://127.0.0.1:{port}"), maildir, child };
    // Readiness: poll until the server greets with 220 (bounded to 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let mut buf = [0u8; 3];
            if stream.read_exact(&mut buf).is_ok() && &buf == b"220" {
                let _ = stream.write_all(b"QUIT\r\n");
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("aiosmtpd did not answer on port {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("xtask: started SMTP sink (aiosmtpd) on 127.0.0.1:{port}");
    Ok(service)
}
