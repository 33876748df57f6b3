//! What `status` and `explain` print: plain text for people, the same
//! facts as JSON for scripts.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pastdue::store::AuditEntry;
use pastdue::{BillingState, Ladder};
use serde::Serialize;
use serde_json::Value;

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

fn money(amount: i64, currency: &str, digits: u32) -> String {
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

fn date(t: Option<&Value>) -> String {
    t.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|| "—".to_owned())
}

/// `text` with every control character but the line break shown as an
/// escape (`\u{1b}`), and bidirectional overrides too: what a webhook
/// payload stored can never drive the operator's terminal.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n') || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `pastdue status`, for people.
pub fn status_text(view: &Value, state: Option<&BillingState>) -> String {
    let s = |k: &str| {
        view.get(k)
            .and_then(Value::as_str)
            .unwrap_or("—")
            .to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "account     {}{}",
        s("account"),
        if view["known"] == true {
            ""
        } else {
            "  (never heard of)"
        }
    );
    let _ = writeln!(
        out,
        "stage       {} (action {}, because {})",
        s("stage"),
        s("action"),
        s("reason")
    );
    let _ = writeln!(out, "since       {}", date(view.get("since")));
    let ladder = &view["ladder"];
    if let (Some(name), Some(source)) = (ladder["name"].as_str(), ladder["source"].as_str()) {
        let _ = writeln!(out, "ladder      {name} ({source}: {})", ladder["why"].as_str().unwrap_or(""));
    }
    for p in view["promises"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "promise     to pay by {} — {} ({})",
            date(p.get("until")),
            p["status"].as_str().unwrap_or("?"),
            p["reason"].as_str().unwrap_or("")
        );
    }
    let owed = match (
        state.and_then(BillingState::amount_due),
        view["amount_due"].as_i64(),
    ) {
        (Some((amount, currency)), _) => money(amount, currency.as_str(), currency.minor_digits()),
        _ => "nothing".to_owned(),
    };
    let _ = writeln!(
        out,
        "owes        {owed}{}",
        view.get("past_due_since")
            .filter(|v| !v.is_null())
            .map(|t| format!(" since {}", date(Some(t))))
            .unwrap_or_default()
    );
    let next = match view["next_stage"].as_str() {
        Some(next) => format!("{next} on {}", date(view.get("next_stage_at"))),
        None => "—".to_owned(),
    };
    let _ = writeln!(out, "next        {next}");
    let o = &view["override"];
    let override_line = if o.is_null() {
        "none".to_owned()
    } else {
        format!(
            "{} until {} by {} ({}){}",
            o["mode"].as_str().unwrap_or("?"),
            if o["until"].is_null() {
                "cleared".to_owned()
            } else {
                date(o.get("until"))
            },
            o["by"].as_str().unwrap_or("?"),
            o["reason"].as_str().unwrap_or(""),
            if view["override_active"] == true {
                ""
            } else {
                " — expired"
            }
        )
    };
    let _ = writeln!(out, "override    {override_line}");
    let contact = |role: &str| view["contacts"][role].as_str().unwrap_or("—").to_owned();
    let _ = writeln!(out, "contacts    billing {}, accountant {}, account manager {}", contact("billing"), contact("accountant"), contact("account_manager"));
    let customers: Vec<&str> = view["customers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "customers   {}",
        if customers.is_empty() {
            "—".to_owned()
        } else {
            customers.join(", ")
        }
    );
    for (i, due) in view["upcoming_dues"].as_array().into_iter().flatten().enumerate() {
        let amount = match (due["amount_due"].as_i64(), due["currency"].as_str().and_then(pastdue::state::Currency::new)) {
            (Some(a), Some(c)) => money(a, c.as_str(), c.minor_digits()),
            _ => "?".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}{amount} due on {} ({}){}",
            if i == 0 { "dues        " } else { "            " },
            date(due.get("due_at")),
            due["number"].as_str().or(due["invoice"].as_str()).unwrap_or("?"),
            match due["reminder_to"].as_str() {
                Some(to) => format!(", reminder to {to}"),
                None => " — no billing e-mail known: no e-mail reminder can be sent".to_owned(),
            }
        );
    }
    let notices = view["notices"].as_array().cloned().unwrap_or_default();
    if notices.is_empty() {
        let _ = writeln!(out, "notices     none sent");
    }
    for (i, n) in notices.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}{} by {} on {}{}",
            if i == 0 {
                "notices     "
            } else {
                "            "
            },
            n["stage"].as_str().unwrap_or("?"),
            n["channel"].as_str().unwrap_or("?"),
            date(n.get("at")),
            n["to"]
                .as_str()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default()
        );
    }
    out
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
            let amount = money(
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
                        .map(|o| format!(": {}", money(o.amount, o.currency.as_str(), o.currency.minor_digits())))
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
                    money(
                        due.amount_due,
                        due.currency.as_str(),
                        due.currency.minor_digits()
                    )
                ),
                "stripe",
            );
        }
        for n in s.notices() {
            push(
                n.at,
                format!(
                    "{} notice sent by {}{}",
                    n.stage,
                    n.channel,
                    n.to.as_deref()
                        .map(|t| format!(" to {t}"))
                        .unwrap_or_default()
                ),
                "notifier",
            );
        }
        for p in s.promises() {
            push(p.at, format!("promise to pay by {} recorded by {}: {}", p.until.format("%Y-%m-%d %H:%M UTC"), p.by, p.reason), "admin");
            let outcome = match s.promise_status(p, now) {
                pastdue::state::PromiseStatus::Pending => "falls due (the ladder waits at its first stage until then)",
                pastdue::state::PromiseStatus::Kept => "kept",
                pastdue::state::PromiseStatus::Broken => "broken: the ladder stands where time has put it",
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

/// `pastdue explain`, for people.
pub fn timeline_text(account: &pastdue::AccountId, events: &[Event]) -> String {
    let mut out = format!("timeline of {account} (times in UTC; source in brackets)\n");
    if events.is_empty() {
        out.push_str("  nothing recorded\n");
    }
    let mut now_marked = false;
    for e in events {
        if e.ahead && !now_marked {
            out.push_str("  ---- now ----\n");
            now_marked = true;
        }
        let _ = writeln!(
            out,
            "  {}  {} [{}]",
            e.at.format("%Y-%m-%d %H:%M"),
            e.what,
            e.source
        );
    }
    out
}
