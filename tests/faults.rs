//! Store faults with real processes: Redis killed under load, Redis hung
//! (SIGSTOP), and webhooks delivered through an outage with Stripe-style
//! retries.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::gate::GateLayer;
use pastdue::store::{RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::{AccountId, BillingState};
use tower::ServiceExt;

fn gated(store: Arc<dyn Store>) -> Router {
    Router::new().route("/api/ping", get(|| async { "ok" })).layer(GateLayer::new(store))
}

async fn status_and_time(app: &Router, account: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let req = Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    (res.status(), started.elapsed())
}

/// Generous: catches a request stuck on a dead or hung connection (seconds
/// to minutes), not a slow machine. Speed itself is measured in benches.
const STUCK: Duration = Duration::from_millis(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_under_load_never_gives_a_5xx_or_a_stuck_request() {
    let server = RedisServer::start();
    let store = store_at(&server.url()).await;
    let since = Utc::now() - TimeDelta::days(30);
    for i in (0..40).step_by(4) {
        store.apply(&AccountId::new(&format!("acct-{i}")).unwrap(), None, &[unpaid("in_1", 100, since)]).await.unwrap();
    }
    let app = gated(store.clone());
    // Four clients, each cycling through 40 accounts (every 4th owes money)
    // plus accounts never seen before.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (app, stop, down) = (app.clone(), stop.clone(), down.clone());
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let account = if n % 10 == 9 { format!("new-{c}-{n}") } else { format!("acct-{}", n % 40) };
                    let (status, took) = status_and_time(&app, &account).await;
                    assert!(status == StatusCode::OK || status == StatusCode::PAYMENT_REQUIRED, "{account}: {status}");
                    let outage = down.load(std::sync::atomic::Ordering::SeqCst);
                    if outage && account.starts_with("acct-") && (n % 40).is_multiple_of(4) && n >= 40 {
                        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{account}: the cached debt still blocks");
                    }
                    worst = worst.max(took);
                    n += 1;
                    // A real client waits on its socket between requests; an
                    // in-process loop that never yields would starve the
                    // runtime's timers and make its own latency.
                    tokio::task::yield_now().await;
                }
                (n, worst)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Process control blocks; keep it off the runtime's worker threads.
    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        server
    })
    .await
    .unwrap();
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    // The restarted Redis is empty (no persistence): from here on the old
    // debts are simply unknown, which is the store's truth.
    let _server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let (n, worst) = client.await.unwrap();
        assert!(n > 40, "the client kept being answered ({n} requests)");
        assert!(worst < STUCK, "a request waited {worst:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_behaves_like_a_dead_one_for_the_gate() {
    let server = RedisServer::start();
    let store = store_at(&server.url()).await;
    store.apply(&AccountId::new("late").unwrap(), None, &[unpaid("in_1", 100, Utc::now() - TimeDelta::days(30))]).await.unwrap();
    let app = gated(store.clone());
    assert_eq!(status_and_time(&app, "late").await.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(status_and_time(&app, "fine").await.0, StatusCode::OK);

    server.freeze();
    // The listener's ping notices within about a second and marks every
    // entry unverified; reads then time out after store.read_timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for account in ["late", "fine", "never-seen-1", "never-seen-2"] {
        let (status, took) = status_and_time(&app, account).await;
        let expected = if account == "late" { StatusCode::PAYMENT_REQUIRED } else { StatusCode::OK };
        assert_eq!(status, expected, "{account}");
        assert!(took < STUCK, "{account} waited {took:?} on a hung Redis");
    }
    server.thaw();
}

/// Posts like Stripe: any non-2xx is sent again (here after 20 ms).
async fn deliver(app: &Router, body: Vec<u8>, secret: &str) -> u32 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sig = pastdue::signature::sign(secret, Utc::now().timestamp(), &body);
        let req = Request::post("/webhooks/stripe").header("stripe-signature", sig).body(Body::from(body.clone())).unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status();
        if status.is_success() {
            return attempts;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "only an outage may refuse a valid event");
        assert!(attempts < 500, "never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_through_an_outage() {
    let server = RedisServer::start();
    let mut opts = RedisOptions::default();
    opts.write_timeout = Duration::from_millis(200);
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(StoreUrl::Redis(server.url()), opts).await.unwrap());
    let mut config = pastdue::Config::default();
    config.stripe.webhook_secret = "whsec_outage".into();
    let app = pastdue::stripe::router(&config.stripe, store.clone()).unwrap();

    let t0 = Utc::now().timestamp() - 86_400;
    let n = 60;
    let mut expected = BillingState::default();
    let mut retried = 0;
    let mut refused = Vec::new();
    for i in 0..n {
        // Invoices fail; every third is paid later; statuses move on.
        let (kind, invoice) = match i % 3 {
            2 => ("invoice.paid", format!("in_{}", i - 2)),
            _ => ("invoice.payment_failed", format!("in_{i}")),
        };
        let created = t0 + i as i64;
        let body = serde_json::to_vec(&serde_json::json!({
            "id": format!("evt_{i}"), "type": kind, "created": created,
            "data": { "object": { "id": invoice, "customer": "cus_o", "amount_due": 100 + i, "currency": "eur",
                                   "parent": { "subscription_details": { "metadata": { "account_id": "outage" } } } } }
        }))
        .unwrap();
        // Redis is frozen for events 20-39.
        if i == 20 {
            server.freeze();
        }
        if i == 40 {
            server.thaw();
        }
        if (20..40).contains(&i) {
            // While frozen, a delivery is refused, not lost: it is retried
            // after the thaw below.
            let sig = pastdue::signature::sign("whsec_outage", Utc::now().timestamp(), &body);
            let req = Request::post("/webhooks/stripe").header("stripe-signature", sig).body(Body::from(body.clone())).unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "event {i} during the outage");
            retried += 1;
            expected_later(&mut expected, kind, &invoice, created, 100 + i as i64);
            refused.push(body);
            continue;
        }
        if i == 40 {
            for body in refused.drain(..) {
                deliver(&app, body, "whsec_outage").await;
            }
        }
        deliver(&app, body, "whsec_outage").await;
        expected_later(&mut expected, kind, &invoice, created, 100 + i as i64);
    }
    assert_eq!(retried, 20);
    let mut got = store.load(&AccountId::new("outage").unwrap()).await.unwrap().unwrap();
    got.set_updated_at(chrono::DateTime::UNIX_EPOCH);
    expected.apply(&pastdue::Change::LinkCustomer("cus_o".into()));
    expected.set_updated_at(chrono::DateTime::UNIX_EPOCH);
    assert_eq!(got, expected, "the store equals the in-order application of every event");
}

fn expected_later(state: &mut BillingState, kind: &str, invoice: &str, created: i64, cents: i64) {
    let at = chrono::DateTime::from_timestamp(created, 0).unwrap();
    let change = if kind == "invoice.paid" {
        settled(invoice, at)
    } else {
        pastdue::Change::InvoiceUnpaid {
            id: invoice.into(),
            invoice: pastdue::state::UnpaidInvoice {
                amount_due: cents,
                currency: pastdue::state::Currency::new("eur").unwrap(),
                hosted_url: None,
                number: None,
                since: at,
                observed: at,
                uncollectible: false,
                next_attempt: None,
            },
        }
    };
    state.apply(&change);
}
