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
//!
//! `[notify]` and `[reminders]` are [`NotifyConfig`] and
//! [`RemindersConfig`]; the [`Notifier`] needs the `notify-email` or
//! `notify-webhook` feature.

mod settings;
#[cfg(feature = "notify-webhook")]
mod sms_text;
mod window;
#[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
mod notifier;

pub(crate) use self::settings::FULL_SWEEP_EVERY;
pub use self::settings::{BeforeDue, ChatChannel, ContactKeys, NotifyConfig, NotifyRoute, RemindersConfig, SmsConfig};
pub use self::window::{parse_zone, SendWindow};
#[cfg(any(feature = "notify-email", feature = "notify-webhook"))]
pub use self::notifier::{Notifier, SIGNATURE_HEADER};
