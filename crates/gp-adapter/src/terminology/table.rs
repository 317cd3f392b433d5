//! The compact in-memory form of one scheme's map: source code → SNOMED CT concept.
//!
//! Read v2 and CTV3 codes are five characters, so almost every code packs into a `u64`
//! key (no allocation per code); the rare longer code (some EMIS local codes) goes to a
//! second map keyed by the string. A packed code (with the assured flag in its top bit,
//! which no packed code uses) and its concept id share one 16-byte slot of an
//! open-addressing table probed linearly, so a lookup in a national map touches one
//! cache line where a general hash map touches two (its control bytes and its buckets
//! live apart); the table is at most 5/8 full, about 26 bytes a code.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// Where a code maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The SNOMED CT concept id.
    pub sctid: u64,
    /// Whether the map is clinically assured (the national maps' `IS_ASSURED` 1; the
    /// gateway's own curated maps and an operator's local-code file unless it says not).
    pub assured: bool,
}

/// The assured flag, in a slot's key: packed codes are ASCII, so bit 63 is theirs to spare.
const ASSURED: u64 = 1 << 63;

/// One scheme's map.
#[derive(Debug, Default, Clone)]
pub struct Table {
    /// (packed code | [`ASSURED`], concept id); a key of 0 marks an empty slot (no code
    /// packs to 0). Empty, or at most 5/8 full.
    slots: Vec<(u64, u64)>,
    /// Codes in `slots`.
    short: usize,
    /// Codes too long to pack.
    long: HashMap<Box<str>, Entry, FixedState>,
}

/// `code` packed into a `u64` when it is ASCII of 1 to 8 bytes (so bit 63 is clear and
/// no two codes share a key), else `None`.
pub(crate) fn pack(code: &str) -> Option<u64> {
    let b = code.as_bytes();
    if b.is_empty() || b.len() > 8 || !b.iter().all(|c| c.is_ascii() && *c != 0) {
        return None;
    }
    let mut key = [0u8; 8];
    key[..b.len()].copy_from_slice(b);
    Some(u64::from_le_bytes(key))
}

/// Slots for `codes` codes, at most 5/8 full.
fn slots_for(codes: usize) -> usize {
    (codes.saturating_mul(8) / 5).max(8)
}

/// The slot `key` probes first, of `len`: its hash scaled to the length (no power of
/// two needed, so the table is no larger than its load factor asks).
#[inline]
fn home(key: u64, len: usize) -> usize {
    let hash = FixedState::with_seed(0x7ab1e).hash_one(key);
    ((u128::from(hash) * len as u128) >> 64) as usize
}

impl Table {
    /// An empty table with room for `codes` codes that pack.
    pub fn with_capacity(codes: usize) -> Self {
        Self {
            slots: vec![(0, 0); slots_for(codes)],
            short: 0,
            long: HashMap::default(),
        }
    }

    /// Maps `code` to `entry`, replacing any earlier entry for it.
    pub fn insert(&mut self, code: &str, entry: Entry) {
        match pack(code) {
            Some(key) => self.insert_packed(key, entry),
            None => {
                self.long.insert(code.into(), entry);
            }
        }
    }

    /// Maps the code that packs to `key` (from [`pack`]) to `entry`.
    pub(crate) fn insert_packed(&mut self, key: u64, entry: Entry) {
        if slots_for(self.short + 1) > self.slots.len() {
            self.grow();
        }
        let tagged = key | if entry.assured { ASSURED } else { 0 };
        let len = self.slots.len();
        let mut i = home(key, len);
        loop {
            let slot = &mut self.slots[i];
            if slot.0 & !ASSURED == key {
                *slot = (tagged, entry.sctid);
                return;
            }
            if slot.0 == 0 {
                *slot = (tagged, entry.sctid);
                self.short += 1;
                return;
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
    }

    fn grow(&mut self) {
        let old = std::mem::replace(
            &mut self.slots,
            vec![(0, 0); slots_for((self.short + 1).max(self.short * 2))],
        );
        let len = self.slots.len();
        for slot in old.into_iter().filter(|s| s.0 != 0) {
            let mut i = home(slot.0 & !ASSURED, len);
            while self.slots[i].0 != 0 {
                i = if i + 1 == len { 0 } else { i + 1 };
            }
            self.slots[i] = slot;
        }
    }

    /// Where `code` maps to.
    #[inline]
    pub fn get(&self, code: &str) -> Option<Entry> {
        match pack(code) {
            Some(key) => self.get_packed(key),
            None => self.long.get(code).copied(),
        }
    }

    #[inline]
    fn get_packed(&self, key: u64) -> Option<Entry> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let mut i = home(key, len);
        // Never full: an empty slot ends every probe.
        loop {
            let (k, sctid) = *self.slots.get(i)?;
            if k & !ASSURED == key {
                return Some(Entry {
                    sctid,
                    assured: k & ASSURED != 0,
                });
            }
            if k == 0 {
                return None;
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
    }

    /// How many codes are mapped.
    pub fn len(&self) -> usize {
        self.short + self.long.len()
    }

    /// True when no code is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_codes_are_kept_apart_and_found() {
        let mut t = Table::with_capacity(4);
        let e = |sctid| Entry {
            sctid,
            assured: true,
        };
        t.insert("H33..", e(195967001));
        t.insert("H33.", e(1));
        t.insert("EMISNQAL12345", e(2));
        t.insert("Xa1", e(3));
        assert_eq!(t.get("H33..").map(|e| e.sctid), Some(195967001));
        assert_eq!(t.get("H33.").map(|e| e.sctid), Some(1));
        assert_eq!(t.get("H33"), None, "a prefix is not the code");
        assert_eq!(t.get("EMISNQAL12345").map(|e| e.sctid), Some(2));
        assert_eq!(t.get("EMISNQAL1234"), None);
        assert_eq!(t.get("Xa1").map(|e| e.sctid), Some(3));
        assert_eq!(t.get("xa1"), None, "codes are case-sensitive");
        assert_eq!(t.get(""), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn packing_is_injective_for_ascii_and_refuses_what_it_cannot_hold() {
        assert_ne!(pack("A"), pack("A\u{1}"));
        assert_ne!(pack("12345678"), pack("1234567"));
        assert_eq!(pack("123456789"), None);
        assert_eq!(pack("é"), None);
        assert_eq!(pack(""), None);
        assert!(pack("~~~~~~~~").is_some_and(|k| k >> 63 == 0));
    }

    #[test]
    fn answers_as_a_hash_map_does_through_growth_and_replacement() {
        // From an empty table and from one sized too small: both grow, none is lost.
        for start in [0, 10] {
            let mut t = Table::with_capacity(start);
            let mut want = HashMap::new();
            let code = |n: u64| format!("{:05}", n.wrapping_mul(2_654_435_761) % 100_000);
            for n in 0..20_000u64 {
                let entry = Entry {
                    sctid: 100_000 + n,
                    assured: n % 3 != 0,
                };
                // Some codes come twice: the later entry replaces the earlier.
                t.insert(&code(n), entry);
                want.insert(code(n), entry);
                assert!(slots_for(t.short) <= t.slots.len().max(8));
            }
            assert_eq!(t.len(), want.len());
            for (c, e) in &want {
                assert_eq!(t.get(c), Some(*e), "{c}");
            }
            for n in 100_000..101_000u64 {
                assert_eq!(t.get(&format!("{n}")), None);
            }
        }
    }

    #[test]
    fn the_assured_flag_and_any_id_are_kept() {
        let mut t = Table::with_capacity(4);
        let big = Entry {
            sctid: u64::MAX,
            assured: false,
        };
        t.insert("~~~~~~~~", big);
        t.insert(
            "A2",
            Entry {
                assured: true,
                ..big
            },
        );
        assert_eq!(t.get("~~~~~~~~"), Some(big));
        assert_eq!(t.get("A2").map(|e| e.assured), Some(true));
        // Re-mapped unassured: the flag goes with the new entry.
        t.insert(
            "A2",
            Entry {
                sctid: 5,
                assured: false,
            },
        );
        assert_eq!(
            t.get("A2"),
            Some(Entry {
                sctid: 5,
                assured: false
            })
        );
        assert_eq!(t.len(), 2);
    }
}
