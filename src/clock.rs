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

    /// The current time in Unix microseconds: what the gate reads per
    /// request (a cache entry's freshness is a comparison of two numbers;
    /// the calendar is only worked out when a stored state needs it).
    ///
    /// It may lag [`now`](Clock::now) by a few milliseconds
    /// ([`SystemClock`] reads the kernel's coarse clock). Nothing the gate
    /// decides turns on that: every window it checks ends at a time
    /// (`now < until`), and stages start after a number of days, so a
    /// clock that lags holds a stage back a few milliseconds, never
    /// brings one forward.
    fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// The instant `us` Unix microseconds name (saturating at chrono's ends).
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(if us < 0 { DateTime::<Utc>::MIN_UTC } else { DateTime::<Utc>::MAX_UTC })
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

    /// The kernel's coarse wall clock on Linux (`CLOCK_REALTIME_COARSE`,
    /// updated once per tick: 1–10 ms, 4 ms on most kernels), read from
    /// the vDSO without a system call: a quarter of what the precise clock
    /// costs per request. Elsewhere, the precise clock.
    /// A kernel that refuses the coarse clock (a sandbox's emulated one)
    /// gets the precise clock, never a panic.
    #[cfg(target_os = "linux")]
    fn now_micros(&self) -> i64 {
        use rustix::time::{clock_gettime_dynamic, ClockId, DynamicClockId};
        match clock_gettime_dynamic(DynamicClockId::Known(ClockId::RealtimeCoarse)) {
            // `tv_nsec` is an `i32` on some 32-bit targets.
            #[allow(clippy::useless_conversion)]
            Ok(t) => t.tv_sec.saturating_mul(1_000_000).saturating_add(i64::from(t.tv_nsec) / 1_000),
            Err(_) => precise_micros(),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn now_micros(&self) -> i64 {
        precise_micros()
    }
}

/// `SystemTime::now()` in Unix microseconds.
fn precise_micros() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
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

    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

/// A moment as an operator writes it — RFC 3339 (`2026-12-24T09:00:00Z`)
/// or a duration from `now` (`7d`, `12h`, `90m`) — that lies ahead of
/// `now` and before 2100. The admin API and the CLI read `until` with it.
pub fn parse_until(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadUntil> {
    let raw = raw.trim();
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let d = crate::settings::parse_duration(raw).map_err(|_| BadUntil::NotATime(raw.to_owned()))?;
            chrono::TimeDelta::from_std(d).ok().and_then(|d| now.checked_add_signed(d)).ok_or(BadUntil::OutOfRange)?
        }
    };
    if crate::state::sane_time(at.timestamp()).is_none() {
        return Err(BadUntil::OutOfRange);
    }
    if at <= now {
        return Err(BadUntil::Past);
    }
    Ok(at)
}

/// Why an `until` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadUntil {
    /// Neither form.
    #[error("{0:?} is neither an RFC 3339 time (2026-12-24T09:00:00Z) nor a duration from now (7d, 12h, 90m)")]
    NotATime(String),
    /// Not ahead of now.
    #[error("until is in the past")]
    Past,
    /// Outside 2000–2100.
    #[error("until must lie between 2000 and 2100")]
    OutOfRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_reads_both_forms() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_until("7d", now).unwrap(), now + chrono::TimeDelta::days(7));
        assert_eq!(parse_until(" 12h ", now).unwrap(), now + chrono::TimeDelta::hours(12));
        assert_eq!(parse_until("2026-12-24T09:00:00+01:00", now).unwrap().to_rfc3339(), "2026-12-24T08:00:00+00:00");
        assert_eq!(parse_until("2026-12-01T00:00:00Z", now), Err(BadUntil::Past));
        assert_eq!(parse_until("2150-01-01T00:00:00Z", now), Err(BadUntil::OutOfRange));
        assert_eq!(parse_until("99999999d", now), Err(BadUntil::OutOfRange));
        let bad = parse_until("next week", now).unwrap_err().to_string();
        assert!(bad.contains("RFC 3339") && bad.contains("7d"), "{bad}");
    }

    #[test]
    fn microseconds_agree_with_the_calendar() {
        let clock = ManualClock::starting_at(DateTime::from_timestamp_micros(1_764_460_800_123_456).unwrap());
        assert_eq!(clock.now_micros(), clock.now().timestamp_micros());
        assert_eq!(from_micros(clock.now_micros()), clock.now());
        clock.set(DateTime::from_timestamp_micros(-1_500).unwrap());
        assert_eq!(from_micros(clock.now_micros()), clock.now());
        // The coarse read lags, never leads: read first, it is at most
        // the precise time read after it.
        let system = SystemClock.now_micros();
        let precise = Utc::now().timestamp_micros();
        assert!(system <= precise && precise - system < 1_000_000, "{system} vs {precise}");
        assert_eq!(from_micros(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(from_micros(i64::MIN), DateTime::<Utc>::MIN_UTC);
    }
}
