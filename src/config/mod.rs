//! Configuration at the edge: the aggregate [`Config`] of every
//! component's settings, loaded from `config/default.toml`, a file named by
//! `PASTDUE_CONFIG`, then `PASTDUE_<SECTION>__<KEY>` environment variables.
//!
//! Every key has a default. Unknown keys, bad durations and invalid ladders
//! are refused with a message that names the key, so a typo never silently
//! falls back to a default.
//!
//! This is the one module that reads TOML. Each section's type lives with
//! its component (`[gate]` is [`crate::gate::GateConfig`], `[stripe]` is
//! [`crate::stripe::StripeConfig`], …) and is re-exported here; each has a
//! `Default` that is a plain struct literal, and [`Config::default`] is
//! theirs (a test holds `config/default.toml` to the same values).


use serde::Deserialize;

#[doc(no_inline)]
pub use crate::admin::{AdminConfig, NamedToken, MIN_ADMIN_TOKEN_LEN};
#[doc(no_inline)]
pub use crate::cache::CacheConfig;
#[doc(no_inline)]
pub use crate::check::CheckConfig;
#[doc(no_inline)]
pub use crate::gate::{BannerConfig, Fallback, GateConfig, MissingAccount, PageConfig, BEFORE_DUE_DEFAULT};
#[doc(no_inline)]
pub use crate::links::LinksConfig;
#[doc(no_inline)]
pub use crate::notify::{BeforeDue, ContactKeys, NotifyConfig, NotifyRoute, RemindersConfig};
#[doc(no_inline)]
pub use crate::policy::{LadderConfig, NamedLadderConfig, PolicyConfig, RepeatConfig, StageConfig};
#[doc(no_inline)]
pub use crate::settings::{parse_duration, BadDuration, ConfigError, Secret};
#[doc(no_inline)]
pub use crate::store::StoreConfig;
#[doc(no_inline)]
pub use crate::stripe::{StripeConfig, Unmapped};
pub use crate::events::EventsConfig;
pub use crate::paddle::PaddleConfig;
use crate::standing::{Ladder, LadderError};

#[cfg(feature = "config")]
mod load;
#[cfg(feature = "config")]
pub use self::load::{CONFIG_ENV, DEFAULT_TOML};


/// Everything pastdue reads from configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[gate]`
    pub gate: GateConfig,
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[ladder]`: the `default` ladder.
    pub ladder: LadderConfig,
    /// `[ladders.<name>]`: more ladders, chosen per account.
    pub ladders: std::collections::BTreeMap<String, NamedLadderConfig>,
    /// `[policy]`
    pub policy: PolicyConfig,
    /// `[page]`
    pub page: PageConfig,
    /// `[banner]`
    pub banner: BannerConfig,
    /// `[notify]`
    pub notify: NotifyConfig,
    /// `[stripe]`
    pub stripe: StripeConfig,
    /// `[paddle]`: Paddle Billing.
    pub paddle: PaddleConfig,
    /// `[events]`: in-house billing through Standard Webhooks.
    pub events: EventsConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[links]`
    pub links: LinksConfig,
    /// `[check]`
    pub check: CheckConfig,
    /// `[reminders]`
    pub reminders: RemindersConfig,
}

/// `[server]`: where the demo and `pastdue serve` listen.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `listen`: socket address.
    pub listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:3000".into() }
    }
}

impl Default for Config {
    /// Every component's defaults — the values `config/default.toml`
    /// documents (the config tests hold the two to each other).
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            gate: GateConfig::default(),
            cache: CacheConfig::default(),
            ladder: LadderConfig::default(),
            ladders: std::collections::BTreeMap::new(),
            policy: PolicyConfig::default(),
            page: PageConfig::default(),
            banner: BannerConfig::default(),
            notify: NotifyConfig::default(),
            stripe: StripeConfig::default(),
            paddle: PaddleConfig::default(),
            events: EventsConfig::default(),
            admin: AdminConfig::default(),
            links: LinksConfig::default(),
            check: CheckConfig::default(),
            reminders: RemindersConfig::default(),
        }
    }
}

impl Config {
    /// The ladder described by `[ladder]` and `gate.unknown` (the
    /// `default` one).
    pub fn ladder(&self) -> Result<Ladder, ConfigError> {
        self.build_ladder("ladder", &self.ladder.stages)
    }

    /// Every ladder and the rules that choose among them: `[ladder]`,
    /// `[ladders.<name>]`, `[policy]`.
    pub fn policy(&self) -> Result<crate::policy::Policy, ConfigError> {
        use crate::policy::{Policy, PolicyError, RepeatRule};
        let mut policy = Policy::new(self.ladder()?).with_promise_cooldown(self.policy.promise_cooldown);
        for (name, ladder) in &self.ladders {
            let key = format!("ladders.{name}");
            let built = self.build_ladder(&key, &ladder.stages)?;
            policy = policy.with_ladder(name, built).map_err(|e| ConfigError::invalid(key, e))?;
        }
        let r = &self.policy.repeat;
        if !r.ladder.is_empty() {
            let rule = RepeatRule { episodes: r.episodes, min_stage: r.min_stage.clone(), window: r.window, ladder: r.ladder.clone() };
            policy = policy.with_repeat(rule).map_err(|e| {
                let field = match e {
                    PolicyError::UnknownStage(_) => "min_stage",
                    PolicyError::NoEpisodes => "episodes",
                    _ => "ladder",
                };
                ConfigError::invalid(format!("policy.repeat.{field}"), e)
            })?;
        }
        for (lookup_key, ladder) in &self.stripe.ladder_by_lookup_key {
            if policy.ladder(ladder).is_none() {
                return Err(ConfigError::key(format!("stripe.ladder_by_lookup_key.{lookup_key}"), format!("{ladder:?} is not a ladder (known: {})", policy.names().collect::<Vec<_>>().join(", "))));
            }
        }
        Ok(policy)
    }

    fn build_ladder(&self, prefix: &str, stages: &[StageConfig]) -> Result<Ladder, ConfigError> {
        let culprit = |e: LadderError| {
            let culprit = match &e {
                LadderError::BadName(n)
                | LadderError::Duplicate(n)
                | LadderError::Reserved(n)
                | LadderError::AllowInLadder(n)
                | LadderError::Unsorted(n)
                | LadderError::BadCloses(n, _) => stages.iter().rposition(|s| &s.name == n),
                LadderError::Empty => None,
            };
            let field = match &e {
                LadderError::Unsorted(_) => ".after",
                LadderError::AllowInLadder(_) => ".action",
                LadderError::BadCloses(..) => ".closes",
                LadderError::Empty => "",
                _ => ".name",
            };
            let key = match culprit {
                Some(i) => format!("{prefix}.stages[{i}]{field}"),
                None => format!("{prefix}.stages"),
            };
            ConfigError::invalid(key, e)
        };
        let mut ladder = Ladder::new(stages.iter().map(|s| (s.name.as_str(), s.after, s.action)))
            .map_err(culprit)?
            .with_canceled_action(self.ladder.canceled_action)
            .with_unknown_action(self.gate.unknown.action());
        for s in stages.iter().filter(|s| !s.closes.is_empty()) {
            ladder = ladder.closing(&s.name, s.closes.iter().map(String::as_str)).map_err(culprit)?;
        }
        Ok(ladder)
    }
}

impl crate::gate::GateLayer {
    /// A gate configured by `config`: `[gate]`, `[cache]`, `[page]`,
    /// `[banner]`, and the ladders and policy (`[ladder]`, `[ladders.*]`,
    /// `[policy]`).
    pub fn from_config(config: &Config, store: std::sync::Arc<dyn crate::store::Store>) -> Result<Self, ConfigError> {
        let settings = (&config.gate, &config.cache, &config.page, &config.banner);
        Self::assemble(store, settings, config.policy()?)
    }
}
