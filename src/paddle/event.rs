//! Paddle Billing notifications (`{"event_id", "event_type",
//! "occurred_at", "data"}`), read into the same [`Change`]s Stripe's events
//! make. Keys are prefixed `paddle:` (Paddle's `sub_…` ids look like
//! Stripe's), so they live beside Stripe's and in-house ones on one
//! account.
//!
//! | event | change |
//! |---|---|
//! | `transaction.past_due`, and `transaction.payment_failed` of a billed transaction | the transaction is owed (`details.totals.balance`, what is still due, in `currency_code`) since the event time; a manually collected invoice (`billed_at` plus `billing_details.payment_terms`) since its due date, and only a coming due before it; `checkout.url` is its pay link. A failed checkout (`ready`/`draft`: nothing was billed) is no debt |
//! | `transaction.completed`, `transaction.paid` | settled |
//! | `transaction.canceled` | voided |
//! | `subscription.*` (`created`, `activated`, `updated`, `past_due`, `paused`, `resumed`, `canceled`, `trialing`) | the subscription's `status`, mapped as Stripe's same-named statuses |
//! | `customer.created`, `customer.updated` | the billing e-mail |
//!
//! Every fact carries `occurred_at`, so the order deliveries arrive in does
//! not matter. Other types are acknowledged and ignored.

use chrono::{DateTime, Months, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::state::{invoice_number, sane_time, Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice, UpcomingDue};

/// The prefix of every invoice and subscription key this provider writes.
pub const PREFIX: &str = "paddle:";

/// The largest amount accepted (10^12 minor units), as for in-house events.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A body that is not a Paddle notification: the field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    /// The JSON path of the field (`data.details.totals.balance`).
    pub field: String,
    /// Why.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> ParseError {
    ParseError { field: field.to_owned(), message: message.into() }
}

/// A notification, read.
#[derive(Debug, Clone)]
pub struct Notification {
    /// `event_id` (`evt_…`): the dedupe key.
    pub event_id: String,
    /// `event_type` (`transaction.past_due`).
    pub event_type: String,
    /// `occurred_at`: every fact's time.
    pub occurred_at: DateTime<Utc>,
    /// `data`: the entity.
    pub data: Map<String, Value>,
}

#[derive(Deserialize)]
struct Envelope {
    event_id: Option<Value>,
    event_type: Option<Value>,
    occurred_at: Option<Value>,
    data: Option<Value>,
}

fn time(field: &str, raw: &str) -> Result<DateTime<Utc>, ParseError> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .filter(|t| sane_time(t.timestamp()).is_some())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(field, "must be an RFC 3339 time between 2000 and 2100"))
}

/// An id Paddle made (`evt_…`, `txn_…`, `ctm_…`): letters, digits and `_`,
/// at most 255 bytes.
fn plain_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Notification {
    /// Reads a verified body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| bad("body", format!("not a JSON object: {e}")))?;
        let string = |v: Option<Value>, field: &str| match v {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s),
            _ => Err(bad(field, "is required: a string")),
        };
        let event_id = string(envelope.event_id, "event_id")?;
        if !plain_id(&event_id) {
            return Err(bad("event_id", "must be letters, digits and '_'"));
        }
        let event_type = string(envelope.event_type, "event_type")?;
        let occurred_at = time("occurred_at", &string(envelope.occurred_at, "occurred_at")?)?;
        let data = match envelope.data {
            Some(Value::Object(d)) => d,
            _ => return Err(bad("data", "is required: an object")),
        };
        Ok(Self { event_id, event_type, occurred_at, data })
    }
}

/// What a notification says, before the account is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The Paddle customer (`ctm_…`), when the entity names one.
    pub customer: Option<String>,
    /// The account named in the entity's `custom_data`, if any.
    pub account_hint: Option<String>,
    /// The changes, carrying `occurred_at`.
    pub changes: Vec<Change>,
}

fn str_at<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn key(data: &Map<String, Value>) -> Result<String, ParseError> {
    match str_at(data, "id") {
        Some(id) if plain_id(id) => Ok(format!("{PREFIX}{id}")),
        _ => Err(bad("data.id", "is required: letters, digits and '_'")),
    }
}

/// The account named in `custom_data.<metadata_key>`.
pub(crate) fn hint(data: &Map<String, Value>, metadata_key: &str) -> Option<String> {
    data.get("custom_data").and_then(Value::as_object).and_then(|c| str_at(c, metadata_key)).map(str::to_owned)
}

/// Reads the facts of `n`; `Ok(None)` for a type the ladder does not need.
pub fn facts(n: &Notification, metadata_key: &str) -> Result<Option<Facts>, ParseError> {
    let data = &n.data;
    let at = n.occurred_at;
    let (entity, _) = n.event_type.split_once('.').unwrap_or((&n.event_type, ""));
    let changes = match n.event_type.as_str() {
        "transaction.payment_failed" | "transaction.past_due" => {
            // A checkout whose card was declined billed nothing: no debt.
            let billed = matches!(str_at(data, "status"), Some("billed" | "past_due")) || n.event_type == "transaction.past_due";
            if !billed {
                return Ok(None);
            }
            vec![owed(key(data)?, data, at)?]
        }
        "transaction.completed" | "transaction.paid" => vec![Change::InvoiceSettled { id: key(data)?, at }],
        "transaction.canceled" => vec![Change::InvoiceVoided { id: key(data)?, at }],
        t if t.starts_with("subscription.") => {
            let status = str_at(data, "status").ok_or_else(|| bad("data.status", "is required"))?;
            vec![Change::Subscription { id: key(data)?, fact: SubscriptionFact::new(SubscriptionStatus::from_stripe(status), at) }]
        }
        "customer.created" | "customer.updated" => match str_at(data, "email") {
            Some(email) if email_address::EmailAddress::is_valid(email) => vec![Change::ContactEmail(email.to_owned())],
            _ => Vec::new(),
        },
        _ => return Ok(None),
    };
    let customer = if entity == "customer" { str_at(data, "id") } else { str_at(data, "customer_id") };
    let customer = customer.filter(|c| plain_id(c)).map(str::to_owned);
    let mut changes = changes;
    // The account's customers, as Stripe's events record theirs.
    if let Some(c) = &customer {
        changes.push(Change::LinkCustomer(c.clone()));
    }
    Ok(Some(Facts { customer, account_hint: hint(data, metadata_key), changes }))
}

/// An owed transaction: unpaid since the event (or, collected manually,
/// since its due date), or only coming due while that date is ahead.
fn owed(id: String, data: &Map<String, Value>, at: DateTime<Utc>) -> Result<Change, ParseError> {
    let totals = data.get("details").and_then(|d| d.get("totals"));
    // `balance` is what is still due (it drops with payments); older
    // payloads without it carry `grand_total`.
    let (field, total) = match totals.and_then(|t| t.get("balance")) {
        Some(b) => ("data.details.totals.balance", Some(b)),
        None => ("data.details.totals.grand_total", totals.and_then(|t| t.get("grand_total"))),
    };
    let amount_due = match total {
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .filter(|a| (0..=MAX_AMOUNT).contains(a))
    .ok_or_else(|| bad(field, "is required: a whole number of minor units, from 0 to 10^12"))?;
    let currency = str_at(data, "currency_code").and_then(Currency::new).ok_or_else(|| bad("data.currency_code", "is required: a three-letter ISO 4217 code"))?;
    let hosted_url: Option<String> = data.get("checkout").and_then(|c| c.get("url")).and_then(Value::as_str).filter(|u| crate::href::is_safe(u)).map(Into::into);
    let number = str_at(data, "invoice_number").and_then(invoice_number);
    Ok(match due_date(data) {
        Some(due) if due > at => Change::UpcomingDue { key: id, due: UpcomingDue { amount_due, currency, due, number, hosted_url, observed: at } },
        due => {
            let since = due.unwrap_or(at);
            Change::InvoiceUnpaid { id, invoice: UnpaidInvoice { amount_due, currency, hosted_url: hosted_url.map(Into::into), number, since, observed: at, uncollectible: false, next_attempt: None } }
        }
    })
}

/// When a manually collected transaction fell due: `billed_at` plus its
/// payment terms.
fn due_date(data: &Map<String, Value>) -> Option<DateTime<Utc>> {
    if str_at(data, "collection_mode") != Some("manual") {
        return None;
    }
    let billed = time("data.billed_at", str_at(data, "billed_at")?).ok()?;
    let terms = data.get("billing_details")?.get("payment_terms")?;
    let frequency = u32::try_from(terms.get("frequency")?.as_u64()?).ok().filter(|f| (1..=1000).contains(f))?;
    match terms.get("interval")?.as_str()? {
        "day" => billed.checked_add_signed(chrono::Duration::days(frequency.into())),
        "week" => billed.checked_add_signed(chrono::Duration::weeks(frequency.into())),
        "month" => billed.checked_add_months(Months::new(frequency)),
        "year" => billed.checked_add_months(Months::new(frequency.checked_mul(12)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn note(kind: &str, data: Value) -> Notification {
        let body = json!({ "event_id": "evt_01", "event_type": kind, "occurred_at": "2026-11-02T10:00:00.123456Z", "notification_id": "ntf_01", "data": data });
        Notification::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_manual_invoice_is_owed_from_its_due_date() {
        let n = note("transaction.past_due", json!({
            "id": "txn_01", "status": "past_due", "customer_id": "ctm_01", "currency_code": "EUR", "collection_mode": "manual",
            "billed_at": "2026-10-01T00:00:00Z", "billing_details": { "payment_terms": { "interval": "day", "frequency": 14 } },
            "details": { "totals": { "balance": "4900", "grand_total": "4900" } }, "invoice_number": "325-10566", "custom_data": { "account_id": "acme" },
            "checkout": { "url": "https://example.com/pay?_ptxn=txn_01" }
        }));
        let facts = facts(&n, "account_id").unwrap().unwrap();
        assert_eq!(facts.customer.as_deref(), Some("ctm_01"));
        assert_eq!(facts.account_hint.as_deref(), Some("acme"));
        let Change::InvoiceUnpaid { id, invoice } = &facts.changes[0] else { panic!() };
        assert_eq!(id, "paddle:txn_01");
        assert_eq!(invoice.amount_due, 4900);
        assert_eq!(invoice.since.to_rfc3339(), "2026-10-15T00:00:00+00:00");
        assert_eq!(invoice.hosted_url.as_deref(), Some("https://example.com/pay?_ptxn=txn_01"));
        assert_eq!(invoice.number.as_deref(), Some("325-10566"));
    }

    #[test]
    fn a_manual_invoice_that_is_not_due_yet_is_only_coming_due() {
        let n = note("transaction.payment_failed", json!({
            "id": "txn_02", "status": "billed", "customer_id": "ctm_01", "currency_code": "EUR", "collection_mode": "manual",
            "billed_at": "2026-10-25T00:00:00Z", "billing_details": { "payment_terms": { "interval": "month", "frequency": 1 } },
            "details": { "totals": { "balance": "4900", "grand_total": "4900" } }
        }));
        let facts = facts(&n, "account_id").unwrap().unwrap();
        let Change::UpcomingDue { key, due } = &facts.changes[0] else { panic!("{:?}", facts.changes) };
        assert_eq!((key.as_str(), due.due.to_rfc3339().as_str()), ("paddle:txn_02", "2026-11-25T00:00:00+00:00"));
    }

    #[test]
    fn bad_fields_are_named() {
        let n = note("transaction.past_due", json!({ "id": "txn_01", "currency_code": "EUR", "details": { "totals": { "balance": "-1", "grand_total": "5" } } }));
        assert_eq!(facts(&n, "account_id").unwrap_err().field, "data.details.totals.balance");
        let n = note("transaction.past_due", json!({ "id": "txn_01", "currency_code": "EUR", "details": { "totals": { "grand_total": "x" } } }));
        assert_eq!(facts(&n, "account_id").unwrap_err().field, "data.details.totals.grand_total");
        let n = note("transaction.paid", json!({ "id": "../x" }));
        assert_eq!(facts(&n, "account_id").unwrap_err().field, "data.id");
        let n = note("transaction.past_due", json!({ "id": "txn_01", "status": "past_due", "currency_code": "EUR", "details": { "totals": { "grand_total": "10" } }, "checkout": { "url": "javascript:alert(1)" } }));
        let Change::InvoiceUnpaid { invoice, .. } = &facts(&n, "k").unwrap().unwrap().changes[0] else { panic!() };
        assert_eq!(invoice.hosted_url, None);
        assert!(facts(&note("address.updated", json!({})), "k").unwrap().is_none());
        // A declined card at checkout billed nothing: no debt.
        let checkout = json!({ "id": "txn_01", "status": "ready", "origin": "web", "currency_code": "EUR", "details": { "totals": { "balance": "10" } } });
        assert!(facts(&note("transaction.payment_failed", checkout), "k").unwrap().is_none());
        assert!(Notification::parse(br#"{"event_id":"evt_1","event_type":"x","occurred_at":"1970-01-01T00:00:00Z","data":{}}"#).is_err());
    }
}
