//! The simulators' strict XML reader for write requests (gp-sim's `xml` module, EMIS
//! Open and SystmOne rules). It is crate-private, so its source is compiled in here.
#![no_main]
#![allow(dead_code)]

#[path = "../../crates/gp-sim/src/xml.rs"]
mod xml;

use libfuzzer_sys::fuzz_target;
use xml::{ReadRules, RequestDoc};

const EMIS: ReadRules = ReadRules {
    max_depth: 16,
    plain: true,
};
const TPP: ReadRules = ReadRules {
    max_depth: 17,
    plain: false,
};

fuzz_target!(|data: &[u8]| {
    for rules in [EMIS, TPP] {
        let Ok(doc) = RequestDoc::parse(data, rules) else {
            continue;
        };
        let root = doc.root();
        let _ = (root.name(), root.namespace(), root.text());
        for child in root
            .children_named("Reading")
            .chain(root.children_named("Contact"))
        {
            let _ = (child.attr("code"), child.child_text("Value"), child.text());
        }
    }
});
