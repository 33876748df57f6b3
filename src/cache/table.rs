//! The cache's table: at most `capacity` entries of 32 bytes in one
//! vector, found through an index of 4-byte slot numbers, evicted by CLOCK
//! (second chance).
//!
//! A general-purpose cache (quick_cache, moka) keeps per entry a key,
//! a value, list links and policy state, and an index of its own: 56 bytes
//! or more beside our 32. This table keeps the entry and nothing else
//! per slot: the "used since the hand last passed" bit lives in the
//! entry's flag word, and a vacant slot links to the next vacant one
//! through its tick. The index is hashbrown's `HashTable`, in
//! [`SHARDS`] parts that each grow as their keys arrive.
//!
//! - A lookup marks its entry used only if it is not marked yet: readers
//!   sharing the table under a read lock write nothing on a hit to an
//!   entry already marked.
//! - An insert into a full table moves the hand: a marked entry loses its
//!   mark and is passed over, the first unmarked one is replaced. New
//!   entries start unmarked, so an account read once goes before one read
//!   again.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::entry::{Entry, Key};

/// No slot: the end of the vacant list.
const NONE: u32 = u32::MAX;

/// The index's parts. Each doubles on its own, so the longest insert (one
/// part's rehash, under the cache's write lock, while readers wait) moves
/// a 64th of the keys: 1–2 ms at a million (`tools/cache_memory.rs`),
/// where one index took 48 ms.
const SHARDS: usize = 64;

pub(super) struct Table {
    /// Slot numbers by key, in [`SHARDS`] parts chosen by bits 32 to 37
    /// of the key's hash (hashbrown places a key by the low bits and tags
    /// it with the top seven, so these bits leave both alone).
    index: Box<[HashTable<u32>]>,
    slots: Vec<Slot>,
    hasher: DefaultHashBuilder,
    capacity: usize,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
    /// The first vacant slot (a removed entry), or [`NONE`].
    vacant: u32,
}

struct Slot {
    key: Key,
    entry: Entry,
}

impl Table {
    /// The most entries sized for up front.
    const PRESIZED: usize = 1 << 22;

    /// A table of at most `capacity` entries (at least 1, at most
    /// `u32::MAX - 1`). The vector of entries is sized for all of them up
    /// to [`Self::PRESIZED`]: the address space is taken now (32 MB per
    /// million), its pages become resident in order as entries arrive.
    /// The index grows with the keys instead: an index sized for a
    /// million and holding a thousand keys spreads them over 10 MB, and
    /// every lookup then misses the CPU's caches (cachegrind with a 1 MiB
    /// L2, 10,000 accounts: 4.4 misses per hit sized up front, 1.6 grown).
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, (NONE - 1) as usize);
        let sized = capacity.min(Self::PRESIZED);
        Self {
            index: (0..SHARDS).map(|_| HashTable::new()).collect(),
            slots: Vec::with_capacity(sized),
            hasher: DefaultHashBuilder::default(),
            capacity,
            hand: 0,
            vacant: NONE,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.iter().map(HashTable::len).sum()
    }

    /// The part of the index that holds `hash`.
    fn part(&self, hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    /// The entry kept for `key`, marked used.
    pub(super) fn get(&self, key: Key) -> Option<&Entry> {
        let hash = self.hasher.hash_one(key);
        let slot = *self.index[self.part(hash)].find(hash, |&i| self.slots[i as usize].key == key)?;
        let entry = &self.slots[slot as usize].entry;
        entry.mark_used();
        Some(entry)
    }

    /// Keeps `entry` for `key`, in place of what was kept for it, else in
    /// a vacant slot, else in a new one, else in the slot CLOCK evicts.
    pub(super) fn insert(&mut self, key: Key, entry: Entry) {
        let hash = self.hasher.hash_one(key);
        let part = self.part(hash);
        let slots = &self.slots;
        if let Some(&slot) = self.index[part].find(hash, |&i| slots[i as usize].key == key) {
            // Read again: it was in use.
            entry.mark_used();
            self.slots[slot as usize].entry = entry;
            return;
        }
        let slot = if self.vacant != NONE {
            let slot = self.vacant;
            self.vacant = self.slots[slot as usize].entry.read_tick;
            self.slots[slot as usize] = Slot { key, entry };
            slot
        } else if self.slots.len() < self.capacity {
            self.slots.push(Slot { key, entry });
            (self.slots.len() - 1) as u32
        } else {
            let slot = self.evict();
            self.slots[slot as usize] = Slot { key, entry };
            slot
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index[part].insert_unique(hash, slot, |&i| hasher.hash_one(slots[i as usize].key));
    }

    /// Forgets `key`'s entry, if one is kept.
    pub(super) fn remove(&mut self, key: Key) {
        let hash = self.hasher.hash_one(key);
        let part = self.part(hash);
        let slots = &self.slots;
        if let Ok(found) = self.index[part].find_entry(hash, |&i| slots[i as usize].key == key) {
            let (slot, _) = found.remove();
            self.slots[slot as usize].entry = Entry::vacant(self.vacant);
            self.vacant = slot;
        }
    }

    /// The most used entries the hand passes over for one eviction: an
    /// insert under the write lock never sweeps a whole table of hot
    /// entries (readers wait meanwhile); past this, the entry under the
    /// hand goes, used or not.
    const MAX_SWEEP: usize = 1024;

    /// The slot CLOCK gives up, taken out of the index. Called only when
    /// every slot is in use, so the hand meets no vacant slot.
    fn evict(&mut self) -> u32 {
        let mut passed = 0;
        loop {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            if !self.slots[slot].entry.take_used() || passed == Self::MAX_SWEEP {
                let hash = self.hasher.hash_one(self.slots[slot].key);
                let part = self.part(hash);
                if let Ok(found) = self.index[part].find_entry(hash, |&i| i as usize == slot) {
                    found.remove();
                }
                return slot as u32;
            }
            passed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::Keyer;
    use super::super::Cached;
    use super::*;

    fn entry(tick: u32) -> Entry {
        Entry::new(&Cached::Good, 0, tick)
    }

    #[test]
    fn keeps_finds_replaces_and_forgets() {
        let keyer = Keyer::new();
        let mut table = Table::new(100);
        for i in 0..100 {
            table.insert(keyer.key(&format!("acct-{i}")), entry(i));
        }
        assert_eq!(table.len(), 100);
        assert!((0..100).all(|i| table.get(keyer.key(&format!("acct-{i}"))).is_some_and(|e| e.read_tick == i)));
        table.insert(keyer.key("acct-7"), entry(1_000));
        assert_eq!((table.len(), table.get(keyer.key("acct-7")).map(|e| e.read_tick)), (100, Some(1_000)));
        for i in (0..100).step_by(3) {
            table.remove(keyer.key(&format!("acct-{i}")));
        }
        table.remove(keyer.key("never-kept"));
        assert_eq!(table.len(), 66);
        assert!((0..100).all(|i| table.get(keyer.key(&format!("acct-{i}"))).is_some() == (i % 3 != 0)));
        // Vacant slots are used again before anything is evicted.
        for i in 100..134 {
            table.insert(keyer.key(&format!("acct-{i}")), entry(i));
        }
        assert_eq!((table.len(), table.slots.len()), (100, 100));
        assert!((0..134).all(|i| table.get(keyer.key(&format!("acct-{i}"))).is_some() == (i >= 100 || i % 3 != 0)));
    }

    #[test]
    fn a_full_table_evicts_what_was_not_read_again() {
        let keyer = Keyer::new();
        let key = |i: u32| keyer.key(&format!("acct-{i}"));
        let mut table = Table::new(1_000);
        for i in 0..1_000 {
            table.insert(key(i), entry(i));
        }
        // A tenth is read again; then newcomers push out the rest first.
        for i in (0..1_000).step_by(10) {
            assert!(table.get(key(i)).is_some());
        }
        for i in 1_000..1_500 {
            table.insert(key(i), entry(i));
            assert!(table.len() <= 1_000);
        }
        assert_eq!(table.len(), 1_000);
        assert!((0..1_000).step_by(10).all(|i| table.get(key(i)).is_some()), "entries read again survive");
        assert!((1_000..1_500).all(|i| table.get(key(i)).is_some()), "newcomers are kept");
        // Every kept key still finds its own entry.
        assert!((0..1_500).filter_map(|i| table.get(key(i)).map(|e| (i, e.read_tick))).all(|(i, t)| i == t));
        // Everything marked: the hand goes round once and still evicts.
        let mut tiny = Table::new(3);
        for i in 0..3 {
            tiny.insert(key(i), entry(i));
            tiny.get(key(i));
        }
        tiny.insert(key(3), entry(3));
        assert_eq!(tiny.len(), 3);
        assert!(tiny.get(key(3)).is_some());
        // A table of hot entries: the hand gives up after MAX_SWEEP of
        // them, not a whole turn.
        let n = 3 * Table::MAX_SWEEP as u32;
        let mut hot = Table::new(n as usize);
        for i in 0..n {
            hot.insert(key(i), entry(i));
            hot.get(key(i));
        }
        hot.insert(key(n), entry(n));
        assert_eq!((hot.len(), hot.hand), (n as usize, Table::MAX_SWEEP + 1));
        assert!(hot.get(key(n)).is_some() && hot.get(key(Table::MAX_SWEEP as u32)).is_none());
    }

    /// The next number of a xorshift64 sequence: the churn tests' dice.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Every entry the table keeps is the latest one written for its id.
    fn assert_kept_are_latest(table: &Table, keyer: &Keyer, ids: &[String], latest: &std::collections::HashMap<String, u32>) {
        let found = ids.iter().filter(|id| table.get(keyer.key(id)).is_some_and(|e| Some(&e.read_tick) == latest.get(*id))).count();
        assert_eq!(found, table.len());
    }

    /// Every key in the index sits in its own part and names a slot that
    /// holds it; the index counts exactly the slots not vacant.
    fn assert_consistent(table: &Table) {
        let mut vacant = 0;
        let mut at = table.vacant;
        while at != NONE {
            vacant += 1;
            at = table.slots[at as usize].entry.read_tick;
        }
        assert_eq!(table.len(), table.slots.len() - vacant);
        for (part, index) in table.index.iter().enumerate() {
            for &slot in index {
                assert_eq!(table.part(table.hasher.hash_one(table.slots[slot as usize].key)), part);
            }
        }
    }

    /// The index's parts share the keys: none is left empty or takes
    /// much more than its share (which one part's rehash would cost).
    #[test]
    fn keys_spread_over_the_index_parts() {
        let keyer = Keyer::new();
        let mut table = Table::new(64_000);
        for i in 0..64_000 {
            table.insert(keyer.key(&format!("acct-{i}")), entry(i));
        }
        let sizes: Vec<usize> = table.index.iter().map(HashTable::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 64_000);
        assert!(sizes.iter().all(|&n| (800..1_200).contains(&n)), "{sizes:?}");
        assert_consistent(&table);
    }

    /// Churn at a size where every part grows, fills with deleted markers
    /// and rehashes in place: the index stays consistent with the slots,
    /// and every key kept gives its latest entry.
    #[test]
    fn parts_stay_consistent_under_churn_at_scale() {
        let keyer = Keyer::new();
        let ids: Vec<String> = (0..15_000).map(|i| format!("acct-{i}")).collect();
        let mut latest = std::collections::HashMap::new();
        let mut table = Table::new(5_000);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..200_000u32 {
            let roll = xorshift(&mut seed);
            let id = &ids[(roll % ids.len() as u64) as usize];
            if roll >> 62 == 0 {
                table.remove(keyer.key(id));
                latest.remove(id);
            } else {
                table.insert(keyer.key(id), entry(step));
                latest.insert(id.clone(), step);
            }
            assert!(table.len() <= 5_000);
        }
        assert_consistent(&table);
        assert_kept_are_latest(&table, &keyer, &ids, &latest);
        assert!(table.len() > 4_000, "{}", table.len());
    }

    /// Random inserts, re-inserts and removals against a plain map: a key
    /// found always gives its latest entry, a removed key is gone, and
    /// the table never holds more than its capacity.
    #[test]
    fn agrees_with_a_plain_map_under_churn() {
        let keyer = Keyer::new();
        let ids: Vec<String> = (0..300).map(|i| if i % 4 == 0 { format!("7f3c9a52-1b4e-4d6a-9c1f-{i:012}") } else { format!("acct-{i}") }).collect();
        let mut latest = std::collections::HashMap::new();
        let mut table = Table::new(100);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..20_000u32 {
            let roll = xorshift(&mut seed);
            let id = &ids[(roll % ids.len() as u64) as usize];
            match roll >> 60 {
                0..=9 => {
                    table.insert(keyer.key(id), entry(step));
                    latest.insert(id.clone(), step);
                }
                10..=12 => {
                    table.remove(keyer.key(id));
                    latest.remove(id);
                }
                _ => {
                    if let Some(e) = table.get(keyer.key(id)) {
                        assert_eq!(Some(&e.read_tick), latest.get(id), "{id} at step {step}");
                    }
                }
            }
            assert!(table.len() <= 100);
        }
        assert_kept_are_latest(&table, &keyer, &ids, &latest);
    }
}
