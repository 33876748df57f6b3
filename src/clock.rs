//! Time, injected: the ladder runs on days, so tests move a clock instead
//! of sleeping.
//!
//! The gate reads its clock once per request, the notifier once per check
//! and sweep, the admin API once per call; the pay endpoint's mint window
//! follows the gate's clock. [`SystemClock`] is the default;
//! [`ManualClock`] is a clock a test (or a replay tool) sets by hand.
//! Transport timestamps — signatures on webhooks and notices, pay-link
//! expiry — are wall-clock by nature (the other side checks them against
//! its own clock) and do not use it.
//!
//! ```
//! use pastdue::clock::{Clock, ManualClock};
//! let clock = ManualClock::starting_at(chrono::Utc::now());
//! let before = clock.now();
//! clock.advance(chrono::TimeDelta::days(15));
//! assert_eq!(clock.now() - before, chrono::TimeDelta::days(15));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock, as components hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock (`Utc::now()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to. Cloning shares the time.
#[derive(Clone)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `at` (to the microsecond).
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self { micros: Arc::new(AtomicI64::new(at.timestamp_micros())) }
    }

    /// Sets the time.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }

    /// Moves the time by `by` (negative moves it back).
    pub fn advance(&self, by: TimeDelta) {
        self.micros.fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// This clock, shared.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}
