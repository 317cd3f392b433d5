//! Synthetic map files in the NHS Data Migration release formats, for tests, benchmarks
//! and trying the gateway's `[terminology]` without a TRUD licence.
//!
//! Never real TRUD content: every code and concept id is generated (well-formed, with
//! valid SNOMED CT check digits, but not real concepts), except the `known` codes a
//! caller passes (the synthetic population's, which must map as the gateway's curated
//! maps say). The files carry what real releases carry: headers spelled as the releases
//! spell them, several revisions of a map, retired maps, preferred and synonym terms,
//! assured and unassured maps, codes with several candidate concepts, duplicate rows,
//! CTV3 `_DRUG` rows; optionally CRLF line ends and a byte-order mark. Each file comes
//! with what a correct loader must make of it ([`Generated::expect`]), written down per
//! case as it is generated rather than derived by a loader's rules.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{CodeScheme, MapFiles, Maps};

/// How to generate a file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// At least this many data rows (the known codes' rows included).
    pub rows: usize,
    /// CRLF line ends (as the TRUD files have).
    pub crlf: bool,
    /// A UTF-8 byte-order mark before the header.
    pub bom: bool,
    /// Varies the codes and ids.
    pub seed: u64,
    /// Record [`Generated::expect`] (off for benchmark-size files nobody checks).
    pub expect: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rows: 10_000,
            crlf: true,
            bom: false,
            seed: 1,
            expect: true,
        }
    }
}

/// A generated file and what it must load as.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The file's text.
    pub text: String,
    /// Data rows written.
    pub rows: usize,
    /// Each code written → the concept and assurance it must map to, `None` when it
    /// must stay unmapped (retired, or mapping to no concept).
    pub expect: BTreeMap<String, Option<(u64, bool)>>,
    /// Codes written with several candidate concepts.
    pub candidates: usize,
    /// Codes mapped only through a synonym term.
    pub synonym_only: usize,
    /// Rows mapping to no concept (`_DRUG`).
    pub no_concept: usize,
}

/// The header a release writes for `scheme`.
pub fn header(scheme: CodeScheme) -> &'static str {
    match scheme {
        CodeScheme::ReadV2 => {
            "MapId\tReadCode\tTermCode\tConceptId\tDescriptionId\tIS_ASSURED\tEffectiveDate\tMapStatus"
        }
        CodeScheme::Ctv3 => {
            "MAPID\tCTV3_CONCEPTID\tCTV3_TERMID\tCTV3_TERMTYPE\tSCT_CONCEPTID\tSCT_DESCRIPTIONID\tMAPSTATUS\tEFFECTIVEDATE\tIS_ASSURED"
        }
        _ => "LocalCode\tConceptId\tTerm\tIS_ASSURED",
    }
}

/// A synthetic SNOMED CT id: `item`, partition `partition` (`00` concept, `01`
/// description) and its Verhoeff check digit.
pub fn sctid(item: u64, partition: &str) -> String {
    let body = format!("{item}{partition}");
    let check =
        super::load::verhoeff(std::iter::once(0).chain(body.bytes().rev().map(|b| b - b'0')));
    // The digit d that makes the whole verify: the inverse of the checksum of body+0.
    const INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];
    format!("{body}{}", INV[check as usize])
}

struct Writer {
    scheme: CodeScheme,
    out: Generated,
    eol: &'static str,
    rng: u64,
    next_map: u64,
    next_item: u64,
}

/// One row's values.
struct Line<'a> {
    map: u64,
    code: &'a str,
    preferred: bool,
    concept: &'a str,
    assured: bool,
    date: &'a str,
    active: bool,
    /// A local-codes file's `Term` (empty: none).
    term: &'a str,
}

impl Writer {
    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn map_id(&mut self) -> u64 {
        self.next_map += 1;
        self.next_map
    }

    fn concept(&mut self) -> (u64, String) {
        self.next_item += 1;
        let id = sctid(self.next_item, "00");
        (id.parse().unwrap_or_default(), id)
    }

    fn line(&mut self, l: &Line<'_>) {
        let guid = format!(
            "{{{:08X}-{:04X}-4{:03X}-8{:03X}-{:012X}}}",
            l.map >> 32,
            (l.map >> 16) & 0xFFFF,
            l.map & 0xFFF,
            (l.map >> 12) & 0xFFF,
            l.map.wrapping_mul(0x9E37_79B9) & 0xFFFF_FFFF_FFFF
        );
        let description = sctid(self.next_item * 7 + 3, "11");
        let (assured, active) = (u8::from(l.assured), u8::from(l.active));
        let o = &mut self.out.text;
        let _ = match self.scheme {
            CodeScheme::ReadV2 => {
                let term = if l.preferred { "00" } else { "11" };
                write!(
                    o,
                    "{guid}\t{}\t{term}\t{}\t{description}\t{assured}\t{}\t{active}{}",
                    l.code, l.concept, l.date, self.eol
                )
            }
            CodeScheme::Ctv3 => {
                let kind = if l.preferred { "P" } else { "S" };
                write!(
                    o,
                    "{guid}\t{}\tY{:04}\t{kind}\t{}\t{description}\t{active}\t{}\t{assured}{}",
                    l.code,
                    self.out.rows % 10_000,
                    l.concept,
                    l.date,
                    self.eol
                )
            }
            _ => write!(
                o,
                "{}\t{}\t{}\t{assured}{}",
                l.code, l.concept, l.term, self.eol
            ),
        };
        self.out.rows += 1;
    }

    fn expect(&mut self, code: &str, mapped: Option<(u64, bool)>) {
        self.out.expect.insert(code.to_owned(), mapped);
    }

    /// A one-row active map.
    fn simple(&mut self, code: &str, concept: &str, assured: bool) {
        self.simple_with_term(code, concept, assured, "Synthetic local concept");
    }

    fn simple_with_term(&mut self, code: &str, concept: &str, assured: bool, term: &str) {
        let map = self.map_id();
        self.line(&Line {
            map,
            code,
            preferred: true,
            concept,
            assured,
            date: "20200401",
            active: true,
            term,
        });
    }
}

/// A synthetic code of `scheme` numbered `n`: five characters for Read v2 and CTV3
/// (lowercase letters first, so none collides with the curated codes), `EMISSYN…` for
/// local codes. [`generate`] writes codes from `n` = 1 up, so a code numbered beyond the
/// rows written is one no generated file holds.
pub fn code(scheme: CodeScheme, n: u64) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    match scheme {
        CodeScheme::ReadV2 | CodeScheme::Ctv3 => {
            let mut s = String::with_capacity(5);
            s.push(char::from(A[(n % 26) as usize]));
            let mut rest = n / 26;
            for _ in 0..4 {
                s.push(char::from(A[(rest % 36) as usize]));
                rest /= 36;
            }
            s
        }
        _ => format!("EMISSYN{n}"),
    }
}

/// Generates a map file of `scheme` in its release format. `known` codes map to their
/// given concepts (assured, preferred term, one active revision) and come first.
pub fn generate(scheme: CodeScheme, known: &[(&str, &str)], opts: &Options) -> Generated {
    let mut w = Writer {
        scheme,
        out: Generated::default(),
        eol: if opts.crlf { "\r\n" } else { "\n" },
        rng: opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        next_map: opts.seed << 40,
        next_item: 9_000_000 + (opts.seed % 1000) * 1_000_000,
    };
    w.out.text.reserve(opts.rows * 96);
    if opts.bom {
        w.out.text.push('\u{FEFF}');
    }
    w.out.text.push_str(header(scheme));
    w.out.text.push_str(w.eol);
    for (c, snomed) in known {
        // No term: a known code's concept is real, and its term is not ours to invent.
        w.simple_with_term(c, snomed, true, "");
        if let Ok(id) = snomed.parse() {
            w.expect(c, Some((id, true)));
        }
    }
    let local = !matches!(scheme, CodeScheme::ReadV2 | CodeScheme::Ctv3);
    let mut n = 0u64;
    while w.out.rows < opts.rows {
        n += 1;
        let c = code(scheme, n);
        if known.iter().any(|(k, _)| *k == c) {
            continue;
        }
        let case = if local { w.rand() % 4 } else { w.rand() % 100 };
        let (a_id, a) = w.concept();
        let expect = match case {
            // A local file: assured and unassured maps, once each.
            0..=2 if local => {
                w.simple(&c, &a, true);
                Some((a_id, true))
            }
            _ if local => {
                w.simple(&c, &a, false);
                Some((a_id, false))
            }
            // The common case: the preferred term and a synonym, both mapped.
            0..=59 => {
                w.simple(&c, &a, true);
                let map = w.map_id();
                w.line(&Line {
                    map,
                    code: &c,
                    preferred: false,
                    concept: &a,
                    assured: true,
                    date: "20200401",
                    active: true,
                    term: "",
                });
                Some((a_id, true))
            }
            // Retired: the later revision of the map has MapStatus 0.
            60..=69 => {
                let map = w.map_id();
                for (date, active) in [("20150401", true), ("20200401", false)] {
                    w.line(&Line {
                        map,
                        code: &c,
                        preferred: true,
                        concept: &a,
                        assured: true,
                        date,
                        active,
                        term: "",
                    });
                }
                None
            }
            // Remapped: a later revision of the same map names another concept.
            70..=74 => {
                let (b_id, b) = w.concept();
                let map = w.map_id();
                for (concept, date) in [(&a, "20150401"), (&b, "20210401")] {
                    w.line(&Line {
                        map,
                        code: &c,
                        preferred: true,
                        concept,
                        assured: true,
                        date,
                        active: true,
                        term: "",
                    });
                }
                Some((b_id, true))
            }
            // Unassured only.
            75..=79 => {
                w.simple(&c, &a, false);
                Some((a_id, false))
            }
            // Two candidates: the assured one wins.
            80..=82 => {
                let (_, b) = w.concept();
                w.simple(&c, &b, false);
                w.simple(&c, &a, true);
                w.out.candidates += 1;
                Some((a_id, true))
            }
            // Two assured candidates: the later effective date wins.
            83..=84 => {
                let (b_id, b) = w.concept();
                let map = w.map_id();
                w.line(&Line {
                    map,
                    code: &c,
                    preferred: true,
                    concept: &a,
                    assured: true,
                    date: "20180401",
                    active: true,
                    term: "",
                });
                let map = w.map_id();
                w.line(&Line {
                    map,
                    code: &c,
                    preferred: true,
                    concept: &b,
                    assured: true,
                    date: "20220401",
                    active: true,
                    term: "",
                });
                w.out.candidates += 1;
                Some((b_id, true))
            }
            // A tie: the lower id wins (`a` was generated first, so it is lower).
            85 => {
                let (_, b) = w.concept();
                w.simple(&c, &b, true);
                w.simple(&c, &a, true);
                w.out.candidates += 1;
                Some((a_id, true))
            }
            // The same row twice: one map, no candidates.
            86..=88 => {
                let map = w.map_id();
                for _ in 0..2 {
                    w.line(&Line {
                        map,
                        code: &c,
                        preferred: true,
                        concept: &a,
                        assured: true,
                        date: "20200401",
                        active: true,
                        term: "",
                    });
                }
                Some((a_id, true))
            }
            // Only a synonym term is mapped.
            89..=90 => {
                let map = w.map_id();
                w.line(&Line {
                    map,
                    code: &c,
                    preferred: false,
                    concept: &a,
                    assured: true,
                    date: "20200401",
                    active: true,
                    term: "",
                });
                w.out.synonym_only += 1;
                Some((a_id, true))
            }
            // A drug, mapped through dm+d rather than here (CTV3's `_DRUG`).
            91..=92 if scheme == CodeScheme::Ctv3 => {
                w.simple(&c, "_DRUG", true);
                w.out.no_concept += 1;
                None
            }
            // A preferred term's map and a synonym's to another concept: the preferred
            // one stands, and nothing is ambiguous.
            _ => {
                let (_, b) = w.concept();
                w.simple(&c, &a, true);
                let map = w.map_id();
                w.line(&Line {
                    map,
                    code: &c,
                    preferred: false,
                    concept: &b,
                    assured: true,
                    date: "20220401",
                    active: true,
                    term: "",
                });
                Some((a_id, true))
            }
        };
        if opts.expect {
            w.expect(&c, expect);
        }
    }
    w.out
}

/// The file names the releases use.
pub fn file_name(scheme: CodeScheme) -> &'static str {
    match scheme {
        CodeScheme::ReadV2 => "rcsctmap2_uk_20261001000001.txt",
        CodeScheme::Ctv3 => "ctv3sctmap2_uk_20261001000001.txt",
        _ => "emis-local-codes.tsv",
    }
}

/// How many rows to write of each scheme's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Read v2 rows.
    pub read_v2: usize,
    /// CTV3 rows.
    pub ctv3: usize,
    /// EMIS local-code rows.
    pub emis_local: usize,
}

impl Sizes {
    /// National scale as issue 26's targets set it: 500,000 rows of each forward map,
    /// and a few thousand local codes.
    pub const NATIONAL: Self = Self {
        read_v2: 500_000,
        ctv3: 500_000,
        emis_local: 5_000,
    };

    /// `rows` rows of every scheme.
    pub const fn all(rows: usize) -> Self {
        Self {
            read_v2: rows,
            ctv3: rows,
            emis_local: rows,
        }
    }

    /// The rows of `scheme`'s file.
    pub fn of(self, scheme: CodeScheme) -> usize {
        match scheme {
            CodeScheme::ReadV2 => self.read_v2,
            CodeScheme::Ctv3 => self.ctv3,
            CodeScheme::EmisLocal => self.emis_local,
            CodeScheme::Snomed | CodeScheme::Dmd => 0,
        }
    }
}

/// Writes a Read v2, a CTV3 and an EMIS local-codes file of about `sizes` rows into
/// `dir` (CRLF, as the releases), each mapping its `known` codes, and names them.
pub fn write_all(
    dir: &Path,
    sizes: Sizes,
    known: &[(CodeScheme, &str, &str)],
) -> std::io::Result<MapFiles> {
    let mut files = MapFiles::default();
    for scheme in super::MAPPED_SCHEMES {
        let mine: Vec<(&str, &str)> = known
            .iter()
            .filter(|k| k.0 == scheme)
            .map(|k| (k.1, k.2))
            .collect();
        let generated = generate(
            scheme,
            &mine,
            &Options {
                rows: sizes.of(scheme),
                expect: false,
                ..Options::default()
            },
        );
        let path: PathBuf = dir.join(file_name(scheme));
        std::fs::write(&path, generated.text)?;
        match scheme {
            CodeScheme::ReadV2 => files.read_v2.push(path),
            CodeScheme::Ctv3 => files.ctv3.push(path),
            _ => files.emis_local.push(path),
        }
    }
    Ok(files)
}

/// Every code the embedded (curated) maps hold, with its concept. Passed as `known`, they
/// make generated maps answer every code the embedded maps know exactly as those do.
pub fn curated_codes() -> Vec<(CodeScheme, &'static str, &'static str)> {
    let mut codes = Vec::new();
    for (scheme, text) in [
        (CodeScheme::ReadV2, super::READV2_TSV),
        (CodeScheme::Ctv3, super::CTV3_TSV),
        (CodeScheme::EmisLocal, super::EMIS_TSV),
    ] {
        codes.extend(super::curated_lines(text).map(|(code, snomed, _)| (scheme, code, snomed)));
    }
    codes
}

/// National-size maps ([`Sizes::NATIONAL`]) that answer every code the embedded maps know
/// as they do (terms included), beside hundreds of thousands of synthetic codes: the
/// maps to measure mapping against, so that only their size differs. Written to a fresh
/// temporary directory and loaded as the gateway loads an operator's `[terminology]`
/// files; the directory is removed again.
pub fn national_maps() -> Result<Maps, Box<dyn Error + Send + Sync>> {
    static DIRS: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gp-gateway-national-maps-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    let loaded = write_all(&dir, Sizes::NATIONAL, &curated_codes())
        .map_err(Box::from)
        .and_then(|files| Maps::load(&files).map(|(maps, _)| maps).map_err(Box::from));
    std::fs::remove_dir_all(&dir)?;
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminology::load::{Rows, is_sctid};

    #[test]
    fn synthetic_ids_are_well_formed() {
        for item in [1_000u64, 9_000_001, 123_456_789] {
            let id = sctid(item, "00");
            assert!(is_sctid(&id), "{id}");
        }
    }

    #[test]
    fn generated_files_load_as_they_say() {
        for scheme in super::super::MAPPED_SCHEMES {
            for (crlf, bom) in [(true, true), (false, false)] {
                let g = generate(
                    scheme,
                    &[("H33..", "195967001")],
                    &Options {
                        rows: 5_000,
                        crlf,
                        bom,
                        ..Options::default()
                    },
                );
                let mut rows = Rows::new(scheme);
                rows.read(Path::new("generated"), g.text.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
                let loaded = rows.finish();
                assert_eq!(loaded.report.rows, g.rows as u64);
                for (code, want) in &g.expect {
                    let got = loaded.table.get(code).map(|e| (e.sctid, e.assured));
                    assert_eq!(got, *want, "{scheme:?} {code}");
                }
                let mapped = g.expect.values().filter(|v| v.is_some()).count();
                assert_eq!(loaded.report.codes, mapped as u64, "{scheme:?}");
                assert_eq!(loaded.report.candidates.len(), g.candidates, "{scheme:?}");
                assert_eq!(loaded.report.synonym_only, g.synonym_only as u64);
                assert_eq!(loaded.report.no_concept, g.no_concept as u64);
            }
        }
    }

    #[test]
    fn maps_written_with_the_curated_codes_answer_them_as_the_embedded_maps() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let curated = curated_codes();
        let files =
            write_all(dir.path(), Sizes::all(3_000), &curated).unwrap_or_else(|e| panic!("{e}"));
        let (maps, reports) = Maps::load(&files).unwrap_or_else(|e| panic!("{e}"));
        let embedded = Maps::embedded();
        for (scheme, code, _) in &curated {
            assert_eq!(
                maps.get(*scheme, code),
                embedded.get(*scheme, code),
                "{code}"
            );
        }
        for scheme in super::super::MAPPED_SCHEMES {
            assert!(
                maps.len(scheme) > 1_000 + embedded.len(scheme),
                "{scheme:?}"
            );
        }
        assert_eq!(reports.len(), 3);
    }
}
