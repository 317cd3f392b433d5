//! The Vision delimited extract format, read strictly: a header row, data rows with as
//! many fields as the header, an `EOF|{rows}` trailer, `|` between fields, CRLF after
//! every row, `"` around fields holding `|`, `"`, CR or LF (inner quotes doubled).
//!
//! Pure and zero-copy: fields borrow the body unless they held doubled quotes.

use std::borrow::Cow;

use crate::error::VisionDataError;

type Result<T> = std::result::Result<T, VisionDataError>;

/// A parsed extract: header names and a row-major grid of fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extract<'a> {
    name: &'static str,
    header: Vec<Cow<'a, str>>,
    cells: Vec<Cow<'a, str>>,
}

/// How a field ended.
enum End {
    Pipe,
    Row,
}

impl<'a> Extract<'a> {
    /// Parses `body` (bytes as received) as the extract called `name` (for messages:
    /// `"journal extract"`). Anything off-format fails the whole extract.
    pub fn parse(name: &'static str, body: &'a [u8]) -> Result<Self> {
        let text = std::str::from_utf8(body).map_err(|e| VisionDataError::NotUtf8 {
            extract: name,
            offset: e.valid_up_to(),
        })?;
        let malformed = |row: usize, reason: &str| VisionDataError::Malformed {
            extract: name,
            row,
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(VisionDataError::Truncated {
                extract: name,
                reason: "the body is empty".into(),
            });
        }
        let mut p = Parser {
            name,
            text,
            pos: 0,
            row: 1,
        };
        let mut header = Vec::new();
        p.record(&mut header)?;
        if header.first().is_some_and(|h| h == "ERROR") {
            return Err(malformed(1, "the body is an ERROR line, not an extract"));
        }
        if header.iter().any(|h| h.is_empty()) {
            return Err(malformed(1, "the header has an empty column name"));
        }
        let width = header.len();
        // Room for every row at once, so the grid is never copied while it grows: a row
        // per LF (quoted fields may hold more), and never more cells than the body has bytes.
        let lines = count_lf(text.as_bytes());
        let mut cells = Vec::with_capacity(width.saturating_mul(lines).min(text.len()));
        loop {
            if p.pos >= text.len() {
                return Err(VisionDataError::Truncated {
                    extract: name,
                    reason: format!("no EOF trailer after row {}", p.row - 1),
                });
            }
            p.row += 1;
            let start = cells.len();
            p.record(&mut cells)?;
            let found = cells.len() - start;
            if cells[start] == "EOF" {
                let rows = (start / width).to_string();
                let trailer_ok = found == 2 && cells[start + 1] == rows.as_str();
                if !trailer_ok {
                    return Err(VisionDataError::Truncated {
                        extract: name,
                        reason: format!(
                            "the EOF trailer (row {}) does not say {rows} data rows",
                            p.row
                        ),
                    });
                }
                if p.pos != text.len() {
                    return Err(malformed(p.row + 1, "data after the EOF trailer"));
                }
                cells.truncate(start);
                return Ok(Self {
                    name,
                    header,
                    cells,
                });
            }
            if found != width {
                return Err(VisionDataError::Ragged {
                    extract: name,
                    row: p.row,
                    found,
                    expected: width,
                });
            }
        }
    }

    /// The extract's name, for messages.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.cells.len() / self.header.len().max(1)
    }

    /// The index of a column the adapter needs.
    pub fn column(&self, column: &'static str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == column)
            .ok_or(VisionDataError::MissingColumn {
                extract: self.name,
                column,
            })
    }

    /// The index of a column that older extracts may leave out (`None` when absent).
    pub fn optional_column(&self, column: &str) -> Option<usize> {
        self.header.iter().position(|h| h == column)
    }

    /// Data row `index` (0-based), as a row handle.
    pub fn row(&self, index: usize) -> Row<'_, 'a> {
        Row { ex: self, index }
    }

    /// Every data row, in order.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_, 'a>> {
        (0..self.rows()).map(|i| self.row(i))
    }
}

/// One data row of an [`Extract`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'e, 'a> {
    ex: &'e Extract<'a>,
    index: usize,
}

impl<'e> Row<'e, '_> {
    /// The field in column `col` (an index from [`Extract::column`]), untrimmed.
    pub fn raw(&self, col: usize) -> &'e str {
        self.ex
            .cells
            .get(self.index * self.ex.header.len() + col)
            .map_or("", |c| c.as_ref())
    }

    /// The trimmed field, `None` when empty.
    pub fn opt(&self, col: usize) -> Option<&'e str> {
        Some(self.raw(col).trim()).filter(|s| !s.is_empty())
    }

    /// The row number in the body (the header is row 1), for messages.
    pub fn number(&self) -> usize {
        self.index + 2
    }

    /// The extract's name, for messages.
    pub fn extract(&self) -> &'static str {
        self.ex.name
    }
}

/// Writes a delimited body the way Vision reads one: the header, each row (a field
/// holding `|`, `"`, CR or LF quoted, inner quotes doubled), the `EOF|{rows}` trailer,
/// CRLF after every row. Every row must be as wide as `columns`.
pub fn write(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = columns.join("|");
    out.push_str("\r\n");
    for row in rows {
        for (i, field) in row.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            if field.contains(['|', '"', '\r', '\n']) {
                out.push('"');
                out.push_str(&field.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(field);
            }
        }
        out.push_str("\r\n");
    }
    out.push_str(&format!("EOF|{}\r\n", rows.len()));
    out
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);

/// The number of LF bytes in `b`, eight bytes at a time (a byte loop here cost a third as
/// much as parsing the whole extract).
fn count_lf(b: &[u8]) -> usize {
    let mut chunks = b.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let t = u64::from_le_bytes(word) ^ (ONES * u64::from(b'\n'));
        // High bit set in each byte of `t` that is not zero; exact, unlike the carry trick.
        let nonzero = (((t & LOWS) + LOWS) | t) & HIGHS;
        n += (!nonzero & HIGHS).count_ones() as usize;
    }
    n + chunks.remainder().iter().filter(|&&c| c == b'\n').count()
}

/// The index of the first `|`, CR, LF or `"` at or after `from` (`b.len()` when there is
/// none), eight bytes at a time: this scan is most of the cost of reading an extract.
fn next_special(b: &[u8], from: usize) -> usize {
    // The high bit of every zero byte of `w`, and maybe of bytes above one: the lowest set
    // bit is always a zero byte, so the lowest of the four below is the first match.
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut i = from;
    while let Some(Ok(chunk)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let w = u64::from_le_bytes(chunk);
        let hits = zeros(w ^ (ONES * u64::from(b'|')))
            | zeros(w ^ (ONES * u64::from(b'\r')))
            | zeros(w ^ (ONES * u64::from(b'\n')))
            | zeros(w ^ (ONES * u64::from(b'"')));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b.get(i..)
        .and_then(|rest| {
            rest.iter()
                .position(|c| matches!(c, b'|' | b'\r' | b'\n' | b'"'))
        })
        .map_or(b.len(), |j| i + j)
}

struct Parser<'a> {
    name: &'static str,
    text: &'a str,
    pos: usize,
    /// The row being read (1-based, header = 1).
    row: usize,
}

impl<'a> Parser<'a> {
    /// Reads one row's fields into `out`, consuming its CRLF.
    fn record(&mut self, out: &mut Vec<Cow<'a, str>>) -> Result<()> {
        loop {
            let (field, end) = self.field()?;
            out.push(field);
            if let End::Row = end {
                return Ok(());
            }
        }
    }

    fn malformed(&self, reason: &str) -> VisionDataError {
        VisionDataError::Malformed {
            extract: self.name,
            row: self.row,
            reason: reason.to_owned(),
        }
    }

    fn field(&mut self) -> Result<(Cow<'a, str>, End)> {
        let b = self.text.as_bytes();
        let value = if b.get(self.pos) == Some(&b'"') {
            let mut owned: Option<String> = None;
            let mut seg = self.pos + 1;
            let mut i = seg;
            loop {
                let Some(q) = b[i..].iter().position(|c| *c == b'"').map(|j| i + j) else {
                    return Err(VisionDataError::Truncated {
                        extract: self.name,
                        reason: format!("row {} ends inside a quoted field", self.row),
                    });
                };
                if b.get(q + 1) == Some(&b'"') {
                    // A doubled quote is one literal quote.
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&self.text[seg..=q]);
                    i = q + 2;
                    seg = i;
                } else {
                    let value = match owned {
                        None => Cow::Borrowed(&self.text[seg..q]),
                        Some(mut s) => {
                            s.push_str(&self.text[seg..q]);
                            Cow::Owned(s)
                        }
                    };
                    self.pos = q + 1;
                    break value;
                }
            }
        } else {
            let start = self.pos;
            self.pos = next_special(b, start);
            if b.get(self.pos) == Some(&b'"') {
                return Err(self.malformed("a quote inside an unquoted field"));
            }
            Cow::Borrowed(&self.text[start..self.pos])
        };
        match (b.get(self.pos), b.get(self.pos + 1)) {
            (Some(b'|'), _) => {
                self.pos += 1;
                Ok((value, End::Pipe))
            }
            (Some(b'\r'), Some(b'\n')) => {
                self.pos += 2;
                Ok((value, End::Row))
            }
            (None, _) if self.row == 1 => {
                Err(self.malformed("no header row ending in CRLF: not a Vision extract"))
            }
            (None, _) => Err(VisionDataError::Truncated {
                extract: self.name,
                reason: format!("row {} does not end with CRLF", self.row),
            }),
            (Some(b'\r' | b'\n'), _) => Err(self.malformed("a line does not end with CRLF")),
            _ => Err(self.malformed("text after a closing quote")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Extract<'_>> {
        Extract::parse("test extract", body.as_bytes())
    }

    #[test]
    fn written_bodies_read_back_field_for_field() {
        let rows = vec![
            vec![
                "O\"Brien | Smith".to_owned(),
                String::new(),
                "two\r\nlines".to_owned(),
            ],
            vec!["plain".to_owned(), "x".to_owned(), "\"".to_owned()],
        ];
        let body = write(&["A", "B", "C"], &rows);
        assert!(body.starts_with("A|B|C\r\n\"O\"\"Brien | Smith\"||"));
        assert!(body.ends_with("\r\nEOF|2\r\n"));
        let ex = parse(&body).unwrap();
        for (i, want) in rows.iter().enumerate() {
            let got: Vec<&str> = (0..3).map(|c| ex.row(i).raw(c)).collect();
            assert_eq!(got, *want);
        }
        assert_eq!(ex.optional_column("B"), Some(1));
        assert_eq!(ex.optional_column("D"), None);
    }

    #[test]
    fn the_word_scan_finds_what_a_byte_scan_finds() {
        let naive = |b: &[u8], from: usize| {
            b[from..]
                .iter()
                .position(|c| matches!(c, b'|' | b'\r' | b'\n' | b'"'))
                .map_or(b.len(), |j| from + j)
        };
        let text = "abcdefgh|ijklmnopq\"rs\r\ntuvw\nx\u{e9}\u{1}\u{ff}yz0123456789|";
        let b = text.as_bytes();
        for from in 0..=b.len() {
            assert_eq!(next_special(b, from), naive(b, from), "from {from}");
        }
        let lf = |s: &str| s.bytes().filter(|&c| c == b'\n').count();
        for s in [
            text,
            "",
            "\n",
            "\n\n\n\n\n\n\n\n\n",
            "a\nb\r\n\u{8a}\n\u{10a}\n0123456\n",
        ] {
            assert_eq!(count_lf(s.as_bytes()), lf(s), "{s:?}");
        }
        for n in 0..20 {
            let plain = "x".repeat(n);
            assert_eq!(next_special(plain.as_bytes(), 0), n);
            let ended = format!("{plain}|");
            assert_eq!(next_special(ended.as_bytes(), 0), n);
        }
    }

    #[test]
    fn reads_quotes_doubled_quotes_and_empty_fields() {
        let ex =
            parse("A|B|C\r\nx|\"p|q\"|\r\n\"\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"\r\nEOF|2\r\n")
                .unwrap();
        assert_eq!(ex.rows(), 2);
        let (a, b, c) = (
            ex.column("A").unwrap(),
            ex.column("B").unwrap(),
            ex.column("C").unwrap(),
        );
        let r = ex.row(0);
        assert_eq!((r.raw(a), r.raw(b), r.opt(c)), ("x", "p|q", None));
        let r = ex.row(1);
        assert_eq!(
            (r.raw(a), r.raw(b), r.raw(c)),
            ("", "say \"hi\"", "two\r\nlines")
        );
        assert_eq!(r.number(), 3);
        assert!(matches!(
            ex.column("D"),
            Err(VisionDataError::MissingColumn { column: "D", .. })
        ));
    }

    #[test]
    fn refuses_off_format_bodies() {
        let cases = [
            ("", "truncated: the body is empty"),
            ("A|B\r\nx|y\r\n", "truncated: no EOF trailer"),
            ("A|B\r\nx|y\r\nEOF|2\r\n", "does not say 1 data rows"),
            ("A|B\r\nx|y\r\nEOF|1", "does not end with CRLF"),
            (
                "A|B\r\nx|y|z\r\nEOF|1\r\n",
                "row 2 has 3 fields, the header has 2",
            ),
            ("A|B\r\nx\r\nEOF|1\r\n", "row 2 has 1 fields"),
            (
                "A|B\nx|y\nEOF|1\n",
                "malformed at row 1: a line does not end with CRLF",
            ),
            ("A|B\r\nx|\"y\r\nEOF|1\r\n", "ends inside a quoted field"),
            ("A|B\r\nx|\"y\"z\r\nEOF|1\r\n", "text after a closing quote"),
            (
                "A|B\r\nx|y\"z\r\nEOF|1\r\n",
                "a quote inside an unquoted field",
            ),
            ("A|B\r\nEOF|0\r\nmore\r\n", "data after the EOF trailer"),
            ("ERROR|INTERNAL_ERROR|boom\r\n", "an ERROR line"),
            ("A||B\r\nEOF|0\r\n", "empty column name"),
        ];
        for (body, want) in cases {
            let e = parse(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: {e}");
        }
        let e = Extract::parse("x", b"A\r\n\xE9\r\nEOF|1\r\n").unwrap_err();
        assert_eq!(
            e,
            VisionDataError::NotUtf8 {
                extract: "x",
                offset: 3
            }
        );
    }
}
