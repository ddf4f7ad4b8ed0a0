//! The `rampart` binary as the tests start it: a clean environment, `serve` on a free port, and
//! its JSON log read until it says where it listens.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

#[allow(clippy::disallowed_methods)] // The child gets a clean environment except PATH.
pub fn rampart(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// A running `rampart serve`, killed on drop.
pub struct Server {
    child: Child,
    pub base_url: String,
    pub log: Vec<String>,
    rest: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// The server's process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the server's log until a JSON line whose `message` is `message`, for at most
    /// `within`; every line read is kept in `log`. `None` when no such line came in time.
    pub fn wait_for_log(&mut self, message: &str, within: std::time::Duration) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.rest.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                if event["message"] == message {
                    return Some(event);
                }
            }
        }
    }

    /// Stops the server with SIGTERM and returns its exit status and its whole log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        // The reader thread ends when the pipe closes, so this collects every line.
        let mut log = std::mem::take(&mut self.log);
        log.extend(self.rest.iter());
        (status, log.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rampart serve --listen 127.0.0.1:0` and reads its log until it says where it listens.
/// A thread keeps draining the log afterwards so the server never writes into a closed pipe.
pub fn serve(mut cmd: Command) -> Result<Server, (i32, String)> {
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn rampart");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Nobody listens any more; keep draining.
                continue;
            }
        }
    });
    let mut log = Vec::new();
    while let Ok(line) = rx.recv() {
        log.push(line.clone());
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if let (Some(msg), Some(addr)) = (event["message"].as_str(), event["address"].as_str()) {
                if msg.starts_with("rampart listening") {
                    return Ok(Server { child, base_url: format!("http://{addr}"), log, rest: rx });
                }
            }
        }
    }
    let status = child.wait().unwrap();
    Err((status.code().unwrap_or(-1), log.join("\n")))
}
