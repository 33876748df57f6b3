//! Every provider through the same fault tests: Stripe, Paddle and
//! in-house events (Standard Webhooks) deliver the same story of failed and
//! paid invoices; re-delivered and reversed, they leave the same state, on
//! the memory store, Redis and a Redis Cluster; through a Redis outage each
//! answers 503, and the retry applies once.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::{AccountId, Config, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

const STRIPE_SECRET: &str = "whsec_providers_stripe";
const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Clone, Copy, Debug)]
enum Provider {
    Stripe,
    Paddle,
    Events,
}

const PROVIDERS: [Provider; 3] = [Provider::Stripe, Provider::Paddle, Provider::Events];

/// One fact of the story: invoice `invoice` failed (owing `amount`) or was
/// paid, at `at`.
struct Fact {
    seq: usize,
    invoice: usize,
    paid: bool,
    at: DateTime<Utc>,
    amount: i64,
}

fn story() -> Vec<Fact> {
    let t0 = Utc::now() - TimeDelta::days(30);
    let mut facts = Vec::new();
    for i in 0..6 {
        facts.push(Fact { seq: facts.len(), invoice: i, paid: false, at: t0 + TimeDelta::days(i as i64), amount: 1_000 + i as i64 });
    }
    for i in [0, 2, 4] {
        facts.push(Fact { seq: facts.len(), invoice: i, paid: true, at: t0 + TimeDelta::days(10 + i as i64), amount: 0 });
    }
    // A later failure of invoice 5 with a new amount (a retry that failed again).
    facts.push(Fact { seq: facts.len(), invoice: 5, paid: false, at: t0 + TimeDelta::days(20), amount: 2_000 });
    facts
}

fn config() -> Config {
    let mut c = Config::default();
    c.stripe.webhook_secret = STRIPE_SECRET.into();
    c.paddle.webhook_secret = PADDLE_SECRET.into();
    c.events.webhook_secret = EVENTS_SECRET.into();
    c
}

fn routes(store: Arc<dyn Store>) -> Router {
    pastdue::Pastdue::new(&config(), store).build().unwrap().routes
}

impl Provider {
    /// The state's key for invoice `n`.
    fn key(self, n: usize) -> String {
        match self {
            Provider::Stripe => format!("in_{n}"),
            Provider::Paddle => format!("paddle:txn_{n}"),
            Provider::Events => format!("events:INV-{n}"),
        }
    }

    /// `fact` for `account`, signed now as the provider signs.
    fn request(self, account: &str, fact: &Fact) -> Request<Body> {
        let n = fact.invoice;
        match self {
            Provider::Stripe => {
                let kind = if fact.paid { "invoice.paid" } else { "invoice.payment_failed" };
                let object = invoice_object(account, &format!("in_{n}"), if fact.paid { "paid" } else { "open" }, fact.amount);
                signed_delivery(STRIPE_SECRET, event_body(&format!("evt_{account}_{}", fact.seq), kind, fact.at, object))
            }
            Provider::Paddle => {
                let (kind, status) = if fact.paid { ("transaction.completed", "completed") } else { ("transaction.payment_failed", "past_due") };
                let txn = paddle_transaction(&format!("txn_{n}"), status, &format!("ctm_{account}"), Some(account), fact.amount, "EUR", fact.at);
                paddle_delivery(PADDLE_SECRET, &notification(&format!("evt_{account}_{}", fact.seq), kind, fact.at, &txn))
            }
            Provider::Events => {
                let body = if fact.paid {
                    json!({ "type": "invoice.paid", "timestamp": fact.at.to_rfc3339(), "data": { "account": account, "invoice": format!("INV-{n}") } })
                } else {
                    json!({ "type": "invoice.past_due", "timestamp": fact.at.to_rfc3339(), "data": { "account": account, "invoice": format!("INV-{n}"), "amount_due": fact.amount, "currency": "eur" } })
                }
                .to_string();
                let id = format!("msg_{account}_{}", fact.seq);
                let key = pastdue::events::signature::key(EVENTS_SECRET).unwrap();
                let ts = Utc::now().timestamp();
                let sig = pastdue::events::signature::sign(&key, &id, ts, body.as_bytes());
                Request::post("/webhooks/events").header("webhook-id", id).header("webhook-timestamp", ts.to_string()).header("webhook-signature", sig).body(Body::from(body)).unwrap()
            }
        }
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What the ladder reads off a state: the owed invoices, what settled,
/// and since when the account owes.
fn summary(state: &pastdue::BillingState, provider: Provider) -> String {
    let owed: Vec<String> = state.unpaid().iter().map(|(k, i)| format!("{k}={}@{}", i.amount_due, i.since.timestamp())).collect();
    let settled: Vec<String> = (0..6).filter_map(|n| state.settlement(&provider.key(n)).map(|s| format!("{n}:{s:?}"))).collect();
    format!("owed {owed:?}; settled {settled:?}; since {:?}", state.past_due_since().map(|t| t.timestamp()))
}

/// The story in order, and reversed with every delivery twice, leave the
/// same state for every provider.
async fn duplicates_and_reversed_order_leave_the_same_state(backend: Backend) {
    let app = routes(backend.store.clone());
    // One story, its times fixed once for every delivery.
    let story = story();
    for provider in PROVIDERS {
        let name = format!("{provider:?}").to_lowercase();
        let (ordered, shuffled) = (format!("{name}_ordered"), format!("{name}_shuffled"));
        for fact in &story {
            let (status, v) = send(&app, provider.request(&ordered, fact)).await;
            assert_eq!((status, v["result"].as_str()), (StatusCode::OK, Some("applied")), "{provider:?}: {v}");
        }
        for fact in story.iter().rev() {
            assert_eq!(send(&app, provider.request(&shuffled, fact)).await.1["result"], "applied", "{provider:?}");
            assert_eq!(send(&app, provider.request(&shuffled, fact)).await.1["result"], "duplicate", "{provider:?}: once per delivery id");
        }
        let load = |a: String| {
            let store = backend.store.clone();
            async move { store.load(&AccountId::new(&a).unwrap()).await.unwrap().unwrap() }
        };
        let (a, b) = (load(ordered).await, load(shuffled).await);
        assert_eq!(summary(&a, provider), summary(&b, provider), "{provider:?}");
        // Invoices 1, 3 and 5 still owed; 5 at its newer amount; since invoice 1 failed.
        let owed: Vec<&String> = a.unpaid().keys().collect();
        assert_eq!(owed, vec![&provider.key(1), &provider.key(3), &provider.key(5)], "{provider:?}");
        assert_eq!(a.unpaid()[&provider.key(5)].amount_due, 2_000, "{provider:?}");
        let owed_since = a.past_due_since().unwrap();
        assert!(owed_since <= story[1].at, "{provider:?}: {owed_since}");
    }
}

backend_suite!(duplicates_and_reversed_order_leave_the_same_state);

/// Redis frozen: every provider answers 503 (so the sender retries) and
/// writes nothing; thawed, the retry applies once and a third delivery is
/// a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_then_the_retry_applies_once() {
    let server = RedisServer::start();
    let mut opts = pastdue::store::RedisOptions::default();
    opts.write_timeout = Duration::from_millis(200);
    opts.read_timeout = Duration::from_millis(200);
    let store = store_with(&server.url(), opts).await;
    let app = routes(store.clone());
    let fact = &story()[0];
    for provider in PROVIDERS {
        let account = format!("{provider:?}_outage").to_lowercase();
        server.freeze();
        let (status, v) = send(&app, provider.request(&account, fact)).await;
        server.thaw();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{provider:?}: {v}");
        let mut applied = None;
        for _ in 0..100 {
            let (status, v) = send(&app, provider.request(&account, fact)).await;
            if status == StatusCode::OK {
                applied = Some(v);
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{provider:?}: only an outage refuses");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(applied.expect("applied after the thaw")["result"], "applied", "{provider:?}");
        assert_eq!(send(&app, provider.request(&account, fact)).await.1["result"], "duplicate", "{provider:?}");
        let state = store.load(&AccountId::new(&account).unwrap()).await.unwrap().unwrap();
        assert_eq!(state.unpaid()[&provider.key(0)].amount_due, fact.amount, "{provider:?}");
    }
}
