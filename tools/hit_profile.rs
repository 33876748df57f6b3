//! Where a cache hit's time goes, counted rather than timed: heap
//! allocations per request (a counting allocator) and, under
//! `valgrind --tool=callgrind`, instructions per request.
//!
//! `cargo run --release --example hit_profile -- <bare|active|notice|unknown|blocked|miss> [requests]`
//! (`blocked`: a suspended account's `402`; `miss`: a new account per
//! request, read from the store; `many`: hits on 10,000 paying accounts in
//! turn, for `valgrind --tool=cachegrind`: what the cache's memory layout
//! costs in cache misses, which an instruction count cannot show)
//! prints allocations per request for that case. For instructions, run the
//! same command under callgrind for two cases and subtract:
//! `(Ir(active) - Ir(bare)) / requests` is what the gate adds per hit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use axum::body::Body;
use http::Request;
use pastdue::gate::GateLayer;
use pastdue::state::Change;
use pastdue::{AccountId, MemoryStore, Store};
use tower::{Layer, Service};

#[path = "hit_fixtures.rs"]
mod hit_fixtures;
use hit_fixtures::{debt, now, ok};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is a const-initialised thread-local Cell (no allocation, no
// destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "active".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // `many`: static header values, so a clone costs what `active`'s does.
    let many: Vec<http::HeaderValue> = if case == "many" { paying_accounts(&rt, &store, 10_000) } else { Vec::new() };
    let (account, gated) = rt.block_on(async {
        store.apply(&AccountId::new("paying").unwrap(), None, &[Change::LinkCustomer("cus_1".into())]).await.unwrap();
        store.apply(&AccountId::new("notice").unwrap(), None, &[debt(1)]).await.unwrap();
        store.apply(&AccountId::new("gone").unwrap(), None, &[debt(30)]).await.unwrap();
        let account = match case.as_str() {
            "bare" | "active" | "many" => "paying",
            "notice" => "notice",
            "unknown" | "miss" => "stranger",
            "blocked" => "gone",
            other => panic!("unknown case {other}: bare, active, notice, unknown, blocked, miss or many"),
        };
        let mut svc = GateLayer::new(store.clone()).layer(tower::service_fn(ok));
        let req = Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap();
        svc.call(req).await.unwrap();
        (account, svc)
    });
    // `many`: each account read once, so every request after is a hit.
    for account in &many {
        let req = Request::get("/api/ping").header("x-account-id", account.clone()).body(Body::empty()).unwrap();
        std::hint::black_box(rt.block_on(gated.clone().call(req)).unwrap());
    }
    let header = http::HeaderValue::from_static(account);
    let mut bare = tower::service_fn(ok);
    let mut gated = gated;
    let before = ALLOCATIONS.with(Cell::get);
    for i in 0..n {
        let account = match case.as_str() {
            "miss" => http::HeaderValue::try_from(format!("new-{i}")).unwrap(),
            "many" => many[(i as usize * 7_919) % many.len()].clone(),
            _ => header.clone(),
        };
        let req = Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap();
        let res = if case == "bare" { now(bare.call(req)) } else { now(gated.call(req)) };
        std::hint::black_box(res.unwrap());
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    println!("{case}: {n} requests, {:.2} allocations per request (request and response included)", allocations as f64 / n as f64);
}

/// `n` paying accounts, known to the store before the gate is built (so no
/// invalidation of theirs reaches its cache), as static header values.
fn paying_accounts(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>, n: usize) -> Vec<http::HeaderValue> {
    rt.block_on(async {
        let mut headers = Vec::with_capacity(n);
        for i in 0..n {
            let id: &'static str = Box::leak(format!("acct-{i}").into_boxed_str());
            store.apply(&AccountId::new(id).unwrap(), None, &[Change::LinkCustomer(format!("cus_{i}"))]).await.unwrap();
            headers.push(http::HeaderValue::from_static(id));
        }
        headers
    })
}
