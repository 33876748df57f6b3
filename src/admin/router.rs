//! The router, bearer authentication, and what every handler shares: the refusal, the JSON body, the audited change.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::account::AccountId;
use crate::clock::SharedClock;
use super::AdminConfig;
use crate::settings::ConfigError;
use crate::policy::Policy;
use crate::state::{BillingState, Change};
use crate::store::{AuditDraft, Store};
use crate::stripe::Mapper;

use super::*;

/// Most entries one page returns.
pub const MAX_PAGE: usize = 100;

pub(super) struct Admin {
    pub(super) store: Arc<dyn Store>,
    pub(super) policy: Policy,
    pub(super) mapper: Mapper,
    pub(super) tokens: Vec<([u8; 32], String)>,
    pub(super) clock: SharedClock,
    pub(super) auth_failures: metrics::Counter,
    /// The unix second of the last logged failure.
    pub(super) last_failure_log: AtomicI64,
    /// `admin.path`.
    pub(super) base: String,
    /// The operator console's sessions, templates and helpers.
    pub(super) console: console::Console,
}

/// Who made the request (the token's name), for the audit log.
#[derive(Clone, Debug)]
pub(super) struct Caller(pub(super) String);

/// The admin API under `admin.path`, ready to merge into an app: `[admin]`
/// settings, the ladder views are computed with (`Config::ladder`), and
/// the Stripe mapper (`stripe::Mapper::new(&config.stripe, store)`) whose
/// store it reads and writes and whose API `POST …/sync` uses.
///
/// Refuses to build with no token configured, or with a token shorter
/// than 16 bytes.
pub fn router(config: &AdminConfig, policy: impl Into<Policy>, mapper: Mapper) -> Result<Router, ConfigError> {
    router_with_clock(config, policy, mapper, crate::clock::system())
}

/// [`router`], reading "now" from `clock` (views, listings by stage and
/// override expiry follow it; see [`crate::clock`]).
pub fn router_with_clock(config: &AdminConfig, policy: impl Into<Policy>, mapper: Mapper, clock: SharedClock) -> Result<Router, ConfigError> {
    let policy = policy.into();
    let page = crate::gate::PaymentPage::default().with_stage_kinds(&policy);
    build(config, policy, mapper, clock, Arc::new(page), None)
}

/// The admin API and the console, previewing customers' pages with the
/// gate's own `page` and checking with Stripe through its `verifier`.
pub(crate) fn build(
    config: &AdminConfig,
    policy: Policy,
    mapper: Mapper,
    clock: SharedClock,
    page: Arc<crate::gate::PaymentPage>,
    verifier: Option<Arc<crate::provider::Verifier>>,
) -> Result<Router, ConfigError> {
    config.check_tokens()?;
    let store = mapper.store().clone();
    crate::metrics::describe();
    let tokens: Vec<_> = config
        .all_tokens()
        .into_iter()
        .map(|t| (Sha256::digest(t.token.expose().as_bytes()).into(), t.name))
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError::key("admin.token", "is empty and admin.tokens lists none; set one (PASTDUE_ADMIN__TOKEN=…) to enable the admin API"));
    }
    let sessions = console::Sessions::new(&tokens, config.session_ttl, &config.ui_user_header, &config.ui_users);
    let admin = Arc::new(Admin {
        policy,
        mapper,
        store,
        tokens,
        clock,
        auth_failures: metrics::counter!(crate::metrics::ADMIN_AUTH_FAILURES),
        last_failure_log: AtomicI64::new(0),
        base: config.path.clone(),
        console: console::Console::new(sessions, page, verifier),
    });
    let base = &config.path;
    let api = Router::new()
        .route(&format!("{base}/accounts"), get(list_accounts))
        .route(&format!("{base}/accounts/{{account}}"), get(view_account))
        .route(&format!("{base}/accounts/{{account}}/override"), put(set_override).delete(remove_override))
        .route(&format!("{base}/accounts/{{account}}/customers"), post(link_customer))
        .route(&format!("{base}/accounts/{{account}}/contacts"), put(set_contacts))
        .route(&format!("{base}/accounts/{{account}}/policy"), put(set_policy))
        .route(&format!("{base}/accounts/{{account}}/promise"), post(add_promise))
        .route(&format!("{base}/accounts/{{account}}/notes"), post(add_note))
        .route(&format!("{base}/audit"), get(audit_log))
        .route(&format!("{base}/agenda"), get(agenda))
        .route(&format!("{base}/recovery"), get(recovery))
        .route(&format!("{base}/sync"), post(sync))
        .route_layer(middleware::from_fn_with_state(admin.clone(), authenticate))
        .with_state(admin.clone());
    let served = Arc::new(serde_json::to_vec(&openapi_document_at(base)).unwrap_or_default());
    let docs = Router::new().route(
        &format!("{base}/openapi.json"),
        get(move || {
            let served = served.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], (*served).clone()).into_response() }
        }),
    );
    Ok(api.merge(docs).merge(console::routes(admin, base)))
}

/// A refusal: the status, what went wrong, and for bad input the field.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) field: Option<String>,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn bad(field: &'static str, message: impl Into<String>) -> Failure {
    Failure { status: StatusCode::BAD_REQUEST, message: message.into(), field: Some(field.to_owned()) }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> Failure {
    Failure { status: StatusCode::SERVICE_UNAVAILABLE, message: format!("store unavailable: {e}"), field: None }
}

pub(super) type Reply = Result<Response, Failure>;

pub(super) async fn authenticate(State(admin): State<Arc<Admin>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| Sha256::digest(t.trim().as_bytes()));
    let mut who = None;
    if let Some(digest) = presented {
        // Every token is compared, match or not, in constant time.
        for (known, name) in &admin.tokens {
            if bool::from(known.ct_eq(digest.as_slice())) {
                who = Some(name.clone());
            }
        }
    }
    match who {
        Some(name) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        None => {
            admin.auth_failures.increment(1);
            // Logged at most once a second: a scanner cannot flood the log.
            let now = Utc::now().timestamp();
            let last = admin.last_failure_log.swap(now, Ordering::Relaxed);
            if last != now {
                tracing::warn!(path = %req.uri().path(), "admin API: request with a missing or wrong bearer token refused");
            }
            unauthorized()
        }
    }
}

pub(super) fn unauthorized() -> Response {
    (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response()
}

pub(super) fn parse_account(raw: &str) -> Result<AccountId, Failure> {
    AccountId::new(raw).map_err(|e| bad("account", e.to_string()))
}

/// Reads a JSON object body, refusing anything else with a 400 that says why.
/// A JSON request body parsed into `T`, whose rejection is a `400` that
/// names the field (`content-type`, `body`, or the field that failed). The
/// same type is the body's OpenAPI schema, so parser and document agree.
pub(super) struct AdminJson<T>(pub(super) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for AdminJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let is_json = ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(bad("content-type", "send the body as application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| bad("body", e.body_text()))?;
        let value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(bad("body", "the body must be a JSON object")),
            Err(e) => return Err(bad("body", format!("the body is not valid JSON: {e}"))),
        };
        request(value).map(AdminJson)
    }
}

/// `value` as a request body `T`, refused with a `400` naming the field
/// that failed: how [`AdminJson`] reads bodies, and how the console turns
/// its forms into the same requests.
pub(super) fn request<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().iter().next().map_or_else(|| "body".to_owned(), |seg| seg.to_string());
        let message = format!("{field}: {}", e.inner());
        Failure { status: StatusCode::BAD_REQUEST, message, field: Some(field) }
    })
}

/// Applies `change` and writes its audit entry in one atomic step (the
/// entry's `before` is read in that step; no entry, no change); answers
/// with the new view.
pub(super) async fn change_and_audit(admin: &Admin, account: &AccountId, change: Change, draft: AuditDraft<'_>) -> Reply {
    changes_and_audit(admin, account, &[change], draft).await
}

/// [`change_and_audit`] for several changes in one atomic step.
pub(super) async fn changes_and_audit(admin: &Admin, account: &AccountId, changes: &[Change], draft: AuditDraft<'_>) -> Reply {
    let (applied, _entry) = admin.store.apply_audited(account, changes, &draft).await.map_err(|e| {
        tracing::error!(error = %e, action = draft.action, account = %account, "change not made: it could not be audited");
        unavailable(e)
    })?;
    let after = applied.state().cloned().unwrap_or_default();
    account_view(admin, account, Some(&after)).await
}

/// The admin view, with the customer list read from the links (a customer
/// moved to another account is no longer listed here, even before this
/// account's copy catches up).
pub(super) async fn account_view(admin: &Admin, account: &AccountId, state: Option<&BillingState>) -> Reply {
    let mut v = view(account, state, &admin.policy, admin.clock.now());
    let mut linked = Vec::with_capacity(v.customers.len());
    for c in v.customers.drain(..) {
        if admin.store.customer_account(&c).await.map_err(unavailable)?.as_ref() == Some(account) {
            linked.push(c);
        }
    }
    v.customers = linked;
    Ok(Json(v).into_response())
}

pub(super) fn draft<'a>(who: &'a str, action: &'a str, reason: Option<&'a str>, pick: fn(&BillingState) -> Value) -> AuditDraft<'a> {
    AuditDraft { who, action, reason, pick, extra: None }
}

pub(super) fn pick_override(s: &BillingState) -> Value {
    serde_json::to_value(s.override_()).unwrap_or_default()
}

pub(super) fn pick_customers(s: &BillingState) -> Value {
    json!(s.customers())
}

pub(super) fn required_reason(reason: Option<&str>) -> Result<String, Failure> {
    match reason.map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(bad("reason", "reason is required")),
    }
}
