//! The gate's cost per request, against the same service without it.
//!
//! `cargo bench --bench gate`. Compare each `gate/*` line with `bare`: the
//! difference is what the layer adds. The miss benchmark starts its own
//! `redis-server` on a free port.

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use pastdue::gate::GateLayer;
use pastdue::state::Change;
use pastdue::store::{RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::{AccountId, Ladder, MemoryStore, Standing};
use tower::{Layer, Service};

#[path = "../tools/hit_fixtures.rs"]
mod hit_fixtures;
use hit_fixtures::{debt, now, ok};

fn request(account: &str) -> Request<Body> {
    Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap()
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Redis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (Redis(child), port)
}

/// `threads` OS threads call `svc` at once, each `iters` times, rotating
/// over `accounts`; the time per iteration is the per-request latency one
/// worker sees, so contention between workers shows as a rise with `threads`.
fn concurrent<S>(svc: &S, accounts: &[http::HeaderValue], threads: usize, iters: u64) -> Duration
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut svc = svc.clone();
            let accounts = accounts.to_vec();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = std::time::Instant::now();
                for i in 0..iters as usize {
                    let account = accounts[(i * 7 + t * 13) % accounts.len()].clone();
                    let req = Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap();
                    std::hint::black_box(now(svc.call(req)).unwrap());
                }
                start.elapsed()
            })
        })
        .collect();
    barrier.wait();
    handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let gate = rt.block_on(async {
        store.apply(&AccountId::new("notice").unwrap(), None, &[debt(1)]).await.unwrap();
        store.apply(&AccountId::new("blocked").unwrap(), None, &[debt(30)]).await.unwrap();
        store
            .apply(&AccountId::new("paying").unwrap(), None, &[Change::LinkCustomer("cus_1".into())])
            .await
            .unwrap();
        GateLayer::new(store.clone())
    });
    let mut bare = tower::service_fn(ok);
    let mut gated = rt.block_on(async { gate.layer(tower::service_fn(ok)) });
    // Warm the cache.
    rt.block_on(async {
        for a in ["paying", "notice", "blocked", "stranger"] {
            gated.call(request(a)).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("hit");
    group.bench_function("bare", |b| b.to_async(&rt).iter(|| bare.call(request("paying"))));
    for (name, account) in [("gate/active", "paying"), ("gate/unknown", "stranger"), ("gate/notice", "notice"), ("gate/blocked_402", "blocked")] {
        let mut svc = gated.clone();
        group.bench_function(name, |b| b.to_async(&rt).iter(|| svc.call(request(account))));
    }
    group.finish();

    // Several workers at once, the way a server runs: 1,000 paying accounts
    // rotated, bare service vs gate, in the same group.
    let accounts: Vec<http::HeaderValue> = (0..1_000).map(|i| http::HeaderValue::from_str(&format!("acct-{i}")).unwrap()).collect();
    let many = rt.block_on(async {
        for a in &accounts {
            store.apply(&AccountId::new(a.to_str().unwrap()).unwrap(), None, &[Change::LinkCustomer(format!("cus_{}", a.to_str().unwrap()))]).await.unwrap();
        }
        let svc = GateLayer::new(store.clone()).layer(tower::service_fn(ok));
        for a in &accounts {
            let req = Request::get("/api/ping").header("x-account-id", a.clone()).body(Body::empty()).unwrap();
            svc.clone().call(req).await.unwrap();
        }
        svc
    });
    let bare_svc = tower::service_fn(ok);
    // The same inside an axum Router, the way apps mount the gate
    // (`.layer(gate)` runs after routing): the router's own work is in both.
    let handler = || async { Response::new(Body::from("{\"ok\":true}")) };
    let axum_bare: axum::Router = axum::Router::new().route("/api/ping", axum::routing::get(handler));
    // Any layer added with Router::layer costs axum a clone and a boxed
    // future per request; a layer that does nothing shows that cost.
    let axum_layer: axum::Router = axum::Router::new().route("/api/ping", axum::routing::get(handler)).layer(tower::layer::util::Identity::new());
    let axum_gate: axum::Router = rt.block_on(async {
        let gate = GateLayer::new(store.clone());
        let router = axum::Router::new().route("/api/ping", axum::routing::get(handler)).layer(gate);
        for a in &accounts {
            let req = Request::get("/api/ping").header("x-account-id", a.clone()).body(Body::empty()).unwrap();
            tower::ServiceExt::oneshot(router.clone(), req).await.unwrap();
        }
        router
    });
    // A do-nothing layer whose service holds an `Arc`, as most layers
    // with shared state do: axum clones the layered service per request,
    // so this shows what one shared count costs when workers share it.
    let axum_arc: axum::Router = axum::Router::new().route("/api/ping", axum::routing::get(handler)).layer(ArcLayer(Arc::new(())));
    // The gate around the router instead of inside it: cloned per
    // connection, not per request (and run before routing).
    let axum_outer = rt.block_on(async { GateLayer::new(store.clone()).layer(axum::Router::new().route("/api/ping", axum::routing::get(handler))) });
    let mut group = c.benchmark_group("threads");
    for threads in [1, 2, 4] {
        group.bench_function(format!("bare/{threads}"), |b| b.iter_custom(|iters| concurrent(&bare_svc, &accounts, threads, iters)));
        group.bench_function(format!("gate_active/{threads}"), |b| b.iter_custom(|iters| concurrent(&many, &accounts, threads, iters)));
    }
    for threads in [1, 2] {
        group.bench_function(format!("axum_bare/{threads}"), |b| b.iter_custom(|iters| concurrent(&axum_bare, &accounts, threads, iters)));
        group.bench_function(format!("axum_layer/{threads}"), |b| b.iter_custom(|iters| concurrent(&axum_layer, &accounts, threads, iters)));
        group.bench_function(format!("axum_gate/{threads}"), |b| b.iter_custom(|iters| concurrent(&axum_gate, &accounts, threads, iters)));
        group.bench_function(format!("axum_arc/{threads}"), |b| b.iter_custom(|iters| concurrent(&axum_arc, &accounts, threads, iters)));
        group.bench_function(format!("axum_outer/{threads}"), |b| b.iter_custom(|iters| concurrent(&axum_outer, &accounts, threads, iters)));
    }
    group.finish();

    // What every gated request pays before the cache: the demo's resolver
    // chain (header, query, cookie) and the default exempt globs.
    let config = pastdue::Config::default();
    let exempt = pastdue::gate::ExemptPaths::new(&config.gate.exempt).unwrap();
    c.bench_function("parts/exempt_miss", |b| b.iter(|| exempt.matches(std::hint::black_box("/api/projects/42"))));
    c.bench_function("parts/exempt_hit", |b| b.iter(|| exempt.matches(std::hint::black_box("/billing/pay"))));
    {
        use pastdue::gate::{CookieResolver, HeaderResolver, QueryResolver, RequestView, ResolveAccount};
        let chain = HeaderResolver::new(config.gate.account_header.clone()).or(QueryResolver::new("account")).or(CookieResolver::new("account"));
        let by_header = request("acct-1");
        let by_cookie = Request::get("/api/ping?x=1").header("cookie", "theme=dark; account=acct-1").body(Body::empty()).unwrap();
        c.bench_function("parts/resolve_header", |b| b.iter(|| chain.resolve(&RequestView::of(std::hint::black_box(&by_header))).map(|a| a.map(|a| a.len()))));
        c.bench_function("parts/resolve_cookie", |b| b.iter(|| chain.resolve(&RequestView::of(std::hint::black_box(&by_cookie))).map(|a| a.map(|a| a.len()))));
    }

    let ladder = Ladder::standard();
    let mut state = pastdue::BillingState::default();
    state.apply(&debt(15));
    let now = Utc::now();
    c.bench_function("standing/evaluate_debt", |b| b.iter(|| Standing::evaluate(Some(std::hint::black_box(&state)), &ladder, now)));
    c.bench_function("standing/evaluate_unknown", |b| b.iter(|| Standing::evaluate(std::hint::black_box(None), &ladder, now)));

    // A miss: every request names an account never seen, so the gate reads
    // Redis (an HGET over loopback) before answering.
    let (_redis, port) = start_redis();
    let redis_gate = rt.block_on(async {
        let store = RedisStore::connect(StoreUrl::Redis(format!("redis://127.0.0.1:{port}")), RedisOptions::default())
            .await
            .unwrap();
        GateLayer::new(Arc::new(store))
    });
    let mut miss_svc = redis_gate.layer(tower::service_fn(ok));
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("miss");
    group.bench_function("gate/redis_read", |b| {
        b.to_async(&rt).iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            miss_svc.call(request(&format!("new-{n}")))
        })
    });
    group.finish();
}

criterion_group! {
    name = gate;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(gate);

/// A layer that does nothing but hold a shared count (see `axum_arc`).
#[derive(Clone)]
struct ArcLayer(Arc<()>);

impl<S> Layer<S> for ArcLayer {
    type Service = ArcService<S>;
    fn layer(&self, inner: S) -> ArcService<S> {
        ArcService(inner, self.0.clone())
    }
}

/// Held only to be cloned with the service.
#[derive(Clone)]
struct ArcService<S>(S, #[allow(dead_code)] Arc<()>);

impl<S: Service<R>, R> Service<R> for ArcService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        self.0.call(req)
    }
}
