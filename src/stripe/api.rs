//! The Stripe API, through the async-stripe client, read tolerantly.
//!
//! Responses are taken as JSON values rather than generated types, so an
//! API version with new or missing fields (or an emulator such as
//! localstripe, which leaves many out) never turns into an error here.

use std::collections::BTreeMap;

use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

/// Why a Stripe API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The client could not be built (bad key or base URL).
    #[error("stripe client configuration: {0}")]
    Config(String),
    /// The call failed or Stripe refused it.
    #[error("stripe API call {path} failed: {message}")]
    Call {
        /// The API path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A Stripe API client (`stripe.api_key`, `stripe.api_base`).
#[derive(Clone)]
pub struct StripeApi {
    client: stripe::Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApi")
    }
}

/// Query or form parameters, in Stripe's bracket notation.
pub type Params = BTreeMap<String, String>;

impl StripeApi {
    /// A client for `api_base` (Stripe's own, or an emulator) with `api_key`.
    pub fn new(api_key: &str, api_base: &str) -> Result<Self, ApiError> {
        let base = if api_base.ends_with('/') { api_base.to_owned() } else { format!("{api_base}/") };
        let client = stripe::ClientBuilder::new(api_key)
            .url(base)
            .build()
            .map_err(|e| ApiError::Config(e.to_string()))?;
        Ok(Self { client })
    }

    async fn send(&self, builder: RequestBuilder) -> Result<Value, ApiError> {
        let path = builder.path.clone();
        let call = |message: String| ApiError::Call { path: path.clone(), message };
        let value: miniserde::json::Value =
            builder.customize().send(&self.client).await.map_err(|e| call(e.to_string()))?;
        serde_json::from_str(&miniserde::json::to_string(&value)).map_err(|e| call(e.to_string()))
    }

    /// `GET /v1{path}`.
    pub async fn get(&self, path: &str, query: &Params) -> Result<Value, ApiError> {
        self.send(RequestBuilder::new(StripeMethod::Get, path).query(query)).await
    }

    /// `POST /v1{path}` with a form body.
    pub async fn post(&self, path: &str, form: &Params) -> Result<Value, ApiError> {
        self.send(RequestBuilder::new(StripeMethod::Post, path).form(form)).await
    }

    /// Every object of a list endpoint, following `has_more`/`starting_after`.
    pub async fn list_all(&self, path: &str, query: &Params) -> Result<Vec<Value>, ApiError> {
        let mut all = Vec::new();
        let mut query = query.clone();
        query.insert("limit".into(), "100".into());
        loop {
            let page = self.get(path, &query).await?;
            let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            let last = data.last().and_then(|o| o.get("id")).and_then(Value::as_str).map(str::to_owned);
            all.extend(data);
            let more = page.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            match (more, last) {
                (true, Some(id)) => {
                    query.insert("starting_after".into(), id);
                }
                _ => return Ok(all),
            }
        }
    }

    /// `GET /v1/customers/{id}`.
    pub async fn customer(&self, id: &str) -> Result<Value, ApiError> {
        self.get(&format!("/customers/{id}"), &Params::new()).await
    }

    /// A fresh billing-portal session URL for `customer`, opening on
    /// `flow` (`flow_data[type]`, e.g. `payment_method_update`) when given.
    pub async fn portal_session(&self, customer: &str, return_url: &str, flow: Option<&str>) -> Result<String, ApiError> {
        let mut form = Params::from([("customer".into(), customer.into()), ("return_url".into(), return_url.into())]);
        if let Some(flow) = flow {
            form.insert("flow_data[type]".into(), flow.into());
        }
        let session = self.post("/billing_portal/sessions", &form).await?;
        session.get("url").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| ApiError::Call {
            path: "/billing_portal/sessions".into(),
            message: "the session has no url".into(),
        })
    }
}
