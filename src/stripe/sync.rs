//! Reconciliation: repair drift from missed webhooks by reading the truth
//! from the Stripe API.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::event::{id_at, invoice_hint, metadata, time_at, unpaid_invoice};
use super::api::Params;
use super::{MapError, Mapper};
use crate::account::AccountId;
use crate::state::{Change, SubscriptionFact};

/// What a sync run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Subscriptions read.
    pub subscriptions: usize,
    /// Invoices read.
    pub invoices: usize,
    /// Accounts whose state changed.
    pub accounts_changed: usize,
    /// Objects whose customer maps to no account.
    pub unmapped: usize,
}

fn transition(obj: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    obj.get("status_transitions").and_then(Value::as_object).and_then(|t| time_at(t, key))
}

fn customer_of(obj: &Map<String, Value>) -> Option<&str> {
    id_at(obj, "customer")
}

/// Lists subscriptions and invoices through the Stripe API and folds what
/// they say into the store, with the same "newer wins" rules as webhooks
/// (API facts are stamped with the time the listing started).
///
/// An invoice known only from sync starts the clock at its `due_date`, else
/// when it was finalized, else when it was created. Open invoices not yet
/// due are not debt. Invoices are listed whole, not filtered by status,
/// which works the same on Stripe and on emulators that lack the filter.
pub async fn sync(mapper: &Mapper) -> Result<SyncReport, MapError> {
    sync_only(mapper, None).await
}

/// [`sync`], applying only `only`'s changes when given (`pastdue sync
/// --account`); the listing is the same, so the report's counts of objects
/// read are too.
pub async fn sync_only(mapper: &Mapper, only: Option<&AccountId>) -> Result<SyncReport, MapError> {
    let api = mapper.api().ok_or_else(|| {
        MapError::Api(super::ApiError::Config("no stripe.api_key is configured".into()))
    })?;
    let now = Utc::now();
    let mut report = SyncReport::default();
    let mut by_account: BTreeMap<AccountId, Vec<Change>> = BTreeMap::new();

    let subscriptions = api.list_all("/subscriptions", &Params::from([("status".into(), "all".into())])).await?;
    report.subscriptions = subscriptions.len();
    for sub in subscriptions.iter().filter_map(Value::as_object) {
        let (Some(id), Some(status)) = (sub.get("id").and_then(Value::as_str), super::event::subscription_status(sub)) else {
            continue;
        };
        let hint = metadata(Some(sub), &mapper.metadata_key);
        let fact = SubscriptionFact { ladder: mapper.plan.ladder(sub), ..SubscriptionFact::new(status, now) };
        let change = Change::Subscription { id: id.to_owned(), fact };
        match mapper.account(customer_of(sub), hint).await? {
            Some(account) => by_account.entry(account).or_default().push(change),
            None => report.unmapped += 1,
        }
    }

    let invoices = api.list_all("/invoices", &Params::new()).await?;
    report.invoices = invoices.len();
    for inv in invoices.iter().filter_map(Value::as_object) {
        let Some(id) = inv.get("id").and_then(Value::as_str) else { continue };
        let due = time_at(inv, "due_date");
        let change = match inv.get("status").and_then(Value::as_str) {
            Some("paid") => Change::InvoiceSettled { id: id.into(), at: transition(inv, "paid_at").unwrap_or(now) },
            Some("void") => Change::InvoiceVoided { id: id.into(), at: transition(inv, "voided_at").unwrap_or(now) },
            Some("open" | "uncollectible") if due.is_none_or(|d| d <= now) => {
                let since = due.or_else(|| transition(inv, "finalized_at")).or_else(|| time_at(inv, "created")).unwrap_or(now);
                match unpaid_invoice(inv, since, now) {
                    Some(invoice) => Change::InvoiceUnpaid { id: id.into(), invoice },
                    None => continue,
                }
            }
            _ => continue,
        };
        let hint = invoice_hint(inv, &mapper.metadata_key);
        match mapper.account(customer_of(inv), hint).await? {
            Some(account) => {
                let changes = by_account.entry(account).or_default();
                changes.push(change);
                if let Some(c) = customer_of(inv) {
                    changes.push(Change::LinkCustomer(c.to_owned()));
                }
            }
            None => report.unmapped += 1,
        }
    }

    for (account, mut changes) in by_account {
        if only.is_some_and(|o| *o != account) {
            continue;
        }
        // Only what the store does not know yet: a status or invoice that is
        // already reflected is not re-stamped with this run's time, so a
        // sync over a store in step writes nothing.
        let known = mapper.store.load(&account).await?.unwrap_or_default();
        changes.retain(|c| !already_known(&known, c));
        if changes.is_empty() {
            continue;
        }
        if let crate::store::Applied::Changed(_) = mapper.store.apply(&account, None, &changes).await? {
            report.accounts_changed += 1;
        }
    }
    tracing::info!(?report, "stripe sync finished");
    Ok(report)
}

fn already_known(state: &crate::state::BillingState, change: &Change) -> bool {
    match change {
        Change::Subscription { id, fact } => state.subscriptions().get(id).is_some_and(|k| k.status == fact.status),
        Change::InvoiceUnpaid { id, .. } => state.unpaid().contains_key(id) || state.settled().contains_key(id),
        Change::InvoiceSettled { id, .. } => state.settlement(id) == Some(crate::state::Settlement::Paid),
        Change::InvoiceVoided { id, .. } => state.settled().contains_key(id),
        Change::LinkCustomer(c) => state.customers().contains(c),
        _ => false,
    }
}

/// Runs [`sync`] every `interval` in the background (`stripe.sync_interval`);
/// failures are logged and retried at the next tick.
pub fn spawn_periodic_sync(mapper: Mapper, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() || mapper.api().is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sync(&mapper).await {
                tracing::warn!(error = %e, "stripe sync failed; retrying at the next interval");
            }
        }
    }))
}
