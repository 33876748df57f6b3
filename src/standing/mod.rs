//! The grace ladder and the pure evaluation of an account's standing.
//!
//! [`Standing::evaluate`] is a function of `(state, ladder, now)` and nothing
//! else: time passes without any write, and the next request simply sees the
//! next stage.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::state::{BillingState, Currency, OverrideMode, SubscriptionStatus};

mod ladder;

pub(crate) use self::ladder::is_valid_name;
use self::ladder::{starts, ACTIVE, UNAVAILABLE};
pub use self::ladder::{Action, Ladder, LadderError, Stage, RESERVED_STAGES};

/// Why an account is where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Nothing owed, subscription fine (or none known).
    GoodStanding,
    /// The store has never heard of the account.
    Unknown,
    /// Money is owed: the ladder applies.
    Debt,
    /// Every subscription has ended and nothing is owed.
    Canceled,
    /// Like `Canceled`, but the subscription is paused: a payment method is
    /// missing rather than the subscription being over.
    Paused,
    /// Money is owed, but the customer promised to pay by a date that has
    /// not come: the ladder waits at its first stage until then.
    Promised,
    /// An admin override is in force.
    Override(OverrideMode),
    /// The store could not be read and nothing was cached: the
    /// `on_store_error` policy decided.
    StoreUnavailable,
}

impl Reason {
    /// The name used in pages, problem+json and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::GoodStanding => "good_standing",
            Reason::Unknown => "unknown",
            Reason::Debt => "debt",
            Reason::Promised => "promised",
            Reason::Canceled => "canceled",
            Reason::Paused => "paused",
            Reason::Override(_) => "override",
            Reason::StoreUnavailable => "unavailable",
        }
    }
}

/// An account's standing at one instant.
///
/// Cheap to clone: the gate puts one in every gated request's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    stage: Stage,
    reason: Reason,
    since: Option<DateTime<Utc>>,
    next: Option<(Stage, DateTime<Utc>)>,
    past_due_since: Option<DateTime<Utc>>,
    amount_due: Option<(i64, Currency)>,
    pay_url: Option<Arc<str>>,
    /// The date of the newest promise to pay made during this debt.
    promised: Option<DateTime<Utc>>,
    /// The ladder's next `block` stage (its date is worked out only when
    /// asked: [`Standing::blocks_at`]).
    blocks: Option<Stage>,
}

impl Standing {
    /// The standing of an account at `now` on `ladder` (the one
    /// [`Policy::ladder_for`](crate::policy::Policy::ladder_for) picked for it).
    /// `state` is `None` for an account the store has never heard of.
    ///
    /// A promise to pay whose date has not come holds the debt at the
    /// ladder's first stage (reason [`Reason::Promised`]); once the date
    /// passes unpaid, the ladder stands where time has put it.
    pub fn evaluate(state: Option<&BillingState>, ladder: &Ladder, now: DateTime<Utc>) -> Self {
        let Some(state) = state else {
            return Self::plain(*ladder.unknown(), Reason::Unknown);
        };
        let past_due_since = state.past_due_since();
        let amount_due = state.amount_due();
        let pay_url = state.oldest_unpaid().and_then(|(_, i)| i.hosted_url.clone());

        let mut standing = if let Some(o) = state.override_().filter(|o| o.is_active(now)) {
            let stage = match o.mode {
                OverrideMode::Allow => ladder.active,
                OverrideMode::Block => ladder.suspended,
            };
            Self { since: Some(o.at), ..Self::plain(stage, Reason::Override(o.mode)) }
        } else if let Some(start) = past_due_since {
            let mut standing = Self::on_ladder(ladder, start, now);
            if let Some(promise) = state.current_promise() {
                standing.promised = Some(promise.until);
                if now < promise.until {
                    standing = Self::held_by_promise(ladder, start, promise.at, promise.until, standing);
                }
            }
            standing
        } else if let Some(ended) = state.ended() {
            let reason = if ended.status == SubscriptionStatus::Paused {
                Reason::Paused
            } else {
                Reason::Canceled
            };
            Self { since: Some(ended.at), ..Self::plain(ladder.canceled, reason) }
        } else {
            Self::plain(ladder.active, Reason::GoodStanding)
        };
        standing.past_due_since = past_due_since;
        standing.amount_due = amount_due;
        standing.pay_url = pay_url;
        standing
    }

    /// Good standing, no debt: what a paying account gets.
    pub fn good(ladder: &Ladder) -> Self {
        Self::plain(ladder.active, Reason::GoodStanding)
    }

    /// [`Standing::good`] on any ladder: every ladder's `active` stage is
    /// the same (an interned definition), so the gate's zero-size marker
    /// loses nothing.
    pub(crate) fn good_anywhere() -> Self {
        static ACTIVE_STAGE: std::sync::OnceLock<Stage> = std::sync::OnceLock::new();
        let stage = *ACTIVE_STAGE.get_or_init(|| Stage::new(ACTIVE, Duration::ZERO, Action::Allow).expect("reserved name is valid"));
        Self::plain(stage, Reason::GoodStanding)
    }

    /// Whether this is exactly [`Standing::good`]: nothing owed, coming or
    /// promised.
    pub(crate) fn is_plain_good(&self) -> bool {
        self.reason == Reason::GoodStanding
            && self.stage.is_active()
            && self.since.is_none()
            && self.next.is_none()
            && self.past_due_since.is_none()
            && self.amount_due.is_none()
            && self.pay_url.is_none()
            && self.promised.is_none()
            && self.blocks.is_none()
    }

    /// The standing of an account whose state could not be read (store
    /// down, nothing cached): the `on_store_error` policy's action.
    pub fn unavailable(ladder: &Ladder, action: Action) -> Self {
        let stage = match action {
            Action::Allow => ladder.active,
            _ => Stage::new(UNAVAILABLE, Duration::ZERO, action).expect("reserved name is valid"),
        };
        Self::plain(stage, Reason::StoreUnavailable)
    }

    fn plain(stage: Stage, reason: Reason) -> Self {
        Self {
            stage,
            reason,
            since: None,
            next: None,
            past_due_since: None,
            amount_due: None,
            pay_url: None,
            promised: None,
            blocks: None,
        }
    }

    /// A promise in force: the first stage until `until`; then the ladder
    /// stands where time has put it by then.
    fn held_by_promise(ladder: &Ladder, start: DateTime<Utc>, at: DateTime<Utc>, until: DateTime<Utc>, on_ladder: Self) -> Self {
        let first = ladder.stages[0];
        let later = ladder.stages.get(1..).unwrap_or_default();
        let resumes = later.iter().rev().find(|s| starts(start, s) <= until);
        let next = match resumes {
            Some(s) => Some((*s, until)),
            None => later.first().map(|s| (*s, starts(start, s))),
        };
        let blocks = later.iter().find(|s| s.action() == Action::Block).copied();
        Self { stage: first, reason: Reason::Promised, since: Some(at), next, blocks, ..on_ladder }
    }

    fn on_ladder(ladder: &Ladder, start: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        // A clock that runs behind the event time counts as "just started".
        let elapsed = (now - start).to_std().unwrap_or(Duration::ZERO);
        let reached = ladder.stages.iter().rposition(|s| s.after() <= elapsed);
        let at = |s: &Stage| starts(start, s);
        let next_index = reached.map_or(0, |i| i + 1);
        let next = ladder.stages.get(next_index).map(|s| (*s, at(s)));
        let blocks = ladder.stages[next_index..].iter().find(|s| s.action() == Action::Block).copied();
        match reached {
            Some(i) => {
                let stage = &ladder.stages[i];
                Self { since: Some(at(stage)), next, blocks, ..Self::plain(*stage, Reason::Debt) }
            }
            // In debt, but the first rung has not started yet.
            None => Self { next, blocks, ..Self::plain(ladder.active, Reason::Debt) },
        }
    }

    /// The date of the newest promise to pay made during this debt (kept
    /// or not yet due, or broken: the page says "you told us you would
    /// pay by …").
    pub fn promised(&self) -> Option<DateTime<Utc>> {
        self.promised
    }

    /// When the rest of the app closes too (the ladder's next `block`
    /// stage), if the debt stays unpaid.
    pub fn blocks_at(&self) -> Option<DateTime<Utc>> {
        let at = starts(self.past_due_since?, &self.blocks?);
        // A promise in force holds everything open until its date.
        match (self.reason, self.promised) {
            (Reason::Promised, Some(until)) => Some(at.max(until)),
            _ => Some(at),
        }
    }

    /// The current stage.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The current stage's action.
    pub fn action(&self) -> Action {
        self.stage.action()
    }

    /// Why the account is in this stage.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// When the current stage started (`None` for good standing).
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.since
    }

    /// The next ladder stage and when it starts, if the debt stays unpaid.
    pub fn next(&self) -> Option<(&Stage, DateTime<Utc>)> {
        self.next.as_ref().map(|(s, t)| (s, *t))
    }

    /// When the ladder clock started.
    pub fn past_due_since(&self) -> Option<DateTime<Utc>> {
        self.past_due_since
    }

    /// The amount owed (minor units) and its currency.
    pub fn amount_due(&self) -> Option<(i64, Currency)> {
        self.amount_due
    }

    /// Where to pay: the oldest unpaid invoice's hosted page, when it is a
    /// URL that may be rendered (https, loopback http, or a root-relative path).
    pub fn pay_url(&self) -> Option<&str> {
        self.pay_url.as_deref().filter(|u| crate::href::is_safe(u))
    }

    /// Whether a request with this method passes.
    pub fn allows(&self, method: &http::Method) -> bool {
        match self.action() {
            Action::Allow | Action::Notice | Action::Warn => true,
            Action::ReadOnly => method.is_safe(),
            Action::Block => false,
        }
    }
}
