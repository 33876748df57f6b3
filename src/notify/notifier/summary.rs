//! What a stage notice says to machines: the signed webhook's body, and
//! the team's chat message.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::account::AccountId;
use crate::standing::Standing;
use crate::state::BillingState;

pub(super) fn payload(id: &str, account: &AccountId, standing: &Standing, state: &BillingState, pay_url: Option<&str>, created: i64) -> Vec<u8> {
    let body = json!({
        "type": "pastdue.stage_entered",
        "id": id,
        "account": account,
        "stage": standing.stage().name(),
        "action": standing.action().as_str(),
        "past_due_since": standing.past_due_since(),
        "next_stage": standing.next().map(|(s, _)| s.name()),
        "next_stage_at": standing.next().map(|(_, t)| t),
        "amount_due": standing.amount_due().map_or(0, |(a, _)| a),
        "currency": standing.amount_due().map(|(_, c)| c),
        "pay_url": pay_url,
        // When Stripe tries the oldest invoice again, when it says.
        "next_payment_attempt": state.oldest_unpaid().and_then(|(_, i)| i.next_attempt).map(|t| t.to_rfc3339()),
        "contact_email": state.contact_email(),
        "created": created,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}


/// `<`, `>` and `&` as Slack's mrkdwn wants them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Text that came from outside (an account id, an invoice number) as a
/// code span: no chat renders a mention (`@here`), a link or emphasis
/// inside one.
fn literal(text: &str) -> String {
    format!("`{}`", escape(&text.replace('`', "'")))
}

/// The team's chat message about `account` entering its stage: a
/// Slack-compatible incoming-webhook body (`text`, which Mattermost and
/// Rocket.Chat show, and `blocks`), with the internal summary — days late,
/// amount, the stage and the next one, the reminders already sent — and a
/// link to the console's account page when `console` (its base) is known.
#[cfg_attr(not(feature = "notify-webhook"), allow(dead_code))]
pub(super) fn chat_message(account: &AccountId, standing: &Standing, state: &BillingState, console: Option<&str>, now: DateTime<Utc>) -> Vec<u8> {
    let days = standing.past_due_since().map_or(0, |t| (now - t).num_days().max(0));
    let amount = standing.amount_due().map_or_else(|| "nothing".to_owned(), |(a, c)| crate::money::format_money(a, c));
    let invoice = state.oldest_unpaid().and_then(|(_, i)| i.number.as_deref()).map(|n| format!(" (invoice {})", literal(n))).unwrap_or_default();
    let next = match standing.next() {
        Some((stage, at)) => format!("; next: {} on {}", stage.name(), at.format("%Y-%m-%d")),
        None => String::new(),
    };
    let episode = standing.past_due_since();
    let sent: Vec<String> = state
        .notices()
        .iter()
        .filter(|n| Some(n.episode) == episode && !crate::state::is_internal(&n.channel) && n.refused.is_none())
        .map(|n| format!("{} by {} on {}", n.stage, n.channel, n.at.format("%Y-%m-%d")))
        .collect();
    let sent = if sent.is_empty() { "none yet".to_owned() } else { escape(&sent.join(", ")) };
    let account_text = literal(account.as_str());
    let headline = format!("{account_text} is {days} days late on *{amount}*{invoice}: now *{}* (the app: {}){next}.", standing.stage().name(), standing.action().as_str());
    let url = console.map(|base| format!("{base}{}", percent_encoding::utf8_percent_encode(account.as_str(), percent_encoding::NON_ALPHANUMERIC)));
    let text = match &url {
        Some(u) => format!("{headline} Reminders sent: {sent}. <{u}|Open in the console>"),
        None => format!("{headline} Reminders sent: {sent}."),
    };
    let mut blocks = vec![
        // verbatim: Slack links and mentions nothing it was not told to.
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": headline, "verbatim": true } }),
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("Reminders sent: {sent}"), "verbatim": true }] }),
    ];
    if let Some(u) = &url {
        blocks.push(json!({ "type": "actions", "elements": [{ "type": "button", "text": { "type": "plain_text", "text": "Open in the console" }, "url": u }] }));
    }
    serde_json::to_vec(&json!({ "text": text, "blocks": blocks })).unwrap_or_default()
}

/// Checks `[[notify.chat]]`: https URLs (http only on loopback), stages of
/// the ladders, at most 8 entries; errors name the key.
pub(super) fn check_chat(config: &crate::notify::NotifyConfig, policy: &crate::policy::Policy) -> Result<(), crate::settings::ConfigError> {
    use crate::settings::ConfigError;
    if config.chat.len() > super::CHAT.len() {
        return Err(ConfigError::key("notify.chat", format!("has {} entries; at most {}", config.chat.len(), super::CHAT.len())));
    }
    let names = policy.stage_names();
    for (i, chat) in config.chat.iter().enumerate() {
        let url = chat.url.expose();
        if !(url.starts_with("http") && crate::href::is_safe(url)) {
            return Err(ConfigError::key(format!("notify.chat[{i}].url"), "must be an https URL (http only on loopback)"));
        }
        if let Some(stage) = chat.stages.iter().find(|s| !names.iter().any(|n| n == *s)) {
            return Err(ConfigError::key(format!("notify.chat[{i}].stages"), format!("{stage:?} is not a stage of any ladder ({})", names.join(", "))));
        }
    }
    Ok(())
}
