//! Microtest Evolution JSON as the Microtest adapter reads it: the patient index,
//! patient, clinician and entry pages of every type, problems and write-back answers
//! (gp_adapter_microtest::mapping).
#![no_main]

use gp_adapter_microtest::{EntryType, mapping};
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// The patient and site the seed pages were rendered for (see examples/seed_corpora.rs).
static OWNER: LazyLock<(NhsNumber, OdsCode, String)> = LazyLock::new(|| {
    let text = include_str!("../corpus/microtest_json/owner.txt");
    let mut parts = text.split_whitespace();
    let mut next = || parts.next().unwrap_or_default();
    let nhs = NhsNumber::parse(next()).expect("owner NHS number");
    let ods = OdsCode::parse(next()).expect("owner ODS code");
    (nhs, ods, next().to_owned())
});

const TYPES: [EntryType; 6] = [
    EntryType::Allergy,
    EntryType::Medication,
    EntryType::Problem,
    EntryType::Observation,
    EntryType::Immunisation,
    EntryType::Consultation,
];

fuzz_target!(|data: &[u8]| {
    let (nhs, ods, patient_id) = &*OWNER;
    let _ = mapping::parse_patient_index(data, *nhs, ods);
    if let Ok(p) = mapping::map_patient(data) {
        let _ = Resource::Patient(p.patient).to_json();
    }
    let _ = mapping::map_clinician(data);
    for kind in TYPES {
        if let Ok(page) = mapping::map_entries(data, kind, *nhs, ods) {
            for r in &page.resources {
                let _ = r.to_json();
            }
        }
    }
    let _ = mapping::parse_problem(data);
    let _ = mapping::parse_recorded(data, 2);
    let _ = mapping::parse_contact_updated(data, patient_id);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mapping::native_last_modified(text);
    }
});
