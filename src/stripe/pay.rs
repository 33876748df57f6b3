//! `GET /billing/pay?t=<token>`: a fresh billing-portal session per click,
//! for whoever holds a signed link to one account.
//!
//! Portal links are short-lived and personal, so they are never put into a
//! page or a cache: the page, the banner and the e-mails carry a signed
//! [link token](crate::links) instead, and each click mints a new session
//! for the account's Stripe customer and redirects to it.
//!
//! - no token, or a bare `account=` → `401`; a tampered token → `403`; an
//!   expired one → `410` with a page that says how to get a fresh link.
//! - `&flow=payment_method_update` opens the portal on "update payment
//!   method" (the token still decides whose portal it is).
//! - A reload storm is not a Stripe API storm: one session is minted per
//!   account and flow every [`MINT_INTERVAL`]; clicks within it get the same
//!   session (counted in `pastdue_pay_links_total`).
//!
//! [`with_pay_links`] is the only way to make a gate link here, and it
//! returns the router to mount: a page never points at a missing route.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::provider::Verifier;
use super::StripeApi;
use crate::account::AccountId;
use crate::clock::SharedClock;
use super::StripeConfig;
use crate::links::LinksConfig;
use crate::settings::ConfigError;
use crate::gate::{GateLayer, Languages};
use crate::links::{LinkError, LinkSigner, Purpose, PAY_PATH, RETURN_PATH};
use crate::store::Store;

/// At most one portal session is minted per account and flow this often.
pub const MINT_INTERVAL: Duration = Duration::from_secs(5);

/// The portal flow that opens on "update payment method".
pub(crate) const FLOW_PAYMENT_METHOD_UPDATE: &str = "payment_method_update";

struct Pay {
    api: StripeApi,
    store: Arc<dyn Store>,
    /// The app's public origin: the portal returns to `{origin}/billing/return?t=…`.
    origin: String,
    /// Where `/billing/return` sends the customer after verifying.
    return_to: String,
    verifier: Arc<Verifier>,
    signer: LinkSigner,
    languages: Languages,
    /// (account, flow) → the session minted at that instant.
    recent: quick_cache::sync::Cache<(AccountId, bool), (String, DateTime<Utc>)>,
    /// The gate's clock: the mint window follows it.
    clock: SharedClock,
    /// The gate, whose cache forgets an account coming back, so the page
    /// it returns to is decided on the store's state, not on a cached one
    /// the invalidation has not reached yet.
    gate: crate::gate::GateLayer,
}

/// Wires signed pay links: the gate's page, banner and problem+json link to
/// `/billing/pay?t=<token>`, and the returned router serves that path.
/// Merge the router into the app, outside the gate (`/billing/**` is exempt
/// by default).
///
/// Without `stripe.portal_return_url` the gate is returned unchanged with
/// an empty router: pay buttons go to the invoice's hosted page (or
/// `page.billing_portal_url`). With it, `stripe.api_key` and
/// `links.secret` are required.
pub fn with_pay_links(
    gate: GateLayer,
    config: &StripeConfig,
    links: &LinksConfig,
    store: Arc<dyn Store>,
) -> Result<(GateLayer, Router), ConfigError> {
    pay_links(gate, config, links, store, None)
}

/// [`with_pay_links`], verifying returns with `verifier` when given (the
/// one the gate asks, so both share one rate limit), else a new one.
pub(crate) fn pay_links(
    gate: GateLayer,
    config: &StripeConfig,
    links: &LinksConfig,
    store: Arc<dyn Store>,
    verifier: Option<Arc<Verifier>>,
) -> Result<(GateLayer, Router), ConfigError> {
    let Some(signer) = links.signer(&config.portal_return_url)? else {
        return Ok((gate, Router::new()));
    };
    let key = config.api_key().ok_or_else(|| ConfigError::key("stripe.api_key", "is needed for billing-portal links (stripe.portal_return_url is set)"))?;
    let api = StripeApi::new(key, &config.api_base)
        .map_err(|e| ConfigError::invalid("stripe.api_key", e))?;
    let languages = Languages::builtin().map_err(|e| ConfigError::invalid("page", e))?;
    let verifier = match verifier {
        Some(shared) => shared,
        None => Arc::new(Verifier::new(config, super::sources(config)?, store.clone(), gate.clock().clone())?.ok_or_else(|| ConfigError::key("stripe.api_key", "is needed for billing-portal links (stripe.portal_return_url is set)"))?),
    };
    let state = Arc::new(Pay {
        api,
        store,
        origin: links.origin(&config.portal_return_url)?,
        return_to: links.return_to.clone(),
        verifier,
        signer: signer.clone(),
        languages,
        recent: quick_cache::sync::Cache::new(10_000),
        clock: gate.clock().clone(),
        gate: gate.clone(),
    });
    let router = Router::new().route(PAY_PATH, get(pay)).route(RETURN_PATH, get(back).post(back)).with_state(state);
    Ok((gate.with_link_signer(PAY_PATH, signer), router))
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({ "status": status.as_u16(), "detail": detail })))
        .into_response()
}

fn count(result: &'static str) {
    metrics::counter!(crate::metrics::PAY_LINKS, "result" => result).increment(1);
}

/// The account a signed link for `purpose` names, and its `flow`
/// parameter; or the refusal: no token `401`, altered, forged or for
/// another purpose `403`, expired `410` (a page in the visitor's language).
// The refusal is the handler's finished answer; boxing it buys nothing on
// a path that runs once per click.
#[allow(clippy::result_large_err)]
fn signed_account(p: &Pay, req: &Request, purpose: Purpose) -> Result<(AccountId, Option<String>), Response> {
    let mut token = None;
    let mut flow = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "t" if token.is_some() => return Err(problem(StatusCode::BAD_REQUEST, "the link names `t` twice")),
            "t" => token = Some(v),
            "flow" => flow = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        count("unauthorized");
        return Err(problem(StatusCode::UNAUTHORIZED, "open this page from a pay button or a reminder e-mail: it needs a signed link"));
    };
    match p.signer.verify(&token, purpose, Utc::now()) {
        Ok(account) => Ok((account, flow)),
        Err(LinkError::Expired { .. }) => {
            count("expired");
            let language = req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
            Err(expired(&p.languages, language))
        }
        Err(_) => {
            count("forbidden");
            Err(problem(StatusCode::FORBIDDEN, "this link is not valid"))
        }
    }
}

/// `/billing/return?t=…` (GET from the billing portal, POST from the page's
/// "Already paid? Check again"): verifies the account with Stripe at once,
/// then sends the customer to `links.return_to`, where the gate decides.
async fn back(State(p): State<Arc<Pay>>, req: Request) -> Response {
    let (account, _) = match signed_account(&p, &req, Purpose::Return) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    p.verifier.verify_now(&account).await;
    p.gate.forget(account.as_str());
    count("returned");
    redirect(&p.return_to)
}

async fn pay(State(p): State<Arc<Pay>>, req: Request) -> Response {
    let (account, flow) = match signed_account(&p, &req, Purpose::Pay) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let update_method = flow.as_deref() == Some(FLOW_PAYMENT_METHOD_UPDATE);
    let key = (account.clone(), update_method);
    let guard = loop {
        match p.recent.get_value_or_guard_async(&key).await {
            Ok((url, at)) if p.clock.now().signed_duration_since(at).to_std().is_ok_and(|age| age < MINT_INTERVAL) => {
                count("reused");
                return redirect(&url);
            }
            // Older than the interval: mint afresh (one caller gets the
            // guard; concurrent ones wait for its session).
            Ok(_) => {
                p.recent.remove(&key);
            }
            Err(guard) => break guard,
        }
    };
    match mint(&p, &account, update_method).await {
        Ok(Minted::Portal(url)) => {
            count("minted");
            let _ = guard.insert((url.clone(), p.clock.now()));
            redirect(&url)
        }
        Ok(Minted::Fallback(url)) => {
            count("fallback");
            redirect(&url)
        }
        Err(response) => response,
    }
}

enum Minted {
    Portal(String),
    Fallback(String),
}

async fn mint(p: &Pay, account: &AccountId, update_method: bool) -> Result<Minted, Response> {
    let state = match p.store.load(account).await {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            count("unavailable");
            return Err(problem(StatusCode::SERVICE_UNAVAILABLE, &format!("please try again in a moment ({e})")));
        }
    };
    let fallback = state.oldest_unpaid().and_then(|(_, i)| i.hosted_url.as_deref().map(str::to_owned));
    // Only a customer still linked to this account: a customer moved to
    // another account is no longer opened from this one's links.
    let mut customer = None;
    for c in state.customers() {
        match p.store.customer_account(c).await {
            Ok(Some(owner)) if &owner == account => {
                customer = Some(c.clone());
                break;
            }
            Ok(_) => {}
            Err(e) => {
                count("unavailable");
                return Err(problem(StatusCode::SERVICE_UNAVAILABLE, &format!("please try again in a moment ({e})")));
            }
        }
    }
    let Some(customer) = customer else {
        return match fallback {
            Some(url) => Ok(Minted::Fallback(url)),
            None => Err(problem(StatusCode::NOT_FOUND, "no Stripe customer is linked to this account")),
        };
    };
    let flow = update_method.then_some(FLOW_PAYMENT_METHOD_UPDATE);
    let back = format!("{}{RETURN_PATH}?t={}", p.origin, p.signer.sign(account.as_str(), Purpose::Return, p.clock.now()));
    match p.api.portal_session(&customer, &back, flow).await {
        Ok(url) => Ok(Minted::Portal(url)),
        Err(e) => {
            count("failed");
            tracing::warn!(error = %e, "billing portal session failed");
            match fallback {
                Some(url) => Ok(Minted::Fallback(url)),
                None => Err(problem(StatusCode::SERVICE_UNAVAILABLE, "the billing portal is unavailable; please try again")),
            }
        }
    }
}

/// `410 Gone`: a friendly page in the visitor's language.
fn expired(languages: &Languages, accept_language: Option<&str>) -> Response {
    let lang = languages.choose(None, accept_language);
    let title = lang.text("link_expired_title", &[]);
    let body = lang.text("link_expired_body", &[]);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>body{{font:17px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}@media (prefers-color-scheme:dark){{body{{background:#15171a;color:#e8e8e8}}}}</style></head><body><h1>{t}</h1><p>{b}</p></body></html>",
        lang.code(),
        t = esc(&title),
        b = esc(&body),
    );
    (
        StatusCode::GONE,
        [(header::CACHE_CONTROL, "no-store"), (header::VARY, "accept-language")],
        Html(html),
    )
        .into_response()
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
