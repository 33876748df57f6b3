//! "Is this still owed?": what a provider answers about its own debts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::state::{BillingState, Change};

/// Why a provider could not answer (its API failed or timed out).
pub(crate) type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A provider that can be asked about the debts it wrote.
#[async_trait]
pub(crate) trait Source: Send + Sync + 'static {
    /// The provider's name, for logs ("Stripe", "Paddle").
    fn name(&self) -> &'static str;

    /// What the provider says now about the unpaid invoices and
    /// debt-status subscriptions of `state` whose keys are its own:
    /// settled, voided or live again, as [`Change`]s with the provider's own
    /// times where it has them (else `now`). Nothing to say: empty.
    async fn ask(&self, state: &BillingState, now: DateTime<Utc>) -> Result<Vec<Change>, SourceError>;
}
