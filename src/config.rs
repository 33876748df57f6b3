//! Configuration: `config/default.toml`, a file named by `PASTDUE_CONFIG`,
//! then `PASTDUE_<SECTION>__<KEY>` environment variables.
//!
//! Every key has a default (the embedded `config/default.toml`). Unknown
//! keys, bad durations and invalid ladders are refused with a message that
//! names the key, so a typo never silently falls back to a default.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::standing::{Action, Ladder, LadderError};

/// The built-in defaults, the same text as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The shortest admin token accepted at start-up, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The environment variable naming a config file that replaces the defaults.
pub const CONFIG_ENV: &str = "PASTDUE_CONFIG";
const ENV_PREFIX: &str = "PASTDUE_";

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
    /// `[ladder]`
    pub ladder: LadderConfig,
    /// `[page]`
    pub page: PageConfig,
    /// `[banner]`
    pub banner: BannerConfig,
    /// `[notify]`
    pub notify: NotifyConfig,
    /// `[stripe]`
    pub stripe: StripeConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[links]`
    pub links: LinksConfig,
}

/// `[links]`: signed pay links. `Debug` hides the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LinksConfig {
    /// `secret`: the HMAC-SHA256 key of link tokens (at least 32 bytes,
    /// the same on every instance; `""` = no pay links).
    pub secret: String,
    /// `ttl`: how long a link stays valid.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `base_url`: the app's public origin, for links in e-mails (`""` =
    /// the origin of `stripe.portal_return_url`).
    pub base_url: String,
}

impl std::fmt::Debug for LinksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinksConfig").field("secret", &redacted(&self.secret)).field("ttl", &self.ttl).field("base_url", &self.base_url).finish()
    }
}

/// `[server]`: where the demo listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `listen`: socket address.
    pub listen: String,
}

/// `[store]`: where billing state lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `url`: `memory://`, `redis://…`, `rediss://…` or `redis+cluster://…`.
    pub url: String,
    /// `prefix`: prefix of every key and of the invalidation channel.
    pub prefix: String,
    /// `read_timeout`: longest a gate read waits.
    #[serde(deserialize_with = "de_duration")]
    pub read_timeout: Duration,
    /// `write_timeout`: longest a write waits.
    #[serde(deserialize_with = "de_duration")]
    pub write_timeout: Duration,
    /// `dedupe_ttl`: how long processed event ids are remembered.
    #[serde(deserialize_with = "de_duration")]
    pub dedupe_ttl: Duration,
    /// `audit_max_len`: audit entries kept per account and globally.
    pub audit_max_len: usize,
}

/// What to do when a decision cannot be made from data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Let the request through (fail open).
    Allow,
    /// Answer 402 (fail closed).
    Block,
}

impl Policy {
    /// The matching action.
    pub fn action(self) -> Action {
        match self {
            Policy::Allow => Action::Allow,
            Policy::Block => Action::Block,
        }
    }
}

/// `[gate]`: the tower layer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GateConfig {
    /// `account_header`: header the default resolver reads.
    pub account_header: String,
    /// `unknown`: policy for accounts the store has never heard of.
    pub unknown: Policy,
    /// `on_store_error`: policy for uncached accounts while the store is down.
    pub on_store_error: Policy,
    /// `exempt`: glob patterns of paths that pass untouched.
    pub exempt: Vec<String>,
    /// `missing_account`: what a gated request with no account gets.
    pub missing_account: MissingAccount,
}

/// `gate.missing_account`: what a gated request that resolves no account
/// gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingAccount {
    /// Pass untouched (counted in `pastdue_no_account_total`).
    Pass,
    /// Answer `401` problem+json: for apps whose every gated route needs an
    /// account.
    Deny,
}

/// `[cache]`: the in-process cache in front of the store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `capacity`: most accounts held.
    pub capacity: usize,
    /// `ttl`: safety-net re-read interval.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `retry_after`: pause after a store error before trying again.
    #[serde(deserialize_with = "de_duration")]
    pub retry_after: Duration,
}

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
}

/// `[page]`: the please-pay page.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PageConfig {
    /// `product_name`: who is asking.
    pub product_name: String,
    /// `logo_url`: the operator's logo (`""` = none).
    pub logo_url: String,
    /// `support_email`: where to reach a human.
    pub support_email: String,
    /// `billing_portal_url`: fallback pay link (`""` = none).
    pub billing_portal_url: String,
    /// `template`: path of a template replacing the built-in page (`""` = built-in).
    pub template: String,
}

/// `[notify]`: stage notices. `Debug` hides the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyConfig {
    /// `webhook_url`: where notices are POSTed (`""` = off).
    pub webhook_url: String,
    /// `webhook_secret`: the signing secret.
    pub webhook_secret: String,
    /// `smtp_url`: where e-mail notices are sent (`""` = off).
    pub smtp_url: String,
    /// `from`: the sender of e-mail notices.
    pub from: String,
    /// `poll_interval`: how often time-caused stage entries are looked for.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// `lease`: how long a claimed notice is reserved.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// `max_attempts`: delivery attempts per notice and pass.
    pub max_attempts: u32,
    /// `timeout`: longest one delivery attempt (HTTP or SMTP) may take.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &redacted(&self.webhook_secret))
            .field("smtp_url", &self.smtp_url.split('@').next_back().unwrap_or(""))
            .field("from", &self.from)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `[banner]`: the optional reminder injected into the app's HTML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BannerConfig {
    /// `inject`: whether to inject it.
    pub inject: bool,
    /// `max_bytes`: largest response buffered for injection.
    pub max_bytes: usize,
    /// `template`: path of a template replacing the built-in banner.
    pub template: String,
}

/// `[stripe]`: webhooks, the Stripe API, pay links. `Debug` hides the
/// secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StripeConfig {
    /// `webhook_path`: where the webhook endpoint is mounted.
    pub webhook_path: String,
    /// `webhook_secret`: the endpoint's signing secret.
    pub webhook_secret: String,
    /// `webhook_secrets`: more accepted secrets (rotation).
    pub webhook_secrets: Vec<String>,
    /// `tolerance`: accepted clock difference of a signature, either way.
    #[serde(deserialize_with = "de_duration")]
    pub tolerance: Duration,
    /// `api_key`: secret API key (`""` = none).
    pub api_key: String,
    /// `api_base`: the Stripe API's base URL.
    pub api_base: String,
    /// `metadata_key`: metadata key naming the account.
    pub metadata_key: String,
    /// `unmapped`: what to do with a customer with no known account.
    pub unmapped: Unmapped,
    /// `sync_interval`: periodic reconciliation (`0s` = off).
    #[serde(deserialize_with = "de_duration")]
    pub sync_interval: Duration,
    /// `portal_return_url`: enables `/billing/pay` portal links when set.
    pub portal_return_url: String,
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "***" }
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("webhook_path", &self.webhook_path)
            .field("webhook_secret", &redacted(&self.webhook_secret))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("tolerance", &self.tolerance)
            .field("api_key", &redacted(&self.api_key))
            .field("api_base", &self.api_base)
            .field("metadata_key", &self.metadata_key)
            .field("unmapped", &self.unmapped)
            .field("sync_interval", &self.sync_interval)
            .field("portal_return_url", &self.portal_return_url)
            .finish()
    }
}

impl StripeConfig {
    /// Every accepted signing secret, non-empty ones only.
    pub fn secrets(&self) -> Vec<String> {
        std::iter::once(&self.webhook_secret)
            .chain(&self.webhook_secrets)
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }

    /// The API key, when one is configured.
    pub fn api_key(&self) -> Option<&str> {
        Some(self.api_key.as_str()).filter(|k| !k.is_empty())
    }
}

/// `[admin]`: the admin API. `Debug` hides the tokens.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `path`: where the admin API is mounted.
    pub path: String,
    /// `token`: a bearer token, named "admin" in the audit log.
    pub token: String,
    /// `tokens`: named bearer tokens.
    pub tokens: Vec<NamedToken>,
}

/// One `admin.tokens` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NamedToken {
    /// Who holds it (shown in the audit log).
    pub name: String,
    /// The secret.
    pub token: String,
}

impl NamedToken {
    /// A named token.
    pub fn new(name: impl Into<String>, token: impl Into<String>) -> Self {
        Self { name: name.into(), token: token.into() }
    }
}

impl std::fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedToken").field("name", &self.name).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("path", &self.path)
            .field("token", &redacted(&self.token))
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl AdminConfig {
    /// Refuses tokens shorter than [`MIN_ADMIN_TOKEN_LEN`] bytes, naming
    /// the key.
    pub fn check_tokens(&self) -> Result<(), ConfigError> {
        let tokens = std::iter::once(("admin.token".to_owned(), &self.token))
            .chain(self.tokens.iter().enumerate().map(|(i, t)| (format!("admin.tokens[{i}].token"), &t.token)));
        for (key, token) in tokens {
            if !token.is_empty() && token.len() < MIN_ADMIN_TOKEN_LEN {
                return Err(ConfigError::Key {
                    key,
                    message: format!("is {} bytes; admin tokens must be at least {MIN_ADMIN_TOKEN_LEN} bytes", token.len()),
                });
            }
        }
        Ok(())
    }

    /// Every configured token with its name (`admin.token` is "admin").
    pub fn all_tokens(&self) -> Vec<NamedToken> {
        let single = (!self.token.is_empty()).then(|| NamedToken::new("admin", self.token.clone()));
        single.into_iter().chain(self.tokens.iter().filter(|t| !t.token.is_empty()).cloned()).collect()
    }
}

/// What to do with a Stripe customer that maps to no account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Use the customer id (`cus_…`) as the account id.
    CustomerId,
    /// Acknowledge the event and drop it.
    Ignore,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        /// The file.
        path: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A key has a bad value, or is unknown.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted path of the key (`ladder.stages[1].after`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Loads the configuration the way the demo does: the built-in defaults,
    /// replaced by the file named in `PASTDUE_CONFIG` (if set), then
    /// `PASTDUE_<SECTION>__<KEY>` variables.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_ENV);
        Self::load_from(file.as_deref().map(Path::new), std::env::vars())
    }

    /// Like [`Config::load`], with the file and environment given.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::build(text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), env)
    }

    /// Parses a TOML text laid over the defaults (no environment).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::build(Some(("<string>", text)), std::iter::empty())
    }

    fn build(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let defaults = parse_table("config/default.toml (built in)", DEFAULT_TOML)?;
        let mut merged = defaults.clone();
        if let Some((path, text)) = file {
            merge(&mut merged, parse_table(path, text)?);
        }
        let mut env: Vec<_> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env.sort();
        for (var, value) in env {
            if var == CONFIG_ENV {
                continue;
            }
            apply_env(&mut merged, &defaults, &var, &value)?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(merged))
            .map_err(|e| ConfigError::Key {
                key: e.path().to_string(),
                message: e.into_inner().message().to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.ladder()?;
        crate::gate::ExemptPaths::new(&self.gate.exempt).map_err(|e| ConfigError::Key {
            key: "gate.exempt".into(),
            message: e.to_string(),
        })?;
        http::HeaderName::from_bytes(self.gate.account_header.as_bytes()).map_err(|_| {
            ConfigError::Key {
                key: "gate.account_header".into(),
                message: format!("{:?} is not a valid header name", self.gate.account_header),
            }
        })?;
        crate::store::StoreUrl::parse(&self.store.url).map_err(|message| ConfigError::Key {
            key: "store.url".into(),
            message,
        })?;
        if !self.stripe.webhook_path.starts_with('/') {
            return Err(ConfigError::Key {
                key: "stripe.webhook_path".into(),
                message: "must start with /".into(),
            });
        }
        if !(self.stripe.api_base.starts_with("http://") || self.stripe.api_base.starts_with("https://")) {
            return Err(ConfigError::Key {
                key: "stripe.api_base".into(),
                message: format!("{:?} is not an http(s) URL", self.stripe.api_base),
            });
        }
        if !self.admin.path.starts_with('/') || self.admin.path.ends_with('/') {
            return Err(ConfigError::Key {
                key: "admin.path".into(),
                message: "must start with / and not end with one".into(),
            });
        }
        if !self.links.secret.is_empty() && self.links.secret.len() < crate::links::MIN_SECRET_LEN {
            return Err(ConfigError::Key { key: "links.secret".into(), message: crate::links::WeakSecret.to_string() });
        }
        if self.notify.lease < Duration::from_millis(30) {
            return Err(ConfigError::Key { key: "notify.lease".into(), message: "must be at least 30ms".into() });
        }
        if self.links.ttl.is_zero() {
            return Err(ConfigError::Key { key: "links.ttl".into(), message: "must be longer than 0s".into() });
        }
        self.admin.check_tokens()?;
        if self.cache.capacity == 0 {
            return Err(ConfigError::Key {
                key: "cache.capacity".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The ladder described by `[ladder]` and `gate.unknown`.
    pub fn ladder(&self) -> Result<Ladder, ConfigError> {
        let stages = &self.ladder.stages;
        Ladder::new(stages.iter().map(|s| (s.name.as_str(), s.after, s.action)))
            .map(|l| {
                l.with_canceled_action(self.ladder.canceled_action)
                    .with_unknown_action(self.gate.unknown.action())
            })
            .map_err(|e| {
                let culprit = match &e {
                    LadderError::BadName(n)
                    | LadderError::Duplicate(n)
                    | LadderError::Reserved(n)
                    | LadderError::AllowInLadder(n)
                    | LadderError::Unsorted(n) => stages.iter().rposition(|s| &s.name == n),
                    LadderError::Empty => None,
                };
                let field = match &e {
                    LadderError::Unsorted(_) => ".after",
                    LadderError::AllowInLadder(_) => ".action",
                    LadderError::Empty => "",
                    _ => ".name",
                };
                ConfigError::Key {
                    key: match culprit {
                        Some(i) => format!("ladder.stages[{i}]{field}"),
                        None => "ladder.stages".into(),
                    },
                    message: e.to_string(),
                }
            })
    }
}

impl Config {
    /// The signer of pay links, from `[links]`, when the billing portal is
    /// configured (`stripe.portal_return_url`); `Ok(None)` otherwise. A
    /// portal without `links.secret` is refused, naming the key.
    pub fn pay_link_signer(&self) -> Result<Option<crate::links::LinkSigner>, ConfigError> {
        if self.stripe.portal_return_url.is_empty() {
            return Ok(None);
        }
        if self.links.secret.is_empty() {
            return Err(ConfigError::Key {
                key: "links.secret".into(),
                message: "is needed for pay links (stripe.portal_return_url is set); set a random secret of at least 32 bytes, shared by every instance (PASTDUE_LINKS__SECRET=$(openssl rand -hex 32))".into(),
            });
        }
        crate::links::LinkSigner::new(self.links.secret.as_bytes(), self.links.ttl)
            .map(Some)
            .map_err(|e| ConfigError::Key { key: "links.secret".into(), message: e.to_string() })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::build(None, std::iter::empty()).expect("the built-in config/default.toml is valid")
    }
}

fn parse_table(path: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|source| ConfigError::Toml {
        path: path.into(),
        source: Box::new(source),
    })
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies `PASTDUE_SECTION__KEY=value`. The value's type is the type of the
/// default at that key: strings stay strings (so a token `"0123"` is not a
/// number), numbers, booleans and arrays are parsed as TOML.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    var: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env { var: var.into(), message };
    let path: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    if path.len() < 2 || path.iter().any(String::is_empty) {
        return Err(err(format!(
            "not a setting; use {ENV_PREFIX}<SECTION>__<KEY> (or {CONFIG_ENV} for a file)"
        )));
    }
    let dotted = path.join(".");
    let mut default = Some(defaults);
    let mut target = table;
    for (i, part) in path.iter().enumerate() {
        let last = i == path.len() - 1;
        if last {
            let kind = default.and_then(|d| d.get(part));
            let value = match kind {
                Some(toml::Value::String(_)) | None => toml::Value::String(raw.to_owned()),
                Some(_) => {
                    let doc: toml::Table = format!("v = {raw}")
                        .parse()
                        .map_err(|e| err(format!("`{dotted}` needs a TOML value: {e}")))?;
                    doc.get("v").cloned().unwrap_or(toml::Value::String(raw.to_owned()))
                }
            };
            target.insert(part.clone(), value);
            return Ok(());
        }
        default = default.and_then(|d| d.get(part)).and_then(toml::Value::as_table);
        let entry = target
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        target = entry
            .as_table_mut()
            .ok_or_else(|| err(format!("`{}` is not a section", path[..=i].join("."))))?;
    }
    Ok(())
}

/// Parses `"50ms"`, `"30s"`, `"90m"`, `"12h"`, `"14d"`, `"2w"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{text:?} is not a duration; write a whole number and a unit, like \"50ms\", \"30s\", \"90m\", \"12h\", \"14d\"");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs).ok_or_else(bad);
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3_600),
        "d" => secs(86_400),
        "w" => secs(604_800),
        _ => Err(bad()),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}
