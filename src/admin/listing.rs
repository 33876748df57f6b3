//! Reading many: accounts by stage, the agenda, the audit log; and sync.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::policy::Policy;
use crate::standing::Ladder;
use crate::state::BillingState;
use crate::store::{AuditEntry, Index, IndexEntry, NEVER};

use super::*;

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The stage to list (a ladder stage, `canceled`, or the block-override stage).
    stage: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
}

/// One account in a listing.
#[derive(Serialize, ToSchema)]
pub(super) struct Listed {
    account: String,
    stage: String,
    since: Option<DateTime<Utc>>,
    past_due_since: Option<DateTime<Utc>>,
    amount_due: i64,
    currency: Option<String>,
}

/// A page of accounts.
#[derive(Serialize, ToSchema)]
pub(super) struct AccountPage {
    accounts: Vec<Listed>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

pub(super) fn parse_limit(raw: Option<&str>) -> Result<usize, Failure> {
    match raw {
        None => Ok(50),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(bad("limit", format!("limit must be a whole number from 1 to {MAX_PAGE}"))),
        },
    }
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AgendaQuery {
    /// RFC 3339 start of the window (default: now).
    from: Option<String>,
    /// RFC 3339 end of the window (default: 7 days after `from`; at most 366 days after it).
    to: Option<String>,
    /// Most items, 1-100 (default 50).
    limit: Option<String>,
}

/// One thing that happens in the window.
#[derive(Serialize, ToSchema)]
pub(super) struct AgendaItem {
    at: DateTime<Utc>,
    account: String,
    /// `stage` (the account enters `stage`), `due` (a payment comes due),
    /// `override_expires`, `promise_due` (a promise to pay comes due), or
    /// `notice` (a notice held for the send window goes out on `channel`).
    event: String,
    /// The stage entered, for `stage` events.
    stage: Option<String>,
    /// The stage's action, for `stage` events.
    action: Option<String>,
    /// For `due` events, in minor units.
    amount_due: Option<i64>,
    currency: Option<String>,
    /// For `notice` events: `email`, `sms`, `webhook`, `chat`, ….
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
}

/// What happens between `from` and `to`, ordered by time.
#[derive(Serialize, ToSchema)]
pub(super) struct Agenda {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<AgendaItem>,
    /// Whether more items fell in the window than `limit`.
    truncated: bool,
}

#[utoipa::path(get, path = "/admin/agenda", tag = "accounts", params(AgendaQuery),
    responses((status = 200, description = "what happens in the window, ordered by time", body = Agenda), (status = 400, description = "bad from, to or limit; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn agenda(State(admin): State<Arc<Admin>>, Query(q): Query<AgendaQuery>) -> Reply {
    let time = |field: &'static str, raw: Option<&str>| -> Result<Option<DateTime<Utc>>, Failure> {
        match raw.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| crate::state::sane_time(t.timestamp()).is_some())
                .map(Some)
                .ok_or_else(|| bad(field, format!("{field} must be an RFC 3339 time between 2000 and 2100"))),
        }
    };
    let from = time("from", q.from.as_deref())?.unwrap_or_else(|| admin.clock.now());
    let to = time("to", q.to.as_deref())?.unwrap_or(from + chrono::TimeDelta::days(7));
    if to <= from || to - from > chrono::TimeDelta::days(366) {
        return Err(bad("to", "to must lie after from, at most 366 days later"));
    }
    let limit = parse_limit(q.limit.as_deref())?;
    let (lo, hi) = (from.timestamp(), to.timestamp());
    let mut items = Vec::new();
    let mut truncated = false;
    // Stage changes: an account enters a stage `after` its debt started, so
    // those entering it in the window started in the window moved back.
    for stage in admin.policy.stages() {
        let after = i64::try_from(stage.after().as_secs()).unwrap_or(i64::MAX);
        let found = admin.store.scan_index(Index::Debt, lo.saturating_sub(after), hi.saturating_sub(after), None, limit + 1).await.map_err(unavailable)?;
        truncated |= found.len() > limit;
        for entry in found.into_iter().take(limit) {
            // The index may be stale: the state decides.
            let state = admin.store.load(&entry.account).await.map_err(unavailable)?;
            if state.as_ref().and_then(BillingState::past_due_since).map(|t| t.timestamp()) != Some(entry.score) {
                continue;
            }
            // Only the stages of the account's own ladder.
            if !admin.policy.ladder_for(state.as_ref(), from).stages().iter().any(|s| s.same(stage)) {
                continue;
            }
            let at = DateTime::from_timestamp(entry.score.saturating_add(after), 0).unwrap_or(to);
            items.push(AgendaItem { at, account: entry.account.to_string(), event: "stage".into(), stage: Some(stage.name().to_owned()), action: Some(stage.action().as_str().to_owned()), amount_due: None, currency: None, channel: None });
        }
    }
    // Payments coming due (the index holds each account's earliest due).
    let found = admin.store.scan_index(Index::Upcoming, lo, hi, None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let Some(state) = admin.store.load(&entry.account).await.map_err(unavailable)? else { continue };
        for due in state.upcoming().values().filter(|d| (from..=to).contains(&d.due)) {
            items.push(AgendaItem { at: due.due, account: entry.account.to_string(), event: "due".into(), stage: None, action: None, amount_due: Some(due.amount_due), currency: Some(due.currency.to_string()), channel: None });
        }
    }
    // Overrides that lapse.
    let found = admin.store.scan_index(Index::Override, lo, hi.min(NEVER - 1), None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let at = DateTime::from_timestamp(entry.score, 0).unwrap_or(to);
        items.push(AgendaItem { at, account: entry.account.to_string(), event: "override_expires".into(), stage: None, action: None, amount_due: None, currency: None, channel: None });
    }
    // Promises to pay that come due.
    let found = admin.store.scan_index(Index::Promise, lo, hi, None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let at = DateTime::from_timestamp(entry.score, 0).unwrap_or(to);
        items.push(AgendaItem { at, account: entry.account.to_string(), event: "promise_due".into(), stage: None, action: None, amount_due: None, currency: None, channel: None });
    }
    // Notices held for a send window (the index holds each account's
    // earliest, which may lie before the window; the state lists them all).
    let found = admin.store.scan_index(Index::Waiting, 0, hi, None, limit + 1).await.map_err(unavailable)?;
    truncated |= found.len() > limit;
    for entry in found.into_iter().take(limit) {
        let Some(state) = admin.store.load(&entry.account).await.map_err(unavailable)? else { continue };
        for w in state.waiting().iter().filter(|w| (from..=to).contains(&w.at)) {
            items.push(AgendaItem { at: w.at, account: entry.account.to_string(), event: "notice".into(), stage: Some(w.stage.clone()), action: None, amount_due: None, currency: None, channel: Some(w.channel.clone()) });
        }
    }
    items.sort_by(|a, b| (a.at, &a.account).cmp(&(b.at, &b.account)));
    truncated |= items.len() > limit;
    items.truncate(limit);
    Ok(Json(Agenda { from, to, items, truncated }).into_response())
}

/// Where accounts of `stage` may be found: index score ranges. `None` for
/// a stage that cannot be listed (`active` is everyone else).
pub(super) fn sources(policy: &Policy, stage: &str, now: DateTime<Utc>) -> Option<Vec<(Index, i64, i64)>> {
    let mut out = Vec::new();
    for (_, ladder) in policy.ladders() {
        for range in ladder_sources(ladder, stage, now) {
            if !out.contains(&range) {
                out.push(range);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// [`sources`] on one ladder.
pub(super) fn ladder_sources(ladder: &Ladder, stage: &str, now: DateTime<Utc>) -> Vec<(Index, i64, i64)> {
    let now_s = now.timestamp();
    let stages = ladder.stages();
    let mut out = Vec::new();
    if let Some(i) = stages.iter().position(|s| s.name() == stage) {
        // In stage i  <=>  after(i) <= now - past_due_since < after(i + 1):
        // a score range that moves with the clock, so accounts whose stage
        // changed only because time passed are found where they are now.
        // A debt stamped in the future (clocks disagree) counts as just
        // started, so a stage starting at 0 takes every later score too.
        let secs = |s: &crate::standing::Stage| i64::try_from(s.after().as_secs()).unwrap_or(i64::MAX);
        let after = secs(&stages[i]);
        let max = if after == 0 { NEVER } else { now_s.saturating_sub(after) };
        let min = stages.get(i + 1).map_or(0, |next| now_s.saturating_sub(secs(next)).saturating_add(1));
        out.push((Index::Debt, min, max));
    }
    if stages.first().is_some_and(|s| s.name() == stage) {
        // Promises in force hold a debt at the first stage, however old.
        out.push((Index::Promise, now_s.saturating_add(1), NEVER));
    }
    if stage == ladder.override_block_stage().name() {
        // Overrides in force (expiring after now) can block any account.
        out.push((Index::Override, now_s.saturating_add(1), NEVER));
    }
    if stage == ladder.canceled().name() {
        out.push((Index::Ended, 0, NEVER));
    }
    out
}

#[utoipa::path(get, path = "/admin/accounts", tag = "accounts", params(ListQuery),
    responses((status = 200, description = "accounts in that stage, and the next cursor", body = AccountPage), (status = 400, description = "bad stage, limit or cursor"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn list_accounts(State(admin): State<Arc<Admin>>, Query(q): Query<ListQuery>) -> Reply {
    let stage = q.stage.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| bad("stage", "stage is required, e.g. ?stage=suspended"))?;
    let limit = parse_limit(q.limit.as_deref())?;
    let now = admin.clock.now();
    let Some(sources) = sources(&admin.policy, stage, now) else {
        let mut names = admin.policy.stage_names();
        names.push("canceled");
        return Err(bad("stage", format!("stage {stage:?} cannot be listed; use one of {}", names.join(", "))));
    };
    // Cursor: "<source number>|<index cursor>".
    let (mut source, mut after) = match q.cursor.as_deref() {
        None | Some("") => (0usize, None),
        Some(c) => match c.split_once('|').and_then(|(n, rest)| Some((n.parse().ok()?, rest))) {
            Some((n, rest)) if n < sources.len() && (rest.is_empty() || IndexEntry::parse(rest).is_some()) => {
                (n, Some(rest.to_owned()).filter(|r| !r.is_empty()))
            }
            _ => return Err(bad("cursor", "cursor is not one this API returned")),
        },
    };
    let mut accounts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while source < sources.len() && accounts.len() < limit {
        let (index, min, max) = sources[source];
        let batch = admin.store.scan_index(index, min, max, after.as_deref(), limit).await.map_err(unavailable)?;
        if batch.is_empty() {
            source += 1;
            after = None;
            continue;
        }
        for entry in &batch {
            after = Some(entry.cursor());
            // Verify against the state: the index may be stale, and an
            // override may move the account elsewhere.
            let state = admin.store.load(&entry.account).await.map_err(unavailable)?;
            let standing = admin.policy.evaluate(state.as_ref(), now);
            if standing.stage().name() == stage && seen.insert(entry.account.clone()) {
                accounts.push(Listed {
                    account: entry.account.to_string(),
                    stage: stage.to_owned(),
                    since: standing.since(),
                    past_due_since: standing.past_due_since(),
                    amount_due: standing.amount_due().map_or(0, |(a, _)| a),
                    currency: standing.amount_due().map(|(_, c)| c.to_string()),
                });
                if accounts.len() == limit {
                    break;
                }
            }
        }
    }
    let next_cursor = (source < sources.len()).then(|| format!("{source}|{}", after.unwrap_or_default()));
    Ok(Json(AccountPage { accounts, next_cursor }).into_response())
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only this account's entries (default: the global log).
    account: Option<String>,
    /// Page size, 1-100 (default 50).
    limit: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditPage {
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "audit entries, newest first, and the next cursor", body = AuditPage), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn audit_log(State(admin): State<Arc<Admin>>, Query(q): Query<AuditQuery>) -> Reply {
    let account = q.account.as_deref().filter(|a| !a.is_empty()).map(parse_account).transpose()?;
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| c.len() > 64 || !c.bytes().all(|b| b.is_ascii_digit() || b == b'-')) {
        return Err(bad("cursor", "cursor is not one this API returned"));
    }
    let entries = admin.store.audit_log(account.as_ref(), cursor, limit).await.map_err(unavailable)?;
    let next_cursor = (entries.len() == limit).then(|| entries.last().map(|e| e.id.clone())).flatten();
    Ok(Json(AuditPage { entries, next_cursor }).into_response())
}

#[utoipa::path(post, path = "/admin/sync", tag = "stripe",
    responses((status = 200, description = "the sync report"), (status = 401, description = "missing or wrong bearer token"), (status = 501, description = "no Stripe API key configured"), (status = 503, description = "the store or the Stripe API is unavailable; retry")))]
pub(super) async fn sync(State(admin): State<Arc<Admin>>, Extension(Caller(who)): Extension<Caller>) -> Reply {
    if admin.mapper.api().is_none() {
        let message = "sync needs a Stripe API key: set stripe.api_key (PASTDUE_STRIPE__API_KEY)".into();
        return Err(Failure { status: StatusCode::NOT_IMPLEMENTED, message, field: None });
    }
    match crate::stripe::sync(&admin.mapper).await {
        Ok(report) => {
            let entry = AuditEntry {
                id: String::new(),
                at: admin.clock.now(),
                who,
                action: "sync".into(),
                account: None,
                before: Value::Null,
                after: serde_json::to_value(&report).unwrap_or_default(),
                reason: None,
            };
            if let Err(e) = admin.store.audit(&entry).await {
                tracing::error!(error = %e, "audit entry for sync not written");
            }
            Ok(Json(report).into_response())
        }
        Err(e) => Err(Failure { status: StatusCode::SERVICE_UNAVAILABLE, message: e.to_string(), field: None }),
    }
}
