#![doc = include_str!("../README.md")]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod account;
mod assemble;
pub mod clock;
pub mod config;
pub mod settings;
pub mod gate;
pub mod href;
pub mod i18n;
pub mod links;
pub mod signature;
pub mod standing;
pub mod state;
pub mod store;

pub use account::{AccountId, InvalidAccountId};
pub use config::Config;
pub use assemble::{Parts, Pastdue};
pub use standing::{Action, Ladder, Reason, Stage, Standing};
pub use state::{BillingState, Change};
pub use store::{MemoryStore, Store};
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub mod cache;
pub mod money;
#[cfg(feature = "stripe")]
pub mod stripe;
#[cfg(feature = "admin")]
pub mod admin;
pub mod metrics;
#[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
pub mod notify;

/// Internals for the fuzz targets and robustness tests (feature
/// `test-util`); not part of the API.
#[cfg(all(feature = "test-util", feature = "stripe"))]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::stripe::event::{facts, Event, Facts, ParseError};
}
