//! quick_cache (what the gate used before its own table) against moka, the other well-kept
//! choice, on the gate's access pattern: reads of 10,000 hot accounts by a
//! borrowed `&str`, from two threads at once.
//!
//! `cargo bench --bench cache`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

const KEYS: usize = 10_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("acct-{i}")).collect()
}

fn benches(c: &mut Criterion) {
    let names = keys();
    let quick: Arc<quick_cache::sync::Cache<Arc<str>, Arc<u64>>> = Arc::new(quick_cache::sync::Cache::new(KEYS * 2));
    let moka: Arc<moka::sync::Cache<Arc<str>, Arc<u64>>> = Arc::new(moka::sync::Cache::new((KEYS * 2) as u64));
    for (i, k) in names.iter().enumerate() {
        quick.insert(Arc::from(k.as_str()), Arc::new(i as u64));
        moka.insert(Arc::from(k.as_str()), Arc::new(i as u64));
    }
    let mut group = c.benchmark_group("cache_get_hit");
    // One reader on this thread while a second thread reads too, as two
    // Tokio workers do.
    for (name, read) in [
        ("quick_cache", Box::new({ let q = quick.clone(); move |k: &str| q.get(k).is_some() }) as Box<dyn Fn(&str) -> bool + Send + Sync>),
        ("moka", Box::new({ let m = moka.clone(); move |k: &str| m.get(k).is_some() })),
    ] {
        let read = Arc::new(read);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let background = {
            let (read, stop, names) = (read.clone(), stop.clone(), names.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::black_box(read(&names[i % KEYS]));
                    i += 7;
                }
            })
        };
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                std::hint::black_box(read(&names[i % KEYS]))
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        background.join().unwrap();
    }
    group.finish();
}

criterion_group! {
    name = cache;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(cache);
