//! The team's chat: `[[notify.chat]]` posts a Slack-compatible message
//! (`text` and `blocks`) once per stage per debt, to a real HTTP receiver
//! on loopback, from two notifier instances sweeping one real Redis at
//! once on a moved clock; never shown to the customer.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use pastdue::clock::{Clock, ManualClock};
use pastdue::notify::ChatChannel;
use pastdue::{AccountId, Config};
use serde_json::Value;
use tower::ServiceExt;

async fn chat_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    json_receiver("/services/T000/B000/XXXX").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_team_hears_of_the_stages_it_listed_once_with_a_link_to_the_console() {
    let redis = RedisServer::start();
    let (url, seen) = chat_receiver().await;
    let clock = ManualClock::starting_at(Utc::now());
    let mut c = Config::default();
    c.notify.chat = vec![ChatChannel::new(url.as_str(), &["warning", "suspended"])];
    c.notify.poll_interval = std::time::Duration::from_secs(3600);
    c.admin.tokens = vec![pastdue::admin::NamedToken::new("alice", "chat-test-token-0123456789")];
    c.links.base_url = "https://app.example.com".into();
    // Two instances, each its own connection, the same clock.
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = store_with(&redis.url(), relaxed()).await;
        let parts = pastdue::Pastdue::new(&c, store.clone()).with_clock(clock.shared()).build().unwrap();
        instances.push((parts, store));
    }
    let store = instances[0].1.clone();
    let acme = AccountId::new("acme").unwrap();
    store.apply(&acme, None, &[unpaid("in_1", 4_900, clock.now()), pastdue::Change::ContactEmail("billing@acme.example".into())]).await.unwrap();
    let notifiers: Vec<pastdue::notify::Notifier> = instances
        .iter()
        .map(|(_, s)| {
            pastdue::notify::Notifier::new(&c.notify, c.ladder().unwrap(), s.clone())
                .unwrap()
                .unwrap()
                .with_clock(clock.shared())
                .with_console(&c.links.base_url, &c.admin.path)
        })
        .collect();
    let sweep_both = || sweep_all(&notifiers);
    assert_eq!(sweep_both().await, 0, "the notice stage is not listed");
    clock.advance(TimeDelta::days(14));
    assert_eq!(sweep_both().await, 1, "warning: one message from two instances");
    assert_eq!(sweep_both().await, 0);
    clock.advance(TimeDelta::days(3));
    assert_eq!(sweep_both().await, 1, "suspended");
    clock.advance(TimeDelta::days(30));
    assert_eq!(sweep_both().await, 0, "nothing twice");

    let messages = seen.lock().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let warning = &messages[0];
    let text = warning["text"].as_str().unwrap();
    assert!(text.contains("`acme` is 14 days late on *€49.00*") && text.contains("now *warning*") && text.contains("next: suspended on"), "{text}");
    assert!(text.contains("<https://app.example.com/admin/ui/accounts/acme|Open in the console>"), "{text}");
    let blocks = warning["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks.last().unwrap()["elements"][0]["url"], "https://app.example.com/admin/ui/accounts/acme");
    assert!(messages[1]["text"].as_str().unwrap().contains("now *suspended*"));

    // Recorded once, as chat; on the timeline; never on the customer's page.
    let state = store.load(&acme).await.unwrap().unwrap();
    let chats: Vec<&str> = state.notices().iter().filter(|n| n.channel == "chat").map(|n| n.stage.as_str()).collect();
    assert_eq!(chats.len(), 2, "{chats:?}");
    let app = Router::new().route("/app", get(|| async { "app" })).layer(instances[0].0.gate.clone());
    let req = axum::http::Request::get("/app").header("x-account-id", "acme").header("accept", "text/html").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    let page = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(!page.contains("Reminders we sent"), "the team's chat is not the customer's business");
}

/// What came from outside (an account id, an invoice number) cannot
/// mention the channel or slip a link into the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_text_cannot_mention_or_link() {
    let (url, seen) = chat_receiver().await;
    let clock = ManualClock::starting_at(Utc::now());
    let mut c = Config::default();
    c.notify.chat = vec![ChatChannel::new(url.as_str(), &[])];
    let store: Arc<dyn pastdue::Store> = Arc::new(pastdue::MemoryStore::new());
    let n = pastdue::notify::Notifier::new(&c.notify, c.ladder().unwrap(), store.clone()).unwrap().unwrap().with_clock(clock.shared());
    let mut owed = unpaid("in_1", 100, clock.now());
    if let pastdue::Change::InvoiceUnpaid { invoice, .. } = &mut owed {
        invoice.number = Some("<!channel> [pay](https://evil.example) `x`".into());
    }
    let who = AccountId::new("@here").unwrap();
    store.apply(&who, None, &[owed]).await.unwrap();
    assert_eq!(n.sweep().await.unwrap(), 1);
    let message = seen.lock().unwrap()[0].clone();
    let text = message["text"].as_str().unwrap();
    assert!(text.starts_with("`@here` is 0 days late"), "{text}");
    assert!(text.contains("(invoice `&lt;!channel&gt; [pay](https://evil.example) 'x'`)"), "{text}");
    assert_eq!(message["blocks"][0]["text"]["verbatim"], true);
}

#[test]
fn chat_settings_name_their_key() {
    let store: Arc<dyn pastdue::Store> = Arc::new(pastdue::MemoryStore::new());
    let policy = || Config::default().ladder().unwrap();
    for (chat, key) in [
        (ChatChannel::new("http://hooks.example.com/x", &[]), "notify.chat[0].url"),
        (ChatChannel::new("https://hooks.example.com/x", &["late"]), "notify.chat[0].stages"),
    ] {
        let mut c = Config::default();
        c.notify.chat = vec![chat];
        let err = pastdue::notify::Notifier::new(&c.notify, policy(), store.clone()).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
    // A bare URL where a table belongs: refused, and the secret URL is not repeated.
    let err = Config::from_toml("[notify]\nchat = [\"https://hooks.example.com/services/T/B/secret-part\"]\n").unwrap_err().to_string();
    assert!(err.contains("notify.chat") && !err.contains("secret-part"), "{err}");
}
