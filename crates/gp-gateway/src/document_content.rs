//! What a document's content must be before it goes anywhere near a GP system: one of
//! the three types a practice can file (PDF, plain text, an HTML consultation summary),
//! its bytes really of that type, and nothing in it that runs when a clinician opens
//! it (scripts, event handlers, `javascript:` URLs, PDF actions and embedded files).
//!
//! HTML is read with a small tag and attribute tokenizer (character references decoded,
//! case and whitespace ignored as a browser ignores them), not by searching for
//! substrings, so `<ScRiPt`, `onerror=` and `jav&#x61;script:` are all seen. PDF names
//! are compared after their `#xx` escapes are decoded (`/J#61vaScript` is
//! `/JavaScript`); names inside compressed object streams are not seen.

use gp_adapter::documents::CONTENT_TYPES;

/// Why content was refused: said to the supplier as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not one of [`CONTENT_TYPES`].
    UnsupportedType(String),
    /// The bytes are not what the type says.
    Mismatch(String),
    /// Something in it would run when opened.
    ActiveContent(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedType(t) => write!(
                f,
                "content type '{t}' is not filed: send {}",
                CONTENT_TYPES.join(", ")
            ),
            Self::Mismatch(why) | Self::ActiveContent(why) => f.write_str(why),
        }
    }
}

/// The media type of a Content-Type value (`text/html; charset=utf-8` → `text/html`),
/// when it is one a practice files.
pub fn media_type(content_type: &str) -> Result<&'static str, Refused> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    CONTENT_TYPES
        .iter()
        .copied()
        .find(|t| *t == essence)
        .ok_or_else(|| Refused::UnsupportedType(crate::routes::shown(content_type)))
}

/// Checks `bytes` are content of `media_type` (one of [`CONTENT_TYPES`]) with no active
/// content.
pub fn check(media_type: &str, bytes: &[u8]) -> Result<(), Refused> {
    match media_type {
        "application/pdf" => check_pdf(bytes),
        "text/plain" => {
            text(bytes, "text/plain")?;
            Ok(())
        }
        "text/html" => check_html(text(bytes, "text/html")?),
        other => Err(Refused::UnsupportedType(crate::routes::shown(other))),
    }
}

fn text<'a>(bytes: &'a [u8], media_type: &str) -> Result<&'a str, Refused> {
    let s = std::str::from_utf8(bytes).map_err(|e| {
        Refused::Mismatch(format!(
            "{media_type} content must be UTF-8; byte {} is not",
            e.valid_up_to()
        ))
    })?;
    if s.is_empty() {
        return Err(Refused::Mismatch(format!("{media_type} content is empty")));
    }
    if let Some(at) = s.find('\0') {
        return Err(Refused::Mismatch(format!(
            "{media_type} content holds a NUL character at byte {at}: it is binary, not text"
        )));
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// PDF

/// PDF names that run something or carry files: scripts (`/JavaScript`, `/JS`), launch
/// actions, embedded files, additional and open actions.
const PDF_ACTIVE_NAMES: &[&str] = &[
    "JavaScript",
    "JS",
    "Launch",
    "EmbeddedFile",
    "EmbeddedFiles",
    "AA",
    "OpenAction",
];

fn check_pdf(bytes: &[u8]) -> Result<(), Refused> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(Refused::Mismatch(
            "application/pdf content must start with %PDF-".into(),
        ));
    }
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(Refused::Mismatch(
            "application/pdf content must end with %%EOF (within its last 1024 bytes): it is truncated or not a PDF".into(),
        ));
    }
    let mut i = 0;
    let mut name = Vec::new();
    while let Some(rel) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|b| *b == b'/'))
    {
        i += rel + 1;
        name.clear();
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0 {
                break;
            }
            // `#xx`: a byte written in hex (PDF 1.2+).
            let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
            match (b, hex(i + 1), hex(i + 2)) {
                (b'#', Some(hi), Some(lo)) => {
                    name.push((hi * 16 + lo) as u8);
                    i += 3;
                }
                _ => {
                    name.push(b);
                    i += 1;
                }
            }
        }
        if let Some(active) = PDF_ACTIVE_NAMES.iter().find(|n| n.as_bytes() == name) {
            return Err(Refused::ActiveContent(format!(
                "the PDF holds /{active}: documents with scripts, actions or embedded files are not filed (print it to a plain PDF)"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// HTML

/// Elements that run, embed or submit something, or change how the page is read.
const HTML_ACTIVE_ELEMENTS: &[&str] = &[
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "base", "link",
    "svg", "math", "portal",
];

/// Attributes holding a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "lowsrc",
    "dynsrc",
    "poster",
    "cite",
    "data",
    "srcset",
    "xlink:href",
    "longdesc",
    "usemap",
    "ping",
];

/// URL schemes that run or smuggle content.
const ACTIVE_SCHEMES: &[&str] = &["javascript:", "vbscript:", "data:"];

fn active(why: String) -> Refused {
    Refused::ActiveContent(format!(
        "{why}: an HTML document may hold no scripts, event handlers, frames, forms, embedded objects or active URLs"
    ))
}

fn check_html(s: &str) -> Result<(), Refused> {
    let start = s.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if !start.starts_with('<') {
        return Err(Refused::Mismatch(
            "text/html content must start with markup (<!DOCTYPE html>, <html> or an element)"
                .into(),
        ));
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut elements = 0usize;
    while let Some(rel) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|c| *c == b'<'))
    {
        i += rel;
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = find(b, i + 4, b"-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            i = find(b, i + 2, b">").map_or(b.len(), |e| e + 1);
            continue;
        }
        let closing = rest.starts_with(b"</");
        let name_at = i + if closing { 2 } else { 1 };
        if !b.get(name_at).is_some_and(u8::is_ascii_alphabetic) {
            i += 1; // a `<` in text
            continue;
        }
        let (tag, after) = read_tag(b, name_at);
        i = after;
        if closing {
            continue;
        }
        elements += 1;
        if HTML_ACTIVE_ELEMENTS.contains(&tag.name.as_str()) {
            return Err(active(format!("it holds a <{}> element", tag.name)));
        }
        for (name, value) in &tag.attributes {
            check_attribute(&tag.name, name, value)?;
        }
        if tag.name == "style" && !tag.self_closing {
            let end = find_ignoring_case(b, i, b"</style").unwrap_or(b.len());
            let css = String::from_utf8_lossy(&b[i..end]);
            check_css(&css, "a <style> element")?;
            i = end;
        }
    }
    if elements == 0 {
        return Err(Refused::Mismatch(
            "text/html content holds no HTML element".into(),
        ));
    }
    Ok(())
}

fn check_attribute(tag: &str, name: &str, value: &str) -> Result<(), Refused> {
    if name.len() > 2 && name.starts_with("on") {
        return Err(active(format!(
            "<{tag}> has an event handler attribute ({name})"
        )));
    }
    if tag == "meta" && name == "http-equiv" && squeezed(value) == "refresh" {
        return Err(active("it holds <meta http-equiv=refresh>".into()));
    }
    if URL_ATTRIBUTES.contains(&name) {
        let url = squeezed(value);
        // srcset holds several URLs: each candidate is checked.
        for candidate in url.split(',') {
            if let Some(scheme) = ACTIVE_SCHEMES.iter().find(|s| candidate.starts_with(**s)) {
                return Err(active(format!(
                    "<{tag} {name}> is a {} URL",
                    scheme.trim_end_matches(':')
                )));
            }
        }
    }
    if name == "style" {
        check_css(value, &format!("the style attribute of <{tag}>"))?;
    }
    Ok(())
}

/// CSS that can run or fetch something: `expression(` (old IE), any `url(`, and any
/// active scheme, after comments, escapes and whitespace are taken out.
fn check_css(css: &str, at: &str) -> Result<(), Refused> {
    let css = squeezed(&css_unescaped(css));
    for needle in ["expression(", "url(", "javascript:", "vbscript:", "@import"] {
        if css.contains(needle) {
            return Err(active(format!("{at} uses {needle}")));
        }
    }
    Ok(())
}

/// CSS without comments, its `\XX` escapes decoded.
fn css_unescaped(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '\\' => {
                let mut hex = String::new();
                while let Some(h) = chars
                    .peek()
                    .filter(|h| h.is_ascii_hexdigit() && hex.len() < 6)
                {
                    hex.push(*h);
                    chars.next();
                }
                if hex.is_empty() {
                    out.extend(chars.next());
                } else {
                    if chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A value as a browser compares it: lower case, with whitespace and control
/// characters (which browsers strip from URLs) taken out.
fn squeezed(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .flat_map(char::to_lowercase)
        .collect()
}

struct Tag {
    name: String,
    /// Lower-case names; values with character references decoded.
    attributes: Vec<(String, String)>,
    self_closing: bool,
}

/// Reads a start or end tag whose name begins at `at`; returns it and where it ends.
fn read_tag(b: &[u8], at: usize) -> (Tag, usize) {
    let stop = |c: u8| c.is_ascii_whitespace() || c == b'/' || c == b'>';
    let mut i = at;
    while b.get(i).is_some_and(|c| !stop(*c)) {
        i += 1;
    }
    let mut tag = Tag {
        name: String::from_utf8_lossy(&b[at..i]).to_ascii_lowercase(),
        attributes: Vec::new(),
        self_closing: false,
    };
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        match b.get(i) {
            None => return (tag, i),
            Some(b'>') => return (tag, i + 1),
            Some(b'/') => {
                tag.self_closing = b.get(i + 1) == Some(&b'>');
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_start = i;
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'/' | b'>' | b'='))
        {
            i += 1;
        }
        // `=` may itself start a name (`<a =x>`): take it as one character.
        if i == name_start {
            i += 1;
        }
        let name = String::from_utf8_lossy(&b[name_start..i]).to_ascii_lowercase();
        let mut j = i;
        while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        let mut value = String::new();
        if b.get(j) == Some(&b'=') {
            j += 1;
            while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            let (raw, end) = match b.get(j) {
                Some(q @ (b'"' | b'\'')) => {
                    let close = b
                        .get(j + 1..)
                        .and_then(|r| r.iter().position(|c| c == q))
                        .map_or(b.len(), |p| j + 1 + p);
                    (&b[j + 1..close], (close + 1).min(b.len()))
                }
                _ => {
                    let mut e = j;
                    while b
                        .get(e)
                        .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'>')
                    {
                        e += 1;
                    }
                    (&b[j..e], e)
                }
            };
            value = decode_references(&String::from_utf8_lossy(raw));
            i = end;
        }
        tag.attributes.push((name, value));
    }
}

/// Decodes HTML character references: numeric (`&#97;`, `&#x61;`, with or without the
/// `;`) and the named ones that spell URLs and whitespace.
fn decode_references(s: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("colon", ':'),
        ("tab", '\t'),
        ("newline", '\n'),
        ("lpar", '('),
        ("rpar", ')'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
        ("period", '.'),
        ("comma", ','),
        ("equals", '='),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(num) = rest.strip_prefix('#') {
            let (hex, digits) = match num.strip_prefix(['x', 'X']) {
                Some(h) => (true, h),
                None => (false, num),
            };
            let len = digits
                .bytes()
                .take_while(|c| {
                    if hex {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_digit()
                    }
                })
                .count();
            if len > 0 {
                let value = u32::from_str_radix(&digits[..len.min(8)], if hex { 16 } else { 10 })
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                out.push(value);
                rest = &digits[len..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
                continue;
            }
        } else {
            let len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
            let name = rest[..len].to_ascii_lowercase();
            if let Some((_, c)) = NAMED.iter().find(|(n, _)| *n == name) {
                out.push(*c);
                rest = &rest[len..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
                continue;
            }
        }
        out.push('&');
    }
    out.push_str(rest);
    out
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn find_ignoring_case(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Result<(), Refused> {
        check("text/html", s.as_bytes())
    }

    #[test]
    fn a_plain_consultation_summary_passes() {
        html("<!DOCTYPE html><html><head><title>Summary</title><style>p { color: #333 }</style></head><body><h1>Consultation</h1><p class=x>Seen for a cough &amp; cold; 3 < 4.</p><a href=\"https://example.org/leaflet\">leaflet</a><img src=\"logo.png\" alt=\"\"></body></html>").unwrap();
    }

    #[test]
    fn active_html_is_refused_however_it_is_spelled() {
        for evasion in [
            "<p>x</p><script>alert(1)</script>",
            "<p>x</p><ScRiPt>alert(1)</sCrIpT>",
            "<p>x</p><SCRIPT\nsrc=x.js></SCRIPT>",
            "<img src=x onerror=alert(1)>",
            "<img src=x OnErRoR = \"alert(1)\">",
            "<body onload=alert(1)>",
            "<svg/onload=alert(1)>",
            "<a href=\"jav&#x61;script:alert(1)\">x</a>",
            "<a href=\"jav&#97script:alert(1)\">x</a>",
            "<a href=\"java&Tab;script:alert(1)\">x</a>",
            "<a href=\"javascript&colon;alert(1)\">x</a>",
            "<a href=\"  JaVaScRiPt:alert(1)\">x</a>",
            "<a href=javascript:alert(1)>x</a>",
            "<a href='vbscript:msgbox(1)'>x</a>",
            "<img src=\"data:image/svg+xml;base64,AAAA\">",
            "<form action=\"https://evil.example\"><input></form>",
            "<p><iframe src=\"https://evil.example\"></iframe></p>",
            "<object data=x></object>",
            "<embed src=x>",
            "<meta http-equiv=\"Refresh\" content=\"0;url=https://evil.example\">",
            "<meta http-equiv=\" refresh \" content=\"0\">",
            "<base href=\"https://evil.example/\">",
            "<link rel=stylesheet href=x.css>",
            "<math><mtext>x</mtext></math>",
            "<style>p { background: url(https://evil.example/t.png) }</style>",
            "<style>p { width: expression(alert(1)) }</style>",
            "<style>p { width: ex/**/pression(alert(1)) }</style>",
            "<style>p { width: \\65 xpression(alert(1)) }</style>",
            "<p style=\"background:URL( 'x' )\">x</p>",
            "<p style=\"width:expression(alert(1))\">x</p>",
        ] {
            match html(evasion) {
                Err(Refused::ActiveContent(_)) => {}
                other => panic!("{evasion}: {other:?}"),
            }
        }
    }

    #[test]
    fn text_that_is_not_its_type_is_refused() {
        assert!(matches!(html("just words"), Err(Refused::Mismatch(_))));
        assert!(matches!(
            check("text/html", b"<p>\xff</p>"),
            Err(Refused::Mismatch(_))
        ));
        assert!(matches!(
            check("text/plain", b"a\0b"),
            Err(Refused::Mismatch(_))
        ));
        assert!(matches!(
            check("text/plain", b"\xc3"),
            Err(Refused::Mismatch(_))
        ));
        check("text/plain", "Seen today: ça va.".as_bytes()).unwrap();
    }

    #[test]
    fn pdfs_must_be_pdfs_without_actions() {
        let pdf = |body: &str| format!("%PDF-1.7\n{body}\ntrailer\n%%EOF\n").into_bytes();
        check(
            "application/pdf",
            &pdf("1 0 obj << /Type /Catalog >> endobj"),
        )
        .unwrap();
        assert!(matches!(
            check("application/pdf", b"<html></html>"),
            Err(Refused::Mismatch(_))
        ));
        assert!(matches!(
            check("application/pdf", b"%PDF-1.7\n1 0 obj"),
            Err(Refused::Mismatch(_))
        ));
        for active in [
            "<< /S /JavaScript /JS (app.alert(1)) >>",
            "<< /OpenAction 5 0 R >>",
            "<< /Type /Action /S /Launch /F (cmd.exe) >>",
            "<< /Type /EmbeddedFile >>",
            "<< /AA << /O 3 0 R >> >>",
            "<< /S /J#61vaScript >>",
            "<< /#4A#53 (x) >>",
        ] {
            match check("application/pdf", &pdf(active)) {
                Err(Refused::ActiveContent(_)) => {}
                other => panic!("{active}: {other:?}"),
            }
        }
        // Names that merely start like an active one are fine.
        check("application/pdf", &pdf("<< /JSONish 1 /AAB 2 >>")).unwrap();
    }

    #[test]
    fn media_types_are_read_without_parameters() {
        assert_eq!(media_type("Text/HTML; charset=utf-8").unwrap(), "text/html");
        assert!(matches!(
            media_type("image/png"),
            Err(Refused::UnsupportedType(_))
        ));
    }
}
