//! One suite, every backend: the memory store and a real `redis-server`.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pastdue::store::{Applied, Invalidation, RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::AccountId;
use tokio::sync::broadcast;

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

async fn next_account(rx: &mut broadcast::Receiver<Invalidation>) -> AccountId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Invalidation::Account(a))) => return a,
            Ok(Ok(_)) => continue,
            other => panic!("no invalidation arrived: {other:?}"),
        }
    }
}

backend_suite!(
    round_trip,
    unknown_account_is_none,
    concurrent_writers_lose_nothing,
    every_write_publishes_an_invalidation,
    an_event_id_applies_once,
    the_same_event_racing_on_two_tasks_applies_once,
    accounts_do_not_collide,
);

async fn round_trip(b: Backend) {
    let a = acct("acme");
    let applied = b.store.apply(&a, None, &[unpaid("in_1", 1200, t(0)), subscription("sub_1", pastdue::state::SubscriptionStatus::PastDue, t(5))]).await.unwrap();
    let Applied::Changed(written) = applied else { panic!("expected a change, got {applied:?}") };
    let loaded = b.store.load(&a).await.unwrap().expect("state stored");
    assert_eq!(loaded, written);
    assert_eq!(loaded.unpaid()["in_1"].amount_due, 1200);
    assert!(loaded.updated_at().is_some());

    // Applying a fact that is already known changes nothing.
    let again = b.store.apply(&a, None, &[unpaid("in_1", 1200, t(0))]).await.unwrap();
    assert!(matches!(again, Applied::Unchanged(ref s) if *s == loaded), "{again:?}");

    b.store.apply(&a, None, &[settled("in_1", t(10))]).await.unwrap();
    let after = b.store.load(&a).await.unwrap().unwrap();
    assert!(after.unpaid().is_empty());
    assert!(after.settled().contains_key("in_1"));
}

async fn unknown_account_is_none(b: Backend) {
    assert_eq!(b.store.load(&acct("nobody")).await.unwrap(), None);
    b.store.ping().await.unwrap();
}

async fn concurrent_writers_lose_nothing(b: Backend) {
    let a = acct("busy");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = b.store.clone();
            let a = a.clone();
            tokio::spawn(async move { store.apply(&a, None, &[unpaid(&format!("in_{i}"), 100, t(i))]).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap().unwrap(), Applied::Changed(_)));
    }
    let state = b.store.load(&a).await.unwrap().unwrap();
    assert_eq!(state.unpaid().len(), 50);
    assert_eq!(state.amount_due().unwrap().0, 5000);
}

async fn every_write_publishes_an_invalidation(b: Backend) {
    let mut rx = b.store.invalidations();
    for (i, id) in ["one", "two", "one"].iter().enumerate() {
        b.store.apply(&acct(id), None, &[unpaid(&format!("in_{i}"), 1, t(0))]).await.unwrap();
        assert_eq!(next_account(&mut rx).await, acct(id));
    }
    // A write that changes nothing says nothing: the next message is the
    // following real change.
    b.store.apply(&acct("one"), None, &[unpaid("in_0", 1, t(0))]).await.unwrap();
    b.store.apply(&acct("three"), None, &[unpaid("in_9", 1, t(0))]).await.unwrap();
    assert_eq!(next_account(&mut rx).await, acct("three"));
}

async fn an_event_id_applies_once(b: Backend) {
    let a = acct("dupes");
    let change = [unpaid("in_1", 100, t(0))];
    assert!(matches!(b.store.apply(&a, Some("evt_1"), &change).await.unwrap(), Applied::Changed(_)));
    for _ in 0..2 {
        assert_eq!(b.store.apply(&a, Some("evt_1"), &[settled("in_1", t(1))]).await.unwrap(), Applied::Duplicate);
    }
    assert_eq!(b.store.load(&a).await.unwrap().unwrap().unpaid().len(), 1, "the duplicate did not settle it");
    // The same event id for another account is a different delivery.
    assert!(matches!(b.store.apply(&acct("other"), Some("evt_1"), &change).await.unwrap(), Applied::Changed(_)));
}

async fn the_same_event_racing_on_two_tasks_applies_once(b: Backend) {
    for round in 0..20 {
        let a = acct(&format!("race{round}"));
        let go = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (store, a, go) = (b.store.clone(), a.clone(), go.clone());
                tokio::spawn(async move {
                    go.wait().await;
                    store.apply(&a, Some("evt_same"), &[unpaid("in_1", 100, t(0))]).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let changed = outcomes.iter().filter(|o| matches!(o, Applied::Changed(_))).count();
        let dup = outcomes.iter().filter(|o| **o == Applied::Duplicate).count();
        assert_eq!((changed, dup), (1, 1), "round {round}: {outcomes:?}");
    }
}

async fn accounts_do_not_collide(b: Backend) {
    // Ids that share prefixes or look like key parts stay separate.
    let ids = ["a", "a:state", "a:evt", "user@example.com", "org.1-x_y"];
    for (i, id) in ids.iter().enumerate() {
        b.store.apply(&acct(id), None, &[unpaid(&format!("in_{i}"), i as i64 + 1, t(0))]).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let s = b.store.load(&acct(id)).await.unwrap().unwrap();
        assert_eq!(s.unpaid().keys().collect::<Vec<_>>(), [&format!("in_{i}")], "{id}");
    }
}

#[test]
fn bad_account_ids_never_reach_a_store() {
    for bad in ["{x}", "a b", "", "a\r\nFLUSHALL", "x}:state"] {
        assert!(AccountId::new(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_of_one_account_share_a_hash_tag() {
    let server = RedisServer::start();
    let store = RedisStore::connect(StoreUrl::Redis(server.url()), RedisOptions::default()).await.unwrap();
    store.apply(&acct("acme:eu"), Some("evt_9"), &[unpaid("in_1", 1, t(0))]).await.unwrap();
    let keys = server.cmd("KEYS *");
    assert!(keys.contains("pastdue:{acme:eu}:state"), "{keys}");
    assert!(keys.contains("pastdue:{acme:eu}:evt:evt_9"), "{keys}");
    let ttl: i64 = server.cmd("TTL pastdue:{acme:eu}:evt:evt_9").trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 30 * 86_400, "processed ids are kept at least 30 days, ttl={ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_recovers_after_a_restart() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(StoreUrl::Redis(server.url()), RedisOptions::default()).await.unwrap();
    let mut rx = store.invalidations();
    assert!(store.is_listening());
    server.stop();
    let err = store.load(&acct("x")).await;
    assert!(err.is_err(), "a dead Redis is an error, not a hang: {err:?}");
    server.restart();
    // Reconnects and resubscribes by itself; the listener says "re-read all".
    let mut saw_all = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline && !(saw_all && store.is_listening()) {
        if let Ok(Ok(Invalidation::All)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            saw_all = true;
        }
    }
    assert!(saw_all && store.is_listening());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.apply(&acct("x"), None, &[unpaid("in_1", 1, t(0))]).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("store did not recover: {e}"),
        }
    }
    assert_eq!(next_account(&mut rx).await, acct("x"), "invalidations flow again");
}
