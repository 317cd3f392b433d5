//! Reading a GP system's native JSON, for vendors whose API speaks JSON (the counterpart
//! of [`crate::xml`] for XML): a [`Document`] parsed once, and [`Node`]s, places in it
//! that carry the path that reached them. Every getter fails with a [`FieldError`] naming
//! that path (`patient.contacts[2].value is missing`, `entries[0].date is invalid: …`),
//! so a mapping fails whole, saying where, and never maps half a document.
//!
//! Conventions, the same as the XML adapters read their records with:
//! - text is trimmed, and text that is empty once trimmed counts as missing, as `null`
//!   and an absent member do;
//! - a getter on a member of a missing object finds it missing (`date.value is missing`
//!   when `date` is absent); a member of something that is not an object is invalid;
//! - dates come out as FHIR `date` / `dateTime` text at the precision the system recorded
//!   (`2019`, `2019-02`, `2019-02-14`, `2019-02-14T09:30:00+00:00`), built by
//!   [`crate::time`], with UK local times given their GMT/BST offset.
//!
//! Like the XML DOM, the tree is lean and read-only: strings and numbers borrow from the
//! body unless an escape forces an owned copy, objects are member lists, and paths are
//! built into text only when an error names them. (A `serde_json::Value` owns every key
//! and string; mapping a 1,000-entry Evolution record through one took about four times
//! as long.) serde_json does the parsing, so its grammar, its nesting limit (128) and its
//! error messages are the ones a vendor knows; a member name given twice in one object is
//! refused, as the typed serde documents it replaces refused it.

use std::borrow::Cow;
use std::fmt;

use gp_fhir::date::{PartialDate, parse_instant_utc};
use gp_fhir::text::shown;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::time::{fhir_date, fhir_year, fhir_year_month, local_date_time, uk_local_from_utc};

/// Why a body is not a JSON document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// JSON on the wire is always UTF-8.
    #[error("not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// Not JSON at all, or cut short.
    #[error("not valid JSON (truncated or malformed): {reason}")]
    Malformed { reason: String },
}

/// What is wrong with one value of a document, naming its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Absent, `null`, or text that is empty once trimmed.
    #[error("{path} is missing")]
    Missing { path: String },
    /// Present, but not what the format allows.
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

type Result<T> = std::result::Result<T, FieldError>;

/// A JSON value whose text borrows from the document's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A number as written (`1.50` stays `1.50`).
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in document order, each name once.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// A parsed JSON document, borrowing from the body it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    value: Value<'a>,
}

impl<'a> Document<'a> {
    /// Parses a native answer's body.
    pub fn parse(body: &'a [u8]) -> std::result::Result<Self, DocumentError> {
        let text = std::str::from_utf8(body).map_err(|e| DocumentError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        serde_json::from_str(text)
            .map(|value| Self { value })
            .map_err(|e| DocumentError::Malformed {
                reason: e.to_string(),
            })
    }

    /// The whole document, at the empty path.
    pub fn root(&self) -> Node<'_, 'static> {
        Node::root(&self.value)
    }

    /// Member `name` of the document's object: as `doc.root().get(name)`, without a
    /// root node to keep alive.
    pub fn get<'n>(&self, name: &'n str) -> Node<'_, 'n> {
        Node::root(&self.value).member(&ROOT, name)
    }
}

/// The name serde_json gives the one member of the map a number arrives as when its
/// `arbitrary_precision` feature is on (as in this workspace), so numbers keep the text
/// they were written with.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Number(Cow::Owned(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Number(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Number(Cow::Owned(v.to_string())))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Value<'de>, E> {
        Ok(Value::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> std::result::Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value<'de>, A::Error> {
        // serde_json gives no size hint; most native objects have a handful of members,
        // and growing from empty costs a reallocation (and a copy) at 1, 2, 4 and 8.
        let mut members: Vec<(Cow<'de, str>, Value<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Text(name)) = map.next_key()? {
            if members.is_empty() && name == NUMBER_TOKEN {
                let Text(number) = map.next_value()?;
                return Ok(Value::Number(number));
            }
            if members.iter().any(|(seen, _)| *seen == name) {
                return Err(de::Error::custom(format_args!(
                    "member \"{}\" given twice",
                    shown(&name)
                )));
            }
            let value = map.next_value()?;
            members.push((name, value));
        }
        Ok(Value::Object(members))
    }
}

/// Text that borrows from the body unless it held escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// The document root's path, which every top-level member's path links to.
static ROOT: Path<'static> = Path {
    parent: None,
    step: Step::Root,
};

/// The precision a date was recorded at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// `YYYY`.
    Year,
    /// `YYYY-MM`.
    Month,
    /// `YYYY-MM-DD`.
    Day,
    /// A time of day to the second.
    DateTime,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Year => "year",
            Self::Month => "month",
            Self::Day => "day",
            Self::DateTime => "datetime",
        })
    }
}

/// A native date or date-time as FHIR text, with the precision it was recorded at:
/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD` (a real calendar date, year 1 or later), or
/// `YYYY-MM-DDThh:mm:ss`, which is UK local wall-clock time (as GP systems record it)
/// and gets its offset, `+00:00` (GMT) or `+01:00` (BST). A date-time with a zone
/// (`Z`, `±hh:mm`, fractions of a second allowed and dropped) is an instant, given as
/// the UK local time it was. `None` for anything else.
pub fn date_with_precision(text: &str) -> Option<(String, Precision)> {
    let Some((day, clock)) = text.split_once('T') else {
        let date = PartialDate::parse(text).ok().filter(|d| d.year >= 1)?;
        return Some(match (date.month, date.day) {
            (None, _) => (fhir_year(date.year), Precision::Year),
            (Some(m), None) => (fhir_year_month(date.year, m), Precision::Month),
            (Some(m), Some(d)) => (fhir_date(date.year, m, d), Precision::Day),
        });
    };
    let date = PartialDate::parse(day).ok().filter(|d| d.year >= 1)?;
    let (Some(m), Some(d)) = (date.month, date.day) else {
        return None;
    };
    let fhir = if clock.len() == 8 {
        local_date_time(date.year, m, d, hms(clock)?)
    } else {
        let (y, m, d, h, mi, s) = parse_instant_utc(text).ok()?;
        uk_local_from_utc(y, m, d, h, mi, s)
    };
    Some((fhir, Precision::DateTime))
}

/// `hh:mm:ss`, a real time of day.
fn hms(s: &str) -> Option<(u8, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let two = |at: usize| -> Option<u8> {
        let (hi, lo) = (b[at], b[at + 1]);
        (hi.is_ascii_digit() && lo.is_ascii_digit()).then(|| (hi - b'0') * 10 + (lo - b'0'))
    };
    let (h, m, sec) = (two(0)?, two(3)?, two(6)?);
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

/// Where a value sits: linked from the value to the document root, so a child's path
/// borrows its parent's and nothing is built until an error is rendered.
#[derive(Clone, Copy)]
struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    step: Step<'p>,
}

#[derive(Clone, Copy)]
enum Step<'p> {
    Root,
    Member(&'p str),
    Item(usize),
}

impl Path<'_> {
    /// The path as messages give it; the root is "the document".
    fn render(&self) -> String {
        let path = self.to_string();
        if path.is_empty() {
            "the document".to_owned()
        } else {
            path
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.step {
            Step::Root => Ok(()),
            Step::Member(name) => match self.parent {
                Some(Path {
                    step: Step::Root, ..
                })
                | None => f.write_str(name),
                Some(_) => write!(f, ".{name}"),
            },
            Step::Item(index) => write!(f, "[{index}]"),
        }
    }
}

/// What a path led to.
#[derive(Clone, Copy)]
enum Found<'doc> {
    Value(&'doc Value<'doc>),
    /// No such member (or a member of something missing).
    Absent,
    /// A member asked of a value that is not an object, `up` steps above this path.
    NotAnObject {
        value: &'doc Value<'doc>,
        up: usize,
    },
}

/// A place in a [`Document`]: the value found there (if any) and the path that reached
/// it. Cheap to copy. `'doc` is the document's lifetime, so text read through a node
/// outlives the node; `'p` is the path's.
#[derive(Clone, Copy)]
pub struct Node<'doc, 'p> {
    found: Found<'doc>,
    path: Path<'p>,
}

impl fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({})", self.path())
    }
}

impl<'doc> Node<'doc, 'static> {
    /// `value` as a document root (the empty path).
    pub fn root(value: &'doc Value<'doc>) -> Self {
        Node {
            found: Found::Value(value),
            path: ROOT,
        }
    }
}

impl<'doc, 'p> Node<'doc, 'p> {
    /// Member `name` of this object. Never fails: what is wrong (this is not an object)
    /// or missing is said by the getter that reads it.
    pub fn get<'q>(&'q self, name: &'q str) -> Node<'doc, 'q> {
        self.member(&self.path, name)
    }

    /// Member `name` of this node, whose path is `path`.
    fn member<'q>(&self, path: &'q Path<'q>, name: &'q str) -> Node<'doc, 'q> {
        let found = match self.found {
            Found::Value(Value::Object(members)) => members
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Found::Absent, |(_, v)| Found::Value(v)),
            Found::Value(Value::Null) | Found::Absent => Found::Absent,
            Found::Value(value) => Found::NotAnObject { value, up: 1 },
            Found::NotAnObject { value, up } => Found::NotAnObject { value, up: up + 1 },
        };
        Node {
            found,
            path: Path {
                parent: Some(path),
                step: Step::Member(name),
            },
        }
    }

    /// The path to this value (`entries[3].code.read`; `the document` for the root).
    pub fn path(&self) -> String {
        self.path.render()
    }

    /// This value is missing.
    pub fn missing(&self) -> FieldError {
        FieldError::Missing { path: self.path() }
    }

    /// This value is not what the format allows, for `reason`.
    pub fn invalid(&self, reason: impl Into<String>) -> FieldError {
        FieldError::Invalid {
            path: self.path(),
            reason: reason.into(),
        }
    }

    /// The raw value, `None` when absent or `null`: for shapes the getters do not read.
    pub fn value(&self) -> Result<Option<&'doc Value<'doc>>> {
        match self.found {
            Found::Value(Value::Null) | Found::Absent => Ok(None),
            Found::Value(v) => Ok(Some(v)),
            Found::NotAnObject { value, up } => {
                // The fault is the value that is not an object, not the member asked of it.
                let mut at = &self.path;
                for _ in 0..up {
                    at = at.parent.unwrap_or(at);
                }
                Err(FieldError::Invalid {
                    path: at.render(),
                    reason: format!("expected an object, found {}", kind(value)),
                })
            }
        }
    }

    fn expected(&self, what: &str, found: &Value) -> FieldError {
        self.invalid(format!("expected {what}, found {}", kind(found)))
    }

    /// Trimmed text; `None` when missing (absent, `null` or empty once trimmed).
    pub fn opt_str(&self) -> Result<Option<&'doc str>> {
        match self.value()? {
            None => Ok(None),
            Some(Value::String(s)) => {
                let t = s.trim();
                Ok((!t.is_empty()).then_some(t))
            }
            Some(other) => Err(self.expected("a string", other)),
        }
    }

    /// Trimmed, non-empty text.
    pub fn str(&self) -> Result<&'doc str> {
        self.opt_str()?.ok_or_else(|| self.missing())
    }

    /// A whole JSON number (`12`, not `12.5` or `"12"`).
    pub fn opt_integer(&self) -> Result<Option<i64>> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(format!("{} is not a whole number", shown(n)))),
            Some(other) => Err(self.expected("a number", other)),
        }
    }

    /// A whole JSON number, required.
    pub fn integer(&self) -> Result<i64> {
        self.opt_integer()?.ok_or_else(|| self.missing())
    }

    /// `true` or `false`.
    pub fn opt_bool(&self) -> Result<Option<bool>> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.expected("true or false", other)),
        }
    }

    /// `true` or `false`, required.
    pub fn bool(&self) -> Result<bool> {
        self.opt_bool()?.ok_or_else(|| self.missing())
    }

    /// This value as an object to read members of; `None` when missing.
    pub fn opt_object(&self) -> Result<Option<Self>> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Object(_)) => Ok(Some(*self)),
            Some(other) => Err(self.expected("an object", other)),
        }
    }

    /// This value as an object, required.
    pub fn object(&self) -> Result<Self> {
        self.opt_object()?.ok_or_else(|| self.missing())
    }

    /// The items of this array, each at its index (`entries[3]`); `None` when missing.
    pub fn opt_array<'q>(&'q self) -> Result<Option<Items<'doc, 'q>>> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(Items {
                items: items.iter().enumerate(),
                parent: &self.path,
            })),
            Some(other) => Err(self.expected("an array", other)),
        }
    }

    /// The items of this array, required (an empty array is present).
    pub fn array<'q>(&'q self) -> Result<Items<'doc, 'q>> {
        self.opt_array()?.ok_or_else(|| self.missing())
    }

    /// The value `allowed` pairs with this text (`[("M", "male"), ("F", "female")]`);
    /// `None` when missing.
    pub fn opt_one_of<T: Copy>(&self, allowed: &[(&str, T)]) -> Result<Option<T>> {
        let Some(text) = self.opt_str()? else {
            return Ok(None);
        };
        match allowed.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
                Err(self.invalid(format!(
                    "'{}' is not one of {}",
                    shown(text),
                    names.join(", ")
                )))
            }
        }
    }

    /// The value `allowed` pairs with this text, required.
    pub fn one_of<T: Copy>(&self, allowed: &[(&str, T)]) -> Result<T> {
        self.opt_one_of(allowed)?.ok_or_else(|| self.missing())
    }

    /// A date or date-time at the precision its form shows, as FHIR text (see
    /// [`date_with_precision`]); `None` when missing.
    pub fn opt_date(&self) -> Result<Option<String>> {
        let Some(text) = self.opt_str()? else {
            return Ok(None);
        };
        match date_with_precision(text) {
            Some((fhir, _)) => Ok(Some(fhir)),
            None => Err(self.invalid(format!(
                "'{}' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)",
                shown(text)
            ))),
        }
    }

    /// A date or date-time, required.
    pub fn date(&self) -> Result<String> {
        self.opt_date()?.ok_or_else(|| self.missing())
    }

    /// A date of exactly `precision` (a system that records the precision beside the
    /// value), as FHIR text; `None` when missing.
    pub fn opt_date_at(&self, precision: Precision) -> Result<Option<String>> {
        let Some(text) = self.opt_str()? else {
            return Ok(None);
        };
        match date_with_precision(text) {
            Some((fhir, found)) if found == precision => Ok(Some(fhir)),
            _ => Err(self.invalid(format!(
                "'{}' is not a date of precision {precision}",
                shown(text)
            ))),
        }
    }

    /// A date of exactly `precision`, required.
    pub fn date_at(&self, precision: Precision) -> Result<String> {
        self.opt_date_at(precision)?.ok_or_else(|| self.missing())
    }
}

/// The items of an array, as [`Node`]s at their index.
#[derive(Clone)]
pub struct Items<'doc, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'doc, Value<'doc>>>,
    parent: &'p Path<'p>,
}

impl<'doc, 'p> Iterator for Items<'doc, 'p> {
    type Item = Node<'doc, 'p>;

    fn next(&mut self) -> Option<Self::Item> {
        let (index, value) = self.items.next()?;
        Some(Node {
            found: Found::Value(value),
            path: Path {
                parent: Some(self.parent),
                step: Step::Item(index),
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl ExactSizeIterator for Items<'_, '_> {}

impl fmt::Debug for Items<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Items({}, {} left)", self.parent.render(), self.len())
    }
}

/// A JSON value's kind, for messages (`found a number`).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document<'_> {
        Document::parse(text.as_bytes()).unwrap()
    }

    const PATIENT: &str = r#"{
        "patient": {
            "family_name": "  Smith ",
            "title": "",
            "nickname": null,
            "age": 42,
            "height": 1.8,
            "restricted": true,
            "sex": "F",
            "born": "1970-03-02",
            "contacts": [
                {"kind": "home", "value": "01632 960000"},
                {"kind": "mobile", "value": "07700 900000"},
                {"kind": "email"}
            ],
            "tags": ["a", 5]
        }
    }"#;

    #[test]
    fn paths_name_members_and_items() {
        let d = doc(PATIENT);
        let root = d.root();
        let patient = d.get("patient");
        let contacts = patient.get("contacts");
        let third = contacts.array().unwrap().nth(2).unwrap();
        assert_eq!(third.get("value").path(), "patient.contacts[2].value");
        assert_eq!(
            third.get("value").str().unwrap_err().to_string(),
            "patient.contacts[2].value is missing"
        );
        assert_eq!(root.path(), "the document");
        assert_eq!(root.get("patient").path(), "patient");
        let nested = Document::parse(b"[[1, {\"a\": 2}]]").unwrap();
        let outer = nested.root();
        let inner = outer.array().unwrap().next().unwrap();
        let item = inner.array().unwrap().nth(1).unwrap();
        assert_eq!(item.get("a").path(), "[0][1].a");
        assert_eq!(format!("{item:?}"), "Node([0][1])");
    }

    #[test]
    fn text_is_trimmed_and_empty_text_is_missing() {
        let d = doc(PATIENT);
        let p = d.get("patient");
        assert_eq!(p.get("family_name").str(), Ok("Smith"));
        assert_eq!(p.get("title").opt_str(), Ok(None));
        assert_eq!(p.get("nickname").opt_str(), Ok(None));
        assert_eq!(p.get("absent").opt_str(), Ok(None));
        for field in ["title", "nickname", "absent"] {
            assert_eq!(
                p.get(field).str(),
                Err(FieldError::Missing {
                    path: format!("patient.{field}")
                })
            );
        }
        assert_eq!(
            p.get("age").str().unwrap_err().to_string(),
            "patient.age is invalid: expected a string, found a number"
        );
    }

    #[test]
    fn integers_and_booleans() {
        let d = doc(PATIENT);
        let p = d.get("patient");
        assert_eq!(p.get("age").integer(), Ok(42));
        assert_eq!(p.get("absent").opt_integer(), Ok(None));
        assert_eq!(
            p.get("height").integer().unwrap_err().to_string(),
            "patient.height is invalid: 1.8 is not a whole number"
        );
        assert_eq!(
            p.get("sex").opt_integer().unwrap_err().to_string(),
            "patient.sex is invalid: expected a number, found a string"
        );
        assert_eq!(
            p.get("absent").integer().unwrap_err().to_string(),
            "patient.absent is missing"
        );
        assert_eq!(p.get("restricted").bool(), Ok(true));
        assert_eq!(p.get("nickname").opt_bool(), Ok(None));
        assert_eq!(
            p.get("age").bool().unwrap_err().to_string(),
            "patient.age is invalid: expected true or false, found a number"
        );
        assert_eq!(
            p.get("absent").bool().unwrap_err().to_string(),
            "patient.absent is missing"
        );
    }

    #[test]
    fn objects_and_arrays() {
        let d = doc(PATIENT);
        let p = d.get("patient").object().unwrap();
        assert!(p.get("absent").opt_object().unwrap().is_none());
        assert_eq!(
            p.get("absent").object().unwrap_err().to_string(),
            "patient.absent is missing"
        );
        assert_eq!(
            p.get("sex").object().unwrap_err().to_string(),
            "patient.sex is invalid: expected an object, found a string"
        );
        let contacts = p.get("contacts");
        let items = contacts.array().unwrap();
        assert_eq!(items.len(), 3);
        let kinds: Vec<&str> = items.map(|c| c.get("kind").str().unwrap()).collect();
        assert_eq!(kinds, ["home", "mobile", "email"]);
        let tags = p.get("tags");
        let tags: Vec<_> = tags.array().unwrap().map(|t| t.str()).collect();
        assert_eq!(tags[0], Ok("a"));
        assert_eq!(
            tags[1].as_ref().unwrap_err().to_string(),
            "patient.tags[1] is invalid: expected a string, found a number"
        );
        assert!(p.get("absent").opt_array().unwrap().is_none());
        assert_eq!(
            p.get("absent").array().unwrap_err().to_string(),
            "patient.absent is missing"
        );
        assert_eq!(
            p.get("age").opt_array().unwrap_err().to_string(),
            "patient.age is invalid: expected an array, found a number"
        );
    }

    #[test]
    fn members_of_missing_objects_are_missing_and_of_scalars_invalid() {
        let d = doc(PATIENT);
        let p = d.get("patient");
        let absent = p.get("address");
        assert_eq!(
            absent.get("postcode").str().unwrap_err().to_string(),
            "patient.address.postcode is missing"
        );
        assert_eq!(absent.get("postcode").opt_str(), Ok(None));
        // The fault is the scalar's, so the error names it, not the member asked for.
        let sex = p.get("sex");
        assert_eq!(
            sex.get("code").opt_str().unwrap_err().to_string(),
            "patient.sex is invalid: expected an object, found a string"
        );
        let code = sex.get("code");
        assert_eq!(
            code.get("system").str().unwrap_err().to_string(),
            "patient.sex is invalid: expected an object, found a string"
        );
        let top = doc("[1]");
        assert_eq!(
            top.root().get("x").str().unwrap_err().to_string(),
            "the document is invalid: expected an object, found an array"
        );
    }

    #[test]
    fn one_of_maps_native_codes() {
        let d = doc(PATIENT);
        let p = d.get("patient");
        let sexes = [("M", "male"), ("F", "female")];
        assert_eq!(p.get("sex").one_of(&sexes), Ok("female"));
        assert_eq!(p.get("absent").opt_one_of(&sexes), Ok(None));
        assert_eq!(
            p.get("family_name").one_of(&sexes).unwrap_err().to_string(),
            "patient.family_name is invalid: 'Smith' is not one of M, F"
        );
        assert_eq!(
            p.get("absent").one_of(&sexes).unwrap_err().to_string(),
            "patient.absent is missing"
        );
    }

    #[test]
    fn dates_keep_their_precision() {
        let cases = [
            ("1998", Some(("1998", Precision::Year))),
            ("1998-07", Some(("1998-07", Precision::Month))),
            ("2024-02-29", Some(("2024-02-29", Precision::Day))),
            // UK local time gets its offset: GMT in winter, BST in summer.
            (
                "2024-01-12T09:40:00",
                Some(("2024-01-12T09:40:00+00:00", Precision::DateTime)),
            ),
            (
                "2024-06-12T09:40:00",
                Some(("2024-06-12T09:40:00+01:00", Precision::DateTime)),
            ),
            // An instant is the UK local time it was.
            (
                "2024-06-12T08:40:00Z",
                Some(("2024-06-12T09:40:00+01:00", Precision::DateTime)),
            ),
            (
                "2024-06-12T10:40:00.250+02:00",
                Some(("2024-06-12T09:40:00+01:00", Precision::DateTime)),
            ),
            ("2023-02-29", None),
            ("0000", None),
            ("98", None),
            ("1998-13", None),
            ("1998-7", None),
            ("12/01/2024", None),
            ("2024-01-12T25:00:00", None),
            ("2024-01-12T09:40", None),
            ("2024-01-12T09:40:00+1", None),
            ("2024-01T09:40:00", None),
            ("soon", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = date_with_precision(text);
            let want = want.map(|(fhir, p)| (fhir.to_owned(), p));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn date_getters_name_the_path() {
        let d = doc(
            r#"{"born": "1970-03-02", "seen": "2024-06-12T09:40:00", "bad": "1970-02-30",
                "year": "1970", "count": 3}"#,
        );
        let r = d.root();
        assert_eq!(d.get("born").date(), Ok("1970-03-02".to_owned()));
        assert_eq!(r.get("year").opt_date(), Ok(Some("1970".to_owned())));
        assert_eq!(r.get("absent").opt_date(), Ok(None));
        assert_eq!(
            r.get("absent").date().unwrap_err().to_string(),
            "absent is missing"
        );
        assert_eq!(
            r.get("bad").date().unwrap_err().to_string(),
            "bad is invalid: '1970-02-30' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)"
        );
        assert_eq!(
            r.get("count").opt_date().unwrap_err().to_string(),
            "count is invalid: expected a string, found a number"
        );
        assert_eq!(
            r.get("seen").date_at(Precision::DateTime),
            Ok("2024-06-12T09:40:00+01:00".to_owned())
        );
        assert_eq!(
            r.get("born")
                .date_at(Precision::Month)
                .unwrap_err()
                .to_string(),
            "born is invalid: '1970-03-02' is not a date of precision month"
        );
        assert_eq!(r.get("absent").opt_date_at(Precision::Day), Ok(None));
        assert_eq!(
            r.get("absent")
                .date_at(Precision::Day)
                .unwrap_err()
                .to_string(),
            "absent is missing"
        );
    }

    #[test]
    fn bodies_that_are_not_json_are_refused() {
        assert_eq!(
            Document::parse(b"{\"a\": \"\xff\"}"),
            Err(DocumentError::NotUtf8 { offset: 7 })
        );
        let e = Document::parse(b"{\"a\": ").unwrap_err();
        assert!(
            matches!(&e, DocumentError::Malformed { reason } if reason.contains("EOF")),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("not valid JSON (truncated or malformed): ")
        );
    }

    #[test]
    fn raw_values_are_reachable() {
        let d = doc(r#"{"n": 1.50, "z": null}"#);
        let r = d.root();
        // Numbers keep the text they were written with.
        assert_eq!(
            r.get("n").value(),
            Ok(Some(&Value::Number(Cow::Borrowed("1.50"))))
        );
        assert_eq!(r.get("z").value(), Ok(None));
        assert_eq!(r.get("absent").value(), Ok(None));
        assert_eq!(
            r.get("n").invalid("too big").to_string(),
            "n is invalid: too big"
        );
        assert_eq!(r.get("n").missing().to_string(), "n is missing");
    }

    #[test]
    fn the_tree_is_the_json_serde_json_reads() {
        let text = r#"{"s": "a\"b\u00e9", "plain": "x", "n": [0, -12, 3.25e2, 18446744073709551616],
            "b": [true, false], "z": null, "o": {"k": {}}, "a": [[]]}"#;
        let d = doc(text);
        let Value::Object(members) = &d.value else {
            panic!("{:?}", d.value);
        };
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["s", "plain", "n", "b", "z", "o", "a"]);
        // Text borrows from the body unless an escape forced a copy.
        assert!(matches!(&members[0].1, Value::String(Cow::Owned(s)) if s == "a\"b\u{e9}"));
        assert!(matches!(&members[1].1, Value::String(Cow::Borrowed("x"))));
        let numbers: Vec<String> = d
            .get("n")
            .array()
            .map(|items| {
                items
                    .map(|n| match n.value() {
                        Ok(Some(Value::Number(t))) => t.to_string(),
                        other => panic!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap();
        // (serde_json writes an exponent with its sign.)
        assert_eq!(numbers, ["0", "-12", "3.25e+2", "18446744073709551616"]);
        let n = d.get("n");
        let mut items = n.array().unwrap();
        assert_eq!(items.next().map(|i| i.integer()), Some(Ok(0)));
        assert_eq!(items.next().map(|i| i.integer()), Some(Ok(-12)));
        assert_eq!(
            items.next().map(|i| i.integer().unwrap_err().to_string()),
            Some("n[2] is invalid: 3.25e+2 is not a whole number".to_owned())
        );
        // Everything serde_json refuses is refused, and a member name given twice.
        for bad in [
            "",
            "{",
            "{\"a\": 1,}",
            "[1 2]",
            "{\"a\": 01}",
            "nul",
            "\"\\x\"",
            "{} {}",
            "{\"a\": 1, \"a\": 2}",
        ] {
            assert!(Document::parse(bad.as_bytes()).is_err(), "{bad:?}");
            if !bad.contains("\"a\": 2") {
                assert!(
                    serde_json::from_str::<serde_json::Value>(bad).is_err(),
                    "{bad:?}"
                );
            }
        }
        assert_eq!(
            Document::parse(br#"{"a": {"b": 1, "b": 2}}"#)
                .unwrap_err()
                .to_string(),
            "not valid JSON (truncated or malformed): member \"b\" given twice at line 1 column 18"
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            Document::parse(deep.as_bytes()).is_err(),
            "nesting is bounded"
        );
    }
}
