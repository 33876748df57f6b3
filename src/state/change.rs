//! The changes that move a state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// One fact to fold into an account's [`BillingState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// An invoice is owed (payment failed, overdue, or marked uncollectible).
    InvoiceUnpaid {
        /// Stripe's invoice id.
        id: String,
        /// The invoice.
        invoice: UnpaidInvoice,
    },
    /// An invoice was paid. It can never be reopened.
    InvoiceSettled {
        /// Stripe's invoice id.
        id: String,
        /// Event time.
        at: DateTime<Utc>,
    },
    /// An invoice was voided: no longer owed, and never reopened, but not
    /// paid either (the recovery figures tell the two apart).
    InvoiceVoided {
        /// Stripe's invoice id.
        id: String,
        /// Event time.
        at: DateTime<Utc>,
    },
    /// A payment is coming due (`invoice.will_be_due`, `invoice.upcoming`,
    /// `invoice.finalized` with a due date). Dropped once the invoice is
    /// settled or owed.
    UpcomingDue {
        /// The invoice id, or `upcoming:<subscription>` for a preview
        /// (`invoice.upcoming` objects have no id yet).
        key: String,
        /// What is coming due.
        due: UpcomingDue,
    },
    /// A subscription's status changed.
    Subscription {
        /// Stripe's subscription id.
        id: String,
        /// The new status and its event time.
        fact: SubscriptionFact,
    },
    /// Set (or replace) the admin override.
    SetOverride(Override),
    /// Remove the admin override.
    ClearOverride,
    /// Link a Stripe customer to the account.
    LinkCustomer(String),
    /// The Stripe customer was moved to another account (customer links
    /// are moves decided by the store's link, not time-stamped facts).
    UnlinkCustomer(String),
    /// Stripe metadata named another account for a customer an admin
    /// linked here; the admin link stays, and the conflict is kept for the
    /// admin view.
    LinkConflict(LinkConflict),
    /// The billing contact's e-mail address.
    ContactEmail(String),
    /// Set (`Some`) or remove (`None`) the contact for a role. A contact
    /// an admin set is never replaced or removed by Stripe metadata.
    Contact {
        /// Whose address.
        role: ContactRole,
        /// The address, or `None` to remove it.
        email: Option<String>,
        /// Who says so.
        source: ContactSource,
    },
    /// The account's preferred language (a BCP 47 tag such as `"de"`).
    Language(String),
    /// Set (`Some`) or remove (`None`) the account's IANA time zone. One
    /// an admin set is never replaced or removed by Stripe's.
    Timezone {
        /// The zone (`Europe/Riga`), or `None` to remove it.
        zone: Option<String>,
        /// Who says so.
        source: ContactSource,
    },
    /// Set (`Some`) or remove (`None`) the billing phone (E.164). One an
    /// admin set is never replaced or removed by Stripe's.
    BillingPhone {
        /// The number (`+37120000000`), or `None` to remove it.
        phone: Option<String>,
        /// Who says so.
        source: ContactSource,
    },
    /// The notices held for the send window, replacing the list before
    /// (the notifier's own bookkeeping: it alone writes this).
    Waiting(Vec<Waiting>),
    /// The default card expires soon (`customer.source.expiring`); the
    /// newest event wins.
    CardExpiring(CardExpiry),
    /// The card was replaced or updated (`payment_method.automatically_updated`)
    /// at this event time: an older expiry warning no longer holds.
    CardUpdated(DateTime<Utc>),
    /// A notice went out.
    NoticeSent(NoticeSent),
    /// A promise to pay was recorded.
    Promise(Promise),
    /// An admin chose the account's ladder (`None`: back to the plan, the
    /// repeat rule or `default`).
    Ladder(Option<LadderChoice>),
    /// An operator wrote a note on the account.
    Note(Note),
}
