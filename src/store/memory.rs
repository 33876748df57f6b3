//! The embedded store: one process, state lost on exit.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{fold, index_moves, lookup_moves, record, count_ended, Lookup, Applied, AuditDraft, AuditEntry, Index, IndexEntry, Invalidation, LinkSource, Linked, Store, StoreError};
use crate::account::AccountId;
use crate::recovery::{AtRisk, EpisodeRecord, Range, Recorder, Tally};
use crate::state::{BillingState, Change};

/// How long processed event ids are remembered, as in Redis by default.
const DEDUPE_TTL: Duration = Duration::from_secs(35 * 86_400);

/// Audit entries kept, as `admin.audit_max_len` does for Redis.
const AUDIT_MAX: usize = 10_000;

/// An in-process [`Store`] (`memory://`): same semantics as Redis, nothing
/// shared, nothing kept after exit.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    invalidations: broadcast::Sender<Invalidation>,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<AccountId, BillingState>,
    seen: HashMap<(AccountId, Box<str>), Instant>,
    customers: HashMap<String, (AccountId, LinkSource)>,
    indexes: HashMap<Index, BTreeSet<String>>,
    lookups: HashMap<Lookup, BTreeSet<String>>,
    claims: HashMap<(AccountId, String), (String, Instant)>,
    audit: Vec<AuditEntry>,
    audit_seq: u64,
    recorder: Recorder,
    /// Each account's episode records, as counted in `figures`.
    records: HashMap<AccountId, Vec<EpisodeRecord>>,
    figures: Tally,
    at_risk: Option<AtRisk>,
}

impl Inner {
    /// Folds `changes` into the account's state (and its index entries);
    /// returns what was applied and the state before.
    fn fold_in(&mut self, account: &AccountId, changes: &[Change]) -> (Applied, Option<BillingState>) {
        let before = self.states.get(account).cloned();
        let (next, changed) = fold(before.as_ref(), changes);
        if !changed {
            return (Applied::Unchanged(next), before);
        }
        for (index, old, new) in index_moves(before.as_ref(), &next, account) {
            let set = self.indexes.entry(index).or_default();
            if let Some(old) = old {
                set.remove(&old);
            }
            if let Some(new) = new {
                set.insert(new);
            }
        }
        for (lookup, gone, added) in lookup_moves(before.as_ref(), &next, account) {
            let set = self.lookups.entry(lookup).or_default();
            for m in gone {
                set.remove(&m);
            }
            set.extend(added);
        }
        let stored = self.records.remove(account).unwrap_or_default();
        match record(&self.recorder, &stored, &next) {
            Some((records, delta)) => {
                self.figures.merge(&delta);
                self.figures.drop_zeros();
                count_ended(&stored, &records);
                if !records.is_empty() {
                    self.records.insert(account.clone(), records);
                }
            }
            None if !stored.is_empty() => {
                self.records.insert(account.clone(), stored);
            }
            None => {}
        }
        self.states.insert(account.clone(), next.clone());
        (Applied::Changed(next), before)
    }

    /// Appends an audit entry; returns its id.
    fn append_audit(&mut self, entry: &AuditEntry) -> String {
        self.audit_seq += 1;
        let id = format!("{}-{}", entry.at.timestamp_millis(), self.audit_seq);
        self.audit.push(AuditEntry { id: id.clone(), ..entry.clone() });
        if self.audit.len() > AUDIT_MAX {
            let excess = self.audit.len() - AUDIT_MAX;
            self.audit.drain(..excess);
        }
        id
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self { inner: Mutex::default(), invalidations: broadcast::channel(1024).0 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied state:
        // the new state is computed first and swapped in whole.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, account: &AccountId) -> Result<Option<BillingState>, StoreError> {
        Ok(self.lock().states.get(account).cloned())
    }

    async fn apply(
        &self,
        account: &AccountId,
        event_id: Option<&str>,
        changes: &[Change],
    ) -> Result<Applied, StoreError> {
        let applied = {
            let mut inner = self.lock();
            let now = Instant::now();
            if let Some(id) = event_id {
                let key = (account.clone(), Box::from(id));
                if inner.seen.get(&key).is_some_and(|&at| now.duration_since(at) < DEDUPE_TTL) {
                    return Ok(Applied::Duplicate);
                }
                if inner.seen.len() >= 100_000 {
                    inner.seen.retain(|_, at| now.duration_since(*at) < DEDUPE_TTL);
                }
                inner.seen.insert(key, now);
            }
            inner.fold_in(account, changes).0
        };
        if matches!(applied, Applied::Changed(_)) {
            // No receivers is fine: nobody caches.
            let _ = self.invalidations.send(Invalidation::Account(account.clone()));
        }
        Ok(applied)
    }

    async fn apply_audited(
        &self,
        account: &AccountId,
        changes: &[Change],
        draft: &AuditDraft<'_>,
    ) -> Result<(Applied, AuditEntry), StoreError> {
        let (applied, entry) = {
            let mut inner = self.lock();
            let (applied, before) = inner.fold_in(account, changes);
            let after = applied.state().cloned().unwrap_or_default();
            let entry = draft.entry(account, before.as_ref(), &after, chrono::Utc::now());
            let id = inner.append_audit(&entry);
            (applied, AuditEntry { id, ..entry })
        };
        if matches!(applied, Applied::Changed(_)) {
            let _ = self.invalidations.send(Invalidation::Account(account.clone()));
        }
        Ok((applied, entry))
    }

    async fn link_customer(&self, customer: &str, account: &AccountId, source: LinkSource) -> Result<Linked, StoreError> {
        super::check_customer(customer)?;
        let mut inner = self.lock();
        let current = inner.customers.get(customer).cloned();
        let (linked, write) = super::decide_link(current, account, source);
        if write {
            inner.customers.insert(customer.to_owned(), (account.clone(), source));
        }
        Ok(linked)
    }

    async fn customer_account(&self, customer: &str) -> Result<Option<AccountId>, StoreError> {
        super::check_customer(customer)?;
        Ok(self.lock().customers.get(customer).map(|(a, _)| a.clone()))
    }

    async fn scan_index(
        &self,
        index: Index,
        min: i64,
        max: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let inner = self.lock();
        let Some(set) = inner.indexes.get(&index) else { return Ok(Vec::new()) };
        // Every member with a score >= min sorts at or after "<min>:".
        let lo = format!("{:012}:", min.clamp(0, super::NEVER));
        let start = match cursor {
            Some(c) if c.as_bytes() >= lo.as_bytes() => std::ops::Bound::Excluded(c.to_owned()),
            _ => std::ops::Bound::Included(lo),
        };
        Ok(set
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|m| IndexEntry::parse(m))
            .take_while(|e| e.score <= max)
            .filter(|e| e.score >= min)
            .take(limit)
            .collect())
    }

    async fn lookup(&self, by: Lookup, prefix: &str, limit: usize) -> Result<Vec<(String, AccountId)>, StoreError> {
        let inner = self.lock();
        let Some(set) = inner.lookups.get(&by) else { return Ok(Vec::new()) };
        Ok(set
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|m| m.starts_with(prefix))
            .filter_map(|m| Some((m.clone(), by.account_of(m)?)))
            .take(limit)
            .collect())
    }

    async fn claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.claims.retain(|_, (_, until)| *until > now);
        let key = (account.clone(), what.to_owned());
        if inner.claims.contains_key(&key) {
            return Ok(false);
        }
        inner.claims.insert(key, (holder.to_owned(), now + lease));
        Ok(true)
    }

    async fn renew_claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.claims.get_mut(&(account.clone(), what.to_owned())) {
            Some((h, until)) if h == holder && *until > now => {
                *until = now + lease;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<String, StoreError> {
        Ok(self.lock().append_audit(entry))
    }

    async fn audit_log(
        &self,
        account: Option<&AccountId>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let position = |id: &str| inner.audit.iter().position(|e| e.id == id);
        let end = before.and_then(position).unwrap_or(inner.audit.len());
        Ok(inner.audit[..end]
            .iter()
            .rev()
            .filter(|e| account.is_none_or(|a| e.account.as_deref() == Some(a.as_str())))
            .take(limit)
            .cloned()
            .collect())
    }

    fn keep_figures(&self, recorder: Recorder) {
        self.lock().recorder = recorder;
    }

    async fn figures(&self, range: Range) -> Result<Tally, StoreError> {
        Ok(self.lock().figures.days(range.from, range.to))
    }

    async fn put_at_risk(&self, at_risk: &AtRisk) -> Result<(), StoreError> {
        self.lock().at_risk = Some(at_risk.clone());
        Ok(())
    }

    async fn at_risk(&self) -> Result<Option<AtRisk>, StoreError> {
        Ok(self.lock().at_risk.clone())
    }

    fn invalidations(&self) -> broadcast::Receiver<Invalidation> {
        self.invalidations.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
