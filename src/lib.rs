//! Gate a SaaS app on each account's payment standing — politely,
//! clearly, and without ever locking out a paying customer by mistake.
//!
//! [`gate::GateLayer`] is a tower layer. Per request it finds the account
//! (a [resolver](gate::ResolveAccount)), reads its [`BillingState`] from an
//! in-process cache kept current by the [`Store`]'s invalidations, walks
//! the account's [`Ladder`] at this instant and either passes the request
//! — with a `Billing-Stage` header and a [`Standing`] for the handler — or
//! answers `402 Payment Required` with a plain "please pay" page.
//! [`Pastdue`] builds the gate and every endpoint its pages link to (the
//! Stripe webhook, signed pay links, the admin API) from one [`Config`].
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use chrono::TimeDelta;
//! use pastdue::clock::{Clock, ManualClock};
//! use pastdue::state::{Change, Currency, UnpaidInvoice};
//! use pastdue::{gate::GateLayer, AccountId, MemoryStore, Standing, Store};
//! use std::sync::Arc;
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let clock = ManualClock::starting_at(chrono::Utc::now());
//! let gate = GateLayer::new(store.clone()).with_clock(clock.shared());
//! let app: Router = Router::new()
//!     .route("/", get(|standing: Option<Standing>| async move {
//!         standing.map_or("welcome".to_owned(), |s| format!("stage {}", s.stage().name()))
//!     }))
//!     .layer(gate);
//!
//! // A payment failed just now: a notice, the request still passes.
//! let since = clock.now();
//! let invoice = UnpaidInvoice { amount_due: 4_900, currency: Currency::new("eur").unwrap(), hosted_url: None,
//!     number: None, since, observed: since, uncollectible: false, next_attempt: None };
//! store.apply(&AccountId::new("acme").unwrap(), None, &[Change::InvoiceUnpaid { id: "in_1".into(), invoice }]).await.unwrap();
//! let home = || Request::get("/").header("x-account-id", "acme").body(Body::empty()).unwrap();
//! let res = app.clone().oneshot(home()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["billing-stage"], "notice");
//!
//! // Still unpaid 17 days later: suspended, with the 402 page.
//! clock.advance(TimeDelta::days(17));
//! assert_eq!(app.oneshot(home()).await.unwrap().status(), 402);
//! # }
//! ```
//!
//! The guide — wiring, policy, the page, configuration, Stripe, notices,
//! the admin API, `pastdue serve` behind a reverse proxy, production,
//! security, observability, performance — is in the repository's
//! `docs/` folder, its front door the README.
//!
//! # Cargo features
//!
//! All on by default: `config` (loading TOML and `PASTDUE_*` variables),
//! `redis`, `cluster`, `stripe`, `events` (Standard Webhooks), `admin`, `notify-email`,
//! `notify-webhook`, `server` (the `pastdue` binary and forward auth);
//! `test-util` publishes the `store::conformance` suite.
//! `--no-default-features` is a gate on the memory store, configured with
//! typed settings (83 crates in all).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

/// The README and the guide's Rust examples, compiled and run as doctests
/// so they cannot rot.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/admin.md")]
    struct Admin;
    #[doc = include_str!("../docs/notices.md")]
    struct Notices;
    #[doc = include_str!("../docs/policy.md")]
    struct Policy;
    #[doc = include_str!("../docs/stripe.md")]
    struct Stripe;
}

// Modules in layer order: each uses only those above it.

// The pure core: plain data and pure functions, no I/O, no clock of its own.
mod settings;
pub mod account;
pub mod clock;
pub mod money;
pub mod signature;
mod href;
mod links;
pub mod state;
pub mod standing;
pub mod policy;
pub mod recovery;
mod i18n;
pub mod metrics;

// The store, and the cache in front of it.
pub mod store;
mod cache;
pub mod timeline;

// The gate.
pub mod gate;

// Adapters. Each module's settings compile in every build; the rest with
// its feature (`stripe`, `admin`, `notify-email`/`notify-webhook`,
// `server`).
pub mod provider;
pub mod stripe;
pub mod paddle;
pub mod events;
pub mod admin;
pub mod notify;
pub mod check;
mod assemble;
#[cfg(feature = "server")]
pub mod server;

// The edge: the aggregate configuration and its loading (feature `config`).
pub mod config;

pub use account::{AccountId, InvalidAccountId};
pub use assemble::{Parts, Pastdue};
pub use config::Config;
pub use policy::Policy;
pub use standing::{Action, Ladder, Reason, Stage, Standing};
pub use state::{BillingState, Change};
pub use store::{MemoryStore, Store};
#[cfg(feature = "redis")]
pub use store::RedisStore;

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
