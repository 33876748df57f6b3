//! Policy that fits the customer: which ladder an account is on, and why;
//! whether a promise to pay may be recorded.
//!
//! Pure, like [`Standing::evaluate`]: a function of the account's state, the
//! configured ladders and the time. The ladder is chosen first match wins:
//!
//! 1. an admin's choice on the account (`PUT /admin/accounts/{a}/policy`);
//! 2. the plan: the newest subscription's price or product metadata
//!    (`stripe.ladder_metadata_key`) or price lookup key
//!    (`[stripe.ladder_by_lookup_key]`), read when the subscription event
//!    arrives;
//! 3. the repeat-offender rule (`[policy.repeat]`);
//! 4. `default` (`[ladder]`).
//!
//! A name no ladder has is skipped (the admin view says so), never an error
//! on a request.

mod settings;
pub use self::settings::{LadderConfig, NamedLadderConfig, PolicyConfig, RepeatConfig, StageConfig};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::standing::{Ladder, Stage, Standing};
use crate::state::{BillingState, Episode, Promise, PromiseStatus};

/// The name of the ladder `[ladder]` configures.
pub const DEFAULT_LADDER: &str = "default";

/// The repeat-offender rule (`[policy.repeat]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatRule {
    /// Earlier episodes that make a repeat offender.
    pub episodes: u32,
    /// The stage an episode must have reached to count (by its offset on
    /// the account's own ladder, else on `default`).
    pub min_stage: String,
    /// How far back episodes and broken promises count.
    pub window: Duration,
    /// The ladder repeat offenders get.
    pub ladder: String,
}

/// Why a policy was refused. The message names what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A ladder name that is not `[a-z0-9_-]{1,64}`, or used twice.
    #[error("ladder name {0:?} must be 1-64 characters of a-z, 0-9, _ or - and not \"default\"")]
    BadName(String),
    /// The repeat rule names a ladder that does not exist.
    #[error("{0:?} is not a ladder (known: {1})")]
    UnknownLadder(String, String),
    /// The repeat rule's `min_stage` is not a stage of the default ladder.
    #[error("{0:?} is not a stage of the default ladder")]
    UnknownStage(String),
    /// The repeat rule counts no episodes.
    #[error("must be at least 1")]
    NoEpisodes,
}

/// The ladders and the rules that choose among them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Policy {
    ladders: Arc<BTreeMap<String, Ladder>>,
    default: Ladder,
    repeat: Option<Arc<RepeatRule>>,
    promise_cooldown: Duration,
}

impl From<Ladder> for Policy {
    fn from(ladder: Ladder) -> Self {
        Self::new(ladder)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(Ladder::standard())
    }
}

/// Where an account's ladder came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source<'a> {
    Admin,
    Plan(&'a str),
    Repeat,
    Default,
}

/// The chosen ladder and why, for the admin view and `pastdue explain`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Choice {
    /// The ladder's name.
    pub name: String,
    /// `admin`, `plan`, `repeat` or `default`.
    pub source: &'static str,
    /// In words.
    pub why: String,
    /// The earlier episodes that made the account a repeat offender.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<EpisodeView>,
    /// The broken promises that did (their dates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub broken_promises: Vec<DateTime<Utc>>,
    /// Choices that named a ladder that does not exist (skipped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A closed debt episode and the deepest stage it reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpisodeView {
    /// When it started (the first failure).
    pub start: DateTime<Utc>,
    /// When nothing was owed any more.
    pub end: DateTime<Utc>,
    /// The deepest stage reached (on the account's ladder without the
    /// repeat rule), `None` if it ended before the first stage.
    pub reached: Option<String>,
}

/// Why a promise to pay was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromiseRefused {
    /// Nothing is owed: there is nothing to promise.
    #[error("nothing is owed: a promise to pay needs a debt")]
    NothingOwed,
    /// The date is not after now.
    #[error("`until` must be in the future")]
    NotFuture,
    /// A promise was broken less than `policy.promise_cooldown` ago.
    #[error("a promise to pay by {broken} was broken; new promises are refused until {ends} unless \"force\": true")]
    Cooldown {
        /// The broken promise's date.
        broken: DateTime<Utc>,
        /// When the cooldown ends.
        ends: DateTime<Utc>,
    },
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Policy {
    /// One ladder for everyone, no repeat rule, promises cooling down
    /// 180 days after a broken one.
    pub fn new(default: Ladder) -> Self {
        Self { ladders: Arc::default(), default, repeat: None, promise_cooldown: Duration::from_secs(180 * 86_400) }
    }

    /// Adds ladder `name`.
    pub fn with_ladder(mut self, name: &str, ladder: Ladder) -> Result<Self, PolicyError> {
        if !crate::standing::is_valid_name(name) || name == DEFAULT_LADDER {
            return Err(PolicyError::BadName(name.into()));
        }
        Arc::make_mut(&mut self.ladders).insert(name.to_owned(), ladder);
        Ok(self)
    }

    /// Turns the repeat-offender rule on.
    pub fn with_repeat(mut self, rule: RepeatRule) -> Result<Self, PolicyError> {
        if self.ladder(&rule.ladder).is_none() {
            return Err(PolicyError::UnknownLadder(rule.ladder.clone(), self.names().collect::<Vec<_>>().join(", ")));
        }
        if self.default.stages().iter().all(|s| s.name() != rule.min_stage) {
            return Err(PolicyError::UnknownStage(rule.min_stage.clone()));
        }
        if rule.episodes == 0 {
            return Err(PolicyError::NoEpisodes);
        }
        self.repeat = Some(Arc::new(rule));
        Ok(self)
    }

    /// How long promises are refused after a broken one.
    pub fn with_promise_cooldown(mut self, cooldown: Duration) -> Self {
        self.promise_cooldown = cooldown;
        self
    }

    /// The `default` ladder.
    pub fn default_ladder(&self) -> &Ladder {
        &self.default
    }

    /// The ladder called `name` (`default` included).
    pub fn ladder(&self, name: &str) -> Option<&Ladder> {
        match name {
            DEFAULT_LADDER => Some(&self.default),
            _ => self.ladders.get(name),
        }
    }

    /// Every ladder name, `default` first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(DEFAULT_LADDER).chain(self.ladders.keys().map(String::as_str))
    }

    /// Every ladder with its name, `default` first.
    pub fn ladders(&self) -> impl Iterator<Item = (&str, &Ladder)> {
        std::iter::once((DEFAULT_LADDER, &self.default)).chain(self.ladders.iter().map(|(n, l)| (n.as_str(), l)))
    }

    /// Every ladder stage of every ladder (a stage two ladders share by
    /// name and definition appears once).
    pub fn stages(&self) -> Vec<Stage> {
        let mut out: Vec<Stage> = Vec::new();
        for (_, ladder) in self.ladders() {
            for s in ladder.stages() {
                if !out.iter().any(|k| k.same(*s)) {
                    out.push(*s);
                }
            }
        }
        out
    }

    /// Every ladder stage's name, each once, `default`'s first.
    pub fn stage_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (_, ladder) in self.ladders() {
            for s in ladder.stages() {
                if !names.contains(&s.name()) {
                    names.push(s.name());
                }
            }
        }
        names
    }

    /// The repeat rule, when on.
    pub fn repeat(&self) -> Option<&RepeatRule> {
        self.repeat.as_deref()
    }

    /// The standing of an account at `now` on the ladder chosen for it.
    pub fn evaluate(&self, state: Option<&BillingState>, now: DateTime<Utc>) -> Standing {
        Standing::evaluate(state, self.ladder_for(state, now), now)
    }

    /// The ladder chosen for the account at `now`.
    pub fn ladder_for<'a>(&'a self, state: Option<&'a BillingState>, now: DateTime<Utc>) -> &'a Ladder {
        self.pick(state, now).0
    }

    /// The ladder chosen for the account at `now`, with its name.
    pub fn ladder_named_for<'a>(&'a self, state: &'a BillingState, now: DateTime<Utc>) -> (&'a str, &'a Ladder) {
        let (ladder, name, _) = self.pick(Some(state), now);
        (name, ladder)
    }

    fn pick<'a>(&'a self, state: Option<&'a BillingState>, now: DateTime<Utc>) -> (&'a Ladder, &'a str, Source<'a>) {
        let Some(state) = state else { return (&self.default, DEFAULT_LADDER, Source::Default) };
        let (base, name, source) = self.base(state);
        if source == Source::Default {
            if let Some(rule) = &self.repeat {
                if let Some(ladder) = self.ladder(&rule.ladder) {
                    if self.offences(rule, base, state, now, state.past_due_since()).is_some() {
                        return (ladder, &rule.ladder, Source::Repeat);
                    }
                }
            }
        }
        (base, name, source)
    }

    /// The ladder without the repeat rule: the admin's, the plan's, else
    /// `default`.
    fn base<'a>(&'a self, state: &'a BillingState) -> (&'a Ladder, &'a str, Source<'a>) {
        if let Some(choice) = state.ladder_choice() {
            if let Some(l) = self.ladder(&choice.ladder) {
                return (l, &choice.ladder, Source::Admin);
            }
        }
        if let Some((subscription, name)) = state.plan_ladder() {
            if let Some(l) = self.ladder(name) {
                return (l, name, Source::Plan(subscription));
            }
        }
        (&self.default, DEFAULT_LADDER, Source::Default)
    }

    /// The name of the ladder a debt episode that started at `start` was
    /// on: the admin's or the plan's, else the repeat ladder when the
    /// account's history before `start` made it a repeat offender then,
    /// else `default`. Recovery figures group episodes by it.
    pub fn episode_ladder<'a>(&'a self, state: &'a BillingState, start: DateTime<Utc>) -> (&'a str, &'a Ladder) {
        let (base, name, source) = self.base(state);
        if source == Source::Default {
            if let Some((rule, ladder)) = self.repeat.as_deref().and_then(|r| Some((r, self.ladder(&r.ladder)?))) {
                if self.offences(rule, base, state, start, Some(start)).is_some() {
                    return (&rule.ladder, ladder);
                }
            }
        }
        (name, base)
    }

    /// The earlier episodes (that reached `min_stage`) and broken promises
    /// within the window, when they make the account a repeat offender.
    /// Only history from before `open` counts (the debt owed now, or the
    /// episode being classified).
    fn offences<'a>(&self, rule: &RepeatRule, base: &Ladder, state: &'a BillingState, now: DateTime<Utc>, open: Option<DateTime<Utc>>) -> Option<(Vec<Episode>, Vec<&'a Promise>)> {
        if !state.has_debt_history() && state.promises().is_empty() {
            return None;
        }
        let from = now.checked_sub_signed(delta(rule.window)).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let min = base
            .stages()
            .iter()
            .chain(self.default.stages())
            .find(|s| s.name() == rule.min_stage)
            .map_or(TimeDelta::MAX, |s| delta(s.after()));
        let episodes: Vec<Episode> = state
            .episodes()
            .into_iter()
            .filter(|e| e.end >= from && e.end - e.start >= min && open.is_none_or(|o| e.end < o))
            .collect();
        let broken: Vec<&Promise> = state
            .promises()
            .iter()
            // Promises of the debt owed now do not change its ladder.
            .filter(|p| p.until >= from && open.is_none_or(|o| p.at < o))
            .filter(|p| state.promise_status(p, now) == PromiseStatus::Broken)
            .collect();
        (episodes.len() >= rule.episodes as usize || !broken.is_empty()).then_some((episodes, broken))
    }

    /// Which ladder the account is on and why, in full.
    pub fn explain(&self, state: Option<&BillingState>, now: DateTime<Utc>) -> Choice {
        let (_, name, source) = self.pick(state, now);
        let mut choice = Choice {
            name: name.to_owned(),
            source: "default",
            why: "no admin choice, plan ladder or repeat-offender rule applies".into(),
            episodes: Vec::new(),
            broken_promises: Vec::new(),
            skipped: Vec::new(),
        };
        let Some(state) = state else { return choice };
        if let Some(c) = state.ladder_choice().filter(|c| self.ladder(&c.ladder).is_none()) {
            choice.skipped.push(format!("admin chose {:?}, which is not a configured ladder", c.ladder));
        }
        if let Some((sub, l)) = state.plan_ladder().filter(|(_, l)| self.ladder(l).is_none()) {
            choice.skipped.push(format!("subscription {sub} names {l:?}, which is not a configured ladder"));
        }
        let (base, ..) = self.base(state);
        match source {
            Source::Admin => {
                choice.source = "admin";
                let c = state.ladder_choice().expect("an admin source has a choice");
                choice.why = format!("set by {} at {}: {}", if c.by.is_empty() { "an admin" } else { &c.by }, c.at.to_rfc3339(), c.reason);
            }
            Source::Plan(sub) => {
                choice.source = "plan";
                choice.why = format!("subscription {sub}'s plan names it");
            }
            Source::Repeat => {
                choice.source = "repeat";
                let rule = self.repeat.as_deref().expect("a repeat source has a rule");
                let (episodes, broken) = self.offences(rule, base, state, now, state.past_due_since()).unwrap_or_default();
                choice.why = format!(
                    "repeat offender: {} earlier episode(s) reached {:?} and {} promise(s) were broken within {} days",
                    episodes.len(),
                    rule.min_stage,
                    broken.len(),
                    rule.window.as_secs() / 86_400
                );
                choice.broken_promises = broken.iter().map(|p| p.until).collect();
            }
            Source::Default => {}
        }
        choice.episodes = state.episodes().into_iter().map(|e| EpisodeView { start: e.start, end: e.end, reached: reached(base, &e) }).collect();
        choice
    }

    /// Whether a promise to pay by `until` may be recorded at `now`.
    pub fn may_promise(&self, state: Option<&BillingState>, until: DateTime<Utc>, force: bool, now: DateTime<Utc>) -> Result<(), PromiseRefused> {
        let Some(state) = state.filter(|s| s.past_due_since().is_some()) else {
            return Err(PromiseRefused::NothingOwed);
        };
        if until <= now {
            return Err(PromiseRefused::NotFuture);
        }
        if force {
            return Ok(());
        }
        let cooldown = delta(self.promise_cooldown);
        let broken = state
            .promises()
            .iter()
            .filter(|p| state.promise_status(p, now) == PromiseStatus::Broken)
            .map(|p| p.until)
            .max();
        match broken {
            Some(b) if b.checked_add_signed(cooldown).is_none_or(|ends| now < ends) => {
                Err(PromiseRefused::Cooldown { broken: b, ends: b.checked_add_signed(cooldown).unwrap_or(DateTime::<Utc>::MAX_UTC) })
            }
            _ => Ok(()),
        }
    }
}

/// The deepest stage of `ladder` an episode reached.
pub(crate) fn reached(ladder: &Ladder, e: &Episode) -> Option<String> {
    let lasted = (e.end - e.start).to_std().unwrap_or_default();
    ladder.stages().iter().rev().find(|s| s.after() <= lasted).map(|s| s.name().to_owned())
}
