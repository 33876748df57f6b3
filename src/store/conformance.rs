//! The [`Store`] contract as a runnable suite (feature `test-util`).
//!
//! Every backend pastdue ships passes it (the memory store, Redis, and a
//! Redis Cluster: see `tests/store.rs`), and a third-party backend can run
//! it the same way. Each check uses its own account ids, so one store
//! instance runs them all; a failure panics with a message naming what
//! broke.
//!
//! A toy backend, wrapping the memory store to count writes, passes it:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use pastdue::store::*;
//! use pastdue::{AccountId, BillingState, Change, MemoryStore};
//!
//! #[derive(Default)]
//! struct Counting { inner: MemoryStore, writes: AtomicUsize }
//!
//! #[async_trait]
//! impl Store for Counting {
//!     async fn load(&self, a: &AccountId) -> Result<Option<BillingState>, StoreError> { self.inner.load(a).await }
//!     async fn apply(&self, a: &AccountId, e: Option<&str>, c: &[Change]) -> Result<Applied, StoreError> {
//!         self.writes.fetch_add(1, Ordering::Relaxed);
//!         self.inner.apply(a, e, c).await
//!     }
//!     async fn apply_audited(&self, a: &AccountId, c: &[Change], d: &AuditDraft<'_>) -> Result<(Applied, AuditEntry), StoreError> {
//!         self.writes.fetch_add(1, Ordering::Relaxed);
//!         self.inner.apply_audited(a, c, d).await
//!     }
//!     async fn link_customer(&self, c: &str, a: &AccountId, s: LinkSource) -> Result<Linked, StoreError> { self.inner.link_customer(c, a, s).await }
//!     async fn customer_account(&self, c: &str) -> Result<Option<AccountId>, StoreError> { self.inner.customer_account(c).await }
//!     async fn scan_index(&self, i: Index, min: i64, max: i64, cur: Option<&str>, n: usize) -> Result<Vec<IndexEntry>, StoreError> {
//!         self.inner.scan_index(i, min, max, cur, n).await
//!     }
//!     async fn lookup(&self, by: Lookup, p: &str, n: usize) -> Result<Vec<(String, AccountId)>, StoreError> { self.inner.lookup(by, p, n).await }
//!     async fn claim(&self, a: &AccountId, w: &str, h: &str, l: Duration) -> Result<bool, StoreError> { self.inner.claim(a, w, h, l).await }
//!     async fn renew_claim(&self, a: &AccountId, w: &str, h: &str, l: Duration) -> Result<bool, StoreError> { self.inner.renew_claim(a, w, h, l).await }
//!     async fn audit(&self, e: &AuditEntry) -> Result<String, StoreError> { self.inner.audit(e).await }
//!     async fn audit_log(&self, a: Option<&AccountId>, b: Option<&str>, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
//!         self.inner.audit_log(a, b, n).await
//!     }
//!     fn keep_figures(&self, r: pastdue::recovery::Recorder) { self.inner.keep_figures(r) }
//!     async fn figures(&self, r: pastdue::recovery::Range) -> Result<pastdue::recovery::Tally, StoreError> { self.inner.figures(r).await }
//!     async fn put_at_risk(&self, a: &pastdue::recovery::AtRisk) -> Result<(), StoreError> { self.inner.put_at_risk(a).await }
//!     async fn at_risk(&self) -> Result<Option<pastdue::recovery::AtRisk>, StoreError> { self.inner.at_risk().await }
//!     fn invalidations(&self) -> tokio::sync::broadcast::Receiver<Invalidation> { self.inner.invalidations() }
//!     async fn ping(&self) -> Result<(), StoreError> { self.inner.ping().await }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! let store = Arc::new(Counting::default());
//! pastdue::store::conformance::run(store.clone()).await;
//! assert!(store.writes.load(Ordering::Relaxed) > 50);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::broadcast;

use super::{Applied, AuditDraft, Index, Invalidation, LinkSource, Linked, Store};
use crate::account::AccountId;
use crate::recovery::{AtRisk, Range, Recorder, StageRisk, Tally};
use crate::state::{BillingState, Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice};

/// Runs every check against `store`.
pub async fn run(store: Arc<dyn Store>) {
    round_trip(&store).await;
    unknown_account_is_none(&store).await;
    concurrent_writers_lose_nothing(&store).await;
    every_write_publishes_an_invalidation(&store).await;
    an_event_id_applies_once(&store).await;
    the_same_event_racing_on_two_tasks_applies_once(&store).await;
    accounts_do_not_collide(&store).await;
    debts_are_indexed(&store).await;
    claims_are_exclusive_and_renewed_only_by_their_holder(&store).await;
    customer_links_move_and_admin_links_win(&store).await;
    audited_changes_write_their_entry(&store).await;
    figures_count_each_episode_once(&store).await;
    figures_match_the_states_under_concurrent_writers(&store).await;
    at_risk_round_trips(&store).await;
    accounts_are_found_by_id_and_email_prefix(&store).await;
}

fn acct(id: &str) -> AccountId {
    AccountId::new(id).expect("a valid test account id")
}

/// A fixed instant plus `secs`: checks never depend on the wall clock.
fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::seconds(secs)
}

fn unpaid(id: &str, cents: i64, since: DateTime<Utc>) -> Change {
    Change::InvoiceUnpaid {
        id: id.into(),
        invoice: UnpaidInvoice {
            amount_due: cents,
            currency: Currency::new("eur").expect("a currency"),
            hosted_url: Some(format!("https://invoice.stripe.com/i/{id}").into()),
            number: Some(format!("N-{id}")),
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    }
}

fn settled(id: &str, at: DateTime<Utc>) -> Change {
    Change::InvoiceSettled { id: id.into(), at }
}

/// The next account announced on `rx`, waiting at most 2 s (panics
/// otherwise): for a backend's own tests of its invalidations.
pub async fn next_account(rx: &mut broadcast::Receiver<Invalidation>) -> AccountId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Invalidation::Account(a))) => return a,
            Ok(Ok(_)) => continue,
            other => panic!("no invalidation arrived: {other:?}"),
        }
    }
}

/// Writes come back as written; a known fact changes nothing; a settled
/// invoice leaves the unpaid list.
pub async fn round_trip(store: &Arc<dyn Store>) {
    let a = acct("conformance-acme");
    let sub = Change::Subscription { id: "sub_1".into(), fact: SubscriptionFact::new(SubscriptionStatus::PastDue, t(5)) };
    let applied = store.apply(&a, None, &[unpaid("in_1", 1200, t(0)), sub]).await.unwrap();
    let Applied::Changed(written) = applied else { panic!("round_trip: expected a change, got {applied:?}") };
    let loaded = store.load(&a).await.unwrap().expect("round_trip: state stored");
    assert_eq!(loaded, written, "round_trip: load returns what apply wrote");
    assert_eq!(loaded.unpaid().get("in_1").map(|i| i.amount_due), Some(1200));
    assert!(loaded.updated_at().is_some(), "round_trip: updated_at is stamped");
    let again = store.apply(&a, None, &[unpaid("in_1", 1200, t(0))]).await.unwrap();
    assert!(matches!(again, Applied::Unchanged(ref s) if *s == loaded), "round_trip: a known fact changes nothing: {again:?}");
    store.apply(&a, None, &[settled("in_1", t(10))]).await.unwrap();
    let after = store.load(&a).await.unwrap().unwrap();
    assert!(after.unpaid().is_empty() && after.settled().contains_key("in_1"), "round_trip: settled");
}

/// An account never written is `None`; the backend answers a ping.
pub async fn unknown_account_is_none(store: &Arc<dyn Store>) {
    assert_eq!(store.load(&acct("conformance-nobody")).await.unwrap(), None);
    store.ping().await.unwrap();
}

/// 50 concurrent writers to one account: 50 invoices, none lost.
pub async fn concurrent_writers_lose_nothing(store: &Arc<dyn Store>) {
    let a = acct("conformance-busy");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(async move { store.apply(&a, None, &[unpaid(&format!("in_{i}"), 100, t(i))]).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap().unwrap(), Applied::Changed(_)), "concurrent_writers: each write changes the state");
    }
    let state = store.load(&a).await.unwrap().unwrap();
    assert_eq!(state.unpaid().len(), 50, "concurrent_writers: no write lost");
    assert_eq!(state.amount_due().unwrap().0, 5000);
}

/// Every write that changes a state announces the account; one that
/// changes nothing says nothing.
pub async fn every_write_publishes_an_invalidation(store: &Arc<dyn Store>) {
    let mut rx = store.invalidations();
    for (i, id) in ["conformance-one", "conformance-two", "conformance-one"].iter().enumerate() {
        store.apply(&acct(id), None, &[unpaid(&format!("in_{i}"), 1, t(0))]).await.unwrap();
        assert_eq!(next_account(&mut rx).await, acct(id));
    }
    store.apply(&acct("conformance-one"), None, &[unpaid("in_0", 1, t(0))]).await.unwrap();
    store.apply(&acct("conformance-three"), None, &[unpaid("in_9", 1, t(0))]).await.unwrap();
    assert_eq!(next_account(&mut rx).await, acct("conformance-three"), "invalidations: an unchanged write is silent");
}

/// An event id applies once per account; the same id for another account
/// is another delivery.
pub async fn an_event_id_applies_once(store: &Arc<dyn Store>) {
    let a = acct("conformance-dupes");
    let change = [unpaid("in_1", 100, t(0))];
    assert!(matches!(store.apply(&a, Some("evt_1"), &change).await.unwrap(), Applied::Changed(_)));
    for _ in 0..2 {
        assert_eq!(store.apply(&a, Some("evt_1"), &[settled("in_1", t(1))]).await.unwrap(), Applied::Duplicate);
    }
    assert_eq!(store.load(&a).await.unwrap().unwrap().unpaid().len(), 1, "event ids: the duplicate did not settle it");
    assert!(matches!(store.apply(&acct("conformance-other"), Some("evt_1"), &change).await.unwrap(), Applied::Changed(_)));
}

/// Two tasks applying the same event at once: exactly one applies it.
pub async fn the_same_event_racing_on_two_tasks_applies_once(store: &Arc<dyn Store>) {
    for round in 0..20 {
        let a = acct(&format!("conformance-race{round}"));
        let go = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (store, a, go) = (store.clone(), a.clone(), go.clone());
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
        assert_eq!((changed, dup), (1, 1), "racing event, round {round}: {outcomes:?}");
    }
}

/// Ids that share prefixes or look like key parts stay separate.
pub async fn accounts_do_not_collide(store: &Arc<dyn Store>) {
    let ids = ["conformance-a", "conformance-a:state", "conformance-a:evt", "conformance@example.com", "conformance.1-x_y"];
    for (i, id) in ids.iter().enumerate() {
        store.apply(&acct(id), None, &[unpaid(&format!("in_{i}"), i as i64 + 1, t(0))]).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let s = store.load(&acct(id)).await.unwrap().unwrap();
        assert_eq!(s.unpaid().keys().collect::<Vec<_>>(), [&format!("in_{i}")], "accounts collide: {id}");
    }
}

/// An account in debt is in the debt index at its `past_due_since`, and
/// leaves it when paid.
pub async fn debts_are_indexed(store: &Arc<dyn Store>) {
    let a = acct("conformance-indexed");
    let since = t(1_000);
    store.apply(&a, None, &[unpaid("in_x", 100, since)]).await.unwrap();
    let score = since.timestamp();
    let found = store.scan_index(Index::Debt, score, score, None, 100).await.unwrap();
    assert!(found.iter().any(|e| e.account == a && e.score == score), "debt index: {found:?}");
    store.apply(&a, None, &[settled("in_x", t(2_000))]).await.unwrap();
    let found = store.scan_index(Index::Debt, score, score, None, 100).await.unwrap();
    assert!(!found.iter().any(|e| e.account == a), "debt index: a paid account leaves it: {found:?}");
}

/// One holder at a time; only the holder renews; a lapsed lease frees it.
pub async fn claims_are_exclusive_and_renewed_only_by_their_holder(store: &Arc<dyn Store>) {
    let a = acct("conformance-claims");
    let lease = Duration::from_millis(300);
    assert!(store.claim(&a, "n1", "holder-a", lease).await.unwrap(), "claims: the first caller gets it");
    // A second claim that nobody renews or takes: it only lapses.
    assert!(store.claim(&a, "n2", "holder-a", lease).await.unwrap());
    assert!(!store.claim(&a, "n1", "holder-b", lease).await.unwrap(), "claims: exclusive");
    assert!(!store.renew_claim(&a, "n1", "holder-b", lease).await.unwrap(), "claims: only the holder renews");
    assert!(store.renew_claim(&a, "n1", "holder-a", lease).await.unwrap(), "claims: the holder renews");
    // The lease runs on the backend's own clock (Redis expires the key):
    // poll until another caller can take the lapsed claim.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.claim(&a, "n1", "holder-b", lease).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "claims: a lapsed claim is free again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!store.renew_claim(&a, "n1", "holder-a", lease).await.unwrap(), "claims: a taken-over claim is not renewed by its old holder");
    // n2 was claimed before n1's renewal, so it has lapsed by now.
    assert!(!store.renew_claim(&a, "n2", "holder-a", lease).await.unwrap(), "claims: a lapsed claim is not renewed");
}

/// Links move customers between accounts; a learned link never moves an
/// admin's.
pub async fn customer_links_move_and_admin_links_win(store: &Arc<dyn Store>) {
    let (a, b) = (acct("conformance-link-a"), acct("conformance-link-b"));
    let c = "cus_Conformance";
    assert_eq!(store.link_customer(c, &a, LinkSource::Learned).await.unwrap(), Linked::New);
    assert_eq!(store.link_customer(c, &a, LinkSource::Learned).await.unwrap(), Linked::Unchanged);
    assert_eq!(store.link_customer(c, &b, LinkSource::Admin).await.unwrap(), Linked::Moved { from: a.clone() });
    assert_eq!(store.customer_account(c).await.unwrap(), Some(b.clone()));
    assert_eq!(store.link_customer(c, &a, LinkSource::Learned).await.unwrap(), Linked::Refused { admin: b.clone() });
    assert_eq!(store.customer_account(c).await.unwrap(), Some(b.clone()), "links: the admin link stays");
    assert!(store.link_customer("not a customer id", &a, LinkSource::Learned).await.is_err_and(|e| !e.is_retryable()));
}

fn pick_customers(s: &BillingState) -> serde_json::Value {
    serde_json::json!(s.customers())
}

/// An audited change writes its entry, with `before` and `after`, and the
/// account's log lists it newest first.
pub async fn audited_changes_write_their_entry(store: &Arc<dyn Store>) {
    let a = acct("conformance-audited");
    let draft = AuditDraft { who: "tester", action: "customer.linked", reason: Some("why"), pick: pick_customers, extra: None };
    let (applied, entry) = store.apply_audited(&a, &[Change::LinkCustomer("cus_A1".into())], &draft).await.unwrap();
    assert!(matches!(applied, Applied::Changed(_)));
    assert!(!entry.id.is_empty(), "audit: the entry has an id");
    assert_eq!((entry.before.clone(), entry.after.clone()), (serde_json::Value::Null, serde_json::json!(["cus_A1"])));
    let (_, second) = store.apply_audited(&a, &[Change::LinkCustomer("cus_A2".into())], &draft).await.unwrap();
    assert_eq!(second.before, serde_json::json!(["cus_A1"]), "audit: before is the state the change saw");
    let log = store.audit_log(Some(&a), None, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.after.clone()).collect::<Vec<_>>(), [serde_json::json!(["cus_A1", "cus_A2"]), serde_json::json!(["cus_A1"])], "audit: newest first");
}

/// The whole UTC day `day` as a report range.
fn one_day(day: DateTime<Utc>) -> Range {
    Range { from: day.date_naive(), to: day.date_naive() + chrono::TimeDelta::days(1) }
}

/// Recovery counters: an episode is counted open, then paid at the stage
/// it ended at; a re-delivered event or a known fact counts nothing more.
pub async fn figures_count_each_episode_once(store: &Arc<dyn Store>) {
    store.keep_figures(Recorder::default());
    let day = Utc.with_ymd_and_hms(2031, 3, 1, 0, 0, 0).unwrap();
    let range = one_day(day);
    let before = store.figures(range).await.unwrap();
    let a = acct("conformance-figures");
    let failed = day + chrono::TimeDelta::hours(1);
    store.apply(&a, Some("evt_fig_1"), &[unpaid("in_f1", 4900, failed)]).await.unwrap();
    let open = store.figures(range).await.unwrap().since(&before);
    assert_eq!((open.get("default", "started"), open.get("default", "outstanding:eur")), (1, 4900), "figures: an open episode: {open:?}");
    let paid_at = failed + chrono::TimeDelta::days(3);
    store.apply(&a, Some("evt_fig_2"), &[settled("in_f1", paid_at)]).await.unwrap();
    let paid = store.figures(range).await.unwrap().since(&before);
    let expected: Tally = [("started", 1), ("paid", 1), ("recovered:eur", 4900), ("at:notice", 1), ("at:notice:eur", 4900), ("hours:72", 1)]
        .into_iter()
        .map(|(m, n)| (crate::recovery::Cell { day: day.date_naive(), ladder: "default".into(), metric: m.into() }, n))
        .collect();
    assert_eq!(paid, expected, "figures: paid at notice after 3 days");
    let again = store.apply(&a, Some("evt_fig_2"), &[settled("in_f1", paid_at)]).await.unwrap();
    assert_eq!(again, Applied::Duplicate, "figures: the event is a duplicate");
    store.apply(&a, None, &[settled("in_f1", paid_at), unpaid("in_f1", 4900, failed)]).await.unwrap();
    assert_eq!(store.figures(range).await.unwrap().since(&before), expected, "figures: known facts count nothing more");
}

/// 20 writers ending and reshaping episodes of one account at once: the
/// counters are exactly those of the account's final state.
pub async fn figures_match_the_states_under_concurrent_writers(store: &Arc<dyn Store>) {
    store.keep_figures(Recorder::default());
    let day = Utc.with_ymd_and_hms(2031, 4, 1, 0, 0, 0).unwrap();
    let range = Range { from: day.date_naive(), to: day.date_naive() + chrono::TimeDelta::days(40) };
    let before = store.figures(range).await.unwrap();
    let a = acct("conformance-figures-busy");
    let tasks: Vec<_> = (0..20i64)
        .map(|i| {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move {
                let id = format!("in_c{i}");
                let since = day + chrono::TimeDelta::hours(i * 30);
                let end = since + chrono::TimeDelta::days(i % 7);
                let settle = if i % 4 == 0 { Change::InvoiceVoided { id: id.clone(), at: end } } else { settled(&id, end) };
                // Half of them arrive settled first, as Stripe may deliver.
                let mut changes = vec![unpaid(&id, 100 * (i + 1), since), settle];
                if i % 2 == 1 {
                    changes.reverse();
                }
                for c in changes {
                    store.apply(&a, Some(&format!("evt_{id}_{}", matches!(c, Change::InvoiceUnpaid { .. }))), &[c]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let state = store.load(&a).await.unwrap().expect("figures: the account is stored");
    let expected = Tally::of(&Recorder::default().records(&state));
    assert!(!expected.is_empty(), "figures: the writers made episodes");
    assert_eq!(store.figures(range).await.unwrap().since(&before), expected, "figures: counters equal the final state's records");
}

/// The at-risk count comes back as stored; the newest replaces the last.
pub async fn at_risk_round_trips(store: &Arc<dyn Store>) {
    let mut at_risk = AtRisk { as_of: Some(t(0)), ..AtRisk::default() };
    let risk = StageRisk { accounts: 3, amount: [(Currency::new("eur").unwrap(), 14_700)].into_iter().collect() };
    at_risk.ladders.entry("default".into()).or_default().insert("notice".into(), risk);
    store.put_at_risk(&at_risk).await.unwrap();
    assert_eq!(store.at_risk().await.unwrap(), Some(at_risk.clone()), "at_risk: round trip");
    let newer = AtRisk { as_of: Some(t(60)), ..AtRisk::default() };
    store.put_at_risk(&newer).await.unwrap();
    assert_eq!(store.at_risk().await.unwrap(), Some(newer), "at_risk: the newest count wins");
}

/// Accounts are found by an id prefix and by (a prefix of) any address
/// they are known by; an address that changes stops finding them.
pub async fn accounts_are_found_by_id_and_email_prefix(store: &Arc<dyn Store>) {
    use super::Lookup;
    let (a, b) = (acct("conformance-lookup-acme"), acct("conformance-lookup-acorn"));
    store.apply(&a, None, &[Change::ContactEmail("Billing@Acme.example".into())]).await.unwrap();
    store.apply(&b, None, &[Change::ContactEmail("pay@acorn.example".into())]).await.unwrap();
    let ids: Vec<AccountId> = store.lookup(Lookup::Account, "conformance-lookup-ac", 10).await.unwrap().into_iter().map(|(_, a)| a).collect();
    assert_eq!(ids, [a.clone(), b.clone()], "lookup: by id prefix, in order");
    assert_eq!(store.lookup(Lookup::Account, "conformance-lookup-acm", 10).await.unwrap().len(), 1, "lookup: a longer prefix");
    let found = store.lookup(Lookup::Email, "billing@acme.ex", 10).await.unwrap();
    assert_eq!(found.iter().map(|(_, x)| x).collect::<Vec<_>>(), [&a], "lookup: by e-mail prefix, lower case: {found:?}");
    store.apply(&a, None, &[Change::ContactEmail("ap@acme.example".into())]).await.unwrap();
    assert!(store.lookup(Lookup::Email, "billing@acme.example", 10).await.unwrap().is_empty(), "lookup: an old address no longer finds it");
    assert_eq!(store.lookup(Lookup::Email, "ap@acme.example", 10).await.unwrap().len(), 1);
    assert_eq!(store.lookup(Lookup::Account, "conformance-lookup-", 1).await.unwrap().len(), 1, "lookup: at most limit");
}
