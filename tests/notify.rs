//! Stage notices by signed webhook: several notifier instances on one real
//! Redis, a real HTTP receiver on loopback, a ladder in seconds.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use pastdue::config::Config;
use pastdue::clock::Clock;
use pastdue::notify::Notifier;
use pastdue::store::Store;
use pastdue::AccountId;
use serde_json::Value;

const SECRET: &str = "whsec_notices";

/// What the receiver saw: accepted notices, and how many it refused.
#[derive(Default)]
struct Received {
    accepted: Vec<Value>,
    refused: usize,
    fail_first: usize,
}

async fn receive(State(seen): State<Arc<Mutex<Received>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("pastdue-signature").and_then(|v| v.to_str().ok());
    pastdue::signature::verify(sig, &body, &[SECRET.into()], Duration::from_secs(300), Utc::now())
        .expect("every notice is signed with notify.webhook_secret");
    let mut seen = seen.lock().unwrap();
    if seen.refused < seen.fail_first {
        seen.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    seen.accepted.push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received { fail_first, ..Received::default() }));
    let app = Router::new().route("/hook", post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// notice at 0, warning at 2 s, suspended at 4 s; a fast sweep, short lease.
/// A notifier with everything `c` configures: channels, ladder, page names
/// and pay links.
fn notifier(c: &Config, store: Arc<dyn Store>) -> Notifier {
    Notifier::new(&c.notify, c.ladder().unwrap(), store)
        .unwrap()
        .expect("a channel is configured")
        .with_page(&c.page)
        .with_pay_links(&c.links, &c.stripe)
        .unwrap()
}

fn config(url: &str) -> Config {
    let mut c = seconds_ladder(2, 4);
    c.notify.poll_interval = Duration::from_millis(200);
    c.notify.lease = Duration::from_secs(2);
    c.notify.max_attempts = 4;
    c.notify.webhook_url = url.into();
    c.notify.webhook_secret = SECRET.into();
    c
}

/// Three instances, each with its own connection to one Redis.
async fn instances(server: &RedisServer, url: &str, n: usize) -> (Arc<dyn Store>, Vec<tokio::task::JoinHandle<()>>) {
    let writer = store_with(&server.url(), relaxed()).await;
    let mut handles = Vec::new();
    for _ in 0..n {
        let store = store_with(&server.url(), relaxed()).await;
        handles.push(notifier(&config(url), store).spawn());
    }
    (writer, handles)
}

fn stages(seen: &Arc<Mutex<Received>>, account: &str) -> Vec<String> {
    seen.lock().unwrap().accepted.iter().filter(|n| n["account"] == account).map(|n| n["stage"].as_str().unwrap().to_owned()).collect()
}

async fn wait_for(seen: &Arc<Mutex<Received>>, account: &str, count: usize, limit: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = stages(seen, account);
        if got.len() >= count || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_is_notified_once_in_order_across_three_instances() {
    // The standard ladder (warning at 14 days, suspended at 17), on a clock
    // the test moves: no waiting for days, or for seconds.
    let server = RedisServer::start();
    let (url, seen) = receiver(0).await;
    let clock = pastdue::clock::ManualClock::starting_at(Utc::now());
    let mut c = config(&url);
    c.ladder = Config::default().ladder;
    let store = store_with(&server.url(), relaxed()).await;
    let mut _instances = Vec::new();
    let mut notifiers = Vec::new();
    for _ in 0..3 {
        let own = store_with(&server.url(), relaxed()).await;
        let n = notifier(&c, own).with_clock(clock.shared());
        notifiers.push(n.clone());
        _instances.push(n.spawn());
    }
    let started = std::time::Instant::now();
    store.apply(&AccountId::new("acme").unwrap(), None, &[unpaid("in_1", 4_900, clock.now())]).await.unwrap();
    // The webhook-caused entry is notified at once, not at the next sweep.
    let first = wait_for(&seen, "acme", 1, Duration::from_secs(2)).await;
    assert_eq!(first, ["notice"], "immediate notice (after {:?})", started.elapsed());
    // Two weeks pass: the next sweep finds the warning; three more days, suspension.
    clock.advance(TimeDelta::days(14));
    assert_eq!(wait_for(&seen, "acme", 2, Duration::from_secs(5)).await, ["notice", "warning"]);
    clock.advance(TimeDelta::days(3));
    let all = wait_for(&seen, "acme", 3, Duration::from_secs(5)).await;
    assert_eq!(all, ["notice", "warning", "suspended"]);
    // Nothing more after the last stage, and nothing twice: a sweep on each
    // instance a month later finds nothing to send.
    clock.advance(TimeDelta::days(30));
    for n in &notifiers {
        assert_eq!(n.sweep().await.unwrap(), 0, "nothing after the last stage");
    }
    // Those sweeps read every account in debt (a month passed since the
    // last full one): they counted the accounts at risk for the recovery report.
    let at_risk = store.at_risk().await.unwrap().expect("a full sweep stores the count");
    assert_eq!(at_risk.as_of, Some(clock.now()));
    let suspended = &at_risk.by_stage(None)["suspended"];
    assert_eq!((suspended.accounts, suspended.amount.values().sum::<i64>()), (1, 4_900), "{at_risk:?}");
    assert_eq!(stages(&seen, "acme"), ["notice", "warning", "suspended"]);
    let n = seen.lock().unwrap().accepted[2].clone();
    assert_eq!((n["type"].as_str(), n["action"].as_str(), n["amount_due"].as_i64(), n["currency"].as_str()), (Some("pastdue.stage_entered"), Some("block"), Some(4_900), Some("eur")));
    assert!(n["next_payment_attempt"].is_null(), "no retry known: {n}");
    assert!(n["id"].as_str().unwrap().starts_with("ntc_acme_"));
    // The admin view and the page can say when we wrote: on the moved clock.
    let state = store.load(&AccountId::new("acme").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.notices().iter().map(|n| n.stage.as_str()).collect::<Vec<_>>(), ["notice", "suspended", "warning"]);
    let warned = state.notices().iter().find(|n| n.stage == "warning").unwrap().at;
    assert!(warned - state.past_due_since().unwrap() >= TimeDelta::days(14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entering_late_sends_only_the_current_stage_and_payment_stops_the_rest() {
    let server = RedisServer::start();
    let (url, seen) = receiver(0).await;
    let (store, _instances) = instances(&server, &url, 2).await;
    // First heard of 2.5 s after the failure: already in "warning".
    store.apply(&AccountId::new("late").unwrap(), None, &[unpaid("in_1", 100, Utc::now() - TimeDelta::milliseconds(2500))]).await.unwrap();
    assert_eq!(wait_for(&seen, "late", 1, Duration::from_secs(2)).await, ["warning"]);
    // Pays before suspension: no further notice.
    store.apply(&AccountId::new("late").unwrap(), None, &[settled("in_1", Utc::now())]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stages(&seen, "late"), ["warning"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_exactly_one_accepted_delivery() {
    let server = RedisServer::start();
    let (url, seen) = receiver(2).await;
    let (store, _instances) = instances(&server, &url, 2).await;
    store.apply(&AccountId::new("flaky").unwrap(), None, &[unpaid("in_1", 100, Utc::now())]).await.unwrap();
    assert_eq!(wait_for(&seen, "flaky", 1, Duration::from_secs(5)).await, ["notice"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = seen.lock().unwrap();
    assert_eq!((seen.refused, seen.accepted.len()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_holder_died_is_taken_over_after_the_lease() {
    let server = RedisServer::start();
    let (url, seen) = receiver(0).await;
    let store = store_with(&server.url(), relaxed()).await;
    let account = AccountId::new("orphan").unwrap();
    let since = Utc::now();
    store.apply(&account, None, &[unpaid("in_1", 100, since)]).await.unwrap();
    // An instance claims the notice and dies before sending it.
    assert!(store.claim(&account, &format!("{}:notice:webhook", since.timestamp()), "dead-holder", Duration::from_millis(800)).await.unwrap());
    let (_, _instances) = instances(&server, &url, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(stages(&seen, "orphan").is_empty(), "the claim is respected while it lasts");
    assert_eq!(wait_for(&seen, "orphan", 1, Duration::from_secs(5)).await, ["notice"], "then someone sends it");
}

/// E-mail: one per stage, to the billing contact, in the account's language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mails_go_to_the_billing_contact_once_per_stage_in_their_language() {
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let mut c = config("");
    c.notify.webhook_url = String::new();
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    let writer = store_with(&server.url(), relaxed()).await;
    let mut handles = Vec::new();
    for _ in 0..2 {
        let store = store_with(&server.url(), relaxed()).await;
        handles.push(notifier(&c, store).spawn());
    }
    let account = AccountId::new("mailed").unwrap();
    // Stripe will try the card again in three days: every e-mail says so.
    let retry_at = Utc::now() + chrono::TimeDelta::days(3);
    let mut retrying = unpaid("in_1", 4_900, Utc::now());
    if let pastdue::Change::InvoiceUnpaid { invoice, .. } = &mut retrying {
        invoice.next_attempt = Some(retry_at);
    }
    writer
        .apply(&account, None, &[pastdue::Change::ContactEmail("kasse@kunde.test".into()), pastdue::Change::Language("de".into()), retrying])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while smtp.messages().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 3, "one e-mail per stage");
    assert!(mails.iter().all(|m| m.contains("To: kasse@kunde.test") && m.contains("billing@acme.test")));
    let all = mails.join("\n");
    assert!(all.contains("Zahlungserinnerung") && all.contains("Zweite Erinnerung") && all.contains("gesperrt"), "German subjects");
    let retry = format!("Wir versuchen am {}. ", retry_at.format("%-d"));
    for raw in &mails {
        let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
        let body = mail.body_text(0).expect("a text body");
        assert!(body.contains(&retry) && body.contains("erneut, Ihre Karte zu belasten"), "the retry date: {body}");
    }
    let state = writer.load(&account).await.unwrap().unwrap();
    assert!(state.notices().iter().all(|n| n.channel == "email" && n.to.as_deref() == Some("kasse@kunde.test")));
    // A stable Message-ID derived from the notice id: a mail system drops a repeat.
    let episode = state.notices()[0].episode.timestamp();
    for stage in ["notice", "warning", "suspended"] {
        let id = format!("Message-ID: <ntc_mailed_{episode}_{stage}.email@acme.test>");
        assert_eq!(mails.iter().filter(|m| m.lines().any(|l| l.eq_ignore_ascii_case(&id))).count(), 1, "{id} in {all}");
    }
}

/// A receiver slower than the lease: the sending instance keeps renewing
/// its claim, so no other instance sends the same notice meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_each_notice_once() {
    let server = RedisServer::start();
    let arrivals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = arrivals.clone();
    let slow = Router::new().route(
        "/hook",
        post(move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(12)).await;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, slow).await.unwrap() });
    // Only the first stage within the test's time; a 2 s lease, a 20 s timeout.
    let mut c = config(&url);
    c.ladder.stages[1].after = Duration::from_secs(3_600);
    c.ladder.stages[2].after = Duration::from_secs(7_200);
    c.notify.timeout = Duration::from_secs(20);
    let writer = store_with(&server.url(), relaxed()).await;
    let mut handles = Vec::new();
    let mut notifiers = Vec::new();
    for _ in 0..3 {
        let store = store_with(&server.url(), relaxed()).await;
        let notifier = notifier(&c, store);
        notifiers.push(notifier.clone());
        handles.push(notifier.spawn());
    }
    let account = AccountId::new("slowpoke").unwrap();
    writer.apply(&account, None, &[unpaid("in_1", 4_900, Utc::now())]).await.unwrap();
    // Until the one delivery is recorded (12 s), sweeps run every 200 ms on
    // three instances, well past the 2 s lease.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = writer.load(&account).await.unwrap().unwrap();
        if !state.notices().is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once it is recorded, no instance sends it again: a sweep on each
    // finds nothing to send (instead of waiting and hoping to see one).
    for notifier in &notifiers {
        assert_eq!(notifier.sweep().await.unwrap(), 0, "the recorded notice is not sent again");
    }
    assert_eq!(arrivals.load(std::sync::atomic::Ordering::SeqCst), 1, "one delivery, however slow the receiver");
    assert_eq!(writer.load(&account).await.unwrap().unwrap().notices().len(), 1);
}

/// SMTP down: retried, not lost, not duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_is_retried_not_lost_not_duplicated() {
    let server = RedisServer::start();
    let mut smtp = SmtpServer::reserved();
    let mut c = config("");
    c.notify.webhook_url = String::new();
    c.notify.smtp_url = smtp.url().into();
    c.notify.lease = Duration::from_millis(700);
    c.notify.max_attempts = 2;
    let store = store_with(&server.url(), relaxed()).await;
    let _h = notifier(&c, store.clone()).spawn();
    let account = AccountId::new("patient").unwrap();
    store.apply(&account, None, &[pastdue::Change::ContactEmail("ap@client.test".into()), unpaid("in_1", 100, Utc::now())]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.load(&account).await.unwrap().unwrap().notices().is_empty(), "nothing recorded while SMTP is down");
    let smtp = tokio::task::spawn_blocking(move || {
        smtp.restart();
        smtp
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while smtp.messages().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let notices: Vec<_> = smtp.messages().iter().filter(|m| m.contains("Payment reminder")).cloned().collect();
    assert_eq!(notices.len(), 1, "the notice e-mail arrived once");
}

/// E-mails go to the roles each stage is routed to (the defaults: billing
/// always, the account manager from the warn stage, the accountant on
/// suspension); the account manager gets an internal summary that names
/// the account, how late, the invoice and the reminders sent, and that the
/// customer's page never lists. The clock is moved, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_reach_the_roles_they_are_routed_to() {
    use pastdue::state::{ContactRole, ContactSource};
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let mut c = config("");
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    let store = store_with(&server.url(), relaxed()).await;
    // Whole seconds: the manual clock keeps microseconds.
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0);
    let notifier = notifier(&c, store.clone()).with_clock(clock.shared());
    let account = AccountId::new("routed").unwrap();
    let contact = |role, email: &str| pastdue::Change::Contact { role, email: Some(email.into()), source: ContactSource::Admin };
    store
        .apply(&account, None, &[
            pastdue::Change::ContactEmail("ap@client.test".into()),
            contact(ContactRole::Accountant, "tax@accountants.test"),
            contact(ContactRole::AccountManager, "sam@acme.test"),
            unpaid("in_1", 4_900, t0),
        ])
        .await
        .unwrap();
    let mails = || {
        let mut m: Vec<(String, String, String)> = smtp
            .messages()
            .iter()
            .map(|raw| {
                let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
                let to = mail.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_owned();
                (to, mail.subject().unwrap_or_default().to_owned(), mail.body_text(0).unwrap_or_default().into_owned())
            })
            .collect();
        m.sort();
        m
    };
    let to_whom = |m: &[(String, String, String)]| m.iter().map(|(to, ..)| to.clone()).collect::<Vec<_>>();

    // notice: the billing contact only.
    assert_eq!(notifier.check(&account).await.unwrap(), 1);
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 1).await);
    assert_eq!(to_whom(&mails()), ["ap@client.test"]);
    // warning: billing and the account manager.
    clock.advance(TimeDelta::seconds(2));
    assert_eq!(notifier.check(&account).await.unwrap(), 2);
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 3).await);
    // suspended: billing, the accountant and the account manager.
    clock.advance(TimeDelta::seconds(2));
    assert_eq!(notifier.check(&account).await.unwrap(), 3);
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 6).await);
    assert_eq!(notifier.check(&account).await.unwrap(), 0, "each once");
    let all = mails();
    let count = |who: &str| all.iter().filter(|(to, ..)| to == who).count();
    assert_eq!((count("ap@client.test"), count("tax@accountants.test"), count("sam@acme.test")), (3, 1, 2));

    // The accountant gets the customer's message; the account manager an
    // internal summary naming the account, the invoice and the reminders.
    let accountant = all.iter().find(|(to, ..)| to == "tax@accountants.test").unwrap();
    assert!(accountant.1.contains("suspended"), "{accountant:?}");
    let internal: Vec<_> = all.iter().filter(|(to, ..)| to == "sam@acme.test").collect();
    assert!(internal.iter().all(|(_, subject, _)| subject.starts_with("routed is 0 days late on €49.00")), "{internal:?}");
    let last = internal.iter().find(|(_, _, body)| body.contains("stage suspended")).expect("the suspension summary");
    assert!(last.2.contains("invoice N-in_1") && last.2.contains("(warning, ap@client.test)"), "the reminders already sent: {}", last.2);

    // Recorded per role; the customer's page lists what the customer's
    // side got, never the internal summaries.
    let state = store.load(&account).await.unwrap().unwrap();
    let channels: std::collections::BTreeSet<&str> = state.notices().iter().map(|n| n.channel.as_str()).collect();
    assert_eq!(channels.into_iter().collect::<Vec<_>>(), ["email", "email:account_manager", "email:accountant"]);
    let gate = pastdue::gate::GateLayer::new(store.clone()).with_ladder(c.ladder().unwrap()).with_clock(clock.shared());
    let app = axum::Router::new().route("/x", axum::routing::get(|| async { "ok" })).layer(gate);
    let req = http::Request::get("/x").header("x-account-id", "routed").header("accept", "text/html").body(axum::body::Body::empty()).unwrap();
    let res = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let page = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(page.contains("tax@accountants.test") && !page.contains("sam@acme.test"), "internal notices stay internal");
    // Each reminder is named by what it was, so the customer recognises it.
    for kind in ["payment notice, to ap@client.test", "second warning, to ap@client.test", "suspension notice, to tax@accountants.test"] {
        assert!(page.contains(kind), "{kind:?} on the page: {page}");
    }
}

/// `[[notify.routes]]` replaces the defaults (a stage not listed reaches
/// billing only) and is checked against the ladder in use.
#[tokio::test]
async fn routes_are_validated_against_the_ladder() {
    let store: Arc<dyn pastdue::Store> = Arc::new(pastdue::MemoryStore::new());
    let with_routes = |toml: &str| {
        let mut c = pastdue::Config::from_toml(&format!("[notify]\nwebhook_url = \"http://127.0.0.1:9/\"\nwebhook_secret = \"s\"\n{toml}")).unwrap();
        c.notify.poll_interval = Duration::from_secs(1);
        pastdue::notify::Notifier::new(&c.notify, c.ladder().unwrap(), store.clone()).map(|_| ())
    };
    assert!(with_routes("[[notify.routes]]\nstage = \"warning\"\nroles = [\"billing\", \"account_manager\"]").is_ok());
    let err = with_routes("[[notify.routes]]\nstage = \"warnign\"\nroles = [\"billing\"]").unwrap_err().to_string();
    assert!(err.contains("notify.routes[0].stage") && err.contains("warnign"), "{err}");
    let err = with_routes("[[notify.routes]]\nstage = \"warning\"\nroles = [\"boss\"]").unwrap_err().to_string();
    assert!(err.contains("notify.routes[0].roles") && err.contains("boss"), "{err}");
}

/// Every customer e-mail, in every built-in language: multipart (plain text
/// and HTML with one pay button, no remote images), `Auto-Submitted`, the
/// amount, product, invoice number and due date, the pay link, the support
/// address, "if you have already paid, please ignore this", and on
/// suspension the earlier reminders — and no English left in a translation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_e_mail_says_everything_in_every_language() {
    let smtp = SmtpServer::start();
    let mut c = config("");
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    c.page.product_name = "Acme Cloud".into();
    c.page.support_email = "help@acme.test".into();
    let store: Arc<dyn pastdue::Store> = Arc::new(pastdue::MemoryStore::new());
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0 + TimeDelta::seconds(5));
    let notifier = notifier(&c, store.clone()).with_clock(clock.shared());
    let languages = ["en", "de", "fr", "es", "it", "ro", "el", "lv"];
    for lang in languages {
        let account = AccountId::new(&format!("lang-{lang}")).unwrap();
        let earlier = |stage: &str, at| pastdue::Change::NoticeSent(pastdue::state::NoticeSent { episode: t0, stage: stage.into(), channel: "email".into(), at, to: Some(format!("{lang}@client.test")), refused: None });
        store
            .apply(&account, None, &[
                pastdue::Change::ContactEmail(format!("{lang}@client.test")),
                pastdue::Change::Language(lang.into()),
                unpaid("in_1", 4_900, t0),
                earlier("notice", t0),
                earlier("warning", t0 + TimeDelta::seconds(2)),
            ])
            .await
            .unwrap();
        assert_eq!(notifier.check(&account).await.unwrap(), 1, "{lang}: the suspension");
    }
    assert!(eventually(Duration::from_secs(15), || smtp.messages().len() == languages.len()).await);
    let english = ["If you have already paid", "Invoice N-in_1", "Our earlier reminders", "Hello,"];
    for raw in smtp.messages() {
        let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
        let to = mail.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_owned();
        let lang = to.split('@').next().unwrap();
        let text = mail.body_text(0).expect("a plain-text part").into_owned();
        let html = mail.body_html(0).expect("an HTML part").replace("&#x2f;", "/");
        assert!(raw.lines().any(|l| l.eq_ignore_ascii_case("Auto-Submitted: auto-generated")), "{lang}: Auto-Submitted");
        assert!(mail.message_id().is_some_and(|id| id.starts_with("ntc_lang-")), "{lang}: a stable Message-ID");
        for must in ["49", "Acme Cloud", "N-in_1", "https://invoice.stripe.com/i/in_1", "help@acme.test", "2026"] {
            assert!(text.contains(must), "{lang}: {must:?} in {text}");
        }
        assert!(html.contains("href=\"https://invoice.stripe.com/i/in_1\"") && !html.contains("<img"), "{lang}: one pay button, no images: {html}");
        // The earlier reminders are listed with their dates.
        assert!(text.contains("(notice)") && text.contains("(warning)"), "{lang}: earlier reminders in {text}");
        if lang != "en" {
            for phrase in english {
                assert!(!text.contains(phrase), "{lang}: untranslated {phrase:?} in {text}");
            }
        } else {
            assert!(text.contains("If you have already paid, please ignore this message."), "{text}");
        }
    }
}

/// A payment coming due gets one reminder before its due date (the
/// default entry: 3 days), by e-mail and by webhook (`pastdue.reminder`),
/// found by the sweep through the due-date index on real Redis; then the
/// ladder's notices take over once it is owed. The clock is moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_come_once_before_the_due_date() {
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let (url, seen) = receiver(0).await;
    let mut c = config(&url);
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    assert_eq!(c.reminders.before_due.len(), 1, "one default entry");
    let store = store_with(&server.url(), relaxed()).await;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0);
    let notifier = notifier(&c, store.clone()).with_reminders(&c.reminders).unwrap().with_clock(clock.shared());
    let account = AccountId::new("due-soon").unwrap();
    let due = t0 + TimeDelta::days(4);
    store
        .apply(&account, None, &[pastdue::Change::ContactEmail("ap@client.test".into()), pastdue::Change::Language("fr".into()), upcoming("in_due", 4_900, due, t0)])
        .await
        .unwrap();

    // Four days out: too early.
    assert_eq!(notifier.sweep().await.unwrap(), 0);
    // Three days out: one e-mail and one webhook, once.
    clock.advance(TimeDelta::days(1) + TimeDelta::seconds(1));
    assert_eq!(notifier.sweep().await.unwrap(), 2);
    assert_eq!(notifier.sweep().await.unwrap(), 0);
    assert_eq!(notifier.check(&account).await.unwrap(), 0, "recorded: never twice");
    let hook = seen.lock().unwrap().accepted.iter().find(|n| n["type"] == "pastdue.reminder").cloned().expect("a reminder webhook");
    assert_eq!((hook["account"].as_str(), hook["amount_due"].as_i64(), hook["due_at"].as_str().map(|d| d.starts_with(&due.format("%Y-%m-%d").to_string()))), (Some("due-soon"), Some(4900), Some(true)));
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 1).await);
    let raw = smtp.messages().remove(0);
    let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let text = mail.body_text(0).unwrap().into_owned();
    assert!(mail.subject().unwrap().contains("arrive à échéance") && text.contains("49,00") && text.contains("in_due"), "in French: {text}");
    // Recorded under the due date, so the page can list it with the debt.
    let state = store.load(&account).await.unwrap().unwrap();
    assert!(state.notices().iter().any(|n| n.stage == "before_due_3d" && n.episode == due && n.channel == "email"));

    // Unpaid at the due date: the ladder's notice follows, the reminder is not repeated.
    clock.set(due + TimeDelta::seconds(1));
    store.apply(&account, None, &[unpaid("in_due", 4_900, due)]).await.unwrap();
    assert_eq!(notifier.check(&account).await.unwrap(), 2, "the notice stage, e-mail and webhook");
    let types: Vec<String> = seen.lock().unwrap().accepted.iter().map(|n| n["type"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(types, ["pastdue.reminder", "pastdue.stage_entered"]);
}

/// Between full sweeps, a sweep reads only the accounts whose next stage
/// fell due since the previous one: with 200 debtors and nothing due, it
/// costs Redis a handful of commands, not one read per debtor; a debtor
/// whose stage comes due is still found. Real Redis, moved clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sweeps_read_only_what_is_due() {
    let server = RedisServer::start();
    let (url, seen) = receiver(0).await;
    let mut c = config(&url);
    c.notify.poll_interval = Duration::from_secs(3600); // full sweeps 60 h apart
    let store = store_with(&server.url(), relaxed()).await;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0);
    let notifier = notifier(&c, store.clone()).with_clock(clock.shared());
    for i in 0..200 {
        store.apply(&AccountId::new(&format!("old-{i:03}")).unwrap(), None, &[unpaid("in_1", 100, t0 - TimeDelta::hours(1))]).await.unwrap();
    }
    // The first sweep reads everyone (each gets its suspension notice).
    assert_eq!(notifier.sweep().await.unwrap(), 200);
    let commands = || -> u64 {
        server.cmd("INFO stats").lines().find_map(|l| l.strip_prefix("total_commands_processed:")).and_then(|n| n.trim().parse().ok()).unwrap()
    };
    // Idle: nothing comes due.
    clock.advance(TimeDelta::seconds(1));
    let before = commands();
    assert_eq!(notifier.sweep().await.unwrap(), 0);
    let idle = commands() - before - 1; // minus the INFO itself
    println!("an idle sweep over 200 debtors: {idle} Redis commands");
    assert!(idle <= 10, "an idle sweep over 200 debtors sent Redis {idle} commands");
    // A new debtor (its notice sent at once, as the webhook would trigger)
    // reaches warning at 2 s: the next sweep after that finds it.
    let fresh = AccountId::new("fresh").unwrap();
    store.apply(&fresh, None, &[unpaid("in_1", 100, clock.now())]).await.unwrap();
    assert_eq!(notifier.check(&fresh).await.unwrap(), 1);
    clock.advance(TimeDelta::seconds(2));
    assert_eq!(notifier.sweep().await.unwrap(), 1, "the warning, found through the index window");
    assert_eq!(stages(&seen, "fresh"), ["notice", "warning"]);
}

/// Not a test: Redis commands an idle notifier sends, with N debtors
/// (`DEBTORS`, default 20,000) whose notices are all sent, over 10 polls,
/// before (a full sweep every poll, what every sweep did until now) and
/// after (windowed sweeps). Run with
/// `cargo test --release --all-features --test notify -- --ignored --nocapture idle_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn idle_cost() {
    let n: usize = std::env::var("DEBTORS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let server = RedisServer::start();
    let (url, _seen) = receiver(0).await;
    let store = store_with(&server.url(), relaxed()).await;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let since = t0 - TimeDelta::hours(1);
    let sent = |stage: &str, channel: &str| pastdue::Change::NoticeSent(pastdue::state::NoticeSent { episode: since, stage: stage.into(), channel: channel.into(), at: since, to: None, refused: None });
    futures_util::future::join_all((0..n).map(|i| {
        let store = store.clone();
        let changes = [unpaid("in_1", 100, since), sent("suspended", "webhook")];
        async move { store.apply(&AccountId::new(&format!("debtor-{i:06}")).unwrap(), None, &changes).await.unwrap() }
    }))
    .await;
    let commands = || -> u64 {
        server.cmd("INFO stats").lines().find_map(|l| l.strip_prefix("total_commands_processed:")).and_then(|n| n.trim().parse().ok()).unwrap()
    };
    for (name, poll) in [("before: a full sweep every poll", Duration::ZERO), ("after: windowed sweeps", Duration::from_secs(2))] {
        let mut c = config(&url);
        // poll_interval 0 makes every sweep a full one, as before.
        c.notify.poll_interval = poll;
        let clock = pastdue::clock::ManualClock::starting_at(t0);
        let notifier = notifier(&c, store.clone()).with_clock(clock.shared());
        notifier.sweep().await.unwrap(); // the first sweep reads everyone either way
        let start = commands();
        let began = std::time::Instant::now();
        for _ in 0..10 {
            clock.advance(TimeDelta::seconds(2));
            notifier.sweep().await.unwrap();
        }
        let spent = began.elapsed();
        println!("{name}: {n} debtors, 10 idle polls: {} Redis commands ({:.0} per poll), {spent:?} of sweeping", commands() - start - 1, (commands() - start - 1) as f64 / 10.0);
    }
}

/// The whole collection sequence on real Redis with two notifier
/// instances, real SMTP and signed Stripe webhooks, the clock moved rather
/// than waited for. Two customers get send-invoice invoices finalized with
/// a due date four days out: each gets exactly one reminder three days
/// before; once overdue, the payment notice; at the warning, billing and
/// the account manager. One then pays, and hears nothing more; the other
/// is suspended, which reaches billing, the accountant and the account
/// manager. Each message once, in the account's language (the account
/// manager's internal summary in the operator's); the agenda lists what
/// comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_sequence_end_to_end_on_two_instances() {
    use pastdue::state::{ContactRole, ContactSource};
    use tower::ServiceExt;
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let (url, seen) = receiver(0).await;
    let mut c = Config::default();
    c.notify.webhook_url = url.clone();
    c.notify.webhook_secret = SECRET.into();
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    c.stripe.webhook_secret = "whsec_e2e".into();
    c.admin.token = "e2e-admin-token-0123456789".into();
    let store = store_with(&server.url(), relaxed()).await;
    let routes = pastdue::Pastdue::new(&c, store.clone()).build().unwrap().routes;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0);
    let instances: Vec<Notifier> = futures_util::future::join_all((0..2).map(|_| async {
        let own = store_with(&server.url(), relaxed()).await;
        notifier(&c, own).with_reminders(&c.reminders).unwrap().with_clock(clock.shared())
    }))
    .await;
    let sweep_both = || sweep_all(&instances);
    let due = t0 + TimeDelta::days(4);
    // `payer` pays after the warning; `late` never does.
    const ACCOUNTS: [&str; 2] = ["payer", "late"];
    let deliver = |account: &'static str, kind: &'static str, extra: Value| {
        let routes = routes.clone();
        async move {
            let mut invoice = serde_json::json!({
                "id": format!("in_{account}"), "object": "invoice", "customer": format!("cus_{account}"),
                "collection_method": "send_invoice", "due_date": due.timestamp(), "amount_due": 4_900, "currency": "eur",
                "number": "INV-0042", "hosted_invoice_url": format!("https://invoice.stripe.com/i/in_{account}"),
                "metadata": { "account_id": account },
            });
            invoice.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            post_event(routes, "whsec_e2e", &format!("evt_{}_{account}", kind.replace('.', "_")), kind, invoice).await;
        }
    };
    let contact = |role, email: String| pastdue::Change::Contact { role, email: Some(email), source: ContactSource::Admin };
    for account in ACCOUNTS {
        deliver(account, "invoice.finalized", serde_json::json!({ "status": "open" })).await;
        store
            .apply(&AccountId::new(account).unwrap(), None, &[
                pastdue::Change::ContactEmail(format!("ap@{account}.test")),
                pastdue::Change::Language("de".into()),
                contact(ContactRole::AccountManager, format!("manager-of-{account}@acme.test")),
                contact(ContactRole::Accountant, format!("steuer@{account}.test")),
            ])
            .await
            .unwrap();
    }
    // What each account got: webhooks by type and stage, e-mails by
    // recipient and subject.
    let hooks = |account: &str| {
        seen.lock().unwrap().accepted.iter()
            .filter(|n| n["account"] == account)
            .map(|n| format!("{}:{}", n["type"].as_str().unwrap(), n["stage"].as_str().unwrap_or("")))
            .collect::<Vec<_>>()
    };
    let mails = |account: &str| {
        let mut m: Vec<(String, String)> = smtp
            .messages()
            .iter()
            .map(|raw| {
                let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
                (mail.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_owned(), mail.subject().unwrap().to_owned())
            })
            .filter(|(to, _)| to.contains(account))
            .collect();
        m.sort();
        m
    };
    let agenda = |routes: axum::Router, now: chrono::DateTime<Utc>, account: &'static str| async move {
        let req = http::Request::get(format!("/admin/agenda?from={}&to={}", urlencode(now), urlencode(now + TimeDelta::days(30))))
            .header("authorization", "Bearer e2e-admin-token-0123456789")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = routes.oneshot(req).await.unwrap();
        let v: Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
        v["items"].as_array().unwrap().iter()
            .filter(|i| i["account"] == account)
            .map(|i| format!("{}:{}", i["event"].as_str().unwrap(), i["stage"].as_str().unwrap_or("")))
            .collect::<Vec<_>>()
    };

    // Four days out: nothing. Three days out: one reminder each, once across both instances.
    assert_eq!(sweep_both().await, 0);
    clock.advance(TimeDelta::days(1) + TimeDelta::minutes(1));
    assert_eq!(sweep_both().await, 4, "an e-mail and a webhook each");
    assert_eq!(sweep_both().await, 0);
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 2).await);
    for account in ACCOUNTS {
        let m = mails(account);
        assert!(m.len() == 1 && m[0].0 == format!("ap@{account}.test") && m[0].1.contains("fällig"), "the reminder, in German: {m:?}");
        // The agenda, before the due date: the due; the stage entries come with the debt.
        assert_eq!(agenda(routes.clone(), clock_now(&clock), account).await, ["due:"]);
    }

    // Overdue: the payment notice to billing (and the webhook).
    clock.set(due + TimeDelta::minutes(1));
    for account in ACCOUNTS {
        deliver(account, "invoice.overdue", serde_json::json!({ "status": "open" })).await;
    }
    assert_eq!(sweep_both().await, 4);
    assert_eq!(agenda(routes.clone(), clock_now(&clock), "late").await, ["stage:warning", "stage:suspended"], "what comes next");
    // Warning: billing, the account manager (internal), the webhook.
    clock.set(due + TimeDelta::days(14) + TimeDelta::minutes(1));
    assert_eq!(sweep_both().await, 6);
    assert_eq!(sweep_both().await, 0, "each once");
    // One pays before the suspension and hears nothing more; the other is
    // suspended: billing, the accountant, the account manager, the webhook.
    deliver("payer", "invoice.paid", serde_json::json!({ "status": "paid" })).await;
    clock.set(due + TimeDelta::days(17) + TimeDelta::minutes(1));
    assert_eq!(sweep_both().await, 4);
    assert_eq!(sweep_both().await, 0, "each once");
    assert_eq!(hooks("payer"), ["pastdue.reminder:", "pastdue.stage_entered:notice", "pastdue.stage_entered:warning"]);
    assert_eq!(hooks("late"), ["pastdue.reminder:", "pastdue.stage_entered:notice", "pastdue.stage_entered:warning", "pastdue.stage_entered:suspended"]);
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 4 + 7).await, "{}", smtp.messages().len());
    let to = |m: &[(String, String)]| m.iter().map(|(to, _)| to.clone()).collect::<Vec<_>>();
    let paid = mails("payer");
    assert_eq!(to(&paid), ["ap@payer.test", "ap@payer.test", "ap@payer.test", "manager-of-payer@acme.test"], "{paid:?}");
    let late = mails("late");
    assert_eq!(
        to(&late),
        ["ap@late.test", "ap@late.test", "ap@late.test", "ap@late.test", "manager-of-late@acme.test", "manager-of-late@acme.test", "steuer@late.test"],
        "{late:?}"
    );
    // The customer's side (billing, the accountant) in German throughout;
    // the account manager's internal summary in the operator's language.
    let customer = |to: &str| !to.starts_with("manager-of-");
    for (to, subject) in paid.iter().chain(&late) {
        if customer(to) {
            assert!(!["Your", "reminder", "suspended", "late"].iter().any(|w| subject.contains(w)), "German: {to}: {subject}");
        } else {
            assert!(subject.contains("days late on €49.00"), "the internal summary: {to}: {subject}");
        }
    }
}

/// Posts a Stripe event (`kind`, about `object`) to `routes`' webhook,
/// signed with `secret` the way Stripe signs; it must be accepted.
async fn post_event(routes: axum::Router, secret: &str, id: &str, kind: &str, object: Value) {
    use tower::ServiceExt;
    let body = serde_json::to_vec(&serde_json::json!({ "id": id, "type": kind, "created": Utc::now().timestamp(), "data": { "object": object } })).unwrap();
    let sig = pastdue::signature::sign(secret, Utc::now().timestamp(), &body);
    let req = http::Request::post("/webhooks/stripe").header("stripe-signature", sig).body(axum::body::Body::from(body)).unwrap();
    assert_eq!(routes.oneshot(req).await.unwrap().status(), StatusCode::OK, "{kind}");
}

fn clock_now(clock: &pastdue::clock::ManualClock) -> chrono::DateTime<Utc> {
    use pastdue::clock::Clock;
    clock.now()
}

fn urlencode(t: chrono::DateTime<Utc>) -> String {
    form_urlencoded::byte_serialize(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_bytes()).collect()
}

/// An expiring card (`customer.source.expiring`, a signed Stripe webhook)
/// gets one "update your card before …" reminder, by e-mail in the
/// account's language and by webhook, with a signed link to the portal's
/// payment-method update; a card updated later clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_card_gets_one_reminder() {
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let (url, seen) = receiver(0).await;
    let mut c = config(&url);
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    c.stripe.webhook_secret = "whsec_card".into();
    c.stripe.api_key = "sk_test_unused".into();
    c.stripe.api_base = "http://127.0.0.1:9".into();
    c.stripe.portal_return_url = "https://app.example.test/billing".into();
    c.links.secret = "0123456789abcdef0123456789abcdef-links".into();
    let store = store_with(&server.url(), relaxed()).await;
    let routes = pastdue::Pastdue::new(&c, store.clone()).build().unwrap().routes;
    let deliver = |id: &'static str, kind: &'static str, object: Value| {
        let routes = routes.clone();
        async move { post_event(routes, "whsec_card", id, kind, object).await }
    };
    let account = AccountId::new("card-co").unwrap();
    store.apply(&account, None, &[pastdue::Change::ContactEmail("ap@client.test".into()), pastdue::Change::Language("it".into())]).await.unwrap();
    deliver("evt_exp", "customer.source.expiring", serde_json::json!({
        "id": "card_1", "object": "card", "customer": "cus_card", "exp_month": 12, "exp_year": 2026, "last4": "4242", "metadata": { "account_id": "card-co" }
    }))
    .await;
    let notifier = notifier(&c, store.clone()).with_pay_links(&c.links, &c.stripe).unwrap();
    assert_eq!(notifier.check(&account).await.unwrap(), 2, "an e-mail and a webhook");
    assert_eq!(notifier.check(&account).await.unwrap(), 0, "once");
    let hook = seen.lock().unwrap().accepted.iter().find(|n| n["type"] == "pastdue.card_expiring").cloned().expect("the webhook");
    assert_eq!((hook["exp_month"].as_i64(), hook["exp_year"].as_i64(), hook["last4"].as_str()), (Some(12), Some(2026), Some("4242")));
    assert!(hook["update_url"].as_str().is_some_and(|u| u.starts_with("https://app.example.test/billing/pay?t=") && u.ends_with("&flow=payment_method_update")), "{hook}");
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 1).await);
    let raw = smtp.messages().remove(0);
    let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let text = mail.body_text(0).unwrap().into_owned();
    assert!(mail.subject().unwrap().contains("scade il 31 dicembre 2026") && text.contains("flow=payment_method_update"), "in Italian: {text}");
    // Updated by the card network afterwards: the warning is gone.
    deliver("evt_upd", "payment_method.automatically_updated", serde_json::json!({ "id": "pm_1", "object": "payment_method", "customer": "cus_card" })).await;
    assert!(store.load(&account).await.unwrap().unwrap().card_expiring().is_none());
}

/// #25: a send-invoice customer whose first event is the invoice itself
/// (`invoice.finalized` with `customer_email`, no `customer.*` before) gets
/// the reminder before the due date at that address. An account whose
/// invoice names no address is not silent: the admin view lists the due
/// with `reminder_to: null`. A payload's e-mail or invoice number with a
/// terminal escape sequence is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_invoice_brings_the_billing_contact_for_its_reminder() {
    use tower::ServiceExt;
    let server = RedisServer::start();
    let smtp = SmtpServer::start();
    let mut c = Config::default();
    c.notify.smtp_url = smtp.url().into();
    c.notify.from = "Acme Billing <billing@acme.test>".into();
    c.stripe.webhook_secret = "whsec_first".into();
    c.admin.token = "first-admin-token-0123456789".into();
    let store = store_with(&server.url(), relaxed()).await;
    let routes = pastdue::Pastdue::new(&c, store.clone()).build().unwrap().routes;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = pastdue::clock::ManualClock::starting_at(t0);
    let notifier = notifier(&c, store.clone()).with_reminders(&c.reminders).unwrap().with_clock(clock.shared());
    let due = t0 + TimeDelta::days(4);
    let invoice = |account: &str, extra: Value| {
        let mut invoice = serde_json::json!({
            "id": format!("in_{account}"), "object": "invoice", "customer": format!("cus_{account}"), "status": "open",
            "collection_method": "send_invoice", "due_date": due.timestamp(), "amount_due": 4_900, "currency": "eur",
            "metadata": { "account_id": account },
        });
        invoice.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        invoice
    };
    post_event(routes.clone(), "whsec_first", "evt_fin_1", "invoice.finalized", invoice("first", serde_json::json!({ "customer_email": "ap@first.test", "number": "INV-7" }))).await;
    post_event(routes.clone(), "whsec_first", "evt_fin_2", "invoice.finalized", invoice("nobody", serde_json::json!({}))).await;
    post_event(routes.clone(), "whsec_first", "evt_fin_3", "invoice.finalized", invoice("escape", serde_json::json!({ "customer_email": "\"\u{1b}[2J\"@evil.test", "number": "\u{1b}]0;pwned\u{7}" }))).await;

    let view = |account: &'static str| {
        let routes = routes.clone();
        async move {
            let req = http::Request::get(format!("/admin/accounts/{account}")).header("authorization", "Bearer first-admin-token-0123456789").body(axum::body::Body::empty()).unwrap();
            let res = routes.oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let first = view("first").await;
    assert_eq!(first["contact_email"], "ap@first.test", "taken from the invoice: {first}");
    assert_eq!(first["upcoming_dues"][0]["reminder_to"], "ap@first.test");
    assert_eq!(first["upcoming_dues"][0]["number"], "INV-7");
    let nobody = view("nobody").await;
    assert_eq!(nobody["upcoming_dues"].as_array().map(Vec::len), Some(1), "{nobody}");
    assert!(nobody["upcoming_dues"][0]["reminder_to"].is_null(), "visible: nowhere to send it");
    let escape = view("escape").await;
    assert!(escape["contact_email"].is_null() && escape["upcoming_dues"][0]["number"].is_null(), "never stored raw: {escape}");

    // Three days out: the reminder reaches the invoice's address.
    clock.advance(TimeDelta::days(1) + TimeDelta::seconds(1));
    assert_eq!(notifier.sweep().await.unwrap(), 1, "one e-mail: `nobody` and `escape` have no address");
    assert!(eventually(Duration::from_secs(10), || smtp.messages().len() == 1).await);
    let raw = smtp.messages().remove(0);
    let mail = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let to = mail.to().and_then(|t| t.first()).and_then(|a| a.address()).map(str::to_owned);
    assert_eq!(to.as_deref(), Some("ap@first.test"));
}
