//! Vision pipe-delimited extracts as the Vision adapter reads them: the patient,
//! practice, staff and journal extracts, error bodies and write-back answers
//! (gp_adapter_vision::mapping and ::extract).
#![no_main]

use gp_adapter_vision::extract::Extract;
use gp_adapter_vision::{JournalOwner, mapping};
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// The owner the seed journals were rendered for (see examples/seed_corpora.rs).
static OWNER: LazyLock<JournalOwner> = LazyLock::new(|| {
    let text = include_str!("../corpus/vision_extract/owner.txt");
    let mut parts = text.split_whitespace();
    let mut next = || parts.next().unwrap_or_default();
    JournalOwner {
        pid: next().to_owned(),
        nhs_number: NhsNumber::parse(next()).expect("owner NHS number"),
        ods: OdsCode::parse(next()).expect("owner ODS code"),
    }
});

fuzz_target!(|data: &[u8]| {
    let owner = &*OWNER;
    if let Ok(extract) = Extract::parse("fuzzed extract", data) {
        for row in extract.iter() {
            for col in 0..4 {
                let _ = row.raw(col);
            }
        }
    }
    if let Ok(patient) = mapping::map_patient(data, &owner.ods) {
        let _ = Resource::Patient(patient.patient).to_json();
    }
    let _ = mapping::map_practice(data);
    let _ = mapping::map_staff(data, "S01");
    let mut out = Vec::new();
    if mapping::map_journal_page(data, owner, &mut out).is_ok() {
        for r in &out {
            let _ = r.to_json();
        }
    }
    let _ = mapping::written_ids(data, owner.nhs_number, &owner.ods);
    let _ = mapping::map_contact_answer(data, owner.nhs_number);
    let _ = mapping::parse_error_body(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mapping::native_timestamp(text);
        let _ = gp_adapter_vision::client::check_token(text);
    }
});
