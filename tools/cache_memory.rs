//! Resident memory per cached account: fills the gate's cache with N
//! accounts (most in good standing, 2% in debt) and reads the process's RSS.
//!
//! `cargo run --release --example cache_memory -- [accounts]`

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pastdue::__internals::StateCache;
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::store::Store;
use pastdue::{AccountId, MemoryStore};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let store = Arc::new(MemoryStore::new());
    let ids: Vec<AccountId> = (0..n).map(|i| AccountId::new(&format!("acct-{i:07}")).unwrap()).collect();
    // Known accounts: 2% owe money; of the rest, half are paying customers
    // the store knows (a linked customer), half never seen (free users).
    for (i, id) in ids.iter().enumerate() {
        let change = if std::env::var("NO_DEBT").is_err() && i % 50 == 0 {
            let since = Utc::now();
            Change::InvoiceUnpaid {
                id: "in_1".into(),
                invoice: UnpaidInvoice { amount_due: 1200, currency: Currency::new("eur").unwrap(), hosted_url: Some("https://invoice.stripe.com/i/x".into()), number: None, since, observed: since, uncollectible: false, next_attempt: None },
            }
        } else if i % 2 == 0 {
            Change::LinkCustomer(format!("cus_{i}"))
        } else {
            continue;
        };
        store.apply(id, None, &[change]).await?;
    }
    // Measured from before the cache is built: whatever it takes up
    // front counts too.
    let before = rss_bytes();
    let cache = StateCache::new(store.clone() as Arc<dyn Store>, n, Duration::from_secs(3600), Duration::from_secs(1));
    // Each lookup with its own id, as from a request: whatever the cache
    // keeps of the key is counted, not shared with `ids`.
    // The slowest fill says what the index's growth costs: it doubles
    // under the write lock, and every reader waits for that one insert.
    let mut slowest = (Duration::ZERO, 0);
    for (i, id) in ids.iter().enumerate() {
        let from_request = AccountId::new(id.as_str()).unwrap();
        let started = std::time::Instant::now();
        cache.get(&from_request, chrono::Utc::now()).await;
        slowest = slowest.max((started.elapsed(), i + 1));
    }
    let after = rss_bytes();
    println!(
        "accounts={} cached={} rss_before={}MiB rss_after={}MiB bytes_per_account={:.0} (12-byte ids, each from its own request; {})",
        n,
        cache.len(),
        before >> 20,
        after >> 20,
        (after.saturating_sub(before)) as f64 / n as f64,
        if std::env::var("NO_DEBT").is_err() { "2% in debt" } else { "nobody in debt" }
    );
    println!("slowest fill: {:.2} ms, the {}th account", slowest.0.as_secs_f64() * 1e3, slowest.1);
    Ok(())
}
