//! Seeds N accounts in debt into Redis, each with its current stage's
//! notice already recorded (so notifiers have nothing to send): the setup
//! for measuring what idle notifier instances cost Redis
//! (`scripts/bench_idle.sh`).
//!
//! `cargo run --release --example seed_debtors -- redis://127.0.0.1:6379 [debtors]`

use chrono::{TimeDelta, Utc};
use pastdue::state::{Change, Currency, NoticeSent, UnpaidInvoice};
use pastdue::store::{RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::AccountId;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let store = RedisStore::connect(StoreUrl::parse(&url)?, RedisOptions::default()).await?;
    // Suspended long ago (the default ladder: 17 days), notice recorded.
    let since = Utc::now() - TimeDelta::days(30);
    let invoice = UnpaidInvoice { amount_due: 4_900, currency: Currency::new("eur").expect("a currency"), hosted_url: None, number: None, since, observed: since, uncollectible: false, next_attempt: None };
    let sent = Change::NoticeSent(NoticeSent { episode: since, stage: "suspended".into(), channel: "webhook".into(), at: since, to: None, refused: None });
    let changes = [Change::InvoiceUnpaid { id: "in_1".into(), invoice }, sent];
    let started = std::time::Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let writes = chunk.iter().map(|i| {
            let store = &store;
            let changes = &changes;
            async move { store.apply(&AccountId::new(&format!("debtor-{i:06}")).expect("an id"), None, changes).await }
        });
        for r in futures_util::future::join_all(writes).await {
            r?;
        }
    }
    println!("seeded {n} debtors in {:?}", started.elapsed());
    Ok(())
}
