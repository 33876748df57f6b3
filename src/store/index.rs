//! The indexes every store keeps on each write: accounts by the time that
//! puts them in a stage ([`Index`]), and names to find them by ([`Lookup`]).

use std::collections::BTreeSet;

use crate::account::AccountId;
use crate::state::BillingState;

/// The account indexes every store keeps, for listing accounts by stage
/// without scanning all keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Index {
    /// Accounts in debt, scored by `past_due_since`: the accounts in a ladder
    /// stage are a score range that moves with the clock.
    Debt,
    /// Accounts whose subscriptions all ended, scored by when.
    Ended,
    /// Accounts with an override, scored by its expiry ([`NEVER`] = none).
    Override,
    /// Accounts with a payment coming due, scored by the earliest due date:
    /// the notifier reads only those whose reminder is due.
    Upcoming,
    /// Accounts in debt with a promise to pay, scored by its date: the
    /// ladder speaks again when it passes unpaid.
    Promise,
    /// Accounts with a notice held for the send window, scored by the
    /// earliest moment one goes out.
    Waiting,
}

/// The score of an override that never expires.
pub const NEVER: i64 = 99_999_999_999;

impl Index {
    /// All indexes.
    pub const ALL: [Index; 6] = [Index::Debt, Index::Ended, Index::Override, Index::Upcoming, Index::Promise, Index::Waiting];

    /// The name used in keys.
    pub fn name(self) -> &'static str {
        match self {
            Index::Debt => "debt",
            Index::Ended => "ended",
            Index::Override => "override",
            Index::Upcoming => "upcoming",
            Index::Promise => "promise",
            Index::Waiting => "waiting",
        }
    }

    /// The account's score in this index, if it belongs there.
    pub fn score(self, state: &BillingState) -> Option<i64> {
        match self {
            Index::Debt => state.past_due_since().map(|t| t.timestamp()),
            Index::Ended => state.ended().map(|f| f.at.timestamp()),
            Index::Override => state.override_().map(|o| o.until.map_or(NEVER, |u| u.timestamp())),
            Index::Upcoming => state.upcoming().values().map(|d| d.due.timestamp()).min(),
            Index::Promise => state.current_promise().map(|p| p.until.timestamp()),
            Index::Waiting => state.waiting().iter().map(|w| w.at.timestamp()).min(),
        }
    }
}

/// One entry of an [`Index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The score (unix seconds).
    pub score: i64,
    /// The account.
    pub account: AccountId,
}

impl IndexEntry {
    /// The entry as one sortable string, `"<score, 12 digits>:<account>"`:
    /// both stores order and page by it.
    pub fn cursor(&self) -> String {
        member(self.score, &self.account)
    }

    /// Parses [`IndexEntry::cursor`].
    pub fn parse(cursor: &str) -> Option<Self> {
        let (score, account) = cursor.split_once(':')?;
        Some(Self { score: score.parse().ok()?, account: AccountId::new(account).ok()? })
    }
}

pub(crate) fn member(score: i64, account: &AccountId) -> String {
    format!("{:012}:{}", score.clamp(0, NEVER), account)
}

/// The index changes a write implies: `(index, old member, new member)`.
pub(crate) fn index_moves(before: Option<&BillingState>, after: &BillingState, account: &AccountId) -> Vec<(Index, Option<String>, Option<String>)> {
    Index::ALL
        .iter()
        .filter_map(|&index| {
            let old = before.and_then(|b| index.score(b)).map(|s| member(s, account));
            let new = index.score(after).map(|s| member(s, account));
            (old != new).then_some((index, old, new))
        })
        .collect()
}

/// Names every store keeps, to find accounts by exactly or by prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Lookup {
    /// Every account ever written, by id.
    Account,
    /// Accounts by the e-mail addresses they are known by (the billing
    /// address and each contact's), lower case.
    Email,
}

impl Lookup {
    /// Both lookups.
    pub const ALL: [Lookup; 2] = [Lookup::Account, Lookup::Email];

    /// The name used in keys.
    pub fn name(self) -> &'static str {
        match self {
            Lookup::Account => "accounts",
            Lookup::Email => "emails",
        }
    }

    /// The account's members: its id, or `"<email>\n<account>"` per address.
    pub(crate) fn members(self, state: &BillingState, account: &AccountId) -> BTreeSet<String> {
        match self {
            Lookup::Account => BTreeSet::from([account.to_string()]),
            Lookup::Email => state
                .contact_email()
                .into_iter()
                .chain(state.contacts().values().map(|c| c.email.as_str()))
                .filter(|e| !e.contains('\n'))
                .map(|e| format!("{}\n{account}", e.to_lowercase()))
                .collect(),
        }
    }

    /// The account a member names.
    pub fn account_of(self, member: &str) -> Option<AccountId> {
        match self {
            Lookup::Account => AccountId::new(member).ok(),
            Lookup::Email => AccountId::new(member.rsplit_once('\n')?.1).ok(),
        }
    }
}

/// The lookup changes a write implies: `(lookup, members to remove,
/// members to add)`.
pub(crate) fn lookup_moves(before: Option<&BillingState>, after: &BillingState, account: &AccountId) -> Vec<(Lookup, Vec<String>, Vec<String>)> {
    Lookup::ALL
        .iter()
        .filter_map(|&lookup| {
            let old = before.map(|b| lookup.members(b, account)).unwrap_or_default();
            let new = lookup.members(after, account);
            let gone: Vec<String> = old.difference(&new).cloned().collect();
            let added: Vec<String> = new.difference(&old).cloned().collect();
            (!gone.is_empty() || !added.is_empty()).then_some((lookup, gone, added))
        })
        .collect()
}
