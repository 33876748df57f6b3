//! Loading: the built-in `config/default.toml`, a file, then environment
//! variables (feature `config`).

use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError};

/// The built-in defaults, the same text as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The environment variable naming a config file that replaces the defaults.
pub const CONFIG_ENV: &str = "PASTDUE_CONFIG";
const ENV_PREFIX: &str = "PASTDUE_";

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
            .map_err(|e| ConfigError::key(e.path().to_string(), e.into_inner().message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.policy()?;
        crate::gate::ExemptPaths::new(&self.gate.exempt).map_err(|e| ConfigError::invalid("gate.exempt", e))?;
        crate::store::StoreUrl::parse(&self.store.url).map_err(|e| ConfigError::invalid("store.url", e))?;
        if !self.stripe.webhook_path.starts_with('/') {
            return Err(ConfigError::key("stripe.webhook_path", "must start with /"));
        }
        if !(self.stripe.api_base.starts_with("http://") || self.stripe.api_base.starts_with("https://")) {
            return Err(ConfigError::key("stripe.api_base", format!("{:?} is not an http(s) URL", self.stripe.api_base)));
        }
        if !self.admin.path.starts_with('/') || self.admin.path.ends_with('/') {
            return Err(ConfigError::key("admin.path", "must start with / and not end with one"));
        }
        if !self.links.secret.is_empty() && self.links.secret.len() < crate::links::MIN_SECRET_LEN {
            return Err(ConfigError::invalid("links.secret", crate::links::WeakSecret));
        }
        if self.notify.lease < Duration::from_millis(30) {
            return Err(ConfigError::key("notify.lease", "must be at least 30ms"));
        }
        if !crate::href::is_safe(&self.links.return_to) {
            return Err(ConfigError::key("links.return_to", "must be a path (/…) or an https URL"));
        }
        if self.links.ttl.is_zero() {
            return Err(ConfigError::key("links.ttl", "must be longer than 0s"));
        }
        self.admin.check_tokens()?;
        if self.stripe.verify_rate == 0 {
            return Err(ConfigError::key("stripe.verify_rate", "must be at least 1 per second"));
        }
        if self.stripe.verify_timeout.is_zero() {
            return Err(ConfigError::key("stripe.verify_timeout", "must be longer than 0s"));
        }
        self.check.checked()?;
        if self.cache.capacity == 0 {
            return Err(ConfigError::key("cache.capacity", "must be at least 1"));
        }
        if self.cache.ttl < std::time::Duration::from_secs(1) {
            return Err(ConfigError::key("cache.ttl", "must be at least 1s (invalidations keep the cache current; the TTL is a safety net)"));
        }
        Ok(())
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
/// number), numbers, booleans and arrays are parsed as TOML; where the
/// default is a boolean, anything but `true`/`false` is a string.
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
                // A switch that also takes a duration (`banner.before_due`):
                // anything but true/false stays a string for the key to judge.
                Some(toml::Value::Boolean(_)) if !matches!(raw.trim(), "true" | "false") => {
                    toml::Value::String(raw.to_owned())
                }
                // A list: a TOML array, or comma-separated strings
                // (`PASTDUE_GATE__EXEMPT=/billing/**,/healthz`).
                Some(toml::Value::Array(_)) if !raw.trim_start().starts_with('[') => toml::Value::Array(
                    raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| toml::Value::String(v.to_owned())).collect(),
                ),
                Some(toml::Value::Array(_)) => {
                    let doc: toml::Table = format!("v = {raw}").parse().map_err(|_| {
                        err(format!(
                            "`{dotted}` takes a list: comma-separated ({var}=/billing/**,/healthz) or a TOML array ({var}='[\"/billing/**\", \"/healthz\"]')"
                        ))
                    })?;
                    doc.get("v").cloned().unwrap_or(toml::Value::String(raw.to_owned()))
                }
                Some(other) => {
                    let doc: toml::Table = format!("v = {raw}").parse().map_err(|_| {
                        err(format!("`{dotted}` takes a {} (e.g. {var}={other})", other.type_str()))
                    })?;
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
