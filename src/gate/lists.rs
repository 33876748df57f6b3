//! What the please-pay page lists, as its template reads them: the
//! reminders already sent, and every owed invoice when there are several.

use serde::Serialize;

use crate::i18n::Language;
use crate::standing::Standing;
use crate::state::BillingState;

/// One owed invoice on the page: "€49.00 · invoice 2026-0042", and where
/// to pay it (its provider's own page, when it gave one).
#[derive(Serialize)]
pub(super) struct InvoiceView {
    amount: String,
    number: Option<String>,
    pay_url: Option<String>,
}

/// One reminder already sent, in the page's language.
#[derive(Serialize)]
pub(super) struct NoticeView<'a> {
    date: String,
    /// "3 November 2026, to billing@…" in the page's language.
    text_to: Option<String>,
    stage: &'a str,
    channel: &'a str,
    to: Option<&'a str>,
}

/// The messages this debt sent to people (e-mails, text messages), each
/// named by what it was (`kind_of` a stage); webhook records only when
/// nothing was e-mailed or texted; never the team's own (the account
/// manager's summary, chat), nor one the receiver refused.
pub(super) fn notices<'a>(state: Option<&'a BillingState>, standing: &Standing, lang: &Language, kind_of: impl Fn(&str) -> Option<&'static str>) -> Vec<NoticeView<'a>> {
    let Some(s) = state else { return Vec::new() };
    let episode = |n: &&crate::state::NoticeSent| Some(n.episode) == standing.past_due_since() && !crate::state::is_internal(&n.channel) && n.refused.is_none();
    let mailed = s.notices().iter().filter(episode).any(|n| n.to.is_some());
    s.notices()
        .iter()
        .filter(episode)
        .filter(|n| n.to.is_some() || !mailed)
        .map(|n| {
            let date = match kind_of(&n.stage) {
                Some(kind) => format!("{} — {}", lang.date(n.at), lang.text(kind, &[])),
                None => lang.date(n.at),
            };
            let text_to = n.to.as_deref().map(|to| match n.channel.as_str() {
                // "3 December 2026 — payment notice, text message to …0000"
                "sms" => format!("{date}, {}", lang.text("kind_sms", &[("to", &masked_phone(to))])),
                _ => lang.text("reminder_to", &[("date", &date), ("to", to)]),
            });
            let to = if n.channel == "sms" { None } else { n.to.as_deref() };
            NoticeView { date, text_to, stage: &n.stage, channel: &n.channel, to }
        })
        .collect()
}

/// A phone number as the page shows it: its last four digits (`…0000`).
fn masked_phone(phone: &str) -> String {
    let tail: String = phone.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// Several owed invoices (say one at Stripe, one at Paddle): each with its
/// own pay link, oldest first. One (or none): nothing to list, the page
/// says it already.
pub(super) fn invoices(state: Option<&BillingState>, lang: &Language) -> Vec<InvoiceView> {
    let Some(unpaid) = state.map(BillingState::unpaid).filter(|u| u.len() > 1) else { return Vec::new() };
    let mut list: Vec<_> = unpaid.values().collect();
    list.sort_by_key(|i| i.since);
    list.into_iter()
        .map(|i| InvoiceView {
            amount: lang.money(i.amount_due, i.currency),
            number: i.number.as_deref().map(|n| lang.text("invoice", &[("number", n)])),
            pay_url: i.hosted_url.as_deref().and_then(|u| crate::href::checked(u, "invoice")).map(str::to_owned),
        })
        .collect()
}
