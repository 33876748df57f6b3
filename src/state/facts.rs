//! Facts a billing provider reports: subscriptions, unpaid invoices, dues coming, expiring cards, notices sent.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Currency;

/// A Stripe subscription status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubscriptionStatus {
    /// Paid up.
    Active,
    /// In a trial: good standing.
    Trialing,
    /// The first invoice has not been paid yet: debt.
    Incomplete,
    /// A renewal failed and Stripe is retrying: debt.
    PastDue,
    /// Stripe stopped retrying but the subscription lives on: debt.
    Unpaid,
    /// Paused (no payment method at trial end, or by request): ended.
    Paused,
    /// Paused because a payment failed (`status_details.paused.subscription.type`
    /// = `first_payment_failure` or `final_payment_failure`, flexible
    /// billing mode): the invoice that caused it is still owed, so debt.
    PausedPaymentFailed,
    /// Canceled: ended.
    Canceled,
    /// The first invoice was never paid and the subscription expired: ended.
    IncompleteExpired,
    /// A status this version does not know. Treated as good standing, so a
    /// new Stripe status can never lock anybody out.
    #[serde(other)]
    Other,
}

impl SubscriptionStatus {
    /// Parses Stripe's spelling; unknown statuses become [`Self::Other`].
    pub fn from_stripe(s: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or(Self::Other)
    }

    /// Whether the status means money is owed.
    pub fn is_debt(self) -> bool {
        matches!(self, Self::PastDue | Self::Unpaid | Self::Incomplete | Self::PausedPaymentFailed)
    }

    /// Whether the status means the subscription has ended.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired | Self::Paused)
    }
}

/// The latest known status of one subscription and the event time that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionFact {
    /// The status.
    pub status: SubscriptionStatus,
    /// When Stripe reported it (the event's `created`).
    pub at: DateTime<Utc>,
    /// The ladder the subscription's plan names (price or product metadata
    /// `stripe.ladder_metadata_key`, or `[stripe.ladder_by_lookup_key]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<String>,
}

impl SubscriptionFact {
    /// A status at an event time, with no plan ladder.
    pub fn new(status: SubscriptionStatus, at: DateTime<Utc>) -> Self {
        Self { status, at, ladder: None }
    }
}

/// An invoice that is owed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpaidInvoice {
    /// Amount still due, in the currency's minor unit (cents).
    pub amount_due: i64,
    /// The invoice's currency.
    pub currency: Currency,
    /// Stripe's hosted invoice page, where it can be paid in one click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_url: Option<Arc<str>>,
    /// The human invoice number (`"F00D-0001"`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// When its payment first failed or it became overdue (event time).
    pub since: DateTime<Utc>,
    /// The event time of the newest fact about this invoice; newer facts
    /// replace the amount, URL and number, older ones only move `since` back.
    pub observed: DateTime<Utc>,
    /// Stripe gave up collecting it; it is still owed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uncollectible: bool,
    /// When Stripe will try to collect it again (`next_payment_attempt`),
    /// when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
}

/// A record that a notice went out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NoticeSent {
    /// The debt episode it belongs to (its `past_due_since`).
    pub episode: DateTime<Utc>,
    /// The stage it announced.
    pub stage: String,
    /// The channel (`"webhook"`, `"email"`).
    pub channel: String,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// Where it went (an e-mail address), when that is worth showing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why the receiver refused it for good (a phone number Twilio cannot
    /// text): recorded so it is not tried again, never listed as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A notice held until its recipient's send window opens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Waiting {
    /// When it goes out.
    pub at: DateTime<Utc>,
    /// The episode (or due date) it belongs to.
    pub episode: DateTime<Utc>,
    /// The stage (or reminder) it announces.
    pub stage: String,
    /// The channel.
    pub channel: String,
}

/// A payment coming due: known before anything is owed, so it never puts
/// the account on the ladder. Read by reminders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcomingDue {
    /// Amount due, in the currency's minor unit (cents).
    pub amount_due: i64,
    /// The currency.
    pub currency: Currency,
    /// When it is due: the invoice's `due_date`; for automatic charges the
    /// next attempt, else the end of the period.
    pub due: DateTime<Utc>,
    /// The invoice number, when it has one yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// The hosted invoice page, when there is one (checked like every URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_url: Option<String>,
    /// The event time that reported it: the newest report wins.
    pub observed: DateTime<Utc>,
}

/// The key prefix of a renewal preview (`invoice.upcoming` objects have no
/// invoice id yet): `upcoming:<subscription>`.
pub(crate) const UPCOMING_PREVIEW: &str = "upcoming:";

/// Most upcoming dues an account keeps (the latest due dates).
pub(crate) const MAX_UPCOMING: usize = 16;

/// A card that expires soon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardExpiry {
    /// Expiry month, 1-12.
    pub month: u32,
    /// Expiry year.
    pub year: i32,
    /// The card's last four digits, when known.
    pub last4: Option<String>,
    /// The event's time.
    pub at: DateTime<Utc>,
}
