//! Tolerant reading of Stripe events: only the fields pastdue needs.
//!
//! The envelope needs `id`, `type`, `created` and `data.object`; everything
//! else is optional and unknown fields are ignored, so any API version
//! (the current invoice shape with `parent.subscription_details`, or the
//! older one with top-level `subscription`/`subscription_details`) works.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::state::{sane_time, Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice, UpcomingDue};

/// The envelope of a Stripe event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    /// `invoice.payment_failed`, …
    pub kind: String,
    /// When Stripe created the event: the time of every fact in it.
    pub created: DateTime<Utc>,
    /// `data.object`
    pub object: Map<String, Value>,
}

/// Why a body is not a usable event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct ParseError(pub String);

impl Event {
    /// Parses a webhook body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| ParseError(format!("invalid JSON: {e}")))?;
        let bad = |m: &str| ParseError(m.to_owned());
        let envelope = value.as_object().ok_or_else(|| bad("the body is not a JSON object"))?;
        let id = envelope.get("id").and_then(Value::as_str).ok_or_else(|| bad("no string `id`"))?;
        if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("`id` is not an event id"));
        }
        let kind = envelope.get("type").and_then(Value::as_str).ok_or_else(|| bad("no string `type`"))?;
        let created = envelope.get("created").and_then(Value::as_i64).ok_or_else(|| bad("no integer `created`"))?;
        let created = sane_time(created).ok_or_else(|| bad("`created` is not a time between 2000 and 2100"))?;
        let object = envelope
            .get("data")
            .and_then(|d| d.get("object"))
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no object at `data.object`"))?;
        // The other times pastdue reads: refused here, so nothing absurd is stored.
        for key in TIME_FIELDS {
            if let Some(t) = object.get(*key).filter(|v| !v.is_null()) {
                if t.as_i64().and_then(sane_time).is_none() {
                    return Err(ParseError(format!("`data.object.{key}` is not a time between 2000 and 2100")));
                }
            }
        }
        Ok(Self { id: id.to_owned(), kind: kind.to_owned(), created, object: object.clone() })
    }
}

/// What a subscription object's `status` (and, for `paused`,
/// `status_details.paused.subscription.type`) means, or `None` for a status
/// or pause kind this version does not know: logged once per kind, and no
/// fact is recorded, so a new Stripe shape can neither lock anybody out nor
/// clear a debt.
pub(crate) fn subscription_status(obj: &Map<String, Value>) -> Option<SubscriptionStatus> {
    let raw = str_at(obj, "status")?;
    let status = SubscriptionStatus::from_stripe(raw);
    if status == SubscriptionStatus::Other {
        unknown_once("subscription status", raw);
        return None;
    }
    if status != SubscriptionStatus::Paused {
        return Some(status);
    }
    let pause = obj.get("status_details").and_then(|d| d.get("paused")).and_then(|p| p.get("subscription")).and_then(|s| s.get("type"));
    match pause.and_then(Value::as_str) {
        // No details: a trial that ended without a payment method, or a
        // pause the customer asked for, as before the details existed.
        None if pause.is_none_or(Value::is_null) => Some(SubscriptionStatus::Paused),
        Some("first_payment_failure" | "final_payment_failure") => Some(SubscriptionStatus::PausedPaymentFailed),
        other => {
            unknown_once("pause type", other.unwrap_or("(not a string)"));
            None
        }
    }
}

/// Logs an unknown Stripe value once per (what, value), at most 64 of them.
fn unknown_once(what: &str, value: &str) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    let key = format!("{what}:{value}");
    if seen.len() < 64 && seen.insert(key) {
        tracing::warn!(what, value, "unknown Stripe {what} {value:?}: ignored (no state change); pastdue may need an update");
    }
}

/// The contacts a customer event's metadata names under `keys`: an address
/// sets the role's contact, a missing key removes the one Stripe set (an
/// admin's stays either way); an invalid address is logged and ignored.
pub(crate) fn contacts(event: &Event, keys: &[(crate::state::ContactRole, String)]) -> Vec<Change> {
    if !matches!(event.kind.as_str(), "customer.created" | "customer.updated") {
        return Vec::new();
    }
    let mut changes = Vec::new();
    for (role, key) in keys {
        let email = match metadata(Some(&event.object), key).map(str::trim) {
            Some(e) if crate::state::is_valid_email(e) => Some(e.to_owned()),
            Some(e) => {
                tracing::warn!(key = key.as_str(), value = e, "customer metadata is not an e-mail address; contact ignored");
                continue;
            }
            None => None,
        };
        changes.push(Change::Contact { role: *role, email, source: crate::state::ContactSource::Stripe });
    }
    changes
}

/// How to reach a customer event's customer besides e-mail: its `phone`
/// (the billing phone, when E.164) and the IANA zone its metadata names
/// under `timezone_key` (`""` = not read). A missing or empty value removes
/// the one Stripe set (an admin's stays either way); an invalid one is
/// logged and ignored.
pub(crate) fn reach(event: &Event, timezone_key: &str) -> Vec<Change> {
    use crate::state::ContactSource::Stripe;
    if !matches!(event.kind.as_str(), "customer.created" | "customer.updated") {
        return Vec::new();
    }
    let mut changes = Vec::new();
    match str_at(&event.object, "phone").map(str::trim) {
        Some(p) if crate::state::is_e164(p) => changes.push(Change::BillingPhone { phone: Some(p.to_owned()), source: Stripe }),
        Some(_) => tracing::warn!(customer = ?str_at(&event.object, "id"), "the customer's phone is not an E.164 number (+37120000000); no text messages to it"),
        None => changes.push(Change::BillingPhone { phone: None, source: Stripe }),
    }
    if !timezone_key.is_empty() {
        match metadata(Some(&event.object), timezone_key).map(str::trim) {
            Some(z) if crate::notify::parse_zone(z).is_some() => changes.push(Change::Timezone { zone: Some(z.to_owned()), source: Stripe }),
            Some(z) => tracing::warn!(key = timezone_key, value = z, "customer metadata is not an IANA time zone; ignored"),
            None => changes.push(Change::Timezone { zone: None, source: Stripe }),
        }
    }
    changes
}

/// The object's time fields pastdue reads (besides the envelope's `created`).
const TIME_FIELDS: &[&str] = &["due_date"];

/// What one event says about one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The Stripe customer (`cus_…`), when the object names one.
    pub customer: Option<String>,
    /// The account named in metadata on the object, if any.
    pub account_hint: Option<String>,
    /// The changes to apply to that account.
    pub changes: Vec<Change>,
}

pub(crate) fn str_at<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A field that is an id, or an expanded object with an `id`.
pub(crate) fn id_at<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match obj.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(o) => str_at(o, "id"),
        _ => None,
    }
}

pub(crate) fn time_at(obj: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    obj.get(key).and_then(Value::as_i64).and_then(sane_time)
}

pub(crate) fn metadata<'a>(obj: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    obj?.get("metadata").and_then(Value::as_object).and_then(|m| str_at(m, key))
}

/// The subscription details of an invoice in either API shape.
fn subscription_details(invoice: &Map<String, Value>) -> Option<&Map<String, Value>> {
    invoice
        .get("parent")
        .and_then(|p| p.get("subscription_details"))
        .and_then(Value::as_object)
        .or_else(|| invoice.get("subscription_details").and_then(Value::as_object))
}

/// The account named in an invoice's metadata, either API shape.
pub fn invoice_hint<'a>(invoice: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    metadata(subscription_details(invoice), key)
        .or_else(|| match invoice.get("subscription") {
            Some(Value::Object(sub)) => metadata(Some(sub), key),
            _ => None,
        })
        .or_else(|| metadata(Some(invoice), key))
}

/// A payment coming due, from `invoice.upcoming` (a preview with no id,
/// keyed by its subscription), `invoice.will_be_due`, or `invoice.finalized`
/// when the invoice has a due date (send-invoice; an automatic charge is
/// finalized and charged at once). `None` when nothing is due or the
/// object says too little.
fn upcoming_due(invoice: &Map<String, Value>, kind: &str, observed: DateTime<Utc>) -> Option<Change> {
    let due_date = time_at(invoice, "due_date");
    if kind == "invoice.finalized" && due_date.is_none() {
        return None;
    }
    let due = due_date.or_else(|| time_at(invoice, "next_payment_attempt")).or_else(|| time_at(invoice, "period_end"))?;
    let amount_due = invoice.get("amount_due").and_then(Value::as_i64).filter(|a| *a > 0)?;
    let key = match str_at(invoice, "id").filter(|id| id.starts_with("in_")) {
        Some(id) => id.to_owned(),
        None => {
            let subscription = subscription_details(invoice)
                .and_then(|d| id_at(d, "subscription"))
                .or_else(|| id_at(invoice, "subscription"))?;
            format!("{}{subscription}", crate::state::UPCOMING_PREVIEW)
        }
    };
    Some(Change::UpcomingDue {
        key,
        due: UpcomingDue {
            amount_due,
            currency: str_at(invoice, "currency").and_then(Currency::new)?,
            due,
            number: str_at(invoice, "number").and_then(crate::state::invoice_number),
            hosted_url: str_at(invoice, "hosted_invoice_url").and_then(|u| crate::href::checked(u, "hosted_invoice_url")).map(Into::into),
            observed,
        },
    })
}

/// An invoice as an unpaid-invoice record; `None` when nothing is owed.
pub fn unpaid_invoice(invoice: &Map<String, Value>, since: DateTime<Utc>, observed: DateTime<Utc>) -> Option<UnpaidInvoice> {
    let amount = invoice
        .get("amount_remaining")
        .and_then(Value::as_i64)
        .or_else(|| invoice.get("amount_due").and_then(Value::as_i64))?;
    if amount <= 0 {
        return None;
    }
    Some(UnpaidInvoice {
        amount_due: amount,
        currency: str_at(invoice, "currency").and_then(Currency::new)?,
        hosted_url: str_at(invoice, "hosted_invoice_url").and_then(|u| crate::href::checked(u, "hosted_invoice_url")).map(Into::into),
        number: str_at(invoice, "number").and_then(crate::state::invoice_number),
        since,
        observed,
        uncollectible: false,
        next_attempt: time_at(invoice, "next_payment_attempt"),
    })
}

/// Where a subscription's plan names the ladder for its customer:
/// `stripe.ladder_metadata_key` on a price (or its product, when the event
/// carries the product expanded), else `[stripe.ladder_by_lookup_key]` by
/// the price's lookup key.
#[derive(Clone, Debug, Default)]
pub struct PlanLadder {
    /// `stripe.ladder_metadata_key`.
    pub metadata_key: String,
    /// `[stripe.ladder_by_lookup_key]`.
    pub by_lookup_key: std::collections::BTreeMap<String, String>,
}

impl PlanLadder {
    /// The ladder a subscription object's items name, if any (the first
    /// item that names one).
    pub fn ladder(&self, subscription: &Map<String, Value>) -> Option<String> {
        let items = subscription.get("items")?.get("data")?.as_array()?;
        let named = |o: Option<&Value>| {
            o.and_then(|o| o.get("metadata"))
                .and_then(|m| m.get(&self.metadata_key))
                .and_then(Value::as_str)
                .filter(|l| crate::standing::is_valid_name(l))
                .map(str::to_owned)
        };
        items.iter().find_map(|item| {
            let price = item.get("price").or_else(|| item.get("plan"));
            named(price)
                .or_else(|| named(price.and_then(|p| p.get("product")).filter(|p| p.is_object())))
                .or_else(|| {
                    let key = price?.get("lookup_key")?.as_str()?;
                    self.by_lookup_key.get(key).cloned()
                })
        })
    }

    /// Puts the plan's ladder into the subscription facts read from `object`.
    pub fn fill(&self, changes: &mut [Change], object: &Map<String, Value>) {
        for change in changes {
            if let Change::Subscription { fact, .. } = change {
                fact.ladder = self.ladder(object);
            }
        }
    }
}

/// The billing contact an invoice names (`customer_email`), if it is an
/// e-mail address: validated here, like every contact, never stored raw.
fn billing_contact(invoice: &Map<String, Value>) -> Option<Change> {
    str_at(invoice, "customer_email").and_then(contact_email)
}

fn contact_email(raw: &str) -> Option<Change> {
    let email = raw.trim();
    crate::state::is_valid_email(email).then(|| Change::ContactEmail(email.to_owned()))
}

/// The facts in an event, or `None` for an event type pastdue ignores.
pub fn facts(event: &Event, metadata_key: &str) -> Option<Facts> {
    let obj = &event.object;
    let at = event.created;
    let kind = event.kind.as_str();
    let (customer, hint, mut changes) = match kind {
        "invoice.payment_failed" | "invoice.overdue" | "invoice.marked_uncollectible" => {
            let id = str_at(obj, "id")?;
            let since = match kind {
                // Overdue counts from the due date, whenever the event arrives.
                "invoice.overdue" => time_at(obj, "due_date").unwrap_or(at),
                _ => at,
            };
            let mut changes = Vec::new();
            if let Some(mut invoice) = unpaid_invoice(obj, since, at) {
                invoice.uncollectible = kind == "invoice.marked_uncollectible";
                changes.push(Change::InvoiceUnpaid { id: id.to_owned(), invoice });
            }
            changes.extend(billing_contact(obj));
            (id_at(obj, "customer"), invoice_hint(obj, metadata_key), changes)
        }
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.voided" => {
            let id = str_at(obj, "id")?.to_owned();
            let settled = if kind == "invoice.voided" { Change::InvoiceVoided { id, at } } else { Change::InvoiceSettled { id, at } };
            let mut changes = vec![settled];
            changes.extend(billing_contact(obj));
            (id_at(obj, "customer"), invoice_hint(obj, metadata_key), changes)
        }
        "invoice.upcoming" | "invoice.will_be_due" | "invoice.finalized" => {
            // A send-invoice customer's first event is often the invoice:
            // its e-mail is where the reminder before the due date goes.
            let changes = upcoming_due(obj, kind, at).into_iter().chain(billing_contact(obj)).collect();
            (id_at(obj, "customer"), invoice_hint(obj, metadata_key), changes)
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => {
            let id = str_at(obj, "id")?;
            let status = match str_at(obj, "status") {
                Some(_) => subscription_status(obj)?,
                None if kind == "customer.subscription.deleted" => SubscriptionStatus::Canceled,
                None => return None,
            };
            let change = Change::Subscription { id: id.to_owned(), fact: SubscriptionFact::new(status, at) };
            (id_at(obj, "customer"), metadata(Some(obj), metadata_key), vec![change])
        }
        "customer.source.expiring" => {
            let month = obj.get("exp_month").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()).filter(|m| (1..=12).contains(m))?;
            let year = obj.get("exp_year").and_then(Value::as_i64).and_then(|y| i32::try_from(y).ok()).filter(|y| (2000..=2100).contains(y))?;
            let last4 = str_at(obj, "last4").filter(|l| l.len() == 4 && l.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned);
            let change = Change::CardExpiring(crate::state::CardExpiry { month, year, last4, at });
            (id_at(obj, "customer"), metadata(Some(obj), metadata_key), vec![change])
        }
        "payment_method.automatically_updated" => (id_at(obj, "customer"), None, vec![Change::CardUpdated(at)]),
        "customer.created" | "customer.updated" => {
            let changes = str_at(obj, "email").and_then(contact_email).into_iter().collect();
            (str_at(obj, "id"), metadata(Some(obj), metadata_key), changes)
        }
        _ => return None,
    };
    if let Some(c) = customer {
        changes.push(Change::LinkCustomer(c.to_owned()));
    }
    Some(Facts { customer: customer.map(str::to_owned), account_hint: hint.map(str::to_owned), changes })
}
