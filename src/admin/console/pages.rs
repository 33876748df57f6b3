//! The console's pages: overview, accounts, one account (with the preview
//! of what its customer sees), the audit log, sign-in. Every page reads
//! from indexes and the recovery counters, never by scanning accounts.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use serde::Deserialize;
use serde_json::{json, Value};

use super::charts::{bars, Bar};
use super::*;
use crate::recovery::Range;
use crate::standing::Action;
use crate::store::{Index, Lookup};

/// The signed-in operator, if any: without one, a page answers
/// [`to_login`] and never shows data.
fn signed_in(admin: &Admin, headers: &HeaderMap) -> Option<Operator> {
    admin.console.sessions.operator(headers, admin.clock.now())
}

/// The way to the sign-in page.
pub(super) fn to_login(admin: &Admin) -> Response {
    see_other(&format!("{}/login", ui(admin)))
}

pub(super) async fn to_overview(State(admin): State<Arc<Admin>>) -> Response {
    see_other(&format!("{}/", ui(&admin)))
}

pub(super) async fn login_page(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if admin.console.sessions.operator(&headers, admin.clock.now()).is_some() {
        return see_other(&format!("{}/", ui(&admin)));
    }
    render(&admin, StatusCode::OK, "login.html", None, json!({ "header": admin.console.sessions.by_header() }))
}

/// Accounts owing now by ladder and stage, the last 90 days' recovery as
/// charts and tables, the week's agenda, today's calls, the latest audit.
pub(super) async fn overview(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let Some(op) = signed_in(&admin, &headers) else { return to_login(&admin) };
    match overview_data(&admin).await {
        Ok(ctx) => render(&admin, StatusCode::OK, "overview.html", Some(&op), ctx),
        Err(f) => refused(&admin, f.status, Some(&op), "The overview is unavailable", &f.message, &format!("{}/", ui(&admin))),
    }
}

async fn overview_data(admin: &Arc<Admin>) -> Result<Value, Failure> {
    let now = admin.clock.now();
    let store = admin.store.as_ref();
    // At risk now, per ladder (the last full sweep's count).
    let at_risk = store.at_risk().await.map_err(unavailable)?;
    let order = admin.policy.stage_names();
    let mut risk_rows = Vec::new();
    if let Some(a) = &at_risk {
        for (ladder, stages) in &a.ladders {
            let mut stages: Vec<_> = stages.iter().collect();
            stages.sort_by_key(|(s, _)| order.iter().position(|o| o == s).unwrap_or(usize::MAX));
            for (stage, r) in stages {
                risk_rows.push(json!({ "ladder": ladder, "stage": stage, "accounts": r.accounts, "amount": money_of(&json!(r.amount)) }));
            }
        }
    }
    // Recovery, the last 90 days.
    let range = Range::parse(None, None, now).map_err(|e| bad(e.field, e.to_string()))?;
    let report = crate::store::report(store, range, None).await.map_err(unavailable)?;
    let rate_bars: Vec<Bar> = report
        .by_month
        .iter()
        .map(|m| {
            let rate = if m.started > 0 { m.paid as f64 / m.started as f64 } else { 0.0 };
            Bar { label: m.month.clone(), value: rate, shown: format!("{:.0} % ({} of {})", rate * 100.0, m.paid, m.started) }
        })
        .collect();
    let mut stages: Vec<_> = report.paid_at_stage.iter().collect();
    stages.sort_by_key(|(s, _)| order.iter().position(|o| o == s).unwrap_or(usize::MAX));
    let stage_bars: Vec<Bar> = stages.iter().map(|(s, f)| Bar { label: (*s).clone(), value: f.count as f64, shown: f.count.to_string() }).collect();
    let dtp = &report.days_to_pay;
    let dtp_bars: Vec<Bar> = [("median", dtp.p50), ("9 in 10", dtp.p90)]
        .into_iter()
        .filter_map(|(l, d)| Some(Bar { label: l.into(), value: d?, shown: format!("{:.1} days", d?) }))
        .collect();
    let charts = json!([
        { "svg": bars("rate", "Recovery rate by month", "Share of the debt episodes started each month that were paid.", &rate_bars), "caption": "Recovery rate by month" },
        { "svg": bars("stage", "Paid at stage", "How many paid episodes ended at each stage.", &stage_bars), "caption": "Paid at stage" },
        { "svg": bars("days", "Days to pay", "Days from the start of a debt to its payment: the median and the 90th percentile.", &dtp_bars), "caption": "Days to pay" },
    ]);
    let months: Vec<Value> = report
        .by_month
        .iter()
        .map(|m| json!({ "month": m.month, "started": m.started, "paid": m.paid, "rate": if m.started > 0 { format!("{:.0} %", m.paid as f64 / m.started as f64 * 100.0) } else { "—".into() }, "recovered": money_of(&json!(m.recovered)) }))
        .collect();
    let paid_at: Vec<Value> = stages.iter().map(|(s, f)| json!({ "stage": s, "count": f.count, "amount": money_of(&json!(f.amount)) })).collect();
    let summary = json!({
        "started": report.episodes.started, "paid": report.episodes.paid, "voided": report.episodes.voided, "open": report.episodes.open,
        "rate": report.recovery_rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0)),
        "recovered": money_of(&json!(report.recovered)), "outstanding": money_of(&json!(report.outstanding)),
        "p50": dtp.p50.map_or("—".into(), |d| format!("{d:.1} days")), "p90": dtp.p90.map_or("—".into(), |d| format!("{d:.1} days")),
    });
    // The week ahead, as the agenda API answers it.
    let query: AgendaQuery = request(json!({ "limit": "30" }))?;
    let agenda = json_of(agenda(State(admin.clone()), Query(query)).await).await?;
    let agenda_rows: Vec<Value> = agenda["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let what = match i["event"].as_str() {
                Some("stage") => format!("enters {}", i["stage"].as_str().unwrap_or("?")),
                Some("due") => format!("payment due: {}", money_of(&json!({ i["currency"].as_str().unwrap_or("xxx"): i["amount_due"] }))),
                Some("override_expires") => "override ends".into(),
                Some("promise_due") => "promise to pay falls due".into(),
                Some("notice") => format!("{} notice goes out by {} (held for the send window)", i["stage"].as_str().unwrap_or("?"), i["channel"].as_str().unwrap_or("?")),
                other => other.unwrap_or("?").to_owned(),
            };
            json!({ "at": when(&i["at"]), "account": i["account"], "what": what })
        })
        .collect();
    let calls = todays_calls(admin, now).await?;
    let audit = store.audit_log(None, None, 10).await.map_err(unavailable)?;
    let audit_rows: Vec<Value> = audit.iter().map(|e| json!({ "at": e.at.format("%Y-%m-%d %H:%M UTC").to_string(), "who": e.who, "action": e.action, "account": e.account, "reason": e.reason })).collect();
    Ok(json!({
        "nav": "overview",
        "at_risk": risk_rows,
        "at_risk_as_of": at_risk.as_ref().and_then(|a| a.as_of).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        "range": format!("{} to {}", report.from.format("%Y-%m-%d"), (report.to - TimeDelta::days(1)).format("%Y-%m-%d")),
        "summary": summary, "charts": charts, "months": months, "paid_at": paid_at,
        "agenda": agenda_rows, "agenda_truncated": agenda["truncated"],
        "calls": calls, "audit": audit_rows,
    }))
}

/// Good collections practice: call a week after the due date. Accounts
/// 7 to 30 days late with no note or promise since their debt started,
/// most overdue first (at most 20; from the debt index, oldest 200).
async fn todays_calls(admin: &Admin, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Value>, Failure> {
    let (lo, hi) = ((now - TimeDelta::days(30)).timestamp(), (now - TimeDelta::days(7)).timestamp());
    let found = admin.store.scan_index(Index::Debt, lo, hi, None, 200).await.map_err(unavailable)?;
    let mut calls = Vec::new();
    for entry in found {
        let Some(state) = admin.store.load(&entry.account).await.map_err(unavailable)? else { continue };
        let Some(since) = state.past_due_since().filter(|s| s.timestamp() == entry.score) else { continue };
        if state.notes().iter().any(|n| n.at >= since) || state.promises().iter().any(|p| p.at >= since) {
            continue;
        }
        let standing = admin.policy.evaluate(Some(&state), now);
        calls.push(json!({
            "account": entry.account.as_str(),
            "days": (now - since).num_days(),
            "stage": standing.stage().name(),
            "amount": standing.amount_due().map_or("—".into(), |(a, c)| crate::money::format_money(a, c)),
            "email": state.contact_email(),
        }));
        if calls.len() == 20 {
            break;
        }
    }
    Ok(calls)
}

#[derive(Deserialize)]
pub(super) struct AccountsQuery {
    q: Option<String>,
    stage: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
}

/// Search by account id (prefix), Stripe customer id or e-mail; or list a
/// stage, most overdue first (or by amount within the page), 50 a page.
pub(super) async fn accounts(State(admin): State<Arc<Admin>>, headers: HeaderMap, Query(q): Query<AccountsQuery>) -> Response {
    let Some(op) = signed_in(&admin, &headers) else { return to_login(&admin) };
    let mut stages = admin.policy.stage_names();
    stages.push("canceled");
    let mut ctx = json!({ "nav": "accounts", "stages": stages, "q": q.q, "stage": q.stage, "sort": q.sort.as_deref().unwrap_or("days") });
    let result = match (q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()), q.stage.as_deref().filter(|s| !s.is_empty())) {
        (Some(term), _) => search(&admin, term).await.map(|rows| json!({ "rows": rows, "searched": term })),
        (None, Some(stage)) => list_stage(&admin, stage, q.cursor.as_deref(), q.sort.as_deref() == Some("amount")).await,
        (None, None) => Ok(json!({})),
    };
    match result {
        Ok(v) => {
            if let (Value::Object(c), Value::Object(v)) = (&mut ctx, v) {
                c.extend(v);
            }
            render(&admin, StatusCode::OK, "accounts.html", Some(&op), ctx)
        }
        Err(f) => {
            ctx["error"] = json!(f.message);
            render(&admin, f.status, "accounts.html", Some(&op), ctx)
        }
    }
}

/// One row of an accounts table, from the account's state.
async fn row(admin: &Admin, account: &crate::account::AccountId, matched: Option<String>) -> Result<Option<Value>, Failure> {
    let Some(state) = admin.store.load(account).await.map_err(unavailable)? else { return Ok(None) };
    let standing = admin.policy.evaluate(Some(&state), admin.clock.now());
    Ok(Some(json!({
        "account": account.as_str(),
        "stage": standing.stage().name(),
        "days": standing.past_due_since().map(|s| (admin.clock.now() - s).num_days()),
        "amount": standing.amount_due().map_or("—".into(), |(a, c)| crate::money::format_money(a, c)),
        "amount_minor": standing.amount_due().map_or(0, |(a, _)| a),
        "email": state.contact_email(),
        "matched": matched,
    })))
}

async fn search(admin: &Admin, term: &str) -> Result<Vec<Value>, Failure> {
    let mut found: Vec<(crate::account::AccountId, Option<String>)> = Vec::new();
    if term.starts_with("cus_") {
        crate::store::check_customer(term).map_err(|e| bad("q", e.to_string()))?;
        if let Some(a) = admin.store.customer_account(term).await.map_err(unavailable)? {
            found.push((a, Some(format!("Stripe customer {term}"))));
        }
    } else if term.contains('@') {
        for (member, a) in admin.store.lookup(Lookup::Email, &term.to_lowercase(), 50).await.map_err(unavailable)? {
            found.push((a, member.split_once('\n').map(|(e, _)| e.to_owned())));
        }
    } else {
        for (_, a) in admin.store.lookup(Lookup::Account, term, 50).await.map_err(unavailable)? {
            found.push((a, None));
        }
    }
    found.dedup_by(|a, b| a.0 == b.0);
    let mut rows = Vec::new();
    for (a, matched) in found {
        rows.extend(row(admin, &a, matched).await?);
    }
    Ok(rows)
}

async fn list_stage(admin: &Arc<Admin>, stage: &str, cursor: Option<&str>, by_amount: bool) -> Result<Value, Failure> {
    let query: ListQuery = request(json!({ "stage": stage, "limit": "50", "cursor": cursor }))?;
    let page = json_of(list_accounts(State(admin.clone()), Query(query)).await).await?;
    let mut rows = Vec::new();
    for listed in page["accounts"].as_array().into_iter().flatten() {
        if let Some(a) = listed["account"].as_str().and_then(|a| crate::account::AccountId::new(a).ok()) {
            rows.extend(row(admin, &a, None).await?);
        }
    }
    if by_amount {
        rows.sort_by_key(|r| std::cmp::Reverse(r["amount_minor"].as_i64().unwrap_or(0)));
    }
    Ok(json!({ "rows": rows, "listed": stage, "next_cursor": page["next_cursor"] }))
}

#[derive(Deserialize)]
pub(super) struct AccountQuery {
    done: Option<String>,
}

/// What a finished action says (fixed texts: a link cannot make the
/// console say anything else).
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "override" => "Override set. The gate follows it at once.",
        "cleared" => "Override cleared: the ladder decides again.",
        "promise" => "Promise recorded: the ladder waits at its first stage until the date.",
        "ladder" => "Ladder choice saved.",
        "contacts" => "Contacts saved.",
        "contacts-unchanged" => "Nothing to save: the contacts are as they were.",
        "note" => "Note added.",
        "verified-paid" => "Stripe says it is paid: the debt is settled and the gate lets the customer in.",
        "verified-owed" => "Stripe says it is still owed.",
        "verified-unchanged" => "Stripe was not asked: nothing is owed, or it was asked less than 10 seconds ago.",
        _ => return None,
    })
}

/// One account: standing, ladder and why, timeline, contacts, notes,
/// episodes, the preview of what its customer sees, and the actions.
pub(super) async fn account(State(admin): State<Arc<Admin>>, headers: HeaderMap, Path(account): Path<String>, Query(q): Query<AccountQuery>) -> Response {
    let Some(op) = signed_in(&admin, &headers) else { return to_login(&admin) };
    let done = q.done.as_deref().and_then(done_message);
    account_page(&admin, &op, &account, StatusCode::OK, done, None).await
}

/// The account page, with a message: `done` after an action, `error` (and
/// `status`) when one was refused.
pub(super) async fn account_page(admin: &Arc<Admin>, op: &Operator, account: &str, status: StatusCode, done: Option<&str>, error: Option<&Failure>) -> Response {
    let back = format!("{}/accounts", ui(admin));
    let id = match parse_account(account) {
        Ok(id) => id,
        Err(f) => return refused(admin, StatusCode::BAD_REQUEST, Some(op), "No such account", &f.message, &back),
    };
    let state = match admin.store.load(&id).await {
        Ok(s) => s,
        Err(e) => return refused(admin, StatusCode::SERVICE_UNAVAILABLE, Some(op), "The store is unavailable", &e.to_string(), &back),
    };
    let view = match json_of(account_view(admin, &id, state.as_ref()).await).await {
        Ok(v) => v,
        Err(f) => return refused(admin, f.status, Some(op), "The store is unavailable", &f.message, &back),
    };
    let audit = admin.store.audit_log(Some(&id), None, 50).await.unwrap_or_default();
    let now = admin.clock.now();
    let timeline = crate::timeline::timeline(state.as_ref(), &audit, admin.policy.ladder_for(state.as_ref(), now), now);
    let mut timeline: Vec<Value> = timeline.iter().map(|e| json!({ "at": e.at.format("%Y-%m-%d %H:%M UTC").to_string(), "what": e.what, "source": e.source, "ahead": e.ahead })).collect();
    timeline.reverse();
    let episodes: Vec<Value> = view["episodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| json!({
            "started": when(&e["started_at"]), "ended": if e["ended_at"].is_null() { "open".to_owned() } else { when(&e["ended_at"]) },
            "ladder": e["ladder"], "stage": e["stage_at_end"], "outcome": e["outcome"],
            "paid": money_of(&e["amount_paid"]), "voided": money_of(&e["amount_voided"]), "outstanding": money_of(&e["outstanding"]),
        }))
        .collect();
    let notes: Vec<Value> = view["notes"].as_array().into_iter().flatten().rev().map(|n| json!({ "at": when(&n["at"]), "by": n["by"], "text": n["text"] })).collect();
    let mut ladders: Vec<&str> = admin.policy.names().collect();
    ladders.sort_unstable();
    let amount = view["currency"].as_str().map(|c| money_of(&json!({ c: view["amount_due"] }))).unwrap_or_else(|| "—".into());
    // Every owed invoice, from each provider, with its own pay link.
    let mut owed: Vec<_> = state.as_ref().map(|s| s.unpaid().iter().collect()).unwrap_or_default();
    owed.sort_by_key(|(_, i)| i.since);
    let invoices: Vec<Value> = owed
        .into_iter()
        .map(|(key, i)| json!({
            "key": key, "amount": crate::money::format_money(i.amount_due, i.currency), "number": i.number,
            "since": i.since.format("%Y-%m-%d").to_string(),
            "pay_url": i.hosted_url.as_deref().and_then(|u| crate::href::checked(u, "invoice")),
        }))
        .collect();
    let ctx = json!({
        "nav": "accounts",
        "account": id.as_str(),
        "invoices": invoices,
        "v": view,
        "amount": amount,
        "since": when(&view["since"]),
        "past_due_since": when(&view["past_due_since"]),
        "next_stage_at": when(&view["next_stage_at"]),
        "override_until": when(&view["override"]["until"]),
        "timeline": timeline,
        "episodes": episodes,
        "notes": notes,
        "ladders": ladders,
        "verify": admin.console.verifier.is_some(),
        "done": done,
        "error": error.map(|f| f.message.clone()),
        "error_field": error.and_then(|f| f.field.clone()),
    });
    render(admin, status, "account.html", Some(op), ctx)
}

/// Exactly what the customer sees, rendered by the gate's own page: the
/// 402 page when the stage blocks (or blocks writes), else the banner the
/// app would show, in the customer's language.
pub(super) async fn preview(State(admin): State<Arc<Admin>>, headers: HeaderMap, Path(account): Path<String>) -> Response {
    if signed_in(&admin, &headers).is_none() {
        return to_login(&admin);
    }
    let Ok(id) = parse_account(&account) else { return StatusCode::BAD_REQUEST.into_response() };
    let state = match admin.store.load(&id).await {
        Ok(s) => s,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let now = admin.clock.now();
    let standing = admin.policy.evaluate(state.as_ref(), now);
    let page = &admin.console.page;
    let html = match standing.action() {
        Action::Block | Action::ReadOnly => page.render(id.as_str(), &standing, state.as_ref(), None),
        Action::Notice | Action::Warn => {
            let banner = page.banner(id.as_str(), &standing, state.as_ref(), None).unwrap_or_default();
            format!("<!doctype html><html lang=\"{}\"><meta charset=\"utf-8\"><title>Banner preview</title><body style=\"margin:0;font:16px system-ui,sans-serif\">{banner}<p style=\"padding:1rem;color:#5b6475\">The app goes on below the banner.</p></body></html>", state.as_ref().and_then(|s| s.language()).map_or("en", |l| if l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') { l } else { "en" }))
        }
        Action::Allow => "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>No page</title><p style=\"font:16px system-ui,sans-serif;padding:1rem\">Nothing: this customer uses the app as usual.</p></html>".to_owned(),
    };
    let mut res = (StatusCode::OK, html).into_response();
    res.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/html; charset=utf-8"));
    secure(res, true)
}

#[derive(Deserialize)]
pub(super) struct AuditFilter {
    account: Option<String>,
    who: Option<String>,
    cursor: Option<String>,
}

/// The audit log, newest first, filtered by account and operator.
pub(super) async fn audit(State(admin): State<Arc<Admin>>, headers: HeaderMap, Query(q): Query<AuditFilter>) -> Response {
    let Some(op) = signed_in(&admin, &headers) else { return to_login(&admin) };
    let account = q.account.as_deref().map(str::trim).filter(|a| !a.is_empty());
    let who = q.who.as_deref().map(str::trim).filter(|w| !w.is_empty());
    let mut ctx = json!({ "nav": "audit", "account": account, "who": who });
    // Up to 10 pages of the log are read to fill one page for an operator.
    let mut rows = Vec::new();
    let mut cursor = q.cursor.clone().filter(|c| !c.is_empty());
    let mut next = None;
    for _ in 0..10 {
        let query: AuditQuery = match request(json!({ "account": account, "limit": "100", "cursor": cursor })) {
            Ok(q) => q,
            Err(f) => return refused(&admin, StatusCode::BAD_REQUEST, Some(&op), "Bad filter", &f.message, &format!("{}/audit", ui(&admin))),
        };
        let page = match json_of(audit_log(State(admin.clone()), Query(query)).await).await {
            Ok(p) => p,
            Err(f) => {
                ctx["error"] = json!(f.message);
                return render(&admin, f.status, "audit.html", Some(&op), ctx);
            }
        };
        for e in page["entries"].as_array().into_iter().flatten() {
            if who.is_some_and(|w| e["who"].as_str() != Some(w)) {
                continue;
            }
            rows.push(json!({ "at": when(&e["at"]), "who": e["who"], "action": e["action"], "account": e["account"], "reason": e["reason"], "after": e["after"].to_string() }));
        }
        next = page["next_cursor"].as_str().map(str::to_owned);
        if rows.len() >= 50 || next.is_none() {
            break;
        }
        cursor = next.clone();
    }
    ctx["rows"] = json!(rows);
    ctx["next_cursor"] = json!(next);
    render(&admin, StatusCode::OK, "audit.html", Some(&op), ctx)
}
