//! The seam between billing providers and the ladder.
//!
//! A provider (Stripe, Paddle, your own invoicing through Standard
//! Webhooks) does two things, and only these are provider-specific:
//!
//! - **Deliveries** (`Delivery`): it checks a webhook's signature,
//!   reads its body into [`Change`]s carrying the event's own time, and
//!   names the account (its customer-to-account rules). Everything else is
//!   shared here: the body limit, the replies, the dedupe key, the store
//!   write, and what a store outage answers (`503`, so the sender retries).
//! - **Questions** (`Source`, features `stripe`/`paddle`): "is this still
//!   owed?" about the invoices and subscriptions it wrote. Verify before
//!   blocking, the "check again" link and the debt sweep ask every
//!   configured source through one `Verifier`, with one rate limit.
//!
//! Each provider's invoice and subscription keys are its own: Stripe's are
//! its ids (`in_…`, unchanged since the first release), Paddle's are
//! prefixed `paddle:`, in-house events' `events:`. So invoices from
//! several providers live side by side on one account, each with its own
//! pay URL, and the oldest unpaid one decides `past_due_since`.

#[cfg(any(feature = "stripe", feature = "events", feature = "paddle"))]
mod delivery;
#[cfg(any(feature = "stripe", feature = "events", feature = "paddle"))]
#[allow(unused_imports)]
pub(crate) use self::delivery::{router, single_header, Delivery, Read, Refused};

#[cfg(any(feature = "stripe", feature = "paddle"))]
mod source;
#[cfg(any(feature = "stripe", feature = "paddle"))]
mod sweep;
#[cfg(any(feature = "stripe", feature = "paddle"))]
mod verify;

#[cfg(any(feature = "stripe", feature = "paddle"))]
pub(crate) use self::source::{Source, SourceError};
#[cfg(any(feature = "stripe", feature = "paddle"))]
pub use self::sweep::{DebtSweep, SweepReport};
#[cfg(any(feature = "stripe", feature = "paddle"))]
pub(crate) use self::verify::{verifying, Verifier};

#[allow(unused_imports)]
use crate::state::Change;

/// Records that `provider`'s metadata names `account` for `customer`, and
/// returns the account the customer's deliveries belong to: `account`, or
/// the account an admin linked the customer to (admin links win; the
/// disagreement is logged, counted and kept for the admin view).
#[cfg(any(feature = "stripe", feature = "paddle"))]
pub(crate) async fn learn(
    store: &dyn crate::store::Store,
    provider: &'static str,
    customer: &str,
    account: crate::account::AccountId,
) -> Result<crate::account::AccountId, crate::store::StoreError> {
    use crate::store::{LinkSource, Linked};
    match crate::store::move_customer(store, customer, &account, LinkSource::Learned).await? {
        Linked::Refused { admin } => {
            tracing::warn!(customer, metadata = %account, admin = %admin, "{provider} metadata names another account than the admin link; keeping the admin link");
            metrics::counter!(crate::metrics::LINK_CONFLICTS).increment(1);
            let conflict = crate::state::LinkConflict { customer: customer.to_owned(), claimed_by: account.to_string(), at: chrono::Utc::now() };
            store.apply(&admin, None, &[Change::LinkConflict(conflict)]).await?;
            Ok(admin)
        }
        _ => Ok(account),
    }
}
