//! The compact in-memory form of one scheme's map: source code → SNOMED CT concept.
//!
//! Read v2 and CTV3 codes are five characters, so almost every code packs into a `u64`
//! key (no allocation per code); the rare longer code (some EMIS local codes) goes to a
//! second map keyed by the string. A value is the concept id as a number and whether the
//! map is clinically assured: 16 bytes. 500,000 rows of a national map collapse into
//! one entry per code.

use std::collections::HashMap;

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

/// One scheme's map.
#[derive(Debug, Default, Clone)]
pub struct Table {
    short: HashMap<u64, Entry, FixedState>,
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

impl Table {
    /// An empty table with room for `codes` codes.
    pub fn with_capacity(codes: usize) -> Self {
        Self {
            short: HashMap::with_capacity_and_hasher(codes, FixedState::default()),
            long: HashMap::default(),
        }
    }

    /// Maps `code` to `entry`, replacing any earlier entry for it.
    pub fn insert(&mut self, code: &str, entry: Entry) {
        match pack(code) {
            Some(key) => {
                self.short.insert(key, entry);
            }
            None => {
                self.long.insert(code.into(), entry);
            }
        }
    }

    /// Where `code` maps to.
    #[inline]
    pub fn get(&self, code: &str) -> Option<Entry> {
        match pack(code) {
            Some(key) => self.short.get(&key).copied(),
            None => self.long.get(code).copied(),
        }
    }

    /// How many codes are mapped.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
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
}
