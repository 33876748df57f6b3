//! Stripe: verified, idempotent, order-proof webhooks; customer-to-account
//! mapping; reconciliation from the Stripe API.
//!
//! - [`router`] serves `POST /webhooks/stripe` (`stripe.webhook_path`).
//! - The `Stripe-Signature` header is checked against every configured
//!   secret within `stripe.tolerance`; a bad one is a `400` and nothing is
//!   read or written. Bodies over 1 MiB are a `413`, malformed JSON a `400`.
//! - Each event is applied once per event id, atomically with its dedupe
//!   record; its facts carry the event's `created` time, so an older event
//!   never overwrites a newer one and a settled invoice is never reopened.
//! - A store outage answers `503`, so Stripe retries: nothing is lost.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn pastdue::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = pastdue::Config::load()?;
//! let app = axum::Router::new().merge(pastdue::stripe::router(&config.stripe, store)?);
//! # let _ = app; Ok(()) }
//! ```


mod settings;
pub use self::settings::{StripeConfig, Unmapped};

#[cfg(feature = "stripe")]
#[allow(unreachable_pub)]
mod api;
// Public items here are reachable only through `crate::__internals`.
#[cfg(feature = "stripe")]
#[allow(unreachable_pub)]
pub(crate) mod event;
#[cfg(feature = "stripe")]
mod pay;
#[cfg(feature = "stripe")]
mod source;
#[cfg(feature = "stripe")]
mod sync;
#[cfg(feature = "stripe")]
mod webhook;

#[cfg(feature = "stripe")]
pub use self::{
    api::ApiError,
    pay::{with_pay_links, MINT_INTERVAL},
    source::with_verification,
    sync::{spawn_periodic_sync, sync, sync_only, SyncReport},
    webhook::{router, MapError, Mapper},
};
#[cfg(feature = "stripe")]
pub use crate::provider::{DebtSweep, SweepReport};
#[cfg(feature = "stripe")]
pub(crate) use self::{
    api::StripeApi,
    pay::pay_links,
    source::sources,
    webhook::webhook_router,
};
pub use crate::links::{PAY_PATH, RETURN_PATH};
