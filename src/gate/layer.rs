//! [`GateLayer`]: what a gate is built from, and its builders.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tower_layer::Layer;

use crate::cache::StateCache;
use crate::clock::SharedClock;
use crate::cache::CacheConfig;
use crate::settings::ConfigError;
use crate::standing::{Action, Ladder, Reason, Standing};
use crate::state::BillingState;
use crate::store::Store;

use super::*;

/// Builds [`Gate`] services. Cloning shares the cache.
#[derive(Clone)]
pub struct GateLayer {
    pub(super) shared: Arc<Shared>,
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) cache: StateCache,
    pub(super) policy: crate::policy::Policy,
    pub(super) exempt: ExemptPaths,
    pub(super) resolver: Arc<dyn ResolveAccount>,
    pub(super) page: Arc<PaymentPage>,
    pub(super) unavailable: Standing,
    pub(super) counters: Arc<counters::Counters>,
    /// `Some(max_bytes)` when the reminder banner is injected.
    pub(super) banner: Option<usize>,
    /// `banner.before_due`: remind accounts in good standing of an invoice
    /// due within this window.
    pub(super) before_due: Option<std::time::Duration>,
    /// What a request that resolves no account gets.
    pub(super) missing_account: MissingAccount,
    pub(super) no_account: Arc<NoAccountWatch>,
    /// Read once per request.
    pub(super) clock: SharedClock,
    /// Asked before a debt `402`, for at most the duration.
    pub(super) recheck: Option<(Arc<dyn recheck::Recheck>, std::time::Duration)>,
}

/// Counts requests that resolved no account, and says once when a gate has
/// seen many requests and never a single account: almost always a wiring
/// mistake (the auth layer added inside the gate instead of outside it, a
/// header renamed by a proxy).
pub(super) struct NoAccountWatch {
    /// Set by the first request that resolves an account; read (never
    /// written again) by every request after it.
    pub(super) seen_account: AtomicBool,
    /// Requests without an account while none was ever seen.
    pub(super) before_first: AtomicU64,
    pub(super) counter: metrics::Counter,
}

/// After this many requests without a single resolved account, the gate
/// logs one warning.
pub(super) const NO_ACCOUNT_WARNING_AFTER: u64 = 1_000;

impl NoAccountWatch {
    pub(super) fn new() -> Self {
        Self {
            seen_account: AtomicBool::new(false),
            before_first: AtomicU64::new(0),
            counter: metrics::counter!(crate::metrics::NO_ACCOUNT),
        }
    }

    pub(super) fn resolved(&self) {
        // A load first: after the first account this is a read of a
        // cache line nobody writes, not a write per request.
        if !self.seen_account.load(Ordering::Relaxed) {
            self.seen_account.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn unresolved(&self) {
        self.counter.increment(1);
        if !self.seen_account.load(Ordering::Relaxed)
            && self.before_first.fetch_add(1, Ordering::Relaxed) + 1 == NO_ACCOUNT_WARNING_AFTER
        {
            tracing::warn!(
                requests = NO_ACCOUNT_WARNING_AFTER,
                "pastdue gate: {NO_ACCOUNT_WARNING_AFTER} gated requests and not one named an account, so every \
                 one passed ungated. Is the auth layer that sets the account added outside the gate \
                 (`.layer(gate).layer(auth)`), and does the resolver read what it sets?"
            );
        }
    }
}

impl std::fmt::Debug for GateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateLayer")
            .field("policy", &self.shared.policy)
            .field("cache", &self.shared.cache)
            .finish_non_exhaustive()
    }
}

impl GateLayer {
    /// A gate on `store` with the default configuration: the standard
    /// ladder, `X-Account-Id`, the default exempt paths and page.
    ///
    /// Needs no Tokio runtime: the cache's invalidation listener starts
    /// with the first store read, the counters' flusher with the first
    /// gated request (both on the runtime serving it).
    pub fn new(store: Arc<dyn Store>) -> Self {
        let policy = crate::policy::Policy::new(Ladder::standard());
        let settings = (&GateConfig::default(), &CacheConfig::default(), &PageConfig::default(), &BannerConfig::default());
        Self::assemble(store, settings, policy).expect("the default settings are valid")
    }

    /// A gate from its settings (`[gate]`, `[cache]`, `[page]`, `[banner]`)
    /// and `policy`; [`GateLayer::from_config`] reads them from a
    /// [`Config`](crate::config::Config).
    pub(crate) fn assemble(
        store: Arc<dyn Store>,
        (gate, cache, page, banner): (&GateConfig, &CacheConfig, &PageConfig, &BannerConfig),
        policy: crate::policy::Policy,
    ) -> Result<Self, ConfigError> {
        let exempt = ExemptPaths::new(&gate.exempt).map_err(|e| ConfigError::invalid("gate.exempt", e))?;
        let mut page = PaymentPage::new(page)
            .map_err(|e| ConfigError::invalid("page.template", e))?;
        if !banner.template.is_empty() {
            page = page
                .with_banner_template(&banner.template)
                .map_err(|e| ConfigError::invalid("banner.template", e))?;
        }
        let page = page.with_stage_kinds(&policy);
        let cache = cache_for(store, cache, banner.before_due);
        let unavailable = Standing::unavailable(policy.default_ladder(), gate.on_store_error.action());
        Ok(Self {
            shared: Arc::new(Shared {
                counters: counters::Counters::new(&policy, &unavailable),
                banner: banner.inject.then_some(banner.max_bytes),
                before_due: banner.before_due,
                unavailable,
                cache,
                policy,
                exempt,
                resolver: Arc::new(HeaderResolver::new(gate.account_header.clone())),
                page: Arc::new(page),
                missing_account: gate.missing_account,
                no_account: Arc::new(NoAccountWatch::new()),
                clock: crate::clock::system(),
                recheck: None,
            }),
        })
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Resolves accounts with `resolver` instead of the `X-Account-Id` header.
    pub fn with_resolver(self, resolver: impl ResolveAccount) -> Self {
        self.edit(|s| s.resolver = Arc::new(resolver))
    }

    /// Uses `ladder` for everyone (the unknown and canceled policies come
    /// with it).
    pub fn with_ladder(self, ladder: Ladder) -> Self {
        self.with_policy(crate::policy::Policy::new(ladder))
    }

    /// Chooses each account's ladder with `policy` (named ladders, promises,
    /// repeat offenders; `[ladder]`, `[ladders.<name>]`, `[policy]`).
    pub fn with_policy(self, policy: crate::policy::Policy) -> Self {
        self.edit(|s| {
            s.unavailable = Standing::unavailable(policy.default_ladder(), s.unavailable.action());
            s.counters = counters::Counters::new(&policy, &s.unavailable);
            s.page = Arc::new((*s.page).clone().with_stage_kinds(&policy));
            s.policy = policy;
        })
    }

    /// What a gated request that resolves no account gets: passed
    /// untouched ([`MissingAccount::Pass`], the default) or refused with a
    /// `401` ([`MissingAccount::Deny`]).
    pub fn with_missing_account(self, missing: MissingAccount) -> Self {
        self.edit(|s| s.missing_account = missing)
    }

    /// Reads the time from `clock` (default: the system's), once per
    /// request: tests move a [`ManualClock`](crate::clock::ManualClock)
    /// through the ladder instead of sleeping.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        self.edit(|s| s.clock = clock)
    }

    /// The in-process cache as `[cache]` describes it (capacity, safety-net
    /// ttl, pause after a store error), on the same store (its listener
    /// starts with its first store read).
    pub fn with_cache(self, config: &CacheConfig) -> Self {
        self.edit(|s| s.cache = cache_for(s.cache.store().clone(), config, s.before_due))
    }

    /// Paths that always pass untouched.
    pub fn with_exempt(self, exempt: ExemptPaths) -> Self {
        self.edit(|s| s.exempt = exempt)
    }

    /// What uncached accounts get while the store is down.
    pub fn with_on_store_error(self, fallback: Fallback) -> Self {
        self.edit(|s| {
            s.unavailable = Standing::unavailable(s.policy.default_ladder(), fallback.action());
            s.counters = counters::Counters::new(&s.policy, &s.unavailable);
        })
    }

    /// Injects the reminder banner into HTML responses of accounts in a
    /// `notice` or `warn` stage, buffering at most `max_bytes`; `None` turns
    /// it off.
    pub fn with_banner(self, max_bytes: Option<usize>) -> Self {
        self.edit(|s| s.banner = max_bytes)
    }

    /// Also shows the banner (injected, and in `/check`'s `Billing-Banner`)
    /// to accounts in good standing with an invoice they pay themselves due
    /// within `window` ("Your invoice of €49.00 is due on 3 December");
    /// `None` (the default) turns it off. It never gates.
    pub fn with_before_due_banner(self, window: Option<std::time::Duration>) -> Self {
        self.edit(|s| {
            s.before_due = window;
            s.cache.keep_dues(window.is_some());
        })
    }

    /// The please-pay page.
    pub fn with_page(self, page: PaymentPage) -> Self {
        self.edit(|s| s.page = Arc::new(page.with_stage_kinds(&s.policy)))
    }

    /// Signs pay links to the endpoint mounted at `path`; see
    /// `stripe::with_pay_links`, the one place that calls this.
    #[cfg(feature = "stripe")]
    pub(crate) fn with_link_signer(self, path: &str, signer: crate::links::LinkSigner) -> Self {
        self.edit(|s| s.page = Arc::new((*s.page).clone().with_link_signer(path, signer)))
    }

    /// Asks `recheck` before answering a debt `402`, waiting at most
    /// `timeout` (the Stripe adapter wires this; see `stripe::with_verification`).
    #[cfg_attr(not(feature = "stripe"), allow(dead_code))]
    pub(crate) fn with_recheck(self, recheck: Arc<dyn recheck::Recheck>, timeout: std::time::Duration) -> Self {
        self.edit(|s| s.recheck = Some((recheck, timeout)))
    }

    /// The banner's text for a pass in `standing` (a debt reminder, or an
    /// invoice coming due with `banner.before_due`), if it has one.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn banner_text(&self, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>, now: DateTime<Utc>) -> Option<String> {
        self.shared.banner_text(standing, state, accept_language, now)
    }

    /// Whether a pass in `standing` can have a banner without a debt
    /// (`banner.before_due` on, good standing): then `/check` reads the state.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn may_remind(&self, standing: &Standing) -> bool {
        match standing.action() {
            Action::Notice | Action::Warn => true,
            Action::Allow => self.shared.before_due.is_some() && standing.reason() == Reason::GoodStanding,
            _ => false,
        }
    }


    /// For `/check`: whether a request by `account` (as the proxy names
    /// it) for `method` on `path` gets a bare `200` — an exempt path, or a
    /// cached account whose standing allows it with no stage header,
    /// nothing closed and no banner (good standing, an unknown account
    /// the ladder lets in) — counted as [`Gate`]'s `call` counts it.
    /// `false` means "not known at once": the full gate decides (a miss,
    /// a debt, a bad id), and nothing was counted.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn passes_plainly(&self, account: &str, method: &http::Method, path: &str) -> bool {
        let shared = &*self.shared;
        // An id the gate would refuse is the gate's to answer, even on an
        // exempt path (a token claim that is no header value is a 401).
        if crate::account::validate(account).is_err() {
            return false;
        }
        if shared.exempt.matches(path) {
            return true;
        }
        let now_us = shared.clock.now_micros();
        let Some(cached) = shared.cache.get_fresh_at(account, now_us) else { return false };
        let standing = cached.standing_at(&shared.policy, now_us);
        let stage = standing.stage();
        // A banner needs a debt (`notice`, `warn`) or, before a due date,
        // a kept state naming the payment: a plain good standing without
        // one has none to show.
        let no_banner = !self.may_remind(&standing) || (standing.is_plain_good() && cached.state().is_none());
        if !(standing.allows(method) && stage.is_active() && !stage.closes_any() && no_banner) {
            return false;
        }
        shared.counters.ensure_flusher();
        shared.no_account.resolved();
        shared.counters.hit();
        shared.counters.decision(*stage, true);
        true
    }

    /// The clock the gate reads (pay links' mint window follows it too).
    #[cfg_attr(not(feature = "stripe"), allow(dead_code))]
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.shared.clock
    }

    /// The cache, for what the crate builds around the gate (`/check`).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn cache(&self) -> &StateCache {
        &self.shared.cache
    }

    /// Forgets what this gate (and every clone of it) cached about
    /// `account`, so its next request is decided on the store's state —
    /// for a customer coming back from paying.
    pub fn forget(&self, account: &str) {
        self.shared.cache.evict(account);
    }

    /// The `default` ladder.
    pub fn ladder(&self) -> &Ladder {
        self.shared.policy.default_ladder()
    }

    /// The ladders and the rules that choose among them.
    pub fn policy(&self) -> &crate::policy::Policy {
        &self.shared.policy
    }

    /// The page the gate answers blocked requests with (the console
    /// previews customers' pages with it).
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn page(&self) -> Arc<PaymentPage> {
        self.shared.page.clone()
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate { inner, shared: self.shared.clone() }
    }
}

pub(super) fn cache_for(store: Arc<dyn Store>, config: &CacheConfig, before_due: Option<std::time::Duration>) -> StateCache {
    let cache = StateCache::new(store, config.capacity.max(1), config.ttl, config.retry_after);
    cache.keep_dues(before_due.is_some());
    cache
}
