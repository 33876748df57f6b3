//! Times a fact may carry: the sane window every stored time lies in.

use chrono::{DateTime, Utc};

/// The earliest time accepted from outside (a Stripe event, an invoice,
/// an admin request): 2000-01-01T00:00:00Z.
pub(crate) const EARLIEST_TIME: i64 = 946_684_800;
/// The latest time accepted from outside: 2100-01-01T00:00:00Z.
pub(crate) const LATEST_TIME: i64 = 4_102_444_800;

/// `unix` seconds as a time, when it lies in the sane window
/// 2000-01-01..2100-01-01 (UTC); `None` otherwise. Times outside it
/// are refused where they enter, so no stored fact is absurd.
pub fn sane_time(unix: i64) -> Option<DateTime<Utc>> {
    if (EARLIEST_TIME..LATEST_TIME).contains(&unix) {
        DateTime::from_timestamp(unix, 0)
    } else {
        None
    }
}
