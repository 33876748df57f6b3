//! The stored billing state of one account, and the changes that move it.
//!
//! Everything here is plain data: no clock, no I/O. A [`Change`] carries the
//! time of the fact it reports (a Stripe event's `created`, an invoice's
//! `due_date`, the moment an admin acted), and [`BillingState::apply`] is
//! written so that applying the same set of changes in any order ends in the
//! same state. That is what makes late and reordered webhooks harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many settled-invoice tombstones an account keeps (newest first).
///
/// Stripe retries a delivery for up to three days; an account settles far
/// fewer invoices than this in that window.
pub(crate) const MAX_TOMBSTONES: usize = 64;

/// The earliest time accepted from outside (a Stripe event, an invoice,
/// an admin request): 2000-01-01T00:00:00Z.
pub(crate) const EARLIEST_TIME: i64 = 946_684_800;
/// The latest time accepted from outside: 2100-01-01T00:00:00Z.
pub(crate) const LATEST_TIME: i64 = 4_102_444_800;

/// `unix` seconds as a time, when it lies in the sane window
/// 2000-01-01..2100-01-01 (UTC); `None` otherwise. Times outside it
/// are refused where they enter, so no stored fact is absurd.
pub fn sane_time(unix: i64) -> Option<DateTime<Utc>> {
    if (EARLIEST_TIME..LATEST_TIME).contains(&unix) {
        DateTime::from_timestamp(unix, 0)
    } else {
        None
    }
}

/// An ISO 4217 currency code, stored lower case as Stripe sends it (`"eur"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a three-letter code in any case.
    pub fn new(code: &str) -> Option<Self> {
        let b = code.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        Some(Self([
            b[0].to_ascii_lowercase(),
            b[1].to_ascii_lowercase(),
            b[2].to_ascii_lowercase(),
        ]))
    }

    /// The lower-case code, e.g. `"eur"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("xxx")
    }

    /// Digits after the decimal point of the currency's minor unit, as
    /// Stripe counts them (zero-decimal currencies such as JPY have none).
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "bif" | "clp" | "djf" | "gnf" | "jpy" | "kmf" | "krw" | "mga" | "pyg" | "rwf"
            | "ugx" | "vnd" | "vuv" | "xaf" | "xof" | "xpf" => 0,
            "bhd" | "jod" | "kwd" | "omr" | "tnd" => 3,
            _ => 2,
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::new(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a currency code")))
    }
}

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

/// What an admin override does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideMode {
    /// Full access, whatever is owed.
    Allow,
    /// Suspend now, whatever the ladder says.
    Block,
}

/// An admin decision that beats the ladder until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Allow or block.
    pub mode: OverrideMode,
    /// When it lapses by itself; `None` means until removed.
    pub until: Option<DateTime<Utc>>,
    /// Why (shown in the admin API and the audit log).
    pub reason: String,
    /// Who set it (the admin token's name).
    #[serde(default)]
    pub by: String,
    /// When it was set.
    pub at: DateTime<Utc>,
}

impl Override {
    /// Whether the override is in force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// A customer's promise to pay by a date, recorded by an admin.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Promise {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The date the customer said they would have paid by.
    pub until: DateTime<Utc>,
    /// Why (shown in the admin API and the audit log).
    pub reason: String,
    /// Who recorded it.
    #[serde(default)]
    pub by: String,
}

/// What became of a [`Promise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiseStatus {
    /// The debt is still open and `until` has not come.
    Pending,
    /// Everything owed was paid (or voided) by `until`.
    Kept,
    /// `until` came and the debt was still open.
    Broken,
}

/// The ladder an admin chose for an account (beats the plan and the
/// repeat-offender rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LadderChoice {
    /// The ladder's name (`default` or a `[ladders.<name>]`).
    pub ladder: String,
    /// Why (shown in the admin API and the audit log).
    pub reason: String,
    /// Who chose it.
    #[serde(default)]
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One invoice's time in debt: from when it first failed or became
/// overdue to when it was paid or voided (event times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtSpan {
    /// When it first failed or became overdue.
    pub since: DateTime<Utc>,
    /// When it was settled.
    pub settled: DateTime<Utc>,
}

/// A closed debt episode: overlapping invoice debts merged, from the first
/// failure to the payment that left nothing owed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Episode {
    /// When the first invoice of the episode failed or became overdue.
    pub start: DateTime<Utc>,
    /// When the last one was paid or voided.
    pub end: DateTime<Utc>,
}

/// Most promises an account keeps (the newest).
pub(crate) const MAX_PROMISES: usize = 16;

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

/// One fact to fold into an account's [`BillingState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// An invoice is owed (payment failed, overdue, or marked uncollectible).
    InvoiceUnpaid {
        /// Stripe's invoice id.
        id: String,
        /// The invoice.
        invoice: UnpaidInvoice,
    },
    /// An invoice was paid or voided. It can never be reopened.
    InvoiceSettled {
        /// Stripe's invoice id.
        id: String,
        /// Event time.
        at: DateTime<Utc>,
    },
    /// A payment is coming due (`invoice.will_be_due`, `invoice.upcoming`,
    /// `invoice.finalized` with a due date). Dropped once the invoice is
    /// settled or owed.
    UpcomingDue {
        /// The invoice id, or `upcoming:<subscription>` for a preview
        /// (`invoice.upcoming` objects have no id yet).
        key: String,
        /// What is coming due.
        due: UpcomingDue,
    },
    /// A subscription's status changed.
    Subscription {
        /// Stripe's subscription id.
        id: String,
        /// The new status and its event time.
        fact: SubscriptionFact,
    },
    /// Set (or replace) the admin override.
    SetOverride(Override),
    /// Remove the admin override.
    ClearOverride,
    /// Link a Stripe customer to the account.
    LinkCustomer(String),
    /// The Stripe customer was moved to another account (customer links
    /// are moves decided by the store's link, not time-stamped facts).
    UnlinkCustomer(String),
    /// Stripe metadata named another account for a customer an admin
    /// linked here; the admin link stays, and the conflict is kept for the
    /// admin view.
    LinkConflict(LinkConflict),
    /// The billing contact's e-mail address.
    ContactEmail(String),
    /// Set (`Some`) or remove (`None`) the contact for a role. A contact
    /// an admin set is never replaced or removed by Stripe metadata.
    Contact {
        /// Whose address.
        role: ContactRole,
        /// The address, or `None` to remove it.
        email: Option<String>,
        /// Who says so.
        source: ContactSource,
    },
    /// The account's preferred language (a BCP 47 tag such as `"de"`).
    Language(String),
    /// The default card expires soon (`customer.source.expiring`); the
    /// newest event wins.
    CardExpiring(CardExpiry),
    /// The card was replaced or updated (`payment_method.automatically_updated`)
    /// at this event time: an older expiry warning no longer holds.
    CardUpdated(DateTime<Utc>),
    /// A notice went out.
    NoticeSent(NoticeSent),
    /// A promise to pay was recorded.
    Promise(Promise),
    /// An admin chose the account's ladder (`None`: back to the plan, the
    /// repeat rule or `default`).
    Ladder(Option<LadderChoice>),
}

/// A person to write to about an account besides its billing contact
/// (the invoice's `customer_email`, [`BillingState::contact_email`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactRole {
    /// The customer's accountant.
    Accountant,
    /// The operator's own staff member for this customer.
    AccountManager,
}

impl ContactRole {
    /// Every role.
    pub const ALL: [ContactRole; 2] = [ContactRole::Accountant, ContactRole::AccountManager];

    /// The name used in the API, config keys and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactRole::Accountant => "accountant",
            ContactRole::AccountManager => "account_manager",
        }
    }
}

/// Whether `email` is a plain e-mail address (`name@example.com`, RFC 5322
/// addr-spec, at most 254 bytes): what a contact may be.
pub fn is_valid_email(email: &str) -> bool {
    email.len() <= 254 && is_plain_text(email) && email_address::EmailAddress::is_valid(email) && !email.contains(['<', '>', ' '])
}

/// Whether `text` is safe to store and print as is: no control characters
/// (a terminal escape sequence in a payload must not reach an operator's
/// terminal) and no bidirectional overrides (which reorder what is shown).
pub fn is_plain_text(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// An invoice number as a payload gives it, if it is one: plain text of at
/// most 64 characters (Stripe's are like `ABCD1234-0001`).
pub fn invoice_number(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (!raw.is_empty() && raw.chars().count() <= 64 && is_plain_text(raw)).then(|| raw.to_owned())
}

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

/// Who set a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactSource {
    /// The admin API or the CLI: wins over Stripe metadata.
    Admin,
    /// A Stripe customer's metadata.
    Stripe,
}

/// A contact and who set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The e-mail address.
    pub email: String,
    /// Who set it.
    pub source: ContactSource,
}

/// The notice channel of internal summaries to the account manager: never
/// shown to the customer.
pub const INTERNAL_CHANNEL: &str = "email:account_manager";

/// A customer an admin linked to this account that Stripe metadata claims
/// for another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConflict {
    /// The Stripe customer.
    pub customer: String,
    /// The account the metadata names.
    pub claimed_by: String,
    /// When the conflict was last seen.
    pub at: DateTime<Utc>,
}

/// Most link conflicts an account keeps (newest).
pub(crate) const MAX_LINK_CONFLICTS: usize = 16;

/// Everything pastdue knows about one account's payments.
///
/// Built only by applying [`Change`]s, so its invariants hold: an invoice is
/// never both unpaid and settled, and a subscription's status is the one with
/// the newest event time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    subscriptions: BTreeMap<String, SubscriptionFact>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    unpaid: BTreeMap<String, UnpaidInvoice>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settled: BTreeMap<String, DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    upcoming: BTreeMap<String, UpcomingDue>,
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    override_: Option<Override>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notices: Vec<NoticeSent>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    customers: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    link_conflicts: Vec<LinkConflict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_email: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    contacts: BTreeMap<ContactRole, Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    card_expiring: Option<CardExpiry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    promises: Vec<Promise>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    closed_debts: BTreeMap<String, DebtSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ladder: Option<LadderChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<DateTime<Utc>>,
}

impl BillingState {
    /// Folds one change in. Returns whether anything changed.
    ///
    /// Order does not matter: for any set of changes, every order of
    /// application ends in the same state (ignoring `updated_at`, which the
    /// store sets).
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::InvoiceUnpaid { id, invoice } => {
                if let Some(settled) = self.settled.get(id).copied() {
                    // Paid before this report arrived: only its time in
                    // debt is worth keeping.
                    return self.record_debt(id, invoice.since, settled);
                }
                // Owed now: no longer upcoming.
                let was_upcoming = self.upcoming.remove(id).is_some();
                // A URL that may not be rendered is never stored.
                let cleaned;
                let invoice = match &invoice.hosted_url {
                    Some(u) if !crate::href::is_safe(u) => {
                        cleaned = UnpaidInvoice { hosted_url: None, ..invoice.clone() };
                        &cleaned
                    }
                    _ => invoice,
                };
                was_upcoming | match self.unpaid.get_mut(id) {
                    None => {
                        self.unpaid.insert(id.clone(), invoice.clone());
                        true
                    }
                    Some(known) => {
                        let mut merged = if newer_details(invoice, known) {
                            invoice.clone()
                        } else {
                            known.clone()
                        };
                        merged.since = known.since.min(invoice.since);
                        merged.observed = known.observed.max(invoice.observed);
                        merged.uncollectible = known.uncollectible || invoice.uncollectible;
                        replace(known, merged)
                    }
                }
            }
            Change::InvoiceSettled { id, at } => {
                let span = self.unpaid.get(id).map(|i| i.since).or_else(|| self.closed_debts.get(id).map(|d| d.since));
                let spanned = span.is_some_and(|since| self.record_debt(id, since, *at));
                let removed = spanned | self.unpaid.remove(id).is_some() | self.upcoming.remove(id).is_some();
                // The earliest settle time is kept, whatever the order.
                let tomb_changed = match self.settled.get_mut(id) {
                    None => {
                        self.settled.insert(id.clone(), *at);
                        true
                    }
                    Some(known) if *at < *known => {
                        *known = *at;
                        true
                    }
                    Some(_) => false,
                };
                self.prune_tombstones();
                removed || tomb_changed
            }
            Change::UpcomingDue { key, due } => {
                // Settled or already owed: not upcoming, whatever the order.
                if self.settled.contains_key(key) || self.unpaid.contains_key(key) {
                    return false;
                }
                let cleaned;
                let due = match &due.hosted_url {
                    Some(u) if !crate::href::is_safe(u) => {
                        cleaned = UpcomingDue { hosted_url: None, ..due.clone() };
                        &cleaned
                    }
                    _ => due,
                };
                let changed = match self.upcoming.get_mut(key) {
                    None => {
                        self.upcoming.insert(key.clone(), due.clone());
                        true
                    }
                    // The newest report wins; a tie goes to the later due
                    // date, so delivery order never decides.
                    Some(known) if (due.observed, due.due, due.amount_due) > (known.observed, known.due, known.amount_due) => {
                        *known = due.clone();
                        true
                    }
                    Some(_) => false,
                };
                self.prune_upcoming();
                changed
            }
            Change::Subscription { id, fact } => match self.subscriptions.get_mut(id) {
                None => {
                    self.subscriptions.insert(id.clone(), fact.clone());
                    true
                }
                // Newest event time wins; a tie is broken by the status order
                // (then the plan) so the outcome does not depend on delivery order.
                Some(known) if (fact.at, fact.status, &fact.ladder) > (known.at, known.status, &known.ladder) => {
                    *known = fact.clone();
                    true
                }
                Some(_) => false,
            },
            Change::SetOverride(o) => replace_opt(&mut self.override_, Some(o.clone())),
            Change::ClearOverride => replace_opt(&mut self.override_, None),
            Change::LinkCustomer(c) => self.customers.insert(c.clone()),
            Change::UnlinkCustomer(c) => {
                let had = self.customers.remove(c);
                let before = self.link_conflicts.len();
                self.link_conflicts.retain(|k| &k.customer != c);
                had || before != self.link_conflicts.len()
            }
            Change::LinkConflict(conflict) => {
                let known = self.link_conflicts.iter_mut().find(|k| k.customer == conflict.customer && k.claimed_by == conflict.claimed_by);
                match known {
                    Some(k) if k.at >= conflict.at => false,
                    Some(k) => {
                        k.at = conflict.at;
                        true
                    }
                    None => {
                        self.link_conflicts.push(conflict.clone());
                        self.link_conflicts.sort_by_key(|k| std::cmp::Reverse(k.at));
                        self.link_conflicts.truncate(MAX_LINK_CONFLICTS);
                        true
                    }
                }
            }
            Change::ContactEmail(e) => replace_opt(&mut self.contact_email, Some(e.clone())),
            Change::Contact { role, email, source } => {
                let current = self.contacts.get(role);
                if *source == ContactSource::Stripe && current.is_some_and(|c| c.source == ContactSource::Admin) {
                    return false;
                }
                match email {
                    Some(email) => {
                        let new = Contact { email: email.clone(), source: *source };
                        if current == Some(&new) {
                            return false;
                        }
                        self.contacts.insert(*role, new);
                        true
                    }
                    None => self.contacts.remove(role).is_some(),
                }
            }
            Change::Language(l) => replace_opt(&mut self.language, Some(l.clone())),
            Change::CardExpiring(card) => match &self.card_expiring {
                Some(known) if known.at >= card.at => false,
                _ => replace_opt(&mut self.card_expiring, Some(card.clone())),
            },
            Change::CardUpdated(at) => match &self.card_expiring {
                Some(known) if known.at <= *at => replace_opt(&mut self.card_expiring, None),
                _ => false,
            },
            Change::NoticeSent(n) => {
                let dup = self.notices.iter().any(|k| {
                    k.episode == n.episode && k.stage == n.stage && k.channel == n.channel
                });
                if dup {
                    return false;
                }
                self.notices.push(n.clone());
                self.notices.sort();
                true
            }
            Change::Promise(p) => {
                if self.promises.contains(p) {
                    return false;
                }
                self.promises.push(p.clone());
                self.promises.sort();
                let excess = self.promises.len().saturating_sub(MAX_PROMISES);
                self.promises.drain(..excess);
                true
            }
            Change::Ladder(choice) => replace_opt(&mut self.ladder, choice.clone()),
        }
    }

    /// Keeps invoice `id`'s time in debt (the earliest start and the
    /// earliest settle time win, whatever the order; a span that ends
    /// before it starts is kept too, so every order agrees, and never
    /// counted as an episode).
    fn record_debt(&mut self, id: &str, since: DateTime<Utc>, settled: DateTime<Utc>) -> bool {
        let new = DebtSpan { since, settled };
        let changed = match self.closed_debts.get_mut(id) {
            None => {
                self.closed_debts.insert(id.to_owned(), new);
                true
            }
            Some(known) => replace(known, DebtSpan { since: known.since.min(since), settled: known.settled.min(settled) }),
        };
        while self.closed_debts.len() > MAX_TOMBSTONES {
            let oldest = self.closed_debts.iter().min_by_key(|(id, d)| (d.settled, (*id).clone())).map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.closed_debts.remove(&id),
                None => break,
            };
        }
        changed
    }

    fn prune_upcoming(&mut self) {
        while self.upcoming.len() > MAX_UPCOMING {
            let earliest = self.upcoming.iter().min_by_key(|(k, d)| (d.due, (*k).clone())).map(|(k, _)| k.clone());
            match earliest {
                Some(k) => self.upcoming.remove(&k),
                None => break,
            };
        }
    }

    fn prune_tombstones(&mut self) {
        while self.settled.len() > MAX_TOMBSTONES {
            let oldest = self
                .settled
                .iter()
                .min_by_key(|(id, at)| (**at, (*id).clone()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.settled.remove(&id),
                None => break,
            };
        }
    }

    /// Sets the time of the last write (the store does this).
    pub fn set_updated_at(&mut self, at: DateTime<Utc>) {
        self.updated_at = Some(at);
    }

    /// Known subscriptions by id.
    pub fn subscriptions(&self) -> &BTreeMap<String, SubscriptionFact> {
        &self.subscriptions
    }

    /// Payments coming due, by invoice id (or `upcoming:<subscription>`).
    pub fn upcoming(&self) -> &BTreeMap<String, UpcomingDue> {
        &self.upcoming
    }

    /// The earliest payment the customer must make themselves that is due
    /// by `until`: an invoice with a due date (`invoice.finalized`,
    /// `invoice.will_be_due`), not a renewal Stripe charges on its own
    /// (`invoice.upcoming`, kept as `upcoming:<subscription>`). A due date
    /// already past still counts until the invoice is paid or reported owed.
    pub fn next_due_by(&self, until: DateTime<Utc>) -> Option<(&str, &UpcomingDue)> {
        self.upcoming
            .iter()
            .filter(|(key, due)| !key.starts_with(UPCOMING_PREVIEW) && due.due <= until)
            .min_by_key(|(key, due)| (due.due, key.as_str()))
            .map(|(key, due)| (key.as_str(), due))
    }

    /// Invoices still owed, by id.
    pub fn unpaid(&self) -> &BTreeMap<String, UnpaidInvoice> {
        &self.unpaid
    }

    /// Settled invoice ids and the event time that settled them.
    pub fn settled(&self) -> &BTreeMap<String, DateTime<Utc>> {
        &self.settled
    }

    /// The admin override, expired or not.
    pub fn override_(&self) -> Option<&Override> {
        self.override_.as_ref()
    }

    /// Notices sent, oldest episode first.
    pub fn notices(&self) -> &[NoticeSent] {
        &self.notices
    }

    /// Customers an admin linked here that Stripe metadata claims for
    /// another account, newest first.
    pub fn link_conflicts(&self) -> &[LinkConflict] {
        &self.link_conflicts
    }

    /// Linked Stripe customers.
    pub fn customers(&self) -> &BTreeSet<String> {
        &self.customers
    }

    /// The promises to pay recorded for the account, oldest first.
    pub fn promises(&self) -> &[Promise] {
        &self.promises
    }

    /// The ladder an admin chose for the account.
    pub fn ladder_choice(&self) -> Option<&LadderChoice> {
        self.ladder.as_ref()
    }

    /// The ladder the account's plan names: that of its newest subscription
    /// that has one (ended ones included: a plan's ladder outlives a
    /// cancellation while debt from it is owed).
    pub fn plan_ladder(&self) -> Option<(&str, &str)> {
        self.subscriptions
            .iter()
            .filter_map(|(id, s)| s.ladder.as_deref().map(|l| (s.at, id.as_str(), l)))
            .max()
            .map(|(_, id, l)| (id, l))
    }

    /// The account's closed debt episodes, oldest first: each invoice's
    /// time in debt, overlapping ones merged; the episode still open (if
    /// anything is owed) is not among them.
    pub fn episodes(&self) -> Vec<Episode> {
        let mut out = self.settled_debts();
        if let Some(open) = self.past_due_since() {
            out.retain(|e| e.end < open);
        }
        out
    }

    /// Every settled invoice's time in debt, overlapping ones merged
    /// (including those that overlap the debt owed now).
    fn settled_debts(&self) -> Vec<Episode> {
        let mut spans: Vec<DebtSpan> = self.closed_debts.values().copied().filter(|d| d.since < d.settled).collect();
        spans.sort_by_key(|d| (d.since, d.settled));
        let mut out: Vec<Episode> = Vec::new();
        for d in spans {
            match out.last_mut() {
                Some(e) if d.since <= e.end => e.end = e.end.max(d.settled),
                _ => out.push(Episode { start: d.since, end: d.settled }),
            }
        }
        out
    }

    /// What became of `promise` by `now`: kept when the debt it was made
    /// in was settled by its date, broken when the date came first.
    pub fn promise_status(&self, promise: &Promise, now: DateTime<Utc>) -> PromiseStatus {
        if self.past_due_since().is_some_and(|open| open <= promise.at) {
            return if now < promise.until { PromiseStatus::Pending } else { PromiseStatus::Broken };
        }
        match self.settled_debts().into_iter().find(|e| e.start <= promise.at && promise.at <= e.end) {
            Some(e) if e.end > promise.until => PromiseStatus::Broken,
            _ => PromiseStatus::Kept,
        }
    }

    /// Whether any invoice was ever settled after being owed.
    pub(crate) fn has_debt_history(&self) -> bool {
        !self.closed_debts.is_empty()
    }

    /// The newest promise made during the debt owed now, if any.
    pub fn current_promise(&self) -> Option<&Promise> {
        if self.promises.is_empty() {
            return None;
        }
        let open = self.past_due_since()?;
        self.promises.iter().rev().find(|p| open <= p.at)
    }

    /// The promise that holds the ladder back at `now`: made during the
    /// debt owed now, its date not yet come.
    pub fn promise_in_force(&self, now: DateTime<Utc>) -> Option<&Promise> {
        self.current_promise().filter(|p| now < p.until)
    }

    /// The card that expires soon, unless it was updated since.
    pub fn card_expiring(&self) -> Option<&CardExpiry> {
        self.card_expiring.as_ref()
    }

    /// The other contacts by role (accountant, account manager).
    pub fn contacts(&self) -> &BTreeMap<ContactRole, Contact> {
        &self.contacts
    }

    /// The address for `role`, when one is known.
    pub fn contact(&self, role: ContactRole) -> Option<&str> {
        self.contacts.get(&role).map(|c| c.email.as_str())
    }

    /// The billing contact's e-mail address (the invoice's `customer_email`).
    pub fn contact_email(&self) -> Option<&str> {
        self.contact_email.as_deref()
    }

    /// The account's preferred language, when known.
    pub fn language(&self) -> Option<&str> {
        self.language.as_deref()
    }

    /// When the store last wrote this state.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    /// The earliest time any unpaid invoice first failed or became overdue,
    /// else the time a subscription entered a debt status; `None` when
    /// nothing is owed.
    pub fn past_due_since(&self) -> Option<DateTime<Utc>> {
        if let Some(t) = self.unpaid.values().map(|i| i.since).min() {
            return Some(t);
        }
        self.subscriptions
            .values()
            .filter(|s| s.status.is_debt())
            .map(|s| s.at)
            .min()
    }

    /// The most recent ended subscription, when every known subscription
    /// has ended.
    pub fn ended(&self) -> Option<&SubscriptionFact> {
        if self.subscriptions.is_empty() || !self.subscriptions.values().all(|s| s.status.is_ended()) {
            return None;
        }
        self.subscriptions.values().max_by_key(|s| (s.at, s.status))
    }

    /// The invoice the ladder clock started with (the oldest unpaid one).
    pub fn oldest_unpaid(&self) -> Option<(&str, &UnpaidInvoice)> {
        self.unpaid
            .iter()
            .min_by_key(|(id, i)| (i.since, id.as_str()))
            .map(|(id, i)| (id.as_str(), i))
    }

    /// The total owed in the currency of the oldest unpaid invoice.
    ///
    /// Invoices in other currencies are listed by the admin API but not
    /// added up: money in two currencies has no single total.
    pub fn amount_due(&self) -> Option<(i64, Currency)> {
        let (_, first) = self.oldest_unpaid()?;
        let total = self
            .unpaid
            .values()
            .filter(|i| i.currency == first.currency)
            .fold(0i64, |sum, i| sum.saturating_add(i.amount_due));
        Some((total, first.currency))
    }
}

fn newer_details(new: &UnpaidInvoice, known: &UnpaidInvoice) -> bool {
    // Compare the whole record after the time so ties are order-independent.
    (new.observed, new.amount_due, &new.hosted_url, &new.number)
        > (known.observed, known.amount_due, &known.hosted_url, &known.number)
}

fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

fn replace_opt<T: PartialEq>(slot: &mut Option<T>, value: Option<T>) -> bool {
    replace(slot, value)
}
