//! Search parameters: the raw query string of `GET /{type}?…` and `GET /Patient?…`,
//! through percent-decoding, pairing and every parameter's parser (gp_fhir::search).
#![no_main]

use gp_fhir::search::{
    PagingLimits, parse_clinical_search, parse_patient_search, parse_query, percent_decode,
    percent_encode,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The router hands over the query as a `&str` (hyper's URI is ASCII).
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pairs) = parse_query(query) else {
        return;
    };
    // Decoding what we encode gives back the same pairs.
    for (k, v) in &pairs {
        assert_eq!(percent_decode(&percent_encode(k)).as_ref(), Ok(k));
        assert_eq!(percent_decode(&percent_encode(v)).as_ref(), Ok(v));
    }
    for resource_type in ["Observation", "Condition", "Encounter"] {
        let base = "https://gw.example/FHIR/R4";
        if let Ok(search) = parse_clinical_search(resource_type, &pairs, PagingLimits::default(), base) {
            let _ = search.link_params(&pairs);
        }
    }
    let _ = parse_patient_search(&pairs, PagingLimits::default());
});
