//! The [`Notifier`]: claims, sweeps and records notices; each channel is
//! a module of its own, compiled with its feature.

mod attempt;
mod once;
mod reminders;
mod routes;
mod summary;
mod timing;
#[cfg(feature = "notify-webhook")]
mod sms;
#[cfg(not(feature = "notify-webhook"))]
#[path = "notifier/sms_off.rs"]
mod sms;
#[cfg(feature = "notify-email")]
mod email;
#[cfg(not(feature = "notify-email"))]
#[path = "notifier/email_off.rs"]
mod email;
#[cfg(feature = "notify-webhook")]
mod webhook;
#[cfg(not(feature = "notify-webhook"))]
#[path = "notifier/webhook_off.rs"]
mod webhook;

pub(super) use self::attempt::Outcome;
#[cfg(feature = "notify-webhook")]
use self::attempt::Attempt;
use self::routes::{routes, Recipient};
use self::summary::payload;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
#[cfg(feature = "notify-email")]
use lettre::message::Mailbox;
#[cfg(feature = "notify-email")]
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::task::JoinHandle;

use crate::account::AccountId;
use crate::clock::SharedClock;
use super::{NotifyConfig, RemindersConfig, FULL_SWEEP_EVERY};
use crate::gate::PageConfig;
use crate::links::LinksConfig;
use crate::settings::ConfigError;
use crate::stripe::StripeConfig;
use crate::policy::Policy;
use crate::recovery::AtRisk;
use crate::standing::{Action, Reason, Standing};
use crate::state::{BillingState, Change, ContactRole, NoticeSent, Waiting, INTERNAL_CHANNEL};
use crate::store::{Index, Invalidation, Store, StoreError, NEVER};

/// The header that signs outbound notices (same scheme as Stripe's).
pub const SIGNATURE_HEADER: &str = "Pastdue-Signature";
const WEBHOOK: &str = "webhook";
const EMAIL: &str = "email";
const EMAIL_ACCOUNTANT: &str = "email:accountant";
const SMS: &str = "sms";
/// What `[notify.sms].stages` calls reminders before a due date.
const BEFORE_DUE: &str = "before_due";
/// The channel names of `[[notify.chat]]` entries, in order (at most 8).
const CHAT: [&str; 8] = ["chat", "chat:1", "chat:2", "chat:3", "chat:4", "chat:5", "chat:6", "chat:7"];

/// How a stage notice goes out.
#[derive(Clone, Copy)]
enum Via {
    Webhook,
    Email(Recipient),
    /// The `[[notify.chat]]` entry at this index.
    Chat(usize),
    /// A text message to the billing phone.
    Sms,
}
/// Which notice [`Notifier::once`] sends: recorded as sent to `to` on
/// `channel` for `stage` of `episode`, at `now`.
struct Notice<'a> {
    episode: DateTime<Utc>,
    stage: &'a str,
    channel: &'static str,
    to: Option<String>,
    now: DateTime<Utc>,
}

/// One `[[reminders.before_due]]` entry, resolved.
#[derive(Clone, Copy, Debug)]
struct BeforeDueEntry {
    before: Duration,
    email: bool,
    webhook: bool,
    sms: bool,
}

/// Whole seconds of `d`, saturating.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `3d`, `12h`, `90m`, `30s`: a lead time as a stage-name suffix.
fn lead_name(d: Duration) -> String {
    match d.as_secs() {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One stage's notice to one person by e-mail: everything it says.
#[cfg_attr(not(feature = "notify-email"), allow(dead_code))]
pub(super) struct StageMail<'a> {
    pub(super) account: &'a AccountId,
    /// The notice id its `Message-ID` derives from.
    pub(super) id: &'a str,
    pub(super) to: &'a str,
    pub(super) standing: &'a Standing,
    pub(super) state: &'a BillingState,
    pub(super) pay_url: Option<&'a str>,
    /// The account manager's internal summary, not the customer's message.
    pub(super) internal: bool,
    pub(super) now: DateTime<Utc>,
}

/// Sends stage notices; see the [module docs](crate::notify).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
    /// Read once per check and once per sweep.
    clock: SharedClock,
    /// What this instance's sweeps have covered.
    swept: Arc<std::sync::Mutex<Swept>>,
    /// Reminders found with nowhere to go, already counted and logged by
    /// this instance (`account:due:stage`; bounded, see [`Notifier::nowhere`]).
    nowhere: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Accounts with a notice this instance could not finish (another
    /// instance held its claim, or the delivery failed): checked again by
    /// every sweep until recorded.
    pending: Arc<std::sync::Mutex<std::collections::HashSet<AccountId>>>,
}

/// When this instance last swept, and last swept everything.
#[derive(Clone, Copy, Default)]
struct Swept {
    last: Option<DateTime<Utc>>,
    last_full: Option<DateTime<Utc>>,
}


#[derive(Clone)]
struct Inner {
    store: Arc<dyn Store>,
    policy: Policy,
    /// Stage name → who hears it by e-mail.
    routes: HashMap<String, Vec<Recipient>>,
    /// `[[reminders.before_due]]`.
    before_due: Vec<BeforeDueEntry>,
    config: NotifyConfig,
    #[cfg(feature = "notify-webhook")]
    http: reqwest::Client,
    #[cfg(feature = "notify-email")]
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    #[cfg(feature = "notify-email")]
    from: Option<Mailbox>,
    languages: crate::i18n::Languages,
    product_name: String,
    #[cfg(feature = "notify-email")]
    support_email: String,
    /// The app's public origin and the pay-link signer, when pay links are on.
    links: Option<(String, crate::links::LinkSigner)>,
    /// The console's account pages (`…/ui/accounts/`), for chat messages.
    console: Option<String>,
    /// `notify.send_hours` and `notify.send_days`.
    window: crate::notify::SendWindow,
    /// `notify.timezone`: the team's, and accounts' without their own.
    zone: chrono_tz::Tz,
    /// `[notify.sms]`, when on (never, without `notify-webhook`).
    #[cfg_attr(not(feature = "notify-webhook"), allow(dead_code))]
    sms: Option<sms::Sms>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("webhook_url", &self.inner.config.webhook_url).finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier from `[notify]` and the ladders whose stages it announces
    /// (`Config::policy`, or one `Ladder` for everyone), or `None` when no
    /// channel is configured. E-mails
    /// name the default `[page]` product and support address until
    /// [`with_page`](Self::with_page), and link to invoice pages until
    /// [`with_pay_links`](Self::with_pay_links).
    pub fn new(n: &NotifyConfig, policy: impl Into<Policy>, store: Arc<dyn Store>) -> Result<Option<Self>, ConfigError> {
        let policy = policy.into();
        let key = |key: &str, message: String| ConfigError::key(key, message);
        if n.webhook_url.is_empty() && n.smtp_url.is_empty() && n.chat.is_empty() && n.sms.account_sid.is_empty() {
            return Ok(None);
        }
        crate::metrics::describe();
        #[cfg(not(feature = "notify-webhook"))]
        if !n.webhook_url.is_empty() {
            return Err(key("notify.webhook_url", "needs pastdue's `notify-webhook` feature".into()));
        }
        #[cfg(not(feature = "notify-webhook"))]
        if !n.chat.is_empty() {
            return Err(key("notify.chat", "needs pastdue's `notify-webhook` feature".into()));
        }
        summary::check_chat(n, &policy)?;
        let (window, zone) = timing::window(n)?;
        let sms = sms::Sms::new(n, &policy)?;
        #[cfg(not(feature = "notify-email"))]
        if !n.smtp_url.is_empty() {
            return Err(key("notify.smtp_url", "needs pastdue's `notify-email` feature".into()));
        }
        if !n.webhook_url.is_empty() {
            if !(n.webhook_url.starts_with("http://") || n.webhook_url.starts_with("https://")) {
                return Err(key("notify.webhook_url", "must be an http(s) URL".into()));
            }
            if n.webhook_secret.is_empty() {
                return Err(key("notify.webhook_secret", "is needed to sign notices".into()));
            }
        }
        #[cfg(feature = "notify-email")]
        let (smtp, from) = if n.smtp_url.is_empty() {
            (None, None)
        } else {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(n.smtp_url.expose())
                .map_err(|e| ConfigError::invalid("notify.smtp_url", e))?
                .timeout(Some(n.timeout))
                .build();
            let from: Mailbox = n.from.parse().map_err(|e: lettre::address::AddressError| ConfigError::invalid("notify.from", e))?;
            (Some(transport), Some(from))
        };
        #[cfg(feature = "notify-webhook")]
        let http = reqwest::Client::builder()
            .timeout(n.timeout)
            .build()
            .map_err(|e| ConfigError::invalid("notify.webhook_url", e))?;
        let languages = crate::i18n::Languages::builtin().map_err(|e| ConfigError::invalid("page", e))?;
        let page = PageConfig::default();
        let routes = routes(n, &policy)?;
        let inner = Inner {
            store,
            policy,
            routes,
            before_due: Vec::new(),
            config: n.clone(),
            #[cfg(feature = "notify-webhook")]
            http,
            #[cfg(feature = "notify-email")]
            smtp,
            #[cfg(feature = "notify-email")]
            from,
            languages,
            product_name: page.product_name,
            #[cfg(feature = "notify-email")]
            support_email: page.support_email,
            links: None,
            console: None,
            window,
            zone,
            sms,
        };
        Ok(Some(Self { inner: Arc::new(inner), clock: crate::clock::system(), swept: Arc::default(), nowhere: Arc::default(), pending: Arc::default() }))
    }

    /// Who is asking and where to reach a human, from `[page]` (the same
    /// names the please-pay page shows).
    pub fn with_page(mut self, page: &PageConfig) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.product_name = page.product_name.clone();
        #[cfg(feature = "notify-email")]
        {
            inner.support_email = page.support_email.clone();
        }
        self
    }

    /// Signed pay links in notices, when the billing portal is configured
    /// (`stripe.portal_return_url`; `links.secret` then required), on
    /// `links.base_url` (default: the portal return URL's origin).
    pub fn with_pay_links(mut self, links: &LinksConfig, stripe: &StripeConfig) -> Result<Self, ConfigError> {
        Arc::make_mut(&mut self.inner).links = match links.signer(&stripe.portal_return_url)? {
            Some(signer) => Some((links.origin(&stripe.portal_return_url)?, signer)),
            None => None,
        };
        Ok(self)
    }

    /// Links chat messages to the console's account pages at `base` (the
    /// app's public origin, `links.base_url`) under `admin_path`
    /// ([`crate::Pastdue`] does this when the console is mounted).
    pub fn with_console(mut self, base: &str, admin_path: &str) -> Self {
        let base = base.trim_end_matches('/');
        Arc::make_mut(&mut self.inner).console = crate::href::is_safe(base).then(|| format!("{base}{admin_path}/ui/accounts/"));
        self
    }

    /// Reminders before a payment is due, from `[reminders]` (none until
    /// this is called; [`crate::Pastdue`] calls it).
    pub fn with_reminders(mut self, reminders: &RemindersConfig) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        for (i, entry) in reminders.before_due.iter().enumerate() {
            let key = |field: &str, message: String| ConfigError::key(format!("reminders.before_due[{i}].{field}"), message);
            if entry.before.is_zero() {
                return Err(key("before", "must be longer than 0s".into()));
            }
            let every = entry.channels.is_empty();
            let (mut email, mut webhook, mut sms) = (every, every, every);
            for channel in &entry.channels {
                match channel.as_str() {
                    "email" => email = true,
                    "webhook" => webhook = true,
                    "sms" => sms = true,
                    other => return Err(key("channels", format!("{other:?} is not email, webhook or sms"))),
                }
            }
            entries.push(BeforeDueEntry { before: entry.before, email, webhook, sms });
        }
        Arc::make_mut(&mut self.inner).before_due = entries;
        Ok(self)
    }

    /// Reads the time from `clock` (default: the system's): tests move a
    /// [`ManualClock`](crate::clock::ManualClock) through the ladder.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The notifier's configuration.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// Runs the notifier in the background: at once for every change the
    /// store announces, and a sweep every `poll_interval`.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut changes = self.inner.store.invalidations();
            let mut tick = tokio::time::interval(self.inner.config.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = changes.recv() => match msg {
                        Ok(Invalidation::Account(account)) => {
                            let me = self.clone();
                            tokio::spawn(async move { me.log(me.check(&account).await.map(|_| ())) });
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.log(self.sweep().await.map(|_| ())),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => self.log(self.sweep().await.map(|_| ())),
                }
            }
        })
    }

    fn log(&self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "notice check failed; the next sweep retries");
        }
    }

    /// Finds the notices time has made due and sends them; returns how
    /// many went out. Every `FULL_SWEEP_EVERY` (60) poll intervals, and on
    /// the first sweep, it reads every account in debt; in between only
    /// those whose next stage (or reminder) fell due since the previous
    /// sweep — index ranges, one per stage and lead time, and overrides
    /// that lapsed — and those with
    /// a notice this instance could not finish. So an idle instance costs
    /// Redis a few range reads per poll, however many accounts owe.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let swept = *self.swept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let full_every = chrono::TimeDelta::from_std(self.inner.config.poll_interval * FULL_SWEEP_EVERY).unwrap_or(chrono::TimeDelta::MAX);
        let since = match (swept.last, swept.last_full) {
            (Some(last), Some(full)) if now - full < full_every && last <= now => Some(last),
            _ => None,
        };
        let leads: Vec<i64> = self.inner.before_due.iter().map(|e| secs(e.before)).collect();
        let (now_s, max_lead) = (now.timestamp(), leads.iter().copied().max());
        let mut ranges: Vec<(Index, i64, i64)> = Vec::new();
        match since {
            None => {
                ranges.push((Index::Debt, 0, NEVER));
                if let Some(lead) = max_lead {
                    // A send window can move a reminder up to a week earlier.
                    let earlier = if self.inner.window.always() { 0 } else { 8 * 86_400 };
                    ranges.push((Index::Upcoming, now_s, now_s.saturating_add(lead).saturating_add(earlier)));
                }
                ranges.push((Index::Waiting, 0, now_s));
            }
            Some(last) => {
                // (A reminder a window moves earlier is found through the
                // Waiting index: the check that learns of its due records
                // when it goes, and the full sweep looks 8 days further.)
                // A stage `after` its debt's start is entered in (last, now]
                // by debts that started in that window moved back (one
                // second of slack for sub-second offsets).
                let last_s = last.timestamp();
                let mut offsets: Vec<i64> = self.inner.policy.stages().iter().map(|s| secs(s.after())).collect();
                offsets.sort_unstable();
                offsets.dedup();
                for d in offsets {
                    ranges.push((Index::Debt, last_s.saturating_sub(d).saturating_sub(1), now_s.saturating_sub(d)));
                }
                for lead in &leads {
                    ranges.push((Index::Upcoming, last_s.saturating_add(*lead).saturating_sub(1), now_s.saturating_add(*lead)));
                }
                // Overrides that lapsed, promises that came due: the ladder
                // speaks again.
                ranges.push((Index::Override, last_s.saturating_sub(1), now_s));
                ranges.push((Index::Promise, last_s.saturating_sub(1), now_s));
                // Notices held for a send window that has opened.
                ranges.push((Index::Waiting, last_s.saturating_sub(1), now_s));
            }
        }
        let pending: Vec<AccountId> = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        let mut seen: std::collections::HashSet<AccountId> = std::collections::HashSet::new();
        let mut sent = 0;
        // A full sweep reads every account in debt: it counts them too.
        let mut at_risk = since.is_none().then(|| AtRisk { as_of: Some(now), ..AtRisk::default() });
        for account in pending {
            if seen.insert(account.clone()) {
                sent += self.check_at(&account, now, at_risk.as_mut()).await?;
            }
        }
        for (index, min, max) in ranges {
            let mut cursor: Option<String> = None;
            loop {
                let page = self.inner.store.scan_index(index, min, max, cursor.as_deref(), 200).await?;
                let Some(last) = page.last() else { break };
                cursor = Some(last.cursor());
                for entry in &page {
                    if seen.insert(entry.account.clone()) {
                        sent += self.check_at(&entry.account, now, at_risk.as_mut()).await?;
                    }
                }
            }
        }
        if let Some(at_risk) = at_risk {
            self.inner.store.put_at_risk(&at_risk).await?;
            crate::metrics::at_risk(&at_risk);
        }
        let mut swept = self.swept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        swept.last = Some(now);
        if since.is_none() {
            swept.last_full = Some(now);
        }
        Ok(sent)
    }

    /// Remembers `account` for the next sweep.
    fn pend(&self, account: &AccountId) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(account.clone());
    }

    /// Sends the account's current-stage notice on every channel where it
    /// is due and nobody has; returns how many this call sent.
    pub async fn check(&self, account: &AccountId) -> Result<usize, StoreError> {
        self.check_at(account, self.clock.now(), None).await
    }

    /// [`Notifier::check`] at `now`; a full sweep also counts the account
    /// into `at_risk`.
    async fn check_at(&self, account: &AccountId, now: DateTime<Utc>, at_risk: Option<&mut AtRisk>) -> Result<usize, StoreError> {
        let Some(state) = self.inner.store.load(account).await? else { return Ok(0) };
        if let Some(at_risk) = at_risk {
            at_risk.count(&self.inner.policy, &state, now);
        }
        let mut held = Vec::new();
        let sent = self.notices(account, &state, now, &mut held).await?;
        self.keep_waiting(account, &state, held, now).await?;
        Ok(sent)
    }

    /// Sends what is due on every channel at `now`; what must wait for a
    /// send window goes into `held`.
    async fn notices(&self, account: &AccountId, state: &BillingState, now: DateTime<Utc>, held: &mut Vec<Waiting>) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let mut sent = self.remind_state(account, state, now, held).await?;
        sent += self.card_reminder(account, state, now, held).await?;
        let standing = inner.policy.evaluate(Some(state), now);
        let (Reason::Debt, Some(episode)) = (standing.reason(), standing.past_due_since()) else { return Ok(sent) };
        if matches!(standing.action(), Action::Allow) {
            return Ok(sent);
        }
        let stage = standing.stage().name().to_owned();
        // The webhook once per stage; an e-mail to each role the stage is
        // routed to that has an address (nobody to write to yet: skipped,
        // and tried again when one is known); each chat listing the stage.
        let mut targets: Vec<(&'static str, Option<String>, Via)> = Vec::new();
        if !inner.config.webhook_url.is_empty() {
            targets.push((WEBHOOK, None, Via::Webhook));
        }
        if self.has_smtp() {
            for r in inner.routes.get(&stage).map(Vec::as_slice).unwrap_or(&[Recipient::Billing]) {
                if let Some(address) = r.address(state) {
                    targets.push((r.channel(), Some(address.to_owned()), Via::Email(*r)));
                }
            }
        }
        for (i, chat) in inner.config.chat.iter().enumerate() {
            if chat.stages.is_empty() || chat.stages.contains(&stage) {
                targets.push((CHAT[i], None, Via::Chat(i)));
            }
        }
        if let Some(phone) = self.sms_to(state, &stage) {
            targets.push((SMS, Some(phone.to_owned()), Via::Sms));
        }
        for (channel, to, via) in targets {
            let notice = Notice { episode, stage: &stage, channel, to: to.clone(), now };
            if self.hold(state, &notice, None, held) {
                continue;
            }
            let id = format!("ntc_{}_{}_{stage}", account, episode.timestamp());
            let pay_url = self.pay_url(account, &standing, state);
            let created = now.timestamp();
            let send = async {
                match (&to, via) {
                    (Some(address), Via::Email(r)) => {
                        // Billing keeps the notice id in its Message-ID; other roles add theirs.
                        let mail_id = match r {
                            Recipient::Billing => id.clone(),
                            Recipient::Contact(role) => format!("{id}.{}", role.as_str()),
                        };
                        let mail = StageMail { account, id: &mail_id, to: address, standing: &standing, state, pay_url: pay_url.as_deref(), internal: r.internal(), now };
                        self.email(mail).await.into()
                    }
                    (_, Via::Chat(i)) => self.post_chat(i, &summary::chat_message(account, &standing, state, inner.console.as_deref(), now)).await.into(),
                    (Some(phone), Via::Sms) => self.text(phone, &self.stage_text(account, &standing, state)).await,
                    _ => self.deliver(&payload(&id, account, &standing, state, pay_url.as_deref(), created)).await.into(),
                }
            };
            sent += usize::from(self.once(account, state, notice, send).await?);
        }
        Ok(sent)
    }

    /// Where a message for the customer goes: the webhook (when `webhook`
    /// and one is configured), an e-mail to the billing contact (when
    /// `email`, SMTP is configured and the address is known) and a text
    /// message to the billing phone (when `sms` names a stage SMS is on for).
    fn customer_targets(&self, state: &BillingState, email: bool, webhook: bool, sms: Option<&str>) -> Vec<(&'static str, Option<String>)> {
        let mut targets = Vec::new();
        if let Some(phone) = sms.and_then(|stage| self.sms_to(state, stage)) {
            targets.push((SMS, Some(phone.to_owned())));
        }
        if webhook && !self.inner.config.webhook_url.is_empty() {
            targets.push((WEBHOOK, None));
        }
        if email && self.has_smtp() {
            if let Some(address) = state.contact_email() {
                targets.push((EMAIL, Some(address.to_owned())));
            }
        }
        targets
    }

    /// Where a notice sends the customer to pay: the oldest unpaid invoice's
    /// hosted page, else a signed pay link on `links.base_url` (when the
    /// account has a Stripe customer whose portal it can open).
    fn pay_url(&self, account: &AccountId, standing: &Standing, state: &BillingState) -> Option<String> {
        if let Some(url) = standing.pay_url() {
            return Some(url.to_owned());
        }
        self.signed_pay_url(account, state)
    }

    /// A signed pay link on `links.base_url`, when the account has a Stripe
    /// customer whose portal it can open.
    fn signed_pay_url(&self, account: &AccountId, state: &BillingState) -> Option<String> {
        if state.customers().is_empty() {
            return None;
        }
        let (base, signer) = self.inner.links.as_ref()?;
        let token = signer.sign(account.as_str(), crate::links::Purpose::Pay, Utc::now());
        Some(format!("{base}{}?t={token}", crate::links::PAY_PATH))
    }
}
