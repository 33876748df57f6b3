//! Notices by e-mail (SMTP, multipart text and HTML).

use super::*;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::MultiPart;
use lettre::{AsyncTransport, Message};

/// The HTML part of an e-mail: the plain text's paragraphs, escaped, with
/// the paragraph holding the pay link as one button. No remote images, no
/// tracking.
fn html_body(text: &str, pay_url: &str, button: &str, lang: &str) -> String {
    use minijinja::HtmlEscape;
    let mut html = format!("<!doctype html>\n<html lang=\"{}\"><body style=\"font-family:sans-serif;line-height:1.5;max-width:36em\">\n", HtmlEscape(lang));
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !pay_url.is_empty() && para.contains(pay_url) {
            // The sentence around the link, then the link as a button.
            let around = para.replace(pay_url, "");
            let around = around.trim().trim_end_matches([':', '.', ' ']).trim();
            if !around.is_empty() {
                html += &format!("<p>{}.</p>\n", HtmlEscape(around));
            }
            html += &format!(
                "<p><a href=\"{}\" style=\"display:inline-block;padding:0.6em 1.2em;background:#1a56db;color:#fff;text-decoration:none;border-radius:4px\">{}</a></p>\n",
                HtmlEscape(pay_url),
                HtmlEscape(button)
            );
            continue;
        }
        let lines: Vec<String> = para.lines().map(|l| HtmlEscape(l).to_string()).collect();
        html += &format!("<p>{}</p>\n", lines.join("<br>\n"));
    }
    html + "</body></html>\n"
}

impl Notifier {
    pub(super) fn has_smtp(&self) -> bool {
        self.inner.smtp.is_some()
    }

    /// Sends the stage's e-mail, retrying like the webhook: the customer's
    /// message in the account's language, or (`internal`, for the account
    /// manager) a summary in the operator's default language. Its
    /// `Message-ID` derives from the notice id, so a mail system can drop a
    /// repeat.
    pub(super) async fn email(&self, mail: StageMail<'_>) -> bool {
        let StageMail { account, id, to, standing, state, pay_url, internal, now } = mail;
        let inner = &self.inner;
        let Ok(to) = to.parse::<Mailbox>() else {
            tracing::warn!(to, "contact is not a valid e-mail address; no e-mail notice");
            return false;
        };
        let lang = if internal { inner.languages.choose(None, None) } else { inner.languages.choose(state.language(), None) };
        let kind = match standing.action() {
            _ if internal => "internal",
            Action::Notice => "notice",
            Action::Warn => "warn",
            _ => "block",
        };
        let amount = standing.amount_due().map(|(a, c)| lang.money(a, c)).unwrap_or_default();
        let date = standing.next().map(|(_, t)| lang.date(t)).unwrap_or_default();
        let pay_url = pay_url.unwrap_or("");
        // The facts every customer message states, in the `{retry}` slot
        // before the pay line: the invoice and its due date, when Stripe
        // tries the card again, and on suspension the earlier reminders.
        let mut facts = String::new();
        if let Some((id, i)) = state.oldest_unpaid() {
            let number = i.number.as_deref().unwrap_or(id);
            facts += &lang.text("email_due", &[("number", number), ("due", lang.date(i.since).as_str())]);
            facts += "\n";
            if let Some(t) = i.next_attempt.filter(|t| *t > now) {
                facts += &lang.text("retry", &[("retry_date", lang.date(t).as_str())]);
                facts += "\n";
            }
        }
        if kind == "block" {
            let earlier: Vec<String> = state
                .notices()
                .iter()
                .filter(|n| Some(n.episode) == standing.past_due_since() && n.channel == EMAIL)
                .map(|n| format!("{} ({})", lang.date(n.at), n.stage))
                .collect();
            if !earlier.is_empty() {
                facts += &lang.text("email_earlier", &[("list", earlier.join(", ").as_str())]);
                facts += "\n";
            }
        }
        if !facts.is_empty() {
            facts += "\n";
        }
        let retry = facts;
        // For the internal summary: who, how late, which invoice, what next,
        // and the reminders the customer already got.
        let days = standing.past_due_since().map(|t| (now - t).num_days().max(0)).unwrap_or_default().to_string();
        let invoice = state.oldest_unpaid().map(|(id, i)| i.number.clone().unwrap_or_else(|| id.to_owned())).unwrap_or_default();
        let next = standing.next().map(|(s, _)| format!(" → {} ({date})", s.name())).unwrap_or_default();
        let reminders: Vec<String> = state
            .notices()
            .iter()
            .filter(|n| Some(n.episode) == standing.past_due_since() && !crate::state::is_internal(&n.channel) && n.refused.is_none())
            .map(|n| format!("{} ({}{})", lang.date(n.at), n.stage, n.to.as_deref().map(|t| format!(", {t}")).unwrap_or_default()))
            .collect();
        let reminders = if reminders.is_empty() { "—".to_owned() } else { reminders.join("; ") };
        let vars = [
            ("product", inner.product_name.as_str()),
            ("amount", amount.as_str()),
            ("date", date.as_str()),
            ("retry", retry.as_str()),
            ("pay_url", pay_url),
            ("support", inner.support_email.as_str()),
            ("account", account.as_str()),
            ("days", days.as_str()),
            ("invoice", invoice.as_str()),
            ("stage", standing.stage().name()),
            ("next", next.as_str()),
            ("reminders", reminders.as_str()),
        ];
        let mut text = lang.text(&format!("email_{kind}_body"), &vars);
        if !internal {
            // Every customer message is sent after a missed payment.
            text = format!("{text}\n{}\n", lang.text("email_already_paid", &[]));
        }
        let button = lang.text("pay_amount", &[("amount", amount.as_str())]);
        let subject = lang.text(&format!("email_{kind}_subject"), &vars);
        self.send_mail(id, to, lang.code(), &subject, text, pay_url, &button).await
    }

    /// The reminder before a due date, in the account's language.
    pub(super) async fn reminder_email(&self, id: &str, to: &str, state: &BillingState, key: &str, due: &crate::state::UpcomingDue, pay_url: Option<&str>) -> bool {
        let inner = &self.inner;
        let Ok(to) = to.parse::<Mailbox>() else {
            tracing::warn!(to, "contact is not a valid e-mail address; no reminder");
            return false;
        };
        let lang = inner.languages.choose(state.language(), None);
        let amount = lang.money(due.amount_due, due.currency);
        let date = lang.date(due.due);
        let pay_url = pay_url.unwrap_or("");
        // The invoice's number, else its id (a preview has neither).
        let number = due.number.as_deref().or((!key.starts_with(crate::state::UPCOMING_PREVIEW)).then_some(key)).unwrap_or("—");
        let vars = [
            ("product", inner.product_name.as_str()),
            ("amount", amount.as_str()),
            ("date", date.as_str()),
            ("number", number),
            ("pay_url", pay_url),
            ("support", inner.support_email.as_str()),
        ];
        let text = lang.text("email_reminder_body", &vars);
        let subject = lang.text("email_reminder_subject", &vars);
        let button = lang.text("pay_amount", &[("amount", amount.as_str())]);
        self.send_mail(id, to, lang.code(), &subject, text, pay_url, &button).await
    }

    /// "Your card expires on …; please update it", in the account's language.
    pub(super) async fn card_email(&self, id: &str, to: &str, state: &BillingState, last_day: DateTime<Utc>, update_url: Option<&str>) -> bool {
        let inner = &self.inner;
        let Ok(to) = to.parse::<Mailbox>() else {
            tracing::warn!(to, "contact is not a valid e-mail address; no card reminder");
            return false;
        };
        let lang = inner.languages.choose(state.language(), None);
        let date = lang.date(last_day);
        let link = update_url.map(|u| format!(": {u}")).unwrap_or_default();
        let vars = [("product", inner.product_name.as_str()), ("date", date.as_str()), ("link", link.as_str()), ("support", inner.support_email.as_str())];
        let text = lang.text("email_card_body", &vars);
        let subject = lang.text("email_card_subject", &vars);
        let button = lang.text("update_payment_method", &[]);
        self.send_mail(id, to, lang.code(), &subject, text, update_url.unwrap_or(""), &button).await
    }

    /// Sends one multipart e-mail (plain `text`, and HTML with `pay_url` as
    /// a button), `Auto-Submitted`, its `Message-ID` from `id`, retrying
    /// like the webhook.
    #[allow(clippy::too_many_arguments)]
    async fn send_mail(&self, id: &str, to: Mailbox, lang: &str, subject: &str, text: String, pay_url: &str, button: &str) -> bool {
        let inner = &self.inner;
        let (Some(smtp), Some(from)) = (&inner.smtp, &inner.from) else { return false };
        let domain = from.email.domain().to_owned();
        let html = html_body(&text, pay_url, button, lang);
        let message = Message::builder()
            .message_id(Some(format!("<{id}.email@{domain}>")))
            .from(from.clone())
            .to(to)
            .subject(subject)
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .multipart(MultiPart::alternative_plain_html(text, html));
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "e-mail notice could not be built");
                return false;
            }
        };
        self.sent(|attempt| {
            let message = message.clone();
            async move {
                match smtp.send(message).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::info!(attempt, error = %e, "SMTP send failed; retrying");
                        false
                    }
                }
            }
        })
        .await
    }

}
