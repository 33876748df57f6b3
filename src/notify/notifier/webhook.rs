//! Notices by signed webhook (`Pastdue-Signature`).

use super::*;

impl Notifier {
    /// POSTs the signed body (signed anew per attempt), with retries.
    pub(super) async fn deliver(&self, body: &[u8]) -> bool {
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

    /// POSTs a chat message to the `[[notify.chat]]` entry at `index`
    /// (unsigned: the URL is the credential), with retries.
    pub(super) async fn post_chat(&self, index: usize, body: &[u8]) -> bool {
        let inner = &self.inner;
        let Some(chat) = inner.config.chat.get(index) else { return false };
        self.retry(|attempt| async move {
            let sent = inner.http.post(chat.url.expose()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec()).send().await;
            match sent {
                Ok(res) if res.status().is_success() => true,
                Ok(res) => {
                    tracing::info!(attempt, status = %res.status(), "chat refused the message; retrying");
                    false
                }
                Err(e) => {
                    tracing::info!(attempt, error = %e.without_url(), "chat unreachable; retrying");
                    false
                }
            }
        })
        .await
    }
}
