//! Without the `notify-webhook` feature: no HTTP client, so `[notify.sms]`
//! is refused and nothing is ever texted.

use super::*;

#[derive(Clone)]
pub(super) struct Sms;

impl Sms {
    pub(super) fn new(n: &NotifyConfig, _: &Policy) -> Result<Option<Self>, ConfigError> {
        if n.sms.account_sid.is_empty() {
            Ok(None)
        } else {
            Err(ConfigError::key("notify.sms.account_sid", String::from("needs pastdue's `notify-webhook` feature")))
        }
    }
}

impl Notifier {
    pub(super) fn sms_to<'a>(&self, _: &'a BillingState, _: &str) -> Option<&'a str> {
        None
    }

    pub(super) async fn text(&self, _: &str, _: &str) -> Outcome {
        Outcome::Failed
    }

    pub(super) fn stage_text(&self, _: &AccountId, _: &Standing, _: &BillingState) -> String {
        String::new()
    }

    pub(super) fn reminder_text(&self, _: &AccountId, _: &BillingState, _: &str, _: &crate::state::UpcomingDue, _: Option<&str>) -> String {
        String::new()
    }
}
