//! `[store]`: where billing state lives.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::de_duration;

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

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "memory://".into(),
            prefix: "pastdue".into(),
            read_timeout: Duration::from_millis(50),
            write_timeout: Duration::from_secs(2),
            dedupe_ttl: Duration::from_secs(35 * 86_400),
            audit_max_len: 10_000,
        }
    }
}
