//! The webhook endpoint and the customer-to-account [`Mapper`].

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::account::AccountId;

use super::{StripeConfig, Unmapped};
use crate::settings::ConfigError;
use crate::provider::{Delivery, Read, Refused};
use crate::store::{Store, StoreError};
use super::event::{self, Event};
use super::{ApiError, StripeApi};

/// Finds the account of a Stripe customer, in the order of the design:
/// metadata on the event's object, a stored link, the customer's metadata
/// fetched from the Stripe API, then the `unmapped` policy.
#[derive(Clone, Debug)]
pub struct Mapper {
    pub(super) store: Arc<dyn Store>,
    api: Option<StripeApi>,
    pub(super) metadata_key: String,
    unmapped: Unmapped,
    /// Customer metadata keys naming contacts (`[notify.metadata]`).
    contact_keys: Vec<(crate::state::ContactRole, String)>,
    /// The customer metadata key naming the account's time zone.
    timezone_key: String,
    /// Where a subscription's plan names its ladder.
    pub(super) plan: Arc<event::PlanLadder>,
}

/// Why an account could not be found right now (retry later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Stripe API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Mapper {
    /// A mapper from `[stripe]` settings.
    pub fn new(config: &StripeConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        let api = match config.api_key() {
            Some(key) => Some(StripeApi::new(key, &config.api_base).map_err(|e| ConfigError::invalid("stripe.api_key", e))?),
            None => None,
        };
        let plan = Arc::new(event::PlanLadder { metadata_key: config.ladder_metadata_key.clone(), by_lookup_key: config.ladder_by_lookup_key.clone() });
        Ok(Self { store, api, metadata_key: config.metadata_key.clone(), unmapped: config.unmapped, contact_keys: Vec::new(), timezone_key: String::new(), plan })
    }

    /// Also reads contacts and the time zone from customer metadata under
    /// `keys` (`[notify.metadata]`); [`crate::Pastdue`] does this for you.
    pub fn with_contact_keys(mut self, keys: &crate::notify::ContactKeys) -> Self {
        use crate::state::ContactRole;
        self.timezone_key = keys.timezone.clone();
        self.contact_keys = [(ContactRole::Accountant, &keys.accountant), (ContactRole::AccountManager, &keys.account_manager)]
            .into_iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(r, k)| (r, k.clone()))
            .collect();
        self
    }

    /// The store the mapper reads and learns links into.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The Stripe API client, when an API key is configured.
    pub(crate) fn api(&self) -> Option<&StripeApi> {
        self.api.as_ref()
    }

    /// The account for `customer`, given the account named in the event's
    /// metadata (`hint`). Learns the link when the metadata names one.
    pub async fn account(&self, customer: Option<&str>, hint: Option<&str>) -> Result<Option<AccountId>, MapError> {
        if let Some(account) = hint.and_then(|h| valid(h, "metadata")) {
            return match customer {
                Some(c) => self.learn(c, account).await.map(Some),
                None => Ok(Some(account)),
            };
        }
        let Some(customer) = customer else { return Ok(None) };
        if let Some(account) = self.store.customer_account(customer).await? {
            return Ok(Some(account));
        }
        if let Some(api) = &self.api {
            let fetched = api.customer(customer).await?;
            let named = fetched.as_object().and_then(|c| event::metadata(Some(c), &self.metadata_key)).and_then(|a| valid(a, "customer metadata"));
            if let Some(account) = named {
                return self.learn(customer, account).await.map(Some);
            }
        }
        Ok(match self.unmapped {
            Unmapped::CustomerId => valid(customer, "customer id"),
            Unmapped::Ignore => None,
        })
    }
}

impl Mapper {
    async fn learn(&self, customer: &str, account: AccountId) -> Result<AccountId, MapError> {
        Ok(crate::provider::learn(&*self.store, "Stripe", customer, account).await?)
    }
}

fn valid(id: &str, source: &str) -> Option<AccountId> {
    AccountId::new(id)
        .map_err(|e| tracing::warn!(%source, error = %e, "ignoring an invalid account id from Stripe"))
        .ok()
}

struct Webhooks {
    mapper: Mapper,
    secrets: Vec<String>,
    tolerance: std::time::Duration,
}

/// The webhook endpoint at `stripe.webhook_path`, ready to merge into an app.
///
/// Refuses to build without a signing secret: an endpoint that cannot
/// verify would only ever answer 400.
pub fn router(config: &StripeConfig, store: Arc<dyn Store>) -> Result<Router, ConfigError> {
    webhook_router(config, Mapper::new(config, store)?)
}

/// [`router`] with a mapper already built (shared with the admin API and sync).
pub(crate) fn webhook_router(config: &StripeConfig, mapper: Mapper) -> Result<Router, ConfigError> {
    let secrets = config.secrets();
    if secrets.is_empty() {
        return Err(ConfigError::key("stripe.webhook_secret", "is empty; set it (PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_…) to receive webhooks"));
    }
    let store = mapper.store().clone();
    let webhooks = Webhooks { mapper, secrets, tolerance: config.tolerance };
    Ok(crate::provider::router(&config.webhook_path, webhooks, store, "Stripe"))
}

#[async_trait::async_trait]
impl Delivery for Webhooks {
    type Event = Event;

    fn signed(&self, headers: &HeaderMap) -> Result<(), String> {
        match headers.get("stripe-signature").and_then(|v| v.to_str().ok()) {
            Some(_) => Ok(()),
            None => Err(crate::signature::SignatureError::Missing.to_string()),
        }
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), String> {
        let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
        crate::signature::verify(header, body, &self.secrets, self.tolerance, now).map_err(|e| e.to_string())
    }

    fn parse(&self, _: &HeaderMap, body: &[u8]) -> Result<Event, serde_json::Value> {
        Event::parse(body).map_err(|e| json!({ "error": e.to_string() }))
    }

    fn describe<'e>(&self, event: &'e Event) -> (&'e str, &'e str) {
        (&event.id, &event.kind)
    }

    async fn read(&self, event: &Event) -> Result<Read, Refused> {
        let Some(mut facts) = event::facts(event, &self.mapper.metadata_key) else {
            return Ok(Read::Ignored(None));
        };
        facts.changes.extend(event::contacts(event, &self.mapper.contact_keys));
        facts.changes.extend(event::reach(event, &self.mapper.timezone_key));
        self.mapper.plan.fill(&mut facts.changes, &event.object);
        match self.mapper.account(facts.customer.as_deref(), facts.account_hint.as_deref()).await {
            Ok(Some(account)) => Ok(Read::Apply { key: event.id.clone(), account, changes: facts.changes }),
            Ok(None) => Ok(Read::Unmapped),
            Err(MapError::Store(e)) => Err(e.into()),
            Err(e) => Err(Refused::Unavailable(e.to_string())),
        }
    }

    fn count(&self, kind: &str, result: &'static str) {
        metrics::counter!(crate::metrics::WEBHOOKS, "type" => crate::metrics::event_type_label(kind), "result" => result).increment(1);
    }
}
