//! The operator console: server-rendered pages under `{admin.path}/ui/`
//! for the people who run collections — what is at risk, who to call
//! today, one account's whole story and exactly what its customer sees,
//! and the actions the admin API offers, as forms.
//!
//! Sign-in is a named admin token (a signed session cookie, see
//! [`session`]) or a header from a single-sign-on proxy. Every form that
//! changes something is a POST carrying a CSRF token bound to the session,
//! from the console's own origin, and goes through the admin API's own
//! handler — the same validation, the same audit entry — under the
//! operator's name. The JSON API never accepts the cookie. No JavaScript:
//! charts are SVG drawn here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{AutoEscape, Environment};
use serde_json::Value;

use super::*;
use crate::gate::PaymentPage;

mod actions;
mod charts;
mod pages;
mod session;

pub(super) use self::session::Sessions;
use self::session::Operator;

/// What the console needs beyond the admin API's state.
pub(super) struct Console {
    pub(super) sessions: Sessions,
    templates: Environment<'static>,
    /// The gate's own page, for previews of what a customer sees.
    pub(super) page: Arc<PaymentPage>,
    /// The gate's verifier, for "check with Stripe now".
    pub(super) verifier: Option<Arc<crate::provider::Verifier>>,
    /// Failed sign-ins allowed now: a bucket of [`FAILURE_BURST`], one more
    /// every [`FAILURE_REFILL`]; when empty, sign-ins that fail are refused
    /// with `429` at once (nothing waits, nothing queues).
    failures: std::sync::Mutex<(f64, Instant)>,
}

/// Failed sign-ins allowed in a burst.
const FAILURE_BURST: f64 = 5.0;
/// One more failed sign-in allowed every this long.
const FAILURE_REFILL: Duration = Duration::from_secs(2);

impl Console {
    pub(super) fn new(sessions: Sessions, page: Arc<PaymentPage>, verifier: Option<Arc<crate::provider::Verifier>>) -> Self {
        let mut templates = Environment::new();
        templates.set_auto_escape_callback(|_| AutoEscape::Html);
        templates.add_filter("urlencode", |s: String| percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string());
        for (name, source) in [
            ("layout.html", include_str!("../../../templates/console/layout.html")),
            ("login.html", include_str!("../../../templates/console/login.html")),
            ("refused.html", include_str!("../../../templates/console/refused.html")),
            ("overview.html", include_str!("../../../templates/console/overview.html")),
            ("accounts.html", include_str!("../../../templates/console/accounts.html")),
            ("account.html", include_str!("../../../templates/console/account.html")),
            ("audit.html", include_str!("../../../templates/console/audit.html")),
        ] {
            templates.add_template(name, source).expect("the console's templates compile");
        }
        Self { sessions, templates, page, verifier, failures: std::sync::Mutex::new((FAILURE_BURST, Instant::now())) }
    }

    /// Takes a failed sign-in from the bucket; `false` when it is empty
    /// (guessing is limited to one token every two seconds, whoever asks,
    /// while a right token always gets in).
    fn allow_failure(&self) -> bool {
        let mut bucket = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() / FAILURE_REFILL.as_secs_f64()).min(FAILURE_BURST);
        let allowed = tokens >= 1.0;
        *bucket = (if allowed { tokens - 1.0 } else { tokens }, now);
        allowed
    }
}

/// The console's routes under `{base}/ui`.
pub(super) fn routes(admin: Arc<Admin>, base: &str) -> Router {
    let ui = format!("{base}/ui");
    Router::new()
        .route(&format!("{ui}/"), get(pages::overview))
        .route(&ui, get(pages::to_overview))
        .route(&format!("{ui}/login"), get(pages::login_page).post(actions::login))
        .route(&format!("{ui}/logout"), post(actions::logout))
        .route(&format!("{ui}/accounts"), get(pages::accounts))
        .route(&format!("{ui}/accounts/{{account}}"), get(pages::account))
        .route(&format!("{ui}/accounts/{{account}}/preview"), get(pages::preview))
        .route(&format!("{ui}/accounts/{{account}}/{{action}}"), post(actions::act))
        .route(&format!("{ui}/audit"), get(pages::audit))
        .with_state(admin)
}

/// Where the console lives: `{admin.path}/ui`.
fn ui(admin: &Admin) -> String {
    format!("{}/ui", admin.base)
}

/// The headers every console answer carries: nothing cached, nothing
/// framed but the preview, nothing loaded from elsewhere.
fn secure(mut res: Response, frame: bool) -> Response {
    let h = res.headers_mut();
    let csp = if frame {
        // The customer's page, as a sandboxed document inside the console.
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; sandbox; frame-ancestors 'self'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    };
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !frame {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

/// Renders `template` with `ctx` (plus the operator, the CSRF token and
/// the console's base), as an HTML answer with `status`.
fn render(admin: &Admin, status: StatusCode, template: &str, operator: Option<&Operator>, mut ctx: Value) -> Response {
    if let Value::Object(map) = &mut ctx {
        map.insert("base".into(), Value::String(admin.base.clone()));
        map.insert("operator".into(), operator.map_or(Value::Null, |o| Value::String(o.name.clone())));
        map.insert("csrf".into(), operator.map_or(Value::Null, |o| Value::String(o.csrf.clone())));
    }
    let html = admin
        .console
        .templates
        .get_template(template)
        .and_then(|t| t.render(&ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, template, "console template failed");
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Console error</title><p>This page could not be drawn; the log says why.</p></html>".to_owned()
        });
    let mut res = (status, html).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure(res, false)
}

/// A `303 See Other` to `to` (after a form, or to the sign-in page).
fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure(res, false)
}

/// A refusal page (`status`), saying why, changing nothing.
fn refused(admin: &Admin, status: StatusCode, operator: Option<&Operator>, heading: &str, message: &str, back: &str) -> Response {
    render(admin, status, "refused.html", operator, serde_json::json!({ "heading": heading, "message": message, "back": back }))
}

/// The JSON body of an admin API answer, so the console shows exactly
/// what the API would (same handler, same checks).
async fn json_of(reply: Reply) -> Result<Value, Failure> {
    let res = reply?;
    let bytes = axum::body::to_bytes(res.into_body(), 4 << 20)
        .await
        .map_err(|e| Failure { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string(), field: None })?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Money in every currency of `amounts` (`{"eur": 4900}`), as people read it.
fn money_of(amounts: &Value) -> String {
    let parts: Vec<String> = amounts
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(c, a)| Some(crate::money::format_money(a.as_i64()?, crate::state::Currency::new(c)?)))
        .collect();
    if parts.is_empty() { "—".into() } else { parts.join(" + ") }
}

/// A time as operators read it.
fn when(t: &Value) -> String {
    t.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(|| "—".into(), |t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
}
