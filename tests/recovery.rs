//! Recovery figures end to end: signed Stripe events built from Stripe's
//! example objects, their times spread over weeks (an injected clock, no
//! sleeping), real Redis and a Redis Cluster; the admin API's report, the
//! metrics, the CLI's `--json`, and the same report whatever order (and
//! however often) the events arrive in.

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::clock::ManualClock;
use pastdue::{Config, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &str = "whsec_recovery";
const TOKEN: &str = "recovery-admin-token-0123456789";

fn config() -> Config {
    let mut c = Config::from_toml(ENTERPRISE_LADDER).unwrap();
    c.stripe.webhook_secret = SECRET.into();
    c.admin.token = TOKEN.into();
    c
}

/// Midnight UTC 60 days ago: every episode of the scenario starts that day.
fn day0() -> DateTime<Utc> {
    let d = (Utc::now() - TimeDelta::days(60)).date_naive();
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

struct App {
    router: Router,
    clock: ManualClock,
    store: Arc<dyn Store>,
    policy: pastdue::Policy,
}

async fn app(store: Arc<dyn Store>) -> App {
    let c = config();
    let clock = ManualClock::starting_at(day0());
    let parts = pastdue::Pastdue::new(&c, store.clone()).with_clock(clock.shared()).build().unwrap();
    let router = Router::new().merge(parts.routes.clone());
    App { router, clock, store, policy: c.policy().unwrap() }
}

/// One delivery of the scenario: a signed event, or the promise an
/// operator records through the admin API.
#[derive(Clone, Debug)]
enum Step {
    Event { id: String, kind: &'static str, at: DateTime<Utc>, object: Value },
    Promise,
}

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn failed(account: &str, invoice: &str, at: DateTime<Utc>, amount: i64) -> Step {
    Step::Event { id: format!("evt_failed_{invoice}"), kind: "invoice.payment_failed", at, object: invoice_object(account, invoice, "open", amount) }
}

fn paid(account: &str, invoice: &str, at: DateTime<Utc>) -> Step {
    Step::Event { id: format!("evt_paid_{invoice}"), kind: "invoice.paid", at, object: invoice_object(account, invoice, "paid", 0) }
}

fn voided(account: &str, invoice: &str, at: DateTime<Utc>) -> Step {
    Step::Event { id: format!("evt_void_{invoice}"), kind: "invoice.voided", at, object: invoice_object(account, invoice, "void", 0) }
}

/// The scenario, in the order things happened. All start on day 0:
/// - `notice-payer` pays after 3 days (notice), `warning-payer` after 15
///   (warning), `suspended-payer` after 20 (suspended);
/// - `promised` promises on day 10 to pay by day 25, pays on day 20: the
///   promise held it at notice;
/// - `voided`'s invoice is voided on day 30; `open` never pays;
/// - `partial` pays its first invoice on day 5, its second (day 2) stays open;
/// - `ent-payer`, whose plan names the enterprise ladder, pays after 20 days
///   (still notice there).
fn scenario() -> Vec<Step> {
    let d = day0();
    let mut sub = fixtures()["subscription"].clone();
    sub["id"] = json!("sub_ent-payer");
    sub["customer"] = json!("cus_ent-payer");
    sub["status"] = json!("active");
    sub["metadata"] = json!({ "account_id": "ent-payer" });
    sub["items"]["data"][0]["price"]["metadata"] = json!({ "pastdue_ladder": "enterprise" });
    vec![
        Step::Event { id: "evt_sub_ent".into(), kind: "customer.subscription.updated", at: d, object: sub },
        failed("notice-payer", "in_n", d + hours(1), 4_900),
        failed("warning-payer", "in_w", d + hours(2), 4_900),
        failed("suspended-payer", "in_s", d + hours(3), 4_900),
        failed("promised", "in_pr", d + hours(4), 4_900),
        failed("voided", "in_v", d + hours(5), 4_900),
        failed("open", "in_o", d + hours(6), 4_900),
        failed("partial", "in_p1", d + hours(7), 4_900),
        failed("ent-payer", "in_e", d + hours(8), 4_900),
        failed("partial", "in_p2", d + hours(7) + days(2), 2_500),
        paid("notice-payer", "in_n", d + hours(1) + days(3)),
        paid("partial", "in_p1", d + hours(7) + days(5)),
        Step::Promise,
        paid("warning-payer", "in_w", d + hours(2) + days(15)),
        paid("suspended-payer", "in_s", d + hours(3) + days(20)),
        paid("promised", "in_pr", d + hours(4) + days(20)),
        paid("ent-payer", "in_e", d + hours(8) + days(20)),
        voided("voided", "in_v", d + hours(5) + days(30)),
    ]
}

impl App {
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        admin_call(&self.router, TOKEN, method, path, body).await
    }

    async fn run(&self, steps: &[Step]) {
        for step in steps {
            match step {
                Step::Event { id, kind, at, object } => {
                    let body = event_body(id, kind, *at, object.clone());
                    let res = self.router.clone().oneshot(signed_delivery(SECRET, body)).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK, "{kind} {id}");
                }
                Step::Promise => {
                    self.clock.set(day0() + days(10));
                    let until = (day0() + days(25)).to_rfc3339();
                    let (status, v) = self.admin("POST", "/accounts/promised/promise", Some(json!({ "until": until, "reason": "pays on the 20th" }))).await;
                    assert_eq!(status, StatusCode::OK, "{v}");
                }
            }
        }
        // Counted as of day 40, the way the notifier's full sweep counts.
        self.clock.set(day0() + days(40));
        pastdue::store::refresh_at_risk(self.store.as_ref(), &self.policy, day0() + days(40)).await.unwrap();
    }

    async fn report(&self, query: &str) -> Value {
        let (status, v) = self.admin("GET", &format!("/recovery?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }
}

fn range() -> String {
    let d = day0().date_naive();
    format!("from={d}&to={}", d + days(1))
}

/// Every field of the report, for all ladders and for each.
fn assert_report(r: &Value) {
    let d = day0();
    assert_eq!(r["from"], json!(d), "{r:#}");
    assert_eq!(r["to"], json!(d + days(1)));
    assert_eq!(r["episodes"], json!({ "started": 8, "paid": 5, "voided": 1, "open": 2 }), "{r:#}");
    assert_eq!(r["recovery_rate"], json!(0.625));
    // Four whole payments and the part-payment of `partial`'s open episode.
    assert_eq!(r["recovered"], json!({ "eur": 6 * 4_900 }));
    assert_eq!(r["outstanding"], json!({ "eur": 4_900 + 2_500 }));
    assert_eq!(
        r["paid_at_stage"],
        json!({
            "notice": { "count": 3, "amount": { "eur": 3 * 4_900 } },
            "warning": { "count": 1, "amount": { "eur": 4_900 } },
            "suspended": { "count": 1, "amount": { "eur": 4_900 } },
        })
    );
    // 3, 15, 20, 20, 20 days: the median is the third.
    assert_eq!(r["days_to_pay"], json!({ "p50": 20.0, "p90": 20.0 }));
    // On day 40 `open` (40 days) and `partial` (38) are suspended.
    assert_eq!(r["at_risk"], json!({ "suspended": { "accounts": 2, "amount": { "eur": 4_900 + 2_500 } } }));
    assert_eq!(r["at_risk_as_of"], json!(d + days(40)));
    let month = d.format("%Y-%m").to_string();
    assert_eq!(r["by_month"], json!([{ "month": month, "started": 8, "paid": 5, "recovered": { "eur": 6 * 4_900 } }]));
}

fn assert_by_ladder(default: &Value, enterprise: &Value) {
    assert_eq!(default["ladder"], "default");
    assert_eq!(default["episodes"], json!({ "started": 7, "paid": 4, "voided": 1, "open": 2 }));
    assert_eq!(default["recovery_rate"], json!(0.571));
    assert_eq!(default["days_to_pay"], json!({ "p50": 15.0, "p90": 20.0 }), "3, 15, 20, 20 days");
    assert_eq!(enterprise["episodes"], json!({ "started": 1, "paid": 1, "voided": 0, "open": 0 }));
    assert_eq!(enterprise["paid_at_stage"], json!({ "notice": { "count": 1, "amount": { "eur": 4_900 } } }), "20 days is still notice on enterprise");
    assert_eq!(enterprise["recovery_rate"], json!(1.0));
}

/// The scenario in order on real Redis: the report, per ladder, the
/// account view's episodes, bad ranges, and the CLI's `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_every_episode_by_outcome_stage_and_ladder() {
    let redis = RedisServer::start();
    let app = app(store_with(&redis.url(), relaxed()).await).await;
    app.run(&scenario()).await;
    let report = app.report(&range()).await;
    assert_report(&report);
    assert_by_ladder(&app.report(&format!("{}&ladder=default", range())).await, &app.report(&format!("{}&ladder=enterprise", range())).await);

    // The account view lists the account's own episodes.
    let (_, v) = app.admin("GET", "/accounts/promised", None).await;
    let e = &v["episodes"][0];
    assert_eq!((e["outcome"].as_str(), e["stage_at_end"].as_str(), e["ladder"].as_str()), (Some("paid"), Some("notice"), Some("default")), "{v:#}");
    assert_eq!(e["amount_paid"], json!({ "eur": 4_900 }));
    let (_, v) = app.admin("GET", "/accounts/partial", None).await;
    assert_eq!(v["episodes"], json!([{ "started_at": day0() + hours(7), "ladder": "default", "amount_paid": { "eur": 4_900 }, "outstanding": { "eur": 2_500 } }]));

    // Bad ranges name their field.
    for (query, field) in [("from=yesterday", "from"), ("to=2026-13-01", "to"), ("from=2026-10-02&to=2026-10-01", "to"), ("from=1990-01-01", "from"), ("from=2000-01-01&to=2099-01-01", "from"), ("ladder=platinum", "ladder")] {
        let (status, v) = app.admin("GET", &format!("/recovery?{query}"), None).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}: {v}");
    }

    // The CLI prints the same report.
    let d = day0().date_naive();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pastdue"))
        .args(["report", "--from", &d.to_string(), "--to", &(d + days(1)).to_string(), "--json"])
        .env("PASTDUE_STORE__URL", redis.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, report, "the CLI's --json is the API's report");
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_pastdue"))
        .args(["report", "--from", &d.to_string(), "--to", &(d + days(1)).to_string()])
        .env("PASTDUE_STORE__URL", redis.url())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for line in ["8 started: 5 paid, 1 voided, 2 still open", "62.5 %", "€294.00", "suspended           2 accounts  €74.00", "p50 20.0 days"] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
}

/// Shuffled deliveries with duplicates, on a Redis Cluster: the same report
/// as in order on a single node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_and_repeated_deliveries_give_the_same_report() {
    let redis = RedisServer::start();
    let ordered = app(store_with(&redis.url(), relaxed()).await).await;
    ordered.run(&scenario()).await;
    let expected = ordered.report(&range()).await;
    assert_report(&expected);

    let cluster = RedisCluster::start();
    let shuffled = app(store_with(&cluster.url(), relaxed()).await).await;
    let mut steps = scenario();
    // A fixed, arbitrary order (an LCG), every event delivered twice; the
    // promise still comes while `promised` owes, as an operator's would.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..steps.len()).rev() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        steps.swap(i, (seed >> 33) as usize % (i + 1));
    }
    let position = |steps: &[Step], id: &str| steps.iter().position(|s| matches!(s, Step::Event { id: e, .. } if e == id)).unwrap();
    steps.retain(|s| !matches!(s, Step::Promise));
    let (f, p) = (position(&steps, "evt_failed_in_pr"), position(&steps, "evt_paid_in_pr"));
    if p < f {
        steps.swap(p, f);
    }
    steps.insert(position(&steps, "evt_failed_in_pr") + 1, Step::Promise);
    let repeated: Vec<Step> = steps.iter().flat_map(|s| if matches!(s, Step::Promise) { vec![s.clone()] } else { vec![s.clone(), s.clone()] }).collect();
    shuffled.run(&repeated).await;
    // Late deliveries of everything again change nothing.
    shuffled.run(&scenario().into_iter().filter(|s| !matches!(s, Step::Promise)).collect::<Vec<_>>()).await;
    assert_eq!(shuffled.report(&range()).await, expected);
}

/// A payment found by verification is a payment: a debt 20 days old whose
/// `invoice.paid` never reached us, paid at Stripe (localstripe), is
/// settled when the customer's next request is verified, and the report
/// counts it paid at `suspended`, where it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_found_by_verification_counts_as_paid() {
    let redis = RedisServer::start();
    let emu = Emulator::start();
    let customer = emu.failing_customer("verified").await;
    let invoice = emu.invoice_of(&customer).await;
    let store = store_with(&redis.url(), relaxed()).await;
    let mut c = config();
    c.stripe.api_key = "sk_test_pastdue".into();
    c.stripe.api_base = emu.ls.url();
    let parts = pastdue::Pastdue::new(&c, store.clone()).build().unwrap();
    let since = Utc::now() - days(20);
    let account = pastdue::AccountId::new("verified").unwrap();
    store.apply(&account, None, &[unpaid(&invoice, 1_200, since), pastdue::Change::LinkCustomer(customer.clone())]).await.unwrap();
    emu.pay_with_card(&customer, &invoice).await;
    let app = Router::new().route("/x", axum::routing::get(|| async { "ok" })).layer(parts.gate.clone()).merge(parts.routes.clone());
    let res = app.clone().oneshot(Request::get("/x").header("x-account-id", "verified").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "verified paid: the request passes");
    let admin = App { router: app, clock: ManualClock::starting_at(Utc::now()), store, policy: c.policy().unwrap() };
    let d = since.date_naive();
    let r = admin.report(&format!("from={d}&to={}", d + days(1))).await;
    assert_eq!(r["episodes"], json!({ "started": 1, "paid": 1, "voided": 0, "open": 0 }), "{r:#}");
    assert_eq!(r["paid_at_stage"], json!({ "suspended": { "count": 1, "amount": { "eur": 1_200 } } }));
    assert_eq!(r["recovered"], json!({ "eur": 1_200 }));
}
