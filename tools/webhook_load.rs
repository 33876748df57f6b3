//! Webhook ingest load: posts signed, unique `invoice.payment_failed` events
//! as fast as a fixed number of concurrent senders can, and reports events/s
//! and latency percentiles.
//!
//! `cargo run --release --example webhook_load -- <url> <secret> [events] [concurrency] [pay]`
//!
//! The provider follows the URL's last segment: `/webhooks/stripe` (Stripe
//! events), `/webhooks/paddle` (Paddle transactions, `secret` the
//! notification secret key), `/webhooks/events` (Standard Webhooks,
//! `secret` = `whsec_…`); the same story either way.
//!
//! With `pay`, every second event is the `invoice.paid` of the invoice the
//! event before it failed, a minute later: each pair opens and ends a debt
//! episode (what the recovery figures record).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Provider {
    Stripe,
    Paddle,
    Events,
}

fn provider(url: &str) -> Provider {
    match url.trim_end_matches('/').rsplit('/').next() {
        Some("paddle") => Provider::Paddle,
        Some("events") => Provider::Events,
        _ => Provider::Stripe,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:3000/webhooks/stripe".into());
    let secret = args.get(2).cloned().unwrap_or_else(|| "whsec_bench".into());
    let events: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(32);
    let pay = args.get(5).is_some_and(|a| a == "pay");
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let run = std::process::id();
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, secret, next) = (client.clone(), url.clone(), secret.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        return (latencies, failures);
                    }
                    let now = chrono::Utc::now().timestamp();
                    // A paid event settles the failed one before it (same account).
                    let (kind, invoice, created) = if pay && i % 2 == 1 { ("invoice.paid", i - 1, now + 60) } else { ("invoice.payment_failed", i, now) };
                    let account = if pay { (i / 2) % 5000 } else { i % 5000 };
                    let request = match provider(&url) {
                        Provider::Stripe => {
                            let body = serde_json::to_vec(&serde_json::json!({
                                "id": format!("evt_load_{run}_{i}"), "type": kind, "created": created,
                                "data": { "object": { "id": format!("in_{run}_{invoice}"), "customer": format!("cus_{account}"),
                                    "amount_due": 1200, "currency": "eur", "status": if kind == "invoice.paid" { "paid" } else { "open" },
                                    "parent": { "subscription_details": { "metadata": { "account_id": format!("load-{account}") } } } } }
                            }))
                            .expect("json");
                            client.post(&url).header("stripe-signature", pastdue::signature::sign(&secret, now, &body)).body(body)
                        }
                        Provider::Paddle => {
                            let (kind, status) = if kind == "invoice.paid" { ("transaction.completed", "completed") } else { ("transaction.payment_failed", "past_due") };
                            let at = chrono::DateTime::from_timestamp(created, 0).expect("a time").to_rfc3339();
                            let body = serde_json::to_vec(&serde_json::json!({
                                "event_id": format!("evt_load_{run}_{i}"), "event_type": kind, "occurred_at": at, "notification_id": format!("ntf_load_{run}_{i}"),
                                "data": { "id": format!("txn_{run}_{invoice}"), "status": status, "customer_id": format!("ctm_{account}"),
                                    "custom_data": { "account_id": format!("load-{account}") }, "currency_code": "EUR", "collection_mode": "automatic",
                                    "details": { "totals": { "grand_total": "1200" } } }
                            }))
                            .expect("json");
                            client.post(&url).header("paddle-signature", pastdue::paddle::signature::sign(&secret, now, &body)).body(body)
                        }
                        Provider::Events => {
                            let at = chrono::DateTime::from_timestamp(created, 0).expect("a time").to_rfc3339();
                            let (kind, amount) = if kind == "invoice.paid" { ("invoice.paid", None) } else { ("invoice.past_due", Some(1200)) };
                            let body = serde_json::to_vec(&serde_json::json!({
                                "type": kind, "timestamp": at,
                                "data": { "account": format!("load-{account}"), "invoice": format!("INV-{run}-{invoice}"), "amount_due": amount, "currency": "eur" }
                            }))
                            .expect("json");
                            let id = format!("msg_load_{run}_{i}");
                            let key = pastdue::events::signature::key(&secret).expect("a whsec_ secret");
                            let signature = pastdue::events::signature::sign(&key, &id, now, &body);
                            client.post(&url).header("webhook-id", id).header("webhook-timestamp", now.to_string()).header("webhook-signature", signature).body(body)
                        }
                    };
                    let t = Instant::now();
                    let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                    latencies.push(t.elapsed());
                    failures += usize::from(!ok);
                }
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::with_capacity(events);
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await?;
        all.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "events={} concurrency={} failures={} elapsed={:.2}s rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        all.len(),
        concurrency,
        failures,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    Ok(())
}
