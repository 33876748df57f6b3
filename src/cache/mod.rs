//! The in-process cache in front of the store, kept honest by invalidations.
//!
//! - A hit costs one hash lookup and no network round trip.
//! - Every write anywhere publishes the account; a listener evicts it here.
//! - When the listener loses its subscription (or falls behind), every entry
//!   is marked unverified: it is re-read before it is trusted again, but it
//!   is still served if the store cannot be reached ("last known state").
//! - Concurrent misses for one account share one store read.
//! - After a store error the cache stops asking for `retry_after`, so an
//!   outage costs one timeout, not one per request.
//! - The TTL is a safety net, not the mechanism.

// Reached from outside only through `__internals` (feature `test-util`).
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use tokio::sync::{broadcast, OnceCell};
use tokio::task::JoinHandle;

use serde::Deserialize;

use crate::account::AccountId;
use crate::settings::de_duration;
use crate::policy::Policy;
use crate::standing::Standing;
use crate::state::BillingState;
use crate::store::{Invalidation, Store, StoreError};

mod entry;
mod table;
use entry::{Entry, Key, Keyer, Ticks};
use table::Table;

/// What the cache knows of one account.
#[derive(Clone, Debug)]
pub enum Cached {
    /// The store has never heard of the account.
    Unknown,
    /// Known, and in a standing that time cannot change (nothing owed, no
    /// override, subscription live, and — when the cache keeps dues — no
    /// payment coming due): kept without its state to save memory.
    Good,
    /// Anything else: the state is needed to evaluate the ladder over time.
    State(Arc<BillingState>),
}

impl Cached {
    fn from_state(state: Option<BillingState>, keep_dues: bool) -> Self {
        match state {
            None => Cached::Unknown,
            Some(s)
                if s.past_due_since().is_none()
                    && s.override_().is_none()
                    && s.ended().is_none()
                    && (!keep_dues || s.upcoming().is_empty()) =>
            {
                Cached::Good
            }
            Some(s) => Cached::State(Arc::new(s)),
        }
    }

    /// The standing this entry gives at `now`.
    pub fn standing(&self, policy: &Policy, now: DateTime<Utc>) -> Standing {
        self.standing_at(policy, now.timestamp_micros())
    }

    /// The standing at `now_us` Unix microseconds: an unknown or good
    /// account's standing is the same at every instant, so only a kept
    /// state has the time turned into a date.
    pub(crate) fn standing_at(&self, policy: &Policy, now_us: i64) -> Standing {
        match self {
            Cached::Unknown => Standing::evaluate(None, policy.default_ladder(), crate::clock::from_micros(now_us)),
            Cached::Good => Standing::good(policy.default_ladder()),
            Cached::State(s) => policy.evaluate(Some(s), crate::clock::from_micros(now_us)),
        }
    }

    /// The full state, shared, when this entry keeps it.
    pub(crate) fn shared_state(&self) -> Option<Arc<BillingState>> {
        match self {
            Cached::State(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The full state, when this entry keeps it.
    pub fn state(&self) -> Option<&BillingState> {
        match self {
            Cached::State(s) => Some(s),
            _ => None,
        }
    }
}

/// The outcome of a lookup.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Current data.
    Fresh(Cached),
    /// The store failed; this is the last state known here.
    Stale(Cached),
    /// The store failed and nothing is known: the outage policy applies.
    Unavailable,
}

impl Lookup {
    /// What is known, fresh or stale.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn cached(self) -> Option<Cached> {
        match self {
            Lookup::Fresh(c) | Lookup::Stale(c) => Some(c),
            Lookup::Unavailable => None,
        }
    }
}

type Flight = Arc<OnceCell<Result<Cached, ()>>>;

/// The entries, behind a lock whose readers never write a cache line
/// another worker reads: `ShardedLock` gives each thread its own
/// read-lock word, so a hit on one worker never makes another worker's
/// next hit wait for the line (a plain `RwLock` is one word every reader
/// writes). Writers (a miss, an invalidation) lock every reader slot:
/// slower, and rare next to hits. One [`Table`], keyed by [`Key`].
struct Entries {
    table: ShardedLock<Table>,
    keyer: Keyer,
}

impl Entries {
    fn new(capacity: usize) -> Self {
        Self { table: ShardedLock::new(Table::new(capacity)), keyer: Keyer::new() }
    }

    fn key(&self, account: &str) -> Key {
        self.keyer.key(account)
    }

    fn read(&self) -> ShardedLockReadGuard<'_, Table> {
        // A writer that panicked left the table consistent (it changes
        // under `&mut` only, each step whole), so poisoning is ignored.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> ShardedLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    store: Arc<dyn Store>,
    entries: Entries,
    epoch: AtomicU64,
    /// Bumped on every invalidation; a read that overlaps one is not trusted.
    generation: AtomicU64,
    /// Unix milliseconds until which the store is not asked.
    down_until_ms: AtomicI64,
    inflight: Mutex<HashMap<AccountId, Flight>>,
    ticks: Ticks,
    retry_after_ms: i64,
    /// Whether accounts in good standing with a payment coming due keep
    /// their state (for the before-due banner); read on a miss only.
    keep_dues: AtomicBool,
}

/// The account-state cache. Cloning shares it.
#[derive(Clone)]
pub struct StateCache {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

/// The invalidation listener: subscribed when the cache is built (so no
/// write after that is missed), started by the first store read (nothing
/// is cached before it), so that building a cache — and a gate — needs no
/// Tokio runtime and starts no task the caller cannot see.
struct Listener {
    pending: Mutex<Option<broadcast::Receiver<Invalidation>>>,
    task: Mutex<Option<AbortOnDrop>>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCache").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl StateCache {
    /// A cache of at most `capacity` accounts in front of `store`. Subscribes
    /// to the store's invalidations now; the task that applies them starts
    /// with the first store read (inside the runtime that read runs on), so
    /// building a cache needs no runtime.
    pub fn new(store: Arc<dyn Store>, capacity: usize, ttl: Duration, retry_after: Duration) -> Self {
        let invalidations = store.invalidations();
        let shared = Arc::new(Shared {
            store,
            entries: Entries::new(capacity.max(1)),
            epoch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            down_until_ms: AtomicI64::new(0),
            inflight: Mutex::default(),
            ticks: Ticks::new(ttl.as_micros().try_into().unwrap_or(i64::MAX)),
            retry_after_ms: retry_after.as_millis().try_into().unwrap_or(i64::MAX),
            keep_dues: AtomicBool::new(false),
        });
        let listener = Listener { pending: Mutex::new(Some(invalidations)), task: Mutex::default() };
        Self { shared, listener: Arc::new(listener) }
    }

    /// Makes sure the invalidation listener runs before a read: started
    /// by the first read, on the runtime serving it, and started again —
    /// with everything cached forgotten, since writes may have gone
    /// unheard — when its task has ended (the runtime it ran on was shut
    /// down; cached entries age out after `cache.ttl` until a read comes).
    /// Without a runtime it leaves everything as it is.
    fn listen(&self) {
        let mut task = self.listener.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|t| !t.0.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let pending = self.listener.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        let rx = match pending {
            Some(rx) => rx,
            None => {
                let rx = self.shared.store.invalidations();
                invalidate_all(&self.shared);
                rx
            }
        };
        *task = Some(AbortOnDrop(runtime.spawn(listen(Arc::downgrade(&self.shared), rx))));
    }

    /// Keeps the state of accounts in good standing that have a payment
    /// coming due, so that a before-due banner can name it (off by
    /// default: such accounts are cached as plain "good"). Entries read
    /// before the change keep their old form until re-read.
    pub fn keep_dues(&self, keep: bool) {
        self.shared.keep_dues.store(keep, Relaxed);
    }

    /// The entry for `account` if it is current: the hot path, no I/O.
    // Reached from outside through `__internals` (feature `test-util`).
    #[cfg_attr(not(any(feature = "server", feature = "test-util")), allow(dead_code))]
    pub fn get_fresh(&self, account: &str, now: DateTime<Utc>) -> Option<Cached> {
        self.get_fresh_at(account, now.timestamp_micros())
    }

    /// [`get_fresh`](Self::get_fresh) at `now_us` Unix microseconds.
    pub(crate) fn get_fresh_at(&self, account: &str, now_us: i64) -> Option<Cached> {
        let s = &self.shared;
        let key = s.entries.key(account);
        let entries = s.entries.read();
        let entry = entries.get(key)?;
        let current = entry.read_at(s.epoch.load(SeqCst)) && s.ticks.current(key, entry.read_tick, now_us);
        current.then(|| entry.cached())
    }

    /// The current entry at `now`, reading the store when needed.
    // Reached from outside through `__internals` (feature `test-util`).
    #[cfg_attr(not(any(feature = "server", feature = "test-util")), allow(dead_code))]
    pub async fn get(&self, account: &AccountId, now: DateTime<Utc>) -> Lookup {
        if let Some(hit) = self.get_fresh(account.as_str(), now) {
            return Lookup::Fresh(hit);
        }
        self.load(account, now).await
    }

    /// Reads the store (one read per account at a time), falling back to
    /// the last known entry when the store fails.
    pub async fn load(&self, account: &AccountId, now: DateTime<Utc>) -> Lookup {
        self.listen();
        let s = &self.shared;
        let key = s.entries.key(account.as_str());
        let last_known = s.entries.read().get(key).map(Entry::cached);
        if now.timestamp_millis() < s.down_until_ms.load(SeqCst) {
            return last_known.map_or(Lookup::Unavailable, Lookup::Stale);
        }
        let flight: Flight = {
            let mut inflight = s.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.entry(account.clone()).or_default().clone()
        };
        let result = flight.get_or_init(|| self.read_through(account, key, now)).await.clone();
        {
            let mut inflight = s.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if inflight.get(account).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                inflight.remove(account);
            }
        }
        match result {
            Ok(cached) => Lookup::Fresh(cached),
            Err(()) => last_known.map_or(Lookup::Unavailable, Lookup::Stale),
        }
    }

    async fn read_through(&self, account: &AccountId, key: Key, now: DateTime<Utc>) -> Result<Cached, ()> {
        let s = &self.shared;
        let epoch = s.epoch.load(SeqCst);
        let generation = s.generation.load(SeqCst);
        match s.store.load(account).await {
            Ok(state) => {
                let cached = Cached::from_state(state, s.keep_dues.load(Relaxed));
                let entry = Entry::new(&cached, epoch, s.ticks.at(key, now.timestamp_micros()));
                let mut entries = s.entries.write();
                // An invalidation that overlapped the read may describe a
                // write the read did not see: then the entry is not kept
                // (nor an older one), and no other entry makes room for it.
                if s.generation.load(SeqCst) == generation {
                    entries.insert(key, entry);
                } else {
                    entries.remove(key);
                }
                Ok(cached)
            }
            Err(e) => {
                self.note_store_error(&e, now);
                Err(())
            }
        }
    }

    fn note_store_error(&self, e: &StoreError, now: DateTime<Utc>) {
        let s = &self.shared;
        let now = now.timestamp_millis();
        let previous = s.down_until_ms.swap(now.saturating_add(s.retry_after_ms), SeqCst);
        metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "load").increment(1);
        // One log line per outage window, not one per request.
        if previous < now {
            tracing::warn!(error = %e, "billing store unavailable; serving cached state and the on_store_error policy");
        }
    }

    /// Forgets one account (the listener does this on invalidation).
    pub fn evict(&self, account: &str) {
        evict(&self.shared, account);
    }

    /// Marks every entry unverified.
    // Reached from outside through `__internals` (feature `test-util`).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub fn invalidate_all(&self) {
        invalidate_all(&self.shared);
    }

    /// How many accounts are cached.
    pub fn len(&self) -> usize {
        self.shared.entries.read().len()
    }

    /// Whether nothing is cached.
    // Reached from outside through `__internals` (feature `test-util`).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}

fn evict(s: &Shared, account: &str) {
    s.generation.fetch_add(1, SeqCst);
    let key = s.entries.key(account);
    s.entries.write().remove(key);
}

fn invalidate_all(s: &Shared) {
    s.generation.fetch_add(1, SeqCst);
    s.epoch.fetch_add(1, SeqCst);
}

async fn listen(shared: std::sync::Weak<Shared>, mut rx: broadcast::Receiver<Invalidation>) {
    loop {
        let message = rx.recv().await;
        let Some(s) = shared.upgrade() else { return };
        match message {
            Ok(Invalidation::Account(account)) => {
                metrics::counter!(crate::metrics::CACHE_EVICTIONS, "reason" => "write").increment(1);
                evict(&s, account.as_str());
            }
            // A resubscription, or missed messages: nothing cached can be
            // trusted without a re-read.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                metrics::counter!(crate::metrics::CACHE_EVICTIONS, "reason" => "resync").increment(1);
                invalidate_all(&s);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `[cache]`: the in-process cache in front of the store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `capacity`: most accounts held.
    pub capacity: usize,
    /// `ttl`: safety-net re-read interval.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `retry_after`: pause after a store error before trying again.
    #[serde(deserialize_with = "de_duration")]
    pub retry_after: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { capacity: 1_000_000, ttl: Duration::from_secs(300), retry_after: Duration::from_secs(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Change, Currency, UnpaidInvoice};
    use crate::MemoryStore;

    fn debt() -> Change {
        let since = Utc::now();
        Change::InvoiceUnpaid {
            id: "in_1".into(),
            invoice: UnpaidInvoice { amount_due: 1200, currency: Currency::new("eur").unwrap(), hosted_url: None, number: None, since, observed: since, uncollectible: false, next_attempt: None },
        }
    }

    /// The guarantee the compact entries must keep: once a write's
    /// invalidation is heard, the old entry is gone — for that account
    /// only — and the next lookup reads the write.
    #[tokio::test]
    async fn an_invalidated_account_is_never_served_stale() {
        let store = Arc::new(MemoryStore::new());
        let now = Utc::now();
        let ids: Vec<AccountId> = (0..10_000).map(|i| AccountId::new(&format!("acct-{i}")).unwrap()).collect();
        for id in ids.iter().step_by(2) {
            store.apply(id, None, &[Change::LinkCustomer(format!("cus_{}", id.as_str()))]).await.unwrap();
        }
        // Built after those writes: their invalidations are not its news.
        let cache = StateCache::new(store.clone(), 20_000, Duration::from_secs(3600), Duration::from_secs(1));
        for (i, id) in ids.iter().enumerate() {
            let got = cache.get(id, now).await.cached().unwrap();
            assert!(matches!((i % 2, got), (0, Cached::Good) | (1, Cached::Unknown)));
        }
        for id in ids.iter().step_by(1_000) {
            store.apply(id, None, &[debt()]).await.unwrap();
            // The listener runs on this runtime: yield until it evicted.
            while cache.get_fresh(id.as_str(), now).is_some() {
                tokio::task::yield_now().await;
            }
            let Lookup::Fresh(Cached::State(s)) = cache.get(id, now).await else { panic!("{id}: the write was not read") };
            assert!(s.past_due_since().is_some());
        }
        // Nobody else's entry went with them.
        let kept = ids.iter().filter(|id| cache.get_fresh(id.as_str(), now).is_some()).count();
        assert_eq!(kept, ids.len());
        // Marked unverified: nothing is current until re-read, and a
        // re-read is current again.
        cache.invalidate_all();
        assert!(ids.iter().all(|id| cache.get_fresh(id.as_str(), now).is_none()));
        assert!(matches!(cache.get(&ids[1], now).await, Lookup::Fresh(Cached::Unknown)));
        assert!(cache.get_fresh(ids[1].as_str(), now).is_some());
    }

    #[tokio::test]
    async fn eviction_keeps_the_cache_within_capacity() {
        let store = Arc::new(MemoryStore::new());
        let cache = StateCache::new(store, 1_000, Duration::from_secs(3600), Duration::from_secs(1));
        for i in 0..5_000 {
            cache.get(&AccountId::new(&format!("acct-{i}")).unwrap(), Utc::now()).await;
        }
        assert!(cache.len() <= 1_000, "{}", cache.len());
    }
}
