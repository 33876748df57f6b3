//! Stripe events as Stripe sends them: envelopes around Stripe's own
//! example objects (`tests/fixtures/stripe_objects.json`, from
//! `../shared/stripe/fixtures3.json`), signed the way Stripe signs.

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
