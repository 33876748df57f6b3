//! Send windows: a notice that falls due outside `notify.send_hours` /
//! `notify.send_days` waits for the next opening in the recipient's time
//! zone (the account's own, from the admin API or Stripe customer
//! metadata, else `notify.timezone`), then goes out once, found again
//! through the waiting index; reminders before a due date move earlier.
//! Real Redis, two notifier instances, an injected clock: daylight saving,
//! a window across midnight, +05:45 and +13:00.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use common::*;
use pastdue::clock::{Clock, ManualClock};
use pastdue::notify::Notifier;
use pastdue::state::{Change, ContactSource};
use pastdue::store::Store;
use pastdue::{AccountId, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "windows-test-admin-token-0123456789";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    json_receiver("/hook").await
}

/// Notices by webhook within `hours` on `days`; a sweep a day apart, so
/// every sweep after the first reads only the indexes' new entries.
fn config(url: &str, hours: &str, days: &[&str]) -> Config {
    let mut c = Config::default();
    c.notify.webhook_url = url.into();
    c.notify.webhook_secret = "whsec_windows".into();
    c.notify.send_hours = hours.into();
    c.notify.send_days = days.iter().map(|d| (*d).to_owned()).collect();
    c.notify.timezone = "Europe/Berlin".into();
    c.notify.poll_interval = Duration::from_secs(86_400);
    c.admin.tokens = vec![pastdue::admin::NamedToken::new("alice", TOKEN)];
    c.stripe.webhook_secret = "whsec_windows_stripe".into();
    c
}

fn notifier(c: &Config, store: Arc<dyn Store>, clock: &ManualClock) -> Notifier {
    Notifier::new(&c.notify, c.ladder().unwrap(), store).unwrap().unwrap().with_clock(clock.shared())
}

async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {TOKEN}")).header("content-type", "application/json");
    let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_due_at_night_waits_for_the_window_in_the_accounts_zone_then_goes_once() {
    let redis = RedisServer::start();
    let (url, seen) = receiver().await;
    // Saturday 21:00 UTC is Sunday 02:45 in Kathmandu (+05:45).
    let clock = ManualClock::starting_at(at("2026-12-05T21:00:00Z"));
    let c = config(&url, "09:00-18:00", &["mon-fri"]);
    let stores = [store_with(&redis.url(), relaxed()).await, store_with(&redis.url(), relaxed()).await];
    let parts = pastdue::Pastdue::new(&c, stores[0].clone()).with_clock(clock.shared()).build().unwrap();
    let app = parts.routes.clone();

    // The account's zone, from the admin API: validated, the field named.
    let (status, v) = call(&app, "PUT", "/admin/accounts/acme/contacts", Some(json!({ "timezone": "Asia/Katmandoo" }))).await;
    assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("timezone")), "{v}");
    let (status, v) = call(&app, "PUT", "/admin/accounts/acme/contacts", Some(json!({ "timezone": "Asia/Kathmandu" }))).await;
    assert_eq!((status, v["timezone"].as_str()), (StatusCode::OK, Some("Asia/Kathmandu")), "{v}");

    let acme = AccountId::new("acme").unwrap();
    stores[0].apply(&acme, None, &[unpaid("in_1", 4_900, clock.now())]).await.unwrap();
    let notifiers: Vec<Notifier> = stores.iter().map(|s| notifier(&c, s.clone(), &clock)).collect();
    let sweep_both = || sweep_all(&notifiers);

    assert_eq!(sweep_both().await, 0, "Sunday night in Kathmandu: it waits");
    let monday_0900 = at("2026-12-07T03:15:00Z");
    let (_, v) = call(&app, "GET", "/admin/accounts/acme", None).await;
    assert_eq!(v["stage"], "notice", "the gate never waits: {v}");
    assert_eq!(v["waiting"], json!([{ "at": "2026-12-07T03:15:00Z", "episode": "2026-12-05T21:00:00Z", "stage": "notice", "channel": "webhook" }]), "{v}");
    // The agenda says when it goes out.
    let (_, agenda) = call(&app, "GET", "/admin/agenda?from=2026-12-06T00:00:00Z&to=2026-12-08T00:00:00Z", None).await;
    let notices: Vec<&Value> = agenda["items"].as_array().unwrap().iter().filter(|i| i["event"] == "notice").collect();
    assert_eq!(notices.len(), 1, "{agenda}");
    assert_eq!((notices[0]["at"].as_str(), notices[0]["channel"].as_str()), (Some("2026-12-07T03:15:00Z"), Some("webhook")));

    clock.set(monday_0900 - chrono::TimeDelta::seconds(1));
    assert_eq!(sweep_both().await, 0, "one second before 09:00 local");
    clock.set(monday_0900);
    assert_eq!(sweep_both().await, 1, "09:00 Monday in Kathmandu: once, from two instances");
    assert_eq!(sweep_both().await, 0);
    clock.set(at("2026-12-08T12:00:00Z"));
    assert_eq!(sweep_both().await, 0, "nothing twice");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let state = stores[0].load(&acme).await.unwrap().unwrap();
    assert!(state.waiting().is_empty(), "{:?}", state.waiting());
    assert_eq!(state.notices()[0].at, monday_0900);
    // The index no longer holds it.
    assert!(stores[0].scan_index(pastdue::store::Index::Waiting, 0, pastdue::store::NEVER, None, 10).await.unwrap().is_empty());
}

/// New York moves its clocks on 2026-03-08: 09:00 is 14:00 UTC the day
/// before and 13:00 UTC that day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_moves_the_opening_with_local_time() {
    let (url, seen) = receiver().await;
    let clock = ManualClock::starting_at(at("2026-03-08T06:00:00Z")); // 01:00 EST
    let mut c = config(&url, "09:00-18:00", &[]);
    c.notify.timezone = "America/New_York".into();
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    store.apply(&AccountId::new("ny").unwrap(), None, &[unpaid("in_1", 4_900, clock.now())]).await.unwrap();
    let n = notifier(&c, store.clone(), &clock);
    assert_eq!(n.sweep().await.unwrap(), 0);
    clock.set(at("2026-03-08T12:59:59Z"));
    assert_eq!(n.sweep().await.unwrap(), 0, "08:59:59 EDT");
    clock.set(at("2026-03-08T13:00:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 1, "09:00 EDT, the first morning of summer time");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// A night window ("20:00-08:00") for an account in Tonga (+13:00), whose
/// zone and phone come from its Stripe customer; an admin's zone wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_across_midnight_in_a_zone_from_stripe() {
    let redis = RedisServer::start();
    let (url, seen) = receiver().await;
    // 23:00 UTC on 2 December is noon on 3 December in Tonga.
    let clock = ManualClock::starting_at(at("2026-12-02T23:00:00Z"));
    let c = config(&url, "20:00-08:00", &[]);
    let store = store_with(&redis.url(), relaxed()).await;
    let parts = pastdue::Pastdue::new(&c, store.clone()).with_clock(clock.shared()).build().unwrap();
    let deliver = |id: &str, zone: &str| {
        let body = serde_json::to_vec(&json!({
            "id": id, "type": "customer.updated", "created": Utc::now().timestamp(),
            "data": { "object": { "id": "cus_Tonga", "object": "customer", "email": "ap@tonga.example", "phone": "+67612345",
                "metadata": { "account_id": "tonga", "timezone": zone } } }
        }))
        .unwrap();
        let sig = pastdue::signature::sign("whsec_windows_stripe", Utc::now().timestamp(), &body);
        let req = Request::post("/webhooks/stripe").header("stripe-signature", sig).body(Body::from(body)).unwrap();
        let app = parts.routes.clone();
        async move { assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK) }
    };
    deliver("evt_tz1", "Pacific/Tongatapu").await;
    let tonga = AccountId::new("tonga").unwrap();
    let state = store.load(&tonga).await.unwrap().unwrap();
    assert_eq!((state.timezone().unwrap().value.as_str(), state.timezone().unwrap().source), ("Pacific/Tongatapu", ContactSource::Stripe));
    assert_eq!(state.billing_phone().unwrap().value, "+67612345");

    store.apply(&tonga, None, &[unpaid("in_1", 4_900, clock.now())]).await.unwrap();
    let n = notifier(&c, store.clone(), &clock);
    assert_eq!(n.sweep().await.unwrap(), 0, "noon in Tonga");
    clock.set(at("2026-12-03T06:59:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 0, "19:59 in Tonga");
    clock.set(at("2026-12-03T07:00:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 1, "20:00 in Tonga opens the night window");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // An admin's zone is not replaced by Stripe's; an unknown zone from
    // Stripe is ignored.
    let (status, _) = call(&parts.routes, "PUT", "/admin/accounts/tonga/contacts", Some(json!({ "timezone": "Pacific/Auckland" }))).await;
    assert_eq!(status, StatusCode::OK);
    deliver("evt_tz2", "Pacific/Tongatapu").await;
    deliver("evt_tz3", "Nowhere/Special").await;
    let state = store.load(&tonga).await.unwrap().unwrap();
    assert_eq!((state.timezone().unwrap().value.as_str(), state.timezone().unwrap().source), ("Pacific/Auckland", ContactSource::Admin));
    let (_, log) = call(&parts.routes, "GET", "/admin/audit?account=tonga", None).await;
    assert_eq!(log["entries"][0]["after"]["timezone"]["value"], "Pacific/Auckland", "{log}");
}

/// A reminder three days before a Wednesday due date falls on Sunday:
/// with weekdays only it moves to Friday 09:00, found through the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_before_due_moves_earlier_not_later() {
    let (url, seen) = receiver().await;
    let clock = ManualClock::starting_at(at("2026-12-10T12:00:00Z")); // Thursday
    let mut c = config(&url, "09:00-17:00", &["mon-fri"]);
    c.notify.timezone = "UTC".into();
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let n = notifier(&c, store.clone(), &clock).with_reminders(&c.reminders).unwrap();
    assert_eq!(n.sweep().await.unwrap(), 0, "the first, full sweep");
    let due = at("2026-12-16T10:00:00Z"); // Wednesday
    let acct = AccountId::new("soon").unwrap();
    store.apply(&acct, None, &[upcoming("in_soon", 4_900, due, clock.now())]).await.unwrap();
    assert_eq!(n.check(&acct).await.unwrap(), 0, "Thursday: not yet");
    let state = store.load(&acct).await.unwrap().unwrap();
    assert_eq!(state.waiting().iter().map(|w| (w.at, w.stage.as_str())).collect::<Vec<_>>(), [(at("2026-12-11T09:00:00Z"), "before_due_3d")]);
    clock.set(at("2026-12-11T08:59:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 0);
    clock.set(at("2026-12-11T09:00:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 1, "Friday 09:00, before the weekend the moment falls in");
    clock.set(at("2026-12-13T10:00:00Z"));
    assert_eq!(n.sweep().await.unwrap(), 0, "not again on Sunday");
    let seen = seen.lock().unwrap();
    assert_eq!((seen.len(), seen[0]["type"].as_str()), (1, Some("pastdue.reminder")));
}

/// Two instances whose windows differ (a rolling change of send_hours)
/// settle on the earlier time instead of rewriting each other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_disagree_settle_on_the_earliest_opening() {
    let (url, _seen) = receiver().await;
    let clock = ManualClock::starting_at(at("2026-12-06T02:00:00Z")); // Sunday night
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let old = notifier(&config(&url, "10:00-18:00", &[]), store.clone(), &clock);
    let new = notifier(&config(&url, "08:00-18:00", &[]), store.clone(), &clock);
    let acct = AccountId::new("both").unwrap();
    store.apply(&acct, None, &[unpaid("in_1", 4_900, clock.now())]).await.unwrap();
    let stored = || async { store.load(&acct).await.unwrap().unwrap() };
    old.check(&acct).await.unwrap();
    new.check(&acct).await.unwrap();
    let settled = stored().await;
    assert_eq!(settled.waiting()[0].at, at("2026-12-06T07:00:00Z"), "08:00 in Berlin, the earlier");
    for _ in 0..3 {
        old.check(&acct).await.unwrap();
        new.check(&acct).await.unwrap();
    }
    assert_eq!(stored().await.updated_at(), settled.updated_at(), "no more writes");
}

#[test]
fn window_settings_name_their_key() {
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    for (hours, days, zone, key) in [("9-5", vec![], "UTC", "notify.send_hours"), ("", vec!["someday".to_owned()], "UTC", "notify.send_days"), ("", vec![], "Mars/Olympus", "notify.timezone")] {
        let mut c = config("https://hooks.example.com/x", hours, &[]);
        c.notify.send_days = days;
        c.notify.timezone = zone.into();
        let err = Notifier::new(&c.notify, c.ladder().unwrap(), store.clone()).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    // The default: any time, every day, UTC.
    let c = Config::default();
    assert_eq!((c.notify.send_hours.as_str(), c.notify.send_days.len(), c.notify.timezone.as_str()), ("", 0, "UTC"));
    let _ = Change::Waiting(Vec::new());
}
