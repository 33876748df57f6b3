//! The webhook endpoint and the customer-to-account [`Mapper`].

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use http_body_util::BodyExt;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;
use tracing::Instrument;

use crate::account::AccountId;

use super::{StripeConfig, Unmapped};
use crate::settings::ConfigError;
use crate::store::{Applied, LinkSource, Linked, Store, StoreError};
use super::event::{self, Event};
use super::{ApiError, StripeApi};

/// The largest webhook body accepted (Stripe's events are far smaller).
pub(crate) const MAX_BODY: usize = 1 << 20;

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
        Ok(Self { store, api, metadata_key: config.metadata_key.clone(), unmapped: config.unmapped, contact_keys: Vec::new(), plan })
    }

    /// Also reads contacts from customer metadata under `keys`
    /// (`[notify.metadata]`); [`crate::Pastdue`] does this for you.
    pub fn with_contact_keys(mut self, keys: &crate::notify::ContactKeys) -> Self {
        use crate::state::ContactRole;
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
    /// Records that Stripe metadata names `account` for `customer`, and
    /// returns the account the customer's events belong to: `account`, or
    /// the account an admin linked the customer to (admin links win; the
    /// disagreement is logged, counted and kept for the admin view).
    async fn learn(&self, customer: &str, account: AccountId) -> Result<AccountId, MapError> {
        match crate::store::move_customer(&*self.store, customer, &account, LinkSource::Learned).await? {
            Linked::Refused { admin } => {
                tracing::warn!(customer, metadata = %account, admin = %admin, "Stripe metadata names another account than the admin link; keeping the admin link");
                metrics::counter!(crate::metrics::LINK_CONFLICTS).increment(1);
                let conflict = crate::state::LinkConflict { customer: customer.to_owned(), claimed_by: account.to_string(), at: Utc::now() };
                self.store.apply(&admin, None, &[crate::state::Change::LinkConflict(conflict)]).await?;
                Ok(admin)
            }
            _ => Ok(account),
        }
    }
}

fn valid(id: &str, source: &str) -> Option<AccountId> {
    AccountId::new(id)
        .map_err(|e| tracing::warn!(%source, error = %e, "ignoring an invalid account id from Stripe"))
        .ok()
}

struct Webhooks {
    mapper: Mapper,
    store: Arc<dyn Store>,
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
    crate::metrics::describe();
    let secrets = config.secrets();
    if secrets.is_empty() {
        return Err(ConfigError::key("stripe.webhook_secret", "is empty; set it (PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_…) to receive webhooks"));
    }
    let state = Arc::new(Webhooks { store: mapper.store().clone(), mapper, secrets, tolerance: config.tolerance });
    Ok(Router::new()
        .route(&config.webhook_path, post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn count(kind: &str, result: &'static str) {
    metrics::counter!(crate::metrics::WEBHOOKS, "type" => crate::metrics::event_type_label(kind), "result" => result).increment(1);
}

async fn receive(State(w): State<Arc<Webhooks>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // No signature, no read: a stranger cannot make us buffer a body.
    let Some(header) = parts.headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        count("other", "bad_signature");
        return reply(StatusCode::BAD_REQUEST, json!({ "error": crate::signature::SignatureError::Missing.to_string() }));
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            count("other", "too_large");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "the body is larger than 1 MiB" }));
        }
        Err(e) => {
            count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": format!("the body could not be read: {e}") }));
        }
    };
    if let Err(e) = crate::signature::verify(Some(header), &body, &w.secrets, w.tolerance, Utc::now()) {
        tracing::info!(error = %e, "webhook refused: bad signature");
        count("other", "bad_signature");
        return reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() }));
    }
    let event = match Event::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() }));
        }
    };
    let span = tracing::info_span!("webhook", event_id = %event.id, event_type = %event.kind, account = tracing::field::Empty);
    let (response, result) = handle(&w, &event).instrument(span).await;
    count(&event.kind, result);
    response
}

async fn handle(w: &Webhooks, event: &Event) -> (Response, &'static str) {
    let Some(mut facts) = event::facts(event, &w.mapper.metadata_key) else {
        return (reply(StatusCode::OK, json!({ "received": true, "result": "ignored" })), "ignored");
    };
    facts.changes.extend(event::contacts(event, &w.mapper.contact_keys));
    w.mapper.plan.fill(&mut facts.changes, &event.object);
    let ignored = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "webhook ignored: its input can never be stored");
        (reply(StatusCode::OK, json!({ "received": true, "result": "ignored", "reason": e.to_string() })), "ignored")
    };
    let account = match w.mapper.account(facts.customer.as_deref(), facts.account_hint.as_deref()).await {
        Ok(Some(account)) => account,
        Ok(None) => return (reply(StatusCode::OK, json!({ "received": true, "result": "unmapped" })), "unmapped"),
        Err(MapError::Store(e)) if !e.is_retryable() => return ignored(&e),
        Err(e) => {
            tracing::warn!(error = %e, "webhook not applied (Stripe will retry)");
            return (reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })), "unavailable");
        }
    };
    tracing::Span::current().record("account", account.as_str());
    match w.store.apply(&account, Some(&event.id), &facts.changes).await {
        Ok(applied) => {
            let result = match applied {
                Applied::Duplicate => "duplicate",
                _ => "applied",
            };
            tracing::debug!(result, "webhook processed");
            (reply(StatusCode::OK, json!({ "received": true, "result": result, "account": account })), result)
        }
        Err(e) if !e.is_retryable() => ignored(&e),
        Err(e) => {
            tracing::warn!(error = %e, "webhook not applied (Stripe will retry)");
            metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "apply").increment(1);
            (reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })), "unavailable")
        }
    }
}
