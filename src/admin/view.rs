//! An account as the admin API shows it.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::account::AccountId;
use crate::policy::Policy;
use crate::state::{BillingState, ContactRole, Override};

use super::*;

/// An account as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    account: String,
    /// Whether the store has heard of the account at all.
    known: bool,
    stage: String,
    action: String,
    /// Why: `good_standing`, `unknown`, `debt`, `canceled`, `paused`, `override`.
    reason: String,
    since: Option<DateTime<Utc>>,
    past_due_since: Option<DateTime<Utc>>,
    amount_due: i64,
    currency: Option<String>,
    pay_url: Option<String>,
    next_stage: Option<String>,
    next_stage_at: Option<DateTime<Utc>>,
    #[serde(rename = "override")]
    #[schema(value_type = Option<Object>)]
    override_: Option<Override>,
    override_active: bool,
    #[schema(value_type = Vec<Object>)]
    notices: Vec<crate::state::NoticeSent>,
    pub(super) customers: Vec<String>,
    /// Customers linked here by an admin that Stripe metadata names for
    /// another account (the admin link stays).
    #[schema(value_type = Vec<Object>)]
    link_conflicts: Vec<crate::state::LinkConflict>,
    #[schema(value_type = Object)]
    unpaid_invoices: Value,
    /// Invoices coming due (not owed yet), soonest first: `invoice`,
    /// `number`, `due_at`, `amount_due`, `currency`, `pay_url`, and
    /// `reminder_to`: the billing e-mail the reminder before the due date
    /// goes to (`null`: no address known, so no e-mail reminder can go).
    #[schema(value_type = Vec<Object>)]
    upcoming_dues: Vec<Value>,
    #[schema(value_type = Object)]
    subscriptions: Value,
    contact_email: Option<String>,
    /// Who hears about this account: `billing` (the invoice's e-mail),
    /// `accountant`, `account_manager`; each `null` when unknown.
    #[schema(value_type = Object)]
    contacts: Value,
    /// The account's IANA time zone (`null`: `notify.timezone`), and who
    /// set it (`timezone_source`: `admin` or `stripe`).
    timezone: Option<String>,
    #[schema(value_type = Option<String>)]
    timezone_source: Option<crate::state::ContactSource>,
    /// Where text messages go (E.164), and who set it.
    billing_phone: Option<String>,
    #[schema(value_type = Option<String>)]
    billing_phone_source: Option<crate::state::ContactSource>,
    /// Notices held for the send window, soonest first: `at` (when it goes
    /// out), `episode`, `stage`, `channel`.
    #[schema(value_type = Vec<Object>)]
    waiting: Vec<crate::state::Waiting>,
    /// The ladder the account is on and why (`name`, `source`: `admin`,
    /// `plan`, `repeat` or `default`, `why`, the earlier `episodes`, the
    /// `broken_promises` that made a repeat offender, `skipped` choices).
    #[schema(value_type = Object)]
    ladder: Value,
    /// Promises to pay, oldest first, each with its `status`: `pending`,
    /// `kept` or `broken`.
    #[schema(value_type = Vec<Object>)]
    promises: Vec<Value>,
    /// The date of the newest promise made during the debt owed now.
    promised_until: Option<DateTime<Utc>>,
    /// Operators' notes, oldest first: `at`, `by`, `text` (plain text).
    #[schema(value_type = Vec<Object>)]
    notes: Vec<crate::state::Note>,
    /// The account's debt episodes, oldest first, as the recovery figures
    /// count them (the last one may be open: no `ended_at`).
    episodes: Vec<crate::recovery::EpisodeRecord>,
    updated_at: Option<DateTime<Utc>>,
}

impl AccountView {
    /// The view of `account` (its `state`, `None` when the store has never
    /// heard of it) on `ladder` at `now`: what `GET /admin/accounts/{a}`
    /// answers and `pastdue status --json` prints.
    pub fn of(account: &AccountId, state: Option<&BillingState>, policy: &Policy, now: DateTime<Utc>) -> Self {
        view(account, state, policy, now)
    }
}

/// The invoices `state` knows are coming due after `now`, soonest first.
pub(super) fn upcoming_dues(state: &BillingState, now: DateTime<Utc>) -> Vec<Value> {
    let mut dues: Vec<_> = state.upcoming().iter().filter(|(_, d)| d.due > now).collect();
    dues.sort_by_key(|(_, d)| d.due);
    dues.into_iter()
        .map(|(key, d)| {
            json!({
                "invoice": key,
                "number": d.number,
                "due_at": d.due,
                "amount_due": d.amount_due,
                "currency": d.currency,
                "pay_url": d.hosted_url,
                "reminder_to": state.contact_email(),
            })
        })
        .collect()
}

pub(super) fn view(account: &AccountId, state: Option<&BillingState>, policy: &Policy, now: DateTime<Utc>) -> AccountView {
    let standing = policy.evaluate(state, now);
    let empty = BillingState::default();
    let s = state.unwrap_or(&empty);
    AccountView {
        account: account.to_string(),
        known: state.is_some(),
        stage: standing.stage().name().to_owned(),
        action: standing.action().as_str().to_owned(),
        reason: standing.reason().as_str().to_owned(),
        since: standing.since(),
        past_due_since: standing.past_due_since(),
        amount_due: standing.amount_due().map_or(0, |(a, _)| a),
        currency: standing.amount_due().map(|(_, c)| c.to_string()),
        pay_url: standing.pay_url().map(str::to_owned),
        next_stage: standing.next().map(|(st, _)| st.name().to_owned()),
        next_stage_at: standing.next().map(|(_, t)| t),
        override_active: s.override_().is_some_and(|o| o.is_active(now)),
        override_: s.override_().cloned(),
        notices: s.notices().to_vec(),
        customers: s.customers().iter().cloned().collect(),
        link_conflicts: s.link_conflicts().to_vec(),
        unpaid_invoices: serde_json::to_value(s.unpaid()).unwrap_or_default(),
        upcoming_dues: upcoming_dues(s, now),
        subscriptions: serde_json::to_value(s.subscriptions()).unwrap_or_default(),
        contact_email: s.contact_email().map(str::to_owned),
        contacts: json!({
            "billing": s.contact_email(),
            "accountant": s.contact(ContactRole::Accountant),
            "account_manager": s.contact(ContactRole::AccountManager),
        }),
        timezone: s.timezone().map(|z| z.value.clone()),
        timezone_source: s.timezone().map(|z| z.source),
        billing_phone: s.billing_phone().map(|p| p.value.clone()),
        billing_phone_source: s.billing_phone().map(|p| p.source),
        waiting: s.waiting().to_vec(),
        ladder: serde_json::to_value(policy.explain(state, now)).unwrap_or_default(),
        promises: s
            .promises()
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["status"] = json!(s.promise_status(p, now));
                v
            })
            .collect(),
        promised_until: standing.promised(),
        notes: s.notes().to_vec(),
        episodes: crate::recovery::Recorder::new(policy.clone()).records(s),
        updated_at: s.updated_at(),
    }
}

#[utoipa::path(get, path = "/admin/accounts/{account}", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad account id"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn view_account(State(admin): State<Arc<Admin>>, Path(account): Path<String>) -> Reply {
    let account = parse_account(&account)?;
    let state = admin.store.load(&account).await.map_err(unavailable)?;
    account_view(&admin, &account, state.as_ref()).await
}
