//! Stripe events as Stripe sends them: envelopes around Stripe's own
//! example objects (`tests/fixtures/stripe_objects.json`, from
//! `../shared/stripe/fixtures3.json`), signed the way Stripe signs; and
//! admin API calls.

use axum::body::Body;
use chrono::{DateTime, Utc};
use http::Request;
use serde_json::{json, Value};

/// Stripe's example objects by type (`invoice`, `subscription`, …).
pub fn fixtures() -> Value {
    serde_json::from_str(include_str!("../fixtures/stripe_objects.json")).unwrap()
}

/// An event envelope: `kind` about `object`, its facts dated `created`.
pub fn event_body(id: &str, kind: &str, created: DateTime<Utc>, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "type": kind, "created": created.timestamp(),
        "livemode": false, "pending_webhooks": 1, "data": { "object": object }, "request": { "id": null, "idempotency_key": null },
    }))
    .unwrap()
}

/// `POST /webhooks/stripe` with `body`, signed with `secret` now.
pub fn signed_delivery(secret: &str, body: Vec<u8>) -> Request<Body> {
    let sig = pastdue::signature::sign(secret, Utc::now().timestamp(), &body);
    Request::post("/webhooks/stripe").header("stripe-signature", sig).header("content-type", "application/json").body(Body::from(body)).unwrap()
}

/// Stripe's example invoice as `account`'s invoice `id` (customer
/// `cus_<account>`, subscription `sub_<account>` naming the account):
/// `open` and owing `amount` euro cents, or `paid`/`void`.
pub fn invoice_object(account: &str, id: &str, status: &str, amount: i64) -> Value {
    let mut inv = fixtures()["invoice"].clone();
    inv["id"] = json!(id);
    inv["customer"] = json!(format!("cus_{account}"));
    inv["status"] = json!(status);
    inv["currency"] = json!("eur");
    inv["number"] = json!(format!("N-{id}"));
    inv["hosted_invoice_url"] = json!(format!("https://invoice.stripe.com/i/{id}"));
    inv["parent"] = json!({ "type": "subscription_details", "quote_details": null, "subscription_details": { "subscription": format!("sub_{account}"), "metadata": { "account_id": account } } });
    if status == "open" {
        inv["amount_due"] = json!(amount);
        inv["amount_remaining"] = json!(amount);
    }
    inv
}

/// An admin API call on `router` with `token`: the status and the JSON body.
pub async fn admin_call(router: &axum::Router, token: &str, method: &str, path: &str, body: Option<Value>) -> (http::StatusCode, Value) {
    use tower::ServiceExt;
    let mut req = Request::builder().method(method).uri(format!("/admin{path}")).header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let res = router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
