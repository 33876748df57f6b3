//! The endpoint: `POST {events.webhook_path}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::json;

use super::body::{self, TYPES};
use super::signature::{self, SignatureError};
use super::EventsConfig;
use crate::settings::ConfigError;
use crate::store::{Applied, Store};

/// The largest body accepted.
const MAX_BODY: usize = 1 << 20;

struct Endpoint {
    store: Arc<dyn Store>,
    keys: Vec<Vec<u8>>,
    tolerance: std::time::Duration,
}

/// The Standard Webhooks endpoint at `events.webhook_path`, ready to merge
/// into an app. Refuses to build without a secret, or with one that is not
/// `whsec_<base64>`, naming the key.
pub fn router(config: &EventsConfig, store: Arc<dyn Store>) -> Result<Router, ConfigError> {
    crate::metrics::describe();
    let secrets = config.secrets();
    if secrets.is_empty() {
        return Err(ConfigError::key("events.webhook_secret", "is empty; set it (PASTDUE_EVENTS__WEBHOOK_SECRET=whsec_…) to receive events"));
    }
    let keys = secrets
        .iter()
        .map(|s| signature::key(s).map_err(|_| ConfigError::key("events.webhook_secret", "is not whsec_<base64> of at least 24 bytes")))
        .collect::<Result<Vec<_>, _>>()?;
    let state = Arc::new(Endpoint { store, keys, tolerance: config.tolerance });
    Ok(Router::new().route(&config.webhook_path, post(receive)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(state))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn count(kind: &str, result: &'static str) {
    let kind = TYPES.iter().find(|t| **t == kind).copied().unwrap_or("other");
    metrics::counter!(crate::metrics::EVENTS, "type" => kind, "result" => result).increment(1);
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::Missing(name))?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed(name));
    }
    value.to_str().map_err(|_| SignatureError::Malformed(name))
}

async fn receive(State(e): State<Arc<Endpoint>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // No signature headers, no read: a stranger cannot make us buffer a body.
    let headers = (|| Ok::<_, SignatureError>((header(&parts.headers, "webhook-id")?, header(&parts.headers, "webhook-timestamp")?, header(&parts.headers, "webhook-signature")?)))();
    let (id, timestamp, signatures) = match headers {
        Ok(h) => h,
        Err(err) => {
            count("other", "bad_signature");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": err.to_string() }));
        }
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            count("other", "too_large");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "the body is larger than 1 MiB" }));
        }
        Err(err) => {
            count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": format!("the body could not be read: {err}") }));
        }
    };
    if let Err(err) = signature::verify(&e.keys, id, timestamp, signatures, &body, Utc::now(), e.tolerance) {
        tracing::info!(error = %err, "event refused: bad signature");
        count("other", "bad_signature");
        return reply(StatusCode::BAD_REQUEST, json!({ "error": err.to_string() }));
    }
    let facts = match body::read(&body) {
        Ok(f) => f,
        Err(err) => {
            count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": err.to_string(), "field": err.field }));
        }
    };
    // Once per webhook-id (the standard's idempotency key).
    match e.store.apply(&facts.account, Some(&format!("events:{id}")), &facts.changes).await {
        Ok(applied) => {
            let result = if matches!(applied, Applied::Duplicate) { "duplicate" } else { "applied" };
            count(facts.kind, result);
            reply(StatusCode::OK, json!({ "received": true, "result": result, "account": facts.account }))
        }
        Err(err) if !err.is_retryable() => {
            count(facts.kind, "ignored");
            reply(StatusCode::OK, json!({ "received": true, "result": "ignored", "reason": err.to_string() }))
        }
        Err(err) => {
            tracing::warn!(error = %err, "event not applied (the sender will retry)");
            metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "apply").increment(1);
            count(facts.kind, "unavailable");
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": err.to_string() }))
        }
    }
}
