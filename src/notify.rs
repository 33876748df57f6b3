//! Stage notices: "a friendly reminder, then a firmer warning, then
//! suspension", each sent once per stage per debt episode, by signed
//! outbound webhook.
//!
//! Every app instance may run a [`Notifier`]. It checks an account when the
//! store announces a change (a webhook-caused stage entry is notified at
//! once) and sweeps the accounts in debt every `notify.poll_interval` for
//! stage entries caused by time passing. Exactly once:
//!
//! - a notice already recorded on the account (`notices`) is never sent
//!   again;
//! - before sending, an instance claims the notice in the store for
//!   `notify.lease`; only one instance holds a claim, and a claim whose
//!   holder crashed expires, so someone else sends it;
//! - the send is recorded on the account as soon as the receiver accepts
//!   it. A crash in the instant between acceptance and recording can repeat
//!   a delivery; its `id` is the same, so receivers can drop the repeat.
//!
//! Only the current stage is announced: an account that enters the ladder
//! already past some stages gets only its current stage's notice. Admin
//! overrides and canceled subscriptions are not debt episodes and send
//! nothing.
//!
//! Channels, each optional: the signed webhook (`notify.webhook_url`) and
//! e-mail over SMTP (`notify.smtp_url`) to the billing contact, in the
//! account's language. Each channel is claimed, sent and recorded on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
#[cfg(feature = "notify-email")]
use lettre::message::header::{HeaderName, HeaderValue};
#[cfg(feature = "notify-email")]
use lettre::message::MultiPart;
#[cfg(feature = "notify-email")]
use lettre::message::Mailbox;
#[cfg(feature = "notify-email")]
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::account::AccountId;
use crate::clock::SharedClock;
use crate::settings::{ConfigError, LinksConfig, NotifyConfig, PageConfig, RemindersConfig, StripeConfig};
use crate::policy::Policy;
use crate::standing::{Action, Reason, Standing};
use crate::state::{BillingState, Change, ContactRole, NoticeSent, INTERNAL_CHANNEL};
use crate::store::{Index, Invalidation, Store, StoreError, NEVER};

/// The HTML part of an e-mail: the plain text's paragraphs, escaped, with
/// the paragraph holding the pay link as one button. No remote images, no
/// tracking.
#[cfg(feature = "notify-email")]
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

/// The header that signs outbound notices (same scheme as Stripe's).
pub const SIGNATURE_HEADER: &str = "Pastdue-Signature";
const WEBHOOK: &str = "webhook";
const EMAIL: &str = "email";
const EMAIL_ACCOUNTANT: &str = "email:accountant";

/// Who hears about a stage by e-mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recipient {
    /// The invoice's e-mail address ([`BillingState::contact_email`]).
    Billing,
    /// A contact by role.
    Contact(ContactRole),
}

impl Recipient {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "billing" => Some(Recipient::Billing),
            "accountant" => Some(Recipient::Contact(ContactRole::Accountant)),
            "account_manager" => Some(Recipient::Contact(ContactRole::AccountManager)),
            _ => None,
        }
    }

    /// The notice channel it is recorded (and counted) under.
    fn channel(self) -> &'static str {
        match self {
            Recipient::Billing => EMAIL,
            Recipient::Contact(ContactRole::Accountant) => EMAIL_ACCOUNTANT,
            Recipient::Contact(ContactRole::AccountManager) => INTERNAL_CHANNEL,
        }
    }

    fn address(self, state: &BillingState) -> Option<&str> {
        match self {
            Recipient::Billing => state.contact_email(),
            Recipient::Contact(role) => state.contact(role),
        }
    }

    /// The account manager is the operator's own staff: an internal
    /// summary, not the customer's message.
    fn internal(self) -> bool {
        self == Recipient::Contact(ContactRole::AccountManager)
    }
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

/// Stage name → who hears it by e-mail, from `[[notify.routes]]` or the
/// defaults: billing for every stage; the account manager from the first
/// `warn` (or harsher) stage or 7 days late, whichever the ladder reaches
/// first; the accountant on `block` stages.
fn routes(config: &NotifyConfig, policy: &Policy) -> Result<HashMap<String, Vec<Recipient>>, ConfigError> {
    let key = |key: String, message: String| ConfigError::Key { key, message };
    let mut routes = HashMap::new();
    let stages = policy.stages();
    if config.routes.is_empty() {
        let late = Duration::from_secs(7 * 86_400);
        // Per ladder (a stage name two ladders share keeps the first's).
        for (_, ladder) in policy.ladders() {
            let mut manager = false;
            for stage in ladder.stages() {
                let block = matches!(stage.action(), Action::Block);
                manager |= matches!(stage.action(), Action::Warn | Action::ReadOnly | Action::Block) || stage.after() >= late;
                let mut who = vec![Recipient::Billing];
                if block {
                    who.push(Recipient::Contact(ContactRole::Accountant));
                }
                if manager {
                    who.push(Recipient::Contact(ContactRole::AccountManager));
                }
                routes.entry(stage.name().to_owned()).or_insert(who);
            }
        }
        return Ok(routes);
    }
    for (i, route) in config.routes.iter().enumerate() {
        if stages.iter().all(|s| s.name() != route.stage) {
            let names = policy.stage_names();
            return Err(key(format!("notify.routes[{i}].stage"), format!("{:?} is not a stage of any ladder ({})", route.stage, names.join(", "))));
        }
        let mut who = Vec::new();
        for role in &route.roles {
            let r = Recipient::parse(role)
                .ok_or_else(|| key(format!("notify.routes[{i}].roles"), format!("{role:?} is not one of billing, accountant, account_manager")))?;
            if !who.contains(&r) {
                who.push(r);
            }
        }
        if routes.insert(route.stage.clone(), who).is_some() {
            return Err(key(format!("notify.routes[{i}].stage"), format!("{:?} is routed twice", route.stage)));
        }
    }
    for stage in &stages {
        routes.entry(stage.name().to_owned()).or_insert_with(|| vec![Recipient::Billing]);
    }
    Ok(routes)
}

/// Sends stage notices; see the [module docs](self).
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

/// A sweep of every account in debt runs this many poll intervals apart;
/// the sweeps between read only the accounts whose stage (or reminder) can
/// have come due since the previous sweep.
const FULL_SWEEP_EVERY: u32 = 60;

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
    #[cfg(feature = "notify-email")]
    languages: crate::i18n::Languages,
    #[cfg(feature = "notify-email")]
    product_name: String,
    #[cfg(feature = "notify-email")]
    support_email: String,
    /// The app's public origin and the pay-link signer, when pay links are on.
    links: Option<(String, crate::links::LinkSigner)>,
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
        let key = |key: &str, message: String| ConfigError::Key { key: key.into(), message };
        if n.webhook_url.is_empty() && n.smtp_url.is_empty() {
            return Ok(None);
        }
        crate::metrics::describe();
        #[cfg(not(feature = "notify-webhook"))]
        if !n.webhook_url.is_empty() {
            return Err(key("notify.webhook_url", "needs pastdue's `notify-webhook` feature".into()));
        }
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
                .map_err(|e| key("notify.smtp_url", e.to_string()))?
                .timeout(Some(n.timeout))
                .build();
            let from: Mailbox = n.from.parse().map_err(|e: lettre::address::AddressError| key("notify.from", e.to_string()))?;
            (Some(transport), Some(from))
        };
        #[cfg(feature = "notify-webhook")]
        let http = reqwest::Client::builder()
            .timeout(n.timeout)
            .build()
            .map_err(|e| key("notify.webhook_url", e.to_string()))?;
        #[cfg(feature = "notify-email")]
        let languages = crate::i18n::Languages::builtin().map_err(|e| key("page", e.to_string()))?;
        #[cfg(feature = "notify-email")]
        let page = crate::settings::Config::default().page;
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
            #[cfg(feature = "notify-email")]
            languages,
            #[cfg(feature = "notify-email")]
            product_name: page.product_name,
            #[cfg(feature = "notify-email")]
            support_email: page.support_email,
            links: None,
        };
        Ok(Some(Self { inner: Arc::new(inner), clock: crate::clock::system(), swept: Arc::default(), nowhere: Arc::default(), pending: Arc::default() }))
    }

    /// Who is asking and where to reach a human, from `[page]` (the same
    /// names the please-pay page shows).
    #[cfg_attr(not(feature = "notify-email"), allow(unused_mut))]
    pub fn with_page(mut self, page: &PageConfig) -> Self {
        #[cfg(feature = "notify-email")]
        {
            let inner = Arc::make_mut(&mut self.inner);
            inner.product_name = page.product_name.clone();
            inner.support_email = page.support_email.clone();
        }
        #[cfg(not(feature = "notify-email"))]
        let _ = page;
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

    /// Reminders before a payment is due, from `[reminders]` (none until
    /// this is called; [`crate::Pastdue`] calls it).
    pub fn with_reminders(mut self, reminders: &RemindersConfig) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        for (i, entry) in reminders.before_due.iter().enumerate() {
            let key = |field: &str, message: String| ConfigError::Key { key: format!("reminders.before_due[{i}].{field}"), message };
            if entry.before.is_zero() {
                return Err(key("before", "must be longer than 0s".into()));
            }
            let (mut email, mut webhook) = (entry.channels.is_empty(), entry.channels.is_empty());
            for channel in &entry.channels {
                match channel.as_str() {
                    "email" => email = true,
                    "webhook" => webhook = true,
                    other => return Err(key("channels", format!("{other:?} is neither email nor webhook"))),
                }
            }
            entries.push(BeforeDueEntry { before: entry.before, email, webhook });
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
                    ranges.push((Index::Upcoming, now_s, now_s.saturating_add(lead)));
                }
            }
            Some(last) => {
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
            }
        }
        let pending: Vec<AccountId> = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        let mut seen: std::collections::HashSet<AccountId> = std::collections::HashSet::new();
        let mut sent = 0;
        for account in pending {
            if seen.insert(account.clone()) {
                sent += self.check_at(&account, now).await?;
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
                        sent += self.check_at(&entry.account, now).await?;
                    }
                }
            }
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
        self.check_at(account, self.clock.now()).await
    }

    async fn check_at(&self, account: &AccountId, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let Some(state) = inner.store.load(account).await? else { return Ok(0) };
        let mut sent = self.remind_state(account, &state, now).await?;
        sent += self.card_reminder(account, &state, now).await?;
        let standing = inner.policy.evaluate(Some(&state), now);
        let (Reason::Debt, Some(episode)) = (standing.reason(), standing.past_due_since()) else { return Ok(sent) };
        if matches!(standing.action(), Action::Allow) {
            return Ok(sent);
        }
        let stage = standing.stage().name().to_owned();
        // The webhook once per stage; an e-mail to each role the stage is
        // routed to that has an address (nobody to write to yet: skipped,
        // and tried again when one is known).
        let mut targets: Vec<(&'static str, Option<String>, Option<Recipient>)> = Vec::new();
        if !inner.config.webhook_url.is_empty() {
            targets.push((WEBHOOK, None, None));
        }
        if self.has_smtp() {
            for r in inner.routes.get(&stage).map(Vec::as_slice).unwrap_or(&[Recipient::Billing]) {
                if let Some(address) = r.address(&state) {
                    targets.push((r.channel(), Some(address.to_owned()), Some(*r)));
                }
            }
        }
        for (channel, to, recipient) in targets {
            let id = format!("ntc_{}_{}_{stage}", account, episode.timestamp());
            let pay_url = self.pay_url(account, &standing, &state);
            let created = now.timestamp();
            let send = async {
                match (&to, recipient) {
                    (Some(address), Some(r)) => {
                        // Billing keeps the notice id in its Message-ID; other roles add theirs.
                        let mail_id = match r {
                            Recipient::Billing => id.clone(),
                            Recipient::Contact(role) => format!("{id}.{}", role.as_str()),
                        };
                        self.email(account, &mail_id, address, &standing, &state, pay_url.as_deref(), r.internal(), now).await
                    }
                    _ => self.deliver(&payload(&id, account, &standing, &state, pay_url.as_deref(), created)).await,
                }
            };
            sent += usize::from(self.once(account, &state, Notice { episode, stage: &stage, channel, to: to.clone(), now }, send).await?);
        }
        Ok(sent)
    }

    /// Sends one notice unless it is recorded: claims it for
    /// `notify.lease` (another instance holding it: skipped, and tried
    /// again next sweep), runs `send` while renewing the claim, records it
    /// on the account. Whether this call sent it.
    async fn once(&self, account: &AccountId, state: &BillingState, notice: Notice<'_>, send: impl std::future::Future<Output = bool>) -> Result<bool, StoreError> {
        let Notice { episode, stage, channel, to, now } = notice;
        if state.notices().iter().any(|n| n.episode == episode && n.stage == stage && n.channel == channel) {
            return Ok(false);
        }
        let inner = &self.inner;
        let what = format!("{}:{stage}:{channel}", episode.timestamp());
        let holder = crate::store::holder_id();
        if !inner.store.claim(account, &what, &holder, inner.config.lease).await? {
            self.pend(account);
            return Ok(false);
        }
        if !self.holding(account, &what, &holder, send).await {
            // The claim lapses after the lease; a later sweep tries again.
            metrics::counter!(crate::metrics::NOTICES, "channel" => channel, "result" => "failed").increment(1);
            self.pend(account);
            return Ok(false);
        }
        let record = Change::NoticeSent(NoticeSent { episode, stage: stage.to_owned(), channel: channel.into(), at: now, to });
        inner.store.apply(account, None, &[record]).await?;
        metrics::counter!(crate::metrics::NOTICES, "channel" => channel, "result" => "sent").increment(1);
        Ok(true)
    }

    /// Where a message for the customer goes: the webhook (when `webhook`
    /// and one is configured) and an e-mail to the billing contact (when
    /// `email`, SMTP is configured and the address is known).
    fn customer_targets(&self, state: &BillingState, email: bool, webhook: bool) -> Vec<(&'static str, Option<String>)> {
        let mut targets = Vec::new();
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

    /// One "update your card" reminder per expiring card (per expiry month),
    /// by e-mail to the billing contact and by webhook
    /// (`pastdue.card_expiring`), with a signed link to the portal's
    /// payment-method update when pay links are on.
    async fn card_reminder(&self, account: &AccountId, state: &BillingState, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(card) = state.card_expiring() else { return Ok(0) };
        // The last day the card works, and the stage it is recorded under.
        let (next_year, next_month) = if card.month == 12 { (card.year + 1, 1) } else { (card.year, card.month + 1) };
        let Some(ends) = chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1).and_then(|d| d.pred_opt()) else { return Ok(0) };
        let last_day = ends.and_time(chrono::NaiveTime::MIN).and_utc();
        let stage = format!("card_expiring_{}_{:02}", card.year, card.month);
        let update_url = self.signed_pay_url(account, state).map(|u| format!("{u}&flow=payment_method_update"));
        let mut sent = 0;
        for (channel, to) in self.customer_targets(state, true, true) {
            let id = format!("crd_{account}_{stage}");
            let send = async {
                match &to {
                    Some(address) => self.card_email(&id, address, state, last_day, update_url.as_deref()).await,
                    None => {
                        let body = json!({
                            "type": "pastdue.card_expiring",
                            "id": id,
                            "account": account,
                            "exp_month": card.month,
                            "exp_year": card.year,
                            "last4": card.last4,
                            "update_url": update_url,
                            "contact_email": state.contact_email(),
                            "created": now.timestamp(),
                        });
                        self.deliver(&serde_json::to_vec(&body).unwrap_or_default()).await
                    }
                }
            };
            sent += usize::from(self.once(account, state, Notice { episode: last_day, stage: &stage, channel, to: to.clone(), now }, send).await?);
        }
        Ok(sent)
    }

    /// One reminder per upcoming due per `[[reminders.before_due]]` entry,
    /// once its lead time has begun and until the due date, on the entry's
    /// channels (e-mail to the billing contact); claimed, sent and recorded
    /// like stage notices, under the stage `before_due_<lead>` and the
    /// due date as the episode.
    async fn remind_state(&self, account: &AccountId, state: &BillingState, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let mut sent = 0;
        for (key, due) in state.upcoming() {
            if due.due <= now {
                continue; // due: from here the ladder speaks
            }
            for entry in &inner.before_due {
                let lead = chrono::TimeDelta::from_std(entry.before).unwrap_or(chrono::TimeDelta::MAX);
                if due.due.checked_sub_signed(lead).is_some_and(|from| now < from) {
                    continue;
                }
                let stage = format!("before_due_{}", lead_name(entry.before));
                if entry.email && self.has_smtp() && state.contact_email().is_none() {
                    self.nowhere(account, due.due, &stage);
                }
                for (channel, to) in self.customer_targets(state, entry.email, entry.webhook) {
                    let id = format!("rmd_{account}_{}_{stage}", due.due.timestamp());
                    let pay_url = due.hosted_url.clone().or_else(|| self.signed_pay_url(account, state));
                    let send = async {
                        match &to {
                            Some(address) => self.reminder_email(&id, address, state, key, due, pay_url.as_deref()).await,
                            None => {
                                let body = json!({
                                    "type": "pastdue.reminder",
                                    "id": id,
                                    "account": account,
                                    "invoice": key,
                                    "number": due.number,
                                    "due_at": due.due,
                                    "amount_due": due.amount_due,
                                    "currency": due.currency,
                                    "pay_url": pay_url,
                                    "before_seconds": entry.before.as_secs(),
                                    "contact_email": state.contact_email(),
                                    "created": now.timestamp(),
                                });
                                self.deliver(&serde_json::to_vec(&body).unwrap_or_default()).await
                            }
                        }
                    };
                    sent += usize::from(self.once(account, state, Notice { episode: due.due, stage: &stage, channel, to: to.clone(), now }, send).await?);
                }
            }
        }
        Ok(sent)
    }

    /// A reminder by e-mail with no billing address to go to: counted
    /// (`pastdue_notices_total{channel="email",result="no_recipient"}`) and
    /// logged once per reminder by this instance, never silent; the admin
    /// view and `pastdue status` show the due with `reminder_to: null`. Sent
    /// as soon as an address arrives, while the reminder's window lasts.
    fn nowhere(&self, account: &AccountId, due: DateTime<Utc>, stage: &str) {
        /// Beyond this many remembered, the memory starts over (a reminder
        /// may then be counted again).
        const REMEMBERED: usize = 10_000;
        let key = format!("{account}:{}:{stage}", due.timestamp());
        let mut seen = self.nowhere.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        if seen.insert(key) {
            metrics::counter!(crate::metrics::NOTICES, "channel" => EMAIL, "result" => "no_recipient").increment(1);
            tracing::warn!(%account, due = %due, stage, "a reminder before the due date has nowhere to go: the account has no billing e-mail address");
        }
    }

    /// Runs `send` while renewing the claim every third of the lease, so a
    /// slow receiver (or SMTP server) never lets the lease lapse mid-send
    /// and another instance send the same notice.
    async fn holding(&self, account: &AccountId, what: &str, holder: &str, send: impl std::future::Future<Output = bool>) -> bool {
        let lease = self.inner.config.lease;
        let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
        renew.tick().await; // the first tick is immediate
        tokio::pin!(send);
        loop {
            tokio::select! {
                delivered = &mut send => return delivered,
                _ = renew.tick() => match self.inner.store.renew_claim(account, what, holder, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(account = %account, what, "notice claim lapsed while sending"),
                    Err(e) => tracing::warn!(account = %account, error = %e, "notice claim could not be renewed"),
                },
            }
        }
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

    #[cfg(feature = "notify-email")]
    fn has_smtp(&self) -> bool {
        self.inner.smtp.is_some()
    }

    #[cfg(not(feature = "notify-email"))]
    fn has_smtp(&self) -> bool {
        false
    }

    #[cfg(not(feature = "notify-email"))]
    #[allow(clippy::too_many_arguments)]
    async fn email(&self, _: &AccountId, _: &str, _: &str, _: &Standing, _: &BillingState, _: Option<&str>, _: bool, _: DateTime<Utc>) -> bool {
        false
    }

    #[cfg(not(feature = "notify-webhook"))]
    async fn deliver(&self, _: &[u8]) -> bool {
        false
    }

    /// Sends the stage's e-mail, retrying like the webhook: the customer's
    /// message in the account's language, or (`internal`, for the account
    /// manager) a summary in the operator's default language. Its
    /// `Message-ID` derives from the notice id, so a mail system can drop a
    /// repeat.
    #[cfg(feature = "notify-email")]
    #[allow(clippy::too_many_arguments)]
    async fn email(&self, account: &AccountId, id: &str, to: &str, standing: &Standing, state: &BillingState, pay_url: Option<&str>, internal: bool, now: DateTime<Utc>) -> bool {
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
            .filter(|n| Some(n.episode) == standing.past_due_since() && n.channel != INTERNAL_CHANNEL)
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
    #[cfg(feature = "notify-email")]
    async fn reminder_email(&self, id: &str, to: &str, state: &BillingState, key: &str, due: &crate::state::UpcomingDue, pay_url: Option<&str>) -> bool {
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
    #[cfg(feature = "notify-email")]
    async fn card_email(&self, id: &str, to: &str, state: &BillingState, last_day: DateTime<Utc>, update_url: Option<&str>) -> bool {
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

    #[cfg(not(feature = "notify-email"))]
    async fn card_email(&self, _: &str, _: &str, _: &BillingState, _: DateTime<Utc>, _: Option<&str>) -> bool {
        false
    }

    #[cfg(not(feature = "notify-email"))]
    async fn reminder_email(&self, _: &str, _: &str, _: &BillingState, _: &str, _: &crate::state::UpcomingDue, _: Option<&str>) -> bool {
        false
    }

    /// Sends one multipart e-mail (plain `text`, and HTML with `pay_url` as
    /// a button), `Auto-Submitted`, its `Message-ID` from `id`, retrying
    /// like the webhook.
    #[cfg(feature = "notify-email")]
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
        self.retry(|attempt| {
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

    /// Runs `attempt` up to `notify.max_attempts` times with doubling
    /// backoff from 200 ms; whether one succeeded.
    async fn retry<F, Fut>(&self, mut attempt: F) -> bool
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let max = self.inner.config.max_attempts.max(1);
        let mut backoff = Duration::from_millis(200);
        for n in 1..=max {
            if attempt(n).await {
                return true;
            }
            if n < max {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        false
    }

    /// POSTs the signed body (signed anew per attempt), with retries.
    #[cfg(feature = "notify-webhook")]
    async fn deliver(&self, body: &[u8]) -> bool {
        let inner = &self.inner;
        self.retry(|attempt| async move {
            let signature = crate::signature::sign(inner.config.webhook_secret.expose(), Utc::now().timestamp(), body);
            let sent = inner
                .http
                .post(&inner.config.webhook_url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() => true,
                Ok(res) => {
                    tracing::info!(attempt, status = %res.status(), "notice receiver refused; retrying");
                    false
                }
                Err(e) => {
                    tracing::info!(attempt, error = %e, "notice receiver unreachable; retrying");
                    false
                }
            }
        })
        .await
    }
}

fn payload(id: &str, account: &AccountId, standing: &Standing, state: &BillingState, pay_url: Option<&str>, created: i64) -> Vec<u8> {
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

