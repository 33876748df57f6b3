//! What `status` and `explain` print: plain text for people, the same
//! facts as JSON for scripts.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use pastdue::timeline::{plain_money as money, Event};
use pastdue::BillingState;
use serde_json::Value;

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
    let _ = writeln!(
        out,
        "reach       time zone {}, billing phone {}",
        view["timezone"].as_str().unwrap_or("— (notify.timezone)"),
        view["billing_phone"].as_str().unwrap_or("—")
    );
    for (i, w) in view["waiting"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "{}{} by {} goes out at {} (send window)",
            if i == 0 { "waiting     " } else { "            " },
            w["stage"].as_str().unwrap_or("?"),
            w["channel"].as_str().unwrap_or("?"),
            w["at"].as_str().unwrap_or("?"),
        );
    }
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
                + &n["refused"].as_str().map(|r| format!(" — refused: {r}")).unwrap_or_default()
        );
    }
    out
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
