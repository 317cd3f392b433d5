//! Acme joins the shared adapter suite in one call, against its own simulator: how to
//! build the adapter, and a backend naming the patients the simulator holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_adapter::harness::{Backend, CanonicalRecord, HarnessFixture, SuiteTarget};
use gp_adapter::{Adapter, ClinicalType};
use gp_adapter_acme::sim::{self, PATIENTS, Patient};
use gp_adapter_acme::{AcmeAdapter, AcmeConfig};
use gp_fhir::{NhsNumber, OdsCode};

/// A valid NHS number the simulator holds at no practice.
const UNKNOWN: &str = "9993000086";

struct Acme;

#[async_trait::async_trait]
impl SuiteTarget for Acme {
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> {
        let mut config = AcmeConfig::new(base_url);
        config.request_timeout_ms = request_timeout_ms;
        config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
        Box::new(AcmeAdapter::new(&config).unwrap())
    }

    async fn start(&self) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = sim::start(listener).unwrap();
        Backend {
            base_url: sim.base_url(),
            // gp-sim's handle is a FaultTarget: the suite switches its faults.
            faults: Box::new(sim),
            fixture: fixture(),
            practice: None,
        }
    }
}

gp_adapter::adapter_suite!(Acme);

/// Every patient the simulator holds, and what it holds for them: the flags, the
/// confidential entries, and each entry's SNOMED CT concept (for parity).
fn fixture() -> HarnessFixture {
    let at = |pred: fn(&Patient) -> bool| -> Vec<usize> {
        (0..PATIENTS.len())
            .filter(|&i| pred(&PATIENTS[i]))
            .collect()
    };
    let first = PATIENTS[0].practice;
    assert!(PATIENTS.iter().all(|p| p.nhs_number != UNKNOWN));
    HarnessFixture {
        patients: PATIENTS
            .iter()
            .map(|p| held(p.nhs_number, p.practice))
            .collect(),
        unknown: held(UNKNOWN, first),
        restricted: at(|p| p.sensitive),
        dissenting: at(|p| p.dissent),
        confidential: Some(
            PATIENTS
                .iter()
                .map(|p| {
                    let problems = p.problems.iter().filter(|e| e.confidential).count();
                    problems + p.measurements.iter().filter(|e| e.confidential).count()
                })
                .collect(),
        ),
        canonical: Some(PATIENTS.iter().map(canonical).collect()),
    }
}

fn held(nhs: &str, ods: &str) -> (NhsNumber, OdsCode) {
    (NhsNumber::parse(nhs).unwrap(), OdsCode::parse(ods).unwrap())
}

fn canonical(p: &Patient) -> CanonicalRecord {
    let concepts = |codes: Vec<&str>| codes.into_iter().map(|c| vec![c.to_owned()]).collect();
    CanonicalRecord {
        entries: [
            (
                ClinicalType::Condition,
                concepts(p.problems.iter().map(|e| e.snomed).collect()),
            ),
            (
                ClinicalType::Observation,
                concepts(p.measurements.iter().map(|e| e.snomed).collect()),
            ),
        ]
        .into_iter()
        .collect(),
    }
}
