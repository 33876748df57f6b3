//! Asking the source before a debt `402`: "paid means open".
//!
//! A request about to be refused for a debt first asks the billing
//! provider whether the debt still stands (a webhook may have gone
//! missing). What it learns is applied through the store like any other
//! fact; when that clears the debt, the same request passes. Bounded by a
//! timeout here, so a slow provider costs at most that, and the `402` is
//! served as before. Passing requests never ask.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::account::AccountId;
use crate::state::BillingState;

/// What a recheck found out.
pub(crate) type Rechecked = Pin<Box<dyn Future<Output = Option<BillingState>> + Send>>;

/// Re-reads an account's debt at its source.
pub(crate) trait Recheck: Send + Sync + 'static {
    /// Asks about `account`, whose stored state is `state`; applies what it
    /// learns to the store and returns the new state when that changed it
    /// (`None`: nothing learned, rate-limited, or the source failed).
    fn recheck(&self, account: AccountId, state: Arc<BillingState>) -> Rechecked;
}
