//! Without the `notify-email` feature: no SMTP, so no e-mail is ever
//! attempted (the callers ask [`Notifier::has_smtp`] first).

use super::*;

impl Notifier {
    pub(super) fn has_smtp(&self) -> bool {
        false
    }

    pub(super) async fn email(&self, _: StageMail<'_>) -> bool {
        false
    }

    pub(super) async fn reminder_email(&self, _: &str, _: &str, _: &BillingState, _: &str, _: &crate::state::UpcomingDue, _: Option<&str>) -> bool {
        false
    }

    pub(super) async fn card_email(&self, _: &str, _: &str, _: &BillingState, _: DateTime<Utc>, _: Option<&str>) -> bool {
        false
    }
}
