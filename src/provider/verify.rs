//! Verify before blocking: ask the providers whether a debt still stands.
//!
//! A request about to get a debt `402` asks here first (the gate waits at
//! most `stripe.verify_timeout`). Every configured [`Source`] (Stripe,
//! Paddle) is asked about the unpaid invoices and debt-status
//! subscriptions it wrote; what it says is paid, voided or live again is
//! applied through the store like any webhook fact, with the provider's
//! own time where it has one, so a late webhook stays a no-op and a newer
//! failure still wins. The bounds are `[stripe]`'s `verify_*` settings,
//! shared by every provider. Bounded three ways: one verification per
//! account per `stripe.verify_interval` across instances (a store claim,
//! taken before anything else, so one account's flood never spends what
//! others need), at most `stripe.verify_rate` per second per instance (a
//! token bucket), and concurrent blocked requests for one account share
//! one verification.

// "Check again" (pay links) and the console's check are Stripe's and the
// admin API's; a Paddle-only build verifies blocked requests and sweeps.
#![cfg_attr(not(feature = "stripe"), allow(dead_code))]

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::OnceCell;

use super::{Source, SourceError};
use crate::account::AccountId;
use crate::clock::SharedClock;
use crate::gate::GateLayer;
use crate::gate::recheck::{Recheck, Rechecked};
use crate::settings::ConfigError;
use crate::state::{BillingState, Change};
use crate::store::{Applied, Store};
use crate::stripe::StripeConfig;

/// The claim on a blocked request's verification (`verify_interval`).
pub(crate) const VERIFY: &str = "verify";

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
    /// The provider says the debt is settled; the fresh state was applied.
    Paid(Box<BillingState>),
    /// Part of the debt is settled (applied), the rest still owed: the
    /// fresh state, which may stand on an earlier stage.
    Reduced(Box<BillingState>),
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
    sources: Vec<Arc<dyn Source>>,
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
    /// A verifier asking `sources` within `[stripe]`'s `verify_*` bounds,
    /// or `None` when there is no source to ask.
    pub(crate) fn new(bounds: &StripeConfig, sources: Vec<Arc<dyn Source>>, store: Arc<dyn Store>, clock: SharedClock) -> Result<Option<Self>, ConfigError> {
        if sources.is_empty() {
            return Ok(None);
        }
        let config = bounds;
        let rate = NonZeroU32::new(config.verify_rate)
            .ok_or_else(|| ConfigError::key("stripe.verify_rate", "must be at least 1 per second"))?;
        crate::metrics::describe();
        Ok(Some(Self {
            sources,
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

    /// Asks every source about `state`'s debts and applies what they say.
    /// One source failing does not hide what another found; when all
    /// failed, or one failed and the others found nothing, it is a failure.
    pub(crate) async fn settle(&self, account: &AccountId, state: &BillingState) -> Settled {
        let (changes, failed) = self.ask(account, state).await;
        if failed && changes.is_empty() {
            self.results.failed.increment(1);
            return Settled::Failed;
        }
        if changes.is_empty() {
            self.results.owed.increment(1);
            return Settled::Owed;
        }
        match self.store.apply(account, None, &changes).await {
            Ok(Applied::Changed(fresh)) if fresh.past_due_since().is_none() => {
                tracing::info!(%account, facts = changes.len(), "the provider says the debt is settled; applied");
                self.results.paid.increment(1);
                Settled::Paid(Box::new(fresh))
            }
            // Part of it settled (one invoice of several, or at one
            // provider of two): applied, and still owed.
            Ok(Applied::Changed(fresh)) => {
                tracing::info!(%account, facts = changes.len(), "the provider says part of the debt is settled; applied");
                self.results.owed.increment(1);
                Settled::Reduced(Box::new(fresh))
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
                tracing::warn!(%account, error = %e, "cannot apply what the provider said");
                self.results.failed.increment(1);
                Settled::Failed
            }
        }
    }
}

impl Verifier {
    /// What the sources say now about `state`'s debts, and whether one of
    /// them failed.
    ///
    /// The sources are asked at once, each within most of
    /// `verify_timeout`, so a slow one neither delays nor voids what a
    /// quicker one found (there is time left to apply it).
    async fn ask(&self, account: &AccountId, state: &BillingState) -> (Vec<Change>, bool) {
        let now = self.clock.now();
        let deadline = self.timeout.mul_f32(0.8);
        let answers = futures_util::future::join_all(self.sources.iter().map(|source| async move {
            let asked: Result<Vec<Change>, SourceError> = match tokio::time::timeout(deadline, source.ask(state, now)).await {
                Ok(asked) => asked,
                Err(_) => Err(format!("no answer within {deadline:?}").into()),
            };
            (source.name(), asked)
        }))
        .await;
        let mut changes = Vec::new();
        let mut failed = false;
        for (provider, asked) in answers {
            match asked {
                Ok(found) => changes.extend(found),
                Err(e) => {
                    tracing::warn!(%account, provider, error = %e, "verification failed");
                    failed = true;
                }
            }
        }
        (changes, failed)
    }
}

impl Settled {
    fn paid(self) -> Option<BillingState> {
        match self {
            Settled::Paid(state) | Settled::Reduced(state) => Some(*state),
            Settled::Owed | Settled::Failed => None,
        }
    }
}

impl Recheck for Arc<Verifier> {
    fn recheck(&self, account: AccountId, state: Arc<BillingState>) -> Rechecked {
        Box::pin(self.clone().verify_shared(account, state))
    }
}

/// `gate`, asking `verifier` before a debt `402` (one verifier can serve
/// the gate and the return endpoint, so they share its rate limit).
pub(crate) fn verifying(gate: GateLayer, verifier: Arc<Verifier>) -> GateLayer {
    let timeout = verifier.timeout;
    gate.with_recheck(Arc::new(verifier), timeout)
}
