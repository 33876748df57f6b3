//! State and config builders: facts as a test writes them.

use chrono::{DateTime, TimeZone, Utc};
use pastdue::state::{Change, Currency, SubscriptionFact, SubscriptionStatus, UnpaidInvoice, UpcomingDue};

pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

pub const DAY: i64 = 86_400;

pub fn unpaid(id: &str, cents: i64, since: DateTime<Utc>) -> Change {
    Change::InvoiceUnpaid {
        id: id.into(),
        invoice: UnpaidInvoice {
            amount_due: cents,
            currency: Currency::new("eur").unwrap(),
            hosted_url: Some(format!("https://invoice.stripe.com/i/{id}").into()),
            number: Some(format!("N-{id}")),
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    }
}

/// A payment of `cents` coming due at `due`, reported at `observed`.
pub fn upcoming(key: &str, cents: i64, due: DateTime<Utc>, observed: DateTime<Utc>) -> Change {
    Change::UpcomingDue {
        key: key.into(),
        due: UpcomingDue {
            amount_due: cents,
            currency: Currency::new("eur").unwrap(),
            due,
            number: None,
            hosted_url: Some(format!("https://invoice.stripe.com/i/{key}")),
            observed,
        },
    }
}

pub fn settled(id: &str, at: DateTime<Utc>) -> Change {
    Change::InvoiceSettled { id: id.into(), at }
}

pub fn voided(id: &str, at: DateTime<Utc>) -> Change {
    Change::InvoiceVoided { id: id.into(), at }
}

pub fn subscription(id: &str, status: SubscriptionStatus, at: DateTime<Utc>) -> Change {
    Change::Subscription { id: id.into(), fact: SubscriptionFact::new(status, at) }
}

/// The default ladder (notice 0, warning 14 days, suspended 17 days) with
/// `warning` closing the feature `reports`, as TOML.
pub const LADDER_CLOSING_REPORTS: &str = r#"
[[ladder.stages]]
name = "notice"
after = "0s"
action = "notice"
[[ladder.stages]]
name = "warning"
after = "14d"
action = "warn"
closes = ["reports"]
[[ladder.stages]]
name = "suspended"
after = "17d"
action = "block"
"#;

/// The default config with a ladder in seconds: notice at 0, warning and
/// suspended after the given seconds (for tests where time really passes).
pub fn seconds_ladder(warning: u32, suspended: u32) -> pastdue::Config {
    pastdue::Config::from_toml(&format!(
        r#"
        [[ladder.stages]]
        name = "notice"
        after = "0s"
        action = "notice"
        [[ladder.stages]]
        name = "warning"
        after = "{warning}s"
        action = "warn"
        [[ladder.stages]]
        name = "suspended"
        after = "{suspended}s"
        action = "block"
    "#
    ))
    .unwrap()
}

/// A ladder with a read-only stage between notice and suspension (TOML):
/// notice at once, read_only after 10 days, suspended after 20.
pub const READ_ONLY_LADDER: &str = r#"
[[ladder.stages]]
name = "notice"
after = "0s"
action = "notice"

[[ladder.stages]]
name = "read_only"
after = "10d"
action = "read_only"

[[ladder.stages]]
name = "suspended"
after = "20d"
action = "block"
"#;

/// A named ladder for the bigger customers: notice at 0, warning at 30
/// days, suspended at 45.
pub const ENTERPRISE_LADDER: &str = r#"
[[ladders.enterprise.stages]]
name = "notice"
after = "0s"
action = "notice"
[[ladders.enterprise.stages]]
name = "warning"
after = "30d"
action = "warn"
[[ladders.enterprise.stages]]
name = "suspended"
after = "45d"
action = "block"
"#;
