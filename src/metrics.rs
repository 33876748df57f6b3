//! Metric names, through the [`metrics`](https://docs.rs/metrics) facade:
//! the app installs whatever exporter it likes (the demo exposes Prometheus
//! text at `/metrics`). Install the exporter before building a `GateLayer`:
//! the gate registers its per-stage counters once, at construction, so the
//! hot path only adds to an atomic.
//!
//! | name | labels | what |
//! |---|---|---|
//! | `pastdue_decisions_total` | `stage`, `action`, `result` (`pass`/`deny`) | gated requests |
//! | `pastdue_no_account_total` | | gated requests that resolved no account |
//! | `pastdue_cache_hits_total` | | decisions made from the in-process cache |
//! | `pastdue_cache_misses_total` | | decisions that needed a store read |
//! | `pastdue_cache_evictions_total` | `reason` (`write`/`resync`) | invalidations applied |
//! | `pastdue_store_errors_total` | `op` | failed store calls |
//! | `pastdue_stale_decisions_total` | | decisions from last known state during an outage |
//! | `pastdue_fail_open_total` | `policy` (`allow`/`block`) | uncached accounts decided by `on_store_error` |
//! | `pastdue_webhooks_total` | `type`, `result` | webhook outcomes (`applied`, `duplicate`, `ignored`, `unmapped`, `bad_signature`, `bad_request`, `too_large`, `unavailable`) |
//! | `pastdue_pay_links_total` | `result` (`minted`, `reused`, `fallback` (the invoice page instead), `unauthorized`, `forbidden`, `expired`, `failed`, `unavailable`; `returned`: a visit to `/billing/return`) | clicks on `/billing/pay` and `/billing/return` |
//! | `pastdue_admin_auth_failures_total` | | admin requests refused for a missing or wrong token |
//! | `pastdue_link_conflicts_total` | | Stripe metadata that disagreed with an admin's customer link (the admin link stays) |
//! | `pastdue_invalidation_resubscribes_total` | | times the invalidation listener (re)subscribed |
//! | `pastdue_notices_total` | `channel`, `result` (`sent`/`failed`; `refused`: the receiver refused it for good, e.g. a number Twilio cannot text; `no_recipient`: a reminder by e-mail for an account with no billing address, once per reminder) | stage notices and reminders |
//! | `pastdue_checks_refused_total` | `reason` (`missing`, `invalid`, `conflicting`: the `X-Forwarded-*` and `X-Original-*` families disagree, `dot_segments`) | `/check` and `/page` requests refused with `400` |
//! | `pastdue_events_webhooks_total` | `type`, `result` | Standard Webhooks events (`/webhooks/events`) outcomes |
//! | `pastdue_paddle_webhooks_total` | `type`, `result` | Paddle notifications (`/webhooks/paddle`) outcomes, as `pastdue_webhooks_total` |
//! | `pastdue_episodes_ended_total` | `outcome` (`paid`/`voided`), `stage` (the stage it ended at) | debt episodes this instance recorded as ended |
//! | `pastdue_recovered_amount_total` | `currency`, `stage` | minor units paid in the episodes this instance recorded as ended |
//! | `pastdue_at_risk_accounts` (gauge) | `stage` | accounts owing now, by current stage, as of the last full sweep |
//! | `pastdue_at_risk_amount` (gauge) | `stage`, `currency` | what they owe (minor units) |
//! | `pastdue_verifications_total` | `result` (`paid`: settled at the provider (Stripe, Paddle) and applied, the request passed; `owed`; `recent`: verified within `stripe.verify_interval`; `limited`: over `stripe.verify_rate`; `failed`) | verifications before a debt `402` |

/// Gated requests by stage, action and result.
pub const DECISIONS: &str = "pastdue_decisions_total";
/// Gated (not exempt) requests that resolved no account.
pub const NO_ACCOUNT: &str = "pastdue_no_account_total";
/// Decisions made from the cache.
pub const CACHE_HITS: &str = "pastdue_cache_hits_total";
/// Decisions that needed a store read.
pub const CACHE_MISSES: &str = "pastdue_cache_misses_total";
/// Invalidations applied to the cache.
pub const CACHE_EVICTIONS: &str = "pastdue_cache_evictions_total";
/// Failed store calls.
pub const STORE_ERRORS: &str = "pastdue_store_errors_total";
/// Decisions made from last known state because the store failed.
pub const STALE_DECISIONS: &str = "pastdue_stale_decisions_total";
/// Uncached accounts decided by the outage policy.
pub const FAIL_OPEN: &str = "pastdue_fail_open_total";
/// Webhook outcomes.
pub const WEBHOOKS: &str = "pastdue_webhooks_total";
/// Clicks on pay links, by result.
pub const PAY_LINKS: &str = "pastdue_pay_links_total";
/// Admin requests refused for a missing or wrong token.
pub const ADMIN_AUTH_FAILURES: &str = "pastdue_admin_auth_failures_total";
/// Metadata that disagreed with an admin's customer link.
pub const LINK_CONFLICTS: &str = "pastdue_link_conflicts_total";
/// Invalidation-listener (re)subscriptions.
pub const RESUBSCRIBES: &str = "pastdue_invalidation_resubscribes_total";
/// Stage notices by channel and result.
pub const NOTICES: &str = "pastdue_notices_total";
/// Verifications with Stripe before a debt `402`, by result.
pub const VERIFICATIONS: &str = "pastdue_verifications_total";
/// Forward-auth requests refused with `400`, by reason.
pub const CHECKS_REFUSED: &str = "pastdue_checks_refused_total";
/// Debt sweeps run (`stripe.verify_sweep`).
pub const SWEEPS: &str = "pastdue_verify_sweeps_total";
/// Accounts the debt sweep verified, by result.
pub const SWEEP_ACCOUNTS: &str = "pastdue_verify_sweep_accounts_total";

/// Standard Webhooks events (`POST /webhooks/events`) by type and outcome.
pub const EVENTS: &str = "pastdue_events_webhooks_total";
/// Paddle notifications (`POST /webhooks/paddle`) by type and outcome.
pub const PADDLE: &str = "pastdue_paddle_webhooks_total";
/// Debt episodes recorded as ended, by outcome and stage at the end.
pub const EPISODES_ENDED: &str = "pastdue_episodes_ended_total";
/// Minor units paid in the episodes recorded as ended, by currency and stage.
pub const RECOVERED: &str = "pastdue_recovered_amount_total";
/// Accounts owing now, by current stage (gauge).
pub const AT_RISK_ACCOUNTS: &str = "pastdue_at_risk_accounts";
/// What they owe, by stage and currency (gauge).
pub const AT_RISK_AMOUNT: &str = "pastdue_at_risk_amount";

/// The gauges' `HELP` texts.
const GAUGES: [(&str, &str); 2] = [
    (AT_RISK_ACCOUNTS, "Accounts owing now, by their current stage, as of the last full notifier sweep."),
    (AT_RISK_AMOUNT, "What the accounts owing now owe, by current stage and currency, in the currency's minor unit, as of the last full notifier sweep."),
];

/// Every counter's `HELP` text, one per name.
const HELP: [(&str, &str); 22] = [
    (PADDLE, "Paddle Billing notifications (POST /webhooks/paddle) by type and outcome (applied, duplicate, ignored, unmapped, bad_signature, bad_request, too_large, unavailable)."),
    (EVENTS, "Standard Webhooks billing events (POST /webhooks/events) by type and outcome (applied, duplicate, ignored, bad_signature, bad_request, too_large, unavailable)."),
    (EPISODES_ENDED, "Debt episodes this instance recorded as ended, by outcome (paid or voided) and the stage they ended at."),
    (RECOVERED, "Money paid in the debt episodes this instance recorded as ended, in the currency's minor unit, by currency and the stage they ended at."),
    (DECISIONS, "Gated requests by billing stage, the stage's action and the result (pass or deny)."),
    (NO_ACCOUNT, "Gated (not exempt) requests that resolved no account and so passed ungated (or got 401 with gate.missing_account = deny)."),
    (CACHE_HITS, "Gate decisions made from the in-process cache, without a store read."),
    (CACHE_MISSES, "Gate decisions that needed a store read."),
    (CACHE_EVICTIONS, "Cache entries dropped by an invalidation, by reason (write or resync)."),
    (STORE_ERRORS, "Failed store calls, by operation."),
    (STALE_DECISIONS, "Gate decisions made from the last known state because the store failed."),
    (FAIL_OPEN, "Uncached accounts decided by gate.on_store_error while the store was down, by policy."),
    (WEBHOOKS, "Stripe webhook deliveries by event type and outcome."),
    (PAY_LINKS, "Clicks on signed pay links (/billing/pay), by result."),
    (ADMIN_AUTH_FAILURES, "Admin API requests refused for a missing or wrong bearer token."),
    (LINK_CONFLICTS, "Stripe metadata that named another account than an admin's customer link (the admin link stays)."),
    (RESUBSCRIBES, "Times the cache's invalidation listener (re)subscribed to the store."),
    (NOTICES, "Stage notices and reminders by channel and result (sent, failed, refused: the receiver refused it for good, or no_recipient: no billing e-mail address known)."),
    (VERIFICATIONS, "Verifications with Stripe before a debt 402, by result (paid, owed, recent, limited, failed)."),
    (CHECKS_REFUSED, "Forward-auth checks refused with 400 because the proxy did not describe one original request, by reason (missing, invalid, conflicting: X-Forwarded-* and X-Original-* disagree, dot_segments)."),
    (SWEEPS, "Debt sweeps this instance ran (it held the sweep lease)."),
    (SWEEP_ACCOUNTS, "Accounts in debt the sweep looked at, by result (repaired, owed, recent, failed)."),
];

/// Describes every metric (`HELP` text) to the installed recorder. The
/// gate, the webhook, the admin API and the notifier call it when they are
/// built, so an exporter installed before them serves every `HELP` line.
pub fn describe() {
    for (name, help) in HELP {
        metrics::describe_counter!(name, help);
    }
    for (name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
    }
}

/// Counts an episode a write just ended.
pub(crate) fn episode_ended(r: &crate::recovery::EpisodeRecord) {
    let (Some(outcome), Some(stage)) = (r.outcome, r.stage_at_end.clone()) else { return };
    metrics::counter!(EPISODES_ENDED, "outcome" => outcome.as_str(), "stage" => stage.clone()).increment(1);
    for (currency, amount) in &r.amount_paid {
        if let Ok(n) = u64::try_from(*amount) {
            metrics::counter!(RECOVERED, "currency" => currency.to_string(), "stage" => stage.clone()).increment(n);
        }
    }
}

/// Sets the at-risk gauges from a fresh count; series of stages (and
/// currencies) no longer at risk go to zero.
pub(crate) fn at_risk(at_risk: &crate::recovery::AtRisk) {
    use std::collections::BTreeSet;
    static SEEN: std::sync::Mutex<BTreeSet<(String, Option<String>)>> = std::sync::Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut now: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    for (stage, risk) in at_risk.by_stage(None) {
        metrics::gauge!(AT_RISK_ACCOUNTS, "stage" => stage.clone()).set(risk.accounts as f64);
        now.insert((stage.clone(), None));
        for (currency, amount) in &risk.amount {
            metrics::gauge!(AT_RISK_AMOUNT, "stage" => stage.clone(), "currency" => currency.to_string()).set(*amount as f64);
            now.insert((stage.clone(), Some(currency.to_string())));
        }
    }
    for (stage, currency) in seen.difference(&now) {
        match currency {
            None => metrics::gauge!(AT_RISK_ACCOUNTS, "stage" => stage.clone()).set(0.0),
            Some(c) => metrics::gauge!(AT_RISK_AMOUNT, "stage" => stage.clone(), "currency" => c.clone()).set(0.0),
        }
    }
    *seen = now;
}

/// The event types webhooks are counted by; anything else counts as `other`,
/// so a flood of odd types cannot blow up label cardinality.
#[cfg(feature = "stripe")]
pub(crate) fn event_type_label(kind: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "invoice.payment_failed",
        "invoice.upcoming",
        "invoice.will_be_due",
        "invoice.finalized",
        "invoice.overdue",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    ];
    KNOWN.iter().find(|k| **k == kind).copied().unwrap_or("other")
}
