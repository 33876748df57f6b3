#![doc = include_str!("../README.md")]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod account;
mod assemble;
pub mod clock;
pub mod config;
mod settings;
pub mod gate;
mod href;
mod i18n;
mod links;
pub mod signature;
pub mod standing;
pub mod state;
pub mod store;

pub use account::{AccountId, InvalidAccountId};
pub use config::Config;
pub use assemble::{Parts, Pastdue};
pub use policy::Policy;
pub use standing::{Action, Ladder, Reason, Stage, Standing};
pub use state::{BillingState, Change};
pub use store::{MemoryStore, Store};
#[cfg(feature = "redis")]
pub use store::RedisStore;
mod cache;
pub mod money;
pub mod policy;
#[cfg(feature = "stripe")]
pub mod stripe;
#[cfg(feature = "admin")]
pub mod admin;
pub mod metrics;
#[cfg(feature = "server")]
pub mod check;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
pub mod notify;

/// Internals for the fuzz targets, robustness tests and load tools
/// (feature `test-util`); not part of the API, no stability promise.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod __internals {
    pub use crate::cache::StateCache;
    pub use crate::href::is_safe;
    pub use crate::links::{LinkSigner, Purpose};
    #[cfg(feature = "stripe")]
    pub use crate::stripe::event::{facts, Event, Facts, ParseError};
}
