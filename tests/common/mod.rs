//! Test support, one harness per file: a private `redis-server`
//! (`redis.rs`), a Redis Cluster (`cluster.rs`), localstripe
//! (`localstripe.rs`), an SMTP receiver (`smtp.rs`), the demo binary
//! (`demo.rs`), state builders (`builders.rs`), signed Stripe events
//! (`events.rs`) and a stand-in for Twilio's Messages API (`twilio.rs`). Every process is
//! started on a free loopback port and stopped when dropped.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::time::{Duration, Instant};


mod builders;
mod cluster;
mod demo;
mod events;
mod localstripe;
#[cfg(feature = "paddle")]
mod paddle;
mod redis;
mod smtp;
mod twilio;

#[allow(unused_imports)]
pub use self::builders::*;
#[allow(unused_imports)]
pub use self::cluster::*;
#[allow(unused_imports)]
pub use self::demo::*;
#[allow(unused_imports)]
pub use self::events::*;
#[allow(unused_imports)]
pub use self::localstripe::*;
#[cfg(feature = "paddle")]
#[allow(unused_imports)]
pub use self::paddle::*;
#[allow(unused_imports)]
pub use self::redis::*;
#[allow(unused_imports)]
pub use self::smtp::*;
#[allow(unused_imports)]
pub use self::twilio::*;

/// Runs the venv's Python (`scripts/test.sh` makes `.venv` and installs
/// the reference libraries into it) with `args`, `input` on stdin; its
/// stdout. A failing script fails the test, with its stderr.
pub fn venv_python(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python (scripts/test.sh makes it)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// Runs `attempt` every 10 ms until it says done or `limit` passes; whether
/// it did. For conditions only a repeated action can observe (a lease in
/// the store lapsing, then the next request).
pub async fn until<F: std::future::Future<Output = bool>>(limit: Duration, mut attempt: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if attempt().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTP receiver on loopback that takes JSON POSTed to `path` (a chat
/// webhook, a notice receiver), answers 200 and keeps each body.
pub async fn json_receiver(path: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    async fn receive(axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<serde_json::Value>>>>, body: axum::body::Bytes) -> axum::http::StatusCode {
        seen.lock().unwrap().push(serde_json::from_slice(&body).expect("JSON"));
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new().route(path, axum::routing::post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Every notifier sweeps at once; how many notices they sent between them.
#[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
pub async fn sweep_all(notifiers: &[pastdue::notify::Notifier]) -> usize {
    futures_util::future::join_all(notifiers.iter().map(|n| n.sweep())).await.into_iter().map(|r| r.unwrap()).sum()
}

// ---- one suite, every backend ------------------------------------------------
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
