//! Paddle's API: what verify-before-blocking, the debt sweep and the
//! customer look-up need (`GET /transactions/{id}`, `GET
//! /subscriptions/{id}`, `GET /customers/{id}`), with a bearer API key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::event::PREFIX;
use crate::provider::{Source, SourceError};
use crate::state::{BillingState, Change, SubscriptionFact, SubscriptionStatus};

/// At most this many objects are fetched per question.
const MAX_OBJECTS: usize = 10;

/// Why Paddle's API did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request failed (network, timeout).
    #[error("Paddle API request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Paddle answered with an error (`{"error": {"code", "detail"}}`).
    #[error("Paddle API answered {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Paddle's `error.detail`, or the body's first bytes.
        detail: String,
    },
    /// The answer had no `data` object.
    #[error("Paddle API answered without a data object")]
    Shape,
}

/// A Paddle API client. `Debug` hides the key.
#[derive(Clone)]
pub(crate) struct PaddleApi {
    http: reqwest::Client,
    base: Arc<str>,
    key: Arc<str>,
}

impl std::fmt::Debug for PaddleApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaddleApi").field("base", &self.base).finish_non_exhaustive()
    }
}

impl PaddleApi {
    pub(crate) fn new(key: &str, base: &str) -> Result<Self, String> {
        let parsed = crate::href::api_base(base)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        Ok(Self { http, base: parsed.into(), key: key.into() })
    }

    /// `GET url` with the key: the answer's JSON body, or Paddle's error
    /// (`{"error": {"detail"}}`) with its status.
    async fn fetch(&self, url: &str) -> Result<Value, ApiError> {
        let response = self.http.get(url).bearer_auth(&*self.key).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let detail = body.pointer("/error/detail").and_then(Value::as_str).unwrap_or("no detail").chars().take(200).collect();
        Err(ApiError::Status { status: status.as_u16(), detail })
    }

    /// `GET {base}{path}`: the answer's `data` object.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, ApiError> {
        let body = self.fetch(&format!("{}{path}", self.base)).await?;
        match body.get("data") {
            Some(data @ Value::Object(_)) => Ok(data.clone()),
            _ => Err(ApiError::Shape),
        }
    }
}

impl PaddleApi {
    /// Every entity of a list (`GET {base}{path}`, e.g.
    /// `/transactions?status=past_due`), following
    /// `meta.pagination.next` while `has_more`, at most `max` entities.
    pub(crate) async fn list(&self, path: &str, max: usize) -> Result<Vec<Value>, ApiError> {
        let mut url = format!("{}{path}", self.base);
        let mut all = Vec::new();
        loop {
            let body = self.fetch(&url).await?;
            let Some(Value::Array(page)) = body.get("data") else { return Err(ApiError::Shape) };
            all.extend(page.iter().cloned());
            let pagination = body.pointer("/meta/pagination");
            let more = pagination.and_then(|p| p.get("has_more")).and_then(Value::as_bool).unwrap_or(false);
            let next = pagination.and_then(|p| p.get("next")).and_then(Value::as_str);
            match next {
                // Only pages of the same API: the key never goes elsewhere.
                Some(next) if more && all.len() < max && !page.is_empty() && next.starts_with(&format!("{}/", self.base)) => url = next.to_owned(),
                _ => return Ok(all),
            }
        }
    }
}

/// Asks Paddle about the transactions and subscriptions it wrote (keys
/// `paddle:txn_…`, `paddle:sub_…`).
pub(crate) struct PaddleSource {
    pub(crate) api: PaddleApi,
}

/// Paddle's id behind one of its keys, when it is a `kind` (`txn`, `sub`).
fn own<'k>(key: &'k str, kind: &str) -> Option<&'k str> {
    let id = key.strip_prefix(PREFIX)?;
    (id.strip_prefix(kind)?.starts_with('_') && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(id)
}

fn time_at(obj: &Value, key: &str) -> Option<DateTime<Utc>> {
    let raw = obj.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(raw).ok().filter(|t| crate::state::sane_time(t.timestamp()).is_some()).map(|t| t.with_timezone(&Utc))
}

/// When a paid transaction was paid: its last captured payment, else its
/// last update.
fn paid_at(txn: &Value) -> Option<DateTime<Utc>> {
    let captured = txn.get("payments").and_then(Value::as_array).into_iter().flatten().filter(|p| p.get("status").and_then(Value::as_str) == Some("captured")).filter_map(|p| time_at(p, "captured_at")).max();
    captured.or_else(|| time_at(txn, "updated_at"))
}

#[async_trait]
impl Source for PaddleSource {
    fn name(&self) -> &'static str {
        "Paddle"
    }

    /// Paid or completed transactions are settled (at their captured
    /// payment's time), canceled ones voided (at their last update); a
    /// debt-status subscription that is live again is applied at `now`.
    async fn ask(&self, state: &BillingState, now: DateTime<Utc>) -> Result<Vec<Change>, SourceError> {
        let mut changes = Vec::new();
        for key in state.unpaid().keys().filter(|k| own(k, "txn").is_some()).take(MAX_OBJECTS) {
            let id = own(key, "txn").expect("filtered");
            // One transaction Paddle no longer knows (deleted, another
            // environment's) has nothing to say; it does not hide the others.
            let txn = match self.api.get(&format!("/transactions/{id}")).await {
                Err(ApiError::Status { status: 404, .. }) => continue,
                other => other?,
            };
            match txn.get("status").and_then(Value::as_str) {
                Some("paid" | "completed") => changes.push(Change::InvoiceSettled { id: key.clone(), at: paid_at(&txn).unwrap_or(now) }),
                Some("canceled") => changes.push(Change::InvoiceVoided { id: key.clone(), at: time_at(&txn, "updated_at").unwrap_or(now) }),
                _ => {}
            }
        }
        let in_debt = state.subscriptions().iter().filter(|(k, s)| s.status.is_debt() && own(k, "sub").is_some());
        for (key, known) in in_debt.take(MAX_OBJECTS) {
            let id = own(key, "sub").expect("filtered");
            let sub = match self.api.get(&format!("/subscriptions/{id}")).await {
                Err(ApiError::Status { status: 404, .. }) => continue,
                other => other?,
            };
            let status = sub.get("status").and_then(Value::as_str).map(SubscriptionStatus::from_stripe);
            if let Some(status) = status.filter(|s| !s.is_debt()) {
                let fact = SubscriptionFact { ladder: known.ladder.clone(), ..SubscriptionFact::new(status, now) };
                changes.push(Change::Subscription { id: key.clone(), fact });
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_keys() {
        assert_eq!(own("paddle:txn_01h", "txn"), Some("txn_01h"));
        assert_eq!(own("paddle:sub_01h", "txn"), None);
        assert_eq!(own("txn_01h", "txn"), None);
        assert_eq!(own("paddle:txn_../x", "txn"), None);
        assert_eq!(own("events:txn_1", "txn"), None);
    }
}
