//! `[notify]` and `[reminders]`: stage notices and reminders before a
//! payment is due.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_duration, Secret};

/// A sweep of every account in debt runs this many poll intervals apart;
/// the sweeps between read only the accounts whose stage (or reminder) can
/// have come due since the previous sweep.
pub(crate) const FULL_SWEEP_EVERY: u32 = 60;

/// `[notify]`: stage notices. `Debug` hides the secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyConfig {
    /// `webhook_url`: where notices are POSTed (`""` = off).
    pub webhook_url: String,
    /// `webhook_secret`: the signing secret.
    pub webhook_secret: Secret,
    /// `smtp_url`: where e-mail notices are sent (`""` = off).
    pub smtp_url: Secret,
    /// `from`: the sender of e-mail notices.
    pub from: String,
    /// `poll_interval`: how often time-caused stage entries are looked for.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// `lease`: how long a claimed notice is reserved.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// `max_attempts`: delivery attempts per notice and pass.
    pub max_attempts: u32,
    /// `timeout`: longest one delivery attempt (HTTP or SMTP) may take.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// `[notify.metadata]`: Stripe customer metadata keys naming contacts.
    pub metadata: ContactKeys,
    /// `[[notify.routes]]`: which roles hear which stage (empty = the
    /// defaults: billing always, the account manager from `warn` or 7 days
    /// late, the accountant and the account manager on `block`).
    pub routes: Vec<NotifyRoute>,
    /// `[[notify.chat]]`: the team's chat channels (Slack-compatible
    /// incoming webhooks), each told of the stages it lists.
    pub chat: Vec<ChatChannel>,
    /// `[notify.sms]`: text messages to the billing phone through Twilio.
    pub sms: SmsConfig,
    /// `send_hours`: when messages to people may go out, in local time
    /// (`"09:00-18:00"`; `""` = any time).
    pub send_hours: String,
    /// `send_days`: the days they may go out (`["mon-fri"]`; empty = every
    /// day).
    pub send_days: Vec<String>,
    /// `timezone`: the IANA zone of accounts with none of their own, and of
    /// your team (`"UTC"`).
    pub timezone: String,
}

/// `[notify.sms]`: text messages through Twilio's Messages API, off while
/// `account_sid` is `""`. `Debug` hides the token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SmsConfig {
    /// `api_base`: Twilio's API (`https://api.twilio.com`).
    pub api_base: String,
    /// `account_sid`: the Twilio account (`AC…`; `""` = SMS off).
    pub account_sid: String,
    /// `auth_token`: its auth token.
    pub auth_token: Secret,
    /// `from`: the sending number (E.164) or alphanumeric sender id.
    pub from: String,
    /// `stages`: the ladder stages (and `"before_due"`) texted (empty =
    /// every stage a notice is sent for, and reminders before due).
    pub stages: Vec<String>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self { api_base: "https://api.twilio.com".into(), account_sid: String::new(), auth_token: Secret::default(), from: String::new(), stages: Vec::new() }
    }
}

/// One `[[notify.chat]]` entry: a Slack-compatible incoming webhook (Slack,
/// Mattermost, Rocket.Chat). `Debug` hides the URL: it is the credential,
/// and a configuration error never repeats what was written in its place.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChatChannel {
    /// `url`: the incoming webhook's URL (https).
    pub url: Secret,
    /// `stages`: the stages it hears of (empty = every stage a notice is
    /// sent for).
    pub stages: Vec<String>,
}

impl<'de> Deserialize<'de> for ChatChannel {
    /// A table `{url, stages}`. Anything else (a bare URL, say) is refused
    /// without quoting it: it may well be the secret URL.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: Secret,
            #[serde(default)]
            stages: Vec<String>,
        }
        struct Visitor;
        const EXPECTED: &str = "a table: url = \"https://…\", stages = [\"…\"]";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ChatChannel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ChatChannel, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ChatChannel { url: t.url, stages: t.stages })
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<ChatChannel, E> {
                Err(E::custom(format!("must be {EXPECTED} (the value written is not repeated here)")))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ChatChannel, E> {
                self.visit_str(&v)
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<ChatChannel, E> {
                self.visit_str(v)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ChatChannel {
    /// A channel posting to `url` about `stages` (empty = every stage).
    pub fn new(url: impl Into<Secret>, stages: &[&str]) -> Self {
        Self { url: url.into(), stages: stages.iter().map(|s| (*s).to_owned()).collect() }
    }
}

/// One `[[notify.routes]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyRoute {
    /// `stage`: a stage name of the ladder in use.
    pub stage: String,
    /// `roles`: `billing`, `accountant`, `account_manager`.
    pub roles: Vec<String>,
}

/// `[notify.metadata]`: the Stripe customer metadata keys whose values are
/// an account's contacts (`""` = not read). A contact an admin set wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ContactKeys {
    /// `accountant`: the key holding the accountant's address.
    pub accountant: String,
    /// `account_manager`: the key holding the account manager's address.
    pub account_manager: String,
    /// `timezone`: the key holding the account's IANA time zone.
    pub timezone: String,
}

/// `[reminders]`: reminders before a payment is due.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RemindersConfig {
    /// `[[reminders.before_due]]`: one reminder per due per entry.
    pub before_due: Vec<BeforeDue>,
}

/// One `[[reminders.before_due]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BeforeDue {
    /// `before`: how long before the due date.
    #[serde(deserialize_with = "de_duration")]
    pub before: Duration,
    /// `channels`: `email`, `webhook`, `sms` (empty = every configured
    /// channel).
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Default for NotifyConfig {
    /// No channel: notices are off until a webhook URL or an SMTP URL is set.
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_secret: Secret::default(),
            smtp_url: Secret::default(),
            from: "billing@example.com".into(),
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            metadata: ContactKeys::default(),
            routes: Vec::new(),
            chat: Vec::new(),
            sms: SmsConfig::default(),
            send_hours: String::new(),
            send_days: Vec::new(),
            timezone: "UTC".into(),
        }
    }
}

impl Default for ContactKeys {
    fn default() -> Self {
        Self { accountant: "accountant_email".into(), account_manager: "account_manager_email".into(), timezone: "timezone".into() }
    }
}

impl Default for RemindersConfig {
    /// One reminder three days before a due date, on every channel.
    fn default() -> Self {
        Self { before_due: vec![BeforeDue { before: Duration::from_secs(3 * 86_400), channels: Vec::new() }] }
    }
}
