//! The endpoint, `POST {paddle.webhook_path}`, and Paddle's
//! customer-to-account rules.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::api::PaddleApi;
use super::event::{self, Notification};
use super::signature;
use super::PaddleConfig;
use crate::account::AccountId;
use crate::provider::{Delivery, Read, Refused};
use crate::settings::ConfigError;
use crate::store::Store;

const HEADER: &str = "paddle-signature";

/// The shortest secret accepted: a short one could be guessed.
const MIN_SECRET_BYTES: usize = 16;

struct Paddle {
    store: Arc<dyn Store>,
    secrets: Vec<String>,
    tolerance: std::time::Duration,
    metadata_key: String,
    api: Option<PaddleApi>,
}

/// The Paddle Billing endpoint at `paddle.webhook_path`, ready to merge
/// into an app. Refuses to build without a secret, naming the key.
pub fn router(config: &PaddleConfig, store: Arc<dyn Store>) -> Result<Router, ConfigError> {
    let secrets = config.secrets();
    if secrets.is_empty() {
        return Err(ConfigError::key("paddle.webhook_secret", "is empty; set it (PASTDUE_PADDLE__WEBHOOK_SECRET=pdl_ntfset_…) to receive notifications"));
    }
    if secrets.iter().any(|s| s.len() < MIN_SECRET_BYTES) {
        return Err(ConfigError::key("paddle.webhook_secret", format!("is shorter than {MIN_SECRET_BYTES} bytes: anyone could sign with it (Paddle's are pdl_ntfset_… of about 60)")));
    }
    let api = super::api(config)?;
    let paddle = Paddle { store: store.clone(), secrets, tolerance: config.tolerance, metadata_key: config.metadata_key.clone(), api };
    Ok(crate::provider::router(&config.webhook_path, paddle, store, "Paddle"))
}

fn valid(id: &str, source: &str) -> Option<AccountId> {
    AccountId::new(id).map_err(|e| tracing::warn!(%source, error = %e, "ignoring an invalid account id from Paddle")).ok()
}

impl Paddle {
    /// The account, in this order:
    ///
    /// 1. `custom_data.<metadata_key>` on a *customer* (only your server
    ///    sets it, through Paddle's API): the customer is linked there, as
    ///    Stripe's metadata links (an admin link still wins);
    /// 2. `custom_data` on a transaction or subscription, which a buyer can
    ///    set in the browser (Paddle.js `customData`): it links the customer
    ///    only when the customer has no link yet and the account has no
    ///    other Paddle customer, so a stranger cannot move an account's
    ///    debts or contacts by naming it at checkout; otherwise the
    ///    customer's link stands and the claim is kept for the admin view;
    /// 3. the customer's stored link;
    /// 4. the customer's `custom_data` from Paddle's API (with an API key);
    /// 5. the customer id.
    async fn account(&self, customer: Option<&str>, hint: Option<&str>, trusted: bool) -> Result<Option<AccountId>, Refused> {
        if let Some(account) = hint.and_then(|h| valid(h, "custom_data")) {
            return match customer {
                Some(c) if trusted => Ok(Some(crate::provider::learn(&*self.store, "Paddle", c, account).await?)),
                Some(c) => self.claim(c, account).await.map(Some),
                None => Ok(Some(account)),
            };
        }
        let Some(customer) = customer else { return Ok(None) };
        if let Some(account) = self.store.customer_account(customer).await? {
            return Ok(Some(account));
        }
        self.by_customer(customer).await
    }

    /// A buyer-set `custom_data` naming `account` for `customer`.
    async fn claim(&self, customer: &str, account: AccountId) -> Result<AccountId, Refused> {
        let linked = self.store.customer_account(customer).await?;
        if linked.as_ref() == Some(&account) {
            return Ok(account);
        }
        let taken = match &linked {
            Some(_) => true,
            None => self.store.load(&account).await?.is_some_and(|s| s.customers().iter().any(|c| c.starts_with("ctm_") && c != customer)),
        };
        if !taken {
            return Ok(crate::provider::learn(&*self.store, "Paddle", customer, account).await?);
        }
        tracing::warn!(customer, claimed = %account, "Paddle custom_data names an account that belongs to another customer; not linking");
        metrics::counter!(crate::metrics::LINK_CONFLICTS).increment(1);
        let conflict = crate::state::LinkConflict { customer: customer.to_owned(), claimed_by: account.to_string(), at: Utc::now() };
        self.store.apply(&account, None, &[crate::state::Change::LinkConflict(conflict)]).await?;
        match linked {
            Some(linked) => Ok(linked),
            None => self.by_customer(customer).await?.ok_or_else(|| Refused::Ignored("the customer id is no valid account id".into())),
        }
    }

    /// An unlinked customer: its `custom_data` from Paddle's API, else its id.
    async fn by_customer(&self, customer: &str) -> Result<Option<AccountId>, Refused> {
        if let Some(api) = &self.api {
            // A customer Paddle does not know names nothing (a retry cannot
            // help); any other failure is worth Paddle's retry.
            let fetched = match api.get(&format!("/customers/{customer}")).await {
                Ok(fetched) => fetched,
                Err(super::ApiError::Status { status: 404, .. }) => serde_json::Value::Null,
                Err(e) => return Err(Refused::Unavailable(e.to_string())),
            };
            let named = fetched.as_object().and_then(|c| event::hint(c, &self.metadata_key)).and_then(|a| valid(&a, "customer custom_data"));
            if let Some(account) = named {
                return Ok(Some(crate::provider::learn(&*self.store, "Paddle", customer, account).await?));
            }
        }
        Ok(valid(customer, "customer id"))
    }
}

#[async_trait::async_trait]
impl Delivery for Paddle {
    type Event = Notification;

    fn signed(&self, headers: &HeaderMap) -> Result<(), String> {
        match crate::provider::single_header(headers, HEADER) {
            None => Err(signature::SignatureError::Missing.to_string()),
            Some(Err(())) => Err(signature::SignatureError::Malformed.to_string()),
            Some(Ok(_)) => Ok(()),
        }
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), String> {
        let header = match crate::provider::single_header(headers, HEADER) {
            Some(Ok(h)) => h,
            _ => return Err(signature::SignatureError::Malformed.to_string()),
        };
        signature::verify(&self.secrets, header, body, now, self.tolerance).map_err(|e| e.to_string())
    }

    fn parse(&self, _: &HeaderMap, body: &[u8]) -> Result<Notification, serde_json::Value> {
        Notification::parse(body).map_err(|e| json!({ "error": e.to_string(), "field": e.field }))
    }

    fn describe<'e>(&self, n: &'e Notification) -> (&'e str, &'e str) {
        (&n.event_id, &n.event_type)
    }

    async fn read(&self, n: &Notification) -> Result<Read, Refused> {
        let facts = match event::facts(n, &self.metadata_key) {
            Ok(Some(facts)) => facts,
            Ok(None) => return Ok(Read::Ignored(None)),
            Err(e) => return Err(Refused::BadRequest(json!({ "error": e.to_string(), "field": e.field }))),
        };
        let trusted = n.event_type.starts_with("customer.");
        match self.account(facts.customer.as_deref(), facts.account_hint.as_deref(), trusted).await? {
            // Paddle's event ids are its own (`evt_…`); prefixed all the
            // same, so no other provider's id can collide.
            Some(account) => Ok(Read::Apply { key: format!("paddle:{}", n.event_id), account, changes: facts.changes }),
            None => Ok(Read::Unmapped),
        }
    }

    fn count(&self, kind: &str, result: &'static str) {
        metrics::counter!(crate::metrics::PADDLE, "type" => kind_label(kind), "result" => result).increment(1);
    }
}

/// A bounded label: the types the ladder reads, else `other`.
fn kind_label(kind: &str) -> &'static str {
    const KNOWN: [&str; 15] = [
        "transaction.payment_failed",
        "transaction.past_due",
        "transaction.completed",
        "transaction.paid",
        "transaction.canceled",
        "subscription.created",
        "subscription.activated",
        "subscription.updated",
        "subscription.past_due",
        "subscription.paused",
        "subscription.resumed",
        "subscription.canceled",
        "subscription.trialing",
        "customer.created",
        "customer.updated",
    ];
    KNOWN.iter().find(|k| **k == kind).copied().unwrap_or("other")
}
