//! Personal Demographics Service simulator: the shape of the real PDS FHIR API's
//! patient read, built with `serde_json` (this crate has no FHIR model). Covers the
//! patients of every GP system, as the national PDS does.

use std::sync::Arc;

use hyper::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::model::{Sex, SimPatient};
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::SimStore;

/// Path prefix of the patient read: `{PATIENT_PATH}/{nhs}`.
pub const PATIENT_PATH: &str = "/personal-demographics/FHIR/R4/Patient";
const FHIR_JSON: &str = "application/fhir+json";
const SPINE_CODES: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

/// Starts the PDS simulator on `listener`.
pub async fn start_pds(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Pds { store }), listener)
}

struct Pds {
    store: SimStore,
}

impl Simulator for Pds {
    fn name(&self) -> &'static str {
        "pds"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        if path.trim_end_matches('/') == "/personal-demographics/FHIR/R4/health" {
            return Routed {
                reply: Reply {
                    status: 200,
                    content_type: "application/json",
                    body: br#"{"status":"pass"}"#.to_vec(),
                },
                record: false,
            };
        }
        let Some(nhs) = path
            .strip_prefix(PATIENT_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Routed {
                reply: outcome(404, "not-found", "RESOURCE_NOT_FOUND", "No such endpoint"),
                record: false,
            };
        };
        if method != Method::GET {
            return Routed {
                reply: outcome(
                    405,
                    "not-supported",
                    "METHOD_NOT_ALLOWED",
                    "Only GET is supported",
                ),
                record: false,
            };
        }
        let reply = if !crate::nhs::is_valid(nhs) {
            outcome(400, "value", "INVALID_RESOURCE_ID", "Invalid NHS number")
        } else {
            match self.store.patient_by_nhs(nhs) {
                Some(p) => {
                    let ods = self
                        .store
                        .practice(&p.practice)
                        .map(|pr| pr.ods)
                        .unwrap_or_default();
                    Reply {
                        status: 200,
                        content_type: FHIR_JSON,
                        body: patient_json(&p, &ods).to_string().into_bytes(),
                    }
                }
                None => outcome(404, "not-found", "RESOURCE_NOT_FOUND", "Patient not found"),
            }
        };
        Routed {
            reply,
            record: true,
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        let (issue, code) = match status {
            400 => ("value", "INVALID_VALUE"),
            401 | 403 => ("forbidden", "ACCESS_DENIED"),
            404 => ("not-found", "RESOURCE_NOT_FOUND"),
            408 | 503 | 504 => ("timeout", "UNABLE_TO_CALL_SERVICE"),
            429 => ("throttled", "TOO_MANY_REQUESTS"),
            _ => ("exception", "INTERNAL_SERVER_ERROR"),
        };
        outcome(status, issue, code, "Injected fault")
    }

    fn garbage(&self) -> Vec<u8> {
        b"<html><body>502 Bad Gateway</body></html>\x00".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // An invalid UTF-8 sequence inside a JSON string value.
        let marker = b"\"family\":\"";
        match body.windows(marker.len()).position(|w| w == marker) {
            Some(at) => [
                &body[..at + marker.len()],
                b"\xC3\x28",
                &body[at + marker.len()..],
            ]
            .concat(),
            None => [body, b"\xC3\x28"].concat(),
        }
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("identifier");
                }
                v.to_string().into_bytes()
            }
            Err(_) => body.to_vec(),
        }
    }
}

/// The PDS Patient for `p`, registered at `ods`. A restricted (sensitive) patient's
/// address and telecom are withheld, as PDS does.
pub fn patient_json(p: &SimPatient, ods: &str) -> Value {
    let restricted = p.flags.sensitive;
    let (code, display) = if restricted {
        ("R", "restricted")
    } else {
        ("U", "unrestricted")
    };
    let mut patient = json!({
        "resourceType": "Patient",
        "id": p.nhs_number,
        "meta": {
            "versionId": "1",
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code, "display": display}]
        },
        "identifier": [{
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": p.nhs_number,
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": p.nhs_status
                }]}
            }]
        }],
        "name": [{"use": "usual", "family": p.family, "given": p.given, "prefix": if p.title.is_empty() { vec![] } else { vec![p.title.clone()] }}],
        "gender": match p.sex { Sex::Male => "male", Sex::Female => "female", Sex::Indeterminate => "other", Sex::Unknown => "unknown" },
        "birthDate": p.birth_date.to_string(),
        "generalPractitioner": [{
            "type": "Organization",
            "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}
        }]
    });
    if let Some(o) = patient.as_object_mut() {
        if let Some(d) = p.deceased_on {
            o.insert(
                "deceasedDateTime".into(),
                json!(format!("{d}T00:00:00+00:00")),
            );
        }
        if !restricted {
            let a = &p.address;
            let mut line = vec![format!("{} {}", a.house, a.street).trim().to_owned()];
            if !a.village.is_empty() {
                line.push(a.village.clone());
            }
            o.insert("address".into(), json!([{"use": "home", "line": line, "city": a.town, "district": a.county, "postalCode": a.postcode}]));
            let mut telecom = Vec::new();
            if let Some(t) = &p.home_phone {
                telecom.push(json!({"system": "phone", "value": t, "use": "home"}));
            }
            if let Some(t) = &p.mobile {
                telecom.push(json!({"system": "phone", "value": t, "use": "mobile"}));
            }
            if let Some(t) = &p.email {
                telecom.push(json!({"system": "email", "value": t, "use": "home"}));
            }
            if !telecom.is_empty() {
                o.insert("telecom".into(), Value::Array(telecom));
            }
        }
    }
    patient
}

fn outcome(status: u16, issue: &str, code: &str, diagnostics: &str) -> Reply {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": issue,
            "details": {"coding": [{"system": SPINE_CODES, "code": code}]},
            "diagnostics": diagnostics
        }]
    });
    Reply {
        status,
        content_type: FHIR_JSON,
        body: body.to_string().into_bytes(),
    }
}
