//! Dependencies a test owns and can stop and start again: a PostgreSQL cluster and a Redis
//! server of its own, from the machine's binaries, on a fixed loopback port so that a restarted
//! server is found where the application last saw it. The suite's shared servers (from
//! `cargo xtask test`) are never stopped; outage tests use these. And an nginx reverse proxy of
//! the test's own, in front of a server the test started, as deployments put one.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const PG_INSTALL: &str =
    "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them with `apt-get install -y postgresql`";
const REDIS_INSTALL: &str = "redis-server was not found: install it with `apt-get install -y redis-server`";
const NGINX_INSTALL: &str = "nginx was not found: install it with `apt-get install -y nginx-light`";
/// How long a server may take to start before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// Polls `ready` until it holds, failing the test after [`START_DEADLINE`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + START_DEADLINE;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start within {START_DEADLINE:?}");
        // A child process is starting; nothing but its port tells its readiness: poll it.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A Redis server that keeps its data across a restart (append-only file in its own directory).
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new().prefix("rampart-redis-").tempdir().expect("a directory for Redis");
        let mut server = RedisServer { port: free_port(), dir, child: None };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, and waits until it answers.
    pub fn resume(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(REDIS_INSTALL);
        self.child = Some(child);
        wait_until("redis-server", || answers_ping(self.port));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own (trust authentication on loopback).
#[derive(Debug)]
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// As root the cluster runs as `postgres` (or `nobody`): PostgreSQL refuses root.
    user: Option<String>,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = find_pg_bin().expect(PG_INSTALL);
        let dir = tempfile::Builder::new().prefix("rampart-pgc-").tempdir().expect("a directory for PostgreSQL");
        let user = is_root().then(|| {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| Command::new("id").arg(u).output().is_ok_and(|o| o.status.success()))
                .expect("running as root, a `postgres` or `nobody` user runs PostgreSQL");
            assert!(Command::new("chown").args(["-R", user]).arg(dir.path()).status().unwrap().success());
            user.to_owned()
        });
        let cluster = PgCluster { port: free_port(), bin, dir, user };
        let out = cluster
            .pg("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
            .output()
            .expect(PG_INSTALL);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        cluster.resume();
        cluster
    }

    /// The superuser URL.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Stops the cluster at once (`pg_ctl stop -m immediate`: connections are cut, as in a crash).
    pub fn stop(&self) {
        let status = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "pg_ctl stop failed");
    }

    /// Starts the cluster (again) on its port and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let status = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "pg_ctl start failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).status();
    }
}

/// An nginx reverse proxy in front of `upstream`, with its own directory, configuration and
/// loopback ports, stopped on drop. It listens on 127.0.0.1 on two ports, each forwarding the
/// client's address the way nginx deployments commonly do:
///
/// - [`Nginx::url`]: appends the address it received the connection from to the client's
///   `X-Forwarded-For` (`$proxy_add_x_forwarded_for`) and clears `Forwarded`;
/// - [`Nginx::forwarded_url`]: appends `for=<address>` to the client's `Forwarded` (RFC 7239) and
///   clears `X-Forwarded-For`.
///
/// Both set `X-Forwarded-Proto` and `Host`. Whatever the client sent in the header kept is passed
/// on ahead of what nginx appends, as in production, so a forged value reaches the upstream.
#[derive(Debug)]
pub struct Nginx {
    pub port: u16,
    pub forwarded_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx proxying to `upstream` (`127.0.0.1:port`) and waits until both ports accept
    /// connections. Fails the test, naming the package to install, if nginx is missing.
    pub fn reverse_proxy(upstream: std::net::SocketAddr) -> Nginx {
        let bin = find_nginx().expect(NGINX_INSTALL);
        let dir = tempfile::Builder::new().prefix("rampart-nginx-").tempdir().expect("a directory for nginx");
        let (port, forwarded_port) = (free_port(), free_port());
        let root = dir.path().display();
        // One process (`master_process off`): killing it stops nginx, no worker outlives it, and
        // as root nothing switches to a user that could not write the temp paths here.
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # RFC 7239 §4: append this hop to the list the client sent, as $proxy_add_x_forwarded_for does.
    map $http_forwarded $proxy_add_forwarded {{
        "" "for=$remote_addr";
        default "$http_forwarded, for=$remote_addr";
    }}
    upstream app {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Forwarded "";
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
    server {{
        listen 127.0.0.1:{forwarded_port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $http_host;
            proxy_set_header Forwarded $proxy_add_forwarded;
            proxy_set_header X-Forwarded-For "";
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("nginx.conf");
        let check =
            Command::new(&bin).arg("-p").arg(dir.path()).arg("-c").arg(&conf).arg("-t").output().expect(NGINX_INSTALL);
        assert!(
            check.status.success(),
            "nginx -t refused the configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(NGINX_INSTALL);
        let mut nginx = Nginx { port, forwarded_port, dir, child: Some(child) };
        let log = nginx.dir.path().join("error.log");
        wait_until("nginx", || {
            if let Some(Ok(Some(status))) = nginx.child.as_mut().map(Child::try_wait) {
                panic!("nginx exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            [port, forwarded_port].iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        nginx
    }

    /// The base URL of the port that appends to `X-Forwarded-For`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The base URL of the port that appends to `Forwarded`.
    pub fn forwarded_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.forwarded_port)
    }

    /// nginx's access log so far, for a failing test's message.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx where Debian's packages put it (`/usr/sbin`, often not on a user's PATH), or on the PATH.
fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| Command::new("nginx").arg("-v").output().is_ok().then(|| PathBuf::from("nginx")))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(Path::new("/usr/lib/postgresql"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}
