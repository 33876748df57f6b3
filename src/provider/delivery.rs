//! One webhook pipeline for every provider: signature headers before the
//! body, a 1 MiB limit, the signature, the provider's reading, one store
//! write per delivery id, and the same answers everywhere.

// Each provider uses some of these; a build with one alone leaves others idle.
#![cfg_attr(not(all(feature = "stripe", feature = "events", feature = "paddle")), allow(dead_code))]

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::account::AccountId;
use crate::state::Change;
use crate::store::{Applied, Store, StoreError};

/// The largest webhook body accepted (providers' events are far smaller).
pub(crate) const MAX_BODY: usize = 1 << 20;

/// What a provider made of a verified, parsed delivery.
pub(crate) enum Read {
    /// Apply `changes` to `account`, once per `key`.
    Apply {
        /// The dedupe key: the delivery's own id, prefixed where the
        /// provider's ids could collide with another's.
        key: String,
        /// Whose.
        account: AccountId,
        /// What changes, with event times.
        changes: Vec<Change>,
    },
    /// Nothing to apply (a type the ladder does not need), with a reason.
    Ignored(Option<String>),
    /// The customer maps to no account.
    Unmapped,
}

/// Why a delivery was not applied.
pub(crate) enum Refused {
    /// A body that is not what the provider sends: `400` with this JSON.
    BadRequest(Value),
    /// The store (or the provider's API) failed; a retry can help: `503`.
    Unavailable(String),
    /// Input that can never be stored: `200`, "ignored", with the reason.
    Ignored(String),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            Refused::Unavailable(e.to_string())
        } else {
            Refused::Ignored(e.to_string())
        }
    }
}

/// A provider's side of a webhook.
#[async_trait]
pub(crate) trait Delivery: Send + Sync + 'static {
    /// What the provider's parsed body is.
    type Event: Send + Sync;

    /// Checks that the signature headers are there (and single) before the
    /// body is read: a stranger cannot make us buffer one.
    fn signed(&self, headers: &HeaderMap) -> Result<(), String>;

    /// Checks the signature over the raw body at `now`.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), String>;

    /// Reads the verified body (`400` with the JSON given when it is not
    /// one the provider sends).
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Self::Event, Value>;

    /// The delivery's id and type, for logs and metrics.
    fn describe<'e>(&self, event: &'e Self::Event) -> (&'e str, &'e str);

    /// The facts and the account (which may ask the store or the
    /// provider's API).
    async fn read(&self, event: &Self::Event) -> Result<Read, Refused>;

    /// Counts one delivery of `kind` with `result` in the provider's metric.
    fn count(&self, kind: &str, result: &'static str);
}

struct Endpoint<D> {
    delivery: D,
    store: Arc<dyn Store>,
    /// For logs: "Stripe", "Paddle", "the sender".
    sender: &'static str,
}

/// The endpoint at `path` for `delivery`, writing to `store`.
pub(crate) fn router<D: Delivery>(path: &str, delivery: D, store: Arc<dyn Store>, sender: &'static str) -> Router {
    crate::metrics::describe();
    let state = Arc::new(Endpoint { delivery, store, sender });
    Router::new().route(path, post(receive::<D>)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(state)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn receive<D: Delivery>(State(e): State<Arc<Endpoint<D>>>, req: Request) -> Response {
    let d = &e.delivery;
    let (parts, body) = req.into_parts();
    if let Err(err) = d.signed(&parts.headers) {
        d.count("other", "bad_signature");
        return reply(StatusCode::BAD_REQUEST, json!({ "error": err }));
    }
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            d.count("other", "too_large");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "the body is larger than 1 MiB" }));
        }
        Err(err) => {
            d.count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": format!("the body could not be read: {err}") }));
        }
    };
    if let Err(err) = d.verify(&parts.headers, &body, Utc::now()) {
        tracing::info!(error = %err, "webhook refused: bad signature");
        d.count("other", "bad_signature");
        return reply(StatusCode::BAD_REQUEST, json!({ "error": err }));
    }
    let event = match d.parse(&parts.headers, &body) {
        Ok(event) => event,
        Err(answer) => {
            d.count("other", "bad_request");
            return reply(StatusCode::BAD_REQUEST, answer);
        }
    };
    let (id, kind) = d.describe(&event);
    let span = tracing::info_span!("webhook", event_id = %id, event_type = %kind, account = tracing::field::Empty);
    let (response, result) = handle(&e, &event).instrument(span).await;
    d.count(kind, result);
    response
}

async fn handle<D: Delivery>(e: &Endpoint<D>, event: &D::Event) -> (Response, &'static str) {
    let ignored = |reason: &str| {
        tracing::warn!(error = %reason, "webhook ignored: its input can never be stored");
        (reply(StatusCode::OK, json!({ "received": true, "result": "ignored", "reason": reason })), "ignored")
    };
    let unavailable = |reason: &str| {
        tracing::warn!(error = %reason, "webhook not applied ({} will retry)", e.sender);
        (reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": reason })), "unavailable")
    };
    let (key, account, changes) = match e.delivery.read(event).await {
        Ok(Read::Apply { key, account, changes }) => (key, account, changes),
        Ok(Read::Ignored(None)) => return (reply(StatusCode::OK, json!({ "received": true, "result": "ignored" })), "ignored"),
        Ok(Read::Ignored(Some(reason))) => return (reply(StatusCode::OK, json!({ "received": true, "result": "ignored", "reason": reason })), "ignored"),
        Ok(Read::Unmapped) => return (reply(StatusCode::OK, json!({ "received": true, "result": "unmapped" })), "unmapped"),
        Err(Refused::BadRequest(answer)) => return (reply(StatusCode::BAD_REQUEST, answer), "bad_request"),
        Err(Refused::Ignored(reason)) => return ignored(&reason),
        Err(Refused::Unavailable(reason)) => return unavailable(&reason),
    };
    tracing::Span::current().record("account", account.as_str());
    match e.store.apply(&account, Some(&key), &changes).await {
        Ok(applied) => {
            let result = if matches!(applied, Applied::Duplicate) { "duplicate" } else { "applied" };
            tracing::debug!(result, "webhook processed");
            (reply(StatusCode::OK, json!({ "received": true, "result": result, "account": account })), result)
        }
        Err(err) if !err.is_retryable() => ignored(&err.to_string()),
        Err(err) => {
            metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "apply").increment(1);
            unavailable(&err.to_string())
        }
    }
}

/// The one value of header `name`: missing or repeated is an error.
pub(crate) fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<Result<&'h str, ()>> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(value.to_str().map_err(|_| ()))
}
