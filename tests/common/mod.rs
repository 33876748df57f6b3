//! Test helpers: private `redis-server` processes and state builders.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use pastdue::state::{Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice};

/// A `redis-server` of our own on a free loopback port, killed on drop.
/// Tests never touch a Redis they did not start.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        for _ in 0..20 {
            let port = free_port();
            if let Some(child) = spawn_redis(port, &[]) {
                return Self { child: Some(child), port };
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed? scripts/test.sh installs it)");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = spawn_redis(self.port, &[]) {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not restart redis-server on port {}", self.port);
    }

    /// Freezes the process (SIGSTOP): the socket stays open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    pub fn cmd(&self, line: &str) -> String {
        raw_command(self.port, line).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_redis(port: u16, extra: &[&str]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--loglevel", "warning"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed; run scripts/test.sh, which installs it");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // port taken or bad args
        }
        if raw_command(port, "PING").is_some_and(|r| r.starts_with("+PONG")) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn raw_command(port: u16, line: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Polls `check` every 5 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- state builders ----------------------------------------------------

pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

pub const DAY: i64 = 86_400;

pub fn unpaid(id: &str, cents: i64, since: DateTime<Utc>) -> Change {
    Change::InvoiceUnpaid {
        id: id.into(),
        invoice: UnpaidInvoice {
            amount_due: cents,
            currency: Currency::new("eur").unwrap(),
            hosted_url: Some(format!("https://invoice.stripe.com/i/{id}").into()),
            number: Some(format!("N-{id}")),
            since,
            observed: since,
            uncollectible: false,
        },
    }
}

pub fn settled(id: &str, at: DateTime<Utc>) -> Change {
    Change::InvoiceSettled { id: id.into(), at }
}

pub fn subscription(id: &str, status: SubscriptionStatus, at: DateTime<Utc>) -> Change {
    Change::Subscription { id: id.into(), fact: SubscriptionFact { status, at } }
}

// ---- localstripe ----------------------------------------------------------

/// A private `localstripe` (the Stripe emulator) on a free port, killed on
/// drop. `scripts/test.sh` installs it into `.venv`.
pub struct Localstripe {
    child: Child,
    port: u16,
}

impl Localstripe {
    pub fn start() -> Self {
        let bin = std::env::var("LOCALSTRIPE_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/localstripe").to_owned());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: run scripts/test.sh (it installs localstripe into .venv)"
        );
        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--from-scratch"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("localstripe did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- Redis Cluster -----------------------------------------------------------

/// A private 3-master Redis Cluster on loopback, killed (and its files
/// removed) on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        for attempt in 0..5 {
            if let Some(cluster) = Self::try_start(attempt) {
                return cluster;
            }
        }
        panic!("could not start a 3-node redis cluster");
    }

    fn try_start(attempt: u32) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("pastdue-cluster-{}-{}-{attempt}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).ok()?;
        // A node needs its port and port + 10000 (the cluster bus) free.
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let p = free_port();
            if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() && !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut cluster = Self { nodes: Vec::new(), ports: ports.clone(), dir: dir.clone() };
        for &p in &ports {
            let conf = dir.join(format!("nodes-{p}.conf"));
            let child = spawn_redis(p, &["--cluster-enabled", "yes", "--cluster-config-file", conf.to_str()?, "--dir", dir.to_str()?])?;
            cluster.nodes.push(child);
        }
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&hosts)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !created.success() {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = ports.iter().all(|&p| raw_command(p, "CLUSTER INFO").is_some_and(|i| i.contains("cluster_state:ok")));
            if ok {
                return Some(cluster);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- one suite, every backend ----------------------------------------------------

/// A store plus whatever keeps its backend alive.
pub struct Backend {
    pub store: std::sync::Arc<dyn pastdue::Store>,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

/// A Redis store with the production defaults (a 50 ms read timeout).
pub async fn store_at(url: &str) -> std::sync::Arc<dyn pastdue::Store> {
    store_with(url, pastdue::store::RedisOptions::default()).await
}

pub async fn store_with(url: &str, opts: pastdue::store::RedisOptions) -> std::sync::Arc<dyn pastdue::Store> {
    let url = pastdue::store::StoreUrl::parse(url).unwrap();
    std::sync::Arc::new(pastdue::RedisStore::connect(url, opts).await.unwrap())
}

/// For suites that test behaviour, not timing: a loaded CI machine must not
/// turn a slow read into a failed assertion. (Timeouts are tested in
/// `faults.rs` with the production defaults.)
pub fn relaxed() -> pastdue::store::RedisOptions {
    let mut opts = pastdue::store::RedisOptions::default();
    opts.read_timeout = Duration::from_secs(2);
    opts
}

pub async fn memory() -> Backend {
    Backend { store: std::sync::Arc::new(pastdue::MemoryStore::new()), redis: None, cluster: None }
}

pub async fn redis() -> Backend {
    let server = RedisServer::start();
    Backend { store: store_with(&server.url(), relaxed()).await, redis: Some(server), cluster: None }
}

pub async fn cluster() -> Backend {
    let cluster = RedisCluster::start();
    Backend { store: store_with(&cluster.url(), relaxed()).await, redis: None, cluster: Some(cluster) }
}

/// Runs each named `async fn(Backend)` against the memory store, a private
/// `redis-server` and a private 3-master Redis Cluster.
#[macro_export]
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::memory().await).await })*
        }
        mod redis_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::redis().await).await })*
        }
        mod redis_cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::cluster().await).await })*
        }
    };
}

// ---- the demo binary ---------------------------------------------------------

/// The example binary, killed on drop.
pub struct Demo {
    child: Child,
    pub url: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The quickstart example binary, built.
pub fn demo_binary() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--example", "quickstart"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building the quickstart example failed");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into());
    format!("{target}/debug/examples/quickstart")
}

pub fn start_demo(envs: &[(&str, String)]) -> Demo {
    let bin = demo_binary();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.env("PASTDUE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PASTDUE_CONFIG")
        .env_remove("PASTDUE_STORE__URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // The demo prints its URL once it is listening.
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut lines, &mut first).unwrap();
    // Keep draining, so the demo's later prints never hit a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    assert!(first.contains(&format!("http://127.0.0.1:{port}")), "unexpected first line: {first:?}");
    Demo { child, url: format!("http://127.0.0.1:{port}") }
}


// ---- SMTP -------------------------------------------------------------------------

/// A private SMTP server (aiosmtpd from the test venv) writing every message
/// into a maildir; killed on drop.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    pub maildir: std::path::PathBuf,
}

impl SmtpServer {
    pub fn start() -> Self {
        let port = free_port();
        let maildir = std::env::temp_dir().join(format!("pastdue-maildir-{}-{port}", std::process::id()));
        let mut s = Self { child: None, port, maildir };
        s.restart();
        s
    }

    /// An address nothing listens on yet (for "SMTP down" tests).
    pub fn reserved() -> Self {
        let port = free_port();
        let maildir = std::env::temp_dir().join(format!("pastdue-maildir-{}-{port}", std::process::id()));
        Self { child: None, port, maildir }
    }

    pub fn restart(&mut self) {
        let python = std::env::var("AIOSMTPD_PYTHON")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned());
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(self.maildir.join(sub)).unwrap();
        }
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} -m aiosmtpd: {e} (scripts/test.sh installs aiosmtpd into .venv)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in entries.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// The default config with a ladder in seconds: notice at 0, warning and
/// suspended after the given seconds (for tests where time really passes).
pub fn seconds_ladder(warning: u32, suspended: u32) -> pastdue::Config {
    pastdue::Config::from_toml(&format!(
        r#"
        [[ladder.stages]]
        name = "notice"
        after = "0s"
        action = "notice"
        [[ladder.stages]]
        name = "warning"
        after = "{warning}s"
        action = "warn"
        [[ladder.stages]]
        name = "suspended"
        after = "{suspended}s"
        action = "block"
    "#
    ))
    .unwrap()
}

/// The total of a counter across its labels, from a debugging recorder.
pub fn counter_total(snapshotter: &metrics_util::debugging::Snapshotter, name: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == name)
        .map(|(.., v)| match v {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}
