//! One suite, every backend: the memory store and a real `redis-server`.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use pastdue::store::conformance::next_account;
use pastdue::store::{Invalidation, RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::AccountId;

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

// The checks are the published Store contract (`pastdue::store::conformance`,
// feature `test-util`): every backend here runs each of them.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(async fn $name(b: Backend) {
            pastdue::store::conformance::$name(&b.store).await;
        })*
        backend_suite!($($name),*);
    };
}

conformance!(
    round_trip,
    unknown_account_is_none,
    concurrent_writers_lose_nothing,
    every_write_publishes_an_invalidation,
    an_event_id_applies_once,
    the_same_event_racing_on_two_tasks_applies_once,
    accounts_do_not_collide,
    debts_are_indexed,
    claims_are_exclusive_and_renewed_only_by_their_holder,
    customer_links_move_and_admin_links_win,
    audited_changes_write_their_entry,
    figures_count_each_episode_once,
    figures_match_the_states_under_concurrent_writers,
    at_risk_round_trips,
    accounts_are_found_by_id_and_email_prefix,
);

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

/// On a Cluster the recovery counters live in another slot and are posted
/// after the commit: a writer that dies in between (its post lost, its
/// dirty mark left behind) is repaired before the next report is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_counters_a_crashed_writer_left_unposted_are_repaired_before_a_read() {
    use chrono::TimeZone;
    use pastdue::recovery::{Range, Recorder};
    let b = cluster().await;
    b.store.keep_figures(Recorder::default());
    let day = chrono::Utc.with_ymd_and_hms(2032, 5, 1, 0, 0, 0).unwrap();
    let range = Range { from: day.date_naive(), to: day.date_naive() + chrono::TimeDelta::days(1) };
    let a = acct("crashed");
    b.store.apply(&a, Some("evt_c1"), &[unpaid("in_c", 700, day + chrono::TimeDelta::hours(1))]).await.unwrap();
    b.store.apply(&a, Some("evt_c2"), &[settled("in_c", day + chrono::TimeDelta::days(2))]).await.unwrap();
    let expected = b.store.figures(range).await.unwrap();
    assert_eq!(expected.get("default", "paid"), 1, "{expected:?}");

    // What a writer that committed and died before posting leaves: counters
    // and the posted records without its write, its dirty mark (a minute old).
    let nodes: Vec<String> = b.cluster.as_ref().unwrap().url().trim_start_matches("redis+cluster://").split(',').map(|h| format!("redis://{h}")).collect();
    let client = redis::cluster::ClusterClient::new(nodes).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let stale = (chrono::Utc::now().timestamp_millis() - 60_000) * 1000;
    redis::pipe()
        .cmd("HDEL").arg("pastdue:{figures}:posted").arg("crashed").ignore()
        .cmd("DEL").arg(format!("pastdue:{{figures}}:day:{}", day.date_naive())).ignore()
        .cmd("ZADD").arg("pastdue:{figures}:dirty").arg(stale).arg("crashed").ignore()
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert_eq!(b.store.figures(range).await.unwrap(), expected, "repaired before the read");
    let dirty: Vec<String> = redis::cmd("ZRANGE").arg("pastdue:{figures}:dirty").arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert!(dirty.is_empty(), "the mark is cleared: {dirty:?}");
    assert_eq!(b.store.figures(range).await.unwrap(), expected, "and counted once");
}
