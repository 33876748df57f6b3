//! Paddle Billing on real Redis: notifications signed as Paddle signs them
//! (and checked with Paddle's official Python SDK), a stand-in of Paddle's
//! API that the SDK reads without complaint, verify before blocking
//! through it, and one account fed by Paddle and Stripe at once.

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::{AccountId, Config, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: Router,
    store: Arc<dyn Store>,
    api: PaddleApi,
    _redis: RedisServer,
}

async fn app_with(configure: impl FnOnce(&mut Config)) -> App {
    let redis = RedisServer::start();
    let store = store_with(&redis.url(), relaxed()).await;
    let api = PaddleApi::start().await;
    let mut c = Config::default();
    c.paddle.webhook_secret = PADDLE_SECRET.into();
    c.paddle.api_key = PADDLE_KEY.into();
    c.paddle.api_base = api.base.clone();
    c.stripe.webhook_secret = "whsec_stripe_beside_paddle".into();
    configure(&mut c);
    let parts = pastdue::Pastdue::new(&c, store.clone()).build().unwrap();
    let router = Router::new().route("/app", get(|| async { "the app" })).layer(parts.gate.clone()).merge(parts.routes.clone());
    App { router, store, api, _redis: redis }
}

impl App {
    async fn deliver(&self, body: &str) -> (StatusCode, Value) {
        self.send(paddle_delivery(PADDLE_SECRET, body)).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    async fn state(&self, account: &str) -> Option<pastdue::BillingState> {
        self.store.load(&AccountId::new(account).unwrap()).await.unwrap()
    }

    async fn visit(&self, account: &str) -> (StatusCode, String) {
        let req = Request::get("/app").header("x-account-id", account).header("accept", "text/html").body(Body::empty()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        // Auto-escaping writes "/" as "&#x2f;" in attributes; browsers read it back.
        (status, String::from_utf8_lossy(&bytes).replace("&#x2f;", "/"))
    }
}

fn days_ago(d: i64) -> chrono::DateTime<Utc> {
    Utc::now() - TimeDelta::days(d)
}

/// What the stand-in answers, Paddle's SDK reads: every entity parses,
/// and the fields pastdue relies on read the same through the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_answers_what_paddles_sdk_reads() {
    let api = PaddleApi::start().await;
    let t = days_ago(3);
    api.put(&paddle_transaction("txn_01hsdk0001", "past_due", "ctm_01hsdk", Some("acme"), 4900, "EUR", t));
    api.put(&paddle_transaction("txn_01hsdk0002", "completed", "ctm_01hsdk", None, 1200, "USD", t));
    api.put(&paddle_subscription("sub_01hsdk", "past_due", "ctm_01hsdk", Some("acme"), t));
    api.put(&paddle_customer("ctm_01hsdk", "ap@acme.example", Some("acme"), t));
    let base = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        paddle_sdk(&["api", &base, PADDLE_KEY, "transactions/txn_01hsdk0001", "transactions/txn_01hsdk0002", "subscriptions/sub_01hsdk", "customers/ctm_01hsdk"], "")
    })
    .await
    .unwrap();
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["status"], "past_due");
    assert_eq!(lines[0]["grand_total"], "4900");
    assert_eq!(lines[1]["status"], "completed");
    assert_eq!(lines[1]["captured_at"].as_array().unwrap().len(), 1);
    assert_eq!(lines[2]["status"], "past_due");
    assert_eq!(lines[3]["custom_data"], json!({ "account_id": "acme" }));
    // A wrong key gets Paddle's error shape, which the SDK turns into its own error.
    let base = api.base.clone();
    let refused = tokio::task::spawn_blocking(move || {
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"))
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paddle/sdk.py"), "api", &base, "wrong", "transactions/txn_01hsdk0001"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("permitted"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// pastdue accepts a `Paddle-Signature` exactly when Paddle's SDK verifier
/// does: rotations, other secrets, tampering, stale or future times,
/// malformed headers. Refused deliveries write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pastdue_accepts_exactly_the_signatures_paddles_sdk_accepts() {
    let second = "pdl_ntfset_01h8next_AbCdEf";
    let app = app_with(|c| c.paddle.webhook_secrets = vec![second.into()]).await;
    let body = notification("evt_01hsig", "customer.updated", Utc::now(), &paddle_customer("ctm_01hsig", "ap@sig.example", Some("sig"), Utc::now()));
    let now = Utc::now().timestamp();
    let h1 = |secret: &str, ts: i64, body: &str| pastdue::paddle::signature::sign(secret, ts, body.as_bytes()).split_once(";h1=").unwrap().1.to_owned();
    let good = h1(PADDLE_SECRET, now, &body);
    let cases: Vec<(String, String, &str)> = vec![
        (format!("ts={now};h1={good}"), body.clone(), "signed now"),
        (format!("ts={now};h1={}", h1(second, now, &body)), body.clone(), "the second configured secret"),
        (format!("ts={now};h1={};h1={good}", h1("pdl_ntfset_retired", now, &body)), body.clone(), "a rotation: two h1"),
        (format!("ts={now};h1={}", h1("pdl_ntfset_someone_else", now, &body)), body.clone(), "another secret"),
        (format!("ts={now};h1={good}"), body.replace("ap@sig", "ap@evil"), "a tampered body"),
        (format!("ts={};h1={}", now - 60, h1(PADDLE_SECRET, now - 60, &body)), body.clone(), "a minute old"),
        (format!("ts={};h1={}", now + 60, h1(PADDLE_SECRET, now + 60, &body)), body.clone(), "a minute ahead"),
        (format!("ts={now};h1={}", good.to_uppercase()), body.clone(), "upper-case hex"),
        (format!("h1={good}"), body.clone(), "no ts"),
        (format!("ts={now};h1={good};v9=abc"), body.clone(), "an unknown key"),
        (String::new(), body.clone(), "empty"),
    ];
    let input: Vec<Value> = cases.iter().map(|(h, b, _)| json!({ "header": h, "body": b, "secrets": [PADDLE_SECRET, second] })).collect();
    let input = Value::Array(input).to_string();
    let sdk: Vec<bool> = serde_json::from_str(&tokio::task::spawn_blocking(move || paddle_sdk(&["verify"], &input)).await.unwrap()).unwrap();
    for ((header, body, why), sdk_says) in cases.iter().zip(sdk) {
        let req = Request::post("/webhooks/paddle").header("paddle-signature", header.as_str()).body(Body::from(body.clone())).unwrap();
        let (status, v) = app.send(req).await;
        let ours = status == StatusCode::OK;
        assert_eq!(ours, sdk_says, "{why}: pastdue {status} {v}, the SDK says {sdk_says}");
        if !ours {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
        }
    }
    let missing = Request::post("/webhooks/paddle").body(Body::from(body.clone())).unwrap();
    assert_eq!(app.send(missing).await.0, StatusCode::BAD_REQUEST);
    let twice = Request::post("/webhooks/paddle").header("paddle-signature", format!("ts={now};h1={good}")).header("paddle-signature", format!("ts={now};h1={good}")).body(Body::from(body.clone())).unwrap();
    assert_eq!(app.send(twice).await.0, StatusCode::BAD_REQUEST, "two headers");
    assert_eq!(app.state("sig").await.unwrap().contact_email(), Some("ap@sig.example"), "the good ones applied");
    assert!(app.state("evil").await.is_none());
}

/// A transaction goes past due: the account owes from the event time with
/// the checkout URL as its pay link, and a re-delivered event counts once.
/// Paid at Paddle with the webhook lost, the next blocked request asks
/// Paddle's API and passes. Subscriptions and customers move the state
/// too, and the account is found by custom_data, a stored link, the
/// customer's custom_data from the API, or the customer id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debt_at_paddle_moves_the_ladder_and_paying_there_opens_the_gate() {
    // One verification per account per 100 ms, so the test need not wait.
    let app = app_with(|c| c.stripe.verify_interval = std::time::Duration::from_millis(100)).await;
    let billed = days_ago(40);
    let txn = paddle_transaction("txn_01hdebt", "past_due", "ctm_01hacme", Some("acme"), 4900, "EUR", billed);
    app.api.put(&txn);
    let body = notification("evt_01hdebt1", "transaction.past_due", billed, &txn);
    let (status, v) = app.deliver(&body).await;
    assert_eq!((status, v["result"].as_str(), v["account"].as_str()), (StatusCode::OK, Some("applied"), Some("acme")), "{v}");
    assert_eq!(app.deliver(&body).await.1["result"], "duplicate", "once per event_id");
    let s = app.state("acme").await.unwrap();
    let owed = &s.unpaid().get("paddle:txn_01hdebt").unwrap();
    assert_eq!((owed.amount_due, owed.currency.as_str(), owed.number.as_deref()), (4900, "eur", Some("325-10566")));
    assert_eq!(owed.hosted_url.as_deref(), Some("https://pay.example.com/checkout?_ptxn=txn_01hdebt"));
    assert_eq!(s.past_due_since().map(|t| t.timestamp_micros()), Some(billed.timestamp_micros()));

    // Still owed at Paddle: the gate blocks, showing Paddle's pay link.
    let (status, page) = app.visit("acme").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(page.contains("https://pay.example.com/checkout?_ptxn=txn_01hdebt"), "Paddle's own pay URL");
    let asked = app.api.calls();
    assert!(asked >= 1, "verify before blocking asked Paddle");

    // Paid at Paddle; the transaction.completed webhook never arrives.
    app.api.put(&paddle_transaction("txn_01hdebt", "completed", "ctm_01hacme", Some("acme"), 4900, "EUR", billed));
    // The next request once the account's verify_interval (100 ms, a Redis
    // lease) has passed: requests until then are answered from the claim.
    let app_ref = &app;
    let opened = until(std::time::Duration::from_secs(5), || async move { app_ref.visit("acme").await.0 == StatusCode::OK }).await;
    assert!(opened, "paid at Paddle opens the gate on the next request");
    let s = app.state("acme").await.unwrap();
    assert_eq!(s.settlement("paddle:txn_01hdebt"), Some(pastdue::state::Settlement::Paid));
    // The late webhook is a no-op.
    let late = notification("evt_01hdebt2", "transaction.completed", days_ago(0), &paddle_transaction("txn_01hdebt", "completed", "ctm_01hacme", None, 4900, "EUR", billed));
    assert_eq!(app.deliver(&late).await.1["result"], "applied");
    assert!(app.state("acme").await.unwrap().past_due_since().is_none());

    // The customer is now linked to acme: an event without custom_data finds it.
    let sub = paddle_subscription("sub_01hacme", "past_due", "ctm_01hacme", None, days_ago(2));
    assert_eq!(app.deliver(&notification("evt_01hsub1", "subscription.past_due", days_ago(2), &sub)).await.1["account"], "acme");
    let sub = paddle_subscription("sub_01hacme", "active", "ctm_01hacme", None, days_ago(1));
    app.deliver(&notification("evt_01hsub2", "subscription.resumed", days_ago(1), &sub)).await;
    // Out of order: the older past_due arriving again under a new id changes nothing.
    let old = paddle_subscription("sub_01hacme", "past_due", "ctm_01hacme", None, days_ago(2));
    app.deliver(&notification("evt_01hsub3", "subscription.past_due", days_ago(2), &old)).await;
    assert_eq!(app.state("acme").await.unwrap().subscriptions()["paddle:sub_01hacme"].status, pastdue::state::SubscriptionStatus::Active);
    let cust = paddle_customer("ctm_01hacme", "billing@acme.example", None, days_ago(0));
    app.deliver(&notification("evt_01hcust", "customer.updated", days_ago(0), &cust)).await;
    assert_eq!(app.state("acme").await.unwrap().contact_email(), Some("billing@acme.example"));

    // No custom_data, no link: the customer's custom_data from Paddle's API.
    app.api.put(&paddle_customer("ctm_01hglobex", "ap@globex.example", Some("globex"), days_ago(5)));
    let txn = paddle_transaction("txn_01hglobex", "past_due", "ctm_01hglobex", None, 100, "USD", days_ago(1));
    assert_eq!(app.deliver(&notification("evt_01hglobex", "transaction.payment_failed", days_ago(1), &txn)).await.1["account"], "globex");
    // Nothing anywhere: the customer id.
    let txn = paddle_transaction("txn_01hanon", "past_due", "ctm_01hanon", None, 100, "USD", days_ago(1));
    assert_eq!(app.deliver(&notification("evt_01hanon", "transaction.payment_failed", days_ago(1), &txn)).await.1["account"], "ctm_01hanon");
    // Canceled: voided, not paid.
    let txn = paddle_transaction("txn_01hanon", "canceled", "ctm_01hanon", None, 100, "USD", days_ago(1));
    app.deliver(&notification("evt_01hanon2", "transaction.canceled", days_ago(0), &txn)).await;
    assert_eq!(app.state("ctm_01hanon").await.unwrap().settlement("paddle:txn_01hanon"), Some(pastdue::state::Settlement::Voided));
}

/// One account owes at Paddle and pays at Stripe: it still owes (the
/// Paddle transaction), and the page shows Paddle's pay link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owing_at_paddle_and_paying_at_stripe_still_owes() {
    let app = app_with(|c| c.paddle.api_key = "".into()).await;
    let account = AccountId::new("both").unwrap();
    let txn = paddle_transaction("txn_01hboth", "past_due", "ctm_01hboth", Some("both"), 3000, "EUR", days_ago(30));
    app.deliver(&notification("evt_01hboth", "transaction.past_due", days_ago(30), &txn)).await;
    // A Stripe invoice fails, then is paid.
    for (id, kind) in [("evt_s1", "invoice.payment_failed"), ("evt_s2", "invoice.paid")] {
        let created = if kind == "invoice.paid" { days_ago(1) } else { days_ago(10) };
        let body = event_body(id, kind, created, invoice_object("both", "in_both", if kind == "invoice.paid" { "paid" } else { "open" }, 1900));
        let (status, v) = app.send(signed_delivery("whsec_stripe_beside_paddle", body)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let s = app.store.load(&account).await.unwrap().unwrap();
    assert_eq!(s.settlement("in_both"), Some(pastdue::state::Settlement::Paid));
    assert!(s.unpaid().contains_key("paddle:txn_01hboth"), "still owed at Paddle");
    assert_eq!(s.past_due_since().map(|t| (Utc::now() - t).num_days()), Some(30));
    let (status, page) = app.visit("both").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(page.contains("_ptxn=txn_01hboth"), "Paddle's pay link");
    assert!(!page.contains("class=\"invoices\""), "one owed invoice: no list");

    // Owing at both: each invoice listed with its own pay link.
    let body = event_body("evt_s3", "invoice.payment_failed", days_ago(5), invoice_object("both", "in_both2", "open", 2500));
    assert_eq!(app.send(signed_delivery("whsec_stripe_beside_paddle", body)).await.0, StatusCode::OK);
    // The gate's cache hears of the write through Redis: poll for it.
    let mut page = String::new();
    for _ in 0..200 {
        page = app.visit("both").await.1;
        if page.contains("class=\"invoices\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let list = &page[page.find("class=\"invoices\"").expect("the list of owed invoices")..];
    let (paddle, stripe) = (list.find("_ptxn=txn_01hboth").unwrap(), list.find("https://invoice.stripe.com/i/in_both2").unwrap());
    assert!(paddle < stripe, "oldest first");
}

/// Bodies that are no Paddle notification are a 400 naming the field, and
/// write nothing; types the ladder does not read are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_name_their_field_and_other_types_are_acknowledged() {
    let app = app_with(|_| {}).await;
    let txn = paddle_transaction("txn_01hbad", "past_due", "ctm_01hbad", Some("bad"), 100, "EUR", days_ago(1));
    let mut no_total = txn.clone();
    no_total["details"]["totals"]["balance"] = json!("lots");
    let mut bad_currency = txn.clone();
    bad_currency["currency_code"] = json!("euro");
    for (body, field) in [
        ("{".to_owned(), "body"),
        (json!({ "event_type": "transaction.past_due", "occurred_at": "2026-01-01T00:00:00Z", "data": txn }).to_string(), "event_id"),
        (json!({ "event_id": "evt_1", "event_type": "transaction.past_due", "occurred_at": "yesterday", "data": txn }).to_string(), "occurred_at"),
        (notification("evt_01hbad1", "transaction.past_due", days_ago(1), &no_total), "data.details.totals.balance"),
        (notification("evt_01hbad2", "transaction.past_due", days_ago(1), &bad_currency), "data.currency_code"),
    ] {
        let (status, v) = app.deliver(&body).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    assert!(app.state("bad").await.is_none(), "nothing written");
    let (status, v) = app.deliver(&notification("evt_01hother", "address.updated", days_ago(0), &json!({ "id": "add_1" }))).await;
    assert_eq!((status, v["result"].as_str()), (StatusCode::OK, Some("ignored")));
}

/// What a buyer can set in the browser (Paddle.js `customData` on the
/// checkout's transaction and subscription) cannot move another account's
/// debts: a declined checkout is no debt, and custom_data naming an account
/// that belongs to another Paddle customer is kept for the admin view, not
/// followed. A short secret or a plain-http API is refused at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_buyer_sets_at_checkout_cannot_move_another_accounts_debts() {
    let app = app_with(|_| {}).await;
    // The victim pays through its own customer.
    let own = paddle_subscription("sub_01hvictim", "active", "ctm_01hvictim", Some("victim"), days_ago(60));
    assert_eq!(app.deliver(&notification("evt_01hv1", "subscription.activated", days_ago(60), &own)).await.1["account"], "victim");

    // A stranger's declined checkout naming the victim: no debt at all.
    let mut checkout = paddle_transaction("txn_01hatk1", "ready", "ctm_01hattacker", Some("victim"), 9900, "EUR", days_ago(1));
    checkout["origin"] = json!("web");
    let (status, v) = app.deliver(&notification("evt_01hatk1", "transaction.payment_failed", days_ago(1), &checkout)).await;
    assert_eq!((status, v["result"].as_str()), (StatusCode::OK, Some("ignored")), "{v}");

    // The stranger's own subscription, naming the victim, goes past due:
    // it lands on the stranger's customer, not on the victim.
    let theirs = paddle_subscription("sub_01hattacker", "past_due", "ctm_01hattacker", Some("victim"), days_ago(1));
    let (_, v) = app.deliver(&notification("evt_01hatk2", "subscription.past_due", days_ago(1), &theirs)).await;
    assert_eq!(v["account"], "ctm_01hattacker", "{v}");
    let victim = app.state("victim").await.unwrap();
    assert!(victim.past_due_since().is_none() && !victim.subscriptions().contains_key("paddle:sub_01hattacker"));
    assert_eq!(victim.link_conflicts().iter().map(|c| c.customer.as_str()).collect::<Vec<_>>(), ["ctm_01hattacker"], "the claim is kept for the admin view");
    let (status, _) = app.visit("victim").await;
    assert_eq!(status, StatusCode::OK, "the victim is not locked out");
    // Its customer e-mail does not become the victim's billing contact.
    let cust = paddle_customer("ctm_01hattacker", "mallory@evil.example", None, days_ago(0));
    app.deliver(&notification("evt_01hatk3", "customer.updated", days_ago(0), &cust)).await;
    assert_ne!(app.state("victim").await.unwrap().contact_email(), Some("mallory@evil.example"));

    // Start-up refusals name their key.
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let mut c = pastdue::paddle::PaddleConfig::default();
    c.webhook_secret = "pdl_short".into();
    assert!(pastdue::paddle::router(&c, store.clone()).unwrap_err().to_string().contains("paddle.webhook_secret"));
    c.webhook_secret = PADDLE_SECRET.into();
    c.api_key = PADDLE_KEY.into();
    c.api_base = "http://api.paddle.example".into();
    assert!(pastdue::paddle::router(&c, store).unwrap_err().to_string().contains("paddle.api_base"));
}

/// Debts Paddle knows and pastdue never heard of (every notification lost):
/// `pastdue sync` lists past-due transactions and subscriptions, page by
/// page as Paddle's SDK reads them, and applies them once; a second run
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_lists_what_paddle_says_is_past_due() {
    let app = app_with(|_| {}).await;
    let t = days_ago(20);
    for i in 0..5 {
        app.api.put(&paddle_transaction(&format!("txn_01hsync{i}"), "past_due", &format!("ctm_01hsync{i}"), Some(&format!("sync-{i}")), 100 + i, "EUR", t));
    }
    app.api.put(&paddle_transaction("txn_01hsyncpaid", "completed", "ctm_01hsync0", Some("sync-0"), 999, "EUR", t));
    app.api.put(&paddle_subscription("sub_01hsync", "past_due", "ctm_01hsync1", None, t));
    // The stand-in pages as Paddle does: the SDK's own paginator reads every page.
    let base = app.api.base.clone();
    let out = tokio::task::spawn_blocking(move || paddle_sdk(&["api", &base, PADDLE_KEY, "past_due_transactions/2"], "")).await.unwrap();
    let ids: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids["ids"].as_array().unwrap().len(), 5, "{out}");

    // pastdue follows the pages too.
    app.api.limit_pages(2);
    let mut c = Config::default();
    c.paddle.api_key = PADDLE_KEY.into();
    c.paddle.api_base = app.api.base.clone();
    let report = pastdue::paddle::sync(&c.paddle, app.store.clone(), None).await.unwrap();
    assert_eq!((report.transactions, report.subscriptions, report.accounts_changed, report.unmapped), (5, 1, 5, 0), "{report:?}");
    let s = app.state("sync-3").await.unwrap();
    assert_eq!(s.unpaid().get("paddle:txn_01hsync3").unwrap().amount_due, 103);
    assert!(app.state("sync-0").await.unwrap().settlement("paddle:txn_01hsyncpaid").is_none(), "only past-due entities are listed");
    assert!(app.state("sync-1").await.unwrap().subscriptions()["paddle:sub_01hsync"].status.is_debt(), "the subscription, by its customer's link");
    let again = pastdue::paddle::sync(&c.paddle, app.store.clone(), None).await.unwrap();
    assert_eq!(again.accounts_changed, 0, "a store in step: nothing written");
    // A webhook newer than the listing still wins.
    let paid = paddle_transaction("txn_01hsync3", "completed", "ctm_01hsync3", Some("sync-3"), 103, "EUR", t);
    app.deliver(&notification("evt_01hsyncpaid", "transaction.completed", days_ago(0), &paid)).await;
    pastdue::paddle::sync(&c.paddle, app.store.clone(), None).await.unwrap();
    assert!(app.state("sync-3").await.unwrap().past_due_since().is_none(), "settled stays settled");
}
