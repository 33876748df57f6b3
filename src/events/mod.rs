//! Billing facts from your own invoicing (or Polar, Dodo, anything that
//! speaks [Standard Webhooks](https://www.standardwebhooks.com/)), on the
//! same ladder as Stripe's.
//!
//! - [`router`] serves `POST /webhooks/events` (`events.webhook_path`).
//! - `webhook-id`, `webhook-timestamp` and `webhook-signature` (one or more
//!   space-separated `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{body}"`,
//!   keyed with `events.webhook_secret` = `whsec_<base64>`) are checked
//!   within `events.tolerance` (5 minutes); a bad one is a `400` and
//!   nothing is written.
//! - The body is `{"type", "timestamp", "data"}` (`docs/events.schema.json`);
//!   one that does not fit is a `400` naming the field.
//! - Each `webhook-id` is applied once; facts carry the event's
//!   `timestamp`, so order does not matter. Invoice and subscription keys
//!   are prefixed `events:`, beside Stripe's on the same account.
//! - A store outage answers `503`, so the sender retries.

mod settings;
pub use self::settings::EventsConfig;

#[cfg(feature = "events")]
mod body;
#[cfg(feature = "events")]
pub mod signature;
#[cfg(feature = "events")]
mod webhook;

#[cfg(feature = "events")]
pub use self::{
    body::{read, BodyError, Facts, MAX_AMOUNT, PREFIX, TYPES},
    webhook::router,
};
