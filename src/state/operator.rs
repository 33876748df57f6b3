//! What operators decide: overrides, promises to pay, ladder choices, debt episodes, customer links in dispute.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// A note an operator wrote on the account ("called, pays Friday").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Who wrote it (the admin token's or operator's name).
    pub by: String,
    /// What it says (plain text).
    pub text: String,
}

/// Most notes an account keeps (the newest).
pub(crate) const MAX_NOTES: usize = 100;

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

/// How an invoice stopped being owed. A payment beats a void, whatever the
/// order they are heard in (`Paid` sorts after `Voided`, and the greater
/// one is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Settlement {
    /// Voided: written off, not paid.
    Voided,
    /// Paid (by the customer, or found paid by verification or sync).
    Paid,
}

impl Settlement {
    /// `paid` or `voided`.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Paid => "paid",
            Settlement::Voided => "voided",
        }
    }
}

/// One invoice's time in debt: from when it first failed or became
/// overdue to when it was paid or voided (event times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DebtSpan {
    /// When it first failed or became overdue.
    pub since: DateTime<Utc>,
    /// When it was settled.
    pub settled: DateTime<Utc>,
    /// What was owed, as the newest report said (unknown for spans
    /// recorded before amounts were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Owed>,
}

/// An amount owed, with the time of the report that said so: of two
/// reports the newer one wins (ties broken by the amount), whatever the
/// order they arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Owed {
    /// The report's event time.
    pub observed: DateTime<Utc>,
    /// In the currency's minor unit.
    pub amount: i64,
    /// The currency.
    pub currency: super::Currency,
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
