//! Each notice once across instances: claimed for `notify.lease`, sent
//! while the claim is renewed, recorded on the account.

use super::*;

impl Notifier {
    /// Sends one notice unless it is recorded: claims it for
    /// `notify.lease` (another instance holding it: skipped, and tried
    /// again next sweep), runs `send` while renewing the claim, records it
    /// on the account. Whether this call sent it.
    pub(super) async fn once(&self, account: &AccountId, state: &BillingState, notice: Notice<'_>, send: impl std::future::Future<Output = bool>) -> Result<bool, StoreError> {
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

    /// Runs `send` while renewing the claim every third of the lease, so a
    /// slow receiver (or SMTP server) never lets the lease lapse mid-send
    /// and another instance send the same notice.
    pub(super) async fn holding(&self, account: &AccountId, what: &str, holder: &str, send: impl std::future::Future<Output = bool>) -> bool {
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
