//! The invalidation listener: one subscription, kept alive.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::account::AccountId;
use crate::store::Invalidation;

/// How often the listener checks that its connection still answers (a
/// SIGSTOPped Redis keeps the socket open but says nothing).
const LISTENER_PING: Duration = Duration::from_secs(1);

/// Keeps one subscription to the invalidation channel alive, forever.
///
/// On Cluster, `PUBLISH` reaches every node, so subscribing on any one node
/// hears every write; the listener moves to the next node when one fails.
/// Each (re)subscription is followed by [`Invalidation::All`]: whatever was
/// published while nobody listened is unknown, so every cached state must
/// be re-read.
pub(super) async fn listen(
    nodes: Vec<String>,
    channel: String,
    tx: broadcast::Sender<Invalidation>,
    listening: watch::Sender<bool>,
) {
    let mut delay = Duration::from_millis(20);
    for node in nodes.iter().cycle() {
        match subscribe(node, &channel).await {
            Ok(pubsub) => {
                delay = Duration::from_millis(20);
                listening.send_replace(true);
                metrics::counter!(crate::metrics::RESUBSCRIBES).increment(1);
                let _ = tx.send(Invalidation::All);
                let (mut sink, mut stream) = pubsub.split();
                let mut ping = tokio::time::interval(LISTENER_PING);
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let Ok(payload) = msg.get_payload::<String>() else { continue };
                                if let Ok(account) = AccountId::new(&payload) {
                                    let _ = tx.send(Invalidation::Account(account));
                                }
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            let alive = tokio::time::timeout(LISTENER_PING, sink.ping::<redis::Value>()).await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                listening.send_replace(false);
                let _ = tx.send(Invalidation::All);
                tracing::warn!(node = %redact(node), "invalidation subscription lost; resubscribing");
            }
            Err(e) => {
                tracing::debug!(node = %redact(node), error = %e, "invalidation subscribe failed");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn subscribe(node: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(node)?;
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out"))),
    }
}

/// A node URL without its password, for logs.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_auth, host)) => {
            let scheme = scheme_auth.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

