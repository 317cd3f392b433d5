//! XML for the simulators: a minimal writer for their documents (with correct escaping)
//! and a strict reader for the write requests they take (roxmltree underneath).

use std::borrow::Cow;

/// Builds an indented XML document in a `String`.
pub(crate) struct XmlWriter {
    buf: String,
    depth: usize,
}

impl XmlWriter {
    /// Starts a document with the XML declaration.
    pub(crate) fn new() -> Self {
        Self {
            buf: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        self.buf.push('\n');
        for _ in 0..self.depth {
            self.buf.push_str("  ");
        }
    }

    /// Writes `<name attrs…` on a new line, leaving the tag open; values are escaped.
    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.buf.push('<');
        self.buf.push_str(name);
        for (k, v) in attrs {
            self.buf.push(' ');
            self.buf.push_str(k);
            self.buf.push_str("=\"");
            escape_into(&mut self.buf, v);
            self.buf.push('"');
        }
    }

    /// Opens `<name attrs…>`; attribute values are escaped.
    pub(crate) fn open_with(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start_tag(name, attrs);
        self.buf.push('>');
        self.depth += 1;
    }

    /// `<name attrs…>text</name>`, or `<name attrs…/>` when `text` is empty.
    pub(crate) fn text_with(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start_tag(name, attrs);
        if text.is_empty() {
            self.buf.push_str("/>");
            return;
        }
        self.buf.push('>');
        escape_into(&mut self.buf, text);
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.open_with(name, &[]);
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// `<name>text</name>`, or `<name/>` when `text` is empty.
    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.text_with(name, &[], text);
    }

    /// `<name>text</name>` when present; nothing when absent.
    pub(crate) fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.text(name, t);
        }
    }

    pub(crate) fn finish(mut self) -> String {
        self.buf.push('\n');
        self.buf
    }
}

/// Escapes the five XML specials and drops characters XML 1.0 forbids (most C0
/// controls, U+FFFE, U+FFFF), which would make the whole document unparseable.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// `body` with `insert` placed right after the first `marker` (fault injection).
pub(crate) fn insert_after(body: &[u8], marker: &[u8], insert: &[u8]) -> Option<Vec<u8>> {
    let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
    Some([&body[..at], insert, &body[at..]].concat())
}

/// `body` without the first `<name>…</name>` element (and its indentation).
pub(crate) fn remove_element(body: &[u8], name: &str) -> Vec<u8> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    match (find(body, open.as_bytes()), find(body, close.as_bytes())) {
        (Some(start), Some(end)) if end > start => {
            let mut start = start;
            while start > 0 && matches!(body[start - 1], b' ' | b'\n') {
                start -= 1;
            }
            [&body[..start], &body[end + close.len()..]].concat()
        }
        _ => body.to_vec(),
    }
}

// ---- reading request bodies ---------------------------------------------------------

/// How strictly a simulator reads its write request bodies. DTDs are always refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadRules {
    /// Deepest element nesting accepted, the document element being level 1.
    pub(crate) max_depth: usize,
    /// EMIS Open: CDATA sections, processing instructions and prefixed names are
    /// refused, and a child counts only in its parent's namespace. Otherwise (SystmOne)
    /// all are read and children are matched by local name.
    pub(crate) plain: bool,
}

/// Why a request body is not a document the simulator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestXmlError {
    #[error("the body is not UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("the body is not well-formed XML: {0}")]
    Malformed(String),
    #[error("elements are nested more than {0} deep")]
    TooDeep(usize),
    #[error("{0} are not accepted")]
    NotAccepted(&'static str),
}

/// A parsed request body; [`RequestDoc::root`] reads it.
pub(crate) struct RequestDoc<'i> {
    doc: roxmltree::Document<'i>,
    plain: bool,
}

impl<'i> RequestDoc<'i> {
    /// Parses `body` as a request document under `rules`.
    pub(crate) fn parse(body: &'i [u8], rules: ReadRules) -> Result<Self, RequestXmlError> {
        let text =
            std::str::from_utf8(body).map_err(|e| RequestXmlError::NotUtf8(e.valid_up_to()))?;
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(text, options)
            .map_err(|e| RequestXmlError::Malformed(e.to_string()))?;
        if too_deep(doc.root(), rules.max_depth) {
            return Err(RequestXmlError::TooDeep(rules.max_depth));
        }
        if rules.plain {
            check_plain(&doc)?;
        }
        Ok(Self {
            doc,
            plain: rules.plain,
        })
    }

    /// The document element.
    pub(crate) fn root(&self) -> Element<'_, 'i> {
        Element {
            node: self.doc.root_element(),
            plain: self.plain,
        }
    }
}

/// Whether `node` has element descendants more than `levels` below it.
fn too_deep(node: roxmltree::Node<'_, '_>, levels: usize) -> bool {
    node.children()
        .filter(roxmltree::Node::is_element)
        .any(|c| levels == 0 || too_deep(c, levels - 1))
}

/// Refuses what an EMIS Open request never holds: CDATA sections, processing
/// instructions and prefixed element or attribute names.
fn check_plain(doc: &roxmltree::Document<'_>) -> Result<(), RequestXmlError> {
    let input = doc.input_text();
    let comments: Vec<_> = doc
        .descendants()
        .filter(roxmltree::Node::is_comment)
        .map(|c| c.range())
        .collect();
    // Outside comments, `<![CDATA[` can only open a CDATA section (roxmltree merges
    // those into the text, so they are found in the input).
    let cdata = input
        .match_indices("<![CDATA[")
        .any(|(at, _)| !comments.iter().any(|r| r.contains(&at)));
    if cdata {
        return Err(RequestXmlError::NotAccepted("CDATA sections"));
    }
    for node in doc.descendants() {
        if node.is_pi() {
            return Err(RequestXmlError::NotAccepted("processing instructions"));
        }
        let prefixed_element = node.is_element()
            && input
                .get(node.range())
                .and_then(|raw| raw.strip_prefix('<'))
                .and_then(|raw| raw.split([' ', '\t', '\r', '\n', '/', '>']).next())
                .is_some_and(|qname| qname.contains(':'));
        if prefixed_element || node.attributes().any(|a| a.namespace().is_some()) {
            return Err(RequestXmlError::NotAccepted("prefixed names"));
        }
    }
    Ok(())
}

/// One element of a request document, matched as its [`ReadRules`] say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a, 'i> {
    node: roxmltree::Node<'a, 'i>,
    plain: bool,
}

impl<'a, 'i> Element<'a, 'i> {
    /// The local name.
    pub(crate) fn name(&self) -> &'a str {
        self.node.tag_name().name()
    }

    /// The namespace, if any.
    pub(crate) fn namespace(&self) -> Option<&'a str> {
        self.node.tag_name().namespace()
    }

    /// Trimmed value of attribute `name` (local name); `None` when absent or blank.
    pub(crate) fn attr(&self, name: &str) -> Option<&'a str> {
        self.node
            .attributes()
            .find(|a| a.name() == name)
            .map(|a| a.value().trim())
            .filter(|v| !v.is_empty())
    }

    /// Child elements called `name`, in document order.
    pub(crate) fn children_named(&self, name: &str) -> impl Iterator<Item = Element<'a, 'i>> {
        let this = *self;
        self.node
            .children()
            .filter(move |c| this.matches(c, name))
            .map(move |node| Element {
                node,
                plain: this.plain,
            })
    }

    /// The first child element called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<Element<'a, 'i>> {
        self.children_named(name).next()
    }

    /// The text directly inside this element (not its children's), trimmed.
    pub(crate) fn text(&self) -> Cow<'a, str> {
        let mut parts = self
            .node
            .children()
            .filter(roxmltree::Node::is_text)
            .filter_map(|t| t.text());
        let first = parts.next().unwrap_or("");
        match parts.next() {
            None => Cow::Borrowed(first.trim()),
            Some(second) => {
                let joined: String = [first, second].into_iter().chain(parts).collect();
                Cow::Owned(joined.trim().to_owned())
            }
        }
    }

    /// Trimmed text of child `name`: an optional value, `None` when absent or empty.
    pub(crate) fn child_text(&self, name: &str) -> Option<Cow<'a, str>> {
        self.child(name).map(|c| c.text()).filter(|t| !t.is_empty())
    }

    /// Trimmed text of child `name`, or `missing()` when it is absent or empty.
    pub(crate) fn required_text<E>(
        &self,
        name: &str,
        missing: impl FnOnce() -> E,
    ) -> Result<Cow<'a, str>, E> {
        self.child_text(name).ok_or_else(missing)
    }

    fn matches(&self, node: &roxmltree::Node<'_, '_>, name: &str) -> bool {
        node.is_element()
            && node.tag_name().name() == name
            && (!self.plain || node.tag_name().namespace() == self.namespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_strips() {
        let mut s = String::new();
        escape_into(&mut s, "O'Brien & <Sons> \"x\"\u{1}\u{FFFF}é");
        assert_eq!(s, "O&apos;Brien &amp; &lt;Sons&gt; &quot;x&quot;é");
    }

    #[test]
    fn empty_elements_self_close() {
        let mut w = XmlWriter::new();
        w.open_with("A", &[("xmlns", "urn:x")]);
        w.text("B", "");
        w.text("C", "1");
        w.close("A");
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<A xmlns=\"urn:x\">\n  <B/>\n  <C>1</C>\n</A>\n"
        );
    }
}
