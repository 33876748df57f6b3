//! The endpoint: `POST {events.webhook_path}`.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::body::{self, Facts, TYPES};
use super::signature::{self, SignatureError};
use super::EventsConfig;
use crate::provider::{Delivery, Read, Refused};
use crate::settings::ConfigError;
use crate::store::Store;

struct Events {
    keys: Vec<Vec<u8>>,
    tolerance: std::time::Duration,
}

/// A parsed event and its `webhook-id`.
struct Event {
    id: String,
    facts: Facts,
}

/// The Standard Webhooks endpoint at `events.webhook_path`, ready to merge
/// into an app. Refuses to build without a secret, or with one that is not
/// `whsec_<base64>`, naming the key.
pub fn router(config: &EventsConfig, store: Arc<dyn Store>) -> Result<Router, ConfigError> {
    let secrets = config.secrets();
    if secrets.is_empty() {
        return Err(ConfigError::key("events.webhook_secret", "is empty; set it (PASTDUE_EVENTS__WEBHOOK_SECRET=whsec_…) to receive events"));
    }
    let keys = secrets
        .iter()
        .map(|s| signature::key(s).map_err(|_| ConfigError::key("events.webhook_secret", "is not whsec_<base64> of at least 24 bytes")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::provider::router(&config.webhook_path, Events { keys, tolerance: config.tolerance }, store, "the sender"))
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    match crate::provider::single_header(headers, name) {
        None => Err(SignatureError::Missing(name)),
        Some(Err(())) => Err(SignatureError::Malformed(name)),
        Some(Ok(value)) => Ok(value),
    }
}

fn headers(headers: &HeaderMap) -> Result<(&str, &str, &str), SignatureError> {
    Ok((header(headers, "webhook-id")?, header(headers, "webhook-timestamp")?, header(headers, "webhook-signature")?))
}

#[async_trait::async_trait]
impl Delivery for Events {
    type Event = Event;

    fn signed(&self, h: &HeaderMap) -> Result<(), String> {
        headers(h).map(drop).map_err(|e| e.to_string())
    }

    fn verify(&self, h: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), String> {
        let (id, timestamp, signatures) = headers(h).map_err(|e| e.to_string())?;
        signature::verify(&self.keys, id, timestamp, signatures, body, now, self.tolerance).map_err(|e| e.to_string())
    }

    fn parse(&self, h: &HeaderMap, body: &[u8]) -> Result<Event, serde_json::Value> {
        let id = header(h, "webhook-id").map_err(|e| json!({ "error": e.to_string() }))?.to_owned();
        let facts = body::read(body).map_err(|e| json!({ "error": e.to_string(), "field": e.field }))?;
        Ok(Event { id, facts })
    }

    fn describe<'e>(&self, event: &'e Event) -> (&'e str, &'e str) {
        (&event.id, event.facts.kind)
    }

    async fn read(&self, event: &Event) -> Result<Read, Refused> {
        // Once per webhook-id (the standard's idempotency key).
        Ok(Read::Apply { key: format!("events:{}", event.id), account: event.facts.account.clone(), changes: event.facts.changes.clone() })
    }

    fn count(&self, kind: &str, result: &'static str) {
        let kind = TYPES.iter().find(|t| **t == kind).copied().unwrap_or("other");
        metrics::counter!(crate::metrics::EVENTS, "type" => kind, "result" => result).increment(1);
    }
}
