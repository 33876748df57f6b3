//! A stand-in for Paddle's API (the endpoints pastdue calls), built from
//! Paddle's documented request and response shapes, and Paddle entities
//! and notifications to deliver. `tests/paddle/sdk.py` checks both with
//! Paddle's official Python SDK.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The secret key of the test notification destination.
pub const PADDLE_SECRET: &str = "pdl_ntfset_01h8test_Qw3rTy";
/// The API key the stand-in accepts.
pub const PADDLE_KEY: &str = "pdl_sdbx_apikey_01htest";

#[derive(Default)]
struct Entities {
    by_path: HashMap<String, Value>,
    calls: usize,
}

/// Paddle's API on a loopback port: `GET /transactions/{id}`,
/// `/subscriptions/{id}`, `/customers/{id}` with `Authorization: Bearer`.
#[derive(Clone)]
pub struct PaddleApi {
    entities: Arc<Mutex<Entities>>,
    /// The largest page the lists answer (Paddle caps `per_page`).
    page_limit: Arc<std::sync::atomic::AtomicUsize>,
    pub base: String,
}

fn meta() -> Value {
    json!({ "request_id": format!("{:08x}-0000-4000-8000-000000000000", rand_u32()) })
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u32
}

fn error(status: StatusCode, code: &str, detail: &str) -> axum::response::Response {
    let body = json!({
        "error": { "type": "request_error", "code": code, "detail": detail, "documentation_url": format!("https://developer.paddle.com/v1/errors/shared/{code}") },
        "meta": meta(),
    });
    (status, Json(body)).into_response()
}

async fn entity(State(api): State<PaddleApi>, Path((kind, id)): Path<(String, String)>, headers: HeaderMap) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {PADDLE_KEY}")) {
        return error(StatusCode::FORBIDDEN, "forbidden", "You aren't permitted to perform this request.");
    }
    let mut e = api.entities.lock().unwrap();
    e.calls += 1;
    match e.by_path.get(&format!("/{kind}/{id}")) {
        Some(data) => Json(json!({ "data": data, "meta": meta() })).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", &format!("Entity {id} not found")),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    per_page: Option<usize>,
    after: Option<String>,
}

/// `GET /{kind}?status=a,b&per_page=N&after=<id>`: Paddle's list shape,
/// ordered by id, with `meta.pagination` (`next` is a whole URL).
async fn list(State(api): State<PaddleApi>, Path(kind): Path<String>, axum::extract::Query(q): axum::extract::Query<ListQuery>, headers: HeaderMap) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {PADDLE_KEY}")) {
        return error(StatusCode::FORBIDDEN, "forbidden", "You aren't permitted to perform this request.");
    }
    let mut e = api.entities.lock().unwrap();
    e.calls += 1;
    let statuses: Vec<&str> = q.status.as_deref().map(|s| s.split(',').collect()).unwrap_or_default();
    let prefix = format!("/{kind}/");
    let mut matching: Vec<(&String, &Value)> = e
        .by_path
        .iter()
        .filter(|(path, v)| path.starts_with(&prefix) && (statuses.is_empty() || statuses.contains(&v["status"].as_str().unwrap_or(""))))
        .collect();
    matching.sort_by_key(|(path, _)| path.as_str());
    let after = q.after.map(|a| format!("{prefix}{a}"));
    let rest: Vec<&Value> = matching.iter().filter(|(p, _)| after.as_ref().is_none_or(|a| p.as_str() > a.as_str())).map(|(_, v)| *v).collect();
    let per_page = q.per_page.unwrap_or(50).clamp(1, api.page_limit.load(std::sync::atomic::Ordering::Relaxed));
    let page: Vec<&Value> = rest.iter().take(per_page).copied().collect();
    let has_more = rest.len() > per_page;
    let last = page.last().and_then(|v| v["id"].as_str()).unwrap_or("");
    let status = q.status.as_deref().map(|s| format!("&status={s}")).unwrap_or_default();
    let next = format!("{}/{kind}?per_page={per_page}{status}&after={last}", api.base);
    Json(json!({ "data": page, "meta": { "request_id": meta()["request_id"], "pagination": { "per_page": per_page, "next": next, "has_more": has_more, "estimated_total": matching.len() } } })).into_response()
}

impl PaddleApi {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = Self { entities: Arc::default(), page_limit: Arc::new(200.into()), base };
        let app = Router::new().route("/{kind}", get(list)).route("/{kind}/{id}", get(entity)).with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        api
    }

    /// Stores `entity` (a transaction, subscription or customer) under its id.
    pub fn put(&self, entity: &Value) {
        let id = entity["id"].as_str().unwrap();
        let kind = match &id[..4] {
            "txn_" => "transactions",
            "sub_" => "subscriptions",
            "ctm_" => "customers",
            _ => panic!("unknown id {id}"),
        };
        self.entities.lock().unwrap().by_path.insert(format!("/{kind}/{id}"), entity.clone());
    }

    /// Lists answer at most `n` entities per page from now on.
    pub fn limit_pages(&self, n: usize) {
        self.page_limit.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// API calls answered so far.
    pub fn calls(&self) -> usize {
        self.entities.lock().unwrap().calls
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A transaction as Paddle's API and notifications show it: `status`
/// (`past_due`, `completed`, …), `grand_total` in minor units of
/// `currency`, for `customer`, with `custom_data` naming `account` when
/// given.
pub fn paddle_transaction(id: &str, status: &str, customer: &str, account: Option<&str>, grand_total: i64, currency: &str, billed: DateTime<Utc>) -> Value {
    let total = grand_total.to_string();
    let paid = matches!(status, "paid" | "completed");
    let payments = if paid {
        json!([{ "payment_attempt_id": "pa_1", "stored_payment_method_id": "paymtd_1", "payment_method_id": "paymtd_1", "amount": total, "status": "captured",
                 "error_code": null, "method_details": { "type": "card", "card": { "type": "visa", "last4": "4242", "expiry_month": 1, "expiry_year": 2030, "cardholder_name": "Ada" } },
                 "created_at": rfc3339(billed), "captured_at": rfc3339(billed + chrono::Duration::hours(1)) }])
    } else {
        json!([])
    };
    json!({
        "id": id, "status": status, "customer_id": customer, "address_id": "add_01htest", "business_id": null,
        "custom_data": account.map(|a| json!({ "account_id": a })), "origin": "subscription_recurring",
        "collection_mode": "automatic", "subscription_id": "sub_01htest", "invoice_id": "inv_01htest", "invoice_number": "325-10566",
        "billing_details": null, "billing_period": { "starts_at": rfc3339(billed), "ends_at": rfc3339(billed + chrono::Duration::days(30)) },
        "currency_code": currency, "discount_id": null, "created_at": rfc3339(billed), "updated_at": rfc3339(billed), "billed_at": rfc3339(billed),
        "items": [], "payments": payments,
        "details": {
            "tax_rates_used": [],
            "totals": { "subtotal": total, "discount": "0", "tax": "0", "total": total, "credit": "0", "credit_to_balance": "0", "balance": total,
                        "grand_total": total, "grand_total_tax": "0", "fee": null, "earnings": null, "currency_code": currency },
            "adjusted_totals": { "subtotal": total, "tax": "0", "total": total, "grand_total": total, "grand_total_tax": "0", "fee": "0", "earnings": "0", "currency_code": currency, "retained_fee": "0" },
            "payout_totals": null, "adjusted_payout_totals": null, "line_items": []
        },
        "checkout": { "url": format!("https://pay.example.com/checkout?_ptxn={id}") }
    })
}

/// A subscription in `status` for `customer`.
pub fn paddle_subscription(id: &str, status: &str, customer: &str, account: Option<&str>, at: DateTime<Utc>) -> Value {
    json!({
        "id": id, "status": status, "customer_id": customer, "address_id": "add_01htest", "business_id": null, "currency_code": "EUR",
        "created_at": rfc3339(at), "updated_at": rfc3339(at), "started_at": rfc3339(at), "first_billed_at": rfc3339(at), "next_billed_at": null,
        "paused_at": null, "canceled_at": null, "collection_mode": "automatic", "billing_details": null,
        "current_billing_period": null, "billing_cycle": { "interval": "month", "frequency": 1 }, "scheduled_change": null,
        "items": [], "custom_data": account.map(|a| json!({ "account_id": a })), "management_urls": null, "discount": null, "import_meta": null
    })
}

/// A customer with `email`, naming `account` in `custom_data` when given.
pub fn paddle_customer(id: &str, email: &str, account: Option<&str>, at: DateTime<Utc>) -> Value {
    json!({
        "id": id, "name": "Ada", "email": email, "marketing_consent": false, "status": "active", "locale": "en",
        "custom_data": account.map(|a| json!({ "account_id": a })), "created_at": rfc3339(at), "updated_at": rfc3339(at), "import_meta": null
    })
}

/// A notification of `kind` about `data`, as Paddle sends it.
pub fn notification(event_id: &str, kind: &str, occurred_at: DateTime<Utc>, data: &Value) -> String {
    json!({ "event_id": event_id, "event_type": kind, "occurred_at": rfc3339(occurred_at), "notification_id": format!("ntf_{}", &event_id[4..]), "data": data }).to_string()
}

/// A delivery of `body` to `/webhooks/paddle`, signed now with `secret`.
pub fn paddle_delivery(secret: &str, body: &str) -> Request<Body> {
    let header = pastdue::paddle::signature::sign(secret, Utc::now().timestamp(), body.as_bytes());
    Request::post("/webhooks/paddle").header("paddle-signature", header).header("content-type", "application/json").body(Body::from(body.to_owned())).unwrap()
}

/// Runs `tests/paddle/sdk.py` with `args`, `input` on stdin; its stdout.
pub fn paddle_sdk(args: &[&str], input: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paddle/sdk.py");
    let args: Vec<&str> = std::iter::once(script).chain(args.iter().copied()).collect();
    super::venv_python(&args, input)
}
