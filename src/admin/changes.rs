//! The changes an operator makes: overrides, ladder choice, promises, notes, contacts, customer links.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::state::{BillingState, Change, ContactRole, ContactSource, Override, OverrideMode};
use crate::store::{AuditDraft, LinkSource, Linked};

use super::*;

/// The body of `PUT …/override`.
#[derive(Deserialize, ToSchema)]
pub(super) struct OverrideRequest {
    /// `allow` or `block` (required).
    #[schema(value_type = String, required = true)]
    mode: Option<ModeField>,
    /// When it ends: RFC 3339 (`2026-12-24T09:00:00Z`) or a duration
    /// from now (`7d`, `12h`); null for none.
    #[schema(value_type = Option<String>)]
    until: Option<String>,
    /// Why (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
}

/// `mode` as the body spells it.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ModeField {
    Allow,
    Block,
}

pub(super) fn parse_override(body: OverrideRequest, who: &str, now: DateTime<Utc>) -> Result<Override, Failure> {
    let mode = match body.mode {
        Some(ModeField::Allow) => OverrideMode::Allow,
        Some(ModeField::Block) => OverrideMode::Block,
        None => return Err(bad("mode", "mode must be \"allow\" or \"block\"")),
    };
    let until = body.until.as_deref().map(|raw| crate::clock::parse_until(raw, now).map_err(|e| bad("until", e.to_string()))).transpose()?;
    let reason = body.reason.as_deref().map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(bad("reason", "reason is required"));
    }
    Ok(Override { mode, until, reason: reason.to_owned(), by: who.to_owned(), at: now })
}

#[utoipa::path(put, path = "/admin/accounts/{account}/override", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = OverrideRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn set_override(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<OverrideRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let o = parse_override(body, &who, admin.clock.now())?;
    let reason = o.reason.clone();
    change_and_audit(&admin, &account, Change::SetOverride(o), draft(&who, "override.set", Some(&reason), pick_override)).await
}

#[utoipa::path(delete, path = "/admin/accounts/{account}/override", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn remove_override(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
) -> Reply {
    let account = parse_account(&account)?;
    change_and_audit(&admin, &account, Change::ClearOverride, draft(&who, "override.removed", None, pick_override)).await
}

/// The body of `PUT …/policy`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyRequest {
    /// The ladder's name (`default` or a `[ladders.<name>]`); `null` hands
    /// the choice back to the plan, the repeat rule and `default`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, required = true)]
    ladder: Option<Option<String>>,
    /// Why (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
}

pub(super) fn pick_policy(s: &BillingState) -> Value {
    serde_json::to_value(s.ladder_choice()).unwrap_or_default()
}

#[utoipa::path(put, path = "/admin/accounts/{account}/policy", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = PolicyRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input (an unknown ladder); `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn set_policy(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<PolicyRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let Some(ladder) = body.ladder else {
        return Err(bad("ladder", "ladder is required: a ladder's name, or null to clear the choice"));
    };
    let reason = required_reason(body.reason.as_deref())?;
    if let Some(name) = &ladder {
        if admin.policy.ladder(name).is_none() {
            let known = admin.policy.names().collect::<Vec<_>>().join(", ");
            return Err(bad("ladder", format!("{name:?} is not a ladder (known: {known})")));
        }
    }
    let (change, action) = match ladder {
        Some(ladder) => {
            let choice = crate::state::LadderChoice { ladder, reason: reason.clone(), by: who.clone(), at: admin.clock.now() };
            (Change::Ladder(Some(choice)), "policy.set")
        }
        None => (Change::Ladder(None), "policy.cleared"),
    };
    change_and_audit(&admin, &account, change, draft(&who, action, Some(&reason), pick_policy)).await
}

/// The body of `POST …/promise`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PromiseRequest {
    /// The date the customer says they will have paid by (required, in the
    /// future): RFC 3339 or a duration from now (`7d`).
    #[schema(value_type = String, required = true)]
    until: Option<String>,
    /// Why, or what was said (required, shown in the audit log).
    #[schema(value_type = String, required = true)]
    reason: Option<String>,
    /// Record it even though a promise was broken within
    /// `policy.promise_cooldown`.
    #[serde(default)]
    force: bool,
}

pub(super) fn pick_promises(s: &BillingState) -> Value {
    serde_json::to_value(s.promises()).unwrap_or_default()
}

#[utoipa::path(post, path = "/admin/accounts/{account}/promise", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = PromiseRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token"), (status = 409, description = "nothing is owed, or a promise was broken within `policy.promise_cooldown` (send `\"force\": true` to record it anyway)")))]
pub(super) async fn add_promise(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<PromiseRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let now = admin.clock.now();
    let raw = body.until.as_deref().ok_or_else(|| bad("until", "until is required: RFC 3339 (2026-12-24T09:00:00Z) or a duration from now (7d)"))?;
    let until = crate::clock::parse_until(raw, now).map_err(|e| bad("until", e.to_string()))?;
    let reason = required_reason(body.reason.as_deref())?;
    let state = admin.store.load(&account).await.map_err(unavailable)?;
    match admin.policy.may_promise(state.as_ref(), until, body.force, now) {
        Ok(()) => {}
        Err(crate::policy::PromiseRefused::NotFuture) => return Err(bad("until", "until is in the past")),
        Err(refused) => return Err(Failure { status: StatusCode::CONFLICT, message: refused.to_string(), field: None }),
    }
    let promise = crate::state::Promise { at: now, until, reason: reason.clone(), by: who.clone() };
    let action = if body.force { "promise.forced" } else { "promise.added" };
    change_and_audit(&admin, &account, Change::Promise(promise), draft(&who, action, Some(&reason), pick_promises)).await
}

/// The body of `POST …/notes`.
#[derive(Deserialize, ToSchema)]
pub(super) struct NoteRequest {
    /// What the note says: plain text, 1-2000 characters (never rendered as HTML).
    #[schema(value_type = String, required = true)]
    text: Option<String>,
}

/// Longest note, in characters.
pub(super) const MAX_NOTE_CHARS: usize = 2_000;

pub(super) fn pick_notes(s: &BillingState) -> Value {
    serde_json::to_value(s.notes().last()).unwrap_or_default()
}

#[utoipa::path(post, path = "/admin/accounts/{account}/notes", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = NoteRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn add_note(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<NoteRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let text = body.text.as_deref().map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Err(bad("text", "text is required"));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(bad("text", format!("text may hold at most {MAX_NOTE_CHARS} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("text", "text may not hold control characters other than line breaks and tabs"));
    }
    // Line breaks as the web sends them (CRLF) are kept as plain \n.
    let text = text.replace("\r\n", "\n");
    let note = crate::state::Note { at: admin.clock.now(), by: who.clone(), text };
    change_and_audit(&admin, &account, Change::Note(note), draft(&who, "note.added", None, pick_notes)).await
}

/// The body of `PUT …/contacts`: each role an address, `null` to remove
/// it, or left out to keep it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ContactsRequest {
    /// The customer's accountant.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    accountant: Option<Option<String>>,
    /// Your own staff member for this customer.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    account_manager: Option<Option<String>>,
    /// The account's IANA time zone (`Europe/Riga`): its messages keep to
    /// the send window there.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    timezone: Option<Option<String>>,
    /// Where text messages go: an E.164 number (`+37120000000`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    billing_phone: Option<Option<String>>,
}

/// A field that is present (`null` included): `Some(value)`.
pub(super) fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

pub(super) fn pick_contacts(s: &BillingState) -> Value {
    s.reach()
}

#[utoipa::path(put, path = "/admin/accounts/{account}/contacts", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = ContactsRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn set_contacts(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<ContactsRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let mut changes = Vec::new();
    for (role, value) in [(ContactRole::Accountant, body.accountant), (ContactRole::AccountManager, body.account_manager)] {
        let Some(email) = value else { continue };
        let email = email.map(|e| e.trim().to_owned());
        if let Some(e) = &email {
            if !crate::state::is_valid_email(e) {
                return Err(bad(role.as_str(), format!("{} must be an e-mail address (name@example.com) or null", role.as_str())));
            }
        }
        changes.push(Change::Contact { role, email, source: ContactSource::Admin });
    }
    if let Some(zone) = body.timezone {
        let zone = zone.map(|z| z.trim().to_owned());
        if let Some(z) = &zone {
            if crate::notify::parse_zone(z).is_none() {
                return Err(bad("timezone", "timezone must be an IANA time zone (\"Europe/Riga\", \"America/New_York\") or null"));
            }
        }
        changes.push(Change::Timezone { zone, source: ContactSource::Admin });
    }
    if let Some(phone) = body.billing_phone {
        let phone = phone.map(|p| p.trim().to_owned());
        if let Some(p) = &phone {
            if !crate::state::is_e164(p) {
                return Err(bad("billing_phone", "billing_phone must be an E.164 number (\"+37120000000\") or null"));
            }
        }
        changes.push(Change::BillingPhone { phone, source: ContactSource::Admin });
    }
    if changes.is_empty() {
        return Err(bad("body", "give accountant, account_manager, timezone and/or billing_phone (a value, or null to remove)"));
    }
    changes_and_audit(&admin, &account, &changes, draft(&who, "contacts.set", None, pick_contacts)).await
}

/// The body of `POST …/customers`.
#[derive(Deserialize, ToSchema)]
pub(super) struct LinkRequest {
    /// A Stripe customer id, `cus_…` (required).
    #[schema(value_type = String)]
    customer: Option<String>,
}

#[utoipa::path(post, path = "/admin/accounts/{account}/customers", tag = "accounts",
    params(("account" = String, Path, description = "account id")),
    request_body = LinkRequest,
    responses((status = 200, description = "the account: state and computed standing", body = AccountView), (status = 400, description = "bad input; `field` names it"), (status = 401, description = "missing or wrong bearer token")))]
pub(super) async fn link_customer(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(who)): Extension<Caller>,
    Path(account): Path<String>,
    AdminJson(body): AdminJson<LinkRequest>,
) -> Reply {
    let account = parse_account(&account)?;
    let customer = body.customer.as_deref().unwrap_or("");
    let valid = customer.starts_with("cus_")
        && customer.len() <= 255
        && customer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(bad("customer", "customer must be a Stripe customer id (cus_…)"));
    }
    // The link moves first (it decides whose customer this is); then both
    // accounts' copies follow, each with its audit entry.
    let linked = admin.store.link_customer(customer, &account, LinkSource::Admin).await.map_err(unavailable)?;
    let moved_from = match &linked {
        Linked::Moved { from } => Some(from.clone()),
        _ => None,
    };
    if let Some(from) = &moved_from {
        let away = AuditDraft { extra: Some(("moved_to", account.as_str())), ..draft(&who, "customer.moved", None, pick_customers) };
        admin.store.apply_audited(from, &[Change::UnlinkCustomer(customer.to_owned())], &away).await.map_err(unavailable)?;
    }
    let here = AuditDraft {
        extra: moved_from.as_ref().map(|f| ("moved_from", f.as_str())),
        ..draft(&who, "customer.linked", None, pick_customers)
    };
    change_and_audit(&admin, &account, Change::LinkCustomer(customer.to_owned()), here).await
}
