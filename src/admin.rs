//! The admin API: look at an account, grant an extension or force a block,
//! link a Stripe customer, list accounts by stage, read the audit log, and
//! reconcile from Stripe.
//!
//! Every route needs `Authorization: Bearer <token>` (`admin.token`, or a
//! named token from `admin.tokens`, whose name the audit log records).
//! Tokens are compared in constant time over their SHA-256 digests, so
//! neither content nor length leaks. Bad input answers `400` with a JSON
//! body naming the field: `{"error": "...", "field": "until"}`.
//!
//! The OpenAPI document is served at `<admin.path>/openapi.json`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::{OpenApi, ToSchema};

use crate::account::AccountId;
use crate::clock::SharedClock;
use crate::settings::{AdminConfig, ConfigError};
use crate::policy::Policy;
use crate::standing::Ladder;
use crate::state::{BillingState, Change, ContactRole, ContactSource, Override, OverrideMode};
use crate::store::{AuditDraft, AuditEntry, Index, IndexEntry, LinkSource, Linked, Store, NEVER};
use crate::stripe::Mapper;

/// Most entries one page returns.
pub const MAX_PAGE: usize = 100;

struct Admin {
    store: Arc<dyn Store>,
    policy: Policy,
    mapper: Mapper,
    tokens: Vec<([u8; 32], String)>,
    clock: SharedClock,
    auth_failures: metrics::Counter,
    /// The unix second of the last logged failure.
    last_failure_log: AtomicI64,
}

/// Who made the request (the token's name), for the audit log.
#[derive(Clone, Debug)]
struct Caller(String);

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
    config.check_tokens()?;
    let store = mapper.store().clone();
    crate::metrics::describe();
    let tokens: Vec<_> = config
        .all_tokens()
        .into_iter()
        .map(|t| (Sha256::digest(t.token.expose().as_bytes()).into(), t.name))
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError::Key {
            key: "admin.token".into(),
            message: "is empty and admin.tokens lists none; set one (PASTDUE_ADMIN__TOKEN=…) to enable the admin API".into(),
        });
    }
    let admin = Arc::new(Admin {
        policy,
        mapper,
        store,
        tokens,
        clock,
        auth_failures: metrics::counter!(crate::metrics::ADMIN_AUTH_FAILURES),
        last_failure_log: AtomicI64::new(0),
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
        .route(&format!("{base}/audit"), get(audit_log))
        .route(&format!("{base}/agenda"), get(agenda))
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
    Ok(api.merge(docs))
}

/// A refusal: the status, what went wrong, and for bad input the field.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    field: Option<String>,
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

fn bad(field: &'static str, message: impl Into<String>) -> Failure {
    Failure { status: StatusCode::BAD_REQUEST, message: message.into(), field: Some(field.to_owned()) }
}

fn unavailable(e: impl std::fmt::Display) -> Failure {
    Failure { status: StatusCode::SERVICE_UNAVAILABLE, message: format!("store unavailable: {e}"), field: None }
}

type Reply = Result<Response, Failure>;

async fn authenticate(State(admin): State<Arc<Admin>>, mut req: Request, next: Next) -> Response {
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

fn unauthorized() -> Response {
    (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response()
}

fn parse_account(raw: &str) -> Result<AccountId, Failure> {
    AccountId::new(raw).map_err(|e| bad("account", e.to_string()))
}

/// An account as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    account: String,
    /// Whether the store has heard of the account at all.
    known: bool,
    stage: String,
    action: String,
    /// Why: `good_standing`, `unknown`, `debt`, `canceled`, `paused`, `override`.
    reason: String,
    since: Option<DateTime<Utc>>,
    past_due_since: Option<DateTime<Utc>>,
    amount_due: i64,
    currency: Option<String>,
    pay_url: Option<String>,
    next_stage: Option<String>,
    next_stage_at: Option<DateTime<Utc>>,
    #[serde(rename = "override")]
    #[schema(value_type = Option<Object>)]
    override_: Option<Override>,
    override_active: bool,
    #[schema(value_type = Vec<Object>)]
    notices: Vec<crate::state::NoticeSent>,
    customers: Vec<String>,
    /// Customers linked here by an admin that Stripe metadata names for
    /// another account (the admin link stays).
    #[schema(value_type = Vec<Object>)]
    link_conflicts: Vec<crate::state::LinkConflict>,
    #[schema(value_type = Object)]
    unpaid_invoices: Value,
    /// Invoices coming due (not owed yet), soonest first: `invoice`,
    /// `number`, `due_at`, `amount_due`, `currency`, `pay_url`, and
    /// `reminder_to`: the billing e-mail the reminder before the due date
    /// goes to (`null`: no address known, so no e-mail reminder can go).
    #[schema(value_type = Vec<Object>)]
    upcoming_dues: Vec<Value>,
    #[schema(value_type = Object)]
    subscriptions: Value,
    contact_email: Option<String>,
    /// Who hears about this account: `billing` (the invoice's e-mail),
    /// `accountant`, `account_manager`; each `null` when unknown.
    #[schema(value_type = Object)]
    contacts: Value,
    /// The ladder the account is on and why (`name`, `source`: `admin`,
    /// `plan`, `repeat` or `default`, `why`, the earlier `episodes`, the
    /// `broken_promises` that made a repeat offender, `skipped` choices).
    #[schema(value_type = Object)]
    ladder: Value,
    /// Promises to pay, oldest first, each with its `status`: `pending`,
    /// `kept` or `broken`.
    #[schema(value_type = Vec<Object>)]
    promises: Vec<Value>,
    /// The date of the newest promise made during the debt owed now.
    promised_until: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl AccountView {
    /// The view of `account` (its `state`, `None` when the store has never
    /// heard of it) on `ladder` at `now`: what `GET /admin/accounts/{a}`
    /// answers and `pastdue status --json` prints.
    pub fn of(account: &AccountId, state: Option<&BillingState>, policy: &Policy, now: DateTime<Utc>) -> Self {
        view(account, state, policy, now)
    }
}

/// The invoices `state` knows are coming due after `now`, soonest first.
fn upcoming_dues(state: &BillingState, now: DateTime<Utc>) -> Vec<Value> {
    let mut dues: Vec<_> = state.upcoming().iter().filter(|(_, d)| d.due > now).collect();
    dues.sort_by_key(|(_, d)| d.due);
    dues.into_iter()
        .map(|(key, d)| {
            json!({
                "invoice": key,
                "number": d.number,
                "due_at": d.due,
                "amount_due": d.amount_due,
                "currency": d.currency,
                "pay_url": d.hosted_url,
                "reminder_to": state.contact_email(),
            })
        })
        .collect()
}

fn view(account: &AccountId, state: Option<&BillingState>, policy: &Policy, now: DateTime<Utc>) -> AccountView {
    let standing = policy.evaluate(state, now);
    let empty = BillingState::default();
    let s = state.unwrap_or(&empty);
    AccountView {
        account: account.to_string(),
        known: state.is_some(),
        stage: standing.stage().name().to_owned(),
        action: standing.action().as_str().to_owned(),
        reason: standing.reason().as_str().to_owned(),
        since: standing.since(),
        past_due_since: standing.past_due_since(),
        amount_due: standing.amount_due().map_or(0, |(a, _)| a),
        currency: standing.amount_due().map(|(_, c)| c.to_string()),
        pay_url: standing.pay_url().map(str::to_owned),
        next_stage: standing.next().map(|(st, _)| st.name().to_owned()),
        next_stage_at: standing.next().map(|(_, t)| t),
        override_active: s.override_().is_some_and(|o| o.is_active(now)),
        override_: s.override_().cloned(),
        notices: s.notices().to_vec(),
        customers: s.customers().iter().cloned().collect(),
        link_conflicts: s.link_conflicts().to_vec(),
        unpaid_invoices: serde_json::to_value(s.unpaid()).unwrap_or_default(),
        upcoming_dues: upcoming_dues(s, now),
        subscriptions: serde_json::to_value(s.subscriptions()).unwrap_or_default(),
        contact_email: s.contact_email().map(str::to_owned),
        contacts: json!({
            "billing": s.contact_email(),
            "accountant": s.contact(ContactRole::Accountant),
            "account_manager": s.contact(ContactRole::AccountManager),
        }),
        ladder: serde_json::to_value(policy.explain(state, now)).unwrap_or_default(),
        promises: s
            .promises()
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["status"] = json!(s.promise_status(p, now));
                v
            })
            .collect(),
        promised_until: standing.promised(),
        updated_at: s.updated_at(),
    }
}

#[utoipa::path(get, path = "/admin/accounts/{account}", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad account id"), (status = 401, description = "missing or wrong bearer token")))]
async fn view_account(State(admin): State<Arc<Admin>>, Path(account): Path<String>) -> Reply {
    let account = parse_account(&account)?;
    let state = admin.store.load(&account).await.map_err(unavailable)?;
    account_view(&admin, &account, state.as_ref()).await
}

/// The body of `PUT …/override`.
#[derive(Deserialize, ToSchema)]
struct OverrideRequest {
    /// `allow` or `block` (required).
    #[schema(value_type = String, required = true)]
    mode: Option<ModeField>,
    /// When it ends: RFC 3339 (`2026-12-24T09:00:00Z`) or a duration
    /// from now (`7d`, `12h`); null for none.
    #[schema(value_type = Option<String>)]
    until: Option<String>,
    /// Why (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
}

/// `mode` as the body spells it.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeField {
    Allow,
    Block,
}

/// Reads a JSON object body, refusing anything else with a 400 that says why.
/// A JSON request body parsed into `T`, whose rejection is a `400` that
/// names the field (`content-type`, `body`, or the field that failed). The
/// same type is the body's OpenAPI schema, so parser and document agree.
struct AdminJson<T>(T);

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
        serde_path_to_error::deserialize(value).map(AdminJson).map_err(|e| {
            let field = e.path().iter().next().map_or_else(|| "body".to_owned(), |seg| seg.to_string());
            let message = format!("{field}: {}", e.inner());
            Failure { status: StatusCode::BAD_REQUEST, message, field: Some(field) }
        })
    }
}

fn parse_override(body: OverrideRequest, who: &str, now: DateTime<Utc>) -> Result<Override, Failure> {
    let mode = match body.mode {
        Some(ModeField::Allow) => OverrideMode::Allow,
        Some(ModeField::Block) => OverrideMode::Block,
        None => return Err(bad("mode", "mode must be \"allow\" or \"block\"")),
    };
    let until = body.until.as_deref().map(|raw| crate::clock::parse_until(raw, now).map_err(|e| bad("until", e.to_string()))).transpose()?;
    let reason = body.reason.as_deref().map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(bad("reason", "reason is required"));
    }
    Ok(Override { mode, until, reason: reason.to_owned(), by: who.to_owned(), at: now })
}

/// Applies `change` and writes its audit entry in one atomic step (the
/// entry's `before` is read in that step; no entry, no change); answers
/// with the new view.
async fn change_and_audit(admin: &Admin, account: &AccountId, change: Change, draft: AuditDraft<'_>) -> Reply {
    changes_and_audit(admin, account, &[change], draft).await
}

/// [`change_and_audit`] for several changes in one atomic step.
async fn changes_and_audit(admin: &Admin, account: &AccountId, changes: &[Change], draft: AuditDraft<'_>) -> Reply {
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
async fn account_view(admin: &Admin, account: &AccountId, state: Option<&BillingState>) -> Reply {
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

fn draft<'a>(who: &'a str, action: &'a str, reason: Option<&'a str>, pick: fn(&BillingState) -> Value) -> AuditDraft<'a> {
    AuditDraft { who, action, reason, pick, extra: None }
}

fn pick_override(s: &BillingState) -> Value {
    serde_json::to_value(s.override_()).unwrap_or_default()
}

fn pick_customers(s: &BillingState) -> Value {
    json!(s.customers())
}

#[utoipa::path(put, path = "/admin/accounts/{account}/override", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = OverrideRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn set_override(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<OverrideRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let o = parse_override(body, &who, admin.clock.now())?;
    let reason = o.reason.clone();
    change_and_audit(&admin, &account, Change::SetOverride(o), draft(&who, "override.set", Some(&reason), pick_override)).await
}

#[utoipa::path(delete, path = "/admin/accounts/{account}/override", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn remove_override(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
) -> Reply {
    let account = parse_account(&account)?;
    change_and_audit(&admin, &account, Change::ClearOverride, draft(&who, "override.removed", None, pick_override)).await
}

/// The body of `PUT …/policy`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PolicyRequest {
    /// The ladder's name (`default` or a `[ladders.<name>]`); `null` hands
    /// the choice back to the plan, the repeat rule and `default`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, required = true)]
    ladder: Option<Option<String>>,
    /// Why (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
}

fn required_reason(reason: Option<&str>) -> Result<String, Failure> {
    match reason.map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(bad("reason", "reason is required")),
    }
}

fn pick_policy(s: &BillingState) -> Value {
    serde_json::to_value(s.ladder_choice()).unwrap_or_default()
}

#[utoipa::path(put, path = "/admin/accounts/{account}/policy", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = PolicyRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input (an unknown ladder); `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn set_policy(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<PolicyRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let Some(ladder) = body.ladder else {
        return Err(bad("ladder", "ladder is required: a ladder's name, or null to clear the choice"));
    };
    let reason = required_reason(body.reason.as_deref())?;
    if let Some(name) = &ladder {
        if admin.policy.ladder(name).is_none() {
            let known = admin.policy.names().collect::<Vec<_>>().join(", ");
            return Err(bad("ladder", format!("{name:?} is not a ladder (known: {known})")));
        }
    }
    let (change, action) = match ladder {
        Some(ladder) => {
            let choice = crate::state::LadderChoice { ladder, reason: reason.clone(), by: who.clone(), at: admin.clock.now() };
            (Change::Ladder(Some(choice)), "policy.set")
        }
        None => (Change::Ladder(None), "policy.cleared"),
    };
    change_and_audit(&admin, &account, change, draft(&who, action, Some(&reason), pick_policy)).await
}

/// The body of `POST …/promise`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PromiseRequest {
    /// The date the customer says they will have paid by (required, in the
    /// future): RFC 3339 or a duration from now (`7d`).
    #[schema(value_type = String, required = true)]
    until: Option<String>,
    /// Why, or what was said (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
    /// Record it even though a promise was broken within
    /// `policy.promise_cooldown`.
    #[serde(default)]
    force: bool,
}

fn pick_promises(s: &BillingState) -> Value {
    serde_json::to_value(s.promises()).unwrap_or_default()
}

#[utoipa::path(post, path = "/admin/accounts/{account}/promise", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = PromiseRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token"), (status = 409, description = "nothing is owed, or a promise was broken within `policy.promise_cooldown` (send `\"force\": true` to record it anyway)")))]
async fn add_promise(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<PromiseRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let now = admin.clock.now();
    let raw = body.until.as_deref().ok_or_else(|| bad("until", "until is required: RFC 3339 (2026-12-24T09:00:00Z) or a duration from now (7d)"))?;
    let until = crate::clock::parse_until(raw, now).map_err(|e| bad("until", e.to_string()))?;
    let reason = required_reason(body.reason.as_deref())?;
    let state = admin.store.load(&account).await.map_err(unavailable)?;
    match admin.policy.may_promise(state.as_ref(), until, body.force, now) {
        Ok(()) => {}
        Err(crate::policy::PromiseRefused::NotFuture) => return Err(bad("until", "until is in the past")),
        Err(refused) => return Err(Failure { status: StatusCode::CONFLICT, message: refused.to_string(), field: None }),
    }
    let promise = crate::state::Promise { at: now, until, reason: reason.clone(), by: who.clone() };
    let action = if body.force { "promise.forced" } else { "promise.added" };
    change_and_audit(&admin, &account, Change::Promise(promise), draft(&who, action, Some(&reason), pick_promises)).await
}

/// The body of `PUT …/contacts`: each role an address, `null` to remove
/// it, or left out to keep it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ContactsRequest {
    /// The customer's accountant.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    accountant: Option<Option<String>>,
    /// Your own staff member for this customer.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    account_manager: Option<Option<String>>,
}

/// A field that is present (`null` included): `Some(value)`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn pick_contacts(s: &BillingState) -> Value {
    serde_json::to_value(s.contacts()).unwrap_or_default()
}

#[utoipa::path(put, path = "/admin/accounts/{account}/contacts", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = ContactsRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn set_contacts(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<ContactsRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let mut changes = Vec::new();
    for (role, value) in [(ContactRole::Accountant, body.accountant), (ContactRole::AccountManager, body.account_manager)] {
        let Some(email) = value else { continue };
        let email = email.map(|e| e.trim().to_owned());
        if let Some(e) = &email {
            if !crate::state::is_valid_email(e) {
                return Err(bad(role.as_str(), format!("{} must be an e-mail address (name@example.com) or null", role.as_str())));
            }
        }
        changes.push(Change::Contact { role, email, source: ContactSource::Admin });
    }
    if changes.is_empty() {
        return Err(bad("body", "give accountant and/or account_manager (an address, or null to remove)"));
    }
    changes_and_audit(&admin, &account, &changes, draft(&who, "contacts.set", None, pick_contacts)).await
}

/// The body of `POST …/customers`.
#[derive(Deserialize, ToSchema)]
struct LinkRequest {
    /// A Stripe customer id, `cus_…` (required).
    #[schema(value_type = String)]
    customer: Option<String>,
}

#[utoipa::path(post, path = "/admin/accounts/{account}/customers", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = LinkRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn link_customer(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<LinkRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let customer = body.customer.as_deref().unwrap_or("");
    let valid = customer.starts_with("cus_")
        && customer.len() <= 255
        && customer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(bad("customer", "customer must be a Stripe customer id (cus_…)"));
    }
    // The link moves first (it decides whose customer this is); then both
    // accounts' copies follow, each with its audit entry.
    let linked = admin.store.link_customer(customer, &account, LinkSource::Admin).await.map_err(unavailable)?;
    let moved_from = match &linked {
        Linked::Moved { from } => Some(from.clone()),
        _ => None,
    };
    if let Some(from) = &moved_from {
        let away = AuditDraft { extra: Some(("moved_to", account.as_str())), ..draft(&who, "customer.moved", None, pick_customers) };
        admin.store.apply_audited(from, &[Change::UnlinkCustomer(customer.to_owned())], &away).await.map_err(unavailable)?;
    }
    let here = AuditDraft {
        extra: moved_from.as_ref().map(|f| ("moved_from", f.as_str())),
        ..draft(&who, "customer.linked", None, pick_customers)
    };
    change_and_audit(&admin, &account, Change::LinkCustomer(customer.to_owned()), here).await
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The stage to list (a ladder stage, `canceled`, or the block-override stage).
    stage: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
}

/// One account in a listing.
#[derive(Serialize, ToSchema)]
struct Listed {
    account: String,
    stage: String,
    since: Option<DateTime<Utc>>,
    past_due_since: Option<DateTime<Utc>>,
    amount_due: i64,
    currency: Option<String>,
}

/// A page of accounts.
#[derive(Serialize, ToSchema)]
struct AccountPage {
    accounts: Vec<Listed>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

fn parse_limit(raw: Option<&str>) -> Result<usize, Failure> {
    match raw {
        None => Ok(50),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(bad("limit", format!("limit must be a whole number from 1 to {MAX_PAGE}"))),
        },
    }
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AgendaQuery {
    /// RFC 3339 start of the window (default: now).
    from: Option<String>,
    /// RFC 3339 end of the window (default: 7 days after `from`; at most 366 days after it).
    to: Option<String>,
    /// Most items, 1-100 (default 50).
    limit: Option<String>,
}

/// One thing that happens in the window.
#[derive(Serialize, ToSchema)]
struct AgendaItem {
    at: DateTime<Utc>,
    account: String,
    /// `stage` (the account enters `stage`), `due` (a payment comes due),
    /// `override_expires`, or `promise_due` (a promise to pay comes due).
    event: String,
    /// The stage entered, for `stage` events.
    stage: Option<String>,
    /// The stage's action, for `stage` events.
    action: Option<String>,
    /// For `due` events, in minor units.
    amount_due: Option<i64>,
    currency: Option<String>,
}

/// What happens between `from` and `to`, ordered by time.
#[derive(Serialize, ToSchema)]
struct Agenda {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<AgendaItem>,
    /// Whether more items fell in the window than `limit`.
    truncated: bool,
}

#[utoipa::path(get, path = "/admin/agenda", tag = "accounts", params(AgendaQuery),
    responses((status = 200, description = "what happens in the window, ordered by time", body = Agenda), (status = 400, description = "bad from, to or limit; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn agenda(State(admin): State<Arc<Admin>>, Query(q): Query<AgendaQuery>) -> Reply {
    let time = |field: &'static str, raw: Option<&str>| -> Result<Option<DateTime<Utc>>, Failure> {
        match raw.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| crate::state::sane_time(t.timestamp()).is_some())
                .map(Some)
                .ok_or_else(|| bad(field, format!("{field} must be an RFC 3339 time between 2000 and 2100"))),
        }
    };
    let from = time("from", q.from.as_deref())?.unwrap_or_else(|| admin.clock.now());
    let to = time("to", q.to.as_deref())?.unwrap_or(from + chrono::TimeDelta::days(7));
    if to <= from || to - from > chrono::TimeDelta::days(366) {
        return Err(bad("to", "to must lie after from, at most 366 days later"));
    }
    let limit = parse_limit(q.limit.as_deref())?;
    let (lo, hi) = (from.timestamp(), to.timestamp());
    let mut items = Vec::new();
    let mut truncated = false;
    // Stage changes: an account enters a stage `after` its debt started, so
    // those entering it in the window started in the window moved back.
    for stage in admin.policy.stages() {
        let after = i64::try_from(stage.after().as_secs()).unwrap_or(i64::MAX);
        let found = admin.store.scan_index(Index::Debt, lo.saturating_sub(after), hi.saturating_sub(after), None, limit + 1).await.map_err(unavailable)?;
        truncated |= found.len() > limit;
        for entry in found.into_iter().take(limit) {
            // The index may be stale: the state decides.
            let state = admin.store.load(&entry.account).await.map_err(unavailable)?;
            if state.as_ref().and_then(BillingState::past_due_since).map(|t| t.timestamp()) != Some(entry.score) {
                continue;
            }
            // Only the stages of the account's own ladder.
            if !admin.policy.ladder_for(state.as_ref(), from).stages().iter().any(|s| s.same(stage)) {
                continue;
            }
            let at = DateTime::from_timestamp(entry.score.saturating_add(after), 0).unwrap_or(to);
            items.push(AgendaItem { at, account: entry.account.to_string(), event: "stage".into(), stage: Some(stage.name().to_owned()), action: Some(stage.action().as_str().to_owned()), amount_due: None, currency: None });
        }
    }
    // Payments coming due (the index holds each account's earliest due).
    let found = admin.store.scan_index(Index::Upcoming, lo, hi, None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let Some(state) = admin.store.load(&entry.account).await.map_err(unavailable)? else { continue };
        for due in state.upcoming().values().filter(|d| (from..=to).contains(&d.due)) {
            items.push(AgendaItem { at: due.due, account: entry.account.to_string(), event: "due".into(), stage: None, action: None, amount_due: Some(due.amount_due), currency: Some(due.currency.to_string()) });
        }
    }
    // Overrides that lapse.
    let found = admin.store.scan_index(Index::Override, lo, hi.min(NEVER - 1), None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let at = DateTime::from_timestamp(entry.score, 0).unwrap_or(to);
        items.push(AgendaItem { at, account: entry.account.to_string(), event: "override_expires".into(), stage: None, action: None, amount_due: None, currency: None });
    }
    // Promises to pay that come due.
    let found = admin.store.scan_index(Index::Promise, lo, hi, None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let at = DateTime::from_timestamp(entry.score, 0).unwrap_or(to);
        items.push(AgendaItem { at, account: entry.account.to_string(), event: "promise_due".into(), stage: None, action: None, amount_due: None, currency: None });
    }
    items.sort_by(|a, b| (a.at, &a.account).cmp(&(b.at, &b.account)));
    truncated |= items.len() > limit;
    items.truncate(limit);
    Ok(Json(Agenda { from, to, items, truncated }).into_response())
}

/// Where accounts of `stage` may be found: index score ranges. `None` for
/// a stage that cannot be listed (`active` is everyone else).
fn sources(policy: &Policy, stage: &str, now: DateTime<Utc>) -> Option<Vec<(Index, i64, i64)>> {
    let mut out = Vec::new();
    for (_, ladder) in policy.ladders() {
        for range in ladder_sources(ladder, stage, now) {
            if !out.contains(&range) {
                out.push(range);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// [`sources`] on one ladder.
fn ladder_sources(ladder: &Ladder, stage: &str, now: DateTime<Utc>) -> Vec<(Index, i64, i64)> {
    let now_s = now.timestamp();
    let stages = ladder.stages();
    let mut out = Vec::new();
    if let Some(i) = stages.iter().position(|s| s.name() == stage) {
        // In stage i  <=>  after(i) <= now - past_due_since < after(i + 1):
        // a score range that moves with the clock, so accounts whose stage
        // changed only because time passed are found where they are now.
        // A debt stamped in the future (clocks disagree) counts as just
        // started, so a stage starting at 0 takes every later score too.
        let secs = |s: &crate::standing::Stage| i64::try_from(s.after().as_secs()).unwrap_or(i64::MAX);
        let after = secs(&stages[i]);
        let max = if after == 0 { NEVER } else { now_s.saturating_sub(after) };
        let min = stages.get(i + 1).map_or(0, |next| now_s.saturating_sub(secs(next)).saturating_add(1));
        out.push((Index::Debt, min, max));
    }
    if stages.first().is_some_and(|s| s.name() == stage) {
        // Promises in force hold a debt at the first stage, however old.
        out.push((Index::Promise, now_s.saturating_add(1), NEVER));
    }
    if stage == ladder.override_block_stage().name() {
        // Overrides in force (expiring after now) can block any account.
        out.push((Index::Override, now_s.saturating_add(1), NEVER));
    }
    if stage == ladder.canceled().name() {
        out.push((Index::Ended, 0, NEVER));
    }
    out
}

#[utoipa::path(get, path = "/admin/accounts", tag = "accounts", params(ListQuery),
    responses((status = 200, description = "accounts in that stage, and the next cursor", body = AccountPage), (status = 400, description = "bad stage, limit or cursor"), (status = 401, description = "missing or wrong bearer token")))]
async fn list_accounts(State(admin): State<Arc<Admin>>, Query(q): Query<ListQuery>) -> Reply {
    let stage = q.stage.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| bad("stage", "stage is required, e.g. ?stage=suspended"))?;
    let limit = parse_limit(q.limit.as_deref())?;
    let now = admin.clock.now();
    let Some(sources) = sources(&admin.policy, stage, now) else {
        let mut names = admin.policy.stage_names();
        names.push("canceled");
        return Err(bad("stage", format!("stage {stage:?} cannot be listed; use one of {}", names.join(", "))));
    };
    // Cursor: "<source number>|<index cursor>".
    let (mut source, mut after) = match q.cursor.as_deref() {
        None | Some("") => (0usize, None),
        Some(c) => match c.split_once('|').and_then(|(n, rest)| Some((n.parse().ok()?, rest))) {
            Some((n, rest)) if n < sources.len() && (rest.is_empty() || IndexEntry::parse(rest).is_some()) => {
                (n, Some(rest.to_owned()).filter(|r| !r.is_empty()))
            }
            _ => return Err(bad("cursor", "cursor is not one this API returned")),
        },
    };
    let mut accounts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while source < sources.len() && accounts.len() < limit {
        let (index, min, max) = sources[source];
        let batch = admin.store.scan_index(index, min, max, after.as_deref(), limit).await.map_err(unavailable)?;
        if batch.is_empty() {
            source += 1;
            after = None;
            continue;
        }
        for entry in &batch {
            after = Some(entry.cursor());
            // Verify against the state: the index may be stale, and an
            // override may move the account elsewhere.
            let state = admin.store.load(&entry.account).await.map_err(unavailable)?;
            let standing = admin.policy.evaluate(state.as_ref(), now);
            if standing.stage().name() == stage && seen.insert(entry.account.clone()) {
                accounts.push(Listed {
                    account: entry.account.to_string(),
                    stage: stage.to_owned(),
                    since: standing.since(),
                    past_due_since: standing.past_due_since(),
                    amount_due: standing.amount_due().map_or(0, |(a, _)| a),
                    currency: standing.amount_due().map(|(_, c)| c.to_string()),
                });
                if accounts.len() == limit {
                    break;
                }
            }
        }
    }
    let next_cursor = (source < sources.len()).then(|| format!("{source}|{}", after.unwrap_or_default()));
    Ok(Json(AccountPage { accounts, next_cursor }).into_response())
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this account's entries (default: the global log).
    account: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Serialize, ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "audit entries, newest first, and the next cursor", body = AuditPage), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
async fn audit_log(State(admin): State<Arc<Admin>>, Query(q): Query<AuditQuery>) -> Reply {
    let account = q.account.as_deref().filter(|a| !a.is_empty()).map(parse_account).transpose()?;
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| c.len() > 64 || !c.bytes().all(|b| b.is_ascii_digit() || b == b'-')) {
        return Err(bad("cursor", "cursor is not one this API returned"));
    }
    let entries = admin.store.audit_log(account.as_ref(), cursor, limit).await.map_err(unavailable)?;
    let next_cursor = (entries.len() == limit).then(|| entries.last().map(|e| e.id.clone())).flatten();
    Ok(Json(AuditPage { entries, next_cursor }).into_response())
}

#[utoipa::path(post, path = "/admin/sync", tag = "stripe",
    responses((status = 200, description = "the sync report"), (status = 401, description = "missing or wrong bearer token"), (status = 501, description = "no Stripe API key configured"), (status = 503, description = "the store or the Stripe API is unavailable; retry")))]
async fn sync(State(admin): State<Arc<Admin>>, Extension(Caller(who)): Extension<Caller>) -> Reply {
    if admin.mapper.api().is_none() {
        let message = "sync needs a Stripe API key: set stripe.api_key (PASTDUE_STRIPE__API_KEY)".into();
        return Err(Failure { status: StatusCode::NOT_IMPLEMENTED, message, field: None });
    }
    match crate::stripe::sync(&admin.mapper).await {
        Ok(report) => {
            let entry = AuditEntry {
                id: String::new(),
                at: admin.clock.now(),
                who,
                action: "sync".into(),
                account: None,
                before: Value::Null,
                after: serde_json::to_value(&report).unwrap_or_default(),
                reason: None,
            };
            if let Err(e) = admin.store.audit(&entry).await {
                tracing::error!(error = %e, "audit entry for sync not written");
            }
            Ok(Json(report).into_response())
        }
        Err(e) => Err(Failure { status: StatusCode::SERVICE_UNAVAILABLE, message: e.to_string(), field: None }),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pastdue admin API", description = "Accounts, overrides, customer links, audit log and Stripe sync. All routes need `Authorization: Bearer <token>`."),
    paths(view_account, set_override, remove_override, link_customer, set_contacts, set_policy, add_promise, list_accounts, audit_log, agenda, sync),
    components(schemas(AccountView, OverrideRequest, LinkRequest, ContactsRequest, PolicyRequest, PromiseRequest, AccountPage, Listed, AuditPage, AuditEntry, Agenda, AgendaItem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The OpenAPI document of the admin API (paths under `/admin`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document with its paths under `base` (`admin.path`) instead of
/// `/admin`, so it describes the routes actually mounted.
pub fn openapi_document_at(base: &str) -> utoipa::openapi::OpenApi {
    let mut doc = openapi_document();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.strip_prefix("/admin").map_or(path.clone(), |rest| format!("{base}{rest}")), item))
        .collect();
    doc
}
