//! The stored billing state of one account, and the changes that move it.
//!
//! Everything here is plain data: no clock, no I/O. A [`Change`] carries the
//! time of the fact it reports (a Stripe event's `created`, an invoice's
//! `due_date`, the moment an admin acted), and [`BillingState::apply`] is
//! written so that applying the same set of changes in any order ends in the
//! same state. That is what makes late and reordered webhooks harmless.

use std::collections::{BTreeMap, BTreeSet};

pub use litemap::LiteMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod apply;
mod change;
mod contacts;
mod currency;
mod facts;
mod operator;
mod time;

pub use self::{change::*, contacts::*, currency::*, facts::*, operator::*, time::*};

/// How many settled-invoice tombstones an account keeps (newest first).
///
/// Stripe retries a delivery for up to three days; an account settles far
/// fewer invoices than this in that window.
pub(crate) const MAX_TOMBSTONES: usize = 64;

/// Everything pastdue knows about one account's payments.
///
/// Built only by applying [`Change`]s, so its invariants hold: an invoice is
/// never both unpaid and settled, and a subscription's status is the one with
/// the newest event time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    subscriptions: BTreeMap<String, SubscriptionFact>,
    /// A map that allocates what it holds (a B-tree's first node is sized
    /// for eleven): most states owe one or two invoices, and every debtor
    /// is kept in the gate's cache.
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    unpaid: LiteMap<String, UnpaidInvoice>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settled: BTreeMap<String, DateTime<Utc>>,
    /// How each settled invoice was settled (for the ones known: states
    /// written before this was recorded have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settlements: BTreeMap<String, Settlement>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<Sourced>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    billing_phone: Option<Sourced>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    waiting: Vec<Waiting>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    promises: Vec<Promise>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    closed_debts: BTreeMap<String, DebtSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ladder: Option<LadderChoice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<DateTime<Utc>>,
}

/// Notices held for the send window an account keeps, at most (a few per
/// stage; the bound keeps a state small whatever the config).
pub(crate) const MAX_WAITING: usize = 32;

impl BillingState {
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
    pub fn unpaid(&self) -> &LiteMap<String, UnpaidInvoice> {
        &self.unpaid
    }

    /// Settled invoice ids and the event time that settled them.
    pub fn settled(&self) -> &BTreeMap<String, DateTime<Utc>> {
        &self.settled
    }

    /// How invoice `id` was settled, when it was and that is known.
    pub fn settlement(&self, id: &str) -> Option<Settlement> {
        self.settlements.get(id).copied()
    }

    /// Each settled invoice's time in debt (the ones still kept).
    pub fn closed_debts(&self) -> &BTreeMap<String, DebtSpan> {
        &self.closed_debts
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

    /// Operators' notes, oldest first.
    pub fn notes(&self) -> &[Note] {
        &self.notes
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

    /// Whether the account keeps as many settled invoices' spans as it
    /// may, so older ones may have been dropped.
    pub(crate) fn closed_debts_pruned(&self) -> bool {
        self.closed_debts.len() >= MAX_TOMBSTONES
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

    /// The account's IANA time zone (`Europe/Riga`), when known: its
    /// messages keep to the send window in that zone.
    pub fn timezone(&self) -> Option<&Sourced> {
        self.timezone.as_ref()
    }

    /// The billing contact's phone number (E.164), when known: where text
    /// messages go.
    pub fn billing_phone(&self) -> Option<&Sourced> {
        self.billing_phone.as_ref()
    }

    /// Notices held for the send window, each with when it goes out.
    pub fn waiting(&self) -> &[Waiting] {
        &self.waiting
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
