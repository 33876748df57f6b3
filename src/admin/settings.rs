//! `[admin]`: the admin API's path and tokens, and how operators sign in
//! to the console.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_duration, ConfigError, Secret};

/// The shortest admin token accepted at start-up, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

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
    /// `session_ttl`: how long a console sign-in lasts.
    #[serde(deserialize_with = "de_duration")]
    pub session_ttl: Duration,
    /// `ui_user_header`: a header your single-sign-on proxy sets to the
    /// operator's name or e-mail (e.g. oauth2-proxy's
    /// `X-Auth-Request-Email`); `""` = operators sign in with a token.
    pub ui_user_header: String,
    /// `ui_users`: who may enter the console through `ui_user_header`.
    pub ui_users: Vec<String>,
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
                return Err(ConfigError::key(key, format!("is {} bytes; admin tokens must be at least {MIN_ADMIN_TOKEN_LEN} bytes", token.len())));
            }
        }
        if self.session_ttl.is_zero() {
            return Err(ConfigError::key("admin.session_ttl", "must be longer than zero"));
        }
        if !self.ui_user_header.is_empty() {
            if http::HeaderName::from_bytes(self.ui_user_header.as_bytes()).is_err() {
                return Err(ConfigError::key("admin.ui_user_header", format!("{:?} is not a header name", self.ui_user_header)));
            }
            if self.ui_users.iter().all(|u| u.trim().is_empty()) {
                return Err(ConfigError::key("admin.ui_users", "lists nobody: with admin.ui_user_header set, name who may enter the console"));
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

impl Default for AdminConfig {
    /// Mounted at `/admin`, with no token: off until one is set.
    fn default() -> Self {
        Self {
            path: "/admin".into(),
            token: Secret::default(),
            tokens: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
            ui_user_header: String::new(),
            ui_users: Vec::new(),
        }
    }
}
