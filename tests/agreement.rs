//! For any sequence of events, with duplicates, in any delivery order, the
//! Redis store (its Lua compare-and-set) and the memory store end in the
//! same state, and that state is the in-order application of each distinct
//! event once.

#[macro_use]
mod common;

use std::sync::Arc;

use chrono::DateTime;
use common::*;
use pastdue::state::SubscriptionStatus as S;
use pastdue::store::Store;
use pastdue::{AccountId, BillingState, Change, MemoryStore};
use proptest::prelude::*;

fn arb_event() -> impl Strategy<Value = (u8, Change)> {
    let id = prop::sample::select(vec!["in_a", "in_b", "in_c"]);
    let time = (0..40 * DAY).prop_map(t);
    let status = prop::sample::select(vec![S::Active, S::PastDue, S::Unpaid, S::Canceled, S::Paused, S::PausedPaymentFailed]);
    let change = prop_oneof![
        (id.clone(), 1..5_000i64, time.clone()).prop_map(|(id, c, at)| unpaid(id, c, at)),
        (id.clone(), 1..5_000i64, time.clone(), time.clone()).prop_map(|(id, c, due, at)| upcoming(id, c, due, at)),
        (id, time.clone()).prop_map(|(id, at)| settled(id, at)),
        (status, time).prop_map(|(s, at)| subscription("sub_1", s, at)),
    ];
    (any::<u8>(), change)
}

fn normalized(mut s: BillingState) -> BillingState {
    s.set_updated_at(DateTime::UNIX_EPOCH);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn redis_and_memory_agree_with_in_order_application(
        events in prop::collection::vec(arb_event(), 1..12),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            // Event ids: the u8 picks one of a few ids, so some events are
            // duplicates of others (same id, Stripe redelivering).
            let events: Vec<(String, Change)> = events.into_iter().map(|(n, c)| (format!("evt_{}", n % 8), c)).collect();
            // In order: the first delivery of each id wins, later ones are duplicates.
            let mut expected = BillingState::default();
            let mut seen = std::collections::HashSet::new();
            for (id, change) in &events {
                if seen.insert(id.clone()) {
                    expected.apply(change);
                }
            }
            // A delivery order: every event at least once, plus redeliveries.
            let mut deliveries: Vec<usize> = (0..events.len()).collect();
            deliveries.extend(order.iter().map(|i| i.index(events.len())));
            let mut x = deliveries.len();
            for i in (1..deliveries.len()).rev() {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                deliveries.swap(i, x % (i + 1));
            }
            let server = RedisServer::start();
            let redis = store_with(&server.url(), relaxed()).await;
            let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let account = AccountId::new("agree").unwrap();
            let mut expected_by_delivery = BillingState::default();
            let mut applied = std::collections::HashSet::new();
            for &i in &deliveries {
                let (id, change) = &events[i];
                for store in [&redis, &memory] {
                    store.apply(&account, Some(id), std::slice::from_ref(change)).await.unwrap();
                }
                if applied.insert(id.clone()) {
                    expected_by_delivery.apply(change);
                }
            }
            let from_redis = normalized(redis.load(&account).await.unwrap().unwrap_or_default());
            let from_memory = normalized(memory.load(&account).await.unwrap().unwrap_or_default());
            assert_eq!(&from_redis, &from_memory, "Lua and memory disagree");
            assert_eq!(from_redis, normalized(expected_by_delivery), "not the once-per-id application");
            // When no id carries two different payloads, delivery order is
            // irrelevant: the result is the in-order application.
            let ambiguous = events.iter().any(|(id, c)| events.iter().any(|(id2, c2)| id == id2 && c != c2));
            if !ambiguous {
                assert_eq!(normalized(redis.load(&account).await.unwrap().unwrap_or_default()), normalized(expected));
            }
        });
    }
}
