//! Propagation delay: a change written through instance A reaches instance
//! B's invalidation listener (where B's cache evicts it). Reports p50/p99.
//!
//! `cargo run --release --example propagation -- redis://127.0.0.1:6379 [samples]`

use std::time::{Duration, Instant};

use pastdue::state::{Change, Override, OverrideMode};
use pastdue::store::{Invalidation, RedisOptions, RedisStore, Store, StoreUrl};
use pastdue::AccountId;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let a = RedisStore::connect(StoreUrl::parse(&url)?, RedisOptions::default()).await?;
    let b = RedisStore::connect(StoreUrl::parse(&url)?, RedisOptions::default()).await?;
    let mut rx = b.invalidations();
    let mut delays = Vec::with_capacity(samples);
    for i in 0..samples {
        let account = AccountId::new(&format!("prop-{i}"))?;
        let change = Change::SetOverride(Override {
            mode: OverrideMode::Block,
            until: None,
            reason: "propagation".into(),
            by: "bench".into(),
            at: chrono::Utc::now(),
        });
        let started = Instant::now();
        a.apply(&account, None, &[change]).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await?? {
                Invalidation::Account(seen) if seen == account => break,
                _ => continue,
            }
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let pct = |p: f64| delays[((delays.len() as f64 * p) as usize).min(delays.len() - 1)].as_secs_f64() * 1e3;
    println!("samples={samples} write+propagate p50={:.3}ms p99={:.3}ms max={:.3}ms", pct(0.5), pct(0.99), pct(1.0));
    Ok(())
}
