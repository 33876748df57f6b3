//! The endpoint, `POST {paddle.webhook_path}`, and Paddle's
//! customer-to-account rules.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::event::{self, Notification};
use super::mapper::Mapper;
use super::signature;
use super::PaddleConfig;
use crate::provider::{Delivery, Read, Refused};
use crate::settings::ConfigError;
use crate::store::Store;

const HEADER: &str = "paddle-signature";

/// The shortest secret accepted: a short one could be guessed.
const MIN_SECRET_BYTES: usize = 16;

struct Paddle {
    mapper: Mapper,
    secrets: Vec<String>,
    tolerance: std::time::Duration,
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
    let mapper = Mapper::new(config, store.clone())?;
    let paddle = Paddle { mapper, secrets, tolerance: config.tolerance };
    Ok(crate::provider::router(&config.webhook_path, paddle, store, "Paddle"))
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
        let facts = match event::facts(n, &self.mapper.metadata_key) {
            Ok(Some(facts)) => facts,
            Ok(None) => return Ok(Read::Ignored(None)),
            Err(e) => return Err(Refused::BadRequest(json!({ "error": e.to_string(), "field": e.field }))),
        };
        let trusted = n.event_type.starts_with("customer.");
        match self.mapper.account(facts.customer.as_deref(), facts.account_hint.as_deref(), trusted).await? {
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
