//! Reconciliation: the debts Paddle knows and pastdue never heard of (every
//! notification about them lost), read from Paddle's API.
//!
//! Past-due transactions and subscriptions are listed
//! (`GET /transactions?status=past_due`, `GET /subscriptions?status=past_due`)
//! and folded in like their notifications, with each entity's own
//! `updated_at` as the time, so a newer notification still wins. Debts
//! pastdue already knows are settled by verification and the debt sweep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::event::{self, Notification};
use super::mapper::Mapper;
use super::{ApiError, PaddleConfig};
use crate::account::AccountId;
use crate::settings::ConfigError;
use crate::state::{BillingState, Change};
use crate::store::{Applied, Store};

/// At most this many entities of each kind are read per run.
const MAX_ENTITIES: usize = 20_000;

/// What a Paddle sync run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// Past-due transactions read.
    pub transactions: usize,
    /// Past-due subscriptions read.
    pub subscriptions: usize,
    /// Accounts whose state changed.
    pub accounts_changed: usize,
    /// Entities whose customer maps to no account.
    pub unmapped: usize,
}

/// Why a sync run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// `paddle.api_key` is not set.
    #[error("sync needs a Paddle API key: set paddle.api_key (PASTDUE_PADDLE__API_KEY)")]
    NoApiKey,
    /// Paddle's API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed, or an account could not be found right now.
    #[error("{0}")]
    Store(String),
}

fn time_of(entity: &Value) -> Option<DateTime<Utc>> {
    let raw = entity.get("updated_at")?.as_str()?;
    DateTime::parse_from_rfc3339(raw).ok().filter(|t| crate::state::sane_time(t.timestamp()).is_some()).map(|t| t.with_timezone(&Utc))
}

/// One sync over `[paddle]` on `store`; only `only`'s changes are applied
/// when given.
pub async fn sync(config: &PaddleConfig, store: Arc<dyn Store>, only: Option<&AccountId>) -> Result<SyncReport, SyncError> {
    let mapper = Mapper::new(config, store).map_err(|e| SyncError::Store(e.to_string()))?;
    run(&mapper, only).await
}

async fn run(mapper: &Mapper, only: Option<&AccountId>) -> Result<SyncReport, SyncError> {
    let api = mapper.api.as_ref().ok_or(SyncError::NoApiKey)?;
    let now = Utc::now();
    let mut report = SyncReport::default();
    let mut by_account: BTreeMap<AccountId, Vec<Change>> = BTreeMap::new();
    let transactions = api.list("/transactions?status=past_due&per_page=200", MAX_ENTITIES).await?;
    let subscriptions = api.list("/subscriptions?status=past_due&per_page=200", MAX_ENTITIES).await?;
    report.transactions = transactions.len();
    report.subscriptions = subscriptions.len();
    let listed = transactions.into_iter().map(|t| ("transaction.past_due", t)).chain(subscriptions.into_iter().map(|s| ("subscription.past_due", s)));
    for (kind, entity) in listed {
        let Value::Object(data) = entity else { continue };
        let occurred_at = time_of(&Value::Object(data.clone())).unwrap_or(now);
        let n = Notification { event_id: String::new(), event_type: kind.to_owned(), occurred_at, data };
        let facts = match event::facts(&n, &mapper.metadata_key) {
            Ok(Some(facts)) => facts,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a Paddle entity pastdue cannot read");
                continue;
            }
        };
        match mapper.account(facts.customer.as_deref(), facts.account_hint.as_deref(), false).await {
            Ok(Some(account)) => by_account.entry(account).or_default().extend(facts.changes),
            Ok(None) => report.unmapped += 1,
            Err(e) => return Err(SyncError::Store(refusal(e))),
        }
    }
    for (account, mut changes) in by_account {
        if only.is_some_and(|o| *o != account) {
            continue;
        }
        let store = &mapper.store;
        // Only what the store does not know yet: a sync over a store in
        // step writes nothing.
        let known = store.load(&account).await.map_err(|e| SyncError::Store(e.to_string()))?.unwrap_or_default();
        changes.retain(|c| !already_known(&known, c));
        if changes.is_empty() {
            continue;
        }
        if let Applied::Changed(_) = store.apply(&account, None, &changes).await.map_err(|e| SyncError::Store(e.to_string()))? {
            report.accounts_changed += 1;
        }
    }
    tracing::info!(?report, "paddle sync finished");
    Ok(report)
}

fn refusal(e: crate::provider::Refused) -> String {
    match e {
        crate::provider::Refused::BadRequest(v) => v.to_string(),
        crate::provider::Refused::Unavailable(s) | crate::provider::Refused::Ignored(s) => s,
    }
}

fn already_known(state: &BillingState, change: &Change) -> bool {
    match change {
        Change::Subscription { id, fact } => state.subscriptions().get(id).is_some_and(|k| k.status == fact.status),
        Change::InvoiceUnpaid { id, .. } => state.unpaid().contains_key(id) || state.settled().contains_key(id),
        Change::UpcomingDue { key, .. } => state.upcoming().contains_key(key) || state.unpaid().contains_key(key) || state.settled().contains_key(key),
        Change::LinkCustomer(c) => state.customers().contains(c),
        _ => false,
    }
}

/// Runs [`sync`] every `paddle.sync_interval` (`None` when it is zero or
/// there is no API key). Failures are logged and retried at the next tick.
pub fn spawn_periodic_sync(config: &PaddleConfig, store: Arc<dyn Store>) -> Result<Option<JoinHandle<()>>, ConfigError> {
    let every = config.sync_interval;
    if every.is_zero() || config.api_key().is_none() {
        return Ok(None);
    }
    let mapper = Mapper::new(config, store)?;
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run(&mapper, None).await {
                tracing::warn!(error = %e, "paddle sync failed; retrying at the next interval");
            }
        }
    })))
}
