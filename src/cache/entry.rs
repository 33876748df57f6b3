//! One cache entry, kept small: its key ([`Key`], built by [`Keyer`]),
//! its value ([`Entry`]) and its age ([`Ticks`]).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use super::Cached;
use crate::state::BillingState;

/// One cached account, in 16 bytes: most accounts are in good standing
/// and need no more than "known, good, read at this epoch and tick".
pub(super) struct Entry {
    /// The kept state ([`Cached::State`]); `None` for unknown and good.
    pub(super) state: Option<Arc<BillingState>>,
    /// `epoch << 2 | used << 1 | known`: the cache epoch when read (an
    /// older one means "unverified"; compared for equality, so wrapping is
    /// harmless); whether the entry was used since the table's CLOCK hand
    /// last passed it (set by readers, hence atomic); whether the store
    /// knows the account ([`Cached::Good`] rather than [`Cached::Unknown`]
    /// when no state is kept).
    flags: AtomicU32,
    /// The TTL tick ([`Ticks`]) when read; in a vacant slot, the next
    /// vacant slot.
    pub(super) read_tick: u32,
}

impl Entry {
    const KNOWN: u32 = 1;
    const USED: u32 = 2;

    pub(super) fn new(cached: &Cached, epoch: u64, read_tick: u32) -> Self {
        let known = u32::from(!matches!(cached, Cached::Unknown));
        Self { state: cached.shared_state(), flags: AtomicU32::new((Self::epoch_bits(epoch) << 2) | known), read_tick }
    }

    /// What a vacant slot holds: no state, and the next vacant slot.
    pub(super) fn vacant(next: u32) -> Self {
        Self { state: None, flags: AtomicU32::new(0), read_tick: next }
    }

    /// Only equality of epochs matters: the low 30 bits are enough.
    fn epoch_bits(epoch: u64) -> u32 {
        (epoch & 0x3fff_ffff) as u32
    }

    pub(super) fn cached(&self) -> Cached {
        match &self.state {
            Some(s) => Cached::State(s.clone()),
            None if self.flags.load(Relaxed) & Self::KNOWN != 0 => Cached::Good,
            None => Cached::Unknown,
        }
    }

    pub(super) fn read_at(&self, epoch: u64) -> bool {
        self.flags.load(Relaxed) >> 2 == Self::epoch_bits(epoch)
    }

    /// Marks the entry used; writes only when it is not marked yet, so
    /// readers of a hot entry leave its cache line clean.
    pub(super) fn mark_used(&self) {
        if self.flags.load(Relaxed) & Self::USED == 0 {
            self.flags.fetch_or(Self::USED, Relaxed);
        }
    }

    /// Whether the entry was used since last asked, and unmarks it.
    pub(super) fn take_used(&mut self) -> bool {
        let flags = self.flags.get_mut();
        let used = *flags & Self::USED != 0;
        *flags &= !Self::USED;
        used
    }
}

/// The safety-net TTL in ticks of an eighth of it: an entry read at tick
/// `t` is current through tick `t + 7`, so it is re-read after 7/8 to 8/8
/// of the TTL, never later. A tick fits 32 bits (an entry stays small);
/// the difference is taken wrapping, and a clock moved back makes it huge,
/// so such an entry is re-read. A TTL under [`Ticks::MIN_TTL_US`] (but not
/// zero) counts as that floor: ticks of at least 125 ms wrap after 17
/// years, so a forgotten entry never comes back to life. Each key's ticks
/// start at its own phase, so entries read together do not all expire at
/// one boundary (a burst of store reads every eighth of the TTL).
#[derive(Clone, Copy)]
pub(super) struct Ticks {
    tick_us: i64,
}

impl Ticks {
    const PER_TTL: u32 = 8;
    /// The shortest TTL kept: one second (`cache.ttl` refuses less).
    const MIN_TTL_US: i64 = 1_000_000;

    pub(super) fn new(ttl_us: i64) -> Self {
        let ttl_us = if ttl_us > 0 { ttl_us.max(Self::MIN_TTL_US) } else { 0 };
        Self { tick_us: ttl_us / i64::from(Self::PER_TTL) }
    }

    /// The tick of `now_us` for `key`.
    pub(super) fn at(self, key: Key, now_us: i64) -> u32 {
        match self.tick_us {
            0 => 0,
            // Truncation to 32 bits is the point: ticks compare wrapping.
            t => now_us.saturating_add(key.phase(t)).div_euclid(t) as u32,
        }
    }

    /// Whether `key`'s entry read at `read` is still current at `now_us`.
    pub(super) fn current(self, key: Key, read: u32, now_us: i64) -> bool {
        // A zero TTL keeps nothing.
        self.tick_us > 0 && self.at(key, now_us).wrapping_sub(read) < Self::PER_TTL
    }
}

/// What the cache keys an account by, in 16 bytes whatever the id's
/// length (a UUID, a 64-byte id):
/// - an id of up to 15 bytes is kept whole: its length, then its bytes;
/// - a longer id is kept as its 128-bit SipHash-1-3 under a key drawn at
///   random per cache, the first byte set to `0xff`, which no length is.
///   Two of a million such ids meet with a chance near 10⁻²⁵, and since the
///   key is secret, nobody can pick an id that lands on another's entry.
///
/// Short ids — the common case — cost no hashing beyond the table's own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key(u64, u64);

impl Key {
    /// Where in a tick of `tick_us` this key's ticks start: both words
    /// mixed (Fibonacci hashing), so ids alike in their first bytes still
    /// spread.
    fn phase(self, tick_us: i64) -> i64 {
        let mixed = (self.0 ^ self.1.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        // A 32-bit fraction of the tick: a multiply, not a division.
        ((u128::from(mixed) * u128::from(tick_us.unsigned_abs())) >> 32) as i64
    }
}

/// Builds [`Key`]s, with this cache's random SipHash key for long ids.
pub(super) struct Keyer(siphasher::sip128::SipHasher13);

impl Keyer {
    /// The longest id kept whole.
    const INLINE: usize = 15;

    pub(super) fn new() -> Self {
        // Two words from std's randomly keyed SipHash: a random key.
        let random = std::hash::RandomState::new();
        let word = |i: u8| std::hash::BuildHasher::hash_one(&random, i);
        Self(siphasher::sip128::SipHasher13::new_with_keys(word(0), word(1)))
    }

    pub(super) fn key(&self, account: &str) -> Key {
        let id = account.as_bytes();
        if id.len() <= Self::INLINE {
            let mut whole = [0u8; 16];
            whole[0] = id.len() as u8;
            whole[1..=id.len()].copy_from_slice(id);
            let (a, b) = whole.split_at(8);
            return Key(u64::from_le_bytes(a.try_into().unwrap_or_default()), u64::from_le_bytes(b.try_into().unwrap_or_default()));
        }
        let digest = self.0.hash(id);
        Key(digest.h1 | 0xff, digest.h2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    #[test]
    fn an_entry_is_re_read_within_its_ttl_never_after() {
        let ticks = Ticks::new(300 * SEC);
        let keyer = Keyer::new();
        let keys = ["acct-1", "acct-2", "a", "7f3c9a52-1b4e-4d6a-9c1f-000000000042"].map(|id| keyer.key(id));
        for key in keys {
            for read_us in [0, 1, 37 * SEC, 1_764_000_000 * SEC + 123_456, -5 * SEC, i64::MAX - 1, i64::MIN + 1] {
                let read = ticks.at(key, read_us);
                let later = |d: i64| read_us.saturating_add(d);
                assert!(ticks.current(key, read, read_us), "current when read at {read_us}");
                if read_us < i64::MAX - 300 * SEC {
                    assert!(!ticks.current(key, read, later(300 * SEC)), "stale after the whole ttl (read at {read_us})");
                    // Kept for at least 7/8 of the ttl.
                    assert!(ticks.current(key, read, later(262 * SEC)), "kept 7/8 of the ttl (read at {read_us})");
                }
                // (Near i64::MAX times saturate: absurd, and only kept from panicking.)
                if read_us > i64::MIN + 38 * SEC && read_us < i64::MAX - 300 * SEC {
                    assert!(!ticks.current(key, read, read_us - 38 * SEC), "a clock moved back re-reads");
                }
            }
        }
        // Keys expire at their own phase: a thousand entries read in the
        // same microsecond do not all expire at one boundary.
        let phases: std::collections::HashSet<i64> = (0..1_000).map(|i| keyer.key(&format!("acct-{i}")).phase(ticks.tick_us) / SEC).collect();
        assert!(phases.len() > 30, "{} distinct seconds of 37", phases.len());
        // Ticks wrap at 32 bits: far in the future, the arithmetic holds.
        let far = i64::from(u32::MAX) * 37_500_000 + 12 * SEC;
        let read = ticks.at(keys[0], far);
        assert!(ticks.current(keys[0], read, far + 200 * SEC) && !ticks.current(keys[0], read, far + 301 * SEC));
        // A zero ttl keeps nothing; a ttl under a second counts as one, so
        // 32-bit ticks wrap only after years.
        let zero = Ticks::new(0);
        assert!(!zero.current(keys[0], zero.at(keys[0], 5), 5));
        assert_eq!(Ticks::new(1_000).tick_us, Ticks::new(SEC).tick_us);
        assert!(i64::from(u32::MAX) * Ticks::new(1).tick_us > 17 * 365 * 86_400 * SEC);
    }

    #[test]
    fn an_entry_keeps_what_it_was_told() {
        for (cached, epoch) in [(Cached::Unknown, 0), (Cached::Good, 7), (Cached::Good, u64::MAX), (Cached::Unknown, 1 << 31), (Cached::Good, (1 << 30) - 1)] {
            let e = Entry::new(&cached, epoch, 3);
            assert_eq!(std::mem::discriminant(&e.cached()), std::mem::discriminant(&cached));
            assert!(e.read_at(epoch) && !e.read_at(epoch.wrapping_add(1)));
            // The CLOCK mark changes neither.
            let mut e = e;
            e.mark_used();
            assert!(e.read_at(epoch) && std::mem::discriminant(&e.cached()) == std::mem::discriminant(&cached));
            assert!(e.take_used() && !e.take_used() && e.read_at(epoch));
        }
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn ids_get_their_own_keys() {
        let keyer = Keyer::new();
        // Short and long, and ids one is the other's prefix or padded
        // with NUL bytes: each its own key.
        let mut ids: Vec<String> = (0..100_000).map(|i| format!("acct-{i}")).collect();
        ids.extend((0..100_000).map(|i| format!("7f3c9a52-1b4e-4d6a-9c1f-{i:012}")));
        ids.extend(["", "a", "a\0", "\0", "a\0\0\0\0\0\0\0\0\0\0\0\0\0", "123456789012345", "1234567890123456"].map(String::from));
        let keys: std::collections::HashSet<Key> = ids.iter().map(|id| keyer.key(id)).collect();
        assert_eq!(keys.len(), ids.len());
        assert!(keyer.key("acct-1") == keyer.key("acct-1") && keyer.key(&ids[100_001]) == keyer.key(&ids[100_001].clone()));
        // A short id is kept whole; a long one is digested, tagged so it
        // never equals a whole one, under another key in another cache
        // (nobody can precompute a collision).
        assert!(Keyer::new().key("acct-1") == keyer.key("acct-1"));
        assert!(keyer.key(&ids[100_001]).0 & 0xff == 0xff);
        assert!(Keyer::new().key(&ids[100_001]) != keyer.key(&ids[100_001]));
    }
}
