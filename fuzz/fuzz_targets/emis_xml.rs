//! EMIS Web XML as the EMIS adapter reads it: a MedicalRecord, an error document and the
//! answers to write-backs (gp_adapter_emis::mapping), and each clinical area read alone.
#![no_main]

use gp_adapter_emis::mapping;
use gp_fhir::model::Resource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(whole) = mapping::map_record(data) {
        // A search reads only its area (lists and events of other types are built
        // without their content): what the whole record maps to, filtered.
        for t in gp_adapter::ClinicalType::ALL {
            let part = mapping::map_record_for(data, mapping::Want::Area(*t))
                .expect("a record that maps whole maps each area");
            let wanted: Vec<&Resource> = whole.clinical.iter().filter(|r| t.matches(r)).collect();
            assert_eq!(part.clinical.iter().collect::<Vec<_>>(), wanted, "{t:?}");
        }
    }
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
