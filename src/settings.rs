//! Typed settings: the configuration as data, one section per component.
//!
//! These are plain serde types with no I/O; each component reads its own
//! section. Loading them (the embedded defaults, a file, environment
//! variables, validation) is [`crate::config`]'s job, at the edge.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::standing::{Action, Ladder, LadderError};

/// The built-in defaults, the same text as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The shortest admin token accepted at start-up, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// A secret from configuration (a signing secret, an API key, a token, a
/// URL with a password): used, compared, never printed. `Debug` shows
/// `"***"` (or `""` when unset).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is unset (`""`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

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
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[links]`
    pub links: LinksConfig,
    /// `[check]`
    pub check: CheckConfig,
    /// `[reminders]`
    pub reminders: RemindersConfig,
}

/// `[reminders]`: reminders before a payment is due.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RemindersConfig {
    /// `[[reminders.before_due]]`: one reminder per due per entry.
    pub before_due: Vec<BeforeDue>,
}

/// One `[[reminders.before_due]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BeforeDue {
    /// `before`: how long before the due date.
    #[serde(deserialize_with = "de_duration")]
    pub before: Duration,
    /// `channels`: `email`, `webhook` (empty = every configured channel).
    #[serde(default)]
    pub channels: Vec<String>,
}

/// `[check]`: the server's forward-auth endpoints (`pastdue serve`), which
/// a reverse proxy asks whether a request may pass. `Debug` hides the JWT
/// key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckConfig {
    /// `path`: the check endpoint (`GET`).
    pub path: String,
    /// `page_path`: the endpoint answering the `402` page itself, for
    /// nginx's `error_page` (`GET`).
    pub page_path: String,
    /// `account_header`: the header the proxy's own authentication sets to
    /// the account id (ignored when `jwt_algorithm` is set).
    pub account_header: String,
    /// `deny_status`: `402`, or `403` for nginx's `auth_request`.
    pub deny_status: u16,
    /// `jwt_algorithm`: `""` (off), `HS256`, `RS256` or `ES256`.
    pub jwt_algorithm: String,
    /// `jwt_key`: the HS256 secret, or the path of an RS256/ES256 PEM
    /// public key.
    pub jwt_key: Secret,
    /// `jwt_jwks`: the path of a local JWKS file (RS256/ES256), instead of
    /// `jwt_key`.
    pub jwt_jwks: String,
    /// `jwt_issuer`: the required `iss`.
    pub jwt_issuer: String,
    /// `jwt_audience`: the required `aud`.
    pub jwt_audience: String,
    /// `jwt_claim`: the claim holding the account id.
    pub jwt_claim: String,
    /// `jwt_cookie`: a cookie carrying the token when there is no
    /// `Authorization: Bearer` (`""` = none).
    pub jwt_cookie: String,
    /// `exempt`: globs of the proxied app's own paths that always pass
    /// (`gate.exempt` describes pastdue's routes, not the app's).
    pub exempt: Vec<String>,
}

/// `[links]`: signed pay links. `Debug` hides the secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LinksConfig {
    /// `secret`: the HMAC-SHA256 key of link tokens (at least 32 bytes,
    /// the same on every instance; `""` = no pay links).
    pub secret: Secret,
    /// `ttl`: how long a link stays valid.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `base_url`: the app's public origin, for links in e-mails (`""` =
    /// the origin of `stripe.portal_return_url`).
    pub base_url: String,
    /// `return_to`: where `/billing/return` redirects after verifying.
    pub return_to: String,
}


/// `[server]`: where the demo and `pastdue serve` listen.
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

/// What the gate does when it cannot decide from data (`gate.unknown`,
/// `gate.on_store_error`): let the request through, or answer `402`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Let the request through (fail open).
    Allow,
    /// Answer 402 (fail closed).
    Block,
}

impl Fallback {
    /// The matching action.
    pub fn action(self) -> Action {
        match self {
            Fallback::Allow => Action::Allow,
            Fallback::Block => Action::Block,
        }
    }
}

/// `[gate]`: the tower layer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GateConfig {
    /// `account_header`: header the default resolver reads (checked once,
    /// when the configuration is read).
    #[serde(deserialize_with = "de_header_name")]
    pub account_header: http::HeaderName,
    /// `unknown`: policy for accounts the store has never heard of.
    pub unknown: Fallback,
    /// `on_store_error`: policy for uncached accounts while the store is down.
    pub on_store_error: Fallback,
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyConfig {
    /// `webhook_url`: where notices are POSTed (`""` = off).
    pub webhook_url: String,
    /// `webhook_secret`: the signing secret.
    pub webhook_secret: Secret,
    /// `smtp_url`: where e-mail notices are sent (`""` = off).
    pub smtp_url: Secret,
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
    /// `[notify.metadata]`: Stripe customer metadata keys naming contacts.
    pub metadata: ContactKeys,
    /// `[[notify.routes]]`: which roles hear which stage (empty = the
    /// defaults: billing always, the account manager from `warn` or 7 days
    /// late, the accountant and the account manager on `block`).
    pub routes: Vec<NotifyRoute>,
}

impl CheckConfig {
    /// The `[check]` settings that must parse: both paths start with `/`,
    /// the deny status (`402` or `403`) and the account header; or the key
    /// that is wrong. Loading a config and building the check endpoints
    /// both ask this.
    pub(crate) fn checked(&self) -> Result<(http::StatusCode, http::HeaderName), ConfigError> {
        let key = |key: &str, message: String| ConfigError::Key { key: format!("check.{key}"), message };
        for (name, path) in [("path", &self.path), ("page_path", &self.page_path)] {
            if !path.starts_with('/') {
                return Err(key(name, "must start with /".into()));
            }
        }
        let deny_status = match self.deny_status {
            402 => http::StatusCode::PAYMENT_REQUIRED,
            403 => http::StatusCode::FORBIDDEN,
            other => return Err(key("deny_status", format!("{other} is neither 402 nor 403"))),
        };
        let header = http::HeaderName::try_from(self.account_header.as_str())
            .map_err(|_| key("account_header", format!("{:?} is not a header name", self.account_header)))?;
        Ok((deny_status, header))
    }
}

/// One `[[notify.routes]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyRoute {
    /// `stage`: a stage name of the ladder in use.
    pub stage: String,
    /// `roles`: `billing`, `accountant`, `account_manager`.
    pub roles: Vec<String>,
}

/// `[notify.metadata]`: the Stripe customer metadata keys whose values are
/// an account's contacts (`""` = not read). A contact an admin set wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ContactKeys {
    /// `accountant`: the key holding the accountant's address.
    pub accountant: String,
    /// `account_manager`: the key holding the account manager's address.
    pub account_manager: String,
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
    /// `before_due`: also show the banner to accounts in good standing
    /// with an invoice due within this window ("Your invoice of €49.00 is
    /// due on 3 December"); `false` or `"0s"` = off (default), `true` =
    /// 3 days, or a duration such as `"7d"`.
    #[serde(deserialize_with = "de_window")]
    pub before_due: Option<Duration>,
}

/// The before-due window `banner.before_due = true` means: the default
/// `[[reminders.before_due]]` lead, so the banner appears with the e-mail.
pub const BEFORE_DUE_DEFAULT: Duration = Duration::from_secs(3 * 86_400);

/// `[stripe]`: webhooks, the Stripe API, pay links. `Debug` hides the
/// secrets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StripeConfig {
    /// `webhook_path`: where the webhook endpoint is mounted.
    pub webhook_path: String,
    /// `webhook_secret`: the endpoint's signing secret.
    pub webhook_secret: Secret,
    /// `webhook_secrets`: more accepted secrets (rotation).
    pub webhook_secrets: Vec<Secret>,
    /// `tolerance`: accepted clock difference of a signature, either way.
    #[serde(deserialize_with = "de_duration")]
    pub tolerance: Duration,
    /// `api_key`: secret API key (`""` = none).
    pub api_key: Secret,
    /// `api_base`: the Stripe API's base URL.
    pub api_base: String,
    /// `metadata_key`: metadata key naming the account.
    pub metadata_key: String,
    /// `ladder_metadata_key`: price or product metadata key naming the
    /// ladder for the subscription's customer.
    pub ladder_metadata_key: String,
    /// `[stripe.ladder_by_lookup_key]`: price lookup key → ladder name.
    pub ladder_by_lookup_key: std::collections::BTreeMap<String, String>,
    /// `unmapped`: what to do with a customer with no known account.
    pub unmapped: Unmapped,
    /// `sync_interval`: periodic reconciliation (`0s` = off).
    #[serde(deserialize_with = "de_duration")]
    pub sync_interval: Duration,
    /// `portal_return_url`: enables `/billing/pay` portal links when set.
    pub portal_return_url: String,
    /// `verify_timeout`: longest a request about to get a debt `402` waits
    /// for Stripe to say whether the debt still stands.
    #[serde(deserialize_with = "de_duration")]
    pub verify_timeout: Duration,
    /// `verify_interval`: at most one verification per account this often,
    /// across instances.
    #[serde(deserialize_with = "de_duration")]
    pub verify_interval: Duration,
    /// `verify_rate`: most verifications per second per instance.
    pub verify_rate: u32,
    /// `verify_sweep`: how often one instance verifies every account in
    /// debt against Stripe (`0s` = off; needs `api_key`).
    #[serde(deserialize_with = "de_duration")]
    pub verify_sweep: Duration,
}



impl StripeConfig {
    /// Every accepted signing secret, non-empty ones only.
    pub fn secrets(&self) -> Vec<String> {
        std::iter::once(&self.webhook_secret)
            .chain(&self.webhook_secrets)
            .filter(|s| !s.is_empty())
            .map(|s| s.expose().to_owned())
            .collect()
    }

    /// The API key, when one is configured.
    pub fn api_key(&self) -> Option<&str> {
        Some(self.api_key.expose()).filter(|k| !k.is_empty())
    }
}

/// `[admin]`: the admin API. `Debug` hides the tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `path`: where the admin API is mounted.
    pub path: String,
    /// `token`: a bearer token, named "admin" in the audit log.
    pub token: Secret,
    /// `tokens`: named bearer tokens.
    pub tokens: Vec<NamedToken>,
}

/// One `admin.tokens` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NamedToken {
    /// Who holds it (shown in the audit log).
    pub name: String,
    /// The secret.
    pub token: Secret,
}

impl NamedToken {
    /// A named token.
    pub fn new(name: impl Into<String>, token: impl Into<Secret>) -> Self {
        Self { name: name.into(), token: token.into() }
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
            policy = policy.with_ladder(name, built).map_err(|e| ConfigError::Key { key, message: e.to_string() })?;
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
                ConfigError::Key { key: format!("policy.repeat.{field}"), message: e.to_string() }
            })?;
        }
        for (lookup_key, ladder) in &self.stripe.ladder_by_lookup_key {
            if policy.ladder(ladder).is_none() {
                return Err(ConfigError::Key {
                    key: format!("stripe.ladder_by_lookup_key.{lookup_key}"),
                    message: format!("{ladder:?} is not a ladder (known: {})", policy.names().collect::<Vec<_>>().join(", ")),
                });
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
            ConfigError::Key {
                key: match culprit {
                    Some(i) => format!("{prefix}.stages[{i}]{field}"),
                    None => format!("{prefix}.stages"),
                },
                message: e.to_string(),
            }
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

impl LinksConfig {
    /// The origin absolute links start with (e-mails, the portal's return
    /// URL): `links.base_url`, else the origin of `portal_return_url`.
    #[cfg_attr(not(any(feature = "stripe", feature = "notify-email", feature = "notify-webhook")), allow(dead_code))]
    pub(crate) fn origin(&self, portal_return_url: &str) -> Result<String, ConfigError> {
        let raw = if self.base_url.is_empty() { portal_return_url } else { &self.base_url };
        let bad = |message: &str| ConfigError::Key { key: "links.base_url".into(), message: message.into() };
        let url = url::Url::parse(raw).map_err(|_| bad("is not a URL (e.g. https://app.example.com)"))?;
        if !crate::href::is_safe(url.as_str()) {
            return Err(bad("must be an https URL (http only on loopback)"));
        }
        Ok(url.origin().ascii_serialization())
    }

    /// The signer of pay links, when the billing portal is configured
    /// (`stripe.portal_return_url`, passed as `portal_return_url`);
    /// `Ok(None)` otherwise. A portal without `links.secret` is refused,
    /// naming the key.
    #[cfg_attr(not(any(feature = "stripe", feature = "notify-email", feature = "notify-webhook")), allow(dead_code))]
    pub(crate) fn signer(&self, portal_return_url: &str) -> Result<Option<crate::links::LinkSigner>, ConfigError> {
        if portal_return_url.is_empty() {
            return Ok(None);
        }
        if self.secret.is_empty() {
            return Err(ConfigError::Key {
                key: "links.secret".into(),
                message: "is needed for pay links (stripe.portal_return_url is set); set a random secret of at least 32 bytes, shared by every instance (PASTDUE_LINKS__SECRET=$(openssl rand -hex 32))".into(),
            });
        }
        crate::links::LinkSigner::new(self.secret.expose().as_bytes(), self.ttl)
            .map(Some)
            .map_err(|e| ConfigError::Key { key: "links.secret".into(), message: e.to_string() })
    }
}

/// A duration that is not a whole number and a unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration; write a whole number and a unit, like \"50ms\", \"30s\", \"90m\", \"12h\", \"14d\"")]
pub struct BadDuration(pub String);

/// Parses `"50ms"`, `"30s"`, `"90m"`, `"12h"`, `"14d"`, `"2w"`.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || BadDuration(text.to_owned());
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

/// `false` / `"0s"` → off, `true` → [`BEFORE_DUE_DEFAULT`], else a duration.
fn de_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Window {
        Switch(bool),
        For(String),
    }
    Ok(match Window::deserialize(d)? {
        Window::Switch(on) => on.then_some(BEFORE_DUE_DEFAULT),
        Window::For(s) => Some(parse_duration(&s).map_err(serde::de::Error::custom)?).filter(|w| !w.is_zero()),
    })
}

fn de_header_name<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
    let s = String::deserialize(d)?;
    http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a valid header name")))
}

impl Default for Config {
    /// The embedded `config/default.toml` (checked by the config tests, so
    /// it always parses and validates).
    fn default() -> Self {
        toml::from_str(DEFAULT_TOML).expect("the built-in config/default.toml is valid")
    }
}
