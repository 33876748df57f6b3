//! Text messages through Twilio's Messages API: `POST
//! {api_base}/2010-04-01/Accounts/{sid}/Messages.json` with the form
//! fields `To`, `From` and `Body`, HTTP basic auth.

use super::*;
use crate::notify::sms_text;
use crate::settings::Secret;
use crate::state::is_e164;

/// Twilio's error codes that are about the recipient alone: the number is
/// invalid, unreachable or not a mobile, or it replied STOP. Recorded,
/// never tried again. (21408, a country the account may not text, and
/// 21612, a sender that cannot reach this number, are your Twilio setup:
/// they fail the pass, loudly, and are tried again once it is fixed.)
const RECIPIENT_REFUSED: [u64; 5] = [21211, 21214, 21217, 21610, 21614];

/// `[notify.sms]`, checked.
#[derive(Clone)]
pub(super) struct Sms {
    /// The Messages resource of the account.
    url: String,
    sid: String,
    token: Secret,
    from: String,
    stages: Vec<String>,
}

impl Sms {
    /// `None` while `account_sid` is `""`; an error naming the key for a
    /// setting that is wrong.
    pub(super) fn new(n: &NotifyConfig, policy: &Policy) -> Result<Option<Self>, ConfigError> {
        let c = &n.sms;
        if c.account_sid.is_empty() {
            return Ok(None);
        }
        let key = |k: &str, message: String| ConfigError::key(format!("notify.sms.{k}"), message);
        let sid = c.account_sid.trim();
        if !(sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(key("account_sid", "must be a Twilio account SID: AC followed by 32 hex digits".into()));
        }
        if c.auth_token.is_empty() {
            return Err(key("auth_token", "is needed to send text messages".into()));
        }
        let from = c.from.trim();
        let sender_id = (1..=11).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') && from.bytes().any(|b| b.is_ascii_alphabetic());
        if !(is_e164(from) || sender_id) {
            return Err(key("from", format!("{from:?} is neither an E.164 number (\"+15005550006\") nor an alphanumeric sender id (up to 11 letters and digits)")));
        }
        let base = crate::href::api_base(&c.api_base).map_err(|e| key("api_base", e))?;
        let known = policy.stage_names();
        for stage in &c.stages {
            if stage != BEFORE_DUE && !known.iter().any(|k| k == stage) {
                return Err(key("stages", format!("{stage:?} is not a stage of any ladder ({}) nor \"{BEFORE_DUE}\"", known.join(", "))));
            }
        }
        Ok(Some(Self { url: format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"), sid: sid.to_owned(), token: c.auth_token.clone(), from: from.to_owned(), stages: c.stages.clone() }))
    }
}

/// Twilio's error body.
#[derive(Default, serde::Deserialize)]
struct TwilioError {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

impl Notifier {
    /// The billing phone to text about `stage` (a ladder stage, or
    /// [`BEFORE_DUE`]), when SMS is on for it and the number is E.164.
    pub(super) fn sms_to<'a>(&self, state: &'a BillingState, stage: &str) -> Option<&'a str> {
        let sms = self.inner.sms.as_ref()?;
        if !(sms.stages.is_empty() || sms.stages.iter().any(|s| s == stage)) {
            return None;
        }
        let phone = state.billing_phone()?.value.as_str();
        is_e164(phone).then_some(phone)
    }

    /// Texts `body` to `to`. Retried (with the backoff of every channel) on
    /// 429, 5xx and network errors; a number Twilio refuses for good is
    /// [`Outcome::Refused`] with Twilio's code and message; any other 4xx
    /// (a wrong SID or token, a sender Twilio does not accept) fails this
    /// pass without retries, logged, and a later sweep tries again.
    pub(super) async fn text(&self, to: &str, body: &str) -> Outcome {
        let inner = &self.inner;
        let Some(sms) = &inner.sms else { return Outcome::Failed };
        self.retry(|attempt| async move {
            let form = [("To", to), ("From", sms.from.as_str()), ("Body", body)];
            let sent = inner.http.post(&sms.url).basic_auth(&sms.sid, Some(sms.token.expose())).form(&form).send().await;
            let res = match sent {
                Ok(res) => res,
                Err(e) if e.is_connect() => {
                    tracing::info!(attempt, error = %e.without_url(), "Twilio is unreachable; retrying");
                    return Attempt::Retry;
                }
                // A timeout may come after Twilio took the message: not
                // retried at once (a later sweep does, after the lease).
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), "no answer from Twilio; the message may or may not have gone; trying again after notify.lease");
                    return Attempt::GiveUp;
                }
            };
            let status = res.status();
            if status.is_success() {
                return Attempt::Sent;
            }
            let error: TwilioError = res.json().await.unwrap_or_default();
            let message: String = error.message.as_deref().unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
            match error.code {
                _ if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                    tracing::info!(attempt, %status, code = error.code, "Twilio is busy or failing; retrying");
                    Attempt::Retry
                }
                Some(code) if RECIPIENT_REFUSED.contains(&code) => Attempt::Refused(format!("Twilio {code}: {message}")),
                code => {
                    tracing::warn!(%status, code, message, "Twilio refused the message; not retrying (check [notify.sms])");
                    Attempt::GiveUp
                }
            }
        })
        .await
    }

    /// The text for a stage, in the account's language: what is owed, a
    /// pay link (a signed one when it can, being the shortest), and "ignore
    /// this if you have already paid"; folded to fit two segments.
    pub(super) fn stage_text(&self, account: &AccountId, standing: &Standing, state: &BillingState) -> String {
        let inner = &self.inner;
        let lang = inner.languages.choose(state.language(), None);
        let key = match standing.action() {
            Action::Notice => "sms_notice",
            Action::Warn => "sms_warn",
            _ => "sms_block",
        };
        let amount = standing.amount_due().map(|(a, c)| lang.money(a, c)).unwrap_or_default();
        let date = standing.next().map(|(_, t)| lang.date(self.local(state, t))).unwrap_or_default();
        let mut text = lang.text(key, &[("product", &inner.product_name), ("amount", &amount), ("date", &date)]);
        if let Some(url) = self.signed_pay_url(account, state).or_else(|| standing.pay_url().map(str::to_owned)) {
            text += " ";
            text += &lang.text("sms_pay", &[("pay_url", &url)]);
        }
        text += " ";
        text += &lang.text("sms_paid", &[]);
        too_long(sms_text::fit(&text))
    }

    /// The text for a reminder before `due`.
    pub(super) fn reminder_text(&self, account: &AccountId, state: &BillingState, key: &str, due: &crate::state::UpcomingDue, pay_url: Option<&str>) -> String {
        let inner = &self.inner;
        let lang = inner.languages.choose(state.language(), None);
        let amount = lang.money(due.amount_due, due.currency);
        let number = due.number.as_deref().unwrap_or(key);
        let mut text = lang.text("sms_reminder", &[("product", &inner.product_name), ("number", number), ("amount", &amount), ("date", &lang.date(self.local(state, due.due)))]);
        if let Some(url) = self.signed_pay_url(account, state).or_else(|| pay_url.map(str::to_owned)) {
            text += " ";
            text += &lang.text("sms_pay", &[("pay_url", &url)]);
        }
        too_long(sms_text::fit(&text))
    }
}

impl Notifier {
    /// `t` as the account's calendar reads it (its zone's local date and
    /// time, carried in a UTC value for [`crate::i18n::Language::date`]).
    fn local(&self, state: &BillingState, t: DateTime<Utc>) -> DateTime<Utc> {
        t.with_timezone(&self.zone(SMS, state)).naive_local().and_utc()
    }
}

/// `text`, logged when even folded it needs more than two segments (a long
/// `page.product_name`, an invoice URL where no signed link could be made):
/// it still goes, as Twilio joins the segments.
fn too_long(text: String) -> String {
    let segments = sms_text::segments(&text);
    if segments > sms_text::MAX_SEGMENTS {
        tracing::warn!(segments, "a text message needs more than two segments; shorten page.product_name or turn on signed pay links (links.secret)");
    }
    text
}
