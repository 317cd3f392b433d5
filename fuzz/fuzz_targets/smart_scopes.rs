//! SMART scope strings: a token request's `scope` and an access token's `scope` claim
//! (gp_auth::ScopeSet).
#![no_main]

use gp_auth::{Permission, ScopeSet};
use libfuzzer_sys::fuzz_target;

const INTERACTIONS: [Permission; 5] = [
    Permission::Create,
    Permission::Read,
    Permission::Update,
    Permission::Delete,
    Permission::Search,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Two scope strings: a request and what the supplier is allowed.
    let (requested, allowed) = text.split_once('\n').unwrap_or((text, "system/*.rs"));
    let Ok(scopes) = ScopeSet::parse(requested) else {
        return;
    };
    // What is issued (the Display form) must parse back to the same grant: the
    // access token carries it.
    let shown = scopes.to_string();
    let again = ScopeSet::parse(&shown).expect("a displayed scope set parses");
    assert_eq!(again.to_string(), shown);
    for resource in ["Patient", "Observation", "AuditEvent", "*", ""] {
        for i in INTERACTIONS {
            assert_eq!(scopes.allows(resource, i), again.allows(resource, i));
        }
    }
    if let Ok(allowed) = ScopeSet::parse(allowed) {
        let granted = scopes.intersect(&allowed);
        // Intersection never grants what either side lacks.
        for resource in ["Patient", "Observation", "AllergyIntolerance", "AuditEvent"] {
            for i in INTERACTIONS {
                if granted.allows(resource, i) {
                    assert!(scopes.allows(resource, i) && allowed.allows(resource, i));
                }
            }
        }
    }
});
