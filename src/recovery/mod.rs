//! Recovery figures: what the ladder brings back, at which stage, how fast.
//!
//! A *debt episode* runs from the moment an account first owes (its
//! `past_due_since`) until it owes nothing. [`Recorder::records`] reads an
//! account's episodes off its [`BillingState`] — invoices' times in debt,
//! overlapping ones merged, each invoice paid or voided — and classifies
//! each by the ladder it started on and the stage it ended at. Everything
//! comes from the state, which is itself the same whatever order events
//! arrive in, so the records are too.
//!
//! Stores keep the figures as they apply changes: each account's records
//! are stored beside its state, and the difference between the old and the
//! new records (a [`Tally`]) is added to per-day counters in the same
//! atomic step. A [`Report`] is then a sum over the days asked for, never a
//! scan of accounts. Accounts at risk now are a snapshot ([`AtRisk`])
//! refreshed by a full sweep of the accounts in debt.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::state::{BillingState, Currency, Episode, Settlement};

mod at_risk;
mod report;
mod tally;

pub use self::at_risk::{AtRisk, StageRisk};
pub use self::report::{DaysToPay, MonthFigures, Range, RangeError, Report, StageFigures, Totals, DEFAULT_DAYS, MAX_DAYS};
pub use self::tally::{Cell, Tally};

/// Amounts by currency, in minor units.
pub type Amounts = BTreeMap<Currency, i64>;

/// How a closed episode ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub enum Outcome {
    /// Something was paid.
    Paid,
    /// Everything was voided (written off), nothing paid.
    Voided,
}

impl Outcome {
    /// `paid` or `voided`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Voided => "voided",
        }
    }
}

/// One debt episode of one account, as the figures count it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct EpisodeRecord {
    /// When the account first owed (the first invoice failed or fell due).
    pub started_at: DateTime<Utc>,
    /// When it owed nothing any more; `None` while the episode is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The ladder the episode started on.
    pub ladder: String,
    /// The stage of that ladder when the episode ended (the first stage
    /// when a promise to pay held it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_at_end: Option<String>,
    /// Paid so far, by currency (minor units).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub amount_paid: Amounts,
    /// Voided so far, by currency (minor units).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub amount_voided: Amounts,
    /// Still owed (open episodes), by currency (minor units).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub outstanding: Amounts,
    /// `paid` when anything was paid, else `voided`; `None` while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl EpisodeRecord {
    /// Whether the episode is still open.
    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// Classifies episodes with a [`Policy`]: the ladder each started on, the
/// stage each ended at. Stores hold one (see `Store::keep_figures`).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    policy: Policy,
}

/// One part of an episode: an invoice's time in debt, or a subscription in
/// a debt status.
struct Part {
    since: DateTime<Utc>,
    /// `None` while owed.
    until: Option<DateTime<Utc>>,
    amount: Option<(Currency, i64)>,
    how: Option<Settlement>,
}

impl Recorder {
    /// A recorder classifying with `policy`.
    pub fn new(policy: impl Into<Policy>) -> Self {
        Self { policy: policy.into() }
    }

    /// The account's episodes, oldest first; the last one may be open.
    pub fn records(&self, state: &BillingState) -> Vec<EpisodeRecord> {
        let mut parts: Vec<Part> = Vec::new();
        for (id, d) in state.closed_debts() {
            // A span that ends before it starts (a payment reported before
            // the failure it settles) was never a debt.
            if d.since < d.settled {
                let how = state.settlement(id);
                parts.push(Part { since: d.since, until: Some(d.settled), amount: d.owed.map(|o| (o.currency, o.amount)), how });
            }
        }
        for i in state.unpaid().values() {
            parts.push(Part { since: i.since, until: None, amount: Some((i.currency, i.amount_due)), how: None });
        }
        for s in state.subscriptions().values().filter(|s| s.status.is_debt()) {
            parts.push(Part { since: s.at, until: None, amount: None, how: None });
        }
        parts.sort_by_key(|p| (p.since, p.until.is_none(), p.until));
        let mut groups: Vec<Vec<Part>> = Vec::new();
        let mut end: Option<Option<DateTime<Utc>>> = None;
        for p in parts {
            // `None` (still owed) lasts past any time.
            let overlaps = match end {
                Some(None) => true,
                Some(Some(e)) => p.since <= e,
                None => false,
            };
            let p_end = p.until;
            if overlaps {
                end = Some(end.flatten().zip(p_end).map(|(a, b)| a.max(b)));
                groups.last_mut().expect("a group is open").push(p);
            } else {
                end = Some(p_end);
                groups.push(vec![p]);
            }
        }
        groups.into_iter().map(|g| self.record(state, g)).collect()
    }

    fn record(&self, state: &BillingState, parts: Vec<Part>) -> EpisodeRecord {
        let started_at = parts.iter().map(|p| p.since).min().expect("a group has a part");
        let ended_at = parts.iter().map(|p| p.until).try_fold(started_at, |end, u| u.map(|u| end.max(u)));
        let (ladder_name, ladder) = self.policy.episode_ladder(state, started_at);
        let mut record = EpisodeRecord {
            started_at,
            ended_at,
            ladder: ladder_name.to_owned(),
            stage_at_end: None,
            amount_paid: Amounts::new(),
            amount_voided: Amounts::new(),
            outstanding: Amounts::new(),
            outcome: None,
        };
        let mut paid = false;
        for p in &parts {
            let bucket = match (p.until, p.how) {
                (None, _) => &mut record.outstanding,
                // Spans recorded before settlements were kept were paid.
                (Some(_), Some(Settlement::Paid) | None) => {
                    paid = true;
                    &mut record.amount_paid
                }
                (Some(_), Some(Settlement::Voided)) => &mut record.amount_voided,
            };
            if let Some((currency, amount)) = p.amount {
                let sum = bucket.entry(currency).or_default();
                *sum = sum.saturating_add(amount);
            }
        }
        if let Some(end) = ended_at {
            record.outcome = Some(if paid { Outcome::Paid } else { Outcome::Voided });
            let first = ladder.stages().first().map(|s| s.name().to_owned());
            let held = state.promises().iter().any(|p| started_at <= p.at && p.at <= end && end < p.until);
            let reached = if held { None } else { crate::policy::reached(ladder, &Episode { start: started_at, end }) };
            record.stage_at_end = reached.or(first);
        }
        record
    }

    /// The records to store after a write, and what changed in the
    /// counters: `stored` are the records kept beside the old state.
    pub fn next(&self, stored: &[EpisodeRecord], state: &BillingState) -> (Vec<EpisodeRecord>, Tally) {
        let records = self.records(state);
        let delta = delta(stored, &records, state);
        (records, delta)
    }
}

/// What the counters change by when an account's records go from `stored`
/// to `records` (read off `state`).
///
/// An account keeps a bounded number of settled invoices; records of
/// episodes whose invoices were all pruned stay counted (their
/// contribution is frozen) instead of being taken back.
pub fn delta(stored: &[EpisodeRecord], records: &[EpisodeRecord], state: &BillingState) -> Tally {
    let horizon = state.closed_debts_pruned().then(|| state.closed_debts().values().map(|d| d.settled).min()).flatten();
    let mut delta = Tally::default();
    for r in stored {
        let frozen = match (horizon, r.ended_at) {
            (Some(horizon), Some(end)) => end < horizon && !records.contains(r),
            _ => false,
        };
        if !frozen {
            delta.add_record(r, -1);
        }
    }
    for r in records {
        delta.add_record(r, 1);
    }
    delta.drop_zeros();
    delta
}

/// The records in `records` that are closed and were not in `stored`:
/// episodes a write just ended (for the `pastdue_episodes_ended_total`
/// and `pastdue_recovered_amount_total` counters).
pub(crate) fn newly_closed<'a>(stored: &'a [EpisodeRecord], records: &'a [EpisodeRecord]) -> impl Iterator<Item = &'a EpisodeRecord> {
    records.iter().filter(move |r| !r.is_open() && !stored.contains(r))
}
