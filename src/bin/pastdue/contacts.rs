//! `pastdue contacts`: how to reach an account, set as the admin API's
//! `PUT /admin/accounts/{account}/contacts` sets it (and audited as "cli").

use pastdue::state::{Change, ContactRole, ContactSource};
use pastdue::store::{AuditDraft, Store};
use pastdue::{AccountId, BillingState};

use crate::Failed;

/// The changes the flags ask for (`none` removes a value); every value
/// checked, the flag at fault named.
pub(crate) fn changes(accountant: Option<String>, account_manager: Option<String>, timezone: Option<String>, billing_phone: Option<String>) -> Result<Vec<Change>, Failed> {
    let value = |raw: Option<String>| raw.map(|v| Some(v.trim().to_owned()).filter(|v| !v.eq_ignore_ascii_case("none")));
    let mut changes = Vec::new();
    for (flag, role, raw) in [("--accountant", ContactRole::Accountant, accountant), ("--account-manager", ContactRole::AccountManager, account_manager)] {
        if let Some(email) = value(raw) {
            if email.as_deref().is_some_and(|e| !pastdue::state::is_valid_email(e)) {
                return Err(Failed(2, format!("{flag} must be an e-mail address (name@example.com) or none")));
            }
            changes.push(Change::Contact { role, email, source: ContactSource::Admin });
        }
    }
    if let Some(zone) = value(timezone) {
        if zone.as_deref().is_some_and(|z| pastdue::notify::parse_zone(z).is_none()) {
            return Err(Failed(2, "--timezone must be an IANA time zone (Europe/Riga, America/New_York) or none".into()));
        }
        changes.push(Change::Timezone { zone, source: ContactSource::Admin });
    }
    if let Some(phone) = value(billing_phone) {
        if phone.as_deref().is_some_and(|p| !pastdue::state::is_e164(p)) {
            return Err(Failed(2, "--billing-phone must be an E.164 number (+37120000000) or none".into()));
        }
        changes.push(Change::BillingPhone { phone, source: ContactSource::Admin });
    }
    if changes.is_empty() {
        return Err(Failed(2, "give --accountant, --account-manager, --timezone and/or --billing-phone (a value, or none to remove it)".into()));
    }
    Ok(changes)
}

/// Applies `changes`, audited as "cli"; the state after.
pub(crate) async fn apply(store: &dyn Store, account: &AccountId, changes: &[Change]) -> Result<BillingState, Failed> {
    let draft = AuditDraft { who: "cli", action: "contacts.set", reason: None, pick: BillingState::reach, extra: None };
    let (applied, _) = store.apply_audited(account, changes, &draft).await?;
    Ok(applied.state().cloned().unwrap_or_default())
}
