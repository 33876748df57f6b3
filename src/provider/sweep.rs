//! The debt sweep: repair what webhooks missed, even for customers who
//! never come back.
//!
//! Every `stripe.verify_sweep`, one instance (whichever takes the store
//! lease first) walks the debt index and verifies each account with its
//! providers (Stripe, Paddle) the way a blocked request would ([`super::verify`]): paid or
//! voided there → applied through the store. The sweep keeps to half of
//! `stripe.verify_rate` and waits for the shared limiter, so blocked
//! requests always keep the other half; an account verified within
//! `stripe.verify_interval` (by a request or another sweep) is skipped.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::verify::{Settled, Turn, Verifier};
use crate::account::AccountId;
#[cfg(feature = "stripe")]
use crate::settings::ConfigError;
#[cfg(feature = "stripe")]
use crate::stripe::StripeConfig;
use crate::store::{AuditEntry, Index, StoreError, NEVER};

/// The claim that makes one instance the sweeper: `what` on a reserved
/// account id (no other claim uses this `what`, so a real account of
/// that name is unaffected).
const LEASE_ACCOUNT: &str = "pastdue:sweep";
const LEASE_WHAT: &str = "verify-sweep";
/// Accounts read from the debt index per page; the lease is renewed after
/// each page.
const PAGE: usize = 200;
/// Repaired accounts named in the run's audit entry, at most.
const AUDIT_NAMES: usize = 100;

/// What one debt sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Accounts verified with their providers.
    pub checked: usize,
    /// Of those, accounts a provider says are settled (applied).
    pub repaired: usize,
    /// Of those, accounts that still owe.
    pub owed: usize,
    /// Accounts skipped: verified within `stripe.verify_interval` already.
    pub recent: usize,
    /// Verifications that failed (API error, timeout, store error).
    pub errors: usize,
}

/// The periodic debt sweep (`stripe.verify_sweep`). [`crate::Pastdue`]
/// builds one when `stripe.api_key` is set and
/// [`crate::Parts::spawn_background`] starts it.
pub struct DebtSweep {
    verifier: Arc<Verifier>,
    every: Duration,
    /// Half of `verify_rate`: the sweep's own pace.
    pace: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for DebtSweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebtSweep").field("every", &self.every).finish_non_exhaustive()
    }
}

impl DebtSweep {
    /// The sweep `[stripe]` describes, on `store`: `None` without
    /// `stripe.api_key` or with `stripe.verify_sweep = "0s"`.
    #[cfg(feature = "stripe")]
    pub fn new(config: &StripeConfig, store: Arc<dyn crate::store::Store>) -> Result<Option<Self>, ConfigError> {
        let sources = crate::stripe::sources(config)?;
        let Some(verifier) = Verifier::new(config, sources, store, crate::clock::system())? else { return Ok(None) };
        Ok(Self::sharing(Arc::new(verifier), config.verify_sweep))
    }

    /// A sweep every `every` sharing `verifier`'s limiter and claims.
    pub(crate) fn sharing(verifier: Arc<Verifier>, every: Duration) -> Option<Self> {
        if every.is_zero() {
            return None;
        }
        let half = NonZeroU32::new(verifier.rate.get() / 2).unwrap_or(NonZeroU32::MIN);
        Some(Self { verifier, every, pace: RateLimiter::direct(Quota::per_second(half)) })
    }

    /// One sweep, if this instance gets the lease (`Ok(None)`: another
    /// instance holds it this period). Fails only when the store cannot be
    /// read; a failed verification is counted and the sweep goes on.
    pub async fn run(&self) -> Result<Option<SweepReport>, StoreError> {
        let v = &self.verifier;
        let lease_account = AccountId::new(LEASE_ACCOUNT).expect("a valid account id");
        let holder = crate::store::holder_id();
        if !v.store.claim(&lease_account, LEASE_WHAT, &holder, self.every).await? {
            return Ok(None);
        }
        let mut report = SweepReport::default();
        let mut repaired = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = v.store.scan_index(Index::Debt, 0, NEVER, cursor.as_deref(), PAGE).await?;
            for entry in &page {
                self.sweep_one(&entry.account, &mut report, &mut repaired).await;
            }
            let Some(last) = page.last() else { break };
            cursor = Some(last.cursor());
            if page.len() < PAGE {
                break;
            }
            if !v.store.renew_claim(&lease_account, LEASE_WHAT, &holder, self.every).await? {
                tracing::warn!("the debt sweep's lease lapsed; stopping this run");
                break;
            }
        }
        self.record(&report, repaired).await;
        Ok(Some(report))
    }

    async fn sweep_one(&self, account: &AccountId, report: &mut SweepReport, repaired: &mut Vec<String>) {
        let v = &self.verifier;
        // The index may be stale; the state decides.
        let state = match v.store.load(account).await {
            Ok(Some(state)) if state.past_due_since().is_some() => state,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%account, error = %e, "the debt sweep cannot read an account");
                report.errors += 1;
                return;
            }
        };
        self.pace.until_ready().await;
        v.limiter.until_ready().await;
        match v.turn(account, super::verify::VERIFY, v.interval).await {
            Turn::Mine => {}
            Turn::Recent => {
                report.recent += 1;
                return;
            }
            Turn::Failed => {
                report.errors += 1;
                return;
            }
        }
        report.checked += 1;
        match tokio::time::timeout(v.timeout, v.settle(account, &state)).await {
            Ok(Settled::Paid(_)) => {
                report.repaired += 1;
                repaired.push(account.to_string());
            }
            Ok(Settled::Owed | Settled::Reduced(_)) => report.owed += 1,
            Ok(Settled::Failed) | Err(_) => report.errors += 1,
        }
    }

    /// Metrics, one log line, and an audit entry when something was
    /// repaired.
    async fn record(&self, report: &SweepReport, repaired: Vec<String>) {
        let count = |result: &'static str, n: usize| {
            metrics::counter!(crate::metrics::SWEEP_ACCOUNTS, "result" => result).increment(n as u64);
        };
        metrics::counter!(crate::metrics::SWEEPS).increment(1);
        count("repaired", report.repaired);
        count("owed", report.owed);
        count("recent", report.recent);
        count("failed", report.errors);
        tracing::info!(
            checked = report.checked,
            repaired = report.repaired,
            owed = report.owed,
            recent = report.recent,
            errors = report.errors,
            "debt sweep finished"
        );
        if report.repaired == 0 {
            return;
        }
        let mut after = serde_json::to_value(report).unwrap_or_default();
        after["accounts"] = repaired.into_iter().take(AUDIT_NAMES).collect();
        let entry = AuditEntry {
            id: String::new(),
            at: self.verifier.clock.now(),
            who: "sweep".into(),
            action: "verify.sweep".into(),
            account: None,
            before: serde_json::Value::Null,
            after,
            reason: Some("settled at the provider; the webhook never applied it".into()),
        };
        if let Err(e) = self.verifier.store.audit(&entry).await {
            tracing::warn!(error = %e, "cannot audit the debt sweep");
        }
    }

    /// Runs the sweep every `stripe.verify_sweep`, the first one after one
    /// period (instances starting together do not all ask Stripe at once;
    /// the lease picks one per period anyway). Failures are logged and
    /// retried at the next tick.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + self.every;
            let mut tick = tokio::time::interval_at(start, self.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.run().await {
                    tracing::warn!(error = %e, "the debt sweep failed; retrying at the next interval");
                }
            }
        })
    }
}
