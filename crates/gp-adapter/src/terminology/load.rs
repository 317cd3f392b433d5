//! Loading map files: the NHS Data Migration forward maps from TRUD (Read v2 → SNOMED CT
//! `rcsctmap2_uk_*.txt`, CTV3 → SNOMED CT `ctv3sctmap2_uk_*.txt`) and a local-codes TSV
//! (EMIS local codes → SNOMED CT), into the compact [`Table`].
//!
//! Files are tab-separated with a header row; columns are found by their header names,
//! compared without case and underscores (releases spell them `MapStatus`, `MAPSTATUS`,
//! `EFFECTIVEdate`, `IS_ASSURED`). A UTF-8 byte-order mark and CRLF line ends are
//! accepted. What a loaded file means:
//!
//! - a map (`MapId`) may appear in several revisions: the one with the latest
//!   `EffectiveDate` stands (the last in the file on a tie), earlier ones are superseded,
//!   across all the files of a scheme; a row naming no map (no `MapId` column, as in a
//!   local-codes file, or an empty one) is a map of its own;
//! - only maps whose standing revision has `MapStatus` 1 are active;
//! - rows that map to no concept (CTV3's `_DRUG`, whose drugs map through dm+d) are
//!   counted and skipped;
//! - a code is mapped through its preferred term (Read v2 `TermCode` `00`, CTV3
//!   `CTV3_TERMTYPE` `P`) when it has one, else through its other terms (counted);
//! - when a code's maps name several concepts, the assured one is chosen, then the one
//!   with the latest effective date, then the lowest id; every such code is reported
//!   ([`Candidates`]), never chosen silently.
//!
//! A malformed row refuses the whole file, naming the line and the reason.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use foldhash::fast::FixedState;

use super::CodeScheme;
use super::table::{Entry, Table, pack};

/// Why a map file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// The line (1 = the header); 0 when the file could not be read at all.
    pub line: u64,
    /// What is wrong, naming the column and the value.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
        }
    }
}

impl std::error::Error for LoadError {}

/// How a code with several candidate concepts was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The chosen map is assured and the others are not.
    Assurance,
    /// Equally assured; the chosen map has the latest effective date.
    EffectiveDate,
    /// Nothing tells them apart; the lowest concept id was chosen.
    Tie,
}

impl DecidedBy {
    /// How the report says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assurance => "assured",
            Self::EffectiveDate => "latest effective date",
            Self::Tie => "tie: lowest id",
        }
    }
}

/// A code whose active maps name more than one concept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// The source code.
    pub code: String,
    /// The concept chosen.
    pub chosen: u64,
    /// The other candidates, best first.
    pub others: Vec<u64>,
    /// Why `chosen` won.
    pub decided_by: DecidedBy,
}

/// What loading one scheme's files found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Data rows read (the header and blank lines not counted).
    pub rows: u64,
    /// Rows that were an earlier revision of a map a later row revised.
    pub superseded: u64,
    /// Maps whose standing revision is retired (`MapStatus` 0).
    pub retired: u64,
    /// Rows mapping to no concept (a `_`-marker such as `_DRUG`).
    pub no_concept: u64,
    /// Active maps.
    pub active: u64,
    /// Active maps that are clinically assured.
    pub assured: u64,
    /// Whether the files have an assurance column (the "not clinically assured"
    /// releases have none: every map in them is unassured).
    pub assurance_column: bool,
    /// Distinct codes mapped.
    pub codes: u64,
    /// Codes mapped only through a term other than their preferred one.
    pub synonym_only: u64,
    /// Codes with several candidate concepts, in code order.
    pub candidates: Vec<Candidates>,
}

impl Report {
    /// Assured active maps as a share of all active maps (0 when there are none).
    pub fn assured_share(&self) -> f64 {
        if self.active == 0 {
            0.0
        } else {
            self.assured as f64 / self.active as f64
        }
    }
}

/// One scheme's maps loaded from files, with display terms a local-codes file gave.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The scheme.
    pub scheme: CodeScheme,
    /// The map.
    pub table: Table,
    /// SNOMED CT terms from a `Term` column, by concept id.
    pub terms: Vec<(u64, Box<str>)>,
    /// What was found.
    pub report: Report,
}

// A row's flags, in the top bits of its concept id (an SCTID has at most 18 digits: < 2^60).
const ACTIVE: u64 = 1 << 60;
const ASSURED: u64 = 1 << 61;
const PREFERRED: u64 = 1 << 62;
/// The row names its map (a non-empty `MapId`): rows naming one map are its revisions.
/// A row without one is a map of its own.
const IDENTIFIED: u64 = 1 << 63;
const FLAGS: u64 = ACTIVE | ASSURED | PREFERRED | IDENTIFIED;
/// Bit 63 of a key marks a code too long to pack: the rest indexes [`Rows::long`].
const LONG: u64 = 1 << 63;

/// One data row, as it matters for choosing a map: 40 bytes, and a national map has
/// half a million of them.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The map id's two halves (not a `u128`, whose alignment would pad the row to 48).
    map_id: (u64, u64),
    key: u64,
    /// The concept id and the row's flags.
    sctid_flags: u64,
    date: u32,
    order: u32,
}

const _: () = assert!(size_of::<Row>() == 40);

impl Row {
    fn sctid(&self) -> u64 {
        self.sctid_flags & !FLAGS
    }

    fn is(&self, flag: u64) -> bool {
        self.sctid_flags & flag != 0
    }
}

/// Rows read from one or more files of one scheme.
#[derive(Debug)]
pub struct Rows {
    scheme: CodeScheme,
    /// Take the scheme from the first header read ([`Rows::any`]).
    adopt: bool,
    rows: Vec<Row>,
    long: Vec<Box<str>>,
    long_index: HashMap<Box<str>, u64, FixedState>,
    terms: Vec<(u64, Box<str>)>,
    report: Report,
    revisions: bool,
}

/// Which column holds what.
#[derive(Debug)]
struct Columns {
    names: Vec<String>,
    code: usize,
    concept: usize,
    map_id: Option<usize>,
    term_kind: Option<(usize, &'static str)>,
    assured: Option<usize>,
    date: Option<usize>,
    status: Option<usize>,
    term: Option<usize>,
}

fn normalise(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The scheme and columns a header row names.
fn columns(header: &str) -> Result<(CodeScheme, Columns), String> {
    let names: Vec<String> = header.split('\t').map(|n| n.trim().to_owned()).collect();
    let norm: Vec<String> = names.iter().map(|n| normalise(n)).collect();
    for (i, n) in norm.iter().enumerate() {
        if !n.is_empty() && norm[..i].contains(n) {
            return Err(format!("column {:?} is named twice", names[i]));
        }
    }
    let find = |wanted: &[&str]| norm.iter().position(|n| wanted.contains(&n.as_str()));
    let (scheme, code) = if let Some(i) = find(&["readcode"]) {
        (CodeScheme::ReadV2, i)
    } else if let Some(i) = find(&["ctv3conceptid"]) {
        (CodeScheme::Ctv3, i)
    } else if let Some(i) = find(&["localcode", "emiscode"]) {
        (CodeScheme::EmisLocal, i)
    } else {
        return Err(format!(
            "the header names no source-code column: expected ReadCode (Read v2 map), CTV3_CONCEPTID (CTV3 map) or LocalCode (local codes); found {}",
            names.join(", ")
        ));
    };
    let concept = find(&["conceptid", "sctconceptid", "snomedconceptid"]).ok_or_else(|| {
        "the header names no SNOMED CT concept column (ConceptId or SCT_CONCEPTID)".to_owned()
    })?;
    let status = find(&["mapstatus"]);
    if status.is_none() && scheme != CodeScheme::EmisLocal {
        return Err(
            "the header names no MapStatus column: a forward map's rows say whether each map is active"
                .to_owned(),
        );
    }
    let term_kind = match scheme {
        CodeScheme::ReadV2 => find(&["termcode"]).map(|i| (i, "00")),
        CodeScheme::Ctv3 => find(&["ctv3termtype"]).map(|i| (i, "P")),
        _ => None,
    };
    let cols = Columns {
        code,
        concept,
        map_id: find(&["mapid"]),
        term_kind,
        assured: find(&["isassured", "assured"]),
        date: find(&["effectivedate"]),
        status,
        term: (scheme == CodeScheme::EmisLocal)
            .then(|| find(&["term", "snomedterm", "sctterm"]))
            .flatten(),
        names,
    };
    Ok((scheme, cols))
}

/// True when `s` is a SNOMED CT id: 6 to 18 digits, no leading zero, and a valid
/// Verhoeff check digit.
pub fn is_sctid(s: &str) -> bool {
    (6..=18).contains(&s.len())
        && !s.starts_with('0')
        && s.bytes().all(|b| b.is_ascii_digit())
        && verhoeff_ok(s)
}

/// The Verhoeff check every SCTID's last digit carries.
pub(crate) fn verhoeff_ok(s: &str) -> bool {
    verhoeff(s.bytes().rev().map(|b| b - b'0')) == 0
}

/// The Verhoeff checksum of `digits`, least significant first.
pub(crate) fn verhoeff(digits: impl Iterator<Item = u8>) -> u8 {
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
    for (i, d) in digits.enumerate() {
        c = D[c as usize][P[i % 8][d as usize] as usize];
    }
    c
}

fn flag(name: &str, v: &str) -> Result<bool, String> {
    match v.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(format!("{name} is {other:?}: expected 0 or 1")),
    }
}

/// `YYYYMMDD` or `YYYY-MM-DD` as the number `YYYYMMDD`.
fn date(name: &str, v: &str) -> Result<u32, String> {
    let v = v.trim();
    let b = v.as_bytes();
    let digits: Option<[u8; 8]> = match b.len() {
        8 => b.try_into().ok(),
        10 if b[4] == b'-' && b[7] == b'-' => {
            Some([b[0], b[1], b[2], b[3], b[5], b[6], b[8], b[9]])
        }
        _ => None,
    };
    let Some(n) = digits
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .map(|d| d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
    else {
        return Err(format!(
            "{name} is {v:?}: expected a date as YYYYMMDD or YYYY-MM-DD"
        ));
    };
    let (month, day) = (n / 100 % 100, n % 100);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(format!("{name} is {v:?}: not a calendar date"));
    }
    Ok(n)
}

/// A map id as 128 bits, in halves: a GUID's own (braces and dashes ignored,
/// case-insensitive), else a 128-bit hash of the text.
fn map_id(v: &str) -> (u64, u64) {
    let mut n = 0u128;
    let mut digits = 0;
    for b in v.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            b'{' | b'}' | b'-' => continue,
            _ => {
                digits = 0;
                break;
            }
        };
        digits += 1;
        if digits > 32 {
            break;
        }
        n = n << 4 | u128::from(d);
    }
    if digits == 32 {
        return ((n >> 64) as u64, n as u64);
    }
    use std::hash::BuildHasher;
    let a = FixedState::with_seed(0x5eed_0001).hash_one(v);
    let b = FixedState::with_seed(0x5eed_0002).hash_one(v);
    (a, b)
}

/// Lines in the file at `path` (a read of a file about to be read again, which the page
/// cache then holds), to size the rows once rather than doubling them as they come.
fn count_lines(path: &Path) -> std::io::Result<usize> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 1;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count();
    }
}

/// Why `line` is not text: the column and byte where the first bad byte is, when the
/// header is known.
fn not_utf8(cols: Option<&Columns>, line: &[u8], e: &std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let byte = line.get(at).copied().unwrap_or_default();
    let field = line[..at].iter().filter(|b| **b == b'\t').count();
    match cols.and_then(|c| c.names.get(field)) {
        Some(name) => format!(
            "{name} is not UTF-8 text (byte 0x{byte:02X} at byte {} of the line): save the file as UTF-8",
            at + 1
        ),
        None => format!(
            "not UTF-8 text (byte 0x{byte:02X} at byte {} of the line): save the file as UTF-8",
            at + 1
        ),
    }
}

impl Rows {
    /// No rows yet, for `scheme`.
    pub fn new(scheme: CodeScheme) -> Self {
        Self {
            scheme,
            adopt: false,
            rows: Vec::new(),
            long: Vec::new(),
            long_index: HashMap::default(),
            terms: Vec::new(),
            report: Report::default(),
            revisions: false,
        }
    }

    /// No rows yet; the scheme is the first file's, as its header names it (`gp-gateway
    /// terminology check`).
    pub fn any() -> Self {
        Self {
            adopt: true,
            ..Self::new(CodeScheme::ReadV2)
        }
    }

    /// Reads the file at `path`, which must be a map of this scheme.
    pub fn read_path(&mut self, path: &Path) -> Result<(), LoadError> {
        let file = std::fs::File::open(path).map_err(|e| LoadError {
            path: path.to_owned(),
            line: 0,
            reason: format!("cannot open: {e}"),
        })?;
        if let Ok(lines) = count_lines(path) {
            self.rows.reserve(lines);
        }
        self.read(path, file)
    }

    /// Reads a map file's bytes (`path` names it in errors).
    pub fn read(&mut self, path: &Path, file: impl Read) -> Result<(), LoadError> {
        let at = |line: u64, reason: String| LoadError {
            path: path.to_owned(),
            line,
            reason,
        };
        let rows_before = self.report.rows;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut buf = Vec::with_capacity(256);
        let mut line_no = 0u64;
        let mut cols = None;
        let mut fields = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| at(line_no + 1, format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let mut bytes = buf.as_slice();
            if let Some(rest) = bytes.strip_suffix(b"\n") {
                bytes = rest;
            }
            if let Some(rest) = bytes.strip_suffix(b"\r") {
                bytes = rest;
            }
            if line_no == 1
                && let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF")
            {
                bytes = rest;
            }
            let line = std::str::from_utf8(bytes)
                .map_err(|e| at(line_no, not_utf8(cols.as_ref(), bytes, &e)))?;
            if line.trim().is_empty() {
                continue;
            }
            match &cols {
                None => {
                    let (scheme, c) = columns(line).map_err(|r| at(line_no, r))?;
                    if std::mem::take(&mut self.adopt) {
                        self.scheme = scheme;
                    } else if scheme != self.scheme {
                        return Err(at(
                            line_no,
                            format!(
                                "this is a map of {} codes (its {} column), given as {} codes",
                                scheme.name(),
                                c.names[c.code],
                                self.scheme.name()
                            ),
                        ));
                    }
                    self.report.assurance_column |= c.assured.is_some();
                    self.revisions |= c.map_id.is_some();
                    cols = Some(c);
                }
                Some(c) => self.row(c, line, &mut fields).map_err(|r| at(line_no, r))?,
            }
        }
        if cols.is_none() {
            return Err(at(
                1,
                "empty file: expected a header row naming the columns".to_owned(),
            ));
        }
        if self.report.rows == rows_before {
            // A header alone is a truncated download far more often than an empty map:
            // taking it would leave every code of the scheme unmapped.
            return Err(at(
                line_no,
                "no data rows after the header: a map file holds at least one map".to_owned(),
            ));
        }
        Ok(())
    }

    /// Reads one data row; `bounds` is room for its fields' byte ranges, kept from row
    /// to row.
    fn row(
        &mut self,
        c: &Columns,
        line: &str,
        bounds: &mut Vec<(usize, usize)>,
    ) -> Result<(), String> {
        bounds.clear();
        let mut start = 0;
        for tab in memchr::memchr_iter(b'\t', line.as_bytes()) {
            bounds.push((start, tab));
            start = tab + 1;
        }
        bounds.push((start, line.len()));
        if bounds.len() != c.names.len() {
            return Err(format!(
                "{} tab-separated fields, the header names {}",
                bounds.len(),
                c.names.len()
            ));
        }
        let fields = |i: usize| &line[bounds[i].0..bounds[i].1];
        self.report.rows += 1;
        let name = |i: usize| c.names[i].as_str();
        let code = fields(c.code).trim();
        if code.is_empty() {
            return Err(format!("{} is empty", name(c.code)));
        }
        if code.len() > 64 || code.chars().any(char::is_whitespace) {
            return Err(format!(
                "{} {code:?} is not a code (at most 64 characters, no spaces)",
                name(c.code)
            ));
        }
        let concept = fields(c.concept).trim();
        let mut flags = 0u64;
        if match c.status {
            Some(i) => flag(name(i), fields(i))?,
            None => true,
        } {
            flags |= ACTIVE;
        }
        if match c.assured {
            Some(i) => flag(name(i), fields(i))?,
            // A local-codes file is the operator's own curation; the national
            // "not clinically assured" releases have no such column.
            None => self.scheme == CodeScheme::EmisLocal,
        } {
            flags |= ASSURED;
        }
        let date = match c.date {
            Some(i) => date(name(i), fields(i))?,
            None => 0,
        };
        match c.term_kind {
            Some((i, preferred)) if fields(i).trim() != preferred => {}
            _ => flags |= PREFERRED,
        }
        let map_id = match c.map_id.map(|i| fields(i).trim()) {
            Some(id) if !id.is_empty() => {
                flags |= IDENTIFIED;
                map_id(id)
            }
            _ => (0, 0),
        };
        if concept.starts_with('_') {
            self.report.no_concept += 1;
            return Ok(());
        }
        if !is_sctid(concept) {
            return Err(format!(
                "{} {concept:?} is not a SNOMED CT id (6 to 18 digits with a valid check digit)",
                name(c.concept)
            ));
        }
        let sctid: u64 = concept
            .parse()
            .map_err(|_| format!("{} {concept:?} is too large", name(c.concept)))?;
        if let Some(i) = c.term {
            let term = fields(i).trim();
            if !term.is_empty() {
                self.terms.push((sctid, term.into()));
            }
        }
        let key = match pack(code) {
            Some(k) => k,
            None => match self.long_index.get(code) {
                Some(k) => *k,
                None => {
                    let k = LONG | self.long.len() as u64;
                    self.long.push(code.into());
                    self.long_index.insert(code.into(), k);
                    k
                }
            },
        };
        let order = u32::try_from(self.rows.len()).map_err(|_| "too many rows".to_owned())?;
        self.rows.push(Row {
            map_id,
            key,
            sctid_flags: sctid | flags,
            date,
            order,
        });
        Ok(())
    }

    fn code(&self, key: u64) -> String {
        if key & LONG != 0 {
            return self.long[(key & !LONG) as usize].to_string();
        }
        let bytes = key.to_le_bytes();
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(8);
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }

    /// Chooses each code's concept and builds the table.
    pub fn finish(self) -> Loaded {
        let Self {
            scheme,
            mut rows,
            long,
            terms,
            mut report,
            revisions,
            ..
        } = self;
        let codes = Rows {
            long,
            ..Rows::new(scheme)
        };
        if revisions {
            // Each map's revisions together, the standing one (latest date, then last
            // row) first; rows naming no map after them, each its own.
            rows.sort_unstable_by_key(|r| {
                (
                    !r.is(IDENTIFIED),
                    r.map_id,
                    Reverse(r.date),
                    Reverse(r.order),
                )
            });
            let before = rows.len();
            rows.dedup_by(|later, standing| {
                later.is(IDENTIFIED) && standing.is(IDENTIFIED) && later.map_id == standing.map_id
            });
            report.superseded = (before - rows.len()) as u64;
        }
        let standing = rows.len();
        rows.retain(|r| r.is(ACTIVE));
        report.retired = (standing - rows.len()) as u64;
        report.active = rows.len() as u64;
        report.assured = rows.iter().filter(|r| r.is(ASSURED)).count() as u64;
        rows.sort_unstable_by_key(|r| (r.key, r.order));
        let mut table = Table::with_capacity(rows.chunk_by(|a, b| a.key == b.key).count());
        let mut concepts: Vec<(u64, bool, u32)> = Vec::new();
        for group in rows.chunk_by(|a, b| a.key == b.key) {
            let preferred = group.iter().any(|r| r.is(PREFERRED));
            if !preferred {
                report.synonym_only += 1;
            }
            concepts.clear();
            for r in group.iter().filter(|r| !preferred || r.is(PREFERRED)) {
                let assured = r.is(ASSURED);
                match concepts.iter_mut().find(|c| c.0 == r.sctid()) {
                    Some(c) => {
                        c.1 |= assured;
                        c.2 = c.2.max(r.date);
                    }
                    None => concepts.push((r.sctid(), assured, r.date)),
                }
            }
            concepts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
            let (sctid, assured, date) = concepts[0];
            let key = group[0].key;
            if let Some(second) = concepts.get(1) {
                report.candidates.push(Candidates {
                    code: codes.code(key),
                    chosen: sctid,
                    others: concepts[1..].iter().map(|c| c.0).collect(),
                    decided_by: if assured != second.1 {
                        DecidedBy::Assurance
                    } else if date != second.2 {
                        DecidedBy::EffectiveDate
                    } else {
                        DecidedBy::Tie
                    },
                });
            }
            let entry = Entry { sctid, assured };
            if key & LONG == 0 {
                table.insert_packed(key, entry);
            } else {
                table.insert(&codes.code(key), entry);
            }
        }
        report.codes = table.len() as u64;
        report.candidates.sort_by(|a, b| a.code.cmp(&b.code));
        Loaded {
            scheme,
            table,
            terms,
            report,
        }
    }
}

/// Loads the files `paths`, which must all be maps of `scheme`, as one map.
pub fn load(scheme: CodeScheme, paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut rows = Rows::new(scheme);
    for p in paths {
        rows.read_path(p)?;
    }
    Ok(rows.finish())
}

/// Loads one file of whichever scheme its header names (`gp-gateway terminology check`).
pub fn check(path: &Path) -> Result<Loaded, LoadError> {
    let mut rows = Rows::any();
    rows.read_path(path)?;
    Ok(rows.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_guid_is_one_map_however_it_is_written() {
        let id = map_id("{9A000002-0000-4000-8000-00000000002B}");
        assert_eq!(id, (0x9A00_0002_0000_4000, 0x8000_0000_0000_002B));
        assert_eq!(map_id("9a000002-0000-4000-8000-00000000002b"), id);
        assert_eq!(
            map_id("9A0000020000400080000000000002B"),
            map_id("9A0000020000400080000000000002B")
        );
        // Not 32 hex digits: hashed, and still told apart.
        assert_ne!(map_id("9A0000020000400080000000000002B"), id, "31 digits");
        assert_ne!(map_id("9A000002000040008000000000000002B"), id, "33 digits");
        assert_ne!(map_id("MAP-1"), map_id("MAP-2"));
        assert_eq!(map_id("MAP-1"), map_id("MAP-1"));
    }

    #[test]
    fn dates_are_read_in_both_release_forms() {
        assert_eq!(date("EffectiveDate", "20200401"), Ok(20200401));
        assert_eq!(date("EffectiveDate", " 2020-04-01 "), Ok(20200401));
        for bad in [
            "2020/04/01",
            "2020-0401",
            "+2020041",
            "20200431x",
            "20200001",
            "20200400",
        ] {
            let e = date("EffectiveDate", bad).unwrap_err();
            assert!(e.starts_with("EffectiveDate is "), "{bad}: {e}");
        }
    }
}
