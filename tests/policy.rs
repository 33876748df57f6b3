//! Policy that fits the customer (#17): ladders chosen per account, promises
//! to pay, repeat offenders, and stages that close features first.
//!
//! The pure rules are table tests on `Policy` and `BillingState` with
//! explicit times; the end-to-end tests run the assembled app on a private
//! Redis with signed Stripe webhooks (built from Stripe's example objects)
//! and an injected clock moved across the ladder.

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::clock::ManualClock;
use pastdue::policy::{Policy, PromiseRefused, RepeatRule};
use pastdue::state::{LadderChoice, Promise, PromiseStatus, SubscriptionFact, SubscriptionStatus};
use pastdue::{Action, BillingState, Change, Config, Ladder, Reason};
use serde_json::{json, Value};
use tower::ServiceExt;

const DAYS: u64 = 86_400;
const SECRET: &str = "whsec_policy";
const TOKEN: &str = "policy-admin-token-0123456789";

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn ladder(stages: &[(&str, u64, Action)]) -> Ladder {
    Ladder::new(stages.iter().map(|(n, d, a)| (*n, std::time::Duration::from_secs(d * DAYS), *a))).unwrap()
}

/// default: notice 0, warning 14 (closes reports), suspended 17;
/// enterprise: notice 0, warning 30, suspended 45; strict: notice 0,
/// suspended 3.
fn policy() -> Policy {
    let default = ladder(&[("notice", 0, Action::Notice), ("warning", 14, Action::Warn), ("suspended", 17, Action::Block)])
        .closing("warning", ["reports"])
        .unwrap();
    Policy::new(default)
        .with_ladder("enterprise", ladder(&[("notice", 0, Action::Notice), ("warning", 30, Action::Warn), ("suspended", 45, Action::Block)]))
        .unwrap()
        .with_ladder("strict", ladder(&[("notice", 0, Action::Notice), ("suspended", 3, Action::Block)]))
        .unwrap()
        .with_repeat(RepeatRule { episodes: 2, min_stage: "warning".into(), window: std::time::Duration::from_secs(365 * DAYS), ladder: "strict".into() })
        .unwrap()
}

fn state(changes: &[Change]) -> BillingState {
    let mut s = BillingState::default();
    for c in changes {
        s.apply(c);
    }
    s
}

fn plan(ladder: &str, at: DateTime<Utc>) -> Change {
    Change::Subscription { id: "sub_1".into(), fact: SubscriptionFact { ladder: Some(ladder.into()), ..SubscriptionFact::new(SubscriptionStatus::Active, at) } }
}

fn admin_choice(ladder: &str, at: DateTime<Utc>) -> Change {
    Change::Ladder(Some(LadderChoice { ladder: ladder.into(), reason: "yearly contract".into(), by: "ops".into(), at }))
}

fn promise(at: DateTime<Utc>, until: DateTime<Utc>) -> Change {
    Change::Promise(Promise { at, until, reason: "accountant back on Friday".into(), by: "ops".into() })
}

/// An episode: invoice `id` owed from `start` for `lasted` days, then paid.
fn episode(id: &str, start: DateTime<Utc>, lasted: i64) -> [Change; 2] {
    [unpaid(id, 4_900, start), settled(id, start + days(lasted))]
}

#[test]
fn the_ladder_is_chosen_first_match_wins() {
    let p = policy();
    let now = t(0) + days(400);
    let debt = unpaid("in_now", 4_900, now - days(5));
    let two = [episode("in_a", now - days(200), 20), episode("in_b", now - days(100), 15)].concat();
    // (changes, ladder, source)
    let cases: Vec<(Vec<Change>, &str, &str)> = vec![
        (vec![debt.clone()], "default", "default"),
        (vec![debt.clone(), plan("enterprise", now - days(30))], "enterprise", "plan"),
        // A plan naming a ladder nobody configured is skipped, not an error.
        (vec![debt.clone(), plan("platinum", now - days(30))], "default", "default"),
        (vec![debt.clone(), plan("enterprise", now - days(30)), admin_choice("strict", now - days(1))], "strict", "admin"),
        ([vec![debt.clone()], two.clone()].concat(), "strict", "repeat"),
        // The plan beats the repeat rule; the admin beats both.
        ([vec![debt.clone(), plan("enterprise", now - days(30))], two.clone()].concat(), "enterprise", "plan"),
        ([vec![debt.clone(), admin_choice("default", now)], two.clone()].concat(), "default", "admin"),
        // Episodes that never reached `warning` (14 days) do not count.
        ([vec![debt.clone()], episode("in_a", now - days(200), 10).to_vec(), episode("in_b", now - days(100), 13).to_vec()].concat(), "default", "default"),
        // Nor do those that ended before the window.
        ([vec![debt.clone()], episode("in_a", now - days(800), 20).to_vec(), episode("in_b", now - days(100), 20).to_vec()].concat(), "default", "default"),
    ];
    for (i, (changes, name, source)) in cases.into_iter().enumerate() {
        let s = state(&changes);
        let choice = p.explain(Some(&s), now);
        assert_eq!((choice.name.as_str(), choice.source), (name, source), "case {i}: {choice:?}");
        assert!(std::ptr::eq(p.ladder_for(Some(&s), now), p.ladder(name).unwrap()), "case {i}");
    }
    // The admin view says why: the episodes and the deepest stage each reached.
    let s = state(&[vec![debt.clone()], two.clone()].concat());
    let choice = p.explain(Some(&s), now);
    assert_eq!(choice.episodes.len(), 2);
    assert_eq!(choice.episodes[0].reached.as_deref(), Some("suspended"), "20 days reached suspended");
    assert_eq!(choice.episodes[1].reached.as_deref(), Some("warning"), "15 days reached warning");
    assert!(choice.why.contains("2 earlier episode(s)"), "{}", choice.why);
    let s = state(&[debt, plan("platinum", now)]);
    assert_eq!(p.explain(Some(&s), now).skipped.len(), 1, "the skipped plan is named");
}

#[test]
fn episodes_come_from_event_times_whatever_the_delivery_order() {
    let start = t(0);
    let changes = [
        unpaid("in_a", 4_900, start),
        unpaid("in_b", 1_000, start + days(3)),
        settled("in_a", start + days(10)),
        settled("in_b", start + days(20)),
        unpaid("in_c", 4_900, start + days(100)),
        settled("in_c", start + days(101)),
    ];
    let forward = state(&changes);
    let mut reversed = changes.to_vec();
    reversed.reverse();
    let backward = state(&reversed);
    assert_eq!(forward, backward);
    let e = forward.episodes();
    assert_eq!(e.len(), 2, "overlapping invoices are one episode: {e:?}");
    assert_eq!((e[0].start, e[0].end), (start, start + days(20)));
    assert_eq!((e[1].start, e[1].end), (start + days(100), start + days(101)));
    // The debt owed now is not an earlier episode.
    let open = state(&[unpaid("in_a", 1, start), unpaid("in_b", 1, start + days(1)), settled("in_b", start + days(2))]);
    assert!(open.episodes().is_empty());
}

#[test]
fn a_promise_holds_the_ladder_then_time_decides() {
    let p = policy();
    let start = t(0);
    let made = start + days(16);
    let until = start + days(20);
    let s = state(&[unpaid("in_1", 4_900, start), promise(made, until)]);

    // Before: warning. With the promise: the first stage, no blocking.
    let held = p.evaluate(Some(&s), start + days(18));
    assert_eq!((held.stage().name(), held.reason()), ("notice", Reason::Promised));
    assert_eq!(held.since(), Some(made));
    assert_eq!(held.next().map(|(st, at)| (st.name().to_owned(), at)), Some(("suspended".into(), until)), "time reaches suspended by then");
    assert_eq!(held.promised(), Some(until));
    assert_eq!(s.promise_status(&s.promises()[0], start + days(18)), PromiseStatus::Pending);

    // Broken: the ladder stands where time has put it, not restarted.
    let after = p.evaluate(Some(&s), until + TimeDelta::seconds(1));
    assert_eq!((after.stage().name(), after.reason()), ("suspended", Reason::Debt));
    assert_eq!(after.since(), Some(start + days(17)), "the clock was never restarted");
    assert_eq!(after.promised(), Some(until), "the page can still say what was promised");
    assert_eq!(s.promise_status(&s.promises()[0], until), PromiseStatus::Broken);

    // Kept: paid before the date.
    let kept = state(&[unpaid("in_1", 4_900, start), promise(made, until), settled("in_1", start + days(19))]);
    assert_eq!(kept.promise_status(&kept.promises()[0], start + days(60)), PromiseStatus::Kept);
    assert_eq!(p.evaluate(Some(&kept), start + days(60)).reason(), Reason::GoodStanding);
    // Paid, but after the date: broken all the same.
    let late = state(&[unpaid("in_1", 4_900, start), promise(made, until), settled("in_1", start + days(25))]);
    assert_eq!(late.promise_status(&late.promises()[0], start + days(60)), PromiseStatus::Broken);
    // The promised invoice paid late while a newer one is still owed:
    // broken too (the newer debt started after the promise).
    let newer = state(&[unpaid("in_1", 4_900, start), promise(made, until), unpaid("in_2", 900, start + days(18)), settled("in_1", start + days(25))]);
    assert_eq!(newer.promise_status(&newer.promises()[0], start + days(30)), PromiseStatus::Broken);
    let paid_in_time = state(&[unpaid("in_1", 4_900, start), promise(made, until), unpaid("in_2", 900, start + days(18)), settled("in_1", start + days(19))]);
    assert_eq!(paid_in_time.promise_status(&paid_in_time.promises()[0], start + days(30)), PromiseStatus::Kept);
}

#[test]
fn promises_are_refused_during_the_cooldown_unless_forced() {
    let p = policy().with_promise_cooldown(std::time::Duration::from_secs(180 * DAYS));
    let start = t(0);
    let now = start + days(21);
    let nothing = state(&[]);
    assert_eq!(p.may_promise(Some(&nothing), now + days(3), false, now), Err(PromiseRefused::NothingOwed));
    assert_eq!(p.may_promise(None, now + days(3), true, now), Err(PromiseRefused::NothingOwed), "force does not invent a debt");
    let owed = state(&[unpaid("in_1", 4_900, start)]);
    assert_eq!(p.may_promise(Some(&owed), now, false, now), Err(PromiseRefused::NotFuture));
    assert_eq!(p.may_promise(Some(&owed), now + days(3), false, now), Ok(()));

    let broke = state(&[unpaid("in_1", 4_900, start), promise(start + days(16), start + days(20))]);
    match p.may_promise(Some(&broke), now + days(3), false, now) {
        Err(PromiseRefused::Cooldown { broken, ends }) => {
            assert_eq!(broken, start + days(20));
            assert_eq!(ends, start + days(200));
        }
        other => panic!("expected the cooldown, got {other:?}"),
    }
    assert_eq!(p.may_promise(Some(&broke), now + days(3), true, now), Ok(()), "forced");
    // The cooldown ends by itself (a debt still owed 200 days later).
    assert_eq!(p.may_promise(Some(&broke), start + days(205), false, start + days(201)), Ok(()));
}

#[test]
fn a_broken_promise_makes_a_repeat_offender_for_the_next_episode_only() {
    let p = policy();
    let start = t(0);
    // Promised during a first debt, broken, paid late.
    let first = [unpaid("in_1", 4_900, start), promise(start + days(2), start + days(5)), settled("in_1", start + days(8))];
    let s = state(&first);
    // During that debt its own broken promise does not change its ladder.
    let during = state(&first[..2]);
    assert_eq!(p.explain(Some(&during), start + days(6)).source, "default");
    // The next debt is on the strict ladder: suspended after 3 days.
    let next = state(&[first.to_vec(), vec![unpaid("in_2", 4_900, start + days(40))]].concat());
    let choice = p.explain(Some(&next), start + days(44));
    assert_eq!((choice.name.as_str(), choice.source), ("strict", "repeat"));
    assert_eq!(choice.broken_promises, vec![start + days(5)]);
    assert_eq!(p.evaluate(Some(&next), start + days(44)).stage().name(), "suspended");
    // A year on, clean: back to default.
    let later = state(&[first.to_vec(), vec![unpaid("in_3", 4_900, start + days(400))]].concat());
    assert_eq!(p.explain(Some(&later), start + days(401)).source, "default");
    let _ = s;
}

#[test]
fn stages_close_features_cumulatively_and_block_closes_everything() {
    let l = ladder(&[("notice", 0, Action::Notice), ("warning", 14, Action::Warn), ("restricted", 16, Action::Warn), ("suspended", 17, Action::Block)])
        .closing("warning", ["reports"])
        .unwrap()
        .closing("restricted", ["invites"])
        .unwrap();
    let closes = |i: usize, f: &str| l.stages()[i].closes(f);
    assert!(!closes(0, "reports"));
    assert!(closes(1, "reports") && !closes(1, "invites"));
    assert!(closes(2, "reports") && closes(2, "invites"), "later stages keep earlier closures");
    assert!(closes(3, "reports"));
    let s = state(&[unpaid("in_1", 4_900, t(0))]);
    let standing = pastdue::Standing::evaluate(Some(&s), &l, t(0) + days(15));
    assert_eq!(standing.blocks_at(), Some(t(0) + days(17)), "the date the rest closes");
    assert!(matches!(
        ladder(&[("notice", 0, Action::Notice)]).closing("notice", ["Reports!"]),
        Err(pastdue::standing::LadderError::BadCloses(..))
    ));
    assert!(ladder(&[("notice", 0, Action::Notice)]).closing("warning", ["reports"]).is_err(), "no such stage");
}

#[test]
fn policy_settings_are_validated_naming_the_key() {
    let base = r#"
        [[ladders.enterprise.stages]]
        name = "notice"
        after = "0s"
        action = "notice"
        [[ladders.enterprise.stages]]
        name = "suspended"
        after = "45d"
        action = "block"
    "#;
    let ok = Config::from_toml(&format!("{base}\n[policy.repeat]\nladder = \"enterprise\"\n[stripe.ladder_by_lookup_key]\nyearly = \"enterprise\"\n")).unwrap();
    let policy = ok.policy().unwrap();
    assert_eq!(policy.names().collect::<Vec<_>>(), ["default", "enterprise"]);
    assert_eq!(policy.repeat().unwrap().episodes, 2, "defaults: 2 episodes");
    let error = |toml: &str| match Config::from_toml(toml) {
        Err(pastdue::config::ConfigError::Key { key, .. }) => key,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(error(&format!("{base}\n[policy.repeat]\nladder = \"platinum\"\n")), "policy.repeat.ladder");
    assert_eq!(error(&format!("{base}\n[policy.repeat]\nladder = \"enterprise\"\nmin_stage = \"nope\"\n")), "policy.repeat.min_stage");
    assert_eq!(error(&format!("{base}\n[stripe.ladder_by_lookup_key]\nyearly = \"platinum\"\n")), "stripe.ladder_by_lookup_key.yearly");
    assert_eq!(error(&base.replace("45d", "0s")), "ladders.enterprise.stages[1].after");
    assert_eq!(
        error("[[ladder.stages]]\nname = \"notice\"\nafter = \"0s\"\naction = \"notice\"\ncloses = [\"Reports\"]\n"),
        "ladder.stages[0].closes"
    );
    assert_eq!(error("[policy]\npromise_cooldown = \"soon\"\n"), "policy.promise_cooldown");
}

// ---- end to end: the assembled app on a private Redis -----------------------

/// Besides `default` (common::LADDER_CLOSING_REPORTS) and enterprise
/// (common::ENTERPRISE_LADDER: notice 0, warning 30, suspended 45 days):
/// strict (notice 0, suspended 3), the repeat rule's ladder.
const MORE_LADDERS: &str = r#"
[[ladders.strict.stages]]
name = "notice"
after = "0s"
action = "notice"
[[ladders.strict.stages]]
name = "suspended"
after = "3d"
action = "block"

[policy.repeat]
ladder = "strict"

[stripe.ladder_by_lookup_key]
yearly_enterprise = "enterprise"
"#;

struct App {
    router: Router,
    clock: ManualClock,
    t0: DateTime<Utc>,
    _redis: RedisServer,
}

async fn app() -> App {
    let redis = RedisServer::start();
    let mut c = Config::from_toml(&format!("{LADDER_CLOSING_REPORTS}{ENTERPRISE_LADDER}{MORE_LADDERS}")).unwrap();
    c.stripe.webhook_secret = SECRET.into();
    c.admin.token = TOKEN.into();
    let store = store_with(&redis.url(), relaxed()).await;
    let t0 = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::starting_at(t0);
    let parts = pastdue::Pastdue::new(&c, store).with_clock(clock.shared()).build().unwrap();
    let reports = Router::new().route("/api/reports", get(|| async { "the report" })).layer(pastdue::gate::feature("reports"));
    // A route tagged by the app's own middleware, before the gate runs.
    let tag = axum::middleware::map_request(|mut req: Request<Body>| async move {
        if req.uri().path() == "/api/export-reports" {
            req.extensions_mut().insert(pastdue::gate::Feature::new("reports"));
        }
        req
    });
    let router = Router::new()
        .route("/api/ping", get(|| async { "pong" }))
        .route("/api/export-reports", get(|| async { "the export" }))
        .merge(reports)
        .layer(parts.gate.clone())
        .layer(tag)
        .merge(parts.routes.clone());
    App { router, clock, t0, _redis: redis }
}

impl App {
    fn at(&self, d: i64) -> DateTime<Utc> {
        self.t0 + days(d)
    }

    fn move_to(&self, d: i64) {
        self.clock.set(self.at(d));
    }

    /// Posts a signed event whose facts happened at `created` (delivered now).
    async fn event(&self, id: &str, kind: &str, created: DateTime<Utc>, object: Value) {
        let res = self.router.clone().oneshot(signed_delivery(SECRET, event_body(id, kind, created, object))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{kind} {id}");
    }

    async fn invoice_failed(&self, account: &str, invoice: &str, at: DateTime<Utc>) {
        self.event(&format!("evt_failed_{invoice}"), "invoice.payment_failed", at, invoice_object(account, invoice, "open", 4_900)).await;
    }

    async fn invoice_paid(&self, account: &str, invoice: &str, at: DateTime<Utc>) {
        self.event(&format!("evt_paid_{invoice}"), "invoice.paid", at, invoice_object(account, invoice, "paid", 0)).await;
    }

    /// `customer.subscription.updated` with Stripe's example item, its price
    /// given `price_metadata` and `lookup_key`.
    async fn subscription(&self, account: &str, status: &str, at: DateTime<Utc>, price_metadata: Value, lookup_key: Option<&str>) {
        let mut sub = fixtures()["subscription"].clone();
        sub["id"] = json!(format!("sub_{account}"));
        sub["customer"] = json!(format!("cus_{account}"));
        sub["status"] = json!(status);
        sub["metadata"] = json!({ "account_id": account });
        sub["items"]["data"][0]["price"]["metadata"] = price_metadata;
        sub["items"]["data"][0]["price"]["lookup_key"] = json!(lookup_key);
        self.event(&format!("evt_sub_{account}_{status}"), "customer.subscription.updated", at, sub).await;
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        admin_call(&self.router, TOKEN, method, path, body).await
    }

    async fn view(&self, account: &str) -> Value {
        let (status, v) = self.admin("GET", &format!("/accounts/{account}"), None).await;
        assert_eq!(status, StatusCode::OK);
        v
    }

    /// A gated request: status, `Billing-Stage`, body.
    async fn get(&self, account: &str, path: &str, accept: &str) -> (StatusCode, String, String) {
        let req = Request::get(path).header("x-account-id", account).header("accept", accept).body(Body::empty()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let stage = res.headers().get("billing-stage").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, stage, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Polls until the gate (whose cache hears of writes over Redis pub/sub)
    /// answers `path` with `status`.
    async fn gate_says(&self, account: &str, path: &str, status: StatusCode) -> (StatusCode, String, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got = self.get(account, path, "application/json").await;
            if got.0 == status || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Enterprise price metadata → the enterprise ladder (and a lookup key
/// mapped in `[stripe.ladder_by_lookup_key]` likewise), while a plain plan
/// stays on `default`; the admin view and `next_stage_at` follow the
/// chosen ladder and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_metadata_chooses_the_ladder() {
    let app = app().await;
    let t0 = app.t0;
    app.subscription("ent", "past_due", t0, json!({ "pastdue_ladder": "enterprise" }), None).await;
    app.subscription("yearly", "past_due", t0, json!({}), Some("yearly_enterprise")).await;
    app.subscription("plain", "past_due", t0, json!({}), None).await;
    for account in ["ent", "yearly", "plain"] {
        app.invoice_failed(account, &format!("in_{account}"), t0).await;
    }
    app.move_to(15);
    for account in ["ent", "yearly"] {
        let v = app.view(account).await;
        assert_eq!(v["stage"], "notice", "{account}: {v}");
        assert_eq!((v["ladder"]["name"].as_str(), v["ladder"]["source"].as_str()), (Some("enterprise"), Some("plan")), "{account}");
        assert_eq!(v["next_stage"], "warning");
        assert_eq!(v["next_stage_at"].as_str().map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)), Some(app.at(30)));
        let (status, stage, _) = app.get(account, "/api/ping", "application/json").await;
        assert_eq!((status, stage.as_str()), (StatusCode::OK, "notice"), "{account}");
    }
    let v = app.view("plain").await;
    assert_eq!((v["stage"].as_str(), v["ladder"]["name"].as_str()), (Some("warning"), Some("default")));
    app.move_to(20);
    assert_eq!(app.get("plain", "/api/ping", "application/json").await.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(app.get("ent", "/api/ping", "application/json").await.0, StatusCode::OK, "enterprise gets longer");

    // An admin's choice beats the plan, is audited, and can be handed back.
    let (status, v) = app.admin("PUT", "/accounts/ent/policy", Some(json!({ "ladder": "default", "reason": "contract lapsed" }))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["ladder"]["name"].as_str(), v["ladder"]["source"].as_str(), v["stage"].as_str()), (Some("default"), Some("admin"), Some("suspended")));
    assert!(v["ladder"]["why"].as_str().unwrap().contains("contract lapsed"));
    let (status, v) = app.admin("PUT", "/accounts/ent/policy", Some(json!({ "ladder": "platinum", "reason": "x" }))).await;
    assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("ladder")), "unknown ladder: {v}");
    let (status, v) = app.admin("PUT", "/accounts/ent/policy", Some(json!({ "ladder": null, "reason": "back to the plan" }))).await;
    assert_eq!((status, v["ladder"]["source"].as_str()), (StatusCode::OK, Some("plan")));
    let (_, audit) = app.admin("GET", "/audit?account=ent", None).await;
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["policy.cleared", "policy.set"], "{audit}");
}

/// A promise kept; a promise broken (the ladder resumes where time put it,
/// not restarted; the page says what was promised); a second promise refused
/// with 409, then forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promises_kept_broken_refused_and_forced() {
    let app = app().await;
    let t0 = app.t0;
    for account in ["keeps", "breaks"] {
        app.invoice_failed(account, &format!("in_{account}"), t0).await;
    }
    app.move_to(16);
    // Nothing owed: nothing to promise.
    let (status, _) = app.admin("POST", "/accounts/nobody/promise", Some(json!({ "until": app.at(20), "reason": "r" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    for account in ["keeps", "breaks"] {
        assert_eq!(app.get(account, "/api/ping", "application/json").await.1, "warning");
        let (status, v) = app.admin("POST", &format!("/accounts/{account}/promise"), Some(json!({ "until": app.at(20), "reason": "paying on Friday" }))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!((v["stage"].as_str(), v["reason"].as_str()), (Some("notice"), Some("promised")), "{v}");
        assert_eq!(v["promises"][0]["status"], "pending");
        let (status, stage, _) = app.gate_says(account, "/api/reports", StatusCode::OK).await;
        assert_eq!((status, stage.as_str()), (StatusCode::OK, "notice"), "no feature closed, nothing blocked while the promise holds");
    }
    // Listed where they show: in the first stage, though their debts are 16 days old.
    let (_, listed) = app.admin("GET", "/accounts?stage=notice", None).await;
    let names: Vec<&str> = listed["accounts"].as_array().unwrap().iter().map(|a| a["account"].as_str().unwrap()).collect();
    assert_eq!(names, ["breaks", "keeps"], "{listed}");
    let (_, listed) = app.admin("GET", "/accounts?stage=warning", None).await;
    assert!(listed["accounts"].as_array().unwrap().is_empty(), "{listed}");
    // The agenda lists the promises coming due.
    let (_, agenda) = app.admin("GET", &format!("/agenda?from={}&to={}", enc(app.at(16)), enc(app.at(25))), None).await;
    let due: Vec<&str> = agenda["items"].as_array().unwrap().iter().filter(|i| i["event"] == "promise_due").map(|i| i["account"].as_str().unwrap()).collect();
    assert_eq!(due, ["breaks", "keeps"], "{agenda}");

    // One pays on day 18: kept.
    app.invoice_paid("keeps", "in_keeps", app.at(18)).await;
    app.move_to(21);
    let v = app.view("keeps").await;
    assert_eq!((v["stage"].as_str(), v["promises"][0]["status"].as_str()), (Some("active"), Some("kept")), "{v}");

    // The other did not: broken. Day 21 on the default ladder is suspended
    // since day 17 — the clock was not restarted by the promise.
    let v = app.view("breaks").await;
    assert_eq!((v["stage"].as_str(), v["reason"].as_str()), (Some("suspended"), Some("debt")), "{v}");
    assert_eq!(v["since"].as_str().map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)), Some(app.at(17)));
    assert_eq!(v["promises"][0]["status"], "broken");
    let (status, _, page) = app.get("breaks", "/api/ping", "text/html").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(page.contains("You told us you would pay by"), "{page}");

    // A second promise: refused during the cooldown, then forced.
    let body = json!({ "until": app.at(25), "reason": "really this time" });
    let (status, v) = app.admin("POST", "/accounts/breaks/promise", Some(body.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("broken"), "{v}");
    let mut forced = body;
    forced["force"] = json!(true);
    let (status, v) = app.admin("POST", "/accounts/breaks/promise", Some(forced)).await;
    assert_eq!((status, v["reason"].as_str()), (StatusCode::OK, Some("promised")), "{v}");
    assert_eq!(app.gate_says("breaks", "/api/ping", StatusCode::OK).await.0, StatusCode::OK);
    let (_, audit) = app.admin("GET", "/audit?account=breaks", None).await;
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["promise.forced", "promise.added"], "{audit}");
}

/// Two earlier episodes that reached `warning` — delivered late, judged by
/// their own event times — put the third on the strict ladder; one such
/// episode does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_episodes_make_the_third_strict() {
    let app = app().await;
    let t0 = app.t0;
    // Episodes 200 and 100 days ago, each paid after 20 days, reported now.
    for (account, earlier) in [("twice", &[200, 100][..]), ("once", &[100][..])] {
        for ago in earlier {
            let id = format!("in_{account}_{ago}");
            app.invoice_failed(account, &id, t0 - days(*ago)).await;
            app.invoice_paid(account, &id, t0 - days(*ago) + days(20)).await;
        }
        app.invoice_failed(account, &format!("in_{account}_now"), t0).await;
    }
    app.move_to(4);
    let v = app.view("twice").await;
    assert_eq!((v["ladder"]["name"].as_str(), v["ladder"]["source"].as_str()), (Some("strict"), Some("repeat")), "{v}");
    assert_eq!(v["ladder"]["episodes"].as_array().unwrap().len(), 2, "the admin view names the episodes: {v}");
    assert_eq!(v["ladder"]["episodes"][0]["reached"], "suspended");
    assert_eq!(v["stage"], "suspended", "strict: suspended after 3 days");
    assert_eq!(app.get("twice", "/api/ping", "application/json").await.0, StatusCode::PAYMENT_REQUIRED);
    let v = app.view("once").await;
    assert_eq!((v["ladder"]["name"].as_str(), v["stage"].as_str()), (Some("default"), Some("notice")), "{v}");
    assert_eq!(app.get("once", "/api/ping", "application/json").await.0, StatusCode::OK);
}

/// In `warning` (which closes `reports`), the tagged routes answer the 402
/// — problem+json naming the feature and when the rest closes, or the page —
/// while an open route of the same account passes; in `notice` they pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_feature_answers_402_while_the_rest_passes() {
    let app = app().await;
    app.invoice_failed("acme", "in_acme", app.t0).await;
    app.move_to(1);
    for path in ["/api/reports", "/api/export-reports", "/api/ping"] {
        let (status, stage, _) = app.get("acme", path, "application/json").await;
        assert_eq!((status, stage.as_str()), (StatusCode::OK, "notice"), "{path} in notice");
    }
    app.move_to(15);
    let (status, stage, body) = app.get("acme", "/api/ping", "application/json").await;
    assert_eq!((status, stage.as_str(), body.as_str()), (StatusCode::OK, "warning", "pong"));
    for path in ["/api/reports", "/api/export-reports"] {
        let (status, stage, body) = app.get("acme", path, "application/json").await;
        assert_eq!((status, stage.as_str()), (StatusCode::PAYMENT_REQUIRED, "warning"), "{path}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["feature"], "reports", "{problem}");
        assert_eq!(problem["stage"], "warning");
        assert_eq!(problem["amount_due"], 4_900);
        assert_eq!(problem["rest_closes_at"].as_str().map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)), Some(app.at(17)));
    }
    let (status, _, page) = app.get("acme", "/api/reports", "text/html").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(page.contains("reports is paused until a payment is made"), "{page}");
    assert!(page.contains("Everything else keeps working until"), "{page}");
    assert!(!page.contains("the report"), "the handler never ran");
    // A client cannot open a feature by claiming one: tags come from routes.
    let req = Request::get("/api/reports").header("x-account-id", "acme").header("x-feature", "none").body(Body::empty()).unwrap();
    assert_eq!(app.router.clone().oneshot(req).await.unwrap().status(), StatusCode::PAYMENT_REQUIRED);
    // Paid: everything opens.
    app.invoice_paid("acme", "in_acme", app.at(15)).await;
    assert_eq!(app.gate_says("acme", "/api/reports", StatusCode::OK).await.0, StatusCode::OK);
}

fn enc(t: DateTime<Utc>) -> String {
    form_urlencoded::byte_serialize(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_bytes()).collect()
}

/// Notices pause while a promise holds — the warning the ladder would have
/// sent is not — and resume when it breaks: the suspension notice goes out
/// at the next windowed sweep, found through the promise index alone (no
/// stage starts in that window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_pause_while_a_promise_holds_and_resume_when_it_breaks() {
    let redis = RedisServer::start();
    let smtp = SmtpServer::start();
    let mut c = Config::from_toml(&format!("{LADDER_CLOSING_REPORTS}{ENTERPRISE_LADDER}{MORE_LADDERS}")).unwrap();
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    // Only windowed sweeps after the first (a full one every 60 polls).
    c.notify.poll_interval = std::time::Duration::from_secs(30 * DAYS);
    let store = store_with(&redis.url(), relaxed()).await;
    let t0 = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::starting_at(t0);
    let notifier = pastdue::notify::Notifier::new(&c.notify, c.policy().unwrap(), store.clone()).unwrap().unwrap().with_clock(clock.shared());
    let account = pastdue::AccountId::new("promiser").unwrap();
    store.apply(&account, None, &[Change::ContactEmail("ap@promiser.test".into()), unpaid("in_1", 4_900, t0)]).await.unwrap();
    let subjects = |count: usize| async move {
        // The receiver hands messages over asynchronously: wait for them.
        assert!(eventually(std::time::Duration::from_secs(5), || smtp.messages().len() >= count).await, "{count} messages arrive");
        smtp.messages()
            .iter()
            .map(|raw| mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap().subject().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(notifier.sweep().await.unwrap(), 1, "the payment notice");
    store.apply(&account, None, &[promise(t0 + days(13), t0 + days(20))]).await.unwrap();
    for day in [15, 18] {
        clock.set(t0 + days(day));
        assert_eq!(notifier.sweep().await.unwrap(), 0, "day {day}: paused while the promise holds");
    }
    clock.set(t0 + days(21));
    assert_eq!(notifier.sweep().await.unwrap(), 1, "broken: the ladder speaks again");
    let mut got = subjects(2).await;
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("Payment reminder") && got[1].contains("suspended"), "no warning was sent: {got:?}");
}
