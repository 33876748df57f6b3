//! Notices by signed webhook (`Pastdue-Signature`).

use super::*;

impl Notifier {
    /// POSTs the signed body (signed anew per attempt), with retries.
    pub(super) async fn deliver(&self, body: &[u8]) -> bool {
        let inner = &self.inner;
        self.sent(|attempt| async move {
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
    /// (unsigned: the URL is the credential). Retried on 5xx, 429 and
    /// network errors; a 4xx (a revoked or mistyped webhook) is not, so a
    /// dead chat costs one request per notice, not a retry storm (the
    /// claim lapses and a later sweep tries again).
    pub(super) async fn post_chat(&self, index: usize, body: &[u8]) -> bool {
        let inner = &self.inner;
        let Some(chat) = inner.config.chat.get(index) else { return false };
        let chat_key = format!("notify.chat[{index}]");
        let chat_key = &chat_key;
        self.sent(|attempt| async move {
            let sent = inner.http.post(chat.url.expose()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec()).send().await;
            match sent {
                Ok(res) if res.status().is_success() => Attempt::Sent,
                Ok(res) if res.status().is_client_error() && res.status() != reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    tracing::warn!(chat = %chat_key, status = %res.status(), "the chat refused the message; not retrying (is the webhook URL still valid?)");
                    Attempt::GiveUp
                }
                Ok(res) => {
                    tracing::info!(chat = %chat_key, attempt, status = %res.status(), "the chat is busy or failing; retrying");
                    Attempt::Retry
                }
                Err(e) => {
                    tracing::info!(chat = %chat_key, attempt, error = %e.without_url(), "the chat is unreachable; retrying");
                    Attempt::Retry
                }
            }
        })
        .await
    }
}
