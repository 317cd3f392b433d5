//! Compact JSON bytes of the resource model, exactly as `serde_json::to_vec` writes them,
//! in less time: most of serialising a Bundle is `serde_json` looking up every byte of
//! every string in its escape table, where the model's strings (codes, ids, URLs, terms)
//! almost never need escaping. Here a string is checked in one vectorisable pass and
//! copied whole; one that needs escaping, every number, and anything unusual is written
//! by `serde_json` itself, so the bytes are the same (tests compare them).

use std::collections::HashMap;
use std::fmt::Display;

use serde::Serialize;
use serde::ser::{self, Impossible};

type Error = serde_json::Error;
type Result<T = ()> = std::result::Result<T, Error>;

/// The compact JSON of `value`, byte for byte what `serde_json::to_vec` gives.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    match value.serialize(Writer {
        out: &mut out,
        names: None,
        marks: None,
    }) {
        Ok(()) => out,
        // Something this writer leaves to serde_json (its private tokens): all of it is.
        Err(_) => serde_json::to_vec(value).unwrap_or_default(),
    }
}

/// Names to give references as they are written ([`to_vec_named`]): a reference's text
/// (`Practitioner/{id}`) to its `display`.
pub type Names = HashMap<String, String>;

/// [`to_vec`] of `value` with every [`crate::model::Reference`] that has no `display`,
/// and whose `reference` is one of `names`, written with that name as its display: the
/// bytes `to_vec` gives for a copy of `value` named so, without the copy (naming an
/// answer's entries was a clone of each). `None` when part of `value` is left to
/// serde_json, which knows no names: name a copy then.
pub fn to_vec_named<T: Serialize + ?Sized>(value: &T, names: &Names) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    value
        .serialize(Writer {
            out: &mut out,
            names: Some(names),
            marks: None,
        })
        .ok()?;
    Some(out)
}

/// A 64-bit hash of `value`'s compact JSON as [`to_vec`] writes it: XXH3-64, whose output
/// its specification fixes, so the same JSON hashes alike on every replica, after a
/// restart and across releases. Written into a buffer kept per thread, not a new one.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> u64 {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut out) => {
            out.clear();
            let writer = Writer {
                out: &mut out,
                names: None,
                marks: None,
            };
            if value.serialize(writer).is_err() {
                out.clear();
                // serde_json writes what this writer leaves to it (as `to_vec` does).
                let _ = serde_json::to_writer(&mut *out, value);
            }
            let hash = xxhash_rust::xxh3::xxh3_64(&out);
            // A rare large entry does not keep its room for the thread's life.
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
            }
            hash
        }
        // Only if serialising `value` hashed another value: then without the buffer.
        Err(_) => xxhash_rust::xxh3::xxh3_64(&to_vec(value)),
    })
}

/// An entry's compact JSON as written to name its content version (the bytes
/// [`content_hash`] hashes: no `meta.versionId`, no `meta.lastUpdated`), with where an
/// answer adds to it: the version in its `meta`, names on its references. The answer's
/// JSON is then copied from it ([`Fresh::answer`]) rather than the entry serialised again.
#[derive(Debug)]
pub struct Fresh {
    json: Vec<u8>,
    marks: Marks,
}

impl Fresh {
    /// `value`'s JSON with its marks (`None` where part of it is serde_json's to write).
    /// Kept in room of its own size: an area's entries are kept until its answer is
    /// made, on every request reading one at once.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Option<Self> {
        let mut json = Vec::with_capacity(1024);
        let mut marks = Marks::default();
        value
            .serialize(Writer {
                out: &mut json,
                names: None,
                marks: Some(&mut marks),
            })
            .ok()?;
        json.shrink_to_fit();
        marks.references.shrink_to_fit();
        Some(Self { json, marks })
    }

    /// [`content_hash`] of the entry, from the bytes written.
    pub fn content_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.json)
    }

    /// The JSON [`to_vec_named`] writes of the entry with `meta.versionId` set to
    /// `version` (its only difference from the entry written): the bytes written, with
    /// the version and the names added where they go. `None` for an entry with no `meta`
    /// (where the version would go is not marked).
    pub fn answer(&self, version: &str, names: &Names) -> Option<RawJson> {
        let json = &self.json;
        let meta = self.marks.meta?;
        let mut out = Vec::with_capacity(json.len() + 64);
        out.extend_from_slice(&json[..meta]);
        write_key(&mut out, "versionId");
        write_str(&mut out, version).ok()?;
        if json.get(meta) != Some(&b'}') {
            out.push(b',');
        }
        let mut at = meta;
        for &(close, (start, end)) in &self.marks.references {
            if close < at {
                return None;
            }
            if let Some(name) = name_of(&json[start..end], names) {
                out.extend_from_slice(&json[at..close]);
                write_display(&mut out, name).ok()?;
                at = close;
            }
        }
        out.extend_from_slice(&json[at..]);
        Some(RawJson::of_bytes(out))
    }
}

/// The name under which `serde_json` passes a raw value's text to a serializer (its
/// `RawValue` writes itself as a struct of this name with one field of this name): a
/// serializer that knows it copies the text; [`RawJson`] writes itself the same way, so
/// both this writer and `serde_json` copy it.
const RAW_TOKEN: &str = "$serde_json::private::RawValue";

/// JSON text kept to be written again as it stands: inside a value serialised by
/// [`to_vec`] or by `serde_json`, its text is copied, not serialised again. Made by
/// [`RawJson::of`], so it is always the JSON of a value (never checked again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// The compact JSON of `value`, as [`to_vec`] writes it.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::of_bytes(to_vec(value))
    }

    /// The compact JSON of `value` with `names` on its references, as [`to_vec_named`]
    /// writes it (`None` where that gives none).
    pub fn of_named<T: Serialize + ?Sized>(value: &T, names: &Names) -> Option<Self> {
        to_vec_named(value, names).map(Self::of_bytes)
    }

    fn of_bytes(json: Vec<u8>) -> Self {
        // The writers give UTF-8 (strings copied whole from `&str`s, or serde_json's).
        let text = String::from_utf8(json)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Self(text.into_boxed_str())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl Serialize for RawJson {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use ser::SerializeStruct;
        let mut s = serializer.serialize_struct(RAW_TOKEN, 1)?;
        s.serialize_field(RAW_TOKEN, self.get())?;
        s.end()
    }
}

/// True when `s` holds a byte JSON must escape (a control character, `"` or `\`): eight
/// bytes at a time, the last eight overlapping the ones before (the model's strings are
/// mostly short: a loop set up for wide vectors cost more than it saved).
fn needs_escape(s: &[u8]) -> bool {
    let word = |w: &[u8]| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(w);
        u64::from_le_bytes(bytes)
    };
    let half = |w: &[u8]| {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(w);
        u64::from(u32::from_le_bytes(bytes))
    };
    match s.len() {
        0..4 => s.iter().any(|&b| escaped(b)),
        // The first four bytes and the last four (overlapping) as one word.
        n @ 4..8 => word_needs_escape(half(&s[..4]) | half(&s[n - 4..]) << 32),
        n => {
            s.chunks_exact(8).any(|w| word_needs_escape(word(w)))
                || word_needs_escape(word(&s[n - 8..]))
        }
    }
}

/// A byte JSON must escape.
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// True when a byte of `w` must be escaped: the "has a byte less than n" and "has a zero
/// byte" word tests (exact as a whole for n ≤ 128, the per-byte flags aside).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let has = |b: u8| below(w ^ (ONES * u64::from(b)), 1);
    (below(w, 0x20) | has(b'"') | has(b'\\')) != 0
}

/// The name `names` gives a reference whose text was `written` (a JSON string).
fn name_of<'n>(written: &[u8], names: &'n Names) -> Option<&'n String> {
    match written {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => {
            std::str::from_utf8(text).ok().and_then(|t| names.get(t))
        }
        _ => serde_json::from_slice::<String>(written)
            .ok()
            .and_then(|t| names.get(&t)),
    }
}

/// A name given to a reference: its `display`, after the fields written before it.
fn write_display(out: &mut Vec<u8>, name: &str) -> Result {
    out.extend_from_slice(b",\"display\":");
    write_str(out, name)
}

/// A struct's field name and its colon. The names are the model's, fixed when it is
/// compiled (serde's derive gives them as `&'static str`), and none holds a byte to escape
/// (checked in debug builds, so every test run checks every name it writes): not checked
/// on every write, where it cost about a quarter of writing a name.
fn write_key(out: &mut Vec<u8>, key: &'static str) {
    debug_assert!(!needs_escape(key.as_bytes()), "{key:?} needs escaping");
    out.reserve(key.len() + 3);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result {
    if needs_escape(s.as_bytes()) {
        return serde_json::to_writer(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Refuses what serde_json writes in its own way (`arbitrary_precision` numbers, raw
/// values): the whole value is then written by serde_json.
fn plain(name: &str) -> Result {
    if name.starts_with("$serde_json::private::") {
        return Err(ser::Error::custom("left to serde_json"));
    }
    Ok(())
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Names to give references ([`to_vec_named`]).
    names: Option<&'a Names>,
    /// Where an answer's additions go, noted as it is written ([`Fresh`]).
    marks: Option<&'a mut Marks>,
}

/// Where [`Fresh::answer`] adds to an entry's JSON.
#[derive(Debug, Default)]
struct Marks {
    /// Just after the first `Meta`'s `{`.
    meta: Option<usize>,
    /// Each `Reference` without a display, in the order they close: where its `}` is,
    /// and where its `reference` text is (the JSON string, quotes included).
    references: Vec<(usize, (usize, usize))>,
}

/// The name under which the model's `Meta` serialises itself.
const META: &str = "Meta";

/// The name under which the model's `Reference` serialises itself (its struct's name).
const REFERENCE: &str = "Reference";

/// A `Reference` being written with names to give or marks to note: where its
/// `reference` text was written (the JSON string, quotes included), and whether it has
/// a `display`.
#[derive(Clone, Copy)]
struct Naming {
    text: Option<(usize, usize)>,
    displayed: bool,
}

/// An array or object being written: `first` until its first element.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    names: Option<&'a Names>,
    marks: Option<&'a mut Marks>,
    first: bool,
    /// The bytes that close it (`]`, `}`, or `}}` for a variant's).
    close: &'static [u8],
    /// A raw value's struct ([`RAW_TOKEN`]): its one field's text is copied as it stands.
    raw: bool,
    /// A `Reference` that may be given a name, or whose place is marked (only when there
    /// are names to give or marks to note).
    naming: Option<Naming>,
}

impl<'a> Compound<'a> {
    fn open(w: Writer<'a>, open: &[u8], close: &'static [u8]) -> Self {
        w.out.extend_from_slice(open);
        Self {
            out: w.out,
            names: w.names,
            marks: w.marks,
            first: true,
            close,
            raw: false,
            naming: None,
        }
    }

    fn writer(&mut self) -> Writer<'_> {
        Writer {
            out: self.out,
            names: self.names,
            marks: self.marks.as_deref_mut(),
        }
    }

    /// A struct's field, noting a `Reference`'s text and display as they go by.
    fn struct_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        let Some(naming) = self.naming else {
            return self.field(key, value);
        };
        let start = self.out.len() + usize::from(!self.first) + key.len() + 3;
        self.field(key, value)?;
        match key {
            "reference" => {
                self.naming = Some(Naming {
                    text: Some((start, self.out.len())),
                    ..naming
                })
            }
            "display" => {
                self.naming = Some(Naming {
                    displayed: true,
                    ..naming
                })
            }
            _ => {}
        }
        Ok(())
    }

    /// A `Reference` without a display whose text is one of the names: the name, written
    /// last as serde would (`display` is its last field).
    fn give_name(&mut self) -> Result {
        let Some(Naming {
            text: Some((start, end)),
            displayed: false,
        }) = self.naming
        else {
            return Ok(());
        };
        if let Some(marks) = self.marks.as_deref_mut() {
            marks.references.push((self.out.len(), (start, end)));
        }
        let Some(names) = self.names else {
            return Ok(());
        };
        match name_of(&self.out[start..end], names) {
            Some(name) => write_display(self.out, name),
            None => Ok(()),
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.comma();
        value.serialize(self.writer())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.comma();
        write_key(self.out, key);
        value.serialize(self.writer())
    }

    fn close(self) -> Result {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

/// Writes a number (or anything else) as serde_json writes it.
fn by_serde_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result {
    serde_json::to_writer(out, v)
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_i16(self, v: i16) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_i32(self, v: i32) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_i64(self, v: i64) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_i128(self, v: i128) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_u8(self, v: u8) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_u16(self, v: u16) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_u32(self, v: u32) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_u64(self, v: u64) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_u128(self, v: u128) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_f32(self, v: f32) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result {
        by_serde_json(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result {
        write_str(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result {
        write_str(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        by_serde_json(self.out, v)
    }
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result {
        plain(name)?;
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        write_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result {
        plain(name)?;
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        let mut c = Compound::open(self, b"{", b"}");
        c.field(variant, value)?;
        c.close()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::open(self, b"[", b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Compound<'a>> {
        plain(name)?;
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>> {
        self.out.push(b'{');
        write_str(self.out, variant)?;
        Ok(Compound::open(self, b":[", b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::open(self, b"{", b"}"))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'a>> {
        if name == RAW_TOKEN {
            return Ok(Compound {
                raw: true,
                ..Compound::open(self, b"", b"")
            });
        }
        plain(name)?;
        let marking = self.marks.is_some();
        let naming = ((self.names.is_some() || marking) && name == REFERENCE).then_some(Naming {
            text: None,
            displayed: false,
        });
        let mut c = Compound {
            naming,
            ..Compound::open(self, b"{", b"}")
        };
        if marking
            && name == META
            && let Some(marks) = c.marks.as_deref_mut()
            && marks.meta.is_none()
        {
            marks.meta = Some(c.out.len());
        }
        Ok(c)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>> {
        plain(name)?;
        self.out.push(b'{');
        write_str(self.out, variant)?;
        Ok(Compound::open(self, b":{", b"}}"))
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result {
        write_str(self.out, &value.to_string())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.comma();
        key.serialize(KeyWriter {
            out: self.out,
            raw: false,
        })?;
        self.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(self.writer())
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        if self.raw {
            return value.serialize(KeyWriter {
                out: self.out,
                raw: true,
            });
        }
        self.struct_field(key, value)
    }
    fn end(mut self) -> Result {
        self.give_name()?;
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

/// A map key: a string as it stands; any other key is left to serde_json (which quotes
/// numbers and refuses the rest), by refusing the whole value. With `raw`, a raw value's
/// text, copied without quotes.
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
    raw: bool,
}

fn not_a_string() -> Error {
    ser::Error::custom("a map key that is not a string is left to serde_json")
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        if self.raw {
            self.out.extend_from_slice(v.as_bytes());
            return Ok(());
        }
        write_str(self.out, v)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        write_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_char(self, v: char) -> Result {
        write_str(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result {
        write_str(self.out, &value.to_string())
    }
    fn serialize_bool(self, _: bool) -> Result {
        Err(not_a_string())
    }
    fn serialize_i8(self, _: i8) -> Result {
        Err(not_a_string())
    }
    fn serialize_i16(self, _: i16) -> Result {
        Err(not_a_string())
    }
    fn serialize_i32(self, _: i32) -> Result {
        Err(not_a_string())
    }
    fn serialize_i64(self, _: i64) -> Result {
        Err(not_a_string())
    }
    fn serialize_u8(self, _: u8) -> Result {
        Err(not_a_string())
    }
    fn serialize_u16(self, _: u16) -> Result {
        Err(not_a_string())
    }
    fn serialize_u32(self, _: u32) -> Result {
        Err(not_a_string())
    }
    fn serialize_u64(self, _: u64) -> Result {
        Err(not_a_string())
    }
    fn serialize_f32(self, _: f32) -> Result {
        Err(not_a_string())
    }
    fn serialize_f64(self, _: f64) -> Result {
        Err(not_a_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result {
        Err(not_a_string())
    }
    fn serialize_none(self) -> Result {
        Err(not_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result {
        Err(not_a_string())
    }
    fn serialize_unit(self) -> Result {
        Err(not_a_string())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Err(not_a_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(not_a_string())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(not_a_string())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(not_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(not_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(not_a_string())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(not_a_string())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(not_a_string())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(not_a_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: u8 },
        B(Inner),
    }

    #[derive(Serialize)]
    struct Inner {
        s: String,
        n: Option<f64>,
    }

    #[derive(Serialize)]
    enum External {
        Unit,
        New(i32),
        Tuple(u8, String),
        Struct { a: bool },
    }

    fn same<T: Serialize>(v: &T) {
        assert_eq!(
            String::from_utf8(to_vec(v)).unwrap(),
            serde_json::to_string(v).unwrap()
        );
    }

    #[test]
    fn finds_every_byte_that_needs_escaping_wherever_it_is() {
        for len in 0..24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(needs_escape(&s), escaped(b), "{b:#x} at {at} of {len}");
                    // Beside bytes that are close to the ones escaped, but not them.
                    let mut near = vec![0x20, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff];
                    near.resize(len, b' ');
                    near[at] = b;
                    assert_eq!(
                        needs_escape(&near),
                        escaped(b),
                        "{b:#x} at {at} of {near:?}"
                    );
                }
            }
            assert!(!needs_escape(&vec![b'a'; len]));
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        same(&"plain");
        same(&"quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f} é 😀 </script>");
        same(&[1.0_f64, 0.1, -2.5e-10, 1e300, f64::NAN, f64::INFINITY]);
        same(&[u64::MAX, 0]);
        same(&[i64::MIN, -1]);
        same(&(true, false, (), 'x', '"'));
        same(&Some(Vec::<u8>::new()));
        same(&Option::<String>::None);
        same(&[
            Tagged::A { x: 1 },
            Tagged::B(Inner {
                s: "é\"".into(),
                n: None,
            }),
        ]);
        same(&[
            External::Unit,
            External::New(-3),
            External::Tuple(1, "a".into()),
            External::Struct { a: true },
        ]);
        let map: BTreeMap<&str, Vec<&str>> = [("k\"", vec!["v"]), ("", vec![])].into();
        same(&map);
        let numeric: BTreeMap<u32, u32> = [(1, 2)].into();
        same(&numeric);
    }

    #[test]
    fn kept_json_is_copied_as_it_stands_by_both_writers() {
        let inner = Inner {
            s: "é\"\n".into(),
            n: Some(1.5),
        };
        let kept = RawJson::of(&inner);
        assert_eq!(kept.get(), serde_json::to_string(&inner).unwrap());
        let outer = (vec![kept.clone(), kept], "after");
        let expected = format!(
            "[[{0},{0}],\"after\"]",
            serde_json::to_string(&inner).unwrap()
        );
        assert_eq!(String::from_utf8(to_vec(&outer)).unwrap(), expected);
        assert_eq!(serde_json::to_string(&outer).unwrap(), expected);
        // serde_json's own raw values are written as serde_json writes them.
        let theirs = serde_json::value::to_raw_value(&inner).unwrap();
        same(&[&theirs]);
        same(&serde_json::json!({"a": 1.5, "b": [1, "x", null, {"c": 12345678901234567890u64}]}));
    }

    #[test]
    fn a_content_hash_is_xxh3_of_the_json_and_fixed_across_releases() {
        let inner = Inner {
            s: "é\"\n".into(),
            n: Some(1.5),
        };
        let json = serde_json::to_vec(&inner).unwrap();
        assert_eq!(content_hash(&inner), xxhash_rust::xxh3::xxh3_64(&json));
        // Left to serde_json (its raw and arbitrary-precision values): the same bytes.
        let theirs = serde_json::json!({"a": 1.5, "b": [12345678901234567890u64]});
        assert_eq!(
            content_hash(&theirs),
            xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(&theirs).unwrap())
        );
        // The buffer is reused: a shorter value after a longer one hashes its own bytes.
        let long = "x".repeat(100_000);
        assert_eq!(
            content_hash(&long),
            xxhash_rust::xxh3::xxh3_64(&to_vec(&long))
        );
        assert_eq!(content_hash(&"x"), xxhash_rust::xxh3::xxh3_64(b"\"x\""));
        // Entry versions name content on every replica and release: pinned, so a change
        // of algorithm (which would change every version and ETag) is seen.
        assert_eq!(content_hash(&"x"), 0xbbc5_544a_8f0e_d47d);
        assert_ne!(content_hash(&"x"), content_hash(&"y"));
    }

    /// An Observation with every kind of reference naming could meet.
    fn referring() -> crate::model::Resource {
        use crate::model::{Identifier, Observation, Reference, Resource};
        let to = |r: &str| Reference {
            reference: Some(r.into()),
            identifier: None,
            display: None,
        };
        let json = serde_json::json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "BP"}, "subject": {"reference": "Patient/9000000009"}});
        let mut o: Observation = serde_json::from_value(json).unwrap();
        o.performer = vec![
            to("Practitioner/p1"),
            // Named by the GP system: kept as it is.
            Reference {
                display: Some("Dr As Recorded".into()),
                ..to("Practitioner/p1")
            },
            // Named after its identifier, as serde writes the fields.
            Reference {
                identifier: Some(Box::new(Identifier {
                    system: Some("https://fhir.nhs.uk/Id/ods-organization-code".into()),
                    value: Some("A12345".into()),
                    ..Default::default()
                })),
                ..to("Organization/A12345")
            },
            // Escaped in JSON, matched as its text.
            to("Practitioner/p\"2"),
            // No reference text: nothing to look up.
            Reference {
                reference: None,
                ..to("")
            },
            to("Practitioner/unknown"),
        ];
        Resource::Observation(o)
    }

    #[test]
    fn named_json_is_the_json_of_a_named_copy() {
        let names: Names = [
            ("Practitioner/p1", "Dr Priya Clarke"),
            ("Organization/A12345", "Northgate \"Medical\" Practice"),
            ("Practitioner/p\"2", "Mr Quoted"),
            ("Patient/9000000009", "Mrs Chloe Jackson"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let resource = referring();
        let mut copy = resource.clone();
        for r in copy.references_mut() {
            if r.display.is_none()
                && let Some(name) = r.reference.as_deref().and_then(|t| names.get(t))
            {
                r.display = Some(name.clone());
            }
        }
        let named = String::from_utf8(to_vec_named(&resource, &names).unwrap()).unwrap();
        assert_eq!(named, serde_json::to_string(&copy).unwrap());
        assert!(named.contains(r#"{"reference":"Practitioner/p1","display":"Dr Priya Clarke"}"#));
        assert!(named.contains(r#""display":"Dr As Recorded""#));
        assert!(named.contains(r#"{"reference":"Practitioner/unknown"}"#));
        // Inside a Bundle, and kept: the same bytes.
        let entries = vec![crate::bundle::BundleEntry {
            full_url: None,
            resource: resource.clone(),
            search: None,
        }];
        assert_eq!(
            RawJson::of_named(&resource, &names).unwrap().get(),
            named.as_str()
        );
        assert!(
            String::from_utf8(to_vec_named(&entries, &names).unwrap())
                .unwrap()
                .contains(&named)
        );
        // Stamped with its version, an answer copied from the JSON the version hashed
        // is what the named writer writes of it: with a meta of its own, or an empty one;
        // without a meta, there is nowhere marked to put the version.
        for meta in [
            Some(crate::model::Meta::uk_core("Observation")),
            Some(Default::default()),
        ] {
            let mut stamped = resource.clone();
            *stamped.meta_mut() = meta;
            stamped.meta_mut().as_mut().unwrap().last_updated = Some("2026-01-01".into());
            let mut hashed = stamped.clone();
            let fresh = stamped.stamp_fresh().unwrap();
            assert_eq!(
                hashed.stamp_content_version(),
                stamped.meta().unwrap().version_id.clone().unwrap()
            );
            assert_eq!(hashed, stamped);
            let version = stamped.meta().unwrap().version_id.clone().unwrap();
            for names in [&names, &Names::new()] {
                assert_eq!(
                    fresh.answer(&version, names).unwrap().get().as_bytes(),
                    to_vec_named(&stamped, names).unwrap(),
                );
            }
        }
        let mut bare = resource.clone();
        assert!(bare.meta().is_none());
        let fresh = bare.stamp_fresh().unwrap();
        assert!(fresh.answer("0", &names).is_none());
        // Without names, nothing is named.
        assert_eq!(
            to_vec_named(&resource, &Names::new()).unwrap(),
            to_vec(&resource)
        );
    }
}
