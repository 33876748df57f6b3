//! The gate: a tower layer that lets each request through, or not, by its
//! account's payment standing.
//!
//! For every request the gate:
//!
//! - passes exempt paths (`gate.exempt`) and requests with no account
//!   untouched;
//! - looks the account up in the in-process cache (a hit is a hash
//!   lookup, no network round trip) and evaluates the ladder at this instant;
//! - puts the [`Standing`](crate::Standing) into the request extensions (for banners) and sets
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

mod banner;
mod counters;
mod exempt;
mod extract;
mod feature;
mod negotiate;
#[cfg_attr(not(feature = "stripe"), allow(dead_code))]
pub(crate) mod recheck;
mod resolve;
mod refuse;
mod respond;
mod settings;
mod decision;
mod future;
mod layer;
mod lists;
mod service;

pub use self::exempt::ExemptPaths;
pub use self::settings::{BannerConfig, Fallback, GateConfig, MissingAccount, PageConfig, BEFORE_DUE_DEFAULT, DEFAULT_EXEMPT};
#[cfg(feature = "server")]
pub(crate) use self::exempt::has_dot_segments;
pub use self::feature::{feature, Feature, FeatureFuture, FeatureLayer, FeatureService};
pub use self::extract::{InGoodStanding, MissingStanding};
pub use crate::i18n::Languages;
pub use self::negotiate::prefers_html;
pub use self::resolve::{
    cookie, from_fn, Ambiguous, CookieError, CookieResolver, ExtensionResolver, FnResolver, HeaderResolver, Or, PathSegmentResolver,
    QueryResolver, RequestView, ResolveAccount, Resolved, SubdomainResolver,
};
pub use self::respond::{PageError, PaymentPage, BILLING_STAGE, ENDED_TYPE, PROBLEM_TYPE};
pub use self::future::ResponseFuture;
pub use self::layer::GateLayer;
pub use self::service::Gate;
// What the layer, the service, the decision and the future share.
use self::{decision::*, future::*, layer::*};
