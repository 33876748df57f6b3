//! One builder for everything a configuration describes.
//!
//! [`Pastdue`] reads one [`Config`] and returns the gate and the routes
//! its pages link to, built together: a page can only link to an endpoint
//! that is mounted, and the ladder, the Stripe client and the clock are
//! built once and shared. Each piece is still usable alone
//! ([`GateLayer::from_config`], `stripe::router`, `admin::router`,
//! `notify::Notifier`).

use std::sync::Arc;

use axum::Router;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::gate::GateLayer;
use crate::config::Config;
use crate::settings::ConfigError;
use crate::store::Store;

/// Builds the [`Parts`] one configuration describes: the gate and the
/// routes its pages link to, built together, so a page can only link to an
/// endpoint that is mounted; the ladder, the Stripe client and the clock
/// are built once and shared. Each piece is still usable alone
/// ([`GateLayer::from_config`], `stripe::router`, `admin::router`,
/// `notify::Notifier`).
///
/// ```
/// # async fn wire() -> Result<(), pastdue::config::ConfigError> {
/// use std::sync::Arc;
/// use axum::{routing::get, Router};
/// use pastdue::{Config, MemoryStore, Pastdue};
///
/// let config = Config::default();
/// let parts = Pastdue::new(&config, Arc::new(MemoryStore::new())).build()?;
/// let app: Router = Router::new()
///     .route("/api/ping", get(|| async { "pong" }))
///     .layer(parts.gate.clone())
///     // Outside the gate: the webhook, pay links and admin API, as configured.
///     .merge(parts.routes.clone());
/// let _tasks = parts.spawn_background();
/// # let _ = app; Ok(()) }
/// ```
#[must_use = "call build() to get the parts"]
pub struct Pastdue<'a> {
    config: &'a Config,
    store: Arc<dyn Store>,
    clock: SharedClock,
}

/// What [`Pastdue::build`] returns.
#[non_exhaustive]
#[derive(Clone)]
pub struct Parts {
    /// The gate: put it around the routes it protects
    /// (`.layer(parts.gate)`); replace its resolver with
    /// [`GateLayer::with_resolver`] as needed.
    pub gate: GateLayer,
    /// Every endpoint the configuration turns on, to merge *outside* the
    /// gate: the Stripe webhook (`stripe.webhook_secret` set), the Paddle
    /// endpoint (`paddle.webhook_secret` set), the Standard Webhooks endpoint (`events.webhook_secret` set), the pay
    /// links (`stripe.portal_return_url` set) and the admin API with its
    /// console (a token set). Empty when none is configured.
    pub routes: Router,
    #[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
    notifier: Option<crate::notify::Notifier>,
    /// Counts the accounts at risk when no notifier's full sweep does:
    /// the store, the policy, the clock and how often.
    at_risk: Option<(Arc<dyn Store>, crate::policy::Policy, SharedClock, std::time::Duration)>,
    #[cfg(feature = "stripe")]
    sync: Option<(crate::stripe::Mapper, std::time::Duration)>,
    /// `[paddle]` and the store, when `paddle.sync_interval` lists past-due
    /// debts periodically.
    #[cfg(feature = "paddle")]
    paddle_sync: Option<(crate::paddle::PaddleConfig, Arc<dyn Store>)>,
    /// The verifier the gate uses, and `stripe.verify_sweep`.
    #[cfg(any(feature = "stripe", feature = "paddle"))]
    sweep: Option<(Arc<crate::provider::Verifier>, std::time::Duration)>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl<'a> Pastdue<'a> {
    /// Everything `config` describes, on `store`, reading the system clock.
    pub fn new(config: &'a Config, store: Arc<dyn Store>) -> Self {
        Self { config, store, clock: crate::clock::system() }
    }

    /// Reads "now" from `clock` everywhere (gate, pay links, admin views,
    /// notices); see [`crate::clock`].
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the gate and the routes. Refuses what the configuration
    /// cannot serve, naming the key (e.g. a billing portal without
    /// `links.secret`, or a setting that needs a feature not compiled in).
    pub fn build(self) -> Result<Parts, ConfigError> {
        let Self { config, store, clock } = self;
        let gate = GateLayer::from_config(config, store.clone())?.with_clock(clock.clone());
        // Recovery figures classify episodes with the configured ladders.
        store.keep_figures(crate::recovery::Recorder::new(gate.policy().clone()));
        #[allow(unused_mut)]
        let mut routes = Router::new();
        // One verifier for the gate, the return endpoint and the sweep (one
        // rate limit), asking every provider with an API key.
        #[cfg(any(feature = "stripe", feature = "paddle"))]
        let (gate, verifier, sweep) = {
            #[allow(unused_mut)]
            let mut sources = Vec::new();
            #[cfg(feature = "stripe")]
            sources.extend(crate::stripe::sources(&config.stripe)?);
            #[cfg(feature = "paddle")]
            sources.extend(crate::paddle::sources(&config.paddle)?);
            let verifier = crate::provider::Verifier::new(&config.stripe, sources, store.clone(), gate.clock().clone())?.map(Arc::new);
            let gate = match &verifier {
                Some(v) => crate::provider::verifying(gate, v.clone()),
                None => gate,
            };
            let sweep = verifier.clone().map(|v| (v, config.stripe.verify_sweep));
            (gate, verifier, sweep)
        };
        #[cfg(all(feature = "paddle", not(feature = "stripe")))]
        drop(verifier);
        #[cfg(feature = "stripe")]
        let (gate, sync) = {
            let mapper = crate::stripe::Mapper::new(&config.stripe, store.clone())?.with_contact_keys(&config.notify.metadata);
            let (gate, pay) = crate::stripe::pay_links(gate, &config.stripe, &config.links, store.clone(), verifier.clone())?;
            routes = routes.merge(pay);
            if !config.stripe.secrets().is_empty() {
                routes = routes.merge(crate::stripe::webhook_router(&config.stripe, mapper.clone())?);
            }
            #[cfg(feature = "admin")]
            if !config.admin.all_tokens().is_empty() {
                let policy = gate.policy().clone();
                // The console previews with the gate's own page and checks with its verifier.
                routes = routes.merge(crate::admin::build(&config.admin, policy, mapper.clone(), clock.clone(), gate.page(), verifier.clone())?);
            }
            let sync = config.stripe.api_key().is_some().then_some((mapper, config.stripe.sync_interval));
            (gate, sync)
        };
        #[cfg(not(feature = "stripe"))]
        needs_feature(config)?;
        // Paddle Billing.
        #[cfg(feature = "paddle")]
        if !config.paddle.secrets().is_empty() {
            routes = routes.merge(crate::paddle::router(&config.paddle, store.clone())?);
        }
        #[cfg(not(feature = "paddle"))]
        if config.paddle.is_on() {
            return Err(ConfigError::key("paddle", "is configured but pastdue was built without the `paddle` feature"));
        }
        // In-house billing through Standard Webhooks.
        #[cfg(feature = "events")]
        if !config.events.secrets().is_empty() {
            routes = routes.merge(crate::events::router(&config.events, store.clone())?);
        }
        #[cfg(not(feature = "events"))]
        if !config.events.secrets().is_empty() {
            return Err(ConfigError::key("events", "is configured but pastdue was built without the `events` feature"));
        }
        #[cfg(all(feature = "stripe", not(feature = "admin")))]
        if !config.admin.all_tokens().is_empty() {
            return Err(missing("admin", "the `admin`"));
        }
        #[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
        let notifier = match crate::notify::Notifier::new(&config.notify, gate.policy().clone(), store.clone())? {
            Some(n) => {
                let n = n.with_page(&config.page).with_pay_links(&config.links, &config.stripe)?.with_reminders(&config.reminders)?.with_clock(clock);
                // Chat messages link to the console when it is mounted and the app's origin is known.
                Some(match (config.admin.all_tokens().is_empty(), config.links.base_url.as_str()) {
                    (false, base) if !base.is_empty() => n.with_console(base, &config.admin.path),
                    _ => n,
                })
            }
            None => None,
        };
        #[cfg(not(any(feature = "notify-email", feature = "notify-webhook")))]
        if !config.notify.webhook_url.is_empty() || !config.notify.smtp_url.is_empty() || !config.notify.chat.is_empty() {
            return Err(missing("notify", "a `notify-email` or `notify-webhook`"));
        }
        #[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
        let notifying = notifier.is_some();
        #[cfg(not(any(feature = "notify-email", feature = "notify-webhook")))]
        let notifying = false;
        // Without a notifier, the admin API's figures still need accounts at
        // risk counted, as often as a notifier's full sweep would.
        let at_risk = (!notifying && !config.admin.all_tokens().is_empty())
            .then(|| (store.clone(), gate.policy().clone(), gate.clock().clone(), config.notify.poll_interval * crate::notify::FULL_SWEEP_EVERY));
        Ok(Parts {
            gate,
            routes,
            at_risk,
            #[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
            notifier,
            #[cfg(feature = "stripe")]
            sync,
            #[cfg(any(feature = "stripe", feature = "paddle"))]
            sweep,
            #[cfg(feature = "paddle")]
            paddle_sync: (config.paddle.api_key().is_some() && !config.paddle.sync_interval.is_zero()).then(|| (config.paddle.clone(), store.clone())),
        })
    }
}

impl Parts {
    /// Starts the background work the configuration asks for: stage
    /// notices (a `[notify]` channel set), the periodic Stripe sync
    /// (`stripe.api_key` set, `stripe.sync_interval` not zero), the periodic
    /// Paddle sync (`paddle.api_key`, `paddle.sync_interval`) and the debt
    /// sweep (`stripe.api_key` set, `stripe.verify_sweep` not zero; it
    /// shares the gate's verification limit). Dropping a handle does not
    /// stop its task; abort it to.
    pub fn spawn_background(&self) -> Vec<JoinHandle<()>> {
        #[allow(unused_mut)]
        let mut tasks = Vec::new();
        #[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
        tasks.extend(self.notifier.clone().map(crate::notify::Notifier::spawn));
        if let Some((store, policy, clock, every)) = self.at_risk.clone() {
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
                loop {
                    tick.tick().await;
                    if let Err(e) = crate::store::refresh_at_risk(store.as_ref(), &policy, clock.now()).await {
                        tracing::warn!(error = %e, "counting the accounts at risk failed; the next round retries");
                    }
                }
            }));
        }
        #[cfg(feature = "stripe")]
        if let Some((mapper, interval)) = &self.sync {
            tasks.extend(crate::stripe::spawn_periodic_sync(mapper.clone(), *interval));
        }
        #[cfg(feature = "paddle")]
        if let Some((config, store)) = &self.paddle_sync {
            match crate::paddle::spawn_periodic_sync(config, store.clone()) {
                Ok(task) => tasks.extend(task),
                Err(e) => tracing::error!(error = %e, "the periodic Paddle sync cannot start"),
            }
        }
        #[cfg(any(feature = "stripe", feature = "paddle"))]
        if let Some((verifier, every)) = &self.sweep {
            tasks.extend(crate::provider::DebtSweep::sharing(verifier.clone(), *every).map(crate::provider::DebtSweep::spawn));
        }
        tasks
    }
}

#[cfg(not(feature = "stripe"))]
fn needs_feature(config: &Config) -> Result<(), ConfigError> {
    if !config.stripe.secrets().is_empty() || !config.stripe.portal_return_url.is_empty() {
        return Err(missing("stripe", "the `stripe`"));
    }
    if !config.admin.all_tokens().is_empty() {
        return Err(missing("admin", "the `admin`"));
    }
    Ok(())
}

#[cfg(any(not(feature = "admin"), not(any(feature = "notify-email", feature = "notify-webhook"))))]
fn missing(section: &str, feature: &str) -> ConfigError {
    ConfigError::key(section, format!("is configured but pastdue was built without {feature} feature"))
}
