//! `pastdue report`: the recovery figures as a readable table.

use std::fmt::Write as _;

use pastdue::money::format_money;
use pastdue::recovery::{Amounts, Report};
use pastdue::Policy;

/// Amounts in every currency, `€3,920.00 + $120.00`; `-` for none.
fn money(amounts: &Amounts) -> String {
    if amounts.is_empty() {
        return "-".into();
    }
    amounts.iter().map(|(c, a)| format_money(*a, *c)).collect::<Vec<_>>().join(" + ")
}

fn days(d: Option<f64>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{d:.1} days"))
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 { word.to_owned() } else { format!("{word}s") }
}

/// Stage names in ladder order (the ladders' stages first, then any other
/// name the figures mention).
fn ordered<'a>(policy: &Policy, names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let order = policy.stage_names();
    let mut names: Vec<&String> = names.collect();
    names.sort_by_key(|n| (order.iter().position(|o| o == n).unwrap_or(usize::MAX), n.as_str()));
    names
}

/// The report as text, one figure per line, tables for stages and months.
pub(crate) fn text(r: &Report, policy: &Policy) -> String {
    let mut out = String::new();
    let last_day = r.to - chrono::TimeDelta::days(1);
    let _ = writeln!(
        out,
        "Recovery of the debt episodes that started {} to {} (UTC), ladder: {}",
        r.from.format("%Y-%m-%d"),
        last_day.format("%Y-%m-%d"),
        r.ladder.as_deref().unwrap_or("all")
    );
    let e = &r.episodes;
    let _ = writeln!(out, "  episodes       {} started: {} paid, {} voided, {} still open", e.started, e.paid, e.voided, e.open);
    let rate = r.recovery_rate.map_or_else(|| "-".into(), |x| format!("{:.1} %", x * 100.0));
    let _ = writeln!(out, "  recovery rate  {rate} (paid / started)");
    let _ = writeln!(out, "  recovered      {}", money(&r.recovered));
    let _ = writeln!(out, "  outstanding    {} (owed in the episodes still open)", money(&r.outstanding));
    let _ = writeln!(out, "  days to pay    p50 {}, p90 {}", days(r.days_to_pay.p50), days(r.days_to_pay.p90));

    let _ = writeln!(out, "\nPaid at stage (the stage each paid episode ended at)");
    if r.paid_at_stage.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for stage in ordered(policy, r.paid_at_stage.keys()) {
        let s = &r.paid_at_stage[stage];
        let _ = writeln!(out, "  {stage:<14} {:>6} {}  {}", s.count, plural(s.count, "episode"), money(&s.amount));
    }

    match r.at_risk_as_of {
        Some(at) => {
            let _ = writeln!(out, "\nAt risk now (counted {} UTC)", at.format("%Y-%m-%d %H:%M"));
        }
        None => {
            let _ = writeln!(out, "\nAt risk now: not counted yet (the notifier's full sweep counts it)");
        }
    }
    if r.at_risk_as_of.is_some() && r.at_risk.is_empty() {
        let _ = writeln!(out, "  no account owes");
    }
    for stage in ordered(policy, r.at_risk.keys()) {
        let s = &r.at_risk[stage];
        let _ = writeln!(out, "  {stage:<14} {:>6} {}  {}", s.accounts, plural(s.accounts as i64, "account"), money(&s.amount));
    }

    let _ = writeln!(out, "\nBy month        started   paid  recovered");
    for m in &r.by_month {
        let _ = writeln!(out, "  {:<12} {:>8} {:>6}  {}", m.month, m.started, m.paid, money(&m.recovered));
    }
    out
}
