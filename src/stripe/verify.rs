//! Verify before blocking: ask Stripe whether a debt still stands.
//!
//! A request about to get a debt `402` asks here first (the gate waits at
//! most `stripe.verify_timeout`). The unpaid invoices the state knows are
//! fetched by id, and subscriptions in a debt status too; what Stripe says
//! is paid, voided or live again is applied through the store like any
//! webhook fact, with the API object's own time where it has one
//! (`status_transitions.paid_at`), so a late webhook stays a no-op and a
//! newer failure still wins. Bounded three ways: one verification per
//! account per `stripe.verify_interval` across instances (a store claim,
//! taken before anything else, so one account's flood never spends what
//! others need), at most `stripe.verify_rate` per second per instance (a
//! token bucket), and concurrent blocked requests for one account share
//! one verification.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::api::{Params, StripeApi};
use crate::account::AccountId;
use crate::clock::SharedClock;
use crate::gate::GateLayer;
use crate::gate::recheck::{Recheck, Rechecked};
use super::StripeConfig;
use crate::settings::ConfigError;
use crate::state::{sane_time, BillingState, Change, Settlement, SubscriptionFact};
use crate::store::{Applied, Store};

/// At most this many objects are fetched per verification.
const MAX_OBJECTS: usize = 10;

/// The claim on a blocked request's verification (`verify_interval`).
pub(super) const VERIFY: &str = "verify";

/// The claim on a verification the customer asked for.
const ASKED: &str = "verify-asked";

/// At most one verification the customer asks for per account in this
/// window, across instances: clicking "Already paid? Check again" a
/// second time within it redirects without asking Stripe again.
pub(crate) const ASKED_INTERVAL: Duration = Duration::from_secs(10);

/// A turn the rate limiter refused is free again after this, so the
/// account's next request retries soon instead of after `verify_interval`.
const LIMITED_RETRY: Duration = Duration::from_secs(1);

type Flight = Arc<OnceCell<Option<BillingState>>>;

/// What one verification found.
pub(crate) enum Settled {
    /// Stripe says the debt is settled; the fresh state was applied.
    Paid(Box<BillingState>),
    /// Still owed (or nothing changed).
    Owed,
    /// The API or the store failed.
    Failed,
}

/// Whether this caller may verify `account` now (a store claim held for
/// `verify_interval`).
pub(crate) enum Turn {
    Mine,
    Recent,
    Failed,
}

pub(crate) struct Verifier {
    api: StripeApi,
    pub(super) store: Arc<dyn Store>,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) rate: NonZeroU32,
    inflight: Mutex<HashMap<AccountId, Flight>>,
    /// This instance's name in verification claims.
    holder: String,
    pub(super) clock: SharedClock,
    results: Results,
}

/// `pastdue_verifications_total{result}`, registered once.
struct Results {
    paid: metrics::Counter,
    owed: metrics::Counter,
    recent: metrics::Counter,
    limited: metrics::Counter,
    failed: metrics::Counter,
}

impl Results {
    fn new() -> Self {
        let c = |result: &'static str| metrics::counter!(crate::metrics::VERIFICATIONS, "result" => result);
        Self { paid: c("paid"), owed: c("owed"), recent: c("recent"), limited: c("limited"), failed: c("failed") }
    }
}

impl Verifier {
    /// A verifier from `[stripe]`, or `None` without an API key.
    pub(crate) fn new(config: &StripeConfig, store: Arc<dyn Store>, clock: SharedClock) -> Result<Option<Self>, ConfigError> {
        let Some(key) = config.api_key() else { return Ok(None) };
        let api = StripeApi::new(key, &config.api_base)
            .map_err(|e| ConfigError::invalid("stripe.api_key", e))?;
        let rate = NonZeroU32::new(config.verify_rate)
            .ok_or_else(|| ConfigError::key("stripe.verify_rate", "must be at least 1 per second"))?;
        crate::metrics::describe();
        Ok(Some(Self {
            api,
            store,
            interval: config.verify_interval,
            timeout: config.verify_timeout,
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            rate,
            inflight: Mutex::default(),
            holder: crate::store::holder_id(),
            clock,
            results: Results::new(),
        }))
    }

    /// The shared verification of `account`: the first blocked request
    /// starts it (in its own task, so a request that stops waiting does
    /// not cancel it), the others wait for the same answer.
    async fn verify_shared(self: Arc<Self>, account: AccountId, state: Arc<BillingState>) -> Option<BillingState> {
        let flight: Flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.entry(account.clone()).or_default().clone()
        };
        let me = self.clone();
        let key = account.clone();
        let result = flight
            .get_or_init(|| async move {
                let task = tokio::spawn(async move {
                    let timeout = me.timeout;
                    tokio::time::timeout(timeout, me.verify(&key, &state)).await.ok().flatten()
                });
                task.await.ok().flatten()
            })
            .await
            .clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(&account).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            inflight.remove(&account);
        }
        result
    }

    /// The blocked-request verification: at most one per account per
    /// `verify_interval` across instances, then rate-limited.
    ///
    /// The account's turn comes first: a debtor hammering the gate gets
    /// "recent" from its own claim and never spends a token another
    /// account's verification needs (each account takes at most one token
    /// per interval). A turn the limiter refuses is handed back after
    /// [`LIMITED_RETRY`], not held for the whole interval.
    async fn verify(&self, account: &AccountId, state: &BillingState) -> Option<BillingState> {
        match self.turn(account, VERIFY, self.interval).await {
            Turn::Mine => {}
            Turn::Recent | Turn::Failed => return None,
        }
        if !self.token(account, VERIFY).await {
            return None;
        }
        self.settle(account, state).await.paid()
    }

    /// A token from the per-instance limiter; without one, the account's
    /// claim on `what` is shortened to [`LIMITED_RETRY`].
    async fn token(&self, account: &AccountId, what: &str) -> bool {
        if self.limiter.check().is_ok() {
            return true;
        }
        self.results.limited.increment(1);
        if let Err(e) = self.store.renew_claim(account, what, &self.holder, LIMITED_RETRY).await {
            tracing::debug!(%account, error = %e, "cannot shorten a verification claim");
        }
        false
    }

    /// Claims `account`'s verification `what` for `lease` across
    /// instances.
    pub(super) async fn turn(&self, account: &AccountId, what: &str, lease: Duration) -> Turn {
        match self.store.claim(account, what, &self.holder, lease).await {
            Ok(true) => Turn::Mine,
            Ok(false) => {
                self.results.recent.increment(1);
                Turn::Recent
            }
            Err(e) => {
                tracing::warn!(%account, error = %e, "cannot claim a verification");
                self.results.failed.increment(1);
                Turn::Failed
            }
        }
    }

    /// The verification a customer asks for (back from the portal, or
    /// "Already paid? Check again"): at once, whatever `verify_interval`
    /// says — but at most once per [`ASKED_INTERVAL`] per account across
    /// instances (a debtor posting its own link in a loop makes one call,
    /// not one per post), still rate-limited and bounded by
    /// `verify_timeout`. Reads the state from the store; an account that
    /// owes nothing asks nothing.
    ///
    /// Whether Stripe was asked (and answered).
    pub(crate) async fn verify_now(&self, account: &AccountId) -> bool {
        let work = async {
            let state = match self.store.load(account).await {
                Ok(Some(state)) if state.past_due_since().is_some() => state,
                Ok(_) => return false,
                Err(e) => {
                    tracing::warn!(%account, error = %e, "cannot read the account to verify it");
                    self.results.failed.increment(1);
                    return false;
                }
            };
            if !matches!(self.turn(account, ASKED, ASKED_INTERVAL).await, Turn::Mine) || !self.token(account, ASKED).await {
                return false;
            }
            !matches!(self.settle(account, &state).await, Settled::Failed)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(asked) => asked,
            Err(_) => {
                self.results.failed.increment(1);
                false
            }
        }
    }

    /// Asks Stripe about `state`'s debts and applies what it says.
    pub(super) async fn settle(&self, account: &AccountId, state: &BillingState) -> Settled {
        let changes = match self.ask(state).await {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!(%account, error = %e, "Stripe verification failed");
                self.results.failed.increment(1);
                return Settled::Failed;
            }
        };
        if changes.is_empty() {
            self.results.owed.increment(1);
            return Settled::Owed;
        }
        match self.store.apply(account, None, &changes).await {
            Ok(Applied::Changed(fresh)) => {
                tracing::info!(%account, facts = changes.len(), "Stripe says the debt is settled; applied");
                self.results.paid.increment(1);
                Settled::Paid(Box::new(fresh))
            }
            // Nothing new for the store (a webhook or another instance got
            // there first, and a cache had not heard yet): what it holds
            // decides.
            Ok(applied) => match applied.state() {
                Some(fresh) if fresh.past_due_since().is_none() => {
                    self.results.paid.increment(1);
                    Settled::Paid(Box::new(fresh.clone()))
                }
                _ => {
                    self.results.owed.increment(1);
                    Settled::Owed
                }
            },
            Err(e) => {
                tracing::warn!(%account, error = %e, "cannot apply what Stripe said");
                self.results.failed.increment(1);
                Settled::Failed
            }
        }
    }

    /// What Stripe says now about the debts `state` records.
    async fn ask(&self, state: &BillingState) -> Result<Vec<Change>, super::ApiError> {
        let now = self.clock.now();
        let mut changes = Vec::new();
        for id in state.unpaid().keys().filter(|id| plain_id(id)).take(MAX_OBJECTS) {
            let invoice = self.api.get(&format!("/invoices/{id}"), &Params::new()).await?;
            match settled_at(&invoice, now) {
                Some((at, Settlement::Paid)) => changes.push(Change::InvoiceSettled { id: id.clone(), at }),
                Some((at, Settlement::Voided)) => changes.push(Change::InvoiceVoided { id: id.clone(), at }),
                None => {}
            }
        }
        let in_debt = state.subscriptions().iter().filter(|(id, s)| s.status.is_debt() && plain_id(id));
        for (id, known) in in_debt.take(MAX_OBJECTS) {
            let sub = self.api.get(&format!("/subscriptions/{id}"), &Params::new()).await?;
            let status = sub.as_object().and_then(super::event::subscription_status);
            if let Some(status) = status.filter(|s| !s.is_debt()) {
                // The plan's ladder stays what the last full report said.
                let fact = SubscriptionFact { ladder: known.ladder.clone(), ..SubscriptionFact::new(status, now) };
                changes.push(Change::Subscription { id: id.clone(), fact });
            }
        }
        Ok(changes)
    }
}

impl Settled {
    fn paid(self) -> Option<BillingState> {
        match self {
            Settled::Paid(state) => Some(*state),
            Settled::Owed | Settled::Failed => None,
        }
    }
}

impl Recheck for Arc<Verifier> {
    fn recheck(&self, account: AccountId, state: Arc<BillingState>) -> Rechecked {
        Box::pin(self.clone().verify_shared(account, state))
    }
}

/// When and how Stripe settled `invoice` (paid or voided): the API
/// object's own time, else `now`; `None` while it is still owed.
fn settled_at(invoice: &Value, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Settlement)> {
    let (field, how) = match invoice.get("status").and_then(Value::as_str)? {
        "paid" => ("paid_at", Settlement::Paid),
        "void" => ("voided_at", Settlement::Voided),
        _ => return None,
    };
    let at = invoice.get("status_transitions").and_then(|t| t.get(field)).and_then(Value::as_i64).and_then(sane_time);
    Some((at.unwrap_or(now), how))
}

/// An id that is safe in a URL path (Stripe's are `in_…`, `sub_…`).
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Verify before blocking: with `stripe.api_key` set, `gate` asks Stripe
/// whether a debt still stands before answering its `402` (the owed
/// invoices and debt-status subscriptions; paid or voided → applied, and
/// the request passes), bounded by `stripe.verify_timeout`,
/// `stripe.verify_interval` per account and `stripe.verify_rate`; without
/// a key, `gate` is returned unchanged. The verification reads "now" from
/// the gate's clock. [`crate::Pastdue`] does this for you.
pub fn with_verification(gate: GateLayer, config: &StripeConfig, store: Arc<dyn Store>) -> Result<GateLayer, ConfigError> {
    Ok(match Verifier::new(config, store, gate.clock().clone())? {
        Some(verifier) => verifying(gate, Arc::new(verifier)),
        None => gate,
    })
}

/// `gate`, asking `verifier` before a debt `402` (one verifier can serve
/// the gate and the return endpoint, so they share its rate limit).
pub(crate) fn verifying(gate: GateLayer, verifier: Arc<Verifier>) -> GateLayer {
    let timeout = verifier.timeout;
    gate.with_recheck(Arc::new(verifier), timeout)
}
