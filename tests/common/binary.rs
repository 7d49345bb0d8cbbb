//! The `stoa` binary as every test starts it: one command builder, one wait for the
//! "stoa listening" line (with a deadline, never a hang), one reading of `CI`.
//!
//! Test binaries that include `common/mod.rs` reach this as `common::binary`; the single-file
//! ones (`cli.rs`, `openapi.rs`, `e2e.rs`) include it with `#[path]`.

#![allow(dead_code)] // Shared by several test binaries; each uses a part of it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to say it is listening.
pub const START_PATIENCE: Duration = Duration::from_secs(30);

/// Whether this is a CI run (`CI=true` or `CI=1`): a missing database, service or tool
/// fails the test there instead of skipping it.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (outside CI) or fails (in CI) a test that lacks `what`; false, for an early return.
pub fn missing(what: &str) -> bool {
    if ci() {
        panic!("{what} (required under CI)");
    }
    eprintln!("SKIPPED: {what}");
    false
}

/// The binary with nothing of the test process's environment but `PATH`.
pub fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stoa"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// The binary as a server in `dir`: any free port, JSON logs on stderr (piped), stdout
/// discarded.
pub fn server(dir: &Path) -> Command {
    let mut cmd = bare();
    cmd.current_dir(dir)
        .env("STOA_SERVER__PORT", "0")
        .env("STOA_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A started server's port and everything it has logged so far (kept by a thread that
/// reads its stderr to the end).
pub struct Listening {
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Waits until `child` (started with [`server`]) logs "stoa listening"; its port. A server
/// that exits first, or takes longer than [`START_PATIENCE`], fails the test with its log.
pub fn listening(child: &mut Child) -> Listening {
    let stderr = child.stderr.take().expect("stderr piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "stoa listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                    }
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(START_PATIENCE) {
        Ok(port) => Listening { port, log },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "stoa did not start within {START_PATIENCE:?} (exit: {status:?}); log: {:#?}",
                log.lock().unwrap().clone()
            )
        }
    }
}

/// What a child writes to stderr, line by line, read on a thread of its own so that no wait
/// for a line outlasts its deadline.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    /// Takes `child`'s stderr (piped).
    pub fn of(child: &mut Child) -> Lines {
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The lines up to and including the first for which `done` holds (`true`), or every
    /// line if stderr ended first (`false`). Fails the test after [`START_PATIENCE`].
    pub fn until(&mut self, done: impl Fn(&str) -> bool) -> (bool, Vec<String>) {
        let deadline = std::time::Instant::now() + START_PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) => {
                    let found = done(&line);
                    seen.push(line);
                    if found {
                        return (true, seen);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return (false, seen),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no such line within {START_PATIENCE:?}; read: {seen:#?}")
                }
            }
        }
    }

    /// Every line until stderr ends (the child exited). Fails the test after
    /// [`START_PATIENCE`].
    pub fn rest(mut self) -> Vec<String> {
        self.until(|_| false).1
    }
}
