//! A lean, read-only XML DOM for the adapters' native records.
//!
//! One pass over the input builds every node into one arena (first-child / next-sibling
//! indices); names and text borrow from the input unless a reference or a line end forces
//! an owned copy. The accepted language is roxmltree's with DTDs refused (roxmltree is the
//! test oracle, see `xml_diff_tests`), with these deliberate differences, all stricter or
//! closer to the XML specs:
//!
//! - a depth limit and a node limit ([`Limits`]) so a hostile body cannot exhaust memory;
//! - a character reference to a surrogate or past U+10FFFF is refused (roxmltree gives
//!   U+FFFD); a duplicate `xmlns` default declaration and `xmlns:p=""` are refused;
//! - `xmlns=""` undeclares the default namespace (roxmltree reports an empty namespace);
//! - every literal CR or CR LF in text becomes LF, also next to a character reference.
//!
//! Non-ASCII name characters are accepted per XML 1.0 (fifth edition) NameStartChar and
//! NameChar. `<!DOCTYPE` is refused outright: no entity expansion, no external fetches.

use std::borrow::Cow;
use std::fmt;

use memchr::{memchr, memchr2, memmem};

/// The namespace the `xml` prefix is bound to.
pub const NS_XML_URI: &str = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";

const NONE: u32 = u32::MAX;

/// Bounds on what one document may build.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest element nesting accepted (the root element is depth 1).
    pub max_depth: u32,
    /// Most nodes (elements, text runs, comments, PIs) accepted.
    pub max_nodes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 256,
            max_nodes: 4_000_000,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlErrorKind {
    UnexpectedEof,
    /// A byte other than the one the grammar requires here.
    Expected(&'static str),
    InvalidName,
    /// A character XML does not allow (a control character, U+FFFE, U+FFFF).
    NonXmlChar,
    InvalidComment,
    /// `]]>` in character data.
    CdataEndInText,
    DoctypeRefused,
    /// An XML declaration anywhere but at the very start.
    MisplacedDeclaration,
    /// `&` not starting one of the five predefined entities or a valid character reference.
    MalformedReference,
    /// Markup that is not an element, comment, PI or CDATA section, or content after the root.
    UnexpectedToken,
    MismatchedCloseTag {
        expected: String,
        found: String,
    },
    UnknownPrefix(String),
    /// `xmlns` used as an element prefix.
    XmlnsElementPrefix,
    /// A declaration binding or unbinding a reserved namespace, or binding a prefix to "".
    ReservedNamespace,
    DuplicateNamespace(String),
    DuplicateAttribute(String),
    NoRootElement,
    UnclosedRootElement,
    TooDeep,
    TooManyNodes,
}

impl XmlErrorKind {
    /// True for a refusal that comes from [`Limits`], not from the input being malformed.
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::TooDeep | Self::TooManyNodes)
    }
}

impl fmt::Display for XmlErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEof => f.write_str("unexpected end of document"),
            Self::Expected(what) => write!(f, "expected {what}"),
            Self::InvalidName => f.write_str("invalid name"),
            Self::NonXmlChar => f.write_str("character not allowed in XML"),
            Self::InvalidComment => f.write_str("invalid comment"),
            Self::CdataEndInText => f.write_str("']]>' in character data"),
            Self::DoctypeRefused => f.write_str("DTDs are not accepted"),
            Self::MisplacedDeclaration => f.write_str("XML declaration not at the start"),
            Self::MalformedReference => f.write_str("malformed entity or character reference"),
            Self::UnexpectedToken => f.write_str("unexpected token"),
            Self::MismatchedCloseTag { expected, found } => {
                write!(f, "expected </{expected}>, found </{found}>")
            }
            Self::UnknownPrefix(p) => write!(f, "unbound namespace prefix '{p}'"),
            Self::XmlnsElementPrefix => f.write_str("'xmlns' used as an element prefix"),
            Self::ReservedNamespace => f.write_str("invalid namespace declaration"),
            Self::DuplicateNamespace(p) => write!(f, "namespace prefix '{p}' declared twice"),
            Self::DuplicateAttribute(a) => write!(f, "attribute '{a}' given twice"),
            Self::NoRootElement => f.write_str("no root element"),
            Self::UnclosedRootElement => f.write_str("root element not closed"),
            Self::TooDeep => f.write_str("elements nested too deeply"),
            Self::TooManyNodes => f.write_str("too many nodes"),
        }
    }
}

/// A refused document: what and where (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub kind: XmlErrorKind,
    /// Byte offset into the input.
    pub offset: usize,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.kind, self.line, self.column)
    }
}

impl std::error::Error for XmlError {}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    Root,
    Element,
    Text,
    Comment,
    ProcessingInstruction,
}

#[derive(Debug)]
enum Kind<'input> {
    Root,
    Element {
        local: &'input str,
        /// Index into `Document::uris`, or `NONE`.
        ns: u32,
        attrs: (u32, u32),
        /// Built without its content ([`SkipItems`]): its marker's text, in
        /// `Document::skipped`; `NONE` when built whole.
        skipped: u32,
    },
    Text(Cow<'input, str>),
    Comment(&'input str),
    Pi {
        target: &'input str,
        value: Option<&'input str>,
    },
}

#[derive(Debug)]
struct NodeData<'input> {
    kind: Kind<'input>,
    parent: u32,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
}

#[derive(Debug)]
struct AttrData<'input> {
    local: &'input str,
    ns: u32,
    value: Cow<'input, str>,
}

/// A parsed document. Nodes borrow from the input text.
#[derive(Debug)]
pub struct Document<'input> {
    nodes: Vec<NodeData<'input>>,
    attrs: Vec<AttrData<'input>>,
    /// Namespace URIs, one per declaration (index 0 is the `xml` namespace).
    uris: Vec<Cow<'input, str>>,
    /// The marker texts of the items built without their content ([`SkipItems`]).
    skipped: Vec<&'input str>,
}

impl<'input> Document<'input> {
    /// Parses `text` with the default [`Limits`].
    pub fn parse(text: &'input str) -> Result<Self, XmlError> {
        Self::parse_with_limits(text, Limits::default())
    }

    /// Parses `text`, refusing documents beyond `limits`.
    pub fn parse_with_limits(text: &'input str, limits: Limits) -> Result<Self, XmlError> {
        Parser::new(text, limits, true).run()
    }

    /// Parses a data document (the adapters' native records) with the default [`Limits`]:
    /// the documents [`Document::parse`] accepts (the node limit counts only nodes built),
    /// with the same tree except that text nodes made only of XML whitespace (space, TAB,
    /// CR, LF) are not built. Those are the indentation between elements; an element
    /// holding only whitespace has no text. About half the nodes of an indented record,
    /// never read by a mapping that trims what it reads.
    pub fn parse_data(text: &'input str) -> Result<Self, XmlError> {
        Parser::new(text, Limits::default(), false).run()
    }

    /// [`Document::parse_data`], building the root's child elements whose local name is in
    /// `skip` without their content (an element with no children), where the reader will
    /// not look: a search for one clinical area need not build the others' lists. Skipped
    /// only where plainly safe, else built as any other: the first end tag of the same
    /// name after the start tag must close it (no element of that name starts in
    /// between) and no comment, CDATA section or PI may lie in between (where markup
    /// could hide). What is skipped is not checked: a fault in it is not reported.
    pub fn parse_data_skipping(text: &'input str, skip: &[&'static str]) -> Result<Self, XmlError> {
        Self::parse_data_skipping_items(text, skip, &[])
    }

    /// [`Document::parse_data_skipping`], also building without their content the items of
    /// the root's lists that `items` marks (a search for Observations need not build the
    /// record's Problem events, nor more of its consultations than their ids): under the
    /// same conditions, and only where the item holds its marker element once. Such an
    /// item reads as [`Node::content_skipped`], its marker's text as
    /// [`Node::skipped_marker`].
    pub fn parse_data_skipping_items(
        text: &'input str,
        skip: &[&'static str],
        items: &[SkipItems],
    ) -> Result<Self, XmlError> {
        let mut parser = Parser::new(text, Limits::default(), false);
        parser.skip = skip.to_vec();
        parser.skip_items = items
            .iter()
            .map(|items| {
                let open = format!("<{}>", items.marker);
                (
                    items.clone(),
                    memmem::Finder::new(open.as_bytes()).into_owned(),
                )
            })
            .collect();
        parser.run()
    }

    /// The document node (parent of the root element).
    pub fn root(&self) -> Node<'_, 'input> {
        self.node(0)
    }

    /// The root element.
    pub fn root_element(&self) -> Node<'_, 'input> {
        // A parsed document always has exactly one element child of the root.
        self.root()
            .children()
            .find(Node::is_element)
            .unwrap_or_else(|| self.root())
    }

    /// Every node in document order, the document node first.
    pub fn descendants(&self) -> impl Iterator<Item = Node<'_, 'input>> + '_ {
        (0..self.nodes.len() as u32).map(|i| self.node(i))
    }

    fn node(&self, id: u32) -> Node<'_, 'input> {
        Node {
            doc: self,
            d: &self.nodes[id as usize],
        }
    }

    fn uri(&self, idx: u32) -> Option<&str> {
        if idx == NONE {
            None
        } else {
            Some(&self.uris[idx as usize])
        }
    }
}

/// Which items of one of the root's lists [`Document::parse_data_skipping_items`] builds
/// without their content: each `item` child of the root's child `list` whose one
/// `marker` child marks it as [`Marked`] says (`<EventType>Problem</EventType>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipItems {
    /// The local name of the root's child holding the items.
    pub list: &'static str,
    /// The items' local name.
    pub item: &'static str,
    /// The local name of the item's child that marks it, unprefixed.
    pub marker: &'static str,
    /// Which of the marker's texts mark an item to skip.
    pub marked: Marked,
}

/// Which marker texts mark an item of [`SkipItems`] to skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// One of these, as written (`Problem`).
    Reading(Vec<&'static str>),
    /// Any text, where the marker is the item's first child and holds plain text (no
    /// markup, no reference): for a list read only for its items' ids (the marker), as
    /// [`Node::skipped_marker`] gives them.
    First,
}

impl SkipItems {
    /// The length of the marker's text when it marks the item: `value` is what follows
    /// the marker's start tag, and reads the text, then the marker's end tag.
    fn marked_value(&self, value: &[u8]) -> Option<usize> {
        let marker = self.marker.as_bytes();
        let closes = |r: &[u8]| {
            r.strip_prefix(b"</")
                .and_then(|r| r.strip_prefix(marker))
                .is_some_and(|r| r.first() == Some(&b'>'))
        };
        match &self.marked {
            Marked::Reading(values) => values
                .iter()
                .find(|v| value.strip_prefix(v.as_bytes()).is_some_and(closes))
                .map(|v| v.len()),
            Marked::First => {
                let len = memchr2(b'<', b'&', value)?;
                (value[len] == b'<' && closes(&value[len..])).then_some(len)
            }
        }
    }
}

/// The qualified name `b` starts with (up to the first byte that cannot be in a name).
fn tag_name(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| QNAME[c as usize] == Q_STOP)
        .unwrap_or(b.len());
    &b[..end]
}

/// An element's or attribute's namespace URI and local name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandedName<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
}

impl<'a> ExpandedName<'a> {
    /// The local name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The namespace URI, if the name is in one.
    pub fn namespace(&self) -> Option<&'a str> {
        self.namespace
    }
}

/// One attribute of an element (namespace declarations are not attributes).
#[derive(Debug, Clone, Copy)]
pub struct Attribute<'a> {
    name: ExpandedName<'a>,
    value: &'a str,
}

impl<'a> Attribute<'a> {
    /// The local name.
    pub fn name(&self) -> &'a str {
        self.name.name
    }

    /// The namespace URI (only prefixed attributes have one).
    pub fn namespace(&self) -> Option<&'a str> {
        self.name.namespace
    }

    /// The normalised value.
    pub fn value(&self) -> &'a str {
        self.value
    }
}

/// A node of a [`Document`]; cheap to copy.
#[derive(Clone, Copy)]
pub struct Node<'a, 'input> {
    doc: &'a Document<'input>,
    d: &'a NodeData<'input>,
}

impl fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.d.kind)
    }
}

impl PartialEq for Node<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.d, other.d)
    }
}

impl<'a, 'input> Node<'a, 'input> {
    /// What this node is.
    pub fn node_type(&self) -> NodeType {
        match self.d.kind {
            Kind::Root => NodeType::Root,
            Kind::Element { .. } => NodeType::Element,
            Kind::Text(_) => NodeType::Text,
            Kind::Comment(_) => NodeType::Comment,
            Kind::Pi { .. } => NodeType::ProcessingInstruction,
        }
    }

    pub fn is_element(&self) -> bool {
        matches!(self.d.kind, Kind::Element { .. })
    }

    /// An element built without its content, as [`SkipItems`] chose: what it holds was
    /// not read.
    pub fn content_skipped(&self) -> bool {
        matches!(self.d.kind, Kind::Element { skipped, .. } if skipped != NONE)
    }

    /// An item built without its content: its marker's text, as written (not trimmed,
    /// not checked: it holds no markup and no reference).
    pub fn skipped_marker(&self) -> Option<&'a str> {
        match self.d.kind {
            Kind::Element { skipped, .. } if skipped != NONE => {
                self.doc.skipped.get(skipped as usize).copied()
            }
            _ => None,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self.d.kind, Kind::Text(_))
    }

    /// An element's name; empty, in no namespace, for other nodes.
    pub fn tag_name(&self) -> ExpandedName<'a> {
        match self.d.kind {
            Kind::Element { local, ns, .. } => ExpandedName {
                name: local,
                namespace: self.doc.uri(ns),
            },
            _ => ExpandedName {
                name: "",
                namespace: None,
            },
        }
    }

    /// True for an element with this local name in namespace `ns`.
    #[inline]
    pub fn has_tag_name(&self, ns: Option<&str>, name: &str) -> bool {
        match self.d.kind {
            Kind::Element { local, ns: idx, .. } => local == name && self.doc.uri(idx) == ns,
            _ => false,
        }
    }

    /// The value of the attribute with this local name and no namespace.
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attrs()
            .iter()
            .find(|a| a.ns == NONE && a.local == name)
            .map(|a| a.value.as_ref())
    }

    /// An element's attributes in document order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        let doc = self.doc;
        self.attrs().iter().map(move |a| Attribute {
            name: ExpandedName {
                name: a.local,
                namespace: doc.uri(a.ns),
            },
            value: a.value.as_ref(),
        })
    }

    fn attrs(&self) -> &'a [AttrData<'input>] {
        match self.d.kind {
            Kind::Element { attrs, .. } => &self.doc.attrs[attrs.0 as usize..attrs.1 as usize],
            _ => &[],
        }
    }

    /// A text or comment node's text; an element's first child's text when that child is
    /// a text node (as roxmltree).
    pub fn text(&self) -> Option<&'a str> {
        match &self.d.kind {
            Kind::Text(t) => Some(t.as_ref()),
            Kind::Comment(t) => Some(t),
            Kind::Element { .. } => match self.first_child().map(|c| &c.d.kind) {
                Some(Kind::Text(t)) => Some(t.as_ref()),
                _ => None,
            },
            _ => None,
        }
    }

    /// [`Node::text`] trimmed as [`str::trim`] does; `None` when absent or when nothing is
    /// left (`<Title/>`, `<Title>  </Title>`). Text that starts and ends with a printable
    /// ASCII character, most of a data document's, is returned without the Unicode scan.
    pub fn trimmed_text(&self) -> Option<&'a str> {
        let t = self.text()?;
        let printable = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x80).contains(b));
        let t = if printable(t.as_bytes().first()) && printable(t.as_bytes().last()) {
            t
        } else {
            t.trim()
        };
        (!t.is_empty()).then_some(t)
    }

    /// A processing instruction's target and value.
    pub fn pi(&self) -> Option<(&'a str, Option<&'a str>)> {
        match self.d.kind {
            Kind::Pi { target, value } => Some((target, value)),
            _ => None,
        }
    }

    fn link(&self, id: u32) -> Option<Self> {
        (id != NONE).then(|| self.doc.node(id))
    }

    pub fn parent(&self) -> Option<Self> {
        self.link(self.d.parent)
    }

    pub fn first_child(&self) -> Option<Self> {
        self.link(self.d.first_child)
    }

    pub fn next_sibling(&self) -> Option<Self> {
        self.link(self.d.next_sibling)
    }

    /// The node's children in document order.
    pub fn children(&self) -> Children<'a, 'input> {
        Children {
            doc: self.doc,
            next: self.d.first_child,
        }
    }

    /// The node and its ancestors, nearest first.
    pub fn ancestors(&self) -> impl Iterator<Item = Self> + use<'a, 'input> {
        std::iter::successors(Some(*self), Node::parent)
    }
}

/// Iterator over a node's children.
#[derive(Clone)]
pub struct Children<'a, 'input> {
    doc: &'a Document<'input>,
    next: u32,
}

impl<'a, 'input> Iterator for Children<'a, 'input> {
    type Item = Node<'a, 'input>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NONE {
            return None;
        }
        let n = self.doc.node(self.next);
        self.next = n.d.next_sibling;
        Some(n)
    }
}

// ---- parsing ----

/// Byte classes for the character-data scan.
const PLAIN: u8 = 0;
/// `&` or CR: the text needs an owned, normalised copy.
const REWRITE: u8 = 1;
/// `>`: check for `]]>`.
const GT: u8 = 2;
/// A control character XML does not allow.
const BAD: u8 = 3;
/// 0xEF: may start U+FFFE or U+FFFF.
const EF: u8 = 4;
/// TAB or LF: plain in text, normalised in attribute values.
const WS: u8 = 5;

const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = BAD;
        i += 1;
    }
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = REWRITE;
    t[b'&' as usize] = REWRITE;
    t[b'>' as usize] = GT;
    t[0xEF] = EF;
    t
};

/// ASCII name characters: 1 = may also start a name, 2 = only inside one.
const NAME: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() || b == b'_' || b == b':' {
            1
        } else if b.is_ascii_digit() || b == b'-' || b == b'.' {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

const Q_STOP: u8 = 0;
const Q_NAME: u8 = 1;
const Q_COLON: u8 = 2;
const Q_NON_ASCII: u8 = 3;

/// Byte classes for scanning a qualified name.
const QNAME: [u8; 256] = {
    let mut t = [Q_STOP; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i >= 128 {
            Q_NON_ASCII
        } else if i == b':' as usize {
            Q_COLON
        } else if NAME[i] != 0 {
            Q_NAME
        } else {
            Q_STOP
        };
        i += 1;
    }
    t
};

fn is_name_start_char(c: char) -> bool {
    if (c as u32) < 128 {
        return NAME[c as usize] == 1;
    }
    matches!(c as u32,
        0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF | 0x370..=0x37D | 0x37F..=0x1FFF
        | 0x200C..=0x200D | 0x2070..=0x218F | 0x2C00..=0x2FEF | 0x3001..=0xD7FF
        | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD | 0x10000..=0xEFFFF)
}

fn is_name_char(c: char) -> bool {
    if (c as u32) < 128 {
        return NAME[c as usize] != 0;
    }
    is_name_start_char(c) || matches!(c as u32, 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

fn is_xml_char(c: char) -> bool {
    match c as u32 {
        0x9 | 0xA | 0xD => true,
        0..0x20 | 0xFFFE | 0xFFFF => false,
        _ => true,
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in each byte of `x` that is zero (exact).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    const LOWS: u64 = ONES * 0x7F;
    !(((x & LOWS) + LOWS) | x | LOWS)
}

/// The 8 bytes at `b[i..]` as one little-endian word; `None` when fewer are left.
#[inline]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let word = b.get(i..i + 8)?;
    <[u8; 8]>::try_from(word).ok().map(u64::from_le_bytes)
}

/// Where the run of XML whitespace (space, TAB, LF, CR) from `b[i]` ends. Spaces, the
/// bulk of indentation, are taken a word (8 bytes) at a time.
#[inline]
fn skip_spaces_from(b: &[u8], mut i: usize) -> usize {
    loop {
        match b.get(i) {
            Some(b'\n' | b'\t' | b'\r') => i += 1,
            Some(b' ') => match word_at(b, i) {
                Some(word) => {
                    let spaces = zero_bytes(word ^ (ONES * u64::from(b' ')));
                    // Little-endian: the first byte that is not a space is the lowest
                    // clear high bit (at least one space: `b[i]`).
                    i += ((!spaces & HIGHS).trailing_zeros() / 8) as usize;
                }
                None => i += 1,
            },
            _ => return i,
        }
    }
}

/// Whether the 8 bytes at `b[i..]` are all [`PLAIN`] in character data: ASCII from space
/// to DEL except `&` and `>`; false when fewer than 8 bytes are left.
#[inline]
fn plain_word(b: &[u8], i: usize) -> bool {
    let Some(x) = word_at(b, i) else {
        return false;
    };
    // A byte below 0x20 borrows in `x - 0x20…`; a byte from 0x80 up has its high bit set.
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
    !(control
        || x & HIGHS != 0
        || zero_bytes(x ^ (ONES * u64::from(b'&'))) | zero_bytes(x ^ (ONES * u64::from(b'>'))) != 0)
}

/// How many bytes at the start of `b` are whole [`plain_word`]s. The scans of text,
/// attribute values, comments and CDATA skip those and classify the rest byte by byte
/// (controls, TAB, LF, CR, non-ASCII, `&`, `>`).
#[inline]
fn plain_words(b: &[u8]) -> usize {
    let mut i = 0;
    while plain_word(b, i) {
        i += 8;
    }
    i
}

/// What a run of character data held, beyond plain characters.
#[derive(Default)]
struct Scan {
    rewrite: bool,
    ws: bool,
}

struct OpenElement<'input> {
    node: u32,
    /// Where the qualified name sits in the input.
    name: std::ops::Range<usize>,
    prefix: &'input str,
    local: &'input str,
    ns_len: usize,
}

struct PendingAttr<'input> {
    prefix: &'input str,
    local: &'input str,
    value: Cow<'input, str>,
    at: usize,
}

struct Parser<'input> {
    text: &'input str,
    b: &'input [u8],
    pos: usize,
    limits: Limits,
    doc: Document<'input>,
    open: Vec<OpenElement<'input>>,
    /// Namespace bindings in scope: prefix (None = default) and index into `doc.uris`
    /// (`NONE` = undeclared default).
    scope: Vec<(Option<&'input str>, u32)>,
    pending: Vec<PendingAttr<'input>>,
    /// The text node content may still be appended to (no other node since).
    open_text: u32,
    /// The open text node's previous sibling (`NONE` for a first child).
    open_text_prev: u32,
    /// The open text node holds only whitespace so far.
    open_text_blank: bool,
    /// Build text nodes that hold only whitespace (false for [`Document::parse_data`]).
    keep_blank: bool,
    /// Local names of the root's children built without content
    /// ([`Document::parse_data_skipping`]).
    skip: Vec<&'static str>,
    /// Items of a root's child built without content ([`SkipItems`]).
    /// Each with a search for the marker's start tag, made once.
    skip_items: Vec<(SkipItems, memmem::Finder<'static>)>,
}

type PResult<T> = Result<T, XmlError>;

impl<'input> Parser<'input> {
    fn new(text: &'input str, limits: Limits, keep_blank: bool) -> Self {
        let b = text.as_bytes();
        // Every node but the root starts at a `<` or ends at one (a text run): reserve
        // that bound once rather than grow (and copy) the arena while parsing.
        let tags = memchr::memchr_iter(b'<', b).count();
        let nodes_bound = tags.saturating_mul(2).min(limits.max_nodes as usize);
        let mut nodes = Vec::with_capacity(nodes_bound + 1);
        nodes.push(NodeData {
            kind: Kind::Root,
            parent: NONE,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
        });
        Self {
            text,
            b,
            pos: 0,
            limits,
            doc: Document {
                nodes,
                attrs: Vec::with_capacity(memchr::memchr_iter(b'=', b).count()),
                uris: vec![Cow::Borrowed(NS_XML_URI)],
                skipped: Vec::new(),
            },
            open: Vec::new(),
            scope: Vec::new(),
            pending: Vec::new(),
            open_text: NONE,
            open_text_prev: NONE,
            open_text_blank: false,
            keep_blank,
            skip: Vec::new(),
            skip_items: Vec::new(),
        }
    }

    /// Moves to the end tag of the element just opened (a child of the root), past its
    /// content, when that is plainly safe (see [`Document::parse_data_skipping`]).
    fn skip_content(&mut self) {
        if let Some(end) = self.skippable_end(None) {
            self.pos += end;
        }
    }

    /// Moves past the content of the item just opened when `SkipItems` marks it and that
    /// is plainly safe, and records it as skipped.
    fn skip_item(&mut self) {
        let (Some(open), Some(list)) = (self.open.last(), self.open.get(1)) else {
            return;
        };
        let node = open.node;
        let Some((items, find_marker)) = self
            .skip_items
            .iter()
            .find(|(i, _)| i.item == open.local && i.list == list.local)
        else {
            return;
        };
        // Cheap first, as most items are kept: the next marker, read as marking the
        // item. Only then is the item scanned for what makes passing over it safe.
        let rest = &self.b[self.pos..];
        let Some(at) = find_marker.find(rest) else {
            return;
        };
        let value_at = at + find_marker.needle().len();
        let Some(value_len) = items.marked_value(&rest[value_at..]) else {
            return;
        };
        if items.marked == Marked::First && !rest[..at].iter().all(|&c| is_space(c)) {
            return;
        }
        let Some(end) = self.skippable_end(Some((items.marker.as_bytes(), at))) else {
            return;
        };
        let value = self.pos + value_at;
        let marker = &self.text[value..value + value_len];
        self.pos += end;
        let index = self.doc.skipped.len() as u32;
        self.doc.skipped.push(marker);
        if let Kind::Element { skipped, .. } = &mut self.doc.nodes[node as usize].kind {
            *skipped = index;
        }
    }

    /// Where the end tag of the element just opened starts (from `pos`), when its content
    /// can be passed over plainly safely: no element of its name starts before the first
    /// end tag of its name (which therefore closes it), and no comment, CDATA section or
    /// PI lies in between. With `marked` (an item of [`SkipItems`]), also only when it
    /// starts the marker once, unprefixed (`<x:EventType>` could be the one a reader
    /// finds), and only at the offset given, before its end.
    fn skippable_end(&self, marked: Option<(&[u8], usize)>) -> Option<usize> {
        let open = self.open.last()?;
        let name = &self.b[open.name.clone()];
        let rest = &self.b[self.pos..];
        // Every `<` in order, up to the first end tag of this name (`</EventType` is
        // another's), each name read once: one pass, where a search per needle cost more
        // on short items.
        for i in memchr::memchr_iter(b'<', rest) {
            match rest.get(i + 1) {
                Some(b'!' | b'?') | None => return None,
                Some(b'/') if tag_name(&rest[i + 2..]) == name => {
                    return match marked {
                        Some((_, at)) if at >= i => None,
                        _ => Some(i),
                    };
                }
                Some(b'/') => {}
                Some(_) => {
                    let tag = tag_name(&rest[i + 1..]);
                    if tag == name {
                        return None;
                    }
                    if let Some((marker, at)) = marked {
                        let local = tag.rsplit(|&c| c == b':').next().unwrap_or(tag);
                        if local == marker && (i != at || tag.len() != marker.len()) {
                            return None;
                        }
                    }
                }
            }
        }
        None
    }

    #[cold]
    #[inline(never)]
    fn err(&self, kind: XmlErrorKind, at: usize) -> XmlError {
        let at = at.min(self.b.len());
        let before = &self.b[..at];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        // Columns count characters; `at` may sit inside one on a refused byte.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        XmlError {
            kind,
            offset: at,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.b[self.pos..].starts_with(s)
    }

    fn cur(&self) -> PResult<u8> {
        self.b
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(XmlErrorKind::UnexpectedEof, self.pos))
    }

    /// Skips XML whitespace byte by byte: inside tags there is seldom more than one, and
    /// [`skip_spaces_from`]'s word path made start tags dearer (EMIS: +0.5 M Ir).
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while self.pos < self.b.len() && is_space(self.b[self.pos]) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> PResult<()> {
        if self.cur()? != byte {
            return Err(self.err(XmlErrorKind::Expected(what), self.pos));
        }
        self.pos += 1;
        Ok(())
    }

    fn expect_str(&mut self, s: &'static [u8], what: &'static str) -> PResult<()> {
        if !self.starts_with(s) {
            return Err(self.err(XmlErrorKind::Expected(what), self.pos));
        }
        self.pos += s.len();
        Ok(())
    }

    fn run(mut self) -> PResult<Document<'input>> {
        self.declaration()?;
        self.misc()?;
        self.skip_spaces();
        if self.starts_with(b"<!DOCTYPE") {
            return Err(self.err(XmlErrorKind::DoctypeRefused, self.pos));
        }
        if self.b.get(self.pos) == Some(&b'<') && self.start_tag()? {
            self.content()?;
        }
        self.settle_text();
        self.misc()?;
        if !self.at_end() {
            return Err(self.err(XmlErrorKind::UnexpectedToken, self.pos));
        }
        if self.doc.nodes[0].first_child == NONE
            || !self.doc.root().children().any(|n| n.is_element())
        {
            return Err(self.err(XmlErrorKind::NoRootElement, self.pos));
        }
        if !self.open.is_empty() {
            return Err(self.err(XmlErrorKind::UnclosedRootElement, self.pos));
        }
        Ok(self.doc)
    }

    /// `<?xml version=… encoding=… standalone=…?>`, validated and dropped.
    fn declaration(&mut self) -> PResult<()> {
        if self.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.pos += 3;
        }
        if !self.starts_with(b"<?xml ") {
            return Ok(());
        }
        self.pos += 5;
        self.decl_spaces()?;
        if !self.starts_with(b"version") {
            return Err(self.err(XmlErrorKind::Expected("'version'"), self.pos));
        }
        self.decl_attribute()?;
        self.decl_spaces()?;
        if self.starts_with(b"encoding") {
            self.decl_attribute()?;
            self.decl_spaces()?;
        }
        if self.starts_with(b"standalone") {
            self.decl_attribute()?;
        }
        self.skip_spaces();
        self.expect_str(b"?>", "'?>'")
    }

    fn decl_spaces(&mut self) -> PResult<()> {
        if !self.skip_spaces() && !self.starts_with(b"?>") && !self.at_end() {
            return Err(self.err(XmlErrorKind::Expected("a whitespace"), self.pos));
        }
        Ok(())
    }

    fn decl_attribute(&mut self) -> PResult<()> {
        self.qname()?;
        self.eq()?;
        let quote = self.quote()?;
        let start = self.pos;
        let end = memchr2(quote, b'<', &self.b[start..]).map_or(self.b.len(), |i| start + i);
        self.check_chars(start, end)?;
        self.pos = end;
        self.expect(quote, "a closing quote")
    }

    /// Comments, PIs and whitespace around the root element.
    fn misc(&mut self) -> PResult<()> {
        while !self.at_end() {
            self.skip_spaces();
            if self.starts_with(b"<!--") {
                self.comment()?;
            } else if self.starts_with(b"<?") {
                self.pi()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn content(&mut self) -> PResult<()> {
        while self.pos < self.b.len() {
            if self.b[self.pos] != b'<' {
                self.text_run()?;
                continue;
            }
            match self.b.get(self.pos + 1) {
                Some(b'!') => {
                    if self.starts_with(b"<!--") {
                        self.comment()?;
                    } else if self.starts_with(b"<![CDATA[") {
                        self.cdata()?;
                    } else {
                        return Err(self.err(XmlErrorKind::UnexpectedToken, self.pos));
                    }
                }
                Some(b'?') => self.pi()?,
                Some(b'/') => {
                    self.close_tag()?;
                    if self.open.is_empty() {
                        break;
                    }
                }
                Some(_) => {
                    self.start_tag()?;
                }
                None => return Err(self.err(XmlErrorKind::UnexpectedToken, self.pos)),
            }
        }
        Ok(())
    }

    fn parent(&self) -> u32 {
        self.open.last().map_or(0, |e| e.node)
    }

    // Inlined: it runs once per node built, and the call cost as much as its work.
    #[inline(always)]
    fn append(&mut self, kind: Kind<'input>, at: usize) -> PResult<u32> {
        self.settle_text();
        if self.doc.nodes.len() >= self.limits.max_nodes as usize {
            return Err(self.err(XmlErrorKind::TooManyNodes, at));
        }
        let id = self.doc.nodes.len() as u32;
        let parent = self.parent();
        self.doc.nodes.push(NodeData {
            kind,
            parent,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
        });
        let p = &mut self.doc.nodes[parent as usize];
        let prev = p.last_child;
        p.last_child = id;
        if prev == NONE {
            p.first_child = id;
        } else {
            self.doc.nodes[prev as usize].next_sibling = id;
        }
        self.open_text = NONE;
        Ok(id)
    }

    /// Ends the open text node; without `keep_blank`, takes it back out of the tree when
    /// it holds only whitespace.
    #[inline]
    fn settle_text(&mut self) {
        let id = std::mem::replace(&mut self.open_text, NONE);
        // `open_text_blank` is never set when blank text is kept.
        if id != NONE && self.open_text_blank {
            self.retract_text(id);
        }
    }

    /// Takes the text node `id` out of the tree. It is the last node built, so it is the
    /// arena's last entry and its parent's last child.
    fn retract_text(&mut self, id: u32) {
        if id as usize + 1 != self.doc.nodes.len() {
            return;
        }
        let parent = self.doc.nodes[id as usize].parent as usize;
        let prev = self.open_text_prev;
        self.doc.nodes.pop();
        self.doc.nodes[parent].last_child = prev;
        if prev == NONE {
            self.doc.nodes[parent].first_child = NONE;
        } else {
            self.doc.nodes[prev as usize].next_sibling = NONE;
        }
    }

    fn append_text(&mut self, text: Cow<'input, str>, at: usize) -> PResult<()> {
        let blank = !self.keep_blank && text.bytes().all(is_space);
        if self.open_text != NONE {
            self.open_text_blank &= blank;
            if let Kind::Text(t) = &mut self.doc.nodes[self.open_text as usize].kind {
                t.to_mut().push_str(&text);
            }
            return Ok(());
        }
        let prev = self.doc.nodes[self.parent() as usize].last_child;
        let id = self.append(Kind::Text(text), at)?;
        self.open_text = id;
        self.open_text_prev = prev;
        self.open_text_blank = blank;
        Ok(())
    }

    /// Checks `b[start..end]` holds only XML characters.
    fn check_chars(&self, start: usize, end: usize) -> PResult<Scan> {
        let mut scan = Scan::default();
        let b = &self.b[start..end];
        let mut i = plain_words(b);
        while i < b.len() {
            match CLASS[b[i] as usize] {
                PLAIN | GT => {}
                REWRITE => scan.rewrite = true,
                WS => scan.ws = true,
                EF => {
                    if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
                        return Err(self.err(XmlErrorKind::NonXmlChar, start + i));
                    }
                }
                _ => return Err(self.err(XmlErrorKind::NonXmlChar, start + i)),
            }
            i += 1;
        }
        Ok(scan)
    }

    fn text_run(&mut self) -> PResult<()> {
        let start = self.pos;
        if !self.keep_blank && self.open_text == NONE {
            // Indentation before a tag, the commonest run in a data document: not built.
            // Blank text that a CDATA section may join, or that ends the input, is built
            // and taken back out by `settle_text` if it is still blank when it ends.
            let j = skip_spaces_from(self.b, start);
            if self.b.get(j) == Some(&b'<') && !self.b[j..].starts_with(b"<![CDATA[") {
                self.pos = j;
                return Ok(());
            }
        }
        let end = memchr(b'<', &self.b[start..]).map_or(self.b.len(), |i| start + i);
        let b = &self.b[start..end];
        let mut rewrite = false;
        let mut i = plain_words(b);
        while i < b.len() {
            match CLASS[b[i] as usize] {
                PLAIN | WS => {}
                REWRITE => rewrite = true,
                GT => {
                    if i >= 2 && b[i - 1] == b']' && b[i - 2] == b']' {
                        return Err(self.err(XmlErrorKind::CdataEndInText, end));
                    }
                }
                EF => {
                    if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
                        return Err(self.err(XmlErrorKind::NonXmlChar, start + i));
                    }
                }
                _ => return Err(self.err(XmlErrorKind::NonXmlChar, start + i)),
            }
            i += 1;
        }
        self.pos = end;
        let raw = &self.text[start..end];
        let text = if rewrite {
            Cow::Owned(self.unescape_text(raw, start)?)
        } else {
            Cow::Borrowed(raw)
        };
        self.append_text(text, start)
    }

    /// Resolves references and turns CR LF and lone CR into LF.
    fn unescape_text(&self, raw: &str, start: usize) -> PResult<String> {
        let b = raw.as_bytes();
        let mut out = String::with_capacity(raw.len());
        let mut i = 0;
        while i < b.len() {
            let next = memchr2(b'&', b'\r', &b[i..]).map_or(b.len(), |k| i + k);
            out.push_str(&raw[i..next]);
            i = next;
            if i == b.len() {
                break;
            }
            if b[i] == b'\r' {
                out.push('\n');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            } else {
                let (c, len) = self.reference(raw, i, start)?;
                out.push(c);
                i += len;
            }
        }
        Ok(out)
    }

    /// Normalises an attribute value: references resolved, TAB, LF, CR and CR LF as one
    /// space each (characters from references are kept as they are).
    fn attribute_value(&self, raw: &str, start: usize) -> PResult<String> {
        let b = raw.as_bytes();
        let mut out = String::with_capacity(raw.len());
        let mut i = 0;
        while i < b.len() {
            let run = b[i..]
                .iter()
                .position(|&c| matches!(c, b'&' | b'\t' | b'\n' | b'\r'))
                .map_or(b.len(), |k| i + k);
            out.push_str(&raw[i..run]);
            i = run;
            if i == b.len() {
                break;
            }
            match b[i] {
                b'&' => {
                    let (c, len) = self.reference(raw, i, start)?;
                    out.push(c);
                    i += len;
                }
                b'\r' if b.get(i + 1) == Some(&b'\n') => {
                    out.push(' ');
                    i += 2;
                }
                _ => {
                    out.push(' ');
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// The reference at `raw[i]` (an `&`): its character and length in bytes.
    fn reference(&self, raw: &str, i: usize, start: usize) -> PResult<(char, usize)> {
        let bad = || self.err(XmlErrorKind::MalformedReference, start + i);
        let rest = &raw.as_bytes()[i + 1..];
        let semi = memchr(b';', rest).ok_or_else(bad)?;
        let body = &raw[i + 1..i + 1 + semi];
        let c = match body {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let (digits, radix) = if let Some(hex) = body.strip_prefix("#x") {
                    (hex, 16)
                } else if let Some(dec) = body.strip_prefix('#') {
                    (dec, 10)
                } else {
                    return Err(bad());
                };
                let ok = !digits.is_empty()
                    && digits.bytes().all(|d| {
                        if radix == 16 {
                            d.is_ascii_hexdigit()
                        } else {
                            d.is_ascii_digit()
                        }
                    });
                if !ok {
                    return Err(bad());
                }
                let n = u32::from_str_radix(digits, radix).map_err(|_| bad())?;
                let c = char::from_u32(n).ok_or_else(bad)?;
                if !is_xml_char(c) {
                    return Err(bad());
                }
                c
            }
        };
        Ok((c, semi + 2))
    }

    fn comment(&mut self) -> PResult<()> {
        let start = self.pos;
        self.pos += 4;
        let end = memmem::find(&self.b[self.pos..], b"-->")
            .map(|i| self.pos + i)
            .ok_or_else(|| self.err(XmlErrorKind::UnexpectedEof, self.b.len()))?;
        self.check_chars(self.pos, end)?;
        let text = &self.text[self.pos..end];
        if text.contains("--") || text.ends_with('-') {
            return Err(self.err(XmlErrorKind::InvalidComment, start));
        }
        self.pos = end + 3;
        self.append(Kind::Comment(text), start)?;
        Ok(())
    }

    fn pi(&mut self) -> PResult<()> {
        if self.starts_with(b"<?xml ") {
            return Err(self.err(XmlErrorKind::MisplacedDeclaration, self.pos));
        }
        let start = self.pos;
        self.pos += 2;
        let target = self.name()?;
        self.skip_spaces();
        let end = memmem::find(&self.b[self.pos..], b"?>")
            .map(|i| self.pos + i)
            .ok_or_else(|| self.err(XmlErrorKind::UnexpectedEof, self.b.len()))?;
        self.check_chars(self.pos, end)?;
        let value = (end > self.pos).then(|| &self.text[self.pos..end]);
        self.pos = end + 2;
        self.append(Kind::Pi { target, value }, start)?;
        Ok(())
    }

    fn cdata(&mut self) -> PResult<()> {
        let start = self.pos + 9;
        let end = memmem::find(&self.b[start..], b"]]>")
            .map(|i| start + i)
            .ok_or_else(|| self.err(XmlErrorKind::UnexpectedEof, self.b.len()))?;
        let scan = self.check_chars(start, end)?;
        self.pos = end + 3;
        let raw = &self.text[start..end];
        let text = if scan.rewrite && raw.contains('\r') {
            Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
        } else {
            Cow::Borrowed(raw)
        };
        self.append_text(text, start)
    }

    /// A Name (PI targets): name characters, the first a name start character.
    fn name(&mut self) -> PResult<&'input str> {
        let start = self.pos;
        let mut chars = self.text[start..].chars();
        match chars.next() {
            Some(c) if is_name_start_char(c) => self.pos += c.len_utf8(),
            _ => return Err(self.err(XmlErrorKind::InvalidName, start)),
        }
        for c in chars {
            if !is_name_char(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        Ok(&self.text[start..self.pos])
    }

    /// A qualified name: (prefix, local); the prefix is empty when there is none. Inlined:
    /// it runs for every start tag.
    #[inline(always)]
    fn qname(&mut self) -> PResult<(&'input str, &'input str)> {
        let start = self.pos;
        let b = self.b;
        let mut i = start;
        let mut colon = None;
        loop {
            // The ASCII name characters, in a loop of their own: most names are only those.
            while b.get(i).is_some_and(|&c| QNAME[c as usize] == Q_NAME) {
                i += 1;
            }
            let Some(&c) = b.get(i) else { break };
            match QNAME[c as usize] {
                Q_COLON => {
                    if colon.is_some() {
                        return Err(self.err(XmlErrorKind::InvalidName, start));
                    }
                    colon = Some(i);
                    i += 1;
                }
                Q_NON_ASCII => match self.text[i..].chars().next() {
                    Some(ch) if is_name_char(ch) => i += ch.len_utf8(),
                    _ => break,
                },
                _ => break,
            }
        }
        self.pos = i;
        let (prefix, local) = match colon {
            Some(c) => (&self.text[start..c], &self.text[c + 1..i]),
            None => ("", &self.text[start..i]),
        };
        let starts_ok = |s: &str| match s.as_bytes().first() {
            Some(&c) if c < 128 => NAME[c as usize] == 1,
            Some(_) => s.chars().next().is_some_and(is_name_start_char),
            None => false,
        };
        if (!prefix.is_empty() && !starts_ok(prefix)) || !starts_ok(local) {
            return Err(self.err(XmlErrorKind::InvalidName, start));
        }
        Ok((prefix, local))
    }

    fn eq(&mut self) -> PResult<()> {
        self.skip_spaces();
        self.expect(b'=', "'='")?;
        self.skip_spaces();
        Ok(())
    }

    fn quote(&mut self) -> PResult<u8> {
        let c = self.cur()?;
        if c != b'"' && c != b'\'' {
            return Err(self.err(XmlErrorKind::Expected("a quote"), self.pos));
        }
        self.pos += 1;
        Ok(c)
    }

    fn lookup(&self, prefix: Option<&str>) -> Option<u32> {
        self.scope
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|&(_, uri)| uri)
    }

    /// `<` Name (S Attribute)* S? (`>` | `/>`). Returns true for a start tag (content follows).
    fn start_tag(&mut self) -> PResult<bool> {
        let start = self.pos;
        self.pos += 1;
        let (prefix, local) = self.qname()?;
        let name = start + 1..self.pos;
        if prefix == "xmlns" {
            return Err(self.err(XmlErrorKind::XmlnsElementPrefix, start + 1));
        }
        let ns_len = self.scope.len();
        self.pending.clear();
        let open = loop {
            let had_space = self.skip_spaces();
            match self.cur()? {
                b'/' => {
                    self.pos += 1;
                    self.expect(b'>', "'>'")?;
                    break false;
                }
                b'>' => {
                    self.pos += 1;
                    break true;
                }
                _ => {
                    if !had_space {
                        return Err(self.err(XmlErrorKind::Expected("a whitespace"), self.pos));
                    }
                    self.attribute(ns_len)?;
                }
            }
        };

        let ns = if prefix.is_empty() {
            self.lookup(None).unwrap_or(NONE)
        } else {
            self.lookup(Some(prefix))
                .ok_or_else(|| self.err(XmlErrorKind::UnknownPrefix(prefix.into()), start + 1))?
        };
        let attrs = self.resolve_attributes()?;
        if self.open.len() >= self.limits.max_depth as usize {
            return Err(self.err(XmlErrorKind::TooDeep, start));
        }
        let node = self.append(
            Kind::Element {
                local,
                ns,
                attrs,
                skipped: NONE,
            },
            start,
        )?;
        if open {
            self.open.push(OpenElement {
                node,
                name,
                prefix,
                local,
                ns_len,
            });
            if self.open.len() == 2 && self.skip.contains(&local) {
                self.skip_content();
            } else if self.open.len() == 3 && !self.skip_items.is_empty() {
                self.skip_item();
            }
        } else {
            self.scope.truncate(ns_len);
        }
        Ok(open)
    }

    fn attribute(&mut self, ns_len: usize) -> PResult<()> {
        let at = self.pos;
        let (prefix, local) = self.qname()?;
        self.eq()?;
        let quote = self.quote()?;
        let start = self.pos;
        let end = match memchr2(quote, b'<', &self.b[start..]) {
            Some(i) if self.b[start + i] == quote => start + i,
            Some(i) => return Err(self.err(XmlErrorKind::Expected("a closing quote"), start + i)),
            None => return Err(self.err(XmlErrorKind::UnexpectedEof, self.b.len())),
        };
        let scan = self.check_chars(start, end)?;
        self.pos = end + 1;
        let raw = &self.text[start..end];
        let value = if scan.rewrite || scan.ws {
            Cow::Owned(self.attribute_value(raw, start)?)
        } else {
            Cow::Borrowed(raw)
        };

        if prefix == "xmlns" {
            if value == NS_XMLNS_URI || value.is_empty() {
                return Err(self.err(XmlErrorKind::ReservedNamespace, at));
            }
            let is_xml_uri = value == NS_XML_URI;
            if (local == "xml") != is_xml_uri {
                return Err(self.err(XmlErrorKind::ReservedNamespace, at));
            }
            if self.scope[ns_len..].iter().any(|(p, _)| *p == Some(local)) {
                return Err(self.err(XmlErrorKind::DuplicateNamespace(local.into()), at));
            }
            // `xml` is always bound (for attributes); it is not put in scope, as roxmltree.
            if !is_xml_uri {
                self.bind(Some(local), value);
            }
        } else if prefix.is_empty() && local == "xmlns" {
            if value == NS_XML_URI || value == NS_XMLNS_URI {
                return Err(self.err(XmlErrorKind::ReservedNamespace, at));
            }
            if self.scope[ns_len..].iter().any(|(p, _)| p.is_none()) {
                return Err(self.err(XmlErrorKind::DuplicateAttribute("xmlns".into()), at));
            }
            if value.is_empty() {
                self.scope.push((None, NONE));
            } else {
                self.bind(None, value);
            }
        } else {
            self.pending.push(PendingAttr {
                prefix,
                local,
                value,
                at,
            });
        }
        Ok(())
    }

    fn bind(&mut self, prefix: Option<&'input str>, uri: Cow<'input, str>) {
        let idx = self.doc.uris.len() as u32;
        self.doc.uris.push(uri);
        self.scope.push((prefix, idx));
    }

    fn resolve_attributes(&mut self) -> PResult<(u32, u32)> {
        let first = self.doc.attrs.len() as u32;
        if self.pending.is_empty() {
            return Ok((first, first));
        }
        let mut pending = std::mem::take(&mut self.pending);
        for a in pending.drain(..) {
            let ns = match a.prefix {
                "" => NONE,
                "xml" => 0,
                p => self
                    .lookup(Some(p))
                    .ok_or_else(|| self.err(XmlErrorKind::UnknownPrefix(p.into()), a.at))?,
            };
            let uri = self.doc.uri(ns);
            if self.doc.attrs[first as usize..]
                .iter()
                .any(|b| b.local == a.local && self.doc.uri(b.ns) == uri)
            {
                return Err(self.err(XmlErrorKind::DuplicateAttribute(a.local.into()), a.at));
            }
            self.doc.attrs.push(AttrData {
                local: a.local,
                ns,
                value: a.value,
            });
        }
        self.pending = pending;
        Ok((first, self.doc.attrs.len() as u32))
    }

    fn close_tag(&mut self) -> PResult<()> {
        let start = self.pos;
        self.pos += 2;
        // Fast path: the open element's name, byte for byte, then the end of the name.
        if let Some(open) = self.open.last() {
            let name = &self.b[open.name.clone()];
            let end = self.pos + name.len();
            if self.b[self.pos..].starts_with(name)
                && self
                    .b
                    .get(end)
                    .is_some_and(|&c| QNAME[c as usize] == Q_STOP)
            {
                self.pos = end;
                self.skip_spaces();
                self.expect(b'>', "'>'")?;
                if let Some(open) = self.open.pop() {
                    self.scope.truncate(open.ns_len);
                }
                self.settle_text();
                return Ok(());
            }
        }
        let (prefix, local) = self.qname()?;
        self.skip_spaces();
        self.expect(b'>', "'>'")?;
        let Some(open) = self.open.pop() else {
            return Err(self.err(XmlErrorKind::UnexpectedToken, start));
        };
        if open.prefix != prefix || open.local != local {
            let q = |p: &str, l: &str| {
                if p.is_empty() {
                    l.to_owned()
                } else {
                    format!("{p}:{l}")
                }
            };
            return Err(self.err(
                XmlErrorKind::MismatchedCloseTag {
                    expected: q(open.prefix, open.local),
                    found: q(prefix, local),
                },
                start,
            ));
        }
        self.scope.truncate(open.ns_len);
        self.settle_text();
        Ok(())
    }
}

/// Differential tests: roxmltree is the oracle for what this parser accepts and builds.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod xml_diff_tests {
    use super::*;

    /// One line per node in document order: depth, kind, name, attributes, text.
    /// CR is compared as LF and an empty namespace as none (documented differences).
    fn ours(doc: &Document) -> Vec<String> {
        dump(doc.descendants())
    }

    /// A text node holding only XML whitespace: what [`Document::parse_data`] leaves out.
    fn blank(n: &Node) -> bool {
        n.is_text() && n.text().is_some_and(|t| t.bytes().all(is_space))
    }

    fn dump<'a, 'i: 'a>(nodes: impl Iterator<Item = Node<'a, 'i>>) -> Vec<String> {
        nodes
            .map(|n| {
                let depth = n.ancestors().count();
                let body = match n.node_type() {
                    NodeType::Root => "root".to_owned(),
                    NodeType::Element => {
                        let attrs: Vec<String> = n
                            .attributes()
                            .map(|a| format!("{:?}{}={:?}", a.namespace(), a.name(), a.value()))
                            .collect();
                        let t = n.tag_name();
                        format!("el {:?}{} {attrs:?}", t.namespace(), t.name())
                    }
                    NodeType::Text => format!("text {:?}", n.text().unwrap().replace('\r', "\n")),
                    NodeType::Comment => format!("comment {:?}", n.text().unwrap()),
                    NodeType::ProcessingInstruction => format!("pi {:?}", n.pi().unwrap()),
                };
                format!("{depth} {body}")
            })
            .collect()
    }

    fn oracle(doc: &roxmltree::Document) -> Vec<String> {
        let ns = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        doc.descendants()
            .map(|n| {
                let depth = n.ancestors().count();
                let body = match n.node_type() {
                    roxmltree::NodeType::Root => "root".to_owned(),
                    roxmltree::NodeType::Element => {
                        let attrs: Vec<String> = n
                            .attributes()
                            .map(|a| format!("{:?}{}={:?}", ns(a.namespace()), a.name(), a.value()))
                            .collect();
                        let t = n.tag_name();
                        format!("el {:?}{} {attrs:?}", ns(t.namespace()), t.name())
                    }
                    roxmltree::NodeType::Text => {
                        format!("text {:?}", n.text().unwrap().replace('\r', "\n"))
                    }
                    roxmltree::NodeType::Comment => format!("comment {:?}", n.text().unwrap()),
                    roxmltree::NodeType::PI => {
                        let pi = n.pi().unwrap();
                        format!("pi {:?}", (pi.target, pi.value))
                    }
                };
                format!("{depth} {body}")
            })
            .collect()
    }

    /// The tree `parse_data` builds with the content of the root's children named `skip`
    /// left out (what `parse_data_skipping` must build wherever it skips).
    fn without_content_of(text: &str, skip: &str) -> Vec<String> {
        let doc = Document::parse_data(text).unwrap();
        let kept = doc.descendants().filter(|n| {
            !n.ancestors().any(|a| {
                a != *n
                    && a.parent().is_some_and(|p| p == doc.root_element())
                    && a.tag_name().name() == skip
            })
        });
        dump(kept)
    }

    #[test]
    fn a_skipped_list_is_built_empty_and_only_where_plainly_safe() {
        let skipped = |text: &str| ours(&Document::parse_data_skipping(text, &["B"]).unwrap());
        let whole = |text: &str| ours(&Document::parse_data(text).unwrap());
        // Skipped: the root's child <B>, its attributes kept; <B> deeper is built whole.
        for text in [
            "<r><a>1</a><B x='1'><c>2<d/></c>text</B><e><B><c/></B></e></r>",
            "<r xmlns='urn:x'><B ><c>&amp;</c></B ><B/><Bx><c/></Bx></r>",
            "<r><B><c>a</c><Bc/><cB>b</cB></B><z/></r>",
            // `</Bx` ends another element's name: the first end tag of B is `</B>`.
            "<r><B><Bx></Bx></B></r>",
            "<r><B><Bx>1</Bx ><c/></B ></r>",
        ] {
            assert_eq!(skipped(text), without_content_of(text, "B"), "{text}");
            assert_ne!(skipped(text), whole(text), "{text}");
        }
        // Not skipped, built whole: a comment, CDATA or PI inside; a nested <B>.
        for text in [
            "<r><B><!-- </B> --><c/></B></r>",
            "<r><B><![CDATA[</B>]]><c/></B></r>",
            "<r><B><?pi </B>?><c/></B></r>",
            "<r><B><B><c/></B><c/></B></r>",
            "<r><B><B/><c/></B></r>",
            "<r><B><B ><c/></B></B></r>",
        ] {
            assert_eq!(skipped(text), whole(text), "{text}");
        }
        // Outside what is skipped, a fault is still refused; inside it, it is not read.
        assert!(Document::parse_data_skipping("<r><B><c/></B><d></r>", &["B"]).is_err());
        assert!(Document::parse_data_skipping("<r><B><c></B><d/></r>", &["B"]).is_ok());
        assert!(Document::parse_data("<r><B><c></B><d/></r>").is_err());
        // A body cut inside the skipped element is refused.
        assert!(Document::parse_data_skipping("<r><B><c/>", &["B"]).is_err());
    }

    #[test]
    fn marked_items_are_built_empty_and_only_where_plainly_safe() {
        let items = SkipItems {
            list: "L",
            item: "E",
            marker: "T",
            marked: Marked::Reading(vec!["no", "nor"]),
        };
        fn parse<'t>(text: &'t str, items: &SkipItems) -> Result<Document<'t>, XmlError> {
            Document::parse_data_skipping_items(text, &[], std::slice::from_ref(items))
        }
        // (text, which items of L are skipped, in order)
        for (text, expected) in [
            (
                "<r><L><E><T>no</T><c>1</c></E><E x='1'><T>yes</T><c/></E><E><c/><T>nor</T></E></L></r>",
                vec![true, false, true],
            ),
            // Not marked: another value, spaces, no marker, a marker twice or prefixed.
            (
                "<r><L><E><T>nob</T></E><E><T> no</T></E><E><c/></E></L></r>",
                vec![false; 3],
            ),
            (
                "<r><L><E><T>no</T><T>no</T></E><E><T>no</T><x:T xmlns:x='u'>yes</x:T></E></L></r>",
                vec![false; 2],
            ),
            (
                "<r><L><E><Tx>no</Tx></E><E><T a='1'>no</T></E></L></r>",
                vec![false; 2],
            ),
            // Not plainly safe: a comment, a PI, CDATA or a nested item inside.
            (
                "<r><L><E><T>no</T><!-- x --></E><E><T>no</T><?p?></E></L></r>",
                vec![false; 2],
            ),
            (
                "<r><L><E><T>no</T><![CDATA[x]]></E><E><T>no</T><E/></E></L></r>",
                vec![false; 2],
            ),
        ] {
            let doc = parse(text, &items).unwrap();
            let list = doc.root_element().first_child().unwrap();
            let found: Vec<bool> = list
                .children()
                .filter(|n| n.tag_name().name() == "E")
                .map(|n| n.content_skipped())
                .collect();
            assert_eq!(found, expected, "{text}");
            for e in list.children().filter(|n| n.tag_name().name() == "E") {
                if e.content_skipped() {
                    assert_eq!(e.children().count(), 0, "{text}");
                } else {
                    // Built whole, as parse_data builds it.
                    assert!(e.children().count() > 0, "{text}");
                }
            }
            let whole = Document::parse_data(text).unwrap();
            assert_eq!(
                whole.descendants().filter(|n| n.content_skipped()).count(),
                0
            );
        }
        // Items elsewhere than the root's list L are built whole.
        let doc = parse(
            "<r><M><E><T>no</T></E></M><L><x><E><T>no</T></E></x></L></r>",
            &items,
        )
        .unwrap();
        assert_eq!(doc.descendants().filter(|n| n.content_skipped()).count(), 0);
        // A fault outside a skipped item is still refused; inside it, it is not read.
        assert!(parse("<r><L><E><T>no</T><c></E></L></r>", &items).is_ok());
        assert!(parse("<r><L><E><T>yes</T><c></E></L></r>", &items).is_err());
        assert!(parse("<r><L><E><T>no</T></E><d></L></r>", &items).is_err());
    }

    #[test]
    fn items_wanted_for_their_ids_keep_the_marker_first_in_them() {
        let ids = SkipItems {
            list: "C",
            item: "E",
            marker: "Id",
            marked: Marked::First,
        };
        let events = SkipItems {
            list: "L",
            item: "E",
            marker: "T",
            marked: Marked::Reading(vec!["no"]),
        };
        // (text, each E of C: its marker when skipped, None when built whole)
        for (text, expected) in [
            (
                "<r><C><E>\n  <Id>a-1</Id><x><y/></x></E><E><Id> b 2 </Id></E></C></r>",
                vec![Some("a-1"), Some(" b 2 ")],
            ),
            // Built whole: the marker not first, empty, holding markup or a reference,
            // given twice or prefixed; a comment inside.
            (
                "<r><C><E><x/><Id>a</Id></E><E><Id/></E><E><Id><b/></Id></E></C></r>",
                vec![None; 3],
            ),
            (
                "<r><C><E><Id>a&amp;b</Id></E><E><Id>a</Id><Id>b</Id></E></C></r>",
                vec![None; 2],
            ),
            (
                "<r><C><E><Id>a</Id><p:Id xmlns:p='u'>b</p:Id></E><E><Id>a</Id><!-- c --></E></C></r>",
                vec![None; 2],
            ),
            // An empty text is skipped (an id the reader then refuses).
            ("<r><C><E><Id></Id><x/></E></C></r>", vec![Some("")]),
        ] {
            let doc =
                Document::parse_data_skipping_items(text, &[], &[events.clone(), ids.clone()])
                    .unwrap();
            let list = doc.root_element().first_child().unwrap();
            let found: Vec<Option<&str>> = list.children().map(|n| n.skipped_marker()).collect();
            assert_eq!(found, expected, "{text}");
            for e in list.children() {
                assert_eq!(e.content_skipped(), e.skipped_marker().is_some(), "{text}");
                assert_eq!(e.content_skipped(), e.children().count() == 0, "{text}");
            }
        }
        // Both lists at once, each by its own rule; an item named alike elsewhere is not.
        let text = "<r><C><E><Id>a</Id></E></C><L><E><T>no</T></E><E><T>yes</T></E><E><Id>a</Id></E></L></r>";
        let doc = Document::parse_data_skipping_items(text, &[], &[events, ids]).unwrap();
        let markers: Vec<Option<&str>> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "E")
            .map(|n| n.skipped_marker())
            .collect();
        assert_eq!(markers, vec![Some("a"), Some("no"), None, None]);
    }

    /// Refusals roxmltree does not make (see the module docs).
    fn deliberately_stricter(e: &XmlErrorKind) -> bool {
        match e {
            XmlErrorKind::TooDeep
            | XmlErrorKind::TooManyNodes
            | XmlErrorKind::MalformedReference
            | XmlErrorKind::ReservedNamespace => true,
            XmlErrorKind::DuplicateAttribute(a) => a == "xmlns",
            _ => false,
        }
    }

    /// Both accept with the same tree, or both refuse (or we refuse deliberately).
    fn check(text: &str) -> bool {
        let mine = Document::parse(text);
        let theirs = roxmltree::Document::parse(text);
        let data = Document::parse_data(text);
        match (&mine, &data) {
            (Ok(m), Ok(d)) => assert_eq!(
                dump(m.descendants().filter(|n| !blank(n))),
                ours(d),
                "parse_data differs for {text:?}"
            ),
            (Err(m), Err(d)) => assert_eq!(m, d, "parse_data refuses differently"),
            _ => panic!("parse_data accepts differently for {text:?}: {data:?}"),
        }
        match (&mine, &theirs) {
            (Ok(m), Ok(t)) => {
                assert_eq!(ours(m), oracle(t), "trees differ for {text:?}");
                true
            }
            (Err(_), Err(_)) => false,
            (Err(e), Ok(_)) if deliberately_stricter(&e.kind) => false,
            _ => panic!("accept/refuse differ for {text:?}: ours {mine:?}, roxmltree {theirs:?}"),
        }
    }

    #[test]
    fn simulator_records_parse_as_roxmltree_does() {
        use gp_sim::{Population, PopulationSpec, SystemKind};
        let population = Population::generate(20_261_123, &PopulationSpec::sandbox());
        let mut checked = 0;
        for p in &population.patients {
            let Some(practice) = population.practice(&p.practice) else {
                continue;
            };
            let xml = match practice.system {
                SystemKind::Emis => gp_sim::emis::render_record(practice, p),
                SystemKind::Tpp => gp_sim::tpp::render_page(practice, p, 0, 1000),
                _ => continue,
            };
            assert!(check(&xml), "simulator XML refused");
            checked += 1;
        }
        assert!(checked > 0);
    }

    const WELL_FORMED: &[&str] = &[
        "<a/>",
        // Blank text, which `parse_data` leaves out: on its own, joined by CDATA, from
        // references, beside comments and PIs, and non-XML whitespace that is kept.
        "<r>\n  <a> </a>\n  <b>\t\r\n</b>\n</r>",
        "<r>  <![CDATA[]]>  <a/> \r\n<![CDATA[ x ]]></r>",
        "<r><![CDATA[ ]]>  </r>",
        "<r>x<![CDATA[]]> </r>",
        "<r> <!-- c -->  <?p?> <a>&#32;&#x9;</a> </r>",
        "<r>&#32;<a/>&#xA;<b/>\u{a0}</r>",
        "<a></a>",
        "\u{feff}<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<a/>\n",
        "<?xml version=\"1.0\"?><!-- c --><?pi data?><a/><!--x--> <?p?>",
        "<a>x &lt; &gt; &amp; &apos; &quot; &#65; &#x42; &#x1F600;</a>",
        "<a>t1<![CDATA[ <b> & ]]>t2&amp;<!--c-->t3</a>",
        "<a><![CDATA[]]></a>",
        "<a>\r\n x\r y \r</a>",
        "<a><![CDATA[\r\nx\ry]]></a>",
        "<a b=' x\ty\nz\r\nw &#9;&#10;&#13; &lt;'/>",
        "<a b=\"1\" c='2' d = \"'\" e='\"'/>",
        "<a xmlns='urn:d' xmlns:p='urn:p'><p:b p:x='1' x='2'><c xmlns=''/></p:b></a>",
        "<p:a xmlns:p='urn:p'><p:b/></p:a >",
        "<a xml:lang='en'/>",
        "<a xmlns:xml='http://www.w3.org/XML/1998/namespace'/>",
        "<a xmlns:p='urn:1'><b xmlns:p='urn:2'><p:c/></b><p:d/></a>",
        "<é名 ñ='1'>ü</é名>",
        "<a>]]</a>",
        "<a>a > b ]] ></a>",
        "<a>\u{7f}\u{85}\u{fffd}</a>",
        "<:a/>",
        "<?xml version='1.0'?>\n<r>\n  <x>1</x>\n  <y/>\n</r>",
        "<a><?t?><?xml-stylesheet x?></a>",
        "<a>&#x10FFFF;</a>",
        // Runs longer than a word: special bytes at and across 8-byte boundaries.
        "<a>abcdefg&amp;hijklmnopqrstuvw&lt;</a>",
        "<a>abcdefgh]]xyz > 0123456]]</a>",
        "<a>0123456789abcdef\u{7f}ghijklm\u{e9}nopqrstuv\u{fffd}wxyz</a>",
        "<a>0123456789abcdef\r\nghijklmnopqrstuv\tw</a>",
        "<r>\n                  <x>deep</x>\n                \n\t</r>",
        "<a b='abcdefgh&amp;ijklmnop\tq\r\nr' c='0123456789>abcdef\u{e9}ghijklmn'/>",
        "<a><!-- abcdefghijklmnop \u{e9} qrstuvwx --><![CDATA[abcdefgh\r\nijklmnop<q]]></a>",
    ];

    const MALFORMED: &[&str] = &[
        "",
        "   ",
        // Blank text that ends the input: `parse_data` must refuse it as `parse` does.
        "<r><a/>  ",
        "<r><![CDATA[]]>  ",
        "text",
        "<a>",
        "<a></b>",
        "<a></a><b/>",
        "<a/>text",
        "<a b='1' b='2'/>",
        "<a b=1/>",
        "<a b='<'/>",
        "<a b='1'c='2'/>",
        "<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>",
        "<p:a/>",
        "<a p:b='1'/>",
        "<xmlns:a/>",
        "<xml:a/>",
        "<a xmlns:xml='urn:x'/>",
        "<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
        "<a xmlns='http://www.w3.org/2000/xmlns/'/>",
        "<a xmlns:p='u' xmlns:p='v'/>",
        "<!DOCTYPE a><a/>",
        "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
        "<a><!DOCTYPE a></a>",
        "<a>&e;</a>",
        "<a>&amp</a>",
        "<a>& b</a>",
        "<a>&#0;</a>",
        "<a>&#x;</a>",
        "<a>&#X41;</a>",
        "<a>&#99999999999;</a>",
        "<a>\u{1}</a>",
        "<a>\u{fffe}</a>",
        "<a b='\u{1}'/>",
        "<a>]]></a>",
        "<a><!-- a -- b --></a>",
        "<a><!-- a ---></a>",
        "<a><!-- a </a>",
        "<a><![CDATA[ x </a>",
        "<a><?xml version='1.0'?></a>",
        " <?xml version='1.0'?><a/>",
        "<a><?pi</a>",
        "<1a/>",
        "<a:/>",
        "<a::b/>",
        "<a/ >",
        "< a/>",
        "<a></ a>",
        "<a",
        "<a b",
        "<a b=",
        "<a b='",
        "<?xml version='1.0'?>",
        "<?xml encoding='UTF-8'?><a/>",
        "<?xml version='1.0'encoding='UTF-8'?><a/>",
        "<a><b></a></b>",
        "<a>\u{0}</a>",
        "<a>abcdefg]]>hijklmnop</a>",
        "<a>abcdefghijklmno]]>p</a>",
        "<a>abcdefghijklmnop\u{1f}q</a>",
        "<a>abcdefgh\u{ffff}ijklmnop</a>",
        "<a b='abcdefghijklmnop\u{1}q'/>",
        "<a><!-- abcdefghijklmnop\u{fffe}qrstuvwx --></a>",
    ];

    #[test]
    fn skip_spaces_from_stops_at_the_first_other_byte() {
        for byte in 0..=255u8 {
            for at in 0..12 {
                let mut run = *b"\n   \t\r         ";
                run[at] = byte;
                let want = run.iter().take_while(|&&c| is_space(c)).count();
                assert_eq!(skip_spaces_from(&run, 0), want, "byte {byte:#04x} at {at}");
            }
        }
        assert_eq!(skip_spaces_from(b" \n x", 0), 3, "fewer than 8 bytes left");
        assert_eq!(skip_spaces_from(b"x  ", 1), 3);
        assert_eq!(skip_spaces_from(b"  ", 2), 2);
    }

    #[test]
    fn plain_words_are_exactly_the_plain_ascii_bytes() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = byte;
                let plain = byte.is_ascii() && CLASS[byte as usize] == PLAIN;
                assert_eq!(plain_word(&word, 0), plain, "byte {byte:#04x} at {at}");
            }
        }
        assert!(!plain_word(b"abcdefg", 0), "fewer than 8 bytes left");
        assert!(plain_word(b"xabcdefgh", 1));
    }

    #[test]
    fn tricky_well_formed_documents_match_roxmltree() {
        for text in WELL_FORMED {
            assert!(
                check(text),
                "refused: {text:?} ({:?})",
                Document::parse(text).err()
            );
        }
    }

    #[test]
    fn malformed_documents_are_refused_by_both() {
        for text in MALFORMED {
            assert!(!check(text), "accepted: {text:?}");
        }
    }

    #[test]
    fn deliberate_differences_are_refusals() {
        for text in [
            "<a>&#xD800;</a>",
            "<a>&#x110000;</a>",
            "<a xmlns='u' xmlns='v'/>",
            "<a xmlns:p=''/>",
        ] {
            assert!(Document::parse(text).is_err(), "{text:?}");
            check(text);
        }
    }

    #[test]
    fn limits_bound_depth_and_nodes() {
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        let e = Document::parse(&deep).unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::TooDeep);
        assert!(Document::parse(&("<a>".repeat(256) + &"</a>".repeat(256))).is_ok());
        let wide = format!("<a>{}</a>", "<b/>".repeat(100));
        let limits = Limits {
            max_depth: 8,
            max_nodes: 50,
        };
        let e = Document::parse_with_limits(&wide, limits).unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::TooManyNodes);
    }

    #[test]
    fn errors_say_where() {
        let e = Document::parse("<a>\n  <b></c>\n</a>").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
        assert_eq!(e.to_string(), "expected </b>, found </c> at 2:6");
    }

    #[test]
    fn api_reads_like_roxmltree() {
        let doc =
            Document::parse("<r xmlns='urn:r'><a k=' v '>one</a><a/><!--c--><b>x<i/>y</b></r>")
                .unwrap();
        let r = doc.root_element();
        assert!(r.has_tag_name(Some("urn:r"), "r"));
        let kids: Vec<_> = r.children().filter(Node::is_element).collect();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[0].text(), Some("one"));
        assert_eq!(kids[0].attribute("k"), Some(" v "));
        assert_eq!(kids[1].text(), None);
        assert_eq!(kids[2].text(), Some("x"));
        assert_eq!(kids[2].parent(), Some(r));
        assert_eq!(r.parent().map(|p| p.node_type()), Some(NodeType::Root));
    }

    #[test]
    fn trimmed_text_trims_as_str_trim() {
        let texts = [
            "x",
            "a b",
            " x ",
            "\tx\n",
            "\u{a0}x\u{3000}",
            "\u{85}x",
            "é",
            "x\u{7f}",
            "\u{7f}",
            "  ",
            "\u{2028}",
            "",
        ];
        for t in texts {
            let xml = format!("<r><e>{t}</e></r>");
            let doc = Document::parse_data(&xml).unwrap();
            let e = doc.root_element().first_child().unwrap();
            let want = Some(t.trim()).filter(|s| !s.is_empty());
            assert_eq!(e.trimmed_text(), want, "{t:?}");
        }
        let doc = Document::parse("<r><e/></r>").unwrap();
        assert_eq!(
            doc.root_element().first_child().unwrap().trimmed_text(),
            None
        );
    }
}
