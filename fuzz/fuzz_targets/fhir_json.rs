//! FHIR JSON request bodies: the structural prechecks every body passes
//! (gp_fhir::validate), the Observation write-back validator
//! (gp_gateway::write_body::observation) and the `$gpc.getstructuredrecord` Parameters
//! reader (gp_gateway::structured::parse).
#![no_main]

use gp_fhir::FhirError;
use gp_fhir::validate::{MAX_DEPTH, json_depth, precheck, precheck_json};
use gp_gateway::{structured, write_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match precheck_json(data) {
        Ok(_) => assert!(json_depth(data) <= MAX_DEPTH),
        Err(e) => {
            let _ = (e.status(), e.spine_code(), e.to_string());
        }
    }
    let _ = precheck(data);
    // A fixed "now" so a run is reproducible.
    let now = time::macros::datetime!(2026-11-23 12:00 UTC);
    match write_body::observation(data, now) {
        Ok(obs) => {
            let _ = format!("{obs:?}");
        }
        Err(e) => {
            let _ = (e.status(), e.spine_code(), e.issue_type(), e.expression());
        }
    }
    let _ = structured::parse(data, (2026, 11, 23));
});
