//! `[events]`: billing facts from your own invoicing, as Standard Webhooks.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_duration, Secret};

/// `[events]`: the Standard Webhooks endpoint. `Debug` hides the secrets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EventsConfig {
    /// `webhook_path`: where the endpoint is mounted.
    pub webhook_path: String,
    /// `webhook_secret`: the signing secret, `whsec_<base64>`.
    pub webhook_secret: Secret,
    /// `webhook_secrets`: more accepted secrets (rotation).
    pub webhook_secrets: Vec<Secret>,
    /// `tolerance`: accepted clock difference of a signature, either way.
    #[serde(deserialize_with = "de_duration")]
    pub tolerance: Duration,
}

impl EventsConfig {
    /// Every accepted signing secret, non-empty ones only.
    pub fn secrets(&self) -> Vec<String> {
        crate::settings::Secret::all_set(&self.webhook_secret, &self.webhook_secrets)
    }
}

impl Default for EventsConfig {
    /// Mounted at `/webhooks/events`, off until a secret is set; a 5-minute
    /// tolerance, as the standard says.
    fn default() -> Self {
        Self { webhook_path: "/webhooks/events".into(), webhook_secret: Secret::default(), webhook_secrets: Vec::new(), tolerance: Duration::from_secs(300) }
    }
}
