//! The gate: a tower layer that lets each request through, or not, by its
//! account's payment standing.
//!
//! For every request the gate:
//!
//! - passes exempt paths (`gate.exempt`) and requests with no account
//!   untouched;
//! - looks the account up in the in-process cache (a hit is a hash
//!   lookup, no network round trip) and evaluates the ladder at this instant;
//! - puts the [`Standing`] into the request extensions (for banners) and sets
//!   `Billing-Stage: <stage>` on the response when the stage is not `active`;
//! - answers `402 Payment Required` for `block`, and for writes under
//!   `read_only`: an HTML page for browsers, `application/problem+json` for
//!   API clients.
//!
//! The gate never fails a request of its own: a store outage serves the last
//! known state, and accounts with nothing cached follow `on_store_error`.
//!
//! # Deployment caveat
//!
//! The gate trusts its resolver. [`HeaderResolver`] reads `X-Account-Id`,
//! which is fine behind a proxy or an auth layer that sets it and strips a
//! client's own, and wrong anywhere a client can set it freely. In an app
//! with its own authentication, put the account id into the request
//! extensions and use [`ExtensionResolver`].
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use chrono::TimeDelta;
//! use pastdue::clock::{Clock, ManualClock};
//! use pastdue::state::{Change, Currency, UnpaidInvoice};
//! use pastdue::{gate::GateLayer, AccountId, MemoryStore, Store};
//! use std::sync::Arc;
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let clock = ManualClock::starting_at(chrono::Utc::now());
//! let gate = GateLayer::new(store.clone()).with_clock(clock.shared());
//! let app: Router = Router::new().route("/api/ping", get(|| async { "ok" })).layer(gate);
//!
//! // A payment failed just now.
//! let since = clock.now();
//! let invoice = UnpaidInvoice { amount_due: 4_900, currency: Currency::new("eur").unwrap(), hosted_url: None,
//!     number: None, since, observed: since, uncollectible: false, next_attempt: None };
//! store.apply(&AccountId::new("acme").unwrap(), None, &[Change::InvoiceUnpaid { id: "in_1".into(), invoice }]).await.unwrap();
//! let ping = || Request::get("/api/ping").header("x-account-id", "acme").body(Body::empty()).unwrap();
//!
//! let res = app.clone().oneshot(ping()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["billing-stage"], "notice");
//! clock.advance(TimeDelta::days(17)); // still unpaid after 17 days
//! let res = app.clone().oneshot(ping()).await.unwrap();
//! assert_eq!(res.status(), 402);
//! assert_eq!(res.headers()["billing-stage"], "suspended");
//! # }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::account::{validate, AccountId};
use crate::cache::{Cached, Lookup, StateCache};
use crate::clock::SharedClock;
use crate::cache::CacheConfig;
use crate::settings::ConfigError;
use crate::standing::{Action, Ladder, Reason, Standing};
use crate::state::BillingState;
use crate::store::Store;

mod banner;
mod counters;
mod exempt;
mod extract;
mod feature;
mod negotiate;
#[cfg_attr(not(feature = "stripe"), allow(dead_code))]
pub(crate) mod recheck;
mod resolve;
mod respond;
mod settings;

pub use self::exempt::ExemptPaths;
pub use self::settings::{BannerConfig, Fallback, GateConfig, MissingAccount, PageConfig, BEFORE_DUE_DEFAULT, DEFAULT_EXEMPT};
#[cfg(feature = "server")]
pub(crate) use self::exempt::has_dot_segments;
pub use self::feature::{feature, Feature, FeatureFuture, FeatureLayer, FeatureService};
pub use self::extract::MissingStanding;
pub use crate::i18n::Languages;
pub use self::negotiate::prefers_html;
pub use self::resolve::{
    cookie, from_fn, Ambiguous, CookieError, CookieResolver, ExtensionResolver, FnResolver, HeaderResolver, Or, PathSegmentResolver,
    QueryResolver, RequestView, ResolveAccount, Resolved, SubdomainResolver,
};
pub use self::respond::{PageError, PaymentPage, BILLING_STAGE, ENDED_TYPE, PROBLEM_TYPE};

/// Builds [`Gate`] services. Cloning shares the cache.
#[derive(Clone)]
pub struct GateLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    cache: StateCache,
    policy: crate::policy::Policy,
    exempt: ExemptPaths,
    resolver: Arc<dyn ResolveAccount>,
    page: Arc<PaymentPage>,
    unavailable: Standing,
    counters: Arc<counters::Counters>,
    /// `Some(max_bytes)` when the reminder banner is injected.
    banner: Option<usize>,
    /// `banner.before_due`: remind accounts in good standing of an invoice
    /// due within this window.
    before_due: Option<std::time::Duration>,
    /// What a request that resolves no account gets.
    missing_account: MissingAccount,
    no_account: Arc<NoAccountWatch>,
    /// Read once per request.
    clock: SharedClock,
    /// Asked before a debt `402`, for at most the duration.
    recheck: Option<(Arc<dyn recheck::Recheck>, std::time::Duration)>,
}

/// Counts requests that resolved no account, and says once when a gate has
/// seen many requests and never a single account: almost always a wiring
/// mistake (the auth layer added inside the gate instead of outside it, a
/// header renamed by a proxy).
struct NoAccountWatch {
    /// Set by the first request that resolves an account; read (never
    /// written again) by every request after it.
    seen_account: AtomicBool,
    /// Requests without an account while none was ever seen.
    before_first: AtomicU64,
    counter: metrics::Counter,
}

/// After this many requests without a single resolved account, the gate
/// logs one warning.
const NO_ACCOUNT_WARNING_AFTER: u64 = 1_000;

impl NoAccountWatch {
    fn new() -> Self {
        Self {
            seen_account: AtomicBool::new(false),
            before_first: AtomicU64::new(0),
            counter: metrics::counter!(crate::metrics::NO_ACCOUNT),
        }
    }

    fn resolved(&self) {
        // A load first: after the first account this is a read of a
        // cache line nobody writes, not a write per request.
        if !self.seen_account.load(Ordering::Relaxed) {
            self.seen_account.store(true, Ordering::Relaxed);
        }
    }

    fn unresolved(&self) {
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
        let exempt = ExemptPaths::new(&gate.exempt).map_err(|e| ConfigError::Key {
            key: "gate.exempt".into(),
            message: e.to_string(),
        })?;
        let mut page = PaymentPage::new(page)
            .map_err(|e| ConfigError::Key { key: "page.template".into(), message: e.to_string() })?;
        if !banner.template.is_empty() {
            page = page
                .with_banner_template(&banner.template)
                .map_err(|e| ConfigError::Key { key: "banner.template".into(), message: e.to_string() })?;
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


    /// The clock the gate reads (pay links' mint window follows it too).
    #[cfg_attr(not(feature = "stripe"), allow(dead_code))]
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.shared.clock
    }

    /// The cache (for sharing with other parts of the app, and for tests).
    pub fn cache(&self) -> &StateCache {
        &self.shared.cache
    }

    /// The `default` ladder.
    pub fn ladder(&self) -> &Ladder {
        self.shared.policy.default_ladder()
    }

    /// The ladders and the rules that choose among them.
    pub fn policy(&self) -> &crate::policy::Policy {
        &self.shared.policy
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate { inner, shared: self.shared.clone() }
    }
}

/// The gate service; see the [module docs](self).
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Gate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// What a banner reminds of.
enum Reminder<'s> {
    /// The debt, in a `notice` or `warn` stage.
    Debt,
    /// An invoice coming due, for an account in good standing.
    Due(&'s crate::state::UpcomingDue),
}

/// What the gate decided for one request.
enum Decision<B> {
    /// Pass, with this `Billing-Stage` value (none for `active`), and the
    /// banner to inject, if any.
    Pass(Option<HeaderValue>, Option<String>),
    /// Answer with this (402, or 400 for a bad account id).
    Answer(Response<B>),
}

impl Shared {
    /// Whether deciding on `standing` needs more than a pass: the 402 page
    /// or a banner (both name the account). Otherwise the request passes
    /// through [`pass`] alone.
    fn needs_account<ReqBody>(&self, req: &Request<ReqBody>, standing: &Standing, state: Option<&BillingState>, now_us: i64) -> bool {
        !standing.allows(req.method())
            || standing.stage().closes_any()
            || (self.banner.is_some() && self.reminder(standing, state, now_us).is_some())
    }

    /// What a banner on a pass reminds of: the debt in a `notice` or `warn`
    /// stage, or (with `banner.before_due`) an invoice coming due for an
    /// account in good standing.
    fn reminder<'s>(&self, standing: &Standing, state: Option<&'s BillingState>, now_us: i64) -> Option<Reminder<'s>> {
        match standing.action() {
            Action::Notice | Action::Warn => Some(Reminder::Debt),
            Action::Allow if standing.reason() == Reason::GoodStanding => {
                let window = i64::try_from(self.before_due?.as_micros()).unwrap_or(i64::MAX);
                let until = crate::clock::from_micros(now_us.saturating_add(window));
                state?.next_due_by(until).map(|(_, due)| Reminder::Due(due))
            }
            _ => None,
        }
    }

    /// The banner's message alone, in the visitor's language (what `/check`
    /// hands a proxy), when a pass has something to remind of.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    fn banner_text(&self, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>, now: DateTime<Utc>) -> Option<String> {
        Some(match self.reminder(standing, state, now.timestamp_micros())? {
            Reminder::Debt => self.page.banner_text(standing, state, accept_language),
            Reminder::Due(due) => self.page.due_banner_text(due, state, accept_language),
        })
    }

    /// Decides, and on a pass puts the standing into the extensions.
    fn decide<ReqBody, B: From<Bytes>>(
        &self,
        req: &mut Request<ReqBody>,
        account: &str,
        standing: Standing,
        state: Option<&BillingState>,
        now_us: i64,
    ) -> Decision<B> {
        // A route the app tagged before the gate ran, closed in this stage.
        let closed = standing.stage().closes_any().then(|| req.extensions().get::<Feature>()).flatten().filter(|f| standing.stage().closes(f.name())).cloned();
        let allowed = standing.allows(req.method()) && closed.is_none();
        self.counters.decision(*standing.stage(), allowed);
        if let (Some(f), true) = (&closed, standing.allows(req.method())) {
            return Decision::Answer(feature::respond_closed(&self.page, req, account, &standing, state, f.name()));
        }
        if standing.stage().closes_any() {
            // For the `feature` layers further in.
            let page = self.page.clone();
            req.extensions_mut().insert(feature::Closing { page, account: account.into(), state: state.cloned().map(Arc::new) });
        }
        if !allowed {
            let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
            let html = prefers_html(header(http::header::ACCEPT));
            let response = self.page.respond(account, &standing, state, html, header(http::header::ACCEPT_LANGUAGE));
            return Decision::Answer(response);
        }
        let banner = self.banner.and(self.reminder(&standing, state, now_us)).and_then(|reminder| {
            let language = req.headers().get(http::header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
            let banner = match reminder {
                Reminder::Debt => self.page.banner(account, &standing, state, language),
                Reminder::Due(due) => self.page.due_banner(due, state, language),
            };
            banner.map_err(|e| tracing::error!(error = %e, "banner template failed; no banner")).ok()
        });
        Decision::Pass(pass(req, standing), banner)
    }

    /// Whether `standing` is about to refuse `req` for a debt, with a
    /// recheck configured and a stored state to recheck: then the state.
    fn recheck_due<ReqBody>(&self, req: &Request<ReqBody>, standing: &Standing, cached: Option<&Cached>) -> Option<Arc<BillingState>> {
        self.recheck.as_ref()?;
        if standing.reason() != Reason::Debt || standing.allows(req.method()) {
            return None;
        }
        cached?.shared_state()
    }

    /// Asks the source about `account`'s debt (bounded by the timeout);
    /// on news, the standing the new state gives at `now`.
    async fn rechecked(&self, account: &AccountId, state: Arc<BillingState>, now: DateTime<Utc>) -> Option<(Standing, BillingState)> {
        let (recheck, timeout) = self.recheck.as_ref()?;
        let fresh = tokio::time::timeout(*timeout, recheck.recheck(account.clone(), state)).await.ok().flatten()?;
        Some((self.policy.evaluate(Some(&fresh), now), fresh))
    }

    /// Decides a request that needs the account (the 402 page, a banner,
    /// a recheck), then runs the app on a pass.
    async fn decide_async<S, ReqBody, B>(
        self: Arc<Self>,
        mut req: Request<ReqBody>,
        account: AccountId,
        standing: Standing,
        cached: Option<Cached>,
        now: DateTime<Utc>,
        mut inner: S,
    ) -> Result<Response<B>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
        B: http_body::Body + From<Bytes>,
    {
        let mut standing = standing;
        let mut fresh = None;
        if let Some(state) = self.recheck_due(&req, &standing, cached.as_ref()) {
            if let Some((now_standing, state)) = self.rechecked(&account, state, now).await {
                standing = now_standing;
                fresh = Some(state);
            }
        }
        let state = fresh.as_ref().or_else(|| cached.as_ref().and_then(Cached::state));
        match self.decide(&mut req, account.as_str(), standing, state, now.timestamp_micros()) {
            Decision::Pass(stage, banner) => finish(inner.call(req), stage, banner, self.banner.unwrap_or(0)).await,
            Decision::Answer(res) => Ok(res),
        }
    }

    fn standing_of(&self, lookup: &Lookup, now: DateTime<Utc>) -> Standing {
        match lookup {
            Lookup::Fresh(c) => c.standing(&self.policy, now),
            Lookup::Stale(c) => {
                self.counters.stale.increment(1);
                c.standing(&self.policy, now)
            }
            Lookup::Unavailable => {
                self.counters.fail_open.increment(1);
                self.unavailable.clone()
            }
        }
    }
}

fn cache_for(store: Arc<dyn Store>, config: &CacheConfig, before_due: Option<std::time::Duration>) -> StateCache {
    let cache = StateCache::new(store, config.capacity.max(1), config.ttl, config.retry_after);
    cache.keep_dues(before_due.is_some());
    cache
}

/// A pass: the standing goes into the extensions; returns the
/// `Billing-Stage` value (none for `active`).
fn pass<ReqBody>(req: &mut Request<ReqBody>, standing: Standing) -> Option<HeaderValue> {
    let stage = (!standing.stage().is_active()).then(|| standing.stage().header_value().clone());
    req.extensions_mut().insert(standing);
    stage
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Gate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        if shared.exempt.matches(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        shared.counters.ensure_flusher();
        let account: Cow<'_, str> = match shared.resolver.resolve(&RequestView::of(&req)) {
            Ok(Some(a)) => {
                shared.no_account.resolved();
                a
            }
            Ok(None) => {
                shared.no_account.unresolved();
                return match shared.missing_account {
                    MissingAccount::Pass => ResponseFuture::inner(self.inner.call(req), None),
                    MissingAccount::Deny => ResponseFuture::ready(respond::no_account()),
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, "request names its account more than once");
                return ResponseFuture::ready(respond::ambiguous_account(&e));
            }
        };
        if let Err(e) = validate(&account) {
            tracing::debug!(error = %e, "request names an invalid account id");
            return ResponseFuture::ready(respond::bad_account(&e));
        }
        let now_us = shared.clock.now_micros();
        if let Some(cached) = shared.cache.get_fresh_at(&account, now_us) {
            // The hot path: no I/O, no shared write, no copy of the id.
            shared.counters.hit();
            let standing = cached.standing_at(&shared.policy, now_us);
            if !shared.needs_account(&req, &standing, cached.state(), now_us) {
                drop(account); // ends the borrow of the request
                shared.counters.decision(*standing.stage(), true);
                let stage = pass(&mut req, standing);
                return ResponseFuture::inner(self.inner.call(req), stage);
            }
            // A debt 402 with a recheck configured: ask first, off the hot path.
            if shared.recheck_due(&req, &standing, Some(&cached)).is_some() {
                let account = match AccountId::new(&account) {
                    Ok(a) => a,
                    Err(e) => return ResponseFuture::ready(respond::bad_account(&e)),
                };
                let ready = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, ready);
                let shared = self.shared.clone();
                let now = crate::clock::from_micros(now_us);
                return ResponseFuture::lookup(Box::pin(shared.decide_async(req, account, standing, Some(cached), now, inner)));
            }
            // The 402 page or a banner: they name the account.
            let account = account.into_owned();
            return match shared.decide(&mut req, &account, standing, cached.state(), now_us) {
                Decision::Pass(stage, None) => ResponseFuture::inner(self.inner.call(req), stage),
                Decision::Pass(stage, banner) => {
                    let max = shared.banner.unwrap_or(0);
                    ResponseFuture::lookup(Box::pin(finish(self.inner.call(req), stage, banner, max)))
                }
                Decision::Answer(res) => ResponseFuture::ready(res),
            };
        }
        let account = match AccountId::new(&account) {
            Ok(a) => a,
            Err(e) => return ResponseFuture::ready(respond::bad_account(&e)),
        };
        shared.counters.misses.increment(1);
        let now = crate::clock::from_micros(now_us);
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let shared = self.shared.clone();
        ResponseFuture::lookup(Box::pin(async move {
            let lookup = shared.cache.load(&account, now).await;
            let standing = shared.standing_of(&lookup, now);
            let cached = match lookup {
                Lookup::Fresh(c) | Lookup::Stale(c) => Some(c),
                Lookup::Unavailable => None,
            };
            shared.decide_async(req, account, standing, cached, now, inner).await
        }))
    }
}

/// Awaits the app's response, then adds the stage header and the banner.
async fn finish<F, B, E>(fut: F, stage: Option<HeaderValue>, banner: Option<String>, max_bytes: usize) -> Result<Response<B>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body + From<Bytes>,
{
    let mut res = fut.await?;
    set_stage(&mut res, stage);
    Ok(match banner {
        Some(banner) => banner::inject(res, &banner, max_bytes).await,
        None => res,
    })
}

fn set_stage<B>(res: &mut Response<B>, stage: Option<HeaderValue>) {
    if let Some(stage) = stage {
        res.headers_mut().insert(BILLING_STAGE, stage);
    }
}

type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The gate's response future.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] fut: F, stage: Option<HeaderValue> },
        Ready { res: Option<Response<B>> },
        Lookup { fut: BoxFuture<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn inner(fut: F, stage: Option<HeaderValue>) -> Self {
        Self { kind: Kind::Inner { fut, stage } }
    }
    fn ready(res: Response<B>) -> Self {
        Self { kind: Kind::Ready { res: Some(res) } }
    }
    fn lookup(fut: BoxFuture<B, E>) -> Self {
        Self { kind: Kind::Lookup { fut } }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut, stage } => {
                let mut res = std::task::ready!(fut.poll(cx))?;
                set_stage(&mut res, stage.take());
                Poll::Ready(Ok(res))
            }
            KindProj::Ready { res } => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            KindProj::Lookup { fut } => fut.as_mut().poll(cx),
        }
    }
}
