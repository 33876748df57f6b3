//! `[ladder]`, `[ladders.<name>]` and `[policy]`: the ladders and the
//! rules that choose among them.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::de_duration;
use crate::standing::Action;

/// `[ladder]`: the grace ladder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LadderConfig {
    /// `canceled_action`: what an ended subscription gets.
    pub canceled_action: Action,
    /// `[[ladder.stages]]`
    pub stages: Vec<StageConfig>,
}

/// One `[[ladder.stages]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StageConfig {
    /// `name`
    pub name: String,
    /// `after`: offset from `past_due_since`.
    #[serde(deserialize_with = "de_duration")]
    pub after: Duration,
    /// `action`
    pub action: Action,
    /// `closes`: features closed from this stage on (routes tagged with
    /// [`feature`](crate::gate::feature)).
    #[serde(default)]
    pub closes: Vec<String>,
}

/// `[ladders.<name>]`: a named ladder, with the same stage syntax as
/// `[ladder]` (whose `canceled_action` it shares).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NamedLadderConfig {
    /// `[[ladders.<name>.stages]]`
    pub stages: Vec<StageConfig>,
}

/// `[policy]`: promises to pay and repeat offenders.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// `promise_cooldown`: after a broken promise, how long further
    /// promises are refused (unless forced).
    #[serde(deserialize_with = "de_duration")]
    pub promise_cooldown: Duration,
    /// `[policy.repeat]`
    pub repeat: RepeatConfig,
}

/// `[policy.repeat]`: the repeat-offender rule (off while `ladder` is empty).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RepeatConfig {
    /// `episodes`: earlier debt episodes that make a repeat offender.
    pub episodes: u32,
    /// `min_stage`: the stage an episode must have reached to count.
    pub min_stage: String,
    /// `window`: how far back episodes (and broken promises) count.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
    /// `ladder`: the ladder repeat offenders get (`""` = rule off).
    pub ladder: String,
}

impl Default for LadderConfig {
    /// The standard ladder: `notice` at once, `warning` after 14 days,
    /// `suspended` after 17; an ended subscription is blocked.
    fn default() -> Self {
        let stage = |name: &str, days: u64, action| StageConfig { name: name.into(), after: Duration::from_secs(days * 86_400), action, closes: Vec::new() };
        Self {
            canceled_action: Action::Block,
            stages: vec![stage("notice", 0, Action::Notice), stage("warning", 14, Action::Warn), stage("suspended", 17, Action::Block)],
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { promise_cooldown: Duration::from_secs(180 * 86_400), repeat: RepeatConfig::default() }
    }
}

impl Default for RepeatConfig {
    /// Off (`ladder = ""`); when a ladder is named: two earlier episodes
    /// that reached `warning` within a year.
    fn default() -> Self {
        Self { episodes: 2, min_stage: "warning".into(), window: Duration::from_secs(365 * 86_400), ladder: String::new() }
    }
}
