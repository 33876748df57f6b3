//! `[admin]`: the admin API's path and tokens.

use serde::Deserialize;

use crate::settings::{ConfigError, Secret};

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
        Self { path: "/admin".into(), token: Secret::default(), tokens: Vec::new() }
    }
}
