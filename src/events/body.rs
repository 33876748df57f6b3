//! The bodies of Standard Webhooks events about your own invoices:
//! `{"type", "timestamp", "data"}` (`docs/events.schema.json`), turned into
//! the same [`Change`]s Stripe's events make. Invoice and subscription keys
//! are prefixed `events:`, so they live beside Stripe's on one account.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::account::AccountId;
use crate::state::{sane_time, Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice, UpcomingDue};

/// The prefix of every invoice and subscription key this source writes.
pub const PREFIX: &str = "events:";

/// The largest `amount_due` accepted (10^12 minor units): sums of many
/// stay far from overflowing the counters they are added to.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The event types, as the schema lists them.
pub const TYPES: [&str; 7] = ["invoice.past_due", "invoice.paid", "invoice.voided", "invoice.due_soon", "subscription.ended", "subscription.active", "contact.updated"];

/// A body that is not one the schema allows: the field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BodyError {
    /// The JSON path of the field (`data.amount_due`).
    pub field: String,
    /// Why.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> BodyError {
    BodyError { field: field.to_owned(), message: message.into() }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<Value>,
    timestamp: Option<Value>,
    data: Option<Value>,
}

/// A verified event, read: whose it is, its type, what it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The account (`data.account`).
    pub account: AccountId,
    /// The event type (one of [`TYPES`]).
    pub kind: &'static str,
    /// The changes, carrying the event's `timestamp`.
    pub changes: Vec<Change>,
}

fn string<'a>(data: &'a serde_json::Map<String, Value>, field: &'static str, required: bool) -> Result<Option<&'a str>, BodyError> {
    let path = format!("data.{field}");
    match data.get(field) {
        None | Some(Value::Null) if required => Err(bad(&path, "is required for this type")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s)),
        Some(_) => Err(bad(&path, "must be a non-empty string of at most 1024 bytes")),
    }
}

fn time(field: &str, raw: &str) -> Result<DateTime<Utc>, BodyError> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .and_then(|t| sane_time(t.timestamp()))
        .ok_or_else(|| bad(field, "must be an RFC 3339 time between 2000 and 2100"))
}

/// An id that becomes part of a key: `[A-Za-z0-9_.:-]`, at most 255 bytes.
fn id(field: &'static str, raw: &str) -> Result<String, BodyError> {
    let ok = raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(format!("{PREFIX}{raw}"))
    } else {
        Err(bad(&format!("data.{field}"), "must be at most 255 letters, digits, '_', '-', '.' or ':'"))
    }
}

/// Reads a body: the schema's rules, then the changes it makes.
pub fn read(body: &[u8]) -> Result<Facts, BodyError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| bad("body", format!("not a JSON object: {e}")))?;
    let kind = match envelope.kind {
        Some(Value::String(k)) => TYPES.iter().find(|t| **t == k).copied().ok_or_else(|| bad("type", format!("{k:?} is not one of {}", TYPES.join(", "))))?,
        Some(_) => return Err(bad("type", "must be a string")),
        None => return Err(bad("type", "is required")),
    };
    let at = match envelope.timestamp {
        Some(Value::String(t)) => time("timestamp", &t)?,
        Some(_) | None => return Err(bad("timestamp", "is required: an RFC 3339 time")),
    };
    let data = match envelope.data {
        Some(Value::Object(d)) => d,
        _ => return Err(bad("data", "is required: an object")),
    };
    let account = string(&data, "account", true)?.unwrap_or_default();
    let account = AccountId::new(account).map_err(|e| bad("data.account", e.to_string()))?;
    let amount = |required: bool| -> Result<Option<(i64, Currency)>, BodyError> {
        let amount = match data.get("amount_due") {
            Some(Value::Number(n)) => Some(n.as_i64().filter(|a| (0..=MAX_AMOUNT).contains(a)).ok_or_else(|| bad("data.amount_due", "must be a whole number of minor units, from 0 to 10^12"))?),
            None | Some(Value::Null) if !required => None,
            _ => return Err(bad("data.amount_due", "is required: a whole number of minor units")),
        };
        let currency = string(&data, "currency", required)?.map(|c| Currency::new(c).ok_or_else(|| bad("data.currency", "must be a three-letter ISO 4217 code"))).transpose()?;
        Ok(amount.zip(currency))
    };
    let pay_url = match string(&data, "pay_url", false)? {
        Some(u) if crate::href::is_safe(u) => Some(u.to_owned()),
        Some(_) => return Err(bad("data.pay_url", "must be an https URL (or http on loopback)")),
        None => None,
    };
    let number = string(&data, "number", false)?.map(|n| n.chars().take(64).collect::<String>());
    let due_at = string(&data, "due_at", false)?.map(|d| time("data.due_at", d)).transpose()?;
    let subscription = || -> Result<String, BodyError> { id("subscription", string(&data, "subscription", false)?.unwrap_or("subscription")) };
    let changes = match kind {
        "invoice.past_due" => {
            let invoice = id("invoice", string(&data, "invoice", true)?.unwrap_or_default())?;
            let (amount_due, currency) = amount(true)?.expect("required above");
            let since = due_at.map_or(at, |d| d.min(at));
            let unpaid = UnpaidInvoice { amount_due, currency, hosted_url: pay_url.map(Into::into), number, since, observed: at, uncollectible: false, next_attempt: None };
            vec![Change::InvoiceUnpaid { id: invoice, invoice: unpaid }]
        }
        "invoice.paid" => vec![Change::InvoiceSettled { id: id("invoice", string(&data, "invoice", true)?.unwrap_or_default())?, at }],
        "invoice.voided" => vec![Change::InvoiceVoided { id: id("invoice", string(&data, "invoice", true)?.unwrap_or_default())?, at }],
        "invoice.due_soon" => {
            let invoice = id("invoice", string(&data, "invoice", true)?.unwrap_or_default())?;
            let (amount_due, currency) = amount(true)?.expect("required above");
            let due = due_at.ok_or_else(|| bad("data.due_at", "is required for this type"))?;
            vec![Change::UpcomingDue { key: invoice, due: UpcomingDue { amount_due, currency, due, number, hosted_url: pay_url, observed: at } }]
        }
        "subscription.ended" => vec![Change::Subscription { id: subscription()?, fact: SubscriptionFact::new(SubscriptionStatus::Canceled, at) }],
        "subscription.active" => vec![Change::Subscription { id: subscription()?, fact: SubscriptionFact::new(SubscriptionStatus::Active, at) }],
        _ => {
            let email = string(&data, "email", true)?.unwrap_or_default();
            if !email_address::EmailAddress::is_valid(email) {
                return Err(bad("data.email", "must be an e-mail address"));
            }
            vec![Change::ContactEmail(email.to_owned())]
        }
    };
    Ok(Facts { account, kind, changes })
}
