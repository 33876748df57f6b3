//! The admin API: look at an account, grant an extension or force a block,
//! link a Stripe customer, list accounts by stage, read the audit log and
//! the recovery figures, and reconcile from Stripe.
//!
//! Every route needs `Authorization: Bearer <token>` (`admin.token`, or a
//! named token from `admin.tokens`, whose name the audit log records).
//! Tokens are compared in constant time over their SHA-256 digests, so
//! neither content nor length leaks. Bad input answers `400` with a JSON
//! body naming the field: `{"error": "...", "field": "until"}`.
//!
//! The OpenAPI document is served at `<admin.path>/openapi.json`.
//!
//! `[admin]` is [`AdminConfig`]; the routes need the `admin` feature.

mod settings;
#[cfg(feature = "admin")]
mod changes;
#[cfg(feature = "admin")]
mod console;
#[cfg(feature = "admin")]
mod listing;
#[cfg(feature = "admin")]
mod openapi;
#[cfg(feature = "admin")]
mod recovery;
#[cfg(feature = "admin")]
mod router;
#[cfg(feature = "admin")]
mod view;

pub use self::settings::{AdminConfig, NamedToken, MIN_ADMIN_TOKEN_LEN};
#[cfg(feature = "admin")]
pub use self::{
    openapi::{openapi_document, openapi_document_at},
    router::{router, router_with_clock, MAX_PAGE},
    view::AccountView,
};
#[cfg(feature = "admin")]
pub(crate) use self::router::build;
// The handlers, bodies and helpers each file shares with the others.
#[cfg(feature = "admin")]
use self::{changes::*, listing::*, recovery::*, router::*, view::*};
