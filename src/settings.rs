//! What every component's settings share: [`Secret`], durations
//! (`"50ms"`, `"14d"`), header names, and [`ConfigError`].
//!
//! Each component owns its settings type next to its code (`GateConfig` in
//! `gate`, `StripeConfig` in `stripe`, …), with a `Default` that is a plain
//! struct literal. Only [`crate::config`], at the edge, reads TOML.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A secret from configuration (a signing secret, an API key, a token, a
/// URL with a password): used, compared, never printed. `Debug` shows
/// `"***"` (or `""` when unset).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The set values of a signing secret and its rotation list
    /// (`webhook_secret` then `webhook_secrets`), empty ones left out.
    pub(crate) fn all_set(first: &Secret, more: &[Secret]) -> Vec<String> {
        std::iter::once(first).chain(more).filter(|s| !s.is_empty()).map(|s| s.expose().to_owned()).collect()
    }

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
    #[cfg(feature = "config")]
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
        /// The refusal of the component that checked the value, when one
        /// did (a glob, a ladder, a template, a key file).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
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

impl ConfigError {
    /// Key `key` is wrong: `message` says how.
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key { key: key.into(), message: message.into(), source: None }
    }

    /// Key `key` was refused by the component that checked it: `source`
    /// says why, and stays reachable through [`std::error::Error::source`].
    pub fn invalid(key: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Key { key: key.into(), message: source.to_string(), source: Some(Box::new(source)) }
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

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `false` / `"0s"` → off, `true` → [`crate::gate::BEFORE_DUE_DEFAULT`], else a duration.
pub(crate) fn de_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Window {
        Switch(bool),
        For(String),
    }
    Ok(match Window::deserialize(d)? {
        Window::Switch(on) => on.then_some(crate::gate::BEFORE_DUE_DEFAULT),
        Window::For(s) => Some(parse_duration(&s).map_err(serde::de::Error::custom)?).filter(|w| !w.is_zero()),
    })
}

pub(crate) fn de_header_name<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
    let s = String::deserialize(d)?;
    http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a valid header name")))
}
