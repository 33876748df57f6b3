//! `GET /billing/pay`: a fresh billing-portal session per click.
//!
//! Portal links are short-lived and personal, so they are never put into a
//! page or a cache: the pay button points here, and each click mints a new
//! session for the account's Stripe customer and redirects to it.
//!
//! Mount it behind the app's own authentication: it resolves the account
//! with the resolver you give it, exactly like the gate.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::StripeApi;
use crate::account::AccountId;
use crate::config::{Config, ConfigError};
use crate::gate::{RequestView, ResolveAccount};
use crate::store::Store;

/// Where the pay endpoint is mounted.
pub const PAY_PATH: &str = "/billing/pay";

struct Pay {
    api: StripeApi,
    store: Arc<dyn Store>,
    return_url: String,
    resolver: Arc<dyn ResolveAccount>,
}

/// The pay endpoint, when `stripe.portal_return_url` and `stripe.api_key`
/// are both set; `Ok(None)` otherwise (pay buttons then go to the invoice's
/// hosted page).
pub fn pay_router(
    config: &Config,
    store: Arc<dyn Store>,
    resolver: impl ResolveAccount,
) -> Result<Option<Router>, ConfigError> {
    if config.stripe.portal_return_url.is_empty() {
        return Ok(None);
    }
    let key = config.stripe.api_key().ok_or_else(|| ConfigError::Key {
        key: "stripe.api_key".into(),
        message: "is needed for billing-portal links (stripe.portal_return_url is set)".into(),
    })?;
    let api = StripeApi::new(key, &config.stripe.api_base)
        .map_err(|e| ConfigError::Key { key: "stripe.api_key".into(), message: e.to_string() })?;
    let state = Arc::new(Pay {
        api,
        store,
        return_url: config.stripe.portal_return_url.clone(),
        resolver: Arc::new(resolver),
    });
    Ok(Some(Router::new().route(PAY_PATH, get(pay)).with_state(state)))
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({ "status": status.as_u16(), "detail": detail })))
        .into_response()
}

async fn pay(State(p): State<Arc<Pay>>, req: Request) -> Response {
    let account = match p.resolver.resolve(&RequestView::of(&req)).map(|a| AccountId::new(&a)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => return problem(StatusCode::BAD_REQUEST, &format!("invalid account id: {e}")),
        None => return problem(StatusCode::UNAUTHORIZED, "no account: sign in first"),
    };
    let state = match p.store.load(&account).await {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let fallback = state.oldest_unpaid().and_then(|(_, i)| i.hosted_url.clone());
    let Some(customer) = state.customers().iter().next() else {
        return match fallback {
            Some(url) => redirect(&url),
            None => problem(StatusCode::NOT_FOUND, "no Stripe customer is linked to this account"),
        };
    };
    match p.api.portal_session(customer, &p.return_url).await {
        Ok(url) => redirect(&url),
        Err(e) => {
            tracing::warn!(error = %e, "billing portal session failed");
            match fallback {
                Some(url) => redirect(&url),
                None => problem(StatusCode::SERVICE_UNAVAILABLE, "the billing portal is unavailable; please try again"),
            }
        }
    }
}

fn redirect(url: &str) -> Response {
    if !crate::href::is_safe(url) {
        return problem(StatusCode::BAD_GATEWAY, "refusing to redirect to a URL that is not https");
    }
    match HeaderValue::from_str(url) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(_) => problem(StatusCode::BAD_GATEWAY, "Stripe returned an unusable URL"),
    }
}
