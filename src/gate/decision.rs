//! What the gate decides for one request: pass (with a stage and a banner), or answer.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Request, Response};
use tower_service::Service;

use crate::account::AccountId;
use crate::cache::{Cached, Lookup};
use crate::standing::{Action, Reason, Standing};
use crate::state::BillingState;

use super::*;

/// What a banner reminds of.
pub(super) enum Reminder<'s> {
    /// The debt, in a `notice` or `warn` stage.
    Debt,
    /// An invoice coming due, for an account in good standing.
    Due(&'s crate::state::UpcomingDue),
}

/// What the gate decided for one request.
pub(super) enum Decision<B> {
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
    pub(super) fn needs_account<ReqBody>(&self, req: &Request<ReqBody>, standing: &Standing, state: Option<&BillingState>, now_us: i64) -> bool {
        !standing.allows(req.method())
            || standing.stage().closes_any()
            || (self.banner.is_some() && self.reminder(standing, state, now_us).is_some())
    }

    /// What a banner on a pass reminds of: the debt in a `notice` or `warn`
    /// stage, or (with `banner.before_due`) an invoice coming due for an
    /// account in good standing.
    pub(super) fn reminder<'s>(&self, standing: &Standing, state: Option<&'s BillingState>, now_us: i64) -> Option<Reminder<'s>> {
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
    pub(super) fn banner_text(&self, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>, now: DateTime<Utc>) -> Option<String> {
        Some(match self.reminder(standing, state, now.timestamp_micros())? {
            Reminder::Debt => self.page.banner_text(standing, state, accept_language),
            Reminder::Due(due) => self.page.due_banner_text(due, state, accept_language),
        })
    }

    /// Decides, and on a pass puts the standing into the extensions.
    pub(super) fn decide<ReqBody, B: From<Bytes>>(
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
    pub(super) fn recheck_due<ReqBody>(&self, req: &Request<ReqBody>, standing: &Standing, cached: Option<&Cached>) -> Option<Arc<BillingState>> {
        self.recheck.as_ref()?;
        if standing.reason() != Reason::Debt || standing.allows(req.method()) {
            return None;
        }
        cached?.shared_state()
    }

    /// Asks the source about `account`'s debt (bounded by the timeout);
    /// on news, the standing the new state gives at `now`.
    pub(super) async fn rechecked(&self, account: &AccountId, state: Arc<BillingState>, now: DateTime<Utc>) -> Option<(Standing, BillingState)> {
        let (recheck, timeout) = self.recheck.as_ref()?;
        let fresh = tokio::time::timeout(*timeout, recheck.recheck(account.clone(), state)).await.ok().flatten()?;
        Some((self.policy.evaluate(Some(&fresh), now), fresh))
    }

    /// Decides a request that needs the account (the 402 page, a banner,
    /// a recheck), then runs the app on a pass.
    pub(super) async fn decide_async<S, ReqBody, B>(
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

    pub(super) fn standing_of(&self, lookup: &Lookup, now: DateTime<Utc>) -> Standing {
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

/// A pass: the standing goes into the extensions (for good standing, the
/// zero-size [`InGoodStanding`], which boxes nothing); returns the
/// `Billing-Stage` value (none for `active`).
pub(super) fn pass<ReqBody>(req: &mut Request<ReqBody>, standing: Standing) -> Option<HeaderValue> {
    if standing.is_plain_good() {
        req.extensions_mut().insert(InGoodStanding);
        return None;
    }
    let stage = (!standing.stage().is_active()).then(|| standing.stage().header_value().clone());
    req.extensions_mut().insert(standing);
    stage
}
