//! Reminders that are not stage notices: an invoice coming due, a card
//! about to expire.

use super::*;
use serde_json::json;

impl Notifier {
    /// One "update your card" reminder per expiring card (per expiry month),
    /// by e-mail to the billing contact and by webhook
    /// (`pastdue.card_expiring`), with a signed link to the portal's
    /// payment-method update when pay links are on.
    pub(super) async fn card_reminder(&self, account: &AccountId, state: &BillingState, now: DateTime<Utc>, held: &mut Vec<Waiting>) -> Result<usize, StoreError> {
        let Some(card) = state.card_expiring() else { return Ok(0) };
        // The last day the card works, and the stage it is recorded under.
        let (next_year, next_month) = if card.month == 12 { (card.year + 1, 1) } else { (card.year, card.month + 1) };
        let Some(ends) = chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1).and_then(|d| d.pred_opt()) else { return Ok(0) };
        let last_day = ends.and_time(chrono::NaiveTime::MIN).and_utc();
        let stage = format!("card_expiring_{}_{:02}", card.year, card.month);
        let update_url = self.signed_pay_url(account, state).map(|u| format!("{u}&flow=payment_method_update"));
        let mut sent = 0;
        for (channel, to) in self.customer_targets(state, true, true, None) {
            let notice = Notice { episode: last_day, stage: &stage, channel, to: to.clone(), now };
            if self.hold(state, &notice, Some(last_day), held) {
                continue;
            }
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
            sent += usize::from(self.once(account, state, notice, send).await?);
        }
        Ok(sent)
    }

    /// One reminder per upcoming due per `[[reminders.before_due]]` entry,
    /// once its lead time has begun and until the due date, on the entry's
    /// channels (e-mail to the billing contact); claimed, sent and recorded
    /// like stage notices, under the stage `before_due_<lead>` and the
    /// due date as the episode. A send window moves a reminder earlier,
    /// never later: to the start of the last opening before its moment.
    pub(super) async fn remind_state(&self, account: &AccountId, state: &BillingState, now: DateTime<Utc>, held: &mut Vec<Waiting>) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let mut sent = 0;
        for (key, due) in state.upcoming() {
            if due.due <= now {
                continue; // due: from here the ladder speaks
            }
            for entry in &inner.before_due {
                let lead = chrono::TimeDelta::from_std(entry.before).unwrap_or(chrono::TimeDelta::MAX);
                let stage = format!("before_due_{}", lead_name(entry.before));
                let sms = entry.sms.then_some(BEFORE_DUE);
                if let Some(moment) = due.due.checked_sub_signed(lead) {
                    let from = self.earlier(state, moment);
                    if now < from {
                        // Moved earlier by the window: the index wakes us then.
                        if from < moment {
                            for (channel, _) in self.customer_targets(state, entry.email, entry.webhook, sms) {
                                if !once::recorded(state, due.due, &stage, channel) {
                                    held.push(Waiting { at: from, episode: due.due, stage: stage.clone(), channel: channel.to_owned() });
                                }
                            }
                        }
                        continue;
                    }
                }
                if entry.email && self.has_smtp() && state.contact_email().is_none() {
                    self.nowhere(account, due.due, &stage);
                }
                for (channel, to) in self.customer_targets(state, entry.email, entry.webhook, sms) {
                    let notice = Notice { episode: due.due, stage: &stage, channel, to: to.clone(), now };
                    if self.hold(state, &notice, Some(due.due), held) {
                        continue;
                    }
                    let id = format!("rmd_{account}_{}_{stage}", due.due.timestamp());
                    let pay_url = due.hosted_url.clone().or_else(|| self.signed_pay_url(account, state));
                    let send = async {
                        match &to {
                            Some(phone) if channel == SMS => self.text(phone, &self.reminder_text(account, state, key, due, pay_url.as_deref())).await,
                            Some(address) => self.reminder_email(&id, address, state, key, due, pay_url.as_deref()).await.into(),
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
                                self.deliver(&serde_json::to_vec(&body).unwrap_or_default()).await.into()
                            }
                        }
                    };
                    sent += usize::from(self.once(account, state, notice, send).await?);
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

}
