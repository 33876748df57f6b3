//! Without the `notify-webhook` feature: no HTTP client, so no webhook
//! is configured and none is ever delivered.

use super::*;

impl Notifier {
    pub(super) async fn deliver(&self, _: &[u8]) -> bool {
        false
    }

    pub(super) async fn post_chat(&self, _: usize, _: &[u8]) -> bool {
        false
    }
}
