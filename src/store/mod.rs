//! Where billing state lives: the [`Store`] trait and its two backends.
//!
//! - [`MemoryStore`]: embedded, for the demo, tests and trying things out.
//! - [`RedisStore`]: shared by every app instance; single node or Cluster.
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
use crate::state::{BillingState, Change};

mod memory;
mod redis;

pub use self::memory::MemoryStore;
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

    /// Remembers that Stripe customer `customer` belongs to `account`.
    async fn link_customer(&self, customer: &str, account: &AccountId) -> Result<(), StoreError>;

    /// The account a Stripe customer was linked to, if any.
    async fn customer_account(&self, customer: &str) -> Result<Option<AccountId>, StoreError>;

    /// A receiver of invalidations: every changed account, from any instance.
    fn invalidations(&self) -> broadcast::Receiver<Invalidation>;

    /// Whether the backend answers right now.
    async fn ping(&self) -> Result<(), StoreError>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

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
    pub fn parse(url: &str) -> Result<Self, String> {
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
                return Err("redis+cluster:// needs at least one host:port".into());
            }
            return Ok(Self::Cluster(nodes));
        }
        Err(format!(
            "{url:?} is not a store URL; use memory://, redis://host:port, rediss://host:port or redis+cluster://host1:port1,host2:port2"
        ))
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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::from(&crate::config::Config::default().store)
    }
}

impl From<&crate::config::StoreConfig> for RedisOptions {
    fn from(c: &crate::config::StoreConfig) -> Self {
        Self {
            prefix: c.prefix.clone(),
            read_timeout: c.read_timeout,
            write_timeout: c.write_timeout,
            dedupe_ttl: c.dedupe_ttl,
        }
    }
}

/// Opens the store named by `config.url`.
pub async fn connect(config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match StoreUrl::parse(&config.url).map_err(StoreError::Backend)? {
        StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
        url => Ok(Arc::new(RedisStore::connect(url, RedisOptions::from(config)).await?)),
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
        Err(StoreError::Backend(format!("{customer:?} is not a Stripe customer id")))
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
