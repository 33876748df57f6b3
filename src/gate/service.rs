//! [`Gate`]: the service, and its one `call`.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use crate::account::{validate, AccountId};
use crate::cache::Lookup;

use super::*;

/// The gate service; see the [module docs](crate::gate).
#[derive(Clone)]
pub struct Gate<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Gate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl<S: Clone> Gate<S> {
    /// The inner service, ready, for a future that outlives this call; a
    /// clone takes its place (tower's "clone, then swap" rule: the service
    /// `poll_ready` readied is the one that is called).
    fn take_inner(&mut self) -> S {
        let fresh = self.inner.clone();
        std::mem::replace(&mut self.inner, fresh)
    }
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
                    MissingAccount::Deny => ResponseFuture::ready(refuse::no_account()),
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, "request names its account more than once");
                return ResponseFuture::ready(refuse::ambiguous_account(&e));
            }
        };
        if let Err(e) = validate(&account) {
            tracing::debug!(error = %e, "request names an invalid account id");
            return ResponseFuture::ready(refuse::bad_account(&e));
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
                let account = AccountId::validated(&account);
                let (shared, inner) = (self.shared.clone(), self.take_inner());
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
        let account = AccountId::validated(&account);
        shared.counters.misses.increment(1);
        let now = crate::clock::from_micros(now_us);
        let (shared, inner) = (self.shared.clone(), self.take_inner());
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
