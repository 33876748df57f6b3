//! Stripe as a [`Source`]: "is this still owed?" through the Stripe API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use std::sync::Arc;

use super::api::{Params, StripeApi};
use super::StripeConfig;
use crate::gate::GateLayer;
use crate::provider::{verifying, Source, SourceError, Verifier};
use crate::settings::ConfigError;
use crate::store::Store;
use crate::state::{sane_time, BillingState, Change, Settlement, SubscriptionFact};

/// At most this many objects are fetched per question.
const MAX_OBJECTS: usize = 10;

/// Asks Stripe about the invoices and subscriptions it wrote (keys are
/// Stripe's own ids: `in_…`, `sub_…`).
pub(crate) struct StripeSource {
    pub(crate) api: StripeApi,
}

#[async_trait]
impl Source for StripeSource {
    fn name(&self) -> &'static str {
        "Stripe"
    }

    /// The unpaid invoices the state knows are fetched by id, and
    /// subscriptions in a debt status too; paid or voided invoices and
    /// live subscriptions come back as changes, with the API object's own
    /// time where it has one (`status_transitions.paid_at`).
    async fn ask(&self, state: &BillingState, now: DateTime<Utc>) -> Result<Vec<Change>, SourceError> {
        let mut changes = Vec::new();
        for id in state.unpaid().keys().filter(|id| plain_id(id)).take(MAX_OBJECTS) {
            let invoice = self.api.get(&format!("/invoices/{id}"), &Params::new()).await?;
            match settled_at(&invoice, now) {
                Some((at, Settlement::Paid)) => changes.push(Change::InvoiceSettled { id: id.clone(), at }),
                Some((at, Settlement::Voided)) => changes.push(Change::InvoiceVoided { id: id.clone(), at }),
                None => {}
            }
        }
        let in_debt = state.subscriptions().iter().filter(|(id, s)| s.status.is_debt() && plain_id(id));
        for (id, known) in in_debt.take(MAX_OBJECTS) {
            let sub = self.api.get(&format!("/subscriptions/{id}"), &Params::new()).await?;
            let status = sub.as_object().and_then(super::event::subscription_status);
            if let Some(status) = status.filter(|s| !s.is_debt()) {
                // The plan's ladder stays what the last full report said.
                let fact = SubscriptionFact { ladder: known.ladder.clone(), ..SubscriptionFact::new(status, now) };
                changes.push(Change::Subscription { id: id.clone(), fact });
            }
        }
        Ok(changes)
    }
}

/// When and how Stripe settled `invoice` (paid or voided): the API
/// object's own time, else `now`; `None` while it is still owed.
fn settled_at(invoice: &Value, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Settlement)> {
    let (field, how) = match invoice.get("status").and_then(Value::as_str)? {
        "paid" => ("paid_at", Settlement::Paid),
        "void" => ("voided_at", Settlement::Voided),
        _ => return None,
    };
    let at = invoice.get("status_transitions").and_then(|t| t.get(field)).and_then(Value::as_i64).and_then(sane_time);
    Some((at.unwrap_or(now), how))
}

/// An id that is safe in a URL path and Stripe's own (Stripe's are `in_…`,
/// `sub_…`; other providers' keys carry a `provider:` prefix).
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Stripe as a source when `stripe.api_key` is set (empty otherwise).
pub(crate) fn sources(config: &StripeConfig) -> Result<Vec<Arc<dyn Source>>, ConfigError> {
    let Some(key) = config.api_key() else { return Ok(Vec::new()) };
    let api = StripeApi::new(key, &config.api_base).map_err(|e| ConfigError::invalid("stripe.api_key", e))?;
    Ok(vec![Arc::new(StripeSource { api })])
}

/// Verify before blocking: with `stripe.api_key` set, `gate` asks Stripe
/// whether a debt still stands before answering its `402` (the owed
/// invoices and debt-status subscriptions; paid or voided → applied, and
/// the request passes), bounded by `stripe.verify_timeout`,
/// `stripe.verify_interval` per account and `stripe.verify_rate`; without
/// a key, `gate` is returned unchanged. The verification reads "now" from
/// the gate's clock. [`crate::Pastdue`] does this for you.
pub fn with_verification(gate: GateLayer, config: &StripeConfig, store: Arc<dyn Store>) -> Result<GateLayer, ConfigError> {
    Ok(match Verifier::new(config, crate::stripe::sources(config)?, store, gate.clock().clone())? {
        Some(verifier) => verifying(gate, Arc::new(verifier)),
        None => gate,
    })
}

