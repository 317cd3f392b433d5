//! EMIS Web XML as the EMIS adapter reads it: a MedicalRecord, an error document and the
//! answers to write-backs (gp_adapter_emis::mapping).
#![no_main]

use gp_adapter_emis::mapping;
use gp_fhir::model::Resource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = mapping::map_record(data) {
        // What is mapped is served: it must serialise.
        let _ = Resource::Patient(record.patient).to_json();
        let _ = Resource::Organization(record.organization).to_json();
        for r in &record.clinical {
            let _ = r.to_json();
        }
    }
    let _ = mapping::parse_error_document(data);
    let _ = mapping::parse_batch_result(data);
    let _ = mapping::parse_contact_result(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(version) = mapping::version_from_last_modified(text) {
            let _ = mapping::last_modified_from_version(&version);
        }
        let _ = mapping::last_modified_from_version(text);
    }
});
