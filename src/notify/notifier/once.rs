//! Each notice once across instances: claimed for `notify.lease`, sent
//! while the claim is renewed, recorded on the account.

use super::*;

impl Notifier {
    /// Sends one notice unless it is recorded: claims it for
    /// `notify.lease` (another instance holding it: skipped, and tried
    /// again next sweep), runs `send` while renewing the claim, records it
    /// on the account (a recipient refused for good is recorded too, with
    /// why, so it is not tried again). Whether this call sent it.
    pub(super) async fn once<O: Into<Outcome>>(&self, account: &AccountId, state: &BillingState, notice: Notice<'_>, send: impl std::future::Future<Output = O>) -> Result<bool, StoreError> {
        let Notice { episode, stage, channel, to, now } = notice;
        if recorded(state, episode, stage, channel) {
            return Ok(false);
        }
        let inner = &self.inner;
        let what = format!("{}:{stage}:{channel}", episode.timestamp());
        let holder = crate::store::holder_id();
        if !inner.store.claim(account, &what, &holder, inner.config.lease).await? {
            self.pend(account);
            return Ok(false);
        }
        let refused = match self.holding(account, &what, &holder, async { send.await.into() }).await {
            Outcome::Sent => None,
            Outcome::Failed => {
                // The claim lapses after the lease; a later sweep tries again.
                metrics::counter!(crate::metrics::NOTICES, "channel" => channel, "result" => "failed").increment(1);
                self.pend(account);
                return Ok(false);
            }
            Outcome::Refused(why) => Some(why),
        };
        let result = if refused.is_some() { "refused" } else { "sent" };
        let sent = refused.is_none();
        let record = Change::NoticeSent(NoticeSent { episode, stage: stage.to_owned(), channel: channel.into(), at: now, to, refused });
        inner.store.apply(account, None, &[record]).await?;
        metrics::counter!(crate::metrics::NOTICES, "channel" => channel, "result" => result).increment(1);
        Ok(sent)
    }

    /// Runs `send` while renewing the claim every third of the lease, so a
    /// slow receiver (or SMTP server) never lets the lease lapse mid-send
    /// and another instance send the same notice.
    pub(super) async fn holding<T>(&self, account: &AccountId, what: &str, holder: &str, send: impl std::future::Future<Output = T>) -> T {
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
}

/// Whether the notice for `stage` of `episode` on `channel` is recorded
/// (sent, or refused for good).
pub(super) fn recorded(state: &BillingState, episode: DateTime<Utc>, stage: &str, channel: &str) -> bool {
    state.notices().iter().any(|n| n.episode == episode && n.stage == stage && n.channel == channel)
}
