//! Paddle Billing: signed notifications on the same ladder as Stripe's,
//! and "is this still owed?" through Paddle's API.
//!
//! - [`router`] serves `POST /webhooks/paddle` (`paddle.webhook_path`).
//! - `Paddle-Signature: ts=…;h1=…` (hex HMAC-SHA256 over `"{ts}:{raw
//!   body}"`, keyed with `paddle.webhook_secret`; several `h1` and several
//!   secrets during a rotation) is checked within `paddle.tolerance`, in
//!   constant time; a bad one is a `400` and nothing is read or written.
//! - Each `event_id` is applied once; facts carry `occurred_at`, so order
//!   does not matter. Keys are prefixed `paddle:` (see [`event`] for what
//!   each type does).
//! - The account is `custom_data.<paddle.metadata_key>` on the
//!   transaction, subscription or customer, else the customer's stored
//!   link, else the customer's `custom_data` from the API, else the
//!   customer id (`ctm_…`).
//! - With `paddle.api_key`, verify before blocking, "check again" and the
//!   debt sweep ask Paddle too.
//! - A store outage answers `503`, so Paddle retries.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn pastdue::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = pastdue::Config::load()?;
//! let app = axum::Router::new().merge(pastdue::paddle::router(&config.paddle, store)?);
//! # let _ = app; Ok(()) }
//! ```

mod settings;
pub use self::settings::PaddleConfig;

#[cfg(feature = "paddle")]
mod api;
#[cfg(feature = "paddle")]
pub mod event;
#[cfg(feature = "paddle")]
mod mapper;
#[cfg(feature = "paddle")]
mod sync;
#[cfg(feature = "paddle")]
pub mod signature;
#[cfg(feature = "paddle")]
mod webhook;

#[cfg(feature = "paddle")]
pub use self::{
    api::ApiError,
    sync::{spawn_periodic_sync, sync, SyncReport},
    webhook::router,
};

#[cfg(feature = "paddle")]
use crate::settings::ConfigError;

/// The API client `[paddle]` describes, when `paddle.api_key` is set.
#[cfg(feature = "paddle")]
fn api(config: &PaddleConfig) -> Result<Option<api::PaddleApi>, ConfigError> {
    config.api_key().map(|key| api::PaddleApi::new(key, &config.api_base).map_err(|e| ConfigError::key("paddle.api_base", e))).transpose()
}

/// Paddle as a source for verify-before-blocking when `paddle.api_key` is
/// set (empty otherwise).
#[cfg(feature = "paddle")]
pub(crate) fn sources(config: &PaddleConfig) -> Result<Vec<std::sync::Arc<dyn crate::provider::Source>>, ConfigError> {
    Ok(api(config)?.map(|api| std::sync::Arc::new(api::PaddleSource { api }) as std::sync::Arc<dyn crate::provider::Source>).into_iter().collect())
}
