//! Where billing state lives: the [`Store`] trait and its two backends.
//!
//! - [`MemoryStore`]: embedded, for the demo, tests and trying things out.
//! - `RedisStore` (feature `redis`): shared by every app instance; single node or Cluster.
//!
//! Both fold changes in with the same pure [`BillingState::apply`], and both
//! apply "once per event id" atomically: Redis with a compare-and-set Lua
//! script, memory under a lock. Every write that changes a state announces
//! the account on an invalidation channel, which the gate's cache listens to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::account::AccountId;
use crate::recovery::{AtRisk, EpisodeRecord, Range, Recorder, Tally};
use crate::state::{BillingState, Change};

mod figures;
mod index;
pub use self::figures::{refresh as refresh_at_risk, report};
pub use self::index::{Index, IndexEntry, Lookup, NEVER};
pub(crate) use self::index::{index_moves, lookup_moves};
#[cfg(feature = "test-util")]
pub mod conformance;
mod memory;
mod settings;
pub use self::settings::StoreConfig;
#[cfg(feature = "redis")]
mod redis;

pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;

/// Why a store call failed. The gate turns these into its outage policy,
/// the webhook into a 503 (so Stripe retries).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or failed.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The backend did not answer in time.
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    /// Stored data could not be decoded.
    #[error("stored state for account {account} is unreadable: {message}")]
    Decode {
        /// The account.
        account: String,
        /// Why.
        message: String,
    },
    /// Too many concurrent writers kept winning the race for one account.
    #[error("gave up after {0} conflicting concurrent writes")]
    Contended(u32),
    /// The caller's input cannot be stored (a malformed customer id, a bad
    /// cursor). Retrying the same call cannot help: this is not an outage.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl StoreError {
    /// Whether the same call may succeed later (an outage, a timeout, a
    /// race), as opposed to input that will never be accepted.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StoreError::InvalidInput(_))
    }
}

/// What [`Store::apply`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Applied {
    /// The changes were folded in; here is the state they produced.
    Changed(BillingState),
    /// The changes were already reflected (nothing written but the event id).
    Unchanged(BillingState),
    /// The event id was processed before: nothing was done.
    Duplicate,
}

impl Applied {
    /// The resulting state, unless the event was a duplicate.
    pub fn state(&self) -> Option<&BillingState> {
        match self {
            Applied::Changed(s) | Applied::Unchanged(s) => Some(s),
            Applied::Duplicate => None,
        }
    }
}

/// A message on the invalidation channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// This account's state changed.
    Account(AccountId),
    /// Anything may have changed (the listener reconnected after a gap):
    /// every cached state must be re-read before it is trusted again.
    All,
}

/// A place to keep billing state. See the [module docs](self).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The account's state, or `None` if the store has never heard of it.
    async fn load(&self, account: &AccountId) -> Result<Option<BillingState>, StoreError>;

    /// Folds `changes` into the account's state in one atomic step.
    ///
    /// With an `event_id`, the step happens at most once per id (within the
    /// dedupe window): a second call answers [`Applied::Duplicate`], even
    /// when two instances race with the same event.
    async fn apply(
        &self,
        account: &AccountId,
        event_id: Option<&str>,
        changes: &[Change],
    ) -> Result<Applied, StoreError>;

    /// Folds `changes` in and appends the audit entry `draft` describes, in
    /// one atomic step: the entry's `before` is read in that step, and if the
    /// entry cannot be written the change is not made either. Returns what
    /// was applied and the entry written (with its id).
    ///
    /// The entry goes to the account's audit log atomically; the global log
    /// gets a copy right after (a crash in between leaves it out of the
    /// global log, never out of the account's).
    async fn apply_audited(
        &self,
        account: &AccountId,
        changes: &[Change],
        draft: &AuditDraft<'_>,
    ) -> Result<(Applied, AuditEntry), StoreError>;

    /// Links Stripe customer `customer` to `account`, atomically moving it
    /// away from any account it was linked to before (the link is the one
    /// source of truth for "whose customer is this"). A [`LinkSource::Learned`]
    /// link never replaces a [`LinkSource::Admin`] link to another account:
    /// that answers [`Linked::Refused`] and changes nothing.
    async fn link_customer(&self, customer: &str, account: &AccountId, source: LinkSource) -> Result<Linked, StoreError>;

    /// The account a Stripe customer is linked to, if any.
    async fn customer_account(&self, customer: &str) -> Result<Option<AccountId>, StoreError>;

    /// Accounts in `index` whose score lies in `min..=max`, in (score,
    /// account) order, after `cursor` (an [`IndexEntry::cursor`]), at most
    /// `limit`. Indexes are kept on every write; an entry may be stale
    /// (callers verify against the account's state).
    async fn scan_index(
        &self,
        index: Index,
        min: i64,
        max: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    /// Accounts whose [`Lookup`] member starts with `prefix` (case as
    /// stored: ids as written, e-mail addresses lower case), in member
    /// order, at most `limit`: the members, each with its account. Kept on
    /// every write like the indexes.
    async fn lookup(&self, by: Lookup, prefix: &str, limit: usize) -> Result<Vec<(String, AccountId)>, StoreError>;

    /// Reserves `what` (a notice) for `holder` for `lease`: `true` for
    /// exactly one caller until the lease runs out, then for exactly one
    /// caller again. `holder` is unique per claim attempt (see
    /// [`Store::renew_claim`]).
    async fn claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Extends `holder`'s claim on `what` by `lease` from now; `false` when
    /// the claim is no longer `holder`'s (it lapsed, or another took it).
    async fn renew_claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Appends an entry to the account's audit log and to the global one;
    /// returns the entry's id.
    async fn audit(&self, entry: &AuditEntry) -> Result<String, StoreError>;

    /// Audit entries, newest first: the account's, or the global log's;
    /// only those older than the entry id `before`, at most `limit`.
    async fn audit_log(
        &self,
        account: Option<&AccountId>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Classifies debt episodes with `recorder` from now on (a store starts
    /// with the standard ladder's). Every write that changes a state also
    /// updates the account's [episode records](crate::recovery) and the
    /// recovery counters, in the same atomic step (see [`Store::figures`]).
    fn keep_figures(&self, recorder: Recorder);

    /// The recovery counters of the episodes that started in `range`:
    /// exactly what every committed write added, whatever order events
    /// arrived in.
    async fn figures(&self, range: Range) -> Result<Tally, StoreError>;

    /// Stores the latest count of accounts at risk
    /// ([`refresh_at_risk`] computes it).
    async fn put_at_risk(&self, at_risk: &AtRisk) -> Result<(), StoreError>;

    /// The latest count of accounts at risk, when one was stored.
    async fn at_risk(&self) -> Result<Option<AtRisk>, StoreError>;

    /// A receiver of invalidations: every changed account, from any instance.
    fn invalidations(&self) -> broadcast::Receiver<Invalidation>;

    /// Whether the backend answers right now.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Who set a customer link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkSource {
    /// An operator, through the admin API: wins over metadata.
    Admin,
    /// Learned from Stripe metadata (an event, the API, a sync).
    Learned,
}

/// What [`Store::link_customer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Linked {
    /// The customer was linked to no account before.
    New,
    /// The customer was already linked to this account.
    Unchanged,
    /// The customer was moved here from this account.
    Moved {
        /// The account it belonged to before.
        from: AccountId,
    },
    /// A learned link disagreed with an admin link; the admin link stays.
    Refused {
        /// The account the admin linked the customer to.
        admin: AccountId,
    },
}

/// What an audited change records; see [`Store::apply_audited`].
#[derive(Clone, Copy, Debug)]
pub struct AuditDraft<'a> {
    /// Who (the admin token's name).
    pub who: &'a str,
    /// What (`override.set`, `customer.linked`, …).
    pub action: &'a str,
    /// Why, when given.
    pub reason: Option<&'a str>,
    /// The part of the state recorded as `before` and `after`.
    pub pick: fn(&BillingState) -> serde_json::Value,
    /// One more fact recorded in `after` (e.g. `("moved_from", "acme")`).
    pub extra: Option<(&'a str, &'a str)>,
}

impl AuditDraft<'_> {
    /// The entry for a change from `before` to `after`, at `at`.
    pub(crate) fn entry(&self, account: &AccountId, before: Option<&BillingState>, after: &BillingState, at: chrono::DateTime<chrono::Utc>) -> AuditEntry {
        let mut after_value = (self.pick)(after);
        if let (Some((k, v)), Some(obj)) = (self.extra, after_value.as_object_mut()) {
            obj.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        } else if let Some((k, v)) = self.extra {
            after_value = serde_json::json!({ "value": after_value, k: v });
        }
        AuditEntry {
            id: String::new(),
            at,
            who: self.who.to_owned(),
            action: self.action.to_owned(),
            account: Some(account.to_string()),
            before: before.map_or(serde_json::Value::Null, self.pick),
            after: after_value,
            reason: self.reason.map(str::to_owned),
        }
    }
}

/// Links `customer` to `account` and finishes a move: the account it
/// belonged to before forgets it. Readers are never confused in between:
/// the link decides whose customer it is (pay links check it), the old
/// account's copy is only a listing.
pub async fn move_customer(store: &dyn Store, customer: &str, account: &AccountId, source: LinkSource) -> Result<Linked, StoreError> {
    let linked = store.link_customer(customer, account, source).await?;
    if let Linked::Moved { from } = &linked {
        tracing::info!(customer, from = %from, to = %account, "Stripe customer moved to another account");
        store.apply(from, None, &[Change::UnlinkCustomer(customer.to_owned())]).await?;
    }
    Ok(linked)
}

/// The stored form of a customer link: `admin|<account>` or `<account>`
/// (`|` is never part of an account id).
#[cfg(feature = "redis")]
pub(crate) fn encode_link(account: &AccountId, source: LinkSource) -> String {
    match source {
        LinkSource::Admin => format!("admin|{account}"),
        LinkSource::Learned => account.to_string(),
    }
}

/// Parses [`encode_link`]'s form: the account, and whether an admin set it.
#[cfg(feature = "redis")]
pub(crate) fn decode_link(raw: &str) -> Option<(AccountId, LinkSource)> {
    match raw.strip_prefix("admin|") {
        Some(a) => Some((AccountId::new(a).ok()?, LinkSource::Admin)),
        None => Some((AccountId::new(raw).ok()?, LinkSource::Learned)),
    }
}

/// The link decision both stores make, given the current stored link.
pub(crate) fn decide_link(current: Option<(AccountId, LinkSource)>, account: &AccountId, source: LinkSource) -> (Linked, bool) {
    match current {
        None => (Linked::New, true),
        Some((a, s)) if &a == account => (Linked::Unchanged, s != LinkSource::Admin && source == LinkSource::Admin),
        Some((a, LinkSource::Admin)) if source == LinkSource::Learned => (Linked::Refused { admin: a }, false),
        Some((a, _)) => (Linked::Moved { from: a }, true),
    }
}

/// One audit log entry: who changed what, from what, to what, when, why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The entry's id (set by the store; sortable, newest greatest).
    #[serde(default)]
    pub id: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who (the admin token's name, or `"sync"`).
    pub who: String,
    /// What (`override.set`, `override.removed`, `customer.linked`, `sync`).
    pub action: String,
    /// The account, unless the action concerns none.
    pub account: Option<String>,
    /// The relevant state before.
    #[cfg_attr(feature = "admin", schema(value_type = Object))]
    pub before: serde_json::Value,
    /// The relevant state after.
    #[cfg_attr(feature = "admin", schema(value_type = Object))]
    pub after: serde_json::Value,
    /// Why, when given.
    pub reason: Option<String>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// A `store.url` that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadStoreUrl(pub String);

/// A parsed `store.url`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory://`
    Memory,
    /// `redis://…` or `rediss://…`
    Redis(String),
    /// `redis+cluster://host1:port1,host2:port2,…`, as `redis://` node URLs.
    Cluster(Vec<String>),
}

impl StoreUrl {
    /// Parses a `store.url`; the error says what forms are accepted.
    pub fn parse(url: &str) -> Result<Self, BadStoreUrl> {
        if url == "memory://" {
            return Ok(Self::Memory);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Self::Redis(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            let nodes: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{auth}{h}"))
                .collect();
            if nodes.is_empty() {
                return Err(BadStoreUrl("redis+cluster:// needs at least one host:port".into()));
            }
            return Ok(Self::Cluster(nodes));
        }
        Err(BadStoreUrl(format!(
            "{url:?} is not a store URL; use memory://, redis://host:port, rediss://host:port or redis+cluster://host1:port1,host2:port2"
        )))
    }
}

/// Settings a Redis store needs beyond its URL.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key and of the invalidation channel.
    pub prefix: String,
    /// Longest a read may wait.
    pub read_timeout: Duration,
    /// Longest a write may wait.
    pub write_timeout: Duration,
    /// How long processed event ids are remembered.
    pub dedupe_ttl: Duration,
    /// Audit entries kept per stream.
    pub audit_max_len: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::from(&StoreConfig::default())
    }
}

impl From<&StoreConfig> for RedisOptions {
    fn from(c: &StoreConfig) -> Self {
        Self {
            prefix: c.prefix.clone(),
            read_timeout: c.read_timeout,
            write_timeout: c.write_timeout,
            dedupe_ttl: c.dedupe_ttl,
            audit_max_len: c.audit_max_len,
        }
    }
}

/// Opens the store named by `config.url`.
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match StoreUrl::parse(&config.url).map_err(|e| StoreError::InvalidInput(e.to_string()))? {
        StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "redis")]
        url => Ok(Arc::new(RedisStore::connect(url, RedisOptions::from(config)).await?)),
        #[cfg(not(feature = "redis"))]
        _ => Err(StoreError::InvalidInput(format!("{} needs pastdue's `redis` feature", config.url))),
    }
}

/// Checks a Stripe customer id before it becomes part of a key.
pub(crate) fn check_customer(customer: &str) -> Result<(), StoreError> {
    let ok = !customer.is_empty()
        && customer.len() <= 255
        && customer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!("{customer:?} is not a Stripe customer id")))
    }
}

/// Folds `changes` into `current` the way every backend does, stamping the
/// update time when something changed.
pub(crate) fn fold(current: Option<&BillingState>, changes: &[Change]) -> (BillingState, bool) {
    let mut next = current.cloned().unwrap_or_default();
    let mut changed = false;
    for change in changes {
        changed |= next.apply(change);
    }
    if changed {
        next.set_updated_at(chrono::Utc::now());
    }
    (next, changed)
}

/// The episode records a write stores and the counters it adds, given the
/// records stored with the state before; also counts newly ended episodes
/// in the metrics. `None` when the records did not change.
pub(crate) fn record(recorder: &Recorder, stored: &[EpisodeRecord], after: &BillingState) -> Option<(Vec<EpisodeRecord>, Tally)> {
    let (records, delta) = recorder.next(stored, after);
    (records != stored).then_some((records, delta))
}

/// Counts the episodes a committed write ended.
pub(crate) fn count_ended(stored: &[EpisodeRecord], records: &[EpisodeRecord]) {
    for r in crate::recovery::newly_closed(stored, records) {
        crate::metrics::episode_ended(r);
    }
}

/// A claim holder id ([`Store::claim`]), unique per call across instances:
/// a per-process random part and a sequence number.
#[cfg_attr(not(any(feature = "stripe", feature = "notify-email", feature = "notify-webhook")), allow(dead_code))]
pub(crate) fn holder_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static INSTANCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // RandomState is seeded from the OS's randomness, per process.
    let instance = *INSTANCE.get_or_init(|| std::collections::hash_map::RandomState::new().build_hasher().finish());
    format!("{instance:016x}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}
