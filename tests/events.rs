//! Billing facts from in-house invoicing through Standard Webhooks, on real
//! Redis: events signed by the standard's official library
//! (`standardwebhooks` on PyPI, in .venv), the body checked against the
//! published JSON Schema (`docs/events.schema.json`, with `jsonschema`),
//! Stripe's invoices beside them on one account.

#[macro_use]
mod common;


use axum::body::Body;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::{AccountId, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A `whsec_` secret (base64 of 24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Runs `code` with the venv's Python, `input` on stdin; its stdout.
fn py(code: &str, input: &str) -> String {
    venv_python(&["-c", code], input).trim().to_owned()
}

/// `webhook-signature` for a delivery, computed by the official library.
fn official_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let code = format!(
        "import sys\nfrom datetime import datetime, timezone\nfrom standardwebhooks.webhooks import Webhook\nprint(Webhook({secret:?}).sign({id:?}, datetime.fromtimestamp({timestamp}, tz=timezone.utc), sys.stdin.read()))"
    );
    py(&code, body)
}

/// Whether the published schema accepts `body` (`jsonschema`).
fn schema_accepts(body: &Value) -> bool {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.schema.json");
    let code = format!("import json, sys, jsonschema\ntry:\n  jsonschema.validate(json.loads(sys.stdin.read()), json.load(open({schema:?})))\n  print('ok')\nexcept jsonschema.ValidationError as e:\n  print('no: ' + e.message)");
    py(&code, &body.to_string()) == "ok"
}

struct App {
    router: Router,
    store: std::sync::Arc<dyn pastdue::Store>,
    _redis: RedisServer,
}

async fn app() -> App {
    let redis = RedisServer::start();
    let store = store_with(&redis.url(), relaxed()).await;
    let mut c = Config::default();
    c.events.webhook_secret = SECRET.into();
    let parts = pastdue::Pastdue::new(&c, store.clone()).build().unwrap();
    App { router: Router::new().merge(parts.routes.clone()), store, _redis: redis }
}

impl App {
    /// Delivers `body` as `id`, signed by the official library now.
    async fn deliver(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        let raw = body.to_string();
        let ts = Utc::now().timestamp();
        let sig = official_signature(SECRET, id, ts, &raw);
        self.send(id, &ts.to_string(), &sig, raw).await
    }

    async fn send(&self, id: &str, ts: &str, sig: &str, raw: String) -> (StatusCode, Value) {
        let req = Request::post("/webhooks/events").header("webhook-id", id).header("webhook-timestamp", ts).header("webhook-signature", sig).header("content-type", "application/json").body(Body::from(raw)).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn state(&self, account: &str) -> Option<pastdue::BillingState> {
        self.store.load(&AccountId::new(account).unwrap()).await.unwrap()
    }
}

fn at(days_ago: i64) -> String {
    (Utc::now() - TimeDelta::days(days_ago)).to_rfc3339()
}

/// An invoice goes past due, sits beside a Stripe invoice on the same
/// account, keeps its own pay URL, is paid; a re-delivered id counts once;
/// a due date coming, a subscription ending, a contact: each lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_move_the_ladder_beside_stripe() {
    let app = app().await;
    let past_due = json!({ "type": "invoice.past_due", "timestamp": at(18), "data": {
        "account": "acme", "invoice": "INV-2026-0042", "amount_due": 2500, "currency": "eur",
        "due_at": at(20), "pay_url": "https://billing.example/pay/INV-2026-0042", "number": "2026-0042" } });
    assert!(schema_accepts(&past_due));
    let (status, v) = app.deliver("msg_1", &past_due).await;
    assert_eq!((status, v["result"].as_str()), (StatusCode::OK, Some("applied")), "{v}");
    // A Stripe invoice beside it, newer: the oldest unpaid starts the ladder.
    let stripe_since = Utc::now() - TimeDelta::days(2);
    app.store.apply(&AccountId::new("acme").unwrap(), None, &[unpaid("in_stripe", 4_900, stripe_since)]).await.unwrap();
    let s = app.state("acme").await.unwrap();
    let ours = &s.unpaid().get("events:INV-2026-0042").unwrap();
    assert_eq!((ours.amount_due, ours.hosted_url.as_deref(), ours.number.as_deref()), (2500, Some("https://billing.example/pay/INV-2026-0042"), Some("2026-0042")));
    assert!(s.unpaid().contains_key("in_stripe"), "side by side");
    assert_eq!(s.past_due_since().map(|t| (Utc::now() - t).num_days()), Some(20), "from the due date");
    assert_eq!(pastdue::Policy::default().evaluate(Some(&s), Utc::now()).stage().name(), "suspended");

    let (_, again) = app.deliver("msg_1", &past_due).await;
    assert_eq!(again["result"], "duplicate", "once per webhook-id");

    let paid = json!({ "type": "invoice.paid", "timestamp": at(0), "data": { "account": "acme", "invoice": "INV-2026-0042" } });
    assert!(schema_accepts(&paid));
    assert_eq!(app.deliver("msg_2", &paid).await.0, StatusCode::OK);
    let s = app.state("acme").await.unwrap();
    assert!(!s.unpaid().contains_key("events:INV-2026-0042") && s.unpaid().contains_key("in_stripe"), "only ours is settled");
    assert_eq!(s.settlement("events:INV-2026-0042"), Some(pastdue::state::Settlement::Paid));

    let soon = json!({ "type": "invoice.due_soon", "timestamp": at(0), "data": { "account": "globex", "invoice": "INV-7", "amount_due": 9900, "currency": "usd", "due_at": (Utc::now() + TimeDelta::days(3)).to_rfc3339() } });
    let ended = json!({ "type": "subscription.ended", "timestamp": at(0), "data": { "account": "globex" } });
    let contact = json!({ "type": "contact.updated", "timestamp": at(0), "data": { "account": "globex", "email": "ap@globex.example" } });
    for (i, body) in [&soon, &ended, &contact].into_iter().enumerate() {
        assert!(schema_accepts(body), "{body}");
        let (status, v) = app.deliver(&format!("msg_g{i}"), body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let g = app.state("globex").await.unwrap();
    assert_eq!(g.upcoming()["events:INV-7"].amount_due, 9900);
    assert_eq!(g.subscriptions()["events:subscription"].status, pastdue::state::SubscriptionStatus::Canceled);
    assert_eq!(g.contact_email(), Some("ap@globex.example"));
}

/// Bad signatures (another secret, stale, missing, malformed) are refused
/// before anything is written; what pastdue signs, the official library
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signatures_the_standard_accepts_are_accepted() {
    let app = app().await;
    let body = json!({ "type": "invoice.past_due", "timestamp": at(1), "data": { "account": "mallory", "invoice": "X", "amount_due": 1, "currency": "eur" } }).to_string();
    let now = Utc::now().timestamp();
    let other = official_signature("whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==", "msg_x", now, &body);
    let good = official_signature(SECRET, "msg_x", now, &body);
    let stale = official_signature(SECRET, "msg_x", now - 600, &body);
    for (id, ts, sig, why) in [
        ("msg_x", now.to_string(), other.clone(), "another secret"),
        ("msg_x", (now - 600).to_string(), stale, "ten minutes old"),
        ("msg_y", now.to_string(), good.clone(), "signed for another id"),
        ("msg_x", now.to_string(), good.replace("v1,", "v2,"), "an unknown version"),
        ("msg_x", "soon".to_string(), good.clone(), "a timestamp that is no number"),
    ] {
        let (status, v) = app.send(id, &ts, &sig, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {v}");
    }
    let missing = Request::post("/webhooks/events").header("webhook-id", "msg_x").body(Body::from(body.clone())).unwrap();
    assert_eq!(app.router.clone().oneshot(missing).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert!(app.state("mallory").await.is_none(), "nothing written");
    // Several signatures (a rotation): one good one is enough.
    let (status, _) = app.send("msg_x", &now.to_string(), &format!("{other} {good}"), body.clone()).await;
    assert_eq!(status, StatusCode::OK);

    // pastdue's signer, checked by the official verifier.
    let key = pastdue::events::signature::key(SECRET).unwrap();
    let ours = pastdue::events::signature::sign(&key, "msg_z", now, body.as_bytes());
    let code = format!("import sys\nfrom standardwebhooks.webhooks import Webhook\nWebhook({SECRET:?}).verify(sys.stdin.read(), {{'webhook-id': 'msg_z', 'webhook-timestamp': '{now}', 'webhook-signature': {ours:?}}})\nprint('verified')");
    assert_eq!(py(&code, &body), "verified");
}

/// A body the schema refuses is a 400 naming the field, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_name_their_field() {
    let app = app().await;
    let base = || json!({ "type": "invoice.past_due", "timestamp": at(1), "data": { "account": "acme", "invoice": "I-1", "amount_due": 100, "currency": "eur" } });
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut b = base();
    b["type"] = json!("invoice.exploded");
    cases.push((b, "type"));
    let mut b = base();
    b["timestamp"] = json!("yesterday");
    cases.push((b, "timestamp"));
    let mut b = base();
    b["data"].as_object_mut().unwrap().remove("amount_due");
    cases.push((b, "data.amount_due"));
    let mut b = base();
    b["data"]["currency"] = json!("euro");
    cases.push((b, "data.currency"));
    let mut b = base();
    b["data"]["pay_url"] = json!("javascript:alert(1)");
    cases.push((b, "data.pay_url"));
    let mut b = base();
    b["data"]["account"] = json!("a b");
    cases.push((b, "data.account"));
    let mut b = base();
    b["data"]["invoice"] = json!("../x");
    cases.push((b, "data.invoice"));
    let mut b = base();
    b["data"]["amount_due"] = json!(4_611_686_018_427_387_904i64);
    cases.push((b, "data.amount_due"));
    for (i, (body, field)) in cases.into_iter().enumerate() {
        assert!(!schema_accepts(&body), "the schema refuses it too: {body}");
        let (status, v) = app.deliver(&format!("msg_bad{i}"), &body).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    assert!(app.state("acme").await.is_none(), "nothing written");
}

/// A secret anyone could sign with is refused at start-up, naming the key.
#[test]
fn a_short_or_empty_secret_is_refused() {
    for secret in ["whsec_", "whsec_c2hvcnQ=", "not base64!"] {
        let mut c = pastdue::events::EventsConfig::default();
        c.webhook_secret = secret.into();
        let err = pastdue::events::router(&c, std::sync::Arc::new(pastdue::MemoryStore::new())).unwrap_err();
        assert!(err.to_string().contains("events.webhook_secret"), "{secret}: {err}");
    }
}
