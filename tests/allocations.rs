//! A pass allocates nothing: an account in good standing, found in the
//! cache, goes through the gate without one heap allocation — counted by a
//! global allocator that counts this thread's allocations while a request
//! is being decided (a count is deterministic, so this may be a test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::sync::Arc;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pastdue::gate::{GateLayer, InGoodStanding};
use pastdue::{AccountId, MemoryStore, Standing, Store};
use tower::{Layer, Service};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (COUNT.with(Cell::get), out)
}

/// The app behind the gate: answers without allocating, and says by its
/// status whether the gate left the marker (200) or a `Standing` (203).
#[derive(Clone)]
struct App;

impl Service<Request<()>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<()>) -> Self::Future {
        let marked = req.extensions().get::<InGoodStanding>().is_some();
        let boxed = req.extensions().get::<Standing>().is_some();
        let mut res = Response::new(Full::new(Bytes::from_static(b"app")));
        *res.status_mut() = match (marked, boxed) {
            (true, false) => http::StatusCode::OK,
            (false, true) => http::StatusCode::NON_AUTHORITATIVE_INFORMATION,
            _ => http::StatusCode::IM_A_TEAPOT,
        };
        std::future::ready(Ok(res))
    }
}

/// A request as a router hands it to a route's layers: it already carries
/// an extension (axum's `MatchedPath`, say), so its extensions map exists.
fn request(account: &str) -> Request<()> {
    #[derive(Clone)]
    struct Routed;
    let mut req = Request::get("/app").header("x-account-id", account).body(()).unwrap();
    req.extensions_mut().insert(Routed);
    req
}

fn decide(gate: &mut impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>>>, req: Request<()>) -> Response<Full<Bytes>> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(gate.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(gate.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(res) => res.unwrap(),
        Poll::Pending => panic!("a cache hit answers in one poll"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cached_account_in_good_standing_passes_without_allocating() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store.apply(&AccountId::new("acme").unwrap(), None, &[pastdue::Change::ContactEmail("billing@acme.example".into())]).await.unwrap();
    let mut gate = GateLayer::new(store).layer(App);
    // The first request misses and fills the cache (and starts the
    // counters' flusher); the ones after are hits.
    let mut first = std::pin::pin!(gate.call(request("acme")));
    let res = std::future::poll_fn(|cx| first.as_mut().poll(cx)).await.unwrap();
    assert!(res.status().is_success());
    for _ in 0..3 {
        let req = request("acme");
        let (count, res) = allocations(|| decide(&mut gate, req));
        assert_eq!(count, 0, "a pass allocated {count} times");
        assert_eq!(res.status(), http::StatusCode::OK, "the zero-size marker, not a boxed Standing");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_extractor_expands_the_marker_into_good_standing() {
    let mut ext = http::Extensions::new();
    assert!(Standing::from_extensions(&ext).is_none());
    ext.insert(InGoodStanding);
    let standing = Standing::from_extensions(&ext).unwrap();
    assert_eq!((standing.stage().name(), standing.reason()), ("active", pastdue::Reason::GoodStanding));
    assert!(standing.amount_due().is_none() && standing.past_due_since().is_none());
}
