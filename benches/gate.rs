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
use chrono::{TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use pastdue::gate::GateLayer;
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::store::{RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::{AccountId, Ladder, MemoryStore, Standing};
use tower::{Layer, Service};

fn request(account: &str) -> Request<Body> {
    Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap()
}

async fn ok(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from("{\"ok\":true}")))
}

fn debt(days: i64) -> Change {
    let since = Utc::now() - TimeDelta::days(days);
    Change::InvoiceUnpaid {
        id: "in_1".into(),
        invoice: UnpaidInvoice {
            amount_due: 1200,
            currency: Currency::new("eur").unwrap(),
            hosted_url: Some("https://invoice.stripe.com/i/in_1".into()),
            number: None,
            since,
            observed: since,
            uncollectible: false,
        },
    }
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
