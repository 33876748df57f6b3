//! When a notice may go out: the send window in its recipient's time zone,
//! and the notices held for it (kept on the account, found again through
//! [`Index::Waiting`] when the window opens).

use super::*;
use crate::notify::{parse_zone, SendWindow};
use chrono_tz::Tz;

/// `notify.send_hours`, `notify.send_days` and `notify.timezone`, checked.
pub(super) fn window(n: &NotifyConfig) -> Result<(SendWindow, Tz), ConfigError> {
    let window = SendWindow::parse(&n.send_hours, &n.send_days).map_err(|(key, message)| ConfigError::key(key, message))?;
    let zone = parse_zone(&n.timezone)
        .ok_or_else(|| ConfigError::key("notify.timezone", format!("{:?} is not an IANA time zone (\"UTC\", \"Europe/Riga\", \"America/New_York\")", n.timezone)))?;
    Ok((window, zone))
}

impl Notifier {
    /// The zone a message on `channel` is read in: your team's
    /// (`notify.timezone`) for the team's channels, else the account's own
    /// (an unreadable one counts as none).
    pub(super) fn zone(&self, channel: &str, state: &BillingState) -> Tz {
        if crate::state::is_internal(channel) {
            return self.inner.zone;
        }
        state.timezone().and_then(|z| parse_zone(&z.value)).unwrap_or(self.inner.zone)
    }

    /// Whether `notice` must wait for its recipient's send window; if so it
    /// goes into `held` with when it goes out. Never one already recorded.
    /// With a `deadline` (a reminder's due date), one whose window opens
    /// only at or after it goes out at once, arriving before matters more;
    /// except a text message, which is not sent at all then (a phone
    /// buzzing at night is worse than one reminder fewer).
    pub(super) fn hold(&self, state: &BillingState, notice: &Notice<'_>, deadline: Option<DateTime<Utc>>, held: &mut Vec<Waiting>) -> bool {
        if self.inner.window.always() || once::recorded(state, notice.episode, notice.stage, notice.channel) {
            return false;
        }
        let at = self.inner.window.next_open(notice.now, self.zone(notice.channel, state));
        if at <= notice.now {
            return false;
        }
        if deadline.is_some_and(|d| at >= d) {
            return notice.channel == SMS;
        }
        held.push(Waiting { at, episode: notice.episode, stage: notice.stage.to_owned(), channel: notice.channel.to_owned() });
        true
    }

    /// When a message meant for `at` that must not arrive later goes out:
    /// `at` when the window is open then, else the start of the last
    /// opening before it, in the account's zone.
    pub(super) fn earlier(&self, state: &BillingState, at: DateTime<Utc>) -> DateTime<Utc> {
        self.inner.window.earlier_open(at, self.zone(EMAIL, state))
    }

    /// Keeps the account's list of held notices as `held` says. Written
    /// only when a notice joins or leaves it, when one goes out earlier
    /// than stored, or when a stored time has passed: so instances whose
    /// answers differ (a rolling change of `send_hours`) settle on the
    /// earliest instead of rewriting each other's.
    pub(super) async fn keep_waiting(&self, account: &AccountId, state: &BillingState, mut held: Vec<Waiting>, now: DateTime<Utc>) -> Result<(), StoreError> {
        held.sort();
        held.dedup();
        held.truncate(crate::state::MAX_WAITING);
        let stored = state.waiting();
        let key = |w: &Waiting| (w.episode, w.stage.clone(), w.channel.clone());
        let same_notices = held.len() == stored.len() && held.iter().all(|h| stored.iter().any(|s| key(s) == key(h)));
        let moves = held.iter().any(|h| stored.iter().find(|s| key(s) == key(h)).is_some_and(|s| h.at < s.at || s.at <= now));
        if same_notices && !moves {
            return Ok(());
        }
        self.inner.store.apply(account, None, &[Change::Waiting(held)]).await?;
        Ok(())
    }
}
