//! Degrading the profitable parts first: routes tagged with a feature that
//! the account's stage `closes` answer the 402 page, while the rest of the
//! app stays open until a `block` stage.
//!
//! Tag a sub-router with [`feature`] (a layer that runs after the gate), or
//! put a [`Feature`] into the request's extensions in a middleware that runs
//! before the gate; the gate and the layer answer the same 402 page (or
//! problem+json) naming the feature and the date the rest closes too.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::respond::PaymentPage;
use crate::standing::Standing;
use crate::state::BillingState;

/// A feature of the app that a ladder stage may close (`closes = ["reports"]`).
/// As a request extension it tags the request; [`feature`] builds the layer
/// that does it for a sub-router.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Feature(Cow<'static, str>);

impl Feature {
    /// The feature `name` (`[a-z0-9_-]{1,64}`, as in `closes`).
    ///
    /// # Panics
    /// On any other name: a tag no `closes` can name is a wiring mistake,
    /// better found at start-up than never.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        assert!(crate::standing::is_valid_name(&name), "feature name {name:?} must be 1-64 characters of a-z, 0-9, _ or -");
        Self(name)
    }

    /// The feature's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Tags every route below with `name`: while the account's stage closes
/// it, they answer the 402 page (with the feature named) and the handler
/// does not run. Put it on a sub-router inside the gated app:
///
/// ```
/// use axum::{routing::get, Router};
/// let reports: Router = Router::new()
///     .route("/api/reports", get(|| async { "the report" }))
///     .layer(pastdue::gate::feature("reports"));
/// ```
///
/// # Panics
/// On a name that is not `[a-z0-9_-]{1,64}`.
pub fn feature(name: impl Into<Cow<'static, str>>) -> FeatureLayer {
    FeatureLayer { feature: Feature::new(name) }
}

/// See [`feature`].
#[derive(Clone, Debug)]
pub struct FeatureLayer {
    feature: Feature,
}

impl<S> Layer<S> for FeatureLayer {
    type Service = FeatureService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FeatureService { inner, feature: self.feature.clone() }
    }
}

/// See [`feature`].
#[derive(Clone, Debug)]
pub struct FeatureService<S> {
    inner: S,
    feature: Feature,
}

/// What the gate leaves for [`FeatureService`] on a pass whose stage closes
/// features: the page to answer with, and what it names. Only accounts in
/// such a stage carry it, so good standing pays nothing for features.
#[derive(Clone)]
pub(crate) struct Closing {
    pub(crate) page: Arc<PaymentPage>,
    pub(crate) account: Arc<str>,
    pub(crate) state: Option<Arc<BillingState>>,
}

impl Closing {
    /// The 402 for `feature`, negotiated like the gate's.
    pub(crate) fn respond<ReqBody, B: From<Bytes>>(&self, req: &Request<ReqBody>, standing: &Standing, feature: &str) -> Response<B> {
        respond_closed(&self.page, req, &self.account, standing, self.state.as_deref(), feature)
    }
}

/// The 402 page (or problem+json) for a request to a closed `feature`.
pub(crate) fn respond_closed<ReqBody, B: From<Bytes>>(
    page: &PaymentPage,
    req: &Request<ReqBody>,
    account: &str,
    standing: &Standing,
    state: Option<&BillingState>,
    feature: &str,
) -> Response<B> {
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let html = super::prefers_html(header(http::header::ACCEPT));
    let customer = super::respond::Customer { account, standing, state, accept_language: header(http::header::ACCEPT_LANGUAGE) };
    page.respond_for(customer, html, Some(feature))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FeatureService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = FeatureFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ext = req.extensions();
        if let (Some(closing), Some(standing)) = (ext.get::<Closing>(), ext.get::<Standing>()) {
            if standing.stage().closes(self.feature.name()) {
                let res = closing.respond(&req, standing, self.feature.name());
                return FeatureFuture { kind: Kind::Closed { res: Some(res) } };
            }
        }
        req.extensions_mut().insert(self.feature.clone());
        FeatureFuture { kind: Kind::Open { fut: self.inner.call(req) } }
    }
}

pin_project! {
    /// The response future of [`FeatureService`].
    pub struct FeatureFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Open { #[pin] fut: F },
        Closed { res: Option<Response<B>> },
    }
}

impl<F, B, E> Future for FeatureFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Open { fut } => fut.poll(cx),
            KindProj::Closed { res } => Poll::Ready(Ok(res.take().expect("polled after completion"))),
        }
    }
}
