//! A minimal XML writer: enough for the simulators' documents, with correct escaping.

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
