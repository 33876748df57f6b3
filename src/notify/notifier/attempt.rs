//! How a delivery ends: each attempt ([`Attempt`]), retried with backoff
//! ([`Notifier::retry`]), and the outcome [`Notifier::once`] records.

use super::*;

/// How a notice's delivery ended.
#[derive(Debug)]
pub(in crate::notify) enum Outcome {
    /// The receiver took it.
    Sent,
    /// Not this time: the claim lapses and a later sweep tries again.
    Failed,
    /// Refused for good for this recipient: recorded with why.
    Refused(String),
}

impl From<bool> for Outcome {
    fn from(sent: bool) -> Self {
        if sent {
            Outcome::Sent
        } else {
            Outcome::Failed
        }
    }
}

impl Notifier {
    /// Runs `attempt` up to `notify.max_attempts` times with doubling
    /// backoff from 200 ms, until one is sent or one says retrying cannot
    /// help ([`Attempt::GiveUp`], [`Attempt::Refused`]).
    pub(super) async fn retry<F, Fut>(&self, mut attempt: F) -> Outcome
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future,
        Fut::Output: Into<Attempt>,
    {
        let max = self.inner.config.max_attempts.max(1);
        let mut backoff = Duration::from_millis(200);
        for n in 1..=max {
            match attempt(n).await.into() {
                Attempt::Sent => return Outcome::Sent,
                Attempt::GiveUp => return Outcome::Failed,
                Attempt::Refused(why) => return Outcome::Refused(why),
                Attempt::Retry => {}
            }
            if n < max {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        Outcome::Failed
    }

    /// [`Notifier::retry`], as whether it was sent.
    pub(super) async fn sent<F, Fut>(&self, attempt: F) -> bool
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future,
        Fut::Output: Into<Attempt>,
    {
        matches!(self.retry(attempt).await, Outcome::Sent)
    }
}

/// How one delivery attempt ended.
#[cfg_attr(not(feature = "notify-webhook"), allow(dead_code))]
pub(super) enum Attempt {
    Sent,
    /// Failed; another attempt may succeed.
    Retry,
    /// Refused (a revoked chat webhook, a wrong API key): no more attempts
    /// this pass; a later sweep tries again.
    GiveUp,
    /// Refused for good, for this recipient (a number that cannot be
    /// texted): recorded with why, never tried again.
    Refused(String),
}

impl From<bool> for Attempt {
    fn from(sent: bool) -> Self {
        if sent {
            Attempt::Sent
        } else {
            Attempt::Retry
        }
    }
}
