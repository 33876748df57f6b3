//! The gate's per-request counters, striped so that workers never write
//! the same cache line.
//!
//! A plain `metrics::Counter` is one atomic that every worker thread adds
//! to: under load the line bounces between cores on every request. Here
//! each worker adds to its own slot; a background task sums the slots and
//! hands the difference to the `metrics` recorder once a second (and once
//! more when the gate is dropped). The exported values lag by at most
//! [`FLUSH_EVERY`]; nothing is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::standing::{Stage, Standing};

/// How often the striped counts reach the recorder.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Slots per counter: workers beyond this share a slot (still correct).
const SLOTS: usize = 16;

/// One slot on its own pair of cache lines (adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// The slot this thread adds to.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// A counter whose increments stay on the worker's own cache line.
struct Striped {
    slots: [Slot; SLOTS],
    /// How much of the sum the recorder already has.
    flushed: AtomicU64,
    target: metrics::Counter,
}

impl Striped {
    fn new(target: metrics::Counter) -> Self {
        Self { slots: Default::default(), flushed: AtomicU64::new(0), target }
    }

    fn add(&self) {
        self.slots[slot()].0.fetch_add(1, Relaxed);
    }

    fn flush(&self) {
        let sum: u64 = self.slots.iter().map(|s| s.0.load(Relaxed)).sum();
        let before = self.flushed.swap(sum, Relaxed);
        if sum > before {
            self.target.increment(sum - before);
        }
    }
}

/// Counters registered once, so a decision costs one add on the worker's
/// own cache line, not a metric-key lookup or a shared write.
pub(super) struct Counters {
    /// (stage, pass, deny), found by pointer.
    decisions: Vec<(Stage, Striped, Striped)>,
    hits: Striped,
    /// Off the hot path: plain counters.
    pub(super) misses: metrics::Counter,
    pub(super) stale: metrics::Counter,
    pub(super) fail_open: metrics::Counter,
    flusher: AtomicBool,
}

impl Counters {
    pub(super) fn new(policy: &crate::policy::Policy, unavailable: &Standing) -> Arc<Self> {
        use crate::metrics as m;
        m::describe();
        let ladder = policy.default_ladder();
        let stages = policy
            .stages()
            .into_iter()
            .chain([*ladder.active(), *ladder.canceled(), *ladder.unknown(), *ladder.override_block_stage(), *unavailable.stage()]);
        let mut decisions: Vec<(Stage, Striped, Striped)> = Vec::new();
        for stage in stages {
            if decisions.iter().any(|(known, _, _)| known.name() == stage.name()) {
                continue;
            }
            let labels = |result: &'static str| {
                [("stage", stage.name().to_owned()), ("action", stage.action().as_str().to_owned()), ("result", result.to_owned())]
            };
            decisions.push((
                stage,
                Striped::new(metrics::counter!(m::DECISIONS, &labels("pass"))),
                Striped::new(metrics::counter!(m::DECISIONS, &labels("deny"))),
            ));
        }
        let policy = if unavailable.action() == crate::standing::Action::Allow { "allow" } else { "block" };
        Arc::new(Self {
            decisions,
            hits: Striped::new(metrics::counter!(m::CACHE_HITS)),
            misses: metrics::counter!(m::CACHE_MISSES),
            stale: metrics::counter!(m::STALE_DECISIONS),
            fail_open: metrics::counter!(m::FAIL_OPEN, "policy" => policy),
            flusher: AtomicBool::new(false),
        })
    }

    /// Counts one decision for `stage`.
    pub(super) fn decision(&self, stage: Stage, pass: bool) {
        let found = self.decisions.iter().find(|(s, _, _)| s.same(stage)).or_else(|| {
            // A stage from another ladder with the same name (never on the
            // configured path, which hands out this ladder's stages).
            self.decisions.iter().find(|(s, _, _)| s.name() == stage.name())
        });
        if let Some((_, p, d)) = found {
            if pass { p.add() } else { d.add() }
        }
    }

    /// Counts one cache hit.
    pub(super) fn hit(&self) {
        self.hits.add();
    }

    /// Starts the task that hands the striped counts to the recorder, once,
    /// from the first request (inside the server's runtime). Later calls
    /// are one read of a line nobody writes.
    pub(super) fn ensure_flusher(self: &Arc<Self>) {
        if self.flusher.load(Relaxed) || self.flusher.swap(true, Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a test polling by hand): counts reach the
            // recorder when the gate is dropped.
            self.flusher.store(false, Relaxed);
            return;
        };
        let counters: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match counters.upgrade() {
                    Some(c) => c.flush(),
                    None => return,
                }
            }
        });
    }

    fn flush(&self) {
        self.hits.flush();
        for (_, pass, deny) in &self.decisions {
            pass.flush();
            deny.flush();
        }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        self.flush();
    }
}
