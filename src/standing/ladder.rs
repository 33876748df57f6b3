//! The ladder: what the gate does ([`Action`]), its rungs ([`Stage`],
//! interned for the life of the process) and the grace ladder with the
//! stages off it ([`Ladder`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

/// What the gate does with a request in a given stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Pass, nothing to say.
    Allow,
    /// Pass; the app may show a friendly reminder.
    Notice,
    /// Pass; the app should show a firm warning.
    Warn,
    /// Safe methods (GET, HEAD, OPTIONS) pass; writes get the 402.
    ReadOnly,
    /// Every request gets the 402 page.
    Block,
}

impl Action {
    /// The config spelling (`"read_only"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Notice => "notice",
            Action::Warn => "warn",
            Action::ReadOnly => "read_only",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stage names the ladder reserves for states outside the debt ladder.
pub const RESERVED_STAGES: [&str; 4] = [ACTIVE, CANCELED, UNKNOWN, UNAVAILABLE];
pub(super) const ACTIVE: &str = "active";
const CANCELED: &str = "canceled";
const UNKNOWN: &str = "unknown";
const SUSPENDED: &str = "suspended";
pub(super) const UNAVAILABLE: &str = "unavailable";

/// One rung of the ladder: a name, an offset from `past_due_since`, an
/// action. `Copy`: a stage is a reference to a definition interned for the
/// life of the process, so handing one to every request writes no shared
/// memory (no reference count).
#[derive(Clone, Copy)]
pub struct Stage(&'static StageDef);

#[derive(PartialEq, Eq, Hash)]
struct StageDef {
    name: Box<str>,
    after: Duration,
    action: Action,
    header: HeaderValue,
    /// The features closed in this stage: its own `closes` and those of
    /// every stage before it on its ladder (sorted).
    closes: Box<[Box<str>]>,
}

/// Whether `name` is a valid stage or feature name: `[a-z0-9_-]{1,64}`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Stage {
    pub(super) fn new(name: &str, after: Duration, action: Action) -> Result<Self, LadderError> {
        Self::closing(name, after, action, Box::default())
    }

    fn closing(name: &str, after: Duration, action: Action, closes: Box<[Box<str>]>) -> Result<Self, LadderError> {
        if !is_valid_name(name) {
            return Err(LadderError::BadName(name.to_owned()));
        }
        let header = HeaderValue::from_str(name).map_err(|_| LadderError::BadName(name.into()))?;
        Ok(Self(intern(StageDef { name: name.into(), after, action, header, closes })))
    }

    /// Whether a route tagged with `feature` is closed in this stage: the
    /// stage (or one before it on the ladder) lists it in `closes`. A
    /// `block` stage closes every gated route anyway.
    pub fn closes(&self, feature: &str) -> bool {
        self.0.closes.binary_search_by(|f| (**f).cmp(feature)).is_ok()
    }

    /// The features this stage closes (its own `closes` and those of the
    /// stages before it), sorted.
    pub fn closed_features(&self) -> impl Iterator<Item = &str> {
        self.0.closes.iter().map(|f| &**f)
    }

    /// Whether this stage closes any feature.
    pub fn closes_any(&self) -> bool {
        !self.0.closes.is_empty()
    }

    /// The stage's name, e.g. `"warning"`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// How long after `past_due_since` the stage starts.
    pub fn after(&self) -> Duration {
        self.0.after
    }

    /// What the gate does in this stage.
    pub fn action(&self) -> Action {
        self.0.action
    }

    /// Whether this is the good-standing stage `active` (no `Billing-Stage`
    /// header is sent for it).
    pub fn is_active(&self) -> bool {
        &*self.0.name == ACTIVE
    }

    /// The name as a ready-made `Billing-Stage` header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0.header
    }
}

/// The one `'static` copy of `def`. Ladders are configuration, so the set
/// of distinct stages a process ever builds is small; interning keeps a
/// process that rebuilds its ladders (tests, reloads) from growing.
fn intern(def: StageDef) -> &'static StageDef {
    static STAGES: std::sync::Mutex<Option<std::collections::HashSet<&'static StageDef>>> = std::sync::Mutex::new(None);
    let mut stages = STAGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stages = stages.get_or_insert_with(Default::default);
    if let Some(known) = stages.get(&def) {
        return known;
    }
    let leaked: &'static StageDef = Box::leak(Box::new(def));
    stages.insert(leaked);
    leaked
}

impl Stage {
    /// Whether `self` and `other` are the same interned definition (a
    /// pointer comparison).
    pub(crate) fn same(self, other: Stage) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl PartialEq for Stage {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.action() == other.action() && self.0.closes == other.0.closes
    }
}
impl Eq for Stage {}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.action())
    }
}

/// Why a ladder was refused. The message names the offending stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LadderError {
    /// No stages at all.
    #[error("the ladder has no stages")]
    Empty,
    /// A name that is not `[a-z0-9_-]{1,64}`.
    #[error("stage name {0:?} must be 1-64 characters of a-z, 0-9, _ or -")]
    BadName(String),
    /// A name used twice.
    #[error("stage name {0:?} is used twice")]
    Duplicate(String),
    /// A name reserved for states outside the ladder.
    #[error("stage name {0:?} is reserved (active, canceled, unknown and unavailable are not ladder stages)")]
    Reserved(String),
    /// Offsets not strictly increasing.
    #[error("stage {0:?} must start later than the stage before it (offsets must increase)")]
    Unsorted(String),
    /// A ladder stage whose action is `allow` would never be noticed.
    #[error("stage {0:?} has action \"allow\"; ladder stages must notice, warn, read_only or block")]
    AllowInLadder(String),
    /// A feature name in `closes` that is not `[a-z0-9_-]{1,64}`, or a
    /// `closes` for a stage the ladder does not have.
    #[error("stage {0:?}: {1}")]
    BadCloses(String, String),
}

/// The grace ladder plus the policies for states off the ladder.
#[derive(Clone, Debug)]
pub struct Ladder {
    pub(super) stages: Arc<[Stage]>,
    pub(super) active: Stage,
    pub(super) canceled: Stage,
    pub(super) unknown: Stage,
    pub(super) suspended: Stage,
}

impl Ladder {
    /// Builds a ladder from `(name, after, action)` rungs in order.
    pub fn new<'a>(
        stages: impl IntoIterator<Item = (&'a str, Duration, Action)>,
    ) -> Result<Self, LadderError> {
        let mut built: Vec<Stage> = Vec::new();
        for (name, after, action) in stages {
            if RESERVED_STAGES.contains(&name) {
                return Err(LadderError::Reserved(name.into()));
            }
            let stage = Stage::new(name, after, action)?;
            if built.iter().any(|s| s.name() == name) {
                return Err(LadderError::Duplicate(name.into()));
            }
            if built.last().is_some_and(|prev| prev.after() >= after) {
                return Err(LadderError::Unsorted(name.into()));
            }
            if action == Action::Allow {
                return Err(LadderError::AllowInLadder(name.into()));
            }
            built.push(stage);
        }
        if built.is_empty() {
            return Err(LadderError::Empty);
        }
        let suspended = built
            .iter()
            .rev()
            .find(|s| s.action() == Action::Block)
            .cloned()
            .unwrap_or(Stage::new(SUSPENDED, Duration::ZERO, Action::Block)?);
        Ok(Self {
            stages: built.into(),
            active: Stage::new(ACTIVE, Duration::ZERO, Action::Allow)?,
            canceled: Stage::new(CANCELED, Duration::ZERO, Action::Block)?,
            unknown: Stage::new(ACTIVE, Duration::ZERO, Action::Allow)?,
            suspended,
        })
    }

    /// Lets `stage` (and every later stage) close `features`: routes tagged
    /// with one of them answer the 402 page from that stage on, while the
    /// rest of the app stays open until a `block` stage.
    pub fn closing<'a>(mut self, stage: &str, features: impl IntoIterator<Item = &'a str>) -> Result<Self, LadderError> {
        let Some(at) = self.stages.iter().position(|s| s.name() == stage) else {
            return Err(LadderError::BadCloses(stage.into(), "no such stage on this ladder".into()));
        };
        let features: Vec<&str> = features.into_iter().collect();
        if let Some(bad) = features.iter().find(|f| !is_valid_name(f)) {
            return Err(LadderError::BadCloses(stage.into(), format!("feature name {bad:?} must be 1-64 characters of a-z, 0-9, _ or -")));
        }
        let mut stages: Vec<Stage> = self.stages.to_vec();
        for s in stages.iter_mut().skip(at) {
            let mut closes: Vec<Box<str>> = s.0.closes.to_vec();
            closes.extend(features.iter().map(|f| Box::<str>::from(*f)));
            closes.sort();
            closes.dedup();
            let rebuilt = Stage::closing(s.name(), s.after(), s.action(), closes.into())?;
            if self.suspended.same(*s) {
                self.suspended = rebuilt;
            }
            *s = rebuilt;
        }
        self.stages = stages.into();
        Ok(self)
    }

    /// What a canceled (or paused, or expired) subscription with nothing
    /// owed gets. Default `block`.
    pub fn with_canceled_action(mut self, action: Action) -> Self {
        self.canceled = Stage::new(CANCELED, Duration::ZERO, action).expect("reserved name is valid");
        self
    }

    /// What an account the store has never heard of gets: `allow` (the
    /// default; it is reported as stage `active`) or `block` (reported as
    /// stage `unknown`).
    pub fn with_unknown_action(mut self, action: Action) -> Self {
        let name = if action == Action::Allow { ACTIVE } else { UNKNOWN };
        self.unknown = Stage::new(name, Duration::ZERO, action).expect("reserved name is valid");
        self
    }

    /// The default ladder: notice at 0 days, warning at 14, suspended at 17.
    pub fn standard() -> Self {
        const DAY: u64 = 86_400;
        Self::new([
            ("notice", Duration::ZERO, Action::Notice),
            ("warning", Duration::from_secs(14 * DAY), Action::Warn),
            ("suspended", Duration::from_secs(17 * DAY), Action::Block),
        ])
        .expect("the standard ladder is valid")
    }

    /// The ladder's stages in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage for good standing.
    pub fn active(&self) -> &Stage {
        &self.active
    }

    /// The stage for an ended subscription.
    pub fn canceled(&self) -> &Stage {
        &self.canceled
    }

    /// The stage for an account the store does not know.
    pub fn unknown(&self) -> &Stage {
        &self.unknown
    }

    /// The stage an admin `block` override shows (the ladder's last blocking
    /// stage, else `suspended`).
    pub fn override_block_stage(&self) -> &Stage {
        &self.suspended
    }

    /// Looks a stage up by name (ladder stages and the reserved ones).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .chain([&self.active, &self.canceled, &self.unknown, &self.suspended])
            .find(|s| s.name() == name)
    }
}

/// When `stage` starts for a debt that started at `start`. Checked: a
/// stored time near the end of chrono's range must not panic a request;
/// such a stage is simply never reached.
pub(super) fn starts(start: DateTime<Utc>, stage: &Stage) -> DateTime<Utc> {
    TimeDelta::from_std(stage.after())
        .ok()
        .and_then(|d| start.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Default for Ladder {
    fn default() -> Self {
        Self::standard()
    }
}
