//! `[stripe]`: the webhook, the Stripe API, verification and sync.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_duration, Secret};

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
        crate::settings::Secret::all_set(&self.webhook_secret, &self.webhook_secrets)
    }

    /// The API key, when one is configured.
    pub fn api_key(&self) -> Option<&str> {
        Some(self.api_key.expose()).filter(|k| !k.is_empty())
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

impl Default for StripeConfig {
    /// No secret and no API key: the webhook and everything that asks
    /// Stripe are off until they are set.
    fn default() -> Self {
        Self {
            webhook_path: "/webhooks/stripe".into(),
            webhook_secret: Secret::default(),
            webhook_secrets: Vec::new(),
            tolerance: Duration::from_secs(300),
            api_key: Secret::default(),
            api_base: "https://api.stripe.com/".into(),
            metadata_key: "account_id".into(),
            ladder_metadata_key: "pastdue_ladder".into(),
            ladder_by_lookup_key: std::collections::BTreeMap::new(),
            unmapped: Unmapped::CustomerId,
            sync_interval: Duration::ZERO,
            portal_return_url: String::new(),
            verify_timeout: Duration::from_millis(1_500),
            verify_interval: Duration::from_secs(60),
            verify_rate: 10,
            verify_sweep: Duration::from_secs(15 * 60),
        }
    }
}
