//! SystmOne (TPP) XML as the TPP adapter reads it: a record page, the assembly of pages
//! into a record, an error document and the answers to write-backs
//! (gp_adapter_tpp::mapping).
#![no_main]

use gp_adapter_tpp::mapping;
use gp_fhir::model::Resource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = mapping::map_page(data) {
        let size = page.paging.page_size;
        let _ = mapping::pages_to_fetch(&page, size);
        if let Ok(record) = mapping::assemble(vec![page], size) {
            let _ = Resource::Patient(record.patient).to_json();
            for r in &record.clinical {
                let _ = r.to_json();
            }
        }
    }
    let _ = mapping::parse_error_document(data);
    for status in [200, 201, 409] {
        let _ = mapping::parse_record_events_response(data, status);
    }
    let _ = mapping::parse_contact_update_response(data);
});
