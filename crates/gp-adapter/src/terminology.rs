//! Maps from the code schemes GP systems record in (Read v2, CTV3, EMIS local codes) to
//! SNOMED CT, and the one way adapters turn a native coded item into a CodeableConcept.
//!
//! The maps are data files under `crates/gp-adapter/terminology/`, embedded at build time
//! and parsed once. A code the maps lack is never dropped: it keeps its original coding
//! and text, and a per-scheme counter records it so operators can see map gaps.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use gp_fhir::model::{CTV3, CodeableConcept, Coding, DMD, READ_V2, SNOMED};

/// The CodeSystem of EMIS local ("EMISCLINICAL") codes.
pub const EMIS_LOCAL_SYSTEM: &str = "https://emis.com/CodeSystem/emis-local-code";

/// A code scheme a GP system records clinical codes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeScheme {
    /// Read codes version 2 (5 characters, trailing dots).
    ReadV2,
    /// Clinical Terms Version 3.
    Ctv3,
    /// EMIS Web local codes (`EMISCLINICAL`).
    EmisLocal,
    /// SNOMED CT (no mapping needed).
    Snomed,
    /// NHS Dictionary of medicines and devices (no mapping: dm+d is the UK drug extension of SNOMED CT).
    Dmd,
}

impl CodeScheme {
    /// The FHIR `Coding.system` of the scheme.
    pub fn system(self) -> &'static str {
        match self {
            Self::ReadV2 => READ_V2,
            Self::Ctv3 => CTV3,
            Self::EmisLocal => EMIS_LOCAL_SYSTEM,
            Self::Snomed => SNOMED,
            Self::Dmd => DMD,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::ReadV2 => 0,
            Self::Ctv3 => 1,
            Self::EmisLocal => 2,
            Self::Snomed => 3,
            Self::Dmd => 4,
        }
    }
}

/// One parsed map: source code → (SNOMED CT id, SNOMED CT term), borrowing the embedded text.
type Map = HashMap<&'static str, (&'static str, &'static str)>;

const READV2_TSV: &str = include_str!("../terminology/readv2-snomed.tsv");
const CTV3_TSV: &str = include_str!("../terminology/ctv3-snomed.tsv");
const EMIS_TSV: &str = include_str!("../terminology/emis-snomed.tsv");

static READV2: LazyLock<Map> = LazyLock::new(|| parse_map(READV2_TSV));
static CTV3_MAP: LazyLock<Map> = LazyLock::new(|| parse_map(CTV3_TSV));
static EMIS: LazyLock<Map> = LazyLock::new(|| parse_map(EMIS_TSV));

/// Codes seen without a SNOMED CT mapping, per scheme (indexed by [`CodeScheme::index`]).
static UNMAPPED: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Parses `code<TAB>snomed<TAB>term` lines; comments (`#`) and malformed lines are skipped
/// (a unit test proves the shipped files have no malformed lines, so nothing is lost).
fn parse_map(text: &'static str) -> Map {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some(code), Some(snomed), Some(term), None) => Some((code, (snomed, term))),
                _ => None,
            }
        })
        .collect()
}

fn map_for(scheme: CodeScheme) -> Option<&'static Map> {
    match scheme {
        CodeScheme::ReadV2 => Some(&READV2),
        CodeScheme::Ctv3 => Some(&CTV3_MAP),
        CodeScheme::EmisLocal => Some(&EMIS),
        CodeScheme::Snomed | CodeScheme::Dmd => None,
    }
}

/// The SNOMED CT concept (id, term) a Read v2, CTV3 or EMIS local code maps to.
/// `None` for unmapped codes and for SNOMED CT / dm+d, which need no map.
pub fn lookup(scheme: CodeScheme, code: &str) -> Option<(&'static str, &'static str)> {
    map_for(scheme)?.get(code).copied()
}

/// Reverse maps, SNOMED CT id → the first source code (in file order) that maps to it.
static REVERSE: LazyLock<[HashMap<&'static str, &'static str>; 3]> = LazyLock::new(|| {
    let reverse = |text: &'static str| {
        let mut out = HashMap::new();
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut f = l.split('\t');
            if let (Some(code), Some(snomed), Some(_), None) =
                (f.next(), f.next(), f.next(), f.next())
            {
                out.entry(snomed).or_insert(code);
            }
        }
        out
    };
    [reverse(READV2_TSV), reverse(CTV3_TSV), reverse(EMIS_TSV)]
});

/// The native code of `scheme` to record SNOMED CT concept `snomed` with, for write-back
/// (the first code in the map that maps to it). SNOMED CT and dm+d are returned as given;
/// `None` when the scheme has no code for the concept.
pub fn native_code(scheme: CodeScheme, snomed: &str) -> Option<&str> {
    let idx = match scheme {
        CodeScheme::ReadV2 => 0,
        CodeScheme::Ctv3 => 1,
        CodeScheme::EmisLocal => 2,
        CodeScheme::Snomed | CodeScheme::Dmd => return Some(snomed),
    };
    REVERSE[idx].get(snomed).copied()
}

/// How many codes of `scheme` were coded without a SNOMED CT coding since start-up.
pub fn unmapped_count(scheme: CodeScheme) -> u64 {
    UNMAPPED[scheme.index()].load(Ordering::Relaxed)
}

/// True when `s` looks like a SNOMED CT id (6 to 18 digits, no leading zero), so a
/// vendor-supplied map that is junk is not passed on as SNOMED CT.
fn is_sctid(s: &str) -> bool {
    (6..=18).contains(&s.len()) && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

/// Turns a native coded item into a CodeableConcept.
///
/// - Read v2, CTV3, EMIS local: the mapped SNOMED CT coding first (from the gateway's
///   maps, else from `supplied_map`, a SNOMED CT id the GP system supplied), then the
///   original coding with `userSelected: true`. With no mapping the original coding is
///   kept alone and [`unmapped_count`] for the scheme goes up.
/// - SNOMED CT: the one SNOMED CT coding. dm+d: the one dm+d coding.
///
/// `text` is the native term (omitted when empty).
pub fn coded(
    scheme: CodeScheme,
    code: &str,
    term: &str,
    supplied_map: Option<&str>,
) -> CodeableConcept {
    let text = (!term.is_empty()).then(|| term.to_owned());
    if matches!(scheme, CodeScheme::Snomed | CodeScheme::Dmd) {
        return CodeableConcept {
            coding: vec![Coding::new(scheme.system(), code, term)],
            text,
        };
    }
    let original = Coding {
        user_selected: Some(true),
        ..Coding::new(scheme.system(), code, term)
    };
    let mapped = match lookup(scheme, code) {
        Some((snomed, snomed_term)) => Some(Coding::new(SNOMED, snomed, snomed_term)),
        None => supplied_map
            .filter(|m| is_sctid(m))
            .map(|m| Coding::new(SNOMED, m, "")),
    };
    let coding = match mapped {
        Some(m) => vec![m, original],
        None => {
            UNMAPPED[scheme.index()].fetch_add(1, Ordering::Relaxed);
            vec![original]
        }
    };
    CodeableConcept { coding, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verhoeff check digit, which every SCTID carries.
    fn verhoeff_ok(s: &str) -> bool {
        const D: [[u8; 10]; 10] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
            [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
            [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
            [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
            [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
            [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
            [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
            [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        ];
        const P: [[u8; 10]; 8] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
            [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
            [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
            [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
            [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
            [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
            [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
        ];
        let mut c = 0u8;
        for (i, b) in s.bytes().rev().enumerate() {
            c = D[c as usize][P[i % 8][(b - b'0') as usize] as usize];
        }
        c == 0
    }

    #[test]
    fn shipped_maps_are_well_formed() {
        for (name, text) in [
            ("readv2", READV2_TSV),
            ("ctv3", CTV3_TSV),
            ("emis", EMIS_TSV),
        ] {
            let mut seen = std::collections::HashSet::new();
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let f: Vec<&str> = line.split('\t').collect();
                assert_eq!(f.len(), 3, "{name}: malformed line {line:?}");
                assert!(
                    is_sctid(f[1]) && verhoeff_ok(f[1]),
                    "{name}: {} is not a valid SCTID",
                    f[1]
                );
                assert!(!f[2].is_empty(), "{name}: {} has no term", f[0]);
                assert!(seen.insert(f[0]), "{name}: {} listed twice", f[0]);
            }
            assert_eq!(parse_map(text).len(), seen.len());
        }
        assert!(READV2.len() >= 20 && CTV3_MAP.len() >= 12);
    }

    #[test]
    fn looks_up_the_reference_codes() {
        assert_eq!(
            lookup(CodeScheme::ReadV2, "H33.."),
            Some(("195967001", "Asthma"))
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "G20.."),
            Some(("59621000", "Essential hypertension"))
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "C10F.").map(|m| m.0),
            Some("44054006")
        );
        assert_eq!(
            lookup(CodeScheme::Ctv3, "X40J5").map(|m| m.0),
            Some("44054006")
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "2469.").map(|m| m.0),
            Some("271649006")
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "246A.").map(|m| m.0),
            Some("271650006")
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "22A..").map(|m| m.0),
            Some("27113001")
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "229..").map(|m| m.0),
            Some("50373000")
        );
        assert_eq!(
            lookup(CodeScheme::ReadV2, "22K..").map(|m| m.0),
            Some("60621009")
        );
        assert_eq!(lookup(CodeScheme::Snomed, "195967001"), None);
        assert_eq!(lookup(CodeScheme::ReadV2, "ZZZZZ"), None);
    }

    #[test]
    fn mapped_code_has_snomed_first_and_original_user_selected() {
        let cc = coded(CodeScheme::ReadV2, "H33..", "Asthma", None);
        assert_eq!(cc.coding.len(), 2);
        assert_eq!(cc.coding[0].system.as_deref(), Some(SNOMED));
        assert_eq!(cc.coding[0].code.as_deref(), Some("195967001"));
        assert_eq!(cc.coding[0].user_selected, None);
        assert_eq!(cc.coding[1].system.as_deref(), Some(READ_V2));
        assert_eq!(cc.coding[1].code.as_deref(), Some("H33.."));
        assert_eq!(cc.coding[1].user_selected, Some(true));
        assert_eq!(cc.text.as_deref(), Some("Asthma"));
    }

    #[test]
    fn snomed_and_dmd_are_single_codings() {
        let s = coded(
            CodeScheme::Snomed,
            "91936005",
            "Allergy to penicillin",
            Some("1"),
        );
        assert_eq!(s.coding.len(), 1);
        assert_eq!(s.code_in(SNOMED), Some("91936005"));
        let d = coded(
            CodeScheme::Dmd,
            "39732311000001104",
            "Amlodipine 5mg tablets",
            None,
        );
        assert_eq!(d.coding.len(), 1);
        assert_eq!(d.coding[0].system.as_deref(), Some(DMD));
        assert_eq!(d.text.as_deref(), Some("Amlodipine 5mg tablets"));
    }

    #[test]
    fn unmapped_codes_are_kept_and_counted() {
        let before = unmapped_count(CodeScheme::EmisLocal);
        let cc = coded(CodeScheme::EmisLocal, "EMISXX1", "Local thing", None);
        assert_eq!(cc.coding.len(), 1);
        assert_eq!(cc.coding[0].system.as_deref(), Some(EMIS_LOCAL_SYSTEM));
        assert_eq!(cc.coding[0].user_selected, Some(true));
        assert_eq!(cc.text.as_deref(), Some("Local thing"));
        assert!(unmapped_count(CodeScheme::EmisLocal) > before);
        // A junk vendor map is not passed on as SNOMED CT.
        assert_eq!(
            coded(CodeScheme::EmisLocal, "EMISXX1", "", Some("abc"))
                .coding
                .len(),
            1
        );
        // A well-formed vendor map is used when the gateway's maps have no entry.
        let supplied = coded(CodeScheme::ReadV2, "ZZZZZ", "Odd", Some("195967001"));
        assert_eq!(supplied.code_in(SNOMED), Some("195967001"));
        assert_eq!(supplied.coding[1].code.as_deref(), Some("ZZZZZ"));
        // The gateway's map wins over the supplied one.
        let ours = coded(CodeScheme::ReadV2, "H33..", "Asthma", Some("44054006"));
        assert_eq!(ours.code_in(SNOMED), Some("195967001"));
    }
}
