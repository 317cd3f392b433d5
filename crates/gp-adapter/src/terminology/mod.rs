//! Maps from the code schemes GP systems record in (Read v2, CTV3, EMIS local codes) to
//! SNOMED CT, and the one way adapters turn a native coded item into a CodeableConcept.
//!
//! The running maps are process-wide and swapped whole ([`install`]): the gateway loads
//! the national maps an operator names (`[terminology]`, see [`load`]) at start and on
//! reload, and requests keep reading the maps they started with. Without files, a
//! scheme uses the small curated map embedded from `crates/gp-adapter/terminology/`
//! (the sandbox's default). A code the maps lack is never dropped: it keeps its
//! original coding and text, and a counter per GP system and scheme records it so
//! operators can see map gaps ([`unmapped_counts`]).

pub mod load;
mod table;
pub mod testdata;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use foldhash::fast::FixedState;
use gp_fhir::model::{CTV3, CodeableConcept, Coding, DMD, Extension, READ_V2, SNOMED};

use crate::GpSystem;
pub use load::{LoadError, Report};
pub use table::{Entry, Table};

/// The CodeSystem of EMIS local ("EMISCLINICAL") codes.
pub const EMIS_LOCAL_SYSTEM: &str = "https://emis.com/CodeSystem/emis-local-code";

/// The extension on a SNOMED CT coding the gateway mapped through a map that is not
/// clinically assured (the national maps' `IS_ASSURED` 0, or a "not clinically assured"
/// release): `valueCode` `unassured`. A mapped coding without it came from an assured
/// map. The original coding (`userSelected: true`) is always beside it.
pub const MAP_ASSURANCE_URL: &str =
    "https://gp-gateway.invalid/StructureDefinition/snomed-map-assurance";

/// A code scheme a GP system records clinical codes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// The schemes that map to SNOMED CT, in [`Maps`] order.
pub const MAPPED_SCHEMES: [CodeScheme; 3] =
    [CodeScheme::ReadV2, CodeScheme::Ctv3, CodeScheme::EmisLocal];

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

    /// The scheme's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadV2 => "Read v2",
            Self::Ctv3 => "CTV3",
            Self::EmisLocal => "EMIS local",
            Self::Snomed => "SNOMED CT",
            Self::Dmd => "dm+d",
        }
    }

    /// The scheme's label in metrics and config (`readv2`, `ctv3`, `emis`).
    pub fn label(self) -> &'static str {
        match self {
            Self::ReadV2 => "readv2",
            Self::Ctv3 => "ctv3",
            Self::EmisLocal => "emis",
            Self::Snomed => "snomed",
            Self::Dmd => "dmd",
        }
    }

    fn mapped_index(self) -> Option<usize> {
        match self {
            Self::ReadV2 => Some(0),
            Self::Ctv3 => Some(1),
            Self::EmisLocal => Some(2),
            Self::Snomed | Self::Dmd => None,
        }
    }
}

/// Where a scheme's running map came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The small curated map built into the gateway.
    Embedded,
    /// These files.
    Files(Vec<PathBuf>),
}

/// What a code maps to, as the running maps say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// The SNOMED CT concept id.
    pub snomed: u64,
    /// The concept's term, when the maps carry one.
    pub term: Option<&'a str>,
    /// Whether the map is clinically assured.
    pub assured: bool,
}

/// The maps of the three schemes that map to SNOMED CT, with the terms known for
/// display.
#[derive(Debug, Clone)]
pub struct Maps {
    tables: [Table; 3],
    sources: [Source; 3],
    terms: HashMap<u64, Box<str>, FixedState>,
}

const READV2_TSV: &str = include_str!("../../terminology/readv2-snomed.tsv");
const CTV3_TSV: &str = include_str!("../../terminology/ctv3-snomed.tsv");
const EMIS_TSV: &str = include_str!("../../terminology/emis-snomed.tsv");

/// The curated files' lines `code<TAB>snomed<TAB>term`; comments (`#`) and malformed
/// lines are skipped (a unit test proves the shipped files have none, so nothing is lost).
fn curated_lines(
    text: &'static str,
) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some(code), Some(snomed), Some(term), None) => Some((code, snomed, term)),
                _ => None,
            }
        })
}

fn curated_table(text: &'static str) -> Table {
    let mut t = Table::with_capacity(64);
    for (code, snomed, _) in curated_lines(text) {
        if let Ok(sctid) = snomed.parse() {
            t.insert(
                code,
                Entry {
                    sctid,
                    assured: true,
                },
            );
        }
    }
    t
}

/// The curated maps' SNOMED CT terms, by concept id (the first term given for each).
fn curated_terms() -> HashMap<u64, Box<str>, FixedState> {
    let mut terms = HashMap::default();
    for text in [READV2_TSV, CTV3_TSV, EMIS_TSV] {
        for (_, snomed, term) in curated_lines(text) {
            if let Ok(id) = snomed.parse() {
                terms.entry(id).or_insert_with(|| term.into());
            }
        }
    }
    terms
}

impl Maps {
    /// The curated maps built into the gateway.
    pub fn embedded() -> Self {
        Self {
            tables: [
                curated_table(READV2_TSV),
                curated_table(CTV3_TSV),
                curated_table(EMIS_TSV),
            ],
            sources: [Source::Embedded, Source::Embedded, Source::Embedded],
            terms: curated_terms(),
        }
    }

    /// The maps `files` names, a scheme without files keeping its embedded map, with
    /// what loading each scheme's files found. A malformed file refuses them all.
    pub fn load(files: &MapFiles) -> Result<(Self, Vec<(CodeScheme, Report)>), LoadError> {
        let mut maps = Self::embedded();
        let mut reports = Vec::new();
        for (i, scheme) in MAPPED_SCHEMES.into_iter().enumerate() {
            let paths = files.of(scheme);
            if paths.is_empty() {
                continue;
            }
            let loaded = load::load(scheme, paths)?;
            maps.tables[i] = loaded.table;
            maps.sources[i] = Source::Files(paths.to_vec());
            for (id, term) in loaded.terms {
                maps.terms.entry(id).or_insert(term);
            }
            reports.push((scheme, loaded.report));
        }
        Ok((maps, reports))
    }

    /// What `code` of `scheme` maps to; `None` for unmapped codes and for SNOMED CT and
    /// dm+d, which need no map.
    #[inline]
    pub fn get(&self, scheme: CodeScheme, code: &str) -> Option<Mapping<'_>> {
        let entry = self.tables[scheme.mapped_index()?].get(code)?;
        Some(Mapping {
            snomed: entry.sctid,
            term: self.terms.get(&entry.sctid).map(|t| &**t),
            assured: entry.assured,
        })
    }

    /// How many codes of `scheme` are mapped.
    pub fn len(&self, scheme: CodeScheme) -> usize {
        scheme.mapped_index().map_or(0, |i| self.tables[i].len())
    }

    /// Where `scheme`'s map came from (`None` for schemes that need no map).
    pub fn source(&self, scheme: CodeScheme) -> Option<&Source> {
        scheme.mapped_index().map(|i| &self.sources[i])
    }
}

/// The map files of each scheme (`[terminology]`): an empty list keeps the embedded map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapFiles {
    /// Read v2 → SNOMED CT (`rcsctmap2_uk_*.txt`, and the unassured `rcsctmap_uk_*.txt`).
    pub read_v2: Vec<PathBuf>,
    /// CTV3 → SNOMED CT (`ctv3sctmap2_uk_*.txt`).
    pub ctv3: Vec<PathBuf>,
    /// EMIS local codes → SNOMED CT (the documented local-codes TSV).
    pub emis_local: Vec<PathBuf>,
}

impl MapFiles {
    /// The files of `scheme`.
    pub fn of(&self, scheme: CodeScheme) -> &[PathBuf] {
        match scheme {
            CodeScheme::ReadV2 => &self.read_v2,
            CodeScheme::Ctv3 => &self.ctv3,
            CodeScheme::EmisLocal => &self.emis_local,
            CodeScheme::Snomed | CodeScheme::Dmd => &[],
        }
    }

    /// Every file, in scheme order.
    pub fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.read_v2
            .iter()
            .chain(&self.ctv3)
            .chain(&self.emis_local)
    }
}

/// The running maps.
static CURRENT: LazyLock<ArcSwap<Maps>> = LazyLock::new(|| ArcSwap::from_pointee(Maps::embedded()));

/// Makes `maps` the running maps; mappings already under way finish with the old ones.
pub fn install(maps: Maps) {
    CURRENT.store(Arc::new(maps));
}

/// The running maps.
pub fn current() -> Arc<Maps> {
    CURRENT.load_full()
}

/// What a code maps to in the running maps, owned: (SNOMED CT id, term, assured).
pub fn lookup(scheme: CodeScheme, code: &str) -> Option<(String, Option<String>, bool)> {
    let maps = CURRENT.load();
    maps.get(scheme, code)
        .map(|m| (m.snomed.to_string(), m.term.map(str::to_owned), m.assured))
}

/// Reverse maps, SNOMED CT id → the first source code (in file order) that maps to it,
/// from the curated maps: write-back records a concept with a code a human chose for
/// it, not with whichever of a national map's many codes comes first.
static REVERSE: LazyLock<[HashMap<&'static str, &'static str>; 3]> = LazyLock::new(|| {
    let reverse = |text: &'static str| {
        let mut out = HashMap::new();
        for (code, snomed, _) in curated_lines(text) {
            out.entry(snomed).or_insert(code);
        }
        out
    };
    [reverse(READV2_TSV), reverse(CTV3_TSV), reverse(EMIS_TSV)]
});

/// The native code of `scheme` to record SNOMED CT concept `snomed` with, for write-back
/// (the first code in the curated map that maps to it). SNOMED CT and dm+d are returned
/// as given; `None` when the scheme has no code for the concept.
pub fn native_code(scheme: CodeScheme, snomed: &str) -> Option<&str> {
    let Some(idx) = scheme.mapped_index() else {
        return Some(snomed);
    };
    REVERSE[idx].get(snomed).copied()
}

/// Codes answered without a SNOMED CT coding, by GP system id and scheme.
static UNMAPPED: Mutex<BTreeMap<(&'static str, CodeScheme), u64>> = Mutex::new(BTreeMap::new());

/// How many codes each GP system answered without a SNOMED CT coding since start-up,
/// by scheme: `(system id, scheme, count)`, in system then scheme order.
pub fn unmapped_counts() -> Vec<(&'static str, CodeScheme, u64)> {
    let counts = UNMAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    counts.iter().map(|((s, c), n)| (*s, *c, *n)).collect()
}

/// How many codes of `scheme` `system` answered without a SNOMED CT coding.
pub fn unmapped_count(system: GpSystem, scheme: CodeScheme) -> u64 {
    let counts = UNMAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    counts.get(&(system.id(), scheme)).copied().unwrap_or(0)
}

fn count_unmapped(system: GpSystem, scheme: CodeScheme) {
    let mut counts = UNMAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *counts.entry((system.id(), scheme)).or_insert(0) += 1;
}

/// True when `s` looks like a SNOMED CT id (6 to 18 digits, no leading zero), so a
/// vendor-supplied map that is junk is not passed on as SNOMED CT.
fn is_sctid_shape(s: &str) -> bool {
    (6..=18).contains(&s.len()) && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

/// A SNOMED CT coded item: the one SNOMED CT coding, `text` the term (omitted when empty).
pub fn snomed(code: &str, term: &str) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding::new(SNOMED, code, term)],
        text: (!term.is_empty()).then(|| term.to_owned()),
    }
}

/// Turns a native coded item `system` recorded into a CodeableConcept.
///
/// - Read v2, CTV3, EMIS local: the mapped SNOMED CT coding first (from the running
///   maps, marked with [`MAP_ASSURANCE_URL`] when the map is not assured; else from
///   `supplied_map`, a SNOMED CT id the GP system supplied), then the original coding
///   with `userSelected: true`. With no mapping the original coding is kept alone and
///   the unmapped count for the system and scheme goes up.
/// - SNOMED CT: the one SNOMED CT coding. dm+d: the one dm+d coding.
///
/// `text` is the native term (omitted when empty).
pub fn coded(
    system: GpSystem,
    scheme: CodeScheme,
    code: &str,
    term: &str,
    supplied_map: Option<&str>,
) -> CodeableConcept {
    if matches!(scheme, CodeScheme::Snomed | CodeScheme::Dmd) {
        return CodeableConcept {
            coding: vec![Coding::new(scheme.system(), code, term)],
            text: (!term.is_empty()).then(|| term.to_owned()),
        };
    }
    let text = (!term.is_empty()).then(|| term.to_owned());
    let original = Coding {
        user_selected: Some(true),
        ..Coding::new(scheme.system(), code, term)
    };
    let mapped = match CURRENT.load().get(scheme, code) {
        Some(m) => Some(Coding {
            extension: if m.assured {
                Vec::new()
            } else {
                vec![Extension {
                    url: MAP_ASSURANCE_URL.to_owned(),
                    value_code: Some("unassured".to_owned()),
                    ..Extension::default()
                }]
            },
            ..Coding::new(SNOMED, &m.snomed.to_string(), m.term.unwrap_or_default())
        }),
        None => supplied_map
            .filter(|m| is_sctid_shape(m))
            .map(|m| Coding::new(SNOMED, m, "")),
    };
    let coding = match mapped {
        Some(m) => vec![m, original],
        None => {
            count_unmapped(system, scheme);
            vec![original]
        }
    };
    CodeableConcept { coding, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMIS: GpSystem = GpSystem::new("emis", "EMIS Web");
    const VISION: GpSystem = GpSystem::new("vision", "Vision");

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
                    load::is_sctid(f[1]),
                    "{name}: {} is not a valid SCTID",
                    f[1]
                );
                assert!(!f[2].is_empty(), "{name}: {} has no term", f[0]);
                assert!(seen.insert(f[0]), "{name}: {} listed twice", f[0]);
            }
            assert_eq!(curated_table(text).len(), seen.len());
        }
        let maps = Maps::embedded();
        assert!(maps.len(CodeScheme::ReadV2) >= 20 && maps.len(CodeScheme::Ctv3) >= 12);
    }

    #[test]
    fn looks_up_the_reference_codes() {
        let maps = Maps::embedded();
        let id = |scheme, code| maps.get(scheme, code).map(|m| m.snomed);
        let asthma = maps.get(CodeScheme::ReadV2, "H33..");
        assert_eq!(
            asthma,
            Some(Mapping {
                snomed: 195967001,
                term: Some("Asthma"),
                assured: true
            })
        );
        assert_eq!(
            maps.get(CodeScheme::ReadV2, "G20..").and_then(|m| m.term),
            Some("Essential hypertension")
        );
        assert_eq!(id(CodeScheme::ReadV2, "C10F."), Some(44054006));
        assert_eq!(id(CodeScheme::Ctv3, "X40J5"), Some(44054006));
        assert_eq!(id(CodeScheme::ReadV2, "2469."), Some(271649006));
        assert_eq!(id(CodeScheme::ReadV2, "246A."), Some(271650006));
        assert_eq!(id(CodeScheme::ReadV2, "22A.."), Some(27113001));
        assert_eq!(id(CodeScheme::ReadV2, "229.."), Some(50373000));
        assert_eq!(id(CodeScheme::ReadV2, "22K.."), Some(60621009));
        assert_eq!(id(CodeScheme::Snomed, "195967001"), None);
        assert_eq!(id(CodeScheme::ReadV2, "ZZZZZ"), None);
        assert_eq!(
            lookup(CodeScheme::ReadV2, "H33.."),
            Some(("195967001".to_owned(), Some("Asthma".to_owned()), true))
        );
    }

    #[test]
    fn mapped_code_has_snomed_first_and_original_user_selected() {
        let cc = coded(EMIS, CodeScheme::ReadV2, "H33..", "Asthma", None);
        assert_eq!(cc.coding.len(), 2);
        assert_eq!(cc.coding[0].system.as_deref(), Some(SNOMED));
        assert_eq!(cc.coding[0].code.as_deref(), Some("195967001"));
        assert_eq!(cc.coding[0].display.as_deref(), Some("Asthma"));
        assert_eq!(cc.coding[0].user_selected, None);
        assert!(
            cc.coding[0].extension.is_empty(),
            "an assured map is not marked"
        );
        assert_eq!(cc.coding[1].system.as_deref(), Some(READ_V2));
        assert_eq!(cc.coding[1].code.as_deref(), Some("H33.."));
        assert_eq!(cc.coding[1].user_selected, Some(true));
        assert_eq!(cc.text.as_deref(), Some("Asthma"));
    }

    #[test]
    fn snomed_and_dmd_are_single_codings() {
        let s = coded(
            EMIS,
            CodeScheme::Snomed,
            "91936005",
            "Allergy to penicillin",
            Some("1"),
        );
        assert_eq!(s.coding.len(), 1);
        assert_eq!(s.code_in(SNOMED), Some("91936005"));
        let d = coded(
            VISION,
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
    fn unmapped_codes_are_kept_and_counted_per_system_and_scheme() {
        let before = unmapped_count(EMIS, CodeScheme::EmisLocal);
        let vision_before = unmapped_count(VISION, CodeScheme::EmisLocal);
        let cc = coded(EMIS, CodeScheme::EmisLocal, "EMISXX1", "Local thing", None);
        assert_eq!(cc.coding.len(), 1);
        assert_eq!(cc.coding[0].system.as_deref(), Some(EMIS_LOCAL_SYSTEM));
        assert_eq!(cc.coding[0].user_selected, Some(true));
        assert_eq!(cc.text.as_deref(), Some("Local thing"));
        assert_eq!(unmapped_count(EMIS, CodeScheme::EmisLocal), before + 1);
        assert_eq!(unmapped_count(VISION, CodeScheme::EmisLocal), vision_before);
        assert!(
            unmapped_counts()
                .iter()
                .any(|(s, c, n)| *s == "emis" && *c == CodeScheme::EmisLocal && *n > before)
        );
        // A mapped code counts nothing.
        let read_before = unmapped_count(EMIS, CodeScheme::ReadV2);
        coded(EMIS, CodeScheme::ReadV2, "H33..", "Asthma", None);
        assert_eq!(unmapped_count(EMIS, CodeScheme::ReadV2), read_before);
        // A junk vendor map is not passed on as SNOMED CT.
        assert_eq!(
            coded(EMIS, CodeScheme::EmisLocal, "EMISXX1", "", Some("abc"))
                .coding
                .len(),
            1
        );
        // A well-formed vendor map is used when the gateway's maps have no entry.
        let supplied = coded(EMIS, CodeScheme::ReadV2, "ZZZZZ", "Odd", Some("195967001"));
        assert_eq!(supplied.code_in(SNOMED), Some("195967001"));
        assert_eq!(supplied.coding[1].code.as_deref(), Some("ZZZZZ"));
        // The gateway's map wins over the supplied one.
        let ours = coded(
            EMIS,
            CodeScheme::ReadV2,
            "H33..",
            "Asthma",
            Some("44054006"),
        );
        assert_eq!(ours.code_in(SNOMED), Some("195967001"));
    }
}
