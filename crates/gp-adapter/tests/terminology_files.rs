#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The map-file loader against files written as the NHS Data Migration releases and an
//! operator's local-codes TSV write them: header spellings, column orders, line ends,
//! revisions, retired maps, terms, candidates, and every way a file can be malformed
//! (named by line and column, refusing the whole load). Fixtures:
//! `tests/fixtures/terminology/` (synthetic, see its README).

use std::path::{Path, PathBuf};

use gp_adapter::terminology::load::{self, Candidates, DecidedBy, LoadError, Loaded, Report};
use gp_adapter::terminology::{CodeScheme, MapFiles, Maps, Source, testdata};

const READ_V2: &str = "rcsctmap2_uk_synthetic.txt";
const READ_V2_UNASSURED: &str = "rcsctmap_uk_synthetic.txt";
const CTV3: &str = "ctv3sctmap2_uk_synthetic.txt";
const LOCAL: &str = "emis_local_codes_synthetic.tsv";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/terminology")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// The fixtures' concept `n`: `testdata::sctid(9_100_000 + n, "00")`.
fn id(n: u64) -> u64 {
    id_text(n).parse().unwrap()
}

fn id_text(n: u64) -> String {
    testdata::sctid(9_100_000 + n, "00")
}

/// What `code` maps to: (concept, assured).
fn mapped(loaded: &Loaded, code: &str) -> Option<(u64, bool)> {
    loaded.table.get(code).map(|e| (e.sctid, e.assured))
}

/// A temporary directory to write variants of the fixtures into.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn load_one(scheme: CodeScheme, path: &Path) -> Result<Loaded, LoadError> {
    load::load(scheme, &[path.to_owned()])
}

fn load_fixture(scheme: CodeScheme, name: &str) -> Loaded {
    load_one(scheme, &fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Loads `text` written to a file as a map of `scheme`.
fn load_text(scheme: CodeScheme, text: impl AsRef<[u8]>) -> Result<Loaded, LoadError> {
    let dir = Dir::new();
    let path = dir.write("map.txt", text);
    load_one(scheme, &path)
}

/// Every code of the Read v2 fixture, mapped or not.
const READ_V2_CODES: [&str; 13] = [
    "zq1..", "zq2..", "zq3..", "zq4..", "zq5..", "zq6..", "zq7..", "zq8..", "zq9..", "zqa..",
    "zqb..", "zqc..", "zqd..",
];

/// Asserts `a` and `b` map every Read v2 fixture code alike and report alike.
fn assert_same_read_v2(a: &Loaded, b: &Loaded, what: &str) {
    assert_eq!(a.report, b.report, "{what}");
    for code in READ_V2_CODES {
        assert_eq!(mapped(a, code), mapped(b, code), "{what}: {code}");
    }
}

/// The Read v2 fixture's lines, fields split.
fn read_v2_fields() -> Vec<Vec<String>> {
    fixture_text(READ_V2)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn join(lines: &[Vec<String>], eol: &str) -> String {
    lines.iter().map(|f| f.join("\t") + eol).collect::<String>()
}

#[test]
fn read_v2_release_reports_what_it_holds() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    assert_eq!(loaded.scheme, CodeScheme::ReadV2);
    assert_eq!(
        loaded.report,
        Report {
            rows: 25,
            // zq2.. two earlier revisions, zq3.. one, zq4.. one, zq5.. one, zq6.. the duplicate.
            superseded: 6,
            // zq4.. and zqd..'s first map.
            retired: 2,
            no_concept: 0,
            active: 17,
            // zq9..'s first map and zqc.. are unassured.
            assured: 15,
            assurance_column: true,
            codes: 12,
            synonym_only: 1,
            candidates: loaded.report.candidates.clone(),
        }
    );
    assert!((loaded.report.assured_share() - 15.0 / 17.0).abs() < 1e-9);
    assert!(loaded.terms.is_empty(), "the national maps carry no terms");
}

#[test]
fn the_latest_revision_of_a_map_stands_and_on_equal_dates_the_last_row() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    // Revisions dated 2015, 2021, 2018 in file order: 2021 stands, not the last row.
    assert_eq!(mapped(&loaded, "zq2.."), Some((id(3), true)));
    // Two revisions on one date: the later row stands.
    assert_eq!(mapped(&loaded, "zq3.."), Some((id(6), true)));
    // Different maps with different dates are not revisions of each other.
    assert_eq!(mapped(&loaded, "zq1.."), Some((id(1), true)));
}

#[test]
fn a_map_is_retired_or_reinstated_by_its_latest_revision() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    assert_eq!(mapped(&loaded, "zq4.."), None, "retired in 2020");
    assert_eq!(
        mapped(&loaded, "zq5.."),
        Some((id(8), true)),
        "retired in 2015, active again in 2020"
    );
    // A retired map beside another active map of the code: the active one, no choice.
    assert_eq!(mapped(&loaded, "zqd.."), Some((id(22), true)));
    assert!(loaded.report.candidates.iter().all(|c| c.code != "zqd.."));
}

#[test]
fn a_duplicate_row_is_one_map() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    assert_eq!(mapped(&loaded, "zq6.."), Some((id(9), true)));
    assert!(loaded.report.candidates.iter().all(|c| c.code != "zq6.."));
}

#[test]
fn the_preferred_term_map_wins_over_a_synonym_and_a_synonym_alone_still_maps() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    // TermCode 00 maps to id 10; TermCode 11 (later, assured) to id 11: not a candidate.
    assert_eq!(mapped(&loaded, "zq7.."), Some((id(10), true)));
    assert!(loaded.report.candidates.iter().all(|c| c.code != "zq7.."));
    // Only TermCode 11 is mapped: the code still maps, and is counted.
    assert_eq!(mapped(&loaded, "zq8.."), Some((id(12), true)));
    assert_eq!(loaded.report.synonym_only, 1);
}

#[test]
fn several_candidates_are_decided_assured_then_latest_then_lowest_and_reported_in_code_order() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2);
    // zq9..: the unassured map is later; the assured one still wins.
    assert_eq!(mapped(&loaded, "zq9.."), Some((id(14), true)));
    // zqa..: both assured; the later one (the higher id) wins.
    assert_eq!(mapped(&loaded, "zqa.."), Some((id(16), true)));
    // zqb..: three alike; the lowest id wins, though it is not first in the file.
    assert_eq!(mapped(&loaded, "zqb.."), Some((id(17), true)));
    assert_eq!(mapped(&loaded, "zqc.."), Some((id(19), false)));
    // zqb.. comes first in the file; the report is in code order.
    assert_eq!(
        loaded.report.candidates,
        vec![
            Candidates {
                code: "zq9..".into(),
                chosen: id(14),
                others: vec![id(13)],
                decided_by: DecidedBy::Assurance,
            },
            Candidates {
                code: "zqa..".into(),
                chosen: id(16),
                others: vec![id(15)],
                decided_by: DecidedBy::EffectiveDate,
            },
            Candidates {
                code: "zqb..".into(),
                chosen: id(17),
                others: vec![id(18), id(20)],
                decided_by: DecidedBy::Tie,
            },
        ]
    );
}

#[test]
fn header_spellings_of_different_releases_load_alike() {
    let baseline = load_fixture(CodeScheme::ReadV2, READ_V2);
    let mut lines = read_v2_fields();
    let dir = Dir::new();
    for header in [
        "MAPID\tREADCODE\tTERMCODE\tCONCEPTID\tDESCRIPTIONID\tIS_ASSURED\tEFFECTIVEDATE\tMAPSTATUS",
        "MapId\tReadCode\tTermCode\tConceptId\tDescriptionId\tIsAssured\tEFFECTIVEdate\tMapStatus",
        "map_id\tread_code\tterm_code\tconcept_id\tdescription_id\tis_assured\teffective_date\tmap_status",
        " MapId \tReadCode\tTermCode\tConceptId\tDescriptionId\tIS_ASSURED\tEffectiveDate\tMAPSTATUS ",
    ] {
        lines[0] = header.split('\t').map(str::to_owned).collect();
        let path = dir.write("respelt.txt", join(&lines, "\n"));
        let loaded = load_one(CodeScheme::ReadV2, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_same_read_v2(&baseline, &loaded, header);
    }
    // CTV3: the release's upper case, and the mixed case another writes.
    let ctv3 = load_fixture(CodeScheme::Ctv3, CTV3);
    let text = fixture_text(CTV3).replacen(
        "MAPID\tCTV3_CONCEPTID\tCTV3_TERMID\tCTV3_TERMTYPE\tSCT_CONCEPTID\tSCT_DESCRIPTIONID\tMAPSTATUS\tEFFECTIVEDATE\tIS_ASSURED",
        "MapId\tCtv3_ConceptId\tCtv3_TermId\tCtv3_TermType\tSct_ConceptId\tSct_DescriptionId\tMapStatus\tEFFECTIVEdate\tIs_Assured",
        1,
    );
    let respelt = load_text(CodeScheme::Ctv3, text).unwrap();
    assert_eq!(respelt.report, ctv3.report);
    assert_eq!(mapped(&respelt, "zc004"), Some((id(31), true)));
}

#[test]
fn columns_in_another_order_and_unknown_columns_load_alike() {
    let baseline = load_fixture(CodeScheme::ReadV2, READ_V2);
    let lines = read_v2_fields();
    let dir = Dir::new();
    // Reversed, and rotated with two unknown columns (one before, one among the known).
    let reversed: Vec<Vec<String>> = lines
        .iter()
        .map(|f| f.iter().rev().cloned().collect())
        .collect();
    let widened: Vec<Vec<String>> = lines
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut f = f.clone();
            f.rotate_left(3);
            let (a, b) = if i == 0 {
                ("RefsetId".to_owned(), "Comment".to_owned())
            } else {
                (format!("{}", 900 + i), "checked".to_owned())
            };
            f.insert(0, a);
            f.insert(4, b);
            f
        })
        .collect();
    for (what, lines) in [("reversed", reversed), ("rotated, widened", widened)] {
        let path = dir.write("reordered.txt", join(&lines, "\n"));
        let loaded = load_one(CodeScheme::ReadV2, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_same_read_v2(&baseline, &loaded, what);
    }
}

#[test]
fn the_unassured_release_without_is_assured_maps_every_code_unassured() {
    let loaded = load_fixture(CodeScheme::ReadV2, READ_V2_UNASSURED);
    assert!(!loaded.report.assurance_column);
    assert_eq!(loaded.report.rows, 4);
    assert_eq!(loaded.report.active, 3);
    assert_eq!(loaded.report.assured, 0);
    assert_eq!(loaded.report.retired, 1);
    assert_eq!(loaded.report.assured_share(), 0.0);
    assert_eq!(mapped(&loaded, "zu1.."), Some((id(23), false)));
    // Preferred (00) over synonym (11), both unassured.
    assert_eq!(mapped(&loaded, "zu2.."), Some((id(24), false)));
    assert_eq!(mapped(&loaded, "zu3.."), None);
    assert_eq!(loaded.report.codes, 2);
}

#[test]
fn bom_crlf_lf_and_blank_lines_load_alike() {
    let baseline = load_fixture(CodeScheme::ReadV2, READ_V2);
    let text = fixture_text(READ_V2);
    assert!(text.ends_with("\n\n\n"), "the fixture ends in blank lines");
    let crlf = text.replace('\n', "\r\n");
    let dir = Dir::new();
    let variants: [(&str, Vec<u8>); 4] = [
        (
            "BOM + CRLF",
            [&b"\xEF\xBB\xBF"[..], crlf.as_bytes()].concat(),
        ),
        ("CRLF", crlf.clone().into_bytes()),
        ("BOM + LF", [&b"\xEF\xBB\xBF"[..], text.as_bytes()].concat()),
        (
            "LF, no trailing newline, a blank line inside",
            text.trim_end().replacen("\n", "\n\n", 2).into_bytes(),
        ),
    ];
    for (what, bytes) in variants {
        let path = dir.write("variant.txt", bytes);
        let loaded = load_one(CodeScheme::ReadV2, &path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same_read_v2(&baseline, &loaded, what);
    }
    // Lines count as the file has them, CRLF or not, BOM or not: the bad row is line 5.
    let bad = "MapId\tReadCode\tTermCode\tConceptId\tDescriptionId\tIS_ASSURED\tEffectiveDate\tMapStatus\r\n\
               \r\n\
               {9A000001-0000-4000-8000-000000000001}\tzq1..\t00\t9100001002\t9100001018\t1\t20200401\t1\r\n\
               \r\n\
               {9A000002-0000-4000-8000-000000000002}\tzq2..\t00\t9100002009\t9100002013\t1\t20200401\t2\r\n";
    let e = load_text(
        CodeScheme::ReadV2,
        [&b"\xEF\xBB\xBF"[..], bad.as_bytes()].concat(),
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.reason.as_str()),
        (5, "MapStatus is \"2\": expected 0 or 1")
    );
}

#[test]
fn ctv3_release_skips_drug_rows_and_maps_through_p_terms() {
    let loaded = load_fixture(CodeScheme::Ctv3, CTV3);
    assert_eq!(
        loaded.report,
        Report {
            rows: 6,
            superseded: 1,
            retired: 0,
            no_concept: 1,
            active: 4,
            assured: 4,
            assurance_column: true,
            codes: 3,
            synonym_only: 1,
            candidates: Vec::new(),
        }
    );
    // P beats a later S to another concept, with no candidates reported.
    assert_eq!(mapped(&loaded, "zc001"), Some((id(27), true)));
    // A drug maps through dm+d, not here.
    assert_eq!(mapped(&loaded, "zc002"), None);
    assert_eq!(mapped(&loaded, "zc003"), Some((id(29), true)));
    assert_eq!(mapped(&loaded, "zc004"), Some((id(31), true)));
}

#[test]
fn local_codes_file_maps_long_codes_and_carries_terms() {
    let loaded = load_fixture(CodeScheme::EmisLocal, LOCAL);
    assert_eq!(mapped(&loaded, "EMISZQ1"), Some((id(32), true)));
    assert_eq!(mapped(&loaded, "EMISZQLOCAL0002"), Some((id(33), true)));
    assert_eq!(mapped(&loaded, "EMISZQLOCAL0003"), Some((id(34), false)));
    assert_eq!(mapped(&loaded, "EMISZQ4"), Some((id(35), true)));
    assert_eq!(
        mapped(&loaded, "EMISZQLOCAL000"),
        None,
        "a prefix is not a code"
    );
    assert_eq!(mapped(&loaded, "EMISZQLOCAL00020"), None);
    // The assured map wins over the unassured one with the lower id.
    assert_eq!(mapped(&loaded, "EMISZQLOCAL0005"), Some((id(37), true)));
    assert_eq!(
        loaded.report.candidates,
        vec![Candidates {
            code: "EMISZQLOCAL0005".into(),
            chosen: id(37),
            others: vec![id(36)],
            decided_by: DecidedBy::Assurance,
        }]
    );
    assert!(loaded.report.assurance_column);
    assert_eq!(loaded.report.codes, 5);
    let term = |n| {
        loaded
            .terms
            .iter()
            .find(|(i, _)| *i == id(n))
            .map(|(_, t)| &**t)
    };
    assert_eq!(term(32), Some("Synthetic local finding one"));
    assert_eq!(term(34), Some("Synthetic local procedure three"));
    assert_eq!(term(35), None, "an empty Term gives none");

    // Through the maps a request reads: the term is the coding's display.
    let (maps, _) = Maps::load(&MapFiles {
        emis_local: vec![fixture(LOCAL)],
        ..MapFiles::default()
    })
    .unwrap();
    let m = maps.get(CodeScheme::EmisLocal, "EMISZQLOCAL0002").unwrap();
    assert_eq!(
        (m.snomed, m.term, m.assured),
        (id(33), Some("Synthetic local finding two"), true)
    );
}

#[test]
fn a_local_codes_file_without_is_assured_is_the_operators_own_and_assured() {
    let text = format!(
        "LocalCode\tConceptId\tTerm\nEMISZQLOCAL0009\t{}\tSynthetic\n",
        id_text(38)
    );
    let loaded = load_text(CodeScheme::EmisLocal, text).unwrap();
    assert!(!loaded.report.assurance_column);
    assert_eq!(mapped(&loaded, "EMISZQLOCAL0009"), Some((id(38), true)));
}

#[test]
fn several_files_of_a_scheme_load_as_one_map() {
    let loaded = load::load(
        CodeScheme::ReadV2,
        &[fixture(READ_V2), fixture(READ_V2_UNASSURED)],
    )
    .unwrap();
    assert_eq!(mapped(&loaded, "zq1.."), Some((id(1), true)));
    assert_eq!(mapped(&loaded, "zu1.."), Some((id(23), false)));
    assert_eq!(loaded.report.rows, 25 + 4);
    assert!(loaded.report.assurance_column);
    // A later file's later revision of a map stands.
    let dir = Dir::new();
    let update = dir.write(
        "update.txt",
        format!(
            "{}\n{{9A000001-0000-4000-8000-000000000001}}\tzq1..\t00\t{}\t{}\t1\t20240401\t1\n",
            testdata::header(CodeScheme::ReadV2),
            id_text(38),
            testdata::sctid(9_100_038, "01"),
        ),
    );
    let loaded = load::load(CodeScheme::ReadV2, &[fixture(READ_V2), update]).unwrap();
    assert_eq!(mapped(&loaded, "zq1.."), Some((id(38), true)));
    assert_eq!(loaded.report.superseded, 7);
}

#[test]
fn rows_without_a_map_id_are_maps_of_their_own() {
    // A file without a MapId column beside one with it, and rows with an empty MapId:
    // none is a revision of another, so every code stays mapped.
    let dir = Dir::new();
    let no_ids = dir.write(
        "no-map-ids.txt",
        format!(
            "ReadCode\tTermCode\tConceptId\tIS_ASSURED\tEffectiveDate\tMapStatus\n\
             zn1..\t00\t{}\t1\t20200401\t1\n\
             zn2..\t00\t{}\t1\t20210401\t1\n",
            id_text(38),
            id_text(39)
        ),
    );
    let empty_ids = dir.write(
        "empty-map-ids.txt",
        format!(
            "{}\n\tzn3..\t00\t{}\t{}\t1\t20200401\t1\n\tzn4..\t00\t{}\t{}\t1\t20200401\t1\n",
            testdata::header(CodeScheme::ReadV2),
            id_text(40),
            testdata::sctid(9_100_040, "01"),
            id_text(1),
            testdata::sctid(9_100_001, "01"),
        ),
    );
    let loaded = load::load(CodeScheme::ReadV2, &[fixture(READ_V2), no_ids, empty_ids])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mapped(&loaded, "zn1.."), Some((id(38), true)));
    assert_eq!(mapped(&loaded, "zn2.."), Some((id(39), true)));
    assert_eq!(mapped(&loaded, "zn3.."), Some((id(40), true)));
    assert_eq!(mapped(&loaded, "zn4.."), Some((id(1), true)));
    assert_eq!(
        loaded.report.superseded, 6,
        "only the fixture's own revisions"
    );
}

/// A Read v2 file: the header, a good row, a blank line, then `bad` (line 4).
fn read_v2_with(bad: &[u8]) -> Vec<u8> {
    let good = format!(
        "{{9A000001-0000-4000-8000-000000000001}}\tzq1..\t00\t{}\t{}\t1\t20200401\t1",
        id_text(1),
        testdata::sctid(9_100_001, "01")
    );
    [
        testdata::header(CodeScheme::ReadV2).as_bytes(),
        b"\n",
        good.as_bytes(),
        b"\n\n",
        bad,
        b"\n",
        good.as_bytes(),
        b"\n",
    ]
    .concat()
}

/// A Read v2 data row with `field` (by header name) set to `value`.
fn row_with(field: &str, value: &str) -> Vec<u8> {
    let names: Vec<&str> = testdata::header(CodeScheme::ReadV2).split('\t').collect();
    let concept = id_text(2);
    let description = testdata::sctid(9_100_002, "01");
    let mut values = [
        "{9A000002-0000-4000-8000-000000000002}",
        "zq2..",
        "00",
        concept.as_str(),
        description.as_str(),
        "1",
        "20200401",
        "1",
    ];
    let i = names.iter().position(|n| *n == field).unwrap();
    values[i] = value;
    values.join("\t").into_bytes()
}

#[test]
fn malformed_rows_are_refused_naming_the_line_and_the_column() {
    let wrong_check_digit = {
        let good = id_text(2);
        let last = good.as_bytes()[good.len() - 1] - b'0';
        format!("{}{}", &good[..good.len() - 1], (last + 1) % 10)
    };
    let check_digit_reason = format!("ConceptId \"{wrong_check_digit}\" is not a SNOMED CT id");
    let mut seven_fields = row_with("MapStatus", "1");
    seven_fields.truncate(seven_fields.len() - 2);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "wrong field count",
            seven_fields,
            vec!["7 tab-separated fields", "header names 8"],
        ),
        (
            "MapStatus 2",
            row_with("MapStatus", "2"),
            vec!["MapStatus is \"2\"", "expected 0 or 1"],
        ),
        (
            "IS_ASSURED yes",
            row_with("IS_ASSURED", "yes"),
            vec!["IS_ASSURED is \"yes\"", "expected 0 or 1"],
        ),
        (
            "a month 13",
            row_with("EffectiveDate", "20201301"),
            vec!["EffectiveDate is \"20201301\"", "not a calendar date"],
        ),
        (
            "a seven-digit date",
            row_with("EffectiveDate", "2020041"),
            vec!["EffectiveDate is \"2020041\"", "YYYYMMDD"],
        ),
        (
            "an empty date",
            row_with("EffectiveDate", ""),
            vec!["EffectiveDate is \"\""],
        ),
        (
            "a wrong check digit",
            row_with("ConceptId", &wrong_check_digit),
            vec![&check_digit_reason, "check digit"],
        ),
        (
            "a non-numeric concept id",
            row_with("ConceptId", "91000x2009"),
            vec!["ConceptId \"91000x2009\" is not a SNOMED CT id"],
        ),
        (
            "an empty concept id",
            row_with("ConceptId", ""),
            vec!["ConceptId \"\" is not a SNOMED CT id"],
        ),
        (
            "an empty code",
            row_with("ReadCode", "  "),
            vec!["ReadCode is empty"],
        ),
        (
            "a code with a space",
            row_with("ReadCode", "zq 2."),
            vec!["ReadCode \"zq 2.\" is not a code"],
        ),
        (
            "non-UTF-8 bytes",
            [&row_with("MapStatus", "1")[..], b"\xE9"].concat(),
            vec!["MapStatus is not UTF-8 text", "0xE9"],
        ),
    ];
    for (what, bad, reason) in cases {
        let dir = Dir::new();
        let path = dir.write("bad.txt", read_v2_with(&bad));
        let e = load_one(CodeScheme::ReadV2, &path).unwrap_err();
        assert_eq!(e.path, path, "{what}");
        assert_eq!(e.line, 4, "{what}: {}", e.reason);
        for part in reason {
            assert!(
                e.reason.contains(part),
                "{what}: {:?} lacks {part:?}",
                e.reason
            );
        }
        assert_eq!(
            e.to_string(),
            format!("{}:4: {}", path.display(), e.reason),
            "{what}"
        );
    }
}

#[test]
fn a_non_utf8_byte_names_the_column_it_is_in() {
    let bad = [
        &b"{9A000002-0000-4000-8000-000000000002}\tzq"[..],
        b"\xE9",
        b"..",
    ]
    .concat();
    let rest = format!(
        "\t00\t{}\t{}\t1\t20200401\t1",
        id_text(2),
        testdata::sctid(9_100_002, "01")
    );
    let e = load_text(
        CodeScheme::ReadV2,
        read_v2_with(&[&bad[..], rest.as_bytes()].concat()),
    )
    .unwrap_err();
    assert_eq!(e.line, 4);
    assert!(
        e.reason.starts_with("ReadCode is not UTF-8 text"),
        "{}",
        e.reason
    );
}

#[test]
fn a_header_without_rows_is_refused_as_a_truncated_file() {
    let header = testdata::header(CodeScheme::ReadV2);
    for (text, line) in [
        (format!("{header}\r\n"), 1),
        (format!("\u{FEFF}{header}\r\n\r\n\r\n"), 3),
    ] {
        let e = load_text(CodeScheme::ReadV2, &text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}");
        assert!(
            e.reason.starts_with("no data rows after the header"),
            "{}",
            e.reason
        );
    }
    // Several files: each must hold rows of its own.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("rcsctmap_uk_empty.txt");
    std::fs::write(&empty, format!("{header}\n")).unwrap();
    let e = load::load(CodeScheme::ReadV2, &[fixture(READ_V2), empty.clone()]).unwrap_err();
    assert_eq!(e.path, empty);
}

#[test]
fn malformed_headers_and_files_are_refused_at_line_one() {
    let header = testdata::header(CodeScheme::ReadV2);
    let row = String::from_utf8(row_with("MapStatus", "1")).unwrap();
    let cases: Vec<(&str, CodeScheme, String, &[&str])> = vec![
        (
            "an empty file",
            CodeScheme::ReadV2,
            String::new(),
            &["empty file"],
        ),
        (
            "only blank lines",
            CodeScheme::ReadV2,
            "\u{FEFF}\r\n\r\n".into(),
            &["empty file"],
        ),
        (
            "no code column",
            CodeScheme::ReadV2,
            format!("{}\n{row}\n", header.replace("ReadCode", "Code")),
            &[
                "no source-code column",
                "ReadCode",
                "CTV3_CONCEPTID",
                "LocalCode",
            ],
        ),
        (
            "no concept column",
            CodeScheme::ReadV2,
            format!("{}\n{row}\n", header.replace("ConceptId", "Concept")),
            &["no SNOMED CT concept column"],
        ),
        (
            "no MapStatus in a forward map",
            CodeScheme::ReadV2,
            format!("{}\n{row}\n", header.replace("MapStatus", "Status")),
            &["no MapStatus column"],
        ),
        (
            "a duplicate column",
            CodeScheme::ReadV2,
            format!("{header}\tMAPSTATUS\n{row}\t1\n"),
            &["column \"MAPSTATUS\" is named twice"],
        ),
        (
            "a CTV3 map given as Read v2",
            CodeScheme::ReadV2,
            fixture_text(CTV3),
            &["this is a map of CTV3 codes (its CTV3_CONCEPTID column), given as Read v2 codes"],
        ),
        (
            "a Read v2 map given as CTV3",
            CodeScheme::Ctv3,
            fixture_text(READ_V2),
            &["this is a map of Read v2 codes (its ReadCode column), given as CTV3 codes"],
        ),
        (
            "a local-codes file given as Read v2",
            CodeScheme::ReadV2,
            fixture_text(LOCAL),
            &["this is a map of EMIS local codes (its LocalCode column), given as Read v2 codes"],
        ),
    ];
    for (what, scheme, text, reason) in cases {
        let e = load_text(scheme, text).unwrap_err();
        assert_eq!(e.line, 1, "{what}: {}", e.reason);
        for part in reason {
            assert!(
                e.reason.contains(part),
                "{what}: {:?} lacks {part:?}",
                e.reason
            );
        }
    }
    // The header itself not UTF-8.
    let e = load_text(CodeScheme::ReadV2, b"MapId\tRead\xFFCode\n".as_slice()).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("not UTF-8 text"), "{}", e.reason);
}

#[test]
fn a_ctv3_file_given_where_read_v2_is_expected_names_both() {
    let e = load::load(CodeScheme::ReadV2, &[fixture(READ_V2), fixture(CTV3)]).unwrap_err();
    assert_eq!(e.path, fixture(CTV3), "the file at fault, not the first");
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("CTV3") && e.reason.contains("Read v2"));
    // What its header names, for `gp-gateway terminology check`.
    let scheme = |f| load::check(&fixture(f)).unwrap().scheme;
    assert_eq!(scheme(CTV3), CodeScheme::Ctv3);
    assert_eq!(scheme(READ_V2), CodeScheme::ReadV2);
    assert_eq!(scheme(READ_V2_UNASSURED), CodeScheme::ReadV2);
    assert_eq!(scheme(LOCAL), CodeScheme::EmisLocal);
    assert_eq!(load::check(&fixture(CTV3)).unwrap().report.codes, 3);
    let e = load::check(Path::new("/nonexistent/rcsctmap2_uk.txt")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.reason.starts_with("cannot open"), "{}", e.reason);
}

#[test]
fn one_malformed_file_refuses_the_whole_load() {
    let dir = Dir::new();
    let bad = dir.write("bad.txt", read_v2_with(&row_with("MapStatus", "2")));
    let e = Maps::load(&MapFiles {
        read_v2: vec![fixture(READ_V2), bad.clone()],
        ctv3: vec![fixture(CTV3)],
        emis_local: vec![fixture(LOCAL)],
    })
    .unwrap_err();
    // The caller gets no maps at all, so it keeps the ones it runs with.
    assert_eq!((e.path, e.line), (bad, 4));
}

#[test]
fn loading_replaces_only_the_configured_schemes() {
    let (maps, reports) = Maps::load(&MapFiles {
        read_v2: vec![fixture(READ_V2), fixture(READ_V2_UNASSURED)],
        ..MapFiles::default()
    })
    .unwrap();
    assert_eq!(
        maps.source(CodeScheme::ReadV2),
        Some(&Source::Files(vec![
            fixture(READ_V2),
            fixture(READ_V2_UNASSURED)
        ]))
    );
    assert_eq!(maps.source(CodeScheme::Ctv3), Some(&Source::Embedded));
    assert_eq!(maps.source(CodeScheme::EmisLocal), Some(&Source::Embedded));
    assert_eq!(maps.source(CodeScheme::Snomed), None);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, CodeScheme::ReadV2);
    assert_eq!(reports[0].1.codes, 12 + 2);
    assert_eq!(maps.len(CodeScheme::ReadV2), 14);
    // The files' codes map; the embedded Read v2 map is gone, not merged.
    let zq9 = maps.get(CodeScheme::ReadV2, "zq9..").unwrap();
    assert_eq!((zq9.snomed, zq9.assured), (id(14), true));
    let zu1 = maps.get(CodeScheme::ReadV2, "zu1..").unwrap();
    assert_eq!((zu1.snomed, zu1.assured), (id(23), false));
    assert_eq!(maps.get(CodeScheme::ReadV2, "H33.."), None);
    // The other schemes keep the embedded maps, terms and all.
    let embedded = Maps::embedded();
    assert_eq!(
        maps.get(CodeScheme::Ctv3, "X40J5"),
        embedded.get(CodeScheme::Ctv3, "X40J5")
    );
    assert!(maps.get(CodeScheme::Ctv3, "X40J5").is_some());
    assert_eq!(
        maps.len(CodeScheme::EmisLocal),
        embedded.len(CodeScheme::EmisLocal)
    );
}

#[test]
fn fixture_ids_are_synthetic() {
    // Every number in the fixtures that could be a SNOMED CT id is one this crate made
    // (a concept or description of items 9,100,001..=9,100,040), never a real one.
    let mut seen = 0;
    for name in [READ_V2, READ_V2_UNASSURED, CTV3, LOCAL] {
        let text = fixture_text(name);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let fields = lines.flat_map(|l| l.split('\t').zip(&header));
        for (field, column) in fields {
            let numeric = field.len() >= 6 && field.bytes().all(|b| b.is_ascii_digit());
            if !numeric || column.to_ascii_lowercase().contains("date") {
                continue;
            }
            let item: u64 = field[..field.len() - 3].parse().unwrap();
            let partition = &field[field.len() - 3..field.len() - 1];
            assert!(
                (9_100_001..=9_100_040).contains(&item)
                    && testdata::sctid(item, partition) == field
                    && matches!(partition, "00" | "01"),
                "{name}: {field}"
            );
            assert!(load::is_sctid(field));
            seen += 1;
        }
    }
    assert!(seen > 60, "{seen}");
}
