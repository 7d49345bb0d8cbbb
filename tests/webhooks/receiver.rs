//! The webhook receiver of the tests (`receiver.py`, run by `python3`), as the Rust suites
//! drive it: started with its options, and what it was sent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "a-webhook-secret-of-the-test";

/// The Python receiver, and every request it reported.
pub struct Receiver {
    child: Child,
    pub port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub fn start(args: &[&str]) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--secret", SECRET])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first: Value =
            serde_json::from_str(&lines.next().expect("a port").expect("line")).expect("JSON");
        let port = first["port"].as_u64().expect("port") as u16;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    into.lock().unwrap().push(v);
                }
            }
        });
        Receiver { child, port, seen }
    }

    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hook", self.port)
    }

    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `check` holds of what arrived.
    pub async fn until(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen();
            if check(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "waited too long for {what}: {seen:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The offsets of the requests the receiver accepted (200), in arrival order.
pub fn accepted(seen: &[Value]) -> Vec<i64> {
    seen.iter()
        .filter(|v| v["status"] == 200)
        .map(|v| v["offset"].as_i64().unwrap())
        .collect()
}
