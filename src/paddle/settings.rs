//! `[paddle]`: Paddle Billing's webhooks and API.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_duration, Secret};

/// `[paddle]`: the Paddle Billing endpoint and API. `Debug` hides the
/// secrets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PaddleConfig {
    /// `webhook_path`: where the endpoint is mounted.
    pub webhook_path: String,
    /// `webhook_secret`: the notification destination's secret key
    /// (`pdl_ntfset_…`).
    pub webhook_secret: Secret,
    /// `webhook_secrets`: more accepted secrets (rotation).
    pub webhook_secrets: Vec<Secret>,
    /// `tolerance`: accepted clock difference of a signature, either way.
    #[serde(deserialize_with = "de_duration")]
    pub tolerance: Duration,
    /// `api_key`: a Paddle API key, for verify-before-blocking, the debt
    /// sweep and customer look-ups.
    pub api_key: Secret,
    /// `api_base`: Paddle's API (`https://sandbox-api.paddle.com` for the
    /// sandbox).
    pub api_base: String,
    /// `metadata_key`: the `custom_data` key naming the account.
    pub metadata_key: String,
    /// `sync_interval`: how often past-due transactions and subscriptions
    /// are listed from Paddle's API (`0s` = never).
    #[serde(deserialize_with = "de_duration")]
    pub sync_interval: Duration,
}

impl PaddleConfig {
    /// Every accepted signing secret, non-empty ones only.
    pub fn secrets(&self) -> Vec<String> {
        Secret::all_set(&self.webhook_secret, &self.webhook_secrets)
    }

    /// The API key, when one is set.
    pub fn api_key(&self) -> Option<&str> {
        Some(self.api_key.expose()).filter(|k| !k.is_empty())
    }

    /// Whether anything of `[paddle]` is turned on.
    pub fn is_on(&self) -> bool {
        !self.secrets().is_empty() || self.api_key().is_some()
    }
}

impl Default for PaddleConfig {
    /// Mounted at `/webhooks/paddle`, off until a secret is set; a
    /// 5-second tolerance, as Paddle's own SDKs check; Paddle's live API;
    /// the account in `custom_data.account_id`.
    fn default() -> Self {
        Self {
            webhook_path: "/webhooks/paddle".into(),
            webhook_secret: Secret::default(),
            webhook_secrets: Vec::new(),
            tolerance: Duration::from_secs(5),
            api_key: Secret::default(),
            api_base: "https://api.paddle.com".into(),
            metadata_key: "account_id".into(),
            sync_interval: Duration::ZERO,
        }
    }
}
