//! What the recovery report costs at scale: seeds closed and open debt
//! episodes into Redis (started over the last 90 days, paid or voided
//! after 0-30 days), then times the report a number of times, and the
//! at-risk count a full notifier sweep makes.
//!
//! `cargo run --release --example recovery_report -- redis://127.0.0.1:6379 [closed] [open] [reads]`

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use pastdue::recovery::Range;
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::store::{RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::{AccountId, Policy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let closed: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let open: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let reads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(50);
    let store = RedisStore::connect(StoreUrl::parse(&url)?, RedisOptions::default()).await?;
    let now = Utc::now();
    let eur = Currency::new("eur").expect("a currency");
    let started = Instant::now();
    let ids: Vec<usize> = (0..closed + open).collect();
    for chunk in ids.chunks(256) {
        let writes = chunk.iter().map(|&i| {
            let store = &store;
            async move {
                // Spread over 90 days and 30 days of paying; one in ten voided.
                let since = now - TimeDelta::minutes((i as i64 * 7_919) % (90 * 1_440));
                let invoice = UnpaidInvoice { amount_due: 1_000 + (i as i64 % 50) * 100, currency: eur, hosted_url: None, number: None, since, observed: since, uncollectible: false, next_attempt: None };
                let mut changes = vec![Change::InvoiceUnpaid { id: format!("in_{i}"), invoice }];
                if i < closed {
                    let at = (since + TimeDelta::hours((i as i64 * 31) % (30 * 24) + 1)).min(now);
                    let id = format!("in_{i}");
                    changes.push(if i % 10 == 0 { Change::InvoiceVoided { id, at } } else { Change::InvoiceSettled { id, at } });
                }
                store.apply(&AccountId::new(&format!("episode-{i:07}")).expect("an id"), None, &changes).await
            }
        });
        for r in futures_util::future::join_all(writes).await {
            r?;
        }
    }
    println!("seeded {closed} closed and {open} open episodes in {:.1?}", started.elapsed());

    let t = Instant::now();
    let at_risk = pastdue::store::refresh_at_risk(&store, &Policy::default(), now).await?;
    let counted: u64 = at_risk.by_stage(None).values().map(|r| r.accounts).sum();
    println!("at-risk count (what a full notifier sweep adds): {counted} accounts in {:.1?}", t.elapsed());

    for days in [90, 365] {
        let range = Range::parse(Some(&(now - TimeDelta::days(days - 1)).date_naive().to_string()), None, now)?;
        let mut times: Vec<Duration> = Vec::with_capacity(reads);
        let mut report = None;
        for _ in 0..reads {
            let t = Instant::now();
            report = Some(pastdue::store::report(&store, range, None).await?);
            times.push(t.elapsed());
        }
        times.sort();
        let report = report.expect("at least one read");
        println!(
            "report over {days} days ({} episodes started, {} paid): p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms over {reads} reads",
            report.episodes.started,
            report.episodes.paid,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() * 9 / 10].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
