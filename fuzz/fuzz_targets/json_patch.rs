//! `PATCH /Patient/{nhsNumber}`: a JSON Patch body parsed, applied to a Patient and the
//! result read back as contact details (gp_gateway::patch).
#![no_main]

use gp_gateway::patch;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// A synthetic Patient as the gateway serves it, with every writable element present.
static PATIENT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "resourceType": "Patient",
        "id": "9000000009",
        "meta": {"versionId": "2026-11-01T09:40:00"},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "name": [{"use": "official", "family": "Fuzz", "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1970-03-02",
        "telecom": [
            {"system": "phone", "value": "01632 960001", "use": "home"},
            {"system": "phone", "value": "07700 900001", "use": "mobile"},
            {"system": "email", "value": "test@example.com", "use": "home"}
        ],
        "address": [{"use": "home", "line": ["12", "Acacia Avenue"], "city": "Leeds",
                     "district": "West Yorkshire", "postalCode": "LS1 4AP"}],
        "communication": [{"language": {"coding": [{
            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage",
            "code": "en", "display": "English"}]}, "preferred": true}]
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = patch::parse(data) else {
        return;
    };
    let mut doc = PATIENT.clone();
    match patch::apply(&mut doc, &ops) {
        Ok(()) => {
            let _ = patch::contact_details(&doc);
        }
        // All or nothing: a refused patch leaves the resource as it was.
        Err(_) => assert_eq!(doc, *PATIENT),
    }
});
