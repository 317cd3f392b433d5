#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The adapter conformance harness and the backend-fault checks, run against the real
//! EMIS simulator from gp-sim on 127.0.0.1:0.

use gp_adapter::harness::{self, ExpectedFailure, HarnessFixture};
use gp_adapter::{Adapter, AdapterError, CallContext, PatientRequest};
use gp_adapter_emis::{EmisAdapter, EmisConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, Population, PopulationSpec, SimHandle, SimStore, SystemKind};
use tokio::net::TcpListener;

async fn start() -> (SimHandle, Population) {
    let population = Population::generate(42, &PopulationSpec::sandbox());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start_emis(SimStore::new(population.clone()), listener)
        .await
        .unwrap();
    (sim, population)
}

fn adapter(sim: &SimHandle, request_timeout_ms: u64) -> EmisAdapter {
    let mut config = EmisConfig::new(sim.base_url());
    config.request_timeout_ms = request_timeout_ms;
    config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
    EmisAdapter::new(config).unwrap()
}

/// The demo patient plus a few more of the first EMIS practice, and an unknown patient.
fn fixture(population: &Population) -> HarnessFixture {
    let first = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Emis)
        .unwrap();
    let ods = OdsCode::parse(&first.ods).unwrap();
    let patients: Vec<(NhsNumber, OdsCode)> = population
        .patients
        .iter()
        .filter(|p| p.practice == first.ods)
        .take(5)
        .map(|p| (NhsNumber::parse(&p.nhs_number).unwrap(), ods.clone()))
        .collect();
    assert_eq!(
        patients[0].0.to_string(),
        "9000000009",
        "the demo patient leads the first EMIS practice"
    );
    // A valid NHS number nobody in the population has.
    let unknown = (0..)
        .filter_map(|stem| NhsNumber::from_stem(999_999_000 + stem))
        .find(|n| population.patient_by_nhs(&n.to_string()).is_none())
        .unwrap();
    HarnessFixture {
        patients,
        unknown: (unknown, ods),
    }
}

#[tokio::test]
async fn emis_adapter_passes_the_conformance_harness() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let report = harness::run(&adapter, &fixture(&population)).await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test]
async fn emis_adapter_passes_the_write_harness() {
    // A simulator of its own: the checks write into the demo patient's record.
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let report = harness::run_writes(&adapter, &fixture(&population)).await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test]
async fn sensitive_and_dissenting_patients_are_flagged() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let read = |i: usize| {
        let (nhs, ods) = fx.patients[i].clone();
        let adapter = &adapter;
        async move {
            adapter
                .read_patient(&PatientRequest {
                    nhs_number: nhs,
                    practice: ods,
                    context: CallContext::new("t"),
                })
                .await
                .unwrap()
        }
    };
    let sensitive = read(gp_sim::SENSITIVE_INDEX).await;
    assert!(sensitive.flags.restricted && sensitive.patient.is_restricted());
    let dissent = read(gp_sim::DISSENT_INDEX).await;
    assert!(dissent.flags.dissent && !dissent.flags.restricted);
    let demo = read(0).await;
    assert!(!demo.flags.restricted && !demo.flags.dissent);
}

#[tokio::test]
async fn backend_faults_become_typed_errors() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let demo = fx.patients[0].clone();
    let cases = [
        (Fault::Status(500), ExpectedFailure::Unavailable),
        (Fault::Status(503), ExpectedFailure::Unavailable),
        (Fault::Reset, ExpectedFailure::Unavailable),
        (Fault::Garbage, ExpectedFailure::InvalidNativeData),
        (Fault::Truncated, ExpectedFailure::InvalidNativeData),
        (Fault::MisEncoded, ExpectedFailure::InvalidNativeData),
        (Fault::MissingNhsNumber, ExpectedFailure::InvalidNativeData),
    ];
    let adapter = adapter(&sim, 5000);
    for (fault, expected) in cases {
        sim.set_fault(fault);
        let report = harness::check_backend_failure(&adapter, &demo, expected).await;
        assert!(report.passed(), "{fault:?}:\n{report}");
    }
    // Hang needs a short timeout to be a fast test.
    sim.set_fault(Fault::Hang);
    let quick = self::adapter(&sim, 200);
    harness::check_backend_failure(&quick, &demo, ExpectedFailure::Timeout)
        .await
        .assert_passed();
    sim.set_fault(Fault::None);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_data_errors_name_emis_and_the_element() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let adapter = adapter(&sim, 5000);
    let req = PatientRequest {
        nhs_number: nhs,
        practice: ods,
        context: CallContext::new("t"),
    };
    sim.set_fault(Fault::MissingNhsNumber);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "EMIS Web returned data that cannot be read: Registration/NhsNumber is missing"
    );
    sim.set_fault(Fault::MisEncoded);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::InvalidNativeData { detail, .. } if detail.contains("not valid UTF-8")),
        "{err}"
    );
    sim.set_fault(Fault::None);
}

#[tokio::test]
async fn ready_follows_the_health_endpoint() {
    let (sim, _) = start().await;
    let adapter = adapter(&sim, 5000);
    adapter.ready(&CallContext::new("t")).await.unwrap();
    let base = sim.base_url();
    sim.shutdown().await;
    let gone = EmisAdapter::new(EmisConfig::new(base)).unwrap();
    assert!(matches!(
        gone.ready(&CallContext::new("t")).await,
        Err(AdapterError::Unavailable { .. })
    ));
}
