//! Nodes, a private Redis or RabbitMQ, and waiting for things to arrive.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, TestDb};
use crate::support::{Got, RawWs, Server, PATIENCE};

pub const SECRET: &str = "cluster-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV";

use crate::common::binary::ci;

fn missing(what: &str) -> bool {
    if ci() {
        panic!("the cluster tests need {what} under CI");
    }
    eprintln!("SKIPPED: the cluster tests need {what}");
    false
}

/// A virtual host of its own on the machine's RabbitMQ (127.0.0.1:5672, guest), so that
/// tests running at once never hear each other; deleted when dropped.
pub struct PrivateVhost {
    pub name: String,
}

impl PrivateVhost {
    pub fn create() -> Option<PrivateVhost> {
        if std::net::TcpStream::connect(("127.0.0.1", 5672)).is_err() {
            missing("RabbitMQ on 127.0.0.1:5672 (rabbitmq-server -detached; .ci/run starts it)");
            return None;
        }
        let name = format!("stoa-test-{}-{}", std::process::id(), rand_suffix());
        for args in [
            vec!["add_vhost", name.as_str()],
            vec![
                "set_permissions",
                "-p",
                name.as_str(),
                "guest",
                ".*",
                ".*",
                ".*",
            ],
        ] {
            let out = Command::new("rabbitmqctl").args(&args).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!(
                    "rabbitmqctl {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    missing(&format!("rabbitmqctl ({e})"));
                    return None;
                }
            }
        }
        Some(PrivateVhost { name })
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for PrivateVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() % 1_000_000
}

/// A `redis-server` of the test's own, on a port nobody else uses.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Options beyond the port (a password, TLS).
    args: Vec<String>,
    /// How a client reaches it.
    url: String,
}

impl PrivateRedis {
    pub fn start() -> Option<PrivateRedis> {
        Self::start_with(|port, _| (Vec::new(), format!("redis://127.0.0.1:{port}/")))
    }

    /// Started with the options `setup` gives for its port and directory, which also says
    /// how a client reaches it.
    pub fn start_with(
        setup: impl FnOnce(u16, &std::path::Path) -> (Vec<String>, String),
    ) -> Option<PrivateRedis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            missing("redis-server");
            return None;
        }
        let port = free_port()?;
        let dir = tempfile::tempdir().ok()?;
        let (args, url) = setup(port, dir.path());
        let mut redis = PrivateRedis {
            port,
            child: None,
            dir,
            args,
            url,
        };
        redis.resume();
        Some(redis)
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Starts it (again) on its port, and waits until it answers.
    pub fn resume(&mut self) {
        let plain = self.args.is_empty() || !self.args.iter().any(|a| a == "--tls-port");
        let mut cmd = Command::new("redis-server");
        if plain {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `rabbitmq-server` of the test's own: its own node name, AMQP and distribution ports,
/// data and log directories, no plugins; started in a process group of its own so that
/// `stop` kills the broker outright (kill -9), as a crash would.
pub struct PrivateRabbit {
    pub port: u16,
    dist_port: u16,
    /// With TLS on `port`: the CA, certificate and key files (plain AMQP then listens on
    /// `plain_port`, which the tests do not use).
    tls: Option<(String, String, String)>,
    plain_port: u16,
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The broker's own start script (`/usr/sbin/rabbitmq-server` switches to the rabbitmq
/// user and the machine's node name).
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

impl PrivateRabbit {
    pub fn start() -> Option<PrivateRabbit> {
        Self::start_with(None)
    }

    /// With AMQP over TLS only on its port (`amqps://`), serving `cert` and `key`.
    pub fn start_tls(ca: &str, cert: &str, key: &str) -> Option<PrivateRabbit> {
        Self::start_with(Some((ca.into(), cert.into(), key.into())))
    }

    fn start_with(tls: Option<(String, String, String)>) -> Option<PrivateRabbit> {
        if !std::path::Path::new(RABBITMQ_SERVER).exists() {
            missing(&format!("{RABBITMQ_SERVER} (Debian's rabbitmq-server)"));
            return None;
        }
        let port = free_port()?;
        let dist_port = free_port()?;
        let dir = tempfile::tempdir().ok()?;
        std::fs::write(dir.path().join("enabled_plugins"), "[].").ok()?;
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").ok()?;
        let mut rabbit = PrivateRabbit {
            port,
            dist_port,
            tls,
            plain_port: free_port()?,
            name: format!(
                "stoa-test-{}-{}@localhost",
                std::process::id(),
                rand_suffix()
            ),
            child: None,
            dir,
        };
        rabbit.resume();
        Some(rabbit)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts it (again, on the same data directory), and waits until it takes AMQP
    /// connections (a broker's start takes some seconds).
    pub fn resume(&mut self) {
        use std::os::unix::process::CommandExt;
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.out")).expect("log file");
        let mut amqp_port = self.port;
        if let Some((ca, cert, key)) = &self.tls {
            amqp_port = self.plain_port;
            std::fs::write(
                d.join("rabbitmq.conf"),
                format!(
                    "listeners.ssl.default = {}\n\
                     ssl_options.cacertfile = {ca}\n\
                     ssl_options.certfile = {cert}\n\
                     ssl_options.keyfile = {key}\n\
                     ssl_options.verify = verify_none\n\
                     ssl_options.fail_if_no_peer_cert = false\n",
                    self.port
                ),
            )
            .expect("rabbitmq.conf");
        }
        let child = Command::new(RABBITMQ_SERVER)
            .current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("rabbitmq-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                let out = std::fs::read_to_string(d.join("server.out")).unwrap_or_default();
                panic!("rabbitmq-server did not start within 90 s:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker and everything it started (kill -9 of its process group).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            // Its AMQP port is closed once the broker is gone.
            let deadline = Instant::now() + PATIENCE;
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "rabbitmq-server outlived kill -9"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Option<u16> {
    Some(
        TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port(),
    )
}

/// The bus a cluster's nodes share.
pub enum Broker {
    Redis(PrivateRedis),
    Rabbit(PrivateRabbit),
}

impl Broker {
    pub fn url(&self) -> String {
        match self {
            Broker::Redis(r) => r.url(),
            Broker::Rabbit(r) => r.url(),
        }
    }

    /// Kills it, as an outage would.
    pub fn stop(&mut self) {
        match self {
            Broker::Redis(r) => r.stop(),
            Broker::Rabbit(r) => r.stop(),
        }
    }

    /// Starts it again and waits until it answers.
    pub fn resume(&mut self) {
        match self {
            Broker::Redis(r) => r.resume(),
            Broker::Rabbit(r) => r.resume(),
        }
    }
}

impl From<PrivateRedis> for Broker {
    fn from(r: PrivateRedis) -> Broker {
        Broker::Redis(r)
    }
}

impl From<PrivateRabbit> for Broker {
    fn from(r: PrivateRabbit) -> Broker {
        Broker::Rabbit(r)
    }
}

/// A database, a bus (a private Redis or RabbitMQ) and `n` nodes sharing them.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub broker: Broker,
    pub db: TestDb,
}

impl Cluster {
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Option<Cluster> {
        Self::start_on(PrivateRedis::start()?, n, extra).await
    }

    /// `n` nodes on their own RabbitMQ.
    pub async fn start_rabbit(n: usize, extra: &[(&str, &str)]) -> Option<Cluster> {
        Self::start_on(PrivateRabbit::start()?, n, extra).await
    }

    /// `n` nodes on `broker`.
    pub async fn start_on(
        broker: impl Into<Broker>,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Option<Cluster> {
        // Without PostgreSQL, `create` has already said SKIPPED (or failed under CI).
        let db = TestDb::create(Backend::Postgres).await?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            broker: broker.into(),
            db,
        };
        for i in 0..n {
            let node = cluster.node(&format!("node{i}"), extra);
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    /// Starts a node (not added to `nodes`).
    pub fn node(&self, id: &str, extra: &[(&str, &str)]) -> Server {
        let bus = self.broker.url();
        let mut env: Vec<(&str, &str)> = vec![
            ("STOA_DATABASE__URL", &self.db.url),
            ("STOA_BUS__URL", &bus),
            ("STOA_CLUSTER__NODE_ID", id),
            ("STOA_AUTH__JWT_SECRET", SECRET),
            ("STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
            // Load runs make requests of one account as fast as the nodes answer.
            ("STOA_HTTP__USER_REQUESTS_PER_SEC", "1000000"),
            ("STOA_HTTP__USER_REQUEST_BURST", "1000000"),
            // Only the bus can bring another node's events in time: the log check, which
            // would also deliver them, is set far beyond any test.
            ("STOA_REALTIME__LOG_CHECK_MS", "600000"),
        ];
        env.extend_from_slice(extra);
        let server = Server::start(&env);
        // The node has joined the bus before the test uses it.
        let deadline = Instant::now() + PATIENCE;
        while server.http("GET", "/readyz", &[], b"").value()["status"] != "ok" {
            assert!(Instant::now() < deadline, "{id} never reached the bus");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

/// Reads `ws` until a text frame satisfies `pred`; returns it and what came before.
pub fn until(
    ws: &mut RawWs,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "waited too long for {what}");
        match ws.read(left) {
            Some(Got::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                if pred(&v) {
                    return v;
                }
            }
            Some(_) => {}
            None => panic!("socket ended while waiting for {what}"),
        }
    }
}

/// Every text frame that arrives within `quiet` of the previous one.
pub fn drain(ws: &mut RawWs, quiet: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Some(got) = ws.read(quiet) {
        if let Got::Text(t) = got {
            out.push(serde_json::from_str(&t).expect("JSON"));
        }
    }
    out
}
