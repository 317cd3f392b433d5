//! gp_adapter::xml against roxmltree on arbitrary bytes: both accept with the same tree,
//! both refuse, or ours refuses for one of its documented, deliberately stricter reasons.
#![no_main]

use gp_adapter::xml::{Document, Node, NodeType, XmlErrorKind};
use libfuzzer_sys::fuzz_target;

/// One line per node in document order; CR compared as LF, an empty namespace as none.
fn ours<'a, 'i: 'a>(nodes: impl Iterator<Item = Node<'a, 'i>>) -> Vec<String> {
    nodes
        .map(|n| {
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
                NodeType::Text => format!("text {:?}", n.text().unwrap_or("").replace('\r', "\n")),
                NodeType::Comment => format!("comment {:?}", n.text()),
                NodeType::ProcessingInstruction => format!("pi {:?}", n.pi()),
            };
            format!("{} {body}", n.ancestors().count())
        })
        .collect()
}

fn oracle(doc: &roxmltree::Document) -> Vec<String> {
    let ns = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    doc.descendants()
        .map(|n| {
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
                    format!("text {:?}", n.text().unwrap_or("").replace('\r', "\n"))
                }
                roxmltree::NodeType::Comment => format!("comment {:?}", n.text()),
                roxmltree::NodeType::PI => format!("pi {:?}", n.pi().map(|p| (p.target, p.value))),
            };
            format!("{} {body}", n.ancestors().count())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mine = Document::parse(text);
    // `parse_data`: the same verdict, and the same tree less its whitespace-only text.
    match (&mine, Document::parse_data(text)) {
        (Ok(m), Ok(d)) => {
            let blank = |n: &Node| {
                n.is_text()
                    && n.text()
                        .is_some_and(|t| t.bytes().all(|b| b" \t\r\n".contains(&b)))
            };
            assert_eq!(
                ours(m.descendants().filter(|n| !blank(n))),
                ours(d.descendants())
            );
        }
        (Err(m), Err(d)) => assert_eq!(*m, d),
        (m, d) => panic!("parse and parse_data disagree: {m:?} / {d:?}"),
    }
    match (mine, roxmltree::Document::parse(text)) {
        (Ok(m), Ok(t)) => assert_eq!(ours(m.descendants()), oracle(&t)),
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => assert!(
            match &e.kind {
                XmlErrorKind::TooDeep
                | XmlErrorKind::TooManyNodes
                | XmlErrorKind::MalformedReference
                | XmlErrorKind::ReservedNamespace => true,
                XmlErrorKind::DuplicateAttribute(a) => a == "xmlns",
                _ => false,
            },
            "refused what roxmltree accepts: {e}"
        ),
        (Ok(_), Err(e)) => panic!("accepted what roxmltree refuses: {e}"),
    }
});
