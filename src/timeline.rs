//! An account's timeline: every fact with its time and source, and the
//! stage changes the ladder computes from them, oldest first. `pastdue
//! explain` prints it; the operator console shows it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::standing::Ladder;
use crate::state::BillingState;
use crate::store::AuditEntry;

/// One line of an account's timeline.
#[derive(Serialize)]
pub struct Event {
    /// When it happened (or will: ladder steps still ahead).
    pub at: DateTime<Utc>,
    /// What happened.
    pub what: String,
    /// Where the fact came from: `stripe` (a webhook or sync), `admin:<token
    /// name>`, `cli`, `sync`, `sweep`, `notifier`, or `ladder` for a stage
    /// change the ladder computes.
    pub source: String,
    /// Whether it lies ahead of now.
    pub ahead: bool,
}

/// `n days` (or hours for less than a day).
pub fn days(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => "at once".to_owned(),
        s if s % 86_400 == 0 => format!("{} day{}", s / 86_400, if s == 86_400 { "" } else { "s" }),
        s => format!("{}h", s / 3600),
    }
}

/// `49.00 EUR`: an amount in minor units as plain text for terminals and
/// logs (no symbol, the code after).
pub fn plain_money(amount: i64, currency: &str, digits: u32) -> String {
    let scale = 10_i64.pow(digits);
    if digits == 0 {
        return format!("{amount} {}", currency.to_uppercase());
    }
    format!(
        "{}.{:0width$} {}",
        amount / scale,
        (amount % scale).abs(),
        currency.to_uppercase(),
        width = digits as usize
    )
}

/// The account's facts and the stage changes they cause, oldest first.
pub fn timeline(
    state: Option<&BillingState>,
    audit: &[AuditEntry],
    ladder: &Ladder,
    now: DateTime<Utc>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut push = |at: DateTime<Utc>, what: String, source: &str| {
        events.push(Event {
            ahead: at > now,
            at,
            what,
            source: source.to_owned(),
        })
    };
    if let Some(s) = state {
        for (id, inv) in s.unpaid() {
            let amount = plain_money(
                inv.amount_due,
                inv.currency.as_str(),
                inv.currency.minor_digits(),
            );
            push(
                inv.since,
                format!(
                    "invoice {id} unpaid: {amount}{}",
                    inv.number
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
                "stripe",
            );
            if let Some(retry) = inv.next_attempt {
                push(retry, format!("Stripe retries invoice {id}"), "stripe");
            }
        }
        // Settled invoices keep their whole story: when they were owed, how
        // much, and whether they were paid or voided.
        for (id, at) in s.settled() {
            let how = s.settlement(id).map_or("settled (paid or voided; recorded before pastdue told them apart)", |h| h.as_str());
            match s.closed_debts().get(id) {
                Some(span) => {
                    let amount = span
                        .owed
                        .map(|o| format!(": {}", plain_money(o.amount, o.currency.as_str(), o.currency.minor_digits())))
                        .unwrap_or_default();
                    push(span.since, format!("invoice {id} unpaid{amount}"), "stripe");
                    push(*at, format!("invoice {id} {how}{amount}"), "stripe");
                }
                None => push(*at, format!("invoice {id} {how}"), "stripe"),
            }
        }
        for (id, fact) in s.subscriptions() {
            push(
                fact.at,
                format!(
                    "subscription {id} is {}",
                    serde_json::to_value(fact.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                "stripe",
            );
        }
        for due in s.upcoming().values() {
            push(
                due.due,
                format!(
                    "invoice due: {}",
                    plain_money(
                        due.amount_due,
                        due.currency.as_str(),
                        due.currency.minor_digits()
                    )
                ),
                "stripe",
            );
        }
        for n in s.notices() {
            let to = n.to.as_deref().map(|t| format!(" to {t}")).unwrap_or_default();
            let what = match &n.refused {
                Some(why) => format!("{} notice by {}{to} refused for good: {why}", n.stage, n.channel),
                None => format!("{} notice sent by {}{to}", n.stage, n.channel),
            };
            push(n.at, what, "notifier");
        }
        for w in s.waiting() {
            push(w.at, format!("{} notice goes out by {} (held for the send window)", w.stage, w.channel), "notifier");
        }
        for p in s.promises() {
            push(p.at, format!("promise to pay by {} recorded by {}: {}", p.until.format("%Y-%m-%d %H:%M UTC"), p.by, p.reason), "admin");
            let outcome = match s.promise_status(p, now) {
                crate::state::PromiseStatus::Pending => "falls due (the ladder waits at its first stage until then)",
                crate::state::PromiseStatus::Kept => "kept",
                crate::state::PromiseStatus::Broken => "broken: the ladder stands where time has put it",
            };
            push(p.until, format!("promise {outcome}"), "policy");
        }
        // The ladder's steps from the debt's start: when each stage began
        // (or will), as the gate computes them (an override, listed on its
        // own, takes precedence while it lasts).
        if let Some(start) = s.past_due_since() {
            for stage in ladder.stages() {
                let Ok(after) = chrono::TimeDelta::from_std(stage.after()) else { continue };
                let when = if after.is_zero() { "when the debt started".to_owned() } else { format!("{} after the debt started", days(stage.after())) };
                let what = format!("stage {} (action {}; {when})", stage.name(), stage.action().as_str());
                push(start + after, what, "ladder");
            }
        }
        if let Some(o) = s.override_() {
            if let Some(until) = o.until {
                push(until, format!("override ({}) ends", serde_json::to_value(o.mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()), "ladder");
            }
        }
        for n in s.notes() {
            push(n.at, format!("note: {}", n.text), &format!("admin:{}", n.by));
        }
    }
    for entry in audit {
        let who = match entry.who.as_str() {
            "cli" | "sync" | "sweep" => entry.who.clone(),
            name => format!("admin:{name}"),
        };
        let reason = entry
            .reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default();
        push(entry.at, format!("{}{reason}", entry.action), &who);
    }
    events.sort_by_key(|e| e.at);
    events
}

