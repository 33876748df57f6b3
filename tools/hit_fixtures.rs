//! What `benches/gate.rs` and `tools/hit_profile.rs` both drive: the
//! trivial service, an unpaid invoice, and a poll for a future that must
//! complete at once. Included by path (`#[path]`), not a target of its own.

use std::convert::Infallible;

use axum::body::Body;
use chrono::{TimeDelta, Utc};
use http::{Request, Response};
use pastdue::state::{Change, Currency, UnpaidInvoice};

/// The service behind the gate: what "bare" measures.
pub async fn ok(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from("{\"ok\":true}")))
}

/// An unpaid invoice of €12.00, past due for `days`.
pub fn debt(days: i64) -> Change {
    let since = Utc::now() - TimeDelta::days(days);
    Change::InvoiceUnpaid {
        id: "in_1".into(),
        invoice: UnpaidInvoice {
            amount_due: 1200,
            currency: Currency::new("eur").unwrap(),
            hosted_url: Some("https://invoice.stripe.com/i/in_1".into()),
            number: None,
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    }
}

/// Polls a future that must complete at once (a cache hit on [`ok`]).
pub fn now<F: std::future::Future>(fut: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a hit must not wait"),
    }
}
