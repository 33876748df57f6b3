//! [`ResponseFuture`]: the app's response with the stage header and the banner added.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;


use super::*;

/// Awaits the app's response, then adds the stage header and the banner.
pub(super) async fn finish<F, B, E>(fut: F, stage: Option<HeaderValue>, banner: Option<String>, max_bytes: usize) -> Result<Response<B>, E>
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

pub(super) fn set_stage<B>(res: &mut Response<B>, stage: Option<HeaderValue>) {
    if let Some(stage) = stage {
        res.headers_mut().insert(BILLING_STAGE, stage);
    }
}

pub(super) type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

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
    pub(super) fn inner(fut: F, stage: Option<HeaderValue>) -> Self {
        Self { kind: Kind::Inner { fut, stage } }
    }
    pub(super) fn ready(res: Response<B>) -> Self {
        Self { kind: Kind::Ready { res: Some(res) } }
    }
    pub(super) fn lookup(fut: BoxFuture<B, E>) -> Self {
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
