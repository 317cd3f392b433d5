//! A compact table of small facts kept for a while: a 64-bit key to one word, with the
//! second it was kept. The entry index ([`crate::entries`]) keeps each answered entry's
//! patient in one; the locator's cache ([`crate::locator::Locations`]) each patient's
//! practice. About 30 bytes an entry with the eviction queue and the table's spare room,
//! where a general cache node (the key, the node, its deques and hash table slot) takes
//! several hundred. Sharded, each shard holding an equal part of the bound; the least
//! recently kept go first, and none outlive the table's time.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `max_entries` facts by key, each for `ttl` after it was kept. Keys must be
/// well mixed in their low and high bits (hashes, or [`mixed`] numbers): the low bits
/// pick a slot in a shard's table, and bits 32 to 35 the shard.
pub(crate) struct Remembered {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    ttl_secs: u64,
    started: Instant,
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    /// Key → the fact, its sequence number and its second.
    map: HashMap<u64, Entry, BuildHasherDefault<Passed>>,
    /// (key, sequence number) in the order kept, as three words: the front goes first.
    /// A fact kept again is queued again; its earlier place is passed over.
    order: VecDeque<[u32; 3]>,
    next: u32,
}

/// What a shard keeps of a fact, in three words.
#[derive(Clone, Copy)]
struct Entry {
    value: u32,
    seq: u32,
    at: u32,
}

/// A queued (key, sequence number).
fn queued(key: u64, seq: u32) -> [u32; 3] {
    [(key >> 32) as u32, key as u32, seq]
}

/// The key and sequence number of a queued place.
fn unqueued(q: [u32; 3]) -> (u64, u32) {
    (u64::from(q[0]) << 32 | u64::from(q[1]), q[2])
}

/// `n` as a key: a bijection (multiplying by an odd number modulo 2^64), so distinct
/// numbers never share a key, with the product's high bits depending on all of `n`'s.
pub(crate) fn mixed(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The keys are hashes already: passed through as they are.
#[derive(Default)]
struct Passed(u64);

impl Hasher for Passed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Remembered {
    pub(crate) fn new(max_entries: u64, ttl: Duration) -> Self {
        let max = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            ttl_secs: ttl.as_secs(),
            started: Instant::now(),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self, at: u32, now: u32) -> bool {
        u64::from(now.saturating_sub(at)) < self.ttl_secs
    }

    /// What was kept under `key`, if it was and its time is not up.
    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        self.get_at(key, self.now())
    }

    /// Keeps `value` under `key` from now (in place of what was).
    pub(crate) fn insert(&self, key: u64, value: u32) {
        self.insert_at(key, value, self.now());
    }

    /// Forgets what was kept under `key` (its queued place is passed over when it
    /// reaches the front).
    pub(crate) fn remove(&self, key: u64) {
        self.shard(key).map.remove(&key);
    }

    /// [`Remembered::get`] at second `now` of the table.
    fn get_at(&self, key: u64, now: u32) -> Option<u32> {
        let entry = *self.shard(key).map.get(&key)?;
        self.fresh(entry.at, now).then_some(entry.value)
    }

    /// [`Remembered::insert`] at second `now` of the table.
    fn insert_at(&self, key: u64, value: u32, now: u32) {
        let mut shard = self.shard(key);
        let seq = shard.next;
        shard.next = seq.wrapping_add(1);
        shard.map.insert(
            key,
            Entry {
                value,
                seq,
                at: now,
            },
        );
        shard.order.push_back(queued(key, seq));
        // Over the bound (or a queue grown by repeats), or kept too long ago: the
        // oldest go. A queued place no longer current (the fact was kept again since,
        // or forgotten) is passed over, leaving any entry alone.
        let most_queued = self.per_shard + self.per_shard / 4 + 1;
        while let Some(&front) = shard.order.front() {
            let (old, old_seq) = unqueued(front);
            let current = shard.map.get(&old).filter(|e| e.seq == old_seq).copied();
            if let Some(e) = current {
                let over = shard.map.len() > self.per_shard || shard.order.len() > most_queued;
                if !over && self.fresh(e.at, now) {
                    break;
                }
                shard.map.remove(&old);
            }
            shard.order.pop_front();
        }
    }
}

/// The shard of `key`: bits 32 to 35, clear of the low bits that pick a slot in the
/// shard's table and of the top seven it compares first.
fn shard_of(key: u64) -> usize {
    usize::try_from((key >> 32) & 0xF).unwrap_or(0) % SHARDS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn kept(r: &Remembered) -> usize {
        r.shards.iter().map(|s| s.lock().unwrap().map.len()).sum()
    }

    #[test]
    fn the_least_recently_kept_go_first_and_the_bound_holds() {
        let remembered = Remembered::new(1600, DAY);
        for i in 0..10_000 {
            remembered.insert(mixed(i), 7);
        }
        let n = kept(&remembered);
        assert!(n <= 1600, "{n} kept");
        assert!(n >= 1200, "{n} kept");
        assert_eq!(remembered.get(mixed(9_999)), Some(7));
        assert_eq!(remembered.get(mixed(0)), None);
        assert_eq!(remembered.get(mixed(10_000)), None);
    }

    #[test]
    fn a_fact_kept_again_is_kept_as_of_its_last_time() {
        let remembered = Remembered::new(1600, DAY);
        let key = mixed(1 << 40);
        let first = remembered.shard(key).next;
        remembered.insert(key, 1);
        let queued = |r: &Remembered| {
            r.shard(key)
                .order
                .iter()
                .any(|&q| unqueued(q) == (key, first))
        };
        // Others kept until its shard is full, then it is kept again (another value),
        // then others until its first place's turn to go has come: the second stays.
        let mut i = 0;
        let mut keep = |r: &Remembered| {
            i += 1;
            r.insert(mixed(i), 1);
            i
        };
        while remembered.shard(key).map.len() < remembered.per_shard {
            keep(&remembered);
        }
        remembered.insert(key, 2);
        while queued(&remembered) && keep(&remembered) < 1_000_000 {}
        assert!(!queued(&remembered), "the first place went");
        assert_eq!(remembered.get(key), Some(2));
    }

    #[test]
    fn a_fact_is_forgotten_once_its_time_is_up_or_when_removed() {
        let remembered = Remembered::new(1600, DAY);
        let day = u32::try_from(DAY.as_secs()).unwrap();
        let old = mixed(1);
        remembered.insert_at(old, 5, 0);
        assert_eq!(remembered.get_at(old, day - 1), Some(5));
        assert_eq!(remembered.get_at(old, day), None);
        // A later fact in its shard takes it out of the queue and the table.
        for i in 2.. {
            remembered.insert_at(mixed(i), 5, day);
            if shard_of(mixed(i)) == shard_of(old) {
                break;
            }
        }
        let shard = remembered.shard(old);
        assert!(!shard.map.contains_key(&old));
        assert!(shard.order.iter().all(|&q| unqueued(q).0 != old));
        drop(shard);

        let gone = mixed(3);
        remembered.insert(gone, 9);
        remembered.remove(gone);
        assert_eq!(remembered.get(gone), None);
        remembered.insert(gone, 10);
        assert_eq!(remembered.get(gone), Some(10), "kept again after removal");
    }

    #[test]
    fn mixed_numbers_never_share_a_key_and_spread_over_the_shards() {
        let keys: std::collections::HashSet<u64> = (0..100_000).map(mixed).collect();
        assert_eq!(keys.len(), 100_000);
        let mut per_shard = [0usize; SHARDS];
        for k in &keys {
            per_shard[shard_of(*k)] += 1;
        }
        // Sequential NHS number stems spread evenly (each shard near 1/16th).
        assert!(
            per_shard.iter().all(|&n| (5_000..7_500).contains(&n)),
            "{per_shard:?}"
        );
    }
}
