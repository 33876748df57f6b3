//! Text messages for the customer: `[notify.sms]` through a stand-in of
//! Twilio's Messages API (checked with Twilio's own client), to the
//! billing phone, in the account's language, at most two segments, with a
//! signed pay link; once per listed stage from two notifier instances on
//! one real Redis and a moved clock; Twilio's refusals recorded, not
//! retried, and visible to the operator.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use pastdue::clock::{Clock, ManualClock};
use pastdue::notify::Notifier;
use pastdue::state::{Change, ContactSource};
use pastdue::store::Store;
use pastdue::{AccountId, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "sms-test-admin-token-0123456789";

fn config(twilio: &Twilio, stages: &[&str]) -> Config {
    let mut c = Config::default();
    c.notify.sms = twilio.config(stages);
    c.notify.poll_interval = Duration::from_secs(3600);
    c.notify.max_attempts = 4;
    c.links.secret = "0123456789abcdef0123456789abcdef-sms-links".into();
    c.links.base_url = "https://app.example.com".into();
    c.stripe.portal_return_url = "https://app.example.com/settings".into();
    // Pay links need a Stripe key; nothing here reaches Stripe: its API is
    // a closed loopback port, and the gate never waits for it.
    c.stripe.api_key = "sk_test_sms".into();
    c.stripe.api_base = format!("http://127.0.0.1:{}/", free_port());
    c.stripe.verify_timeout = Duration::from_millis(200);
    c.page.product_name = "Acme Analytics Cloud".into();
    c.admin.tokens = vec![pastdue::admin::NamedToken::new("alice", TOKEN)];
    c
}

fn notifier(c: &Config, store: Arc<dyn Store>, clock: &ManualClock) -> Notifier {
    Notifier::new(&c.notify, c.ladder().unwrap(), store).unwrap().unwrap().with_clock(clock.shared()).with_page(&c.page).with_pay_links(&c.links, &c.stripe).unwrap()
}

/// An account that owes €49.00 since `since`, has a Stripe customer (so a
/// signed pay link), speaks `lang` and may be texted at `phone`.
fn debtor(since: chrono::DateTime<Utc>, lang: &str, phone: &str) -> Vec<Change> {
    vec![
        unpaid("in_1", 4_900, since),
        Change::LinkCustomer("cus_sms".into()),
        Change::Language(lang.into()),
        Change::BillingPhone { phone: Some(phone.into()), source: ContactSource::Admin },
    ]
}

async fn get_json(app: &Router, path: &str) -> Value {
    let req = Request::get(path).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_phone_gets_one_text_per_listed_stage_in_its_language() {
    let redis = RedisServer::start();
    let twilio = Twilio::start().await;
    let clock = ManualClock::starting_at(Utc::now());
    let c = config(&twilio, &["notice", "suspended"]);
    let stores = [store_with(&redis.url(), relaxed()).await, store_with(&redis.url(), relaxed()).await];
    let acme = AccountId::new("acme").unwrap();
    stores[0].apply(&acme, None, &debtor(clock.now(), "lv", "+37120000000")).await.unwrap();
    let notifiers: Vec<Notifier> = stores.iter().map(|s| notifier(&c, s.clone(), &clock)).collect();
    let sweep_both = || sweep_all(&notifiers);

    assert_eq!(sweep_both().await, 1, "notice: one text from two instances");
    assert_eq!(sweep_both().await, 0);
    clock.advance(TimeDelta::days(14));
    assert_eq!(sweep_both().await, 0, "warning is not listed");
    clock.advance(TimeDelta::days(3));
    assert_eq!(sweep_both().await, 1, "suspended");
    clock.advance(TimeDelta::days(30));
    assert_eq!(sweep_both().await, 0, "nothing twice");

    let texts = twilio.texted();
    assert_eq!(texts.len(), 2, "{texts:?}");
    for t in &texts {
        assert_eq!((t.to.as_str(), t.from.as_str()), ("+37120000000", "+15005550006"));
        assert!(sms_segments(&t.body) <= 2, "{} segments: {}", sms_segments(&t.body), t.body);
        assert!(t.body.contains("https://app.example.com/billing/pay?t="), "a signed pay link: {}", t.body);
        // Latvian, folded into GSM-7 to fit: "Jau samaksājāt?" → "Jau samaksajat?".
        assert!(t.body.contains("Jau samaksajat?"), "ignore this if already paid, in Latvian: {}", t.body);
    }
    assert!(texts[0].body.starts_with("Acme Analytics Cloud: jusu maksajums 49,00"), "{}", texts[0].body);
    assert!(texts[1].body.contains("konts ir apturets"), "{}", texts[1].body);

    // Recorded once each, as sms to the number; the page names them by kind.
    let state = stores[0].load(&acme).await.unwrap().unwrap();
    let sms: Vec<(&str, Option<&str>)> = state.notices().iter().filter(|n| n.channel == "sms").map(|n| (n.stage.as_str(), n.to.as_deref())).collect();
    assert_eq!(sms, [("notice", Some("+37120000000")), ("suspended", Some("+37120000000"))]);
    let parts = pastdue::Pastdue::new(&c, stores[0].clone()).with_clock(clock.shared()).build().unwrap();
    let app = Router::new().route("/app", get(|| async { "app" })).layer(parts.gate.clone());
    let req = Request::get("/app").header("x-account-id", "acme").header("accept", "text/html").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    let page = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(page.contains("īsziņa uz …0000"), "the page lists the text messages by kind: {page}");
    assert!(!page.contains("+37120000000"), "the page never shows the whole number");
}

/// Eight languages, three kinds of notice and a long product name: every
/// text fits two segments, keeps its pay link intact and says "ignore this
/// if you have already paid".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_fits_two_segments() {
    let twilio = Twilio::start().await;
    let clock = ManualClock::starting_at(Utc::now());
    let c = config(&twilio, &[]);
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let langs = ["en", "de", "es", "fr", "it", "lv", "ro", "el"];
    for (i, lang) in langs.iter().enumerate() {
        store.apply(&AccountId::new(&format!("acct-{lang}")).unwrap(), None, &debtor(clock.now(), lang, &format!("+3712000000{i}"))).await.unwrap();
    }
    let n = notifier(&c, store.clone(), &clock);
    assert_eq!(n.sweep().await.unwrap(), 8);
    clock.advance(TimeDelta::days(14));
    assert_eq!(n.sweep().await.unwrap(), 8);
    clock.advance(TimeDelta::days(3));
    assert_eq!(n.sweep().await.unwrap(), 8);
    let texts = twilio.texted();
    assert_eq!(texts.len(), 24);
    for t in &texts {
        assert!(sms_segments(&t.body) <= 2, "{} segments ({} chars): {}", sms_segments(&t.body), t.body.chars().count(), t.body);
        let link = t.body.split_whitespace().find(|w| w.starts_with("https://")).expect("a pay link");
        assert!(link.starts_with("https://app.example.com/billing/pay?t=") && link.len() > 60, "{link}");
    }
    let english: Vec<&str> = texts.iter().filter(|t| t.to == "+37120000000").map(|t| t.body.as_str()).collect();
    assert!(english[0].starts_with("Acme Analytics Cloud: your payment of €49.00 did not go through. Pay: https://"), "{}", english[0]);
    assert!(english[1].contains("access will be suspended on"), "{}", english[1]);
    assert!(english.iter().all(|b| b.ends_with("Already paid? Please ignore this message.")), "{english:?}");
    let german = texts.iter().find(|t| t.to == "+37120000001").unwrap();
    assert!(german.body.contains("Schon bezahlt?"), "{}", german.body);
    // Greek goes in capitals GSM-7 has.
    let greek = texts.iter().find(|t| t.to == "+37120000007").unwrap();
    assert!(greek.body.contains("ΠΛHPΩΣEI"), "{}", greek.body);
}

/// Twilio's refusals, as a user expects: a number it cannot text is
/// recorded with Twilio's code, never tried again, shown to the operator
/// and not on the page; a 429 is retried with backoff; a wrong token fails
/// the pass without a retry storm and is tried again later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_refusals_are_recorded_not_retried() {
    let twilio = Twilio::start().await;
    let clock = ManualClock::starting_at(Utc::now());
    let c = config(&twilio, &[]);
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let n = notifier(&c, store.clone(), &clock);

    // Unsubscribed (the recipient replied STOP): 21610.
    let gone = AccountId::new("gone").unwrap();
    store.apply(&gone, None, &debtor(clock.now(), "en", "+15005550004")).await.unwrap();
    assert_eq!(n.check(&gone).await.unwrap(), 0);
    assert_eq!(twilio.requests(), 1);
    clock.advance(TimeDelta::hours(1));
    n.sweep().await.unwrap();
    n.check(&gone).await.unwrap();
    assert_eq!(twilio.requests(), 1, "a refused number is not tried again");
    let parts = pastdue::Pastdue::new(&c, store.clone()).with_clock(clock.shared()).build().unwrap();
    let view = get_json(&parts.routes, "/admin/accounts/gone").await;
    let refused: Vec<&Value> = view["notices"].as_array().unwrap().iter().filter(|n| n["channel"] == "sms").collect();
    assert_eq!(refused.len(), 1, "{view}");
    assert_eq!(refused[0]["refused"], "Twilio 21610: Attempt to send to unsubscribed recipient");
    assert_eq!(refused[0]["to"], "+15005550004");

    // A country the Twilio account may not text (21408) is the sender's
    // setup, not the customer: not recorded, tried again once fixed.
    let abroad = AccountId::new("abroad").unwrap();
    store.apply(&abroad, None, &debtor(clock.now(), "en", "+15005550003")).await.unwrap();
    assert_eq!(n.check(&abroad).await.unwrap(), 0);
    assert_eq!(twilio.requests(), 2, "one request, no retries");
    assert!(store.load(&abroad).await.unwrap().unwrap().notices().iter().all(|n| n.channel != "sms"), "not recorded as refused");

    // Busy twice, then accepted: three requests, one message.
    let busy = AccountId::new("busy").unwrap();
    store.apply(&busy, None, &debtor(clock.now(), "en", "+37120000001")).await.unwrap();
    twilio.busy_for(2);
    assert_eq!(n.check(&busy).await.unwrap(), 1);
    assert_eq!(twilio.requests(), 5);
    assert_eq!(twilio.texted().len(), 1);

    // A wrong token: one request per pass, nothing recorded, tried again.
    let mut wrong = c.clone();
    wrong.notify.sms.auth_token = "not-the-token".into();
    wrong.notify.lease = Duration::from_millis(300);
    let n = notifier(&wrong, store.clone(), &clock);
    let later = AccountId::new("later").unwrap();
    store.apply(&later, None, &debtor(clock.now(), "en", "+37120000002")).await.unwrap();
    assert_eq!(n.check(&later).await.unwrap(), 0);
    assert_eq!(twilio.requests(), 6, "no retries on 401");
    assert!(store.load(&later).await.unwrap().unwrap().notices().iter().all(|n| n.channel != "sms"));
    // Held by its claim until the lease lapses, then tried again, once.
    n.check(&later).await.unwrap();
    assert_eq!(twilio.requests(), 6, "the claim holds it for notify.lease");
    let (n, twilio, later) = (&n, &twilio, &later);
    until(Duration::from_secs(10), || async move {
        n.check(later).await.unwrap();
        twilio.requests() >= 7
    }).await;
    assert_eq!(twilio.requests(), 7, "tried again once the claim lapsed");
}

/// The stand-in is what Twilio's own client expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_answers_what_twilios_client_sends() {
    let twilio = Twilio::start().await;
    let input = json!({ "base": twilio.base, "sid": TWILIO_SID, "token": TWILIO_TOKEN, "from": "+15005550006" }).to_string();
    let out = tokio::task::spawn_blocking(move || venv_python(&["tests/twilio/client.py"], &input)).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["created"]["status"], "queued", "{v}");
    assert_eq!(v["created"]["to"], "+37120000000");
    assert_eq!(v["created"]["direction"], "outbound-api");
    assert_eq!(v["created"]["num_segments"], "1");
    assert_eq!(v["fetched"]["sid"], v["created"]["sid"]);
    assert!(v["created"]["sid"].as_str().unwrap().starts_with("SM"));
    assert_eq!(v["errors"]["+15005550001"]["code"], 21211);
    assert_eq!(v["errors"]["+15005550004"]["code"], 21610);
    assert_eq!(v["errors"]["+15005550009"]["code"], 21614);
    assert_eq!(v["errors"]["not-a-number"]["status"], 400);
    assert_eq!(v["wrong_token"], json!({ "status": 401, "code": 20003 }));
    assert_eq!(twilio.texted()[0].body, "Sveiki! Jūsu rēķins: https://app.example.com/billing/pay?t=abc");
}

#[test]
fn sms_settings_name_their_key_and_never_repeat_the_token() {
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let ok = || {
        let mut s = pastdue::notify::SmsConfig::default();
        s.account_sid = TWILIO_SID.into();
        s.auth_token = "secret-token-value".into();
        s.from = "+15005550006".into();
        s
    };
    type Edit = Box<dyn Fn(&mut pastdue::notify::SmsConfig)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|s| s.account_sid = "AC123".into()), "notify.sms.account_sid"),
        (Box::new(|s| s.auth_token = "".into()), "notify.sms.auth_token"),
        (Box::new(|s| s.from = "0123".into()), "notify.sms.from"),
        (Box::new(|s| s.api_base = "http://api.twilio.example".into()), "notify.sms.api_base"),
        (Box::new(|s| s.stages = vec!["late".into()]), "notify.sms.stages"),
    ];
    for (change, key) in cases {
        let mut c = Config::default();
        c.notify.sms = ok();
        change(&mut c.notify.sms);
        let err = Notifier::new(&c.notify, c.ladder().unwrap(), store.clone()).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("secret-token-value"));
    }
    let mut c = Config::default();
    c.notify.sms = ok();
    c.notify.sms.from = "Acme".into();
    c.notify.sms.stages = vec!["suspended".into(), "before_due".into()];
    assert!(Notifier::new(&c.notify, c.ladder().unwrap(), store).unwrap().is_some(), "an alphanumeric sender id and before_due are fine");
    assert!(!format!("{:?}", c.notify.sms).contains("secret-token-value"));
    // Unknown keys are refused by name.
    let err = Config::from_toml("[notify.sms]\naccount_sid = \"\"\ntoken = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");
}
