//! A simulator of Acme Clinical's native API (README.md, "Wire format") on gp-sim's
//! simulator kit: a few synthetic patients at two practices, the kit's fault injection,
//! and Acme's own error documents. Behind the `sim` feature, for tests and sandboxes:
//! the gateway binary never carries it.
//!
//! Like a real GP system it knows nothing of FHIR: it holds its own records and answers
//! its own JSON, so the adapter's mapping is tested against it, not with it.

use std::sync::Arc;

use gp_sim::server::Method;
use gp_sim::{Reply, Routed, SimHandle, Simulator};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Path prefix of every endpoint.
const PREFIX: &str = "/acme/v1";
const JSON: &str = "application/json";

/// A practice on Acme, with its usual GP.
#[derive(Debug)]
pub struct Practice {
    pub ods: &'static str,
    pub name: &'static str,
    pub gp: Clinician,
}

/// A clinician.
#[derive(Debug)]
pub struct Clinician {
    pub id: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    pub gmc_number: &'static str,
}

/// A synthetic patient. NHS numbers are from the 999 range, pass the modulus 11 check
/// and belong to no one.
#[derive(Debug)]
pub struct Patient {
    pub nhs_number: &'static str,
    /// The ODS code of the practice the patient is registered at.
    pub practice: &'static str,
    pub title: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    pub sex: &'static str,
    pub birth_date: &'static str,
    pub postcode: &'static str,
    /// A sensitive record: never to be shared with third parties.
    pub sensitive: bool,
    /// The patient dissents from sharing with third parties.
    pub dissent: bool,
    pub problems: &'static [Problem],
    pub measurements: &'static [Measurement],
}

/// A problem-list entry, coded in SNOMED CT: active unless [`Problem::resolved`].
#[derive(Debug)]
pub struct Problem {
    pub id: &'static str,
    pub snomed: &'static str,
    pub term: &'static str,
    /// When it began, as precisely as known (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
    pub onset: &'static str,
    pub active: bool,
    /// Marked confidential by a clinician.
    pub confidential: bool,
}

impl Problem {
    const fn new(
        id: &'static str,
        snomed: &'static str,
        term: &'static str,
        onset: &'static str,
    ) -> Self {
        Self {
            id,
            snomed,
            term,
            onset,
            active: true,
            confidential: false,
        }
    }

    /// No longer active.
    const fn resolved(self) -> Self {
        Self {
            active: false,
            ..self
        }
    }

    /// Marked confidential.
    const fn confidential(self) -> Self {
        Self {
            confidential: true,
            ..self
        }
    }
}

/// A measurement, coded in SNOMED CT, with its UCUM unit and the UTC instant taken.
#[derive(Debug)]
pub struct Measurement {
    pub id: &'static str,
    pub snomed: &'static str,
    pub term: &'static str,
    pub taken_at: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// Marked confidential by a clinician.
    pub confidential: bool,
}

impl Measurement {
    const fn new(
        id: &'static str,
        (snomed, term, unit): (&'static str, &'static str, &'static str),
        taken_at: &'static str,
        value: f64,
    ) -> Self {
        Self {
            id,
            snomed,
            term,
            taken_at,
            value,
            unit,
            confidential: false,
        }
    }
}

const WEIGHT: (&str, &str, &str) = ("27113001", "Body weight", "kg");
const HEIGHT: (&str, &str, &str) = ("50373000", "Body height", "cm");
const PULSE: (&str, &str, &str) = ("364075005", "Heart rate", "/min");
const SYSTOLIC: (&str, &str, &str) = ("271649006", "Systolic blood pressure", "mm[Hg]");

/// The practices.
pub const PRACTICES: &[Practice] = &[
    Practice {
        ods: "Y99001",
        name: "Acme Demo Surgery",
        gp: Clinician {
            id: "gp-okafor",
            given: "Nia",
            family: "Okafor",
            gmc_number: "7012345",
        },
    },
    Practice {
        ods: "Y99002",
        name: "Acme Riverside Health Centre",
        gp: Clinician {
            id: "gp-hale",
            given: "Tom",
            family: "Hale",
            gmc_number: "7054321",
        },
    },
];

/// The patients: at the first practice the demo patient (one problem confidential), a
/// sensitive one, a dissenting one and one more; two at the second practice.
pub const PATIENTS: &[Patient] = &[
    Patient {
        nhs_number: "9993000019",
        practice: "Y99001",
        title: "Ms",
        given: "Olivia",
        family: "Reed",
        sex: "female",
        birth_date: "1984-02-29",
        postcode: "AC1 2ME",
        sensitive: false,
        dissent: false,
        problems: &[
            Problem::new("prb-0101", "195967001", "Asthma", "2009-05"),
            Problem::new(
                "prb-0102",
                "44054006",
                "Type 2 diabetes mellitus",
                "2019-03-14",
            ),
            Problem::new("prb-0103", "35489007", "Depressive disorder", "2021-11")
                .resolved()
                .confidential(),
        ],
        measurements: &[
            Measurement::new("msr-0101", WEIGHT, "2024-05-01T08:30:00Z", 82.5),
            Measurement::new("msr-0102", WEIGHT, "2023-11-20T14:05:00Z", 84.0),
            Measurement::new("msr-0103", HEIGHT, "2023-11-20T14:05:00Z", 168.0),
        ],
    },
    Patient {
        nhs_number: "9993000027",
        practice: "Y99001",
        title: "Mr",
        given: "Samuel",
        family: "Ortiz",
        sex: "male",
        birth_date: "1961-07",
        postcode: "AC1 3ME",
        sensitive: true,
        dissent: false,
        problems: &[Problem::new("prb-0201", "38341003", "Hypertension", "2015")],
        measurements: &[Measurement::new(
            "msr-0201",
            SYSTOLIC,
            "2024-02-12T10:15:00Z",
            138.0,
        )],
    },
    Patient {
        nhs_number: "9993000035",
        practice: "Y99001",
        title: "Mrs",
        given: "Priya",
        family: "Shah",
        sex: "female",
        birth_date: "1958-10-03",
        postcode: "AC2 1ME",
        sensitive: false,
        dissent: true,
        problems: &[Problem::new(
            "prb-0301",
            "239873007",
            "Osteoarthritis of knee",
            "2018-07",
        )],
        measurements: &[Measurement::new(
            "msr-0301",
            WEIGHT,
            "2024-03-30T09:00:00Z",
            61.2,
        )],
    },
    Patient {
        nhs_number: "9993000043",
        practice: "Y99001",
        title: "Mr",
        given: "Callum",
        family: "Price",
        sex: "male",
        birth_date: "1999-12-31",
        postcode: "AC2 4ME",
        sensitive: false,
        dissent: false,
        problems: &[Problem::new("prb-0401", "21719001", "Hay fever", "2008").resolved()],
        measurements: &[Measurement::new(
            "msr-0401",
            PULSE,
            "2025-01-06T16:45:00Z",
            64.0,
        )],
    },
    Patient {
        nhs_number: "9993000051",
        practice: "Y99002",
        title: "Ms",
        given: "Hannah",
        family: "Lee",
        sex: "female",
        birth_date: "1990-06-15",
        postcode: "AC9 1ME",
        sensitive: false,
        dissent: false,
        problems: &[Problem::new(
            "prb-0501",
            "37796009",
            "Migraine",
            "2012-06-02",
        )],
        measurements: &[
            Measurement::new("msr-0501", WEIGHT, "2024-08-19T11:20:00Z", 70.0),
            Measurement::new("msr-0502", PULSE, "2024-08-19T11:20:00Z", 71.0),
        ],
    },
    Patient {
        nhs_number: "9993000078",
        practice: "Y99002",
        title: "Mr",
        given: "George",
        family: "Ward",
        sex: "male",
        birth_date: "1947-03-22",
        postcode: "AC9 7ME",
        sensitive: false,
        dissent: false,
        problems: &[Problem::new("prb-0601", "90560007", "Gout", "2020-01").resolved()],
        measurements: &[Measurement::new(
            "msr-0601",
            WEIGHT,
            "2024-12-02T15:00:00Z",
            95.3,
        )],
    },
];

/// Starts the simulator on `listener` (bind `127.0.0.1:0` in tests). Must be called
/// inside a Tokio runtime.
pub fn start(listener: TcpListener) -> std::io::Result<SimHandle> {
    gp_sim::serve(Arc::new(AcmeSim), listener)
}

struct AcmeSim;

impl Simulator for AcmeSim {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return other(error(404, "NOT_FOUND", "no such endpoint"));
        };
        if method != Method::GET {
            return other(error(405, "METHOD_NOT_ALLOWED", "the API is read-only"));
        }
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let reply = match segments.as_slice() {
            ["", "health"] => return other(ok(&json!({"status": "up"}))),
            ["", "practices", ods, "clinicians", id] => {
                return other(match PRACTICES.iter().find(|p| p.ods == *ods) {
                    None => error(404, "PRACTICE_NOT_FOUND", "no such practice"),
                    Some(p) if p.gp.id == *id => ok(&clinician_document(&p.gp)),
                    Some(_) => error(404, "CLINICIAN_NOT_FOUND", "no such clinician here"),
                });
            }
            ["", "practices", ods, "patients", nhs] => {
                find(ods, nhs).map(|(p, practice)| patient_document(p, practice))
            }
            ["", "practices", ods, "patients", nhs, "problems"] => {
                find(ods, nhs).map(|(p, _)| list(p, p.problems.iter().map(problem)))
            }
            ["", "practices", ods, "patients", nhs, "measurements"] => {
                find(ods, nhs).map(|(p, _)| list(p, p.measurements.iter().map(measurement)))
            }
            _ => return other(error(404, "NOT_FOUND", "no such endpoint")),
        };
        Routed {
            reply: match reply {
                Ok(doc) => ok(&doc),
                Err(refused) => refused,
            },
            record: true,
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        let code = match status {
            503 => "UNAVAILABLE",
            400..=499 => "BAD_REQUEST",
            _ => "INTERNAL_ERROR",
        };
        error(status, code, "injected fault")
    }

    fn garbage(&self) -> Vec<u8> {
        b"<html><body>Acme is down for maintenance</body></html>".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // An invalid UTF-8 sequence at the start of the first string value.
        let marker = b"\":\"";
        match body.windows(marker.len()).position(|w| w == marker) {
            Some(at) => {
                let at = at + marker.len();
                [&body[..at], b"\xC3\x28", &body[at..]].concat()
            }
            None => [body, b"\xC3\x28"].concat(),
        }
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut doc) => {
                if let Some(fields) = doc.as_object_mut() {
                    fields.remove("nhs_number");
                }
                doc.to_string().into_bytes()
            }
            Err(_) => body.to_vec(),
        }
    }
}

/// An answer faults do not apply to (health, wrong paths).
fn other(reply: Reply) -> Routed {
    Routed {
        reply,
        record: false,
    }
}

fn ok(doc: &Value) -> Reply {
    Reply {
        status: 200,
        content_type: JSON,
        body: doc.to_string().into_bytes(),
    }
}

/// Acme's error document.
fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        content_type: JSON,
        body: json!({"error": {"code": code, "message": message}})
            .to_string()
            .into_bytes(),
    }
}

/// The patient `nhs` at practice `ods`, or Acme's 404.
fn find(ods: &str, nhs: &str) -> Result<(&'static Patient, &'static Practice), Reply> {
    let practice = PRACTICES
        .iter()
        .find(|p| p.ods == ods)
        .ok_or_else(|| error(404, "PRACTICE_NOT_FOUND", "no such practice"))?;
    let patient = PATIENTS
        .iter()
        .find(|p| p.practice == ods && p.nhs_number == nhs)
        .ok_or_else(|| error(404, "PATIENT_NOT_FOUND", "no such patient at this practice"))?;
    Ok((patient, practice))
}

fn patient_document(p: &Patient, practice: &Practice) -> Value {
    let gp = &practice.gp;
    json!({
        "nhs_number": p.nhs_number,
        "nhs_number_status": "01",
        "revision": 1,
        "name": {"title": p.title, "given": [p.given], "family": p.family},
        "sex": p.sex,
        "birth_date": p.birth_date,
        "postcode": p.postcode,
        "sensitive": p.sensitive,
        "sharing_dissent": p.dissent,
        "practice": {"ods_code": practice.ods, "name": practice.name},
        "usual_gp": clinician_document(gp),
    })
}

/// A clinician, in the patient document's `usual_gp` and on its own alike.
fn clinician_document(gp: &Clinician) -> Value {
    json!({
        "id": gp.id,
        "name": {"title": "Dr", "given": [gp.given], "family": gp.family},
        "gmc_number": gp.gmc_number,
    })
}

fn list(p: &Patient, items: impl Iterator<Item = Value>) -> Value {
    json!({"nhs_number": p.nhs_number, "items": items.collect::<Vec<_>>()})
}

fn problem(e: &Problem) -> Value {
    json!({
        "id": e.id,
        "snomed": e.snomed,
        "term": e.term,
        "onset": e.onset,
        "status": if e.active { "active" } else { "resolved" },
        "confidential": e.confidential,
    })
}

fn measurement(e: &Measurement) -> Value {
    json!({
        "id": e.id,
        "snomed": e.snomed,
        "term": e.term,
        "taken_at": e.taken_at,
        "value": e.value,
        "unit": e.unit,
        "confidential": e.confidential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_valid_and_practices_known() {
        for p in PATIENTS {
            assert!(gp_sim::nhs::is_valid(p.nhs_number), "{}", p.nhs_number);
            assert!(
                p.nhs_number.starts_with("999"),
                "{}: synthetic range",
                p.nhs_number
            );
            assert!(PRACTICES.iter().any(|pr| pr.ods == p.practice));
        }
    }
}
